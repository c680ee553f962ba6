"""The gRPC edges against NVIDIA's own tritonclient (sync and asyncio), over loopback.

A real :class:`DataPlane` over a real model repository (the zoo's ONNX MLP and the
Triton-style python conformance models) runs in a background thread with its own event loop;
the clients talk to it on 127.0.0.1 with a free port, exactly as they would talk to Triton.
Every test runs against both transports of the one service: grpcio (``GrpcEdge``, on an
asyncio loop) and sonic's own HTTP/2 (``H2GrpcEdge``, on uvloop as in ``sonic serve``).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
import tritonclient.utils.shared_memory as shm
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from sonic import __version__, zoo
from sonic.server.dataplane import DataPlane
from sonic.server.grpc_edge import STATUS, GrpcEdge
from sonic.server.h2 import H2GrpcEdge
from sonic.server.models import ModelManager
from sonic.server.shm import SystemSharedMemory

T = TypeVar("T")

SLEEP_MS = 100
TIMEOUT = 30.0
#: The two transports of the gRPC service.
IMPLS = ("grpcio", "sonic")


class LoopThread:
    """An event loop running in a background thread."""

    def __init__(self, name: str, *, use_uvloop: bool = False) -> None:
        self.loop = uvloop.new_event_loop() if use_uvloop else asyncio.new_event_loop()
        # Anything the loop reports (a callback that raised, a task whose error nobody read)
        # is a bug: the tests check that none happened.
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
        self.thread = threading.Thread(target=self.loop.run_forever, name=name)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class Server(LoopThread):
    """A DataPlane + a gRPC edge (``impl``) on their own event loop in a background thread."""

    def __init__(self, repo: Path, mode: str, impl: str = "grpcio") -> None:
        super().__init__(f"grpc-edge-test-server-{impl}", use_uvloop=impl == "sonic")
        self.impl = impl
        self.manager = ModelManager([repo], mode=mode)
        self.dataplane = DataPlane(self.manager, SystemSharedMemory(allowed=True))
        self.edge: GrpcEdge | H2GrpcEdge = (
            GrpcEdge(self.dataplane) if impl == "grpcio" else H2GrpcEdge(self.dataplane)
        )
        self.port = self.call(self._start())
        self.url = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        await self.manager.start(["*"] if self.manager.mode == "explicit" else None)
        self.dataplane.started = True
        return await self.edge.start("127.0.0.1", 0)

    def close(self) -> None:
        try:
            self.call(self.edge.stop(0.5))
            self.call(self.manager.stop())
        finally:
            super().close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    zoo.write_sonic_repository(root, ["mlp"])
    zoo.write_conformance_repository(root, sleep_delay_ms=SLEEP_MS)
    return root


@pytest.fixture(scope="module")
def client_loop() -> Iterator[LoopThread]:
    """The loop of the asyncio clients. It outlives the server: grpc.aio delivers the last
    events of a client call to the client's loop, which must not be closed by then."""
    lt = LoopThread("grpc-edge-test-client")
    try:
        yield lt
    finally:
        lt.close()
    assert lt.loop_errors == []


@pytest.fixture(scope="module", params=IMPLS)
def server(request: pytest.FixtureRequest, repo: Path, client_loop: LoopThread) -> Iterator[Server]:
    srv = Server(repo, "explicit", request.param)
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


@pytest.fixture
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.url)
    try:
        yield c
    finally:
        c.close()
    assert server.loop_errors == []


def _input(name: str, arr: np.ndarray[Any, Any], datatype: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def _expect_error(fn: Callable[[], object], status: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn()
    assert info.value.status() == str(status), info.value
    message = str(info.value.message())
    for fragment in fragments:
        assert fragment in message, message
    return message


def _mlp_reference(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(zoo.mlp_onnx(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x})
    return np.asarray(y)


def _stats(client: grpcclient.InferenceServerClient, model: str) -> Any:
    (stats,) = client.get_inference_statistics(model).model_stats
    return stats


# --------------------------------------------------------------------------------------------
# service surface
# --------------------------------------------------------------------------------------------


def test_every_method_of_the_service_has_a_handler(server: Server) -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = GrpcEdge(server.dataplane).method_handlers()
    assert sorted(handlers) == sorted(m.name for m in service.methods)
    assert len(handlers) == 20
    assert handlers["ModelStreamInfer"].request_streaming
    assert handlers["ModelStreamInfer"].response_streaming
    assert not handlers["ModelInfer"].request_streaming
    assert {c.name for c in STATUS} == {
        "INVALID_ARG",
        "NOT_FOUND",
        "UNAVAILABLE",
        "UNSUPPORTED",
        "ALREADY_EXISTS",
        "INTERNAL",
    }
    assert STATUS[next(c for c in STATUS if c.name == "UNSUPPORTED")] is (grpc.StatusCode.UNIMPLEMENTED)


def test_health(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("mlp") is True
    assert client.is_model_ready("mlp", "1") is True
    assert client.is_model_ready("mlp", "7") is False
    assert client.is_model_ready("no_such_model") is False


def test_server_metadata(client: grpcclient.InferenceServerClient) -> None:
    md = client.get_server_metadata()
    assert md.name == "sonic"
    assert md.version == __version__
    assert "system_shared_memory" in md.extensions
    assert "model_repository" in md.extensions
    as_json = client.get_server_metadata(as_json=True)
    assert as_json["name"] == "sonic"


def test_model_metadata(client: grpcclient.InferenceServerClient, server: Server) -> None:
    md = client.get_model_metadata("mlp")
    assert md.name == "mlp"
    assert list(md.versions) == ["1"]
    assert md.platform == server.dataplane.model_metadata("mlp")["platform"]
    assert md.platform in ("onnxruntime_onnx", "onnxruntime")
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("input", "FP32", [-1, 16])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [("output", "FP32", [-1, 5])]
    nobatch = client.get_model_metadata("identity_fp32_nobatch", as_json=True)
    assert nobatch["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": ["-1"]}]
    add_sub = client.get_model_metadata("add_sub", "1")
    assert [t.name for t in add_sub.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert [list(t.shape) for t in add_sub.inputs] == [[-1, 16], [-1, 16]]


def test_model_config(client: grpcclient.InferenceServerClient) -> None:
    cfg = client.get_model_config("mlp").config
    assert cfg.name == "mlp"
    assert cfg.max_batch_size == 64
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("input", [16])]
    assert cfg.input[0].data_type == grpcclient.model_config_pb2.TYPE_FP32
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("output", [5])]
    assert cfg.HasField("dynamic_batching")
    as_json = client.get_model_config("add_sub", as_json=True)
    assert as_json["config"]["name"] == "add_sub"
    assert as_json["config"]["backend"] == "python"


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------


def test_infer_mlp_matches_onnxruntime(client: grpcclient.InferenceServerClient) -> None:
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    result = client.infer("mlp", [_input("input", x, "FP32")], request_id="req-7")
    y = result.as_numpy("output")
    assert y.shape == (3, 5)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response.id == "req-7"
    assert response.model_name == "mlp"
    assert response.model_version == "1"


def _identity_data(datatype: str) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        return np.array([[b"alpha", b"", b"\x00\xffgamma"]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, True, True]])
    dtype = np.dtype(grpcclient.triton_to_np_dtype(datatype))
    if dtype.kind == "f":
        return np.array([[1.5, -2.25, 3.0e3, 0.0, 7.125]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, 1, info.max]], dtype=dtype)


@pytest.mark.parametrize("datatype", zoo.IDENTITY_DATATYPES)
def test_infer_identity_datatypes(client: grpcclient.InferenceServerClient, datatype: str) -> None:
    x = _identity_data(datatype)
    result = client.infer(
        f"identity_{datatype.lower()}",
        [_input("INPUT0", x, datatype)],
        outputs=[grpcclient.InferRequestedOutput("OUTPUT0")],
    )
    out = result.get_output("OUTPUT0")
    assert out.datatype == datatype
    assert list(out.shape) == list(x.shape)
    y = result.as_numpy("OUTPUT0")
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, x)


def test_infer_two_inputs_and_a_subset_of_outputs(
    client: grpcclient.InferenceServerClient,
) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.full((2, 16), 0.5, dtype=np.float32)
    inputs = [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "FP32")]
    both = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(both.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(both.as_numpy("OUTPUT1"), a - b)
    only = client.infer("add_sub", inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in only.get_response().outputs] == ["OUTPUT1"]
    assert only.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(only.as_numpy("OUTPUT1"), a - b)


def test_infer_message_larger_than_grpc_default_limit(
    client: grpcclient.InferenceServerClient,
) -> None:
    x = np.arange(2 * 1024 * 1024, dtype=np.float32).reshape(1, -1)  # 8 MiB > 4 MiB default
    y = client.infer("identity_fp32", [_input("INPUT0", x, "FP32")]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(y, x)


def test_async_infer_with_callback(client: grpcclient.InferenceServerClient) -> None:
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    xs = [np.full((1, 4), i, dtype=np.int32) for i in range(5)]
    for i, x in enumerate(xs):
        client.async_infer(
            "identity_int32",
            [_input("INPUT0", x, "INT32")],
            callback=lambda result, error: done.put((result, error)),
            request_id=f"cb-{i}",
        )
    seen = {}
    for _ in xs:
        result, error = done.get(timeout=TIMEOUT)
        assert error is None
        seen[result.get_response().id] = result.as_numpy("OUTPUT0")
    assert sorted(seen) == [f"cb-{i}" for i in range(5)]
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(seen[f"cb-{i}"], x)


def test_asyncio_client_concurrent_infers(server: Server, client_loop: LoopThread) -> None:
    async def main() -> list[np.ndarray[Any, Any]]:
        client = aiogrpcclient.InferenceServerClient(server.url)
        try:
            assert await client.is_server_ready()
            assert (await client.get_model_metadata("mlp")).name == "mlp"

            async def one(i: int) -> np.ndarray[Any, Any]:
                x = np.full((1, 16), i / 10, dtype=np.float32)
                inp = aiogrpcclient.InferInput("input", [1, 16], "FP32")
                inp.set_data_from_numpy(x)
                result = await client.infer("mlp", [inp], request_id=str(i))
                assert result.get_response().id == str(i)
                return np.asarray(result.as_numpy("output"))

            return list(await asyncio.gather(*(one(i) for i in range(8))))
        finally:
            await client.close()

    outs = client_loop.call(main())
    x = np.stack([np.full(16, i / 10, dtype=np.float32) for i in range(8)])
    np.testing.assert_allclose(np.concatenate(outs), _mlp_reference(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def test_stream_requests_run_concurrently_and_errors_do_not_end_it(
    client: grpcclient.InferenceServerClient,
) -> None:
    before = _stats(client, "sleep")
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        n = 6
        for i in range(n):
            x = np.full((1, 3), i, dtype=np.float32)
            client.async_stream_infer("sleep", [_input("INPUT0", x, "FP32")], request_id=f"s{i}")
        bad = np.zeros((1, 3), dtype=np.float32)
        client.async_stream_infer("no_such_model", [_input("INPUT0", bad, "FP32")], request_id="x")
        fast = np.array([[42]], dtype=np.int64)
        client.async_stream_infer("identity_int64", [_input("INPUT0", fast, "INT64")], request_id="fast")
        order: list[str] = []
        errors: list[str] = []
        values = {}
        for _ in range(n + 2):
            result, error = results.get(timeout=TIMEOUT)
            if error is not None:
                errors.append(str(error))
                continue
            rid = result.get_response().id
            order.append(rid)
            values[rid] = result.as_numpy("OUTPUT0")
    finally:
        client.stop_stream()
    assert len(errors) == 1
    assert "no_such_model" in errors[0]
    assert "unknown model" in errors[0]
    assert sorted(order) == sorted([f"s{i}" for i in range(n)] + ["fast"])
    # The fast request was sent last but is not held behind the sleeping ones.
    assert order.index("fast") < order.index(f"s{n - 1}")
    np.testing.assert_array_equal(values["fast"], fast)
    for i in range(n):
        np.testing.assert_array_equal(values[f"s{i}"], np.full((1, 3), i, dtype=np.float32))
    after = _stats(client, "sleep")
    assert after.inference_count - before.inference_count == n
    assert after.inference_stats.success.count - before.inference_stats.success.count == n
    # Requests were in flight together, so the dynamic batcher merged some of them.
    assert after.execution_count - before.execution_count < n


def test_stream_cancelled_with_requests_in_flight(
    client: grpcclient.InferenceServerClient, server: Server
) -> None:
    before = _stats(client, "sleep")
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    x = np.ones((1, 2), dtype=np.float32)
    for i in range(3):
        client.async_stream_infer("sleep", [_input("INPUT0", x, "FP32")], request_id=f"c{i}")
    client.stop_stream(cancel_requests=True)
    # The server goes on serving, on a new stream and on plain calls.
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        fresh = np.array([[5, 6]], dtype=np.int32)
        client.async_stream_infer("identity_int32", [_input("INPUT0", fresh, "INT32")], request_id="n")
        while True:
            result, _ = results.get(timeout=TIMEOUT)
            if result is not None and result.get_response().id == "n":
                break
    finally:
        client.stop_stream()
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), fresh)
    y = client.infer("sleep", [_input("INPUT0", x, "FP32")]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(y, x)
    after = _stats(client, "sleep")
    assert after.inference_stats.success.count - before.inference_stats.success.count >= 1


def test_stream_error_responses_carry_the_request_id(server: Server) -> None:
    def request(model: str, rid: str, shape: tuple[int, ...]) -> Any:
        x = np.ones(shape, dtype=np.float32)
        msg = pb.ModelInferRequest(model_name=model, id=rid)
        msg.inputs.add(name="INPUT0", datatype="FP32", shape=list(shape))
        msg.raw_input_contents.append(x.tobytes())
        return msg

    sent = [
        request("identity_fp32", "good-1", (1, 2)),
        request("identity_fp32", "bad-shape", (2,)),
        request("nowhere", "bad-model", (1, 2)),
        request("identity_fp32", "good-2", (1, 5)),
    ]
    with grpc.insecure_channel(server.url) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        responses = list(call(iter(sent), timeout=TIMEOUT))
    by_id = {r.infer_response.id: r for r in responses}
    assert sorted(by_id) == ["bad-model", "bad-shape", "good-1", "good-2"]
    assert by_id["good-1"].error_message == ""
    assert list(by_id["good-2"].infer_response.outputs[0].shape) == [1, 5]
    assert by_id["good-2"].infer_response.raw_output_contents[0] == np.ones(5, np.float32).tobytes()
    assert "unexpected shape for input 'INPUT0'" in by_id["bad-shape"].error_message
    assert by_id["bad-shape"].infer_response.model_name == "identity_fp32"
    assert "'nowhere'" in by_id["bad-model"].error_message


def test_asyncio_client_stream(server: Server, client_loop: LoopThread) -> None:
    async def main() -> dict[str, Any]:
        client = aiogrpcclient.InferenceServerClient(server.url)

        async def requests() -> Any:
            for i in range(4):
                inp = aiogrpcclient.InferInput("INPUT0", [1, 2], "FP64")
                inp.set_data_from_numpy(np.array([[i, -i]], dtype=np.float64))
                yield {"model_name": "identity_fp64", "inputs": [inp], "request_id": f"a{i}"}

        out: dict[str, Any] = {}
        try:
            responses = client.stream_infer(requests())
            async for result, error in responses:
                assert error is None
                out[result.get_response().id] = result.as_numpy("OUTPUT0")
                if len(out) == 4:
                    responses.cancel()
                    break
        finally:
            await client.close()
        return out

    out = client_loop.call(main())
    assert sorted(out) == ["a0", "a1", "a2", "a3"]
    for i in range(4):
        np.testing.assert_array_equal(out[f"a{i}"], np.array([[i, -i]], dtype=np.float64))


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def test_statistics_count_inferences(client: grpcclient.InferenceServerClient) -> None:
    model = "identity_uint32"
    before = _stats(client, model)
    x = np.array([[1, 2, 3]], dtype=np.uint32)
    for _ in range(3):
        client.infer(model, [_input("INPUT0", x, "UINT32")])
    _expect_error(
        lambda: client.infer(model, [_input("INPUT0", x.reshape(3), "UINT32")]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    after = _stats(client, model)
    assert after.name == model
    assert after.version == "1"
    assert after.inference_count - before.inference_count == 3
    assert after.execution_count - before.execution_count == 3
    assert after.inference_stats.success.count - before.inference_stats.success.count == 3
    # As Triton: a request rejected by validation is not a failed inference.
    assert after.inference_stats.fail.count - before.inference_stats.fail.count == 0
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.last_inference > 0
    every = client.get_inference_statistics().model_stats
    assert model in {s.name for s in every}
    as_json = client.get_inference_statistics(model, "1", as_json=True)
    assert as_json["model_stats"][0]["name"] == model


# --------------------------------------------------------------------------------------------
# repository
# --------------------------------------------------------------------------------------------


def _index(server: Server, ready: bool) -> dict[str, Any]:
    with grpc.insecure_channel(server.url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/RepositoryIndex",
            request_serializer=pb.RepositoryIndexRequest.SerializeToString,
            response_deserializer=pb.RepositoryIndexResponse.FromString,
        )
        resp = call(pb.RepositoryIndexRequest(ready=ready), timeout=TIMEOUT)
    return {m.name: m for m in resp.models}


def test_repository_index_unload_and_load(client: grpcclient.InferenceServerClient, server: Server) -> None:
    model = "identity_uint16"
    index = client.get_model_repository_index()
    names = {m.name for m in index.models}
    assert {"mlp", "add_sub", "sleep", model} <= names
    assert {m.state for m in index.models if m.name == model} == {"READY"}
    x = np.array([[7, 8]], dtype=np.uint16)

    client.unload_model(model)
    assert client.is_model_ready(model) is False
    _expect_error(
        lambda: client.infer(model, [_input("INPUT0", x, "UINT16")]),
        grpc.StatusCode.NOT_FOUND,
        f"'{model}' has no available versions",
    )
    everything, ready = _index(server, ready=False), _index(server, ready=True)
    assert everything[model].state == "UNAVAILABLE"
    assert everything[model].reason == "unloaded"
    assert model not in ready
    assert ready["mlp"].state == "READY"
    assert ready["mlp"].version == "1"

    client.load_model(model)
    assert client.is_model_ready(model) is True
    y = client.infer(model, [_input("INPUT0", x, "UINT16")]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(y, x)
    assert _index(server, ready=True)[model].state == "READY"


def test_load_model_from_files_and_config(client: grpcclient.InferenceServerClient) -> None:
    config = {
        "name": "mlp_sent",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [16]}],
        "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [5]}],
    }
    client.load_model("mlp_sent", config=json.dumps(config), files={"file:1/model.onnx": zoo.mlp_onnx()})
    try:
        assert client.is_model_ready("mlp_sent") is True
        assert client.get_model_config("mlp_sent").config.max_batch_size == 8
        x = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
        y = client.infer("mlp_sent", [_input("input", x, "FP32")]).as_numpy("output")
        np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)
    finally:
        client.unload_model("mlp_sent")
    assert client.is_model_ready("mlp_sent") is False
    _expect_error(
        lambda: client.load_model("mlp_bad", files={"file:1/model.onnx": b"x"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "without a 'config' parameter",
    )
    _expect_error(  # as Triton: a config that does not parse fails the load as INTERNAL
        lambda: client.load_model("mlp_bad", config="{not json"),
        grpc.StatusCode.INTERNAL,
        "failed to poll from model repository",
        "invalid config override",
    )
    # Unloading a model that is not loaded succeeds, as in Triton.
    client.unload_model("never_heard_of")
    assert not client.is_model_ready("never_heard_of")


@pytest.mark.parametrize("impl", IMPLS)
def test_load_refused_when_model_control_is_none(repo: Path, impl: str) -> None:
    srv = Server(repo, "none", impl)
    try:
        with grpcclient.InferenceServerClient(srv.url) as c:
            assert c.is_model_ready("add_sub") is True
            _expect_error(
                lambda: c.unload_model("add_sub"),
                grpc.StatusCode.UNAVAILABLE,
                "model control mode is none",
            )
            _expect_error(lambda: c.load_model("add_sub"), grpc.StatusCode.UNAVAILABLE)
            assert c.is_model_ready("add_sub") is True
    finally:
        srv.close()


# --------------------------------------------------------------------------------------------
# shared memory
# --------------------------------------------------------------------------------------------


def test_system_shared_memory_round_trip(client: grpcclient.InferenceServerClient) -> None:
    tag = f"sonic_grpc_edge_{os.getpid()}"
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    nbytes = a.nbytes
    inputs_handle = shm.create_shared_memory_region(f"{tag}_in", f"/{tag}_in", 2 * nbytes)
    outputs_handle = shm.create_shared_memory_region(f"{tag}_out", f"/{tag}_out", 2 * nbytes)
    try:
        shm.set_shared_memory_region(inputs_handle, [a, b])
        client.register_system_shared_memory(f"{tag}_in", f"/{tag}_in", 2 * nbytes)
        client.register_system_shared_memory(f"{tag}_out", f"/{tag}_out", 2 * nbytes)
        status = client.get_system_shared_memory_status()
        regions = dict(status.regions)
        assert regions[f"{tag}_in"].key == f"/{tag}_in"
        assert regions[f"{tag}_in"].byte_size == 2 * nbytes
        assert regions[f"{tag}_out"].offset == 0
        one = client.get_system_shared_memory_status(f"{tag}_out").regions
        assert list(one) == [f"{tag}_out"]
        _expect_error(
            lambda: client.register_system_shared_memory(f"{tag}_in", f"/{tag}_in", nbytes),
            grpc.StatusCode.ALREADY_EXISTS,
            f"{tag}_in",
        )

        inputs = [
            grpcclient.InferInput("INPUT0", [2, 16], "FP32"),
            grpcclient.InferInput("INPUT1", [2, 16], "FP32"),
        ]
        inputs[0].set_shared_memory(f"{tag}_in", nbytes)
        inputs[1].set_shared_memory(f"{tag}_in", nbytes, offset=nbytes)
        outputs = [
            grpcclient.InferRequestedOutput("OUTPUT0"),
            grpcclient.InferRequestedOutput("OUTPUT1"),
        ]
        outputs[0].set_shared_memory(f"{tag}_out", nbytes)
        outputs[1].set_shared_memory(f"{tag}_out", nbytes, offset=nbytes)
        result = client.infer("add_sub", inputs, outputs=outputs)
        # As Triton: an empty raw entry per output in shared memory, aligned by position, and
        # no parameters echoed (the client knows where it asked for them).
        assert list(result.get_response().raw_output_contents) == [b"", b""]
        for name, offset, expected in (("OUTPUT0", 0, a + b), ("OUTPUT1", nbytes, a - b)):
            out = result.get_output(name)
            assert "shared_memory_region" not in out.parameters
            got = shm.get_contents_as_numpy(outputs_handle, np.float32, [2, 16], offset=offset)
            np.testing.assert_array_equal(got, expected)

        client.unregister_system_shared_memory(f"{tag}_in")
        assert list(client.get_system_shared_memory_status().regions) == [f"{tag}_out"]
        _expect_error(lambda: client.infer("add_sub", inputs), grpc.StatusCode.NOT_FOUND, f"{tag}_in")
        client.unregister_system_shared_memory()
        assert len(client.get_system_shared_memory_status().regions) == 0
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(inputs_handle)
        shm.destroy_shared_memory_region(outputs_handle)


def test_shared_memory_errors(client: grpcclient.InferenceServerClient) -> None:
    _expect_error(
        lambda: client.register_system_shared_memory("ghost", "/sonic_no_such_key_xyz", 64),
        grpc.StatusCode.INTERNAL,  # Triton: "Unable to open shared memory region" is INTERNAL
        "sonic_no_such_key_xyz",
    )
    _expect_error(
        lambda: client.get_system_shared_memory_status("ghost"),
        grpc.StatusCode.NOT_FOUND,
        "'ghost'",
    )
    for call in (
        lambda: client.register_cuda_shared_memory("c", b"\x00" * 64, 0, 64),
        client.get_cuda_shared_memory_status,
        client.unregister_cuda_shared_memory,
    ):
        _expect_error(call, grpc.StatusCode.UNIMPLEMENTED, "CUDA shared memory")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_errors_map_to_triton_status_and_server_keeps_serving(
    client: grpcclient.InferenceServerClient, server: Server
) -> None:
    x = np.ones((1, 16), dtype=np.float32)
    msg = _expect_error(
        lambda: client.infer("mpl", [_input("input", x, "FP32")]),
        grpc.StatusCode.NOT_FOUND,
        "unknown model",
        "'mpl'",
    )
    assert "mlp" in msg  # the nearest valid name
    _expect_error(lambda: client.get_model_metadata("mpl"), grpc.StatusCode.NOT_FOUND, "'mpl'")
    _expect_error(lambda: client.get_model_config("mpl"), grpc.StatusCode.NOT_FOUND)
    _expect_error(
        lambda: client.get_inference_statistics("mpl"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'mpl' is not available",
    )
    _expect_error(lambda: client.get_model_metadata("mlp", "9"), grpc.StatusCode.NOT_FOUND, "version 9")
    _expect_error(
        lambda: client.infer("mlp", [_input("input", np.ones((1, 15), np.float32), "FP32")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unexpected shape for input 'input'",
        "15",
    )
    _expect_error(
        lambda: client.infer("mlp", [_input("input", np.ones((1, 16), np.float64), "FP64")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "data-type is 'FP64'",
        "'FP32'",
    )
    _expect_error(
        lambda: client.infer("mlp", [_input("inptu", x, "FP32")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'inptu'",
        "'input'",
    )
    _expect_error(
        lambda: client.infer("mlp", [_input("input", np.ones((65, 16), np.float32), "FP32")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch-size must be <= 64",
    )
    _expect_error(
        lambda: client.infer(
            "mlp", [_input("input", x, "FP32")], outputs=[grpcclient.InferRequestedOutput("out")]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'out'",
    )
    # A request whose raw contents do not match its shape (tritonclient cannot send one).
    bad = pb.ModelInferRequest(model_name="mlp")
    bad.inputs.add(name="input", datatype="FP32", shape=[1, 16])
    bad.raw_input_contents.append(b"\x00" * 10)
    with grpc.insecure_channel(server.url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(bad, timeout=TIMEOUT)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'input'" in info.value.details()
    # ... and it still serves, with the right answer.
    y = client.infer("mlp", [_input("input", x, "FP32")]).as_numpy("output")
    np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)
    assert client.is_server_ready() is True


# --------------------------------------------------------------------------------------------
# trace and log settings
# --------------------------------------------------------------------------------------------


def test_trace_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_trace_settings(as_json=True)["settings"]
    assert settings["trace_level"] == {"value": ["OFF"]}
    assert settings["trace_rate"] == {"value": ["1000"]}
    updated = client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS", "TENSORS"]})
    assert list(updated.settings["trace_level"].value) == ["TIMESTAMPS", "TENSORS"]
    per_model = client.update_trace_settings("mlp", {"trace_rate": "5"})
    assert list(per_model.settings["trace_rate"].value) == ["5"]
    assert list(per_model.settings["trace_level"].value) == ["TIMESTAMPS", "TENSORS"]
    assert list(client.get_trace_settings().settings["trace_rate"].value) == ["1000"]
    assert list(client.get_trace_settings("mlp").settings["trace_rate"].value) == ["5"]
    cleared = client.update_trace_settings("mlp", {"trace_rate": None})
    assert list(cleared.settings["trace_rate"].value) == ["1000"]
    reset = client.update_trace_settings(settings={"trace_level": None})
    assert list(reset.settings["trace_level"].value) == ["OFF"]
    _expect_error(
        lambda: client.update_trace_settings(settings={"trace_levle": "OFF"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'trace_level'",
    )
    _expect_error(
        lambda: client.get_trace_settings("no_such_model"), grpc.StatusCode.INVALID_ARGUMENT, "no_such_model"
    )


def test_log_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_log_settings().settings
    assert settings["log_info"].bool_param is True
    assert settings["log_verbose_level"].uint32_param == 0
    assert settings["log_format"].string_param == "default"
    try:
        updated = client.update_log_settings({"log_verbose_level": 2, "log_info": False})
        assert updated.settings["log_verbose_level"].uint32_param == 2
        assert updated.settings["log_info"].bool_param is False
        assert client.get_log_settings(as_json=True)["settings"]["log_verbose_level"] == {"uint32_param": 2}
    finally:
        client.update_log_settings({"log_verbose_level": 0, "log_info": True})
    _expect_error(
        lambda: client.update_log_settings({"log_inf": True}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'log_info'",
    )
    _expect_error(
        lambda: client.update_log_settings({"log_info": None}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "log_info",
    )


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


def test_port_is_not_shared_and_stop_releases_it(server: Server) -> None:
    other = type(server.edge)(server.dataplane)
    with pytest.raises(OSError, match=str(server.port)):
        server.call(other.start("127.0.0.1", server.port))
    fresh = type(server.edge)(server.dataplane)
    port = server.call(fresh.start("127.0.0.1", 0))
    assert port not in (0, server.port)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as c:
        assert c.is_server_live() is True
    server.call(fresh.stop(0))
    with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as c:
        _expect_error(lambda: c.is_server_live(client_timeout=2), grpc.StatusCode.UNAVAILABLE)
