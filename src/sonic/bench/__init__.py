"""Measure, tune and size: ``sonic bench``, ``sonic optimize``, ``sonic plan``.

Where it sits: on top of everything else. The bench engine drives any KServe v2 server (sonic
serve, NVIDIA Triton, others) or the in-process "local" transport, the optimizer drives a
sonic server's repository API, and the planner turns their measurements and a workflow's
profile into speed-ups, server counts and costs.

- :mod:`.engine` — load levels, measurement windows and perf_analyzer's stability rule
  (:func:`run_bench`, :class:`BenchConfig`, :class:`LoadEngine`);
- :mod:`.worker`, :mod:`.wire` — the load-generating processes and their lean wire;
- :mod:`.inputs` — input data (random, zero, perf_analyzer JSON, .npz);
- :mod:`.results` — per-level results, perf_analyzer's CSV, JSON;
- :mod:`.optimize` — configuration search and the Pareto front;
- :mod:`.plan` — Amdahl with latency hiding, servers, GPU:CPU, network, cost;
- :mod:`.plots` — the PNGs (matplotlib, optional);
- :mod:`.load` — the small tritonclient-based load of ``sonic demo``;
- :mod:`.cli` — the subcommands (``register``).

Names are imported lazily (``from sonic.bench import run_bench``), so that ``sonic --help``
does not load the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BenchConfig",
    "BenchReport",
    "LevelResult",
    "LoadEngine",
    "Plan",
    "Profile",
    "SearchSpace",
    "ServerCurve",
    "make_plan",
    "optimize",
    "run_bench",
]

_WHERE = {
    "BenchConfig": "engine",
    "LoadEngine": "engine",
    "run_bench": "engine",
    "BenchReport": "results",
    "LevelResult": "results",
    "SearchSpace": "optimize",
    "optimize": "optimize",
    "Plan": "plan",
    "Profile": "plan",
    "ServerCurve": "plan",
    "make_plan": "plan",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sonic.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sonic.bench.{module}"), name)
