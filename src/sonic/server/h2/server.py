"""The asyncio HTTP/2 gRPC edge: a listening socket (TCP or TLS with ALPN h2) and its connections.

Same lifecycle as the grpcio edge (:class:`sonic.server.grpc_edge.GrpcEdge`): ``start(host,
port)`` binds and returns the port, ``stop(grace)`` stops accepting, sends GOAWAY on every
connection, lets calls in flight finish for ``grace`` seconds and then closes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from sonic.server.dataplane import DataPlane
from sonic.server.grpc_service import GrpcService
from sonic.server.h2.connection import Limits
from sonic.server.h2.grpc import GrpcConnection

__all__ = ["H2GrpcEdge", "server_ssl_context"]

log = logging.getLogger("sonic.server.h2")


def server_ssl_context(certfile: str | Path, keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A TLS server context that offers HTTP/2 only (ALPN ``h2``), TLS 1.2 or later."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    ctx.set_alpn_protocols(["h2"])
    ctx.options |= ssl.OP_NO_COMPRESSION  # RFC 9113 §9.2.1
    return ctx


class H2GrpcEdge:
    """Serves a :class:`DataPlane` as Triton's GRPCInferenceService on sonic's own HTTP/2."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.service = GrpcService(dataplane)
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self.connections: set[GrpcConnection] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def _connection(self) -> GrpcConnection:
        conn = GrpcConnection(self.service, self.limits)
        self.connections.add(conn)
        conn.closed.add_done_callback(lambda _f: self.connections.discard(conn))
        return conn

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (port 0: a free port), start serving; return the bound port."""
        if self._server is not None:
            raise RuntimeError("gRPC edge already started")
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                self._connection, host, port, ssl=self.ssl_context, backlog=1024, reuse_address=True
            )
        except OSError as exc:
            raise OSError(exc.errno, f"gRPC edge: cannot bind {host}:{port}: {exc.strerror or exc}") from None
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        tls = " (TLS)" if self.ssl_context is not None else ""
        log.info("gRPC edge (sonic h2) listening on %s:%d%s", host, self.port, tls)
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting; GOAWAY to every connection; close what is still open after ``grace``."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        conns = list(self.connections)
        for conn in conns:
            conn.shutdown()
        pending = [c.closed for c in conns if not c.closed.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(grace, 0.0))
            for conn in conns:
                if not conn.closed.done():
                    conn.abort()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await server.wait_closed()
