"""Which sonic modules are compiled (by Cython, at install time; see setup.py), and the guard
that loads a compiled module only while it is up to date with its source.

The compiled modules are the same Python files, built into extension modules next to them
(``connection.py`` and ``connection.cpython-311-...so``). Python's own import would always take
the extension, so an edited source would be shadowed by a stale build until the next install.
:class:`FreshnessFinder` (installed by ``import sonic``) takes the ``.py`` instead whenever the
source is newer than the extension, or when ``SONIC_PURE_PYTHON`` is set in the environment.

This file imports nothing from sonic: setup.py reads :data:`MODULES` from it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "FreshnessFinder", "compiled", "install", "stale"]

#: The request hot path, in import order of the layers (protocol, backends, scheduler, server).
MODULES: tuple[str, ...] = (
    "sonic.protocol.types",
    "sonic.protocol.datatypes",
    "sonic.protocol.http_codec",
    "sonic.protocol.grpc_codec",
    "sonic.backends.base",
    "sonic.backends.onnxruntime",
    "sonic.scheduler.batcher",
    "sonic.server.stats",
    "sonic.server.dataplane",
    "sonic.server.grpc_service",
    "sonic.server.http_edge",
    "sonic.server.h2.frames",
    "sonic.server.h2.headers",
    "sonic.server.h2.connection",
    "sonic.server.h2.grpc",
)
_NAMES = frozenset(MODULES)
_EXT_SUFFIXES = importlib.machinery.EXTENSION_SUFFIXES


def pure_python() -> bool:
    """Whether ``SONIC_PURE_PYTHON`` asks for the Python sources even where a build exists."""
    return os.environ.get("SONIC_PURE_PYTHON", "") not in ("", "0")


class FreshnessFinder(importlib.abc.MetaPathFinder):
    """Sends the import of a compiled module to its ``.py`` when the build is stale or unwanted."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _NAMES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.endswith(tuple(_EXT_SUFFIXES)):
            return None  # not built: the normal import finds the .py
        source = Path(spec.origin).parent / (fullname.rpartition(".")[2] + ".py")
        if not source.exists():
            return None  # an installed build without sources: use it
        if pure_python() or source.stat().st_mtime > Path(spec.origin).stat().st_mtime:
            return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> None:
    """Put the guard first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, FreshnessFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, FreshnessFinder())


def compiled() -> dict[str, bool]:
    """For each module of :data:`MODULES` imported so far: whether it runs compiled."""
    out: dict[str, bool] = {}
    for name in MODULES:
        module = sys.modules.get(name)
        if module is not None:
            out[name] = not str(getattr(module, "__file__", "")).endswith(".py")
    return out


def stale(root: Path | None = None) -> list[str]:
    """Modules whose build is older than their source (edited since the install): what a
    rebuild would bring back to compiled speed. Modules never built are not listed."""
    root = root or Path(__file__).resolve().parent.parent
    out = []
    for name in MODULES:
        source = root / (name.replace(".", "/") + ".py")
        builds = [source.with_name(source.stem + suffix) for suffix in _EXT_SUFFIXES]
        built = [b for b in builds if b.exists()]
        if built and source.exists() and source.stat().st_mtime > max(b.stat().st_mtime for b in built):
            out.append(name)
    return out
