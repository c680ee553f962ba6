"""``sonic bench`` agrees with NVIDIA perf_analyzer, and measures NVIDIA's Triton too.

Agreement: the same ``sonic serve``, the same model and closed-loop concurrency, measured by
perf_analyzer and by sonic bench in turn (2 s windows, the same stability rule). The
benchmark (benchmarks/bench_vs_perf_analyzer.py) shows agreement within 10 %; here the
tolerance is 25 %, so that a busy CI machine does not fail the test, while a real
disagreement (a wrong window, a client that is the bottleneck) still does. The server gets
its own cores and the load generators the others, so that the tools' own CPU costs do not
move the server's throughput.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sonic import zoo
from sonic.bench.engine import BenchConfig, run_bench
from sonic.bench.inputs import parse_shapes
from sonic.server.process import ServerProcess
from triton_ref import parse_perf_csv, run_perf_analyzer, run_triton, triton_available, unavailable_reason

pytestmark = [pytest.mark.triton, pytest.mark.slow]

TOLERANCE = 0.25
WINDOW_MS = 2000


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not triton_available():
        pytest.skip(f"perf_analyzer unavailable: {unavailable_reason()}")
    path = tmp_path_factory.mktemp("agreement-repo")
    zoo.write_sonic_repository(path, models=("mlp",), intra_op_threads=1)
    zoo.write_conformance_repository(path, ["sleep"], sleep_delay_ms=10)
    cfg = path / "sleep" / "config.pbtxt"
    # no dynamic batching: a FIFO queue in front of one instance (100/s; 4 in flight: 40 ms).
    # With batching, a closed loop is bistable (one group of requests per execution, or two
    # that alternate), and which state a run settles in depends on its first milliseconds.
    cfg.write_text(re.sub(r"dynamic_batching \{[^}]*\}\n", "", cfg.read_text()))
    return path


@contextlib.contextmanager
def separate_cores(server: ServerProcess) -> Iterator[None]:
    """The server's threads on the first half of the cores, this process (and so the load
    generators it starts) on the other half; this process's cores are restored after."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        yield
        return
    half = len(mine) // 2
    assert server.proc is not None
    procs = [psutil.Process(server.proc.pid)]
    procs += procs[0].children(recursive=True)
    for p in procs:
        for t in p.threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(t.id, set(mine[:half]))
    os.sched_setaffinity(0, set(mine[half:]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(mine))


def _both(
    server: ServerProcess, tmp_path: Path, model: str, concurrency: int, shape: str
) -> tuple[float, ...]:
    """(perf_analyzer throughput, p50, sonic bench throughput, p50)."""
    csv_path = tmp_path / "pa.csv"
    args = ["-m", model, "-u", server.grpc_url, "-i", "grpc", "--concurrency-range", str(concurrency),
            "-p", str(WINDOW_MS), "-s", "10", "--max-trials", "10", "-f", str(csv_path)]  # fmt: skip
    if shape:
        args += ["--shape", shape]
    run_perf_analyzer(args, timeout=300)
    (pa,) = parse_perf_csv(csv_path)
    shapes = parse_shapes([shape] if shape else [])
    cfg = BenchConfig(model=model, url=server.grpc_url, concurrency=[concurrency], shapes=shapes,
                      measurement_interval_ms=WINDOW_MS, stability_percent=10, max_trials=10)  # fmt: skip
    (ours,) = run_bench(cfg).results
    assert ours.errors == 0
    return pa.throughput, pa.p50_us, ours.throughput, ours.latency_us["p50"]


def _close(a: float, b: float) -> bool:
    return abs(a / b - 1) <= TOLERANCE


@pytest.mark.parametrize(("model", "concurrency", "shape"), [("sleep", 4, "INPUT0:16"), ("mlp", 4, "")])
def test_agrees_with_perf_analyzer(
    repo: Path, tmp_path: Path, model: str, concurrency: int, shape: str
) -> None:
    """One retry: a shared machine can disturb one of the two measurements."""
    with ServerProcess(repo) as server, separate_cores(server):
        for _ in range(2):
            pa_tp, pa_p50, tp, p50 = _both(server, tmp_path, model, concurrency, shape)
            if _close(tp, pa_tp) and _close(p50, pa_p50):
                break
    assert tp == pytest.approx(pa_tp, rel=TOLERANCE), "throughput: sonic bench vs perf_analyzer"
    assert p50 == pytest.approx(pa_p50, rel=TOLERANCE), "p50 latency: sonic bench vs perf_analyzer"


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
