"""The process: a source, modules in order, sinks — and the streams that run them.

This is CMSSW's event loop with ``ExternalWork``, on asyncio. ``streams`` events are in
flight at once, each going through the modules in order; a SONIC module's ``acquire`` and
``produce`` are CPU work on the event loop (or in a thread pool with ``threads > 0``), and
between them the event *awaits* its inference (the client's ``ainfer``), so the loop runs the
other streams' CPU work meanwhile. With enough streams the inference latency disappears behind
the CPU work; with ``sync=True`` (or when the client runs on its CPU fallback server) the call
blocks instead, as CMS's synchronous mode::

    reader thread ─► chunks ─► queue of events (≤ streams) ─► stream 1: module, module, ...─┐
                  (one ahead)                                 stream 2: ...                   ├─► reorder
                                                              stream N: ...                   ┘   by chunk
                                                                        writer thread ─► sinks ◄─┘

Events finish out of order; a chunk is written once all its events are done and every earlier
chunk is written, so the outputs keep the source's order. At most a few chunks are held.

Exactly once: the process hands each event to each module once; retries and failover happen
inside the client, per request, and never re-run a module. A module that raises (or a client
that runs out of servers) fails the job: the sinks drop their partial output and nothing is
left under the output names.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sonic.client import Client, ClientConfig, InferResult
from sonic.protocol.errors import Code, InvalidArgument, SonicError, nearest
from sonic.workflow._columns import Column, assemble, take
from sonic.workflow._event import Chunk, Event
from sonic.workflow._modules import Module, SonicModule, module_name
from sonic.workflow._progress import Progress, progress
from sonic.workflow._report import ClientReport, ModuleReport, Report
from sonic.workflow._sinks import Sink
from sonic.workflow._sources import Source

__all__ = ["Process", "WorkflowError"]

T = TypeVar("T")

#: chunks read but not yet written, at most (one being read, some in flight, one writing)
_MAX_CHUNKS = 3


class WorkflowError(SonicError):
    """A job failed: which module, which event, and why (the cause is chained)."""


@dataclass
class _Bound:
    module: Module | SonicModule
    report: ModuleReport
    client: Client | None = None
    client_name: str = ""


@dataclass
class _ChunkState:
    chunk: Chunk
    events: list[Event]
    remaining: int


def _config(name: str, value: ClientConfig | Mapping[str, Any]) -> ClientConfig:
    if isinstance(value, ClientConfig):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"client '{name}': expected a client configuration (mapping), got {type(value).__name__}"
        )
    return ClientConfig.from_mapping(value)


class Process:
    """An event-processing job.

    ``source``: a :class:`~sonic.workflow.Source`. ``modules``: run on each event in order.
    ``sinks``: where products go. ``clients``: name -> client configuration
    (:class:`~sonic.client.ClientConfig` or a mapping of its keys); ``client``: shorthand for
    ``clients={"default": ...}``. ``streams``: events in flight. ``threads``: run modules'
    CPU work in a pool of this many threads (0: on the event loop — right for Python code that
    holds the GIL). ``sync``: blocking inference calls (no latency hiding; for comparison).
    ``max_events``: stop after this many. ``server_stats``: collect the server-side
    statistics of each client's model for the report.
    """

    def __init__(
        self,
        source: Source,
        modules: Sequence[Module | SonicModule],
        sinks: Sequence[Sink] = (),
        *,
        clients: Mapping[str, ClientConfig | Mapping[str, Any]] | None = None,
        client: ClientConfig | Mapping[str, Any] | None = None,
        streams: int = 4,
        threads: int = 0,
        sync: bool = False,
        max_events: int | None = None,
        name: str = "process",
        server_stats: bool = True,
    ) -> None:
        if not isinstance(source, Source):
            raise InvalidArgument(f"process: source must be a Source, got {type(source).__name__}")
        self.source = source
        self.modules = list(modules)
        for m in self.modules:
            if not isinstance(m, Module | SonicModule):
                raise InvalidArgument(
                    f"process: {m!r} is not a module (subclass sonic.workflow.Module or SonicModule)"
                )
        self.sinks = list(sinks)
        for s in self.sinks:
            if not isinstance(s, Sink):
                raise InvalidArgument(f"process: {s!r} is not a sink (sonic.workflow.Sink)")
        self.clients: dict[str, ClientConfig] = {
            str(k): _config(str(k), v) for k, v in (clients or {}).items()
        }
        if client is not None:
            if "default" in self.clients:
                raise InvalidArgument("process: give 'client' or a client named 'default', not both")
            self.clients["default"] = _config("default", client)
        for what, value, low in (("streams", streams, 1), ("threads", threads, 0)):
            if type(value) is not int or value < low:
                raise InvalidArgument(f"process: {what} must be an integer >= {low}, got {value!r}")
        if max_events is not None and (type(max_events) is not int or max_events < 0):
            raise InvalidArgument(f"process: max_events must be an integer >= 0, got {max_events!r}")
        self.streams = streams
        self.threads = threads
        self.sync = bool(sync)
        self.max_events = max_events
        self.name = name
        self.server_stats = server_stats
        self.index_start = 0  # job-wide index of the first event (set per Dask partition)
        #: where :meth:`run` runs by default (a YAML ``dask:`` block sets them)
        self.dask: Any = None
        self.partitions: int | None = None
        names = [module_name(m) for m in self.modules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgument(
                f"process: module names must be unique; {dupes} appear more than once (set 'name')"
            )
        for m in self.modules:
            if isinstance(m, SonicModule):
                self._client_of(m)

    # -- clients --------------------------------------------------------------------------------

    def _client_of(self, m: SonicModule) -> tuple[str, ClientConfig]:
        ref = m.client
        if ref is None:
            if "default" in self.clients:
                return "default", self.clients["default"]
            if len(self.clients) == 1:
                name = next(iter(self.clients))
                return name, self.clients[name]
            if not self.clients:
                raise InvalidArgument(
                    f"module '{module_name(m)}' is a SONIC module but the process configures no client "
                    "(give 'client' or 'clients')"
                )
            raise InvalidArgument(
                f"module '{module_name(m)}': the process has several clients {sorted(self.clients)}; "
                "say which one with the module's 'client'"
            )
        if isinstance(ref, str):
            if ref not in self.clients:
                raise InvalidArgument(
                    f"module '{module_name(m)}': no client named '{ref}'; the process has "
                    f"{sorted(self.clients)}" + nearest(ref, list(self.clients))
                )
            return ref, self.clients[ref]
        return module_name(m), _config(module_name(m), ref)

    # -- running --------------------------------------------------------------------------------

    def run(
        self,
        *,
        dask: Any = None,
        partitions: int | None = None,
        progress: bool | None = None,
    ) -> Report:
        """Run the job and return its :class:`Report`.

        ``dask``: None runs here (or where the YAML's ``dask:`` says; False: here);
        ``"local:N"`` a Dask LocalCluster of N worker processes;
        ``"tcp://host:8786"`` an existing scheduler; a ``distributed.Client`` or a cluster
        object (dask-jobqueue's ``SLURMCluster``, ``HTCondorCluster``) also work. The input is
        split by file and entry range into ``partitions`` (default: 2 per worker), and the
        outputs and reports are merged in order. ``progress``: None shows a bar when stderr is
        a terminal.
        """
        if dask is None:
            dask = self.dask
        if dask is not None and dask is not False:
            from sonic.workflow._dask import run_dask

            return run_dask(self, dask, partitions=partitions or self.partitions, show_progress=progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise InvalidArgument(
                "Process.run() was called from a running event loop; use `await process.arun()`"
            )
        return asyncio.run(self.arun(progress=progress))

    async def arun(self, *, progress: bool | None = None) -> Report:
        """:meth:`run` (here, not on Dask) from a running event loop."""
        report, _ = await _Run(self, progress).execute()
        return report


class _Run:
    """One execution of a process (one partition under Dask)."""

    def __init__(self, process: Process, show_progress: bool | None) -> None:
        self.p = process
        self.show_progress = show_progress
        self.report = Report(name=process.name, streams=process.streams, threads=process.threads)
        self.bound: list[_Bound] = []
        self.clients: dict[str, Client] = {}
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.fixed: set[str] = set()
        self.bar: Progress = Progress()
        self.sink_columns: dict[int, tuple[str, ...]] = {}

    # -- set-up and tear-down ---------------------------------------------------------------------

    async def _start_clients(self) -> None:
        configs: dict[str, ClientConfig] = {}
        for m in self.p.modules:
            if isinstance(m, SonicModule):
                name, cfg = self.p._client_of(m)
                configs[name] = cfg
                self.bound.append(_Bound(m, ModuleReport(module_name(m), "sonic"), client_name=name))
            else:
                self.bound.append(_Bound(m, ModuleReport(module_name(m), "cpu")))
        for name, cfg in configs.items():
            self.clients[name] = Client(cfg.replace(verbose=True) if self.p.server_stats else cfg)

        async def start(name: str, c: Client) -> None:
            try:
                await c.astart()
            except SonicError as exc:
                cfg = c.config
                raise WorkflowError(
                    f"client '{name}' (model '{cfg.model}', {cfg.transport}) could not start: {exc.message}",
                    exc.code,
                ) from exc

        starts = [asyncio.create_task(start(n, c)) for n, c in self.clients.items()]
        try:
            await asyncio.gather(*starts)
        except BaseException:
            for t in starts:
                t.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            raise
        for b in self.bound:
            if b.client_name:
                b.client = self.clients[b.client_name]
                assert isinstance(b.module, SonicModule)
                b.module.model_info = b.client.model_info

    async def _stop_clients(self) -> None:
        for name, c in self.clients.items():
            cfg = c.config
            rep = ClientReport(name, cfg.model, cfg.transport)
            try:
                st = c.stats
                rep.mode = c.mode
                rep.requests, rep.successes, rep.failures = st.requests, st.successes, st.failures
                rep.retries, rep.failovers, rep.fallback = st.retries, st.failovers, st.fallback
                rep.skipped = st.skipped
                rep.latency_mean, rep.latency_p50 = st.latency_mean, st.latency_p50
                rep.latency_p99, rep.latency_max = st.latency_p99, st.latency_max
                rep.by_server = dict(st.by_server)
                rep.inferences, rep.bytes_in, rep.bytes_out = st.inferences, st.bytes_in, st.bytes_out
                if self.p.server_stats and st.requests:
                    rows = await asyncio.to_thread(c.server_stats)
                    rep.server_side = [{k: getattr(r, k) for k in r.__dataclass_fields__} for r in rows]
            except SonicError:
                pass  # statistics are a courtesy; the job's result does not depend on them
            finally:
                await c.aclose()
            self.report.clients.append(rep)

    async def execute(self) -> tuple[Report, list[Any]]:
        """Run; return the report and each sink's :meth:`~Sink.close` result."""
        p = self.p
        t0 = time.perf_counter()
        source = p.source.head(p.max_events) if p.max_events is not None else p.source
        opened: list[Sink] = []
        begun: list[_Bound] = []
        results: list[Any] = []
        ok = False
        try:
            await self._start_clients()
            if p.threads:
                self.pool = concurrent.futures.ThreadPoolExecutor(
                    p.threads, thread_name_prefix="sonic-module"
                )
            for b in self.bound:
                try:
                    b.module.begin()
                except Exception as exc:
                    raise _lifecycle(b, "begin", exc) from exc
                begun.append(b)
            for s in p.sinks:
                s.open()
                opened.append(s)
            total = await asyncio.to_thread(len, source)
            self.report.setup_s = time.perf_counter() - t0
            self.bar = progress(total, p.name, self.show_progress)
            t1 = time.perf_counter()
            await self._drive(source)
            self.report.wall_s = time.perf_counter() - t1
            for s in opened:
                out = s.close()
                results.append(out)
                if out is not None and not isinstance(out, dict):
                    self.report.outputs.append(str(out))
            ok = True
        finally:
            self.bar.close()
            if not ok:
                for s in opened:
                    s.abort()
            for b in begun:
                try:
                    b.module.end()
                except Exception as exc:
                    if ok:
                        raise _lifecycle(b, "end", exc) from exc
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            await self._stop_clients()
        self.report.modules = [b.report for b in self.bound]
        self.report.finish()
        return self.report, results

    # -- the event loop ---------------------------------------------------------------------------

    async def _drive(self, source: Source) -> None:
        streams = self.p.streams
        queue: asyncio.Queue[tuple[_ChunkState, Event] | None] = asyncio.Queue(maxsize=streams)
        writes: asyncio.Queue[_ChunkState | None] = asyncio.Queue()
        pending: collections.deque[_ChunkState] = collections.deque()
        space = asyncio.Semaphore(_MAX_CHUNKS)
        active = [streams]

        def flush() -> None:
            while pending and pending[0].remaining == 0:
                writes.put_nowait(pending.popleft())

        async def reader() -> None:
            it = source.chunks(self.p.index_start)  # a generator
            try:
                while True:
                    await space.acquire()
                    t = time.perf_counter()
                    chunk = await asyncio.to_thread(next, it, None)
                    self.report.read_s += time.perf_counter() - t
                    if chunk is None:
                        space.release()
                        break
                    events = [Event(chunk, r, self.fixed) for r in range(chunk.length)]
                    state = _ChunkState(chunk, events, chunk.length)
                    pending.append(state)
                    self.report.events += chunk.length
                    if not events:
                        flush()
                    for ev in events:
                        await queue.put((state, ev))
            finally:
                with contextlib.suppress(Exception):  # "already executing" if cancelled mid-read
                    await asyncio.to_thread(it.close)  # type: ignore[attr-defined]
            for _ in range(streams):
                await queue.put(None)

        async def stream() -> None:
            me = asyncio.current_task()
            while True:
                if me is not None and me.cancelling():
                    # a cancellation that an await below swallowed (asyncio.wait_for in Python
                    # 3.11 returns the result when it races the cancel): honour it here
                    raise asyncio.CancelledError
                item = await queue.get()
                if item is None:
                    break
                state, ev = item
                await self._event(ev)
                state.remaining -= 1
                self.bar.update(1)
                if state.remaining == 0:
                    flush()
            active[0] -= 1
            if active[0] == 0:
                flush()
                writes.put_nowait(None)

        async def writer() -> None:
            while True:
                state = await writes.get()
                if state is None:
                    break
                t = time.perf_counter()
                write = asyncio.ensure_future(asyncio.to_thread(self._write, state))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    # the job is failing: let the sinks' write in progress (a thread) finish
                    # before they are aborted, or it would recreate what abort removes
                    await asyncio.gather(write, return_exceptions=True)
                    raise
                self.report.write_s += time.perf_counter() - t
                space.release()

        tasks = [asyncio.create_task(reader(), name="sonic-reader")]
        tasks += [asyncio.create_task(stream(), name=f"sonic-stream-{i}") for i in range(streams)]
        tasks.append(asyncio.create_task(writer(), name="sonic-writer"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:
                if t in done and not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    assert exc is not None
                    raise exc
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> tuple[T, float]:
        """Run ``fn(*args)``: on the loop, or in the pool; return its result and its time."""
        if self.pool is None:
            t = time.perf_counter()
            out = fn(*args)
            return out, time.perf_counter() - t

        def timed() -> tuple[T, float]:
            t = time.perf_counter()
            out = fn(*args)
            return out, time.perf_counter() - t

        return await asyncio.get_running_loop().run_in_executor(self.pool, timed)

    async def _event(self, ev: Event) -> None:
        for b in self.bound:
            rep = b.report
            m = b.module
            try:
                if isinstance(m, SonicModule):
                    keep = await self._sonic(b, m, ev)
                else:
                    keep, dt = await self._cpu(m.produce, ev)
                    rep.cpu_s += dt
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise _failed(b, ev, exc) from exc
            rep.events += 1
            if keep is False:
                ev.rejected = True
                rep.rejected += 1
                return

    async def _sonic(self, b: _Bound, m: SonicModule, ev: Event) -> bool | None:
        rep = b.report
        client = b.client
        assert client is not None
        inputs, dt_in = await self._cpu(m.acquire, ev)
        result: InferResult | list[InferResult] | None = None
        if inputs is not None:
            t = time.perf_counter()
            if self.p.sync:
                if self.pool is None:
                    result = client.infer(inputs)
                else:
                    result, _ = await self._cpu(client.infer, inputs)
            else:
                result = await client.ainfer(inputs)
            wait = time.perf_counter() - t
            rep.requests += 1
            rep.wait_s += wait
            rep.wait.add(wait)
        keep, dt_out = await self._cpu(m.produce, ev, result)
        rep.cpu_s += dt_in + dt_out
        return keep

    # -- output -----------------------------------------------------------------------------------

    def _write(self, state: _ChunkState) -> None:
        kept = [ev for ev in state.events if not ev.rejected]
        self.report.written += len(kept)
        if not kept or not self.p.sinks:
            return
        cache: dict[str, Column] = {}
        for i, sink in enumerate(self.p.sinks):
            names = self.sink_columns.get(i)
            if names is None:
                names = sink.columns if sink.columns is not None else tuple(kept[0].products)
                self.sink_columns[i] = names
            cols = {}
            for name in names:
                if name not in cache:
                    cache[name] = self._column(state, kept, name, sink)
                cols[name] = cache[name]
            sink.write(cols, len(kept))

    def _column(self, state: _ChunkState, kept: list[Event], name: str, sink: Sink) -> Column:
        chunk = state.chunk
        if name in chunk.columns and not any(name in ev.products for ev in kept):
            col = chunk.columns[name]
            if len(kept) == chunk.length:
                return col
            rows = np.fromiter((ev._row for ev in kept), dtype=np.int64, count=len(kept))
            return take(col, rows)
        values = []
        for ev in kept:
            try:
                values.append(ev[name])
            except KeyError:
                raise WorkflowError(
                    f"{sink.describe()}: column '{name}' is missing in event {ev.index} (entry "
                    f"{ev.entry} of {ev.file}); every written event needs it"
                    + nearest(name, list(ev.keys())),
                    Code.INVALID_ARG,
                ) from None
        try:
            return assemble(name, values, name in self.fixed)
        except SonicError as exc:
            raise WorkflowError(f"{sink.describe()}: {exc.message}", exc.code) from exc


def _lifecycle(b: _Bound, what: str, exc: Exception) -> WorkflowError:
    where = f"module '{b.report.name}' failed in {what}()"
    if isinstance(exc, SonicError):
        return WorkflowError(f"{where}: {exc.message}", exc.code)
    return WorkflowError(f"{where}: {type(exc).__name__}: {exc}", Code.INTERNAL)


def _failed(b: _Bound, ev: Event, exc: Exception) -> WorkflowError:
    where = f"module '{b.report.name}' failed on event {ev.index} (entry {ev.entry} of {ev.file})"
    if isinstance(exc, SonicError):
        return WorkflowError(f"{where}: {exc.message}", exc.code)
    return WorkflowError(f"{where}: {type(exc).__name__}: {exc}", Code.INTERNAL)
