"""The end-of-job report: where the time went, and what the clients saw.

Counted per module: events, CPU time (``produce``; ``acquire`` + ``produce`` for a SONIC
module) and, for SONIC modules, the time each event waited for its inference. The waits are
summed over events: with N streams they overlap each other and the CPU work, so the sum may
well exceed the wall time — the *hidden* share is what latency hiding bought. Per client: the
client's own counters (requests, retries, failovers, fallback, latency) and the server-side
queue and compute times from the statistics extension.

Reports are plain data and merge (:meth:`Report.merge`): a Dask job returns one per partition
and the driver adds them up. Latencies are kept in log-spaced histograms so that merged
percentiles stay exact to the bin width (about 6 %).

:meth:`Report.profile` condenses a report into the per-event workflow profile that
``sonic plan`` reads (the ``profile`` block of ``sonic run --report-json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["ClientReport", "Histogram", "ModuleReport", "Report"]

_DECADES = (-6, 3)  # 1 us .. 1000 s
_PER_DECADE = 40


class Histogram:
    """Log-spaced histogram of durations in seconds (1 µs .. 1000 s), mergeable."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = np.zeros((_DECADES[1] - _DECADES[0]) * _PER_DECADE + 2, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if seconds <= 10.0 ** _DECADES[0]:
            i = 0
        else:
            i = min(len(self.counts) - 1, 1 + int((math.log10(seconds) - _DECADES[0]) * _PER_DECADE))
        self.counts[i] += 1

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100): the geometric centre of its bin."""
        if not self.count:
            return 0.0
        rank = q / 100.0 * self.count
        i = int(np.searchsorted(np.cumsum(self.counts), max(rank, 1), side="left"))
        if i == 0:
            return 10.0 ** _DECADES[0]
        centre = 10.0 ** (_DECADES[0] + (i - 0.5) / _PER_DECADE)
        return float(min(centre, self.max))

    def as_dict(self) -> dict[str, Any]:
        nz = np.nonzero(self.counts)[0]
        return {
            "count": self.count,
            "total": self.total,
            "max": self.max,
            "bins": {int(i): int(self.counts[i]) for i in nz},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        h = cls()
        h.count, h.total, h.max = int(d["count"]), float(d["total"]), float(d["max"])
        for i, c in d.get("bins", {}).items():
            h.counts[int(i)] = int(c)
        return h

    def __getstate__(self) -> dict[str, Any]:
        return self.as_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        h = Histogram.from_dict(state)
        self.counts, self.count, self.total, self.max = h.counts, h.count, h.total, h.max


@dataclass
class ModuleReport:
    """One module's share of the job. Times in seconds, summed over events."""

    name: str
    kind: str  # "cpu" or "sonic"
    events: int = 0
    rejected: int = 0
    cpu_s: float = 0.0
    wait_s: float = 0.0
    requests: int = 0  # events that made an inference call
    wait: Histogram = field(default_factory=Histogram)

    def merge(self, other: ModuleReport) -> None:
        self.events += other.events
        self.rejected += other.rejected
        self.cpu_s += other.cpu_s
        self.wait_s += other.wait_s
        self.requests += other.requests
        self.wait.merge(other.wait)


@dataclass
class ClientReport:
    """One client: its counters (:class:`~sonic.client.ClientStats`) and server-side stats.

    ``latency_p50/p99`` are the client's own percentiles for a single run; for a merged
    report they are the largest of the parts' (an upper bound).
    """

    name: str
    model: str
    transport: str
    mode: str = "async"
    requests: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    failovers: int = 0
    fallback: int = 0
    skipped: int = 0
    latency_mean: float = 0.0
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    latency_max: float = 0.0
    by_server: dict[str, int] = field(default_factory=dict)
    server_side: list[dict[str, Any]] = field(default_factory=list)
    inferences: int = 0  # samples in answered requests (batch sizes summed)
    bytes_in: int = 0  # input tensor bytes of answered requests
    bytes_out: int = 0  # output tensor bytes of answered requests

    def merge(self, other: ClientReport) -> None:
        n0, n1 = self.requests, other.requests
        if n0 + n1:
            self.latency_mean = (self.latency_mean * n0 + other.latency_mean * n1) / (n0 + n1)
        counters = ("requests", "successes", "failures", "retries", "failovers", "fallback", "skipped")
        for k in (*counters, "inferences", "bytes_in", "bytes_out"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.latency_p50 = max(self.latency_p50, other.latency_p50)
        self.latency_p99 = max(self.latency_p99, other.latency_p99)
        self.latency_max = max(self.latency_max, other.latency_max)
        for s, c in other.by_server.items():
            self.by_server[s] = self.by_server.get(s, 0) + c
        if other.mode == "sync":
            self.mode = "sync"
        self.server_side = merge_server_side(self.server_side + other.server_side)


_AVG_KEYS = (
    "avg_request_us",
    "avg_queue_us",
    "avg_compute_input_us",
    "avg_compute_infer_us",
    "avg_compute_output_us",
)


def merge_server_side(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Server-side rows of the same server added up (averages weighted by requests)."""
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = str(r["server"])
        cur = by.get(key)
        if cur is None:
            by[key] = dict(r)
            continue
        n0, n1 = int(cur["requests"]), int(r["requests"])
        for k in _AVG_KEYS:
            cur[k] = (cur[k] * n0 + r[k] * n1) / (n0 + n1) if n0 + n1 else 0.0
        for k in ("requests", "executions", "failures"):
            cur[k] = int(cur[k]) + int(r[k])
    return list(by.values())


@dataclass
class Report:
    """The whole job. ``wall_s``: from the first read to the last write (on Dask: from the
    first task submitted to the merged outputs; ``setup_s`` has the cluster's start-up, and
    the partitions' client start-ups)."""

    name: str = "process"
    events: int = 0
    written: int = 0
    wall_s: float = 0.0
    streams: int = 1
    threads: int = 0
    partitions: int = 1
    workers: int = 1
    read_s: float = 0.0
    write_s: float = 0.0
    setup_s: float = 0.0
    exposed_wait_s: float = 0.0
    modules: list[ModuleReport] = field(default_factory=list)
    clients: list[ClientReport] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_s(self) -> float:
        return sum(m.cpu_s for m in self.modules)

    @property
    def wait_s(self) -> float:
        return sum(m.wait_s for m in self.modules)

    def finish(self) -> None:
        """After a run here: estimate :attr:`exposed_wait_s`, the inference wait that was
        *not* hidden: wall time the event loop did not spend on the modules' CPU work (reads
        and writes run in threads), at most the total wait. An estimate: the loop's own
        overhead (the client's encoding, the scheduling) counts as exposed."""
        lanes = max(self.threads, 1)
        self.exposed_wait_s = (
            min(self.wait_s, max(0.0, self.wall_s - self.cpu_s / lanes)) if self.wait_s else 0.0
        )

    @staticmethod
    def merge(parts: Sequence[Report], wall_s: float, *, name: str = "process", workers: int = 1) -> Report:
        out = Report(name=name, wall_s=wall_s, partitions=len(parts), workers=workers)
        mods: dict[str, ModuleReport] = {}
        clients: dict[str, ClientReport] = {}
        for p in parts:
            out.events += p.events
            out.written += p.written
            out.read_s += p.read_s
            out.write_s += p.write_s
            out.setup_s += p.setup_s
            out.exposed_wait_s += p.exposed_wait_s
            out.streams, out.threads = p.streams, p.threads
            for m in p.modules:
                if m.name in mods:
                    mods[m.name].merge(m)
                else:
                    mods[m.name] = ModuleReport(m.name, m.kind)
                    mods[m.name].merge(m)
            for c in p.clients:
                if c.name in clients:
                    clients[c.name].merge(c)
                else:
                    clients[c.name] = ClientReport(c.name, c.model, c.transport, c.mode)
                    clients[c.name].merge(c)
        out.modules = list(mods.values())
        out.clients = list(clients.values())
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for m, md in zip(self.modules, d["modules"], strict=True):
            md["wait"] = m.wait.as_dict()
            md["wait_p50_s"] = m.wait.percentile(50)
            md["wait_p99_s"] = m.wait.percentile(99)
        d["events_per_s"] = self.events_per_s
        d["cpu_s"] = self.cpu_s
        d["wait_s"] = self.wait_s
        d["kind"] = "sonic-run-report"
        d["profile"] = self.profile()
        return d

    def profile(self) -> dict[str, Any]:
        """The workflow's profile per event, with the keys ``sonic plan`` reads
        (:class:`sonic.bench.plan.Profile`), and ``notes`` on how each was obtained.

        - ``cpu_ms_per_event``: the modules' CPU work (``produce``; ``acquire`` + ``produce``
          of SONIC modules), summed and divided by the events read;
        - ``ml_ms_per_event_inline``: the inference wait per event, only when every client
          used the local transport (the model in this process): that is the inline time,
          exactly so with one stream (or ``--sync``); with more streams the waits overlap and
          include queueing, and with a remote server they are its latency, not inline time
          (then the key is left out: give ``--ml-ms`` to ``sonic plan``);
        - ``requests_per_event``, ``inferences_per_request``, ``bytes_in_per_request``,
          ``bytes_out_per_request``: the clients' answered requests, their samples and tensor
          bytes (data, without the protocol's framing);
        - ``requests_in_flight``: requests per inference call, averaged and not rounded (a
          ragged call sends its entries together; requests_per_event / requests_in_flight is
          the number of round trips per event), ``streams``: events in flight.

        The client's CPU per request is not measured here (``sonic bench --engine client``
        shows the codec's send/recv cost); the hidden share of the wait is in the notes (it
        is specific to this run's latency; ``sonic plan`` models hiding from ``streams``).
        """
        events = max(self.events, 1)
        answered = sum(c.successes for c in self.clients)
        calls = sum(m.requests for m in self.modules if m.kind == "sonic")
        out: dict[str, Any] = {
            "name": self.name,
            "cpu_ms_per_event": self.cpu_s / events * 1e3,
        }
        transports = sorted({c.transport for c in self.clients})
        notes: dict[str, Any] = {
            "events": self.events,
            "transports": transports,
            "cpu_ms_per_event": "modules' CPU work per event (acquire and produce included)",
        }
        if self.clients and transports == ["local"]:
            out["ml_ms_per_event_inline"] = self.wait_s / events * 1e3
            notes["ml_ms_per_event_inline"] = (
                "inference wait per event with the local transport (the model in this process; "
                "the hand-off to the data plane's thread included)"
                + (
                    f"; measured with {self.streams} streams: the waits overlap and include queueing, "
                    "so this overstates the inline time (run with --streams 1 for it)"
                    if self.streams > 1 and not any(c.mode == "sync" for c in self.clients)
                    else ""
                )
            )
        elif self.clients:
            notes["ml_ms_per_event_inline"] = (
                f"not measured: the clients used {', '.join(transports)}, so the wait "
                f"({self.wait_s / events * 1e3:.4g} ms per event) is the remote latency, not the "
                "inline time; run with the local transport, or give it by hand (sonic plan --ml-ms)"
            )
        if answered:
            ok = [c for c in self.clients if c.successes]
            out["requests_per_event"] = answered / events
            out["inferences_per_request"] = sum(c.inferences for c in ok) / answered
            out["bytes_in_per_request"] = sum(c.bytes_in for c in ok) / answered
            out["bytes_out_per_request"] = sum(c.bytes_out for c in ok) / answered
            out["requests_in_flight"] = max(1.0, answered / calls) if calls else 1
        out["streams"] = max(1, self.streams)
        if self.wait_s:
            notes["hidden_fraction"] = round(1.0 - self.exposed_wait_s / self.wait_s, 4)
        notes["client_ms_per_request"] = "not measured by sonic run (sonic bench --engine client shows it)"
        out["notes"] = notes
        return out

    def table(self) -> str:
        """The report as text, for a terminal."""
        lines: list[str] = []
        where = (
            f"{self.partitions} partitions on {self.workers} workers"
            if self.partitions > 1 or self.workers > 1
            else "1 process"
        )
        threads = f", {self.threads} threads" if self.threads else ""
        lines.append(
            f"{self.name}: {self.events} events in {self.wall_s:.2f} s = {self.events_per_s:.1f} events/s "
            f"({self.streams} streams{threads}, {where}); {self.written} written"
        )
        lines.append(
            f"  setup {self.setup_s:.2f} s, reading {self.read_s:.2f} s, writing {self.write_s:.2f} s"
        )
        head = (
            f"  {'module':<22} {'kind':<5} {'events':>8} {'cpu ms/ev':>10} {'wait ms/ev':>11} "
            f"{'wait p50':>9} {'wait p99':>9} {'cpu s':>8} {'wait s':>8}"
        )
        lines.append(head)
        for m in self.modules:
            n = max(m.events, 1)
            wait = m.kind == "sonic"
            lines.append(
                f"  {m.name[:22]:<22} {m.kind:<5} {m.events:>8} {m.cpu_s / n * 1e3:>10.3f} "
                + (
                    f"{m.wait_s / n * 1e3:>11.3f} {m.wait.percentile(50) * 1e3:>9.2f} "
                    f"{m.wait.percentile(99) * 1e3:>9.2f} "
                    if wait
                    else f"{'-':>11} {'-':>9} {'-':>9} "
                )
                + f"{m.cpu_s:>8.2f} {m.wait_s if wait else 0.0:>8.2f}"
                + (f"  ({m.rejected} rejected)" if m.rejected else "")
            )
        if self.wait_s:
            exposed = self.exposed_wait_s
            hidden = 1.0 - exposed / self.wait_s if self.wait_s else 0.0
            lines.append(
                f"  CPU work {self.cpu_s:.2f} s, waiting on inference {self.wait_s:.2f} s (summed over "
                f"events); not hidden ≈ {exposed:.2f} s, so ≈ {hidden:.0%} of it was hidden"
            )
        for c in self.clients:
            servers = ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(c.by_server.items()))
            lines.append(
                f"  client '{c.name}' (model {c.model}, {c.transport}, {c.mode}): {c.requests} requests "
                f"({c.failures} failed, {c.skipped} skipped), {c.retries} retries, {c.failovers} failovers, "
                f"{c.fallback} on the fallback server; latency mean {c.latency_mean * 1e3:.2f} ms, "
                f"p50 {c.latency_p50 * 1e3:.2f} ms, p99 {c.latency_p99 * 1e3:.2f} ms, "
                f"max {c.latency_max * 1e3:.2f} ms"
            )
            if servers:
                lines.append(f"    answered by {servers}")
            for s in c.server_side:
                compute = s["avg_compute_input_us"] + s["avg_compute_infer_us"] + s["avg_compute_output_us"]
                lines.append(
                    f"    server {s['server']}: {s['requests']} requests in {s['executions']} executions; "
                    f"per request queue {s['avg_queue_us']:.0f} us, compute "
                    f"{compute:.0f} us "
                    f"(infer {s['avg_compute_infer_us']:.0f} us), total {s['avg_request_us']:.0f} us"
                )
        for o in self.outputs:
            lines.append(f"  output: {o}")
        if self.events:
            pr = self.profile()
            ml = pr.get("ml_ms_per_event_inline")
            line = f"  profile (for sonic plan): CPU {pr['cpu_ms_per_event']:.4g} ms/event, ML inline " + (
                f"{ml:.4g} ms/event" if ml is not None else "not measured (remote transport)"
            )
            if "requests_per_event" in pr:
                line += (
                    f", {pr['requests_per_event']:.3g} requests/event × "
                    f"{pr['inferences_per_request']:.3g} inferences, {pr['bytes_in_per_request']:.0f} B in "
                    f"+ {pr['bytes_out_per_request']:.0f} B out per request"
                )
            lines.append(line)
        return "\n".join(lines)
