"""The transport interface: one method, with a sync and an async twin (as httpx's).

A transport talks to *one* server. It takes an operation (:class:`Op`: an inference, a
metadata or statistics query, a shared-memory registration ...) and returns its answer, or
raises a :class:`~sonic.protocol.errors.SonicError`; retries, server selection and batching
live above it, in the client. The operations are plain data, so a new transport implements
two methods and nothing else::

    class Transport(Protocol):
        def handle(self, op: Op[T]) -> T: ...
        async def handle_async(self, op: Op[T]) -> T: ...

(plus ``close``/``aclose``). Three exist: :mod:`._grpc`, :mod:`._http` and :mod:`._local`.
A transport object may be used from several threads at once (sync) and from several event
loops (async): it keeps its asyncio resources per loop; ``aclose`` releases the current
loop's, ``close`` everything else it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sonic.client._types import IndexEntry, ModelInfo, ModelStatistics
from sonic.protocol.types import InferRequest, InferResponse

__all__ = [
    "Infer",
    "Metadata",
    "Op",
    "Ready",
    "RepositoryIndex",
    "ShmRegister",
    "ShmStatus",
    "ShmUnregister",
    "Statistics",
    "Transport",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Op(Generic[T_co]):
    """An operation whose answer is a ``T_co``."""

    __slots__ = ()


@dataclass(slots=True)  # not frozen: built once per request, and frozen init is slower
class Infer(Op[InferResponse]):
    """One inference. ``timeout`` in seconds (None or 0: none); ``compression``: None,
    "gzip" or "deflate" (transports without a wire ignore it)."""

    request: InferRequest
    timeout: float | None = None
    compression: str | None = None


@dataclass(frozen=True, slots=True)
class Metadata(Op[ModelInfo]):
    """Model metadata and config, merged into a :class:`ModelInfo`."""

    model: str
    version: str = ""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class RepositoryIndex(Op[list[IndexEntry]]):
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Statistics(Op[list[ModelStatistics]]):
    model: str = ""
    version: str = ""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Ready(Op[bool]):
    """Server readiness, or the model's when ``model`` is given."""

    model: str = ""
    version: str = ""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ShmRegister(Op[None]):
    """Register a system shared-memory region (POSIX object ``key``)."""

    name: str
    key: str
    byte_size: int
    offset: int = 0
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ShmUnregister(Op[None]):
    name: str = ""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ShmStatus(Op[list[dict[str, Any]]]):
    name: str = ""
    timeout: float | None = None


class Transport(Protocol):
    """One server, reached one way."""

    @property
    def address(self) -> str:
        """Where it points ("host:port", or "local")."""
        ...

    @property
    def same_host(self) -> bool:
        """Whether the server runs on this host (so system shared memory can reach it)."""
        ...

    def handle(self, op: Op[T]) -> T: ...

    async def handle_async(self, op: Op[T]) -> T: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
