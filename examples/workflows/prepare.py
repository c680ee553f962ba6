"""Write the inputs of the example workflows next to this file.

    python examples/workflows/prepare.py [jets|protodune|gw|all] [--events N] [--seconds S] [--seed S]

- ``jets`` (the default): ``jets.root``, Pythia 8 + FastJet events (``--events``, default
  600: a third each of QCD, tt̄ and W′→WZ; the ``physics`` extra), a NanoAOD-like TTree
  ``Events`` with ``event`` and the ``FatJet`` collection (``nFatJet``, ``FatJet_pt`` ...,
  the tagger's 16 features, the truth ``FatJet_label``); the shipped jet tagger (16 features
  -> g, q, W, Z, t) as ``models/jets_mlp`` (sonic) and ``models_triton/jets_mlp`` (Triton).
- ``protodune``: ``protodune.h5`` (toy ProtoDUNE-like events, ``--events``, default 200),
  ``models/lartpc_cnn`` for sonic and ``models_triton/lartpc_cnn`` for NVIDIA Triton
  (:func:`protodune.prepare`).
- ``gw``: the DeepClean workflow's input (``--seconds`` of strain, default 128) and models
  (:func:`deepclean.prepare`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sonic.data.io import write_nanoaod
from sonic.models.repository import write_repository

HERE = Path(__file__).resolve().parent
WORKFLOWS = ("jets", "protodune", "gw")


def prepare_jets(dest: Path, events: int, seed: int) -> None:
    """``jets.root``: ``events`` Pythia 8 events, a third each of QCD dijets, all-hadronic tt̄
    and W′→WZ (``sonic data jets``' generator, one seed per process), in one NanoAOD-like TTree;
    the shipped tagger under ``models/`` (sonic) and ``models_triton/`` (NVIDIA Triton)."""
    from sonic.data.jets import PROCESSES, JetGenConfig, generate_jets

    dest.mkdir(parents=True, exist_ok=True)
    samples = [
        generate_jets(JetGenConfig(process, events // 3 + (i < events % 3), seed=seed + i))
        for i, process in enumerate(PROCESSES)
    ]
    n_jets = np.concatenate([s.n_jets for s in samples])
    jets = {k: np.concatenate([s.jets[k] for s in samples]) for k in samples[0].jets}
    event = np.arange(len(n_jets), dtype=np.int64)
    write_nanoaod(dest / "jets.root", event=event, collections={"FatJet": (n_jets, jets)})
    write_repository(dest / "models", ["jets_mlp"])
    write_repository(dest / "models_triton", ["jets_mlp"], backend="python")
    counts = ", ".join(f"{s.n_events} {p}" for s, p in zip(samples, PROCESSES, strict=True))
    print(f"wrote {dest / 'jets.root'} ({counts}; {len(jets['pt'])} jets) and models{{,_triton}}/jets_mlp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", nargs="?", choices=[*WORKFLOWS, "all"], default="jets")
    ap.add_argument("--events", type=int, help="events (jets: 600, protodune: 200)")
    ap.add_argument("--seconds", type=int, default=128, help="seconds of strain (gw)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dest", type=Path, default=HERE)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))  # the workflows' modules, next to this file
    for name in WORKFLOWS if args.workflow == "all" else (args.workflow,):
        if name == "jets":
            prepare_jets(args.dest, args.events or 600, args.seed)
        elif name == "protodune":
            from protodune import prepare

            prepare(args.dest, args.events or 200, args.seed)
        else:
            from deepclean import prepare as prepare_gw  # the DeepClean workflow's modules

            prepare_gw(args.dest, args.seconds, args.seed)


if __name__ == "__main__":
    main()
