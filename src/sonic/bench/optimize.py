"""``sonic optimize``: find the server configuration of a model that serves it best.

Where it sits: model_analyzer's job, done with sonic's own pieces. A sonic server runs the
model in explicit model-control mode (started here on a temporary copy of the repository, or
one already running); each candidate configuration is loaded through the repository API with
a config override (``POST /v2/repository/models/<m>/load`` with ``parameters.config``), so no
restart is needed; the bench engine (:mod:`sonic.bench.engine`) measures it at each requested
concurrency, with the same load-generating processes throughout.

    space (instances × max_batch_size × preferred sizes × queue delay × backend threads)
      └─ search: brute force (small spaces), coordinate ascent, or successive halving
           └─ per candidate: load config ─► measure at each concurrency ─► points
    points ─► Pareto front (throughput up, p99 down) ─► best under --latency-budget-ms
          ─► config.pbtxt, report.json, report.txt, pareto.png

The objective of a candidate is its best throughput among the concurrencies whose p99
latency fits the budget (without a budget: its best throughput).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# No stubs ship with protobuf; types-protobuf may or may not be installed.
from google.protobuf import json_format, text_format  # type: ignore[import-untyped, unused-ignore]
from tritonclient.grpc.model_config_pb2 import ModelConfig

from sonic.bench.engine import BenchConfig, LoadEngine
from sonic.bench.results import LevelResult
from sonic.protocol.errors import InvalidArgument, SonicError, Unavailable

__all__ = [
    "Candidate",
    "OptimizeReport",
    "Point",
    "SearchSpace",
    "apply_candidate",
    "choose_best",
    "optimize",
    "pareto_front",
]

THREADS_PARAM = "intra_op_thread_count"


@dataclass(frozen=True, order=True)
class Candidate:
    """One server configuration of the model. ``preferred`` () = none; ``max_queue_delay_us``
    -1 = no dynamic batching; ``threads`` 0 = the backend's default."""

    instances: int
    max_batch_size: int
    preferred: tuple[int, ...]
    max_queue_delay_us: int
    threads: int

    def label(self) -> str:
        pref = "/".join(map(str, self.preferred)) if self.preferred else "-"
        delay = "off" if self.max_queue_delay_us < 0 else f"{self.max_queue_delay_us}us"
        threads = f" t{self.threads}" if self.threads else ""
        return f"i{self.instances} mbs{self.max_batch_size} pref{pref} delay{delay}{threads}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "preferred_batch_sizes": list(self.preferred),
            "max_queue_delay_us": self.max_queue_delay_us,
            "threads": self.threads,
        }


def _preferred(token: str, max_batch_size: int) -> tuple[int, ...] | None:
    """ "none" -> (), "max" -> (mbs,), "half" -> (mbs//2,), "4+8" -> (4, 8); None when a size
    does not fit ``max_batch_size``."""
    token = token.strip().lower()
    if token in ("none", "-", ""):
        return ()
    if token == "max":
        return (max_batch_size,)
    if token == "half":
        return (max(1, max_batch_size // 2),)
    try:
        sizes = tuple(sorted({int(s) for s in token.split("+")}))
    except ValueError:
        raise InvalidArgument(
            f"--preferred-batch-sizes {token!r}: expected none, max, half or sizes joined by '+' (e.g. 4+8)"
        ) from None
    if any(s < 1 for s in sizes):
        raise InvalidArgument(f"--preferred-batch-sizes {token!r}: sizes must be >= 1")
    return sizes if all(s <= max_batch_size for s in sizes) else None


@dataclass
class SearchSpace:
    """The values to try per dimension (a dimension with one value is fixed)."""

    instances: list[int] = field(default_factory=lambda: [1, 2])
    max_batch_size: list[int] = field(default_factory=list)  # empty: the model's own
    preferred: list[str] = field(default_factory=lambda: ["none"])
    max_queue_delay_us: list[int] = field(default_factory=lambda: [0, 100, 1000])
    threads: list[int] = field(default_factory=lambda: [0])

    def dims(self, base_mbs: int) -> dict[str, list[Any]]:
        return {
            "instances": list(dict.fromkeys(self.instances)),
            "max_batch_size": list(dict.fromkeys(self.max_batch_size or [base_mbs])),
            "preferred": list(dict.fromkeys(self.preferred)),
            "max_queue_delay_us": list(dict.fromkeys(self.max_queue_delay_us)),
            "threads": list(dict.fromkeys(self.threads)),
        }

    def candidate(self, values: dict[str, Any], min_batch: int = 1) -> Candidate | None:
        """The candidate for one choice per dimension, or None if it is not a valid config."""
        mbs = int(values["max_batch_size"])
        if mbs < min_batch or values["instances"] < 1:
            return None
        pref = _preferred(str(values["preferred"]), mbs)
        if pref is None:
            return None
        delay = int(values["max_queue_delay_us"])
        if mbs == 0 and (pref or delay >= 0):
            pref, delay = (), -1  # no batching at all
        return Candidate(int(values["instances"]), mbs, pref, delay, int(values["threads"]))

    def all(self, base_mbs: int, min_batch: int = 1) -> list[Candidate]:
        dims = self.dims(base_mbs)
        out: list[Candidate] = []
        for combo in itertools.product(*dims.values()):
            c = self.candidate(dict(zip(dims, combo, strict=True)), min_batch)
            if c is not None and c not in out:
                out.append(c)
        return out


def apply_candidate(base: ModelConfig, c: Candidate, backend_threads: bool = True) -> ModelConfig:
    """``base`` with ``c``'s settings (a copy)."""
    cfg = ModelConfig()
    cfg.CopyFrom(base)
    cfg.max_batch_size = c.max_batch_size
    if cfg.instance_group:
        for g in cfg.instance_group:
            g.count = c.instances
    else:
        cfg.instance_group.add().count = c.instances
    if c.max_queue_delay_us < 0 or c.max_batch_size == 0:
        cfg.ClearField("dynamic_batching")
    else:
        db = cfg.dynamic_batching
        db.max_queue_delay_microseconds = c.max_queue_delay_us
        del db.preferred_batch_size[:]
        db.preferred_batch_size.extend(c.preferred)
    if backend_threads:
        if c.threads > 0:
            cfg.parameters[THREADS_PARAM].string_value = str(c.threads)
        elif THREADS_PARAM in cfg.parameters:
            del cfg.parameters[THREADS_PARAM]
    return cfg


def config_text(cfg: ModelConfig) -> str:
    return str(text_format.MessageToString(cfg))


# -- measurements ---------------------------------------------------------------------------------


@dataclass
class Point:
    """One candidate at one concurrency."""

    candidate: Candidate
    concurrency: int
    throughput: float
    p50_us: float
    p99_us: float
    avg_us: float
    avg_batch: float
    queue_us: float
    compute_us: float
    errors: int
    stable: bool
    seconds: float

    @classmethod
    def of(cls, c: Candidate, r: LevelResult) -> Point:
        return cls(
            c,
            int(r.load),
            r.throughput,
            r.latency_us["p50"],
            r.latency_us["p99"],
            r.latency_us["avg"],
            r.server.avg_batch,
            r.server.queue_us,
            r.server.compute_us,
            r.errors,
            r.stable,
            r.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "candidate"}
        d["candidate"] = self.candidate.as_dict()
        d["label"] = self.candidate.label()
        return d


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both throughput (higher) and p99 (lower), by
    increasing p99."""
    ok = [p for p in points if p.errors == 0 and math.isfinite(p.p99_us) and p.throughput > 0]
    front = [
        p
        for p in ok
        if not any(
            (q.throughput >= p.throughput and q.p99_us <= p.p99_us)
            and (q.throughput > p.throughput or q.p99_us < p.p99_us)
            for q in ok
        )
    ]
    return sorted(front, key=lambda p: (p.p99_us, -p.throughput))


def choose_best(points: Sequence[Point], budget_us: float | None, tie: float = 0.02) -> Point | None:
    """The point with the most throughput within the budget, except that among the points
    within ``tie`` (2 %, the noise of a measurement) of it the one with the fewest instances
    × threads wins, then the lowest p99: equal throughput should not cost more (so the best
    may sit just off the Pareto front)."""
    ok = [p for p in points if p.errors == 0 and math.isfinite(p.p99_us) and p.throughput > 0]
    fitting = [p for p in ok if budget_us is None or p.p99_us <= budget_us]
    if not fitting:
        return None
    top = max(p.throughput for p in fitting)
    close = [p for p in fitting if p.throughput >= (1 - tie) * top]
    return min(close, key=lambda p: (p.candidate.instances * max(p.candidate.threads, 1), p.p99_us))


def objective(points: Sequence[Point], budget_us: float | None) -> float:
    """The best throughput among ``points`` that fit the budget (0 when none does)."""
    fit = [p.throughput for p in points if p.errors == 0 and (budget_us is None or p.p99_us <= budget_us)]
    return max(fit, default=0.0)


class Measure(Protocol):
    """What a search calls: the points of a candidate (measured at ``scale`` × the window)."""

    def __call__(self, c: Candidate, scale: float = 1.0, budget_us: float | None = None) -> list[Point]: ...


class Measurer:
    """Loads a candidate on the server and measures it at every concurrency (cached)."""

    def __init__(
        self,
        engine: LoadEngine,
        control: Control,
        base: ModelConfig,
        concurrency: Sequence[int],
        interval_ms: float,
        max_trials: int,
        backend_threads: bool,
        log: Callable[[str], None],
    ) -> None:
        self.engine = engine
        self.control = control
        self.base = base
        self.concurrency = list(concurrency)
        self.interval_ms = interval_ms
        self.max_trials = max_trials
        self.backend_threads = backend_threads
        self.log = log
        self.results: dict[Candidate, list[Point]] = {}
        self.order: list[Candidate] = []
        self.failed: dict[Candidate, str] = {}
        self.measurements = 0

    def __call__(self, c: Candidate, scale: float = 1.0, budget_us: float | None = None) -> list[Point]:
        """The points of ``c`` (measured now unless cached at this or a longer scale)."""
        if c in self.failed:
            return []
        cached = self.results.get(c)
        if cached is not None and cached[0].seconds >= scale * self.interval_ms / 1e3 * 0.99 * min(
            3, self.max_trials
        ):
            return cached
        cfg = apply_candidate(self.base, c, self.backend_threads)
        try:
            self.control.load(json_format.MessageToJson(cfg, preserving_proto_field_name=True))
        except SonicError as exc:
            self.failed[c] = exc.message
            self.log(f"  {c.label()}: the server refused it: {exc.message}")
            return []
        points = []
        for conc in self.concurrency:
            r = self.engine.measure(
                "concurrency", conc, interval_ms=self.interval_ms * scale, max_trials=self.max_trials
            )
            self.measurements += 1
            points.append(Point.of(c, r))
        self.results[c] = points
        if c not in self.order:
            self.order.append(c)
        best = objective(points, budget_us)
        self.log(
            f"  {c.label():<44} "
            + "  ".join(
                f"c{p.concurrency}: {p.throughput:8.1f}/s p99 {p.p99_us / 1e3:7.2f} ms" for p in points
            )
            + f"  -> {best:.1f}/s"
        )
        return points


# -- search strategies ------------------------------------------------------------------------------


def search_brute(
    space: SearchSpace, base_mbs: int, min_batch: int, measure: Measure, budget_us: float | None
) -> None:
    for c in space.all(base_mbs, min_batch):
        measure(c, budget_us=budget_us)


def search_coordinate(
    space: SearchSpace,
    base_mbs: int,
    min_batch: int,
    measure: Measure,
    budget_us: float | None,
    start: dict[str, Any],
    max_passes: int = 3,
) -> None:
    """Coordinate ascent: one dimension at a time, all of its values with the others fixed;
    move to the best; repeat until a whole pass changes nothing."""
    dims = space.dims(base_mbs)
    current = {k: (start[k] if start.get(k) in v else v[0]) for k, v in dims.items()}

    def score(values: dict[str, Any]) -> float:
        c = space.candidate(values, min_batch)
        return -1.0 if c is None else objective(measure(c, budget_us=budget_us), budget_us)

    best = score(current)
    for _ in range(max_passes):
        changed = False
        for name, values in dims.items():
            if len(values) < 2:
                continue
            for v in values:
                if v == current[name]:
                    continue
                trial = {**current, name: v}
                s = score(trial)
                if s > best * 1.02:  # a 2 % margin: noise must not move the search
                    best, current, changed = s, trial, True
        if not changed:
            break


def search_halving(
    space: SearchSpace,
    base_mbs: int,
    min_batch: int,
    measure: Measure,
    budget_us: float | None,
    eta: int = 3,
    max_candidates: int = 27,
    seed: int = 0,
) -> None:
    """Successive halving: every candidate (or a random sample of ``max_candidates``) gets a
    short measurement; the best 1/eta go on with eta times longer windows; until one is left."""
    import random

    cands = space.all(base_mbs, min_batch)
    if len(cands) > max_candidates:
        cands = random.Random(seed).sample(cands, max_candidates)
    scale = 1.0 / eta ** max(0, math.ceil(math.log(max(len(cands), 1), eta)) - 1)
    while cands:
        scored = sorted(
            ((objective(measure(c, scale, budget_us), budget_us), i, c) for i, c in enumerate(cands)),
            reverse=True,
        )
        if len(cands) <= 1 or scale >= 1.0:
            break
        keep = max(1, math.ceil(len(cands) / eta))
        cands = [c for _, _, c in scored[:keep]]
        scale = min(1.0, scale * eta)


# -- the server --------------------------------------------------------------------------------------


class Control:
    """The repository API of the server under test (load with a config override)."""

    def __init__(self, protocol: str, url: str, model: str) -> None:
        self.protocol = protocol
        self.url = url
        self.model = model

    def load(self, config_json: str | None = None) -> None:
        if self.protocol == "grpc":
            self._grpc_load(config_json)
        else:
            body = json.dumps({"parameters": {"config": config_json}} if config_json else {}).encode()
            self._http("POST", f"/v2/repository/models/{self.model}/load", body)

    def config(self) -> ModelConfig:
        """The configuration the server runs the model with."""
        cfg = ModelConfig()
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(self.url)
            try:
                msg = client.get_model_config(self.model).config
            except Exception as exc:
                raise Unavailable(f"model config of '{self.model}' from {self.url}: {exc}") from None
            finally:
                client.close()
            cfg.CopyFrom(msg)
            return cfg
        doc = json.loads(self._http("GET", f"/v2/models/{self.model}/config", None) or b"{}")
        json_format.ParseDict(doc, cfg, ignore_unknown_fields=True)
        return cfg

    def _grpc_load(self, config_json: str | None) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        try:
            client.load_model(self.model, config=config_json)
        except Exception as exc:  # tritonclient's InferenceServerException, grpc errors
            get = getattr(exc, "message", None)
            msg = str(get()) if callable(get) else str(exc)
            raise Unavailable(f"load of '{self.model}' on {self.url}: {msg}") from None
        finally:
            client.close()

    def _http(self, method: str, path: str, body: bytes | None) -> bytes:
        req = urllib.request.Request(
            f"http://{self.url}{path}", data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                text = str(json.loads(text).get("error", text))
            raise Unavailable(f"{method} {path} on {self.url}: {text}") from None
        except OSError as exc:
            raise Unavailable(f"{method} {path} on {self.url}: {exc}") from None


@contextlib.contextmanager
def own_server(repository: Path, model: str, flags: Sequence[str] = ()) -> Iterator[tuple[Any, Path]]:
    """``sonic serve`` in explicit mode on a temporary copy of ``repository`` holding
    ``model`` only (so its config.pbtxt there is never touched)."""
    from sonic.server.process import ServerProcess

    src = Path(repository) / model
    if not src.is_dir():
        known = (
            sorted(p.name for p in Path(repository).iterdir() if p.is_dir())
            if Path(repository).is_dir()
            else []
        )
        from sonic.protocol.errors import nearest

        raise InvalidArgument(f"no model '{model}' in repository {repository}" + nearest(model, known))
    with tempfile.TemporaryDirectory(prefix="sonic-optimize-") as tmp:
        repo = Path(tmp) / "models"
        shutil.copytree(src, repo / model)
        server = ServerProcess(repo, "--model-control-mode=explicit", f"--load-model={model}", *flags)
        try:
            server.start()
        except RuntimeError as exc:
            raise Unavailable(f"sonic serve did not start: {exc}") from None
        try:
            yield server, repo
        finally:
            server.stop()


# -- the whole thing ----------------------------------------------------------------------------------


@dataclass
class OptimizeReport:
    model: str
    search: str
    space: dict[str, list[Any]]
    concurrency: list[int]
    budget_ms: float | None
    points: list[Point]
    front: list[Point]
    best: Point | None
    base_config: str
    best_config: str | None
    seconds: float
    measurements: int
    failed: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "sonic-optimize",
            "model": self.model,
            "search": self.search,
            "space": self.space,
            "concurrency": self.concurrency,
            "latency_budget_ms": self.budget_ms,
            "points": [p.as_dict() for p in self.points],
            "pareto_front": [p.as_dict() for p in self.front],
            "best": self.best.as_dict() if self.best else None,
            "best_config_pbtxt": self.best_config,
            "seconds": self.seconds,
            "measurements": self.measurements,
            "refused": self.failed,
        }

    def table(self) -> str:
        head = f"{'configuration':<46} {'conc':>4} {'infer/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}  "
        lines = [head, "-" * len(head)]
        front = {(p.candidate, p.concurrency) for p in self.front}
        for p in sorted(self.points, key=lambda p: -p.throughput):
            mark = "pareto" if (p.candidate, p.concurrency) in front else ""
            if self.best is not None and p is self.best:
                mark = "BEST " + mark
            lines.append(
                f"{p.candidate.label():<46} {p.concurrency:>4} {p.throughput:>9.1f} {p.p50_us / 1e3:>8.2f} "
                f"{p.p99_us / 1e3:>8.2f} {p.avg_batch:>6.2f}  {mark}"
            )
        return "\n".join(lines)

    def plot(self, path: Path) -> Path:
        from sonic.bench.plots import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        ax.scatter(
            [p.p99_us / 1e3 for p in self.points],
            [p.throughput for p in self.points],
            s=14,
            color="0.6",
            label="candidate × concurrency",
        )
        if self.front:
            ax.plot(
                [p.p99_us / 1e3 for p in self.front],
                [p.throughput for p in self.front],
                "-o",
                color="tab:red",
                markersize=5,
                label="Pareto front",
            )
            for p in self.front:
                ax.annotate(
                    f"{p.candidate.label()} c{p.concurrency}",
                    (p.p99_us / 1e3, p.throughput),
                    fontsize=6,
                    xytext=(4, 2),
                    textcoords="offset points",
                )
        if self.budget_ms is not None:
            ax.axvline(self.budget_ms, color="tab:blue", ls="--", lw=1, label=f"budget {self.budget_ms:g} ms")
        if self.best is not None:
            ax.scatter(
                [self.best.p99_us / 1e3],
                [self.best.throughput],
                marker="*",
                s=160,
                color="gold",
                edgecolor="k",
                zorder=5,
                label="best",
            )
        ax.set_xlabel("p99 latency (ms)")
        ax.set_ylabel("throughput (inferences/s)")
        ax.set_title(f"sonic optimize: {self.model} ({self.search})", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = [out_dir / "report.json", out_dir / "report.txt"]
        files[0].write_text(json.dumps(self.as_dict(), indent=2, default=str))
        files[1].write_text(self.summary() + "\n\n" + self.table() + "\n")
        if self.best_config is not None:
            (out_dir / "config.pbtxt").write_text(self.best_config)
            files.append(out_dir / "config.pbtxt")
        return files

    def summary(self) -> str:
        lines = [
            f"sonic optimize: model {self.model}, {self.search} search, "
            f"{len({p.candidate for p in self.points})} "
            f"configurations × concurrency {self.concurrency} = {self.measurements} measurements in "
            f"{self.seconds:.0f} s",
            f"Pareto front (throughput vs p99): {len(self.front)} points",
        ]
        within = f" within {self.budget_ms:g} ms p99" if self.budget_ms is not None else ""
        if self.best is not None:
            b = self.best
            lines.append(
                f"best{within}: "
                f"{b.candidate.label()} at concurrency {b.concurrency}: {b.throughput:.1f} infer/s, "
                f"p99 {b.p99_us / 1e3:.2f} ms"
            )
        elif self.budget_ms is not None:
            lines.append(f"no configuration kept p99 within {self.budget_ms:g} ms")
        return "\n".join(lines)


def optimize(
    bench: BenchConfig,
    space: SearchSpace,
    *,
    concurrency: Sequence[int] = (1, 4, 16),
    search: str = "auto",
    budget_ms: float | None = None,
    repository: Path | None = None,
    server_flags: Sequence[str] = (),
    brute_limit: int = 12,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> OptimizeReport:
    """Search ``space`` for the model ``bench.model``; on a server of our own when
    ``repository`` is given (sonic serve, explicit mode, a temporary copy), else on the
    server at ``bench.url`` (which must allow explicit model control; the model's own
    configuration is loaded back at the end)."""
    say = log or (lambda _msg: None)
    if search not in ("auto", "brute", "coordinate", "halving"):
        raise InvalidArgument(f"--search {search!r}: expected auto, brute, coordinate or halving")
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        file_config: ModelConfig | None = None
        if repository is not None:
            server, repo = stack.enter_context(own_server(repository, bench.model, server_flags))
            url = server.grpc_url if bench.protocol == "grpc" else server.http_url
            bench.url = url
            pbtxt = repo / bench.model / "config.pbtxt"
            if pbtxt.is_file():
                from sonic.repository.config import parse_config

                file_config = parse_config(pbtxt.read_text(), str(pbtxt))
        elif bench.protocol == "local":
            raise InvalidArgument(
                "sonic optimize needs a server: give --model-repository or -u with -i grpc|http"
            )
        control = Control(bench.protocol, bench.url, bench.model)
        base = control.config()
        backend_threads = base.backend in ("onnxruntime", "") and base.platform in ("", "onnxruntime_onnx")
        if not backend_threads and any(t for t in space.threads):
            say(
                f"backend {base.backend or base.platform!r} has no intra-op thread setting: "
                "threads not varied"
            )
            space.threads = [0]
        if repository is None:
            stack.callback(_restore, control, say)
        say(
            f"model {bench.model}: {base.backend or base.platform} backend, "
            f"max_batch_size {base.max_batch_size}"
        )
        candidates = space.all(base.max_batch_size, bench.batch)
        if not candidates:
            raise InvalidArgument("the search space has no valid configuration (max_batch_size < -b?)")
        how = search
        if how == "auto":
            how = "brute" if len(candidates) <= brute_limit else "coordinate"
        say(f"{len(candidates)} configurations in the space; {how} search; concurrency {list(concurrency)}")
        engine = stack.enter_context(LoadEngine(bench, log=None))
        measure = Measurer(
            engine,
            control,
            base,
            concurrency,
            bench.measurement_interval_ms,
            bench.max_trials,
            backend_threads,
            say,
        )
        budget_us = budget_ms * 1e3 if budget_ms is not None else None
        if how == "brute":
            search_brute(space, base.max_batch_size, bench.batch, measure, budget_us)
        elif how == "coordinate":
            start = _start_values(base)
            search_coordinate(space, base.max_batch_size, bench.batch, measure, budget_us, start)
        else:
            search_halving(space, base.max_batch_size, bench.batch, measure, budget_us, seed=seed)
        points = [p for c in measure.order for p in measure.results[c]]
        front = pareto_front(points)
        best = choose_best(points, budget_us)
        best_config = None
        if best is not None and budget_ms is not None:
            best_config = config_text(apply_candidate(file_config or base, best.candidate, backend_threads))
        return OptimizeReport(
            model=bench.model,
            search=how,
            space=space.dims(base.max_batch_size),
            concurrency=list(concurrency),
            budget_ms=budget_ms,
            points=points,
            front=front,
            best=best,
            base_config=config_text(file_config or base),
            best_config=best_config,
            seconds=time.monotonic() - t0,
            measurements=measure.measurements,
            failed={c.label(): m for c, m in measure.failed.items()},
        )


def _start_values(base: ModelConfig) -> dict[str, Any]:
    """Where coordinate ascent starts: the model's own settings, where they are in the space."""
    threads = base.parameters[THREADS_PARAM].string_value if THREADS_PARAM in base.parameters else "0"
    return {
        "instances": base.instance_group[0].count if base.instance_group else 1,
        "max_batch_size": base.max_batch_size,
        "preferred": "none",
        "max_queue_delay_us": base.dynamic_batching.max_queue_delay_microseconds
        if base.HasField("dynamic_batching")
        else -1,
        "threads": int(threads or 0),
    }


def _restore(control: Control, say: Callable[[str], None]) -> None:
    try:
        control.load(None)
        say(f"model {control.model}: its own configuration is loaded again")
    except SonicError as exc:
        say(f"could not load model {control.model}'s own configuration back: {exc.message}")
