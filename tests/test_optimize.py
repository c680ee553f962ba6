"""``sonic optimize``: the search space, the searches, the Pareto front, and a real search on
a real server.

The searches are checked on a synthetic objective (so that the optimum is known and the
number of measurements can be counted); the end-to-end runs use the ``sleep`` model, whose
best configuration is certain even on a busy machine: with 4 requests in flight and 5 ms per
execution, max_batch_size 1 serves ~200 requests/s and max_batch_size 8 serves 400-800 (the
closed-loop senders settle into one group of 4 or two alternating groups of 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sonic import zoo
from sonic.bench.cli import register
from sonic.bench.engine import BenchConfig
from sonic.bench.optimize import (
    Candidate,
    Control,
    Point,
    SearchSpace,
    apply_candidate,
    choose_best,
    optimize,
    pareto_front,
    search_brute,
    search_coordinate,
    search_halving,
)
from sonic.protocol.errors import InvalidArgument
from sonic.repository.config import parse_config
from sonic.server.process import ServerProcess

BASE = parse_config(
    'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
    'input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]\n'
    'output [{ name: "y" data_type: TYPE_FP32 dims: [2] }]\n'
    "instance_group [{ count: 1 kind: KIND_CPU }]\n",
    "test",
)


def _point(c: Candidate, throughput: float, p99_ms: float, conc: int = 4) -> Point:
    return Point(c, conc, throughput, p99_ms * 500, p99_ms * 1e3, p99_ms * 600, 1.0, 0.0, 0.0, 0, True, 1.0)


def cand(
    instances: int = 1, mbs: int = 8, pref: tuple[int, ...] = (), delay: int = 0, threads: int = 0
) -> Candidate:
    return Candidate(instances, mbs, pref, delay, threads)


# -- the space and the configs ----------------------------------------------------------------------


def test_space_keeps_valid_configurations_only() -> None:
    space = SearchSpace(instances=[1, 2], max_batch_size=[1, 8], preferred=["none", "max", "4+8"],
                        max_queue_delay_us=[0, 100], threads=[0])  # fmt: skip
    all_ = space.all(base_mbs=8)
    # mbs 1: none, max (= 1); "4+8" does not fit. mbs 8: none, max (= 8), 4+8 -> 5 × 2 × 2
    assert len(all_) == 20
    assert cand(1, 1, (1,), 100) in all_ and cand(2, 8, (4, 8), 0) in all_
    assert not [c for c in all_ if c.max_batch_size == 1 and c.preferred == (4, 8)]
    assert len(space.all(base_mbs=8, min_batch=2)) == 12  # -b 2 rules out max_batch_size 1
    assert SearchSpace(max_batch_size=[]).dims(16)["max_batch_size"] == [16]  # the model's own
    with pytest.raises(InvalidArgument, match="none, max, half"):
        SearchSpace(preferred=["lots"]).all(8)


def test_apply_candidate() -> None:
    cfg = apply_candidate(BASE, cand(3, 16, (4, 16), 250, 2))
    assert cfg.max_batch_size == 16 and cfg.instance_group[0].count == 3
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"
    off = apply_candidate(cfg, cand(1, 16, (), -1, 0))
    assert not off.HasField("dynamic_batching") and "intra_op_thread_count" not in off.parameters
    assert BASE.max_batch_size == 8  # the base is not modified
    assert cand(2, 8, (4,), -1, 1).label() == "i2 mbs8 pref4 delayoff t1"


def test_pareto_front_and_best() -> None:
    a, b, c, d = cand(1), cand(2), cand(1, delay=100), cand(2, delay=100)
    points = [_point(a, 100, 1.0), _point(b, 200, 2.0), _point(c, 150, 3.0), _point(d, 202, 5.0)]
    front = pareto_front(points)
    assert [p.candidate for p in front] == [a, b, d]  # c: b is faster and has lower p99
    assert choose_best(points, budget_us=2500).candidate == b  # type: ignore[union-attr]
    assert choose_best(points, budget_us=500) is None
    # d is within 2 % of b on throughput: it does not win with its doubled p99 and resources
    assert choose_best(points, budget_us=None).candidate == b  # type: ignore[union-attr]
    cheap = cand(1, mbs=4)
    close = [_point(b, 200, 2.0), _point(cheap, 198, 2.5)]
    assert [p.candidate for p in pareto_front(close)] == [b]
    assert choose_best(close, None).candidate == cheap  # type: ignore[union-attr]


class FakeMeasure:
    """A known objective: throughput = 100 · instances − |delay − 500| / 10 + mbs; p99 =
    1 ms. Counts the measurements."""

    def __init__(self) -> None:
        self.calls: list[Candidate] = []

    def __call__(self, c: Candidate, scale: float = 1.0, budget_us: float | None = None) -> list[Point]:
        self.calls.append(c)
        return [_point(c, self.throughput(c), 1.0)]

    @staticmethod
    def throughput(c: Candidate) -> float:
        return 100 * c.instances - abs(c.max_queue_delay_us - 500) / 10 + c.max_batch_size


SPACE = SearchSpace(instances=[1, 2, 3, 4], max_batch_size=[8, 16, 32], preferred=["none"],
                    max_queue_delay_us=[0, 100, 500, 1000, 2000], threads=[0])  # fmt: skip
OPTIMUM = cand(4, 32, (), 500)


def test_brute_force_measures_everything() -> None:
    m = FakeMeasure()
    search_brute(SPACE, 8, 1, m, None)
    assert len(m.calls) == 60 and max(m.calls, key=FakeMeasure.throughput) == OPTIMUM


def test_coordinate_ascent_finds_the_optimum_with_fewer_measurements() -> None:
    m = FakeMeasure()
    search_coordinate(SPACE, 8, 1, m, None, start={"instances": 1, "max_batch_size": 8})
    assert OPTIMUM in m.calls
    assert len(set(m.calls)) < 20  # vs 60 for brute force


def test_successive_halving_keeps_the_best() -> None:
    m = FakeMeasure()
    search_halving(SPACE, 8, 1, m, None, eta=3, max_candidates=60)
    # rungs of 60, 20, 7 and 3 candidates at 1/27, 1/9, 1/3 and 1 × the window
    assert len(m.calls) == 60 + 20 + 7 + 3
    assert OPTIMUM in m.calls[-3:]  # it survived every rung


# -- a real search ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optimize-repo")
    zoo.write_conformance_repository(path, ["sleep"], sleep_delay_ms=5)
    zoo.write_sonic_repository(path, models=("mlp",))
    return path


QUICK: dict[str, Any] = {
    "measurement_interval_ms": 300,
    "max_trials": 3,
    "stability_percent": 50.0,
    "warmup_s": 0.2,
}


def test_optimize_on_its_own_server(repo: Path, tmp_path: Path) -> None:
    bench = BenchConfig(model="sleep", shapes={"INPUT0": (16,)}, **QUICK)
    space = SearchSpace(instances=[1], max_batch_size=[1, 8], preferred=["none"], max_queue_delay_us=[0],
                        threads=[2])  # fmt: skip
    report = optimize(bench, space, concurrency=[4], budget_ms=1000, repository=repo)
    assert report.search == "brute" and report.measurements == 2
    assert {p.candidate.max_batch_size for p in report.points} == {1, 8}
    best = report.best
    assert best is not None and best.candidate.max_batch_size == 8
    slow = next(p for p in report.points if p.candidate.max_batch_size == 1)
    # batching: 2 to 4 requests per 5 ms execution (the 4 senders may settle into two groups)
    assert best.throughput > 1.5 * slow.throughput
    assert best.avg_batch >= 1.9 and slow.avg_batch == pytest.approx(1.0)
    assert best.candidate.threads == 0  # python backend: no thread setting to vary
    assert report.best_config is not None
    written = parse_config(report.best_config, "best")
    assert written.max_batch_size == 8 and written.backend == "python"
    assert written.parameters["delay_ms"].string_value == "5"  # the model's own settings stay
    files = report.write(tmp_path / "out")
    assert (tmp_path / "out" / "config.pbtxt").read_text() == report.best_config
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["best"]["candidate"]["max_batch_size"] == 8 and len(files) == 3
    assert (repo / "sleep" / "config.pbtxt").read_text().count("max_batch_size: 8") == 1  # untouched


@pytest.fixture()
def explicit_server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--model-control-mode=explicit", "--load-model=sleep") as s:
        yield s


def test_optimize_a_running_server_and_restore_it(explicit_server: ServerProcess) -> None:
    url = explicit_server.http_url
    bench = BenchConfig(model="sleep", url=url, protocol="http", shapes={"INPUT0": (16,)}, **QUICK)
    space = SearchSpace(instances=[1, 2], max_batch_size=[4], preferred=["none"], max_queue_delay_us=[0])
    report = optimize(bench, space, concurrency=[2], search="coordinate")
    assert report.search == "coordinate" and report.points
    assert {p.candidate.max_batch_size for p in report.points} == {4}
    assert report.best_config is None  # no budget: nothing to write
    cfg = Control("http", explicit_server.http_url, "sleep").config()
    assert cfg.max_batch_size == 8  # the model's own configuration is back


def test_cli(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "opt"
    args = parser.parse_args([
        "optimize", "-m", "sleep", "--model-repository", str(repo), "--shape", "INPUT0:16", "-i", "http",
        "--instances", "1", "--max-batch-size", "1,8", "--max-queue-delay-us", "0,off", "--concurrency", "4",
        "-p", "300", "-r", "3", "-s", "50", "--warmup", "0.2", "--latency-budget-ms", "500", "-o", str(out),
    ])  # fmt: skip
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "BEST" in text and "pareto" in text
    assert "max_batch_size: 8" in (out / "config.pbtxt").read_text(), text
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    args = parser.parse_args(["optimize", "-m", "sleep"])
    assert args.handler(args) == 2  # neither a repository nor a server
