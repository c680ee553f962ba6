"""One load-generating process: its own event loop, its own connections, its own records.

Where it sits: :mod:`sonic.bench.engine` starts one or more of these (``multiprocessing``,
spawned) so that the load generator is never the bottleneck: each process sends its share of
the load through a SONIC client transport (gRPC, HTTP, or the in-process "local" one) and
records, per completed request, when it was sent and when its answer was in. The parent
drives everything through a pipe:

    parent                                   worker
    ─ spec ──────────────────────────────►   connect, read metadata, shared memory,
    ◄──────────────────── ("ready", calib)   one request, codec calibration
    ─ ("start", "concurrency", n) ───────►   n closed-loop senders (coroutines, or threads
                                             with --sync)
    ─ ("start", "rate", r, distribution) ►   an open-loop scheduler: constant or Poisson gaps
    ─ ("flush",) ────────────────────────►   hands over the records since the last flush
    ◄──── ("flush", records, stats, ...)     (+ the server's statistics, worker 0 only)
    ─ ("stop",) / ("exit",) ─────────────►   drain / release shared memory, close

Requests are built once (one per input entry) and cycled, as perf_analyzer does: what is
measured is the transport and the server, not the making of inputs. Timestamps are
``time.monotonic_ns()``, which all processes of the host share.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from sonic.bench.inputs import Entry
from sonic.bench.wire import (
    GRPC_SENDERS_PER_CONNECTION,
    SyncWireSender,
    WireSender,
    grpc_request,
    http_request,
)
from sonic.client import (
    Infer,
    ModelStatistics,
    ShmRegister,
    ShmUnregister,
    SonicError,
    Statistics,
    Transport,
)
from sonic.protocol.errors import Unsupported
from sonic.protocol.types import InferRequest, InputTensor, RequestedOutput, ShmRef

__all__ = ["WorkerSpec", "make_transport", "sum_statistics", "worker_main"]

#: A request sent this much later than its schedule (request-rate mode) counts as delayed.
DELAY_NS = 2_000_000
#: Error messages kept per flush (the count is always exact).
_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs (pickled to the child)."""

    index: int
    protocol: str  # "grpc", "http", "local"
    url: str  # "host:port"; unused by "local"
    repository: tuple[str, ...]  # "local" only
    model: str
    version: str
    entries: tuple[Entry, ...]
    outputs: tuple[tuple[str, int], ...]  # (name, byte size per request) for shared memory
    shared_memory: str = "none"  # "none" | "system"
    compression: str | None = None
    input_format: str = "binary"  # "binary" | "json" (HTTP only)
    output_format: str = "binary"
    sync: bool = False
    timeout: float = 30.0
    read_stats: bool = False
    seed: int = 0
    #: "wire": pre-encoded requests (sonic.bench.wire); "client": the SONIC client's transports
    engine: str = "wire"
    grpc_senders_per_connection: int = GRPC_SENDERS_PER_CONNECTION


def make_transport(protocol: str, url: str, repository: tuple[str, ...] = (), model: str = "") -> Transport:
    """A SONIC client transport to one server (the request engine of ``--engine client``,
    and what every worker uses for metadata, statistics and shared-memory registration)."""
    if protocol == "grpc":
        from sonic.client import GrpcTransport

        return GrpcTransport(url)
    if protocol == "http":
        from sonic.client import HttpTransport

        return HttpTransport(url)
    if protocol == "local":
        from pathlib import Path

        from sonic.client import LocalTransport

        return LocalTransport([Path(r) for r in repository], [model] if model else [])
    raise ValueError(f"unknown protocol {protocol!r}; expected grpc, http or local")


def sum_statistics(stats: list[ModelStatistics], model: str) -> ModelStatistics:
    """The statistics of every version of ``model`` added up."""
    total = ModelStatistics(model, "")
    names = [n for n in ModelStatistics.__dataclass_fields__ if n not in ("name", "version")]
    for s in stats:
        if s.name != model:
            continue
        total = ModelStatistics(model, "", *(getattr(total, n) + getattr(s, n) for n in names))
    return total


def _requests(
    spec: WorkerSpec, shm: tuple[str, list[list[int]], str, list[int]] | None
) -> list[InferRequest]:
    """One request per entry; with shared memory, the tensors are references into the
    input region and every output goes to its slice of the output region."""
    out = []
    for k, entry in enumerate(spec.entries):
        inputs = []
        for j, (name, arr) in enumerate(entry.items()):
            datatype = _datatype(arr)
            if shm is None:
                inputs.append(InputTensor(name, datatype, tuple(arr.shape), arr))
            else:
                region, offsets, _, _ = shm
                nbytes = _nbytes(arr)
                inputs.append(
                    InputTensor(name, datatype, tuple(arr.shape), None, ShmRef(region, offsets[k][j], nbytes))
                )
        outputs: list[RequestedOutput] = []
        if shm is not None:
            _, _, out_region, out_offsets = shm
            outputs = [
                RequestedOutput(name, shm=ShmRef(out_region, off, size))
                for (name, size), off in zip(spec.outputs, out_offsets, strict=True)
            ]
        elif spec.protocol == "http" and spec.output_format == "json":
            outputs = [RequestedOutput(name, binary_data=False) for name, _ in spec.outputs]
        out.append(InferRequest(spec.model, spec.version, inputs=inputs, outputs=outputs))
    return out


def _payload(spec: WorkerSpec, req: InferRequest) -> Any:
    """The bytes of one request, encoded once by the SONIC codecs (see :mod:`.wire`)."""
    from urllib.parse import quote

    host, _, port = spec.url.rpartition(":")
    if spec.protocol == "grpc":
        from sonic.protocol import grpc_codec

        message = grpc_codec.encode_infer_request(req).SerializeToString()
        return grpc_request(spec.url, "/inference.GRPCInferenceService/ModelInfer", message, spec.compression)
    from sonic.protocol import http_codec

    chunks, header_length = http_codec.encode_infer_request(
        req, binary_inputs=spec.input_format != "json", binary_outputs=spec.output_format != "json"
    )
    body = b"".join(bytes(c) for c in chunks)
    headers = {"Content-Type": "application/json" if header_length is None else "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    if spec.compression:
        wbits = 31 if spec.compression == "gzip" else 15
        c = zlib.compressobj(1, zlib.DEFLATED, wbits)
        body = c.compress(body) + c.flush()
        headers["Content-Encoding"] = headers["Accept-Encoding"] = spec.compression
    else:
        headers["Accept-Encoding"] = "identity"
    path = "/v2/models/" + quote(spec.model, safe="")
    if spec.version:
        path += "/versions/" + quote(spec.version, safe="")
    return http_request(host.strip("[]") or "localhost", int(port), path + "/infer", headers, body)


def bytes_needed(sizes: list[int], align: int = 64) -> tuple[list[int], int]:
    """Offsets (each aligned to ``align`` bytes) of tensors of ``sizes`` bytes laid out back
    to back in one shared-memory region, and the region's size."""
    offsets: list[int] = []
    pos = 0
    for n in sizes:
        offsets.append(pos)
        pos += (max(n, 1) + align - 1) // align * align
    return offsets, pos


def _datatype(arr: np.ndarray[Any, Any]) -> str:
    from sonic.protocol.datatypes import from_numpy

    return "BYTES" if arr.dtype == np.object_ else from_numpy(arr.dtype)


def _nbytes(arr: np.ndarray[Any, Any]) -> int:
    if arr.dtype == np.object_:
        return sum(4 + len(v) for v in arr.reshape(-1))
    return int(arr.nbytes)


class Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.transport: Transport | None = None
        self.ops: list[Infer] = []
        self.records: deque[tuple[int, int]] = deque()
        self.failures: deque[int] = deque()
        self.error_samples: list[str] = []
        self.delayed = 0
        self.running = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.outstanding = 0
        self.regions: list[str] = []
        self.shm_pool: Any = None
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.wire: WireSender | None = None
        self.sync_wire: SyncWireSender | None = None

    # -- setup ---------------------------------------------------------------------------------

    async def setup(self) -> dict[str, float]:
        spec = self.spec
        self.transport = make_transport(spec.protocol, spec.url, spec.repository, spec.model)
        shm = await self._setup_shm() if spec.shared_memory == "system" else None
        requests = _requests(spec, shm)
        self.ops = [Infer(r, spec.timeout or None, spec.compression) for r in requests]
        # one request through, so that connections exist and errors show up now (with JSON
        # inputs, which only the wire sends, this one goes as binary: same server, same model)
        response = await self.transport.handle_async(self.ops[0])
        if self.uses_wire:
            payloads = [_payload(spec, r) for r in requests]
            args = (spec.protocol, spec.url, payloads, spec.timeout or None, spec.grpc_senders_per_connection)
            # the open loop (request-rate mode) is asyncio's in both modes; its connection opens
            # with its first request
            self.wire = WireSender(*args)
            if spec.sync:  # closed loop: blocking threads (perf_analyzer's default mode)
                self.sync_wire = SyncWireSender(*args)
                await asyncio.to_thread(self.sync_wire.sender(0), 0)
            else:
                await self.wire.send(0)
        return _calibrate(spec, requests[0], response)

    @property
    def uses_wire(self) -> bool:
        s = self.spec
        return s.engine == "wire" and s.protocol in ("grpc", "http")

    async def _setup_shm(self) -> tuple[str, list[list[int]], str, list[int]]:
        from sonic.client import ShmPool

        spec = self.spec
        assert self.transport is not None
        if spec.protocol == "local":
            raise Unsupported("--shared-memory system needs a server (grpc or http), not the local transport")
        if not self.transport.same_host:
            raise Unsupported(f"--shared-memory system needs the server on this host; {spec.url} is not")
        pool = ShmPool()
        self.shm_pool = pool
        sizes = [_nbytes(a) for e in spec.entries for a in e.values()]
        offsets, total = bytes_needed(sizes)
        in_slot = pool.acquire(total)
        per_entry: list[list[int]] = []
        i = 0
        for entry in spec.entries:
            row = []
            for arr in entry.values():
                in_slot.write(offsets[i], _datatype(arr), arr)
                row.append(offsets[i])
                i += 1
            per_entry.append(row)
        out_offsets, out_total = bytes_needed([size for _, size in spec.outputs])
        # one output region shared by all requests of this process, as perf_analyzer does:
        # the outputs are not read, only their transfer is measured
        out_slot = pool.acquire(out_total)
        for slot in (in_slot, out_slot):
            await self.transport.handle_async(ShmRegister(slot.name, slot.key, slot.size, timeout=10.0))
            self.regions.append(slot.name)
        return in_slot.name, per_entry, out_slot.name, out_offsets

    async def cleanup(self) -> None:
        if self.wire is not None:
            with contextlib.suppress(Exception):
                await self.wire.close()
        if self.sync_wire is not None:
            self.sync_wire.close()
        t = self.transport
        if t is None:
            return
        for name in self.regions:
            with contextlib.suppress(SonicError, OSError):
                await t.handle_async(ShmUnregister(name, timeout=5.0))
        if self.shm_pool is not None:
            from sonic.client import ShmPool

            ShmPool.finish(self.shm_pool.drain())
        with contextlib.suppress(Exception):
            await t.aclose()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(t.close)

    # -- load ----------------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self.failures.append(time.monotonic_ns())
        if len(self.error_samples) < _ERROR_SAMPLES:
            msg = exc.message if isinstance(exc, SonicError) else f"{type(exc).__name__}: {exc}"
            self.error_samples.append(msg)

    async def _closed_loop(self, first: int, sender: int) -> None:
        """One closed-loop sender: ``first`` is its first entry, ``sender`` its number
        across all processes (which sets its gRPC connection with the wire engine)."""
        assert self.transport is not None
        if self.wire is not None:
            return await self._closed_loop_wire(first, self.wire.sender(sender))
        handle = self.transport.handle_async
        ops = self.ops
        n = len(ops)
        i = first
        append = self.records.append
        clock = time.monotonic_ns
        while self.running:
            op = ops[i % n]
            i += 1
            t0 = clock()
            try:
                await handle(op)
            except SonicError as exc:
                self._failed(exc)
                await asyncio.sleep(0.001)  # a refusing server must not spin this loop
                continue
            append((t0, clock()))

    async def _closed_loop_wire(self, first: int, send: Callable[[int], Awaitable[None]]) -> None:
        n = len(self.ops)
        i = first
        append = self.records.append
        clock = time.monotonic_ns
        while self.running:
            k = i % n
            i += 1
            t0 = clock()
            try:
                await send(k)
            except SonicError as exc:
                self._failed(exc)
                await asyncio.sleep(0.001)
                continue
            append((t0, clock()))

    def _sync_loop(self, first: int, sender: int) -> None:
        """One blocking closed-loop sender (a thread): the wire's, or the SONIC client's."""
        assert self.transport is not None
        if self.sync_wire is not None:
            send = self.sync_wire.sender(sender)
        else:
            handle, ops = self.transport.handle, self.ops

            def send(k: int) -> None:
                handle(ops[k])

        n = len(self.ops)
        i = first
        append = self.records.append
        clock = time.monotonic_ns
        stop = self.stop_event
        while not stop.is_set():
            k = i % n
            i += 1
            t0 = clock()
            try:
                send(k)
            except SonicError as exc:
                self._failed(exc)
                time.sleep(0.001)
                continue
            append((t0, clock()))

    async def _one(self, k: int) -> None:
        assert self.transport is not None
        t0 = time.monotonic_ns()
        try:
            if self.wire is not None:
                await self.wire.send(k)
            else:
                await self.transport.handle_async(self.ops[k])
        except SonicError as exc:
            self._failed(exc)
        else:
            self.records.append((t0, time.monotonic_ns()))
        finally:
            self.outstanding -= 1

    async def _open_loop(self, rate: float, distribution: str, max_outstanding: int) -> None:
        """Send at ``rate`` requests/s whatever the answers do (open loop)."""
        rng = random.Random(self.spec.seed * 7919 + self.spec.index)
        interval = 1e9 / rate
        ops = self.ops
        n = len(ops)
        i = 0
        clock = time.monotonic_ns
        # workers start at different phases so that constant schedules interleave
        due = float(clock()) + interval * rng.random()
        while self.running:
            now = clock()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
                continue
            while self.outstanding >= max_outstanding and self.running:
                await asyncio.sleep(0.0005)
            if not self.running:
                break
            if clock() - due > DELAY_NS:
                self.delayed += 1
            self.outstanding += 1
            task = asyncio.get_running_loop().create_task(self._one(i % n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            i += 1
            due += interval if distribution == "constant" else rng.expovariate(1.0) * interval

    def start(
        self, kind: str, value: float, distribution: str, max_outstanding: int, first_sender: int = 0
    ) -> None:
        self.running = True
        self.stop_event.clear()
        self.delayed = 0
        loop = asyncio.get_running_loop()
        if kind == "concurrency":
            n = int(value)
            if self.spec.sync:
                self.threads = [
                    threading.Thread(
                        target=self._sync_loop, args=(k, first_sender + k), daemon=True, name=f"bench-{k}"
                    )
                    for k in range(n)
                ]
                for t in self.threads:
                    t.start()
            else:
                for k in range(n):
                    task = loop.create_task(self._closed_loop(k, first_sender + k))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        elif value > 0:
            task = loop.create_task(self._open_loop(value, distribution, max_outstanding))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Stop sending; wait for the requests in flight (bounded by the timeout)."""
        self.running = False
        self.stop_event.set()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.spec.timeout + 5)
        for t in self.threads:
            await asyncio.to_thread(t.join, self.spec.timeout + 5)
        self.threads = []
        self.records.clear()
        self.failures.clear()
        self.error_samples = []

    # -- reporting -------------------------------------------------------------------------------

    async def flush(self) -> tuple[Any, ...]:
        records = self.records
        n = len(records)
        pairs = [records.popleft() for _ in range(n)]
        failures = self.failures
        fails = [failures.popleft() for _ in range(len(failures))]
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        errors, self.error_samples = self.error_samples, []
        stats = None
        if self.spec.read_stats:
            assert self.transport is not None
            try:
                got = await self.transport.handle_async(
                    Statistics(self.spec.model, self.spec.version, timeout=10.0)
                )
                stats = sum_statistics(got, self.spec.model)
            except SonicError as exc:
                errors.append(f"statistics: {exc.message}")
        delayed, self.delayed = self.delayed, 0
        return ("flush", arr, np.array(fails, dtype=np.int64), errors, delayed, stats, time.monotonic_ns())

    # -- the control loop --------------------------------------------------------------------------

    def _reader(self, loop: asyncio.AbstractEventLoop) -> None:
        """A thread that blocks on the pipe and hands each message to the loop. (Not the
        loop's add_reader: uvloop would make the socket non-blocking, and a large flush
        could then not be sent in one piece.)"""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                msg = ("exit",)
            try:
                loop.call_soon_threadsafe(self.inbox.put_nowait, msg)
            except RuntimeError:  # the loop is closed
                return
            if msg[0] == "exit":
                return

    async def main(self) -> None:
        try:
            calib = await self.setup()
        except BaseException as exc:  # reported to the parent, which raises it
            msg = exc.message if isinstance(exc, SonicError) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self.conn.send(("error", msg))
            await self.cleanup()
            return
        self.conn.send(("ready", calib))
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._reader, args=(loop,), daemon=True, name="bench-control").start()
        try:
            while True:
                msg = await self.inbox.get()
                cmd = msg[0]
                if cmd == "start":
                    self.start(*msg[1:])
                    self.conn.send(("started",))
                elif cmd == "flush":
                    self.conn.send(await self.flush())
                elif cmd == "stop":
                    await self.stop()
                    self.conn.send(("stopped",))
                elif cmd == "exit":
                    break
        finally:
            await self.stop()
            await self.cleanup()
            with contextlib.suppress(Exception):
                self.conn.send(("bye",))


def _calibrate(spec: WorkerSpec, request: InferRequest, response: Any) -> dict[str, float]:
    """Client send and receive costs (µs per request): the codec work of one request and
    of its answer, timed here in a short loop, as perf_analyzer reports its (un)marshalling.
    The transport's framing and the kernel's socket work are in "network + server"."""
    if spec.protocol == "local":
        return {"send_us": 0.0, "recv_us": 0.0}
    try:
        send, recv = _codec_pair(spec, request, response)
        return {"send_us": _time_us(send), "recv_us": _time_us(recv)}
    except Exception:  # calibration is a nicety; never fail the run for it
        return {"send_us": 0.0, "recv_us": 0.0}


def _codec_pair(
    spec: WorkerSpec, request: InferRequest, response: Any
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    comp = spec.compression
    if spec.protocol == "grpc":
        from tritonclient.grpc import service_pb2 as pb

        from sonic.protocol import grpc_codec

        wire = grpc_codec.encode_infer_response(response).SerializeToString()
        shm_out = {o.name: o.shm for o in request.outputs if o.shm is not None}
        if comp:
            wire_c = zlib.compress(wire, 1)

            def recv() -> Any:
                msg = pb.ModelInferResponse.FromString(zlib.decompress(wire_c))
                return grpc_codec.decode_infer_response(msg, shm_out)

            def send() -> Any:
                return zlib.compress(grpc_codec.encode_infer_request(request).SerializeToString(), 1)
        else:

            def recv() -> Any:
                return grpc_codec.decode_infer_response(pb.ModelInferResponse.FromString(wire), shm_out)

            def send() -> Any:
                return grpc_codec.encode_infer_request(request).SerializeToString()

        return send, recv
    from sonic.protocol import http_codec

    binary_in = spec.input_format != "json"
    binary_out = spec.output_format != "json"
    chunks, hl = http_codec.encode_infer_response(response, default_binary=binary_out)
    body = b"".join(bytes(c) for c in chunks)
    body_c = zlib.compress(body, 1) if comp else body

    def send_http() -> Any:
        parts, _ = http_codec.encode_infer_request(
            request, binary_inputs=binary_in, binary_outputs=binary_out
        )
        data = b"".join(bytes(p) for p in parts)
        return zlib.compress(data, 1) if comp else data

    def recv_http() -> Any:
        return http_codec.decode_infer_response(zlib.decompress(body_c) if comp else body, hl)

    return send_http, recv_http


def _time_us(fn: Callable[[], Any]) -> float:
    fn()
    n, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < 0.02 and n < 2000:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
    return elapsed / max(n, 1) * 1e6


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Run one worker on ``conn`` until the parent says exit (or goes away)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    loop: asyncio.AbstractEventLoop
    if spec.protocol == "http":
        # the client's HTTP/1.1 protocol asserts asyncio.Transport, which uvloop's are not
        loop = asyncio.new_event_loop()
    else:
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(Worker(spec, conn).main())
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        conn.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m sonic.bench.worker FD``: the parent's end of a socket pair is FD; the
    first message on it is the :class:`WorkerSpec`. (A plain subprocess, not
    multiprocessing's spawn, so that the parent's ``__main__`` is never re-imported.)"""
    # run as __main__, this module's classes are not the ones the spec was pickled with
    import importlib
    import sys

    worker = importlib.import_module("sonic.bench.worker")

    args = sys.argv[1:] if argv is None else argv
    conn = Connection(int(args[0]))
    spec = conn.recv()
    if not isinstance(spec, worker.WorkerSpec):
        raise SystemExit("sonic.bench.worker: the first message must be a WorkerSpec")
    worker.worker_main(spec, conn)


if __name__ == "__main__":
    main()
