"""``sonic bench`` loads a server the way NVIDIA perf_analyzer does, and measures NVIDIA's Triton.

How close the two tools' figures are (throughput and p50 within 10 %) is measured, not
asserted: ``benchmarks/bench_vs_perf_analyzer.py`` prints the ratios with their spread over
alternating rounds. A timed comparison here would flake on a shared machine. What is asserted
is what makes the figures comparable and does not depend on timing: the same closed-loop load
reaches the server over the same connections (how many requests share a connection changes
how the server reads and batches them), in both of perf_analyzer's API modes. perf_analyzer
gives each sender its own client object; NVIDIA's C++ client library shares one gRPC channel
among 6 of them (its two control clients first); over HTTP each has its own connection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sonic import zoo
from sonic.bench.engine import BenchConfig, run_bench
from sonic.server.process import ServerProcess
from triton_ref import run_perf_analyzer, run_triton, triton_available, unavailable_reason

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not triton_available():
        pytest.skip(f"perf_analyzer unavailable: {unavailable_reason()}")
    path = tmp_path_factory.mktemp("agreement-repo")
    zoo.write_sonic_repository(path, models=("mlp",), intra_op_threads=1)
    with ServerProcess(path) as s:
        yield s


def _steady_connections(port: int, run: Callable[[], Any]) -> int:
    """How many TCP connections to ``port`` are established while ``run`` runs: the count
    sampled most often (a short-lived control connection that overlaps the senders' start, as
    perf_analyzer's sometimes does, is not part of the load's layout)."""
    samples: list[int] = []
    stop = threading.Event()

    def count() -> int:
        return sum(
            1
            for c in psutil.net_connections(kind="tcp")
            if c.status == "ESTABLISHED" and c.raddr and c.raddr.port == port
        )

    def watch() -> None:
        while not stop.is_set():
            samples.append(count())
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        run()
    finally:
        stop.set()
        t.join()
    busy = [n for n in samples if n]
    assert busy, "no connection was seen"
    return Counter(busy).most_common(1)[0][0]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("protocol", "concurrency"), [("grpc", 1), ("grpc", 4), ("grpc", 16), ("http", 4)])
def test_same_connections_as_perf_analyzer(
    server: ServerProcess, protocol: str, concurrency: int, mode: str
) -> None:
    """In each API mode: perf_analyzer's default (synchronous: a thread blocked per request)
    against sonic bench's (``--sync``), and ``perf_analyzer --async`` against ``sonic bench --async``."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    port = int(url.rsplit(":", 1)[1])
    quick = ["-p", "300", "-s", "100", "--max-trials", "3"] + (["--async"] if mode == "async" else [])
    pa = _steady_connections(
        port,
        lambda: run_perf_analyzer(
            ["-m", "mlp", "-u", url, "-i", protocol, "--concurrency-range", str(concurrency), *quick],
            timeout=120,
        ),
    )
    cfg = BenchConfig(
        sync=mode == "sync",
        model="mlp",
        url=url,
        protocol=protocol,
        concurrency=[concurrency],
        measurement_interval_ms=300,
        max_trials=3,
        stability_percent=100,
        warmup_s=0.2,
    )
    ours = _steady_connections(port, lambda: run_bench(cfg))
    # sonic bench's worker also holds one control connection (metadata and statistics), which
    # perf_analyzer's control clients share with its senders
    assert ours - 1 == pa, f"perf_analyzer: {pa} connections; sonic bench: {ours} - 1"
    assert pa == {("grpc", 1): 1, ("grpc", 4): 1, ("grpc", 16): 3, ("http", 4): 4}[(protocol, concurrency)]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_measures_nvidia_triton(tmp_path: Path, protocol: str) -> None:
    """The lean wire speaks to NVIDIA's own server: HPACK with its dynamic table, flow
    control, trailers; shared memory through Triton's extension."""
    if not triton_available():
        pytest.skip(f"NVIDIA Triton unavailable: {unavailable_reason()}")
    repo = zoo.write_conformance_repository(tmp_path / "models", ["sleep", "identity_fp32"], sleep_delay_ms=5)
    with run_triton(repo) as triton:
        url = triton.grpc_url if protocol == "grpc" else triton.http_url
        quick: dict[str, Any] = {
            "measurement_interval_ms": 400,
            "max_trials": 4,
            "stability_percent": 50.0,
            "warmup_s": 0.3,
        }
        (r,) = run_bench(BenchConfig(model="sleep", url=url, protocol=protocol, concurrency=[4],
                                     shapes={"INPUT0": (16,)}, **quick)).results  # fmt: skip
        assert r.errors == 0 and r.requests > 0
        assert r.throughput == pytest.approx(4 / (r.latency_us["avg"] / 1e6), rel=0.15)
        assert r.server.requests > 0 and r.server.compute_infer_us >= 5000 * 0.9
        # 4 MB requests and answers: HTTP/2 flow control both ways; shared memory
        for shm in ("none", "system"):
            (big,) = run_bench(BenchConfig(model="identity_fp32", url=url, protocol=protocol, concurrency=[2],
                                           shapes={"INPUT0": (1 << 20,)}, shared_memory=shm,
                                           output_shm_size=4 << 20, **quick)).results  # fmt: skip
            assert big.errors == 0 and big.requests > 0, big.error_messages
