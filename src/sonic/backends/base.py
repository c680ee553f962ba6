"""The backend interface: load a model version as instances, execute batches, unload.

A backend turns a model file into something that computes. The scheduler owns batching and
threads; a backend instance only sees ``execute(requests)`` with the requests of one batch and
returns one result per request, in order. Array backends (onnxruntime, the sonic-style python
model) merge the batch with :func:`merge_inputs` and cut it back with :func:`split_outputs`:
one ``np.concatenate`` per input and one slice per request, no loop over elements.

Backends are registered by name with :func:`register`; the modules that hold them are imported
lazily so a heavy framework is loaded only by a model that uses it.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.errors import InvalidArgument, NotFound, SonicError, nearest

Array = npt.NDArray[Any]
Arrays = dict[str, Array]


@dataclass(slots=True)
class InstanceSpec:
    """One model instance as the instance_group asks for it."""

    name: str
    kind: str  # "KIND_CPU" | "KIND_GPU" | "KIND_MODEL"
    device_id: int = 0
    index: int = 0


@dataclass(slots=True)
class BackendRequest:
    """What a backend sees of one request in a batch."""

    inputs: Arrays
    requested: tuple[str, ...]
    batch_size: int
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Timing:
    """The compute breakdown of one batch, in ns; backends fill what they can tell apart."""

    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


Result = Arrays | SonicError


@dataclass(slots=True)
class LoadContext:
    """Everything a backend needs to load one instance of one model version."""

    model_name: str
    version: int
    version_dir: Path
    model_dir: Path
    config: Any  # model_config_pb2.ModelConfig
    instance: InstanceSpec

    def parameter(self, key: str, default: str = "") -> str:
        """A config ``parameters { key: ... value: { string_value: ... } }`` entry."""
        params = self.config.parameters
        return str(params[key].string_value) if key in params else default

    def model_file(self, default_name: str) -> Path:
        name = self.config.default_model_filename or default_name
        path = self.version_dir / name
        if not path.exists():
            present = sorted(p.name for p in self.version_dir.iterdir()) if self.version_dir.is_dir() else []
            raise NotFound(
                f"model '{self.model_name}' version {self.version}: model file {path} not found; "
                f"expected '{name}' in {self.version_dir} (present: {present or 'nothing'})"
            )
        return path


class ModelInstance(ABC):
    """One loaded copy of a model version, driven by one scheduler thread at a time."""

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        """Run one batch; one result per request (arrays by output name, or an error)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the instance holds."""

    def run_inline(self) -> None:  # noqa: B027 - optional hook
        """The scheduler will call this instance on the event loop (a tiny model): drop what
        only pays off for bigger work, such as intra-op thread pools that spin."""


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[ModelInstance]] = {}
_LAZY: dict[str, str] = {
    "onnxruntime": "sonic.backends.onnxruntime",
    "python": "sonic.backends.python",
    "hls4ml": "sonic.backends.hls4ml",
}
_PLATFORMS = {"onnxruntime_onnx": "onnxruntime"}


def register(name: str) -> Callable[[type[ModelInstance]], type[ModelInstance]]:
    """Class decorator: make a backend available under ``name`` (config ``backend:``)."""

    def deco(cls: type[ModelInstance]) -> type[ModelInstance]:
        _REGISTRY[name] = cls
        return cls

    return deco


def add_lazy_backend(name: str, module: str) -> None:
    """Name a module that registers backend ``name`` when imported (plugins)."""
    _LAZY[name] = module


def backend_name(config: Any) -> str:
    return str(config.backend or _PLATFORMS.get(config.platform, config.platform))


def backend_class(name: str) -> type[ModelInstance]:
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        known = set(_REGISTRY) | set(_LAZY)
        raise NotFound(f"unknown backend '{name}'" + nearest(name, known)) from None


# -- batch merge / split ----------------------------------------------------------------------


def merge_inputs(requests: Sequence[BackendRequest]) -> Arrays:
    """Concatenate each input over the batch dimension (no copy for a batch of one)."""
    if len(requests) == 1:
        return requests[0].inputs
    first = requests[0].inputs
    return {name: np.concatenate([r.inputs[name] for r in requests]) for name in first}


def split_outputs(outputs: Arrays, requests: Sequence[BackendRequest]) -> list[Result]:
    """Cut batched outputs back into per-request views, keeping only the requested names."""
    if len(requests) == 1:
        r = requests[0]
        return [{n: outputs[n] for n in r.requested}]
    results: list[Result] = []
    start = 0
    for r in requests:
        stop = start + r.batch_size
        results.append({n: outputs[n][start:stop] for n in r.requested})
        start = stop
    return results


def check_outputs(model: str, outputs: Arrays, batch: int, batched: bool) -> None:
    """A backend that returns too few rows would corrupt another request's answer."""
    if not batched:
        return
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != batch:
            raise InvalidArgument(
                f"model '{model}' returned output '{name}' with shape {list(arr.shape)} for a batch "
                f"of {batch}; a batching model must return the batch size as the first dimension"
            )


def now_ns() -> int:
    return time.monotonic_ns()
