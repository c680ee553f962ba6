"""Per-model-version statistics, the single source of the statistics extension and metrics.

Everything is updated on the event loop thread (batch records arrive there with the results),
so no locks are needed. Durations follow Triton's accounting: each request in a batch is
charged the batch's compute time; queue time runs from enqueue to batch start; success and
fail durations run from the request's arrival at the data plane to its answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sonic.backends.base import Result
from sonic.scheduler.batcher import BatchRecord, Pending


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchStat:
    count: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


@dataclass(slots=True)
class ModelStats:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStat] = field(default_factory=dict)
    fail_reasons: dict[str, int] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0

    def on_batch(self, batch: Sequence[Pending], results: Sequence[Result], rec: BatchRecord) -> None:
        t = rec.timing
        self.execution_count += 1
        b = self.batches.get(rec.size)
        if b is None:
            b = self.batches[rec.size] = BatchStat()
        b.count += 1
        b.input_ns += t.input_ns
        b.infer_ns += t.infer_ns
        b.output_ns += t.output_ns
        ok = 0
        for p, r in zip(batch, results, strict=True):
            if isinstance(r, BaseException):
                continue
            ok += 1
            self.inference_count += p.request.batch_size
            self.queue.add(rec.start_ns - p.enqueue_ns)
        if ok:
            self.compute_input.add(t.input_ns * ok, ok)
            self.compute_infer.add(t.infer_ns * ok, ok)
            self.compute_output.add(t.output_ns * ok, ok)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def on_request(self, ok: bool, duration_ns: int, reason: str = "OTHER") -> None:
        if ok:
            self.success.add(duration_ns)
        else:
            self.fail.add(duration_ns)
            self.fail_reasons[reason] = self.fail_reasons.get(reason, 0) + 1
