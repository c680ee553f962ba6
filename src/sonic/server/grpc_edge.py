"""The grpcio transport: :class:`~sonic.server.grpc_service.GrpcService` on a ``grpc.aio`` server.

Where it sits: between the network and the transport-agnostic service implementation in
:mod:`sonic.server.grpc_service` (which holds every RPC, once, for every transport). This
module only registers handlers with grpcio and turns a :class:`SonicError` into a grpcio
status through :data:`STATUS`, itself derived from the service's one table
:data:`~sonic.server.grpc_service.GRPC_STATUS`.

It is the oracle of the asyncio HTTP/2 transport (:mod:`sonic.server.h2`): the same requests
must give byte-identical responses from both (``sonic serve --grpc-impl grpcio``).

``ModelStreamInfer`` runs every request of a stream concurrently (as Triton does) and writes
each response as it completes through a single writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from sonic.protocol.errors import Code, SonicError
from sonic.server.dataplane import DataPlane
from sonic.server.grpc_service import GRPC_STATUS, METHODS, SERVICE, GrpcService, status_of

__all__ = ["SERVICE", "STATUS", "GrpcEdge"]

log = logging.getLogger("sonic.server.grpc")

INT32_MAX = 2**31 - 1

_BY_NUMBER = {s.value[0]: s for s in grpc.StatusCode}

#: A sonic error code -> grpcio's status (the service's one table, in grpcio's type).
STATUS: dict[Code, grpc.StatusCode] = {code: _BY_NUMBER[int(n)] for code, n in GRPC_STATUS.items()}

_Handler = Callable[[Any, Any], Awaitable[Any]]


def _grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    code, message = status_of(exc)
    return _BY_NUMBER[int(code)], message


class GrpcEdge:
    """Serves a :class:`DataPlane` as Triton's GRPCInferenceService, on grpcio."""

    def __init__(self, dataplane: DataPlane, *, max_message_bytes: int = INT32_MAX) -> None:
        self.dataplane = dataplane
        self.service = GrpcService(dataplane)
        self.max_message_bytes = max_message_bytes
        self._server: Any = None  # grpc.aio.Server
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def _unary(self, name: str) -> _Handler:
        call = self.service.call
        parse = self.service.parse

        async def handler(request: bytes, context: Any) -> Any:
            try:
                return await call(name, parse(name, request))
            except Exception as exc:
                code, message = _grpc_status(exc)
                await context.abort(code, message)

        handler.__name__ = name
        return handler

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """One handler per method of the service descriptor (requests as bytes, pb2 responses)."""
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in METHODS.values():
            # Requests arrive as bytes and are parsed by the service (as on every transport).
            kwargs = {"response_serializer": method.response_type.SerializeToString}
            if method.streaming:
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                    self._model_stream_infer, **kwargs
                )
            elif method.name == "ModelInfer":
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._model_infer, **kwargs)
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method.name), **kwargs
                )
        return handlers

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (port 0: a free port), start serving; return the bound port."""
        if self._server is not None:
            raise RuntimeError("gRPC edge already started")
        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(options=options)
        handlers = self.method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.63: faster lookup
            server.add_registered_method_handlers(SERVICE, handlers)
        bracket = ":" in host and not host.startswith("[")  # an IPv6 literal
        address = f"[{host}]:{port}" if bracket else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"gRPC edge: cannot bind {address}: {exc}") from None
        if not bound:
            raise OSError(f"gRPC edge: cannot bind {address}")
        await server.start()
        self._server, self.port = server, int(bound)
        log.info("gRPC edge (grpcio) listening on %s", address.rsplit(":", 1)[0] + f":{bound}")
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls; give calls in flight ``grace`` seconds to finish."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    # -- inference --------------------------------------------------------------------------------

    async def _model_infer(self, request: bytes, context: Any) -> Any:
        service = self.service
        try:
            return service.infer_finish(await service.infer_start(service.parse("ModelInfer", request)))
        except Exception as exc:
            code, message = _grpc_status(exc)
            await context.abort(code, message)

    async def _model_stream_infer(self, requests: AsyncIterator[bytes], context: Any) -> None:
        """Every request of the stream runs concurrently; one writer sends the responses.

        A request that does not parse ends the call with its status (as on every transport).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reading = True
        failure: list[BaseException] = []
        parse = self.service.parse

        def idle() -> None:
            if not reading:
                queue.put_nowait(None)

        stream = self.service.open_stream(queue.put_nowait, on_idle=idle)

        async def read() -> None:
            nonlocal reading
            try:
                async for data in requests:
                    stream.feed(parse("ModelStreamInfer", data))
            except SonicError as exc:
                failure.append(exc)
                stream.cancel()
                queue.put_nowait(None)
            finally:
                reading = False
                if not stream.in_flight:
                    queue.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (out := await queue.get()) is not None:
                await context.write(out)
            await reader  # re-raise a failure of the request stream, if any
        finally:
            reader.cancel()
            stream.cancel()
        if failure:
            code, message = _grpc_status(failure[0])
            await context.abort(code, message)
