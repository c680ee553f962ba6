"""PNG plots of ``sonic bench``, ``sonic optimize`` and ``sonic plan`` (matplotlib, Agg).

matplotlib is imported here only, lazily, with an install hint when it is missing
(``pip install 'sonic[bench]'``); nothing else in the bench package needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sonic.bench.results import LevelResult
from sonic.protocol.errors import Unsupported

__all__ = ["plot_bench", "pyplot"]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise Unsupported(
            "plots need matplotlib: pip install 'sonic[bench]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bench(results: Sequence[LevelResult], path: str | Path, title: str = "") -> Path:
    """Throughput vs latency: one line per statistic (avg, p50, p90, p99), each point labelled
    with its load level (concurrency or request rate)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = [r.throughput for r in results]
    for key, style in (("avg", "-o"), ("p50", "-s"), ("p90", "--^"), ("p99", ":v")):
        ax.plot(xs, [r.latency_us[key] / 1e3 for r in results], style, label=key, markersize=4)
    for r in results:
        ax.annotate(
            f"{r.load:g}",
            (r.throughput, r.latency_us["p50"] / 1e3),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
            color="0.3",
        )
    what = "concurrency" if results and results[0].mode == "concurrency" else "request rate (req/s)"
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or f"throughput vs latency (labels: {what})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
