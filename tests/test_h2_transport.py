"""sonic's own HTTP/2 gRPC transport (``sonic.server.h2``) against real clients and its oracle.

The tritonclient conformance suite (sync and asyncio clients: infer, async_infer, streaming,
metadata, config, statistics, repository, errors, shared memory) runs against both transports
in ``test_grpc_edge.py``. Here:

- the differential test: one corpus of requests (every RPC, errors included) sent with a
  plain grpcio client to the grpcio transport (the oracle) and to sonic's, asserting
  byte-identical serialized responses and identical status codes and messages;
- plain grpcio clients (sync and asyncio) with many concurrent calls, compression (gzip,
  deflate) and TLS (a self-signed certificate made here with the ``openssl`` CLI, ALPN h2);
- deadlines, cancellation, messages larger than every window with tiny windows (flow
  control both ways), graceful shutdown with calls in flight, the Task-per-request mode;
- ``sonic serve --grpc-impl sonic`` end to end, and NVIDIA's perf_analyzer (marked
  ``triton``: it comes from ``../shared/tools/triton-reference``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from conftest import sonic_process
from sonic import zoo
from sonic.server.grpc_service import METHODS
from sonic.server.h2 import H2GrpcEdge, Limits, server_ssl_context
from sonic.server.process import ServerProcess
from test_grpc_edge import SLEEP_MS, TIMEOUT, LoopThread, Server

SERVICE_PATH = "/inference.GRPCInferenceService/"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    zoo.write_sonic_repository(root, ["mlp"])
    zoo.write_conformance_repository(root, sleep_delay_ms=SLEEP_MS)
    return root


@pytest.fixture(scope="module")
def oracle(repo: Path) -> Iterator[Server]:
    srv = Server(repo, "explicit", "grpcio")
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


@pytest.fixture(scope="module")
def sonic(repo: Path) -> Iterator[Server]:
    srv = Server(repo, "explicit", "sonic")
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


class H2Server(Server):
    """A Server whose H2 edge has custom limits or TLS."""

    def __init__(
        self, repo: Path, *, limits: Limits | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        self._limits = limits
        self._tls = tls
        super().__init__(repo, "explicit", "sonic")

    async def _start(self) -> int:
        ctx = None if self._tls is None else server_ssl_context(*self._tls)
        self.edge = H2GrpcEdge(self.dataplane, limits=self._limits, ssl_context=ctx)
        return await super()._start()


def _raw_unary(url: str, method: str, payload: bytes, **kwargs: Any) -> tuple[str, str, bytes | None]:
    """Call ``method`` with serialized bytes; (status name, details, response bytes)."""
    with grpc.insecure_channel(url) as channel:
        call = channel.unary_unary(SERVICE_PATH + method)
        try:
            return "OK", "", call(payload, timeout=TIMEOUT, **kwargs)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or "", None


def _raw_stream(url: str, payloads: list[bytes]) -> tuple[str, str, list[bytes]]:
    with grpc.insecure_channel(url) as channel:
        call = channel.stream_stream(SERVICE_PATH + "ModelStreamInfer")
        out: list[bytes] = []
        try:
            for r in call(iter(payloads), timeout=TIMEOUT):
                out.append(r)
            return "OK", "", sorted(out)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or "", sorted(out)


def _infer(model: str, *tensors: tuple[str, np.ndarray[Any, Any], str], **kw: Any) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, **kw)
    for name, arr, dt in tensors:
        msg.inputs.add(name=name, datatype=dt, shape=list(arr.shape))
        msg.raw_input_contents.append(arr.tobytes())
    return msg


def _corpus() -> list[tuple[str, Message | bytes]]:
    """Requests for every RPC, errors included, in an order that leaves the state as it was."""
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    typed = pb.ModelInferRequest(model_name="identity_fp32", id="typed")
    typed.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend(
        [1.0, 2.5, -3.0]
    )
    bad_raw = _infer("mlp", ("input", x, "FP32"))
    bad_raw.raw_input_contents[0] = b"\x00" * 10
    classify = _infer("mlp", ("input", x, "FP32"), id="cls")
    classify.outputs.add(name="output").parameters["classification"].int64_param = 2
    strings = np.array([[b"alpha", b"", b"\x00\xff"]], dtype=np.object_)
    bytes_req = pb.ModelInferRequest(model_name="identity_bytes")
    bytes_req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 3]).contents.bytes_contents.extend(
        strings.ravel().tolist()
    )
    load_bad = pb.RepositoryModelLoadRequest(model_name="mlp_bad")
    load_bad.parameters["config"].string_param = "{not json"
    trace = pb.TraceSettingRequest(model_name="mlp")
    trace.settings["trace_rate"].value.append("7")
    trace_reset = pb.TraceSettingRequest(model_name="mlp")
    trace_reset.settings["trace_rate"].Clear()
    trace_bad = pb.TraceSettingRequest()
    trace_bad.settings["trace_levle"].value.append("OFF")
    log_bad = pb.LogSettingsRequest()
    log_bad.settings["log_inf"].bool_param = True
    return [
        ("ServerLive", pb.ServerLiveRequest()),
        ("ServerReady", pb.ServerReadyRequest()),
        ("ServerMetadata", pb.ServerMetadataRequest()),
        ("ModelReady", pb.ModelReadyRequest(name="mlp")),
        ("ModelReady", pb.ModelReadyRequest(name="mlp", version="7")),
        ("ModelReady", pb.ModelReadyRequest(name="nope")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="mlp")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="identity_fp32_nobatch")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="mpl")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="mlp", version="9")),
        ("ModelConfig", pb.ModelConfigRequest(name="mlp")),
        ("ModelConfig", pb.ModelConfigRequest(name="add_sub")),
        ("ModelConfig", pb.ModelConfigRequest(name="nope")),
        ("ModelInfer", _infer("mlp", ("input", x, "FP32"), id="req-1")),
        ("ModelInfer", classify),
        ("ModelInfer", typed),
        ("ModelInfer", bytes_req),
        ("ModelInfer", _infer("add_sub", ("INPUT0", x, "FP32"), ("INPUT1", x * 2, "FP32"))),
        ("ModelInfer", _infer("identity_int64", ("INPUT0", np.array([[1, -2, 2**40]], np.int64), "INT64"))),
        ("ModelInfer", _infer("identity_fp16", ("INPUT0", np.array([[1.5, -2]], np.float16), "FP16"))),
        ("ModelInfer", _infer("mlp", ("input", x[:, :15].copy(), "FP32"))),
        ("ModelInfer", _infer("mlp", ("input", x.astype(np.float64), "FP64"))),
        ("ModelInfer", _infer("mpl", ("input", x, "FP32"))),
        ("ModelInfer", _infer("mlp", ("inptu", x, "FP32"))),
        ("ModelInfer", _infer("mlp", ("input", np.ones((65, 16), np.float32), "FP32"))),
        ("ModelInfer", bad_raw),
        ("ModelInfer", pb.ModelInferRequest()),
        ("ModelInfer", b"\xff\xff\xff"),  # not a protobuf message
        ("ModelStatistics", pb.ModelStatisticsRequest(name="mlp")),
        ("ModelStatistics", pb.ModelStatisticsRequest(name="mpl")),
        ("RepositoryIndex", pb.RepositoryIndexRequest()),
        ("RepositoryIndex", pb.RepositoryIndexRequest(ready=True)),
        ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="identity_uint16")),
        ("ModelReady", pb.ModelReadyRequest(name="identity_uint16")),
        ("RepositoryIndex", pb.RepositoryIndexRequest()),
        ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="identity_uint16")),
        ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="never_heard_of")),
        ("RepositoryModelLoad", load_bad),
        ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest()),
        ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(name="ghost")),
        (
            "SystemSharedMemoryRegister",
            pb.SystemSharedMemoryRegisterRequest(name="g", key="/sonic_no_such_key_h2", byte_size=64),
        ),
        ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest()),
        ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest()),
        ("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest(name="c", byte_size=4)),
        ("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest()),
        ("TraceSetting", pb.TraceSettingRequest()),
        ("TraceSetting", trace),
        ("TraceSetting", trace_reset),
        ("TraceSetting", trace_bad),
        ("TraceSetting", pb.TraceSettingRequest(model_name="nope")),
        ("LogSettings", pb.LogSettingsRequest()),
        ("LogSettings", log_bad),
        ("NoSuchMethod", b""),
    ]


def _normalized(method: str, data: bytes | None) -> bytes | None:
    """Statistics carry durations and timestamps that differ between any two servers."""
    if data is None or method != "ModelStatistics":
        return data

    def clear(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clear(v) for k, v in node.items() if k not in ("ns", "lastInference")}
        if isinstance(node, list):
            return [clear(v) for v in node]
        return node

    as_dict = json_format.MessageToDict(pb.ModelStatisticsResponse.FromString(data))
    return json.dumps(clear(as_dict), sort_keys=True).encode()


def test_differential_every_rpc_matches_the_grpcio_oracle(oracle: Server, sonic: Server) -> None:
    corpus = _corpus()
    assert {m for m, _ in corpus} >= {m.name for m in METHODS.values() if not m.streaming}
    mismatches = []
    for i, (method, request) in enumerate(corpus):
        payload = request if isinstance(request, bytes) else request.SerializeToString()
        want = _raw_unary(oracle.url, method, payload)
        got = _raw_unary(sonic.url, method, payload)
        want = (want[0], want[1], _normalized(method, want[2]))
        got = (got[0], got[1], _normalized(method, got[2]))
        if want != got:
            mismatches.append((i, method, want, got))
    assert mismatches == []
    # the corpus exercises both outcomes of most methods
    outcomes = {
        _raw_unary(sonic.url, m, r if isinstance(r, bytes) else r.SerializeToString())[0] for m, r in corpus
    }
    assert {"OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNIMPLEMENTED"} <= outcomes


def test_differential_stream_matches_the_grpcio_oracle(oracle: Server, sonic: Server) -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    requests = [
        _infer("identity_fp32", ("INPUT0", x, "FP32"), id="a"),
        _infer("identity_fp32", ("INPUT0", x.reshape(6), "FP32"), id="bad-shape"),
        _infer("nowhere", ("INPUT0", x, "FP32"), id="bad-model"),
        _infer("mlp", ("input", np.ones((3, 16), np.float32), "FP32"), id="b"),
        _infer("sleep", ("INPUT0", x, "FP32"), id="slow"),
    ]
    payloads = [r.SerializeToString() for r in requests]
    want = _raw_stream(oracle.url, payloads)
    got = _raw_stream(sonic.url, payloads)
    assert want[0] == "OK"
    assert len(want[2]) == len(requests)
    assert got == want
    # an empty stream: OK with no responses, on both
    assert _raw_stream(sonic.url, []) == _raw_stream(oracle.url, []) == ("OK", "", [])


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_differential_with_compression(oracle: Server, sonic: Server, compression: grpc.Compression) -> None:
    big = np.tile(np.arange(16, dtype=np.float32), (64, 1))  # compressible, and > 1 KiB both ways
    for method, request in [
        ("ModelInfer", _infer("identity_fp32", ("INPUT0", big, "FP32"), id="z")),
        ("ModelConfig", pb.ModelConfigRequest(name="mlp")),
        ("ModelInfer", _infer("mpl", ("input", big, "FP32"))),
    ]:
        payload = request.SerializeToString()
        want = _raw_unary(oracle.url, method, payload, compression=compression)
        got = _raw_unary(sonic.url, method, payload, compression=compression)
        assert got == want


# --------------------------------------------------------------------------------------------
# plain grpcio clients
# --------------------------------------------------------------------------------------------


def _mlp_request(i: int) -> pb.ModelInferRequest:
    return _infer("mlp", ("input", np.full((1, 16), i / 100, np.float32), "FP32"), id=str(i))


def test_grpcio_many_concurrent_calls_on_one_channel(sonic: Server, oracle: Server) -> None:
    n = 400
    with grpc.insecure_channel(sonic.url) as ch, grpc.insecure_channel(oracle.url) as och:
        call = ch.unary_unary(SERVICE_PATH + "ModelInfer")
        ocall = och.unary_unary(SERVICE_PATH + "ModelInfer")
        futures = [call.future(_mlp_request(i).SerializeToString(), timeout=TIMEOUT) for i in range(n)]
        got = [f.result() for f in futures]
        want = [ocall(_mlp_request(i).SerializeToString(), timeout=TIMEOUT) for i in range(n)]
    assert got == want
    assert [pb.ModelInferResponse.FromString(r).id for r in got] == [str(i) for i in range(n)]


def test_grpcio_threads_and_channels(sonic: Server) -> None:
    def worker(k: int) -> list[str]:
        ids = []
        with grpc.insecure_channel(sonic.url) as ch:
            call = ch.unary_unary(
                SERVICE_PATH + "ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            for i in range(50):
                ids.append(call(_mlp_request(k * 1000 + i), timeout=TIMEOUT).id)
        return ids

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    for k, ids in enumerate(results):
        assert ids == [str(k * 1000 + i) for i in range(50)]


def test_grpcio_aio_client_unary_and_stream(sonic: Server) -> None:
    lt = LoopThread("h2-aio-client")

    async def main() -> tuple[list[str], list[str]]:
        async with grpc.aio.insecure_channel(sonic.url) as ch:
            call = ch.unary_unary(
                SERVICE_PATH + "ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            unary = await asyncio.gather(*(call(_mlp_request(i), timeout=TIMEOUT) for i in range(64)))
            stream = ch.stream_stream(
                SERVICE_PATH + "ModelStreamInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelStreamInferResponse.FromString,
            )
            streamed = [r.infer_response.id async for r in stream(iter(_mlp_request(i) for i in range(40)))]
            return [r.id for r in unary], streamed

    try:
        unary, streamed = lt.call(main())
    finally:
        lt.close()
    assert unary == [str(i) for i in range(64)]
    assert sorted(streamed, key=int) == [str(i) for i in range(40)]
    assert lt.loop_errors == []


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compression(sonic: Server, algorithm: str) -> None:
    x = np.tile(np.arange(64, dtype=np.float32), (1, 32))  # 8 KiB
    with grpcclient.InferenceServerClient(sonic.url) as c:
        inp = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = c.infer("identity_fp32", [inp], compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_server(repo: Path, certificate: tuple[Path, Path]) -> Iterator[Server]:
    srv = H2Server(repo, tls=certificate)
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


def test_tls_tritonclient_and_grpcio(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    cert = certificate[0]
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    with grpcclient.InferenceServerClient(tls_server.url, ssl=True, root_certificates=str(cert)) as c:
        assert c.is_server_ready()
        inp = grpcclient.InferInput("input", [4, 16], "FP32")
        inp.set_data_from_numpy(x)
        y = c.infer("mlp", [inp]).as_numpy("output")
        assert y is not None and y.shape == (4, 5)
        with pytest.raises(InferenceServerException, match="unknown model"):
            c.infer("mpl", [inp])
    creds = grpc.ssl_channel_credentials(cert.read_bytes())
    with grpc.secure_channel(tls_server.url, creds) as ch:
        call = ch.stream_stream(SERVICE_PATH + "ModelStreamInfer")
        out = list(call(iter([_mlp_request(i).SerializeToString() for i in range(10)]), timeout=TIMEOUT))
        assert len(out) == 10
        unary = ch.unary_unary(SERVICE_PATH + "ModelInfer")
        big = _infer("identity_fp32", ("INPUT0", np.ones((1, 300_000), np.float32), "FP32"))
        resp = pb.ModelInferResponse.FromString(unary(big.SerializeToString(), timeout=TIMEOUT))
        assert resp.raw_output_contents[0] == big.raw_input_contents[0]
        gz = unary(big.SerializeToString(), timeout=TIMEOUT, compression=grpc.Compression.Gzip)
        assert pb.ModelInferResponse.FromString(gz).raw_output_contents[0] == big.raw_input_contents[0]


def test_tls_refuses_plaintext_and_http11_only_clients(
    tls_server: Server, certificate: tuple[Path, Path]
) -> None:
    import socket
    import ssl

    # plaintext HTTP/2 to a TLS port: the handshake fails, the server stays up
    with grpc.insecure_channel(tls_server.url) as ch, pytest.raises(grpc.RpcError):
        ch.unary_unary(SERVICE_PATH + "ServerLive")(b"", timeout=2)
    # A TLS client that only speaks http/1.1: no protocol is agreed (OpenSSL does not tell the
    # server whether the client offered ALPN), so its request is read as a bad HTTP/2
    # preface: GOAWAY(PROTOCOL_ERROR), then the connection is closed.
    ctx = ssl.create_default_context(cafile=str(certificate[0]))
    ctx.set_alpn_protocols(["http/1.1"])
    host, port = tls_server.url.split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        s.settimeout(5)
        assert s.selected_alpn_protocol() is None
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    frames = []
    while len(received) >= 9:
        n = int.from_bytes(received[:3], "big")
        frames.append((received[3], received[9 : 9 + n]))
        received = received[9 + n :]
    assert frames[0][0] == 4  # the server's SETTINGS
    goaway = [p for t, p in frames if t == 7]
    assert len(goaway) == 1 and int.from_bytes(goaway[0][4:8], "big") == 1  # PROTOCOL_ERROR
    with grpcclient.InferenceServerClient(
        tls_server.url, ssl=True, root_certificates=str(certificate[0])
    ) as c:
        assert c.is_server_live()


# --------------------------------------------------------------------------------------------
# deadlines, cancellation, flow control, shutdown, modes
# --------------------------------------------------------------------------------------------


def test_deadline_exceeded_and_server_goes_on(sonic: Server) -> None:
    x = np.ones((1, 2), np.float32)
    with grpcclient.InferenceServerClient(sonic.url) as c:
        inp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as info:
            c.infer("sleep", [inp], client_timeout=SLEEP_MS / 4000)
        assert info.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        # a generous deadline: the call completes (grpc-timeout parsed, timer cancelled)
        y = c.infer("sleep", [inp], client_timeout=30).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(y, x)
        assert c.is_server_live()


def test_client_cancellation_mid_call(sonic: Server) -> None:
    req = _infer("sleep", ("INPUT0", np.ones((1, 2), np.float32), "FP32")).SerializeToString()
    with grpc.insecure_channel(sonic.url) as ch:
        call = ch.unary_unary(SERVICE_PATH + "ModelInfer")
        futures = [call.future(req, timeout=TIMEOUT) for _ in range(10)]
        time.sleep(SLEEP_MS / 4000)
        for f in futures:
            f.cancel()
        for f in futures:
            assert f.cancelled() or f.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.OK)
        assert call(_mlp_request(1).SerializeToString(), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def tiny_windows(repo: Path) -> Iterator[Server]:
    """Small receive windows and frames: every large message crosses many WINDOW_UPDATEs."""
    limits = Limits(initial_window_size=1000, connection_window_size=70_000, max_frame_size=16_384)
    srv = H2Server(repo, limits=limits)
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


def test_flow_control_large_messages_both_ways(tiny_windows: Server) -> None:
    x = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(1, -1)  # 12 MiB each way
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    # a client window smaller than the response: the server waits for WINDOW_UPDATEs
    options.append(("grpc.http2.lookahead_bytes", 16384))
    with grpc.insecure_channel(tiny_windows.url, options=options) as ch:
        call = ch.unary_unary(SERVICE_PATH + "ModelInfer")
        req = _infer("identity_fp32", ("INPUT0", x, "FP32"), id="big")
        futures = [call.future(req.SerializeToString(), timeout=TIMEOUT) for _ in range(3)]
        for f in futures:
            resp = pb.ModelInferResponse.FromString(f.result())
            assert resp.id == "big"
            assert resp.raw_output_contents[0] == req.raw_input_contents[0]
        stream = ch.stream_stream(SERVICE_PATH + "ModelStreamInfer")
        reqs = [_infer("identity_fp32", ("INPUT0", x[:, : 200_000 + i], "FP32"), id=str(i)) for i in range(4)]
        out = [
            pb.ModelStreamInferResponse.FromString(r)
            for r in stream(iter(r.SerializeToString() for r in reqs))
        ]
    assert sorted(o.infer_response.id for o in out) == ["0", "1", "2", "3"]
    for o in out:
        i = int(o.infer_response.id)
        assert o.infer_response.raw_output_contents[0] == reqs[i].raw_input_contents[0]


def test_message_size_limit(repo: Path) -> None:
    srv = H2Server(repo, limits=Limits(max_message_bytes=4096))
    try:
        x = np.ones((1, 2048), np.float32)  # 8 KiB of tensor data
        code, details, _ = _raw_unary(
            srv.url, "ModelInfer", _infer("identity_fp32", ("INPUT0", x, "FP32")).SerializeToString()
        )
        assert code == "RESOURCE_EXHAUSTED"
        assert "larger than max" in details
        # a small request whose response would be too large is refused too (sent side)
        assert _raw_unary(srv.url, "ServerLive", b"")[0] == "OK"
    finally:
        srv.close()
    assert srv.loop_errors == []


def test_task_per_request_mode(repo: Path) -> None:
    srv = H2Server(repo, limits=Limits(task_per_request=True))
    try:
        with grpc.insecure_channel(srv.url) as ch:
            call = ch.unary_unary(SERVICE_PATH + "ModelInfer")
            futures = [call.future(_mlp_request(i).SerializeToString(), timeout=TIMEOUT) for i in range(100)]
            assert [pb.ModelInferResponse.FromString(f.result()).id for f in futures] == [
                str(i) for i in range(100)
            ]
            assert _raw_unary(srv.url, "ModelInfer", _infer("mpl").SerializeToString())[0] == "NOT_FOUND"
            assert _raw_unary(srv.url, "ServerReady", b"")[0] == "OK"
    finally:
        srv.close()
    assert srv.loop_errors == []


def test_graceful_shutdown_finishes_calls_in_flight(repo: Path) -> None:
    srv = H2Server(repo)
    x = np.ones((1, 2), np.float32)
    req = _infer("sleep", ("INPUT0", x, "FP32"), id="inflight").SerializeToString()
    try:
        ch = grpc.insecure_channel(srv.url)
        call = ch.unary_unary(SERVICE_PATH + "ModelInfer")
        futures = [call.future(req, timeout=TIMEOUT) for _ in range(5)]
        time.sleep(SLEEP_MS / 4000)  # the calls are in flight on the server
        assert len(srv.edge.connections) == 1
        srv.call(srv.edge.stop(grace=5.0))
        for f in futures:
            assert pb.ModelInferResponse.FromString(f.result()).id == "inflight"
        assert srv.edge.connections == set()
        with pytest.raises(grpc.RpcError) as info:
            call(req, timeout=2)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        ch.close()
    finally:
        srv.call(srv.manager.stop())
        LoopThread.close(srv)
    assert srv.loop_errors == []


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        Limits(max_frame_size=100)
    with pytest.raises(ValueError, match="initial_window_size"):
        Limits(initial_window_size=0)
    with pytest.raises(ValueError, match="connection_window_size"):
        Limits(connection_window_size=2**31)


# --------------------------------------------------------------------------------------------
# sonic serve --grpc-impl sonic, and NVIDIA's perf_analyzer
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[ServerProcess]:
    with sonic_process(
        repo, "--grpc-impl", "sonic", "--model-control-mode=explicit", "--load-model=*"
    ) as proc:
        yield proc


def test_sonic_serve_grpc_impl_sonic(served: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(served.grpc_url) as c:
        assert c.is_server_ready()
        x = np.ones((2, 16), np.float32)
        inp = grpcclient.InferInput("input", [2, 16], "FP32")
        inp.set_data_from_numpy(x)
        assert c.infer("mlp", [inp]).as_numpy("output").shape == (2, 5)  # type: ignore[union-attr]
    assert served.proc is not None and served.proc.poll() is None


def test_sonic_serve_tls_flags(repo: Path, certificate: tuple[Path, Path]) -> None:
    """tritonserver's flag names: --grpc-use-ssl, --grpc-server-cert, --grpc-server-key."""
    cert, key = certificate
    flags = ("--grpc-use-ssl=true", "--grpc-server-cert", str(cert), "--grpc-server-key", str(key),
             "--model-control-mode=explicit", "--load-model=mlp")  # fmt: skip
    with sonic_process(repo, *flags) as proc:
        url = proc.grpc_url.replace("127.0.0.1", "localhost")
        with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(cert)) as c:
            inp = grpcclient.InferInput("input", [1, 16], "FP32")
            inp.set_data_from_numpy(np.ones((1, 16), np.float32))
            assert c.infer("mlp", [inp]).as_numpy("output").shape == (1, 5)  # type: ignore[union-attr]
        plain = grpcclient.InferenceServerClient(proc.grpc_url)  # plaintext is refused
        with plain, pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)


def _perf(args: list[str]) -> str:
    from triton_ref import run_perf_analyzer, triton_available, unavailable_reason

    if not triton_available():
        pytest.skip(f"perf_analyzer unavailable: {unavailable_reason()}")
    try:
        return run_perf_analyzer(args, timeout=180)
    except RuntimeError as exc:
        # On a busy machine the latency may not settle within the trials: that is not a
        # protocol failure, as long as every request of every trial succeeded.
        text = str(exc)
        if "stable measurement" not in text or "throughput:" not in text.lower():
            raise
        return text


@pytest.mark.triton
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="unary"),
        pytest.param(["--streaming"], id="streaming"),
        pytest.param(["--async"], id="async"),
    ],
)
def test_perf_analyzer(served: ServerProcess, extra: list[str]) -> None:
    args = ["-m", "mlp", "-u", served.grpc_url, "-i", "grpc", "--concurrency-range", "8"]
    args += ["-p", "500", "-s", "100", "--max-trials", "3", *extra]
    out = _perf(args)
    assert "throughput:" in out.lower()
    assert "error" not in out.lower().replace("errors: 0", "")


@pytest.mark.triton
def test_perf_analyzer_shared_memory(repo: Path) -> None:
    flags = (
        "--grpc-impl",
        "sonic",
        "--allow-client-shm",
        "--model-control-mode=explicit",
        "--load-model=mlp",
    )
    with sonic_process(repo, *flags) as proc:
        args = ["-m", "mlp", "-u", proc.grpc_url, "-i", "grpc", "--concurrency-range", "4"]
        out = _perf([*args, "-p", "500", "-s", "100", "--max-trials", "3", "--shared-memory", "system"])
    assert "throughput:" in out.lower()
