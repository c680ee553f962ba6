"""Client-side statistics, for the workflow's end-of-job report and for the curious.

Counts are exact; latencies (seconds, per request, retries included) are kept for the first
``LATENCY_SAMPLES`` requests and then sampled (reservoir), which keeps percentiles honest on
long jobs at a fixed memory cost. Server-side times come from the statistics extension, as
differences between snapshots taken when the client started and now (:class:`ServerSideStats`:
they include other clients' requests to the same model on that server).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonic.client._types import ModelStatistics

__all__ = ["ClientStats", "ServerSideStats", "StatsRecorder", "tensor_nbytes"]

LATENCY_SAMPLES = 200_000


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of one client's counters.

    ``requests``: requests answered or failed (a ragged entry is one request); ``skipped``:
    calls with a batch of size 0, never sent; ``retries``: attempts beyond the first;
    ``failovers``: moves to another server (the fallback included); ``fallback``: requests
    the fallback server answered. Latencies in seconds. ``inferences``, ``bytes_in``,
    ``bytes_out``: summed over answered requests: samples (the batch size, 1 for a model
    without batching), and the bytes of the input and output tensors' data (what a v2 wire
    carries besides its framing; BYTES elements with their 4-byte length), whatever the
    transport.
    """

    requests: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    failovers: int = 0
    fallback: int = 0
    skipped: int = 0
    latency_mean: float = 0.0
    latency_p50: float = 0.0
    latency_p90: float = 0.0
    latency_p99: float = 0.0
    latency_max: float = 0.0
    by_server: dict[str, int] = field(default_factory=dict)
    inferences: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class StatsRecorder:
    """The mutable side (thread-safe).

    A request answered at its first try costs one ``list.append`` (atomic in CPython), folded
    into the counters in batches; everything else (:meth:`record`) takes the lock.
    """

    _FOLD = 4096

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.requests = self.successes = self.failures = 0
        self.retries = self.failovers = self.fallback = self.skipped = 0
        self._latencies: list[float] = []
        self._seen = 0
        self._max = 0.0
        self._sum = 0.0
        self._by_server: dict[str, int] = {}
        self._pending: list[tuple[float, str, bool]] = []
        self._payloads: list[tuple[int, int, int]] = []
        self.inferences = self.bytes_in = self.bytes_out = 0

    def record_ok(self, latency: float, server: str, fallback: bool) -> None:
        """A request answered at its first try."""
        pending = self._pending
        pending.append((latency, server, fallback))
        if len(pending) >= self._FOLD:
            with self._lock:
                self._fold()

    def record_payload(self, inferences: int, bytes_in: int, bytes_out: int) -> None:
        """An answered request's size (one ``list.append``, folded in batches)."""
        payloads = self._payloads
        payloads.append((inferences, bytes_in, bytes_out))
        if len(payloads) >= self._FOLD:
            with self._lock:
                self._fold()

    def record(
        self, ok: bool, latency: float, tries: int, failovers: int, server: str, fallback: bool
    ) -> None:
        with self._lock:
            self._add(ok, latency, server, fallback)
            self.retries += max(tries - 1, 0)
            self.failovers += failovers

    def _fold(self) -> None:
        pending = self._pending
        n = len(pending)
        done = pending[:n]
        del pending[:n]  # appends made meanwhile stay, after position n
        for latency, server, fallback in done:
            self._add(True, latency, server, fallback)
        payloads = self._payloads
        n = len(payloads)
        sizes = payloads[:n]
        del payloads[:n]
        for inferences, bytes_in, bytes_out in sizes:
            self.inferences += inferences
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out

    def _add(self, ok: bool, latency: float, server: str, fallback: bool) -> None:
        self.requests += 1
        if ok:
            self.successes += 1
            self._by_server[server] = self._by_server.get(server, 0) + 1
            if fallback:
                self.fallback += 1
        else:
            self.failures += 1
        self._sum += latency
        self._max = max(self._max, latency)
        self._seen += 1
        if len(self._latencies) < LATENCY_SAMPLES:
            self._latencies.append(latency)
        else:
            j = self._rng.randrange(self._seen)
            if j < LATENCY_SAMPLES:
                self._latencies[j] = latency

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def snapshot(self) -> ClientStats:
        with self._lock:
            self._fold()
            lat = np.asarray(self._latencies, dtype=np.float64)
            p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99])) if lat.size else (0, 0, 0)
            return ClientStats(
                requests=self.requests,
                successes=self.successes,
                failures=self.failures,
                retries=self.retries,
                failovers=self.failovers,
                fallback=self.fallback,
                skipped=self.skipped,
                latency_mean=self._sum / self._seen if self._seen else 0.0,
                latency_p50=p50,
                latency_p90=p90,
                latency_p99=p99,
                latency_max=self._max,
                by_server=dict(self._by_server),
                inferences=self.inferences,
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
            )


def tensor_nbytes(data: Any) -> int:
    """The bytes of one tensor's data on a v2 wire: the raw array, or for BYTES (an object
    array) each element with its 4-byte length prefix."""
    if not isinstance(data, np.ndarray):
        return 0
    if data.dtype.kind in "OSU":
        return sum(4 + len(v if isinstance(v, bytes) else str(v).encode()) for v in data.reshape(-1))
    return int(data.nbytes)


@dataclass(frozen=True)
class ServerSideStats:
    """Server-side statistics of the model on one server since the client started.

    Averages are per request, in microseconds (queue: waiting for a batch and an instance;
    compute: input copy + inference + output copy of the batch the request was in).
    """

    server: str
    model: str
    requests: int
    executions: int
    failures: int
    avg_request_us: float
    avg_queue_us: float
    avg_compute_input_us: float
    avg_compute_infer_us: float
    avg_compute_output_us: float

    @classmethod
    def between(cls, server: str, before: ModelStatistics, after: ModelStatistics) -> ServerSideStats:
        d = after - before
        n = d.success_count

        def avg(ns: int, count: int) -> float:
            return ns / count / 1e3 if count else 0.0

        return cls(
            server=server,
            model=after.name,
            requests=n,
            executions=d.execution_count,
            failures=d.fail_count,
            avg_request_us=avg(d.success_ns, n),
            avg_queue_us=avg(d.queue_ns, d.queue_count),
            avg_compute_input_us=avg(d.compute_input_ns, d.compute_count),
            avg_compute_infer_us=avg(d.compute_infer_ns, d.compute_count),
            avg_compute_output_us=avg(d.compute_output_ns, d.compute_count),
        )

    def line(self) -> str:
        return (
            f"{self.server} model '{self.model}': {self.requests} requests in {self.executions} "
            f"executions ({self.failures} failed); per request: {self.avg_request_us:.0f} us "
            f"total, queue {self.avg_queue_us:.0f} us, compute input {self.avg_compute_input_us:.0f} "
            f"us, infer {self.avg_compute_infer_us:.0f} us, output {self.avg_compute_output_us:.0f} us"
        )
