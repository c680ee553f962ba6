"""``sonic serve``: the model manager, the data plane and the edges, started together.

One asyncio (uvloop when installed) event loop runs the gRPC and HTTP edges and the schedulers'
completions; model instances run in their own threads; metrics are served from a thread by
prometheus-client. Port 0 picks a free port; the bound ports are printed on one line::

    sonic: ready http=127.0.0.1:8000 grpc=127.0.0.1:8001 metrics=127.0.0.1:8002

which scripts (and the tests) parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sonic import _compiled
from sonic.server.dataplane import DataPlane
from sonic.server.models import ModelManager
from sonic.server.shm import SystemSharedMemory

log = logging.getLogger("sonic.server")


class Edge(Protocol):
    async def start(self, host: str, port: int) -> int: ...
    async def stop(self, grace: float = 1.0) -> None: ...


@dataclass
class ServerOptions:
    model_repositories: list[Path]
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    allow_http: bool = True
    allow_grpc: bool = True
    allow_metrics: bool = True
    model_control_mode: str = "none"
    load_models: list[str] = field(default_factory=list)
    repository_poll_secs: float = 15.0
    allow_client_shm: bool = False
    log_verbose: int = 0
    #: The gRPC transport: "sonic" (own HTTP/2 on asyncio) or "grpcio" (the oracle).
    grpc_impl: str = "sonic"
    #: TLS on the gRPC port (tritonserver's --grpc-use-ssl / --grpc-server-cert / -key)
    grpc_use_ssl: bool = False
    grpc_server_cert: Path | None = None
    grpc_server_key: Path | None = None


@dataclass
class Ports:
    http: int | None = None
    grpc: int | None = None
    metrics: int | None = None

    def line(self, host: str) -> str:
        parts = [
            f"{k}={host}:{v}"
            for k, v in (("http", self.http), ("grpc", self.grpc), ("metrics", self.metrics))
            if v is not None
        ]
        return "sonic: ready " + " ".join(parts)


class Server:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.models = ModelManager(options.model_repositories, options.model_control_mode)
        self.dataplane = DataPlane(self.models, SystemSharedMemory(options.allow_client_shm))
        self.edges: list[Edge] = []
        self.ports = Ports()
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> Ports:
        o = self.options
        await self.models.start(o.load_models)
        self.dataplane.started = True
        if o.allow_grpc:
            edge: Edge
            if o.grpc_use_ssl and (o.grpc_impl != "sonic" or o.grpc_server_cert is None):
                raise ValueError(
                    "--grpc-use-ssl needs --grpc-server-cert (and usually --grpc-server-key) "
                    "and the sonic gRPC transport (--grpc-impl sonic)"
                )
            if o.grpc_impl == "sonic":  # sonic's own HTTP/2 transport (sonic.server.h2)
                from sonic.server.h2 import H2GrpcEdge
                from sonic.server.h2.server import server_ssl_context

                ssl_context = None
                if o.grpc_use_ssl and o.grpc_server_cert is not None:
                    ssl_context = server_ssl_context(o.grpc_server_cert, o.grpc_server_key)
                edge = H2GrpcEdge(self.dataplane, ssl_context=ssl_context)
            elif o.grpc_impl == "grpcio":
                from sonic.server.grpc_edge import GrpcEdge

                edge = GrpcEdge(self.dataplane)
            else:
                raise ValueError(f"unknown gRPC implementation {o.grpc_impl!r} (expected sonic or grpcio)")
            self.ports.grpc = await edge.start(o.host, o.grpc_port)
            self.edges.append(edge)
        if o.allow_http:
            from sonic.server.http_edge import HttpEdge

            http = HttpEdge(self.dataplane)
            self.ports.http = await http.start(o.host, o.http_port)
            self.edges.append(http)
        if o.allow_metrics:
            from sonic.server.metrics import MetricsEdge

            metrics = MetricsEdge(self.models)
            self.ports.metrics = await metrics.start(o.host, o.metrics_port)
            self.edges.append(metrics)
        if o.model_control_mode == "poll":
            self._poller = asyncio.create_task(self._poll())
        state = _compiled.compiled()
        done = sum(state.values())
        if done == len(state):
            log.info("hot path compiled (Cython): %d modules", done)
        else:
            pure = sorted(n for n, c in state.items() if not c)
            log.info(
                "hot path: %d of %d modules compiled; pure Python: %s", done, len(state), ", ".join(pure)
            )
        return self.ports

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.repository_poll_secs)
            try:
                await self.models.poll()
            except Exception:  # a bad repository state must not stop polling
                log.exception("repository poll failed")

    async def stop(self, grace: float = 1.0) -> None:
        self.dataplane.live = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for edge in reversed(self.edges):
            await edge.stop(grace)
        await self.models.stop()

    async def serve(self) -> None:
        """Start, print the ports line, run until SIGINT/SIGTERM, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        print(self.ports.line(self.options.host), flush=True)  # handlers are in place: scripts may signal
        await stop.wait()
        log.info("shutting down")
        await self.stop()


def run(options: ServerOptions) -> int:
    level = logging.DEBUG if options.log_verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    server = Server(options)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())
    return 0
