"""The SONIC client: one API for the model, wherever it runs.

A physics job hands the client a mapping of input arrays and gets the output arrays back; the
configuration alone decides whether the model runs on a remote server over gRPC or HTTP (sonic
serve, NVIDIA Triton, any KServe v2 server) or in this process ("local": the server's own data
plane, no network). CMS's SonicTriton is the reference design::

    from sonic.client import Client

    config = {"model": "mlp", "transport": "grpc", "servers": ["gpu1:8001", "gpu2:8001"],
              "allowed_tries": 2, "fallback": True, "repository": ["models/"]}
    with Client.from_config(config) as client:
        out = client.infer({"input": x})["output"]             # blocking
        outs = client.infer([{"input": a}, {"input": b}])      # ragged: one request each
        client.infer_callback({"input": x}, lambda r, err: ...) # returns at once
        # in asyncio: async with Client.from_config(config) as c: await c.ainfer(...)
        print(client.stats)                                    # requests, retries, latencies

Reliability: a retryable failure (UNAVAILABLE, timeout, broken connection) is retried on the
same server up to ``allowed_tries`` times, then on another server that has the model, then on
the fallback server (``sonic serve`` on this host's CPU, started on demand); INVALID_ARG and
other errors are raised at once. Inputs are checked against the model's metadata before
anything is sent.

Below the client, for tools that drive one server directly (``sonic bench``): the transports
(:class:`GrpcTransport`, :class:`HttpTransport`, :class:`LocalTransport`; imported on first
use, so that ``import sonic.client`` does not load grpcio or a backend), the operations they
take (:class:`Infer`, :class:`Metadata`, :class:`Statistics`, ...; ``transport.handle(op)``),
and the client's system shared-memory regions (:class:`ShmPool`, :class:`ShmSlot`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sonic.client._client import Client
from sonic.client._config import TRANSPORTS, ClientConfig
from sonic.client._errors import DeadlineExceeded, NoServerAvailable, ServerUnreachable
from sonic.client._pool import ServerState
from sonic.client._stats import ClientStats, ServerSideStats
from sonic.client._transport import (
    Infer,
    Metadata,
    Op,
    Ready,
    RepositoryIndex,
    ShmRegister,
    ShmStatus,
    ShmUnregister,
    Statistics,
    Transport,
)
from sonic.client._types import InferResult, ModelInfo, ModelStatistics, TensorInfo
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

if TYPE_CHECKING:
    from sonic.client._grpc import GrpcTransport
    from sonic.client._http import HttpTransport
    from sonic.client._local import LocalTransport
    from sonic.client._shm import ShmPool, ShmSlot

__all__ = [
    "TRANSPORTS",
    "AlreadyExists",
    "Client",
    "ClientConfig",
    "ClientStats",
    "Code",
    "DeadlineExceeded",
    "GrpcTransport",
    "HttpTransport",
    "Infer",
    "InferResult",
    "Internal",
    "InvalidArgument",
    "LocalTransport",
    "Metadata",
    "ModelInfo",
    "ModelStatistics",
    "NoServerAvailable",
    "NotFound",
    "Op",
    "Ready",
    "RepositoryIndex",
    "ServerSideStats",
    "ServerState",
    "ServerUnreachable",
    "ShmPool",
    "ShmRegister",
    "ShmSlot",
    "ShmStatus",
    "ShmUnregister",
    "SonicError",
    "Statistics",
    "TensorInfo",
    "Transport",
    "Unavailable",
    "Unsupported",
]

#: imported on first use (grpcio, the server's data plane)
_LAZY = {
    "GrpcTransport": "_grpc",
    "HttpTransport": "_http",
    "LocalTransport": "_local",
    "ShmPool": "_shm",
    "ShmSlot": "_shm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sonic.client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sonic.client.{module}"), name)
