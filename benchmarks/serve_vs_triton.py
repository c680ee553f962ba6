"""sonic serve vs NVIDIA Triton, side by side in one run, measured by NVIDIA's perf_analyzer.

    .venv/bin/python benchmarks/serve_vs_triton.py [--seconds 4] [--concurrency 16]

Models (sonic.zoo): the jet-tagger MLP (16→64→32→32→5) and the ProtoDUNE-like CNN (1×48×48 →
4 classes), as ONNX. sonic serves them with its onnxruntime backend; Triton serves the same
ONNX files from python-backend models running onnxruntime (the only backend the reference
build has). Each server runs alone (one after the other), with one onnxruntime thread per
instance, and perf_analyzer drives it with batch 1: the MLP over gRPC at c=16 and c=64 and over
HTTP (binary tensors) at c=16, the CNN over gRPC at c=16 with one and with two instances, and
sonic's grpcio edge (``--grpc-impl grpcio``) on the MLP for comparison. The script also measures
in-process onnxruntime on the CNN at its best batch size with one thread (the ceiling a server
can approach), and the servers' CPU time per request: all their processes' CPU time (psutil)
over the requests they answered meanwhile (``nv_inference_request_success`` from their own
Prometheus metrics, which both servers keep).

Prints a table and the ratios the server issue asks for; writes benchmarks/results/*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sonic import zoo  # noqa: E402
from sonic.server.process import ServerProcess  # noqa: E402
from triton_ref import parse_perf_csv, run_perf_analyzer, run_triton, triton_available  # noqa: E402


@dataclass
class Row:
    server: str
    model: str
    protocol: str
    concurrency: int
    throughput: float
    p50_us: float
    p99_us: float
    server_queue_us: float
    server_compute_us: float
    cpu_us_per_request: float


def _cpu_seconds(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _answered(metrics_url: str) -> float:
    """Requests the server has answered so far: the sum of its nv_inference_request_success."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success")
    )


def perf(
    server: str,
    pid: int,
    metrics_url: str,
    url: str,
    model: str,
    protocol: str,
    concurrency: int,
    seconds: float,
    extra: list[str] | None = None,
) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "perf.csv"
        args = [
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            "-b",
            "1",
            "--concurrency-range",
            str(concurrency),
            "-p",
            str(int(seconds * 1000)),
            "--max-trials",
            "10",
            "-s",
            "20",
            "-f",
            str(csv),
            *(extra or []),
        ]
        warm = ["-m", model, "-u", url, "-i", protocol, "--concurrency-range", str(concurrency)]
        with contextlib.suppress(RuntimeError):  # warm-up only: an unsettled window is fine
            run_perf_analyzer([*warm, "-p", "500", "--max-trials", "2"])
        cpu0, n0 = _cpu_seconds(pid), _answered(metrics_url)
        try:
            run_perf_analyzer(args, timeout=600)
        except RuntimeError as exc:  # latency did not settle within 20%: accept 50%, say so
            if "stable measurement" not in str(exc):
                raise
            print(f"  ({server} {model} {protocol} c={concurrency}: unsettled at 20%, retried at 50%)")
            run_perf_analyzer([*args, "-s", "50"], timeout=600)  # the last -s wins
        cpu = _cpu_seconds(pid) - cpu0
        requests = max(_answered(metrics_url) - n0, 1.0)
        row = parse_perf_csv(csv)[0]
    return Row(
        server,
        model,
        protocol,
        concurrency,
        row.throughput,
        row.p50_us,
        row.p99_us,
        row.server_queue_us,
        row.server_compute_us,
        cpu / requests * 1e6,
    )


def inprocess_cnn(threads: int = 1, seconds: float = 3.0) -> dict[int, float]:
    """Samples/s of onnxruntime in this process on the CNN, per batch size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(zoo.cnn_onnx(), opts, providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 4, 8, 16, 32):
        x = np.random.default_rng(0).standard_normal((batch, 1, 48, 48)).astype(np.float32)
        for _ in range(5):
            sess.run(None, {"input": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 5:
            sess.run(None, {"input": x})
            n += batch
        out[batch] = n / (time.perf_counter() - t0)
    return out


#: A pure-Python busy loop: stands in for what shares the machine with a server under test
#: (the load generator, the event loop) while the in-process ceiling is measured again.
_BUSY = "import time\nend = time.time() + {s}\nx = 0\nwhile time.time() < end:\n    x = (x + 1) % 7"


@contextlib.contextmanager
def _other_core_busy(seconds: float) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", _BUSY.format(s=seconds)])
    try:
        time.sleep(0.3)
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer measurement window")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not triton_available():
        print("NVIDIA Triton is not available (../shared/tools/triton-reference)", file=sys.stderr)
        return 2
    rows: list[Row] = []
    c, secs = args.concurrency, args.seconds
    # (model, protocol, concurrency) measured on every server
    plan = [("mlp", "grpc", c), ("mlp", "grpc", 64), ("mlp", "http", c), ("cnn", "grpc", c)]

    def measure(
        server: str,
        pid: int,
        grpc_url: str,
        http_url: str,
        metrics_url: str,
        cases: list[tuple[str, str, int]],
    ) -> None:
        for model, proto, conc in cases:
            url = grpc_url if proto == "grpc" else http_url
            rows.append(perf(server, pid, metrics_url, url, model, proto, conc, secs))
            print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as tmp:
        base = Path(tmp)
        sonic_repo = zoo.write_sonic_repository(base / "sonic", max_queue_delay_us=0, intra_op_threads=1)
        triton_repo = zoo.write_triton_python_repository(
            base / "triton", max_queue_delay_us=0, intra_op_num_threads=1
        )
        sonic_cnn2 = zoo.write_sonic_repository(
            base / "sonic2", models=("cnn",), max_queue_delay_us=0, instances=2, intra_op_threads=1
        )
        triton_cnn2 = zoo.write_triton_python_repository(
            base / "triton2", models=("cnn",), max_queue_delay_us=0, instances=2, intra_op_num_threads=1
        )
        with run_triton(triton_repo) as tri:
            assert tri.process is not None
            measure("triton", tri.process.pid, tri.grpc_url, tri.http_url, tri.metrics_url, plan)
        with run_triton(triton_cnn2) as tri:
            assert tri.process is not None
            measure(
                "triton-2i",
                tri.process.pid,
                tri.grpc_url,
                tri.http_url,
                tri.metrics_url,
                [("cnn", "grpc", c)],
            )
        with ServerProcess(sonic_repo) as srv:
            assert srv.proc is not None
            measure("sonic", srv.proc.pid, srv.grpc_url, srv.http_url, srv.metrics_url, plan)
        with ServerProcess(sonic_repo, "--grpc-impl", "grpcio") as srv:
            assert srv.proc is not None
            measure("grpcio", srv.proc.pid, srv.grpc_url, srv.http_url, srv.metrics_url, [("mlp", "grpc", c)])
        with ServerProcess(sonic_cnn2) as srv:
            assert srv.proc is not None
            measure(
                "sonic-2i", srv.proc.pid, srv.grpc_url, srv.http_url, srv.metrics_url, [("cnn", "grpc", c)]
            )
    ceiling = inprocess_cnn(threads=1)
    best = max(ceiling.values())
    # On a machine with no core to spare, the load generator and the event loop run on the
    # other core while the server computes; measured here, that alone slows onnxruntime.
    with _other_core_busy(10.0):
        ceiling_busy = inprocess_cnn(threads=1)
    best_busy = max(ceiling_busy.values())

    print()
    print(
        f"{'server':<10}{'model':<6}{'proto':<6}{'c':>4}{'infer/s':>10}{'p50 µs':>9}{'p99 µs':>9}"
        f"{'queue µs':>10}{'compute µs':>12}{'CPU µs/req':>12}"
    )
    for r in rows:
        print(
            f"{r.server:<10}{r.model:<6}{r.protocol:<6}{r.concurrency:>4}{r.throughput:>10.0f}"
            f"{r.p50_us:>9.0f}{r.p99_us:>9.0f}{r.server_queue_us:>10.0f}{r.server_compute_us:>12.0f}"
            f"{r.cpu_us_per_request:>12.1f}"
        )
    print(
        "\nin-process onnxruntime CNN, 1 thread, samples/s by batch:",
        {b: round(v) for b, v in ceiling.items()},
    )
    print(
        "  the same with the other core busy:",
        {b: round(v) for b, v in ceiling_busy.items()},
    )

    def get(server: str, model: str, protocol: str = "grpc", conc: int = c) -> Row:
        return next(
            r
            for r in rows
            if (r.server, r.model, r.protocol, r.concurrency) == (server, model, protocol, conc)
        )

    def ratio(a: Row, b: Row, attr: str = "throughput") -> float:
        return float(getattr(a, attr)) / float(getattr(b, attr))

    sonic, triton = get("sonic", "mlp"), get("triton", "mlp")
    sonic64, triton64 = get("sonic", "mlp", conc=64), get("triton", "mlp", conc=64)
    http_sonic, http_triton = get("sonic", "mlp", "http"), get("triton", "mlp", "http")
    cnn_sonic, cnn_triton, cnn2_triton = get("sonic", "cnn"), get("triton", "cnn"), get("triton-2i", "cnn")
    ratios = {
        f"mlp grpc c={c} throughput sonic/triton": ratio(sonic, triton),
        "mlp grpc c=64 throughput sonic/triton": ratio(sonic64, triton64),
        f"mlp http c={c} throughput sonic/triton": ratio(http_sonic, http_triton),
        f"mlp grpc c={c} throughput grpcio-edge/triton": ratio(get("grpcio", "mlp"), triton),
        f"mlp grpc c={c} p99 sonic/triton": ratio(sonic, triton, "p99_us"),
        "mlp grpc c=64 p99 sonic/triton": ratio(sonic64, triton64, "p99_us"),
        f"mlp grpc c={c} server CPU us/request sonic": sonic.cpu_us_per_request,
        f"mlp grpc c={c} server CPU us/request triton": triton.cpu_us_per_request,
        "cnn grpc throughput sonic(1 inst)/in-process 1-thread best": get("sonic", "cnn").throughput / best,
        "cnn grpc throughput triton(1 inst)/in-process 1-thread best": get("triton", "cnn").throughput / best,
        "cnn grpc throughput sonic(1 inst)/in-process best, other core busy": get("sonic", "cnn").throughput
        / best_busy,
        "in-process CNN best, other core busy/idle": best_busy / best,
        "cnn grpc throughput sonic(2 inst)/triton(2 inst)": ratio(get("sonic-2i", "cnn"), cnn2_triton),
        f"cnn grpc c={c} p99 sonic/triton (1 inst)": ratio(cnn_sonic, cnn_triton, "p99_us"),
    }
    print()
    for k, v in ratios.items():
        print(f"{k:<62}{v:8.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.out / f"serve_vs_triton-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "rows": [asdict(r) for r in rows],
                "inprocess_cnn": ceiling,
                "inprocess_cnn_other_core_busy": ceiling_busy,
                "ratios": ratios,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
        )
    )
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
