"""Triton's ``inference.GRPCInferenceService``, once, for every gRPC transport.

Where it sits: between a gRPC transport (the grpcio adapter in :mod:`sonic.server.grpc_edge`,
the asyncio HTTP/2 transport in :mod:`sonic.server.h2`) and the
:class:`~sonic.server.dataplane.DataPlane`. A transport parses the protobuf request, calls
:meth:`GrpcService.call` (or, for ModelInfer, :meth:`GrpcService.infer_start` as a coroutine
or :meth:`GrpcService.infer_begin` as a callback, or an :class:`InferStream` for
ModelStreamInfer) and serializes what comes back; a
:class:`SonicError` becomes a gRPC status through the one table :data:`GRPC_STATUS`
(Triton's mapping). Anything else that escapes is a bug and goes out as ``INTERNAL`` with the
exception named, after being logged once.

The messages are those generated in ``tritonclient.grpc.service_pb2``; :data:`METHODS` is
built from the service descriptor, and :class:`GrpcService` refuses to exist if a method of the
service has no implementation.

:class:`Drive` runs a coroutine to completion without an :class:`asyncio.Task`: it steps the
coroutine inline and resumes it from the done callback of the future it awaits, which saves
the two loop hops (task start, task done callbacks) a Task costs. The inference hot path goes
further: ``infer_begin`` queues the request with a plain callback that the scheduler calls when
its batch completes (no coroutine, no future, no loop handle per request).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from sonic.protocol.errors import Code, Internal, SonicError
from sonic.protocol.grpc_codec import (
    decode_infer_request,
    decode_infer_request_bytes,
    encode_infer_response,
)
from sonic.protocol.types import InferResponse
from sonic.scheduler.batcher import Pending
from sonic.server.dataplane import DataPlane, Done, decode_file_params

__all__ = [
    "GRPC_STATUS",
    "METHODS",
    "SERVICE",
    "Drive",
    "GrpcService",
    "InferStream",
    "Method",
    "StatusCode",
    "status_of",
]

log = logging.getLogger("sonic.server.grpc")

SERVICE = "inference.GRPCInferenceService"


class StatusCode(enum.IntEnum):
    """gRPC status codes, by number (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: The one place a sonic error code becomes a gRPC status (Triton's mapping).
GRPC_STATUS: dict[Code, StatusCode] = {
    Code.INVALID_ARG: StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: StatusCode.NOT_FOUND,
    Code.UNAVAILABLE: StatusCode.UNAVAILABLE,
    Code.UNSUPPORTED: StatusCode.UNIMPLEMENTED,
    Code.ALREADY_EXISTS: StatusCode.ALREADY_EXISTS,
    Code.INTERNAL: StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> tuple[StatusCode, str]:
    """The gRPC status and message for an exception raised while serving a call."""
    if isinstance(exc, SonicError):
        return GRPC_STATUS[exc.code], exc.message
    log.error("unexpected error in the gRPC service", exc_info=exc)
    return StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC of the service: its name, message classes and whether it streams."""

    name: str
    path: str  # "/inference.GRPCInferenceService/<name>"
    request_type: Any
    response_type: Any
    streaming: bool


def _methods() -> dict[str, Method]:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    out: dict[str, Method] = {}
    for m in service.methods:
        if m.client_streaming != m.server_streaming:  # pragma: no cover - not in this service
            raise AssertionError(f"half-streaming method {m.name} is not supported")
        out[m.name] = Method(
            m.name,
            f"/{SERVICE}/{m.name}",
            getattr(pb, m.input_type.name),
            getattr(pb, m.output_type.name),
            m.client_streaming,
        )
    return out


#: Every method of the service, by name.
METHODS: dict[str, Method] = _methods()


def _param_value(p: Any) -> Any:
    """The value of a ModelRepositoryParameter / InferParameter oneof (None when unset)."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def _log_setting(value: Any) -> Any:
    msg = pb.LogSettingsResponse.SettingValue()
    if isinstance(value, bool):
        msg.bool_param = value
    elif isinstance(value, int):
        msg.uint32_param = value
    else:
        msg.string_param = str(value)
    return msg


_Done = Callable[[Any, BaseException | None], None]


class Drive:
    """Run a coroutine to completion without a Task; call ``done(result, exc)`` at the end.

    The first step runs now, inside the caller (so a request is submitted to its scheduler in
    the same loop iteration that parsed it, and joins that iteration's batch); later steps run
    from the done callback of each future the coroutine awaits. ``done`` may therefore be
    called before the constructor returns. Unlike a Task there is no ``current_task()`` inside
    the coroutine: the data plane does not need one.
    """

    __slots__ = ("_coro", "_done", "_fut", "_loop", "finished")

    def __init__(self, coro: Coroutine[Any, Any, Any], done: _Done, loop: asyncio.AbstractEventLoop) -> None:
        self._coro = coro
        self._done = done
        self._loop = loop
        self._fut: asyncio.Future[Any] | None = None
        self.finished = False
        self._step(None)

    def _step(self, exc: BaseException | None) -> None:
        if self.finished:  # cancelled while a bare-yield step was queued
            return
        try:
            yielded = self._coro.send(None) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            self.finished = True
            self._done(stop.value, None)
            return
        except (Exception, asyncio.CancelledError) as error:
            self.finished = True
            self._done(None, error)
            return
        if getattr(yielded, "_asyncio_future_blocking", None):
            yielded._asyncio_future_blocking = False
            self._fut = yielded
            yielded.add_done_callback(self._wake)
        elif yielded is None:  # a bare yield (asyncio.sleep(0)): go round the loop once
            self._loop.call_soon(self._step, None)
        else:
            self._step(RuntimeError(f"Drive: the coroutine yielded {yielded!r}, not a future"))

    def _wake(self, fut: asyncio.Future[Any]) -> None:
        self._fut = None
        self._step(None)

    def cancel(self) -> None:
        """Throw CancelledError into the coroutine now (``done`` reports how it ended)."""
        if self.finished:
            return
        fut, self._fut = self._fut, None
        if fut is not None:
            fut.remove_done_callback(self._wake)
            fut.cancel()
        self._step(asyncio.CancelledError())


class InferStream:
    """One ModelStreamInfer call, whatever carries it.

    ``feed`` takes each request as it arrives; every request runs concurrently (as in Triton),
    and ``emit`` is called with each ``ModelStreamInferResponse`` as it completes. An error
    answers its own request with ``error_message`` and the request id, and the stream goes on.
    ``on_idle`` is called each time the last request in flight completes.
    """

    __slots__ = ("_emit", "_loop", "_on_idle", "_pending", "_service", "closed")

    def __init__(
        self,
        service: GrpcService,
        emit: Callable[[Any], None],
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._service = service
        self._emit = emit
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self._pending: set[Pending] = set()
        self.closed = False

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @staticmethod
    def error(msg: Any, exc: BaseException) -> Any:
        _, message = status_of(exc)
        # Triton repopulates the id so that the client knows which request failed.
        return pb.ModelStreamInferResponse(
            error_message=message,
            infer_response=pb.ModelInferResponse(
                model_name=msg.model_name, model_version=msg.model_version, id=msg.id
            ),
        )

    def feed(self, msg: Any) -> None:
        """Start one request of the stream (``msg``: a ``ModelInferRequest``)."""
        if self.closed:
            return
        slot: list[Pending] = []

        def done(result: InferResponse | None, exc: BaseException | None) -> None:
            self._pending.discard(slot[0])
            if self.closed:
                return
            try:
                if exc is None:
                    assert result is not None
                    out = pb.ModelStreamInferResponse(infer_response=encode_infer_response(result))
                else:
                    out = self.error(msg, exc)
            except Exception as enc_exc:
                out = self.error(msg, enc_exc)
            self._emit(out)
            if not self._pending and self._on_idle is not None:
                self._on_idle()

        try:
            pending = self._service.infer_begin(msg, done)
        except Exception as exc:
            self._emit(self.error(msg, exc))
            return
        slot.append(pending)
        self._pending.add(pending)

    def cancel(self) -> None:
        """The call is over (cancelled, reset, deadline): drop every request in flight."""
        self.closed = True
        pending, self._pending = self._pending, set()
        for p in pending:
            p.cancel()


_Unary = Callable[[Any], Coroutine[Any, Any, Any]]


class GrpcService:
    """The implementation of every RPC of ``inference.GRPCInferenceService`` over a DataPlane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self._unary: dict[str, _Unary] = {
            "ServerLive": self._server_live,
            "ServerReady": self._server_ready,
            "ModelReady": self._model_ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
            "ModelInfer": self._model_infer,
            "ModelConfig": self._model_config,
            "ModelStatistics": self._model_statistics,
            "RepositoryIndex": self._repository_index,
            "RepositoryModelLoad": self._repository_model_load,
            "RepositoryModelUnload": self._repository_model_unload,
            "SystemSharedMemoryStatus": self._shm_status,
            "SystemSharedMemoryRegister": self._shm_register,
            "SystemSharedMemoryUnregister": self._shm_unregister,
            "CudaSharedMemoryStatus": self._cuda_shm,
            "CudaSharedMemoryRegister": self._cuda_shm,
            "CudaSharedMemoryUnregister": self._cuda_shm,
            "TraceSetting": self._trace_setting,
            "LogSettings": self._log_settings,
        }
        unary = {m.name for m in METHODS.values() if not m.streaming}
        streaming = {m.name for m in METHODS.values() if m.streaming}
        assert set(self._unary) == unary, sorted(set(self._unary) ^ unary)
        assert streaming == {"ModelStreamInfer"}, streaming
        self._parse_infer = functools.partial(self.parse, "ModelInfer")

    # -- entry points -----------------------------------------------------------------------------

    @staticmethod
    def parse(method: str, data: bytes | memoryview) -> Any:
        """The request message of ``method`` from its serialized bytes (both transports parse
        here, so an undecodable request gets the same status from both)."""
        try:
            return METHODS[method].request_type.FromString(data)
        except DecodeError as exc:
            raise Internal(f"Exception deserializing request! ({exc})") from None

    def call(self, method: str, request: Any) -> Coroutine[Any, Any, Any]:
        """The response of unary ``method`` to ``request`` (errors: SonicError)."""
        return self._unary[method](request)

    def infer_start(self, request: Any) -> Coroutine[Any, Any, InferResponse]:
        """ModelInfer, first half: decode now (raises on a bad request), return the data-plane call."""
        return self.dataplane.infer(decode_infer_request(request))

    def infer_begin(self, request: Any, done: Done) -> Pending:
        """ModelInfer as a callback: decode and queue now (raises on a bad request); ``done``
        gets the response or the error on the loop (:meth:`DataPlane.start`)."""
        return self.dataplane.start(decode_infer_request(request), done)

    def infer_begin_bytes(self, data: bytes | memoryview, done: Done) -> Pending:
        """:meth:`infer_begin` from the serialized request (the transport's hot path: requests
        shaped like an earlier one skip most of the decoding, see
        :func:`~sonic.protocol.grpc_codec.decode_infer_request_bytes`)."""
        return self.dataplane.start(decode_infer_request_bytes(data, self._parse_infer), done)

    @staticmethod
    def infer_finish(response: InferResponse) -> Any:
        """ModelInfer, second half: the response message."""
        return encode_infer_response(response)

    def open_stream(
        self, emit: Callable[[Any], None], on_idle: Callable[[], None] | None = None
    ) -> InferStream:
        """A ModelStreamInfer call: feed it requests, it emits responses."""
        return InferStream(self, emit, on_idle)

    # -- inference --------------------------------------------------------------------------------

    async def _model_infer(self, request: Any) -> Any:
        return encode_infer_response(await self.dataplane.infer(decode_infer_request(request)))

    # -- health and metadata ----------------------------------------------------------------------

    async def _server_live(self, request: Any) -> Any:
        return pb.ServerLiveResponse(live=bool(self.dataplane.live))

    async def _server_ready(self, request: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def _model_ready(self, request: Any) -> Any:
        ready = self.dataplane.model_ready(request.name, request.version)
        return pb.ModelReadyResponse(ready=ready)

    async def _server_metadata(self, request: Any) -> Any:
        md = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=md["name"], version=md["version"], extensions=md["extensions"])

    async def _model_metadata(self, request: Any) -> Any:
        md = self.dataplane.model_metadata(request.name, request.version)

        def tensors(items: list[dict[str, Any]]) -> list[Any]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(
                    name=t["name"], datatype=t["datatype"], shape=t["shape"]
                )
                for t in items
            ]

        return pb.ModelMetadataResponse(
            name=md["name"],
            versions=md["versions"],
            platform=md["platform"],
            inputs=tensors(md["inputs"]),
            outputs=tensors(md["outputs"]),
        )

    async def _model_config(self, request: Any) -> Any:
        return pb.ModelConfigResponse(config=self.dataplane.model_config(request.name, request.version))

    async def _model_statistics(self, request: Any) -> Any:
        return pb.ModelStatisticsResponse(
            model_stats=self.dataplane.statistics(request.name, request.version)
        )

    # -- repository -------------------------------------------------------------------------------

    async def _repository_index(self, request: Any) -> Any:
        rows = self.dataplane.repository_index(request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=r["name"], version=r["version"], state=r["state"], reason=r["reason"]
                )
                for r in rows
            ]
        )

    async def _repository_model_load(self, request: Any) -> Any:
        params = {k: _param_value(v) for k, v in request.parameters.items()}
        config, files = decode_file_params(params)
        await self.dataplane.load_model(request.model_name, config, files or None)
        return pb.RepositoryModelLoadResponse()

    async def _repository_model_unload(self, request: Any) -> Any:
        await self.dataplane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # -- shared memory ----------------------------------------------------------------------------

    async def _shm_status(self, request: Any) -> Any:
        resp = pb.SystemSharedMemoryStatusResponse()
        for r in self.dataplane.shm_status(request.name):
            resp.regions[r["name"]].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=r["name"], key=r["key"], offset=r["offset"], byte_size=r["byte_size"]
                )
            )
        return resp

    async def _shm_register(self, request: Any) -> Any:
        self.dataplane.shm_register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def _shm_unregister(self, request: Any) -> Any:
        self.dataplane.shm_unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def _cuda_shm(self, request: Any) -> Any:
        self.dataplane.cuda_shm()  # raises Unsupported
        raise AssertionError("cuda_shm() returned")  # pragma: no cover

    # -- trace and log settings -------------------------------------------------------------------

    async def _trace_setting(self, request: Any) -> Any:
        updates: dict[str, list[str] | None] = {
            k: (list(v.value) or None) for k, v in request.settings.items()
        }
        settings = self.dataplane.trace_settings(request.model_name, updates)
        resp = pb.TraceSettingResponse()
        for key, values in settings.items():
            resp.settings[key].value.extend(values)
        return resp

    async def _log_settings(self, request: Any) -> Any:
        updates = {k: _param_value(v) for k, v in request.settings.items()}
        settings = self.dataplane.log_settings(updates)
        resp = pb.LogSettingsResponse()
        for key, value in settings.items():
            resp.settings[key].CopyFrom(_log_setting(value))
        return resp
