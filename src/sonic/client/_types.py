"""What the client knows about servers and models, independent of the transport.

Transports turn their wire answers (protobuf messages, JSON bodies, the data plane's dicts)
into these plain objects; the rest of the client never sees a wire format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.datatypes import numpy_dtype
from sonic.protocol.errors import InvalidArgument, nearest

__all__ = [
    "IndexEntry",
    "InferResult",
    "MissingOutput",
    "ModelInfo",
    "ModelStatistics",
    "TensorInfo",
]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output of a model: v2 datatype and dims *without* the batch dimension
    (-1 = any size)."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False

    def describe(self, batched: bool) -> str:
        dims = ("-1", *map(str, self.dims)) if batched else tuple(map(str, self.dims))
        return f"{self.name} {self.datatype} [{','.join(dims)}]"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model's metadata and the parts of its config the client checks inputs against."""

    name: str
    versions: tuple[str, ...]
    platform: str
    max_batch_size: int
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @classmethod
    def from_v2(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        """From the v2 metadata (JSON shape) and the model config (JSON shape, as
        ``json_format.MessageToDict(..., preserving_proto_field_name=True)`` gives it)."""
        max_batch = int(config.get("max_batch_size", 0) or 0)
        optional = {
            str(t.get("name")): bool(t.get("optional", False)) for t in config.get("input", [])
        }
        lead = 1 if max_batch > 0 else 0

        def tensors(items: Any, opt: Mapping[str, bool]) -> dict[str, TensorInfo]:
            out: dict[str, TensorInfo] = {}
            for t in items or []:
                name = str(t["name"])
                shape = tuple(int(d) for d in t.get("shape", []))
                out[name] = TensorInfo(name, str(t["datatype"]), shape[lead:], opt.get(name, False))
            return out

        return cls(
            name=str(metadata.get("name", config.get("name", ""))),
            versions=tuple(str(v) for v in metadata.get("versions", [])),
            platform=str(metadata.get("platform", "")),
            max_batch_size=max_batch,
            inputs=tensors(metadata.get("inputs"), optional),
            outputs=tensors(metadata.get("outputs"), {}),
        )


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of a server's repository index."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """The server-side statistics of one model version (Triton's statistics extension):
    cumulative counts and durations in nanoseconds since the server loaded the model."""

    name: str
    version: str
    inference_count: int = 0
    execution_count: int = 0
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    compute_count: int = 0

    @classmethod
    def from_v2(cls, d: Mapping[str, Any]) -> ModelStatistics:
        """From the statistics JSON (numbers may be strings, as protobuf's JSON writes
        64-bit integers)."""
        st = d.get("inference_stats", {}) or {}

        def part(key: str, what: str) -> int:
            return int((st.get(key) or {}).get(what, 0) or 0)

        return cls(
            name=str(d.get("name", "")),
            version=str(d.get("version", "")),
            inference_count=int(d.get("inference_count", 0) or 0),
            execution_count=int(d.get("execution_count", 0) or 0),
            success_count=part("success", "count"),
            success_ns=part("success", "ns"),
            fail_count=part("fail", "count"),
            queue_count=part("queue", "count"),
            queue_ns=part("queue", "ns"),
            compute_input_ns=part("compute_input", "ns"),
            compute_infer_ns=part("compute_infer", "ns"),
            compute_output_ns=part("compute_output", "ns"),
            compute_count=part("compute_infer", "count"),
        )

    def __sub__(self, other: ModelStatistics) -> ModelStatistics:
        names = [f.name for f in dataclasses.fields(self)][2:]
        return ModelStatistics(
            self.name, self.version, *(getattr(self, n) - getattr(other, n) for n in names)
        )


class MissingOutput(InvalidArgument, KeyError):
    """A result was asked for an output it does not hold (also a KeyError, so that
    ``result.get(name)`` works as for any mapping)."""

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True, eq=False)
class InferResult(Mapping[str, npt.NDArray[Any]]):
    """The outputs of one inference, by name (a read-only mapping of numpy arrays).

    Arrays decoded from the wire are read-only views of the response; copy one to modify it.
    ``server`` is the address that answered ("" for a skipped batch of size 0, "local" for
    the in-process transport), ``tries`` the attempts it took (0 when skipped).
    """

    outputs: dict[str, npt.NDArray[Any]]
    model_name: str = ""
    model_version: str = ""
    server: str = ""
    tries: int = 1
    latency_s: float = 0.0
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        try:
            return self.outputs[name]
        except KeyError:
            raise MissingOutput(
                f"the result of model '{self.model_name}' has no output '{name}'"
                + nearest(name, self.outputs)
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def as_numpy(self, name: str) -> npt.NDArray[Any]:
        """tritonclient's spelling of ``result[name]``."""
        return self[name]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.outputs.items())
        return f"InferResult({self.model_name!r}, {{{shapes}}}, server={self.server!r})"


def empty_like(info: TensorInfo, batch: int) -> npt.NDArray[Any]:
    """An output of a skipped batch: ``batch`` (0) rows, variable dims as 0."""
    shape = (batch, *(d if d >= 0 else 0 for d in info.dims))
    return np.empty(shape, dtype=numpy_dtype(info.datatype))
