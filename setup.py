"""Build step of sonic: the request hot path compiled with Cython (metadata is in pyproject.toml).

The modules in :data:`sonic._compiled.MODULES` (the HTTP/2 and HTTP/1.1 edges, the gRPC
service, the codecs, the data plane, the scheduler, the ORT backend) are plain Python. Cython
compiles them unchanged into extension modules, which take 11-16% off the server's CPU per
request (benchmarks/compiled_vs_pure.py); the Python source stays the one implementation and
the fallback. Nothing here is
required: without Cython or a C compiler, or with ``SONIC_PURE_PYTHON=1`` at install time,
sonic installs and runs as pure Python. At run time ``sonic._compiled`` loads a compiled module
only while it is newer than its source, so an edited ``.py`` is never shadowed by a stale build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src" / "sonic"))
from _compiled import MODULES  # noqa: E402  (the one list, shared with the run-time check)

sys.path.pop(0)


class OptionalBuildExt(build_ext):
    """Compile in parallel; a module that fails to compile stays pure Python (with a warning)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # a missing or failing compiler: keep the pure-Python module
            print(f"sonic: not compiling {ext.name} ({exc}); it stays pure Python", file=sys.stderr)


def extensions() -> list[object]:
    if os.environ.get("SONIC_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("sonic: Cython is not installed; the hot path stays pure Python", file=sys.stderr)
        return []
    exts = [
        Extension(name, [f"src/{name.replace('.', '/')}.py"], extra_compile_args=["-O2"]) for name in MODULES
    ]
    try:
        return list(
            cythonize(
                exts,
                compiler_directives={
                    "language_level": 3,
                    "binding": True,
                    "embedsignature": True,
                    # Python semantics: annotations are not turned into C type checks
                    "annotation_typing": False,
                },
                quiet=True,
            )
        )
    except Exception as exc:  # a Cython that cannot translate them: install pure Python
        print(f"sonic: Cython failed ({exc}); the hot path stays pure Python", file=sys.stderr)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
