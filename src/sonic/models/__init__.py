"""The reference models of the physics workloads (PyTorch; exported to ONNX and TorchScript).

- ``jets_mlp`` — jet tagger on 16 high-level features, 16→64→32→32→5 (g, q, W, Z, t);
- ``jets_particle`` — Deep Sets tagger on up to 50 jet constituents;
- ``lartpc_cnn`` — EmTrackMichel-like CNN on 48x48 LArTPC patches (none, track, shower, michel);
- ``deepclean`` — DeepClean-like 1-D conv net predicting coupled strain noise from witnesses.

:mod:`sonic.models.nets` defines them, :mod:`sonic.models.train` trains them (``sonic train``),
:mod:`sonic.models.export` writes ONNX/TorchScript, :mod:`sonic.models.metrics` and
:mod:`sonic.models.features` hold the quality figures and input builders (numpy only).
Trained demo weights ship in ``weights/`` (``<name>.pt``, ``<name>.onnx``, ``<name>.json``
with the quality report and the command that made them). Needs ``pip install 'sonic[torch]'``
for everything but ``features``, ``metrics`` and :func:`weights_path`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.protocol.errors import NotFound, nearest

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODEL_NAMES", "load_pretrained", "pretrained_report", "weights_path"]

MODEL_NAMES = ("jets_mlp", "jets_particle", "lartpc_cnn", "deepclean")
WEIGHTS = Path(__file__).parent / "weights"


def weights_path(name: str, suffix: str = ".onnx") -> Path:
    """Path of a shipped file (``.onnx``, ``.pt`` or ``.json``) of model ``name``."""
    if name not in MODEL_NAMES:
        raise NotFound(f"no reference model {name!r}{nearest(name, MODEL_NAMES)}")
    path = WEIGHTS / f"{name}{suffix}"
    if not path.exists():
        raise NotFound(f"{path} is missing: make it with `sonic train {name} -o {WEIGHTS}`")
    return path


def pretrained_report(name: str) -> dict[str, Any]:
    """The quality report written when the shipped weights were trained."""
    report: dict[str, Any] = json.loads(weights_path(name, ".json").read_text())
    return report


def load_pretrained(name: str) -> nn.Module:
    """The shipped model ``name`` in eval mode (needs torch)."""
    from sonic.data._deps import require

    torch = require("torch")
    from sonic.models.export import SPECS

    cls = SPECS[name][0] if name in SPECS else None
    state = torch.load(weights_path(name, ".pt"), map_location="cpu", weights_only=True)
    assert cls is not None
    model = cls()
    model.load_state_dict(state)
    return model.eval()
