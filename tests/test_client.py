"""The SONIC client, one test suite for every target: identical results, identical errors.

Each test that takes ``connect`` runs against five targets serving the *same* conformance
repository (``conftest.conformance_repo``): ``sonic serve`` over gRPC and over HTTP, the
``local`` transport (the model in this process, through the server's own data plane), and
NVIDIA's Triton over gRPC and over HTTP (marked ``triton``; skipped where it cannot run). The
expectations are written once, so a target that answers differently -- a value, a dtype, a
shape, an error code -- fails its own parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import Target
from sonic import zoo
from sonic.client import (
    Client,
    ClientConfig,
    Code,
    DeadlineExceeded,
    InferResult,
    InvalidArgument,
    NoServerAvailable,
    NotFound,
    SonicError,
)

TARGETS = (
    "sonic-grpc",
    "sonic-http",
    "local",
    pytest.param("triton-grpc", marks=pytest.mark.triton),
    pytest.param("triton-http", marks=pytest.mark.triton),
)

Connect = Callable[..., Client]


@dataclass(frozen=True)
class Tgt:
    name: str
    transport: str
    address: str
    repository: Path
    server: Target | None

    def config(self, model: str, **options: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"model": model, "transport": self.transport, "timeout": 30}
        if self.transport == "local":
            config["repository"] = [str(self.repository)]
        else:
            config["servers"] = [self.address]
        config.update(options)
        return config


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, conformance_repo: Path) -> Iterator[Tgt]:
    name = str(request.param)
    if name == "local":
        # one client holds the in-process server for the whole module (models stay loaded)
        with Client.from_config(
            {"model": "add_sub", "transport": "local", "repository": [str(conformance_repo)]}
        ):
            yield Tgt(name, "local", "local", conformance_repo, None)
        return
    kind, transport = name.split("-")
    server: Target = request.getfixturevalue(f"{kind}_server")
    address = server.grpc_url if transport == "grpc" else server.http_url
    yield Tgt(name, transport, address, conformance_repo, server)


@pytest.fixture
def connect(target: Tgt) -> Iterator[Connect]:
    """``connect(model, **config)`` -> a started Client, closed after the test."""
    with contextlib.ExitStack() as stack:

        def make(model: str, **options: Any) -> Client:
            client = Client.from_config(target.config(model, **options))
            stack.callback(client.close)
            return client.start()

        yield make


def add_sub_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "INPUT0": rng.standard_normal((batch, 16), dtype=np.float32),
        "INPUT1": rng.standard_normal((batch, 16), dtype=np.float32),
    }


def check_add_sub(inputs: dict[str, np.ndarray], result: InferResult) -> None:
    a, b = inputs["INPUT0"], inputs["INPUT1"]
    assert set(result) == {"OUTPUT0", "OUTPUT1"}
    for name, want in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        assert result[name].dtype == np.float32
        np.testing.assert_array_equal(result[name], want)


def identity_data(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        data = np.empty((2, 3), dtype=np.object_)
        data[:] = [[b"a", b"", b"\x00\xff\x01"], [b"xyz", "\u00e9".encode(), b"hello world"]]
        return data
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    dtype = np.dtype(zoo_numpy(datatype))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [info.max, 7, info.max // 3]], dtype=dtype)
    return np.array([[1.5, -0.25, 3e-3], [np.inf, -1e4, 0.0]], dtype=dtype)


def zoo_numpy(datatype: str) -> str:
    return {
        "UINT8": "u1", "UINT16": "u2", "UINT32": "u4", "UINT64": "u8",
        "INT8": "i1", "INT16": "i2", "INT32": "i4", "INT64": "i8",
        "FP16": "f2", "FP32": "f4", "FP64": "f8",
    }[datatype]


# -- metadata -------------------------------------------------------------------------------------


def test_model_info(connect: Connect) -> None:
    info = connect("add_sub").model_info
    assert info.name == "add_sub"
    assert info.max_batch_size == 8
    assert [(t.name, t.datatype, t.dims) for t in info.inputs.values()] == [
        ("INPUT0", "FP32", (16,)),
        ("INPUT1", "FP32", (16,)),
    ]
    assert [(t.name, t.datatype, t.dims) for t in info.outputs.values()] == [
        ("OUTPUT0", "FP32", (16,)),
        ("OUTPUT1", "FP32", (16,)),
    ]
    nobatch = connect("identity_fp32_nobatch").model_info
    assert nobatch.max_batch_size == 0 and nobatch.inputs["INPUT0"].dims == (-1,)


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_add_sub_rectangular_batch(connect: Connect, batch: int) -> None:
    client = connect("add_sub")
    inputs = add_sub_inputs(batch, seed=batch)
    result = client.infer(inputs)
    check_add_sub(inputs, result)
    assert result.model_name == "add_sub" and result.model_version == "1"
    assert result.tries == 1


@pytest.mark.parametrize("datatype", zoo.IDENTITY_DATATYPES)
def test_identity_every_datatype(connect: Connect, datatype: str) -> None:
    client = connect(f"identity_{datatype.lower()}")
    data = identity_data(datatype)
    out = client.infer({"INPUT0": data})["OUTPUT0"]
    assert out.shape == data.shape
    if datatype == "BYTES":
        assert out.dtype == np.object_
        assert out.tolist() == data.tolist()
    else:
        assert out.dtype == data.dtype
        np.testing.assert_array_equal(out, data)
    assert not out.flags.writeable  # outputs are read-only views, whatever the transport


def test_strings_are_bytes(connect: Connect) -> None:
    out = connect("identity_bytes").infer({"INPUT0": np.array([["ab", "\u00e9"]])})["OUTPUT0"]
    assert out.tolist() == [[b"ab", "\u00e9".encode()]]


def test_model_without_batching(connect: Connect) -> None:
    client = connect("identity_fp32_nobatch")
    data = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(client.infer({"INPUT0": data})["OUTPUT0"], data)


def test_plain_lists_take_the_model_dtype(connect: Connect) -> None:
    out = connect("identity_int16").infer({"INPUT0": [[1, 2, 3]]})["OUTPUT0"]
    assert out.dtype == np.int16 and out.tolist() == [[1, 2, 3]]


def test_mlp_matches_onnxruntime(connect: Connect) -> None:
    x = np.random.default_rng(7).standard_normal((4, 16), dtype=np.float32)
    session = ort.InferenceSession(zoo.mlp_onnx(), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"input": x})
    got = connect("mlp").infer({"input": x})["output"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_requested_outputs(connect: Connect) -> None:
    client = connect("add_sub")
    inputs = add_sub_inputs(2)
    result = client.infer(inputs, outputs=["OUTPUT1"])
    assert list(result) == ["OUTPUT1"]
    np.testing.assert_array_equal(result["OUTPUT1"], inputs["INPUT0"] - inputs["INPUT1"])
    assert result.get("OUTPUT0") is None
    with pytest.raises(KeyError, match="did you mean 'OUTPUT1'"):
        result["OUTPUT2"]
    only = connect("add_sub", outputs=["OUTPUT0"]).infer(inputs)
    assert list(only) == ["OUTPUT0"]


# -- calling styles ------------------------------------------------------------------------------


def test_asyncio_concurrent(connect: Connect) -> None:
    client = connect("add_sub")
    batches = [add_sub_inputs(1 + i % 8, seed=i) for i in range(32)]

    async def run() -> list[InferResult]:
        return await asyncio.gather(*(client.ainfer(b) for b in batches))

    for inputs, result in zip(batches, asyncio.run(run()), strict=True):
        check_add_sub(inputs, result)
    assert client.stats.successes == 32


def test_async_with(target: Tgt) -> None:
    async def run() -> InferResult:
        async with Client.from_config(target.config("add_sub")) as client:
            return await client.ainfer(add_sub_inputs(2))

    check_add_sub(add_sub_inputs(2), asyncio.run(run()))


def test_callbacks(connect: Connect) -> None:
    client = connect("add_sub")
    done: queue.Queue[tuple[int, Any, SonicError | None]] = queue.Queue()
    batches = [add_sub_inputs(2, seed=i) for i in range(10)]

    def reply_to(i: int) -> Callable[[Any, SonicError | None], None]:
        return lambda result, error: done.put((i, result, error))

    futures = [client.infer_callback(b, reply_to(i)) for i, b in enumerate(batches)]
    got = {}
    for _ in batches:
        i, result, error = done.get(timeout=30)
        assert error is None
        got[i] = result
    for i, inputs in enumerate(batches):
        check_add_sub(inputs, got[i])
        check_add_sub(inputs, futures[i].result())
    # a failure reaches the callback as the error, and the future as its exception
    client.infer_callback({"INPUT0": np.zeros((1, 16), np.float32)}, lambda r, e: done.put((-1, r, e)))
    _, result, error = done.get(timeout=30)
    assert result is None and isinstance(error, SonicError) and error.code is Code.INVALID_ARG


# -- timeouts -------------------------------------------------------------------------------------


def test_timeout(connect: Connect) -> None:
    """The sleep model takes 20 ms per batch: a 2 ms deadline fails, 0 disables it."""
    client = connect("sleep", allowed_tries=2)
    x = {"INPUT0": np.ones((1, 4), np.float32)}
    with pytest.raises(NoServerAvailable) as err:
        client.infer(x, timeout=0.002)
    assert err.value.code is Code.UNAVAILABLE
    assert isinstance(err.value.last, DeadlineExceeded)
    assert err.value.tries == 2  # timeouts are retried on the same server
    np.testing.assert_array_equal(client.infer(x, timeout=0)["OUTPUT0"], x["INPUT0"])

    async def run() -> None:
        with pytest.raises(NoServerAvailable) as aerr:
            await client.ainfer(x, timeout=0.002)
        assert isinstance(aerr.value.last, DeadlineExceeded)
        np.testing.assert_array_equal((await client.ainfer(x, timeout=0))["OUTPUT0"], x["INPUT0"])

    asyncio.run(run())
    failed: queue.Queue[SonicError | None] = queue.Queue()
    client.infer_callback(x, lambda r, e: failed.put(e), timeout=0.002)
    assert isinstance(failed.get(timeout=30), NoServerAvailable)
    stats = client.stats
    assert stats.failures == 3 and stats.successes == 2 and stats.retries == 3


def test_config_timeout_applies_by_default(connect: Connect) -> None:
    client = connect("sleep", timeout=0.002, allowed_tries=1)
    with pytest.raises(NoServerAvailable) as err:
        client.infer({"INPUT0": np.ones((1, 4), np.float32)})
    assert isinstance(err.value.last, DeadlineExceeded) and err.value.tries == 1


# -- batching ---------------------------------------------------------------------------------------


def test_ragged_batch(connect: Connect) -> None:
    client = connect("identity_fp32")
    entries = [np.arange(n, dtype=np.float32) * (n + 1) for n in (3, 1, 7, 2)]
    results = client.infer([{"INPUT0": e} for e in entries])
    assert len(results) == len(entries)
    for e, r in zip(entries, results, strict=True):
        np.testing.assert_array_equal(r["OUTPUT0"], e)  # batch dimension added and removed
    # entries that carry their own batch dimension keep it
    with_batch = [np.ones((2, 3), np.float32), np.zeros((4, 5), np.float32)]
    results = client.infer([{"INPUT0": e} for e in with_batch])
    assert [r["OUTPUT0"].shape for r in results] == [(2, 3), (4, 5)]
    assert client.stats.requests == 6

    async def run() -> list[InferResult]:
        return await client.ainfer([{"INPUT0": e} for e in entries])

    for e, r in zip(entries, asyncio.run(run()), strict=True):
        np.testing.assert_array_equal(r["OUTPUT0"], e)
    done: queue.Queue[Any] = queue.Queue()
    client.infer_callback([{"INPUT0": e} for e in entries], lambda r, e: done.put(r))
    for e, r in zip(entries, done.get(timeout=30), strict=True):
        np.testing.assert_array_equal(r["OUTPUT0"], e)


def test_batch_of_size_zero_is_not_sent(connect: Connect) -> None:
    client = connect("add_sub")
    result = client.infer({"INPUT0": np.zeros((0, 16), np.float32), "INPUT1": np.zeros((0, 16), np.float32)})
    assert {k: (v.shape, v.dtype) for k, v in result.items()} == {
        "OUTPUT0": ((0, 16), np.dtype(np.float32)),
        "OUTPUT1": ((0, 16), np.dtype(np.float32)),
    }
    assert result.tries == 0 and result.server == ""
    assert client.infer([]) == []
    stats = client.stats
    assert stats.requests == 0 and stats.skipped == 1


# -- errors ----------------------------------------------------------------------------------------

F32 = np.float32
VALIDATION_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown input": (
        {"INPUT0": np.zeros((1, 16), F32), "INPUT_1": np.zeros((1, 16), F32)},
        "model 'add_sub' has no input 'INPUT_1' (did you mean 'INPUT1'",
    ),
    "missing input": (
        {"INPUT0": np.zeros((1, 16), F32)},
        "model 'add_sub' needs input(s) 'INPUT1', which the request lacks",
    ),
    "wrong dtype": (
        {"INPUT0": np.zeros((1, 16), np.float64), "INPUT1": np.zeros((1, 16), F32)},
        "input 'INPUT0' of model 'add_sub' is FP64 (numpy float64); expected FP32: convert it "
        "with .astype(numpy.float32)",
    ),
    "wrong shape": (
        {"INPUT0": np.zeros((1, 15), F32), "INPUT1": np.zeros((1, 16), F32)},
        "input 'INPUT0' of model 'add_sub' has shape [1, 15]; expected [-1, 16] (batch dimension first)",
    ),
    "no batch dimension": (
        {"INPUT0": np.zeros(16, F32), "INPUT1": np.zeros(16, F32)},
        "has shape [16]; expected [-1, 16]",
    ),
    "batch too large": (
        {"INPUT0": np.zeros((9, 16), F32), "INPUT1": np.zeros((9, 16), F32)},
        "input 'INPUT0' has batch size 9, more than the max_batch_size 8 of model 'add_sub'",
    ),
    "batch sizes differ": (
        {"INPUT0": np.zeros((2, 16), F32), "INPUT1": np.zeros((3, 16), F32)},
        "input 'INPUT1' of model 'add_sub' has batch size 3 but input 'INPUT0' has 2",
    ),
    "unsupported dtype": (
        {"INPUT0": np.zeros((1, 16), np.complex64), "INPUT1": np.zeros((1, 16), F32)},
        "numpy dtype complex64, which has no v2 datatype",
    ),
}


@pytest.mark.parametrize("case", VALIDATION_CASES)
def test_inputs_checked_before_sending(connect: Connect, case: str) -> None:
    client = connect("add_sub")
    inputs, message = VALIDATION_CASES[case]
    with pytest.raises(InvalidArgument) as err:
        client.infer(inputs)
    assert err.value.code is Code.INVALID_ARG
    assert message in err.value.message
    assert client.stats.requests == 0  # nothing was sent


def test_unknown_output(connect: Connect) -> None:
    client = connect("add_sub")
    with pytest.raises(InvalidArgument, match=r"model 'add_sub' has no output 'OUTPUT3'.*did you mean"):
        client.infer(add_sub_inputs(1), outputs=["OUTPUT3"])


def test_not_a_mapping(connect: Connect) -> None:
    client = connect("add_sub")
    with pytest.raises(InvalidArgument, match="list of such mappings"):
        client.infer(np.zeros((1, 16), F32))  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument, match="entry 1 of the ragged batch"):
        client.infer([{"INPUT0": np.zeros(16, F32)}, np.zeros(16, F32)])  # type: ignore[list-item]


def test_server_side_invalid_argument_has_the_same_code_everywhere(connect: Connect) -> None:
    """With validation off the server judges the request: INVALID_ARG from each target,
    not retried."""
    client = connect("identity_fp32", validate=False, allowed_tries=3)
    with pytest.raises(InvalidArgument) as err:
        client.infer({"INPUT0": np.zeros((1, 3), np.float64)})
    assert err.value.code is Code.INVALID_ARG
    assert "FP64" in err.value.message and "FP32" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        client.infer({"INPUT0": np.zeros((9, 3), np.float32)})  # over max_batch_size
    stats = client.stats
    assert stats.failures == 2 and stats.retries == 0
    np.testing.assert_array_equal(client.infer({"INPUT0": np.ones((1, 2), F32)})["OUTPUT0"], [[1, 1]])


def test_unknown_model(target: Tgt) -> None:
    client = Client.from_config(target.config("add_sbu"))
    with pytest.raises(NotFound) as err:
        client.start()
    client.close()
    assert err.value.code is Code.NOT_FOUND
    assert "'add_sbu'" in err.value.message and "did you mean 'add_sub'" in err.value.message


# -- shared memory, compression, statistics -------------------------------------------------------------


def _server_regions(target: Tgt) -> list[str]:
    assert target.server is not None
    if target.transport == "grpc":
        with grpcclient.InferenceServerClient(target.server.grpc_url) as c:
            status = c.get_system_shared_memory_status(as_json=True)
            return sorted(status.get("regions", {}))
    hc = httpclient.InferenceServerClient(target.server.http_url)
    try:
        return sorted(r["name"] for r in hc.get_system_shared_memory_status())
    finally:
        hc.close()


def test_shared_memory(target: Tgt) -> None:
    with Client.from_config(target.config("add_sub", shared_memory=True)) as client:
        for batch in (1, 8, 3):
            inputs = add_sub_inputs(batch, seed=batch)
            check_add_sub(inputs, client.infer(inputs))

        async def run() -> list[InferResult]:
            return await asyncio.gather(*(client.ainfer(add_sub_inputs(2, seed=i)) for i in range(8)))

        for i, result in enumerate(asyncio.run(run())):
            check_add_sub(add_sub_inputs(2, seed=i), result)
        (state,) = client.servers
        if target.transport == "local":
            assert state.shared_memory is None  # nothing to share in-process
            return
        assert state.shared_memory is True
        ours = [r for r in _server_regions(target) if r.startswith("sonic_")]
        assert ours  # registered once per slot and reused: at most one per concurrent request
        assert len(ours) <= 1 + 8
    assert not [r for r in _server_regions(target) if r in ours]  # unregistered at close


def test_shared_memory_with_variable_size_outputs(connect: Connect) -> None:
    """identity's output size is not known in advance: inputs go through shared memory,
    the output comes in the answer."""
    client = connect("identity_int32", shared_memory=True)
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(client.infer({"INPUT0": data})["OUTPUT0"], data)
    bytes_client = connect("identity_bytes", shared_memory=True)
    strings = identity_data("BYTES")
    assert bytes_client.infer({"INPUT0": strings})["OUTPUT0"].tolist() == strings.tolist()


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compression(connect: Connect, compression: str) -> None:
    client = connect("add_sub", compression=compression)
    inputs = add_sub_inputs(8, seed=11)
    check_add_sub(inputs, client.infer(inputs))

    async def run() -> InferResult:
        return await client.ainfer(inputs)

    check_add_sub(inputs, asyncio.run(run()))


def test_verbose_reports_server_side_times(connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    client = connect("add_sub", verbose=True)
    for i in range(5):
        client.infer(add_sub_inputs(2, seed=i))
    (stats,) = client.server_stats()
    assert stats.model == "add_sub"
    assert stats.requests >= 5  # other tests' clients do not run concurrently here
    assert stats.executions >= 1
    assert stats.avg_request_us > 0
    assert stats.avg_compute_infer_us > 0
    with caplog.at_level(logging.INFO, logger="sonic.client"):
        client.close()
    assert any("server-side statistics" in r.message and "add_sub" in r.message for r in caplog.records)


def test_client_stats(connect: Connect) -> None:
    client = connect("add_sub")
    for i in range(20):
        client.infer(add_sub_inputs(1, seed=i))
    stats = client.stats
    assert stats.requests == stats.successes == 20
    assert stats.retries == stats.failovers == stats.failures == 0
    assert 0 < stats.latency_p50 <= stats.latency_p90 <= stats.latency_p99 <= stats.latency_max
    assert sum(stats.by_server.values()) == 20
    assert stats.as_dict()["requests"] == 20


# -- configuration (no server needed) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": "m", "servers": ["h:1"], "timout": 3}, "unknown key 'timout' (did you mean 'timeout'"),
        ({"model": "m", "transport": "grcp", "servers": ["h:1"]}, "did you mean 'grpc'"),
        ({"model": "m", "transport": "grpc"}, "needs 'servers'"),
        ({"model": "m", "transport": "local"}, "needs 'repository'"),
        ({"model": "m", "servers": ["localhost"]}, "has no port"),
        ({"model": "m", "servers": ["a:1"], "preferred_server": "b:1"}, "is not one of the servers"),
        ({"model": "m", "servers": ["a:1"], "allowed_tries": 0}, "allowed_tries must be an integer >= 1"),
        ({"model": "m", "servers": ["a:1"], "compression": "zip"}, "unknown compression"),
        ({"model": "m", "servers": ["a:1"], "fallback": True}, "needs 'repository'"),
        ({"servers": ["a:1"]}, "'model' is required"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Client.from_config(config)
    assert message in err.value.message


def test_config_forms_are_equivalent() -> None:
    a = ClientConfig(model="mlp", transport="http", servers=("grpc://h:8000/",), compression="GZIP")
    b = Client.from_config(
        {"model": "mlp", "transport": "http", "servers": ["h:8000"], "compression": "gzip"}
    )
    c = Client(model="mlp", transport="http", servers=["h:8000"], compression="gzip")
    assert a == b.config == c.config
    assert a.servers == ("h:8000",)
