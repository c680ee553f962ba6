"""The event: one entry of the source, as the modules see it.

An :class:`Event` reads the source's columns for its entry (``event["Jet_pt"]``: a number,
or a numpy array for a jagged branch) and holds the products that modules put on it
(``event["score"] = ...``); a product shadows a source column of the same name. It carries
where it came from (``file``, ``entry``) and its position in the job (``index``), which is
also its position in the outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sonic.protocol.errors import nearest
from sonic.workflow._columns import Column

__all__ = ["Chunk", "Event"]


@dataclass(slots=True)
class Chunk:
    """Consecutive entries of one file: ``columns`` (name -> column), ``length`` rows, the
    first being entry ``entry_start`` of ``file``; ``index_start`` is the job-wide index of
    the first row."""

    columns: dict[str, Column]
    length: int
    file: str = ""
    entry_start: int = 0
    index_start: int = 0


class Event:
    """One event: source columns (read-only) and products (what modules put)."""

    __slots__ = ("_chunk", "_fixed", "_row", "products", "rejected")

    def __init__(self, chunk: Chunk, row: int, fixed: set[str] | None = None) -> None:
        self._chunk = chunk
        self._row = row
        self._fixed = fixed if fixed is not None else set()
        self.products: dict[str, Any] = {}
        self.rejected = False

    @property
    def index(self) -> int:
        """Position of the event in the job (and in the outputs)."""
        return self._chunk.index_start + self._row

    @property
    def entry(self) -> int:
        """Entry number in its file."""
        return self._chunk.entry_start + self._row

    @property
    def file(self) -> str:
        return self._chunk.file

    def __getitem__(self, name: str) -> Any:
        p = self.products
        if name in p:
            return p[name]
        col = self._chunk.columns.get(name)
        if col is None:
            raise KeyError(
                f"event {self.index} has no column or product '{name}'" + nearest(name, list(self.keys()))
            )
        return col[self._row]

    def __setitem__(self, name: str, value: Any) -> None:
        self.products[name] = value

    def put(self, name: str, value: Any, *, fixed: bool = False) -> None:
        """Put a product. An array is stored jagged over its first axis (one row per object)
        unless ``fixed`` (the same shape in every event: stored as a fixed-size column)."""
        self.products[name] = value
        if fixed:
            self._fixed.add(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return name in self.products or name in self._chunk.columns

    def keys(self) -> Iterator[str]:
        yield from self.products
        for k in self._chunk.columns:
            if k not in self.products:
                yield k

    def __repr__(self) -> str:
        where = f"index={self.index}, entry={self.entry}, file={self.file!r}"
        return f"Event({where}, products={list(self.products)})"
