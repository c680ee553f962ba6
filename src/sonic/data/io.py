"""Files of the reference workloads: a NanoAOD-like ROOT TTree (uproot) and HDF5 (h5py).

Where this sits: the generators of :mod:`sonic.data` write through these helpers, and the
workflows and training scripts read through them, so the on-disk layout is defined once.

ROOT: uproot ≥ 5.7 writes an RNTuple when a tree is assigned with ``file[name] = ...``;
NanoAOD (and every ROOT 6 reader) expects a TTree, so :func:`write_nanoaod` makes one
explicitly with ``mktree``. Collections are jagged records, which uproot writes NanoAOD's way:
a counter ``n<Coll>`` and one branch ``<Coll>_<field>`` per field.

HDF5: datasets are written without timestamps (``track_times=False``) and with a fixed
compression, so the same content gives a byte-identical file: reproducibility can be checked
with a checksum.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.data._deps import require

__all__ = ["read_h5", "read_nanoaod", "write_h5", "write_nanoaod"]


def write_nanoaod(
    path: str | Path,
    *,
    event: npt.NDArray[np.int64],
    collections: Mapping[str, tuple[npt.NDArray[np.int32], Mapping[str, npt.NDArray[Any]]]],
    tree: str = "Events",
    title: str = "Events",
    meta: Mapping[str, str] | None = None,
) -> None:
    """Write a NanoAOD-like TTree.

    ``collections`` maps a collection name (``FatJet``) to (per-event counts, flat fields);
    each becomes ``n<name>`` plus ``<name>_<field>`` branches. ``meta`` is stored as a
    ``TObjString`` per key next to the tree (``meta/<key>``), since a TTree has no free-form
    attributes.
    """
    uproot = require("uproot")
    ak = require("awkward")
    data: dict[str, Any] = {"event": np.asarray(event, dtype=np.int64)}
    for name, (n_per_event, fields) in collections.items():
        counts = np.asarray(n_per_event, dtype=np.int64)
        records = {f: ak.unflatten(np.asarray(v), counts) for f, v in fields.items()}
        data[name] = ak.zip(records) if records else ak.Array([[]] * len(counts))
    types = {k: (v.type if hasattr(v, "layout") else v.dtype) for k, v in data.items()}
    with uproot.recreate(str(path)) as out:
        t = out.mktree(tree, types, title=title)
        if len(event):
            t.extend(data)
        for key, value in (meta or {}).items():
            out[f"meta/{key}"] = str(value)


def read_nanoaod(path: str | Path, tree: str = "Events") -> dict[str, npt.NDArray[Any]]:
    """All branches of ``tree`` as flat numpy arrays (jagged branches flattened; use ``n<Coll>``)."""
    uproot = require("uproot")
    ak = require("awkward")
    out: dict[str, npt.NDArray[Any]] = {}
    with uproot.open(str(path)) as f:
        t = f[tree]
        for name, arr in t.arrays(library="ak", how=dict).items():
            out[name] = np.asarray(ak.flatten(arr, axis=None)) if arr.ndim > 1 else np.asarray(arr)
    return out


def write_h5(
    path: str | Path,
    groups: Mapping[str, Mapping[str, npt.NDArray[Any]]],
    attrs: Mapping[str, Any] | None = None,
    group_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write ``{group: {dataset: array}}`` to HDF5, deterministically (see the module doc)."""
    h5py = require("h5py")
    with h5py.File(str(path), "w", libver=("earliest", "v110"), track_order=False) as f:
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for gname, datasets in groups.items():
            g = f.create_group(gname, track_order=False)
            for key, value in (group_attrs or {}).get(gname, {}).items():
                g.attrs[key] = value
            for dname, values in datasets.items():
                arr = np.asarray(values)
                big = arr.nbytes > 1 << 16 and arr.ndim >= 1
                g.create_dataset(
                    dname,
                    data=arr,
                    track_times=False,
                    compression="gzip" if big else None,
                    compression_opts=4 if big else None,
                    shuffle=big,
                    chunks=_chunks(arr) if big else None,
                )


def _chunks(arr: npt.NDArray[Any]) -> tuple[int, ...]:
    """Chunk along the first axis, about 1 MiB per chunk."""
    row = max(1, int(np.prod(arr.shape[1:])) * arr.itemsize)
    n = max(1, min(arr.shape[0], (1 << 20) // row))
    return (n, *arr.shape[1:])


def read_h5(path: str | Path) -> tuple[dict[str, dict[str, npt.NDArray[Any]]], dict[str, Any]]:
    """Read back what :func:`write_h5` wrote: ({group: {dataset: array}}, file attributes)."""
    h5py = require("h5py")
    groups: dict[str, dict[str, npt.NDArray[Any]]] = {}
    with h5py.File(str(path), "r") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        for gname, g in f.items():
            groups[gname] = {d: np.asarray(g[d][()]) for d in g}
            for k, v in g.attrs.items():
                attrs[f"{gname}/{k}"] = _plain(v)
    return groups, attrs


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
