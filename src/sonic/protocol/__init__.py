"""The v2 (KServe / Triton) data model and its codecs: pure functions, no I/O."""

from sonic.protocol.errors import (
    AlreadyExists,
    Code,
    Internal,
    InvalidArgument,
    NotFound,
    SonicError,
    Unavailable,
    Unsupported,
)
from sonic.protocol.types import InferRequest, InferResponse, InputTensor, OutputTensor, RequestedOutput

__all__ = [
    "AlreadyExists",
    "Code",
    "InferRequest",
    "InferResponse",
    "InputTensor",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutputTensor",
    "RequestedOutput",
    "SonicError",
    "Unavailable",
    "Unsupported",
]
