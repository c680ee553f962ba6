"""The load generator's lean wire: pre-encoded requests over minimal HTTP/1.1 and HTTP/2.

Where it sits: inside each worker process (:mod:`sonic.bench.worker`), the default request
engine for gRPC and HTTP ("--engine wire"). Why: in a closed loop, every microsecond the
client spends per request is latency the server never sees, so it lowers the measured
throughput; the SONIC client's transports (grpcio, and its HTTP/1.1 client with full
encode/decode per call) cost 35-90 µs of client time per request here, which put sonic bench
25-35 % below perf_analyzer (C++) on a tiny model. perf_analyzer prepares its inputs once and
does not decode outputs; this engine does the same:

- each request is encoded once, by the same codecs the SONIC client uses
  (:mod:`sonic.protocol.http_codec`, :mod:`sonic.protocol.grpc_codec`), compressed once if
  asked, and written as it is for every call;
- answers are parsed only as far as needed to know success or failure: the HTTP status (and
  the error body), or the gRPC status in the trailers; output tensors are not decoded (their
  codec cost is reported separately, from the calibration in the worker).

Connections follow perf_analyzer's, because how many requests share a connection changes
how the server reads and batches them:

- HTTP/1.1: one keep-alive connection per request in flight (perf_analyzer: one libcurl
  handle per sender), parsed by httptools;
- gRPC: HTTP/2 connections each carrying the calls of up to 6 closed-loop senders
  (:func:`grpc_connection_of`). perf_analyzer gives every sender its own client object, but
  NVIDIA's C++ client library caches gRPC channels by URL and hands one channel to 6 client
  objects before it opens the next (``GetStub`` in ``src/c++/library/grpc_client.cc``,
  ``TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT``, default 6); perf_analyzer's own two
  control clients take the first two places. So at concurrency 1-4 it sends everything
  over one connection, at 16 over three (4 + 6 + 6 senders). ``senders_per_connection``
  1 gives every sender its own connection, 0 one connection per process for all.

Two ways to drive them, as perf_analyzer has two API modes: asyncio senders on the worker's
event loop (:class:`WireSender`, sonic bench's default), or blocking threads, one per request
in flight (:class:`SyncWireSender`, ``--sync``: perf_analyzer's default), over the same
connections and the same frame handling. The mode changes when requests reach the server: an
event loop that reads a group of answers re-sends the group at once, while threads re-send one
by one as each wakes up, and a dynamic batcher forms larger batches from the former.

HTTP/2 here: preface and SETTINGS, HPACK (the ``hpack`` package; request headers are encoded
once, as never-indexed literals, so that the same bytes serve every call), flow control both
ways, PING, GOAWAY, RST_STREAM. Every call carries the flow-control frames gRPC's core
library sends with it (what perf_analyzer's C++ client and grpcio send: HEADERS, a 5-byte
stream WINDOW_UPDATE, DATA, and a connection WINDOW_UPDATE for the answers read since the
previous call): a server parses them too, and leaving them out made its cost per request look
lower (3-8 % more throughput for the MLP at concurrency 16 on a 2-core host).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import hpack
import httptools

from sonic.protocol.errors import Code, SonicError

__all__ = [
    "GRPC_SENDERS_PER_CONNECTION",
    "GrpcWire",
    "HttpWire",
    "SyncGrpcWire",
    "SyncHttpWire",
    "SyncWireSender",
    "WireError",
    "WireSender",
    "grpc_connection_of",
    "grpc_request",
    "http_request",
]

#: Senders per gRPC connection: NVIDIA's C++ client library shares one channel among this many
#: client objects (``TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT``, default 6).
GRPC_SENDERS_PER_CONNECTION = 6
#: perf_analyzer's client objects made before its senders' (one for the model's metadata and
#: the server's statistics, one for the input data): they hold the first places on the first
#: channel, so that it carries only 4 senders.
_PA_CONTROL_CLIENTS = 2


def grpc_connection_of(sender: int, senders_per_connection: int) -> int:
    """The gRPC connection (0, 1, ...) of closed-loop sender ``sender`` (0, 1, ...), laid out
    as perf_analyzer's channels are; ``senders_per_connection`` 0: all on connection 0."""
    if senders_per_connection <= 0:
        return 0
    return (sender + _PA_CONTROL_CLIENTS) // senders_per_connection


class WireError(SonicError):
    """A request failed on the wire or the server answered an error."""


# -- HTTP/1.1 ----------------------------------------------------------------------------------------


def http_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The complete bytes of one HTTP/1.1 POST (head and body)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_parts(payload: bytes) -> tuple[bytes, bytes]:
    """A request's head and body, written one after the other as two segments: what NVIDIA's
    C++ client (libcurl with a read callback, as perf_analyzer uses it) puts on the wire, so
    that the server parses each request from two reads, as under perf_analyzer."""
    cut = payload.find(b"\r\n\r\n") + 4
    return payload[:cut], payload[cut:]


_HTTP_CODES = {
    400: Code.INVALID_ARG,
    404: Code.NOT_FOUND,
    409: Code.ALREADY_EXISTS,
    501: Code.UNSUPPORTED,
    503: Code.UNAVAILABLE,
}


class _H1(asyncio.Protocol):
    __slots__ = ("body", "closed", "keep", "parser", "status", "transport", "waiter")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.body: list[bytes] | None = None
        self.closed = False
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"bad HTTP response: {exc}", Code.INTERNAL))
            self.transport.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep = self.parser.should_keep_alive()
        self.body = [] if self.status != 200 else None

    def on_body(self, body: bytes) -> None:
        if self.body is not None:
            self.body.append(body)

    def on_message_complete(self) -> None:
        w, self.waiter = self.waiter, None
        if not self.keep:
            self.closed = True
            self.transport.close()
        if w is None or w.done():
            return
        if self.status == 200:
            w.set_result(None)
        else:
            text = b"".join(self.body or []).decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                import json

                text = str(json.loads(text).get("error", text))
            w.set_exception(
                WireError(text or f"HTTP status {self.status}", _HTTP_CODES.get(self.status, Code.INTERNAL))
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(WireError(f"connection lost: {exc or 'closed by the server'}", Code.UNAVAILABLE))

    def _fail(self, err: WireError) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(err)


class HttpWire:
    """HTTP/1.1 keep-alive connections to one server, one request in flight on each."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._free: list[_H1] = []
        self._busy: dict[_H1, float] = {}  # connection -> when its request went out
        self._watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _H1:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(_H1, self.host, self.port)
        except OSError as exc:
            raise WireError(f"cannot connect to {self.host}:{self.port}: {exc}", Code.UNAVAILABLE) from None
        if self.timeout and self._watchdog is None:
            self._watchdog = loop.create_task(self._watch(self.timeout))
        return proto

    async def call(self, payload: bytes) -> None:
        conn = self._free.pop() if self._free else None
        if conn is None or conn.closed:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        conn.waiter = waiter
        busy = self._busy
        busy[conn] = loop.time()
        head, body = http_parts(payload)
        conn.transport.write(head)
        if body:
            conn.transport.write(body)
        try:
            await waiter
        except BaseException:
            conn.transport.close()
            raise
        finally:
            del busy[conn]
        if not conn.closed:
            self._free.append(conn)

    async def _watch(self, timeout: float) -> None:
        """Fail requests older than the timeout (one timer for all, not one per request)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            for conn, t0 in list(self._busy.items()):
                if now - t0 > timeout:
                    conn._fail(WireError(f"no answer within {timeout} s", Code.UNAVAILABLE))
                    conn.transport.close()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for c in [*self._free, *self._busy]:
            c.transport.close()
        self._free = []


# -- HTTP/2 + gRPC -------------------------------------------------------------------------------------

_DATA, _HEADERS, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = 0, 1, 3, 4, 5, 6, 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_CREDIT = struct.pack(">I", 5)
_MAX_WINDOW = 2**31 - 1
_S_INITIAL_WINDOW, _S_MAX_FRAME, _S_MAX_STREAMS, _S_ENABLE_PUSH = 0x4, 0x5, 0x3, 0x2
_GRPC_STATUS = {
    "3": Code.INVALID_ARG,
    "5": Code.NOT_FOUND,
    "6": Code.ALREADY_EXISTS,
    "11": Code.INVALID_ARG,
    "9": Code.INVALID_ARG,
    "12": Code.UNSUPPORTED,
    "14": Code.UNAVAILABLE,
    "8": Code.UNAVAILABLE,
    "4": Code.UNAVAILABLE,
    "1": Code.UNAVAILABLE,
}


def _frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream) + payload


def grpc_request(
    authority: str, method: str, message: bytes, compression: str | None = None, timeout: float | None = None
) -> tuple[bytes, bytes]:
    """(HPACK header block, length-prefixed gRPC message) of one unary call, encoded once."""
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "sonic-bench"),
    ]
    flag = 0
    if compression:
        import zlib

        wbits = 31 if compression == "gzip" else 15
        c = zlib.compressobj(1, zlib.DEFLATED, wbits)
        message = c.compress(message) + c.flush()
        flag = 1
        headers += [("grpc-encoding", compression), ("grpc-accept-encoding", compression)]
    if timeout:
        headers.append(("grpc-timeout", f"{max(1, int(timeout * 1000))}m"))
    block = hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers])
    return bytes(block), struct.pack(">BI", flag, len(message)) + message


class _Waiter(Protocol):
    """What a call's completion is told: an asyncio future, or :class:`_SyncCall`."""

    def done(self) -> bool: ...
    def set_result(self, result: None, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class _Stream:
    __slots__ = ("future", "grpc_message", "grpc_status", "http_status", "pending", "t0", "window")

    def __init__(self, future: _Waiter, window: int, t0: float) -> None:
        self.future = future
        self.t0 = t0
        self.window = window
        self.pending = b""  # request bytes waiting for flow-control window
        self.http_status = ""
        self.grpc_status: str | None = None
        self.grpc_message = ""


class _H2(asyncio.Protocol):
    """One HTTP/2 client connection."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.peer_window = 65535  # initial stream window of the peer
        self.peer_max_frame = 16384
        self.peer_max_streams = 1 << 30
        self.conn_window = 65535  # what we may still send on the connection
        self.consumed = 0  # DATA bytes received since our last WINDOW_UPDATE
        self.closed = False
        self.error = ""
        self.cont_stream = 0  # a header block continues on this stream
        self.cont_frags: list[bytes] = []
        self.cont_end = False  # END_STREAM of the HEADERS frame whose block continues
        self.slot_waiters: list[asyncio.Future[None]] = []
        # decoded header blocks that left the HPACK dynamic table as it was (a server sends
        # the same bytes for every answer once its table is warm)
        self.hcache: dict[bytes, list[tuple[str, str]]] = {}
        self.blocked: list[int] = []  # streams with request bytes waiting for window

    # -- the connection --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        # a stream window as large as can be, less room for the 5-byte credit of every call
        window = _MAX_WINDOW - (1 << 16)
        settings = struct.pack(">HI", _S_ENABLE_PUSH, 0) + struct.pack(">HI", _S_INITIAL_WINDOW, window)
        transport.write(  # type: ignore[attr-defined]
            _PREFACE
            + _frame(_SETTINGS, 0, 0, settings)
            + _frame(_WINDOW, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        why = self.error or f"connection lost: {exc or 'closed by the server'}"
        for s in self.streams.values():
            if not s.future.done():
                s.future.set_exception(WireError(why, Code.UNAVAILABLE))
        self.streams.clear()
        self._released()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 9:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if n - pos < 9 + length:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            pos += 9 + length
            try:
                self._frame(ftype, flags, stream, payload)
            except (hpack.HPACKError, struct.error, ValueError) as exc:
                self._abort(f"protocol error from the server: {exc}")
                return
        del buf[:pos]

    def _abort(self, why: str) -> None:
        self.error = why
        self.closed = True
        self.transport.close()

    # -- frames ----------------------------------------------------------------------------------------

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self.cont_stream and ftype != _CONT:
            raise ValueError("a header block was interrupted")
        if ftype == _DATA:
            self.consumed += len(payload)
            if self.consumed >= 1 << 30:
                self.transport.write(_frame(_WINDOW, 0, 0, struct.pack(">I", self.consumed)))
                self.consumed = 0
            if flags & _END_STREAM:
                self._end(sid)
        elif ftype == _HEADERS:
            if flags & _PADDED:
                pad = payload[0]
                payload = payload[1 : len(payload) - pad]
            if flags & _PRIORITY:
                payload = payload[5:]
            self._headers(sid, flags, payload, bool(flags & _END_STREAM))
        elif ftype == _CONT:
            if sid != self.cont_stream:
                raise ValueError("CONTINUATION on another stream")
            self._headers(sid, flags, payload, self.cont_end)
        elif ftype == _SETTINGS:
            if not flags & _ACK:
                self._settings(payload)
                self.transport.write(_frame(_SETTINGS, _ACK, 0))
        elif ftype == _WINDOW:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.conn_window += inc
            elif sid in self.streams:
                self.streams[sid].window += inc
            self._flush_blocked()
        elif ftype == _PING:
            if not flags & _ACK:
                self.transport.write(_frame(_PING, _ACK, 0, payload))
        elif ftype == _RST:
            code = struct.unpack(">I", payload)[0]
            s = self.streams.pop(sid, None)
            if s is not None and not s.future.done():
                s.future.set_exception(
                    WireError(f"stream reset by the server (HTTP/2 error {code})", Code.UNAVAILABLE)
                )
            self._released()
        elif ftype == _GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            last &= 0x7FFFFFFF
            self.closed = True  # no new streams here
            for s_id in [s for s in self.streams if s > last]:
                s = self.streams.pop(s_id)
                if not s.future.done():
                    s.future.set_exception(
                        WireError(f"the server is going away (HTTP/2 error {code})", Code.UNAVAILABLE)
                    )
        elif ftype == _PUSH:
            raise ValueError("PUSH_PROMISE although push is disabled")

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack(">HI", payload[i : i + 6])
            if key == _S_INITIAL_WINDOW:
                delta = value - self.peer_window
                self.peer_window = value
                for s in self.streams.values():
                    s.window += delta
            elif key == _S_MAX_FRAME:
                self.peer_max_frame = value
            elif key == _S_MAX_STREAMS:
                self.peer_max_streams = value
        self._flush_blocked()

    def _headers(self, sid: int, flags: int, fragment: bytes, end_stream: bool) -> None:
        self.cont_frags.append(fragment)
        if not flags & _END_HEADERS:
            self.cont_stream, self.cont_end = sid, end_stream
            return
        self.cont_stream = 0
        block = b"".join(self.cont_frags)
        self.cont_frags = []
        headers = self.hcache.get(block)
        if headers is None:  # decoded, so that the dynamic table stays in step
            table = self.decoder.header_table
            entries = table.dynamic_entries
            before = (len(entries), id(entries[0]) if entries else 0, table.maxsize)
            headers = cast(list[tuple[str, str]], self.decoder.decode(block, raw=False))
            if before == (len(entries), id(entries[0]) if entries else 0, table.maxsize):
                if len(self.hcache) > 256:
                    self.hcache.clear()
                self.hcache[block] = headers
            else:  # indices moved: what was cached may now mean something else
                self.hcache.clear()
        s = self.streams.get(sid)
        if s is None:
            return
        for name, value in headers:
            if name == ":status":
                s.http_status = value
            elif name == "grpc-status":
                s.grpc_status = value
            elif name == "grpc-message":
                s.grpc_message = urllib.parse.unquote(value)
        if end_stream:
            self._end(sid)

    def _end(self, sid: int) -> None:
        s = self.streams.pop(sid, None)
        if s is None:
            return
        if not s.future.done():
            if s.http_status not in ("200", "") and s.grpc_status is None:
                s.future.set_exception(
                    WireError(f"HTTP status {s.http_status} from the gRPC server", Code.UNAVAILABLE)
                )
            elif s.grpc_status in (None, "0"):
                if s.grpc_status is None:
                    s.future.set_exception(WireError("the gRPC answer has no grpc-status", Code.INTERNAL))
                else:
                    s.future.set_result(None)
            else:
                code = _GRPC_STATUS.get(s.grpc_status, Code.INTERNAL)
                s.future.set_exception(WireError(s.grpc_message or f"gRPC status {s.grpc_status}", code))
        self._released()

    def _released(self) -> None:
        while self.slot_waiters and (self.closed or len(self.streams) < self.peer_max_streams):
            w = self.slot_waiters.pop(0)
            if not w.done():
                w.set_result(None)

    # -- sending ---------------------------------------------------------------------------------------

    def _send_data(self, sid: int, s: _Stream) -> None:
        data = s.pending
        out = []
        while data:
            room = min(self.conn_window, s.window, self.peer_max_frame)
            if room <= 0:
                break
            chunk, data = data[:room], data[room:]
            self.conn_window -= len(chunk)
            s.window -= len(chunk)
            out.append(_frame(_DATA, 0 if data else _END_STREAM, sid, chunk))
        s.pending = data
        if out:
            self.transport.write(b"".join(out))
        if data and sid not in self.blocked:
            self.blocked.append(sid)

    def _flush_blocked(self) -> None:
        blocked, self.blocked = self.blocked, []
        for sid in blocked:
            s = self.streams.get(sid)
            if s is not None and s.pending:
                self._send_data(sid, s)

    async def wait_slot(self) -> None:
        """Wait until the server's limit of concurrent streams leaves room for one more."""
        while len(self.streams) >= self.peer_max_streams and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self.slot_waiters.append(waiter)
            await waiter

    def start(self, block: bytes, message: bytes) -> asyncio.Future[None]:
        """Start a call; the future resolves when its answer is complete."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.begin(block, message, fut, loop.time())
        return fut

    def begin(self, block: bytes, message: bytes, fut: _Waiter, t0: float) -> None:
        """Write a call's frames; ``fut`` is told when its answer is complete."""
        if self.closed:
            raise WireError(self.error or "the connection is closed", Code.UNAVAILABLE)
        sid = self.next_id
        self.next_id += 2
        if self.next_id >= _MAX_WINDOW:
            self.closed = True  # stream ids exhausted: the next call opens a new connection
        s = _Stream(fut, self.peer_window, t0)
        self.streams[sid] = s
        if len(block) <= self.peer_max_frame:
            head = _frame(_HEADERS, _END_HEADERS, sid, block)
        else:
            head = b"".join(self._split(sid, block))
        # flow-control credit as gRPC's core library gives it with every call (so as perf_analyzer's
        # and grpcio's clients do): the new stream's window raised by the next message's 5-byte
        # prefix, and the connection's window given back for the answers read since the last call
        head += _frame(_WINDOW, 0, sid, _CREDIT)
        tail = b""
        if self.consumed:
            tail = _frame(_WINDOW, 0, 0, struct.pack(">I", self.consumed))
            self.consumed = 0
        if len(message) <= min(self.conn_window, s.window, self.peer_max_frame):
            self.conn_window -= len(message)
            s.window -= len(message)
            self.transport.write(head + _frame(_DATA, _END_STREAM, sid, message) + tail)
        else:
            self.transport.write(head + tail)
            s.pending = message
            self._send_data(sid, s)

    def expire(self, now: float, timeout: float) -> None:
        for sid, s in list(self.streams.items()):
            # (popped, not deleted: a failed write fails, and removes, all streams)
            if now - s.t0 > timeout and self.streams.pop(sid, None) is not None:
                if not s.future.done():
                    s.future.set_exception(WireError(f"no answer within {timeout} s", Code.UNAVAILABLE))
                self.transport.write(_frame(_RST, 0, sid, struct.pack(">I", 8)))  # CANCEL
        self._released()

    def _split(self, sid: int, block: bytes) -> list[bytes]:
        size = self.peer_max_frame
        parts = [block[i : i + size] for i in range(0, len(block), size)]
        out = [_frame(_HEADERS, 0, sid, parts[0])]
        out += [
            _frame(_CONT, _END_HEADERS if i == len(parts) - 1 else 0, sid, p)
            for i, p in enumerate(parts[1:], 1)
        ]
        return out


class GrpcWire:
    """gRPC unary calls over one HTTP/2 connection (reopened when it fails)."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: _H2 | None = None
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None

    async def _connection(self) -> _H2:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                loop = asyncio.get_running_loop()
                try:
                    _, proto = await loop.create_connection(_H2, self.host, self.port)
                except OSError as exc:
                    raise WireError(
                        f"cannot connect to {self.host}:{self.port}: {exc}", Code.UNAVAILABLE
                    ) from None
                self._conn = proto
                if self.timeout and self._watchdog is None:
                    self._watchdog = loop.create_task(self._watch(self.timeout))
            return self._conn

    async def call(self, block: bytes, message: bytes) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        if len(conn.streams) >= conn.peer_max_streams:
            await conn.wait_slot()
        await conn.start(block, message)

    async def _watch(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            if self._conn is not None and not self._conn.closed:
                self._conn.expire(loop.time(), timeout)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


# -- what a worker uses ----------------------------------------------------------------------------------


class _SenderBase:
    """Where and what a sender sends: the server's address, the protocol, the pre-encoded
    requests, and how many closed-loop senders share one gRPC connection."""

    def __init__(
        self,
        protocol: str,
        url: str,
        payloads: Sequence[Any],
        timeout: float | None,
        senders_per_connection: int = GRPC_SENDERS_PER_CONNECTION,
    ) -> None:
        host, _, port = url.rpartition(":")
        self.host, self.port = host.strip("[]") or "localhost", int(port)
        self.protocol = protocol
        self.timeout = timeout
        self.payloads = list(payloads)
        self.senders_per_connection = senders_per_connection


class WireSender(_SenderBase):
    """Sends entry ``k``'s pre-encoded request and waits for the answer.

    gRPC: :meth:`sender` gives closed-loop sender ``i`` its connection
    (:func:`grpc_connection_of`); :meth:`send` (the open loop, and the worker's first request)
    uses sender 0's, so that no connection stays idle in a closed loop of one process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = HttpWire(self.host, self.port, self.timeout) if self.protocol != "grpc" else None
        self.grpc: dict[int, GrpcWire] = {}

    def _grpc(self, index: int) -> GrpcWire:
        wire = self.grpc.get(index)
        if wire is None:
            wire = self.grpc[index] = GrpcWire(self.host, self.port, self.timeout)
        return wire

    def sender(self, i: int) -> Callable[[int], Awaitable[None]]:
        """The send function of closed-loop sender ``i`` (numbered across processes)."""
        if self.http is not None:
            return self.send
        wire = self._grpc(grpc_connection_of(i, self.senders_per_connection))
        payloads = self.payloads

        async def send(k: int) -> None:
            block, message = payloads[k]
            await wire.call(block, message)

        return send

    async def send(self, k: int) -> None:
        if self.http is not None:
            await self.http.call(self.payloads[k])
        else:
            block, message = self.payloads[k]
            await self._grpc(grpc_connection_of(0, self.senders_per_connection)).call(block, message)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        for w in self.grpc.values():
            await w.close()


# -- the blocking twin (--sync) ----------------------------------------------------------------------
#
# perf_analyzer's default (synchronous) mode: one thread per request in flight, each blocked in
# its client object's Infer() until the answer is in, then sending the next. The threads below
# do the same over the same connections as above: HTTP/1.1, one blocking keep-alive socket per
# thread; gRPC, one HTTP/2 connection per 6 threads (grpc_connection_of), on which the waiting
# threads take turns reading, leader and followers: the thread that reads completes whichever
# calls its bytes answer, and on leaving hands the socket to a thread still waiting. (gRPC's
# C++ core does the same: a thread blocked in a synchronous call polls the channel's socket for
# every call on it.) The frame handling is the asyncio protocols' own (_H1, _H2), driven by
# plain socket reads instead of an event loop.


class _SyncCall:
    """A blocking call's completion: the :class:`_Waiter` of :class:`_H1` and :class:`_H2`."""

    __slots__ = ("_done", "error", "event")

    def __init__(self) -> None:
        self._done = False
        self.error: BaseException | None = None
        self.event = threading.Event()

    def done(self) -> bool:
        return self._done

    def set_result(self, result: None, /) -> None:
        self._done = True
        self.event.set()

    def set_exception(self, exception: BaseException, /) -> None:
        self.error = exception
        self._done = True
        self.event.set()


class _SockTransport:
    """The ``transport.write`` / ``close`` the protocols call, on a blocking socket."""

    __slots__ = ("proto", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto: _H1 | _H2 | None = None

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            # a frame may be cut short: nothing more can go out on this connection, so it is
            # lost for every call on it (and the thread reading it wakes up to see that)
            self.close()
            if self.proto is not None:
                self.proto.connection_lost(_send_error(exc, self.sock))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


_TIMEVAL = struct.Struct("ll")  # struct timeval, for SO_RCVTIMEO / SO_SNDTIMEO


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return _TIMEVAL.pack(whole, int((seconds - whole) * 1e6))


def _send_error(exc: OSError, sock: socket.socket) -> OSError:
    if isinstance(exc, BlockingIOError):  # SO_SNDTIMEO ran out: the server stopped reading
        with contextlib.suppress(OSError, struct.error):
            sec, usec = _TIMEVAL.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.size))
            return TimeoutError(f"could not send within {sec + usec / 1e6:g} s")
    return exc


def _connect(host: str, port: int, timeout: float | None) -> socket.socket:
    """A blocking socket whose reads wake up at least every min(1, timeout / 4) s (so that a
    call past its timeout fails) and whose writes give up after ``timeout`` s without progress.
    Kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO) rather than Python's socket timeout, which
    would poll before every recv and send and apply the short read timeout to writes too."""
    try:
        sock = socket.create_connection((host, port), timeout=10.0)
    except OSError as exc:
        raise WireError(f"cannot connect to {host}:{port}: {exc}", Code.UNAVAILABLE) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    if timeout:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(_check_every(timeout)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
    return sock


def _check_every(timeout: float) -> float:
    """How often calls are checked against their timeout (as the asyncio watchdogs do)."""
    return min(1.0, timeout / 4)


class SyncHttpWire:
    """One blocking HTTP/1.1 keep-alive connection (a thread's own), one request at a time."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._proto: _H1 | None = None

    def call(self, payload: bytes) -> None:
        proto, sock = self._proto, self._sock
        if proto is None or sock is None or proto.closed:
            self.close()
            sock = self._sock = _connect(self.host, self.port, self.timeout)
            proto = self._proto = _H1()
            transport = _SockTransport(sock)
            transport.proto = proto
            proto.connection_made(cast(asyncio.BaseTransport, transport))
        call = _SyncCall()
        proto.waiter = cast(asyncio.Future[None], call)
        timeout = self.timeout
        t0 = time.monotonic()
        head, body = http_parts(payload)
        try:
            try:
                sock.sendall(head)
                if body:
                    sock.sendall(body)
            except OSError as exc:
                raise _send_error(exc, sock) from None
            while not call._done:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:  # nothing for a while (SO_RCVTIMEO)
                    data = None
                if data:
                    proto.data_received(data)
                elif data is not None:
                    proto.connection_lost(None)
                # checked on every pass: a server that trickles bytes times out too
                if timeout and not call._done and time.monotonic() - t0 > timeout:
                    proto._fail(WireError(f"no answer within {timeout} s", Code.UNAVAILABLE))
                    proto.closed = True
        except OSError as exc:
            proto.connection_lost(exc)
        if call.error is not None:
            if proto.closed:
                self.close()
            raise call.error

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._proto = None


class _SyncH2:
    """One blocking HTTP/2 connection of :class:`SyncGrpcWire` and who is reading it."""

    __slots__ = ("check_at", "proto", "reading", "sock", "waiting")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto = _H2()
        transport = _SockTransport(sock)
        transport.proto = self.proto
        self.proto.connection_made(cast(asyncio.BaseTransport, transport))
        self.reading = False  # a thread is reading the socket
        self.waiting: list[_SyncCall] = []  # threads with calls here, waiting for the answer
        self.check_at = 0.0  # when its calls are next checked against the timeout


class SyncGrpcWire:
    """gRPC unary calls from many threads over one blocking HTTP/2 connection (reopened
    when it fails); see above for how the threads share its reads.

    A connection that the server closes gracefully (GOAWAY) is read on, by the threads whose
    calls it still answers, while new calls go out on the next one; its socket is closed when
    its last call is done."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # a stream ended: room for a new one
        self._room_waits = 0  # threads waiting for the server's limit of concurrent streams
        self._conn: _SyncH2 | None = None

    def _connection(self) -> _SyncH2:  # under the lock
        conn = self._conn
        if conn is None or conn.proto.closed:
            if conn is not None:
                self._conn = None
                self._retire(conn)
            conn = self._conn = _SyncH2(_connect(self.host, self.port, self.timeout))
        return conn

    def _retire(self, conn: _SyncH2) -> None:  # under the lock; conn is no longer the current one
        if not conn.reading and not conn.proto.streams:
            conn.sock.close()
        # else the last thread to read it closes it

    def call(self, block: bytes, message: bytes) -> None:
        call = _SyncCall()
        lock = self._lock
        with lock:
            conn = self._connection()
            proto = conn.proto
            while len(proto.streams) >= proto.peer_max_streams:  # as GrpcWire's wait_slot
                self._room_waits += 1
                try:
                    self._room.wait(1.0)
                finally:
                    self._room_waits -= 1
                conn = self._connection()
                proto = conn.proto
            proto.begin(block, message, call, time.monotonic())
        while True:
            with lock:
                if call._done:
                    break
                lead = not conn.reading
                if lead:
                    conn.reading = True
                else:
                    conn.waiting.append(call)
            if not lead:  # woken when answered, or to take over the reading
                call.event.wait()
                call.event.clear()
                continue
            try:
                self._read_until(call, conn)
            finally:
                with lock:
                    conn.reading = False
                    waiting = conn.waiting
                    while waiting:
                        w = waiting.pop()
                        if not w._done:
                            w.event.set()
                            break
                    else:
                        if conn is not self._conn and not conn.proto.streams:
                            conn.sock.close()
        if call.error is not None:
            raise call.error

    def _read_until(self, call: _SyncCall, conn: _SyncH2) -> None:
        lock, sock, proto, timeout = self._lock, conn.sock, conn.proto, self.timeout
        data: bytes | None
        while not call._done:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:  # nothing for a while (SO_RCVTIMEO)
                data = None
            except OSError as exc:
                with lock:
                    proto.connection_lost(exc)
                    if self._room_waits:
                        self._room.notify_all()
                return
            with lock:
                if data:
                    proto.data_received(data)
                elif data is not None:
                    proto.connection_lost(None)
                # on every pass (throttled), not only when the socket is quiet: other calls'
                # answers must not keep one that is never answered waiting forever
                if timeout:
                    now = time.monotonic()
                    if now >= conn.check_at:
                        conn.check_at = now + _check_every(timeout)
                        proto.expire(now, timeout)
                if self._room_waits:
                    self._room.notify_all()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.proto.transport.close()  # wakes a thread reading it
                self._conn.sock.close()
            self._conn = None


class SyncWireSender(_SenderBase):
    """The blocking twin of :class:`WireSender`: :meth:`sender` gives thread ``i`` its send
    function, over its own HTTP/1.1 connection or its share of a gRPC connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: dict[int, SyncHttpWire] = {}
        self._grpc: dict[int, SyncGrpcWire] = {}

    def sender(self, i: int) -> Callable[[int], None]:
        """The blocking send function of closed-loop sender ``i`` (numbered across processes)."""
        payloads = self.payloads
        if self.protocol != "grpc":
            h1 = self._http.setdefault(i, SyncHttpWire(self.host, self.port, self.timeout))

            def send_http(k: int) -> None:
                h1.call(payloads[k])

            return send_http
        index = grpc_connection_of(i, self.senders_per_connection)
        h2 = self._grpc.setdefault(index, SyncGrpcWire(self.host, self.port, self.timeout))

        def send_grpc(k: int) -> None:
            block, message = payloads[k]
            h2.call(block, message)

        return send_grpc

    def close(self) -> None:
        for h1 in self._http.values():
            h1.close()
        for h2 in self._grpc.values():
            h2.close()
        self._http, self._grpc = {}, {}
