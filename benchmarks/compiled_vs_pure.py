"""sonic serve with its Cython-compiled hot path against the same server as pure Python.

    .venv/bin/python benchmarks/compiled_vs_pure.py [--rounds 2] [--seconds 4]

The same sonic serve, started alternately with and without ``SONIC_PURE_PYTHON=1`` (the
Python sources run even where a build exists, see ``sonic._compiled``), on the zoo MLP (one
onnxruntime thread, no queue delay), loaded by NVIDIA's perf_analyzer over gRPC at c=16 and
c=64 and over HTTP at c=16. Prints throughput and the server's CPU per request (its CPU time
over the requests its metrics count), each round side by side, and the compiled/pure ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_vs_triton import Row, perf  # noqa: E402
from sonic import _compiled, zoo  # noqa: E402
from sonic.server.process import ServerProcess  # noqa: E402
from triton_ref import triton_available  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer measurement window")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not triton_available():
        print("NVIDIA perf_analyzer is not available (../shared/tools/triton-reference)", file=sys.stderr)
        return 2
    if _compiled.stale():
        print(f"stale builds (run ./dev to recompile): {_compiled.stale()}", file=sys.stderr)
        return 2
    cases = [("grpc", 16), ("grpc", 64), ("http", 16)]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as tmp:
        repo = zoo.write_sonic_repository(Path(tmp), ("mlp",), max_queue_delay_us=0, intra_op_threads=1)
        for _ in range(args.rounds):
            for mode in ("compiled", "pure"):
                env = dict(os.environ)
                env.pop("SONIC_PURE_PYTHON", None)
                if mode == "pure":
                    env["SONIC_PURE_PYTHON"] = "1"
                with ServerProcess(repo, env=env) as srv:
                    assert srv.proc is not None
                    if mode == "compiled" and not any("hot path compiled" in line for line in srv.log):
                        print("the hot path is not compiled here (see sonic serve's log)", file=sys.stderr)
                        return 2
                    for proto, conc in cases:
                        url = srv.grpc_url if proto == "grpc" else srv.http_url
                        row = perf(mode, srv.proc.pid, srv.metrics_url, url, "mlp", proto, conc, args.seconds)
                        rows.append(row)
                        print(
                            f"{mode:<9}{proto:<5} c={conc:<3} {row.throughput:>8.0f} infer/s"
                            f"  {row.cpu_us_per_request:6.1f} µs CPU/request",
                            flush=True,
                        )
    print()
    ratios = {}
    for proto, conc in cases:

        def mean(mode: str, attr: str, proto: str = proto, conc: int = conc) -> float:
            vals = [
                getattr(r, attr) for r in rows if (r.server, r.protocol, r.concurrency) == (mode, proto, conc)
            ]
            return sum(vals) / len(vals)

        cpu_c, cpu_p = mean("compiled", "cpu_us_per_request"), mean("pure", "cpu_us_per_request")
        tp_c, tp_p = mean("compiled", "throughput"), mean("pure", "throughput")
        ratios[f"{proto} c={conc}"] = {"cpu_compiled_over_pure": cpu_c / cpu_p, "throughput": tp_c / tp_p}
        print(
            f"{proto} c={conc}: CPU/request compiled {cpu_c:.1f} µs, pure {cpu_p:.1f} µs "
            f"(×{cpu_c / cpu_p:.2f}); throughput ×{tp_c / tp_p:.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compiled_vs_pure-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"rows": [r.__dict__ for r in rows], "ratios": ratios}, indent=2))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
