"""The batching policy (pure) and the scheduler's threads, with a real python-style instance."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic.backends.base import (
    BackendRequest,
    InstanceSpec,
    LoadContext,
    ModelInstance,
    Result,
    Timing,
    merge_inputs,
    split_outputs,
)
from sonic.protocol.errors import Unavailable
from sonic.scheduler.batcher import BatchPolicy, BatchRecord, Pending, QueuePolicy, Scheduler, plan_batch


def pend(batch: int = 1, key: Any = ("x", (4,)), t: int = 0) -> Pending:
    req = BackendRequest({"x": np.zeros((batch, 4), np.float32)}, ("y",), batch)
    return Pending(req, key, 0, t)


MS = 1_000_000


def test_plan_non_dynamic_takes_one() -> None:
    assert plan_batch([pend(), pend()], BatchPolicy(max_batch_size=8), 0) == (1, 0)
    assert plan_batch([pend(), pend()], BatchPolicy(max_batch_size=0, dynamic=True), 0) == (1, 0)


def test_plan_zero_delay_takes_everything_that_fits() -> None:
    pol = BatchPolicy(max_batch_size=8, dynamic=True)
    assert plan_batch([pend(3), pend(3), pend(3)], pol, 0) == (2, 0)  # 3+3, the third would be 9
    assert plan_batch([pend(1)] * 5, pol, 0) == (5, 0)


def test_plan_waits_for_delay_then_dispatches() -> None:
    pol = BatchPolicy(max_batch_size=8, dynamic=True, max_queue_delay_ns=2 * MS)
    assert plan_batch([pend(t=0), pend(t=0)], pol, 1 * MS) == (0, 2 * MS)
    assert plan_batch([pend(t=0), pend(t=0)], pol, 2 * MS) == (2, 0)


def test_plan_full_batch_goes_at_once() -> None:
    pol = BatchPolicy(max_batch_size=4, dynamic=True, max_queue_delay_ns=100 * MS)
    assert plan_batch([pend(2), pend(2)], pol, 0) == (2, 0)


def test_plan_preferred_size() -> None:
    pol = BatchPolicy(max_batch_size=16, dynamic=True, preferred=(4, 8), max_queue_delay_ns=100 * MS)
    assert plan_batch([pend()] * 8, pol, 0) == (8, 0)  # largest preferred reached
    assert plan_batch([pend()] * 4, pol, 0) == (0, 100 * MS)  # may still grow to 8
    # blocked by a different shape: send the preferred-size part
    items = [pend()] * 5 + [pend(key=("x", (5,)))]
    assert plan_batch(items, pol, 0) == (4, 0)


def test_plan_stops_at_incompatible_shape() -> None:
    pol = BatchPolicy(max_batch_size=8, dynamic=True)
    items = [pend(), pend(key=("x", (2,))), pend()]
    assert plan_batch(items, pol, 0) == (1, 0)


def test_priority_levels() -> None:
    pol = BatchPolicy(max_batch_size=8, dynamic=True, priority_levels=3, default_priority=2)
    assert pol.level_for(0) == 1
    assert pol.level_for(1) == 0
    assert pol.level_for(3) == 2
    assert pol.level_for(99) == 2


class Doubler(ModelInstance):
    """Doubles 'x' into 'y'; records batch sizes; can be slowed down."""

    def __init__(self, delay: float = 0.0) -> None:
        ctx = LoadContext("m", 1, Path("."), Path("."), None, InstanceSpec("m_0", "KIND_CPU"))
        super().__init__(ctx)
        self.delay = delay
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()

    def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        self.gate.wait()
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(requests))
        if self.delay:
            time.sleep(self.delay)
        x = merge_inputs(requests)["x"]
        return split_outputs({"y": x * 2}, requests)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_scheduler_batches_while_busy_and_splits_back() -> None:
    inst = Doubler()
    records: list[BatchRecord] = []

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        sched = Scheduler(
            "m",
            [inst],
            BatchPolicy(max_batch_size=64, dynamic=True),
            loop,
            lambda b, r, rec: records.append(rec),
        )
        inst.gate.clear()  # hold the first batch so the rest queue up
        futs = [
            sched.submit(BackendRequest({"x": np.full((1, 4), i, np.float32)}, ("y",), 1), ("x", (4,)))
            for i in range(10)
        ]
        await asyncio.sleep(0.05)
        inst.gate.set()
        out = await asyncio.gather(*futs)
        sched.close()
        return out

    out = run(main())
    for i, res in enumerate(out):
        np.testing.assert_array_equal(res["y"], np.full((1, 4), 2 * i, np.float32))
    assert sum(inst.batches) == 10
    assert max(inst.batches) >= 9  # everything that queued behind the first batch went together
    assert sum(r.size for r in records) == 10


def test_two_instances_run_in_parallel() -> None:
    a, b = Doubler(delay=0.05), Doubler(delay=0.05)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        sched = Scheduler("m", [a, b], BatchPolicy(max_batch_size=1, dynamic=False), loop, lambda *x: None)
        t0 = time.perf_counter()
        futs = [
            sched.submit(BackendRequest({"x": np.ones((1, 4), np.float32)}, ("y",), 1), ("x", (4,)))
            for _ in range(4)
        ]
        await asyncio.gather(*futs)
        sched.close()
        return time.perf_counter() - t0

    run(main())
    assert a.batches and b.batches  # both instances took work
    assert sum(a.batches) + sum(b.batches) == 4


def test_queue_full_is_unavailable() -> None:
    inst = Doubler()
    pol = BatchPolicy(max_batch_size=8, dynamic=True, default_queue=QueuePolicy(max_queue_size=2))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = Scheduler("m", [inst], pol, loop, lambda *x: None)
        inst.gate.clear()
        req = BackendRequest({"x": np.ones((1, 4), np.float32)}, ("y",), 1)
        first = sched.submit(req, ("x", (4,)))
        await asyncio.sleep(0.05)  # the instance has taken it and waits on the gate
        futs = [sched.submit(req, ("x", (4,))) for _ in range(2)]
        with pytest.raises(Unavailable, match="Exceeds maximum queue size"):
            sched.submit(req, ("x", (4,)))
        inst.gate.set()
        await asyncio.gather(first, *futs)
        sched.close()

    run(main())


def test_queue_timeout_rejects() -> None:
    inst = Doubler(delay=0.1)
    pol = BatchPolicy(max_batch_size=1, dynamic=True, default_queue=QueuePolicy(timeout_us=20_000))

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        sched = Scheduler("m", [inst], pol, loop, lambda *x: None)
        req = BackendRequest({"x": np.ones((1, 4), np.float32)}, ("y",), 1)
        futs = [sched.submit(req, ("x", (4,))) for _ in range(3)]
        out = await asyncio.gather(*futs, return_exceptions=True)
        sched.close()
        return out

    out = run(main())
    assert isinstance(out[0], dict)  # the first ran at once
    assert all(isinstance(o, Unavailable) and "timeout" in str(o) for o in out[1:])


def test_failing_backend_fails_its_batch_only() -> None:
    class Flaky(Doubler):
        def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
            if float(requests[0].inputs["x"][0, 0]) < 0:
                raise ValueError("negative input")
            return super().execute(requests, timing)

    inst = Flaky()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        sched = Scheduler("m", [inst], BatchPolicy(max_batch_size=1), loop, lambda *x: None)
        good = BackendRequest({"x": np.ones((1, 4), np.float32)}, ("y",), 1)
        bad = BackendRequest({"x": -np.ones((1, 4), np.float32)}, ("y",), 1)
        futs = [sched.submit(r, ("x", (4,))) for r in (good, bad, good)]
        out = await asyncio.gather(*futs, return_exceptions=True)
        sched.close()
        return out

    out = run(main())
    assert isinstance(out[0], dict) and isinstance(out[2], dict)
    assert "negative input" in str(out[1])


@pytest.mark.parametrize("inline", [False, True])
def test_callback_answers_once_on_the_loop_and_cancel_withdraws_it(inline: bool) -> None:
    """submit_cb, the edges' hot path: each answer once, on the loop, never inside submit_cb;
    a cancelled request runs but is not answered; a callback that raises loses no other answer;
    queue timeouts answer with the error."""
    inst = Doubler()
    answers: list[tuple[int, Any, bool]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = Scheduler(
            "m", [inst], BatchPolicy(max_batch_size=64, dynamic=True), loop, lambda *x: None, inline=inline
        )
        inside = True

        def answer(i: int, result: Result) -> None:
            answers.append((i, result, inside))
            if i == 2:
                raise RuntimeError("a caller's bug")

        if not inline:
            inst.gate.clear()
        pending = [
            sched.submit_cb(
                BackendRequest({"x": np.full((1, 4), i, np.float32)}, ("y",), 1), ("x", (4,)), 0, 0, answer, i
            )
            for i in range(6)
        ]
        inside = False
        pending[4].cancel()
        inst.gate.set()
        for _ in range(100):
            if len(answers) == 5:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        sched.close()

    run(main())
    assert sorted(i for i, _, _ in answers) == [0, 1, 2, 3, 5]  # once each; 4 was cancelled
    for i, result, inside in answers:
        assert not inside
        np.testing.assert_array_equal(result["y"], np.full((1, 4), 2 * i, np.float32))
    assert sum(inst.batches) == 6  # the cancelled one still ran


def test_callback_gets_the_queue_timeout() -> None:
    inst = Doubler(delay=0.1)
    pol = BatchPolicy(max_batch_size=1, dynamic=True, default_queue=QueuePolicy(timeout_us=20_000))
    got: list[Result] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sched = Scheduler("m", [inst], pol, loop, lambda *x: None)
        req = BackendRequest({"x": np.ones((1, 4), np.float32)}, ("y",), 1)
        for _ in range(3):
            sched.submit_cb(req, ("x", (4,)), 0, 0, lambda _context, result: got.append(result))
        while len(got) < 3:
            await asyncio.sleep(0.01)
        sched.close()

    run(main())
    assert isinstance(got[0], dict)
    assert all(isinstance(r, Unavailable) and "timeout" in str(r) for r in got[1:])
