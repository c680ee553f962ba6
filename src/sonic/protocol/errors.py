"""One error hierarchy for the whole toolkit.

Every layer raises a :class:`SonicError` subclass carrying a code; each transport edge maps the
code once (HTTP status, gRPC status) and nowhere else. Messages say what was wrong, what was
expected and, where there is a list of valid names, the nearest ones.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable


class Code(enum.Enum):
    INVALID_ARG = "INVALID_ARG"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INTERNAL = "INTERNAL"


class SonicError(Exception):
    """Base of all sonic errors; ``code`` decides the status an edge returns."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgument(SonicError):
    code = Code.INVALID_ARG


class NotFound(SonicError):
    code = Code.NOT_FOUND


class Unavailable(SonicError):
    code = Code.UNAVAILABLE


class Unsupported(SonicError):
    code = Code.UNSUPPORTED


class AlreadyExists(SonicError):
    code = Code.ALREADY_EXISTS


class Internal(SonicError):
    code = Code.INTERNAL


def nearest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix naming the closest valid names, or the valid names."""
    pool = sorted(set(choices))
    if not pool:
        return ""
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    shown = ", ".join(repr(c) for c in pool[:10])
    return f" (valid: {shown}{', ...' if len(pool) > 10 else ''})"
