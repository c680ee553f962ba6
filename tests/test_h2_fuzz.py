"""Hardening of sonic's HTTP/2 transport: fuzzing in-process, and a battery of bad peers on sockets.

In-process (no sockets): hypothesis feeds :class:`~sonic.server.h2.GrpcConnection` random bytes,
random frames (every type, flags and stream id, random and well-formed payloads) and random
HPACK blocks, in random chunkings. Whatever comes in, nothing escapes ``data_received``, the
connection never reports an internal error, its buffers stay within the limits, and what it
writes is a well-formed sequence of frames.

Over real sockets, a server with tight limits meets a raw HTTP/2 client that misbehaves: bad
preface, oversized frames, flow-control violations, stream-id reuse and even stream ids,
CONTINUATION floods, RST storms (rapid reset), slowloris in three forms, header lists too
large, HPACK garbage, malformed requests. The server answers each with the right GOAWAY or
RST_STREAM error code, keeps serving other connections, and its loop reports no error. The
same client checks what only the wire shows: Trailers-Only errors, grpc-message
percent-encoding, server-side grpc-timeout, response compression, HTTP-level refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import hpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb

from sonic import zoo
from sonic.server.dataplane import DataPlane
from sonic.server.grpc_service import GrpcService
from sonic.server.h2 import GrpcConnection, Limits
from sonic.server.h2.frames import CLIENT_PREFACE, ErrorCode, FrameType
from sonic.server.h2.headers import HeaderDecoder, parse_timeout, percent_encode, response_headers
from sonic.server.models import ModelManager
from sonic.server.shm import SystemSharedMemory
from test_grpc_edge import SLEEP_MS, Server

PATH = b"/inference.GRPCInferenceService/"


@dataclass
class Frame:
    type: int
    flags: int
    sid: int
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)  # decoded, for HEADERS


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    frames = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        if len(data) < 9 + n:
            break
        frames.append(Frame(data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9 : 9 + n]))
        data = data[9 + n :]
    return frames, data


SETTINGS = frame(FrameType.SETTINGS, 0, 0)


def grpc_message(msg: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BL", int(compressed), len(msg)) + msg


def request_fields(method: str = "ServerLive", **extra: str) -> list[tuple[str, str]]:
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/inference.GRPCInferenceService/" + method),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return fields + [(k.replace("_", "-"), v) for k, v in extra.items()]


def stateless_block(fields: list[tuple[str, str]]) -> bytes:
    """An HPACK block that never touches the dynamic table (any decoder can read it)."""
    return hpack.Encoder().encode([(k, v, True) for k, v in fields])


# --------------------------------------------------------------------------------------------
# in-process fuzzing
# --------------------------------------------------------------------------------------------

FUZZ_LIMITS = Limits(
    max_concurrent_streams=16,
    initial_window_size=4096,
    max_header_list_size=2048,
    max_header_block_bytes=8192,
    max_continuation_frames=4,
    max_message_bytes=1 << 16,
    max_connection_buffer=20_000,
)


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.eof = False
        self.reading = True

    def write(self, data: bytes) -> None:
        if not self.closed:  # a real transport drops writes after close
            self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Harness:
    """A GrpcConnection on a fake transport, over a real (empty-ish) data plane."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _l, ctx: self.errors.append(ctx))
        zoo.write_conformance_repository(tmp, models=("identity_fp32",))
        self.manager = ModelManager([tmp], mode="none")
        self.loop.run_until_complete(self.manager.start(None))
        self.dataplane = DataPlane(self.manager, SystemSharedMemory(allowed=False))
        self.dataplane.started = True
        self.service = GrpcService(self.dataplane)

    def feed(self, chunks: list[bytes]) -> tuple[list[Frame], FakeTransport]:
        async def run() -> tuple[GrpcConnection, FakeTransport]:
            conn = GrpcConnection(self.service, FUZZ_LIMITS)
            transport = FakeTransport()
            conn.connection_made(transport)  # type: ignore[arg-type]
            for chunk in chunks:
                conn.data_received(chunk)
                # bounded buffers, whatever came in
                assert len(conn._buf) < FUZZ_LIMITS.max_frame_size + 9
                assert len(conn._cont_block) <= FUZZ_LIMITS.max_header_block_bytes
                assert len(conn.streams) <= FUZZ_LIMITS.max_concurrent_streams
                assert 0 <= conn._buffered <= FUZZ_LIMITS.max_connection_buffer
                assert conn._buffered == sum(s.call.buffered for s in conn.streams.values() if s.call)
                if transport.closed or transport.eof:
                    break
            for _ in range(3):
                await asyncio.sleep(0)
            conn.connection_lost(None)
            await asyncio.sleep(0)
            assert conn._buffered == 0
            return conn, transport

        _, transport = self.loop.run_until_complete(asyncio.wait_for(run(), 10))
        frames, rest = parse_frames(bytes(transport.out))
        assert rest == b"", "the server wrote a partial frame"
        for f in frames:
            assert len(f.payload) <= 16384  # the client's (default) SETTINGS_MAX_FRAME_SIZE
            if f.type == FrameType.GOAWAY:
                code = int.from_bytes(f.payload[4:8], "big")
                assert code != ErrorCode.INTERNAL_ERROR, f.payload
        assert self.errors == []
        return frames, transport

    def close(self) -> None:
        self.loop.run_until_complete(self.manager.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz-repo"))
    try:
        yield h
    finally:
        h.close()


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


#: SONIC_FUZZ_EXAMPLES=20000 for a deeper run than the suite's.
FUZZ = settings(
    max_examples=int(os.environ.get("SONIC_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 4000), max_size=8), st.booleans())
def test_fuzz_random_bytes(harness: Harness, data: bytes, cuts: list[int], with_preface: bool) -> None:
    prefix = CLIENT_PREFACE + SETTINGS if with_preface else b""
    frames, _ = harness.feed(chunked(prefix + data, cuts))
    assert frames[0].type == FrameType.SETTINGS  # the server's preface comes first, always


def _headers_payload(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        method = draw(st.sampled_from(["ServerLive", "ModelInfer", "ModelStreamInfer", "Nope", "ModelReady"]))
        extra = draw(
            st.dictionaries(
                st.sampled_from(["grpc_timeout", "grpc_encoding", "grpc_accept_encoding", "x_pad", "Upper"]),
                st.sampled_from(
                    ["1S", "100m", "gzip", "deflate", "snappy", "identity", "x" * 3000, "9999999999H"]
                ),
                max_size=3,
            )
        )
        fields = request_fields(method, **extra)
        if draw(st.booleans()):
            fields = draw(st.permutations(fields))
        return stateless_block(fields)
    if choice == 1:
        return draw(st.binary(max_size=200))
    if choice == 2:  # padded / priority prefixes around a valid block
        return (
            bytes([draw(st.integers(0, 10))])
            + stateless_block(request_fields())
            + b"\x00" * draw(st.integers(0, 12))
        )
    return stateless_block(draw(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=12)))


@st.composite
def frames_strategy(draw: st.DrawFn) -> bytes:
    ftype = draw(st.integers(0, 11))
    flags = draw(st.sampled_from([0, 1, 4, 5, 8, 0x20, 0x25, 0x2D, 0xFF]))
    sid = draw(st.sampled_from([0, 1, 2, 3, 5, 7, 9, 11, 2**31 - 1]))
    if ftype in (FrameType.HEADERS, FrameType.CONTINUATION):
        payload = _headers_payload(draw)
    elif ftype == FrameType.DATA:
        body = draw(
            st.sampled_from([b"", pb.ServerLiveRequest().SerializeToString(), b"\xff\x01", b"x" * 5000])
        )
        payload = grpc_message(body) if draw(st.booleans()) else draw(st.binary(max_size=300))
    elif ftype in (FrameType.WINDOW_UPDATE, FrameType.RST_STREAM):
        payload = draw(
            st.sampled_from([b"", b"\x00\x00\x00\x00", b"\x00\x00\x10\x00", b"\x7f\xff\xff\xff", b"\x01\x02"])
        )
    elif ftype == FrameType.SETTINGS:
        pairs = draw(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 2**32 - 1)), max_size=4))
        payload = b"".join(struct.pack(">HL", k, v) for k, v in pairs) + draw(st.sampled_from([b"", b"\x01"]))
    else:
        payload = draw(st.binary(max_size=20))
    return frame(ftype, flags, sid, payload)


@FUZZ
@given(st.lists(frames_strategy(), max_size=25), st.lists(st.integers(0, 100_000), max_size=6))
def test_fuzz_random_frames(harness: Harness, frames: list[bytes], cuts: list[int]) -> None:
    data = CLIENT_PREFACE + SETTINGS + b"".join(frames)
    harness.feed(chunked(data, cuts))


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_fuzz_hpack_blocks(harness: Harness, blocks: list[bytes]) -> None:
    """Random header blocks on consecutive streams; and straight into the decoder."""
    data = CLIENT_PREFACE + SETTINGS
    for i, block in enumerate(blocks):
        data += frame(FrameType.HEADERS, 0x5, 2 * i + 1, block)
    harness.feed([data])
    from sonic.server.h2.frames import ConnectionError as H2ConnectionError
    from sonic.server.h2.frames import StreamError

    decoder = HeaderDecoder(2048, 8192)
    for i, block in enumerate(blocks):
        with contextlib.suppress(H2ConnectionError, StreamError):
            decoder.request_head(block, 2 * i + 1)


def test_fuzz_valid_calls_in_random_chunkings(harness: Harness) -> None:
    """A well-formed conversation, cut at every byte: the same answers every time."""
    body = pb.ModelReadyRequest(name="identity_fp32").SerializeToString()
    data = CLIENT_PREFACE + SETTINGS
    data += frame(FrameType.HEADERS, 0x4, 1, stateless_block(request_fields("ModelReady")))
    data += frame(FrameType.DATA, 0x1, 1, grpc_message(body))
    data += frame(FrameType.HEADERS, 0x5, 3, stateless_block(request_fields("ServerLive")))
    expected = None
    for cut in range(0, len(data) + 1, 7):
        frames, _ = harness.feed([data[:cut], data[cut:]])
        kinds = [(f.type, f.sid) for f in frames if f.sid]
        if expected is None:
            expected = kinds
        assert kinds == expected
    assert expected is not None and (FrameType.DATA, 1) in expected


def test_header_helpers() -> None:
    assert parse_timeout(b"100m") == pytest.approx(0.1)
    assert parse_timeout(b"2S") == 2.0
    assert parse_timeout(b"3H") == 3 * 3600.0
    assert parse_timeout(b"5u") == pytest.approx(5e-6)
    assert parse_timeout(b"123456789S") is None  # at most 8 digits
    assert parse_timeout(b"10x") is None
    assert percent_encode("plain text: ok") == b"plain text: ok"
    assert percent_encode("100% mödel\n") == b"100%25 m%C3%B6del%0A"
    assert response_headers("gzip") is response_headers("gzip")  # computed once


# --------------------------------------------------------------------------------------------
# the battery, over real sockets
# --------------------------------------------------------------------------------------------

BATTERY_LIMITS = Limits(
    max_concurrent_streams=8,
    initial_window_size=4096,
    max_header_list_size=4096,
    max_header_block_bytes=16384,
    max_continuation_frames=8,
    max_resets_per_second=50,
    max_connection_buffer=6000,
    handshake_timeout=0.5,
    frame_timeout=0.5,
    idle_timeout=1.0,
)


class BatteryServer(Server):
    def __init__(self, repo: Path) -> None:
        super().__init__(repo, "explicit", "sonic")

    async def _start(self) -> int:
        from sonic.server.h2 import H2GrpcEdge

        self.edge = H2GrpcEdge(self.dataplane, limits=BATTERY_LIMITS)
        return await super()._start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("battery-repo")
    zoo.write_conformance_repository(repo, models=("identity_fp32", "sleep"), sleep_delay_ms=SLEEP_MS)
    srv = BatteryServer(repo)
    try:
        yield srv
    finally:
        srv.close()
    assert srv.loop_errors == []


@pytest.fixture(autouse=True)
def still_serving(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every battery test: another connection is served, and the loop saw no error."""
    yield
    if "server" not in request.fixturenames:
        return
    srv: Server = request.getfixturevalue("server")
    with grpc.insecure_channel(srv.url) as ch:
        resp = ch.unary_unary("/inference.GRPCInferenceService/ServerLive")(b"", timeout=10)
    assert pb.ServerLiveResponse.FromString(resp).live
    assert srv.loop_errors == []


class RawClient:
    """A deliberately naive HTTP/2 client on a blocking socket."""

    def __init__(self, url: str, *, preface: bool = True) -> None:
        host, port = url.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.pending = b""
        self.eof = False
        self.log: list[Frame] = []
        if preface:
            self.send(CLIENT_PREFACE + SETTINGS)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        """Send, unless the server has already closed on us (it may, mid-flood)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def frame(self, ftype: int, flags: int, sid: int, payload: bytes = b"") -> None:
        self.send(frame(ftype, flags, sid, payload))

    def headers(self, sid: int, fields: list[tuple[str, str]], *, end_stream: bool = False) -> None:
        self.frame(FrameType.HEADERS, 0x4 | int(end_stream), sid, self.encoder.encode(fields))

    def call(self, sid: int, method: str, body: bytes, **extra: str) -> None:
        self.headers(sid, request_fields(method, **extra))
        self.frame(FrameType.DATA, 0x1, sid, grpc_message(body))

    def read(self, until: Callable[[list[Frame]], bool], timeout: float = 5.0) -> list[Frame]:
        """Read until ``until(every frame so far)`` holds or the server closes; fail on timeout.

        HEADERS blocks are decoded as they arrive (all of them, in order, as HPACK requires).
        """
        deadline = time.monotonic() + timeout
        while not until(self.log):
            got, self.pending = parse_frames(self.pending)
            if got:
                for f in got:
                    if f.type == FrameType.HEADERS:
                        f.headers = {str(k): str(v) for k, v in self.decoder.decode(f.payload)}
                self.log += got
                continue
            if self.eof:
                break
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; got {[(f.type, f.sid) for f in self.log]}"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.pending += chunk
        return self.log

    def goaway(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """Read to the server's GOAWAY, then to EOF; (error code, debug data)."""
        self.read(lambda fs: any(f.type == FrameType.GOAWAY for f in fs), timeout)
        goaways = [f for f in self.log if f.type == FrameType.GOAWAY]
        assert goaways, f"no GOAWAY; got {[(f.type, f.sid) for f in self.log]}"
        self.read(lambda fs: False, timeout)  # the server closes after its GOAWAY
        assert self.eof
        g = goaways[-1].payload
        return int.from_bytes(g[4:8], "big"), g[8:]

    def rst(self, sid: int) -> int:
        def found(fs: list[Frame]) -> bool:
            return any(f.type == FrameType.RST_STREAM and f.sid == sid for f in fs)

        self.read(found)
        (f,) = [f for f in self.log if f.type == FrameType.RST_STREAM and f.sid == sid]
        return int.from_bytes(f.payload, "big")

    def response(self, sid: int) -> tuple[dict[str, str], bytes, dict[str, str]]:
        """(headers, body, trailers) of stream ``sid``; a Trailers-Only response has no body."""
        self.read(lambda fs: any(f.sid == sid and f.flags & 1 and f.type in (0, 1) for f in fs))
        blocks = [f.headers for f in self.log if f.type == FrameType.HEADERS and f.sid == sid]
        body = b"".join(f.payload for f in self.log if f.type == FrameType.DATA and f.sid == sid)
        assert blocks, "no HEADERS"
        return blocks[0], body, blocks[-1]


# -- connection-level violations: GOAWAY with the right code ------------------------------------


def test_bad_preface(server: Server) -> None:
    with RawClient(server.url, preface=False) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_first_frame_must_be_settings(server: Server) -> None:
    with RawClient(server.url, preface=False) as c:
        c.send(CLIENT_PREFACE + frame(FrameType.PING, 0, 0, b"12345678"))
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_oversized_frame(server: Server) -> None:
    with RawClient(server.url) as c:
        c.send(struct.pack(">BHBBL", 0x10, 0x0001, FrameType.DATA, 0, 1))  # 1 MiB + 1 declared
        code, debug = c.goaway()
        assert code == ErrorCode.FRAME_SIZE_ERROR
        assert b"SETTINGS_MAX_FRAME_SIZE" in debug


def test_stream_flow_control_violation(server: Server) -> None:
    with RawClient(server.url) as c:
        c.headers(1, request_fields("ServerLive"))
        c.frame(FrameType.DATA, 0, 1, b"\x00" * (BATTERY_LIMITS.initial_window_size + 1))
        assert c.rst(1) == ErrorCode.FLOW_CONTROL_ERROR
        # the connection goes on
        c.call(3, "ServerLive", b"")
        _headers, _body, trailers = c.response(3)
        assert trailers["grpc-status"] == "0"


def test_window_update_overflow_and_zero(server: Server) -> None:
    with RawClient(server.url) as c:
        c.headers(1, request_fields("ServerLive"))
        c.frame(FrameType.WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x00")
        assert c.rst(1) == ErrorCode.PROTOCOL_ERROR
        c.frame(FrameType.WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1))
        assert c.goaway()[0] == ErrorCode.FLOW_CONTROL_ERROR


def test_stream_id_reuse(server: Server) -> None:
    with RawClient(server.url) as c:
        c.call(5, "ServerLive", b"")
        assert c.response(5)[2]["grpc-status"] == "0"
        c.call(3, "ServerLive", b"")  # lower than one already used
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_even_stream_id(server: Server) -> None:
    with RawClient(server.url) as c:
        c.headers(2, request_fields("ServerLive"), end_stream=True)
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_data_on_idle_stream(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.DATA, 1, 7, grpc_message(b""))
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_continuation_flood(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.HEADERS, 0, 1, c.encoder.encode(request_fields("ServerLive")))
        for _ in range(BATTERY_LIMITS.max_continuation_frames + 5):
            c.frame(FrameType.CONTINUATION, 0, 1, b"")
        assert c.goaway()[0] == ErrorCode.ENHANCE_YOUR_CALM


def test_continuation_bytes_flood(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.HEADERS, 0, 1, c.encoder.encode(request_fields("ServerLive")))
        for _ in range(3):
            c.frame(FrameType.CONTINUATION, 0, 1, b"\x00" * 8000)
        assert c.goaway()[0] == ErrorCode.ENHANCE_YOUR_CALM


def test_continuation_out_of_place(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.CONTINUATION, 4, 1, b"")
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR
    with RawClient(server.url) as c:
        c.frame(FrameType.HEADERS, 0, 1, c.encoder.encode(request_fields("ServerLive")))
        c.frame(FrameType.PING, 0, 0, b"12345678")  # anything but CONTINUATION
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_rst_storm(server: Server) -> None:
    with RawClient(server.url) as c:
        burst = b""
        for i in range(BATTERY_LIMITS.max_resets_per_second + 10):
            sid = 2 * i + 1
            burst += frame(FrameType.HEADERS, 4, sid, stateless_block(request_fields("ModelInfer")))
            burst += frame(FrameType.RST_STREAM, 0, sid, struct.pack(">L", ErrorCode.CANCEL))
        c.send(burst)
        assert c.goaway()[0] == ErrorCode.ENHANCE_YOUR_CALM


def test_hpack_garbage(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.HEADERS, 5, 1, b"\xff\xff\xff\xff\xff\x7f")  # an index far past the table
        assert c.goaway()[0] == ErrorCode.COMPRESSION_ERROR


def test_header_block_past_the_hard_limit(server: Server) -> None:
    with RawClient(server.url) as c:
        fields = request_fields("ServerLive") + [(f"x-{i}", "v" * 900) for i in range(25)]
        block = stateless_block(fields)
        c.frame(FrameType.HEADERS, 4, 1, block[:16000])
        c.frame(FrameType.CONTINUATION, 4, 1, block[16000:])
        assert c.goaway()[0] in (ErrorCode.ENHANCE_YOUR_CALM, ErrorCode.COMPRESSION_ERROR)


def test_bad_settings(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.SETTINGS, 0, 0, struct.pack(">HL", 5, 100))  # MAX_FRAME_SIZE < 16384
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR
    with RawClient(server.url) as c:
        c.frame(FrameType.SETTINGS, 0, 0, struct.pack(">HL", 4, 2**31))  # INITIAL_WINDOW_SIZE
        assert c.goaway()[0] == ErrorCode.FLOW_CONTROL_ERROR
    with RawClient(server.url) as c:
        c.frame(FrameType.SETTINGS, 0, 0, b"\x00\x01\x00")  # not a multiple of 6
        assert c.goaway()[0] == ErrorCode.FRAME_SIZE_ERROR
    with RawClient(server.url) as c:
        c.frame(FrameType.PUSH_PROMISE, 4, 1, b"\x00\x00\x00\x02")
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


# -- slowloris ----------------------------------------------------------------------------------


def test_slowloris_silent_connection(server: Server) -> None:
    with RawClient(server.url, preface=False) as c:
        t0 = time.monotonic()
        assert c.goaway(timeout=5)[0] == ErrorCode.PROTOCOL_ERROR
        assert time.monotonic() - t0 < 3


def test_slowloris_dribbled_frame(server: Server) -> None:
    with RawClient(server.url) as c:
        data = frame(FrameType.HEADERS, 5, 1, stateless_block(request_fields("ServerLive")))
        t0 = time.monotonic()
        for b in data[:12]:  # a byte at a time, never a whole frame (the server gives up first)
            c.send(bytes([b]))
            time.sleep(0.1)
        assert c.goaway(timeout=5)[0] == ErrorCode.ENHANCE_YOUR_CALM
        assert time.monotonic() - t0 < 4


def test_idle_connection_is_closed_gracefully(server: Server) -> None:
    with RawClient(server.url) as c:
        c.call(1, "ServerLive", b"")
        assert c.response(1)[2]["grpc-status"] == "0"
        code, debug = c.goaway(timeout=5)
        assert code == ErrorCode.NO_ERROR
        assert debug == b"idle"


# -- stream-level errors: RST_STREAM or a gRPC status; the connection lives ------------------------


def test_too_many_concurrent_streams_are_refused(server: Server) -> None:
    with RawClient(server.url) as c:
        req = pb.ModelInferRequest(model_name="sleep")
        req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
        req.raw_input_contents.append(b"\x00" * 4)
        n = BATTERY_LIMITS.max_concurrent_streams
        for i in range(n + 2):
            c.call(2 * i + 1, "ModelInfer", req.SerializeToString())
        assert c.rst(2 * n + 1) == ErrorCode.REFUSED_STREAM
        assert c.rst(2 * n + 3) == ErrorCode.REFUSED_STREAM
        for i in range(n):
            assert c.response(2 * i + 1)[2]["grpc-status"] == "0"


def test_header_list_too_large(server: Server) -> None:
    with RawClient(server.url) as c:
        c.headers(1, request_fields("ServerLive", x_big="y" * 5000), end_stream=True)
        headers, _body, trailers = c.response(1)
        assert headers is trailers  # Trailers-Only
        assert trailers["grpc-status"] == "8"  # RESOURCE_EXHAUSTED
        assert "header list size" in trailers["grpc-message"]
        c.call(3, "ServerLive", b"")
        assert c.response(3)[2]["grpc-status"] == "0"


def test_connection_buffer_bound_and_unary_cardinality(server: Server) -> None:
    x = np.arange(1200, dtype=np.float32).reshape(1, -1)
    req = pb.ModelInferRequest(model_name="identity_fp32", id="x")
    req.inputs.add(name="INPUT0", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    msg = grpc_message(req.SerializeToString())
    assert 3500 < len(msg) < 6000
    with RawClient(server.url) as c:
        # two unfinished requests hold more than the connection may buffer: the second is refused
        c.headers(1, request_fields("ModelInfer"))
        c.frame(FrameType.DATA, 0, 1, msg[:3500])
        c.headers(3, request_fields("ModelInfer"))
        c.frame(FrameType.DATA, 0, 3, msg[:3500])
        _, _, trailers = c.response(3)
        assert trailers["grpc-status"] == "8"  # RESOURCE_EXHAUSTED
        assert "unfinished requests" in trailers["grpc-message"]
        # the client gives up the first: its bytes are released, the next one fits
        c.frame(FrameType.RST_STREAM, 0, 1, struct.pack(">L", ErrorCode.CANCEL))
        c.headers(5, request_fields("ModelInfer"))
        c.frame(FrameType.DATA, 0, 5, msg[:3500])
        c.frame(FrameType.DATA, 1, 5, msg[3500:])
        _, body, trailers = c.response(5)
        assert trailers["grpc-status"] == "0"
        assert pb.ModelInferResponse.FromString(body[5:]).raw_output_contents[0] == x.tobytes()
        # two messages on a unary call
        small = grpc_message(pb.ServerLiveRequest().SerializeToString())
        c.headers(7, request_fields("ServerLive"))
        c.frame(FrameType.DATA, 1, 7, small + small)
        assert c.response(7)[2]["grpc-status"] == "12"
        # and none
        c.headers(9, request_fields("ServerLive"), end_stream=True)
        assert c.response(9)[2]["grpc-status"] == "13"


def test_malformed_requests(server: Server) -> None:
    with RawClient(server.url) as c:
        c.headers(1, [(":method", "POST"), (":scheme", "http"), ("content-type", "application/grpc")])
        assert c.rst(1) == ErrorCode.PROTOCOL_ERROR  # no :path
        c.headers(3, [*request_fields(), ("Upper-Case", "x")])
        assert c.rst(3) == ErrorCode.PROTOCOL_ERROR
        c.headers(5, [("content-type", "application/grpc"), *request_fields()])
        assert c.rst(5) == ErrorCode.PROTOCOL_ERROR  # pseudo-header after a regular one
        c.headers(7, [*request_fields(), ("connection", "keep-alive")])
        assert c.rst(7) == ErrorCode.PROTOCOL_ERROR
        c.call(9, "ServerLive", b"")
        assert c.response(9)[2]["grpc-status"] == "0"


def test_data_on_closed_stream(server: Server) -> None:
    with RawClient(server.url) as c:
        c.call(1, "ServerLive", b"")
        assert c.response(1)[2]["grpc-status"] == "0"
        c.frame(FrameType.DATA, 0, 1, b"late")
        assert c.rst(1) == ErrorCode.STREAM_CLOSED


def test_ping_and_settings_are_acknowledged(server: Server) -> None:
    with RawClient(server.url) as c:
        c.frame(FrameType.PING, 0, 0, b"abcdefgh")
        frames = c.read(lambda fs: any(f.type == FrameType.PING for f in fs))
        (ping,) = [f for f in frames if f.type == FrameType.PING]
        assert ping.flags == 1 and ping.payload == b"abcdefgh"
        assert any(f.type == FrameType.SETTINGS and f.flags == 1 for f in frames)  # ACK of ours


def test_http_level_refusals(server: Server) -> None:
    with RawClient(server.url) as c:
        fields = [(k, "text/plain" if k == "content-type" else v) for k, v in request_fields()]
        c.headers(1, fields, end_stream=True)
        assert c.response(1)[0][":status"] == "415"
        fields = [(k, "GET" if k == ":method" else v) for k, v in request_fields()]
        c.headers(3, fields, end_stream=True)
        assert c.response(3)[0][":status"] == "405"
        c.call(5, "NoSuchMethod", b"")
        headers, _, trailers = c.response(5)
        assert headers[":status"] == "200" and trailers["grpc-status"] == "12"


# -- what only the wire shows -------------------------------------------------------------------


def test_trailers_only_error_with_percent_encoded_message(server: Server) -> None:
    with RawClient(server.url) as c:
        c.call(1, "ModelMetadata", pb.ModelMetadataRequest(name="mödel 100%").SerializeToString())
        headers, body, trailers = c.response(1)
        assert headers is trailers and body == b""
        assert trailers["grpc-status"] == "5"  # NOT_FOUND
        assert "m%C3%B6del 100%25" in trailers["grpc-message"]
    with grpc.insecure_channel(server.url) as ch:  # and a real client decodes it back
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelMetadata")
        with pytest.raises(grpc.RpcError) as info:
            call(pb.ModelMetadataRequest(name="mödel 100%").SerializeToString(), timeout=5)
        assert "'mödel 100%'" in info.value.details()


def test_server_side_deadline(server: Server) -> None:
    req = pb.ModelInferRequest(model_name="sleep")
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
    req.raw_input_contents.append(b"\x00" * 4)
    with RawClient(server.url) as c:
        t0 = time.monotonic()
        c.call(1, "ModelInfer", req.SerializeToString(), grpc_timeout=f"{SLEEP_MS // 4}m")
        _headers, _body, trailers = c.response(1)
        assert trailers["grpc-status"] == "4"  # DEADLINE_EXCEEDED, from the server
        assert time.monotonic() - t0 < SLEEP_MS / 1000
        c.call(3, "ModelInfer", req.SerializeToString(), grpc_timeout="5S")
        assert c.response(3)[2]["grpc-status"] == "0"
        c.call(5, "ServerLive", b"", grpc_timeout="bogus")
        assert c.response(5)[2]["grpc-status"] == "13"


def test_response_compression_on_the_wire(server: Server) -> None:
    x = np.arange(1024, dtype=np.float32).reshape(1, -1)
    req = pb.ModelInferRequest(model_name="identity_fp32", id="gz")
    req.inputs.add(name="INPUT0", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    packed = gzip.compress(req.SerializeToString())
    with RawClient(server.url) as c:
        c.headers(1, request_fields("ModelInfer", grpc_encoding="gzip", grpc_accept_encoding="identity,gzip"))
        # sent in pieces, so the server's general (buffering) path reads it
        c.frame(FrameType.DATA, 0, 1, struct.pack(">BL", 1, len(packed)))
        c.frame(FrameType.DATA, 1, 1, packed)
        headers, body, trailers = c.response(1)
        assert headers["grpc-encoding"] == "gzip"
        assert trailers["grpc-status"] == "0"
        assert body[0] == 1  # compressed flag
        resp = pb.ModelInferResponse.FromString(gzip.decompress(body[5:]))
        assert resp.id == "gz" and resp.raw_output_contents[0] == x.tobytes()
        # an encoding the server does not have
        c.headers(3, request_fields("ServerLive", grpc_encoding="snappy"), end_stream=True)
        headers, _, trailers = c.response(3)
        assert trailers["grpc-status"] == "12"
        assert "gzip" in headers["grpc-accept-encoding"]
        # a compressed flag without an encoding
        c.headers(5, request_fields("ServerLive"))
        c.frame(FrameType.DATA, 1, 5, grpc_message(gzip.compress(b""), compressed=True))
        assert c.response(5)[2]["grpc-status"] == "13"


def test_padded_and_prioritized_frames(server: Server) -> None:
    with RawClient(server.url) as c:
        block = c.encoder.encode(request_fields("ServerLive"))
        # HEADERS with PADDED and PRIORITY, DATA with PADDED
        c.frame(
            FrameType.HEADERS, 0x4 | 0x8 | 0x20, 1, bytes([3]) + b"\x00\x00\x00\x00\x10" + block + b"\x00" * 3
        )
        c.frame(FrameType.DATA, 0x1 | 0x8, 1, bytes([2]) + grpc_message(b"") + b"\x00\x00")
        assert c.response(1)[2]["grpc-status"] == "0"
        c.frame(FrameType.PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10")  # on an idle stream: fine
        c.frame(FrameType.DATA, 0x1 | 0x8, 3, bytes([9]))  # padding longer than the frame
        assert c.goaway()[0] == ErrorCode.PROTOCOL_ERROR


def test_stream_backpressure_bounds_requests_in_flight(tmp_path: Path) -> None:
    """A client that floods a ModelStreamInfer call without reading gets no more window."""
    zoo.write_conformance_repository(tmp_path, models=("sleep",), sleep_delay_ms=SLEEP_MS)
    limits = Limits(initial_window_size=1024, max_stream_in_flight=4)

    class Small(Server):
        async def _start(self) -> int:
            from sonic.server.h2 import H2GrpcEdge

            self.edge = H2GrpcEdge(self.dataplane, limits=limits)
            return await super()._start()

    srv = Small(tmp_path, "none", "sonic")
    try:
        req = pb.ModelInferRequest(model_name="sleep")
        req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
        req.raw_input_contents.append(b"\x00" * 4)
        msg = grpc_message(req.SerializeToString())
        with RawClient(srv.url) as c:
            c.headers(1, request_fields("ModelStreamInfer"))
            sent = 0
            while sent + len(msg) <= 1024:  # the whole initial window
                c.frame(FrameType.DATA, 0, 1, msg)
                sent += len(msg)

            async def inspect() -> tuple[int, int]:
                (conn,) = srv.edge.connections
                stream = conn.streams[1]
                return stream.call.stream_call.in_flight, stream.credit_owed

            deadline = time.monotonic() + 5
            while (state := srv.call(inspect()))[0] < sent // len(msg) and time.monotonic() < deadline:
                time.sleep(0.002)
            in_flight, owed = state
            assert in_flight == sent // len(msg) > limits.max_stream_in_flight
            assert owed == sent  # credit withheld while too many are in flight
            # once they complete, the responses come and so does the credit
            frames = c.read(
                lambda fs: (
                    sum(1 for f in fs if f.type == FrameType.DATA and f.sid == 1) >= in_flight
                    and any(f.type == FrameType.WINDOW_UPDATE and f.sid == 1 for f in fs)
                ),
                timeout=10,
            )
            assert any(f.type == FrameType.WINDOW_UPDATE and f.sid == 1 for f in frames)
    finally:
        srv.close()
    assert srv.loop_errors == []
