"""The SONIC client: one API for every transport, with retries, a server pool and a fallback.

Where it sits: a workflow module (or any code) hands the client a mapping of input arrays; the
client checks them against the model's metadata, picks a server, sends the request over the
configured transport, retries where a retry can help, and returns the output arrays::

    inputs ─► prepare (check, batch) ─► pool.select ─► [shm slot] ─► transport.handle ─► result
                                            ▲                                  │ retryable failure
                                            └── same server (allowed_tries) ◄──┘ then the next
                                                server with the model, then the fallback server

Three calling styles share that path: :meth:`Client.infer` (blocking), :meth:`Client.ainfer`
(asyncio, on the caller's loop) and :meth:`Client.infer_callback` (returns at once; the
callback runs on the client's own event-loop thread when the answer is in).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

import numpy as np

from sonic.client._config import ClientConfig
from sonic.client._errors import NoServerAvailable, ServerUnreachable, retryable
from sonic.client._fallback import FallbackServer
from sonic.client._inputs import NO_PARAMS, Checker, Prepared, check_outputs, output_nbytes
from sonic.client._pool import Endpoint, ServerPool, ServerState
from sonic.client._shm import ShmPool, ShmSlot, bytes_needed
from sonic.client._stats import ClientStats, ServerSideStats, StatsRecorder, tensor_nbytes
from sonic.client._transport import (
    Infer,
    Metadata,
    RepositoryIndex,
    ShmRegister,
    ShmUnregister,
    Statistics,
    Transport,
)
from sonic.client._types import InferResult, ModelInfo, ModelStatistics, empty_like
from sonic.protocol.errors import Code, InvalidArgument, NotFound, SonicError, nearest
from sonic.protocol.types import InferRequest, InferResponse, RequestedOutput, ShmRef

__all__ = ["Client"]

log = logging.getLogger("sonic.client")

T = TypeVar("T")
Inputs = Mapping[str, Any]
Callback = Callable[[Any, SonicError | None], None]
#: Seconds allowed to control calls (discovery, metadata, statistics, shared-memory
#: registration): at least this, whatever the per-inference timeout.
_CONTROL_TIMEOUT = 10.0
_NO_SHM: dict[str, int] = {}


def _make_transport(kind: str, address: str) -> Transport:
    if kind == "grpc":
        from sonic.client._grpc import GrpcTransport

        return GrpcTransport(address)
    from sonic.client._http import HttpTransport

    return HttpTransport(address)


@dataclass(slots=True)
class _Plan:
    """One request ready to go: the plain request, and what shared memory would need."""

    request: InferRequest
    prepared: Prepared
    wanted: tuple[str, ...]
    shm_outputs: dict[str, int]  # output name -> byte size (known-size outputs)


@dataclass(slots=True)
class _ShmCall:
    slot: ShmSlot
    request: InferRequest
    outputs: dict[str, tuple[int, int]]  # name -> (offset, byte size)


class _Tries:
    """The retry policy of one request: which server next, and the bookkeeping."""

    __slots__ = ("client", "endpoint", "errors", "failovers", "here", "last", "t0", "tried", "tries")

    def __init__(self, client: Client, t0: float, endpoint: Endpoint | None, tries: int = 0) -> None:
        self.client = client
        self.t0 = t0
        self.tried: list[Endpoint] = []
        self.tries = tries
        self.here = tries
        self.failovers = 0
        self.errors: list[str] = []
        self.last: SonicError | None = None
        self.endpoint = endpoint

    def failed(self, exc: SonicError) -> bool:
        """Book a failed attempt on ``self.endpoint``; True to try the same server again.
        Raises at once for a failure that no retry can fix."""
        ep = self.endpoint
        assert ep is not None
        pool = self.client._pool
        if not retryable(exc):
            pool.release(ep, None)
            raise exc
        self.errors.append(f"{ep.address}: {exc.message}")
        self.last = exc
        log.debug("try %d on %s failed: %s", self.tries, ep.address, exc.message)
        if not isinstance(exc, ServerUnreachable) and self.here < self.client.config.allowed_tries:
            return True
        pool.release(ep, False)
        self.tried.append(ep)
        self.endpoint = pool.select(self.tried)
        self.here = 0
        if self.endpoint is not None:
            self.failovers += 1
            if self.client.config.verbose:
                log.info("failing over from %s to %s", ep.address, self.endpoint.address)
        return False

    def failed_or_raise(self, exc: SonicError) -> None:
        """:meth:`failed`, counting the request as failed when it raises."""
        try:
            self.failed(exc)
        except SonicError:
            self.record(False)
            raise

    def need_fallback(self) -> bool:
        """No server left: whether the fallback server is the next try."""
        c = self.client
        fb = c._pool.fallback
        return c.config.fallback and (fb is None or fb not in self.tried)

    def use_fallback(self) -> None:
        fb = self.client._pool.fallback
        assert fb is not None
        with self.client._pool._lock:
            fb.in_flight += 1
        self.endpoint = fb
        self.failovers += 1
        log.warning("every server failed for model '%s': trying the fallback server", self.client.model)

    def give_up(self) -> NoServerAvailable:
        c = self.client
        tried = "; ".join(self.errors[-6:])
        err = NoServerAvailable(
            f"model '{c.model}': no server answered after {self.tries} tries "
            f"(allowed_tries={c.config.allowed_tries} per server"
            f"{', fallback enabled' if c.config.fallback else ', no fallback configured'}): {tried}",
            self.last,
            self.tries,
        )
        err.__cause__ = self.last
        return err

    def record(self, ok: bool, server: str = "", fallback: bool = False) -> float:
        latency = time.perf_counter() - self.t0
        self.client._stats.record(ok, latency, self.tries, self.failovers, server, fallback)
        return latency


class Client:
    """A client for one model, on one transport, over a pool of servers.

    Build it from a :class:`ClientConfig`, a mapping of the same keys, or keywords::

        client = Client.from_config({"model": "mlp", "transport": "grpc",
                                     "servers": ["localhost:8001"]})
        with client:
            out = client.infer({"input": batch})["output"]

    Inputs are a mapping name -> array (rectangular batch: the outer dimension is the batch)
    or a list of such mappings (ragged batch: one request each, results in the same order).
    The client starts (discovery, model metadata, fallback server if needed) on first use or
    on ``with``/``start()``, and must be closed (``with``, ``close()``, or ``async with`` /
    ``aclose()`` when used from asyncio).
    """

    def __init__(self, config: ClientConfig | Mapping[str, Any] | None = None, **options: Any) -> None:
        if config is None:
            config = ClientConfig.from_mapping(options)
        elif isinstance(config, Mapping):
            config = ClientConfig.from_mapping({**config, **options})
        elif options:
            config = config.replace(**options)
        self.config: ClientConfig = config
        self.model = config.model
        self._control_timeout = max(config.timeout, _CONTROL_TIMEOUT)
        self._timeout = config.timeout
        self._compression = config.compression
        self._pool = ServerPool([], config.preferred_server, config.backoff, config.backoff_max)
        self._info: ModelInfo | None = None
        self._checker = Checker(None, config.validate)
        self._stats = StatsRecorder()
        self._shm = ShmPool() if config.shared_memory and config.transport != "local" else None
        self._fallback: FallbackServer | None = None
        self._baseline: dict[str, ModelStatistics] = {}
        self._start_lock = threading.Lock()
        self._fallback_lock = threading.Lock()
        self._started = False
        self._closed = False
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        self._engine_thread: threading.Thread | None = None
        self._engine_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ClientConfig | Mapping[str, Any], **options: Any) -> Client:
        """A client from a :class:`ClientConfig` or a mapping of its keys (plus overrides)."""
        return cls(config, **options)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Client:
        """Discover the servers that have the model, read its metadata, and start the fallback
        server if none has it. Idempotent; the first call does it (blocking)."""
        if self._started:
            return self
        with self._start_lock:
            if self._closed:
                raise ServerUnreachable(f"the client of model '{self.model}' is closed")
            if not self._started:
                try:
                    self._start()
                except BaseException:
                    self._close_transports()
                    raise
                self._started = True
        return self

    async def astart(self) -> Client:
        """:meth:`start` for asyncio callers (runs it in a worker thread)."""
        if not self._started:
            await asyncio.to_thread(self.start)
        return self

    def _start(self) -> None:
        cfg = self.config
        if cfg.transport == "local":
            from sonic.client._local import LocalTransport

            self._pool.endpoints = [Endpoint(LocalTransport(cfg.repository, [self.model]))]
        else:
            self._pool.endpoints = [Endpoint(_make_transport(cfg.transport, a)) for a in cfg.servers]
            if cfg.discovery:
                self._discover()
        with_model = [e for e in self._pool.endpoints if e.has_model]
        if not with_model:
            if not cfg.fallback:
                raise self._not_found()
            self._start_fallback(primary=True)
        self._info = self._fetch_info()
        self._checker = Checker(self._info, cfg.validate)
        if cfg.outputs:
            check_outputs(self._info, cfg.outputs)
        if cfg.verbose:
            self._baseline = self._snapshot()

    def _discover(self) -> None:
        """RepositoryIndex on every server (in parallel); a server whose index fails is
        skipped, as a load-shedding server asks (CMS, SuperSONIC)."""
        timeout = self._control_timeout

        def index(ep: Endpoint) -> None:
            try:
                rows = ep.transport.handle(RepositoryIndex(timeout=timeout))
            except SonicError as exc:
                ep.has_model, ep.skipped = False, f"RepositoryIndex failed: {exc.message}"
                log.warning("skipping server %s: %s", ep.address, ep.skipped)
                return
            ep.models = tuple(sorted({r.name for r in rows}))
            ep.has_model = any(
                r.name == self.model
                and r.state == "READY"
                and (not self.config.model_version or r.version == self.config.model_version)
                for r in rows
            )

        eps = self._pool.endpoints
        if len(eps) == 1:
            index(eps[0])
            return
        threads = [threading.Thread(target=index, args=(ep,), name="sonic-discovery") for ep in eps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _not_found(self) -> SonicError:
        eps = self._pool.endpoints
        reached = [e for e in eps if not e.skipped]
        if not reached:
            why = "; ".join(f"{e.address}: {e.skipped}" for e in eps)
            return NoServerAvailable(
                f"model '{self.model}': no configured server answered its RepositoryIndex ({why}) "
                "and no fallback is configured (set 'fallback: true' and 'repository')"
            )
        known = sorted({m for e in reached for m in e.models})
        where = ", ".join(e.address for e in reached)
        return NotFound(
            f"no server has model '{self.model}' ready (asked {where})" + nearest(self.model, known)
            + "; configure 'fallback: true' with a 'repository' to serve it locally"
        )

    def _start_fallback(self, primary: bool) -> Endpoint:
        cfg = self.config
        with self._fallback_lock:
            if self._pool.fallback is not None:
                return self._pool.fallback
            if self._closed:
                raise ServerUnreachable(f"the client of model '{self.model}' is closed")
            self._fallback = FallbackServer(
                cfg.repository, self.model, cfg.fallback_flags, cfg.startup_timeout
            )
            grpc_addr, http_addr = self._fallback.start()
            address = grpc_addr if cfg.transport == "grpc" else http_addr
            ep = Endpoint(_make_transport(cfg.transport, address))
            self._pool.add_fallback(ep, primary)
            if primary:
                log.warning(
                    "no configured server has model '%s': using the fallback server at %s "
                    "(synchronous mode)", self.model, address,
                )
            return ep

    def _fetch_info(self) -> ModelInfo:
        op = Metadata(self.model, self.config.model_version, timeout=self._control_timeout)
        errors: list[str] = []
        eps = [e for e in self._pool.endpoints if e.has_model]
        if self._pool.fallback is not None:
            eps.append(self._pool.fallback)
        for ep in eps:
            try:
                return ep.transport.handle(op)
            except SonicError as exc:
                if not retryable(exc):
                    raise
                errors.append(f"{ep.address}: {exc.message}")
        raise NoServerAvailable(
            f"model '{self.model}': no server answered its metadata request: " + "; ".join(errors)
        )

    def close(self) -> None:
        """Release everything: verbose report, shared-memory regions, connections, the
        client's event-loop thread and the fallback server. Idempotent."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._started and self.config.verbose:
                for s in self.server_stats():
                    log.info("server-side statistics: %s", s.line())
            self._release_shm()
        finally:
            self._stop_engine()
            self._close_transports()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio callers: releases this loop's connections first."""
        eps = list(self._pool.endpoints)
        if self._pool.fallback is not None:
            eps.append(self._pool.fallback)
        for ep in eps:
            with contextlib.suppress(Exception):
                await ep.transport.aclose()
        await asyncio.to_thread(self.close)

    def _close_transports(self) -> None:
        eps = list(self._pool.endpoints)
        if self._pool.fallback is not None:
            eps.append(self._pool.fallback)
        for ep in eps:
            try:
                ep.transport.close()
            except Exception:  # closing must go on for the others
                log.exception("closing the transport to %s failed", ep.address)
        if self._fallback is not None:
            self._fallback.stop()

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return await self.astart()

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- what the client knows ------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo:
        """The model's inputs, outputs and max_batch_size, as the server describes them."""
        self.start()
        assert self._info is not None
        return self._info

    @property
    def mode(self) -> str:
        """"async", or "sync" while the client runs on the CPU fallback server (no configured
        server has the model), as in CMS: then :meth:`infer_callback` completes before it
        returns and :meth:`ainfer` runs the call in the caller's thread, blocking its loop,
        so that the job and the model do not compete for the same cores."""
        return "sync" if self._pool.fallback_primary else "async"

    @property
    def servers(self) -> list[ServerState]:
        """The servers and what the client thinks of them (health, requests in flight)."""
        return self._pool.states()

    @property
    def stats(self) -> ClientStats:
        """Client-side counters and latency percentiles (a snapshot)."""
        return self._stats.snapshot()

    def _snapshot(self) -> dict[str, ModelStatistics]:
        out: dict[str, ModelStatistics] = {}
        eps = [e for e in self._pool.endpoints if e.has_model]
        if self._pool.fallback is not None:
            eps.append(self._pool.fallback)
        op = Statistics(self.model, self.config.model_version, timeout=self._control_timeout)
        for ep in eps:
            try:
                stats = ep.transport.handle(op)
            except SonicError as exc:
                log.debug("statistics of %s unavailable: %s", ep.address, exc.message)
                continue
            if stats:
                out[ep.address] = stats[-1]
        return out

    def server_stats(self) -> list[ServerSideStats]:
        """Server-side statistics of the model on each server since this client started
        (the statistics extension; other clients' requests to the same model count too)."""
        self.start()
        now = self._snapshot()
        out = []
        for address, after in now.items():
            before = self._baseline.get(address, ModelStatistics(after.name, after.version))
            out.append(ServerSideStats.between(address, before, after))
        return out

    # -- inference: sync ------------------------------------------------------------------------

    @overload
    def infer(
        self, inputs: Inputs, *, outputs: Sequence[str] | None = ..., timeout: float | None = ...,
        parameters: Mapping[str, Any] | None = ...,
    ) -> InferResult: ...

    @overload
    def infer(
        self, inputs: Sequence[Inputs], *, outputs: Sequence[str] | None = ...,
        timeout: float | None = ..., parameters: Mapping[str, Any] | None = ...,
    ) -> list[InferResult]: ...

    def infer(
        self,
        inputs: Inputs | Sequence[Inputs],
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> InferResult | list[InferResult]:
        """Run the model, blocking until the answer (or the final failure).

        ``inputs``: name -> array, or a list of those (ragged). ``outputs``: names to return
        (default: the config's, else all). ``timeout``: seconds per attempt (None: the
        config's; 0: none). ``parameters``: request parameters (e.g. ``priority``).
        """
        if not self._started:
            self.start()
        if type(inputs) is dict or isinstance(inputs, Mapping):
            return self._infer_one(inputs, outputs, timeout, parameters, ragged=False)
        entries = self._entries(inputs)
        if len(entries) > 1 and self.mode == "async":
            # ragged entries go out together, from the client's own loop
            fut = self._on_engine(self._ainfer_ragged(entries, outputs, timeout, parameters))
            results: list[InferResult] = fut.result()
            return results
        return [self._infer_one(e, outputs, timeout, parameters, ragged=True) for e in entries]

    def _infer_one(
        self,
        inputs: Inputs,
        outputs: Sequence[str] | None,
        timeout: float | None,
        parameters: Mapping[str, Any] | None,
        ragged: bool,
    ) -> InferResult:
        plan = self._plan(inputs, outputs, parameters, ragged)
        if plan is None:
            return self._skipped(outputs)
        tmo = self._timeout if timeout is None else timeout
        t0 = time.perf_counter()
        ep = self._pool.select()
        if ep is None or self._shm is not None:
            return self._infer_retrying(plan, tmo, _Tries(self, t0, ep))
        # the common case, kept short: one attempt that succeeds
        try:
            resp = ep.transport.handle(Infer(plan.request, tmo, self._compression))
        except SonicError as exc:
            return self._infer_retrying(plan, tmo, self._first_failure(exc, t0, ep))
        except BaseException:
            self._pool.release(ep, None)
            raise
        return self._answered(plan, resp, ep, t0)

    def _first_failure(self, exc: SonicError, t0: float, ep: Endpoint) -> _Tries:
        """The first attempt failed: from here on the retry policy decides (or raises)."""
        tries = _Tries(self, t0, ep, tries=1)
        tries.failed_or_raise(exc)
        return tries

    def _answered(self, plan: _Plan, resp: InferResponse, ep: Endpoint, t0: float) -> InferResult:
        """The first attempt succeeded."""
        self._pool.release(ep, True)
        latency = time.perf_counter() - t0
        self._stats.record_ok(latency, ep.address, ep.fallback)
        return self._result(plan, resp, None, ep, 1, latency)

    def _infer_retrying(self, plan: _Plan, tmo: float, tries: _Tries) -> InferResult:
        while True:
            ep = tries.endpoint
            if ep is None:
                if not tries.need_fallback():
                    tries.record(False)
                    raise tries.give_up() from tries.last
                try:
                    self._start_fallback(primary=False)
                except SonicError as exc:
                    tries.errors.append(f"fallback: {exc.message}")
                    tries.record(False)
                    raise tries.give_up() from exc
                tries.use_fallback()
                ep = tries.endpoint
                assert ep is not None
            tries.tries += 1
            tries.here += 1
            try:
                resp, shm_out = self._attempt(ep, plan, tmo)
            except SonicError as exc:
                tries.failed_or_raise(exc)
                continue
            except BaseException:
                self._pool.release(ep, None)
                raise
            self._pool.release(ep, True)
            latency = tries.record(True, ep.address, ep.fallback)
            return self._result(plan, resp, shm_out, ep, tries.tries, latency)

    def _attempt(
        self, ep: Endpoint, plan: _Plan, timeout: float
    ) -> tuple[InferResponse, dict[str, Any] | None]:
        compression = self.config.compression
        call = self._shm_call(ep, plan) if self._shm is not None else None
        if call is None:
            return ep.transport.handle(Infer(plan.request, timeout, compression)), None
        try:
            resp = ep.transport.handle(Infer(call.request, timeout, compression))
        except SonicError as exc:
            self._end_shm(call, clean=not retryable(exc))
            raise
        except BaseException:
            self._end_shm(call, clean=False)
            raise
        return resp, self._read_shm(call, resp)

    # -- inference: asyncio ---------------------------------------------------------------------

    @overload
    async def ainfer(
        self, inputs: Inputs, *, outputs: Sequence[str] | None = ..., timeout: float | None = ...,
        parameters: Mapping[str, Any] | None = ...,
    ) -> InferResult: ...

    @overload
    async def ainfer(
        self, inputs: Sequence[Inputs], *, outputs: Sequence[str] | None = ...,
        timeout: float | None = ..., parameters: Mapping[str, Any] | None = ...,
    ) -> list[InferResult]: ...

    async def ainfer(
        self,
        inputs: Inputs | Sequence[Inputs],
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> InferResult | list[InferResult]:
        """:meth:`infer` for asyncio: the request goes out on the caller's event loop."""
        if not self._started:
            await self.astart()
        if self._pool.fallback_primary:  # synchronous mode
            return self.infer(inputs, outputs=outputs, timeout=timeout, parameters=parameters)
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            return await self._ainfer_ragged(self._entries(inputs), outputs, timeout, parameters)
        # _ainfer_one, inlined: one coroutine less per request
        plan = self._plan(inputs, outputs, parameters, False)
        if plan is None:
            return self._skipped(outputs)
        tmo = self._timeout if timeout is None else timeout
        t0 = time.perf_counter()
        ep = self._pool.select()
        if ep is None or self._shm is not None:
            return await self._ainfer_retrying(plan, tmo, _Tries(self, t0, ep))
        try:
            resp = await ep.transport.handle_async(Infer(plan.request, tmo, self._compression))
        except SonicError as exc:
            return await self._ainfer_retrying(plan, tmo, self._first_failure(exc, t0, ep))
        except BaseException:
            self._pool.release(ep, None)
            raise
        return self._answered(plan, resp, ep, t0)

    async def _ainfer_ragged(
        self,
        entries: list[Inputs],
        outputs: Sequence[str] | None,
        timeout: float | None,
        parameters: Mapping[str, Any] | None,
    ) -> list[InferResult]:
        done = await asyncio.gather(
            *(self._ainfer_one(e, outputs, timeout, parameters, ragged=True) for e in entries),
            return_exceptions=True,
        )
        for item in done:
            if isinstance(item, BaseException):
                raise item
        return [r for r in done if isinstance(r, InferResult)]

    async def _ainfer_one(
        self,
        inputs: Inputs,
        outputs: Sequence[str] | None,
        timeout: float | None,
        parameters: Mapping[str, Any] | None,
        ragged: bool,
    ) -> InferResult:
        plan = self._plan(inputs, outputs, parameters, ragged)
        if plan is None:
            return self._skipped(outputs)
        tmo = self._timeout if timeout is None else timeout
        t0 = time.perf_counter()
        ep = self._pool.select()
        if ep is None or self._shm is not None:
            return await self._ainfer_retrying(plan, tmo, _Tries(self, t0, ep))
        try:
            resp = await ep.transport.handle_async(Infer(plan.request, tmo, self._compression))
        except SonicError as exc:
            return await self._ainfer_retrying(plan, tmo, self._first_failure(exc, t0, ep))
        except BaseException:
            self._pool.release(ep, None)
            raise
        return self._answered(plan, resp, ep, t0)

    async def _ainfer_retrying(self, plan: _Plan, tmo: float, tries: _Tries) -> InferResult:
        while True:
            ep = tries.endpoint
            if ep is None:
                if not tries.need_fallback():
                    tries.record(False)
                    raise tries.give_up() from tries.last
                try:
                    await asyncio.to_thread(self._start_fallback, False)
                except SonicError as exc:
                    tries.errors.append(f"fallback: {exc.message}")
                    tries.record(False)
                    raise tries.give_up() from exc
                tries.use_fallback()
                ep = tries.endpoint
                assert ep is not None
            tries.tries += 1
            tries.here += 1
            try:
                resp, shm_out = await self._aattempt(ep, plan, tmo)
            except SonicError as exc:
                tries.failed_or_raise(exc)
                continue
            except BaseException:
                self._pool.release(ep, None)
                raise
            self._pool.release(ep, True)
            latency = tries.record(True, ep.address, ep.fallback)
            return self._result(plan, resp, shm_out, ep, tries.tries, latency)

    async def _aattempt(
        self, ep: Endpoint, plan: _Plan, timeout: float
    ) -> tuple[InferResponse, dict[str, Any] | None]:
        compression = self.config.compression
        call = await self._ashm_call(ep, plan) if self._shm is not None else None
        if call is None:
            return await ep.transport.handle_async(Infer(plan.request, timeout, compression)), None
        try:
            resp = await ep.transport.handle_async(Infer(call.request, timeout, compression))
        except SonicError as exc:
            self._end_shm(call, clean=not retryable(exc))
            raise
        except BaseException:
            self._end_shm(call, clean=False)
            raise
        return resp, self._read_shm(call, resp)

    # -- inference: callbacks -------------------------------------------------------------------

    def infer_callback(
        self,
        inputs: Inputs | Sequence[Inputs],
        callback: Callback,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> concurrent.futures.Future[Any]:
        """Start an inference and return at once; ``callback(result, error)`` runs when it
        ends (``result`` is an :class:`InferResult`, or a list for ragged inputs; exactly one
        of the two is None). The callback runs on the client's event-loop thread, or in the
        caller's thread before this returns when the client is in synchronous mode. The
        returned future resolves to the same result."""
        self.start()
        if self.mode == "sync":
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                result: Any = self.infer(inputs, outputs=outputs, timeout=timeout, parameters=parameters)
            except SonicError as exc:
                fut.set_exception(exc)
                _call_back(callback, None, exc)
            else:
                fut.set_result(result)
                _call_back(callback, result, None)
            return fut
        fut = self._on_engine(
            self.ainfer(inputs, outputs=outputs, timeout=timeout, parameters=parameters)
        )

        def done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled():
                _call_back(
                    callback, None, ServerUnreachable(f"the client of model '{self.model}' was closed")
                )
                return
            exc = f.exception()
            if exc is None:
                _call_back(callback, f.result(), None)
            elif isinstance(exc, SonicError):
                _call_back(callback, None, exc)
            else:
                _call_back(callback, None, SonicError(f"{type(exc).__name__}: {exc}", Code.INTERNAL))

        fut.add_done_callback(done)
        return fut

    def _on_engine(self, coro: Any) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on the client's own event-loop thread (started on first use)."""
        loop = self._engine_loop
        if loop is None:
            with self._engine_lock:
                if self._closed:
                    coro.close()
                    raise ServerUnreachable(f"the client of model '{self.model}' is closed")
                loop = self._engine_loop
                if loop is None:
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(
                        target=_run_loop, args=(loop,), name="sonic-client", daemon=True
                    )
                    thread.start()
                    self._engine_loop, self._engine_thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _stop_engine(self) -> None:
        with self._engine_lock:
            loop, thread = self._engine_loop, self._engine_thread
            self._engine_loop = self._engine_thread = None
        if loop is None or thread is None:
            return

        async def drain() -> None:
            eps = list(self._pool.endpoints)
            if self._pool.fallback is not None:
                eps.append(self._pool.fallback)
            for ep in eps:
                with contextlib.suppress(Exception):
                    await ep.transport.aclose()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not loop.is_running():
            loop.close()

    # -- requests ---------------------------------------------------------------------------------

    def _entries(self, inputs: Sequence[Inputs]) -> list[Inputs]:
        if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
            raise InvalidArgument(
                f"inputs must be a mapping of input name to array, or a list of such mappings "
                f"(a ragged batch); got {type(inputs).__name__}"
            )
        entries = list(inputs)
        for i, e in enumerate(entries):
            if not isinstance(e, Mapping):
                raise InvalidArgument(
                    f"entry {i} of the ragged batch is a {type(e).__name__}; expected a mapping of "
                    "input name to array"
                )
        return entries

    def _plan(
        self,
        inputs: Inputs,
        outputs: Sequence[str] | None,
        parameters: Mapping[str, Any] | None,
        ragged: bool,
    ) -> _Plan | None:
        info = self._info
        prepared = self._checker.prepare(inputs, ragged)
        if prepared.batch == 0 and self.config.validate:
            return None
        names = tuple(outputs) if outputs is not None else self.config.outputs
        if names is not None and outputs is not None and self.config.validate:
            check_outputs(info, names)
        request = InferRequest(
            self.model,
            self.config.model_version,
            inputs=prepared.tensors,
            outputs=[RequestedOutput(n, parameters=NO_PARAMS) for n in names] if names else [],
            parameters=dict(parameters) if parameters else {},
        )
        if self._shm is None:
            return _Plan(request, prepared, (), _NO_SHM)
        wanted: tuple[str, ...] = names or (tuple(info.outputs) if info is not None else ())
        shm_outputs: dict[str, int] = {}
        if info is not None:
            for n in wanted:
                spec = info.outputs.get(n)
                size = output_nbytes(spec, prepared.batch) if spec is not None else None
                if size is not None:
                    shm_outputs[n] = size
        return _Plan(request, prepared, wanted, shm_outputs)

    def _skipped(self, outputs: Sequence[str] | None) -> InferResult:
        """A batch of size 0: nothing is sent; empty outputs of the model's types."""
        self._stats.skip()
        info = self._info
        assert info is not None
        names = tuple(outputs) if outputs is not None else (self.config.outputs or tuple(info.outputs))
        return InferResult(
            {n: empty_like(info.outputs[n], 0) for n in names},
            model_name=self.model,
            model_version=self.config.model_version,
            tries=0,
        )

    def _result(
        self,
        plan: _Plan,
        resp: InferResponse,
        shm_out: dict[str, Any] | None,
        ep: Endpoint,
        tries: int,
        latency: float,
    ) -> InferResult:
        outs: dict[str, Any] = {}
        squeeze = plan.prepared.added_batch_dim
        for o in resp.outputs:
            data = shm_out.get(o.name) if shm_out is not None and o.data is None else o.data
            if data is None:
                raise SonicError(
                    f"the answer of {ep.address} for model '{self.model}' has no data for output "
                    f"'{o.name}'", Code.INTERNAL,
                )
            if squeeze and data.ndim and data.shape[0] == 1:
                data = data[0]
            if data.flags.writeable:
                data.flags.writeable = False
            outs[o.name] = data
        self._stats.record_payload(
            plan.prepared.batch or 1,
            sum(tensor_nbytes(t.data) for t in plan.request.inputs),
            sum(tensor_nbytes(a) for a in outs.values()),
        )
        return InferResult(
            outs, resp.model_name, resp.model_version, ep.address, tries, latency, resp.id,
            resp.parameters,
        )

    # -- shared memory ------------------------------------------------------------------------------

    def _shm_layout(self, plan: _Plan) -> tuple[list[int], dict[str, tuple[int, int]], int]:
        tensors = plan.request.inputs
        sizes = [_input_nbytes(t.datatype, t.data) for t in tensors]
        names = list(plan.shm_outputs)
        offsets, total = bytes_needed(sizes + [plan.shm_outputs[n] for n in names])
        in_offsets = offsets[: len(tensors)]
        out = {n: (offsets[len(tensors) + i], plan.shm_outputs[n]) for i, n in enumerate(names)}
        return in_offsets, out, total

    def _shm_usable(self, ep: Endpoint) -> bool:
        return self._shm is not None and ep.shm is not False and ep.transport.same_host

    def _shm_prepare(self, ep: Endpoint, plan: _Plan) -> tuple[ShmSlot, _ShmCall] | None:
        if not self._shm_usable(ep):
            return None
        assert self._shm is not None
        in_offsets, out_layout, total = self._shm_layout(plan)
        slot = self._shm.acquire(total)
        inputs = []
        for t, off in zip(plan.request.inputs, in_offsets, strict=True):
            assert t.data is not None
            n = slot.write(off, t.datatype, t.data)
            inputs.append(type(t)(t.name, t.datatype, t.shape, None, ShmRef(slot.name, off, n), t.parameters))
        outputs: list[RequestedOutput] = []
        for name in plan.wanted:
            if name in out_layout:
                off, n = out_layout[name]
                outputs.append(RequestedOutput(name, shm=ShmRef(slot.name, off, n)))
            else:
                outputs.append(RequestedOutput(name))
        r = plan.request
        req = InferRequest(r.model_name, r.model_version, r.id, inputs, outputs, r.parameters)
        return slot, _ShmCall(slot, req, out_layout)

    def _shm_registered(self, ep: Endpoint, slot: ShmSlot, exc: SonicError | None) -> bool:
        """After a registration attempt: whether the slot may be used on ``ep``."""
        if exc is None:
            slot.registered.add(ep.address)
            ep.shm = True
            return True
        assert self._shm is not None
        self._shm.release(slot)
        if exc.code is Code.UNSUPPORTED or exc.code is Code.INVALID_ARG or exc.code is Code.INTERNAL:
            ep.shm = False
            log.warning(
                "server %s refuses system shared memory (%s): sending tensors in the requests "
                "(start sonic serve with --allow-client-shm)", ep.address, exc.message,
            )
            return False
        raise exc

    def _shm_call(self, ep: Endpoint, plan: _Plan) -> _ShmCall | None:
        got = self._shm_prepare(ep, plan)
        if got is None:
            return None
        slot, call = got
        if ep.address not in slot.registered:
            err: SonicError | None = None
            try:
                op = ShmRegister(slot.name, slot.key, slot.size, timeout=self._control_timeout)
                ep.transport.handle(op)
            except SonicError as exc:
                err = exc
            if not self._shm_registered(ep, slot, err):
                return None
        return call

    async def _ashm_call(self, ep: Endpoint, plan: _Plan) -> _ShmCall | None:
        got = self._shm_prepare(ep, plan)
        if got is None:
            return None
        slot, call = got
        if ep.address not in slot.registered:
            err: SonicError | None = None
            try:
                await ep.transport.handle_async(
                    ShmRegister(slot.name, slot.key, slot.size, timeout=self._control_timeout)
                )
            except SonicError as exc:
                err = exc
            if not self._shm_registered(ep, slot, err):
                return None
        return call

    def _read_shm(self, call: _ShmCall, resp: InferResponse) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            for o in resp.outputs:
                if o.data is None and o.name in call.outputs:
                    off, _ = call.outputs[o.name]
                    out[o.name] = call.slot.read(off, o.datatype, o.shape)
        finally:
            self._end_shm(call, clean=True)
        return out

    def _end_shm(self, call: _ShmCall, clean: bool) -> None:
        assert self._shm is not None
        if clean:
            self._shm.release(call.slot)
        else:
            self._shm.discard(call.slot)

    def _release_shm(self) -> None:
        if self._shm is None:
            return
        slots = self._shm.drain()
        by_address = {e.address: e for e in self._pool.endpoints}
        if self._pool.fallback is not None:
            by_address[self._pool.fallback.address] = self._pool.fallback
        for slot in slots:
            for address in sorted(slot.registered):
                ep = by_address.get(address)
                if ep is None or (ep.failures and ep.down_until > time.monotonic()):
                    continue
                try:
                    ep.transport.handle(ShmUnregister(slot.name, timeout=2.0))
                except SonicError as exc:
                    log.debug("unregistering %s on %s failed: %s", slot.name, address, exc.message)
        ShmPool.finish(slots)


def _input_nbytes(datatype: str, data: Any) -> int:
    if datatype == "BYTES":
        from sonic.protocol.datatypes import serialize_bytes

        return len(serialize_bytes(data))
    return int(np.asarray(data).nbytes)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _call_back(callback: Callback, result: Any, error: SonicError | None) -> None:
    try:
        callback(result, error)
    except Exception:  # a user callback must not kill the client's loop
        log.exception("the inference callback raised")

