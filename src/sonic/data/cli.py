"""``sonic data jets|gw|lartpc``: run a generator and write its file.

The lead's ``sonic.cli`` calls :func:`register` with its subparsers; each subcommand sets
``handler`` to a function of the parsed arguments returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from sonic.protocol.errors import SonicError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``data`` with its ``jets``, ``gw`` and ``lartpc`` subcommands."""
    data = subparsers.add_parser(
        "data",
        help="generate physics reference data (Pythia 8 jets, LIGO-like strain, toy LArTPC)",
        description="Generate the reference workloads' data from physics generators "
        "(needs: pip install 'sonic[physics]').",
    )
    sub = data.add_subparsers(dest="data_command", required=True)

    j = sub.add_parser("jets", help="Pythia 8 + FastJet jets at 13 TeV -> NanoAOD-like ROOT TTree")
    j.add_argument("--process", choices=["qcd", "ttbar", "wprime"], required=True)
    j.add_argument("--events", type=int, required=True)
    j.add_argument("--seed", type=int, default=1)
    j.add_argument("--pthat-min", type=float, default=None, help="GeV (default 300 for qcd/ttbar)")
    j.add_argument("--wprime-mass", type=float, default=1200.0, help="GeV (default 1200)")
    j.add_argument("-o", "--output", type=Path, required=True)
    j.set_defaults(handler=_jets)

    g = sub.add_parser("gw", help="aLIGO-design strain + coupled witness noise + BBH injections -> HDF5")
    g.add_argument("--duration", type=float, required=True, help="seconds")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--sample-rate", type=int, default=4096)
    g.add_argument("--snr", type=float, default=20.0, help="optimal SNR of each injection (0: none)")
    g.add_argument("--injection-interval", type=float, default=32.0, help="seconds between mergers")
    g.add_argument("-o", "--output", type=Path, required=True)
    g.set_defaults(handler=_gw)

    t = sub.add_parser("lartpc", help="toy ProtoDUNE-like collection-plane images and 48x48 patches -> HDF5")
    t.add_argument("--events", type=int, required=True)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--patches-per-class", type=int, default=4)
    t.add_argument("--patches-only", action="store_true", help="do not store the full images")
    t.add_argument("-o", "--output", type=Path, required=True)
    t.set_defaults(handler=_lartpc)


def _report(what: str, n: float, unit: str, seconds: float, path: Path, extra: str = "") -> None:
    rate = n / seconds if seconds > 0 else float("inf")
    print(f"sonic data {what}: {n:g} {unit} in {seconds:.1f} s ({rate:.1f} {unit}/s) -> {path}{extra}")


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args))
    except SonicError as exc:
        print(f"sonic data: {exc.message}", file=sys.stderr)
        return 2


def _jets(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        from sonic.data.io import write_nanoaod
        from sonic.data.jets import LABELS, JetGenConfig, generate_jets

        cfg = JetGenConfig(
            process=a.process,
            events=a.events,
            seed=a.seed,
            pthat_min_gev=a.pthat_min,
            wprime_mass_gev=a.wprime_mass,
        )
        s = generate_jets(cfg)
        write_nanoaod(
            a.output,
            event=s.event,
            collections={"FatJet": (s.n_jets, s.jets), "FatJetPFCands": (s.n_cands, s.cands)},
            meta=s.meta,
        )
        labels = s.jets["label"]
        counts = ", ".join(f"{name}={int((labels == k).sum())}" for k, name in enumerate(LABELS))
        _report("jets", a.events, "events", s.seconds, a.output, f"; {len(labels)} jets ({counts})")
        return 0

    return _run(go, args)


def _gw(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        from sonic.data.gw import GWConfig, generate_gw, write_gw

        t0 = time.perf_counter()
        cfg = GWConfig(
            duration=a.duration,
            seed=a.seed,
            sample_rate=a.sample_rate,
            snr=a.snr,
            injection_interval=a.injection_interval,
        )
        s = generate_gw(cfg)
        write_gw(s, a.output)
        n_inj = len(s.injections["t_merger"])
        _report("gw", a.duration, "s of strain", time.perf_counter() - t0, a.output, f"; {n_inj} injections")
        return 0

    return _run(go, args)


def _lartpc(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        import numpy as np

        from sonic.data.lartpc import CLASSES, LArTPCConfig, generate_lartpc, write_lartpc

        cfg = LArTPCConfig(
            events=a.events,
            seed=a.seed,
            patches_per_class=a.patches_per_class,
            keep_images=not a.patches_only,
        )
        s = generate_lartpc(cfg)
        write_lartpc(s, a.output)
        counts = np.bincount(s.patch_label, minlength=len(CLASSES))
        per = ", ".join(f"{c}={int(n)}" for c, n in zip(CLASSES, counts, strict=True))
        _report("lartpc", a.events, "events", s.seconds, a.output, f"; {len(s.patch_label)} patches ({per})")
        return 0

    return _run(go, args)
