"""The compiled bit-accurate emulation of an hls4ml project, loaded without hls4ml.

Where this sits: :mod:`sonic.fpga.convert` writes an hls4ml project and has hls4ml compile its
C simulation into a shared library (``firmware/<project>-<stamp>.so``); it also writes
``sonic_fpga.json`` beside it, describing the library's entry points, tensors and build. This
module loads that library with :mod:`ctypes` and calls ``<project>_float`` (the C-simulation
bridge hls4ml generates) once per sample, exactly as ``hls4ml.model.ModelGraph.predict`` does,
so its results are bit-identical to hls4ml's own predict. The server backend
(:mod:`sonic.backends.hls4ml`), the scan and the tests all go through here; none of them needs
hls4ml, qonnx or a framework at run time: only the project directory and, when the library must
be rebuilt, g++.

Why a rebuild can be needed: the C simulation loads its weights from text files whose absolute
directory is compiled into the library (Vivado/Vitis through ``-DWEIGHTS_DIR`` in
``build_lib.sh``, Catapult in the bridge source). A project that was moved or copied (a model
repository on another host or path) would read the weights of the old location, or call
``exit(1)`` inside the server when they are gone. :meth:`EmulationLibrary.open` detects that
(the build directory recorded in ``sonic_fpga.json`` differs from where the project is now, or
the library is missing) and rebuilds it with the project's own ``build_lib.sh`` into a private
copy, never touching the repository. The first call, which loads the weights, happens in
:meth:`open` under a lock, so concurrent instances never race on it.

The library's entry points are re-entrant for inference (no state besides the one-time weight
load); the trace entry points use global storage, so :meth:`EmulationLibrary.trace` holds a lock.
ctypes releases the GIL during each call, so several instances run in parallel threads.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.errors import Internal, InvalidArgument, NotFound, Unavailable

__all__ = ["META_FILE", "EmulationLibrary", "ProjectMeta", "TensorMeta", "read_meta", "write_meta"]

#: The description of a converted project, written by :mod:`sonic.fpga.convert`.
META_FILE = "sonic_fpga.json"
META_FORMAT = 1

Array = npt.NDArray[Any]

_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """One input or output of the design: the served name, hls4ml's name, shape, type."""

    name: str
    hls_name: str
    shape: tuple[int, ...]
    precision: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hls_name": self.hls_name,
            "shape": list(self.shape),
            "precision": self.precision,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorMeta:
        return cls(str(d["name"]), str(d["hls_name"]), tuple(int(s) for s in d["shape"]), str(d["precision"]))


@dataclass(slots=True)
class ProjectMeta:
    """What ``sonic_fpga.json`` records about a converted, compiled project."""

    project_name: str
    backend: str
    io_type: str
    inputs: list[TensorMeta]
    outputs: list[TensorMeta]
    library: str  # relative to the project directory
    built_in: str  # absolute project directory the library was compiled for
    traced: list[TensorMeta] = field(default_factory=list)  # layer outputs the library can trace
    info: dict[str, Any] = field(default_factory=dict)  # config, timings, source, estimate, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "format": META_FORMAT,
            "project_name": self.project_name,
            "backend": self.backend,
            "io_type": self.io_type,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "library": self.library,
            "built_in": self.built_in,
            "traced": [t.to_json() for t in self.traced],
            "info": self.info,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProjectMeta:
        if d.get("format") != META_FORMAT:
            raise InvalidArgument(
                f"{META_FILE}: format {d.get('format')!r}; this sonic reads format {META_FORMAT}"
            )
        return cls(
            project_name=str(d["project_name"]),
            backend=str(d["backend"]),
            io_type=str(d["io_type"]),
            inputs=[TensorMeta.from_json(t) for t in d["inputs"]],
            outputs=[TensorMeta.from_json(t) for t in d["outputs"]],
            library=str(d["library"]),
            built_in=str(d["built_in"]),
            traced=[TensorMeta.from_json(t) for t in d.get("traced", [])],
            info=dict(d.get("info", {})),
        )


def read_meta(project_dir: Path) -> ProjectMeta:
    path = Path(project_dir) / META_FILE
    if not path.is_file():
        raise NotFound(
            f"{path} not found: {project_dir} is not a project written by 'sonic fpga convert' "
            f"(expected {META_FILE} beside the hls4ml project files)"
        )
    try:
        return ProjectMeta.from_json(json.loads(path.read_text()))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: unreadable project description: {exc}") from exc


def write_meta(project_dir: Path, meta: ProjectMeta) -> Path:
    path = Path(project_dir) / META_FILE
    path.write_text(json.dumps(meta.to_json(), indent=2, default=str) + "\n")
    return path


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


def relocate_sources(copy_dir: Path) -> None:
    """Point a copied project's compiled-in weight directory at the copy.

    Vivado/Vitis compute it in build_lib.sh from the script's location (nothing to do);
    Catapult writes it into the bridge source as a string literal.
    """
    new = str(copy_dir / "firmware" / "weights")
    for bridge in copy_dir.glob("*_bridge.cpp"):
        text = bridge.read_text()
        patched = re.sub(
            r'(static std::string s_weights_dir = ")[^"]*(";)', lambda m: m[1] + new + m[2], text
        )
        if patched != text:
            bridge.write_text(patched)


def build_library(project_dir: Path, *, timeout: float = 600.0) -> Path:
    """Run the project's own ``build_lib.sh`` (g++ only) and return the library it made."""
    script = project_dir / "build_lib.sh"
    if not script.is_file():
        raise NotFound(f"{script} not found: cannot build the emulation library of {project_dir}")
    if shutil.which("g++") is None:
        raise Unavailable(
            f"building the emulation of {project_dir} needs g++ (the C simulation is C++); "
            "install it (Debian: apt-get install g++)"
        )
    before = set(project_dir.glob("firmware/*.so"))
    proc = subprocess.run(
        ["bash", str(script)], cwd=project_dir, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise Internal(f"building the emulation library in {project_dir} failed (g++):\n{tail}")
    stamp = re.search(r"^LIB_STAMP=(\S+)", script.read_text(), re.M)
    libs = sorted(project_dir.glob(f"firmware/*-{stamp[1]}.so" if stamp else "firmware/*.so"))
    fresh = [p for p in libs if p not in before] or libs
    if not fresh:
        raise Internal(f"build_lib.sh in {project_dir} ran but produced no firmware/*.so")
    return max(fresh, key=lambda p: p.stat().st_mtime)


class EmulationLibrary:
    """A loaded C-simulation library: ``predict`` batches of samples, ``trace`` layer outputs."""

    def __init__(
        self, project_dir: Path, meta: ProjectMeta, library: Path, *, private_copy: Path | None
    ) -> None:
        self.project_dir = project_dir
        self.meta = meta
        self.library_path = library
        self._private_copy = private_copy
        self._lib = ctypes.CDLL(str(library), mode=os.RTLD_LOCAL)
        self._fn: dict[type, Any] = {}
        for dtype, ctype in ((np.float32, ctypes.c_float), (np.float64, ctypes.c_double)):
            suffix = "float" if dtype is np.float32 else "double"
            fn = getattr(self._lib, f"{meta.project_name}_{suffix}", None)
            if fn is None:
                raise InvalidArgument(
                    f"{library} has no entry point {meta.project_name}_{suffix}: not an hls4ml "
                    "C-simulation library for this project"
                )
            fn.restype = None
            # raw addresses: one call per sample, so no per-call pointer objects
            fn.argtypes = [ctypes.c_void_p] * (len(meta.inputs) + len(meta.outputs))
            del ctype
            self._fn[dtype] = fn
        self._trace_lock = threading.Lock()
        self.closed = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, project_dir: Path | str, *, rebuild: bool | None = None) -> EmulationLibrary:
        """Load the library of a converted project, rebuilding it privately when needed.

        ``rebuild=None`` rebuilds only when the library is missing or was compiled for another
        directory; ``True`` always rebuilds (into a private copy); ``False`` never does and
        fails instead.
        """
        project_dir = Path(project_dir).resolve()
        meta = read_meta(project_dir)
        library = project_dir / meta.library
        moved = Path(meta.built_in).resolve() != project_dir
        needs = rebuild if rebuild is not None else (moved or not library.is_file())
        private: Path | None = None
        if needs:
            if rebuild is False:
                raise Unavailable(f"the emulation library of {project_dir} is missing or was built elsewhere")
            private = Path(tempfile.mkdtemp(prefix=f"sonic-hls4ml-{meta.project_name}-"))
            copy = private / "prj"
            shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns("*.so", "*.o", "*_prj"))
            relocate_sources(copy)
            library = build_library(copy)
            weights_root = copy
        else:
            weights_root = project_dir
        missing = [] if meta.backend.lower() == "quartus" else _weights_check(weights_root)
        if missing:
            raise NotFound(
                f"the emulation of {project_dir} reads its weights from "
                f"{weights_root / 'firmware' / 'weights'}, "
                f"where {missing[:3]} are missing; the project is incomplete (convert it again)"
            )
        emu = cls(project_dir, meta, library, private_copy=private)
        with _LOAD_LOCK:  # the first call loads the weights (static state in the C simulation)
            emu.predict([np.zeros((1, *t.shape), np.float32) for t in meta.inputs])
        return emu

    # -- running ------------------------------------------------------------------------------

    def _arrays(self, inputs: Array | Sequence[Array], dtype: type) -> tuple[list[Array], int]:
        xs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        if len(xs) != len(self.meta.inputs):
            raise InvalidArgument(
                f"the design takes {len(self.meta.inputs)} inputs "
                f"({[t.name for t in self.meta.inputs]}), got {len(xs)}"
            )
        out: list[Array] = []
        n = -1
        for x, spec in zip(xs, self.meta.inputs, strict=True):
            arr: Array = np.ascontiguousarray(x, dtype=dtype)
            if arr.size % spec.size:
                raise InvalidArgument(
                    f"input '{spec.name}': {arr.size} values are not a whole number of samples of shape "
                    f"{list(spec.shape)}"
                )
            rows = arr.size // spec.size
            if n >= 0 and rows != n:
                raise InvalidArgument(f"inputs disagree on the number of samples ({n} vs {rows})")
            n = rows
            out.append(arr.reshape(rows, spec.size))
        return out, max(n, 0)

    def predict(self, inputs: Array | Sequence[Array], *, dtype: type = np.float32) -> list[Array]:
        """Run every sample through the C simulation; one array per output, batch first.

        ``dtype`` float32 calls ``<project>_float`` (what hls4ml's predict uses for float32
        input), float64 ``<project>_double``. Outputs come back in the same dtype.
        """
        if self.closed:
            raise Unavailable("the emulation library was closed")
        fn = self._fn[np.float64 if dtype is np.float64 else np.float32]
        dt = np.float64 if dtype is np.float64 else np.float32
        xs, n = self._arrays(inputs, dt)
        ys = [np.zeros((n, t.size), dt) for t in self.meta.outputs]
        item = np.dtype(dt).itemsize
        bases = [(a.ctypes.data, a.shape[1] * item) for a in (*xs, *ys)]
        if len(bases) == 2:  # the common case, without a list per sample
            (xb, xs_), (yb, ys_) = bases
            for i in range(n):
                fn(xb + i * xs_, yb + i * ys_)
        else:
            for i in range(n):
                fn(*[b + i * s for b, s in bases])
        return [y.reshape(n, *t.shape) for y, t in zip(ys, self.meta.outputs, strict=True)]

    def trace(self, inputs: Array | Sequence[Array]) -> tuple[list[Array], dict[str, Array]]:
        """Outputs plus every traced layer's output per sample (float32), as hls4ml's trace.

        Needs a library built with tracing (``ConversionConfig(trace=True)``); the layers it
        can trace are ``meta.traced``.
        """
        if not self.meta.traced:
            raise Unavailable(
                f"the emulation of {self.project_dir} was built without tracing; convert with trace=True"
            )
        alloc = self._lib.allocate_trace_storage
        alloc.argtypes, alloc.restype = [ctypes.c_size_t], None
        collect = self._lib.collect_trace_output
        collect.argtypes, collect.restype = [ctypes.POINTER(_TraceData)], None
        free = self._lib.free_trace_storage
        free.argtypes, free.restype = [], None
        shapes = {t.hls_name: t.shape for t in self.meta.traced}
        xs, n = self._arrays(inputs, np.float32)
        traces: dict[str, list[Array]] = {name: [] for name in shapes}
        outputs: list[list[Array]] = [[] for _ in self.meta.outputs]
        slots = (_TraceData * len(shapes))()
        with self._trace_lock:
            alloc(ctypes.sizeof(ctypes.c_float))
            try:
                for i in range(n):
                    ys = self.predict([x[i : i + 1] for x in xs])
                    for k, y in enumerate(ys):
                        outputs[k].append(y[0])
                    collect(slots)
                    for slot in slots:
                        if not slot.name:
                            continue
                        name = slot.name.decode()
                        if name not in shapes:
                            continue
                        data = ctypes.cast(slot.data, ctypes.POINTER(ctypes.c_float))
                        traces[name].append(np.ctypeslib.as_array(data, shape=shapes[name]).copy())
            finally:
                free()
        return [np.asarray(o) for o in outputs], {k: np.asarray(v) for k, v in traces.items() if v}

    def close(self) -> None:
        """Forget the library (the OS keeps it mapped; a private rebuild directory is removed)."""
        self.closed = True
        self._fn.clear()
        if self._private_copy is not None:
            shutil.rmtree(self._private_copy, ignore_errors=True)
            self._private_copy = None


def _weights_check(root: Path) -> list[str]:
    """Weight files the C simulation will open at its first call, that are not there."""
    missing: list[str] = []
    for cpp in (root / "firmware").glob("*.cpp"):
        for fname in re.findall(
            r'load_(?:compressed_|exponent_)?weights_from_txt<[^>]*>\(\s*\w+\s*,\s*"([^"]+)"', cpp.read_text()
        ):
            if not (root / "firmware" / "weights" / fname).is_file():
                missing.append(fname)
    return missing
