"""The client's configuration: where the model runs is a setting, not code.

One :class:`ClientConfig` (or the same keys in a mapping, e.g. a YAML block read by a workflow)
says which model, which transport, which servers, and how hard to try. Switching a job from a
remote GPU server to an in-process model is a change of ``transport`` (and ``repository``)::

    {"model": "mlp", "transport": "grpc", "servers": ["gpu1:8001", "gpu2:8001"]}
    {"model": "mlp", "transport": "local", "repository": ["models/"]}

Unknown keys and bad values are refused with the nearest valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonic.protocol.errors import InvalidArgument, nearest

__all__ = ["TRANSPORTS", "ClientConfig"]

TRANSPORTS = ("grpc", "http", "local")
COMPRESSIONS = ("gzip", "deflate")


@dataclass(frozen=True)
class ClientConfig:
    """Everything a :class:`~sonic.client.Client` needs.

    - ``model``, ``model_version``: the model this client serves ("" = the latest version).
    - ``transport``: "grpc", "http" or "local" (in-process, no network).
    - ``servers``: "host:port" of each server, on the transport's port (8001 for gRPC, 8000
      for HTTP); ignored by "local".
    - ``preferred_server``: one of ``servers``, used whenever it is healthy.
    - ``repository``: model repositories for the "local" transport and the fallback server.
    - ``fallback``: start ``sonic serve`` on this host's CPU (a subprocess on free ports, on
      ``repository``) when no server has the model, or as the last resort when every server
      failed; it stops when the client closes. A client that runs on the CPU fallback is in
      synchronous mode (see :attr:`Client.mode`).
    - ``allowed_tries``: attempts per server for a retryable failure (UNAVAILABLE, timeout)
      before moving on to the next server with the model; a server that cannot be reached at
      all (refused or broken connection) is marked down and left at once. INVALID_ARG and the
      other errors are never retried.
    - ``timeout``: seconds per attempt (0 disables); a call may override it.
    - ``discovery``: ask each server's RepositoryIndex at start-up which servers have the
      model (a server whose index fails is skipped); False trusts the list.
    - ``backoff``, ``backoff_max``: a failed server is left alone this long (seconds), doubling
      per consecutive failure, then probed again with one request.
    - ``shared_memory``: pass tensors through system shared memory when the server is on this
      host (the server needs ``--allow-client-shm``).
    - ``compression``: None, "gzip" or "deflate" (gRPC and HTTP).
    - ``validate``: check inputs against the model's metadata before sending (default True).
    - ``outputs``: the outputs to ask for (default: all).
    - ``verbose``: log the per-client server-side queue and compute times (statistics
      extension) at close, and keep :meth:`Client.server_stats` current.
    - ``fallback_flags``: extra ``sonic serve`` flags for the fallback server.
    - ``startup_timeout``: seconds to wait for the fallback server.
    """

    model: str
    model_version: str = ""
    transport: str = "grpc"
    servers: tuple[str, ...] = ()
    preferred_server: str | None = None
    repository: tuple[Path, ...] = ()
    fallback: bool = False
    allowed_tries: int = 2
    timeout: float = 10.0
    discovery: bool = True
    backoff: float = 0.5
    backoff_max: float = 30.0
    shared_memory: bool = False
    compression: str | None = None
    validate: bool = True
    outputs: tuple[str, ...] | None = None
    verbose: bool = False
    fallback_flags: tuple[str, ...] = ()
    startup_timeout: float = 60.0

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.model, str) or not self.model:
            raise InvalidArgument("client config: 'model' must be a non-empty model name")
        if self.transport not in TRANSPORTS:
            raise InvalidArgument(
                f"client config: unknown transport {self.transport!r}; expected one of "
                f"{', '.join(TRANSPORTS)}" + nearest(str(self.transport), TRANSPORTS)
            )
        fix("servers", tuple(_address(s) for s in _seq("servers", self.servers)))
        fix("repository", tuple(Path(p) for p in _seq("repository", self.repository)))
        fix("fallback_flags", tuple(str(f) for f in _seq("fallback_flags", self.fallback_flags)))
        if self.outputs is not None:
            fix("outputs", tuple(str(o) for o in _seq("outputs", self.outputs)))
        if self.preferred_server is not None:
            pref = _address(self.preferred_server)
            if pref not in self.servers:
                raise InvalidArgument(
                    f"client config: preferred_server {pref!r} is not one of the servers "
                    f"{list(self.servers)}" + nearest(pref, self.servers)
                )
            fix("preferred_server", pref)
        if type(self.allowed_tries) is not int or self.allowed_tries < 1:
            raise InvalidArgument(
                f"client config: allowed_tries must be an integer >= 1, got {self.allowed_tries!r}"
            )
        for name in ("timeout", "backoff", "backoff_max", "startup_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidArgument(
                    f"client config: {name} must be a number of seconds >= 0, got {value!r}"
                )
            fix(name, float(value))
        if self.compression is not None:
            comp = str(self.compression).lower()
            if comp in ("", "none"):
                fix("compression", None)
            elif comp not in COMPRESSIONS:
                raise InvalidArgument(
                    f"client config: unknown compression {self.compression!r}; expected "
                    "'gzip', 'deflate' or none" + nearest(comp, COMPRESSIONS)
                )
            else:
                fix("compression", comp)
        if self.transport == "local" and not self.repository:
            raise InvalidArgument(
                "client config: the 'local' transport runs the model in this process and needs "
                "'repository' (the model repository directories)"
            )
        if self.transport != "local" and not self.servers and not self.fallback:
            raise InvalidArgument(
                f"client config: the {self.transport!r} transport needs 'servers' (\"host:port\" "
                "of each server) or 'fallback: true' with a 'repository'"
            )
        if self.fallback and not self.repository:
            raise InvalidArgument(
                "client config: 'fallback' starts `sonic serve` on this host and needs "
                "'repository' (the model repository it serves)"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ClientConfig:
        """From a mapping (e.g. a YAML block); unknown keys are refused with the nearest."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in mapping if k not in names]
        if unknown:
            key = str(unknown[0])
            raise InvalidArgument(
                f"client config: unknown key {key!r}" + nearest(key, names)
            )
        if "model" not in mapping:
            raise InvalidArgument("client config: 'model' is required (the model's name)")
        return cls(**dict(mapping))

    def replace(self, **changes: Any) -> ClientConfig:
        return dataclasses.replace(self, **changes)


def _seq(name: str, value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, str | Path):
        return (value,)
    if not isinstance(value, Sequence):
        raise InvalidArgument(f"client config: {name} must be a list, got {type(value).__name__}")
    return value


def _address(value: Any) -> str:
    """"host:port" with any "grpc://" or "http://" scheme removed."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"client config: a server address must be \"host:port\", got {value!r}")
    addr = value.split("://", 1)[-1].rstrip("/")
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(
            f"client config: server address {value!r} has no port; expected \"host:port\" "
            "(gRPC servers listen on 8001 by default, HTTP on 8000)"
        )
    return addr
