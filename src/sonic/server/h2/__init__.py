"""sonic's own gRPC transport: HTTP/2 framing on asyncio (uvloop), HPACK through ``hpack``.

Where it sits: one of the two transports of :class:`sonic.server.grpc_service.GrpcService`
(the other is grpcio, :mod:`sonic.server.grpc_edge`, kept as option and oracle). It exists
because per-request transport cost is the whole game for tiny models: grpcio's core, asyncio
tasks and one write per response cost ~110-160 µs per request here.

Modules, bottom up:

- :mod:`~sonic.server.h2.frames`: HTTP/2 constants, frame header, control-frame builders.
- :mod:`~sonic.server.h2.headers`: HPACK decoding with a cache of validated request heads,
  stateless (precomputed) response header blocks, grpc-timeout, grpc-message encoding.
- :mod:`~sonic.server.h2.connection`: :class:`H2Connection`, the HTTP/2 protocol (streams,
  flow control both ways, SETTINGS/PING/GOAWAY/RST_STREAM, limits and timers, coalesced
  writes) with hooks for the layer above.
- :mod:`~sonic.server.h2.grpc`: :class:`GrpcConnection`, gRPC calls on those hooks (message
  framing, compression, deadlines, trailers, ModelInfer fast path, ModelStreamInfer).
- :mod:`~sonic.server.h2.server`: :class:`H2GrpcEdge`, the listening edge (TLS with ALPN h2).
"""

from sonic.server.h2.connection import H2Connection, Limits
from sonic.server.h2.grpc import GrpcConnection
from sonic.server.h2.server import H2GrpcEdge, server_ssl_context

__all__ = ["GrpcConnection", "H2Connection", "H2GrpcEdge", "Limits", "server_ssl_context"]
