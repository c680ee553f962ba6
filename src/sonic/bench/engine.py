"""The measurement engine of ``sonic bench``: load levels, windows, stability, the report.

Where it sits: the CLI (and ``sonic optimize``) hand it a :class:`BenchConfig`; it reads the
model's metadata, builds the input entries (:mod:`.inputs`), starts the load-generating
processes (:mod:`.worker`), and measures each load level the way perf_analyzer does:

    start the level ─► warm-up ─► window 1 ─► window 2 ─► window 3 ─► ... (at most max_trials)
                                  each window: requests that *ended* in it, the server's
                                  statistics delta over it, the generator's CPU over it
    stable when the last 3 windows agree within ±stability % on throughput and on latency
    (the average, or --percentile); the level's figures are then those 3 windows merged.

Throughput is inferences per second (requests × batch); latency is the client's round trip
per request. One engine can measure many levels and survive a model reload between them
(``sonic optimize`` reloads the model with a new config and measures again).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from sonic.bench.inputs import Entry, entry_nbytes, make_entries, parse_shapes
from sonic.bench.results import BenchReport, ClientCpu, LevelResult, ServerBreakdown, summarize_latencies
from sonic.bench.wire import GRPC_SENDERS_PER_CONNECTION
from sonic.bench.worker import WorkerSpec, make_transport
from sonic.client import Metadata, ModelInfo, ModelStatistics, RepositoryIndex, SonicError
from sonic.protocol.datatypes import element_size
from sonic.protocol.errors import Code, InvalidArgument, nearest

__all__ = ["BenchConfig", "BenchError", "LoadEngine", "parse_range", "run_bench"]

#: perf_analyzer's defaults
MEASUREMENT_INTERVAL_MS = 5000
STABILITY_PERCENT = 10.0
MAX_TRIALS = 10
STABILITY_WINDOWS = 3
OUTPUT_SHM_SIZE = 100 * 1024


class BenchError(SonicError):
    """The benchmark could not run (bad settings, the server refused, a worker died)."""


def parse_range(text: str, *, integer: bool) -> list[float]:
    """perf_analyzer's ``start:end:step`` (end and step optional; end inclusive)."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip() for p in parts):
        raise InvalidArgument(f"range {text!r}: expected start[:end[:step]], e.g. 1:16:2")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise InvalidArgument(f"range {text!r}: start, end and step must be numbers") from None
    start = nums[0]
    end = nums[1] if len(nums) > 1 else start
    step = nums[2] if len(nums) > 2 else 1.0
    if start <= 0 or end < start or step <= 0:
        raise InvalidArgument(f"range {text!r}: need 0 < start <= end and step > 0")
    if integer and any(n != int(n) for n in (start, end, step)):
        raise InvalidArgument(f"range {text!r}: concurrency values must be integers")
    values = []
    k = 0
    while True:
        v = start + k * step
        if v > end * (1 + 1e-9):
            break
        values.append(round(v, 9))
        k += 1
        if k > 10_000:
            raise InvalidArgument(f"range {text!r}: more than 10000 levels")
    return values


@dataclass
class BenchConfig:
    """What to measure and how; the fields mirror ``sonic bench``'s flags."""

    model: str
    url: str = ""
    protocol: str = "grpc"  # grpc | http | local
    model_version: str = ""
    repository: tuple[str, ...] = ()  # for protocol "local"
    batch: int = 1
    concurrency: list[int] = field(default_factory=lambda: [1])
    request_rates: list[float] = field(default_factory=list)  # non-empty: request-rate mode
    distribution: str = "constant"  # constant | poisson
    shared_memory: str = "none"  # none | system
    output_shm_size: int = OUTPUT_SHM_SIZE
    input_data: str = "random"  # random | zero | FILE
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_format: str = "binary"
    output_format: str = "binary"
    compression: str | None = None
    sync: bool = True  # a blocking thread per request in flight (perf_analyzer's default); False: asyncio
    measurement_interval_ms: float = MEASUREMENT_INTERVAL_MS
    stability_percent: float = STABILITY_PERCENT
    max_trials: int = MAX_TRIALS
    percentile: int | None = None  # stabilise on this latency percentile instead of the average
    latency_threshold_ms: float | None = None  # stop the sweep past this latency
    warmup_s: float = 0.5
    processes: int | None = None  # None: automatic
    max_outstanding: int = 1024
    timeout_s: float = 30.0
    seed: int = 0
    engine: str = "wire"  # wire | client
    #: closed-loop senders per gRPC connection (wire engine); perf_analyzer's layout by default
    grpc_senders_per_connection: int = GRPC_SENDERS_PER_CONNECTION

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http", "local"):
            raise InvalidArgument(f"-i {self.protocol!r}: expected grpc, http or local")
        if self.protocol == "local" and not self.repository:
            raise InvalidArgument("-i local runs the model in the load generator: give --model-repository")
        if self.protocol != "local" and not self.url:
            self.url = "localhost:8001" if self.protocol == "grpc" else "localhost:8000"
        if self.distribution not in ("constant", "poisson"):
            raise InvalidArgument(
                f"--request-distribution {self.distribution!r}: expected constant or poisson"
            )
        if self.shared_memory not in ("none", "system"):
            raise InvalidArgument(
                f"--shared-memory {self.shared_memory!r}: expected none or system (cuda is not supported)"
            )
        for name in ("input_format", "output_format"):
            value = getattr(self, name)
            if value not in ("binary", "json"):
                raise InvalidArgument(f"--{name.replace('_', '-')} {value!r}: expected binary or json")
        if self.compression in ("", "none"):
            self.compression = None
        if self.compression not in (None, "gzip", "deflate"):
            raise InvalidArgument(f"compression {self.compression!r}: expected none, gzip or deflate")
        if self.measurement_interval_ms <= 0 or self.max_trials < 1:
            raise InvalidArgument("the measurement interval must be > 0 and --max-trials >= 1")
        if not self.request_rates and not self.concurrency:
            raise InvalidArgument("give --concurrency-range or --request-rate-range")
        if self.engine not in ("wire", "client"):
            raise InvalidArgument(f"--engine {self.engine!r}: expected wire or client")
        if self.protocol == "http" and self.input_format == "json" and self.engine != "wire":
            raise InvalidArgument(
                "--input-tensor-format json: only the wire engine sends JSON tensors (--engine wire); "
                "the SONIC client's HTTP transport always sends binary tensors"
            )
        if self.grpc_senders_per_connection < 0:
            raise InvalidArgument(
                f"--grpc-senders-per-connection {self.grpc_senders_per_connection}: expected >= 0"
            )
        if self.percentile is not None and not 0 < self.percentile < 100:
            raise InvalidArgument(f"--percentile {self.percentile}: expected 1..99")

    @property
    def mode(self) -> str:
        return "request_rate" if self.request_rates else "concurrency"

    @property
    def levels(self) -> list[float]:
        return list(self.request_rates) if self.request_rates else [float(c) for c in self.concurrency]

    def auto_processes(self) -> int:
        """Worker processes when not given: one on a small host (the server needs the other
        cores); on a bigger one, enough that each carries ~16 concurrent requests or ~5000
        requests/s, at most a quarter of the cores."""
        if self.processes:
            return self.processes
        if self.protocol == "local":
            return 1
        cpus = os.cpu_count() or 1
        if cpus <= 4:
            return 1
        top = max(self.levels)
        want = math.ceil(top / 5000) if self.request_rates else math.ceil(top / 16)
        return max(1, min(cpus // 4, want))


def fetch_model_info(cfg: BenchConfig) -> ModelInfo:
    """The model's inputs, outputs and max_batch_size, from the server (or the repository)."""
    where = "the local repository" if cfg.protocol == "local" else f"{cfg.protocol} server {cfg.url}"
    try:
        transport = make_transport(cfg.protocol, cfg.url, cfg.repository, cfg.model)
    except SonicError as exc:
        raise BenchError(f"cannot read model '{cfg.model}' from {where}: {exc.message}", exc.code) from None
    try:
        return transport.handle(Metadata(cfg.model, cfg.model_version, timeout=30.0))
    except SonicError as exc:
        hint = ""
        if exc.code is Code.NOT_FOUND:
            with contextlib.suppress(SonicError):
                names = {e.name for e in transport.handle(RepositoryIndex(timeout=10.0))}
                hint = nearest(cfg.model, names)
        msg = f"cannot read model '{cfg.model}' from {where}: {exc.message}{hint}"
        raise BenchError(msg, exc.code) from None
    finally:
        transport.close()


def _output_sizes(info: ModelInfo, batch: int, default: int) -> tuple[tuple[str, int], ...]:
    out = []
    for t in info.outputs.values():
        if t.datatype != "BYTES" and all(d >= 0 for d in t.dims):
            n = (
                int(np.prod(t.dims, dtype=np.int64))
                * element_size(t.datatype)
                * (batch if info.batched else 1)
            )
            out.append((t.name, max(n, 1)))
        else:
            out.append((t.name, default))
    return tuple(out)


def _split(total: float, parts: int, integer: bool) -> list[float]:
    if integer:
        base, extra = divmod(int(total), parts)
        return [float(base + (1 if i < extra else 0)) for i in range(parts)]
    return [total / parts] * parts


@dataclass
class _Window:
    start_ns: int
    end_ns: int
    latencies: npt.NDArray[np.int64]
    errors: int
    delayed: int
    stats: ModelStatistics | None
    cpu_s: list[float]
    busy: float  # host busy fraction

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _stats_delta(a: ModelStatistics | None, b: ModelStatistics | None) -> ModelStatistics | None:
    if a is None or b is None:
        return None
    return b - a


def _add_stats(items: Sequence[ModelStatistics | None]) -> ModelStatistics | None:
    if any(s is None for s in items) or not items:
        return None
    names = [n for n in ModelStatistics.__dataclass_fields__ if n not in ("name", "version")]
    first = items[0]
    assert first is not None
    return ModelStatistics(
        first.name, "", *(sum(getattr(s, n) for s in items if s is not None) for n in names)
    )


def _breakdown(s: ModelStatistics | None) -> ServerBreakdown:
    if s is None or s.success_count <= 0:
        return ServerBreakdown()
    n = s.success_count
    return ServerBreakdown(
        requests=n,
        executions=s.execution_count,
        inferences=s.inference_count,
        queue_us=s.queue_ns / n / 1e3,
        compute_input_us=s.compute_input_ns / n / 1e3,
        compute_infer_us=s.compute_infer_ns / n / 1e3,
        compute_output_us=s.compute_output_ns / n / 1e3,
        request_us=s.success_ns / n / 1e3,
    )


class LoadEngine:
    """Worker processes connected to one model, ready to measure load levels.

    ``with LoadEngine(cfg) as engine: result = engine.measure("concurrency", 8)``
    """

    def __init__(
        self, cfg: BenchConfig, info: ModelInfo | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.info = info or fetch_model_info(cfg)
        self.entries: list[Entry] = make_entries(
            self.info, batch=cfg.batch, data=cfg.input_data, shapes=cfg.shapes, seed=cfg.seed
        )
        self.processes = cfg.auto_processes()
        self.log = log or (lambda _msg: None)
        self.conns: list[Connection] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ps: list[psutil.Process] = []
        self.calibration: dict[str, float] = {"send_us": 0.0, "recv_us": 0.0}

    # -- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> LoadEngine:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        cfg = self.cfg
        outputs = _output_sizes(self.info, cfg.batch, cfg.output_shm_size)
        try:
            for i in range(self.processes):
                spec = WorkerSpec(
                    index=i,
                    protocol=cfg.protocol,
                    url=cfg.url,
                    repository=tuple(str(r) for r in cfg.repository),
                    model=cfg.model,
                    version=cfg.model_version,
                    entries=tuple(self.entries),
                    outputs=outputs,
                    shared_memory=cfg.shared_memory,
                    compression=cfg.compression,
                    input_format=cfg.input_format,
                    output_format=cfg.output_format,
                    sync=cfg.sync,
                    timeout=cfg.timeout_s,
                    read_stats=i == 0,
                    seed=cfg.seed,
                    engine=cfg.engine,
                    grpc_senders_per_connection=cfg.grpc_senders_per_connection,
                )
                mine, theirs = socket.socketpair()
                with mine, theirs:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "sonic.bench.worker", str(theirs.fileno())],
                        pass_fds=[theirs.fileno()],
                        stdin=subprocess.DEVNULL,
                    )
                    conn = Connection(mine.detach())
                self.procs.append(proc)
                self.conns.append(conn)
                self.ps.append(psutil.Process(proc.pid))
                conn.send(spec)
            calibs = [self._recv(c, "ready", 120.0)[1] for c in self.conns]
        except BaseException:
            self.close()
            raise
        self.calibration = {k: float(np.mean([c[k] for c in calibs])) for k in ("send_us", "recv_us")}

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError, ValueError):
                c.send(("exit",))
        deadline = time.monotonic() + 15
        for c, p in zip(self.conns, self.procs, strict=False):
            try:
                while time.monotonic() < deadline and c.poll(max(0.0, deadline - time.monotonic())):
                    if c.recv()[0] == "bye":
                        break
            except (EOFError, OSError):
                pass
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            c.close()
        self.conns, self.procs, self.ps = [], [], []

    def _recv(self, conn: Connection, expect: str, timeout: float) -> tuple[Any, ...]:
        if not conn.poll(timeout):
            raise BenchError(
                f"a load-generator process did not answer within {timeout:.0f} s", Code.UNAVAILABLE
            )
        try:
            msg: tuple[Any, ...] = conn.recv()
        except EOFError:
            raise BenchError(
                "a load-generator process died (see its output above)", Code.UNAVAILABLE
            ) from None
        if msg[0] == "error":
            raise BenchError(f"load generator: {msg[1]}", Code.UNAVAILABLE)
        if msg[0] != expect:
            raise BenchError(f"load generator answered {msg[0]!r}, expected {expect!r}")
        return msg

    def _all(self, msg: tuple[Any, ...], expect: str, timeout: float) -> list[tuple[Any, ...]]:
        for c in self.conns:
            c.send(msg)
        return [self._recv(c, expect, timeout) for c in self.conns]

    # -- measuring -------------------------------------------------------------------------------

    @property
    def uses_wire(self) -> bool:
        c = self.cfg
        return c.engine == "wire" and c.protocol in ("grpc", "http")

    def client_codec_us(self, key: str) -> float:
        """Client send/recv per request: the codec's cost when each request is encoded and
        each answer decoded (the SONIC client); 0 with the wire engine, which encodes once
        and does not decode outputs (as perf_analyzer's gRPC client reports 0)."""
        return 0.0 if self.uses_wire else self.calibration[key]

    def _cpu(self) -> list[float]:
        out = []
        for p in self.ps:
            try:
                t = p.cpu_times()
                out.append(t.user + t.system)
            except psutil.Error:
                out.append(0.0)
        return out

    def measure(
        self,
        mode: str,
        load: float,
        *,
        interval_ms: float | None = None,
        max_trials: int | None = None,
        warmup_s: float | None = None,
    ) -> LevelResult:
        """Measure one level: ``mode`` "concurrency" (closed loop, ``load`` requests in
        flight) or "request_rate" (open loop, ``load`` requests/s)."""
        cfg = self.cfg
        interval = (interval_ms if interval_ms is not None else cfg.measurement_interval_ms) / 1e3
        trials = max_trials if max_trials is not None else cfg.max_trials
        warmup = cfg.warmup_s if warmup_s is None else warmup_s
        integer = mode == "concurrency"
        shares = _split(load, len(self.conns), integer)
        first = 0  # closed loop: the senders are numbered across the processes
        for c, share in zip(self.conns, shares, strict=True):
            outstanding = max(1, cfg.max_outstanding // len(self.conns))
            c.send(("start", mode, share, cfg.distribution, outstanding, first))
            first += int(share) if integer else 0
        for c in self.conns:
            self._recv(c, "started", 30.0)
        timeout = cfg.timeout_s + 30.0
        windows: list[_Window] = []
        errors: list[str] = []
        try:
            time.sleep(warmup)
            carry = np.zeros((0, 2), dtype=np.int64)
            carry_fail = np.zeros(0, dtype=np.int64)
            t_prev, stats_prev, cpu_prev, host_prev, carry, carry_fail, _ = self._boundary(
                carry, carry_fail, timeout, errors, drop=True
            )
            for _ in range(trials):
                time.sleep(interval)
                t_now, stats_now, cpu_now, host_now, pairs, fails, delayed = self._boundary(
                    carry, carry_fail, timeout, errors
                )
                in_window = pairs[:, 1] <= t_now
                fail_in = fails <= t_now
                lat = pairs[in_window, 1] - pairs[in_window, 0]
                carry, carry_fail = pairs[~in_window], fails[~fail_in]
                windows.append(
                    _Window(
                        t_prev,
                        t_now,
                        lat,
                        int(fail_in.sum()),
                        delayed,
                        _stats_delta(stats_prev, stats_now),
                        [b - a for a, b in zip(cpu_prev, cpu_now, strict=True)],
                        _busy(host_prev, host_now),
                    )
                )
                t_prev, stats_prev, cpu_prev, host_prev = t_now, stats_now, cpu_now, host_now
                w = windows[-1]
                self.log(
                    f"  window {len(windows)}: {len(w.latencies) * cfg.batch / w.seconds:.1f} infer/s, "
                    f"avg {np.mean(w.latencies) / 1e3 if len(w.latencies) else float('nan'):.0f} µs"
                )
                if self._stable(windows):
                    break
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                self._all(("stop",), "stopped", timeout)
            raise
        self._all(("stop",), "stopped", timeout)
        return self._result(mode, load, windows, errors)

    def _boundary(
        self,
        carry: npt.NDArray[np.int64],
        carry_fail: npt.NDArray[np.int64],
        timeout: float,
        errors: list[str],
        drop: bool = False,
    ) -> tuple[Any, ...]:
        """End a window: the time, the server's statistics, the CPU counters, and every record
        so far (those that ended after the boundary are carried into the next window)."""
        host = psutil.cpu_times()
        cpu = self._cpu()
        t = time.monotonic_ns()
        replies = self._all(("flush",), "flush", timeout)
        pairs = [carry] + [r[1] for r in replies]
        fails = [carry_fail] + [r[2] for r in replies]
        for r in replies:
            errors.extend(r[3])
        delayed = sum(int(r[4]) for r in replies)
        stats = replies[0][5]
        all_pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
        all_fails = np.concatenate(fails)
        if drop:  # the warm-up: keep only what ended after the boundary
            all_pairs = all_pairs[all_pairs[:, 1] > t]
            all_fails = all_fails[all_fails > t]
        return t, stats, cpu, host, all_pairs, all_fails, delayed

    def _metric(self, w: _Window) -> float:
        if len(w.latencies) == 0:
            return float("nan")
        p = self.cfg.percentile
        if p is None:
            return float(np.mean(w.latencies))
        s = np.sort(w.latencies)
        return float(s[int(p / 100.0 * (len(s) - 1) + 0.5)])

    def _stable(self, windows: list[_Window]) -> bool:
        if len(windows) < STABILITY_WINDOWS:
            return False
        last = windows[-STABILITY_WINDOWS:]
        tps = [len(w.latencies) / w.seconds for w in last]
        lats = [self._metric(w) for w in last]
        if min(tps) <= 0 or not all(np.isfinite(lats)):
            return False
        tol = self.cfg.stability_percent / 100.0
        tp_avg, lat_avg = float(np.mean(tps)), float(np.mean(lats))
        return all(abs(t / tp_avg - 1) <= tol for t in tps) and all(abs(x / lat_avg - 1) <= tol for x in lats)

    def _result(self, mode: str, load: float, windows: list[_Window], errors: list[str]) -> LevelResult:
        cfg = self.cfg
        stable = self._stable(windows)
        used = windows[-STABILITY_WINDOWS:]
        lat = np.concatenate([w.latencies for w in used]) if used else np.zeros(0, dtype=np.int64)
        seconds = sum(w.seconds for w in used)
        cpu = [sum(w.cpu_s[i] for w in used) for i in range(len(self.conns))]
        stats = _add_stats([w.stats for w in used])
        return LevelResult(
            mode=mode,
            load=load,
            batch=cfg.batch,
            requests=len(lat),
            errors=sum(w.errors for w in used),
            seconds=seconds,
            latency_us=summarize_latencies(lat),
            client_send_us=self.client_codec_us("send_us"),
            client_recv_us=self.client_codec_us("recv_us"),
            server=_breakdown(stats),
            client=ClientCpu(
                processes=len(self.conns),
                cpu_s=sum(cpu),
                wall_s=seconds,
                per_process=[c / seconds if seconds else 0.0 for c in cpu],
                system_util=float(np.mean([w.busy for w in used])) if used else 0.0,
                host_cpus=os.cpu_count() or 1,
            ),
            stable=stable,
            trials=len(windows),
            windows=[
                {
                    "seconds": w.seconds,
                    "throughput": len(w.latencies) * cfg.batch / w.seconds if w.seconds else 0.0,
                    "avg_us": float(np.mean(w.latencies)) / 1e3 if len(w.latencies) else float("nan"),
                    "p50_us": summarize_latencies(w.latencies)["p50"],
                }
                for w in windows
            ],
            delayed=sum(w.delayed for w in used),
            error_messages=list(dict.fromkeys(errors))[:5],
        )


def _busy(a: Any, b: Any) -> float:
    total = sum(b) - sum(a)
    idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
    return max(0.0, min(1.0, 1 - idle / total)) if total > 0 else 0.0


def environment() -> dict[str, Any]:
    import sonic

    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sonic": getattr(sonic, "__version__", ""),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _model_dict(info: ModelInfo, entries: list[Entry]) -> dict[str, Any]:
    return {
        "name": info.name,
        "platform": info.platform,
        "max_batch_size": info.max_batch_size,
        "inputs": [t.describe(info.batched) for t in info.inputs.values()],
        "outputs": [t.describe(info.batched) for t in info.outputs.values()],
        "request_bytes": entry_nbytes(entries[0]) if entries else 0,
    }


def run_bench(
    cfg: BenchConfig,
    log: Callable[[str], None] | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
) -> BenchReport:
    """Measure every level of ``cfg`` (a concurrency or a request-rate sweep)."""
    say = log or (lambda _msg: None)
    results: list[LevelResult] = []
    with LoadEngine(cfg, log=say) as engine:
        settings = {k: v for k, v in asdict(replace(cfg)).items()}
        settings["mode"] = cfg.mode
        settings["processes"] = engine.processes
        settings["codec_us_per_request"] = dict(engine.calibration)
        settings["request_engine"] = "wire" if engine.uses_wire else "sonic.client transport"
        settings["shapes"] = {k: list(v) for k, v in cfg.shapes.items()}
        for level in cfg.levels:
            say(f"{'concurrency' if cfg.mode == 'concurrency' else 'request rate'} {level:g}")
            r = engine.measure(cfg.mode, level)
            results.append(r)
            if on_level is not None:
                on_level(r)
            if cfg.latency_threshold_ms is not None:
                key = f"p{cfg.percentile}" if cfg.percentile else "avg"
                if r.latency_us.get(key, r.latency_us["avg"]) > cfg.latency_threshold_ms * 1e3:
                    say(f"latency above {cfg.latency_threshold_ms} ms: the sweep stops here")
                    break
        return BenchReport(settings, _model_dict(engine.info, engine.entries), environment(), results)


__all__ += ["environment", "fetch_model_info", "parse_shapes"]
