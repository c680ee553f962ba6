"""The HTTP transport: the v2 REST protocol with Triton's binary tensor extension.

Bodies are built and read by :mod:`sonic.protocol.http_codec` (a JSON header, then the raw
tensors back to back, sized by ``Inference-Header-Content-Length``) and carried by the small
keep-alive HTTP/1.1 client of :mod:`._http1` (blocking sockets for the sync API, an asyncio
protocol per event loop for the async one; see there why not a library). Compression
(gzip/deflate) applies to the request body and asks for a compressed answer; without it the
client asks for ``identity`` so that the server spends nothing on it.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, TypeVar, cast
from urllib.parse import quote

from sonic.client._errors import HTTP_CODES, ServerUnreachable, error_for_code
from sonic.client._http1 import AsyncPool, Response, SyncPool, request_head
from sonic.client._loops import PerLoop
from sonic.client._shm import is_same_host, split_address
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
from sonic.protocol import http_codec
from sonic.protocol.errors import Code, InvalidArgument, SonicError
from sonic.protocol.types import InferRequest, InferResponse

__all__ = ["HttpTransport"]

T = TypeVar("T")

_HCL = b"inference-header-content-length"
_WBITS = {"gzip": 31, "deflate": 15}
# (method, path, body or None)
_Call = tuple[str, str, bytes | None]


def _model_path(model: str, version: str) -> str:
    path = "/v2/models/" + quote(model, safe="")
    if version:
        path += "/versions/" + quote(version, safe="")
    return path


def _compress(body: bytes, encoding: str) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, _WBITS[encoding])
    return c.compress(body) + c.flush()


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    encoding = encoding.lower()
    if encoding == "gzip":
        return zlib.decompress(body, 31)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -15)
    raise InvalidArgument(f"the server answered with unsupported Content-Encoding '{encoding}'")


class _Reply:
    __slots__ = ("body", "header_length", "status")

    def __init__(self, resp: Response) -> None:
        self.status = resp.status
        body = resp.body
        encoding = resp.header(b"content-encoding")
        if encoding:
            body = _decompress(body, encoding.decode("latin-1"))
        self.body = body
        hl = resp.header(_HCL)
        self.header_length = int(hl) if hl else None


class HttpTransport:
    """A server reached over HTTP at ``address`` ("host:port")."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.host, port = split_address(address)
        self.port = port or 8000
        self._sync = SyncPool(self.host, self.port)
        self._async: PerLoop[AsyncPool] = PerLoop(self._new_pool, _close_pool)
        self._same_host: bool | None = None

    @property
    def same_host(self) -> bool:
        if self._same_host is None:
            self._same_host = is_same_host(self.address)
        return self._same_host

    # -- the interface --------------------------------------------------------------------

    def handle(self, op: Op[T]) -> T:
        if self._sync.closed:
            raise ServerUnreachable(f"the HTTP transport to {self.address} is closed")
        if type(op) is Infer:
            head, body = self._infer_call(op)
            reply = _Reply(self._sync.request(head, body, op.timeout or None))
            return cast(T, self._infer_answer(reply, op.request))
        timeout = _op_timeout(op)
        results = [
            _Reply(self._sync.request(*self._control_call(m, p, b), timeout))
            for m, p, b in self._plan(op)
        ]
        return self._answer(op, results)

    async def handle_async(self, op: Op[T]) -> T:
        pool = self._async.current()
        if pool is None:
            if self._sync.closed:
                raise ServerUnreachable(f"the HTTP transport to {self.address} is closed")
            pool = await self._async.create()
        if type(op) is Infer:
            head, body = self._infer_call(op)
            reply = _Reply(await pool.request(head, body, op.timeout or None))
            return cast(T, self._infer_answer(reply, op.request))
        timeout = _op_timeout(op)
        results = [
            _Reply(await pool.request(*self._control_call(m, p, b), timeout))
            for m, p, b in self._plan(op)
        ]
        return self._answer(op, results)

    def close(self) -> None:
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        await self._async.aclose()

    def _new_pool(self) -> AsyncPool:
        return AsyncPool(self.host, self.port)

    # -- inference ----------------------------------------------------------------------------

    def _infer_call(self, op: Infer) -> tuple[bytes, list[Any]]:
        req = op.request
        chunks, header_length = http_codec.encode_infer_request(req)
        headers: dict[str, str] = {}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
            headers["Content-Type"] = "application/octet-stream"
        else:
            headers["Content-Type"] = "application/json"
        body: list[Any] = list(chunks)
        if op.compression:
            if op.compression not in _WBITS:
                raise InvalidArgument(
                    f"unknown compression '{op.compression}'; expected 'gzip' or 'deflate'"
                )
            body = [_compress(b"".join(body), op.compression)]
            headers["Content-Encoding"] = op.compression
            headers["Accept-Encoding"] = op.compression
        else:
            headers["Accept-Encoding"] = "identity"
        size = sum(len(c) for c in body)
        path = _model_path(req.model_name, req.model_version) + "/infer"
        return request_head("POST", path, self._sync.authority, headers, size), body

    def _control_call(self, method: str, path: str, body: bytes | None) -> tuple[bytes, list[Any]]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        length = len(body) if body is not None else (0 if method == "POST" else None)
        head = request_head(method, path, self._sync.authority, headers, length)
        return head, [body] if body else []

    def _infer_answer(self, reply: _Reply, request: InferRequest) -> InferResponse:
        if reply.status != 200:
            raise self._status_error(reply)
        body, header_length = reply.body, reply.header_length
        if any(o.shm is not None for o in request.outputs):
            body, header_length = _mark_shm_outputs(body, header_length, request)
        return http_codec.decode_infer_response(body, header_length)

    # -- control operations -------------------------------------------------------------------

    @staticmethod
    def _plan(op: Op[Any]) -> list[_Call]:
        if isinstance(op, Metadata):
            path = _model_path(op.model, op.version)
            return [("GET", path, None), ("GET", path + "/config", None)]
        if isinstance(op, RepositoryIndex):
            return [("POST", "/v2/repository/index", b"{}")]
        if isinstance(op, Statistics):
            path = _model_path(op.model, op.version) if op.model else "/v2/models"
            return [("GET", path + "/stats", None)]
        if isinstance(op, Ready):
            path = _model_path(op.model, op.version) if op.model else "/v2/health"
            return [("GET", path + "/ready", None)]
        if isinstance(op, ShmRegister):
            body = json.dumps({"key": op.key, "offset": op.offset, "byte_size": op.byte_size})
            path = "/v2/systemsharedmemory/region/" + quote(op.name, safe="") + "/register"
            return [("POST", path, body.encode())]
        if isinstance(op, ShmUnregister):
            region = "/region/" + quote(op.name, safe="") if op.name else ""
            return [("POST", f"/v2/systemsharedmemory{region}/unregister", b"")]
        if isinstance(op, ShmStatus):
            region = "/region/" + quote(op.name, safe="") if op.name else ""
            return [("GET", f"/v2/systemsharedmemory{region}/status", None)]
        raise TypeError(f"the HTTP transport cannot handle {type(op).__name__}")

    def _answer(self, op: Op[T], replies: list[_Reply]) -> T:
        if isinstance(op, Ready):
            return cast(T, replies[0].status == 200)
        for reply in replies:
            if reply.status != 200:
                raise self._status_error(reply)
        answer: Any = None
        if isinstance(op, Metadata):
            answer = ModelInfo.from_v2(self._json(replies[0]), self._json(replies[1]))
        elif isinstance(op, RepositoryIndex):
            answer = [
                IndexEntry(
                    str(m.get("name", "")),
                    str(m.get("version", "")),
                    str(m.get("state", "")),
                    str(m.get("reason", "")),
                )
                for m in self._json(replies[0])
            ]
        elif isinstance(op, Statistics):
            answer = [ModelStatistics.from_v2(s) for s in self._json(replies[0]).get("model_stats", [])]
        elif isinstance(op, ShmStatus):
            answer = [
                {k: r.get(k) for k in ("name", "key", "offset", "byte_size")}
                for r in self._json(replies[0])
            ]
        return cast(T, answer)

    def _json(self, reply: _Reply) -> Any:
        try:
            return json.loads(reply.body) if reply.body else {}
        except ValueError:
            raise SonicError(
                f"HTTP server {self.address} sent a body that is not JSON: {reply.body[:200]!r}",
                Code.INTERNAL,
            ) from None

    def _status_error(self, reply: _Reply) -> SonicError:
        message = ""
        try:
            obj = json.loads(reply.body) if reply.body else {}
            if isinstance(obj, dict):
                message = str(obj.get("error", ""))
        except ValueError:
            message = reply.body[:500].decode(errors="replace")
        code = HTTP_CODES.get(reply.status, Code.INTERNAL)
        return error_for_code(code, message or f"HTTP status {reply.status} from {self.address}")


def _mark_shm_outputs(
    body: bytes, header_length: int | None, request: InferRequest
) -> tuple[bytes, int | None]:
    """Triton answers an output written to shared memory with its name, datatype and shape
    only (no data, no parameters); name the region the request gave it, so that the codec
    sees where its data is."""
    head = body if header_length is None else body[:header_length]
    obj = json.loads(head)
    refs = {o.name: o.shm for o in request.outputs if o.shm is not None}
    changed = False
    for out in obj.get("outputs", []) if isinstance(obj, dict) else []:
        ref = refs.get(str(out.get("name"))) if isinstance(out, dict) else None
        params = out.get("parameters") or {}
        if ref is None or "data" in out or "binary_data_size" in params or "shared_memory_region" in params:
            continue
        params.update({"shared_memory_region": ref.region, "shared_memory_byte_size": ref.byte_size})
        if ref.offset:
            params["shared_memory_offset"] = ref.offset
        out["parameters"] = params
        changed = True
    if not changed:
        return body, header_length
    new_head = json.dumps(obj, separators=(",", ":")).encode()
    if header_length is None:
        return new_head, None
    return new_head + body[header_length:], len(new_head)


def _op_timeout(op: Op[Any]) -> float | None:
    return cast(float | None, getattr(op, "timeout", None))


async def _close_pool(pool: AsyncPool) -> None:
    await pool.close()
