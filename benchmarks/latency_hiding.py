"""Latency hiding: workflow throughput when every event waits D ms for its inference.

    .venv/bin/python benchmarks/latency_hiding.py [--cpu-ms 5] [--delays 0,1,2.5,5]
                                                   [--streams 1,2,4,8] [--seconds 2]
                                                   [--transport grpc] [--json out.json]

Each event costs C ms of CPU in a plain module (a busy loop: reconstruction) and makes one
inference request to the conformance ``sleep`` model (python backend, run by ``sonic serve``
in another process), which sleeps ``delay_ms`` = D per executed batch and echoes its input.
For each D the workflow runs

- with N streams (``--streams``): while an event waits for its answer the other streams run
  their CPU work (CMSSW's ExternalWork on asyncio);
- inline: the same model run in-process and called synchronously (``transport: local``,
  ``sync: true``): no overlap, so ~1 / (C + D).

The reference is the throughput without delay (D = 0, same number of streams); the target
(issue "SONIC client and workflow") is >= 80 % of it with N >= 4 streams for D up to C. The
ceiling of all rows is the CPU alone, 1 / C (printed as "cpu only": the busy module without
any inference). Numbers on a shared 2-core machine are indicative.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonic import zoo
from sonic.server.process import ServerProcess
from sonic.workflow import ArraySource, Event, Process, SonicModule
from sonic.workflow.modules import Busy


class Echo(SonicModule):
    """One request per event to the sleep model (INPUT0: 4 floats), its answer checked."""

    def acquire(self, event: Event) -> dict[str, Any]:
        return {"INPUT0": np.full((1, 4), event["event"], dtype=np.float32)}

    def produce(self, event: Event, result: Any) -> None:
        if result["OUTPUT0"][0, 0] != event["event"]:
            raise AssertionError(f"event {event['event']}: wrong answer {result['OUTPUT0']}")


@dataclass
class Row:
    delay_ms: float
    mode: str  # "N streams", "inline", "cpu only"
    streams: int
    events: int
    seconds: float
    events_per_s: float
    ratio: float = 0.0  # vs D = 0 with the same mode
    wait_ms: float = 0.0  # mean inference wait per event


def run(
    n_events: int, cpu_ms: float, client: dict[str, Any] | None, streams: int, sync: bool
) -> tuple[float, float]:
    source = ArraySource({"event": np.arange(n_events, dtype=np.int64)}, step_size=max(64, n_events // 8))
    modules: list[Any] = [Busy(cpu_ms)]
    if client is not None:
        modules.append(Echo())
    process = Process(source, modules, client=client, streams=streams, sync=sync, server_stats=False)
    report = process.run(progress=False)
    sonic = [m for m in report.modules if m.kind == "sonic"]
    wait = sonic[0].wait_s / max(sonic[0].requests, 1) * 1e3 if sonic else 0.0
    return report.events_per_s, wait


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-ms", type=float, default=5.0, help="CPU time per event, C (ms)")
    ap.add_argument("--delays", default="0,1,2.5,5", help="server-side delays D (ms), 0 first")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=2.0, help="target duration of each run")
    ap.add_argument("--transport", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    if delays[0] != 0:
        delays.insert(0, 0.0)
    streams = [int(s) for s in args.streams.split(",")]
    n_events = max(100, int(args.seconds / (args.cpu_ms / 1e3)))
    rows: list[Row] = []

    thr, _ = run(n_events, args.cpu_ms, None, 1, False)
    rows.append(Row(0.0, "cpu only", 1, n_events, n_events / thr, thr, 1.0))
    print(
        f"cpu only (C = {args.cpu_ms} ms): {thr:.1f} events/s (ceiling {1e3 / args.cpu_ms:.1f})",
        file=sys.stderr,
    )
    reference: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sonic-latency-") as tmp:
        for d in delays:
            repo = Path(tmp) / f"d{d:g}"
            zoo.write_conformance_repository(repo, models=("sleep",), sleep_delay_ms=d)  # type: ignore[arg-type]
            with ServerProcess(repo) as server:
                address = server.grpc_url if args.transport == "grpc" else server.http_url
                remote = {"model": "sleep", "transport": args.transport, "servers": [address]}
                for n in streams:
                    thr, wait = run(n_events, args.cpu_ms, remote, n, False)
                    mode = f"{n} streams"
                    reference.setdefault(mode, thr)
                    rows.append(Row(d, mode, n, n_events, n_events / thr, thr, thr / reference[mode], wait))
                    print(f"D = {d:g} ms, {mode}: {thr:.1f} events/s", file=sys.stderr)
            inline = {"model": "sleep", "transport": "local", "repository": [str(repo)]}
            thr, wait = run(n_events, args.cpu_ms, inline, 1, True)
            reference.setdefault("inline", thr)
            rows.append(Row(d, "inline", 1, n_events, n_events / thr, thr, thr / reference["inline"], wait))
            print(f"D = {d:g} ms, inline: {thr:.1f} events/s", file=sys.stderr)

    print()
    print(f"C = {args.cpu_ms:g} ms CPU per event, {n_events} events per run, transport {args.transport}")
    print(f"{'D ms':>6} {'mode':<11} {'events/s':>9} {'vs D=0':>7} {'wait ms':>8}  target")
    for r in rows:
        target = ""
        if r.mode.endswith("streams") and r.streams >= 4 and 0 < r.delay_ms <= args.cpu_ms:
            target = "ok (>= 80%)" if r.ratio >= 0.8 else "MISSED (< 80%)"
        rate = f"{r.events_per_s:>9.1f} {r.ratio:>6.0%} {r.wait_ms:>8.2f}"
        print(f"{r.delay_ms:>6g} {r.mode:<11} {rate}  {target}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
