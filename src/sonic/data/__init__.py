
"""Reference physics workloads: data made by real generators, nothing downloaded.

- :mod:`sonic.data.jets` — Pythia 8 + FastJet collider jets (CMS-like), NanoAOD-like ROOT.
- :mod:`sonic.data.gw` — LIGO-like strain: aLIGO design noise (LALSuite), non-linearly
  coupled witness noise, IMRPhenomD BBH injections, HDF5.
- :mod:`sonic.data.lartpc` — a toy ProtoDUNE-like collection plane with per-pixel truth and
  48×48 patches, HDF5.
- :mod:`sonic.data.io` — the ROOT (uproot TTree) and HDF5 (h5py) layouts.

The generators need the ``physics`` extra (``pip install 'sonic[physics]'``); each imports
its heavy dependencies on first use and says how to install them when they are missing.
"""

from __future__ import annotations

__all__ = ["gw", "io", "jets", "lartpc"]
