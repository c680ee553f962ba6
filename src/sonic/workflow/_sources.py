"""Event sources: where the events come from, in chunks.

A source is a list of *files*, each with a number of entries, and a reader of an entry range
of one file in chunks of columns (:class:`~sonic.workflow._event.Chunk`). That is all the
process and the Dask executor need: the process reads the ranges one after the other, the
executor cuts them into partitions (:meth:`Source.split`: by file, then by entry range) and
gives each worker its own.

- :class:`RootSource` — TTrees read with uproot (branches selected by name or glob; a jagged
  branch becomes one numpy array per event; ``collections`` stacks the branches of one
  collection, ``Jet_pt``, ``Jet_eta`` ..., into one ``(n_jets, n_features)`` array per event).
- :class:`H5Source` — HDF5 datasets read with h5py (the first dimension is the event, or a time
  series cut into fixed-length frames with context either side: ``frame``, ``context``).
- :class:`ArraySource` — arrays in memory (numpy, lists of per-event arrays, awkward).

Reading is blocking I/O: the process runs it in a worker thread, one chunk ahead.
"""

from __future__ import annotations

import fnmatch
import glob
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonic.protocol.errors import InvalidArgument, NotFound, nearest
from sonic.workflow._columns import Column, Jagged, from_awkward
from sonic.workflow._deps import require
from sonic.workflow._event import Chunk

__all__ = ["ArraySource", "H5Source", "Range", "RootSource", "Source"]


@dataclass(frozen=True, slots=True)
class Range:
    """Entries ``[start, stop)`` of file number ``file`` of a source."""

    file: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


class Source:
    """The base of every source: files, their entry counts, a reader of entry ranges.

    Subclasses implement :meth:`_files` (names), :meth:`_count` (entries of file ``i``) and
    :meth:`_read` (chunks of a range). ``ranges`` restricts the source to some entry ranges
    (what :meth:`split` and :meth:`head` return).
    """

    step_size: int = 1000

    def __init__(self) -> None:
        self.ranges: tuple[Range, ...] | None = None
        self._counts: list[int] | None = None

    # -- what subclasses implement ----------------------------------------------------------

    def _files(self) -> list[str]:
        raise NotImplementedError

    def _count(self, i: int) -> int:
        raise NotImplementedError

    def _read(self, rng: Range) -> Iterator[Chunk]:
        raise NotImplementedError

    # -- the common part ----------------------------------------------------------------------

    def counts(self) -> list[int]:
        """Entries per file."""
        if self._counts is None:
            self._counts = [self._count(i) for i in range(len(self._files()))]
        return self._counts

    def all_ranges(self) -> tuple[Range, ...]:
        if self.ranges is not None:
            return self.ranges
        return tuple(Range(i, 0, n) for i, n in enumerate(self.counts()) if n > 0)

    def __len__(self) -> int:
        """Number of events."""
        return sum(len(r) for r in self.all_ranges())

    def _with(self, ranges: Sequence[Range]) -> Source:
        import copy

        new = copy.copy(self)
        new.ranges = tuple(ranges)
        return new

    def head(self, n: int) -> Source:
        """The first ``n`` events."""
        out: list[Range] = []
        left = n
        for r in self.all_ranges():
            if left <= 0:
                break
            take = min(left, len(r))
            out.append(Range(r.file, r.start, r.start + take))
            left -= take
        return self._with(out)

    def split(self, n: int) -> list[Source]:
        """About ``n`` parts of about equal size, in order; a part never spans two files."""
        ranges = self.all_ranges()
        total = sum(len(r) for r in ranges)
        if total == 0:
            return []
        n = max(1, min(n, total))
        target = max(1, math.ceil(total / n))
        parts: list[list[Range]] = []
        for r in ranges:
            pieces = max(1, round(len(r) / target))
            size = math.ceil(len(r) / pieces)
            start = r.start
            while start < r.stop:
                stop = min(r.stop, start + size)
                parts.append([Range(r.file, start, stop)])
                start = stop
        return [self._with(p) for p in parts]

    def chunks(self, index_start: int = 0) -> Iterator[Chunk]:
        """Every chunk of every range, in order; ``index_start`` numbers the first event."""
        index = index_start
        for r in self.all_ranges():
            for chunk in self._read(r):
                chunk.index_start = index
                index += chunk.length
                yield chunk

    def file_name(self, i: int) -> str:
        return self._files()[i]

    def describe(self) -> str:
        files = self._files()
        what = files[0] if len(files) == 1 else f"{len(files)} files"
        return f"{type(self).__name__}({what})"


def _expand(files: str | Path | Sequence[str | Path], what: str) -> list[str]:
    items = [files] if isinstance(files, str | Path) else list(files)
    out: list[str] = []
    for item in items:
        s = str(item)
        if "://" in s and not s.startswith("file://"):
            out.append(s)  # a remote URL (root://, https://): uproot opens it
            continue
        if any(c in s for c in "*?["):
            matches = sorted(glob.glob(s))
            if not matches:
                raise NotFound(f"{what}: no file matches {s!r}")
            out.extend(matches)
        else:
            if not Path(s).exists():
                raise NotFound(f"{what}: input file {s!r} does not exist")
            out.append(s)
    if not out:
        raise InvalidArgument(f"{what}: no input files given")
    return out


class RootSource(Source):
    """Events from ROOT TTrees (uproot): one event per entry.

    ``files``: paths, globs or URLs; ``tree``: the TTree's name; ``branches``: names or glob
    patterns to read (None: all); ``collections``: product name -> the branches (a list, or
    one glob, in the tree's order) of one collection, stacked into a ``(n, k)`` array per
    event — e.g. ``{"jet": "Jet_*"}``; ``step_size``: entries per chunk.
    """

    def __init__(
        self,
        files: str | Path | Sequence[str | Path],
        tree: str = "Events",
        branches: Sequence[str] | None = None,
        *,
        collections: Mapping[str, str | Sequence[str]] | None = None,
        step_size: int = 1000,
    ) -> None:
        super().__init__()
        self.files = _expand(files, "root source")
        self.tree = tree
        self.branches = list(branches) if branches is not None else None
        self.collections = {
            k: ([v] if isinstance(v, str) else list(v)) for k, v in (collections or {}).items()
        }
        if type(step_size) is not int or step_size < 1:
            raise InvalidArgument(f"root source: step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = step_size
        self._plan: tuple[list[str], dict[str, list[str]]] | None = None

    def _files(self) -> list[str]:
        return self.files

    def _open_tree(self, path: str) -> tuple[Any, Any]:
        uproot = require("uproot", "ROOT input")
        f = uproot.open(path)
        try:
            t = f[self.tree]
        except Exception:
            names = [k.split(";")[0] for k in f]
            f.close()
            raise NotFound(
                f"root source: {path} has no tree '{self.tree}'; it holds {sorted(set(names))}"
                + nearest(self.tree, names)
            ) from None
        return f, t

    def _count(self, i: int) -> int:
        f, t = self._open_tree(self.files[i])
        with f:
            return int(t.num_entries)

    def _resolve(self, tree: Any) -> tuple[list[str], dict[str, list[str]]]:
        """Which branches to read, and the branches of each collection in tree order."""
        if self._plan is not None:
            return self._plan
        names = [str(k) for k in tree.keys(recursive=False)]

        def match(pattern: str, what: str) -> list[str]:
            found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not found:
                raise NotFound(
                    f"root source: tree '{self.tree}' has no branch matching {pattern!r} ({what})"
                    + nearest(pattern, names)
                )
            return found

        selected: list[str] = []
        for p in self.branches if self.branches is not None else ([] if self.collections else ["*"]):
            selected += [n for n in match(p, "branches") if n not in selected]
        colls: dict[str, list[str]] = {}
        for cname, patterns in self.collections.items():
            members: list[str] = []
            for p in patterns:
                members += [n for n in match(p, f"collection '{cname}'") if n not in members]
            colls[cname] = members
        self._plan = (selected, colls)
        return self._plan

    def _read(self, rng: Range) -> Iterator[Chunk]:
        path = self.files[rng.file]
        f, t = self._open_tree(path)
        with f:
            selected, colls = self._resolve(t)
            wanted = list(dict.fromkeys(selected + [m for ms in colls.values() for m in ms]))
            start = rng.start
            for arrays in t.iterate(
                wanted,
                step_size=self.step_size,
                entry_start=rng.start,
                entry_stop=rng.stop,
                library="ak",
                how=dict,
            ):
                n = len(next(iter(arrays.values()))) if arrays else 0
                columns: dict[str, Column] = {}
                for name in selected:
                    columns[name] = from_awkward(arrays[name])
                for cname, members in colls.items():
                    columns[cname] = _stack(cname, [(m, from_awkward(arrays[m])) for m in members])
                yield Chunk(columns, n, path, start)
                start += n


def _stack(name: str, members: list[tuple[str, Column]]) -> Jagged:
    first_name, first = members[0]
    if not isinstance(first, Jagged):
        raise InvalidArgument(
            f"root source: collection '{name}': branch '{first_name}' is not a jagged branch of "
            "numbers (one value per object)"
        )
    cols = []
    for m, col in members:
        if not isinstance(col, Jagged) or col.content.ndim != 1:
            raise InvalidArgument(
                f"root source: collection '{name}': branch '{m}' is not a jagged branch of numbers"
            )
        if not np.array_equal(col.offsets, first.offsets):
            raise InvalidArgument(
                f"root source: collection '{name}': branches '{first_name}' and '{m}' have "
                "different counts per event; a collection's branches must share one counter"
            )
        cols.append(col.content)
    dtype = np.result_type(*cols)
    return Jagged(first.offsets, np.stack([c.astype(dtype, copy=False) for c in cols], axis=1))


class H5Source(Source):
    """Events from HDF5 datasets (h5py): row ``i`` of every dataset is event ``i`` — or, with
    ``frame``, a time series cut into frames.

    ``datasets``: dataset paths (``"jets/features"``; the column is named after the path), or
    a mapping column name -> dataset path. Every dataset of a file must have the same length.

    ``frame=k``: event ``i`` is rows ``[i·k − before, (i+1)·k + after)`` of every dataset, where
    ``context`` is ``before = after`` (an integer) or ``[before, after]``: a strain sampled at
    4096 Hz with ``frame=4096, context=2048`` gives one event per second, each with half a
    second of the neighbouring data either side — the context a convolutional model needs, in
    the event itself, so that no server keeps state between requests. Rows outside the file
    are ``pad``-ded: ``"reflect"`` mirrors the data about the first and last rows (numpy's
    ``np.pad(mode="reflect")``), ``"zero"`` fills zeros. A file holds ``length // frame``
    events: a tail shorter than a frame is not read. ``step_size``: events per chunk (default
    1000 rows, or 16 frames).
    """

    PADS = ("reflect", "zero")

    def __init__(
        self,
        files: str | Path | Sequence[str | Path],
        datasets: Sequence[str] | Mapping[str, str],
        *,
        step_size: int | None = None,
        frame: int | None = None,
        context: int | Sequence[int] = 0,
        pad: str = "reflect",
    ) -> None:
        super().__init__()
        self.files = _expand(files, "hdf5 source")
        if isinstance(datasets, Mapping):
            self.datasets = {str(k): str(v) for k, v in datasets.items()}
        elif isinstance(datasets, str):
            self.datasets = {datasets: datasets}
        else:
            self.datasets = {str(d): str(d) for d in datasets}
        if not self.datasets:
            raise InvalidArgument("hdf5 source: 'datasets' names no dataset")
        if frame is not None and (type(frame) is not int or frame < 1):
            raise InvalidArgument(f"hdf5 source: frame must be an integer >= 1, got {frame!r}")
        self.frame = frame
        self.context = _context(context)
        if self.context != (0, 0) and frame is None:
            raise InvalidArgument("hdf5 source: 'context' needs 'frame' (the rows of one event)")
        if pad not in self.PADS:
            raise InvalidArgument(f"hdf5 source: pad must be one of {self.PADS}, got {pad!r}")
        self.pad = pad
        if step_size is None:
            step_size = 1000 if frame is None else 16
        if type(step_size) is not int or step_size < 1:
            raise InvalidArgument(f"hdf5 source: step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = step_size

    def _files(self) -> list[str]:
        return self.files

    def _datasets(self, f: Any, path: str) -> dict[str, Any]:
        h5py = require("h5py", "HDF5 input")
        out: dict[str, Any] = {}
        for col, ds in self.datasets.items():
            obj = f.get(ds)
            if not isinstance(obj, h5py.Dataset):
                found = _dataset_names(f, h5py)
                raise NotFound(
                    f"hdf5 source: {path} has no dataset '{ds}'; it has {found[:20]}" + nearest(ds, found)
                )
            out[col] = obj
        lengths = {col: (d.shape[0] if d.shape else 0) for col, d in out.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidArgument(
                f"hdf5 source: the datasets of {path} have different lengths {lengths}; every "
                "dataset holds one row per event" + (" (per sample, cut into frames)" if self.frame else "")
            )
        rows = next(iter(lengths.values()))
        if self.frame is not None and self.pad == "reflect" and self.frame <= rows <= max(self.context):
            raise InvalidArgument(
                f"hdf5 source: {path} has {rows} rows, too few to reflect a context of "
                f"{max(self.context)} rows; use pad: zero or a shorter context"
            )
        return out

    def _count(self, i: int) -> int:
        h5py = require("h5py", "HDF5 input")
        with h5py.File(self.files[i], "r") as f:
            ds = self._datasets(f, self.files[i])
            rows = int(next(iter(ds.values())).shape[0])
            return rows if self.frame is None else rows // self.frame

    def _read(self, rng: Range) -> Iterator[Chunk]:
        h5py = require("h5py", "HDF5 input")
        path = self.files[rng.file]
        with h5py.File(path, "r") as f:
            ds = self._datasets(f, path)
            for start in range(rng.start, rng.stop, self.step_size):
                stop = min(rng.stop, start + self.step_size)
                if self.frame is None:
                    cols: dict[str, Column] = {c: np.asarray(d[start:stop]) for c, d in ds.items()}
                else:
                    cols = {c: self._frames(d, start, stop) for c, d in ds.items()}
                yield Chunk(cols, stop - start, path, start)

    def _frames(self, d: Any, start: int, stop: int) -> np.ndarray[Any, Any]:
        """Frames ``start .. stop-1`` of dataset ``d`` with their context: (events, rows, ...)."""
        assert self.frame is not None
        before, after = self.context
        rows = int(d.shape[0])
        idx = np.arange(start, stop)[:, None] * self.frame + np.arange(-before, self.frame + after)[None, :]
        outside = (idx < 0) | (idx >= rows)
        if self.pad == "reflect":
            idx = np.where(idx < 0, -idx, idx)
            idx = np.where(idx >= rows, 2 * (rows - 1) - idx, idx)
        else:
            idx = np.clip(idx, 0, rows - 1)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        out: np.ndarray[Any, Any] = np.asarray(d[lo:hi])[idx - lo]
        if self.pad == "zero" and outside.any():
            out[outside] = 0
        return out


def _context(context: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(context, int) and not isinstance(context, bool):
        pair: tuple[Any, ...] = (context, context)
    elif isinstance(context, Sequence) and not isinstance(context, str) and len(context) == 2:
        pair = tuple(context)
    else:
        raise InvalidArgument(f"hdf5 source: context must be an integer or [before, after], got {context!r}")
    if not all(type(c) is int and c >= 0 for c in pair):
        raise InvalidArgument(f"hdf5 source: context must be rows >= 0, got {context!r}")
    return int(pair[0]), int(pair[1])


def _dataset_names(f: Any, h5py: Any) -> list[str]:
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(name)

    f.visititems(visit)
    return found


class ArraySource(Source):
    """Events from arrays in memory: name -> numpy array (first dimension = event), a list
    of per-event arrays (a jagged column), a :class:`Jagged`, or an awkward array."""

    def __init__(self, columns: Mapping[str, Any], *, step_size: int = 1000) -> None:
        super().__init__()
        if not columns:
            raise InvalidArgument("array source: no columns given")
        self.columns: dict[str, Column] = {}
        for name, value in columns.items():
            self.columns[str(name)] = _as_column(str(name), value)
        lengths = {k: len(v) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidArgument(f"array source: columns have different lengths {lengths}")
        if type(step_size) is not int or step_size < 1:
            raise InvalidArgument(f"array source: step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = step_size

    def _files(self) -> list[str]:
        return ["<memory>"]

    def _count(self, i: int) -> int:
        return len(next(iter(self.columns.values())))

    def _read(self, rng: Range) -> Iterator[Chunk]:
        for start in range(rng.start, rng.stop, self.step_size):
            stop = min(rng.stop, start + self.step_size)
            cols = {
                k: (v.slice(start, stop) if isinstance(v, Jagged) else v[start:stop])
                for k, v in self.columns.items()
            }
            yield Chunk(cols, stop - start, "<memory>", start)


def _as_column(name: str, value: Any) -> Column:
    if isinstance(value, Jagged | np.ndarray):
        return value
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in value):
            return Jagged.from_arrays(value, name)
        return np.asarray(value)
    if type(value).__module__.startswith("awkward"):
        return from_awkward(value)
    raise InvalidArgument(
        f"array source: column '{name}' is a {type(value).__name__}; expected a numpy array, a "
        "list of per-event arrays, a Jagged column or an awkward array"
    )
