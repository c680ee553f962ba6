"""Write the inputs of the example workflows next to this file.

    python examples/workflows/prepare.py [--events 2000]

- ``models/jets_mlp/1/model.onnx``: the trained jet tagger shipped with sonic (16 features ->
  g, q, W, Z, t), as a Triton model repository (config.pbtxt is completed from the file);
- ``toy_jets.root``: a NanoAOD-like TTree ``Events`` with ``event`` and a ``FatJet``
  collection (``nFatJet``, ``FatJet_pt`` ..., the tagger's 16 features), 0..4 jets per event,
  drawn from simple distributions. For real jets, ``sonic data jets --process ttbar
  --events 500 -o ttbar.root`` (Pythia 8 + FastJet) writes the same layout.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import sonic.models
from sonic.data.io import write_nanoaod
from sonic.data.jets import TAGGER_FEATURES

HERE = Path(__file__).resolve().parent


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--dest", type=Path, default=HERE)
    args = ap.parse_args()
    model = args.dest / "models" / "jets_mlp" / "1"
    model.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(sonic.models.__file__).parent / "weights" / "jets_mlp.onnx", model / "model.onnx")
    toy_jets(args.dest / "toy_jets.root", args.events)
    print(f"wrote {args.dest / 'models'} and {args.dest / 'toy_jets.root'} ({args.events} events)")


if __name__ == "__main__":
    main()
