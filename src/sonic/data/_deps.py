"""Optional dependencies of the generators, imported on first use with an install hint.

The physics generators are heavy (Pythia 8, FastJet, LALSuite, uproot, h5py) and none of
them is needed to serve a model, so :mod:`sonic.data` imports them only when a generator
runs, and fails with the ``pip install`` line that brings them in.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sonic.protocol.errors import Unavailable

#: module name -> (PyPI distribution, sonic extra that installs it)
_HINTS = {
    "pythia8mc": ("pythia8mc", "physics"),
    "fastjet": ("fastjet", "physics"),
    "lal": ("lalsuite", "physics"),
    "lalsimulation": ("lalsuite", "physics"),
    "uproot": ("uproot", "physics"),
    "awkward": ("awkward", "physics"),
    "h5py": ("h5py", "physics"),
    "scipy": ("scipy", "physics"),
    "torch": ("torch", "torch"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`Unavailable` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        dist, extra = _HINTS.get(module.split(".", maxsplit=1)[0], (module, "physics"))
        raise Unavailable(
            f"{module} is needed here but could not be imported ({exc}): "
            f"pip install 'sonic[{extra}]' (or pip install {dist})"
        ) from exc
