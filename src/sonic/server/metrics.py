"""Prometheus metrics on the metrics port, with NVIDIA Triton's metric names.

The figures are read at scrape time from the same :class:`~sonic.server.stats.ModelStats` that
the statistics extension reports, so the two never disagree. Counter samples keep Triton's
names (no ``_total`` suffix) so dashboards written for Triton work unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sonic.server.models import ModelManager
from sonic.server.stats import ModelStats

_US = 1000

_COUNTERS: tuple[tuple[str, str, Callable[[ModelStats], int]], ...] = (
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        lambda s: s.success.count,
    ),
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
        lambda s: s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        lambda s: s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds",
        lambda s: s.success.ns // _US,
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds",
        lambda s: s.queue.ns // _US,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds",
        lambda s: s.compute_input.ns // _US,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds",
        lambda s: s.compute_infer.ns // _US,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds",
        lambda s: s.compute_output.ns // _US,
    ),
)


class TritonCollector(Collector):
    def __init__(self, models: ModelManager) -> None:
        self.models = models
        psutil.cpu_percent(interval=None)  # prime the utilisation window

    def collect(self) -> Iterator[Metric]:
        versions = [mv for e in list(self.models.entries.values()) for mv in list(e.versions.values())]
        for name, doc, get in _COUNTERS:
            m = Metric(name, doc, "counter")
            for mv in versions:
                m.add_sample(name, {"model": mv.name, "version": str(mv.version)}, float(get(mv.stats)))
            yield m
        fail = Metric(
            "nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter"
        )
        for mv in versions:
            for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
                fail.add_sample(
                    "nv_inference_request_failure",
                    {"model": mv.name, "version": str(mv.version), "reason": reason},
                    float(mv.stats.fail_reasons.get(reason, 0)),
                )
        yield fail
        pending = Metric(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model.",
            "gauge",
        )
        for mv in versions:
            pending.add_sample(
                "nv_inference_pending_request_count",
                {"model": mv.name, "version": str(mv.version)},
                float(mv.scheduler.pending_count()),
            )
        yield pending
        mem = psutil.virtual_memory()
        for name, doc, value in (
            (
                "nv_cpu_utilization",
                "CPU utilization rate [0.0 - 1.0]",
                psutil.cpu_percent(interval=None) / 100,
            ),
            ("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", float(mem.total)),
            ("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", float(mem.total - mem.available)),
        ):
            g = Metric(name, doc, "gauge")
            g.add_sample(name, {}, value)
            yield g


class MetricsEdge:
    """The /metrics endpoint, served by prometheus-client's threaded HTTP server."""

    def __init__(self, models: ModelManager) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TritonCollector(models))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self, host: str, port: int) -> int:
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
