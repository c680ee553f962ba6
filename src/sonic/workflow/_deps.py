"""Optional dependencies of the workflow layer, imported on first use with an install hint.

Reading ROOT files needs uproot and awkward, HDF5 needs h5py (the ``physics`` extra); the
parquet sink needs pyarrow and the Dask executor dask + distributed (the ``dask`` extra). None
is needed to describe a process, so they are imported only where they are used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sonic.protocol.errors import Unavailable

#: top-level module -> (PyPI distribution, sonic extra that installs it)
_HINTS = {
    "uproot": ("uproot", "physics"),
    "awkward": ("awkward", "physics"),
    "h5py": ("h5py", "physics"),
    "pyarrow": ("pyarrow", "dask"),
    "dask": ("dask[distributed]", "dask"),
    "distributed": ("dask[distributed]", "dask"),
    "dask_jobqueue": ("dask-jobqueue", None),
    "yaml": ("pyyaml", None),
    "tqdm": ("tqdm", None),
    "cloudpickle": ("dask[distributed]", "dask"),
}


def require(module: str, what: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`Unavailable` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        dist, extra = _HINTS.get(module.split(".", maxsplit=1)[0], (module, None))
        how = f"pip install 'sonic[{extra}]' (or pip install {dist})" if extra else f"pip install {dist}"
        purpose = f" for {what}" if what else ""
        raise Unavailable(f"{module} is needed{purpose} but could not be imported ({exc}): {how}") from exc
