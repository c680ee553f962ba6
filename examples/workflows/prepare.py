"""Write the inputs of the example workflows next to this file.

    python examples/workflows/prepare.py [jets|protodune|gw|all] [--events N] [--seconds S] [--seed S]

- ``jets`` (the default): ``models/jets_mlp/1/model.onnx``, the trained jet tagger shipped
  with sonic (16 features -> g, q, W, Z, t), as a Triton model repository (config.pbtxt is
  completed from the file), and ``toy_jets.root``: a NanoAOD-like TTree ``Events`` with
  ``event`` and a ``FatJet`` collection (``nFatJet``, ``FatJet_pt`` ..., the tagger's 16
  features), 0..4 jets per event, drawn from simple distributions (``--events``, default
  2000). For real jets, ``sonic data jets --process ttbar --events 500 -o ttbar.root``
  (Pythia 8 + FastJet) writes the same layout.
- ``protodune``: ``protodune.h5`` (toy ProtoDUNE-like events, ``--events``, default 200),
  ``models/lartpc_cnn`` for sonic and ``models_triton/lartpc_cnn`` for NVIDIA Triton
  (:func:`protodune.prepare`).
- ``gw``: the DeepClean workflow's input (``--seconds`` of strain, default 128) and models
  (:func:`deepclean.prepare`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

import sonic.models
from sonic.data.io import write_nanoaod
from sonic.data.jets import TAGGER_FEATURES

HERE = Path(__file__).resolve().parent
WORKFLOWS = ("jets", "protodune", "gw")


def toy_jets(path: Path, events: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, events).astype(np.int32)
    n = int(counts.sum())
    mass = rng.gamma(4.0, 25.0, n)
    tau1 = rng.uniform(0.1, 0.6, n)
    tau2 = tau1 * rng.uniform(0.3, 0.9, n)
    tau3 = tau2 * rng.uniform(0.4, 0.9, n)
    fields = {
        "pt": rng.exponential(150.0, n) + 200.0,
        "eta": rng.uniform(-2.4, 2.4, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "mass": mass,
        "msoftdrop": mass * rng.uniform(0.5, 1.0, n),
        "sdZg": rng.uniform(0.1, 0.5, n),
        "tau1": tau1,
        "tau2": tau2,
        "tau3": tau3,
        "tau21": tau2 / tau1,
        "tau32": tau3 / tau2,
        "c2b1": rng.uniform(0.05, 0.4, n),
        "d2b1": rng.uniform(0.5, 4.0, n),
        "c2b2": rng.uniform(0.01, 0.2, n),
        "d2b2": rng.uniform(0.5, 8.0, n),
        "nConstituents": rng.integers(10, 120, n),
        "nCharged": rng.integers(5, 60, n),
        "ptD": rng.uniform(0.1, 0.6, n),
        "girth": rng.uniform(0.02, 0.3, n),
    }
    fields = {k: v.astype(np.int32 if v.dtype.kind == "i" else np.float32) for k, v in fields.items()}
    assert set(TAGGER_FEATURES) <= set(fields)
    write_nanoaod(path, event=np.arange(events, dtype=np.int64), collections={"FatJet": (counts, fields)})


def prepare_jets(dest: Path, events: int, seed: int) -> None:
    model = dest / "models" / "jets_mlp" / "1"
    model.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(sonic.models.__file__).parent / "weights" / "jets_mlp.onnx", model / "model.onnx")
    toy_jets(dest / "toy_jets.root", events, seed)
    print(f"wrote {dest / 'models'} and {dest / 'toy_jets.root'} ({events} events)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", nargs="?", choices=[*WORKFLOWS, "all"], default="jets")
    ap.add_argument("--events", type=int, help="events (jets: 2000, protodune: 200)")
    ap.add_argument("--seconds", type=int, default=128, help="seconds of strain (gw)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dest", type=Path, default=HERE)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))  # the workflows' modules, next to this file
    for name in WORKFLOWS if args.workflow == "all" else (args.workflow,):
        if name == "jets":
            prepare_jets(args.dest, args.events or 2000, args.seed)
        elif name == "protodune":
            from protodune import prepare

            prepare(args.dest, args.events or 200, args.seed)
        else:
            from deepclean import prepare as prepare_gw  # the DeepClean workflow's modules

            prepare_gw(args.dest, args.seconds, args.seed)


if __name__ == "__main__":
    main()
