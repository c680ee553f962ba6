"""Client-side errors and the translation of transport failures into them.

Every failure the client reports is a :class:`~sonic.protocol.errors.SonicError` with a code,
whatever the transport: a gRPC status, an HTTP status and an exception raised by the local data
plane all end up as the same class with the same code, so a caller's ``except`` clauses do not
change when the transport does. Third-party exceptions (grpcio, aiohttp, sockets) are
translated here, at the boundary, and nowhere else.

Three kinds of failure are *retryable* (:func:`retryable`): the server could not be reached or
the connection broke (:class:`ServerUnreachable`), the call ran past its deadline
(:class:`DeadlineExceeded`), or the server answered UNAVAILABLE (overloaded, shutting down,
model not ready). Everything else, INVALID_ARG above all, is the caller's or the model's
problem and would fail the same way on any server: it is raised at once.
"""

from __future__ import annotations

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

__all__ = [
    "DeadlineExceeded",
    "NoServerAvailable",
    "ServerUnreachable",
    "error_for_code",
    "retryable",
]


class ServerUnreachable(Unavailable):
    """The server could not be reached, or the connection broke during the call."""


class DeadlineExceeded(Unavailable):
    """The call did not complete within its timeout."""


class NoServerAvailable(Unavailable):
    """Every allowed try on every server with the model (and the fallback) failed.

    ``last`` is the failure of the last try (also the exception's ``__cause__``), ``tries``
    the number of attempts.
    """

    def __init__(self, message: str, last: SonicError | None = None, tries: int = 0) -> None:
        super().__init__(message)
        self.last = last
        self.tries = tries


_BY_CODE: dict[Code, type[SonicError]] = {
    Code.INVALID_ARG: InvalidArgument,
    Code.NOT_FOUND: NotFound,
    Code.UNAVAILABLE: Unavailable,
    Code.UNSUPPORTED: Unsupported,
    Code.ALREADY_EXISTS: AlreadyExists,
    Code.INTERNAL: Internal,
}


def error_for_code(code: Code, message: str) -> SonicError:
    """The SonicError subclass of ``code`` carrying ``message``."""
    return _BY_CODE.get(code, SonicError)(message, code)


def retryable(exc: BaseException) -> bool:
    """Whether another try (here or on another server) may succeed."""
    return isinstance(exc, SonicError) and exc.code is Code.UNAVAILABLE


#: gRPC status names -> codes (``grpc.StatusCode.name``); DEADLINE_EXCEEDED and the
#: connection-level UNAVAILABLE are told apart by the transport.
GRPC_CODES: dict[str, Code] = {
    "INVALID_ARGUMENT": Code.INVALID_ARG,
    "OUT_OF_RANGE": Code.INVALID_ARG,
    "FAILED_PRECONDITION": Code.INVALID_ARG,
    "NOT_FOUND": Code.NOT_FOUND,
    "UNAVAILABLE": Code.UNAVAILABLE,
    "RESOURCE_EXHAUSTED": Code.UNAVAILABLE,
    "UNIMPLEMENTED": Code.UNSUPPORTED,
    "ALREADY_EXISTS": Code.ALREADY_EXISTS,
    "INTERNAL": Code.INTERNAL,
    "UNKNOWN": Code.INTERNAL,
}

#: HTTP statuses -> codes (the inverse of Triton's ``HttpCodeFromError``; 400 also stands
#: for ALREADY_EXISTS there, which HTTP cannot tell apart).
HTTP_CODES: dict[int, Code] = {
    400: Code.INVALID_ARG,
    404: Code.NOT_FOUND,
    409: Code.ALREADY_EXISTS,
    413: Code.INVALID_ARG,
    431: Code.INVALID_ARG,
    501: Code.UNSUPPORTED,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.UNAVAILABLE,
    429: Code.UNAVAILABLE,
}
