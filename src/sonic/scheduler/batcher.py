"""The scheduler of one model version: a queue, a batching policy, a thread per instance.

Requests arrive on the event loop (:meth:`Scheduler.submit`) and wait in priority queues. Each
model instance has a thread that owns its batch loop: it takes the next batch from the shared
queue as soon as it is free (so a busy model batches what queued up meanwhile, and several
instances balance by themselves), runs it outside the lock, and hands all results of the batch
back to the loop with one ``call_soon_threadsafe``. Queue delays are waited on a condition
variable with µs resolution, not on asyncio timers (which round to 1 ms).

Each queued request is answered on the loop either through an asyncio future
(:meth:`Scheduler.submit`) or, on the edges' hot path, through a plain callback
(:meth:`Scheduler.submit_cb`) called directly when its batch completes: no future, no loop
handle per request.

The batching decision itself is the pure function :func:`plan_batch`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sonic.backends.base import BackendRequest, ModelInstance, Result, Timing, now_ns
from sonic.protocol.errors import Internal, SonicError, Unavailable

log = logging.getLogger("sonic.scheduler")

OnBatch = Callable[[list["Pending"], list["Result"], "BatchRecord"], None]
#: Called on the loop as ``answer(context, result)``: the ``context`` given to
#: :meth:`Scheduler.submit_cb`, and the request's output arrays or the SonicError it failed with.
Answer = Callable[[Any, "Result"], None]


@dataclass(slots=True)
class QueuePolicy:
    max_queue_size: int = 0  # 0: unbounded
    timeout_us: int = 0  # 0: none
    allow_override: bool = False
    delay_on_timeout: bool = False  # timeout_action DELAY (else REJECT)


@dataclass(slots=True)
class BatchPolicy:
    max_batch_size: int = 0  # 0: the model does not batch
    dynamic: bool = False
    preferred: tuple[int, ...] = ()
    max_queue_delay_ns: int = 0
    priority_levels: int = 0  # 0: one level
    default_priority: int = 0
    default_queue: QueuePolicy = field(default_factory=QueuePolicy)
    queues: dict[int, QueuePolicy] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return max(self.priority_levels, 1)

    def level_for(self, priority: int) -> int:
        """Queue index (0 = highest) for a request's priority (0 = the default level)."""
        if self.priority_levels == 0:
            return 0
        p = priority or self.default_priority or self.priority_levels
        return min(max(p, 1), self.priority_levels) - 1

    def queue_policy(self, level: int) -> QueuePolicy:
        return self.queues.get(level + 1, self.default_queue)


@dataclass(slots=True, eq=False)
class Pending:
    """A request waiting in (or taken from) the queue."""

    request: BackendRequest
    key: tuple[Any, ...]
    level: int
    enqueue_ns: int
    deadline_ns: int = 0
    future: asyncio.Future[Result] | None = None
    callback: Answer | None = None
    context: Any = None

    def cancel(self) -> None:
        """The caller no longer wants the answer (a queued request still runs, unanswered)."""
        self.callback = None
        if self.future is not None:
            self.future.cancel()

    def answer(self, result: Result) -> None:
        cb = self.callback
        if cb is not None:
            self.callback = None
            try:
                cb(self.context, result)
            except Exception:  # one caller's bug must not lose the rest of the batch's answers
                log.exception("scheduler: error in the answer callback of a request")
            return
        fut = self.future
        if fut is None or fut.done():  # the caller went away (cancelled)
            return
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


@dataclass(slots=True)
class BatchRecord:
    """What the statistics need to know of one executed batch."""

    size: int  # sum of batch dimensions (1 per request for non-batching models)
    start_ns: int
    end_ns: int
    timing: Timing


def plan_batch(pending: Sequence[Pending], policy: BatchPolicy, now: int) -> tuple[int, int]:
    """How many requests from the head of ``pending`` to run now, or when to look again.

    Returns ``(n, 0)`` to take the first ``n`` requests now, or ``(0, wake_ns)`` to wait. Only
    requests with the same non-batch shapes merge; the batch stops at the first that differs.
    """
    if not pending:
        return 0, 0
    if policy.max_batch_size == 0 or not policy.dynamic:
        return 1, 0
    head = pending[0]
    total = n = best_preferred = 0
    for p in pending:
        size = p.request.batch_size
        if p.key != head.key or total + size > policy.max_batch_size:
            break
        total += size
        n += 1
        if total in policy.preferred:
            best_preferred = n
    if total == policy.max_batch_size:
        return n, 0
    if n < len(pending):  # the batch cannot grow: the next request does not fit
        return (best_preferred or n), 0
    if policy.preferred and best_preferred == n and total == max(policy.preferred):
        return n, 0
    if now - head.enqueue_ns >= policy.max_queue_delay_ns:
        return n, 0
    return 0, head.enqueue_ns + policy.max_queue_delay_ns


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Scheduler:
    """Queue + instance threads for one loaded model version."""

    def __init__(
        self,
        name: str,
        instances: Sequence[ModelInstance],
        policy: BatchPolicy,
        loop: asyncio.AbstractEventLoop,
        on_batch: OnBatch,
        inline: bool = False,
    ) -> None:
        self.name = name
        self.inline = inline
        self.policy = policy
        self._loop = loop
        self._on_batch = on_batch
        self._queues: list[deque[Pending]] = [deque() for _ in range(policy.levels)]
        self._delayed: deque[Pending] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._executing = 0
        self._has_timeouts = (
            policy.default_queue.timeout_us > 0
            or policy.default_queue.allow_override
            or any(q.timeout_us > 0 or q.allow_override for q in policy.queues.values())
        )
        self._instances = list(instances)
        self._inline_scheduled = False
        self._threads = [
            threading.Thread(
                target=self._run, args=(inst,), name=f"sonic-{inst.ctx.instance.name}", daemon=True
            )
            for inst in ([] if inline else instances)
        ]
        for t in self._threads:
            t.start()

    # -- loop side ---------------------------------------------------------------------------

    def pending_count(self) -> int:
        return sum(len(q) for q in self._queues) + len(self._delayed) + self._executing

    def submit(
        self, request: BackendRequest, key: tuple[Any, ...], priority: int = 0, timeout_us: int = 0
    ) -> asyncio.Future[Result]:
        """Queue a request; the future resolves on the loop with its arrays or error."""
        item = self._enqueue(request, key, priority, timeout_us)
        item.future = self._loop.create_future()
        return item.future

    def submit_cb(
        self,
        request: BackendRequest,
        key: tuple[Any, ...],
        priority: int,
        timeout_us: int,
        answer: Answer,
        context: Any = None,
    ) -> Pending:
        """Queue a request; ``answer(context, result)`` is called on the loop with its arrays
        or error (never from inside this call). ``Pending.cancel()`` withdraws the callback.
        (A context rather than a closure: one bound method serves every request.)"""
        item = self._enqueue(request, key, priority, timeout_us)
        item.callback = answer
        item.context = context
        return item

    def _enqueue(
        self, request: BackendRequest, key: tuple[Any, ...], priority: int, timeout_us: int
    ) -> Pending:
        policy = self.policy
        level = policy.level_for(priority)
        qpol = policy.queue_policy(level)
        now = now_ns()
        timeout = timeout_us if (timeout_us and qpol.allow_override) else qpol.timeout_us
        item = Pending(request, key, level, now, now + timeout * 1000 if timeout else 0)
        with self._cond:
            if self._closing:
                raise Unavailable(f"model '{self.name}' is unloading and takes no new requests")
            queue = self._queues[level]
            if qpol.max_queue_size and len(queue) >= qpol.max_queue_size:
                raise Unavailable("Exceeds maximum queue size")
            queue.append(item)
            if not self.inline:
                self._cond.notify()
        if self.inline and not self._inline_scheduled:
            self._inline_scheduled = True
            self._loop.call_soon(self._run_inline)
        return item

    def close(self, wait: bool = True) -> None:
        """Stop taking requests, finish the queued ones, stop the threads, close instances."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self.inline:
            # drain what is queued now, without waiting for fuller batches
            self._loop.call_soon_threadsafe(self._run_inline)
            if wait and not _on_loop(self._loop):
                with self._cond:
                    while self.pending_count():
                        self._cond.wait(0.005)
        if wait:
            for t in self._threads:
                t.join()
            for inst in self._instances:
                inst.close()

    # -- thread side -------------------------------------------------------------------------

    def _ordered(self) -> list[Pending]:
        items: list[Pending] = []
        for q in self._queues:
            items.extend(q)
        items.extend(self._delayed)
        return items

    def _expire(self, now: int) -> list[Pending]:
        """Handle queue timeouts; returns requests to reject."""
        rejected: list[Pending] = []
        for level, q in enumerate(self._queues):
            if not any(p.deadline_ns and p.deadline_ns <= now for p in q):
                continue
            keep: deque[Pending] = deque()
            for p in q:
                if p.deadline_ns and p.deadline_ns <= now:
                    if self.policy.queue_policy(level).delay_on_timeout:
                        p.deadline_ns = 0
                        self._delayed.append(p)
                    else:
                        rejected.append(p)
                else:
                    keep.append(p)
            self._queues[level] = keep
        return rejected

    def _take(self, n: int) -> list[Pending]:
        taken: list[Pending] = []
        for q in (*self._queues, self._delayed):
            while q and len(taken) < n:
                taken.append(q.popleft())
        return taken

    def _next_batch(self) -> list[Pending] | None:
        with self._cond:
            while True:
                now = now_ns()
                if self._has_timeouts:
                    for p in self._expire(now):
                        self._loop.call_soon_threadsafe(
                            self._fail, [p], Unavailable("Request timeout expired")
                        )
                ordered = self._ordered()
                if not ordered:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                n, wake = plan_batch(ordered, self.policy, now)
                if n:
                    self._executing += n
                    return self._take(n)
                if self._closing:  # drain without waiting for fuller batches
                    n = plan_batch(ordered, BatchPolicy(self.policy.max_batch_size, True), now)[0]
                    self._executing += n
                    return self._take(n)
                self._cond.wait(max(wake - now, 1000) / 1e9)

    def _execute(self, instance: ModelInstance, batch: list[Pending]) -> tuple[list[Result], BatchRecord]:
        timing = Timing()
        start = now_ns()
        try:
            results: list[Result] = list(instance.execute([p.request for p in batch], timing))
            if len(results) != len(batch):
                raise Internal(f"backend returned {len(results)} results for {len(batch)} requests")
        except SonicError as exc:
            results = [exc] * len(batch)
        except Exception as exc:  # a backend bug must not kill the instance thread
            results = [Internal(f"model '{self.name}' failed: {type(exc).__name__}: {exc}")] * len(batch)
        end = now_ns()
        if not (timing.input_ns or timing.infer_ns or timing.output_ns):
            timing.infer_ns = end - start
        size = sum(p.request.batch_size for p in batch)
        return results, BatchRecord(size, start, end, timing)

    def _run(self, instance: ModelInstance) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            results, record = self._execute(instance, batch)
            self._loop.call_soon_threadsafe(self._complete, batch, results, record)

    # -- inline execution (tiny models, on the loop) ------------------------------------------

    def _run_inline(self) -> None:
        """Run what queued up during this loop iteration as batches, on the loop thread.

        For models that compute in a few µs a thread hand-off costs more than the model; here
        a batch is whatever the edges parsed since the last iteration. A queue delay, if
        configured, is waited with a loop timer (ms resolution).
        """
        self._inline_scheduled = False
        instance = self._instances[0]
        while True:
            expired: list[Pending] = []
            batch: list[Pending] = []
            with self._cond:
                now = now_ns()
                if self._has_timeouts:
                    expired = self._expire(now)
                ordered = self._ordered()
                if ordered:
                    n, wake = plan_batch(ordered, self.policy, now)
                    if not n and self._closing:
                        n = plan_batch(ordered, BatchPolicy(self.policy.max_batch_size, True), now)[0]
                    if n:
                        batch = self._take(n)
                        self._executing += n
                    else:
                        self._loop.call_later(max(wake - now, 0) / 1e9, self._run_inline)
                        self._inline_scheduled = True
            if expired:  # answered outside the lock: answers run their callers' code
                self._fail(expired, Unavailable("Request timeout expired"))
            if not batch:
                return
            results, record = self._execute(instance, batch)
            self._complete(batch, results, record)

    # -- back on the loop --------------------------------------------------------------------

    def _complete(self, batch: list[Pending], results: list[Result], record: BatchRecord) -> None:
        with self._cond:
            self._executing -= len(batch)
        for p, r in zip(batch, results, strict=True):
            p.answer(r)
        self._on_batch(batch, results, record)

    def _fail(self, items: list[Pending], error: SonicError) -> None:
        for p in items:
            p.answer(error)
