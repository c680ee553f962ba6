"""``sonic demo``: one physics workflow end-to-end through ``sonic serve``, then a short load.

1. **Data** from real generators: QCD dijets, all-hadronic tt̄ and W′→WZ at 13 TeV (Pythia 8),
   large-radius jets clustered with FastJet, written as NanoAOD-like ROOT files (the
   ``physics`` extra; without it the demo says so and goes on to step 3).
2. **The workflow**: the shipped jet tagger (16 substructure features → g, q, W, Z, t) served
   by ``sonic serve`` on free loopback ports; ``sonic.workflow`` reads the ROOT files, sends
   each event's jets over gRPC with several events in flight, writes the scores to a ROOT
   file, and prints its report. The tagger's quality is then measured on the generator's
   truth, and the served scores are compared with the same ONNX run in this process.
3. **A short closed-loop load** on the shipped tagger and the ProtoDUNE-like patch CNN, over
   gRPC and HTTP: throughput, latency percentiles, server-side queue and compute time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["register"]

_PROCESSES = ("qcd", "ttbar", "wprime")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the jet-tagging workflow on Pythia 8 jets through sonic serve, then a short load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", type=int, default=150, help="events generated per process (default 150)")
    p.add_argument("--streams", type=int, default=4, help="events in flight in the workflow")
    p.add_argument("--transport", choices=("grpc", "http"), default="grpc", help="workflow transport")
    p.add_argument("--seconds", type=float, default=2.0, help="load duration per model and protocol")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients in the load")
    p.add_argument("--no-load", action="store_true", help="skip the load (step 3)")
    p.add_argument(
        "--keep", type=Path, default=None, help="write data, models and outputs here and keep them"
    )
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="sonic-demo-") as tmp:
        return _run(args, Path(tmp))


def _run(args: argparse.Namespace, work: Path) -> int:
    from sonic.models.repository import write_repository
    from sonic.server.process import ServerProcess

    repo = write_repository(work / "models", ("jets_mlp", "lartpc_cnn"))
    files = _generate(work / "data", args.events, args.seed)
    ok = True
    with ServerProcess(repo) as server:
        print(
            f"sonic demo: sonic serve on http={server.http_url} grpc={server.grpc_url} "
            f"metrics={server.metrics_url}, models jets_mlp and lartpc_cnn from {repo}"
        )
        if files:
            url = server.grpc_url if args.transport == "grpc" else server.http_url
            ok = _workflow(files, work / "out", url, args.transport, args.streams, repo) and ok
        if not args.no_load:
            ok = _load(server.grpc_url, server.http_url, args.seconds, args.concurrency) and ok
    if args.keep is not None:
        print(f"\nsonic demo: data, models and outputs kept in {args.keep}")
    return 0 if ok else 1


def _generate(dest: Path, events: int, seed: int) -> list[Path]:
    try:
        from sonic.data.io import write_nanoaod
        from sonic.data.jets import JetGenConfig, generate_jets
    except ImportError as exc:  # pragma: no cover - the dev install has the physics extra
        print(f"sonic demo: skipping the workflow ({exc}); pip install 'sonic[physics]'")
        return []
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    print(
        f"sonic demo: generating {events} events each of {', '.join(_PROCESSES)} (Pythia 8 + FastJet, 13 TeV)"
    )
    for i, process in enumerate(_PROCESSES):
        t0 = time.perf_counter()
        sample = generate_jets(JetGenConfig(process, events, seed=seed + i))
        path = dest / f"jets_{process}.root"
        write_nanoaod(
            path,
            event=sample.event,
            collections={"FatJet": (sample.n_jets, sample.jets)},
            meta=sample.meta,
        )
        n_jets = int(sample.n_jets.sum())
        print(f"  {process:7s} {events} events, {n_jets} jets in {time.perf_counter() - t0:.1f} s -> {path}")
        files.append(path)
    return files


def _workflow(files: list[Path], out: Path, url: str, transport: str, streams: int, repo: Path) -> bool:
    from sonic.data.jets import LABELS, TAGGER_FEATURES
    from sonic.models.metrics import classification_report
    from sonic.workflow import Process, RootSink, RootSource, read_columns
    from sonic.workflow.modules import Infer

    features = [f"FatJet_{n}" for n in TAGGER_FEATURES]
    process = Process(
        RootSource(files, "Events", ["event", "FatJet_pt", "FatJet_label"], collections={"fatjet": features}),
        [Infer({"input": "fatjet"}, {"output": "FatJet_score"}, name="tagger")],
        [RootSink(out / "tagged.root", columns=["event", "FatJet_pt", "FatJet_label", "FatJet_score"])],
        client={"model": "jets_mlp", "transport": transport, "servers": [url]},
        streams=streams,
        name="jet-tagging",
    )
    print(f"\nsonic demo: jet-tagging workflow, {transport} to {url}, {streams} events in flight")
    report = process.run()
    print(report.table())
    tagged = read_columns(out / "tagged.root")
    scores = np.asarray(tagged["FatJet_score"].content, dtype=np.float64)
    labels = np.asarray(tagged["FatJet_label"].content)
    quality = classification_report(scores, labels, LABELS)
    print(
        f"\ntagger quality on the generator's truth ({quality['n']} jets, written to {out / 'tagged.root'}):"
    )
    for name, q in quality["per_class"].items():
        print(f"  {name}: {q['n']:4d} jets  AUC {q['auc']:.3f}  accuracy {q['accuracy']:.3f}")
    diff = _compare_in_process(repo / "jets_mlp" / "1" / "model.onnx", files, features, scores)
    print(f"served vs in-process onnxruntime on the same jets: max |Δscore| = {diff:.2e}")
    return report.events > 0 and diff < 1e-5


def _compare_in_process(model: Path, files: list[Path], features: list[str], served: Any) -> float:
    import onnxruntime as ort

    from sonic.data.io import read_nanoaod

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = np.concatenate(
        [np.stack([read_nanoaod(f)[n].astype(np.float32) for n in features], axis=1) for f in files]
    )
    local = session.run(None, {"input": inputs})[0]
    return float(np.abs(local - served).max()) if len(local) else 0.0


def _load(grpc_url: str, http_url: str, seconds: float, concurrency: int) -> bool:
    from sonic.bench.load import run_load, table

    results = []
    for model, proto in (("jets_mlp", "grpc"), ("jets_mlp", "http"), ("lartpc_cnn", "grpc")):
        url = grpc_url if proto == "grpc" else http_url
        results.append(
            asyncio.run(run_load(url, model, protocol=proto, concurrency=concurrency, seconds=seconds))
        )
    print(f"\nsonic demo: closed-loop load, {concurrency} clients, batch 1, {seconds:g} s each")
    print(table(results))
    print("latency is the client's round trip; queue/compute are server-side means (statistics extension)")
    return all(r.errors == 0 and r.requests > 0 for r in results)
