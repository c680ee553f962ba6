"""``sonic plan``: what inference as a service buys a workflow, and what it costs.

Where it sits: after the measurements. It takes a workflow's profile (per event: CPU time
outside ML, ML time when run inline, inference requests, their size; from a ``sonic run``
report or by hand) and a server's throughput/latency curve (a ``sonic bench --json`` file, or
two numbers by hand), and answers the operator's questions: the whole-job speed-up, how many
GPUs (servers) N client threads need, the GPU:CPU ratio, the network bandwidth, and the cost
per million events for given prices.

The model (all times per event, on one CPU thread; one "server" = what was benchmarked,
e.g. one GPU):

    C  = cpu + k·o                      CPU work: the job's own, and the client's per request
    W  = ceil(k / q) · R                waiting for k requests sent q at a time, R each (k an
                                        average over events, not a whole number: k / q)
    T  = max(C, (C + W) / S)            S events in flight per thread hide the wait (S = 1:
                                        synchronous, T = C + W); or T = C + (1 − h)·W when a
                                        hidden fraction h is given
    inline: T0 = cpu + ml               job speed-up T0 / T, ML-step speed-up ml / (T − cpu)

R comes from the server's curve at its operating point, so it is solved, not assumed: with
n client threads on one server, requests arrive at λ = n·k / T, the server holds
c = λ·R of them (Little's law), and R = L(c) + RTT where L is the latency the bench measured
at concurrency c (beyond the last point, L grows as the throughput saturates: c·b / X_max).
The fixed point is found by bisection. A server is sized so that its utilisation
λ·b / X_max stays within the target (1.0: saturated, as published GPU:CPU ratios are).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sonic.bench.results import BenchReport
from sonic.protocol.errors import InvalidArgument, nearest

__all__ = [
    "DEFAULT_PRICES",
    "Operating",
    "Plan",
    "Price",
    "Profile",
    "ServerCurve",
    "event_time",
    "load_plan_file",
    "load_profile",
    "make_plan",
    "solve",
]


# -- inputs ------------------------------------------------------------------------------------------


@dataclass
class Profile:
    """Per event, on one CPU thread. Times in milliseconds, sizes in bytes."""

    cpu_ms_per_event: float  # CPU time outside ML
    ml_ms_per_event_inline: float  # the ML step when the model runs inline on the same thread
    requests_per_event: float = 1.0  # inference requests per event (k)
    inferences_per_request: float = 1.0  # samples per request (b): the batch
    bytes_in_per_request: float = 0.0
    bytes_out_per_request: float = 0.0
    client_ms_per_request: float = 0.0  # client CPU per request (serialisation, o)
    streams: int = 1  # events in flight per thread (S); 1 = synchronous
    requests_in_flight: float = 1  # per event: the k requests go out this many at a time (q);
    # a `sonic run` report gives the average requests per inference call (ragged calls), not rounded
    hidden_fraction: float | None = None  # instead of streams: the fraction of the wait hidden
    name: str = "workflow"

    def __post_init__(self) -> None:
        for f in (
            "cpu_ms_per_event",
            "ml_ms_per_event_inline",
            "requests_per_event",
            "inferences_per_request",
            "bytes_in_per_request",
            "bytes_out_per_request",
            "client_ms_per_request",
        ):
            v = getattr(self, f)
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
                raise InvalidArgument(f"profile: {f} must be a number >= 0, got {v!r}")
            setattr(self, f, float(v))
        if self.requests_per_event <= 0 or self.inferences_per_request <= 0:
            raise InvalidArgument("profile: requests_per_event and inferences_per_request must be > 0")
        if int(self.streams) < 1 or not self.requests_in_flight >= 1:
            raise InvalidArgument("profile: streams and requests_in_flight must be >= 1")
        self.streams = int(self.streams)
        q = float(self.requests_in_flight)
        self.requests_in_flight = int(q) if q.is_integer() else q
        if self.hidden_fraction is not None and not 0 <= self.hidden_fraction <= 1:
            raise InvalidArgument(f"profile: hidden_fraction must be in [0, 1], got {self.hidden_fraction}")

    @property
    def bytes_per_request(self) -> float:
        return self.bytes_in_per_request + self.bytes_out_per_request

    @property
    def inferences_per_event(self) -> float:
        return self.requests_per_event * self.inferences_per_request

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Profile:
        """From a plan file's ``workflow`` block, or a ``sonic run`` report: the keys of this
        class at the top level or under ``profile``/``workflow``; ``bytes_per_request`` is
        taken as input bytes when in/out are not given."""
        for key in ("profile", "workflow"):
            inner = d.get(key)
            if isinstance(inner, Mapping):
                d = inner
        d = dict(d)
        if "bytes_per_request" in d:
            total = d.pop("bytes_per_request")
            d.setdefault("bytes_in_per_request", total)
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names and not str(k).startswith("_") and k not in _NOTE_KEYS]
        if unknown:
            raise InvalidArgument(f"profile: unknown key {unknown[0]!r}" + nearest(str(unknown[0]), names))
        missing = [k for k in ("cpu_ms_per_event", "ml_ms_per_event_inline") if k not in d]
        if missing:
            note = d.get("notes", {}).get(missing[0]) if isinstance(d.get("notes"), Mapping) else None
            if note:  # a `sonic run` report that could not measure it says why
                raise InvalidArgument(
                    f"profile: {missing[0]} is missing from this `sonic run` report: {note}"
                )
            raise InvalidArgument(
                f"profile: {missing[0]} is required (per event, in ms); a `sonic run` report with "
                "the local transport gives it in its 'profile' block, or give it by hand"
            )
        return cls(**{k: v for k, v in d.items() if k in names})


_NOTE_KEYS = ("notes", "assumed", "derived", "published", "source")


@dataclass
class ServerCurve:
    """Throughput (inferences/s) and latency (ms per request) of one server at increasing
    concurrency (requests in flight), measured with ``batch`` samples per request."""

    concurrency: list[float]
    throughput: list[float]
    latency_ms: list[float]
    batch: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.concurrency)
        if n == 0 or len(self.throughput) != n or len(self.latency_ms) != n:
            raise InvalidArgument(
                "server curve: needs at least one point, with throughput and latency for each"
            )
        order = sorted(range(n), key=lambda i: self.concurrency[i])
        self.concurrency = [float(self.concurrency[i]) for i in order]
        self.throughput = [float(self.throughput[i]) for i in order]
        self.latency_ms = [float(self.latency_ms[i]) for i in order]
        if min(self.throughput) <= 0 or min(self.latency_ms) <= 0:
            raise InvalidArgument("server curve: throughput and latency must be > 0")

    @property
    def max_throughput(self) -> float:
        return max(self.throughput)

    def latency_at(self, c: float) -> float:
        """Latency (ms) with ``c`` requests in flight: interpolated between measured
        concurrencies; below the first, the first; past the last, Little's law at the
        saturated throughput (c·b / X_max), never below the last measured latency."""
        cs, ls = self.concurrency, self.latency_ms
        if c <= cs[0]:
            return ls[0]
        if c >= cs[-1]:
            return max(ls[-1], c * self.batch / self.max_throughput * 1e3)
        for i in range(1, len(cs)):
            if c <= cs[i]:
                t = (c - cs[i - 1]) / (cs[i] - cs[i - 1])
                return ls[i - 1] + t * (ls[i] - ls[i - 1])
        return ls[-1]  # pragma: no cover

    @classmethod
    def by_hand(cls, throughput: float, latency_ms: float, batch: float = 1.0) -> ServerCurve:
        """An ideal server: latency ``latency_ms`` until the throughput reaches ``throughput``
        (inferences/s), then queueing: L(c) = max(L0, c·b / X)."""
        if throughput <= 0 or latency_ms <= 0:
            raise InvalidArgument("server: throughput and latency_ms must be > 0")
        c_sat = throughput * latency_ms / 1e3 / batch
        cs = sorted({1e-9, c_sat, 2 * c_sat, 4 * c_sat})
        return cls(
            cs,
            [min(c * batch / latency_ms * 1e3, throughput) for c in cs],
            [max(latency_ms, c * batch / throughput * 1e3) for c in cs],
            batch,
            f"by hand: {throughput:g} inferences/s, {latency_ms:g} ms",
        )

    @classmethod
    def from_bench(cls, report: BenchReport, statistic: str = "avg", source: str = "") -> ServerCurve:
        """From ``sonic bench --json``: its concurrency levels (a request-rate sweep works too:
        the concurrency is then throughput × latency / batch, by Little's law)."""
        key = statistic if statistic in ("avg", "p50", "p90", "p95", "p99") else "avg"
        rows = [r for r in report.results if r.requests > 0 and r.errors == 0]
        if not rows:
            raise InvalidArgument(f"server curve {source}: the bench report has no successful level")
        batch = float(rows[0].batch)
        conc = [
            r.load if r.mode == "concurrency" else r.request_rate * r.latency_us["avg"] / 1e6 for r in rows
        ]
        return cls(
            conc,
            [r.throughput for r in rows],
            [r.latency_us[key] / 1e3 for r in rows],
            batch,
            source or f"sonic bench ({report.model.get('name', '?')}, {key} latency)",
        )


@dataclass(frozen=True)
class Price:
    """$ per hour of one CPU thread (core) and of one server (GPU)."""

    name: str
    cpu_per_hour: float
    gpu_per_hour: float
    note: str = ""


#: Illustrative prices, not quotes: cloud figures are of the order of Google Cloud's 2021
#: list prices (n1 vCPU with memory ≈ $0.035/h on demand, ≈ $0.01/h pre-emptible; NVIDIA T4
#: ≈ $0.35/h on demand, ≈ $0.11/h pre-emptible); on-site figures are a 5-year amortisation with
#: power. Put your own in the plan file (``prices``) or with --price.
DEFAULT_PRICES = (
    Price("on-site", 0.01, 0.10, "amortised hardware + power (assumed)"),
    Price("cloud on-demand", 0.035, 0.35, "≈ 2021 list price, vCPU and T4 (assumed)"),
    Price("cloud pre-emptible", 0.01, 0.11, "≈ 2021 list price, vCPU and T4 (assumed)"),
    Price("on-site CPU + cloud GPU", 0.01, 0.35, "the ProtoDUNE set-up: grid jobs, GPUs in the cloud"),
)


# -- the model -----------------------------------------------------------------------------------------


def event_time(p: Profile, remote_ms: float) -> float:
    """T: seconds per event on one thread when each request takes ``remote_ms``."""
    cpu = (p.cpu_ms_per_event + p.requests_per_event * p.client_ms_per_request) / 1e3
    k, q = p.requests_per_event, p.requests_in_flight
    # k requests of every event, q at a time: ceil(k / q) round trips; a fractional k or q is
    # an average over events (a `sonic run` report: events without jets send nothing, ragged
    # calls send several requests at once), and so is the number of round trips, k / q
    whole = abs(k - round(k)) < 1e-9 and float(q).is_integer()
    waits = math.ceil(k / q - 1e-9) if whole else k / q
    wait = waits * remote_ms / 1e3
    if p.hidden_fraction is not None:
        return cpu + (1.0 - p.hidden_fraction) * wait
    return max(cpu, (cpu + wait) / p.streams)


@dataclass
class Operating:
    """A fixed point: ``threads`` client threads on one server."""

    threads: float
    remote_ms: float  # per request, as the client sees it (server latency + RTT)
    event_s: float  # T
    server_concurrency: float  # requests in flight at the server
    utilization: float  # of the server's maximum throughput

    @property
    def events_per_s_per_thread(self) -> float:
        return 1.0 / self.event_s

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def solve(p: Profile, curve: ServerCurve, threads: float, rtt_ms: float = 0.0) -> Operating:
    """The operating point of ``threads`` client threads sharing one server."""

    def state(r_ms: float) -> tuple[float, float, float]:
        t = event_time(p, r_ms)
        lam = threads * p.requests_per_event / t  # requests/s
        return t, lam, lam * r_ms / 1e3

    def gap(r_ms: float) -> float:
        _, _, c = state(r_ms)
        return r_ms - (curve.latency_at(c) + rtt_ms)

    # a measured curve need not be monotonic (a batching delay can make c = 1 slower than
    # c = 2): start from its lowest latency, where the gap cannot be positive
    lo = min(curve.latency_ms) + rtt_ms
    if threads <= 0:
        r = curve.latency_at(0.0) + rtt_ms
    elif gap(lo) >= 0:
        r = lo
    else:
        hi = lo * 2
        while gap(hi) < 0:
            hi *= 2
            if hi > 1e12:
                raise InvalidArgument("plan: no operating point (the server curve never saturates?)")
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if gap(mid) < 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        r = hi
    t, lam, c = state(r)
    return Operating(threads, r, t, c, lam * p.inferences_per_request / curve.max_throughput)


#: ``threads_per_server`` searches up to this many times its first estimate, then answers inf.
THREADS_SEARCH_FACTOR = 1e6


def threads_per_server(
    p: Profile, curve: ServerCurve, utilization: float = 1.0, rtt_ms: float = 0.0
) -> float:
    """The most client threads one server carries within ``utilization`` of its maximum
    throughput (continuous; the GPU:CPU ratio is 1 : this)."""
    if not 0 < utilization <= 1:
        raise InvalidArgument(f"plan: target utilization must be in (0, 1], got {utilization}")

    def util(n: float) -> float:
        return solve(p, curve, n, rtt_ms).utilization

    # the search starts at the scale of the answer, the threads that would fill the server if
    # each kept its low-load pace (a tiny workflow on a big server needs billions), and gives
    # up only far past it
    alone = solve(p, curve, 1.0, rtt_ms).utilization
    scale = max(1.0, utilization / alone) if alone > 0 else 1.0
    lo, hi = 0.0, scale
    while util(hi) <= utilization * (1 - 1e-9):
        lo, hi = hi, hi * 2
        if hi > scale * THREADS_SEARCH_FACTOR:
            return math.inf
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if util(mid) <= utilization * (1 - 1e-9):
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return lo


# -- the plan --------------------------------------------------------------------------------------------


@dataclass
class CostRow:
    price: Price
    cpu_only_per_million: float
    service_per_million: float  # at the GPU:CPU ratio (fractional GPUs)
    cluster_per_million: float  # with whole GPUs for the cluster's threads

    @property
    def saving(self) -> float:
        return (
            1.0 - self.service_per_million / self.cpu_only_per_million if self.cpu_only_per_million else 0.0
        )


@dataclass
class Plan:
    profile: Profile
    curve: ServerCurve
    rtt_ms: float
    utilization: float
    threads: int  # client threads of the cluster
    inline_s: float
    low_load: Operating  # one thread alone on a server
    ratio: float  # client threads per server at the target utilisation
    at_ratio: Operating
    servers: int  # for ``threads``
    cluster: Operating  # per server, with threads / servers on each
    costs: list[CostRow]
    name: str = ""
    published: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    # derived figures -------------------------------------------------------------------------------

    @property
    def job_speedup(self) -> float:
        """Whole-job speed-up at the sizing point (each server at the target utilisation)."""
        return self.inline_s / self.at_ratio.event_s

    @property
    def ml_speedup(self) -> float:
        """ML step: its inline time over the time it adds per event as a service."""
        added = self.at_ratio.event_s - self.profile.cpu_ms_per_event / 1e3
        return self.profile.ml_ms_per_event_inline / 1e3 / added if added > 1e-15 else math.inf

    @property
    def ml_fraction(self) -> float:
        return self.profile.ml_ms_per_event_inline / 1e3 / self.inline_s if self.inline_s else 0.0

    @property
    def amdahl_limit(self) -> float:
        """The job speed-up if the ML step took no time at all."""
        return (
            self.inline_s / (self.profile.cpu_ms_per_event / 1e3)
            if self.profile.cpu_ms_per_event
            else math.inf
        )

    def bandwidth_gbps(self, op: Operating, threads: float) -> float:
        """Network traffic (in + out) of ``threads`` client threads at ``op``, Gbit/s."""
        p = self.profile
        return threads * p.requests_per_event * p.bytes_per_request * 8 / op.event_s / 1e9

    def as_dict(self) -> dict[str, Any]:
        per_thread = self.bandwidth_gbps(self.at_ratio, 1)
        return {
            "kind": "sonic-plan",
            "name": self.name,
            "profile": asdict(self.profile),
            "server": {
                "source": self.curve.source,
                "max_throughput": self.curve.max_throughput,
                "batch": self.curve.batch,
                "rtt_ms": self.rtt_ms,
                "target_utilization": self.utilization,
            },
            "inline_s_per_event": self.inline_s,
            "ml_fraction": self.ml_fraction,
            "amdahl_limit": self.amdahl_limit,
            "low_load": self.low_load.as_dict(),
            "at_ratio": self.at_ratio.as_dict(),
            "ml_speedup": self.ml_speedup,
            "job_speedup": self.job_speedup,
            "threads_per_gpu": self.ratio,
            "gpu_to_cpu": f"1:{self.ratio:.0f}",
            "cluster": {
                "cpu_threads": self.threads,
                "gpus": self.servers,
                "events_per_s": self.threads / self.cluster.event_s,
                "per_gpu": self.cluster.as_dict(),
                "network_gbps_total": self.bandwidth_gbps(self.cluster, self.threads),
                "network_gbps_per_gpu": self.bandwidth_gbps(self.cluster, self.threads / self.servers),
            },
            "network_gbps_per_thread": per_thread,
            "network_gbps_per_gpu_at_ratio": per_thread * self.ratio,
            "cost_per_million_events": [
                {
                    "scenario": c.price.name,
                    "cpu_per_hour": c.price.cpu_per_hour,
                    "gpu_per_hour": c.price.gpu_per_hour,
                    "cpu_only": c.cpu_only_per_million,
                    "as_a_service": c.service_per_million,
                    "cluster": c.cluster_per_million,
                    "saving": c.saving,
                    "note": c.price.note,
                }
                for c in self.costs
            ],
            "published": self.published,
            "notes": self.notes,
        }

    def text(self) -> str:
        p = self.profile
        lo, ar, cl = self.low_load, self.at_ratio, self.cluster
        hide = (
            f"{p.streams} event(s) in flight per thread"
            if p.hidden_fraction is None
            else f"{100 * p.hidden_fraction:.0f}% of the wait hidden"
        )
        lines = [
            f"sonic plan: {self.name or p.name}",
            "",
            "workflow (per event, one CPU thread):",
            f"  CPU outside ML {p.cpu_ms_per_event / 1e3:.4g} s, "
            f"ML inline {p.ml_ms_per_event_inline / 1e3:.4g} s "
            f"(ML is {100 * self.ml_fraction:.1f}% of {self.inline_s:.4g} s; "
            f"Amdahl limit ×{self.amdahl_limit:.3g})",
            f"  {p.requests_per_event:g} requests × {p.inferences_per_request:g} inferences, "
            f"{_bytes(p.bytes_per_request)} per request; "
            f"client {p.client_ms_per_request:g} ms/request; {hide}",
            f"server: {self.curve.source}; max {self.curve.max_throughput:.4g} inferences/s; "
            f"RTT +{self.rtt_ms:g} ms; sized to {100 * self.utilization:.0f}% utilisation",
            "",
            "as a service:",
            f"  alone on a server: {lo.remote_ms:.4g} ms per request, {lo.event_s:.4g} s per event "
            f"(job ×{self.inline_s / lo.event_s:.3g})",
            f"  at {self.ratio:.1f} threads per server: {ar.remote_ms:.4g} ms per request, "
            f"{ar.event_s:.4g} s per "
            f"event, {ar.server_concurrency:.3g} requests in flight at the server",
            f"  ML step ×{self.ml_speedup:.3g}   whole job ×{self.job_speedup:.3g}",
            f"  GPU:CPU = 1:{self.ratio:.0f}  (one server per {self.ratio:.1f} client threads)",
            f"  network: {self.bandwidth_gbps(ar, 1) * 1e3:.4g} Mbit/s per thread, "
            f"{self.bandwidth_gbps(ar, self.ratio):.4g} Gbit/s per server",
            "",
            f"cluster of {self.threads} CPU threads: {self.servers} servers (GPUs), "
            f"{self.threads / cl.event_s:.4g} events/s, {100 * cl.utilization:.0f}% server utilisation, "
            f"network {self.bandwidth_gbps(cl, self.threads):.4g} Gbit/s in all",
            "",
            "cost per million events ($):",
            f"  {'scenario':<26} {'CPU $/h':>8} {'GPU $/h':>8} {'CPU only':>10} {'service':>10} "
            f"{'cluster':>10} {'saving':>7}",
        ]
        for c in self.costs:
            lines.append(
                f"  {c.price.name:<26} {c.price.cpu_per_hour:>8.3g} {c.price.gpu_per_hour:>8.3g} "
                f"{c.cpu_only_per_million:>10.4g} {c.service_per_million:>10.4g} "
                f"{c.cluster_per_million:>10.4g} "
                f"{100 * c.saving:>6.0f}%"
            )
        if self.published:
            lines += ["", "published figures vs this plan:"]
            mine = {
                "ml_speedup": self.ml_speedup,
                "job_speedup": self.job_speedup,
                "threads_per_gpu": self.ratio,
            }
            for k, v in self.published.items():
                if k in mine:
                    lines.append(f"  {k:<16} published {v:<8g} plan {mine[k]:.3g}")
        for k in ("assumed", "derived"):
            if self.notes.get(k):
                lines += ["", f"{k}:"] + [f"  {key}: {val}" for key, val in dict(self.notes[k]).items()]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        from sonic.bench.plots import pyplot

        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
        ax = axes[0]
        top = max(4.0, 3 * self.ratio) if math.isfinite(self.ratio) else 100.0
        ns = [top * i / 60 for i in range(1, 61)]
        ops = [solve(self.profile, self.curve, n, self.rtt_ms) for n in ns]
        ax.plot(ns, [self.inline_s / o.event_s for o in ops], "-", label="whole-job speed-up")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.axvline(self.ratio, color="tab:red", ls="--", lw=1, label=f"1:{self.ratio:.0f}")
        ax.set_xlabel("client CPU threads per server (GPU)")
        ax.set_ylabel("speed-up vs CPU-only")
        ax2 = ax.twinx()
        ax2.plot(
            ns, [100 * min(o.utilization, 1.5) for o in ops], ":", color="tab:green", label="GPU utilisation"
        )
        ax2.set_ylabel("server utilisation (%)", color="tab:green")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_title("speed-up and saturation", fontsize=10)
        ax = axes[1]
        cs = self.curve
        ax.plot(cs.throughput, cs.latency_ms, "-o", markersize=3, label="server curve")
        ax.scatter(
            [self.at_ratio.utilization * cs.max_throughput],
            [self.at_ratio.remote_ms - self.rtt_ms],
            color="tab:red",
            zorder=5,
            label="operating point",
        )
        ax.set_xlabel("server throughput (inferences/s)")
        ax.set_ylabel("latency per request (ms)")
        ax.set_title(cs.source[:60], fontsize=8)
        ax.legend(fontsize=7)
        ax = axes[2]
        names = [c.price.name for c in self.costs]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [c.cpu_only_per_million for c in self.costs], 0.4, label="CPU only")
        ax.bar([x + 0.2 for x in xs], [c.service_per_million for c in self.costs], 0.4, label="as a service")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=20, fontsize=7, ha="right")
        ax.set_ylabel("$ per million events")
        ax.set_title("cost", fontsize=10)
        ax.legend(fontsize=7)
        for a in axes:
            a.grid(True, alpha=0.3)
        fig.suptitle(self.name or self.profile.name, fontsize=10)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
        plt.close(fig)
        return out


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def make_plan(
    profile: Profile,
    curve: ServerCurve,
    *,
    threads: int = 1000,
    utilization: float = 1.0,
    rtt_ms: float = 0.0,
    prices: Sequence[Price] = DEFAULT_PRICES,
    name: str = "",
    published: Mapping[str, float] | None = None,
    notes: Mapping[str, Any] | None = None,
) -> Plan:
    """Everything ``sonic plan`` prints, for ``threads`` client threads."""
    if threads < 1:
        raise InvalidArgument("plan: the cluster needs at least one client thread")
    inline_s = (profile.cpu_ms_per_event + profile.ml_ms_per_event_inline) / 1e3
    if inline_s <= 0:
        raise InvalidArgument("plan: the inline event time is zero")
    ratio = threads_per_server(profile, curve, utilization, rtt_ms)
    if not math.isfinite(ratio):
        raise InvalidArgument(
            f"plan: one server did not reach {100 * utilization:.0f}% utilisation with "
            f"{THREADS_SEARCH_FACTOR:g} times the client threads that would fill it at one thread's "
            "pace (the search limit); check the server curve, or lower the target utilisation"
        )
    at_ratio = solve(profile, curve, ratio, rtt_ms)
    servers = max(1, math.ceil(threads / ratio * (1 - 1e-7))) if math.isfinite(ratio) else 1
    while True:  # whole servers: the threads are shared evenly
        cluster = solve(profile, curve, threads / servers, rtt_ms)
        if cluster.utilization <= utilization * (1 + 1e-6) or servers > threads:
            break
        servers += 1
    costs = []
    for pr in prices:
        cpu_only = pr.cpu_per_hour * inline_s / 3600 * 1e6
        service = (pr.cpu_per_hour + pr.gpu_per_hour / ratio) * at_ratio.event_s / 3600 * 1e6
        events_per_hour = threads / cluster.event_s * 3600
        cluster_cost = (threads * pr.cpu_per_hour + servers * pr.gpu_per_hour) / events_per_hour * 1e6
        costs.append(CostRow(pr, cpu_only, service, cluster_cost))
    if curve.batch != profile.inferences_per_request:
        notes = {
            **(notes or {}),
            "warning": (
                f"the server curve was measured with {curve.batch:g} inferences per request, "
                "the workflow sends "
                f"{profile.inferences_per_request:g}: its latencies are used as they are"
            ),
        }
    return Plan(
        profile,
        curve,
        rtt_ms,
        utilization,
        threads,
        inline_s,
        solve(profile, curve, 1.0, rtt_ms),
        ratio,
        at_ratio,
        servers,
        cluster,
        costs,
        name,
        dict(published or {}),
        dict(notes or {}),
    )


# -- files ---------------------------------------------------------------------------------------------


def _read(path: Path) -> Any:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise InvalidArgument(
                f"{path}: YAML needs PyYAML: pip install 'sonic[bench]' (or give the plan as JSON)"
            ) from None
        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{path}: not valid JSON: {exc}") from None


def load_curve(spec: Mapping[str, Any], base: Path) -> ServerCurve:
    """A plan file's ``server`` block: ``bench: FILE`` (+ ``latency: avg|p50|p99``), or
    ``throughput`` + ``latency_ms`` (+ ``batch``), or explicit ``curve`` points."""
    if "bench" in spec:
        path = Path(str(spec["bench"]))
        path = path if path.is_absolute() else base / path
        report = BenchReport.load(path)
        return ServerCurve.from_bench(report, str(spec.get("latency", "avg")), f"sonic bench {path.name}")
    if "curve" in spec:
        pts = list(spec["curve"])
        return ServerCurve(
            [float(p["concurrency"]) for p in pts],
            [float(p["throughput"]) for p in pts],
            [float(p["latency_ms"]) for p in pts],
            float(spec.get("batch", 1)),
            str(spec.get("source", "curve from the plan file")),
        )
    if "throughput" in spec and "latency_ms" in spec:
        return ServerCurve.by_hand(
            float(spec["throughput"]), float(spec["latency_ms"]), float(spec.get("batch", 1))
        )
    raise InvalidArgument(
        "plan file: the server block needs 'bench: FILE' (sonic bench --json), or 'throughput' and "
        "'latency_ms', or 'curve' points"
    )


def load_prices(items: Sequence[Mapping[str, Any]]) -> list[Price]:
    out = []
    for it in items:
        try:
            out.append(
                Price(
                    str(it["name"]),
                    float(it["cpu_per_hour"]),
                    float(it["gpu_per_hour"]),
                    str(it.get("note", "")),
                )
            )
        except KeyError as exc:
            raise InvalidArgument(
                f"plan file: a price needs name, cpu_per_hour and gpu_per_hour (missing {exc})"
            ) from None
    return out


def load_profile(path: str | Path) -> dict[str, Any]:
    """The workflow profile in a file: a ``sonic run --report-json`` report (its ``profile``
    block), or a plan file's ``workflow``/``profile`` block, or the keys at the top level."""
    path = Path(path)
    doc = _read(path)
    if not isinstance(doc, Mapping):
        raise InvalidArgument(f"{path}: expected a sonic run report or a mapping with a profile")
    if doc.get("kind") == "sonic-bench":
        raise InvalidArgument(f"{path} is a sonic bench report (the server's curve): pass it with --bench")
    for key in ("profile", "workflow"):
        inner = doc.get(key)
        if isinstance(inner, Mapping):
            return dict(inner)
    if doc.get("kind") == "sonic-run-report" or "modules" in doc:
        raise InvalidArgument(
            f"{path}: a sonic run report without a 'profile' block (written by an older sonic); "
            "run the workflow again with --report-json"
        )
    return dict(doc)


def load_plan_file(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    server_override: Mapping[str, Any] | None = None,
    *,
    threads: int | None = None,
    prices: Sequence[Price] | None = None,
    workflow: Mapping[str, Any] | None = None,
) -> Plan:
    """A plan from a file (YAML or JSON): ``workflow`` (or ``profile``: a Profile, or a
    ``sonic run`` report path under ``report``), ``server``, ``cluster`` (threads),
    ``prices``, ``published``, ``assumed``/``derived`` notes; or a ``sonic run`` report
    itself (its ``profile``; the server then comes from ``server_override``). ``workflow``
    replaces the file's workflow block (``sonic plan --profile``), ``overrides`` replace
    workflow keys; ``server_override`` server keys (a new curve replaces the file's);
    ``threads`` and ``prices`` the file's cluster size and prices."""
    path = Path(path)
    doc = _read(path)
    if not isinstance(doc, Mapping):
        raise InvalidArgument(f"{path}: expected a mapping with workflow and server blocks")
    if doc.get("kind") == "sonic-bench":
        raise InvalidArgument(
            f"{path} is a sonic bench report: pass it with --bench, and the workflow separately"
        )
    is_report = doc.get("kind") == "sonic-run-report"
    wf = dict(workflow) if workflow is not None else doc.get("workflow", doc.get("profile"))
    if isinstance(wf, Mapping) and "report" in wf:
        rp = Path(str(wf["report"]))
        wf = {
            **_read(rp if rp.is_absolute() else path.parent / rp),
            **{k: v for k, v in wf.items() if k != "report"},
        }
    if wf is None and "cpu_ms_per_event" in doc:
        wf = doc
    if not isinstance(wf, Mapping):
        raise InvalidArgument(f"{path}: no 'workflow' block (per-event CPU and ML times, requests, bytes)")
    profile = Profile.from_mapping({**wf, **dict(overrides or {})})
    server = dict(doc.get("server", {}) or {})
    curve_keys = ("bench", "curve", "throughput", "latency_ms", "batch", "latency")
    if server_override and any(k in server_override for k in ("bench", "curve", "throughput")):
        server = {k: v for k, v in server.items() if k not in curve_keys}
    server.update(server_override or {})
    if is_report and not any(k in server for k in ("bench", "curve", "throughput")):
        raise InvalidArgument(
            f"{path} is a sonic run report (the workflow): give the server too, with --bench FILE "
            "(sonic bench --json) or --server-throughput and --server-latency-ms"
        )
    curve = load_curve(server, path.parent)
    cluster = dict(doc.get("cluster", {}) or {})
    if prices is None:
        prices = load_prices(doc["prices"]) if doc.get("prices") else list(DEFAULT_PRICES)
    return make_plan(
        profile,
        curve,
        threads=int(threads or cluster.get("threads", 1000)),
        utilization=float(server.get("target_utilization") or cluster.get("target_utilization") or 1.0),
        rtt_ms=float(server.get("rtt_ms", 0.0)),
        prices=prices,
        name=str(doc.get("name", profile.name)),
        published={k: float(v) for k, v in dict(doc.get("published", {}) or {}).items()},
        notes={k: doc[k] for k in ("assumed", "derived", "source") if k in doc},
    )
