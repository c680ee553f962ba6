"""The HTTP/REST edge: KServe v2 plus Triton's extensions, on asyncio and ``httptools``.

Where it sits: between the network and :class:`~sonic.server.dataplane.DataPlane`, beside the
gRPC edge. Each connection is one :class:`asyncio.Protocol` feeding an llhttp parser
(``httptools.HttpRequestParser``); a complete request is routed by splitting its path (no
regular expressions, no web framework), the body is decoded (inference bodies through
:mod:`sonic.protocol.http_codec`), one data-plane method is called, and the answer goes out
in one write. A :class:`SonicError` becomes an HTTP status through the one table
:data:`STATUS` (Triton's ``HttpCodeFromError``) with Triton's ``{"error": "..."}`` body.

HTTP/1.1 behaviour:

- keep-alive and pipelining: every request takes a slot in a per-connection queue when it
  arrives; inference runs as a task per request, and responses leave strictly in request
  order as the head of the queue completes. Reading pauses while the queue is deep or the
  transport's write buffer is full.
- bodies by ``Content-Length`` or chunked transfer encoding; ``Expect: 100-continue`` gets
  its interim response once every earlier response has gone out.
- limits: header bytes (431) and body bytes (413, also after decompression), both with a
  JSON error, after which the connection closes. Malformed HTTP gets 400 and a close; the
  error never leaves its connection.
- compression: request bodies with ``Content-Encoding: gzip|deflate`` are inflated (any other
  encoding: Triton's 501 with ``Accept-Encoding: gzip, deflate``); inference responses are
  compressed per ``Accept-Encoding`` (q-values honoured as Triton does), other responses
  are not (as in Triton).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

from sonic.protocol.errors import Code, InvalidArgument, SonicError, Unsupported
from sonic.protocol.http_codec import binary_default, decode_infer_request, encode_infer_response
from sonic.protocol.json_pb import message_to_json_dict
from sonic.protocol.types import InferResponse
from sonic.scheduler.batcher import Pending
from sonic.server.dataplane import DataPlane, decode_file_params

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "STATUS",
    "HttpEdge",
    "response_encoding",
]

log = logging.getLogger("sonic.server.http")

#: The one place a sonic error code becomes an HTTP status: Triton's ``HttpCodeFromError``
#: (src/http_server.cc), where UNKNOWN, INVALID_ARG, ALREADY_EXISTS and CANCELLED all map to
#: 400 for want of a closer code.
STATUS: dict[Code, int] = {
    Code.INVALID_ARG: 400,
    Code.NOT_FOUND: 404,
    Code.UNAVAILABLE: 503,
    Code.UNSUPPORTED: 501,
    Code.ALREADY_EXISTS: 400,
    Code.INTERNAL: 500,
}

DEFAULT_MAX_BODY_BYTES = 2**31  # 2 GiB
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
#: Pipelined requests a connection may have in flight before it stops reading.
MAX_PIPELINE = 128
#: zlib level for inference responses: tensors compress little, so speed wins.
COMPRESS_LEVEL = 1

_JSON = b"application/json"
_TEXT = b"text/plain"  # what Triton (libevhtp) labels its empty health answers with
_OCTET = b"application/octet-stream"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ACCEPT_ENCODINGS = b"Accept-Encoding: gzip, deflate\r\n"

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status\r\n".encode()


def _head(status: int, length: int, ctype: bytes | None, conn: bytes, extra: bytes = b"") -> bytes:
    """Status line and headers of a response with a body of ``length`` bytes."""
    ct = b"Content-Type: " + ctype + b"\r\n" if ctype is not None else b""
    return b"%s%sContent-Length: %d\r\n%s%s\r\n" % (_status_line(status), ct, length, extra, conn)


def _reply(status: int, body: bytes, conn: bytes, ctype: bytes | None = _JSON,
           extra: bytes = b"") -> bytes:
    return _head(status, len(body), ctype, conn, extra) + body


def _error_body(message: str) -> bytes:
    return _dumps({"error": message}).encode()


def _error(status: int, message: str, conn: bytes, extra: bytes = b"") -> bytes:
    return _reply(status, _error_body(message), conn, _JSON, extra)


# Static responses of the keep-alive case (the common one).
_OK_EMPTY = _head(200, 0, _TEXT, b"")
_BAD_EMPTY = _head(400, 0, _TEXT, b"")


def _exception_reply(exc: BaseException, conn: bytes) -> bytes:
    """A data-plane or codec exception as Triton would answer it."""
    if isinstance(exc, SonicError):
        extra = _ACCEPT_ENCODINGS if isinstance(exc, _UnsupportedEncoding) else b""
        return _error(STATUS.get(exc.code, 400), exc.message, conn, extra)
    log.error("unexpected error in the HTTP edge", exc_info=exc)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}", conn)


# --------------------------------------------------------------------------------------------
# compression
# --------------------------------------------------------------------------------------------

_encoding_cache: dict[bytes, str] = {}


def response_encoding(accept: bytes) -> str:
    """The response coding Triton picks for an ``Accept-Encoding`` value: the highest-q of
    identity / deflate / gzip (the first on ties); ``identity`` when none is acceptable."""
    cached = _encoding_cache.get(accept)
    if cached is not None:
        return cached
    best, weight = "identity", 0.0
    for item in accept.decode("latin-1").split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = 1.0
        params = params.strip()
        if params:
            if not params.startswith("q="):
                continue
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if name in ("identity", "deflate", "gzip") and q > weight:
            best, weight = name, q
    if len(_encoding_cache) < 64:
        _encoding_cache[accept] = best
    return best


def _compress(data: bytes, encoding: str) -> bytes:
    # deflate is the zlib format (what tritonclient sends and zlib.decompress expects).
    wbits = 31 if encoding == "gzip" else 15
    c = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


class _TooLarge(Exception):
    pass


class _UnsupportedEncoding(Unsupported):
    """Triton answers it with ``Accept-Encoding: gzip, deflate`` naming what it takes."""


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """Inflate a request body; ``_TooLarge`` past ``limit`` bytes, InvalidArgument if corrupt."""
    name = encoding.strip().lower()
    if name in (b"", b"identity"):
        return body
    if name == b"gzip":
        wbits_options: tuple[int, ...] = (31,)
    elif name == b"deflate":
        wbits_options = (15, -15)  # zlib format, as tritonclient sends; raw deflate too
    else:
        raise _UnsupportedEncoding("Unsupported compression type")
    for i, wbits in enumerate(wbits_options):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as e:
            if i + 1 < len(wbits_options):
                continue
            raise InvalidArgument(
                f"failed to decompress the {name.decode()} request body: {e}") from None
        if len(out) > limit:
            raise _TooLarge
        if not d.eof:
            raise InvalidArgument(
                f"failed to decompress the {name.decode()} request body: the compressed "
                "stream is truncated")
        return out
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# request-body helpers of the control endpoints
# --------------------------------------------------------------------------------------------


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"failed to parse the {what} request JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(
            f"the {what} request JSON must be an object, got {type(obj).__name__}")
    return obj


def _uint(obj: dict[str, Any], key: str, default: int | None) -> int:
    value = obj.get(key, default)
    if value is None:
        raise InvalidArgument(f"Shared memory register request has no '{key}' field")
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"'{key}' must be a non-negative integer, got {value!r}")
    return value


def _trace_updates(obj: dict[str, Any]) -> dict[str, list[str] | None]:
    updates: dict[str, list[str] | None] = {}
    for key, value in obj.items():
        if value is None:
            updates[key] = None
        elif isinstance(value, str):
            updates[key] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            updates[key] = list(value)
        else:
            raise InvalidArgument(
                f"trace setting '{key}' must be a string, a list of strings or null, "
                f"got {value!r}")
    return updates


_TRACE_ORDER = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file",
                "trace_mode")


def _trace_json(settings: dict[str, list[str]]) -> dict[str, Any]:
    """Triton's HTTP form: ``trace_level`` a list, every other setting one string, in
    Triton's order."""
    keys = [k for k in _TRACE_ORDER if k in settings]
    keys += [k for k in settings if k not in _TRACE_ORDER]
    return {k: (settings[k] if k == "trace_level" or len(settings[k]) != 1 else settings[k][0])
            for k in keys}


def _index_row(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if v != ""}


# --------------------------------------------------------------------------------------------
# the connection
# --------------------------------------------------------------------------------------------

_Responder = Callable[[], Awaitable[bytes | list[Any]]]


class _Slot:
    """One request's place in its connection's response order."""

    __slots__ = ("close", "conn", "data", "pending", "task")

    def __init__(self, conn: bytes) -> None:
        self.data: bytes | list[Any] | None = None
        self.conn = conn
        self.close = conn is _CLOSE
        self.task: asyncio.Task[None] | None = None  # the answer being made (most endpoints)
        self.pending: Pending | None = None  # or the queued inference (the hot path: no Task)

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None


class _Reject(Exception):
    """Raised inside a parser callback to answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Connection(asyncio.Protocol):
    def __init__(self, edge: HttpEdge) -> None:
        self.edge = edge
        self.dp = edge.dataplane
        self.loop = edge.loop
        self.max_body = edge.max_body_bytes
        self.max_header = edge.max_header_bytes
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.slots: deque[_Slot] = deque()
        self.closing = False  # no further requests are read or answered
        self.expect_continue = False
        self.read_paused = False
        self.write_paused = False
        # the request being parsed
        self.url: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.header_size = 0
        self.in_headers = False
        self.raw_header_bytes = 0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.edge.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.connections.discard(self)
        for slot in self.slots:
            slot.cancel()
        self.slots.clear()
        self.transport = None

    def eof_received(self) -> bool | None:
        """The client half-closed: answer what it already sent, then close."""
        self.closing = True
        if self.slots:
            self.slots[-1].close = True
            return True  # keep the transport open for the pending responses
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        was_in_headers = self.in_headers
        try:
            self._feed(data)
        except _Reject as exc:
            self._fail(exc.status, exc.message)
            return
        except Exception as exc:  # a bug here must cost this connection only
            log.error("unexpected error on an HTTP connection", exc_info=exc)
            self._fail(500, f"internal error: {type(exc).__name__}: {exc}")
            return
        if was_in_headers and self.in_headers and not self.closing:
            # The whole chunk was header bytes of one request (httptools buffers a header
            # line before handing it over, so a single endless line is caught here).
            self.raw_header_bytes += len(data)
            if self.raw_header_bytes > self.max_header:
                self._fail(431, f"request headers exceed the limit of {self.max_header} bytes")

    def _feed(self, data: bytes) -> None:
        while True:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                # We never switch protocols: the upgrade request was answered as plain
                # HTTP/1.1 and the parser was resumed, so parse whatever follows it.
                offset = int(exc.args[0]) if exc.args else len(data)
                data = data[offset:]
                if not data or self.closing:
                    return
            except httptools.HttpParserCallbackError as exc:
                if self.closing:  # bytes after a Connection: close request
                    return
                cause = exc.__context__
                if isinstance(cause, _Reject):
                    raise cause from None
                if cause is not None:
                    raise cause from None
                raise _Reject(400, f"malformed HTTP request: {exc}") from None
            except httptools.HttpParserError as exc:
                if self.closing:
                    return
                raise _Reject(400, f"malformed HTTP request: {exc}") from None

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.closing:
            raise _Reject(400, "request after Connection: close")
        self.url = []
        self.headers = {}
        self.body = []
        self.body_size = 0
        self.header_size = 0
        self.raw_header_bytes = 0
        self.in_headers = True

    def on_url(self, url: bytes) -> None:
        self.url.append(url)
        self.header_size += len(url)
        if self.header_size > self.max_header:
            raise _Reject(431, f"request headers exceed the limit of {self.max_header} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_size += len(name) + len(value) + 4
        if self.header_size > self.max_header:
            raise _Reject(431, f"request headers exceed the limit of {self.max_header} bytes")
        key = name.lower()
        prev = self.headers.get(key)
        self.headers[key] = value if prev is None else prev + b", " + value

    def on_headers_complete(self) -> None:
        self.in_headers = False
        length = self.headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise _Reject(400, "malformed HTTP request: invalid Content-Length") from None
            if size > self.max_body:
                raise _Reject(413, self._too_large())
        expect = self.headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue":
            if self.slots:
                self.expect_continue = True  # sent when earlier responses have gone out
            elif self.transport is not None:
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.max_body:
            raise _Reject(413, self._too_large())
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.expect_continue = False
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        url = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive:
            conn = _CLOSE
            self.closing = True  # read nothing after this request
            self._update_reading()
        elif b"connection" in self.headers and self.parser.get_http_version() == "1.0":
            conn = _KEEP_ALIVE
        else:
            conn = b""
        try:
            self._dispatch(self.parser.get_method(), url, body, conn)
        except Exception as exc:
            self._respond(_exception_reply(exc, conn), not keep_alive)

    def _too_large(self) -> str:
        return (f"request body exceeds the maximum allowed size of {self.max_body} bytes "
                "(see the server's max_body_bytes)")

    # -- responses in order -------------------------------------------------------------------

    def _respond(self, data: bytes | list[Any], close: bool) -> None:
        """Answer the request just parsed, synchronously."""
        if not self.slots:
            self._write(data, close)
            return
        slot = _Slot(_CLOSE if close else b"")
        slot.data = data
        self.slots.append(slot)

    def _spawn(self, make: _Responder, conn: bytes) -> None:
        """Answer the request just parsed when ``make()`` completes."""
        slot = _Slot(conn)
        self.slots.append(slot)
        slot.task = self.loop.create_task(self._complete(slot, make))
        if len(self.slots) >= MAX_PIPELINE:
            self._update_reading()

    async def _complete(self, slot: _Slot, make: _Responder) -> None:
        try:
            slot.data = await make()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            slot.data = _exception_reply(exc, slot.conn)
        slot.task = None
        self._flush()

    def _flush(self) -> None:
        slots = self.slots
        while slots and slots[0].data is not None:
            slot = slots.popleft()
            assert slot.data is not None
            self._write(slot.data, slot.close)
            if self.transport is None:
                return
        if self.expect_continue and not slots and self.transport is not None:
            self.expect_continue = False
            self.transport.write(_CONTINUE)
        if self.read_paused:
            self._update_reading()

    def _write(self, data: bytes | list[Any], close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if isinstance(data, bytes):
            transport.write(data)
        else:
            transport.writelines(data)
        if close:
            self.closing = True
            for slot in self.slots:
                slot.cancel()
            self.slots.clear()
            transport.close()
            self.transport = None

    def _fail(self, status: int, message: str) -> None:
        """Answer a request the parser could not take (after earlier answers), then close."""
        self.closing = True
        self._update_reading()
        self._respond(_error(status, message, _CLOSE), True)

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None:
            return
        want_pause = self.closing or self.write_paused or len(self.slots) >= MAX_PIPELINE
        if want_pause and not self.read_paused:
            self.read_paused = True
            transport.pause_reading()
        elif not want_pause and self.read_paused:
            self.read_paused = False
            transport.resume_reading()

    # -- routing ------------------------------------------------------------------------------

    def _dispatch(self, method: bytes, url: bytes, body: bytes, conn: bytes) -> None:
        close = conn is _CLOSE
        q = url.find(b"?")
        if q >= 0:
            url = url[:q]
        if not url.startswith(b"/"):  # absolute-form request target
            try:
                url = httptools.parse_url(url).path or b"/"
            except httptools.HttpParserInvalidURLError:
                url = b"/"
        parts = url.decode("latin-1").split("/")
        n = len(parts)
        if n < 2 or parts[1] != "v2":
            self._respond(_error(404, "Not Found", conn), close)
            return
        if n == 2:
            self._get(method, conn, close, lambda: _dumps(self.dp.server_metadata()).encode())
            return
        section = parts[2]
        if section == "models":
            self._models(method, parts, body, conn, close)
        elif section == "health" and n == 4 and parts[3] in ("live", "ready"):
            if method != b"GET":
                self._respond(_error(405, "Method Not Allowed", conn), close)
                return
            ok = self.dp.live if parts[3] == "live" else self.dp.ready()
            if conn:
                self._respond(_head(200 if ok else 400, 0, _TEXT, conn), close)
            else:
                self._respond(_OK_EMPTY if ok else _BAD_EMPTY, close)
        elif section == "repository":
            self._repository(method, parts, body, conn, close)
        elif section in ("systemsharedmemory", "cudasharedmemory"):
            self._shm(method, parts, body, conn, close)
        elif section == "trace" and n == 4 and parts[3] == "setting":
            self._trace(method, "", body, conn, close)
        elif section == "logging" and n == 3:
            self._logging(method, body, conn, close)
        else:
            self._respond(_error(404, "Not Found", conn), close)

    def _get(self, method: bytes, conn: bytes, close: bool, make: Callable[[], bytes]) -> None:
        if method != b"GET":
            self._respond(_error(405, "Method Not Allowed", conn), close)
            return
        try:
            data = _reply(200, make(), conn)
        except Exception as exc:
            data = _exception_reply(exc, conn)
        self._respond(data, close)

    def _models(self, method: bytes, parts: list[str], body: bytes, conn: bytes,
                close: bool) -> None:
        n = len(parts)
        if n == 4 and parts[3] == "stats":
            self._get(method, conn, close, lambda: self._stats("", ""))
            return
        if n < 4 or not parts[3]:
            self._respond(_error(404, "Not Found", conn), close)
            return
        name = unquote(parts[3]) if "%" in parts[3] else parts[3]
        i = 4
        version = ""
        if n >= 6 and parts[4] == "versions":
            version = parts[5]
            if not version.isdigit() or not version.isascii():
                self._respond(_error(404, "Not Found", conn), close)
                return
            i = 6
        kind = parts[i] if n == i + 1 else ("" if n == i else "/".join(parts[i:]))
        dp = self.dp
        if kind == "infer":
            if method != b"POST":
                self._respond(_error(405, "Method Not Allowed", conn), close)
                return
            self._infer(name, version, body, conn, close)
        elif kind == "":
            self._get(method, conn, close,
                      lambda: _dumps(dp.model_metadata(name, version)).encode())
        elif kind == "ready":
            if method != b"GET":
                self._respond(_error(405, "Method Not Allowed", conn), close)
            elif dp.model_ready(name, version):
                self._respond(_head(200, 0, _TEXT, conn) if conn else _OK_EMPTY, close)
            else:
                self._respond(_error(400, "Model version not ready", conn), close)
        elif kind == "config":
            self._get(method, conn, close, lambda: _dumps(
                message_to_json_dict(dp.model_config(name, version))).encode())
        elif kind == "stats":
            self._get(method, conn, close, lambda: self._stats(name, version))
        elif kind == "trace/setting" and i == 4:
            self._trace(method, name, body, conn, close)
        else:
            self._respond(_error(404, "Not Found", conn), close)

    def _stats(self, name: str, version: str) -> bytes:
        stats = self.dp.statistics(name, version)
        return _dumps({"model_stats": [message_to_json_dict(m) for m in stats]}).encode()

    # -- inference (the hot path) ---------------------------------------------------------------

    def _infer(self, name: str, version: str, body: bytes, conn: bytes, close: bool) -> None:
        headers = self.headers
        encoding = headers.get(b"content-encoding")
        if encoding is not None:
            try:
                body = _decompress(body, encoding, self.max_body)
            except _TooLarge:
                self._fail(413, self._too_large())
                return
        value = headers.get(b"inference-header-content-length")
        header_length: int | None = None
        if value is not None:
            try:
                header_length = int(value)
            except ValueError:
                raise InvalidArgument(
                    "Unable to parse Inference-Header-Content-Length, got: "
                    + value.decode("latin-1")) from None
        req = decode_infer_request(name, version, body, header_length)
        accept = headers.get(b"accept-encoding")
        coding = response_encoding(accept) if accept is not None else "identity"
        # Queued with a callback, not a Task: a bad request raises here and is answered in
        # order by on_message_complete; the answer comes back through _infer_done.
        slot = _Slot(conn)
        done = functools.partial(self._infer_done, slot, binary_default(req.parameters), coding)
        slot.pending = self.dp.start(req, done)
        self.slots.append(slot)
        if len(self.slots) >= MAX_PIPELINE:
            self._update_reading()

    def _infer_done(
        self, slot: _Slot, binary: bool, coding: str, resp: InferResponse | None, exc: BaseException | None
    ) -> None:
        slot.pending = None
        if exc is not None:
            slot.data = _exception_reply(exc, slot.conn)
        else:
            try:
                slot.data = self._infer_reply(cast(InferResponse, resp), binary, coding, slot.conn)
            except Exception as error:
                slot.data = _exception_reply(error, slot.conn)
        self._flush()

    @staticmethod
    def _infer_reply(resp: InferResponse, binary: bool, coding: str, conn: bytes) -> bytes | list[Any]:
        chunks, header_length = encode_infer_response(resp, binary)
        if header_length is None:
            ctype, extra = _JSON, b""
        else:
            ctype, extra = _OCTET, b"Inference-Header-Content-Length: %d\r\n" % header_length
        if coding != "identity":
            data = _compress(b"".join(chunks), coding)
            extra += b"Content-Encoding: " + coding.encode() + b"\r\n"
            return _head(200, len(data), ctype, conn, extra) + data
        if len(chunks) == 1:
            head = chunks[0]
            return _head(200, len(head), ctype, conn, extra) + (
                head if type(head) is bytes else bytes(head))
        size = 0
        for c in chunks:
            size += c.nbytes if isinstance(c, memoryview) else len(c)
        return [_head(200, size, ctype, conn, extra), *chunks]

    # -- model repository ---------------------------------------------------------------------

    def _repository(self, method: bytes, parts: list[str], body: bytes, conn: bytes,
                    close: bool) -> None:
        # /v2/repository[/{repo}]/index and /v2/repository[/{repo}]/models/{m}/(load|unload)
        rest = parts[3:]
        repo = ""
        if len(rest) in (2, 4):
            repo, rest = rest[0], rest[1:]
        if rest == ["index"]:
            if method != b"POST":
                self._respond(_error(405, "Method Not Allowed", conn), close)
                return
            try:
                obj = _json_object(body, "repository index")
                ready = obj.get("ready", False)
                if not isinstance(ready, bool):
                    raise InvalidArgument("Invalid value for 'ready': expected a boolean")
                rows = [_index_row(r) for r in self.dp.repository_index(ready)]
                data = _reply(200, _dumps(rows).encode(), conn)
            except Exception as exc:
                data = _exception_reply(exc, conn)
            self._respond(data, close)
            return
        if len(rest) != 3 or rest[0] != "models" or not rest[1] or rest[2] not in ("load",
                                                                                "unload"):
            self._respond(_error(404, "Not Found", conn), close)
            return
        if method != b"POST":
            self._respond(_error(405, "Method Not Allowed", conn), close)
            return
        name = unquote(rest[1])
        action = rest[2]
        if repo:
            raise Unsupported("'repository_name' specification is not supported")
        params = _json_object(body, f"{action} model").get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidArgument("'parameters' of a model control request must be an object")
        dp = self.dp
        if action == "load":
            for key, value in params.items():
                if not isinstance(value, str):
                    raise InvalidArgument(
                        f"load parameter '{key}' must be a string, got {type(value).__name__}")
            decoded: dict[str, Any] = {}
            for key, value in params.items():
                if key.startswith("file:"):
                    try:
                        decoded[key] = base64.b64decode(value, validate=True)
                    except (ValueError, binascii.Error) as e:
                        raise InvalidArgument(
                            f"failed to load '{name}': '{key}' is not valid base64: {e}"
                        ) from None
                else:
                    decoded[key] = value
            config, files = decode_file_params(decoded)

            async def control() -> bytes:
                await dp.load_model(name, config, files or None)
                return _head(200, 0, _JSON, conn)
        else:
            dependents = params.get("unload_dependents", False)
            if not isinstance(dependents, bool):
                raise InvalidArgument(
                    f"Unable to parse 'unload_dependents': expected a boolean, got {dependents!r}")

            async def control() -> bytes:
                await dp.unload_model(name)
                return _head(200, 0, _JSON, conn)
        self._spawn(control, conn)

    # -- shared memory ------------------------------------------------------------------------

    def _shm(self, method: bytes, parts: list[str], body: bytes, conn: bytes,
             close: bool) -> None:
        # /v2/<kind>[/region/{r}]/(status|register|unregister)
        n = len(parts)
        region = ""
        if n == 6 and parts[3] == "region" and parts[4]:
            region = unquote(parts[4])
        elif n != 4:
            self._respond(_error(404, "Not Found", conn), close)
            return
        action = parts[-1]
        if action not in ("status", "register", "unregister"):
            self._respond(_error(404, "Not Found", conn), close)
            return
        if method != (b"GET" if action == "status" else b"POST"):
            self._respond(_error(405, "Method Not Allowed", conn), close)
            return
        dp = self.dp
        try:
            if parts[2] == "cudasharedmemory":
                dp.cuda_shm()
                out = b""
            elif action == "status":
                out = _dumps(dp.shm_status(region)).encode()
            elif action == "register":
                if not region:
                    raise InvalidArgument(
                        "'region name' is necessary to register system shared memory region")
                obj = _json_object(body, "shared memory register")
                key = obj.get("key")
                if key is None:
                    raise InvalidArgument("Shared memory register request has no 'key' field")
                if not isinstance(key, str):
                    raise InvalidArgument(f"'key' must be a string, got {key!r}")
                dp.shm_register(region, key, _uint(obj, "offset", 0),
                                _uint(obj, "byte_size", None))
                out = b""
            else:
                dp.shm_unregister(region)
                out = b""
            data = _reply(200, out, conn)
        except Exception as exc:
            data = _exception_reply(exc, conn)
        self._respond(data, close)

    # -- trace and logging --------------------------------------------------------------------

    def _trace(self, method: bytes, model: str, body: bytes, conn: bytes, close: bool) -> None:
        if method not in (b"GET", b"POST"):
            self._respond(_error(405, "Method Not Allowed", conn), close)
            return
        try:
            updates = _trace_updates(_json_object(body, "trace")) if method == b"POST" else None
            settings = self.dp.trace_settings(model, updates)
            data = _reply(200, _dumps(_trace_json(settings)).encode(), conn)
        except Exception as exc:
            data = _exception_reply(exc, conn)
        self._respond(data, close)

    def _logging(self, method: bytes, body: bytes, conn: bytes, close: bool) -> None:
        if method not in (b"GET", b"POST"):
            self._respond(_error(405, "Method Not Allowed", conn), close)
            return
        try:
            updates = None
            if method == b"POST":
                updates = {k: v for k, v in _json_object(body, "logging").items()
                           if v is not None}
            data = _reply(200, _dumps(self.dp.log_settings(updates)).encode(), conn)
        except Exception as exc:
            data = _exception_reply(exc, conn)
        self._respond(data, close)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class HttpEdge:
    """Serve the data plane over HTTP/1.1 on one listening socket."""

    def __init__(self, dataplane: DataPlane, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port) and return the bound port."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)
        sockets = self._server.sockets
        bound: int = sockets[0].getsockname()[1]
        log.info("HTTP edge listening on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds, then
        close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.slots for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for c in list(self.connections):
            c.closing = True
            if c.transport is not None:
                c.transport.close()
        self.connections.clear()
        await server.wait_closed()
