"""Scheduling policies over the wire, differential: sonic serve and NVIDIA Triton.

The same repository of python-backend ``sleep`` models (one per policy) is served by both; a
burst of concurrent requests from ``tritonclient.http.aio`` shows queue limits, queue timeouts,
priorities and instance groups doing what their config says, with Triton's answers as the
reference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from conftest import SERVER_KINDS, Target, _sonic, _triton
from sonic import zoo

BASE = """name: "{name}"
backend: "python"
max_batch_size: 1
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
parameters {{ key: "delay_ms" value: {{ string_value: "{delay}" }} }}
"""

POLICIES = {
    "sleep_queue": ("100", "dynamic_batching { default_queue_policy { max_queue_size: 2 } }"),
    "sleep_timeout": (
        "150",
        "dynamic_batching { default_queue_policy { timeout_action: REJECT "
        "default_timeout_microseconds: 50000 } }",
    ),
    "sleep_priority": ("60", "dynamic_batching { priority_levels: 2 default_priority_level: 2 }"),
    "sleep_one": ("150", "instance_group [ { count: 1 kind: KIND_CPU } ]"),
    "sleep_two": ("150", "instance_group [ { count: 2 kind: KIND_CPU } ]"),
}


@pytest.fixture(scope="module")
def policy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("policy-repo")
    for name, (delay, extra) in POLICIES.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(BASE.format(name=name, delay=delay) + extra + "\n")
        (repo / name / "1" / "model.py").write_text(zoo.SLEEP_MODEL_PY)
    return repo


@pytest.fixture(scope="module", params=SERVER_KINDS)
def target(request: pytest.FixtureRequest, policy_repo: Path) -> Iterator[Target]:
    if request.param == "sonic":
        with _sonic(policy_repo) as t:
            yield t
    else:
        from conftest import _require_triton

        _require_triton()
        with _triton(policy_repo) as t:
            yield t


def _inputs(value: float) -> list[Any]:
    inp = httpaio.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(np.full((1, 1), value, np.float32))
    return [inp]


async def _burst(url: str, model: str, values: list[float], priorities: list[int] | None = None,
                 stagger: float = 0.0) -> list[tuple[float, Any]]:
    """Send one request per value concurrently; (completion time, array or exception) each."""
    client = httpaio.InferenceServerClient(url)
    t0 = time.perf_counter()

    async def one(i: int, v: float) -> tuple[float, Any]:
        await asyncio.sleep(stagger * i)
        try:
            res = await client.infer(model, _inputs(v), priority=(priorities or [0] * len(values))[i])
            return time.perf_counter() - t0, res.as_numpy("OUTPUT0")
        except InferenceServerException as exc:
            return time.perf_counter() - t0, exc

    try:
        return list(await asyncio.gather(*(one(i, v) for i, v in enumerate(values))))
    finally:
        await client.close()


def test_queue_size_limit_rejects_with_503(target: Target) -> None:
    out = asyncio.run(_burst(target.http_url, "sleep_queue", [float(i) for i in range(8)], stagger=0.005))
    ok = [r for _, r in out if isinstance(r, np.ndarray)]
    rejected = [r for _, r in out if isinstance(r, InferenceServerException)]
    assert len(ok) >= 3, out  # one executing + two queued
    assert rejected, "a full queue must reject"
    for exc in rejected:
        assert exc.status() == "503" and "Exceeds maximum queue size" in (exc.message() or ""), exc
    # the accepted ones got their own values back
    for (_, r), v in zip(out, range(8), strict=True):
        if isinstance(r, np.ndarray):
            assert float(r[0, 0]) == v


def test_queue_timeout_rejects(target: Target) -> None:
    out = asyncio.run(_burst(target.http_url, "sleep_timeout", [1.0, 2.0, 3.0, 4.0], stagger=0.005))
    ok = [r for _, r in out if isinstance(r, np.ndarray)]
    rejected = [r for _, r in out if isinstance(r, InferenceServerException)]
    assert ok and float(ok[0][0, 0]) == 1.0  # the first ran at once
    assert rejected, out  # the rest waited > 50 ms behind a 150 ms execution
    for exc in rejected:
        assert "timeout" in (exc.message() or "").lower(), exc
        assert exc.status() == "503", exc


def test_high_priority_overtakes_queued_low_priority(target: Target) -> None:
    # one low-priority request occupies the instance; then three low and one high queue up
    values = [0.0, 1.0, 2.0, 3.0, 9.0]
    priorities = [2, 2, 2, 2, 1]
    out = asyncio.run(_burst(target.http_url, "sleep_priority", values, priorities, stagger=0.01))
    done = {float(r[0, 0]): t for t, r in out if isinstance(r, np.ndarray)}
    assert len(done) == 5, out
    assert done[9.0] < done[2.0] and done[9.0] < done[3.0], done


def test_two_instances_run_in_parallel(target: Target) -> None:
    def wall(model: str) -> float:
        t0 = time.perf_counter()
        out = asyncio.run(_burst(target.http_url, model, [1.0, 2.0, 3.0, 4.0]))
        assert all(isinstance(r, np.ndarray) for _, r in out), out
        return time.perf_counter() - t0

    one, two = wall("sleep_one"), wall("sleep_two")
    # 4 x 150 ms: ~600 ms serially, ~300 ms on two instances (generous margin for a busy machine)
    assert two < 0.8 * one, (one, two)


def test_statistics_count_the_policy_rejections(target: Target) -> None:
    client = httpclient.InferenceServerClient(target.http_url)
    try:
        before = client.get_inference_statistics("sleep_queue")["model_stats"][0]["inference_stats"]
        out = asyncio.run(_burst(target.http_url, "sleep_queue", [float(i) for i in range(6)]))
        after = client.get_inference_statistics("sleep_queue")["model_stats"][0]["inference_stats"]
    finally:
        client.close()
    ok = sum(isinstance(r, np.ndarray) for _, r in out)
    assert after["success"]["count"] - before["success"]["count"] == ok
