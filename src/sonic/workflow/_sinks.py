"""Sinks: where the products go, one chunk at a time, in event order.

The process assembles the products of a chunk's events into columns (see
:mod:`sonic.workflow._columns`) once the chunk is complete *and* every earlier chunk has been
written, so a sink sees the events in the source's order whatever order they finished in.

- :class:`RootSink` — a ROOT TTree written with uproot's ``mktree`` (a TTree, not an
  RNTuple, which uproot ≥ 5.7 writes for ``file[name] = ...``). A jagged column becomes a
  counter ``n<name>`` and a ``<name>`` branch; a jagged column of ``k`` features per object
  (``(n_jets, 5)`` scores) becomes NanoAOD's layout: ``n<name>`` and ``<name>_0`` ...
  ``<name>_<k-1>``.
- :class:`ParquetSink` — a parquet file written with pyarrow, one row group per chunk; jagged
  columns are list columns, fixed-shape ones fixed-size lists.
- :class:`H5Sink` — an HDF5 file written with h5py, one dataset per column; ``concat`` joins
  per-event arrays into one dataset (frames of a time series back into one series).
- :class:`ArraySink` — columns in memory (``sink.result`` after the run).

A file sink writes to a temporary name and renames it when the job succeeds, so a failed or
repeated job never leaves a half-written output under the final name. Under Dask each
partition writes a part (:meth:`Sink.part`) and the parts are merged in order
(:meth:`Sink.merge`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonic.protocol.errors import InvalidArgument
from sonic.workflow._columns import Column, Jagged, concat, from_awkward
from sonic.workflow._deps import require

__all__ = ["ArraySink", "H5Sink", "ParquetSink", "RootSink", "Sink", "read_columns"]


class Sink:
    """The base of every sink.

    ``columns``: the products (or source columns) to write, in this order; None: every
    product modules put on the events.
    """

    columns: tuple[str, ...] | None = None

    def open(self) -> None:
        """Before the first chunk."""

    def write(self, columns: Mapping[str, Column], length: int) -> None:
        raise NotImplementedError

    def close(self) -> Any:
        """After the last chunk (job succeeded): return what the job produced here."""
        return None

    def abort(self) -> None:
        """The job failed: drop what was written."""

    def part(self, index: int, token: str) -> Sink:
        """A sink for partition ``index`` of a distributed job (``token``: unique per job)."""
        raise NotImplementedError

    def merge(self, results: Sequence[Any]) -> Any:
        """Merge the parts' :meth:`close` results, in partition order."""
        raise NotImplementedError

    def discard_parts(self, token: str) -> None:
        """A distributed job failed: remove whatever its parts left."""

    def describe(self) -> str:
        return type(self).__name__


def _columns_arg(columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return (columns,)
    return tuple(str(c) for c in columns)


class ArraySink(Sink):
    """Columns in memory: ``result`` maps each column to a numpy array or :class:`Jagged`."""

    def __init__(self, columns: Sequence[str] | str | None = None) -> None:
        self.columns = _columns_arg(columns)
        self._chunks: list[Mapping[str, Column]] = []
        self.result: dict[str, Column] = {}

    def open(self) -> None:
        self._chunks = []

    def write(self, columns: Mapping[str, Column], length: int) -> None:
        self._chunks.append(dict(columns))

    def close(self) -> dict[str, Column]:
        self.result = _concat_chunks(self._chunks)
        self._chunks = []
        return self.result

    def abort(self) -> None:
        self._chunks = []

    def part(self, index: int, token: str) -> ArraySink:
        return ArraySink(self.columns)

    def merge(self, results: Sequence[Any]) -> dict[str, Column]:
        self.result = _concat_chunks([r for r in results if r])
        return self.result


def _concat_chunks(chunks: Sequence[Mapping[str, Column]]) -> dict[str, Column]:
    if not chunks:
        return {}
    return {name: concat([c[name] for c in chunks]) for name in chunks[0]}


class _FileSink(Sink):
    suffix = ""

    def __init__(self, path: str | Path, columns: Sequence[str] | str | None = None) -> None:
        self.path = Path(path)
        self.columns = _columns_arg(columns)
        self._tmp: Path | None = None

    def _temp_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{id(self):x}")

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self._temp_path()

    def _finish(self) -> Path:
        assert self._tmp is not None
        if not self._tmp.exists():
            self._write_empty(self._tmp)
        os.replace(self._tmp, self.path)
        self._tmp = None
        return self.path

    def _write_empty(self, path: Path) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        self._close_writer()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None

    def _close_writer(self, strict: bool = False) -> None:
        """Close the open file. ``strict``: a failure to close (where the library flushes
        what it buffered) is raised; otherwise (aborting) it is ignored."""

    @staticmethod
    def _close_handle(handle: Any, strict: bool) -> None:
        if handle is None:
            return
        if strict:
            handle.close()
        else:
            with contextlib.suppress(Exception):
                handle.close()

    def _close_and_finish(self) -> Path:
        """Close the file strictly and publish it; a file that fails to close is removed and
        the error raised: a truncated output is never published as a result."""
        try:
            self._close_writer(strict=True)
        except Exception:
            self.abort()
            raise
        return self._finish()

    def _part_dir(self, token: str) -> Path:
        return self.path.with_name(f"{self.path.name}.parts-{token}")

    def discard_parts(self, token: str) -> None:
        shutil.rmtree(self._part_dir(token), ignore_errors=True)

    def _part_path(self, index: int, token: str) -> Path:
        return self._part_dir(token) / f"part-{index:05d}{self.path.suffix or self.suffix}"

    def merge(self, results: Sequence[Any]) -> Path:
        paths = [Path(r) for r in results]
        self.open()
        try:
            self._merge(paths)
            out = self._finish()
        except BaseException:
            self.abort()
            raise
        dirs = {p.parent for p in paths}
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink()
        for d in dirs:
            if d.name.startswith(f"{self.path.name}.parts-"):
                shutil.rmtree(d, ignore_errors=True)
        return out

    def _merge(self, paths: list[Path]) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({self.path})"


# -- ROOT ---------------------------------------------------------------------------------------


class RootSink(_FileSink):
    """A ROOT file with one TTree (``tree``), written with uproot."""

    suffix = ".root"

    def __init__(
        self,
        path: str | Path,
        tree: str = "Events",
        columns: Sequence[str] | str | None = None,
        *,
        title: str = "",
    ) -> None:
        super().__init__(path, columns)
        self.tree = tree
        self.title = title
        self._file: Any = None
        self._tree: Any = None
        self._dtypes: dict[str, np.dtype[Any]] = {}

    def open(self) -> None:
        super().open()
        self._file = self._tree = None
        self._dtypes = {}

    def write(self, columns: Mapping[str, Column], length: int) -> None:
        if length == 0:
            return
        data = {name: self._branch(name, col) for name, col in columns.items()}
        if self._tree is None:
            uproot = require("uproot", "ROOT output")
            assert self._tmp is not None
            self._file = uproot.recreate(str(self._tmp))
            types = {k: _root_type(v) for k, v in data.items()}
            self._tree = self._file.mktree(self.tree, types, title=self.title)
        self._tree.extend(data)

    def _branch(self, name: str, col: Column) -> Any:
        ak = require("awkward", "ROOT output")
        if isinstance(col, np.ndarray):
            if col.dtype.kind not in "biuf":
                raise InvalidArgument(
                    f"root sink: column '{name}' has dtype {col.dtype}, which a TTree branch "
                    "cannot hold; write it to parquet instead"
                )
            dt = self._dtypes.setdefault(name, col.dtype)
            return np.ascontiguousarray(col, dtype=dt)
        if isinstance(col, Jagged):
            content = col.content[: col.offsets[-1]]
            if content.dtype.kind not in "biuf":
                raise InvalidArgument(f"root sink: jagged column '{name}' has dtype {content.dtype}")
            dt = self._dtypes.setdefault(name, content.dtype)
            content = content.astype(dt, copy=False)
            counts = col.counts
            if content.ndim == 1:
                return ak.unflatten(content, counts)
            if content.ndim == 2:
                return ak.zip(
                    {
                        str(j): ak.unflatten(np.ascontiguousarray(content[:, j]), counts)
                        for j in range(content.shape[1])
                    }
                )
            raise InvalidArgument(
                f"root sink: jagged column '{name}' has {content.ndim - 1} inner dimensions "
                f"{content.shape[1:]}; a TTree holds at most one (NanoAOD's <name>_<k> branches). "
                "Reshape it in a module, or write it to parquet"
            )
        return col  # awkward: uproot decides

    def _close_writer(self, strict: bool = False) -> None:
        handle, self._file, self._tree = self._file, None, None
        self._close_handle(handle, strict)

    def close(self) -> Path:
        return self._close_and_finish()

    def _write_empty(self, path: Path) -> None:
        uproot = require("uproot", "ROOT output")
        with uproot.recreate(str(path)):
            pass

    def part(self, index: int, token: str) -> RootSink:
        return RootSink(self._part_path(index, token), self.tree, self.columns, title=self.title)

    def _merge(self, paths: list[Path]) -> None:
        uproot = require("uproot", "ROOT output")
        for p in paths:
            with uproot.open(str(p)) as f:
                if self.tree not in {k.split(";")[0] for k in f}:
                    continue  # a partition that wrote no event
            for cols, n in _iterate_root(p, self.tree):
                self.write(cols, n)
        self._close_writer(strict=True)

    def describe(self) -> str:
        return f"RootSink({self.path}:{self.tree})"


def _root_type(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return np.dtype((v.dtype, v.shape[1:])) if v.ndim > 1 else v.dtype
    return v.type


def _root_layout(names: list[str]) -> list[tuple[str, list[str]]]:
    """Columns of a tree written by :class:`RootSink`, from its branch names, in order:
    (column, its data branches). A jagged column ``c`` has a counter ``nc`` and either a
    branch ``c`` or the branches ``c_0`` ... ``c_<k-1>`` (one per inner feature)."""
    present = set(names)
    counters: set[str] = set()
    out: list[tuple[str, list[str]]] = []
    used: set[str] = set()
    for name in names:
        if name in used:
            continue
        if name.startswith("n") and name[1:] and (name[1:] in present or f"{name[1:]}_0" in present):
            col = name[1:]
            if col in present:
                out.append((col, [col]))
                used.add(col)
            else:
                parts: list[str] = []
                while f"{col}_{len(parts)}" in present:
                    parts.append(f"{col}_{len(parts)}")
                out.append((col, parts))
                used.update(parts)
            counters.add(name)
            continue
        out.append((name, [name]))
        used.add(name)
    return [(c, bs) for c, bs in out if c not in counters]


def _iterate_root(path: Path | str, tree: str, step_size: int = 100_000) -> Any:
    """Chunks of a tree written by :class:`RootSink`, as columns (inverse of its layout)."""
    uproot = require("uproot", "ROOT input")
    with uproot.open(str(path)) as f:
        t = f[tree]
        layout = _root_layout([str(k) for k in t.keys(recursive=False)])
        branches = [b for _, bs in layout for b in bs]
        for arrays in t.iterate(branches, step_size=step_size, library="ak", how=dict):
            out: dict[str, Column] = {}
            n = 0
            for col, bs in layout:
                parts = [from_awkward(arrays[b]) for b in bs]
                n = len(parts[0])
                if len(bs) == 1 and bs[0] == col:
                    out[col] = parts[0]
                    continue
                if not all(isinstance(p, Jagged) and p.content.ndim == 1 for p in parts):
                    raise InvalidArgument(f"{path}: branches {bs} do not form a jagged column '{col}'")
                first = parts[0]
                out[col] = Jagged(first.offsets, np.stack([p.content for p in parts], axis=1))
            yield out, n


# -- parquet ------------------------------------------------------------------------------------


class ParquetSink(_FileSink):
    """A parquet file (pyarrow), one row group per chunk."""

    suffix = ".parquet"

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str] | str | None = None,
        *,
        compression: str = "zstd",
    ) -> None:
        super().__init__(path, columns)
        self.compression = compression
        self._writer: Any = None

    def open(self) -> None:
        super().open()
        self._writer = None

    def write(self, columns: Mapping[str, Column], length: int) -> None:
        if length == 0:
            return
        pa = require("pyarrow", "parquet output")
        table = pa.table({name: _arrow(name, col) for name, col in columns.items()})
        self._write_table(table)

    def _write_table(self, table: Any) -> None:
        if self._writer is None:
            pq = require("pyarrow.parquet", "parquet output")
            assert self._tmp is not None
            self._writer = pq.ParquetWriter(str(self._tmp), table.schema, compression=self.compression)
        elif table.schema != self._writer.schema:
            try:
                table = table.cast(self._writer.schema)
            except Exception as exc:
                raise InvalidArgument(
                    f"parquet sink: a chunk's columns {table.schema} do not match the first "
                    f"chunk's {self._writer.schema}: {exc}"
                ) from None
        self._writer.write_table(table)

    def _close_writer(self, strict: bool = False) -> None:
        handle, self._writer = self._writer, None
        self._close_handle(handle, strict)

    def close(self) -> Path:
        return self._close_and_finish()

    def _write_empty(self, path: Path) -> None:
        pa = require("pyarrow", "parquet output")
        pq = require("pyarrow.parquet", "parquet output")
        pq.write_table(pa.table({}), str(path))

    def part(self, index: int, token: str) -> ParquetSink:
        return ParquetSink(self._part_path(index, token), self.columns, compression=self.compression)

    def _merge(self, paths: list[Path]) -> None:
        pq = require("pyarrow.parquet", "parquet output")
        for p in paths:
            pf = pq.ParquetFile(str(p))
            if pf.metadata.num_rows == 0:
                continue
            for i in range(pf.num_row_groups):
                self._write_table(pf.read_row_group(i))
        self._close_writer(strict=True)


def _arrow(name: str, col: Column) -> Any:
    pa = require("pyarrow", "parquet output")

    def nested(arr: np.ndarray[Any, Any]) -> Any:
        if arr.dtype.kind in "US":
            return pa.array(arr.reshape(-1).tolist()) if arr.ndim == 1 else _fixed(pa, arr, nested)
        if arr.ndim == 1:
            return pa.array(arr)
        return _fixed(pa, arr, nested)

    if isinstance(col, np.ndarray):
        return nested(col)
    if isinstance(col, Jagged):
        content = col.content[: col.offsets[-1]]
        offsets = col.offsets
        values = nested(np.ascontiguousarray(content))
        if offsets[-1] < 2**31:
            return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)
    ak = require("awkward", f"parquet output of column '{name}'")
    return ak.to_arrow(col, extensionarray=False)


def _fixed(pa: Any, arr: np.ndarray[Any, Any], nested: Any) -> Any:
    inner = arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])
    return pa.FixedSizeListArray.from_arrays(nested(np.ascontiguousarray(inner)), arr.shape[1])


def _from_arrow(arr: Any) -> Column:
    pa = require("pyarrow")
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = np.asarray(arr.offsets, dtype=np.int64)
        values = _from_arrow(arr.values)
        if isinstance(values, Jagged):
            require("awkward")
            return from_awkward(_ak_from_arrow(arr))
        return Jagged(offsets, values[offsets[0] : offsets[-1]] if len(offsets) else values)
    if pa.types.is_fixed_size_list(t):
        values = _from_arrow(arr.values)
        if isinstance(values, np.ndarray):
            return values.reshape(len(arr), t.list_size, *values.shape[1:])
        return from_awkward(_ak_from_arrow(arr))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.asarray(arr.to_pylist())
    if pa.types.is_primitive(t) or pa.types.is_boolean(t):
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    return from_awkward(_ak_from_arrow(arr))


def _ak_from_arrow(arr: Any) -> Any:
    ak = require("awkward")
    return ak.from_arrow(arr)


# -- HDF5 ---------------------------------------------------------------------------------------

_KIND = "sonic_kind"  # dataset attribute: column | jagged | counts | concat


class H5Sink(_FileSink):
    """An HDF5 file (h5py): one resizable dataset per column, appended chunk by chunk.

    A column of one number per event becomes a dataset ``(events,)``, a fixed-shape product
    (``event.put(name, array, fixed=True)``) ``(events, *shape)``; a jagged column becomes its
    content ``name`` (every event's rows, one after the other) and ``name_counts`` (rows per
    event). Columns named in ``concat`` are written as their per-event arrays one after the
    other along the first axis, without counts: a time series that
    :class:`~sonic.workflow.H5Source` cut into frames comes out as one continuous dataset
    again. A ``/`` in a column name makes groups (``strain/cleaned``). ``attrs``: attributes
    of the file (the sample rate, ...); ``events`` (the number written) is added.
    ``compression``: h5py's (``"gzip"``, ``"lzf"``), None for none. Numbers, booleans and
    strings; an awkward column goes to parquet instead.
    """

    suffix = ".h5"

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str] | str | None = None,
        *,
        concat: Sequence[str] | str = (),
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
    ) -> None:
        super().__init__(path, columns)
        self.concat = _columns_arg(concat) or ()
        self.attrs = dict(attrs or {})
        self.compression = compression
        self._file: Any = None
        self._events = 0

    def open(self) -> None:
        super().open()
        self._file = None
        self._events = 0

    def _h5(self) -> Any:
        if self._file is None:
            h5py = require("h5py", "HDF5 output")
            assert self._tmp is not None
            self._file = h5py.File(str(self._tmp), "w", track_order=True)
            self._set_attrs(self._file)
        return self._file

    def _set_attrs(self, f: Any) -> None:
        for k, v in self.attrs.items():
            try:
                f.attrs[str(k)] = v
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"hdf5 sink: attribute '{k}' = {v!r} cannot be stored: {exc}") from None

    def write(self, columns: Mapping[str, Column], length: int) -> None:
        if length == 0:
            return
        for name, col in columns.items():
            if name in self.concat:
                if isinstance(col, Jagged):
                    self._append(name, col.content[: col.offsets[-1]], "concat")
                elif isinstance(col, np.ndarray) and col.ndim >= 2:
                    self._append(name, col.reshape(-1, *col.shape[2:]), "concat")
                else:
                    raise InvalidArgument(
                        f"hdf5 sink: column '{name}' is in 'concat' but holds "
                        + ("one value per event" if isinstance(col, np.ndarray) else type(col).__name__)
                        + "; concat joins per-event arrays (a time series in frames) into one dataset"
                    )
            elif isinstance(col, Jagged):
                if f"{name}_counts" in columns:
                    raise InvalidArgument(
                        f"hdf5 sink: jagged column '{name}' stores its counts as '{name}_counts', "
                        "which is also a column; rename one of them"
                    )
                self._append(name, col.content[: col.offsets[-1]], "jagged")
                self._append(f"{name}_counts", col.counts, "counts")
            elif isinstance(col, np.ndarray):
                self._append(name, col, "column")
            else:
                raise InvalidArgument(
                    f"hdf5 sink: column '{name}' is an awkward array ({type(col).__name__}), which "
                    "an HDF5 dataset cannot hold; write it to parquet instead"
                )
        self._events += length

    def _append(self, name: str, data: np.ndarray[Any, Any], kind: str) -> None:
        h5py = require("h5py", "HDF5 output")
        f = self._h5()
        data = np.asarray(data)
        text = data.dtype.kind in "USO"
        if text:
            if data.dtype.kind == "O" and not all(isinstance(x, str | bytes) for x in data.reshape(-1)):
                raise InvalidArgument(f"hdf5 sink: column '{name}' holds Python objects; expected numbers")
            data = data.astype(object)
        elif data.dtype.kind not in "biufc":
            raise InvalidArgument(
                f"hdf5 sink: column '{name}' has dtype {data.dtype}, which the sink does not store"
            )
        ds = f.get(name)
        inner = data.shape[1:]
        if ds is None:
            for i, ch in enumerate(name):
                if ch == "/" and i and name[:i] not in f:
                    f.create_group(name[:i], track_order=True)
            row_bytes = max(1, data.dtype.itemsize if not text else 16) * max(1, int(np.prod(inner)))
            chunks: Any = (max(1, (1 << 18) // row_bytes), *inner) if all(inner) else True
            ds = f.create_dataset(
                name,
                shape=(0, *inner),
                maxshape=(None, *inner),
                dtype=h5py.string_dtype() if text else data.dtype,
                chunks=chunks,
                compression=self.compression,
            )
            ds.attrs[_KIND] = kind
        else:
            if ds.shape[1:] != inner:
                raise InvalidArgument(
                    f"hdf5 sink: column '{name}' has rows of shape {inner} in this chunk but "
                    f"{ds.shape[1:]} in the first; a dataset keeps one row shape"
                )
            if not text and not np.can_cast(data.dtype, ds.dtype, "same_kind"):
                raise InvalidArgument(
                    f"hdf5 sink: column '{name}' is {data.dtype} in this chunk but {ds.dtype} in the first"
                )
        n0 = ds.shape[0]
        ds.resize(n0 + len(data), axis=0)
        ds[n0:] = data

    def _close_writer(self, strict: bool = False) -> None:
        handle, self._file = self._file, None
        self._close_handle(handle, strict)

    def close(self) -> Path:
        if self._file is not None:
            self._file.attrs["events"] = self._events
        return self._close_and_finish()

    def _write_empty(self, path: Path) -> None:
        h5py = require("h5py", "HDF5 output")
        with h5py.File(str(path), "w") as f:
            self._set_attrs(f)
            f.attrs["events"] = 0

    def part(self, index: int, token: str) -> H5Sink:
        return H5Sink(
            self._part_path(index, token),
            self.columns,
            concat=self.concat,
            attrs=self.attrs,
            compression=self.compression,
        )

    def _merge(self, paths: list[Path]) -> None:
        h5py = require("h5py", "HDF5 output")
        block = 1 << 20
        for p in paths:
            with h5py.File(str(p), "r") as src:
                for name, ds in _h5_datasets(src):
                    text = h5py.check_string_dtype(ds.dtype) is not None
                    for a in range(0, ds.shape[0], block):
                        rows = ds.asstr()[a : a + block] if text else ds[a : a + block]
                        self._append(name, np.asarray(rows), str(ds.attrs.get(_KIND, "column")))
                self._events += int(src.attrs.get("events", 0))
        if self._file is not None:
            self._file.attrs["events"] = self._events
        self._close_writer(strict=True)


def _h5_datasets(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every dataset under ``group``, depth first, in creation order where it was tracked."""
    h5py = require("h5py", "HDF5 input")
    out: list[tuple[str, Any]] = []
    for key in group:
        obj = group[key]
        if isinstance(obj, h5py.Dataset):
            out.append((f"{prefix}{key}", obj))
        elif isinstance(obj, h5py.Group):
            out += _h5_datasets(obj, f"{prefix}{key}/")
    return out


def _read_h5(path: Path) -> dict[str, Column]:
    h5py = require("h5py", "HDF5 input")
    out: dict[str, Column] = {}
    with h5py.File(str(path), "r") as f:
        for name, ds in _h5_datasets(f):
            kind = ds.attrs.get(_KIND)
            if kind == "counts":
                continue
            data = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) is not None else ds[()]
            arr = np.asarray(data)
            if arr.dtype == object:
                arr = arr.astype(str)
            if kind == "jagged" and f"{name}_counts" in f:
                out[name] = Jagged.from_counts(np.asarray(f[f"{name}_counts"][()]), arr)
            else:
                out[name] = arr
    return out


def read_columns(path: str | Path, tree: str = "Events") -> dict[str, Column]:
    """Read back a file written by :class:`RootSink` (``.root``), :class:`ParquetSink`
    (``.parquet``) or :class:`H5Sink` (``.h5``, ``.hdf5``) as columns: numpy arrays and
    :class:`Jagged` columns (a ``concat`` column of an HDF5 file: its one continuous array)."""
    p = Path(path)
    if p.suffix in (".h5", ".hdf5"):
        return _read_h5(p)
    if p.suffix == ".parquet":
        pq = require("pyarrow.parquet", "parquet input")
        table = pq.read_table(str(p))
        return {name: _from_arrow(table.column(name).combine_chunks()) for name in table.column_names}
    if p.suffix == ".root":
        parts = list(_iterate_root(p, tree))
        return _concat_chunks([c for c, _ in parts])
    raise InvalidArgument(f"read_columns: {p} is not a .root, .parquet, .h5 or .hdf5 file")
