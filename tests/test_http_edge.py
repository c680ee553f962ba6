"""The HTTP edge against NVIDIA's own tritonclient (sync and asyncio) and raw sockets.

A real :class:`DataPlane` over a real model repository (the zoo's ONNX MLP and the
Triton-style python conformance models) runs in a background thread with its own event loop;
tritonclient talks to it on 127.0.0.1 with a free port, as it would talk to Triton. Raw-socket
tests drive the HTTP/1.1 layer itself: malformed requests, limits, chunked bodies,
100-continue, pipelining and keep-alive, each followed by a check that the server still
serves other connections.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httptools
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from sonic import __version__, zoo
from sonic.protocol.errors import Code
from sonic.server.dataplane import EXTENSIONS, DataPlane
from sonic.server.http_edge import STATUS, HttpEdge, response_encoding
from sonic.server.models import ModelManager
from sonic.server.shm import SystemSharedMemory

T = TypeVar("T")

SLEEP_MS = 100
TIMEOUT = 30.0


class Server:
    """A DataPlane + HttpEdge on their own event loop in a background thread."""

    def __init__(self, repo: Path, loop: str = "asyncio") -> None:
        if loop == "uvloop":
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="http-edge-test")
        self.thread.start()
        # Anything the loop or the edge reports as unexpected fails the test that caused it.
        self.errors: list[str] = []
        self.loop.set_exception_handler(
            lambda _loop, ctx: self.errors.append(f"{ctx.get('message')}: {ctx.get('exception')!r}")
        )
        self.manager = ModelManager([repo], mode="explicit")
        self.dataplane = DataPlane(self.manager, SystemSharedMemory(allowed=True))
        self.edge = HttpEdge(self.dataplane)
        self.port = self.call(self._start())
        self.url = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        await self.manager.start(["*"])
        self.dataplane.started = True
        return await self.edge.start("127.0.0.1", 0)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def close(self) -> None:
        try:
            self.call(self.edge.stop(0.5))
            self.call(self.manager.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            self.loop.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    zoo.write_sonic_repository(root, ["mlp"])
    zoo.write_conformance_repository(root, sleep_delay_ms=SLEEP_MS)
    return root


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The server on the stdlib loop and on uvloop (what ``sonic serve`` runs)."""
    srv = Server(repo, request.param)
    try:
        yield srv
    finally:
        srv.close()


class _ErrorLog(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that talks to the server must leave no loop exception and no error logged by
    the HTTP edge (those mean a bug escaped a handler)."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: Server = request.getfixturevalue("server")
    srv.errors.clear()
    handler = _ErrorLog(srv.errors)
    logger = logging.getLogger("sonic.server.http")
    logger.addHandler(handler)
    try:
        yield
        assert srv.errors == []
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def client(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(server.url, network_timeout=TIMEOUT)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def small_edge(server: Server) -> Iterator[int]:
    """A second edge on the same data plane with tight limits (1000-byte bodies,
    2000-byte headers); yields its port."""
    edge = HttpEdge(server.dataplane, max_body_bytes=1000, max_header_bytes=2000)
    port = server.call(edge.start("127.0.0.1", 0))
    try:
        yield port
    finally:
        server.call(edge.stop(0.5))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _mlp_reference(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(zoo.mlp_onnx(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x})
    return np.asarray(y)


def _input(name: str, arr: np.ndarray[Any, Any], datatype: str, binary: bool = True) -> httpclient.InferInput:
    inp = httpclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


def _expect_error(fn: Any, status: int, *fragments: str) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn()
    assert info.value.status() == str(status), info.value
    message = str(info.value.message())
    for fragment in fragments:
        assert fragment in message, message
    return message


Response = tuple[int, dict[str, str], bytes]


class Raw:
    """One raw TCP connection; responses are read with httptools' response parser."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.parser = httptools.HttpResponseParser(self)
        self.done: deque[Response] = deque()
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    # parser callbacks
    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.headers, b"".join(self.body)))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Response:
        while not self.done:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection before a response")
            self.parser.feed_data(data)
        return self.done.popleft()

    def closed_by_server(self) -> bool:
        """True when the server has closed (EOF with no further response bytes)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def _request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, version: str = "1.1"
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test"]
    hdrs = dict(headers or {})
    if body and "Transfer-Encoding" not in hdrs:
        hdrs.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _exchange(port: int, data: bytes) -> Response:
    raw = Raw(port)
    try:
        raw.send(data)
        return raw.read()
    finally:
        raw.close()


def _still_serves(port: int) -> None:
    status, _, body = _exchange(port, _request("GET", "/v2/health/live"))
    assert (status, body) == (200, b"")
    status, _, body = _exchange(port, _request("GET", "/v2"))
    assert status == 200
    assert json.loads(body)["name"] == "sonic"


def _identity_body(values: list[float], request_id: str = "") -> bytes:
    req: dict[str, Any] = {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, len(values)], "data": values}],
    }
    if request_id:
        req["id"] = request_id
    return json.dumps(req).encode()


# --------------------------------------------------------------------------------------------
# health, metadata, config
# --------------------------------------------------------------------------------------------


def test_health_and_server_metadata(server: Server, client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.get_server_metadata() == {
        "name": "sonic",
        "version": __version__,
        "extensions": EXTENSIONS,
    }
    status, headers, body = _exchange(server.port, _request("GET", "/v2/health/ready"))
    assert (status, headers["content-length"], body) == (200, "0", b"")
    assert headers["content-type"] == "text/plain"  # as Triton labels it
    server.dataplane.started = False
    try:
        assert client.is_server_ready() is False
        status, headers, body = _exchange(server.port, _request("GET", "/v2/health/ready"))
        assert (status, headers["content-length"], body) == (400, "0", b"")
        assert client.is_server_live() is True
    finally:
        server.dataplane.started = True
    assert client.is_server_ready() is True


def test_model_metadata_ready_and_config(client: httpclient.InferenceServerClient) -> None:
    expected = {
        "name": "mlp",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 5]}],
    }
    assert client.get_model_metadata("mlp") == expected
    assert client.get_model_metadata("mlp", "1") == expected
    assert client.is_model_ready("mlp") is True
    assert client.is_model_ready("mlp", "1") is True
    assert client.is_model_ready("mlp", "2") is False
    assert client.is_model_ready("no_such_model") is False

    config = client.get_model_config("add_sub")
    assert config["name"] == "add_sub"
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 8  # an int, not protobuf's string form
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [16]),
        ("INPUT1", "TYPE_FP32", [16]),
    ]
    assert config["output"][1]["name"] == "OUTPUT1"
    assert client.get_model_config("add_sub", "1") == config

    _expect_error(lambda: client.get_model_metadata("no_such_model"), 404, "no_such_model")
    _expect_error(lambda: client.get_model_config("mlpp"), 404, "mlpp", "mlp")


def test_url_decoding_of_model_names(server: Server) -> None:
    status, _, body = _exchange(server.port, _request("GET", "/v2/models/%6Dl%70/versions/1"))
    assert status == 200
    assert json.loads(body)["name"] == "mlp"
    status, _, body = _exchange(server.port, _request("GET", "/v2/models/ml%2Fp"))
    assert status == 404
    assert "ml/p" in json.loads(body)["error"]


def test_unknown_path_and_wrong_method(server: Server) -> None:
    for path in (
        "/v3",
        "/v2/nope",
        "/v2/models/mlp/versions/x",
        "/v2/models/mlp/bogus",
        "/v2/health/alive",
        "/",
        "/v2/models/mlp/versions/1/trace/setting",
    ):
        status, headers, body = _exchange(server.port, _request("GET", path))
        assert (status, json.loads(body)) == (404, {"error": "Not Found"}), path
        assert headers["content-type"] == "application/json"
    for method, path in (
        ("POST", "/v2/health/live"),
        ("GET", "/v2/models/mlp/infer"),
        ("DELETE", "/v2/models/mlp"),
        ("GET", "/v2/repository/index"),
        ("POST", "/v2/systemsharedmemory/status"),
        ("PUT", "/v2/logging"),
        ("GET", "/v2/repository/models/mlp/load"),
    ):
        status, _, body = _exchange(server.port, _request(method, path))
        assert (status, json.loads(body)) == (405, {"error": "Method Not Allowed"}), path


def test_status_table_is_tritons() -> None:
    assert STATUS == {
        Code.INVALID_ARG: 400,
        Code.NOT_FOUND: 404,
        Code.UNAVAILABLE: 503,
        Code.UNSUPPORTED: 501,
        Code.ALREADY_EXISTS: 400,
        Code.INTERNAL: 500,
    }


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_mlp_matches_onnxruntime(
    client: httpclient.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=binary_out)]
    result = client.infer("mlp", [_input("input", x, "FP32", binary_in)], outputs=outputs, request_id="req-7")
    y = result.as_numpy("output")
    assert y.shape == (3, 5)
    np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert (response["model_name"], response["model_version"]) == ("mlp", "1")
    (out,) = response["outputs"]
    assert ("binary_data_size" in out.get("parameters", {})) is binary_out
    assert ("data" in out) is not binary_out


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BYTES", np.array([[b"alpha", b"", "βeta".encode(), b"\x00\xffraw"]], dtype=np.object_)),
        ("FP16", np.array([[1.5, -2.25, 65504.0, 0.0]], dtype=np.float16)),
        ("BOOL", np.array([[True, False, False, True]], dtype=np.bool_)),
        ("INT64", np.array([[-(2**62), 0, 7, 2**62]], dtype=np.int64)),
        ("UINT8", np.array([[0, 1, 254, 255]], dtype=np.uint8)),
        ("FP64", np.array([[np.pi, -1e300, 0.5, 2.0]], dtype=np.float64)),
    ],
)
def test_infer_identity_datatypes(
    client: httpclient.InferenceServerClient, datatype: str, values: np.ndarray[Any, Any]
) -> None:
    model = f"identity_{datatype.lower()}"
    for binary_in in (True, False) if datatype != "FP16" else (True,):  # FP16 JSON: refused (Triton)
        # JSON carries UTF-8 strings only; binary BYTES may hold any bytes.
        arr = values[:, :3] if datatype == "BYTES" and not binary_in else values
        for binary_out in (True, False):
            outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)]
            result = client.infer(model, [_input("INPUT0", arr, datatype, binary_in)], outputs=outputs)
            out = result.as_numpy("OUTPUT0")
            assert out.shape == arr.shape
            if datatype == "BYTES":
                # tritonclient hands JSON strings back as str, binary ones as bytes
                got = [[v.encode() if isinstance(v, str) else v for v in row] for row in out.tolist()]
                assert got == arr.tolist()
            else:
                assert out.dtype == arr.dtype
                np.testing.assert_array_equal(out, arr)


def test_infer_default_outputs_follow_binary_data_output(server: Server) -> None:
    body = _identity_body([1.0, 2.5])
    status, headers, data = _exchange(server.port, _request("POST", "/v2/models/identity_fp32/infer", body))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in headers
    assert json.loads(data)["outputs"][0]["data"] == [1.0, 2.5]

    req = json.loads(body)
    req["parameters"] = {"binary_data_output": True}
    status, headers, data = _exchange(
        server.port, _request("POST", "/v2/models/identity_fp32/infer", json.dumps(req).encode())
    )
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    hlen = int(headers["inference-header-content-length"])
    head = json.loads(data[:hlen])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(data[hlen:], np.float32), [1.0, 2.5])
    assert int(headers["content-length"]) == len(data)


def test_infer_add_sub_two_outputs_mixed(client: httpclient.InferenceServerClient) -> None:
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.full((1, 16), 3.0, dtype=np.float32)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
    ]
    result = client.infer(
        "add_sub", [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "FP32")], outputs=outputs
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    # outputs come in the model's order whatever the request's order, as Triton answers
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT0", "OUTPUT1"]


def test_infer_errors(server: Server, client: httpclient.InferenceServerClient) -> None:
    x = np.zeros((1, 16), np.float32)
    _expect_error(lambda: client.infer("no_such_model", [_input("input", x, "FP32")]), 404, "no_such_model")
    _expect_error(
        lambda: client.infer("mlp", [_input("input", x.astype(np.float64), "FP64")]), 400, "FP64", "FP32"
    )
    _expect_error(lambda: client.infer("mlp", [_input("inputs", x, "FP32")]), 400, "inputs", "input")
    _expect_error(
        lambda: client.infer("mlp", [_input("input", np.zeros((1, 15), np.float32), "FP32")]), 400, "shape"
    )
    _expect_error(
        lambda: client.infer("mlp", [_input("input", x, "FP32")], model_version="3"), 404, "version 3"
    )
    # Bodies the codec rejects.
    for body, headers, fragment in (
        (b"{not json", {}, "parse"),
        (b"[1, 2]", {}, "object"),
        (_identity_body([1.0]), {"Inference-Header-Content-Length": "x"}, "Inference-Header-Content-Length"),
        (
            _identity_body([1.0]),
            {"Inference-Header-Content-Length": "99999"},
            "Inference-Header-Content-Length",
        ),
    ):
        status, _, data = _exchange(
            server.port, _request("POST", "/v2/models/identity_fp32/infer", body, headers)
        )
        assert status == 400, data
        assert fragment in json.loads(data)["error"]
    # An unknown content coding is Triton's 501 naming the codings it takes.
    status, headers, data = _exchange(
        server.port,
        _request("POST", "/v2/models/identity_fp32/infer", _identity_body([1.0]), {"Content-Encoding": "br"}),
    )
    assert (status, json.loads(data)) == (501, {"error": "Unsupported compression type"})
    assert headers["accept-encoding"] == "gzip, deflate"
    # Corrupt compressed data.
    status, _, data = _exchange(
        server.port,
        _request(
            "POST", "/v2/models/identity_fp32/infer", b"\x1f\x8bnot gzip at all", {"Content-Encoding": "gzip"}
        ),
    )
    assert status == 400
    assert "decompress" in json.loads(data)["error"]


@pytest.mark.parametrize("request_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_alg", [None, "gzip", "deflate"])
def test_infer_compression(
    client: httpclient.InferenceServerClient, request_alg: str | None, response_alg: str | None
) -> None:
    x = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    result = client.infer(
        "mlp",
        [_input("input", x, "FP32")],
        request_compression_algorithm=request_alg,
        response_compression_algorithm=response_alg,
    )
    np.testing.assert_allclose(result.as_numpy("output"), _mlp_reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_response_on_the_wire(server: Server, coding: str) -> None:
    req = json.loads(_identity_body([float(i) for i in range(64)]))
    req["parameters"] = {"binary_data_output": True}
    body = json.dumps(req).encode()
    compressed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    status, headers, data = _exchange(
        server.port,
        _request(
            "POST",
            "/v2/models/identity_fp32/infer",
            compressed,
            {"Content-Encoding": coding, "Accept-Encoding": f"identity;q=0.5, {coding}"},
        ),
    )
    assert status == 200
    assert headers["content-encoding"] == coding
    assert int(headers["content-length"]) == len(data)
    plain = gzip.decompress(data) if coding == "gzip" else zlib.decompress(data)
    hlen = int(headers["inference-header-content-length"])
    assert json.loads(plain[:hlen])["outputs"][0]["parameters"]["binary_data_size"] == 256
    np.testing.assert_array_equal(np.frombuffer(plain[hlen:], np.float32), np.arange(64))


def test_response_encoding_negotiation() -> None:
    assert response_encoding(b"gzip") == "gzip"
    assert response_encoding(b"deflate") == "deflate"
    assert response_encoding(b"br") == "identity"
    assert response_encoding(b"gzip;q=0.2, deflate;q=0.8") == "deflate"
    assert response_encoding(b"identity, gzip") == "identity"  # first wins a tie
    assert response_encoding(b"gzip;q=0, br") == "identity"
    assert response_encoding(b"gzip;q=bad, deflate") == "deflate"


def test_statistics(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("identity_int32")["model_stats"][0]
    x = np.array([[1, 2, 3]], dtype=np.int32)
    for _ in range(3):
        client.infer("identity_int32", [_input("INPUT0", x, "INT32")])
    stats = client.get_inference_statistics("identity_int32")
    (entry,) = stats["model_stats"]
    assert (entry["name"], entry["version"]) == ("identity_int32", "1")
    success = entry["inference_stats"]["success"]
    assert success["count"] == before["inference_stats"]["success"]["count"] + 3
    assert isinstance(success["ns"], int) and success["ns"] > 0
    assert entry["inference_count"] == before["inference_count"] + 3
    assert entry["last_inference"] > 0
    assert client.get_inference_statistics("identity_int32", "1") == stats
    everything = client.get_inference_statistics()
    names = {s["name"] for s in everything["model_stats"]}
    assert {"mlp", "identity_int32", "add_sub"} <= names
    _expect_error(lambda: client.get_inference_statistics("nope"), 400, "nope")


def test_aio_client_concurrent_infer(server: Server) -> None:
    xs = [np.random.default_rng(i).standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(16)]

    async def main() -> list[np.ndarray[Any, Any]]:
        client = aiohttpclient.InferenceServerClient(server.url)
        try:
            assert await client.is_server_ready()
            assert (await client.get_model_metadata("mlp"))["name"] == "mlp"
            inputs = []
            for x in xs:
                inp = aiohttpclient.InferInput("input", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                inputs.append(inp)
            results = await asyncio.gather(
                *(client.infer("mlp", [inp], response_compression_algorithm="gzip") for inp in inputs)
            )
            return [r.as_numpy("output") for r in results]
        finally:
            await client.close()

    outs = asyncio.run(main())
    for x, y in zip(xs, outs, strict=True):
        np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# repository, shared memory, trace, logging
# --------------------------------------------------------------------------------------------


def test_repository_index_load_unload(server: Server, client: httpclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert {"name": "mlp", "version": "1", "state": "READY"} in index
    assert all(set(row) <= {"name", "version", "state", "reason"} for row in index)
    assert all(row["state"] == "READY" and "reason" not in row for row in index)

    client.unload_model("identity_fp32_nobatch")
    try:
        assert client.is_model_ready("identity_fp32_nobatch") is False
        rows = [r for r in client.get_model_repository_index() if r["name"] == "identity_fp32_nobatch"]
        assert rows == [
            {"name": "identity_fp32_nobatch", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        status, _, body = _exchange(server.port, _request("POST", "/v2/repository/index", b'{"ready": true}'))
        assert status == 200
        assert "identity_fp32_nobatch" not in {r["name"] for r in json.loads(body)}
        _expect_error(
            lambda: client.infer(
                "identity_fp32_nobatch", [_input("INPUT0", np.zeros(2, np.float32), "FP32")]
            ),
            404,
            "identity_fp32_nobatch",
        )
    finally:
        client.load_model("identity_fp32_nobatch")
    assert client.is_model_ready("identity_fp32_nobatch") is True

    status, _, body = _exchange(server.port, _request("POST", "/v2/repository/index", b'{"ready": 1}'))
    assert status == 400
    assert "ready" in json.loads(body)["error"]
    _expect_error(lambda: client.load_model("no_such_model"), 500, "no_such_model")
    status, _, body = _exchange(server.port, _request("POST", "/v2/repository/other/models/mlp/load"))
    assert status == 501
    assert "repository_name" in json.loads(body)["error"]


def test_load_with_config_override(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("add_sub")
    assert config["max_batch_size"] == 8
    override = dict(config, max_batch_size=2)
    client.load_model("add_sub", config=json.dumps(override))
    try:
        assert client.get_model_config("add_sub")["max_batch_size"] == 2
        a = np.ones((3, 16), np.float32)
        _expect_error(
            lambda: client.infer("add_sub", [_input("INPUT0", a, "FP32"), _input("INPUT1", a, "FP32")]),
            400,
            "batch",
        )
    finally:
        client.load_model("add_sub")
    assert client.get_model_config("add_sub")["max_batch_size"] == 8
    # Triton: INTERNAL "failed to poll from model repository"; sonic adds why
    _expect_error(lambda: client.load_model("add_sub", config="{not json"), 500, "failed to poll", "config")


def test_load_model_files_over_http(server: Server, client: httpclient.InferenceServerClient) -> None:
    # tritonclient.http cannot send files (it json-dumps base64 *bytes*), so the request is
    # written by hand, exactly as Triton documents it.
    config = {
        "name": "uploaded",
        "backend": "onnxruntime",
        "max_batch_size": 4,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [16]}],
        "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [5]}],
    }
    body = json.dumps(
        {
            "parameters": {
                "config": json.dumps(config),
                "file:1/model.onnx": base64.b64encode(zoo.mlp_onnx()).decode(),
            }
        }
    ).encode()
    status, headers, data = _exchange(
        server.port, _request("POST", "/v2/repository/models/uploaded/load", body)
    )
    assert (status, data, headers["content-type"]) == (200, b"", "application/json")
    try:
        x = np.random.default_rng(5).standard_normal((2, 16)).astype(np.float32)
        result = client.infer("uploaded", [_input("input", x, "FP32")])
        np.testing.assert_allclose(result.as_numpy("output"), _mlp_reference(x), rtol=1e-5, atol=1e-6)
    finally:
        status, _, data = _exchange(
            server.port,
            _request(
                "POST",
                "/v2/repository/models/uploaded/unload",
                b'{"parameters": {"unload_dependents": true}}',
            ),
        )
        assert (status, data) == (200, b"")
    assert client.is_model_ready("uploaded") is False
    bad = json.dumps({"parameters": {"config": json.dumps(config), "file:1/model.onnx": "***"}}).encode()
    status, _, data = _exchange(server.port, _request("POST", "/v2/repository/models/uploaded/load", bad))
    assert status == 400
    assert "base64" in json.loads(data)["error"]
    status, _, data = _exchange(
        server.port,
        _request(
            "POST", "/v2/repository/models/uploaded/unload", b'{"parameters": {"unload_dependents": "yes"}}'
        ),
    )
    assert status == 400
    assert "unload_dependents" in json.loads(data)["error"]


def test_system_shared_memory(server: Server, client: httpclient.InferenceServerClient) -> None:
    x = np.random.default_rng(9).standard_normal((2, 16)).astype(np.float32)
    in_size, out_size = x.nbytes, 2 * 5 * 4
    key_in, key_out = f"/sonic_http_in_{id(x)}", f"/sonic_http_out_{id(x)}"
    h_in = shm.create_shared_memory_region("in_region", key_in, in_size)
    h_out = shm.create_shared_memory_region("out_region", key_out, out_size)
    try:
        shm.set_shared_memory_region(h_in, [x])
        client.register_system_shared_memory("in_region", key_in, in_size)
        client.register_system_shared_memory("out_region", key_out, out_size)
        status = client.get_system_shared_memory_status()
        assert sorted((r["name"], r["key"], r["offset"], r["byte_size"]) for r in status) == [
            ("in_region", key_in, 0, in_size),
            ("out_region", key_out, 0, out_size),
        ]
        assert client.get_system_shared_memory_status("in_region") == [
            {"name": "in_region", "key": key_in, "offset": 0, "byte_size": in_size}
        ]

        inp = httpclient.InferInput("input", [2, 16], "FP32")
        inp.set_shared_memory("in_region", in_size)
        out = httpclient.InferRequestedOutput("output", binary_data=False)
        out.set_shared_memory("out_region", out_size)
        result = client.infer("mlp", [inp], outputs=[out])
        (resp_out,) = result.get_response()["outputs"]
        assert resp_out == {"name": "output", "datatype": "FP32", "shape": [2, 5]}  # as Triton
        y = shm.get_contents_as_numpy(h_out, np.float32, [2, 5])
        np.testing.assert_allclose(y, _mlp_reference(x), rtol=1e-5, atol=1e-6)

        _expect_error(lambda: client.register_system_shared_memory("in_region", key_in, 4), 400, "in_region")
        _expect_error(lambda: client.get_system_shared_memory_status("nope"), 404, "nope")
        status_code, _, body = _exchange(
            server.port, _request("POST", "/v2/systemsharedmemory/region/r/register", b'{"key": "/x"}')
        )
        assert status_code == 400
        assert "byte_size" in json.loads(body)["error"]

        client.unregister_system_shared_memory("in_region")
        assert [r["name"] for r in client.get_system_shared_memory_status()] == ["out_region"]
        client.unregister_system_shared_memory()
        assert client.get_system_shared_memory_status() == []
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)


def test_cuda_shared_memory_is_unsupported(client: httpclient.InferenceServerClient) -> None:
    _expect_error(client.get_cuda_shared_memory_status, 501, "CUDA")
    _expect_error(client.unregister_cuda_shared_memory, 501, "CUDA")


def test_trace_settings(client: httpclient.InferenceServerClient) -> None:
    settings = client.get_trace_settings()
    assert settings == {
        "trace_level": ["OFF"],
        "trace_rate": "1000",
        "trace_count": "-1",
        "log_frequency": "0",
        "trace_file": "",
        "trace_mode": "triton",
    }
    assert list(settings) == [
        "trace_level",
        "trace_rate",
        "trace_count",
        "log_frequency",
        "trace_file",
        "trace_mode",
    ]  # Triton's order
    updated = client.update_trace_settings(settings={"trace_rate": "5", "trace_level": ["TIMESTAMPS"]})
    assert (updated["trace_rate"], updated["trace_level"]) == ("5", ["TIMESTAMPS"])
    try:
        model = client.update_trace_settings("mlp", {"trace_count": "10"})
        assert (model["trace_count"], model["trace_rate"]) == ("10", "5")
        assert client.get_trace_settings()["trace_count"] == "-1"
        cleared = client.update_trace_settings("mlp", {"trace_count": None})
        assert cleared["trace_count"] == "-1"
        _expect_error(lambda: client.get_trace_settings("no_such_model"), 400, "no_such_model")
        _expect_error(lambda: client.update_trace_settings(settings={"trace_rate": 5}), 400, "trace_rate")
    finally:
        reset = client.update_trace_settings(settings={"trace_rate": None, "trace_level": None})
    assert (reset["trace_rate"], reset["trace_level"]) == ("1000", ["OFF"])


def test_log_settings(client: httpclient.InferenceServerClient) -> None:
    settings = client.get_log_settings()
    assert settings["log_verbose_level"] == 0
    assert settings["log_info"] is True
    updated = client.update_log_settings({"log_verbose_level": 1, "log_format": None})
    try:
        assert updated["log_verbose_level"] == 1
        assert updated["log_format"] == "default"
        assert client.get_log_settings() == updated
        _expect_error(lambda: client.update_log_settings({"log_info": "yes"}), 400, "log_info")
    finally:
        client.update_log_settings({"log_verbose_level": 0})
    assert client.get_log_settings()["log_verbose_level"] == 0


# --------------------------------------------------------------------------------------------
# the HTTP/1.1 layer, over raw sockets
# --------------------------------------------------------------------------------------------


def test_keep_alive_reuse_and_connection_close(server: Server) -> None:
    raw = Raw(server.port)
    try:
        for i in range(3):
            raw.send(_request("POST", "/v2/models/identity_fp32/infer", _identity_body([float(i)], f"k{i}")))
            status, headers, body = raw.read()
            assert status == 200
            assert "connection" not in headers
            assert json.loads(body)["id"] == f"k{i}"
        raw.send(_request("GET", "/v2/health/live", headers={"Connection": "close"}))
        status, headers, body = raw.read()
        assert (status, headers["connection"], body) == (200, "close", b"")
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_http10(server: Server) -> None:
    raw = Raw(server.port)
    try:
        raw.send(_request("GET", "/v2/health/live", version="1.0", headers={"Connection": "keep-alive"}))
        status, headers, _ = raw.read()
        assert (status, headers["connection"]) == (200, "keep-alive")
        raw.send(_request("GET", "/v2", version="1.0"))
        status, headers, body = raw.read()
        assert (status, headers["connection"]) == (200, "close")
        assert json.loads(body)["name"] == "sonic"
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_pipelined_responses_keep_request_order(server: Server) -> None:
    slow = json.dumps(
        {"id": "slow", "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [7.0]}]}
    ).encode()
    raw = Raw(server.port)
    try:
        raw.send(
            _request("POST", "/v2/models/sleep/infer", slow)
            + _request("GET", "/v2/health/ready")
            + _request("POST", "/v2/models/identity_fp32/infer", _identity_body([1.0], "fast"))
            + _request("GET", "/v2/models/nope")
            + _request("POST", "/v2/models/identity_fp32/infer", _identity_body([2.0], "last"))
        )
        first = raw.read()
        assert first[0] == 200
        assert json.loads(first[2])["id"] == "slow"
        assert json.loads(first[2])["outputs"][0]["data"] == [7.0]
        assert raw.read()[:1] == (200,)
        third = raw.read()
        assert (third[0], json.loads(third[2])["id"]) == (200, "fast")
        fourth = raw.read()
        assert fourth[0] == 404
        fifth = raw.read()
        assert (fifth[0], json.loads(fifth[2])["outputs"][0]["data"]) == (200, [2.0])
        raw.send(_request("GET", "/v2/health/live"))  # the connection is still usable
        assert raw.read()[0] == 200
    finally:
        raw.close()


def test_client_gone_before_its_answers_loses_nothing_else(server: Server) -> None:
    """Inferences queued for a connection that closes are dropped without an error, and the
    server goes on answering others (the edge queues inferences with a callback, no Task)."""
    errors: list[str] = []
    handler = _ErrorLog(errors)
    logging.getLogger("sonic.scheduler").addHandler(handler)
    try:
        slow = json.dumps(
            {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [7.0]}]}
        ).encode()
        gone = Raw(server.port)
        gone.send(
            _request("POST", "/v2/models/sleep/infer", slow)
            + _request("POST", "/v2/models/identity_fp32/infer", _identity_body([1.0], "queued"))
        )
        time.sleep(SLEEP_MS / 4000)  # both are queued; the first is running
        gone.close()
        time.sleep(2 * SLEEP_MS / 1000)  # the answers come back for nobody
        other = Raw(server.port)
        try:
            other.send(_request("POST", "/v2/models/identity_fp32/infer", _identity_body([2.0], "next")))
            status, _, body = other.read()
            assert (status, json.loads(body)["outputs"][0]["data"]) == (200, [2.0])
        finally:
            other.close()
    finally:
        logging.getLogger("sonic.scheduler").removeHandler(handler)
    assert errors == []


def test_upgrade_request_is_answered_as_http11(server: Server) -> None:
    raw = Raw(server.port)
    try:
        raw.send(
            _request(
                "GET",
                "/v2/health/live",
                headers={
                    "Connection": "Upgrade, HTTP2-Settings",
                    "Upgrade": "h2c",
                    "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
                },
            )
            + _request("GET", "/v2")
        )
        status, headers, _ = raw.read()
        assert (status, headers.get("upgrade")) == (200, None)
        status, _, body = raw.read()
        assert (status, json.loads(body)["name"]) == (200, "sonic")
    finally:
        raw.close()


def test_deep_pipeline_pauses_and_resumes_reading(server: Server) -> None:
    count = 300  # more than the edge's MAX_PIPELINE requests in flight
    raw = Raw(server.port)
    try:
        raw.send(
            b"".join(
                _request(
                    "POST",
                    "/v2/models/identity_int64/infer",
                    json.dumps(
                        {
                            "id": str(i),
                            "inputs": [{"name": "INPUT0", "datatype": "INT64", "shape": [1, 1], "data": [i]}],
                        }
                    ).encode(),
                )
                for i in range(count)
            )
        )
        for i in range(count):
            status, _, body = raw.read()
            reply = json.loads(body)
            assert (status, reply["id"], reply["outputs"][0]["data"]) == (200, str(i), [i])
    finally:
        raw.close()


def test_client_gone_while_inferring(server: Server) -> None:
    raw = Raw(server.port)
    raw.send(_request("POST", "/v2/models/sleep/infer", _identity_body([1.0], "gone")))
    raw.close()
    time.sleep(SLEEP_MS / 1000 * 1.5)
    _still_serves(server.port)


def test_large_binary_tensors(client: httpclient.InferenceServerClient) -> None:
    x = np.arange(1 << 19, dtype=np.float32).reshape(1, -1)  # 2 MiB each way
    for alg in (None, "gzip"):
        result = client.infer(
            "identity_fp32",
            [_input("INPUT0", x, "FP32")],
            request_compression_algorithm=alg,
            response_compression_algorithm=alg,
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


def test_chunked_request_body(server: Server) -> None:
    body = _identity_body([1.0, 2.0, 3.0], "chunked")
    pieces = [body[:5], body[5:17], body[17:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    raw = Raw(server.port)
    try:
        head = _request("POST", "/v2/models/identity_fp32/infer", headers={"Transfer-Encoding": "chunked"})
        raw.send(head + chunked[:9])
        time.sleep(0.05)
        raw.send(chunked[9:])
        status, _, data = raw.read()
        assert status == 200
        reply = json.loads(data)
        assert (reply["id"], reply["outputs"][0]["data"]) == ("chunked", [1.0, 2.0, 3.0])
    finally:
        raw.close()


def test_expect_100_continue(server: Server, small_edge: int) -> None:
    body = _identity_body([4.0], "cont")
    raw = Raw(server.port)
    try:
        raw.send(
            _request(
                "POST",
                "/v2/models/identity_fp32/infer",
                headers={"Content-Length": str(len(body)), "Expect": "100-continue"},
            )
        )
        assert raw.read()[0] == 100
        raw.send(body)
        status, _, data = raw.read()
        assert (status, json.loads(data)["id"]) == (200, "cont")
    finally:
        raw.close()
    # Too large for the limit: refused at once, no 100, and the body is never read.
    raw = Raw(small_edge)
    try:
        raw.send(
            _request(
                "POST",
                "/v2/models/identity_fp32/infer",
                headers={"Content-Length": "5000", "Expect": "100-continue"},
            )
        )
        status, headers, data = raw.read()
        assert (status, headers["connection"]) == (413, "close")
        assert "1000 bytes" in json.loads(data)["error"]
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_garbage_request_line(server: Server) -> None:
    raw = Raw(server.port)
    try:
        raw.send(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        status, headers, body = raw.read()
        assert (status, headers["connection"]) == (400, "close")
        assert "malformed HTTP request" in json.loads(body)["error"]
        assert raw.closed_by_server()
    finally:
        raw.close()
    _still_serves(server.port)


def test_bad_request_after_good_ones_answers_them_first(server: Server) -> None:
    raw = Raw(server.port)
    try:
        raw.send(
            _request("POST", "/v2/models/sleep/infer", _identity_body([3.0], "s"))
            + b"GET /v2 HTTP/1.1\r\nBad Header Line\r\n\r\n"
        )
        status, _, body = raw.read()
        assert (status, json.loads(body)["id"]) == (200, "s")
        status, _, body = raw.read()
        assert status == 400
        assert "malformed" in json.loads(body)["error"]
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_content_length_shorter_than_body(server: Server) -> None:
    body = _identity_body([1.0])
    raw = Raw(server.port)
    try:
        raw.send(
            _request("POST", "/v2/models/identity_fp32/infer", body, {"Content-Length": str(len(body) - 10)})
        )
        status, _, data = raw.read()  # the truncated JSON
        assert status == 400
        assert "parse" in json.loads(data)["error"]
        status, headers, data = raw.read()  # its tail, taken as the next request line
        assert (status, headers["connection"]) == (400, "close")
        assert raw.closed_by_server()
    finally:
        raw.close()
    _still_serves(server.port)


def test_content_length_longer_than_body_then_close(server: Server) -> None:
    body = _identity_body([1.0])
    raw = Raw(server.port)
    try:
        raw.send(
            _request("POST", "/v2/models/identity_fp32/infer", body, {"Content-Length": str(len(body) + 100)})
        )
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.closed_by_server()  # nothing to answer: the request never completed
    finally:
        raw.close()
    _still_serves(server.port)


def test_half_close_after_pipelined_requests_still_answers(server: Server) -> None:
    raw = Raw(server.port)
    try:
        raw.send(
            _request("POST", "/v2/models/sleep/infer", _identity_body([5.0], "h1"))
            + _request("GET", "/v2/health/live")
        )
        raw.sock.shutdown(socket.SHUT_WR)
        status, _, body = raw.read()
        assert (status, json.loads(body)["id"]) == (200, "h1")
        assert raw.read()[0] == 200
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_oversized_headers(server: Server, small_edge: int) -> None:
    # Many headers: counted as they arrive.
    raw = Raw(small_edge)
    try:
        many = {f"X-Filler-{i}": "v" * 50 for i in range(100)}
        raw.send(_request("GET", "/v2/health/live", headers=many))
        status, headers, body = raw.read()
        assert (status, headers["connection"]) == (431, "close")
        assert "2000 bytes" in json.loads(body)["error"]
        assert raw.closed_by_server()
    finally:
        raw.close()
    # One endless header line, trickled in: caught before it is complete.
    raw = Raw(small_edge)
    try:
        raw.send(b"GET /v2/health/live HTTP/1.1\r\nX-Long: ")
        for _ in range(10):
            try:
                raw.send(b"a" * 1000)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.02)
        status, _, body = raw.read()
        assert status == 431
    finally:
        raw.close()
    # The default limit (64 KiB) on the main edge.
    raw = Raw(server.port)
    try:
        raw.send(_request("GET", "/v2/health/live", headers={"X-Big": "b" * 70_000}))
        assert raw.read()[0] == 431
    finally:
        raw.close()
    _still_serves(server.port)
    _still_serves(small_edge)


def test_oversized_bodies(small_edge: int) -> None:
    big = _identity_body([0.0] * 400)
    assert len(big) > 1000
    # By Content-Length: refused before the body is read.
    status, headers, body = _exchange(small_edge, _request("POST", "/v2/models/identity_fp32/infer", big))
    assert (status, headers["connection"]) == (413, "close")
    assert "exceeds" in json.loads(body)["error"]
    # Chunked: refused once the chunks add up past the limit.
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (big[:600], big[600:]))
    status, _, body = _exchange(
        small_edge,
        _request(
            "POST", "/v2/models/identity_fp32/infer", chunked + b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}
        ),
    )
    assert status == 413
    # Compressed: small on the wire, too large once inflated.
    status, _, body = _exchange(
        small_edge,
        _request("POST", "/v2/models/identity_fp32/infer", gzip.compress(big), {"Content-Encoding": "gzip"}),
    )
    assert status == 413
    # Below the limit all is well.
    status, _, body = _exchange(
        small_edge, _request("POST", "/v2/models/identity_fp32/infer", _identity_body([1.0, 2.0]))
    )
    assert (status, json.loads(body)["outputs"][0]["data"]) == (200, [1.0, 2.0])


def test_many_connections_while_one_misbehaves(server: Server) -> None:
    stalled = Raw(server.port)
    stalled.send(b"POST /v2/models/mlp/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    try:
        clients = [Raw(server.port) for _ in range(8)]
        try:
            for i, c in enumerate(clients):
                c.send(
                    _request("POST", "/v2/models/identity_fp32/infer", _identity_body([float(i)], f"c{i}"))
                )
            for i, c in enumerate(clients):
                status, _, body = c.read()
                assert (status, json.loads(body)["id"]) == (200, f"c{i}")
        finally:
            for c in clients:
                c.close()
    finally:
        stalled.close()


def test_stop_closes_idle_keep_alive_connections(server: Server) -> None:
    edge = HttpEdge(server.dataplane)
    port = server.call(edge.start("127.0.0.1", 0))
    raw = Raw(port)
    try:
        raw.send(_request("GET", "/v2/health/live"))
        assert raw.read()[0] == 200
        server.call(edge.stop(0.2))
        assert raw.closed_by_server()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    finally:
        raw.close()
