"""Columns: how a chunk of events is held between the source, the modules and the sinks.

A source reads events in chunks of columns; a module sees one event at a time (a row of every
column); a sink gets the events' products back as columns, one chunk at a time, in order. A
column is one of

- a numpy array whose first dimension is the event (one scalar, or one fixed-shape array, per
  event: ``event``, ``MET_pt``, a per-event image);
- a :class:`Jagged` column: one array of varying length per event (the jets of each event),
  held as offsets + flat content, numpy only, so a row is a slice and costs no copy;
- an awkward array, for anything deeper (records of lists ...), passed through as it is.

Products put by modules are assembled back into columns by :func:`assemble`: a scalar per
event makes a flat array; an array per event makes a :class:`Jagged` column over its first
axis (a collection: one row per object), unless the product was declared fixed-shape
(``event.put(name, value, fixed=True)``), which stacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.errors import InvalidArgument
from sonic.workflow._deps import require

__all__ = ["Column", "Jagged", "assemble", "concat", "from_awkward", "length", "row", "take", "to_awkward"]

Column = Any  # np.ndarray | Jagged | awkward.Array


class Jagged:
    """One array of varying length per event: row ``i`` is ``content[offsets[i]:offsets[i+1]]``.

    ``content`` may have inner dimensions (``(n_objects, n_features)``): then each row is a
    ``(n_i, n_features)`` array.
    """

    __slots__ = ("content", "offsets")

    def __init__(self, offsets: npt.ArrayLike, content: npt.ArrayLike) -> None:
        self.offsets: npt.NDArray[np.int64] = np.asarray(offsets, dtype=np.int64)
        self.content: npt.NDArray[Any] = np.asarray(content)
        if self.offsets.ndim != 1 or len(self.offsets) == 0:
            raise InvalidArgument("a jagged column needs 1-d offsets starting with 0")
        if self.offsets[0] != 0 and len(self.content):
            self.content = self.content[self.offsets[0] :]
            self.offsets = self.offsets - self.offsets[0]
        if int(self.offsets[-1]) > len(self.content):
            raise InvalidArgument(
                f"jagged column: offsets end at {int(self.offsets[-1])} but content has "
                f"{len(self.content)} rows"
            )

    @classmethod
    def from_counts(cls, counts: npt.ArrayLike, content: npt.ArrayLike) -> Jagged:
        c = np.asarray(counts, dtype=np.int64)
        offsets = np.zeros(len(c) + 1, dtype=np.int64)
        np.cumsum(c, out=offsets[1:])
        return cls(offsets, content)

    @classmethod
    def from_arrays(cls, arrays: Sequence[Any], name: str = "") -> Jagged:
        """From one array per event (same trailing dimensions, lengths that vary)."""
        arrs = [np.asarray(a) for a in arrays]
        if not arrs:
            return cls(np.zeros(1, dtype=np.int64), np.zeros(0))
        inner = arrs[0].shape[1:]
        for a in arrs:
            if a.ndim == 0 or a.shape[1:] != inner:
                label = f"product '{name}'" if name else "a jagged column"
                raise InvalidArgument(
                    f"{label}: per-event arrays must share their inner shape; got {arrs[0].shape} "
                    f"and {a.shape} (the first dimension may vary)"
                )
        nonempty = [a for a in arrs if len(a)]
        dtype = nonempty[0].dtype if nonempty else arrs[0].dtype
        content = (
            np.concatenate([a.astype(dtype, copy=False) for a in arrs])
            if nonempty
            else np.zeros((0, *inner), dtype=dtype)
        )
        return cls.from_counts([len(a) for a in arrs], content)

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.content.dtype

    @property
    def inner_shape(self) -> tuple[int, ...]:
        return tuple(self.content.shape[1:])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> npt.NDArray[Any]:
        o = self.offsets
        return self.content[o[i] : o[i + 1]]

    def take(self, rows: npt.NDArray[np.int64]) -> Jagged:
        parts = [self[int(i)] for i in rows]
        if not parts:
            return Jagged(np.zeros(1, dtype=np.int64), self.content[:0])
        return Jagged.from_counts([len(p) for p in parts], np.concatenate(parts))

    def slice(self, start: int, stop: int) -> Jagged:
        o = self.offsets[start : stop + 1]
        return Jagged(o - o[0], self.content[o[0] : o[-1]])

    def tolist(self) -> list[Any]:
        return [self[i].tolist() for i in range(len(self))]

    def equals(self, other: object) -> bool:
        """Same rows, same dtype (exact comparison)."""
        return (
            isinstance(other, Jagged)
            and np.array_equal(self.offsets, other.offsets)
            and self.content.dtype == other.content.dtype
            and self.content.shape == other.content.shape
            and np.array_equal(self.content, other.content)
        )

    def __repr__(self) -> str:
        return f"Jagged({len(self)} rows, {len(self.content)} objects of {self.inner_shape} {self.dtype})"


def length(col: Column) -> int:
    return len(col)


def row(col: Column, i: int) -> Any:
    """Event ``i`` of a column."""
    return col[i]


def take(col: Column, rows: npt.NDArray[np.int64]) -> Column:
    """The rows ``rows`` of a column, in that order."""
    if isinstance(col, Jagged):
        return col.take(rows)
    return col[rows]


def concat(cols: Sequence[Column]) -> Column:
    """Columns of successive chunks, one after the other."""
    if not cols:
        raise InvalidArgument("nothing to concatenate")
    first = cols[0]
    if isinstance(first, Jagged):
        counts = np.concatenate([c.counts for c in cols])
        return Jagged.from_counts(counts, np.concatenate([c.content[: c.offsets[-1]] for c in cols]))
    if isinstance(first, np.ndarray):
        return np.concatenate(cols)
    ak = require("awkward", "awkward columns")
    return ak.concatenate(list(cols))


def _is_scalar(v: Any) -> bool:
    return isinstance(v, int | float | bool | complex | str | bytes | np.generic) or (
        isinstance(v, np.ndarray) and v.ndim == 0
    )


def assemble(name: str, values: Sequence[Any], fixed: bool) -> Column:
    """One product's per-event values (in event order) as a column (see the module doc)."""
    if not values:
        raise InvalidArgument(f"product '{name}': no values to assemble")
    first = values[0]
    if _is_scalar(first):
        if not all(_is_scalar(v) for v in values):
            raise InvalidArgument(
                f"product '{name}' is a scalar in some events and an array in others; put the "
                "same kind of value in every event"
            )
        return np.asarray(values)
    if isinstance(first, np.ndarray | list | tuple):
        arrays = [np.asarray(v) for v in values]
        if all(a.dtype != object for a in arrays):
            if fixed:
                shapes = {a.shape for a in arrays}
                if len(shapes) > 1:
                    raise InvalidArgument(
                        f"product '{name}' is declared fixed-shape but its shape varies: "
                        f"{sorted(shapes)[:3]}; put it without fixed=True to store it jagged"
                    )
                return np.stack(arrays)
            return Jagged.from_arrays(arrays, name)
    ak = require("awkward", f"product '{name}' of type {type(first).__name__}")
    return ak.from_iter(values)


def from_awkward(arr: Any) -> Column:
    """An awkward array read from a file as a column: numpy where the layout allows it
    (flat, fixed-size, or one level of lists of numbers), else the awkward array itself."""
    ak = require("awkward")
    layout = arr.layout
    form = ak.forms
    f = layout.form
    if isinstance(f, form.NumpyForm):
        return np.asarray(ak.to_numpy(arr))
    if isinstance(f, form.RegularForm) and _numeric(f.content):
        return np.asarray(ak.to_numpy(arr))
    if isinstance(f, form.ListOffsetForm | form.ListForm) and _numeric(f.content):
        counts = np.asarray(ak.num(arr, axis=1), dtype=np.int64)
        content = np.asarray(ak.to_numpy(ak.flatten(arr, axis=1)))
        return Jagged.from_counts(counts, content)
    return arr


def _numeric(f: Any) -> bool:
    ak = require("awkward")
    if isinstance(f, ak.forms.NumpyForm):
        return True
    return isinstance(f, ak.forms.RegularForm) and isinstance(f.content, ak.forms.NumpyForm)


def to_awkward(col: Column) -> Any:
    """A column as an awkward array (``var * ...`` for a jagged one)."""
    ak = require("awkward")
    if isinstance(col, Jagged):
        return ak.unflatten(ak.Array(col.content[: col.offsets[-1]]), col.counts, axis=0)
    if isinstance(col, np.ndarray):
        return ak.Array(col)
    return col
