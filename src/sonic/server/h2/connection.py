"""One HTTP/2 server connection as an asyncio Protocol: framing, streams, flow control, limits.

Where it sits: under the gRPC layer (:mod:`sonic.server.h2.grpc`, a subclass that fills in
the ``on_*`` hooks) and over an asyncio transport (TCP or TLS, uvloop in ``sonic serve``).

Receiving: ``data_received`` parses every complete frame in the chunk straight out of the
bytes it was given (``struct.unpack_from`` and memoryview slices; only a trailing partial
frame is copied into ``_buf``) and dispatches on the frame type. Errors follow RFC 9113 §5.4:
a :class:`~sonic.server.h2.frames.ConnectionError` ends the connection with GOAWAY, a
:class:`~sonic.server.h2.frames.StreamError` answers RST_STREAM and the connection goes on.

Sending: everything is appended to ``_out`` and written with one ``transport.write`` per loop
iteration (at the end of ``data_received``, or from a ``call_soon`` when the output comes from
a completion callback), so the responses of one batch leave in one write.

Flow control, both ways: DATA received is charged to the connection and stream windows we
advertised (more than granted is FLOW_CONTROL_ERROR) and credited back with WINDOW_UPDATE
once half a window is used, a stream's credit waiting while its layer says it has too much
in hand (``can_receive``); DATA sent is bounded by the peer's windows and its
SETTINGS_MAX_FRAME_SIZE, the rest waiting per stream until WINDOW_UPDATE or a SETTINGS change
opens the window. When the transport's write buffer is full, reading pauses.

Limits and timers: concurrent streams (REFUSED_STREAM past it), frame size, header block size
and CONTINUATION count, client resets per second (rapid reset), and one timer per connection
that closes connections that do not finish the preface, stall in the middle of a frame or
header block, or stay idle with no stream open.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from dataclasses import dataclass
from typing import Any, cast

from sonic.server.h2 import frames as fr
from sonic.server.h2.frames import (
    CLIENT_PREFACE,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    FRAME_HEADER,
    MAX_WINDOW,
    ConnectionError,
    ErrorCode,
    Flag,
    FrameType,
    Setting,
    StreamError,
)
from sonic.server.h2.headers import HeaderDecoder, RequestHead

__all__ = ["H2Connection", "Limits", "Stream"]

log = logging.getLogger("sonic.server.h2")

INT32_MAX = 2**31 - 1
#: Seconds a closing connection keeps reading (and discarding) so that its GOAWAY arrives.
LINGER_S = 1.0
_PACK = FRAME_HEADER.pack
_UNPACK = FRAME_HEADER.unpack_from
_DATA = int(FrameType.DATA)
_HEADERS = int(FrameType.HEADERS)
_CONTINUATION = int(FrameType.CONTINUATION)
_END_STREAM = int(Flag.END_STREAM)
_END_HEADERS = int(Flag.END_HEADERS)
_PADDED = int(Flag.PADDED)
_PRIORITY = int(Flag.PRIORITY)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may cost. The defaults suit a trusted cluster network."""

    #: SETTINGS_MAX_CONCURRENT_STREAMS; streams past it are refused (REFUSED_STREAM).
    max_concurrent_streams: int = 1024
    #: SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on one stream before credit.
    initial_window_size: int = 1 << 20
    #: The connection receive window (raised from 65535 by a WINDOW_UPDATE at start).
    connection_window_size: int = 16 << 20
    #: SETTINGS_MAX_FRAME_SIZE: the largest frame accepted (FRAME_SIZE_ERROR past it).
    max_frame_size: int = 1 << 16
    #: SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads are refused (RESOURCE_EXHAUSTED).
    max_header_list_size: int = 16 << 10
    #: Hard bound on one header block, compressed or decoded (ENHANCE_YOUR_CALM /
    #: COMPRESSION_ERROR past it: the connection ends).
    max_header_block_bytes: int = 64 << 10
    #: CONTINUATION frames allowed after one HEADERS frame (ENHANCE_YOUR_CALM past it).
    max_continuation_frames: int = 32
    #: Streams a client may reset per second before the connection is closed (rapid reset).
    max_resets_per_second: int = 1000
    #: Largest gRPC message, either way (RESOURCE_EXHAUSTED past it).
    max_message_bytes: int = INT32_MAX
    #: Bytes of unfinished request messages one connection may hold, all its streams together
    #: (the call that goes past it ends with RESOURCE_EXHAUSTED).
    max_connection_buffer: int = 1 << 30
    #: Requests of one ModelStreamInfer call in flight before its window credit waits.
    max_stream_in_flight: int = 256
    #: Response bytes a stream may have waiting for the client's window before credit waits.
    max_stream_backlog: int = 16 << 20
    #: Seconds to receive the client preface and SETTINGS.
    handshake_timeout: float = 10.0
    #: Seconds a partial frame or an unfinished header block may stall the connection.
    frame_timeout: float = 30.0
    #: Seconds a connection with no open stream stays up (None: forever); GOAWAY NO_ERROR.
    idle_timeout: float | None = 600.0
    #: Responses at least this large are compressed when the client compresses its requests.
    compression_min_bytes: int = 1024
    #: Run each ModelInfer in an asyncio Task instead of stepping it inline (for comparison).
    task_per_request: bool = False

    def __post_init__(self) -> None:
        if not fr.DEFAULT_MAX_FRAME_SIZE <= self.max_frame_size <= fr.MAX_FRAME_SIZE_LIMIT:
            raise ValueError(f"max_frame_size must be in [16384, 16777215], got {self.max_frame_size}")
        if not 0 < self.initial_window_size <= MAX_WINDOW:
            raise ValueError(f"initial_window_size must be in [1, 2**31-1], got {self.initial_window_size}")
        if not DEFAULT_WINDOW <= self.connection_window_size <= MAX_WINDOW:
            raise ValueError(
                f"connection_window_size must be in [65535, 2**31-1], got {self.connection_window_size}"
            )


class Stream:
    """One stream's transport state; ``call`` belongs to the layer above."""

    __slots__ = (
        "call",
        "credit_owed",
        "local_closed",
        "out_bytes",
        "outq",
        "recv_window",
        "remote_closed",
        "send_window",
        "sid",
        "trailers",
    )

    def __init__(self, sid: int, send_window: int, recv_window: int) -> None:
        self.sid = sid
        self.send_window = send_window
        self.recv_window = recv_window
        self.credit_owed = 0
        self.remote_closed = False
        self.local_closed = False
        self.outq: collections.deque[bytes | memoryview] | None = None
        self.out_bytes = 0
        self.trailers: bytes | None = None
        self.call: Any = None


class H2Connection(asyncio.Protocol):
    """The HTTP/2 server side of one connection; subclasses implement the ``on_*`` hooks."""

    def __init__(self, limits: Limits, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.limits = limits
        self.loop = loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.streams: dict[int, Stream] = {}
        self._decoder = HeaderDecoder(limits.max_header_list_size, limits.max_header_block_bytes)
        self._buf = b""
        self._preface = False  # client preface received
        self._settings_seen = False  # the first frame (SETTINGS) received
        self._last_sid = 0
        self._recently_reset: collections.deque[int] = collections.deque(maxlen=256)
        # flow control
        self._recv_window = limits.connection_window_size
        self._conn_unacked = 0
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME_SIZE
        self._blocked: dict[int, Stream] = {}  # streams with output waiting for window
        self._hpack_prefix = b""  # a dynamic table size update owed to the peer
        # header blocks in CONTINUATION
        self._cont_sid = 0
        self._cont_flags = 0
        self._cont_block = bytearray()
        self._cont_frames = 0
        # output
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._in_receive = False
        self._write_paused = False
        # lifecycle
        self._draining = False  # no new streams (GOAWAY sent or received); close when none is open
        self._goaway_emitted = False
        self._closing = False
        self._resets = 0
        self._reset_epoch = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._frames = 0  # frames processed, for the stall check
        self._tick_frames = -1
        self._stalled_ticks = 0
        self._streams_opened = 0
        self._tick_streams = -1
        self._idle_ticks = 0
        self._ticks = 0
        timeouts = [limits.handshake_timeout, limits.frame_timeout]
        if limits.idle_timeout is not None:
            timeouts.append(limits.idle_timeout)
        self._tick_s = min(max(min(timeouts) / 4, 0.02), 5.0)

    # -- hooks for the layer above -----------------------------------------------------------------

    def on_request(self, stream: Stream, head: RequestHead, end_stream: bool) -> None:
        """A new stream's request head (``end_stream``: no body follows)."""

    def on_data(self, stream: Stream, data: memoryview, end_stream: bool) -> None:
        """Body bytes (flow control already charged; ``data`` may be empty when only
        ``end_stream`` is news, and is only valid during the call). With ``end_stream`` the
        client's side is over (``stream.remote_closed`` is already set)."""

    def on_reset(self, stream: Stream) -> None:
        """The stream ended abnormally (client RST_STREAM, stream error, connection lost)."""

    def on_closed(self, stream: Stream) -> None:
        """The stream is over and forgotten (after the response or a reset)."""

    def can_receive(self, stream: Stream) -> bool:
        """Whether the stream may be granted more receive window now."""
        return True

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self.transport = transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            alpn = ssl_object.selected_alpn_protocol()
            if alpn not in (None, "h2"):
                log.info("h2: closing a TLS connection that negotiated %r, not h2", alpn)
                transport.close()
                return
        lim = self.limits
        values = {
            Setting.MAX_CONCURRENT_STREAMS: lim.max_concurrent_streams,
            Setting.INITIAL_WINDOW_SIZE: lim.initial_window_size,
            Setting.MAX_FRAME_SIZE: lim.max_frame_size,
            Setting.MAX_HEADER_LIST_SIZE: lim.max_header_list_size,
            Setting.ENABLE_PUSH: 0,
        }
        self._out.append(fr.settings(values))
        if lim.connection_window_size > DEFAULT_WINDOW:
            self._out.append(fr.window_update(0, lim.connection_window_size - DEFAULT_WINDOW))
        self._flush()
        self._timer = self.loop.call_later(self._tick_s, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for stream in streams.values():
            self._safe_hook(self.on_reset, stream)
            self._safe_hook(self.on_closed, stream)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._in_receive = True
        try:
            if self._buf:
                data = self._buf + data
                self._buf = b""
            pos = self._receive(data)
            if pos < len(data):
                self._buf = data[pos:]
        except ConnectionError as exc:
            self._fatal(exc.code, str(exc))
        except Exception as exc:  # a bug here must not take the server down
            log.exception("h2: internal error while reading frames")
            self._fatal(ErrorCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        finally:
            self._in_receive = False
            self._flush()

    # -- receiving ---------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> int:
        pos = 0
        n = len(data)
        if not self._preface:
            if n < len(CLIENT_PREFACE):
                if not CLIENT_PREFACE.startswith(data):
                    raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
                return 0
            if not data.startswith(CLIENT_PREFACE):
                raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            self._preface = True
            pos = len(CLIENT_PREFACE)
        max_frame = self.limits.max_frame_size
        mv = memoryview(data)
        handlers = self._handlers
        processed = 0
        while n - pos >= 9:
            hi, lo, ftype, flags, sid = _UNPACK(data, pos)
            length = (hi << 16) | lo
            if length > max_frame:
                raise ConnectionError(
                    ErrorCode.FRAME_SIZE_ERROR,
                    f"frame of {length} bytes exceeds SETTINGS_MAX_FRAME_SIZE {max_frame}",
                )
            end = pos + 9 + length
            if end > n:
                break
            payload = mv[pos + 9 : end]
            pos = end
            processed += 1
            sid &= 0x7FFFFFFF
            if not self._settings_seen:
                if ftype != FrameType.SETTINGS or flags & Flag.ACK:
                    raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS")
                self._settings_seen = True
            if self._cont_sid and ftype != _CONTINUATION:
                raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION")
            try:
                if ftype == _DATA:
                    self._on_data_frame(flags, sid, payload)
                elif ftype == _HEADERS:
                    self._on_headers_frame(flags, sid, payload)
                elif ftype < len(handlers):
                    handlers[ftype](self, flags, sid, payload)
                # unknown frame types are ignored (RFC 9113 §4.1)
            except StreamError as exc:
                self._stream_error(exc.stream_id, exc.code, str(exc))
            if self._closing:
                break
        self._frames += processed
        return pos

    def _on_data_frame(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_window -= flow
        if self._recv_window < 0:
            raise ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._conn_unacked += flow
        if self._conn_unacked >= self.limits.connection_window_size >> 1:
            self._credit_connection()
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self._last_sid:
                raise ConnectionError(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            if sid not in self._recently_reset:
                self._send_rst(sid, ErrorCode.STREAM_CLOSED)
            return
        if stream.remote_closed:
            raise StreamError(sid, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM")
        stream.recv_window -= flow
        if stream.recv_window < 0:
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        if flags & _PADDED:
            payload = self._unpad(payload)
        stream.credit_owed += flow
        if flags & _END_STREAM:
            stream.remote_closed = True
            self.on_data(stream, payload, True)
        else:
            if payload:
                self.on_data(stream, payload, False)
            if stream.credit_owed >= self.limits.initial_window_size >> 1 and not stream.local_closed:
                self.credit_stream(stream)

    @staticmethod
    def _unpad(payload: memoryview) -> memoryview:
        if not payload:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "PADDED frame without a pad length")
        pad = payload[0]
        if pad >= len(payload):
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding exceeds the frame payload")
        return payload[1 : len(payload) - pad]

    def _on_headers_frame(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0 or not sid & 1:
            raise ConnectionError(
                ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {sid}: client streams are odd"
            )
        if flags & _PADDED:
            payload = self._unpad(payload)
        if flags & _PRIORITY:
            if len(payload) < 5:
                raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority field truncated")
            if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == sid:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
            payload = payload[5:]
        if len(payload) > self.limits.max_header_block_bytes:
            raise ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & _END_HEADERS:
            self._header_block(sid, flags, bytes(payload))
        else:
            self._cont_sid = sid
            self._cont_flags = flags
            self._cont_block = bytearray(payload)
            self._cont_frames = 0

    def _on_continuation(self, flags: int, sid: int, payload: memoryview) -> None:
        if not self._cont_sid or sid != self._cont_sid:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION")
        self._cont_frames += 1
        self._cont_block += payload
        if len(self._cont_block) > self.limits.max_header_block_bytes:
            raise ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if self._cont_frames > self.limits.max_continuation_frames:
            raise ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        if flags & _END_HEADERS:
            block, self._cont_block = bytes(self._cont_block), bytearray()
            self._cont_sid = 0
            self._header_block(sid, self._cont_flags, block)

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        end_stream = bool(flags & _END_STREAM)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client
            self._decoder.decode(block)  # keeps the HPACK state in step; the fields are not used
            if stream.remote_closed:
                raise StreamError(sid, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM")
            if not end_stream:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
            stream.remote_closed = True
            self.on_data(stream, memoryview(b""), True)
            return
        if sid <= self._last_sid:
            raise ConnectionError(
                ErrorCode.PROTOCOL_ERROR, f"stream id {sid} reused (last was {self._last_sid})"
            )
        self._last_sid = sid
        if self._draining or len(self.streams) >= self.limits.max_concurrent_streams:
            self._decoder.decode(block)
            self._send_rst(sid, ErrorCode.REFUSED_STREAM)
            return
        head = self._decoder.request_head(block, sid)
        stream = Stream(sid, self._peer_initial_window, self.limits.initial_window_size)
        self.streams[sid] = stream
        self._streams_opened += 1
        if end_stream:
            stream.remote_closed = True
        self.on_request(stream, head, end_stream)

    def _on_priority(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise StreamError(sid, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY frame must be 5 bytes")

    def _on_rst_stream(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid == 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes")
        if sid > self._last_sid:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        self._blocked.pop(sid, None)
        now = self.loop.time()
        if now - self._reset_epoch > 1.0:
            self._reset_epoch, self._resets = now, 0
        self._resets += 1
        self._safe_hook(self.on_reset, stream)
        self._safe_hook(self.on_closed, stream)
        if self._resets > self.limits.max_resets_per_second:
            raise ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset")
        self._maybe_finish_goaway()

    def _on_settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            if payload:
                raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        raw = bytes(payload)
        for i in range(0, len(raw), 6):
            key = int.from_bytes(raw[i : i + 2], "big")
            value = int.from_bytes(raw[i + 2 : i + 6], "big")
            if key == Setting.HEADER_TABLE_SIZE:
                if value < 4096:  # our blocks never index, but the peer may expect an update
                    b = _hpack_int(value, 5)
                    b[0] |= 0x20
                    self._hpack_prefix = bytes(b)
            elif key == Setting.ENABLE_PUSH:
                if value > 1:
                    raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
            elif key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError(
                        ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large"
                    )
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
                if delta > 0:
                    self._resume_blocked()
            elif key == Setting.MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME_SIZE <= value <= fr.MAX_FRAME_SIZE_LIMIT:
                    raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self._peer_max_frame = value
        self._out.append(fr.SETTINGS_ACK)

    def _on_push_promise(self, flags: int, sid: int, payload: memoryview) -> None:
        raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")

    def _on_ping(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING must be 8 bytes")
        if not flags & Flag.ACK:
            self._out.append(fr.ping(bytes(payload), ack=True))

    def _on_goaway(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
        code = int.from_bytes(payload[4:8], "big")
        if code != ErrorCode.NO_ERROR:
            log.debug("h2: client sent GOAWAY %s: %s", code, bytes(payload[8:])[:200])
        # No new streams will come; finish those in progress, then close.
        self._draining = True
        self._maybe_finish_goaway()

    def _on_window_update(self, flags: int, sid: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE must be 4 bytes")
        inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += inc
            if self._send_window > MAX_WINDOW:
                raise ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            self._resume_blocked()
            return
        if sid > self._last_sid:
            raise ConnectionError(ErrorCode.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
        if inc == 0:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.send_window += inc
        if stream.send_window > MAX_WINDOW:
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
        if sid in self._blocked:
            self._push(stream)

    # indexed by frame type; DATA and HEADERS are dispatched inline
    _handlers: tuple[Any, ...] = (
        None,
        None,
        _on_priority,
        _on_rst_stream,
        _on_settings,
        _on_push_promise,
        _on_ping,
        _on_goaway,
        _on_window_update,
        _on_continuation,
    )

    # -- flow control ------------------------------------------------------------------------------

    def _credit_connection(self) -> None:
        inc, self._conn_unacked = self._conn_unacked, 0
        if inc:
            self._recv_window += inc
            self._out.append(fr.window_update(0, inc))
            self._want_flush()

    def credit_stream(self, stream: Stream) -> None:
        """Give the stream back the window its consumed DATA used, if its layer can take more."""
        if stream.credit_owed and not stream.remote_closed and self.can_receive(stream):
            inc, stream.credit_owed = stream.credit_owed, 0
            stream.recv_window += inc
            self._out.append(fr.window_update(stream.sid, inc))
            self._want_flush()

    def _resume_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            self._push(stream)

    def _push(self, stream: Stream) -> None:
        """Send what the windows allow of the stream's queued output (then its trailers)."""
        q = stream.outq
        out = self._out
        while q:
            room = min(stream.send_window, self._send_window, self._peer_max_frame)
            if room <= 0:
                self._blocked[stream.sid] = stream
                self._want_flush()
                return
            chunk = q[0]
            if len(chunk) <= room:
                q.popleft()
            else:
                q[0] = chunk[room:]
                chunk = chunk[:room]
            m = len(chunk)
            out.append(_PACK(m >> 16, m & 0xFFFF, _DATA, 0, stream.sid))
            out.append(chunk)
            stream.send_window -= m
            self._send_window -= m
            stream.out_bytes -= m
        self._blocked.pop(stream.sid, None)
        if stream.trailers is not None:
            block, stream.trailers = stream.trailers, None
            self._send_block(stream.sid, block, True)
            self._close_local(stream)
        self._want_flush()
        if not stream.local_closed:
            self.credit_stream(stream)

    # -- sending -----------------------------------------------------------------------------------

    def _want_flush(self) -> None:
        if not self._flush_scheduled and not self._in_receive:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out and self.transport is not None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def _send_block(self, sid: int, block: bytes, end_stream: bool) -> None:
        if self._hpack_prefix:
            block, self._hpack_prefix = self._hpack_prefix + block, b""
        self._out += fr.header_frames(sid, block, end_stream, self._peer_max_frame)

    def send_headers(self, stream: Stream, block: bytes) -> None:
        """Send the response header block (not ending the stream)."""
        if not stream.local_closed:
            self._send_block(stream.sid, block, False)
            self._want_flush()

    def send_data(self, stream: Stream, data: bytes) -> None:
        """Send DATA within the peer's windows; queue the rest until they open."""
        if stream.local_closed or stream.trailers is not None:
            return
        n = len(data)
        if (
            (stream.outq is None or not stream.outq)
            and n <= stream.send_window
            and n <= self._send_window
            and n <= self._peer_max_frame
        ):
            self._out.append(_PACK(n >> 16, n & 0xFFFF, _DATA, 0, stream.sid))
            self._out.append(data)
            stream.send_window -= n
            self._send_window -= n
            self._want_flush()
            return
        if stream.outq is None:
            stream.outq = collections.deque()
        stream.outq.append(memoryview(data))
        stream.out_bytes += n
        self._push(stream)

    def send_trailers(self, stream: Stream, block: bytes) -> None:
        """End the stream with a trailer block, after any queued DATA."""
        if stream.local_closed or stream.trailers is not None:
            return
        if stream.outq:
            stream.trailers = block
            return
        self._send_block(stream.sid, block, True)
        self._close_local(stream)
        self._want_flush()

    def fast_response(
        self, stream: Stream, head_block: bytes, body: list[bytes | memoryview], size: int, trailers: bytes
    ) -> bool:
        """Headers, one DATA frame and trailers at once, when the windows allow (else False)."""
        if (
            size > stream.send_window
            or size > self._send_window
            or size > self._peer_max_frame
            or stream.outq
            or self._hpack_prefix
            or stream.local_closed
        ):
            return False
        sid = stream.sid
        h = len(head_block)
        t = len(trailers)
        out = self._out
        out.append(_PACK(h >> 16, h & 0xFFFF, _HEADERS, _END_HEADERS, sid))
        out.append(head_block)
        out.append(_PACK(size >> 16, size & 0xFFFF, _DATA, 0, sid))
        out += body
        out.append(_PACK(t >> 16, t & 0xFFFF, _HEADERS, _END_HEADERS | _END_STREAM, sid))
        out.append(trailers)
        stream.send_window -= size
        self._send_window -= size
        self._close_local(stream)
        self._want_flush()
        return True

    def reset_stream(self, stream: Stream, code: ErrorCode) -> None:
        """Abort a stream from our side (RST_STREAM); the layer above is told via ``on_reset``."""
        if self.streams.pop(stream.sid, None) is None:
            return
        self._blocked.pop(stream.sid, None)
        stream.local_closed = stream.remote_closed = True
        self._send_rst(stream.sid, code)
        self._safe_hook(self.on_reset, stream)
        self._safe_hook(self.on_closed, stream)
        self._maybe_finish_goaway()

    def _send_rst(self, sid: int, code: int) -> None:
        self._recently_reset.append(sid)
        self._out.append(fr.rst_stream(sid, code))
        self._want_flush()

    def _close_local(self, stream: Stream) -> None:
        stream.local_closed = True
        if not stream.remote_closed:
            # The response is complete before the request: tell the client to stop (§8.1).
            stream.remote_closed = True
            self._send_rst(stream.sid, ErrorCode.NO_ERROR)
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        if self.streams.pop(stream.sid, None) is not None:
            self._blocked.pop(stream.sid, None)
            self.on_closed(stream)
            if self._draining and not self.streams:
                self._maybe_finish_goaway()

    def _stream_error(self, sid: int, code: ErrorCode, message: str) -> None:
        log.debug("h2: stream %d error %s: %s", sid, code.name, message)
        stream = self.streams.get(sid)
        if stream is not None:
            self.reset_stream(stream, code)
        else:
            self._send_rst(sid, code)

    @staticmethod
    def _safe_hook(hook: Any, stream: Stream) -> None:
        try:
            hook(stream)
        except Exception:
            log.exception("h2: error in a stream hook")

    # -- lifecycle ---------------------------------------------------------------------------------

    def _fatal(self, code: ErrorCode, message: str) -> None:
        """A connection error: GOAWAY with the last stream we processed, then close."""
        if self._closing:
            return
        if code != ErrorCode.NO_ERROR:
            log.info("h2: closing connection: %s (%s)", message, code.name)
        self._out.append(fr.goaway(self._last_sid, code, message.encode()[:256]))
        self._draining = True
        self._close_after_flush()

    def shutdown(self) -> None:
        """Graceful: GOAWAY now, refuse new streams, close once the open streams are done."""
        if self._closing or self.transport is None:
            return
        self._draining = True
        if not self._goaway_emitted:
            self._goaway_emitted = True
            self._out.append(fr.goaway(self._last_sid, ErrorCode.NO_ERROR, b"server shutting down"))
            self._want_flush()
        self._maybe_finish_goaway()

    def abort(self) -> None:
        """Close now, whatever is in flight."""
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()

    def _maybe_finish_goaway(self) -> None:
        if self._draining and not self.streams and not self._closing:
            self._close_after_flush()

    def _close_after_flush(self) -> None:
        """Send what is pending (the GOAWAY), then close without losing it.

        Closing a socket with unread input makes the kernel answer RST, and an RST can reach
        the client before it has read our GOAWAY. So: half-close our side, read and discard
        until the client closes too, and close anyway after LINGER_S.
        """
        self._closing = True
        self._flush()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            can_half_close = transport.can_write_eof()
        except (AttributeError, NotImplementedError):  # pragma: no cover - transport-dependent
            can_half_close = False
        if can_half_close:
            transport.write_eof()
            transport.resume_reading()  # drain what the client still sends
            self._timer = self.loop.call_later(LINGER_S, transport.close)
        else:  # TLS: no half-close
            transport.close()

    def _tick(self) -> None:
        """The connection's one timer: handshake, stalled frames, idle connections."""
        self._timer = None
        if self._closing or self.transport is None:
            return
        lim = self.limits
        self._ticks += 1
        elapsed = self._ticks * self._tick_s
        if not self._settings_seen and elapsed >= lim.handshake_timeout:
            self._fatal(ErrorCode.PROTOCOL_ERROR, "no client preface and SETTINGS in time")
            return
        partial = bool(self._buf) or bool(self._cont_sid)
        if partial and self._frames == self._tick_frames:
            self._stalled_ticks += 1
            if self._stalled_ticks * self._tick_s >= lim.frame_timeout:
                self._fatal(ErrorCode.ENHANCE_YOUR_CALM, "a frame or header block stalled")
                return
        else:
            self._stalled_ticks = 0
        self._tick_frames = self._frames
        if lim.idle_timeout is not None:
            if not self.streams and self._streams_opened == self._tick_streams:
                self._idle_ticks += 1
                if self._idle_ticks * self._tick_s >= lim.idle_timeout:
                    self._draining = self._goaway_emitted = True
                    self._out.append(fr.goaway(self._last_sid, ErrorCode.NO_ERROR, b"idle"))
                    self._maybe_finish_goaway()
                    return
            else:
                self._idle_ticks = 0
            self._tick_streams = self._streams_opened
        self._timer = self.loop.call_later(self._tick_s, self._tick)


def _hpack_int(value: int, prefix_bits: int) -> bytearray:
    """HPACK integer representation (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytearray([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return out
