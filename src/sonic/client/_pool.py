"""The server pool: which server gets the next request, and which servers are down.

Selection, among the servers that have the model and are healthy: the preferred server when
it is healthy, otherwise the one with the fewest requests in flight from this client (ties
go round-robin, so sequential callers spread too). A server that failed is *down* for a
back-off (``backoff`` seconds, doubling per consecutive failure up to ``backoff_max``); when
it expires, one request probes it: success makes it healthy again, failure doubles the
back-off. The fallback server is not in the rotation unless no configured server has the
model; otherwise it is only the last resort of a request that failed everywhere else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from sonic.client._transport import Transport

__all__ = ["Endpoint", "ServerPool", "ServerState"]


@dataclass(eq=False)
class Endpoint:
    transport: Transport
    fallback: bool = False
    has_model: bool = True
    skipped: str = ""  # why discovery left it out
    in_flight: int = 0
    failures: int = 0  # consecutive
    down_until: float = 0.0
    probing: bool = False
    shm: bool | None = None  # None: not tried yet
    models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def address(self) -> str:
        return self.transport.address


@dataclass(frozen=True)
class ServerState:
    """What the client thinks of one server (:attr:`Client.servers`)."""

    address: str
    has_model: bool
    healthy: bool
    in_flight: int
    failures: int
    fallback: bool
    skipped: str = ""
    shared_memory: bool | None = None  # None: not tried (or not asked for)


class ServerPool:
    """Thread-safe selection and health bookkeeping over a list of endpoints."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        preferred: str | None = None,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.endpoints = endpoints
        self.preferred = preferred
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.fallback: Endpoint | None = None
        self.fallback_primary = False  # no configured server has the model
        self._lock = threading.Lock()
        self._rr = 0

    def add_fallback(self, endpoint: Endpoint, primary: bool) -> None:
        endpoint.fallback = True
        with self._lock:
            self.fallback = endpoint
            self.fallback_primary = primary

    def select(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next attempt (counted in flight), or None when every server
        with the model is excluded or down (then the fallback is next, if any)."""
        eps = self.endpoints
        if len(eps) == 1 and not exclude and not self.fallback_primary:
            ep = eps[0]  # the common case of one healthy server, kept short
            if not ep.failures and ep.has_model:
                with self._lock:
                    ep.in_flight += 1
                return ep
        now = time.monotonic()
        with self._lock:
            if self.fallback_primary and self.fallback is not None:
                ep = self.fallback
                if ep in exclude:
                    return None
                ep.in_flight += 1
                return ep
            best: Endpoint | None = None
            down: Endpoint | None = None
            n = len(self.endpoints)
            start = self._rr
            self._rr = (self._rr + 1) % n if n else 0
            for i in range(n):
                ep = self.endpoints[(start + i) % n]
                if not ep.has_model or ep in exclude:
                    continue
                if ep.failures and (ep.down_until > now or ep.probing):
                    if down is None or ep.down_until < down.down_until:
                        down = ep
                    continue
                if self.preferred is not None and ep.address == self.preferred:
                    best = ep
                    break
                if best is None or ep.in_flight < best.in_flight:
                    best = ep
            if best is None and down is not None and self.fallback is None:
                best = down  # everything is down and there is no fallback: try anyway
            if best is None:
                return None
            if best.failures and not best.probing:
                best.probing = True
            best.in_flight += 1
            return best

    def release(self, ep: Endpoint, ok: bool | None) -> None:
        """End of an attempt: ``ok`` True (healthy), False (mark down), None (no verdict:
        the server answered, the request was bad)."""
        with self._lock:
            ep.in_flight -= 1
            if ok and not ep.failures:
                return
            if ok is None:
                if ep.probing:
                    ep.probing = False
                    ep.failures = 0
                return
            if ok:
                ep.failures = 0
                ep.probing = False
                return
            now = time.monotonic()
            if ep.failures and ep.down_until > now:
                return  # already down: a request sent before the outage, not a new failure
            ep.failures += 1
            ep.probing = False
            delay = min(self.backoff * 2 ** (ep.failures - 1), self.backoff_max)
            ep.down_until = now + delay

    def states(self) -> list[ServerState]:
        now = time.monotonic()
        with self._lock:
            eps = list(self.endpoints) + ([self.fallback] if self.fallback is not None else [])
            return [
                ServerState(
                    e.address,
                    e.has_model,
                    not e.failures or e.down_until <= now,
                    e.in_flight,
                    e.failures,
                    e.fallback,
                    e.skipped,
                    e.shm,
                )
                for e in eps
            ]
