"""``sonic bench``: the measurement engine against real servers on loopback.

The server is ``sonic serve`` on a repository with the zoo MLP (onnxruntime) and the
``sleep`` model (python backend, 5 ms per batch, dynamic batching). The sleep model makes the
load's arithmetic checkable: in a closed loop, Little's law ties throughput, concurrency and
latency together (X = c / R), so a bookkeeping error in the windows shows up. Windows are
short (0.3 s); the point is correctness, not performance (that is benchmarks/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hpack
import numpy as np
import pytest

from sonic import zoo
from sonic.bench.cli import register
from sonic.bench.engine import BenchConfig, BenchError, LoadEngine, parse_range, run_bench
from sonic.bench.inputs import make_entries, parse_shapes
from sonic.bench.results import BenchReport, percentile_ns, summarize_latencies
from sonic.bench.wire import (
    HttpWire,
    SyncGrpcWire,
    SyncHttpWire,
    SyncWireSender,
    WireError,
    WireSender,
    grpc_connection_of,
    grpc_request,
    http_parts,
    http_request,
)
from sonic.client import ModelInfo, TensorInfo
from sonic.protocol.errors import Code, InvalidArgument
from sonic.server.process import ServerProcess
from triton_ref import parse_perf_csv

QUICK: dict[str, Any] = {
    "measurement_interval_ms": 300,
    "max_trials": 4,
    "stability_percent": 50.0,
    "warmup_s": 0.2,
}
SLEEP_MS = 5


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench-repo")
    zoo.write_sonic_repository(path, models=("mlp",))
    zoo.write_conformance_repository(path, ["sleep"], sleep_delay_ms=SLEEP_MS)
    return path


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--allow-client-shm") as s:
        yield s


def _url(server: ServerProcess, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def sonic(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


# -- pieces ----------------------------------------------------------------------------------------


def test_parse_range() -> None:
    assert parse_range("4", integer=True) == [4]
    assert parse_range("1:8:2", integer=True) == [1, 3, 5, 7]
    assert parse_range("1:4", integer=True) == [1, 2, 3, 4]
    assert parse_range("100:300:100", integer=False) == [100, 200, 300]
    assert parse_range("0.5:1.5:0.5", integer=False) == [0.5, 1.0, 1.5]
    for bad in ("0", "4:2", "1:x", "1:2:3:4", "1.5", ""):
        with pytest.raises(InvalidArgument):
            parse_range(bad, integer=True)


def test_percentiles_are_perf_analyzers() -> None:
    """perf_analyzer's percentile: the sorted sample at round(q/100 × (n − 1))."""
    s = np.arange(1, 101, dtype=np.int64) * 1000  # 1..100 µs
    assert percentile_ns(s, 50) == 51_000  # index round(49.5) = 50 (round half up)
    assert percentile_ns(s, 99) == 99_000  # index round(98.01) = 98
    summary = summarize_latencies(np.array([3000, 1000, 2000], dtype=np.int64))
    assert summary["avg"] == pytest.approx(2.0)
    assert summary["p50"] == 2.0 and summary["min"] == 1.0 and summary["max"] == 3.0
    assert np.isnan(summarize_latencies(np.zeros(0, dtype=np.int64))["p99"])


INFO = ModelInfo(
    "m", ("1",), "", 8,
    {
        "a": TensorInfo("a", "FP32", (2, 3)),
        "b": TensorInfo("b", "INT32", (-1,)),
        "s": TensorInfo("s", "BYTES", (1,)),
    },
    {"y": TensorInfo("y", "FP32", (1,))},
)  # fmt: skip


def test_entries_random_and_zero() -> None:
    with pytest.raises(InvalidArgument, match="--shape b:1"):
        make_entries(INFO)
    shapes = parse_shapes(["b:5"])
    entries = make_entries(INFO, batch=4, shapes=shapes, seed=1)
    assert len(entries) == 4
    e = entries[0]
    assert e["a"].shape == (4, 2, 3) and e["a"].dtype == np.float32
    assert e["b"].shape == (4, 5) and e["b"].dtype == np.int32
    assert e["s"].shape == (4, 1) and isinstance(e["s"][0, 0], bytes) and len(e["s"][0, 0]) == 128
    assert not np.array_equal(entries[0]["a"], entries[1]["a"])  # consecutive requests differ
    (z,) = make_entries(INFO, batch=2, data="zero", shapes=shapes)
    assert not z["a"].any() and z["b"].shape == (2, 5)
    with pytest.raises(InvalidArgument, match="max_batch_size 8"):
        make_entries(INFO, batch=9, shapes=shapes)
    with pytest.raises(InvalidArgument, match="did you mean 'b'"):
        make_entries(INFO, shapes={"bb": (1,)})


def test_entries_from_files(tmp_path: Path) -> None:
    doc = {"data": [
        {"a": [1, 2, 3, 4, 5, 6], "b": {"content": [7, 8], "shape": [2]}, "s": ["x"]},
        {"a": {"content": [0] * 6, "shape": [2, 3]}, "b": {"content": [9, 9], "shape": [2]}, "s": ["y"]},
    ]}  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(doc))
    entries = make_entries(INFO, batch=2, data=str(path))
    (e,) = entries  # two samples, one batch of two
    assert e["a"].shape == (2, 2, 3) and e["a"][0, 1, 2] == 6
    assert e["b"].tolist() == [[7, 8], [9, 9]]
    assert e["s"].reshape(-1).tolist() == [b"x", b"y"]
    assert len(make_entries(INFO, batch=1, data=str(path))) == 2
    npz = tmp_path / "data.npz"
    np.savez(
        npz,
        a=np.ones((3, 2, 3), np.float32),
        b=np.arange(6, dtype=np.int32).reshape(3, 2),
        s=np.array([[b"q"]] * 3),
    )
    assert len(make_entries(INFO, batch=1, data=str(npz))) == 3
    path.write_text(json.dumps({"data": [{"a": [1, 2]}]}))
    with pytest.raises(InvalidArgument, match=r"has no value for input 'b'|2 elements"):
        make_entries(INFO, data=str(path))
    with pytest.raises(InvalidArgument, match="no such file"):
        make_entries(INFO, data=str(tmp_path / "missing.json"))


def test_csv_is_perf_analyzers_format(server: ServerProcess) -> None:
    report = run_bench(BenchConfig(model="mlp", url=server.grpc_url, concurrency=[1, 2], **QUICK))
    rows = parse_perf_csv(report.to_csv())  # the reader written for perf_analyzer's files
    assert [r.load for r in rows] == [1, 2]
    for row, r in zip(rows, report.results, strict=True):
        assert row.throughput == pytest.approx(r.throughput, rel=1e-3)
        assert row.p50_us == round(r.latency_us["p50"]) and row.p99_us == round(r.latency_us["p99"])
        assert row.server_queue_us == round(r.server.queue_us)
        assert r.client.processes == 1 and r.client.cpu_s > 0  # the sender's CPU is accounted
    header = report.to_csv().splitlines()[0].split(",")
    assert header[:13] == [
        "Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
        "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
        "p50 latency", "p90 latency", "p95 latency", "p99 latency",
    ]  # fmt: skip
    again = BenchReport.from_dict(json.loads(report.to_json()))
    assert again.results[1].throughput == pytest.approx(report.results[1].throughput)
    assert again.results[1].server.queue_us == pytest.approx(report.results[1].server.queue_us)


# -- the engine against a server -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "engine", "sync"),
    [
        ("grpc", "wire", False),
        ("http", "wire", False),
        ("grpc", "client", False),
        ("grpc", "wire", True),
        ("http", "wire", True),
    ],
)
def test_closed_loop_obeys_littles_law(server: ServerProcess, protocol: str, engine: str, sync: bool) -> None:
    """c requests always in flight (asyncio senders, or blocking threads with --sync):
    throughput = c / latency, and the server counts what the client sent; dynamic batching
    merged concurrent requests."""
    c = 4
    cfg = BenchConfig(
        model="sleep",
        url=_url(server, protocol),
        protocol=protocol,
        concurrency=[c],
        shapes={"INPUT0": (16,)},
        engine=engine,
        sync=sync,
        **QUICK,
    )
    (r,) = run_bench(cfg).results
    assert r.errors == 0 and r.requests > 0
    lat_s = r.latency_us["avg"] / 1e6
    assert r.throughput == pytest.approx(c / lat_s, rel=0.15)
    assert r.latency_us["p50"] >= SLEEP_MS * 1e3  # nobody answers before the model slept
    assert r.server.requests == pytest.approx(r.requests, rel=0.15)
    assert r.server.avg_batch > 1.0
    assert r.server.compute_infer_us >= SLEEP_MS * 1e3 * 0.9
    assert 0 < r.latency_us["p50"] <= r.latency_us["p90"] <= r.latency_us["p99"] <= r.latency_us["max"]
    # (the client's CPU is checked under a CPU-bound load in test_csv_is_perf_analyzers_format:
    # here, ~1 s of a light asyncio client can stay under one 10 ms tick of /proc accounting)
    assert r.client.processes == 1 and len(r.windows) >= 3
    # client send/recv: the codec's cost with the SONIC client; 0 with the wire (encoded once)
    assert (r.client_send_us > 0 and r.client_recv_us > 0) == (engine == "client")


@pytest.mark.parametrize(
    "options",
    [
        {"protocol": "http", "input_format": "json", "output_format": "json"},
        {"protocol": "grpc", "shared_memory": "system"},
        {"protocol": "http", "shared_memory": "system"},
        {"protocol": "grpc", "compression": "gzip"},
        {"protocol": "http", "compression": "deflate"},
        {"protocol": "grpc", "sync": True},
        {"protocol": "http", "sync": True, "input_format": "json"},
        {"protocol": "grpc", "sync": True, "engine": "client"},
        {"protocol": "http", "processes": 2},
        {"protocol": "grpc", "batch": 8, "input_data": "zero"},
        {"protocol": "http", "engine": "client", "shared_memory": "system"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options(server: ServerProcess, options: dict[str, Any]) -> None:
    protocol = str(options["protocol"])
    cfg = BenchConfig(model="mlp", url=_url(server, protocol), concurrency=[2], **{**QUICK, **options})
    (r,) = run_bench(cfg).results
    assert r.errors == 0, r.error_messages
    assert r.requests > 10 and r.throughput > 0
    assert r.server.requests > 0 and r.server.compute_infer_us > 0
    assert r.server.inferences == pytest.approx(r.server.requests * cfg.batch, rel=0.01)
    assert r.client.processes == cfg.auto_processes()


def test_local_transport(repo: Path) -> None:
    cfg = BenchConfig(model="mlp", protocol="local", repository=(str(repo),), concurrency=[1, 2], **QUICK)
    report = run_bench(cfg)
    assert [r.load for r in report.results] == [1, 2]
    for r in report.results:
        assert r.errors == 0 and r.throughput > 0
        assert r.server.requests > 0  # the in-process server's statistics
        assert r.client_send_us == 0.0


@pytest.mark.parametrize("distribution", ["constant", "poisson"])
def test_request_rate(server: ServerProcess, distribution: str) -> None:
    """Open loop: the throughput is the offered rate, whatever the latency."""
    cfg = BenchConfig(
        model="sleep",
        url=server.grpc_url,
        request_rates=[150.0],
        distribution=distribution,
        shapes={"INPUT0": (16,)},
        **{**QUICK, "measurement_interval_ms": 600},
    )
    (r,) = run_bench(cfg).results
    assert r.mode == "request_rate" and r.load == 150.0
    assert r.errors == 0
    assert r.throughput == pytest.approx(150, rel=0.25)
    assert r.latency_us["p50"] >= SLEEP_MS * 1e3


def test_latency_threshold_stops_the_sweep(server: ServerProcess) -> None:
    cfg = BenchConfig(
        model="sleep",
        url=server.grpc_url,
        concurrency=[1, 2, 4],
        shapes={"INPUT0": (16,)},
        latency_threshold_ms=SLEEP_MS / 2,
        **QUICK,
    )
    assert len(run_bench(cfg).results) == 1


def test_cli_writes_csv_json_and_plot(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, json_path, png = tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "r.png"
    rc = sonic(
        "bench",
        "-m",
        "mlp",
        "-u",
        server.http_url,
        "-i",
        "http",
        "--concurrency-range",
        "1:3:2",
        "-p",
        "300",
        "-s",
        "50",
        "-r",
        "4",
        "--warmup",
        "0.2",
        "-f",
        str(csv_path),
        "--json",
        str(json_path),
        "--plot",
        str(png),
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Request concurrency: 3" in out and "Throughput:" in out and "Load generator:" in out
    assert [r.load for r in parse_perf_csv(csv_path)] == [1, 3]
    report = BenchReport.load(json_path)
    assert report.model["name"] == "mlp" and report.settings["protocol"] == "http"
    assert report.model["request_bytes"] == 16 * 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert sonic("bench", "-m", "mpl", "-u", server.grpc_url) == 2
    assert "did you mean 'mlp'" in capsys.readouterr().err
    assert sonic("bench", "-m", "mlp", "-u", "127.0.0.1:1") == 2
    assert sonic("bench", "-m", "sleep", "-u", server.grpc_url) == 2
    assert "--shape INPUT0" in capsys.readouterr().err
    with pytest.raises(BenchError, match="local"):
        run_bench(BenchConfig(model="mlp", protocol="local", repository=("/nonexistent",)))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_wire_reports_server_errors(server: ServerProcess, protocol: str) -> None:
    """The lean wire does not decode answers, but it does tell failures from successes."""
    url = _url(server, protocol)
    host, port = url.rsplit(":", 1)
    from sonic.protocol import grpc_codec, http_codec
    from sonic.protocol.types import InferRequest, InputTensor

    def request(model: str) -> object:
        x = np.zeros((1, 16), np.float32)
        req = InferRequest(model, inputs=[InputTensor("input", "FP32", (1, 16), x)])
        if protocol == "grpc":
            msg = grpc_codec.encode_infer_request(req).SerializeToString()
            return grpc_request(url, "/inference.GRPCInferenceService/ModelInfer", msg)
        chunks, hl = http_codec.encode_infer_request(req)
        return http_request(
            host,
            int(port),
            f"/v2/models/{model}/infer",
            {"Inference-Header-Content-Length": str(hl)},
            b"".join(bytes(c) for c in chunks),
        )

    async def go() -> None:
        sender = WireSender(protocol, url, [request("mlp"), request("nosuch")], timeout=10.0)
        try:
            await sender.send(0)
            with pytest.raises(WireError) as err:
                await sender.send(1)
            assert err.value.code is Code.NOT_FOUND and "nosuch" in err.value.message
            await asyncio.gather(*(sender.send(0) for _ in range(20)))  # still usable, multiplexed
        finally:
            await sender.close()

    asyncio.run(go())

    # the blocking twin (--sync): the same answers; threads 0-3 share one gRPC connection and
    # take turns reading it, each HTTP thread has its own
    sync = SyncWireSender(protocol, url, [request("mlp"), request("nosuch")], timeout=10.0)
    try:
        sync.sender(0)(0)
        with pytest.raises(WireError) as err:
            sync.sender(0)(1)
        assert err.value.code is Code.NOT_FOUND and "nosuch" in err.value.message
        done: list[int] = []
        failed: list[BaseException] = []

        def loop(i: int) -> None:
            send = sync.sender(i)
            try:
                for n in range(50):
                    send(n % 2 if i == 3 else 0)  # thread 3 mixes in failures
                    done.append(i)
            except WireError as exc:
                failed.append(exc)

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert failed and all(isinstance(e, WireError) and e.code is Code.NOT_FOUND for e in failed)
        assert sorted(set(done)) == [0, 1, 2, 3] and done.count(0) == 50
        if protocol == "grpc":
            assert len(sync._grpc) == 1 and not sync._http
        else:
            assert len(sync._http) == 4 and not sync._grpc
    finally:
        sync.close()


def test_worker_runs_as_a_module() -> None:
    """Workers are `python -m sonic.bench.worker FD` (no re-import of the caller's __main__)."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "sonic.bench.worker"], capture_output=True, check=False)
    assert done.returncode != 0  # no fd given: it refuses, it does not hang


# -- connections: perf_analyzer's layout ------------------------------------------------------------------


def test_grpc_connection_layout_is_perf_analyzers() -> None:
    """NVIDIA's client library gives 6 client objects one gRPC channel, and perf_analyzer's
    two control clients come first: senders 0-3 on the first connection, then 6 per connection
    (what `ss` shows for perf_analyzer 2.41: 1 connection at concurrency 4, 2 at 5, 3 at 16)."""

    def layout(c: int, share: int = 6) -> list[int]:
        return [grpc_connection_of(i, share) for i in range(c)]

    assert layout(4) == [0, 0, 0, 0]
    assert layout(5) == [0, 0, 0, 0, 1]
    assert len(set(layout(16))) == 3 and layout(16).count(0) == 4 and layout(16).count(2) == 6
    assert len(set(layout(16, 1))) == 16  # one connection per sender
    assert set(layout(16, 0)) == {0}  # one per process


def _established(proc: Any, port: int) -> int:
    return sum(
        1
        for c in proc.net_connections(kind="tcp")
        if c.status == "ESTABLISHED" and c.raddr and c.raddr.port == port
    )


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_bench_opens_the_connections_of_its_layout(server: ServerProcess, sync: bool) -> None:
    """The load generator's own TCP connections to the server after a level at concurrency 16:
    3 wire connections with perf_analyzer's layout, 16 with one per sender, 1 with one per
    process, with asyncio senders and with blocking threads alike; the control connection
    (metadata, statistics) is there in every case."""
    port = int(server.grpc_url.rsplit(":", 1)[1])
    seen = {}
    for share in (6, 1, 0):
        cfg = BenchConfig(
            model="mlp", url=server.grpc_url, grpc_senders_per_connection=share, sync=sync, **QUICK
        )
        with LoadEngine(cfg) as engine:
            r = engine.measure("concurrency", 16, max_trials=1)
            assert r.errors == 0 and r.requests > 0
            seen[share] = _established(engine.ps[0], port)
    assert seen[6] - seen[0] == 2 and seen[1] - seen[0] == 15, seen
    with pytest.raises(InvalidArgument, match="grpc-senders-per-connection"):
        BenchConfig(model="mlp", grpc_senders_per_connection=-1)


def test_http_requests_go_out_as_head_then_body() -> None:
    """sonic bench writes an HTTP request as perf_analyzer's libcurl does: the head (through the
    blank line), then the body, as two writes."""
    from sonic.bench.wire import http_parts, http_request

    body = b'{"inputs": []}'
    headers = {"Content-Type": "application/json"}
    payload = http_request("localhost", 8000, "/v2/models/mlp/infer", headers, body)
    head, rest = http_parts(payload)
    assert head.startswith(b"POST /v2/models/mlp/infer HTTP/1.1\r\n") and head.endswith(b"\r\n\r\n")
    assert rest == body and head + rest == payload
    assert b"Content-Length: 14\r\n" in head


# -- the blocking wire against misbehaving peers (fake servers on loopback) --------------------------------

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def _h2_block(*headers: tuple[str, str]) -> bytes:
    return bytes(hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers]))


_GRPC_OK = _h2_block((":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0"))
_GRPC_HEAD = _h2_block((":status", "200"), ("content-type", "application/grpc"))
_GRPC_TRAILERS = _h2_block(("grpc-status", "0"))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


class FakeGrpcServer:
    """A minimal HTTP/2 peer: the preface, SETTINGS (``settings``, plus windows of 1 GiB) and
    their ACKs, then ``on_call(server, conn, index, sid)`` for every HEADERS frame (``index``:
    which accepted connection); the default answers at once (trailers-only, grpc-status 0).
    ``on_call`` returns False to stop reading the connection (it stays open)."""

    def __init__(self, on_call: Callable[..., bool] | None = None, settings: bytes = b"") -> None:
        self.on_call = on_call or (lambda srv, conn, index, sid: srv.answer(conn, sid) or True)
        self.settings = settings
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.send_lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, len(self.conns) - 1), daemon=True).start()

    def send(self, conn: socket.socket, data: bytes) -> None:
        with self.send_lock, contextlib.suppress(OSError):
            conn.sendall(data)

    def answer(self, conn: socket.socket, sid: int) -> None:
        self.send(conn, _h2_frame(1, 0x5, sid, _GRPC_OK))  # HEADERS, END_STREAM | END_HEADERS

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            assert _recv_exact(conn, len(_H2_PREFACE)) == _H2_PREFACE
            settings = self.settings + struct.pack(">HI", 0x4, 1 << 30)
            self.send(conn, _h2_frame(4, 0, 0, settings) + _h2_frame(8, 0, 0, struct.pack(">I", 1 << 30)))
            while True:
                head = _recv_exact(conn, 9)
                length = int.from_bytes(head[:3], "big")
                ftype, flags = head[3], head[4]
                sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                _recv_exact(conn, length)
                if ftype == 4 and not flags & 1:
                    self.send(conn, _h2_frame(4, 1, 0))
                elif ftype == 1 and not self.on_call(self, conn, index, sid):
                    self.stop.wait()
                    return
        except (ConnectionError, OSError):
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for c in self.conns:
            c.close()


def _grpc_call() -> tuple[bytes, bytes]:
    return grpc_request("127.0.0.1", "/inference.GRPCInferenceService/ModelInfer", b"x" * 100)


def test_sync_grpc_times_out_a_call_while_others_are_answered() -> None:
    """A call the server never answers fails after the timeout, although the connection is
    busy with other threads' answers (reads never go quiet): as GrpcWire's watchdog does."""
    srv = FakeGrpcServer(lambda s, conn, index, sid: sid == 1 or s.answer(conn, sid) or True)
    wire = SyncGrpcWire("127.0.0.1", srv.port, timeout=1.0)
    block, message = _grpc_call()
    stuck: list[BaseException] = []

    def first() -> None:
        try:
            wire.call(block, message)
        except WireError as exc:
            stuck.append(exc)

    t = threading.Thread(target=first, daemon=True)
    t0 = time.monotonic()
    try:
        t.start()
        time.sleep(0.1)  # stream 1 is out
        while t.is_alive() and time.monotonic() - t0 < 5:
            wire.call(block, message)  # answered at once, keeps the socket busy
        t.join(0.1)
        assert not t.is_alive(), "the unanswered call still waits"
        assert len(stuck) == 1 and "no answer within 1.0 s" in str(stuck[0])
        assert isinstance(stuck[0], WireError) and stuck[0].code is Code.UNAVAILABLE
        assert time.monotonic() - t0 < 2.5
        wire.call(block, message)  # the connection is still good
    finally:
        wire.close()
        srv.close()


def test_sync_http_times_out_a_trickling_answer() -> None:
    """A server that trickles its answer a byte at a time does not keep the call waiting past
    its timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            if stop.wait(0.05):
                break
            with contextlib.suppress(OSError):
                conn.send(bytes([b]))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    wire = SyncHttpWire("127.0.0.1", listener.getsockname()[1], timeout=0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(WireError, match=r"no answer within 0\.5 s"):
            wire.call(http_request("127.0.0.1", 1, "/", {}, b"{}"))
        assert time.monotonic() - t0 < 2
    finally:
        stop.set()
        wire.close()
        listener.close()


def test_sync_grpc_write_failure_loses_the_connection() -> None:
    """A write the server does not take within the timeout fails its call, and the calls after
    it go out on a new connection (not after a frame cut short on the old one)."""

    def on_call(srv: FakeGrpcServer, conn: socket.socket, index: int, sid: int) -> bool:
        if index == 0 and sid == 3:
            return False  # stops reading: the client's write of 32 MB stalls
        srv.answer(conn, sid)
        return True

    srv = FakeGrpcServer(on_call)
    wire = SyncGrpcWire("127.0.0.1", srv.port, timeout=1.0)
    block, message = _grpc_call()
    try:
        wire.call(block, message)  # stream 1: the server's windows are known now
        t0 = time.monotonic()
        with pytest.raises(WireError) as err:
            wire.call(block, b"\0" * (32 << 20))
        assert err.value.code is Code.UNAVAILABLE and time.monotonic() - t0 < 5
        wire.call(block, message)
        assert len(srv.conns) == 2
    finally:
        wire.close()
        srv.close()


def test_sync_http_slow_write_is_bound_by_the_timeout_not_the_read_wakeup() -> None:
    """A request body that takes longer than a read wake-up (timeout / 4) to go out, because
    the server is slow to read it, is not a lost connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    body = b"\0" * (32 << 20)

    def serve() -> None:
        conn, _ = listener.accept()
        time.sleep(1.5)  # the client's write stalls meanwhile
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(1 << 16)
        got = buf.partition(b"\r\n\r\n")[2]
        n = len(got)
        while n < len(body):
            n += len(conn.recv(1 << 20))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.recv(1)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    wire = SyncHttpWire("127.0.0.1", listener.getsockname()[1], timeout=4.0)
    try:
        wire.call(http_request("127.0.0.1", 1, "/", {}, body))
    finally:
        wire.close()
        listener.close()


def test_sync_grpc_respects_the_servers_limit_of_concurrent_streams() -> None:
    """With SETTINGS_MAX_CONCURRENT_STREAMS 1, threads sharing a connection wait for room
    instead of opening more streams (as GrpcWire's wait_slot)."""
    open_streams: set[int] = set()
    most = [0]
    lock = threading.Lock()

    def on_call(srv: FakeGrpcServer, conn: socket.socket, index: int, sid: int) -> bool:
        with lock:
            open_streams.add(sid)
            most[0] = max(most[0], len(open_streams))

        def later() -> None:
            with lock:
                open_streams.discard(sid)
            srv.answer(conn, sid)

        threading.Timer(0.02, later).start()
        return True

    srv = FakeGrpcServer(on_call, settings=struct.pack(">HI", 0x3, 1))
    wire = SyncGrpcWire("127.0.0.1", srv.port, timeout=5.0)
    block, message = _grpc_call()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for _ in range(5):
                wire.call(block, message)
        except BaseException as exc:
            errors.append(exc)

    try:
        wire.call(block, message)  # the server's settings are known now
        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors and most[0] == 1
    finally:
        wire.close()
        srv.close()


def test_sync_grpc_drains_a_connection_going_away() -> None:
    """After a graceful GOAWAY, the calls the server still answers complete on the old
    connection, while new calls go out at once on a new one (with its own reader)."""
    sent_goaway = threading.Event()

    def on_call(srv: FakeGrpcServer, conn: socket.socket, index: int, sid: int) -> bool:
        if index > 0:
            srv.answer(conn, sid)
            return True
        srv.send(conn, _h2_frame(7, 0, 0, struct.pack(">II", sid, 0)))  # GOAWAY, NO_ERROR
        sent_goaway.set()

        def answer_in_two() -> None:
            time.sleep(0.6)
            srv.send(conn, _h2_frame(1, 0x4, sid, _GRPC_HEAD))
            time.sleep(0.2)
            srv.send(conn, _h2_frame(1, 0x5, sid, _GRPC_TRAILERS))
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=answer_in_two, daemon=True).start()
        return True

    srv = FakeGrpcServer(on_call)
    wire = SyncGrpcWire("127.0.0.1", srv.port, timeout=5.0)
    block, message = _grpc_call()
    first: list[BaseException | None] = []

    def call_first() -> None:
        try:
            wire.call(block, message)
            first.append(None)
        except WireError as exc:
            first.append(exc)

    t = threading.Thread(target=call_first)
    try:
        t.start()
        assert sent_goaway.wait(2)
        time.sleep(0.2)  # the reader has seen the GOAWAY
        t0 = time.monotonic()
        wire.call(block, message)  # on a new connection, answered at once
        took = time.monotonic() - t0
        t.join(5)
        assert first == [None]
        assert took < 0.4
        assert len(srv.conns) == 2
    finally:
        wire.close()
        srv.close()


def test_http_requests_are_written_as_head_then_body() -> None:
    """HttpWire and SyncHttpWire write each request as two writes, head then body, on their
    real transport and socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buf) < n:
                    buf += conn.recv(1 << 16)
                buf = buf[n:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    payload = http_request("127.0.0.1", port, "/v2/models/m/infer", {"A": "b"}, b'{"inputs": []}')
    head, body = http_parts(payload)

    async def go() -> list[bytes]:
        wire = HttpWire("127.0.0.1", port, timeout=5.0)
        try:
            await wire.call(payload)  # opens the connection
            transport = wire._free[0].transport
            writes: list[bytes] = []
            real_write = transport.write

            def write(data: bytes) -> None:
                writes.append(bytes(data))
                real_write(data)

            transport.write = write
            await wire.call(payload)
            return writes
        finally:
            await wire.close()

    class CountingSocket(socket.socket):
        writes: list[bytes]

        def sendall(self, data: Any, flags: int = 0) -> None:
            self.writes.append(bytes(data))
            super().sendall(data, flags)

    sync = SyncHttpWire("127.0.0.1", port, timeout=5.0)
    try:
        assert asyncio.run(go()) == [head, body]
        sync.call(payload)  # opens the connection
        real = sync._sock
        assert real is not None
        counting = CountingSocket(fileno=os.dup(real.fileno()))
        counting.settimeout(real.gettimeout())
        counting.writes = []
        sync._sock = counting
        sync.call(payload)
        assert counting.writes == [head, body]
        real.close()
    finally:
        sync.close()
        listener.close()
