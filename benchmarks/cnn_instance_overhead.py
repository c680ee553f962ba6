"""What a sonic model instance adds to onnxruntime per batch, on the ProtoDUNE-like CNN.

    .venv/bin/python benchmarks/cnn_instance_overhead.py [--batch 8] [--rounds 3]

Loads the zoo CNN through sonic's model manager (one onnxruntime thread, as serve_vs_triton
serves it) and times, alternately in one process, the bare ``session.run`` on a merged batch
and the instance's ``execute`` on the same requests (merge over the batch dimension, run,
checks, split back per request). Their difference is the instance's own cost per batch; the
rest of a server's gap to the in-process ceiling lies outside the instance thread.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from sonic import zoo
from sonic.backends.base import BackendRequest, Timing
from sonic.server.models import ModelManager


async def measure(batch: int, rounds: int, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as tmp:
        zoo.write_sonic_repository(Path(tmp), models=("cnn",), intra_op_threads=1)
        models = ModelManager([Path(tmp)], "none")
        await models.start()
        try:
            mv = models.get("cnn")
            instance = mv.scheduler._instances[0]
            name = next(iter(mv.inputs))
            outputs = list(mv.outputs)
            rng = np.random.default_rng(0)
            requests = [
                BackendRequest({name: rng.random((1, 1, 48, 48), dtype=np.float32)}, tuple(outputs), 1)
                for _ in range(batch)
            ]
            feed = {name: np.concatenate([r.inputs[name] for r in requests])}
            for _ in range(20):
                instance.session.run(outputs, feed)
                instance.execute(requests, Timing())
            for _ in range(rounds):
                t0 = time.process_time()
                for _ in range(n):
                    instance.session.run(outputs, feed)
                t1 = time.process_time()
                for _ in range(n):
                    instance.execute(requests, Timing())
                t2 = time.process_time()
                bare, full = 1e6 * (t1 - t0) / n, 1e6 * (t2 - t1) / n
                print(
                    f"batch {batch}: session.run {bare:.0f} µs, instance.execute {full:.0f} µs "
                    f"(+{full - bare:.0f} µs, ×{full / bare:.3f})",
                    flush=True,
                )
        finally:
            await models.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=400, help="batches per timing")
    args = ap.parse_args()
    asyncio.run(measure(args.batch, args.rounds, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
