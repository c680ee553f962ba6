"""``sonic plan``: the worked examples reproduce the published numbers, and every figure
matches a hand calculation written out here.

The examples live in examples/plan/ (ProtoDUNE-SP, arXiv:2009.04509; the white paper's 1:300
ratio, arXiv:2203.16255); their files say which inputs are published, derived or assumed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sonic.bench.cli import register
from sonic.bench.plan import (
    DEFAULT_PRICES,
    Price,
    Profile,
    ServerCurve,
    event_time,
    load_plan_file,
    make_plan,
    solve,
)
from sonic.bench.results import BenchReport, LevelResult
from sonic.protocol.errors import InvalidArgument

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plan"


def sonic(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


# -- the worked examples -------------------------------------------------------------------------------


def test_protodune() -> None:
    plan = load_plan_file(EXAMPLES / "protodune.yaml")
    # by hand: 215 sequential requests of 60.19 ms on top of 110 s of CPU work
    wait = 215 * 0.06019
    t = 110 + wait  # 122.94 s per event as a service
    assert plan.inline_s == 330
    assert plan.at_ratio.event_s == pytest.approx(t, rel=1e-6)
    assert plan.ml_speedup == pytest.approx(220 / wait, rel=1e-6)  # 17.00
    assert plan.job_speedup == pytest.approx(330 / t, rel=1e-6)  # 2.684
    # a GPU serves as many threads as its capacity covers: X · T / (inferences per event)
    ratio = 30443 * t / (215 * 256)  # 68.00
    assert plan.ratio == pytest.approx(ratio, rel=1e-6)
    # the published figures, to the precision they were published with
    assert round(plan.ml_speedup) == 17
    assert round(plan.job_speedup, 1) == 2.7
    assert round(plan.ratio) == 68
    # the GPU is exactly saturated at the ratio: the operating point is the knee
    assert plan.at_ratio.utilization == pytest.approx(1.0, rel=1e-6)
    assert plan.at_ratio.remote_ms == pytest.approx(60.19, rel=1e-6)
    # 2000 threads: ceil(2000 / 68.0) = 30 GPUs, and all threads still at full speed
    assert plan.servers == math.ceil(2000 / ratio) == 30
    assert plan.threads / plan.cluster.event_s == pytest.approx(2000 / t, rel=1e-6)
    # network: 215 requests × (2,359,296 + 4,096) bytes per event, every 122.94 s
    per_thread_gbps = 215 * (2359296 + 4096) * 8 / t / 1e9
    assert plan.bandwidth_gbps(plan.at_ratio, 1) == pytest.approx(per_thread_gbps, rel=1e-6)  # 33 Mbit/s
    assert plan.bandwidth_gbps(plan.at_ratio, plan.ratio) == pytest.approx(per_thread_gbps * ratio, rel=1e-6)
    # cost per million events, on-site CPUs and cloud GPUs ($0.01 and $0.35 per hour)
    (row,) = [c for c in plan.costs if c.price.name == "on-site CPU + cloud GPU"]
    assert row.cpu_only_per_million == pytest.approx(0.01 * 330 / 3600 * 1e6)  # $916.67
    assert row.service_per_million == pytest.approx((0.01 + 0.35 / ratio) * t / 3600 * 1e6, rel=1e-6)  # $517
    assert row.cluster_per_million == pytest.approx(
        (2000 * 0.01 + 30 * 0.35) / (2000 / t * 3600) * 1e6, rel=1e-6
    )
    assert plan.published == {"ml_speedup": 17, "job_speedup": 2.7, "threads_per_gpu": 68}


def test_protodune_derivation_from_the_published_ratios() -> None:
    """The example's inputs follow from 17, 2.7 and 68 (plus an assumed scale)."""
    f = (1 - 1 / 2.7) / (1 - 1 / 17)  # Amdahl: the ML fraction of the CPU-only time
    assert f == pytest.approx(0.669, abs=5e-4)
    assert pytest.approx(f, abs=3e-3) == 220 / 330  # the assumed 220 s of 330 s is consistent
    latency_ms = 220 / 17 / 215 * 1e3
    assert latency_ms == pytest.approx(60.19, abs=0.01)
    throughput = 68 * 215 * 256 / (110 + 220 / 17)
    assert throughput == pytest.approx(30443, abs=1)


def test_whitepaper_1_to_300() -> None:
    plan = load_plan_file(EXAMPLES / "whitepaper_1to300.yaml")
    c = 2.0 + 10 * 0.2e-3  # CPU per event: 2 s + 10 requests × 0.2 ms of client work
    w = 10 * 10e-3  # 10 sequential requests of 10 ms
    assert (c + w) / 4 < c  # 4 events in flight hide the wait entirely
    assert plan.at_ratio.event_s == pytest.approx(c, rel=1e-9)
    assert plan.ratio == pytest.approx(74926 * c / 500, rel=1e-6)  # 300.0037
    assert round(plan.ratio) == 300
    assert plan.job_speedup == pytest.approx(2.2 / c, rel=1e-9)  # ×1.099: ML was 9 % of the job
    assert plan.ml_speedup == pytest.approx(0.2 / (c - 2.0), rel=1e-6)  # only the client's 2 ms remain
    assert plan.servers == 100  # 30000 threads / 300
    assert plan.amdahl_limit == pytest.approx(1.1)


# -- the model, by hand --------------------------------------------------------------------------------------


def test_event_time() -> None:
    p = Profile(
        cpu_ms_per_event=100, ml_ms_per_event_inline=50, requests_per_event=10, client_ms_per_request=1
    )
    assert event_time(p, 5.0) == pytest.approx(0.110 + 10 * 0.005)  # synchronous: C + k·R
    p.requests_in_flight = 4  # 10 requests, 4 at a time: 3 waits
    assert event_time(p, 5.0) == pytest.approx(0.110 + 3 * 0.005)
    p.requests_in_flight, p.streams = 1, 2
    assert event_time(p, 5.0) == pytest.approx(0.110)  # (0.110 + 0.050) / 2 < 0.110: hidden
    assert event_time(p, 20.0) == pytest.approx((0.110 + 0.200) / 2)  # not all of it
    p.hidden_fraction = 0.75
    assert event_time(p, 20.0) == pytest.approx(0.110 + 0.25 * 0.200)


def test_event_time_of_a_ragged_workflow_report() -> None:
    """A `sonic run` report of ProtoDUNE-like events: 307 requests over 200 events from 200
    calls (ragged events send 2 requests at once): one round trip per event, not 307/200 / 2."""
    p = Profile(
        cpu_ms_per_event=6.0,
        ml_ms_per_event_inline=13.0,
        requests_per_event=307 / 200,
        requests_in_flight=307 / 200,
    )
    assert event_time(p, 10.0) == pytest.approx(0.006 + 0.010)
    p.requests_in_flight = 1  # one request at a time: 1.535 round trips per event
    assert event_time(p, 10.0) == pytest.approx(0.006 + 1.535 * 0.010)
    with pytest.raises(InvalidArgument, match="requests_in_flight must be >= 1"):
        Profile(cpu_ms_per_event=1, ml_ms_per_event_inline=1, requests_in_flight=0.5)


def test_saturation_is_a_closed_system() -> None:
    """Past the ratio the server is the bottleneck: all threads together get its
    throughput, each thread's event takes N·k·b / X."""
    p = Profile(cpu_ms_per_event=10, ml_ms_per_event_inline=20)
    curve = ServerCurve.by_hand(1000.0, 10.0)  # 1000 inferences/s, 10 ms
    plan = make_plan(p, curve, threads=100, prices=[Price("x", 1.0, 10.0)])
    assert plan.ratio == pytest.approx(1000 * 0.020, rel=1e-6)  # 20 threads of 50 events/s
    over = solve(p, curve, 40)
    assert over.event_s == pytest.approx(40 / 1000, rel=1e-6)
    assert over.remote_ms == pytest.approx(30.0, rel=1e-6)
    assert over.utilization == pytest.approx(1.0, rel=1e-6)
    under = solve(p, curve, 10)
    assert under.remote_ms == pytest.approx(10.0) and under.utilization == pytest.approx(0.5)
    assert plan.servers == 5  # 100 threads / 20
    assert plan.costs[0].service_per_million == pytest.approx(
        (1.0 + 10.0 / 20) * 0.020 / 3600 * 1e6, rel=1e-6
    )
    half = make_plan(p, curve, threads=100, utilization=0.5)
    assert half.ratio == pytest.approx(10, rel=1e-6) and half.servers == 10


@pytest.mark.parametrize("throughput", [1e6, 1e12, 1e15])
def test_tiny_workflow_on_a_huge_server(throughput: float, capsys: pytest.CaptureFixture[str]) -> None:
    """A server far larger than the workflow needs carries billions of client threads: the
    ratio is still X · T / (k · b), not a failed search."""
    p = Profile(cpu_ms_per_event=1, ml_ms_per_event_inline=0.01)
    plan = make_plan(p, ServerCurve.by_hand(throughput, 1.0), threads=1000)
    # one request of 1 ms on top of 1 ms of CPU: T = 2 ms; the server fills at X · T threads
    assert plan.ratio == pytest.approx(throughput * 0.002, rel=1e-6)
    assert plan.servers == 1 and plan.at_ratio.event_s == pytest.approx(0.002)
    assert plan.cluster.utilization == pytest.approx(1000 / (throughput * 0.002), rel=1e-6)
    assert sonic("plan", "--cpu-ms", "1", "--ml-ms", "0.01", "--server-throughput", f"{throughput:g}",
                 "--server-latency-ms", "1", "--threads", "1000") == 0  # fmt: skip
    shown = re.search(r"GPU:CPU = 1:(\d+)", capsys.readouterr().out)
    assert shown is not None and float(shown.group(1)) == pytest.approx(throughput * 0.002, rel=1e-6)


def test_plan_says_when_the_search_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the search limit, a message that says so (not "no operating point")."""
    from sonic.bench import plan as planmod

    curve = ServerCurve([1, 2, 4], [100.0, 150.0, 160.0], [10.0, 13.3, 25.0])
    profile = Profile(cpu_ms_per_event=1, ml_ms_per_event_inline=1)
    assert make_plan(profile, curve).ratio > 1  # found within the limit...
    monkeypatch.setattr(planmod, "THREADS_SEARCH_FACTOR", 1e-3)  # ...and not within this one
    with pytest.raises(InvalidArgument, match="search limit"):
        make_plan(profile, curve)


def _level(c: int, throughput: float, avg_ms: float) -> LevelResult:
    return LevelResult("concurrency", c, 1, int(throughput * 3), 0, 3.0,
                       {"avg": avg_ms * 1e3, "p50": avg_ms * 1e3, "p99": 2 * avg_ms * 1e3})  # fmt: skip


def test_curve_from_a_bench_report(tmp_path: Path) -> None:
    report = BenchReport(
        {}, {"name": "cnn"}, {}, [_level(1, 100, 10), _level(2, 180, 11.1), _level(4, 200, 20)]
    )
    path = tmp_path / "bench.json"
    path.write_text(report.to_json())
    curve = ServerCurve.from_bench(BenchReport.load(path))
    assert curve.max_throughput == pytest.approx(200, rel=1e-3)
    assert curve.latency_at(0.5) == pytest.approx(10)
    assert curve.latency_at(3) == pytest.approx(11.1 + 0.5 * (20 - 11.1))
    assert curve.latency_at(8) == pytest.approx(8 / 200 * 1e3, rel=1e-3)  # Little's law past the end
    assert ServerCurve.from_bench(report, "p99").latency_at(1) == pytest.approx(20)
    p = Profile(cpu_ms_per_event=90, ml_ms_per_event_inline=30)
    alone = solve(p, curve, 1)
    assert alone.remote_ms == pytest.approx(10) and alone.event_s == pytest.approx(0.1)
    plan = make_plan(p, curve, threads=10)
    # at the ratio every thread gets 1 / T events/s and together they use the whole server
    assert plan.ratio / plan.at_ratio.event_s == pytest.approx(curve.max_throughput, rel=1e-3)


def test_profile_checks() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'cpu_ms_per_event'"):
        Profile.from_mapping({"cpu_ms_per_evnt": 1, "ml_ms_per_event_inline": 1})
    with pytest.raises(InvalidArgument, match="cpu_ms_per_event is required"):
        Profile.from_mapping({"ml_ms_per_event_inline": 1})
    with pytest.raises(InvalidArgument, match=">= 0"):
        Profile(cpu_ms_per_event=-1, ml_ms_per_event_inline=1)
    # a `sonic run` report: the keys under "profile"; bytes_per_request counts as input bytes
    p = Profile.from_mapping({"events": 100, "profile": {"cpu_ms_per_event": 5, "ml_ms_per_event_inline": 2,
                                                         "bytes_per_request": 640}})  # fmt: skip
    assert p.bytes_in_per_request == 640 and p.bytes_per_request == 640


# -- the command ------------------------------------------------------------------------------------------


def test_cli_on_the_worked_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, png = tmp_path / "plan.json", tmp_path / "plan.png"
    assert sonic("plan", str(EXAMPLES / "protodune.yaml"), "--json", str(out_json), "--plot", str(png)) == 0
    text = capsys.readouterr().out
    assert "ML step ×17" in text and "whole job ×2.68" in text and "GPU:CPU = 1:68" in text
    doc = json.loads(out_json.read_text())
    assert doc["gpu_to_cpu"] == "1:68" and doc["cluster"]["gpus"] == 30
    assert png.read_bytes()[:4] == b"\x89PNG"
    # what the paper did not try: two events in flight per thread hide most of the wait
    assert sonic("plan", str(EXAMPLES / "protodune.yaml"), "--streams", "2", "--json", str(out_json)) == 0
    assert json.loads(out_json.read_text())["job_speedup"] == pytest.approx(330 / 110, rel=1e-6)


def test_cli_by_hand_and_with_a_bench_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_hand = ["--server-throughput", "1000", "--server-latency-ms", "10"]
    profile = ["--cpu-ms", "90", "--ml-ms", "30"]
    assert sonic("plan", *profile, *by_hand, "--threads", "100", "--price", "site:0.02:0.5") == 0
    text = capsys.readouterr().out
    assert "GPU:CPU = 1:100" in text and "site" in text and "cloud on-demand" not in text
    report = BenchReport({}, {"name": "cnn"}, {}, [_level(1, 100, 10), _level(4, 200, 20)])
    (tmp_path / "b.json").write_text(report.to_json())
    assert sonic("plan", "--cpu-ms", "90", "--ml-ms", "30", "--bench", str(tmp_path / "b.json")) == 0
    assert "sonic bench" in capsys.readouterr().out
    assert sonic("plan", "--cpu-ms", "90") == 2
    assert "ml_ms_per_event_inline is required" in capsys.readouterr().err
    assert len(DEFAULT_PRICES) == 4


# -- from a `sonic run` report ---------------------------------------------------------------------------

RUN_YAML = """\
name: jets
streams: 1
source:
  type: root
  files: jets.root
  branches: [event]
  collections: {{jet: "jet_f*"}}
  step_size: 100
modules:
  - module: sonic.workflow.modules:Infer
    name: tagger
    client: tagger
    params: {{inputs: {{input: jet}}, outputs: {{output: score}}}}
clients:
  tagger:
    model: mlp
    transport: local
    repository: [{repo}]
"""


def test_sonic_run_report_feeds_sonic_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sonic run --report-json` on the jet tagger (local transport, one stream), then `sonic
    plan REPORT`: the profile's counts are those of the input file, and the plan's figures
    follow from them by hand."""
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    from sonic import zoo
    from sonic.workflow.cli import register as register_run

    n = 300
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, n)  # 0..3 jets per event; events without jets send nothing
    feats = rng.normal(size=(int(counts.sum()), 16)).astype(np.float32)
    jet = ak.zip({f"f{k:02d}": ak.unflatten(feats[:, k], counts) for k in range(16)})
    with uproot.recreate(str(tmp_path / "jets.root")) as f:
        t = f.mktree("Events", {"event": np.int64, "jet": jet.type})
        t.extend({"event": np.arange(n, dtype=np.int64), "jet": jet})
    repo = zoo.write_sonic_repository(tmp_path / "models", models=("mlp",))
    (tmp_path / "process.yaml").write_text(RUN_YAML.format(repo=repo))

    parser = argparse.ArgumentParser(prog="sonic")
    register_run(parser.add_subparsers(dest="command", required=True))
    report_path = tmp_path / "report.json"
    args = parser.parse_args(["run", str(tmp_path / "process.yaml"), "-q", "--report-json", str(report_path)])
    assert args.handler(args) == 0, capsys.readouterr().err
    assert "profile (for sonic plan)" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    prof = report["profile"]

    # counted, not measured: one request per event with jets, its jets the batch
    sent = int((counts > 0).sum())
    assert report["clients"][0]["requests"] == sent
    assert prof["requests_per_event"] == pytest.approx(sent / n)
    assert prof["inferences_per_request"] == pytest.approx(counts.sum() / sent)
    assert prof["bytes_in_per_request"] == pytest.approx(counts.sum() * 16 * 4 / sent)  # FP32 [16]
    assert prof["bytes_out_per_request"] == pytest.approx(counts.sum() * 5 * 4 / sent)  # FP32 [5]
    assert prof["requests_in_flight"] == 1 and prof["streams"] == 1
    # measured: the modules' CPU and the inline (local transport) wait, per event
    assert prof["cpu_ms_per_event"] == pytest.approx(report["cpu_s"] / n * 1e3)
    assert prof["ml_ms_per_event_inline"] == pytest.approx(report["wait_s"] / n * 1e3)
    assert prof["ml_ms_per_event_inline"] > 0

    # the report is the workflow of a plan; an ideal server of 2 ms, far from saturation
    plan_json = tmp_path / "plan.json"
    by_hand = ("--server-throughput", "1e6", "--server-latency-ms", "2")
    assert sonic("plan", str(report_path), *by_hand, "--json", str(plan_json)) == 0
    plan = json.loads(plan_json.read_text())
    for key in ("cpu_ms_per_event", "ml_ms_per_event_inline", "requests_per_event", "inferences_per_request"):
        assert plan["profile"][key] == pytest.approx(prof[key])
    assert plan["name"] == "jets"
    cpu, ml, k = prof["cpu_ms_per_event"], prof["ml_ms_per_event_inline"], prof["requests_per_event"]
    assert plan["inline_s_per_event"] == pytest.approx((cpu + ml) / 1e3)
    # one thread alone: each event waits 2 ms for each of its (on average k < 1) requests
    assert plan["low_load"]["event_s"] == pytest.approx((cpu + k * 2.0) / 1e3, rel=1e-6)
    bits = k * (prof["bytes_in_per_request"] + prof["bytes_out_per_request"]) * 8
    assert plan["network_gbps_per_thread"] == pytest.approx(bits / plan["at_ratio"]["event_s"] / 1e9)

    # --profile: the report's profile replaces a plan file's workflow; flags go on top
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        "workflow: {cpu_ms_per_event: 1000, ml_ms_per_event_inline: 1000}\n"
        "server: {throughput: 1.0e+6, latency_ms: 2}\ncluster: {threads: 10}\n"
    )
    assert sonic("plan", str(plan_file), "--profile", str(report_path), "--json", str(plan_json)) == 0
    assert json.loads(plan_json.read_text())["profile"]["cpu_ms_per_event"] == pytest.approx(cpu)
    assert (
        sonic("plan", "--profile", str(report_path), *by_hand, "--cpu-ms", "5", "--json", str(plan_json)) == 0
    )
    assert json.loads(plan_json.read_text())["profile"]["cpu_ms_per_event"] == 5
    capsys.readouterr()
    assert sonic("plan", str(report_path)) == 2
    assert "sonic run report" in capsys.readouterr().err


def test_a_remote_run_report_says_why_the_inline_time_is_missing() -> None:
    """A `sonic run` report of a gRPC run has no inline ML time; the error quotes the report's
    own note (remote latency, use --ml-ms) instead of asking for a report."""
    note = "not measured: the clients used grpc, so the wait (1.2 ms per event) is the remote latency"
    report = {
        "profile": {
            "cpu_ms_per_event": 2.0,
            "requests_per_event": 1.0,
            "notes": {"ml_ms_per_event_inline": note},
        }
    }
    with pytest.raises(
        InvalidArgument, match="missing from this `sonic run` report: not measured: the clients used grpc"
    ):
        Profile.from_mapping(report)
    with pytest.raises(InvalidArgument, match="with the local transport"):
        Profile.from_mapping({"cpu_ms_per_event": 2.0})
    assert (
        Profile.from_mapping({**report["profile"], "ml_ms_per_event_inline": 3.0}).ml_ms_per_event_inline
        == 3.0
    )
