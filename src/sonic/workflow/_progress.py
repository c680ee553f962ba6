"""The progress bar: tqdm on stderr when it is a terminal, nothing otherwise."""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["Progress", "progress"]


class Progress:
    """A no-op bar; :func:`progress` returns a tqdm one where it should show."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _Tqdm(Progress):
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def progress(total: int | None, desc: str, enabled: bool | None = None) -> Progress:
    """A bar over ``total`` events. ``enabled=None``: on when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return Progress()
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:  # tqdm is a dependency, but a bar is not worth failing for
        return Progress()
    return _Tqdm(
        tqdm(
            total=total,
            desc=desc,
            unit="ev",
            unit_scale=True,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
            mininterval=0.2,
        )
    )
