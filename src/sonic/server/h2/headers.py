"""HPACK (through the ``hpack`` package) and the gRPC request head, with caching of what repeats.

Decoding: one :class:`HeaderDecoder` per connection owns the peer's HPACK dynamic table. gRPC
clients send the same header block for every call on a channel once their table is warm
(every field indexed), so :meth:`HeaderDecoder.request_head` caches the *validated*
:class:`RequestHead` by the raw block bytes, tagged with the table's generation: a block
whose decoding left the table untouched is a pure function of (bytes, table), and the entry
is reused only while the table is unchanged. A miss costs one ``hpack`` decode.

Encoding: response header blocks use only the static table and literals that are never
indexed, so they do not depend on any state and are precomputed once (:data:`OK_TRAILERS`,
:func:`response_headers`); error trailers are encoded per call.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import hpack
from hpack.exceptions import HPACKError
from hpack.table import HeaderTable

from sonic.server.grpc_service import METHODS, Method, StatusCode
from sonic.server.h2.frames import ConnectionError, ErrorCode, StreamError

__all__ = [
    "ACCEPT_ENCODING",
    "OK_TRAILERS",
    "SUPPORTED_ENCODINGS",
    "HeaderDecoder",
    "RequestHead",
    "encode_block",
    "error_trailers",
    "parse_timeout",
    "percent_encode",
    "response_headers",
]

SUPPORTED_ENCODINGS = ("identity", "deflate", "gzip")
ACCEPT_ENCODING = b"identity,deflate,gzip"

_TIMEOUT = re.compile(rb"^([0-9]{1,8})([HMSmun])$")
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_REQUEST_PSEUDO = {b":method", b":scheme", b":path", b":authority"}
_CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
_BY_PATH: dict[bytes, Method] = {m.path.encode(): m for m in METHODS.values()}


def parse_timeout(value: bytes) -> float | None:
    """A ``grpc-timeout`` value (``1234m``) in seconds; None when malformed."""
    m = _TIMEOUT.match(value)
    if m is None:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


def percent_encode(message: str) -> bytes:
    """``grpc-message`` encoding: UTF-8, then every byte outside 0x20-0x7E and '%' as %XX."""
    out = bytearray()
    for b in message.encode("utf-8", "replace"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


_ENCODER = hpack.Encoder()  # used with never-indexed fields only: its table stays empty


def encode_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A header block that does not touch the peer's dynamic table (cacheable as bytes)."""
    return _ENCODER.encode([(n, v, True) for n, v in headers], huffman=True)


@functools.cache
def response_headers(encoding: str | None) -> bytes:
    """The response HEADERS block of a gRPC call (``encoding``: the response compression)."""
    fields = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    if encoding is not None:
        fields.append((b"grpc-encoding", encoding.encode()))
    fields.append((b"grpc-accept-encoding", ACCEPT_ENCODING))
    return encode_block(fields)


#: The trailers of every successful call.
OK_TRAILERS = encode_block([(b"grpc-status", b"0")])

_MAX_MESSAGE_BYTES = 4096


def error_trailers(status: int, message: str, *, trailers_only: bool, http_status: int = 200) -> bytes:
    """Trailers with ``grpc-status`` / ``grpc-message`` (a Trailers-Only response when asked)."""
    fields: list[tuple[bytes, bytes]] = []
    if trailers_only:
        fields += [(b":status", b"%d" % http_status), (b"content-type", b"application/grpc")]
        fields.append((b"grpc-accept-encoding", ACCEPT_ENCODING))
    fields.append((b"grpc-status", b"%d" % status))
    if message:
        encoded = percent_encode(message)
        if len(encoded) > _MAX_MESSAGE_BYTES:  # stay far below clients' metadata limits
            encoded = encoded[:_MAX_MESSAGE_BYTES]
            cut = encoded.rfind(b"%", _MAX_MESSAGE_BYTES - 2)
            if cut != -1:  # do not leave half an escape
                encoded = encoded[:cut]
        fields.append((b"grpc-message", encoded))
    return encode_block(fields)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What a request's header block says, validated once (and cached by the raw block)."""

    method: Method | None
    path: str
    encoding: str  # grpc-encoding of the request messages ("identity" when absent)
    accept: frozenset[str]  # grpc-accept-encoding of the client
    timeout: float | None  # grpc-timeout in seconds
    # A call that must be refused at once: (http status, grpc status, message)
    refusal: tuple[int, int, str] | None = None


class _GenerationTable(HeaderTable):
    """hpack's table, counting every change so that decoded blocks can be cached safely."""

    def __init__(self) -> None:
        self.generation = 0
        super().__init__()

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    def _get_maxsize(self) -> int:
        return HeaderTable.maxsize.fget(self)  # type: ignore[attr-defined, no-any-return]

    def _set_maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]

    maxsize = property(_get_maxsize, _set_maxsize)


class HeaderDecoder:
    """The peer's HPACK state plus a cache of validated request heads.

    ``max_list_size`` is the advertised SETTINGS_MAX_HEADER_LIST_SIZE: a larger list is
    refused per stream (RESOURCE_EXHAUSTED) after being decoded, so the HPACK state stays in
    step; ``hard_list_size`` bounds the work and memory of decoding one block: past it the
    connection is closed (COMPRESSION_ERROR), as the table can no longer be trusted.
    """

    CACHE_ENTRIES = 64

    def __init__(self, max_list_size: int, hard_list_size: int, table_size: int = 4096) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=hard_list_size)
        table = _GenerationTable()
        table.maxsize = table_size
        self._table = table
        self._decoder.header_table = table
        self._decoder.max_allowed_table_size = table_size
        self.max_list_size = max_list_size
        self._cache: dict[bytes, tuple[int, RequestHead]] = {}

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return [(bytes(n), bytes(v)) for n, v in self._decoder.decode(block, raw=True)]
        except HPACKError as exc:
            raise ConnectionError(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        except (IndexError, ValueError, TypeError) as exc:  # defensive: a decoder bug is the peer's error
            raise ConnectionError(
                ErrorCode.COMPRESSION_ERROR, f"HPACK: {type(exc).__name__}: {exc}"
            ) from None

    def request_head(self, block: bytes, stream_id: int) -> RequestHead:
        hit = self._cache.get(block)
        table = self._table
        if hit is not None and hit[0] == table.generation:
            return hit[1]
        before = table.generation
        fields = self.decode(block)
        head = parse_request(fields, stream_id, self.max_list_size)
        if table.generation == before:  # a pure function of (block, table): cacheable
            if len(self._cache) >= self.CACHE_ENTRIES:
                self._cache.clear()
            self._cache[block] = (before, head)
        return head


def _list_size(fields: list[tuple[bytes, bytes]]) -> int:
    return sum(len(n) + len(v) + 32 for n, v in fields)


def parse_request(fields: list[tuple[bytes, bytes]], stream_id: int, max_list_size: int) -> RequestHead:
    """Validate a request header list (RFC 9113 §8.3) and read the gRPC fields out of it.

    A malformed request is a stream error (PROTOCOL_ERROR); a well-formed HTTP request that
    is not a call we serve gets a refusal (answered with a Trailers-Only response).
    """

    def malformed(why: str) -> StreamError:
        return StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"malformed request: {why}")

    pseudo: dict[bytes, bytes] = {}
    regular: dict[bytes, bytes] = {}
    seen_regular = False
    for name, value in fields:
        if name.startswith(b":"):
            if seen_regular:
                raise malformed("pseudo-header after a regular header")
            if name not in _REQUEST_PSEUDO:
                raise malformed(f"unknown pseudo-header {name!r}")
            if name in pseudo:
                raise malformed(f"duplicate pseudo-header {name!r}")
            pseudo[name] = value
            continue
        seen_regular = True
        if name.lower() != name or not name:
            raise malformed(f"header name {name!r} is not lowercase")
        if name in _CONNECTION_SPECIFIC:
            raise malformed(f"connection-specific header {name!r}")
        if name == b"te" and value != b"trailers":
            raise malformed("te other than 'trailers'")
        regular[name] = value if name not in regular else regular[name] + b"," + value
    for required in (b":method", b":scheme", b":path"):
        if not pseudo.get(required):
            raise malformed(f"missing {required.decode()}")
    path = pseudo[b":path"]
    path_text = path.decode("latin-1")
    method = _BY_PATH.get(path)
    encoding = regular.get(b"grpc-encoding", b"identity").decode("latin-1").strip()
    accept = frozenset(
        e.strip() for e in regular.get(b"grpc-accept-encoding", b"identity").decode("latin-1").split(",")
    )
    timeout: float | None = None
    refusal: tuple[int, int, str] | None = None
    raw_timeout = regular.get(b"grpc-timeout")
    if raw_timeout is not None:
        timeout = parse_timeout(raw_timeout)
        if timeout is None:
            refusal = (200, StatusCode.INTERNAL, f"invalid grpc-timeout {raw_timeout.decode('latin-1')!r}")
    if (size := _list_size(fields)) > max_list_size:
        refusal = (
            200,
            StatusCode.RESOURCE_EXHAUSTED,
            f"header list size {size} exceeds the limit of {max_list_size} bytes",
        )
    elif pseudo[b":method"] != b"POST":
        refusal = (405, StatusCode.INTERNAL, f"method {pseudo[b':method'].decode('latin-1')} is not POST")
    elif not regular.get(b"content-type", b"").startswith(b"application/grpc"):
        ctype = regular.get(b"content-type", b"").decode("latin-1")
        refusal = (415, StatusCode.INTERNAL, f"content-type {ctype!r} is not application/grpc")
    elif method is None:
        refusal = (200, StatusCode.UNIMPLEMENTED, "Method not found!")
    elif encoding not in SUPPORTED_ENCODINGS:
        refusal = (200, StatusCode.UNIMPLEMENTED, f"Compression algorithm '{encoding}' is not supported")
    return RequestHead(method, path_text, encoding, accept, timeout, refusal)
