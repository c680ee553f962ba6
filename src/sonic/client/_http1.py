"""A minimal HTTP/1.1 client for one server: keep-alive connections, pooled, sync and asyncio.

Why not a library: measured per request (client CPU, batch-1 MLP, ``benchmarks/
client_overhead.py``), the standard library's ``http.client`` cost ~80 us and aiohttp ~90 us
of the ~110 us that tritonclient spends in all, so with either of them sonic's client came
out 5-10 % above tritonclient's overhead. Framing is the only thing a v2 client needs from
HTTP, and ``httptools`` (llhttp, the parser of Node.js, already a dependency of the server)
does the parsing; what is left here is a connection pool: requests go out in one write,
responses are parsed as they arrive, and a connection is reused while the server keeps it
alive. The result costs ~30 us per request.

Failures come out as the client's errors: :class:`DeadlineExceeded` when the deadline
passes (the whole exchange, not each read), :class:`ServerUnreachable` when the connection
fails. A request that fails on a *reused* connection before any byte of the answer arrived
is sent once more on a fresh connection: the server may have closed it while idle, which
must not look like a dead server.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from typing import Any, cast

import httptools

from sonic.client._errors import DeadlineExceeded, ServerUnreachable

__all__ = ["AsyncPool", "Response", "SyncPool", "request_head"]

_RECV = 256 * 1024
_JOIN_LIMIT = 256 * 1024  # below this, headers and body go out as one buffer


class Response:
    """Status, the headers (lower-case names), and the body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


class _Parse:
    """httptools callbacks for one connection (reused across its responses)."""

    __slots__ = ("body", "done", "headers", "keep_alive", "parser", "started")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reset()

    def reset(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.done = False
        self.started = False
        self.keep_alive = False

    def on_message_begin(self) -> None:
        self.started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        # asked here: once the message is complete the parser has moved on to the next
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def response(self) -> Response:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        return Response(self.parser.get_status_code(), self.headers, body)


def request_head(method: str, path: str, host: str, headers: dict[str, str], length: int | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _payload(head: bytes, body: list[Any]) -> list[Any]:
    size = len(head) + sum(len(c) for c in body)
    if size <= _JOIN_LIMIT:
        return [head + b"".join(body)] if body else [head]
    return [head, *body]


# -- sync -------------------------------------------------------------------------------------


class _SyncConn:
    __slots__ = ("buf", "parse", "sock", "view")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parse = _Parse()
        # one receive buffer per connection: a fresh 256 KiB bytes per recv() would cost
        # an mmap and its page faults every time
        self.buf = bytearray(_RECV)
        self.view = memoryview(self.buf)


class SyncPool:
    """Blocking keep-alive connections to ``host:port``; one per concurrent caller."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.authority = f"{host}:{port}"
        self._idle: deque[_SyncConn] = deque()
        self._lock = threading.Lock()
        self.closed = False

    def request(self, head: bytes, body: list[Any], timeout: float | None) -> Response:
        deadline = time.monotonic() + timeout if timeout else None
        for attempt in (0, 1):
            try:
                conn, reused = self._idle.pop(), True
            except IndexError:
                conn, reused = self._connect(deadline), False
            try:
                resp = self._exchange(conn, head, body, deadline)
            except DeadlineExceeded:
                conn.sock.close()
                raise
            except (OSError, httptools.HttpParserError) as exc:
                conn.sock.close()
                if reused and attempt == 0 and not conn.parse.started:
                    continue  # the server had closed this idle connection: once more, fresh
                raise ServerUnreachable(
                    f"HTTP server {self.authority} unreachable: {type(exc).__name__}: {exc}"
                ) from None
            if conn.parse.keep_alive and not self.closed:
                self._idle.append(conn)
            else:
                conn.sock.close()
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self, deadline: float | None) -> _SyncConn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=_remaining(deadline, self))
        except TimeoutError:
            raise DeadlineExceeded(f"no connection to {self.authority} within the timeout") from None
        except OSError as exc:
            raise ServerUnreachable(
                f"HTTP server {self.authority} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SyncConn(sock)

    def _exchange(self, conn: _SyncConn, head: bytes, body: list[Any], deadline: float | None) -> Response:
        sock, parse, view = conn.sock, conn.parse, conn.view
        parse.reset()
        try:
            sock.settimeout(_remaining(deadline, self))
            for chunk in _payload(head, body):
                sock.sendall(chunk)
            while not parse.done:
                if deadline is not None:
                    sock.settimeout(_remaining(deadline, self))
                n = sock.recv_into(view)
                if not n:
                    raise ConnectionResetError("the server closed the connection")
                parse.parser.feed_data(view[:n])
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from {self.authority} within the timeout (HTTP)") from None
        return parse.response()

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop().sock.close()


def _remaining(deadline: float | None, pool: SyncPool | AsyncPool) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"no answer from {pool.authority} within the timeout (HTTP)")
    return left


# -- asyncio ----------------------------------------------------------------------------------


class _Proto(asyncio.Protocol):
    """One connection: feeds httptools, resolves the waiter of the request in flight."""

    def __init__(self) -> None:
        self.parse = _Parse()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parse = self.parse
        try:
            parse.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        if parse.done:
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(parse.response())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError("the server closed the connection") if exc is None else exc)

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class AsyncPool:
    """Keep-alive connections to ``host:port`` on one event loop."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.authority = f"{host}:{port}"
        self._idle: deque[_Proto] = deque()
        self._all: set[_Proto] = set()
        self.closed = False

    async def request(self, head: bytes, body: list[Any], timeout: float | None) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        for attempt in (0, 1):
            proto, reused = None, False
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.lost:
                    proto, reused = candidate, True
                    break
            if proto is None:
                proto = await self._connect(loop, deadline)
            try:
                resp = await self._exchange(loop, proto, head, body, deadline)
            except DeadlineExceeded:
                self._discard(proto)
                raise
            except (OSError, ConnectionError) as exc:
                self._discard(proto)
                if reused and attempt == 0 and not proto.parse.started:
                    continue  # the server had closed this idle connection: once more, fresh
                raise ServerUnreachable(
                    f"HTTP server {self.authority} unreachable: {type(exc).__name__}: {exc}"
                ) from None
            except BaseException:  # cancelled: the connection's state is unknown
                self._discard(proto)
                raise
            if proto.parse.keep_alive and not self.closed and not proto.lost:
                self._idle.append(proto)
            else:
                self._discard(proto)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Proto:
        try:
            connect = loop.create_connection(_Proto, self.host, self.port)
            if deadline is None:
                _, proto = await connect
            else:
                _, proto = await asyncio.wait_for(connect, max(deadline - loop.time(), 0))
        except TimeoutError:
            raise DeadlineExceeded(f"no connection to {self.authority} within the timeout") from None
        except OSError as exc:
            raise ServerUnreachable(
                f"HTTP server {self.authority} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        if self.closed:
            assert proto.transport is not None
            proto.transport.close()
            raise ServerUnreachable(f"the HTTP transport to {self.authority} is closed")
        sock = proto.transport.get_extra_info("socket") if proto.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(proto)
        return proto

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        proto: _Proto,
        head: bytes,
        body: list[Any],
        deadline: float | None,
    ) -> Response:
        transport = proto.transport
        if transport is None or proto.lost or transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        proto.parse.reset()
        waiter: asyncio.Future[Response] = loop.create_future()
        proto.waiter = waiter
        transport.writelines(_payload(head, body))
        if deadline is None:
            return await waiter
        left = deadline - loop.time()
        handle = loop.call_at(deadline, _expire, waiter) if left > 0 else None
        if handle is None:
            _expire(waiter)
        try:
            return await waiter
        except _Expired:
            raise DeadlineExceeded(f"no answer from {self.authority} within the timeout (HTTP)") from None
        finally:
            if handle is not None:
                handle.cancel()

    def _discard(self, proto: _Proto) -> None:
        self._all.discard(proto)
        if proto.transport is not None:
            proto.transport.close()

    async def close(self) -> None:
        self.closed = True
        self._idle.clear()
        protos, self._all = list(self._all), set()
        for proto in protos:
            if proto.transport is not None:
                proto.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing while the loop runs


class _Expired(Exception):
    pass


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())
