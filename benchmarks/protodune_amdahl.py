"""Amdahl's law for the ProtoDUNE-like workflow: inline CPU inference vs SONIC, side by side.

    .venv/bin/python benchmarks/protodune_amdahl.py [--events 200] [--streams 1,2,4,8]
                                                     [--repeat 2] [--seed 3] [--out benchmarks/results]

The terms of Wang et al. (arXiv:2009.04509; examples/plan/protodune.yaml), measured on the
shipped workflow (examples/workflows/protodune.yaml: hits, patches, the ``lartpc_cnn`` CNN on
every patch, clusters; parquet + ROOT output) with only the client, the streams and the
input changed:

- *inline*: the CNN in the job's process, called synchronously, one stream (``transport:
  local``, ``sync: true``): the CPU-only job, where every patch waits for the CNN.
- *SONIC*: the CNN on ``sonic serve`` in another process on loopback (gRPC), with 1, 2, 4, 8
  streams: while one event waits for its scores the others find hits, cut patches, cluster.

Per event: the ML step (the SONIC module: its CPU plus its wait for the scores, as the
module sees it), the part of that wait the job could not hide (Report's ``exposed_wait_s``),
and the whole job (wall time / events). From the inline run, ``f`` = ML step / job, and
Amdahl's bound on the whole-job speed-up 1 / (1 - f) (the ML step made free). For each SONIC
run, the measured job speed-up over inline, the ML step's speed-up *as the job feels it*
(inline ML time / what is left of it: module CPU + exposed wait), what Amdahl predicts from
that (1 / ((1 - f) + f / s_ML)), and the latency-hiding fraction (1 - exposed / wait).

Both sides run the same ONNX file with onnxruntime on one thread; the server has no faster
hardware than the job here (the paper's server had a T4 GPU), so the speed-up here comes only
from overlapping the CNN (the server's core) with the job's CPU work (the job's core). On a
2-core machine that is at best 1 / max(f, 1 - f). Each mode runs ``--repeat`` times, interleaved,
and its fastest run counts (other work on a shared machine only ever slows a run down).
Prints a table; writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from sonic.server.process import ServerProcess
from sonic.workflow import Report, process_from_mapping

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "examples" / "workflows"
ML_MODULE = "emtrackmichel"

#: arXiv:2009.04509: ML step x17, whole job x2.7 (synchronous, one T4 GPU per 68 CPU threads)
PAPER = {"ml_speedup": 17.0, "job_speedup": 2.7}


@dataclass
class Row:
    mode: str  # "inline" or "sonic"
    streams: int
    events: int
    wall_s: float
    job_ms: float  # wall time per event
    ml_ms: float  # the ML module per event: its CPU + its wait (the latency an event sees)
    ml_exposed_ms: float  # the ML module's CPU + the wait the job could not hide, per event
    cpu_ms: float  # the other modules' CPU per event (hits, patches, clusters)
    hidden: float  # 1 - exposed wait / wait
    requests: int
    server_compute_ms: float = 0.0  # the server's compute per event (statistics extension)
    job_speedup: float = 1.0  # inline job time / this job time
    ml_speedup: float = 1.0  # inline ML time / this run's ml_exposed_ms
    amdahl_predicted: float = 1.0  # 1 / ((1 - f) + f / ml_speedup)


def row(mode: str, report: Report) -> Row:
    n = max(report.events, 1)
    [ml] = [m for m in report.modules if m.name == ML_MODULE]
    exposed = report.exposed_wait_s if mode == "sonic" else ml.wait_s  # inline: nothing hidden
    compute_us = 0.0
    for c in report.clients:
        for s in c.server_side:
            per_request = s["avg_compute_input_us"] + s["avg_compute_infer_us"] + s["avg_compute_output_us"]
            compute_us += per_request * s["requests"]
    return Row(
        mode=mode,
        streams=report.streams,
        events=report.events,
        wall_s=report.wall_s,
        job_ms=report.wall_s / n * 1e3,
        ml_ms=(ml.cpu_s + ml.wait_s) / n * 1e3,
        ml_exposed_ms=(ml.cpu_s + exposed) / n * 1e3,
        cpu_ms=sum(m.cpu_s for m in report.modules if m.kind == "cpu") / n * 1e3,
        hidden=1.0 - exposed / ml.wait_s if ml.wait_s else 0.0,
        requests=sum(c.requests for c in report.clients),
        server_compute_ms=compute_us / n / 1e3,
    )


def run(data: Path, out: Path, client: dict[str, Any], streams: int, sync: bool) -> Report:
    """The shipped protodune.yaml with ``client``, ``streams`` and ``sync``, on ``data``."""
    config = yaml.safe_load((WORKFLOWS / "protodune.yaml").read_text())
    config["source"]["files"] = str(data / "protodune.h5")
    for sink in config["sinks"]:
        sink["path"] = str(out / Path(sink["path"]).name)
    config.update(clients={"cnn": client}, streams=streams, sync=sync)
    process = process_from_mapping(config, base_dir=WORKFLOWS, file="protodune.yaml")
    return process.run(progress=False)


def prepare(dest: Path, events: int, seed: int) -> None:
    spec = importlib.util.spec_from_file_location("protodune_example", WORKFLOWS / "protodune.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.prepare(dest, events, seed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--streams", default="1,2,4,8", help="streams of the SONIC runs")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each mode; the fastest counts")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    best: dict[tuple[str, int], Report] = {}

    def keep(mode: str, report: Report) -> None:
        key = (mode, report.streams)
        if key not in best or report.wall_s < best[key].wall_s:
            best[key] = report
        print(
            f"{mode}, {report.streams} streams: {report.wall_s / report.events * 1e3:.1f} ms/event",
            file=sys.stderr,
        )

    with tempfile.TemporaryDirectory(prefix="sonic-protodune-") as tmp:
        data = Path(tmp)
        prepare(data, args.events, args.seed)
        out = data / "out"
        local = {"model": "lartpc_cnn", "transport": "local", "repository": [str(data / "models")]}
        with ServerProcess(data / "models") as server:
            remote = {"model": "lartpc_cnn", "transport": "grpc", "servers": [server.grpc_url]}
            run(data, out, remote, 2, False)  # warm-up: the server's first batches
            for _ in range(args.repeat):  # interleaved, so that a busy moment hits every mode alike
                keep("inline", run(data, out, local, 1, True))
                for n in streams:
                    keep("sonic", run(data, out, remote, n, False))
    rows = [row("inline", best[("inline", 1)])] + [row("sonic", best[("sonic", n)]) for n in streams]

    inline = rows[0]
    f = inline.ml_ms / inline.job_ms
    bound = 1.0 / (1.0 - f) if f < 1 else float("inf")
    for r in rows[1:]:
        r.job_speedup = inline.job_ms / r.job_ms
        r.ml_speedup = inline.ml_ms / r.ml_exposed_ms if r.ml_exposed_ms > 0 else float("inf")
        r.amdahl_predicted = 1.0 / ((1.0 - f) + f / r.ml_speedup)
    paper_f = (1 - 1 / PAPER["job_speedup"]) / (1 - 1 / PAPER["ml_speedup"])

    print()
    print(
        f"ProtoDUNE-like workflow, {inline.events} events, {inline.requests} inline requests, "
        f"{os.cpu_count()} CPU cores; the CNN on one onnxruntime thread on both sides"
    )
    print(
        f"inline: ML step {inline.ml_ms:.1f} ms/event of a {inline.job_ms:.1f} ms/event job: "
        f"f = {f:.3f}, Amdahl bound on the job speed-up 1/(1-f) = {bound:.2f}"
    )
    print(
        f"paper (arXiv:2009.04509): ML x{PAPER['ml_speedup']:g}, job x{PAPER['job_speedup']:g} "
        f"=> f = {paper_f:.3f}, bound {1 / (1 - paper_f):.2f}"
    )
    head = (
        f"{'mode':<7} {'streams':>7} {'job ms/ev':>10} {'ML ms/ev':>9} {'ML exposed':>11} "
        f"{'other cpu':>10} {'server ms/ev':>13} {'hidden':>7} {'ML x':>6} {'job x':>6} {'Amdahl x':>9}"
    )
    print(head)
    for r in rows:
        print(
            f"{r.mode:<7} {r.streams:>7} {r.job_ms:>10.2f} {r.ml_ms:>9.2f} {r.ml_exposed_ms:>11.2f} "
            f"{r.cpu_ms:>10.2f} {r.server_compute_ms:>13.2f} {r.hidden:>7.0%} {r.ml_speedup:>6.2f} "
            f"{r.job_speedup:>6.2f} {r.amdahl_predicted:>9.2f}"
        )
    top = max(rows[1:], key=lambda r: r.job_speedup)
    print(
        f"best: {top.streams} streams, job x{top.job_speedup:.2f} of the Amdahl bound x{bound:.2f} "
        f"({top.hidden:.0%} of the CNN's wait hidden behind the CPU work)"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"protodune_amdahl-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = {
        "ml_fraction": f,
        "amdahl_bound": bound,
        "best_streams": top.streams,
        "best_job_speedup": top.job_speedup,
        "paper": {**PAPER, "ml_fraction": paper_f, "amdahl_bound": 1 / (1 - paper_f)},
    }
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "summary": summary}
    result["rows"] = [asdict(r) for r in rows]
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
