"""HTTP/2 framing (RFC 9113 §4-6): constants, the frame header, and builders of control frames.

Pure functions and constants, no I/O: the connection (:mod:`sonic.server.h2.connection`)
parses frame headers with :data:`FRAME_HEADER` straight out of its receive buffer and builds
the frames it sends with the helpers here.
"""

from __future__ import annotations

import enum
import struct

__all__ = [
    "CLIENT_PREFACE",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_WINDOW",
    "FRAME_HEADER",
    "MAX_WINDOW",
    "ConnectionError",
    "ErrorCode",
    "Flag",
    "FrameType",
    "Setting",
    "StreamError",
    "data_frames",
    "frame",
    "goaway",
    "header_frames",
    "ping",
    "rst_stream",
    "settings",
    "window_update",
]

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_MAX_FRAME_SIZE = 16_384
MAX_FRAME_SIZE_LIMIT = 16_777_215
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1

#: length (24 bits, as a byte and a short), type, flags, stream id (31 bits + reserved bit)
FRAME_HEADER = struct.Struct(">BHBBL")
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")


class FrameType(enum.IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag(enum.IntFlag):
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ConnectionError(Exception):
    """A connection error (RFC 9113 §5.4.1): answer GOAWAY with ``code`` and close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamError(Exception):
    """A stream error (RFC 9113 §5.4.2): answer RST_STREAM with ``code``; the connection lives."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.code = code


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return FRAME_HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def settings(values: dict[Setting, int]) -> bytes:
    payload = b"".join(_SETTING.pack(int(k), v) for k, v in values.items())
    return frame(FrameType.SETTINGS, 0, 0, payload)


SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0)


def ping(payload: bytes, ack: bool) -> bytes:
    return frame(FrameType.PING, Flag.ACK if ack else 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(FrameType.GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def header_frames(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int) -> list[bytes]:
    """A header block as HEADERS (+ CONTINUATION frames when it exceeds ``max_frame_size``)."""
    es = Flag.END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame_size:
        return [
            FRAME_HEADER.pack(n >> 16, n & 0xFFFF, FrameType.HEADERS, es | Flag.END_HEADERS, stream_id),
            block,
        ]
    out: list[bytes] = []
    for start in range(0, n, max_frame_size):
        chunk = block[start : start + max_frame_size]
        last = start + max_frame_size >= n
        ftype = FrameType.HEADERS if start == 0 else FrameType.CONTINUATION
        flags = (es if start == 0 else 0) | (Flag.END_HEADERS if last else 0)
        m = len(chunk)
        out += [FRAME_HEADER.pack(m >> 16, m & 0xFFFF, ftype, flags, stream_id), chunk]
    return out


def data_frames(
    stream_id: int, data: bytes | memoryview, end_stream: bool, max_frame_size: int
) -> list[bytes]:
    """``data`` as DATA frames of at most ``max_frame_size`` bytes (no flow control here)."""
    n = len(data)
    out: list[bytes] = []
    start = 0
    while True:
        m = min(n - start, max_frame_size)
        last = start + m >= n
        flags = Flag.END_STREAM if (last and end_stream) else 0
        out += [
            FRAME_HEADER.pack(m >> 16, m & 0xFFFF, FrameType.DATA, flags, stream_id),
            bytes(data[start : start + m]),
        ]
        start += m
        if last:
            return out
