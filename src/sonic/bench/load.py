"""A closed-loop load generator: N concurrent clients sending back-to-back requests.

This is the engine behind the demo's table (and the seed of ``sonic bench``): NVIDIA's
tritonclient (gRPC or HTTP, asyncio) sends requests to any v2 server; we record each latency,
then read the server-side queue and compute times from the statistics extension, as
perf_analyzer does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LoadResult:
    model: str
    protocol: str
    concurrency: int
    batch: int
    requests: int
    errors: int
    seconds: float
    latencies_us: np.ndarray
    server_queue_us: float = 0.0
    server_compute_us: float = 0.0

    @property
    def throughput(self) -> float:
        """Inferences (samples) per second."""
        return self.requests * self.batch / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_us, q)) if len(self.latencies_us) else float("nan")


def _client(protocol: str, url: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc.aio as grpcclient

        return grpcclient.InferenceServerClient(url)
    import tritonclient.http.aio as httpclient

    return httpclient.InferenceServerClient(url)


def _module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as m
    else:
        import tritonclient.http as m
    return m


async def _inputs(client: Any, protocol: str, model: str, batch: int, rng: np.random.Generator) -> list[Any]:
    meta = await client.get_model_metadata(model)
    config = await client.get_model_config(model)
    if protocol == "grpc":
        inputs_meta = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs]
        max_batch = config.config.max_batch_size
    else:
        inputs_meta, max_batch = meta["inputs"], config.get("max_batch_size", 0)
    mod = _module(protocol)
    inputs = []
    for t in inputs_meta:
        dims = [int(d) for d in t["shape"]]
        if max_batch > 0:
            dims[0] = batch
        dims = [1 if d < 0 else d for d in dims]
        if t["datatype"] == "BYTES":
            data = np.array([b"x"] * int(np.prod(dims)), dtype=np.object_).reshape(dims)
        else:
            data = rng.standard_normal(dims).astype(mod.triton_to_np_dtype(t["datatype"]))
        inp = mod.InferInput(t["name"], dims, t["datatype"])
        if protocol == "grpc":
            inp.set_data_from_numpy(data)
        else:
            inp.set_data_from_numpy(data, binary_data=True)
        inputs.append(inp)
    return inputs


async def _server_stats(client: Any, protocol: str, model: str) -> tuple[int, int, int]:
    stats = await client.get_inference_statistics(model)
    if protocol == "grpc":
        s = stats.model_stats[0].inference_stats
        return s.success.count, s.queue.ns, s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns
    s = stats["model_stats"][0]["inference_stats"]
    return (
        s["success"]["count"],
        s["queue"]["ns"],
        s["compute_input"]["ns"] + s["compute_infer"]["ns"] + s["compute_output"]["ns"],
    )


async def run_load(
    url: str,
    model: str,
    *,
    protocol: str = "grpc",
    concurrency: int = 4,
    seconds: float = 2.0,
    batch: int = 1,
    warmup: float = 0.3,
    seed: int = 0,
) -> LoadResult:
    """Run ``concurrency`` closed-loop clients for ``seconds`` and measure."""
    client = _client(protocol, url)
    try:
        inputs = await _inputs(client, protocol, model, batch, np.random.default_rng(seed))
        latencies: list[int] = []
        errors = 0
        measuring = False
        deadline = 0.0

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter_ns()
                try:
                    await client.infer(model, inputs)
                except Exception:
                    errors += 1
                t1 = time.perf_counter_ns()
                if measuring:
                    latencies.append(t1 - t0)
                if deadline and time.perf_counter() >= deadline:
                    return

        deadline = time.perf_counter() + warmup
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        before = await _server_stats(client, protocol, model)
        measuring = True
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        after = await _server_stats(client, protocol, model)
        n = max(after[0] - before[0], 1)
        return LoadResult(
            model,
            protocol,
            concurrency,
            batch,
            len(latencies),
            errors,
            elapsed,
            np.array(latencies, dtype=np.float64) / 1000.0,
            (after[1] - before[1]) / n / 1000.0,
            (after[2] - before[2]) / n / 1000.0,
        )
    finally:
        await client.close()


def table(results: list[LoadResult]) -> str:
    head = (
        f"{'model':<10} {'proto':<5} {'conc':>4} {'batch':>5} {'infer/s':>9} {'p50 µs':>8} "
        f"{'p90 µs':>8} {'p99 µs':>8} {'queue µs':>9} {'compute µs':>10} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.model:<10} {r.protocol:<5} {r.concurrency:>4} {r.batch:>5} {r.throughput:>9.0f} "
            f"{r.percentile(50):>8.0f} {r.percentile(90):>8.0f} {r.percentile(99):>8.0f} "
            f"{r.server_queue_us:>9.0f} {r.server_compute_us:>10.0f} {r.errors:>6}"
        )
    return "\n".join(lines)
