"""Per-request overhead of the sonic client vs NVIDIA's tritonclient, on the same server.

    .venv/bin/python benchmarks/client_overhead.py [--requests 4000] [--concurrency 16]
                                                    [--blocks 20] [--json out.json]

One ``sonic serve`` subprocess serves the zoo's jet-tagging MLP (ONNX, batch 1: the server's
work per request is tiny, so the client's share shows). Both clients run in this process, one
after the other, in alternating blocks of requests (``--blocks``); for each of

- gRPC and HTTP,
- sync: one request at a time from one thread (``infer``),
- async: ``--concurrency`` requests in flight on one asyncio loop (``ainfer`` /
  ``tritonclient.*.aio``),

it measures the client process's CPU time per request (``time.process_time``: the server is
another process, so this is the client's overhead: building, encoding, sending, receiving,
decoding) and the wall time per request. The headline is
the ratio sonic / tritonclient of CPU per request (target <= 1.0). Each client does what a
user would: tritonclient builds ``InferInput``s and reads ``as_numpy``; sonic's client checks
the inputs against the model metadata, picks a server and keeps its statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from sonic import zoo  # noqa: E402
from sonic.client import Client  # noqa: E402
from sonic.server.process import ServerProcess  # noqa: E402

MODEL = "mlp"
#: Per-call timeout given to both clients (seconds; sonic's default), so that both do the
#: same work per call (a gRPC deadline costs the core a timer); --timeout 0 for none.
TIMEOUT = 10.0


@dataclass
class Row:
    protocol: str
    mode: str
    client: str
    requests: int
    cpu_us: float  # client CPU per request
    wall_us: float  # wall time per request (sync: latency; async: 1 / throughput)


# -- the two clients, as callables that run n requests ---------------------------------------------


def sonic_sync(protocol: str, url: str, x: np.ndarray) -> tuple[Callable[[int], None], Callable[[], None]]:
    client = Client.from_config(
        {"model": MODEL, "transport": protocol, "servers": [url], "timeout": TIMEOUT}
    ).start()

    def run(n: int) -> None:
        for _ in range(n):
            client.infer({"input": x})["output"]

    return run, client.close


def triton_sync(protocol: str, url: str, x: np.ndarray) -> tuple[Callable[[int], None], Callable[[], None]]:
    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    client = tc.InferenceServerClient(url)
    # tritonclient's per-call timeout: client_timeout (gRPC), the connection's (HTTP)
    kwargs = {"client_timeout": TIMEOUT or None} if protocol == "grpc" else {}

    def run(n: int) -> None:
        for _ in range(n):
            inp = tc.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            client.infer(MODEL, [inp], **kwargs).as_numpy("output")

    return run, client.close


async def sonic_async(
    protocol: str, url: str, x: np.ndarray
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    client = await Client.from_config(
        {"model": MODEL, "transport": protocol, "servers": [url], "timeout": TIMEOUT}
    ).astart()

    async def one() -> None:
        (await client.ainfer({"input": x}))["output"]

    return one, client.aclose


async def triton_async(
    protocol: str, url: str, x: np.ndarray
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    if protocol == "grpc":
        import tritonclient.grpc.aio as ta
    else:
        import tritonclient.http.aio as ta
    client = ta.InferenceServerClient(url)
    kwargs = {"client_timeout": TIMEOUT or None} if protocol == "grpc" else {}

    async def one() -> None:
        inp = ta.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        (await client.infer(MODEL, [inp], **kwargs)).as_numpy("output")

    async def close() -> None:
        await client.close()

    return one, close


# -- measurement ---------------------------------------------------------------------------------
#
# The machine is shared and noisy: the two clients run in alternating blocks of requests, so
# that both see the same background; each keeps the sum of its blocks.


def measure_sync(
    protocol: str, url: str, x: np.ndarray, n: int, blocks: int
) -> dict[str, tuple[float, float]]:
    runs = {"tritonclient": triton_sync(protocol, url, x), "sonic": sonic_sync(protocol, url, x)}
    cpu = dict.fromkeys(runs, 0.0)
    wall = dict.fromkeys(runs, 0.0)
    per = max(n // blocks, 1)
    try:
        for run, _ in runs.values():
            run(max(n // 10, 50))  # warm up: connections, caches
        for _ in range(blocks):
            for name, (run, _) in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                run(per)
                cpu[name] += time.process_time() - c0
                wall[name] += time.perf_counter() - t0
    finally:
        for _, close in runs.values():
            close()
    done = per * blocks
    return {k: (cpu[k] / done * 1e6, wall[k] / done * 1e6) for k in runs}


def measure_async(
    protocol: str, url: str, x: np.ndarray, n: int, blocks: int, concurrency: int
) -> dict[str, tuple[float, float]]:
    async def main() -> dict[str, tuple[float, float]]:
        runs = {
            "tritonclient": await triton_async(protocol, url, x),
            "sonic": await sonic_async(protocol, url, x),
        }
        cpu = dict.fromkeys(runs, 0.0)
        wall = dict.fromkeys(runs, 0.0)
        per = max(n // blocks // concurrency, 1)

        async def block(one: Callable[[], Awaitable[None]], k: int) -> None:
            async def worker() -> None:
                for _ in range(k):
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        try:
            for one, _ in runs.values():
                await block(one, max(n // 10 // concurrency, 5))
            for _ in range(blocks):
                for name, (one, _) in runs.items():
                    c0, t0 = time.process_time(), time.perf_counter()
                    await block(one, per)
                    cpu[name] += time.process_time() - c0
                    wall[name] += time.perf_counter() - t0
        finally:
            for _, close in runs.values():
                await close()
        done = per * concurrency * blocks
        return {k: (cpu[k] / done * 1e6, wall[k] / done * 1e6) for k in runs}

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=4000, help="requests per measurement")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (async)")
    p.add_argument("--blocks", type=int, default=20, help="alternating blocks per measurement")
    p.add_argument("--protocols", default="grpc,http")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call timeout for both clients")
    p.add_argument("--json", type=Path, help="write the rows and ratios here")
    args = p.parse_args(argv)
    global TIMEOUT
    TIMEOUT = args.timeout

    x = np.random.default_rng(0).standard_normal((1, zoo.MLP_LAYERS[0]), dtype=np.float32)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sonic-overhead-") as tmp:
        repo = zoo.write_sonic_repository(Path(tmp), models=(MODEL,))
        server = ServerProcess(repo)
        with server:
            for protocol in args.protocols.split(","):
                url = server.grpc_url if protocol == "grpc" else server.http_url
                for mode in ("sync", "async"):
                    if mode == "sync":
                        got = measure_sync(protocol, url, x, args.requests, args.blocks)
                    else:
                        got = measure_async(protocol, url, x, args.requests, args.blocks, args.concurrency)
                    for name, (cpu, wall) in got.items():
                        rows.append(Row(protocol, mode, name, args.requests, cpu, wall))
                        print(
                            f"{protocol:5s} {mode:5s} {name:13s} client CPU {cpu:7.1f} us/request   "
                            f"wall {wall:7.1f} us/request",
                            flush=True,
                        )
        if server.proc is not None and server.proc.stdout is not None:
            server.proc.stdout.close()

    ratios: dict[str, dict[str, float]] = {}
    print("\nsonic / tritonclient (target <= 1.0)")
    for protocol in args.protocols.split(","):
        for mode in ("sync", "async"):
            pair = {r.client: r for r in rows if r.protocol == protocol and r.mode == mode}
            s, t = pair["sonic"], pair["tritonclient"]
            key = f"{protocol}-{mode}"
            ratios[key] = {"cpu": s.cpu_us / t.cpu_us, "wall": s.wall_us / t.wall_us}
            print(
                f"  {key:11s} CPU per request {ratios[key]['cpu']:.2f}   "
                f"wall per request {ratios[key]['wall']:.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
