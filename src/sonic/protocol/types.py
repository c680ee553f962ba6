"""The transport-agnostic inference request and response.

Edges (gRPC, HTTP, the in-process client) decode their wire format into these objects and
encode the data plane's answers from them; nothing below the edges sees a protobuf message or
an HTTP body. Tensor contents are numpy arrays (BYTES as object arrays of ``bytes``); a tensor
that lives in a registered shared-memory region carries its region reference instead, and the
data plane resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

ParamValue = bool | int | float | str
Params = dict[str, ParamValue]


@dataclass(slots=True)
class ShmRef:
    """A slice of a registered shared-memory region."""

    region: str
    offset: int
    byte_size: int


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[np.generic] | None = None
    shm: ShmRef | None = None
    parameters: Params = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary_data: bool | None = None
    classification: int = 0
    shm: ShmRef | None = None
    parameters: Params = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: Params = field(default_factory=dict)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[np.generic] | None = None
    shm: ShmRef | None = None
    binary_data: bool | None = None
    parameters: Params = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str = ""
    outputs: list[OutputTensor] = field(default_factory=list)
    parameters: Params = field(default_factory=dict)
