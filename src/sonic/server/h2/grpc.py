"""gRPC over the HTTP/2 connection: calls of :class:`~sonic.server.grpc_service.GrpcService`.

Where it sits: :class:`GrpcConnection` fills in the hooks of
:class:`~sonic.server.h2.connection.H2Connection`. A request head (validated and cached by
:mod:`sonic.server.h2.headers`) opens a call; DATA frames carry length-prefixed messages
(1 byte compressed flag, 4 bytes big-endian length); the response is HEADERS, the messages as
DATA, and trailers with ``grpc-status`` / ``grpc-message`` (a Trailers-Only response when an
error comes before any message).

The ModelInfer hot path: the request usually arrives as one DATA frame with END_STREAM; its
message is decoded straight from that frame (from a cached template when it has the shape of
an earlier request, :func:`~sonic.protocol.grpc_codec.decode_infer_request_bytes`) and queued
within ``data_received`` with a callback (:meth:`GrpcService.infer_begin_bytes`: no Task, no
future), so everything parsed in one loop iteration reaches the model's scheduler in that
iteration and batches together; the callback writes the response, serialized in protobuf's
wire format, as HEADERS + DATA + trailers (precomputed blocks) into the connection's output,
which leaves with one write per loop iteration. Other unary calls run as coroutines stepped by
:class:`~sonic.server.grpc_service.Drive`.

ModelStreamInfer runs through an :class:`~sonic.server.grpc_service.InferStream`: each
request starts as soon as its message is complete, responses go out as they complete, and the
stream ends with OK trailers once the client has half-closed and nothing is in flight. Its
receive window is credited back only while it has fewer than ``max_stream_in_flight``
requests in flight and less than ``max_stream_backlog`` bytes waiting for the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import zlib
from typing import Any

from sonic.protocol.errors import SonicError
from sonic.protocol.grpc_codec import serialize_infer_response
from sonic.scheduler.batcher import Pending
from sonic.server.grpc_service import Drive, GrpcService, InferStream, StatusCode, status_of
from sonic.server.h2.connection import H2Connection, Limits, Stream
from sonic.server.h2.headers import OK_TRAILERS, RequestHead, error_trailers, response_headers

__all__ = ["GrpcConnection"]

log = logging.getLogger("sonic.server.h2")

_MSG = struct.Struct(">BL")  # the gRPC message prefix: compressed flag, length
_EMPTY = memoryview(b"")
_WBITS = {"gzip": 31, "deflate": 15}  # grpc's "deflate" is the zlib format (RFC 1950)
OK_TRAILERS_ONLY = error_trailers(0, "", trailers_only=True)


class CallError(Exception):
    """A call ends with this gRPC status (raised inside the transport, not by the service)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decompress(encoding: str, data: bytes | memoryview, limit: int) -> bytes:
    """A compressed message, inflated to at most ``limit`` bytes (else RESOURCE_EXHAUSTED)."""
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise CallError(StatusCode.INTERNAL, "compressed message without a grpc-encoding")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CallError(
            StatusCode.INTERNAL, f"failed to decompress the message ({encoding}): {exc}"
        ) from None
    if len(out) > limit:
        raise CallError(
            StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max (> {limit} once decompressed)"
        )
    if not d.eof:
        raise CallError(StatusCode.INTERNAL, f"truncated {encoding} message")
    return out


def compress(encoding: str, data: bytes) -> bytes:
    return zlib.compress(data, 1, wbits=_WBITS[encoding])


class Call:
    """The gRPC state of one stream."""

    __slots__ = (
        "buf",
        "buffered",
        "compress",
        "drive",
        "head",
        "headers_sent",
        "messages",
        "pending",
        "reading_done",
        "stream_call",
        "task",
        "timer",
    )

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        self.buf: bytearray | None = None
        self.buffered = 0  # len(buf) as counted in the connection's total
        self.messages: list[tuple[int, bytes]] = []
        enc = head.encoding
        # Answer in the client's compression when it uses one (and accepts it back).
        self.compress: str | None = enc if enc != "identity" and enc in head.accept else None
        self.drive: Drive | None = None
        self.pending: Pending | None = None
        self.task: asyncio.Task[Any] | None = None
        self.stream_call: InferStream | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.headers_sent = False
        self.reading_done = False

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.drive is not None:
            drive, self.drive = self.drive, None
            drive.cancel()
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.cancel()
        if self.task is not None:
            task, self.task = self.task, None
            task.cancel()
        if self.stream_call is not None:
            self.stream_call.cancel()


def _task_outcome(task: asyncio.Task[Any]) -> tuple[Any, BaseException | None]:
    if task.cancelled():
        return None, asyncio.CancelledError()
    exc = task.exception()
    return (None, exc) if exc is not None else (task.result(), None)


class GrpcConnection(H2Connection):
    """One client connection serving :class:`GrpcService` calls."""

    def __init__(
        self, service: GrpcService, limits: Limits, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(limits, loop)
        self.service = service
        self._max_message = limits.max_message_bytes
        self._min_compress = limits.compression_min_bytes
        self._tasks = limits.task_per_request
        self._max_buffered = limits.max_connection_buffer
        self._buffered = 0  # bytes held in partial request messages, all streams

    # -- hooks -------------------------------------------------------------------------------------

    def on_request(self, stream: Stream, head: RequestHead, end_stream: bool) -> None:
        if head.refusal is not None:
            http_status, status, message = head.refusal
            self.send_trailers(
                stream, error_trailers(status, message, trailers_only=True, http_status=http_status)
            )
            return
        call = stream.call = Call(head)
        if head.timeout is not None:
            call.timer = self.loop.call_later(head.timeout, self._deadline, stream)
        assert head.method is not None
        if head.method.streaming:
            call.stream_call = self.service.open_stream(
                functools.partial(self._stream_emit, stream), functools.partial(self._stream_idle, stream)
            )
        if end_stream:
            self.on_data(stream, _EMPTY, True)

    def on_data(self, stream: Stream, data: memoryview, end_stream: bool) -> None:
        call: Call | None = stream.call
        if call is None or stream.local_closed:
            return
        try:
            if call.buf is None and end_stream and call.stream_call is None and len(data) >= 5:
                flag, length = _MSG.unpack_from(data)
                if length + 5 == len(data) and not call.messages:  # the common case: one frame
                    if length > self._max_message:
                        raise self._too_large(length)
                    self._unary(stream, call, flag, data[5:])
                    return
            buf = call.buf
            if buf is None:
                buf = call.buf = bytearray()
            buf += data
            while len(buf) >= 5:
                flag, length = _MSG.unpack_from(buf)
                if length > self._max_message:
                    raise self._too_large(length)
                if len(buf) < 5 + length:
                    break
                msg = bytes(buf[5 : 5 + length])
                del buf[: 5 + length]
                if call.stream_call is not None:
                    self._stream_message(stream, call, flag, msg)
                    if stream.local_closed:
                        return
                elif call.messages:
                    raise CallError(
                        StatusCode.UNIMPLEMENTED, "a unary call takes one request message, got more"
                    )
                else:
                    call.messages.append((flag, msg))
            # what partial messages hold, over the connection: bounded
            self._buffered += len(buf) - call.buffered
            call.buffered = len(buf)
            if self._buffered > self._max_buffered:
                raise CallError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"the connection holds more than {self._max_buffered} bytes of unfinished requests",
                )
            if not end_stream:
                return
            if buf:
                raise CallError(StatusCode.INTERNAL, "the request ended inside a message")
            if call.stream_call is not None:
                call.reading_done = True
                if not call.stream_call.in_flight:
                    self._finish_ok(stream, call)
                return
            if not call.messages:
                raise CallError(StatusCode.INTERNAL, "a unary call takes one request message, got none")
            flag, msg = call.messages.pop()
            self._unary(stream, call, flag, msg)
        except CallError as exc:
            self._fail(stream, exc.status, exc.message)

    def on_reset(self, stream: Stream) -> None:
        call: Call | None = stream.call
        if call is not None:
            call.cancel()

    def on_closed(self, stream: Stream) -> None:
        call: Call | None = stream.call
        if call is not None:
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None
            if call.buffered:
                self._buffered -= call.buffered
                call.buffered = 0
            call.buf = None

    def can_receive(self, stream: Stream) -> bool:
        call: Call | None = stream.call
        if call is None or call.stream_call is None:
            return True
        lim = self.limits
        return (
            call.stream_call.in_flight < lim.max_stream_in_flight
            and stream.out_bytes < lim.max_stream_backlog
        )

    # -- unary calls -------------------------------------------------------------------------------

    def _too_large(self, length: int) -> CallError:
        return CallError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"Received message larger than max ({length} vs. {self._max_message})",
        )

    def _inflate(self, call: Call, flag: int, data: bytes | memoryview) -> bytes | memoryview:
        """The message bytes, decompressed when its flag says so."""
        if flag:
            if flag != 1:
                raise CallError(StatusCode.INTERNAL, f"invalid message flag {flag}")
            data = decompress(call.head.encoding, data, self._max_message)
        return data

    def _parse(self, call: Call, flag: int, data: bytes | memoryview) -> Any:
        data = self._inflate(call, flag, data)
        assert call.head.method is not None
        try:
            return self.service.parse(call.head.method.name, data)
        except SonicError as exc:
            raise CallError(*status_of(exc)) from None

    def _unary(self, stream: Stream, call: Call, flag: int, data: bytes | memoryview) -> None:
        method = call.head.method
        assert method is not None
        service = self.service
        if method.name == "ModelInfer" and not self._tasks:  # the hot path: no Task, no future
            data = self._inflate(call, flag, data)
            try:
                call.pending = service.infer_begin_bytes(data, functools.partial(self._infer_done, stream))
            except Exception as exc:
                self._fail(stream, *status_of(exc))
            return
        request = self._parse(call, flag, data)
        if method.name == "ModelInfer":
            try:
                coro = service.infer_start(request)
            except Exception as exc:
                self._fail(stream, *status_of(exc))
                return
            done = functools.partial(self._infer_done, stream)
        else:
            coro = service.call(method.name, request)
            done = functools.partial(self._unary_done, stream)
        if self._tasks:
            task = call.task = self.loop.create_task(coro)
            task.add_done_callback(lambda t: done(*_task_outcome(t)))
        else:
            drive = Drive(coro, done, self.loop)
            if not drive.finished:
                call.drive = drive

    def _infer_done(self, stream: Stream, result: Any, exc: BaseException | None) -> None:
        if stream.local_closed:
            return
        if exc is not None:
            if not isinstance(exc, asyncio.CancelledError):
                self._fail(stream, *status_of(exc))
            return
        try:
            payload = serialize_infer_response(result)
        except Exception as enc_exc:
            self._fail(stream, *status_of(enc_exc))
            return
        self._respond(stream, payload)

    def _unary_done(self, stream: Stream, result: Any, exc: BaseException | None) -> None:
        if stream.local_closed:
            return
        if exc is not None:
            if not isinstance(exc, asyncio.CancelledError):
                self._fail(stream, *status_of(exc))
            return
        self._respond(stream, result.SerializeToString())

    def _message(self, stream: Stream, call: Call, payload: bytes) -> tuple[bytes, bytes] | None:
        """A response message as its 5-byte prefix and its (maybe compressed) payload, or None
        when it is too large (the call then ended with RESOURCE_EXHAUSTED)."""
        n = len(payload)
        if n > self._max_message:
            self._fail(
                stream,
                StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({n} vs. {self._max_message})",
            )
            return None
        flag = 0
        if call.compress is not None and n >= self._min_compress:
            payload = compress(call.compress, payload)
            n = len(payload)
            flag = 1
        return _MSG.pack(flag, n), payload

    def _respond(self, stream: Stream, payload: bytes) -> None:
        call: Call = stream.call
        call.drive = call.task = call.pending = None
        message = self._message(stream, call, payload)
        if message is None:
            return
        prefix, payload = message
        n = len(payload)
        head = response_headers(call.compress)
        if not self.fast_response(stream, head, [prefix, payload], n + 5, OK_TRAILERS):
            self.send_headers(stream, head)
            self.send_data(stream, prefix + payload)
            self.send_trailers(stream, OK_TRAILERS)

    def _fail(self, stream: Stream, status: int, message: str) -> None:
        """End the call with an error status (Trailers-Only when nothing was sent yet)."""
        call: Call | None = stream.call
        if stream.local_closed:
            return
        if call is not None:
            call.cancel()
        trailers_only = call is None or not call.headers_sent
        self.send_trailers(stream, error_trailers(status, message, trailers_only=trailers_only))

    def _deadline(self, stream: Stream) -> None:
        call: Call | None = stream.call
        if call is not None:
            call.timer = None
        self._fail(stream, StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    # -- ModelStreamInfer --------------------------------------------------------------------------

    def _stream_message(self, stream: Stream, call: Call, flag: int, msg: bytes) -> None:
        request = self._parse(call, flag, msg)
        assert call.stream_call is not None
        call.stream_call.feed(request)

    def _stream_emit(self, stream: Stream, response: Any) -> None:
        if stream.local_closed:
            return
        call: Call = stream.call
        message = self._message(stream, call, response.SerializeToString())
        if message is None:
            return
        if not call.headers_sent:
            call.headers_sent = True
            self.send_headers(stream, response_headers(call.compress))
        self.send_data(stream, message[0] + message[1])
        if stream.credit_owed:
            self.credit_stream(stream)

    def _stream_idle(self, stream: Stream) -> None:
        call: Call = stream.call
        if call.reading_done and not stream.local_closed:
            self._finish_ok(stream, call)

    def _finish_ok(self, stream: Stream, call: Call) -> None:
        self.send_trailers(stream, OK_TRAILERS if call.headers_sent else OK_TRAILERS_ONLY)
