"""What a measurement gives: per load level, throughput, latency, and where the time went.

Where it sits: :mod:`sonic.bench.engine` fills these from its measurement windows; the CLI
prints them, writes them as perf_analyzer's CSV (``-f``, same columns, so the same tools read
both) and as JSON (``--json``, everything: what ``sonic plan`` and ``sonic optimize`` read),
and plots them (:mod:`sonic.bench.plots`). Times are microseconds, throughput is inferences
(samples: requests × batch) per second, as in perf_analyzer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BenchReport", "LevelResult", "percentile_ns", "summarize_latencies"]

PERCENTILES = (50, 90, 95, 99)


def percentile_ns(sorted_ns: npt.NDArray[np.int64], q: float) -> float:
    """perf_analyzer's percentile: the sorted sample at index round(q/100 × (n−1))."""
    n = len(sorted_ns)
    if n == 0:
        return float("nan")
    return float(sorted_ns[int(q / 100.0 * (n - 1) + 0.5)])


def summarize_latencies(latencies_ns: npt.NDArray[np.int64]) -> dict[str, float]:
    """avg, std, min, max and p50/p90/p95/p99 in µs."""
    if len(latencies_ns) == 0:
        nan = float("nan")
        return {"avg": nan, "std": nan, "min": nan, "max": nan, **{f"p{q}": nan for q in PERCENTILES}}
    s = np.sort(latencies_ns)
    out = {
        "avg": float(s.mean()) / 1e3,
        "std": float(s.std()) / 1e3,
        "min": float(s[0]) / 1e3,
        "max": float(s[-1]) / 1e3,
    }
    for q in PERCENTILES:
        out[f"p{q}"] = percentile_ns(s, q) / 1e3
    return out


@dataclass
class ServerBreakdown:
    """Server-side averages per request over the measurement, from the statistics extension
    (the difference of two snapshots), as perf_analyzer reports them."""

    requests: int = 0  # successful requests the server counted
    executions: int = 0  # model executions (batches)
    inferences: int = 0  # samples
    queue_us: float = 0.0
    compute_input_us: float = 0.0
    compute_infer_us: float = 0.0
    compute_output_us: float = 0.0
    request_us: float = 0.0  # success time: queue + compute + the server's own overhead

    @property
    def compute_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us

    @property
    def overhead_us(self) -> float:
        return max(0.0, self.request_us - self.queue_us - self.compute_us)

    @property
    def avg_batch(self) -> float:
        """Samples per model execution: what dynamic batching achieved."""
        return self.inferences / self.executions if self.executions else 0.0


@dataclass
class ClientCpu:
    """The load generator's own CPU use during the measurement."""

    processes: int = 1
    cpu_s: float = 0.0  # user + system, all worker processes
    wall_s: float = 0.0
    per_process: list[float] = field(default_factory=list)  # utilisation of one core each
    system_util: float = 0.0  # the whole host: busy fraction of all its cores
    host_cpus: int = 1

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def saturated(self) -> bool:
        """A worker process used (nearly) a whole core: the generator may be the bottleneck."""
        return any(u > 0.9 for u in self.per_process)


@dataclass
class LevelResult:
    """One load level (a concurrency, or a request rate) once stable (or out of trials)."""

    mode: str  # "concurrency" | "request_rate"
    load: float
    batch: int
    requests: int
    errors: int
    seconds: float
    latency_us: dict[str, float]
    client_send_us: float = 0.0
    client_recv_us: float = 0.0
    server: ServerBreakdown = field(default_factory=ServerBreakdown)
    client: ClientCpu = field(default_factory=ClientCpu)
    stable: bool = True
    trials: int = 0
    windows: list[dict[str, float]] = field(default_factory=list)
    delayed: int = 0
    error_messages: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Inferences (samples) per second."""
        return self.requests * self.batch / self.seconds if self.seconds else 0.0

    @property
    def request_rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def network_us(self) -> float:
        """perf_analyzer's "Network+Server Send/Recv": what the average latency leaves after
        the client's (un)marshalling and the server's queue and compute."""
        rest = (
            self.latency_us["avg"]
            - self.client_send_us
            - self.client_recv_us
            - self.server.queue_us
            - self.server.compute_us
        )
        return max(0.0, rest) if np.isfinite(rest) else 0.0

    @property
    def client_cpu_us_per_request(self) -> float:
        return self.client.cpu_s / self.requests * 1e6 if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["throughput"] = self.throughput
        d["request_rate"] = self.request_rate
        d["network_us"] = self.network_us
        d["server"]["compute_us"] = self.server.compute_us
        d["server"]["overhead_us"] = self.server.overhead_us
        d["server"]["avg_batch"] = self.server.avg_batch
        d["client"]["cores"] = self.client.cores
        d["client"]["saturated"] = self.client.saturated
        d["client"]["cpu_us_per_request"] = self.client_cpu_us_per_request
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LevelResult:
        d = dict(d)
        d["latency_us"] = {
            k: float("nan") if v is None else float(v) for k, v in dict(d.get("latency_us", {})).items()
        }
        server = {
            k: v for k, v in dict(d.get("server", {})).items() if k in ServerBreakdown.__dataclass_fields__
        }
        client = {k: v for k, v in dict(d.get("client", {})).items() if k in ClientCpu.__dataclass_fields__}
        own = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k not in ("server", "client")}
        return cls(**own, server=ServerBreakdown(**server), client=ClientCpu(**client))


#: perf_analyzer's ``-f`` columns (2.41), then the ones it adds with --verbose-csv that we
#: know, then sonic's own.
CSV_COLUMNS = (
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
    "Avg latency",
    "Errors",
    "Avg Server Batch",
    "Client CPU (cores)",
    "Stable",
)


@dataclass
class BenchReport:
    """A sweep: the settings, the model, the host, and one :class:`LevelResult` per level."""

    settings: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    results: list[LevelResult]

    @property
    def mode(self) -> str:
        return self.results[0].mode if self.results else str(self.settings.get("mode", "concurrency"))

    # -- text ------------------------------------------------------------------------------------

    def table(self) -> str:
        head = (
            f"{'load':>8} {'infer/s':>10} {'avg µs':>9} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} "
            f"{'queue µs':>9} {'compute µs':>10} {'batch':>6} {'cli cores':>9} {'err':>5} {'stable':>6}"
        )
        lines = [head, "-" * len(head)]
        for r in self.results:
            lat = r.latency_us
            lines.append(
                f"{r.load:>8g} {r.throughput:>10.1f} {lat['avg']:>9.0f} {lat['p50']:>9.0f} "
                f"{lat['p90']:>9.0f} {lat['p99']:>9.0f} {r.server.queue_us:>9.0f} "
                f"{r.server.compute_us:>10.0f} {r.server.avg_batch:>6.2f} {r.client.cores:>9.2f} "
                f"{r.errors:>5d} {'yes' if r.stable else 'NO':>6}"
            )
        return "\n".join(lines)

    def describe(self, r: LevelResult) -> str:
        """perf_analyzer's per-level block."""
        what = "Request concurrency" if r.mode == "concurrency" else "Request rate"
        lat = r.latency_us
        s = r.server
        lines = [
            f"{what}: {r.load:g}",
            "  Client: ",
            f"    Request count: {r.requests}",
            f"    Throughput: {r.throughput:.1f} infer/sec",
            f"    Avg latency: {lat['avg']:.0f} usec (standard deviation {lat['std']:.0f} usec)",
            *(f"    p{q} latency: {lat[f'p{q}']:.0f} usec" for q in (50, 90, 95, 99)),
            f"    Avg send/recv (codec): {r.client_send_us:.1f} / {r.client_recv_us:.1f} usec",
            f"    Load generator: {r.client.processes} process(es), {r.client.cores:.2f} cores "
            f"({r.client_cpu_us_per_request:.0f} usec CPU per request); host busy "
            f"{100 * r.client.system_util:.0f}% of {r.client.host_cpus} cores",
        ]
        if r.mode == "request_rate":
            lines.append(f"    Delayed requests (> 2 ms late): {r.delayed}")
        if r.errors:
            lines.append(f"    Errors: {r.errors} ({'; '.join(r.error_messages[:3])})")
        lines += [
            "  Server: ",
            f"    Inference count: {s.inferences}",
            f"    Execution count: {s.executions} (avg batch {s.avg_batch:.2f})",
            f"    Successful request count: {s.requests}",
            f"    Avg request latency: {s.request_us:.0f} usec (overhead {s.overhead_us:.0f} usec + queue "
            f"{s.queue_us:.0f} usec + compute input {s.compute_input_us:.0f} usec + compute infer "
            f"{s.compute_infer_us:.0f} usec + compute output {s.compute_output_us:.0f} usec)",
        ]
        if not r.stable:
            lines.append(f"  WARNING: not stable after {r.trials} windows (reported: the last ones)")
        if r.client.saturated:
            lines.append(
                "  WARNING: a load-generator process used a whole core; the client may be the "
                "bottleneck (more --processes, or a bigger machine for the client)"
            )
        return "\n".join(lines)

    # -- files -----------------------------------------------------------------------------------

    def to_csv(self) -> str:
        """perf_analyzer's ``-f`` format (its columns first, same names and units)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        first = "Concurrency" if self.mode == "concurrency" else "Request Rate"
        w.writerow([first, *CSV_COLUMNS])
        for r in self.results:
            lat = r.latency_us
            s = r.server
            w.writerow(
                [
                    f"{r.load:g}",
                    f"{r.throughput:.2f}",
                    round(r.client_send_us),
                    round(r.network_us),
                    round(s.queue_us),
                    round(s.compute_input_us),
                    round(s.compute_infer_us),
                    round(s.compute_output_us),
                    round(r.client_recv_us),
                    *(round(lat[f"p{q}"]) if np.isfinite(lat[f"p{q}"]) else "" for q in (50, 90, 95, 99)),
                    round(lat["avg"]) if np.isfinite(lat["avg"]) else "",
                    r.errors,
                    f"{s.avg_batch:.2f}",
                    f"{r.client.cores:.2f}",
                    int(r.stable),
                ]
            )
        return buf.getvalue()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "sonic-bench",
            "version": 1,
            "settings": self.settings,
            "model": self.model,
            "environment": self.environment,
            "results": [r.as_dict() for r in self.results],
        }

    def to_json(self) -> str:
        """Strict JSON: NaN (a level without a sample) is written as null."""
        return json.dumps(_finite(self.as_dict()), indent=2, default=_json_default, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchReport:
        return cls(
            settings=dict(d.get("settings", {})),
            model=dict(d.get("model", {})),
            environment=dict(d.get("environment", {})),
            results=[LevelResult.from_dict(r) for r in d.get("results", [])],
        )

    @classmethod
    def load(cls, path: str | Path) -> BenchReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def write(self, csv_path: str | Path | None = None, json_path: str | Path | None = None) -> None:
        if csv_path:
            Path(csv_path).write_text(self.to_csv())
        if json_path:
            Path(json_path).write_text(self.to_json())


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def curve(results: Sequence[LevelResult]) -> list[tuple[float, float, float]]:
    """(load, throughput, p99 µs) of each level: the shape plans are made from."""
    return [(r.load, r.throughput, r.latency_us["p99"]) for r in results]
