"""The gRPC transport: grpcio channels carrying Triton's ``inference.GRPCInferenceService``.

Messages are the ones generated in tritonclient (``service_pb2``), built and read by
:mod:`sonic.protocol.grpc_codec`; calls go through generic ``channel.unary_unary`` method
handles, so there is no stub layer between the client and grpcio. Sync calls use one
``grpc.Channel``; async calls use one ``grpc.aio.Channel`` per event loop (an aio channel is
bound to the loop that made it). Status codes become :class:`SonicError` codes here, with
connection failures (:class:`ServerUnreachable`) and deadlines (:class:`DeadlineExceeded`)
told apart from an UNAVAILABLE the server sent.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
import grpc.aio
import numpy as np
from tritonclient.grpc import service_pb2 as pb

from sonic.client._errors import GRPC_CODES, DeadlineExceeded, ServerUnreachable, error_for_code
from sonic.client._inputs import NO_PARAMS
from sonic.client._loops import PerLoop
from sonic.client._shm import is_same_host
from sonic.client._transport import (
    Infer,
    Metadata,
    Op,
    Ready,
    RepositoryIndex,
    ShmRegister,
    ShmStatus,
    ShmUnregister,
    Statistics,
)
from sonic.client._types import IndexEntry, ModelInfo, ModelStatistics
from sonic.protocol.datatypes import DATATYPES, element_count, numpy_dtype
from sonic.protocol.errors import Code, SonicError
from sonic.protocol.grpc_codec import decode_infer_response, encode_infer_request
from sonic.protocol.types import InferRequest, InferResponse, OutputTensor

_InferInputTensor = pb.ModelInferRequest.InferInputTensor
_RequestedOutput = pb.ModelInferRequest.InferRequestedOutputTensor

__all__ = ["GrpcTransport"]

T = TypeVar("T")

_SERVICE = "/inference.GRPCInferenceService/"
_MAX_MESSAGE = 2**31 - 1
_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    # The client retries itself (allowed_tries, then other servers); grpc's own retry layer
    # would only add its bookkeeping to every call: ~15 us of client CPU per request here.
    ("grpc.enable_retries", 0),
]
_COMPRESSION = {
    None: None,
    "": None,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}
# grpcio's wording when the connection, not the server, failed.
_CONNECTION = re.compile(
    r"connect|socket|reset|refused|broken pipe|unreachable|closed|goaway|end of stream|eof|"
    r"no route|dns|resolve",
    re.IGNORECASE,
)

#: method -> (request class, response class)
_METHODS: dict[str, tuple[Any, Any]] = {
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "SystemSharedMemoryRegister": (
        pb.SystemSharedMemoryRegisterRequest,
        pb.SystemSharedMemoryRegisterResponse,
    ),
    "SystemSharedMemoryUnregister": (
        pb.SystemSharedMemoryUnregisterRequest,
        pb.SystemSharedMemoryUnregisterResponse,
    ),
    "SystemSharedMemoryStatus": (
        pb.SystemSharedMemoryStatusRequest,
        pb.SystemSharedMemoryStatusResponse,
    ),
}


def _handles(channel: Any) -> dict[str, Callable[..., Any]]:
    # registered methods (grpcio >= 1.62, as tritonclient's generated stubs use them) spare
    # the core a method lookup per call
    extra = {"_registered_method": True} if _REGISTERED else {}
    return {
        name: channel.unary_unary(
            _SERVICE + name,
            request_serializer=req.SerializeToString,
            response_deserializer=resp.FromString,
            **extra,
        )
        for name, (req, resp) in _METHODS.items()
    }


_REGISTERED = "_registered_method" in inspect.signature(grpc.Channel.unary_unary).parameters


def _timeout(t: float | None) -> float | None:
    return t if t else None


class GrpcTransport:
    """A server reached over gRPC at ``address`` ("host:port")."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.same_host = is_same_host(address)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._sync: dict[str, Callable[..., Any]] = {}
        self._sync_infer: Callable[..., Any] | None = None
        self._aio: PerLoop[tuple[Any, dict[str, Callable[..., Any]]]] = PerLoop(
            self._new_aio, _close_aio
        )
        self._closed = False

    # -- the interface --------------------------------------------------------------------

    def handle(self, op: Op[T]) -> T:
        if type(op) is Infer:  # the hot path first
            call = self._sync_infer or self._sync_handles()["ModelInfer"]
            msg = _encode(op.request)
            try:
                reply = call(msg, timeout=op.timeout or None, compression=_COMPRESSION[op.compression])
            except grpc.RpcError as exc:
                raise self._error(exc, op.timeout) from None
            return cast(T, _decode(reply, op.request))
        handles = self._sync_handles()

        def call_sync(method: str, msg: Any, timeout: float | None) -> Any:
            try:
                return handles[method](msg, timeout=_timeout(timeout))
            except grpc.RpcError as exc:
                raise self._error(exc, timeout) from None

        return self._control(op, call_sync)

    async def handle_async(self, op: Op[T]) -> T:
        entry = self._aio.current()
        if entry is None:
            self._check_open()
            entry = await self._aio.create()
        handles = entry[1]
        if type(op) is Infer:
            msg = _encode(op.request)
            try:
                reply = await handles["ModelInfer"](
                    msg, timeout=_timeout(op.timeout), compression=_COMPRESSION[op.compression]
                )
            except grpc.RpcError as exc:
                raise self._error(exc, op.timeout) from None
            return cast(T, _decode(reply, op.request))
        # control operations: at most two calls, sequential (metadata + config)
        results: dict[str, Any] = {}
        for method, msg, timeout in self._plan(op):
            try:
                results[method] = await handles[method](msg, timeout=_timeout(timeout))
            except grpc.RpcError as exc:
                raise self._error(exc, timeout) from None
        return self._answer(op, results)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
            self._sync = {}
            self._sync_infer = None
        if channel is not None:
            channel.close()
        self._aio.close()

    async def aclose(self) -> None:
        await self._aio.aclose()

    # -- channels ---------------------------------------------------------------------------

    def _sync_handles(self) -> dict[str, Callable[..., Any]]:
        handles = self._sync
        if handles:
            return handles
        with self._lock:
            self._check_open()
            if self._channel is None:
                self._channel = grpc.insecure_channel(self.address, options=_OPTIONS)
                self._sync = _handles(self._channel)
                self._sync_infer = self._sync["ModelInfer"]
            return self._sync

    def _new_aio(self) -> tuple[Any, dict[str, Callable[..., Any]]]:
        channel = grpc.aio.insecure_channel(self.address, options=_OPTIONS)
        return channel, _handles(channel)

    def _check_open(self) -> None:
        if self._closed:
            raise ServerUnreachable(f"the gRPC transport to {self.address} is closed")

    # -- control operations -------------------------------------------------------------------

    def _control(self, op: Op[T], call: Callable[[str, Any, float | None], Any]) -> T:
        results = {method: call(method, msg, timeout) for method, msg, timeout in self._plan(op)}
        return self._answer(op, results)

    @staticmethod
    def _plan(op: Op[Any]) -> list[tuple[str, Any, float | None]]:
        if isinstance(op, Metadata):
            return [
                ("ModelMetadata", pb.ModelMetadataRequest(name=op.model, version=op.version), op.timeout),
                ("ModelConfig", pb.ModelConfigRequest(name=op.model, version=op.version), op.timeout),
            ]
        if isinstance(op, RepositoryIndex):
            return [("RepositoryIndex", pb.RepositoryIndexRequest(), op.timeout)]
        if isinstance(op, Statistics):
            return [
                ("ModelStatistics", pb.ModelStatisticsRequest(name=op.model, version=op.version), op.timeout)
            ]
        if isinstance(op, Ready):
            if op.model:
                return [("ModelReady", pb.ModelReadyRequest(name=op.model, version=op.version), op.timeout)]
            return [("ServerReady", pb.ServerReadyRequest(), op.timeout)]
        if isinstance(op, ShmRegister):
            msg = pb.SystemSharedMemoryRegisterRequest(
                name=op.name, key=op.key, offset=op.offset, byte_size=op.byte_size
            )
            return [("SystemSharedMemoryRegister", msg, op.timeout)]
        if isinstance(op, ShmUnregister):
            msg = pb.SystemSharedMemoryUnregisterRequest(name=op.name)
            return [("SystemSharedMemoryUnregister", msg, op.timeout)]
        if isinstance(op, ShmStatus):
            msg = pb.SystemSharedMemoryStatusRequest(name=op.name)
            return [("SystemSharedMemoryStatus", msg, op.timeout)]
        raise TypeError(f"the gRPC transport cannot handle {type(op).__name__}")

    @staticmethod
    def _answer(op: Op[T], results: dict[str, Any]) -> T:
        answer: Any
        if isinstance(op, Metadata):
            answer = model_info(results["ModelMetadata"], results["ModelConfig"].config)
        elif isinstance(op, RepositoryIndex):
            answer = [
                IndexEntry(m.name, m.version, m.state, m.reason)
                for m in results["RepositoryIndex"].models
            ]
        elif isinstance(op, Statistics):
            answer = [_statistics(s) for s in results["ModelStatistics"].model_stats]
        elif isinstance(op, Ready):
            answer = bool(results["ModelReady" if op.model else "ServerReady"].ready)
        elif isinstance(op, ShmStatus):
            answer = [
                {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                for r in results["SystemSharedMemoryStatus"].regions.values()
            ]
        else:
            answer = None
        return cast(T, answer)

    def _error(self, exc: grpc.RpcError, timeout: float | None) -> SonicError:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        details = details or ""
        name = code.name if code is not None else "UNKNOWN"
        if name == "DEADLINE_EXCEEDED":
            return DeadlineExceeded(
                f"no answer from {self.address} within the timeout of {timeout} s (gRPC)"
            )
        if name in ("UNAVAILABLE", "CANCELLED") and (name == "CANCELLED" or _CONNECTION.search(details)):
            return ServerUnreachable(f"gRPC server {self.address} unreachable: {details}")
        return error_for_code(GRPC_CODES.get(name, Code.INTERNAL), details)


# -- the hot path: plain tensors, no parameters --------------------------------------------------
#
# Most requests carry fixed-size tensors in native byte order and no parameters, and most
# answers carry raw outputs aligned with their names. Those take the short paths below (the
# same messages the codec builds and reads, without its generality); anything else goes through
# sonic.protocol.grpc_codec, which is also what reports malformed messages.

_NATIVE: dict[str, np.dtype[Any]] = {
    name: numpy_dtype(name) for name in DATATYPES if name not in ("BYTES", "BF16")
}


def _encode(req: InferRequest) -> Any:
    if req.parameters:
        return encode_infer_request(req)
    inputs = []
    raws = []
    for t in req.inputs:
        data = t.data
        if data is None or t.shm is not None or t.parameters or data.dtype != _NATIVE.get(t.datatype):
            return encode_infer_request(req)
        inputs.append(_InferInputTensor(name=t.name, datatype=t.datatype, shape=t.shape))
        raws.append(data.tobytes())
    outputs = []
    for o in req.outputs:
        if o.parameters or o.classification or o.shm is not None:
            return encode_infer_request(req)
        outputs.append(_RequestedOutput(name=o.name))
    return pb.ModelInferRequest(
        model_name=req.model_name,
        model_version=req.model_version,
        id=req.id,
        inputs=inputs,
        outputs=outputs,
        raw_input_contents=raws,
    )


def _decode(reply: Any, request: InferRequest) -> InferResponse:
    """Decode, first naming the shared-memory region of each output that the request put
    there: Triton answers such an output with its name, datatype and shape only."""
    # (slicing a repeated field is the fastest way to read it from upb)
    raws = reply.raw_output_contents[:]
    outs = reply.outputs[:]
    if len(raws) == len(outs) and not request.outputs and not reply.parameters:
        tensors = []
        for o, raw in zip(outs, raws, strict=True):
            dtype = _NATIVE.get(o.datatype)
            shape = tuple(o.shape[:])
            if dtype is None or o.parameters or len(raw) != element_count(shape) * dtype.itemsize:
                break
            data = np.frombuffer(raw, dtype=dtype).reshape(shape)
            tensors.append(OutputTensor(o.name, o.datatype, shape, data, None, None, NO_PARAMS))
        else:
            return InferResponse(reply.model_name, reply.model_version, reply.id, tensors, NO_PARAMS)
    if request.outputs and any(o.shm is not None for o in request.outputs):
        refs = {o.name: o.shm for o in request.outputs if o.shm is not None}
        for out in reply.outputs:
            ref = refs.get(out.name)
            if ref is not None and "shared_memory_region" not in out.parameters:
                out.parameters["shared_memory_region"].string_param = ref.region
                out.parameters["shared_memory_byte_size"].int64_param = ref.byte_size
                if ref.offset:
                    out.parameters["shared_memory_offset"].int64_param = ref.offset
    return decode_infer_response(reply)


async def _close_aio(entry: tuple[Any, dict[str, Callable[..., Any]]]) -> None:
    await entry[0].close()


def model_info(meta: Any, config: Any) -> ModelInfo:
    """ModelMetadataResponse + ModelConfig -> ModelInfo."""
    metadata = {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.outputs],
    }
    cfg = {
        "name": config.name,
        "max_batch_size": config.max_batch_size,
        "input": [{"name": t.name, "optional": t.optional} for t in config.input],
    }
    return ModelInfo.from_v2(metadata, cfg)


def _statistics(s: Any) -> ModelStatistics:
    st = s.inference_stats
    return ModelStatistics(
        name=s.name,
        version=s.version,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        success_count=st.success.count,
        success_ns=st.success.ns,
        fail_count=st.fail.count,
        queue_count=st.queue.count,
        queue_ns=st.queue.ns,
        compute_input_ns=st.compute_input.ns,
        compute_infer_ns=st.compute_infer.ns,
        compute_output_ns=st.compute_output.ns,
        compute_count=st.compute_infer.count,
    )
