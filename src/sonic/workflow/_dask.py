"""Scale-out on Dask: one process per partition of the input, merged in order.

The driver cuts the source into partitions (by file, then by entry range:
:meth:`~sonic.workflow.Source.split`), submits one task per partition, and each task runs the
whole process on its partition in a worker — its own streams, its own clients (each worker
talks to the inference servers directly), its own part of every output
(:meth:`~sonic.workflow.Sink.part`, written next to the final output, so workers need the
output directory on a shared file system). When every task is done the driver merges the parts
in partition order, so the output is the one a single process would write, and adds up the
reports.

Exactly once: a part is written under a temporary name and renamed when its task succeeds; a
task that Dask re-runs (its worker died) rewrites the same part, and the merge takes each part
once. A task that fails fails the job, and the parts are removed.

Where the workers come from::

    --dask local:4              a LocalCluster of 4 worker processes on this machine
    --dask tcp://host:8786      an existing scheduler (dask scheduler / dask worker, Kubernetes)
    dask: {cluster: {class: dask_jobqueue:SLURMCluster, jobs: 10,
                     options: {cores: 4, memory: 8GB, queue: short, walltime: "01:00:00"}}}
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sonic.client import Client
from sonic.protocol.errors import Code, InvalidArgument, SonicError
from sonic.workflow._deps import require
from sonic.workflow._process import Process, WorkflowError, _Run
from sonic.workflow._progress import progress
from sonic.workflow._report import Report, merge_server_side

__all__ = ["connect", "run_dask"]

log = logging.getLogger("sonic.workflow")


def _extend_sys_path(paths: list[str]) -> None:
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)


def connect(spec: Any) -> tuple[Any, list[Any], bool]:
    """A ``distributed.Client`` for ``spec``; the objects to close afterwards; whether the
    workers are local processes made here."""
    distributed = require("distributed", "Dask execution")
    quiet = max(logging.getLogger().getEffectiveLevel(), logging.WARNING)
    logging.getLogger("distributed").setLevel(quiet)  # its INFO lines are not the job's business
    if isinstance(spec, distributed.Client):
        return spec, [], False
    if isinstance(spec, str):
        if spec == "local" or spec.startswith("local:"):
            _, _, n = spec.partition(":")
            if n and (not n.isdigit() or int(n) < 1):
                raise InvalidArgument(f"dask: 'local:N' needs a number of workers N >= 1, got {spec!r}")
            workers = int(n) if n else (os.cpu_count() or 1)
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: the default 8787 may be taken
                silence_logs=logging.ERROR,
            )
            client = distributed.Client(cluster)
            return client, [client, cluster], True
        address = spec if "://" in spec else f"tcp://{spec}"
        try:
            client = distributed.Client(address, timeout=30)
        except OSError as exc:
            raise SonicError(
                f"dask: cannot reach the scheduler at {address}: {exc}", Code.UNAVAILABLE
            ) from None
        return client, [client], False
    if isinstance(spec, Mapping):
        from sonic.workflow._config import resolve

        if "class" not in spec:
            raise InvalidArgument("dask: a cluster mapping needs 'class' (e.g. dask_jobqueue:SLURMCluster)")
        cls = resolve(str(spec["class"]))
        cluster = cls(**dict(spec.get("options") or {}))
        if spec.get("jobs"):
            cluster.scale(jobs=int(spec["jobs"]))
        elif spec.get("workers"):
            cluster.scale(int(spec["workers"]))
        client = distributed.Client(cluster)
        return client, [client, cluster], False
    if hasattr(spec, "scheduler_address"):  # a cluster object made by the caller
        client = distributed.Client(spec)
        return client, [client], False
    raise InvalidArgument(
        f"dask: expected 'local:N', a scheduler address, a cluster mapping, a distributed.Client or "
        f"a cluster; got {type(spec).__name__}"
    )


def _run_part(blob: bytes) -> tuple[Report, list[Any]]:
    """One partition, in a worker (``blob``: the partition's process, cloudpickled)."""
    import asyncio
    import pickle

    process = pickle.loads(blob)
    return asyncio.run(_Run(process, False).execute())


def _dumps(process: Process) -> bytes:
    """cloudpickle, always: Dask tries plain pickle first, which ships classes by reference,
    and classes loaded from a file (``module: tagger.py:Tagger``) are not importable on the
    workers; cloudpickle ships those by value (see ``_config.resolve``)."""
    cloudpickle = require("cloudpickle", "Dask execution")
    data: bytes = cloudpickle.dumps(process)
    return data


def run_dask(
    process: Process, spec: Any, *, partitions: int | None = None, show_progress: bool | None = None
) -> Report:
    distributed = require("distributed", "Dask execution")
    t0 = time.perf_counter()
    source = process.source.head(process.max_events) if process.max_events is not None else process.source
    client, closers, local = connect(spec)
    token = uuid.uuid4().hex[:12]
    futures: list[Any] = []
    watchers: dict[str, Client] = {}
    try:
        if local:
            client.run(_extend_sys_path, list(sys.path))
        workers = len(client.scheduler_info().get("workers", {}))
        if workers == 0:
            client.wait_for_workers(1, timeout=600)
            workers = len(client.scheduler_info().get("workers", {}))
        parts = source.split(partitions or max(1, 2 * workers))
        watchers = _watch_servers(process)
        subs: list[Process] = []
        offset = 0
        for i, part in enumerate(parts):
            sub = copy.copy(process)
            sub.source = part
            sub.sinks = [s.part(i, token) for s in process.sinks]
            sub.max_events = None
            sub.index_start = offset
            sub.dask = None
            offset += len(part)
            subs.append(sub)
        bar = progress(offset, process.name, show_progress)
        t_submit = time.perf_counter()
        futures = [
            client.submit(_run_part, _dumps(sub), key=f"sonic-part-{token}-{i:05d}", pure=False)
            for i, sub in enumerate(subs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[tuple[Report, list[Any]] | None] = [None] * len(futures)
        try:
            for fut in distributed.as_completed(futures):
                i = index[fut.key]
                try:
                    results[i] = fut.result()
                except SonicError as exc:
                    raise WorkflowError(
                        f"partition {i} ({subs[i].source.describe()}): {exc.message}", exc.code
                    ) from exc
                except Exception as exc:
                    raise WorkflowError(
                        f"partition {i} ({subs[i].source.describe()}) failed: {type(exc).__name__}: {exc}",
                        Code.INTERNAL,
                    ) from exc
                bar.update(len(subs[i].source))
        finally:
            bar.close()
        done = [r for r in results if r is not None]
        report = Report.merge([r for r, _ in done], 0.0, name=process.name, workers=workers)
        for j, sink in enumerate(process.sinks):
            out = sink.merge([res[j] for _, res in done])
            if out is not None and not isinstance(out, dict):
                report.outputs.append(str(out))
        _server_side(report, process, watchers)
        report.partitions = len(parts)
        report.wall_s = time.perf_counter() - t_submit
        report.setup_s += t_submit - t0
        return report
    except BaseException:
        for f in futures:
            f.cancel()
        for sink in process.sinks:
            sink.discard_parts(token)
        raise
    finally:
        for w in watchers.values():
            try:
                w.close()
            except Exception:
                log.debug("closing a statistics client failed", exc_info=True)
        for c in closers:
            try:
                c.close()
            except Exception:
                log.debug("closing %r failed", c, exc_info=True)


def _watch_servers(process: Process) -> dict[str, Client]:
    """Clients of the driver that snapshot the configured servers' statistics now, so that
    the report's server-side times cover the job once (each partition's own snapshots would
    overlap)."""
    out: dict[str, Client] = {}
    if not process.server_stats:
        return out
    from sonic.workflow._modules import SonicModule

    for m in process.modules:
        if not isinstance(m, SonicModule):
            continue
        name, cfg = process._client_of(m)
        if name in out or cfg.transport == "local" or not cfg.servers:
            continue
        c = Client(cfg.replace(verbose=True, fallback=False))
        try:
            c.start()
        except SonicError as exc:
            log.debug("no server-side statistics for client %s: %s", name, exc.message)
            c.close()
            continue
        out[name] = c
    return out


def _server_side(report: Report, process: Process, watchers: dict[str, Client]) -> None:
    for c in report.clients:
        w = watchers.get(c.name)
        if w is None:
            continue
        try:
            rows = w.server_stats()
        except SonicError:
            continue
        configured = set(w.config.servers)
        kept = [r for r in c.server_side if r["server"] not in configured]
        c.server_side = merge_server_side(
            kept + [{k: getattr(r, k) for k in r.__dataclass_fields__} for r in rows]
        )
