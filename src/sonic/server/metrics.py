"""Prometheus metrics on the metrics port, with NVIDIA Triton's metric names.

The figures are read at scrape time from the same :class:`~sonic.server.stats.ModelStats` that
the statistics extension reports, so the two never disagree. The exposition is rendered here
rather than by prometheus-client because prometheus-client renames every counter to
``<name>_total`` and Triton's names (and the dashboards written for them) have no suffix; the
tests parse this output with prometheus-client's parser as the oracle. The endpoint runs on the
server's event loop, so reading the statistics needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import psutil

from sonic.server.models import ModelManager, ModelVersion
from sonic.server.stats import ModelStats

_US = 1000

_COUNTERS: tuple[tuple[str, str, Callable[[ModelStats], int]], ...] = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
     lambda s: s.success.count),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)",
     lambda s: s.inference_count),
    ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)",
     lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
     lambda s: s.success.ns // _US),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
     lambda s: s.queue.ns // _US),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds",
     lambda s: s.compute_input.ns // _US),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds",
     lambda s: s.compute_infer.ns // _US),
    ("nv_inference_compute_output_duration_us",
     "Cumulative inference compute output duration in microseconds", lambda s: s.compute_output.ns // _US),
)  # fmt: skip

_FAIL_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, doc: str, kind: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        number = repr(float(value)) if value != int(value) else str(int(value))
        lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")
    return lines


def render(models: ModelManager) -> bytes:
    """The Prometheus text exposition of every loaded model version, plus CPU gauges."""
    versions: list[ModelVersion] = [mv for e in models.entries.values() for mv in e.versions.values()]

    def ids(mv: ModelVersion) -> dict[str, str]:
        return {"model": mv.name, "version": str(mv.version)}

    lines: list[str] = []
    for name, doc, get in _COUNTERS:
        lines += _family(name, doc, "counter", ((ids(mv), get(mv.stats)) for mv in versions))
    failures = [({**ids(mv), "reason": r}, mv.stats.fail_reasons.get(r, 0))
                for mv in versions for r in _FAIL_REASONS]  # fmt: skip
    lines += _family(
        "nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter",
        failures,
    )  # fmt: skip
    lines += _family(
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.", "gauge",
        ((ids(mv), mv.scheduler.pending_count()) for mv in versions),
    )  # fmt: skip
    mem = psutil.virtual_memory()
    for name, doc, value in (
        ("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", psutil.cpu_percent(interval=None) / 100),
        ("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", float(mem.total)),
        ("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", float(mem.total - mem.available)),
    ):
        lines += _family(name, doc, "gauge", [({}, value)])
    return ("\n".join(lines) + "\n").encode()


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class MetricsEdge:
    """``GET /metrics`` on its own port (one response per connection, then close)."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self._server: asyncio.Server | None = None
        psutil.cpu_percent(interval=None)  # start the CPU utilisation window

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                writer.write(_BAD)
            elif path != b"/metrics":
                writer.write(_NOT_FOUND)
            else:
                body = render(self.models)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                )
                if method == b"GET":
                    writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
