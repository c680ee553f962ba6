"""Loaded models: the repository turned into schedulers, with Triton's model control.

The manager reads model directories through :mod:`sonic.repository`, builds one
:class:`ModelVersion` per served version (its instances, its scheduler, its statistics) and
swaps versions in and out on load, unload and repository polling. Loading runs in a worker
thread (framework sessions take time to build) while the loop keeps serving other models; a
reload serves the old versions until the new ones are ready, then drains the old ones.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from sonic.backends.base import BackendRequest, InstanceSpec, LoadContext, Timing, backend_class, backend_name
from sonic.protocol.datatypes import config_to_v2, numpy_dtype
from sonic.protocol.errors import (
    Internal,
    InvalidArgument,
    NotFound,
    SonicError,
    Unavailable,
    Unsupported,
    nearest,
)
from sonic.repository import ModelRepository, load_model_config, select_versions, versions_on_disk
from sonic.scheduler.batcher import BatchPolicy, QueuePolicy, Scheduler
from sonic.server.stats import ModelStats

log = logging.getLogger("sonic.models")


@dataclass(slots=True, frozen=True)
class TensorSpec:
    name: str
    datatype: str  # v2 name
    dims: tuple[int, ...]  # without the batch dimension
    reshape: tuple[int, ...] | None = None
    optional: bool = False
    label_file: str = ""


@dataclass(slots=True)
class ModelVersion:
    name: str
    version: int
    config: Any  # mc.ModelConfig
    platform: str
    max_batch_size: int
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    scheduler: Scheduler
    stats: ModelStats
    model_dir: Path
    labels: dict[str, list[str]] = field(default_factory=dict)
    output_order: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output_order = {name: i for i, name in enumerate(self.outputs)}


@dataclass(slots=True)
class ModelEntry:
    name: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: str = ""  # "", LOADING, READY, UNLOADING, UNAVAILABLE
    reason: str = ""
    unloaded: list[int] = field(default_factory=list)  # versions shown as UNAVAILABLE/unloaded
    fingerprint: Any = None


def _specs(items: Any) -> dict[str, TensorSpec]:
    out: dict[str, TensorSpec] = {}
    for t in items:
        reshape = tuple(t.reshape.shape) if t.HasField("reshape") else None
        out[t.name] = TensorSpec(
            t.name,
            config_to_v2(mc.DataType.Name(t.data_type)),
            tuple(t.dims),
            reshape,
            bool(getattr(t, "optional", False)),
            getattr(t, "label_filename", ""),
        )
    return out


def _queue_policy(q: Any) -> QueuePolicy:
    return QueuePolicy(
        max_queue_size=q.max_queue_size,
        timeout_us=q.default_timeout_microseconds,
        allow_override=q.allow_timeout_override,
        delay_on_timeout=q.timeout_action == mc.ModelQueuePolicy.DELAY,
    )


def batch_policy(config: Any) -> BatchPolicy:
    dynamic = config.HasField("dynamic_batching")
    db = config.dynamic_batching
    return BatchPolicy(
        max_batch_size=config.max_batch_size,
        dynamic=dynamic and config.max_batch_size > 0,
        preferred=tuple(db.preferred_batch_size),
        max_queue_delay_ns=db.max_queue_delay_microseconds * 1000,
        priority_levels=db.priority_levels,
        default_priority=db.default_priority_level,
        default_queue=_queue_policy(db.default_queue_policy),
        queues={int(k): _queue_policy(v) for k, v in db.priority_queue_policy.items()},
    )


def instance_specs(name: str, config: Any) -> list[InstanceSpec]:
    specs: list[InstanceSpec] = []
    for gi, group in enumerate(config.instance_group):
        kind = mc.ModelInstanceGroup.Kind.Name(group.kind)
        if kind == "KIND_AUTO":
            kind = "KIND_CPU"
        gname = group.name or f"{name}_{gi}"
        devices = list(group.gpus) if kind == "KIND_GPU" and group.gpus else [0]
        for dev in devices:
            for i in range(max(group.count, 1)):
                specs.append(InstanceSpec(f"{gname}_{len(specs)}", kind, dev, i))
    return specs or [InstanceSpec(f"{name}_0_0", "KIND_CPU")]


def _labels(model_dir: Path, outputs: dict[str, TensorSpec]) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for spec in outputs.values():
        if spec.label_file:
            path = model_dir / spec.label_file
            if not path.exists():
                raise NotFound(f"label file {path} named by output '{spec.name}' does not exist")
            labels[spec.name] = path.read_text().splitlines()
    return labels


INLINE_BELOW_NS = 30_000


def _discard_upload(model_dir: Path) -> None:
    """Remove the temporary directory that holds a model sent with its load request."""
    shutil.rmtree(model_dir.parent, ignore_errors=True)


class ConfigError(InvalidArgument):
    """A model's configuration could not be read or is invalid."""


def runs_inline(name: str, config: Any, instances: list[Any], specs: dict[str, TensorSpec]) -> bool:
    """Whether a model runs on the event loop instead of instance threads.

    Config ``parameters { key: "execution" value { string_value: "loop" | "thread" | "auto" } }``;
    ``auto`` (the default) times a zero batch of one on the first instance and runs models that
    compute in under 30 µs on the loop, where a thread hand-off (~20-30 µs here) would cost
    about as much as the model; anything heavier gets instance threads so the model computes
    on another core while the loop handles the network. Python models default to threads: user code may block.
    A model that cannot run the probe (a variable dimension that 1 does not fit) gets threads.
    """
    mode = config.parameters["execution"].string_value if "execution" in config.parameters else "auto"
    if mode not in ("auto", "loop", "thread"):
        raise InvalidArgument(
            f"model '{name}': parameter execution='{mode}'; expected 'auto', 'loop' or 'thread'"
        )
    if mode != "auto":
        return mode == "loop"
    if backend_name(config) != "onnxruntime" or any(s.datatype in ("BYTES", "BF16") for s in specs.values()):
        return False
    batch = (1,) if config.max_batch_size > 0 else ()
    inputs = {
        s.name: np.zeros(
            batch + tuple(1 if d < 0 else d for d in (s.reshape or s.dims)), numpy_dtype(s.datatype)
        )
        for s in specs.values()
    }
    request = BackendRequest(inputs, tuple(o.name for o in config.output), 1)
    times = []
    for _ in range(7):
        t0 = time.perf_counter_ns()
        try:
            instances[0].execute([request], Timing())
        except Exception as exc:  # e.g. a dimension that must be a multiple of 16, not 1
            log.info(
                "model '%s': no timing probe with size-1 dimensions (%s); runs in instance threads", name, exc
            )
            return False
        times.append(time.perf_counter_ns() - t0)
    cost = sorted(times)[3]
    log.info(
        "model '%s': %.0f µs per batch of one; runs %s",
        name,
        cost / 1000,
        "on the event loop" if cost < INLINE_BELOW_NS else "in instance threads",
    )
    return cost < INLINE_BELOW_NS


class ModelManager:
    """Model control (none / poll / explicit) over one or more repositories."""

    def __init__(
        self, repository_paths: list[Path], mode: str = "none", loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        if mode not in ("none", "poll", "explicit"):
            raise InvalidArgument(f"unknown model control mode '{mode}'; expected none, poll or explicit")
        self.repository = ModelRepository(repository_paths)
        self.mode = mode
        self.entries: dict[str, ModelEntry] = {}
        self._loop = loop
        self._locks: dict[str, asyncio.Lock] = {}
        self._file_dirs: dict[str, Path] = {}  # models loaded from files sent with the load request

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- lookup ------------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version that serves a request ('' = the highest loaded version)."""
        entry = self.entries.get(name)
        if entry is None or not entry.versions:
            if entry is None:
                known = [n for n, e in self.entries.items() if e.versions]
                raise NotFound(f"Request for unknown model: '{name}' is not found" + nearest(name, known))
            reason = f" ({entry.reason})" if entry.reason and entry.reason != "unloaded" else ""
            raise NotFound(f"Request for unknown model: '{name}' has no available versions{reason}")
        if not version:
            return entry.versions[max(entry.versions)]
        try:
            v = int(version)
        except ValueError:
            raise InvalidArgument(f"model version must be an integer, got '{version}'") from None
        mv = entry.versions.get(v)
        if mv is None:
            raise NotFound(
                f"Request for unknown model: '{name}' version {v} is not found"
                f" (ready versions: {sorted(entry.versions)})"
            )
        return mv

    def source_dir(self, name: str) -> Path:
        """Where a model's files come from: its repository directory, or the temporary
        directory of files sent with its load request."""
        return self._file_dirs.get(name) or self.repository.model_dir(name)

    def ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except SonicError:
            return False
        return True

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        names = sorted(set(self.repository.models()) | set(self.entries))
        for name in names:
            entry = self.entries.get(name)
            if entry and entry.versions:
                for v in sorted(entry.versions):
                    rows.append({"name": name, "version": str(v), "state": "READY", "reason": ""})
            elif not ready_only:
                if entry and entry.unloaded and entry.reason == "unloaded":
                    for v in entry.unloaded:
                        rows.append(
                            {"name": name, "version": str(v), "state": "UNAVAILABLE", "reason": "unloaded"}
                        )
                    continue
                row = {"name": name, "version": "", "state": "", "reason": ""}
                if entry:
                    row["state"], row["reason"] = entry.state or "UNAVAILABLE", entry.reason
                rows.append(row)
        return rows

    # -- control -----------------------------------------------------------------------------

    async def start(self, load_models: list[str] | None = None) -> None:
        """Initial load: everything (none/poll) or the ``--load-model`` names (explicit)."""
        if self.mode == "explicit":
            names = list(load_models or [])
            if "*" in names:
                names = sorted(self.repository.models())
        else:
            names = sorted(self.repository.models())
        for name in names:
            try:
                await self.load(name)
            except SonicError as exc:
                log.error("failed to load model '%s': %s", name, exc.message)

    def check_control(self) -> None:
        if self.mode != "explicit":
            # Triton's wording, for none and poll alike
            raise Unavailable(
                "explicit model load / unload is not allowed if polling is enabled"
                f" (model control mode is {self.mode}; use --model-control-mode=explicit)"
            )

    async def load(self, name: str, override: Any = None, model_dir: Path | None = None) -> None:
        """Load (or reload) every selected version of a model; ``model_dir`` overrides the
        repository: a model whose files came with the load request, in a temporary directory
        the manager then owns and removes once no version is served from it."""
        previous_dir = self._file_dirs.get(name)
        if model_dir is not None:
            self._file_dirs[name] = model_dir
        else:
            self._file_dirs.pop(name, None)
        try:
            await self._load(name, override, model_dir)
        except BaseException:
            if model_dir is not None:  # the old versions (if any) keep serving from the old files
                _discard_upload(model_dir)
            if previous_dir is not None:
                self._file_dirs[name] = previous_dir
            else:
                self._file_dirs.pop(name, None)
            raise
        if previous_dir is not None and previous_dir != model_dir:
            _discard_upload(previous_dir)

    async def _load(self, name: str, override: Any, model_dir: Path | None) -> None:
        _ = self.loop  # bind the loop here: schedulers are built in a worker thread
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self.entries.setdefault(name, ModelEntry(name))
            prev_state = entry.state
            entry.state = "LOADING" if not entry.versions else entry.state
            if model_dir is None and name not in self.repository.models():
                if not entry.versions:
                    del self.entries[name]
                raise Internal(
                    f"failed to load '{name}', failed to poll from model repository"
                    + nearest(name, self.repository.models())
                )
            try:
                new, fp = await asyncio.to_thread(self._build, name, override)
            except ConfigError as exc:  # the repository could not be read: Triton says INTERNAL
                entry.state = "UNAVAILABLE" if not entry.versions else prev_state or "READY"
                entry.reason = exc.message
                raise Internal(
                    f"failed to load '{name}', failed to poll from model repository: {exc.message}"
                ) from exc
            except Exception as exc:
                entry.state = "UNAVAILABLE" if not entry.versions else prev_state or "READY"
                entry.reason = exc.message if isinstance(exc, SonicError) else f"{type(exc).__name__}: {exc}"
                raise InvalidArgument(f"load failed for model '{name}': {entry.reason}") from exc
            old, entry.versions = entry.versions, new
            entry.state, entry.reason, entry.fingerprint = "READY", "", fp
            log.info("loaded model '%s' versions %s", name, sorted(new))
        await self._retire(old)

    async def unload(self, name: str) -> None:
        """Unload every version; unloading a model that is not loaded succeeds (as Triton)."""
        if name not in self.entries:
            log.info("unload of '%s': not loaded", name)
            return
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self.entries.setdefault(name, ModelEntry(name))
            old, entry.versions = entry.versions, {}
            entry.state, entry.reason = "UNAVAILABLE", "unloaded"
            entry.unloaded = sorted(old) or entry.unloaded
        await self._retire(old)
        upload = self._file_dirs.pop(name, None)
        if upload is not None:
            _discard_upload(upload)
        log.info("unloaded model '%s'", name)

    async def poll(self) -> None:
        """One repository poll: load new or changed models, unload removed ones."""
        on_disk = self.repository.models()
        for name in sorted(on_disk):
            fp = self.repository.fingerprint(name)
            entry = self.entries.get(name)
            if entry is None or fp != entry.fingerprint:
                try:
                    await self.load(name)
                except SonicError as exc:
                    log.error("poll: failed to load model '%s': %s", name, exc.message)
                    self.entries[name].fingerprint = fp  # do not retry until it changes again
        for name in [n for n, e in self.entries.items() if n not in on_disk and e.versions]:
            await self.unload(name)
            del self.entries[name]

    async def stop(self) -> None:
        for entry in self.entries.values():
            old, entry.versions = entry.versions, {}
            await self._retire(old)
        for upload in self._file_dirs.values():
            _discard_upload(upload)
        self._file_dirs.clear()

    async def _retire(self, versions: dict[int, ModelVersion]) -> None:
        if not versions:
            return
        for mv in versions.values():
            mv.scheduler.close(wait=False)

        def drain() -> None:
            for mv in versions.values():
                mv.scheduler.close(wait=True)

        await asyncio.to_thread(drain)

    # -- building (worker thread) ------------------------------------------------------------

    def _build(self, name: str, override: Any) -> tuple[dict[int, ModelVersion], Any]:
        model_dir = self.source_dir(name)
        fp = None if name in self._file_dirs else self.repository.fingerprint(name)
        try:
            config = load_model_config(model_dir, override)
        except SonicError as exc:
            raise ConfigError(exc.message) from exc
        if config.HasField("sequence_batching"):
            raise Unsupported(f"model '{name}': sequence_batching is not supported yet")
        if config.HasField("ensemble_scheduling"):
            raise Unsupported(f"model '{name}': ensemble models are not supported yet")
        versions = select_versions(config, versions_on_disk(model_dir))
        if not versions:
            raise NotFound(
                f"model '{name}': no version folder found in {model_dir}; expected e.g. {model_dir}/1/"
            )
        cls = backend_class(backend_name(config))
        built: dict[int, ModelVersion] = {}
        try:
            for v in versions:
                instances = []
                try:
                    for spec in instance_specs(name, config):
                        ctx = LoadContext(name, v, model_dir / str(v), model_dir, config, spec)
                        instances.append(cls(ctx))
                except BaseException:
                    for inst in instances:
                        inst.close()
                    raise
                stats = ModelStats()
                inputs, outputs = _specs(config.input), _specs(config.output)
                try:
                    inline = runs_inline(name, config, instances, inputs)
                    if inline:
                        for inst in instances:
                            inst.run_inline()
                except BaseException:
                    for inst in instances:
                        inst.close()
                    raise
                sched = Scheduler(
                    f"{name}:{v}", instances, batch_policy(config), self.loop, stats.on_batch, inline
                )
                built[v] = ModelVersion(
                    name,
                    v,
                    config,
                    config.platform or backend_name(config),
                    config.max_batch_size,
                    inputs,
                    outputs,
                    sched,
                    stats,
                    model_dir,
                    _labels(model_dir, outputs),
                )
        except BaseException:
            for mv in built.values():
                mv.scheduler.close()
            raise
        return built, fp
