"""The FPGA path, measured: conversion, numerics per precision, QAT, emulation served vs in-process.

    .venv/bin/python benchmarks/fpga_emulation.py [--quick] [--seconds 3]

Model: the jet-tagger MLP of sonic.zoo (16→64→32→32→5, ONNX, seeded random weights) and, for
QAT, the same shape trained with Brevitas on synthetic data (sonic.fpga.qat). Needs
``pip install 'sonic[fpga]'`` and g++. Sections:

1. conversion + C-simulation compile time per hls4ml backend (Vitis, Vivado, Catapult, Quartus);
2. agreement with the float model for ap_fixed<18,8>, <16,6>, <12,5>, <10,4>, <8,3> (argmax
   agreement, max error, worst layer, flags) on 2000 standard-normal inputs, plus the
   known-bad configuration (auto types without the softmax guard) as a control;
3. QAT: Brevitas → QONNX → hls4ml bit-exactness;
4. throughput of the emulation in-process (sonic's ctypes loader, hls4ml's predict) and served by
   ``sonic serve`` (gRPC, closed loop), next to the float ONNX model served the same way;
5. the target regime: the hls4ml jet tagger runs in ~100 ns on a Xilinx FPGA (Duarte et al.,
   JINST 13 (2018) P07027); the pre-synthesis estimate is printed beside it.

The emulation is bit-accurate, not fast: a C simulation of arbitrary-precision arithmetic costs
tens of µs per sample on a CPU, where the FPGA takes ~100 ns. Serving it is for testing a
workflow against the exact numbers the trigger will produce, not for throughput.

Prints tables; writes benchmarks/results/fpga_emulation.json and fpga_scan.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

from sonic import zoo  # noqa: E402
from sonic.backends import base  # noqa: E402
from sonic.bench.load import run_load, table  # noqa: E402
from sonic.fpga import qat  # noqa: E402
from sonic.fpga.convert import BACKENDS, ConversionConfig, convert  # noqa: E402
from sonic.fpga.repository import PROJECT_DIR, write_model_entry  # noqa: E402
from sonic.fpga.scan import DEFAULT_PRECISIONS, scan  # noqa: E402
from sonic.server.process import ServerProcess  # noqa: E402

REFERENCE = (
    "hls4ml jet tagger (16-64-32-32-5, ap_fixed<16,6>): ~100 ns latency on a Xilinx FPGA (Duarte et al. 2018)"
)


def _time(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def section_backends(tmp: Path, backends: list[str]) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        conv = convert("zoo:mlp", tmp / f"backend-{backend}", ConversionConfig(backend=backend))
        x = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
        agree = float(np.mean(conv.predict(x).argmax(1) == conv.source.predict(x).argmax(1)))
        rows.append(
            {"backend": backend, "convert_s": conv.convert_s, "compile_s": conv.compile_s, "agreement": agree}
        )
        conv.emulation().close()
    print("1. conversion + compile, jet-tagger MLP at ap_fixed<16,6> (seconds, 2 shared cores)")
    print(f"   {'backend':<10} {'convert':>8} {'compile':>8} {'argmax agreement':>17}")
    for r in rows:
        print(f"   {r['backend']:<10} {r['convert_s']:>8.2f} {r['compile_s']:>8.2f} {r['agreement']:>17.1%}")
    return rows


def section_scan(tmp: Path) -> dict[str, Any]:
    x = np.random.default_rng(1).standard_normal((2000, 16)).astype(np.float32)
    pitfall = ConversionConfig(policy="auto", softmax_guard=False)
    result = scan(
        "zoo:mlp",
        tmp / "scan",
        precisions=DEFAULT_PRECISIONS,
        x=x,
        extra=[("auto, no guard (control)", pitfall)],
    )
    print("\n2. " + result.table().replace("\n", "\n   "))
    RESULTS.mkdir(parents=True, exist_ok=True)
    result.plot(RESULTS / "fpga_scan.png")
    return result.to_json()


def section_qat(tmp: Path) -> dict[str, Any]:
    trained = qat.train_jet_tagger(tmp / "qat")
    conv = qat.convert_qat(trained, tmp / "qat-prj")
    x, _ = qat.synthetic_jets(5000, seed=11)
    exact = qat.bit_exactness(trained, conv, x)
    print(
        f"\n3. QAT (Brevitas 6-bit weights / 8-bit activations → QONNX → hls4ml): trained in "
        f"{trained.train_s:.1f} s, accuracy {trained.accuracy:.1%}; bit-exact on "
        f"{exact['bit_exact_fraction']:.2%} of {int(exact['samples'])} samples "
        f"(max |diff| {exact['max_abs_diff']:g}); estimate {conv.estimate.dsp} DSP, "
        f"{conv.estimate.latency_ns:.0f} ns"
    )
    return {
        "train_s": trained.train_s,
        "accuracy": trained.accuracy,
        **exact,
        "estimate": conv.estimate.to_json(),
    }


def _serve(repo: Path) -> ServerProcess:
    server = ServerProcess(repo)
    if "hls4ml" not in base._LAZY:  # until sonic.backends.base names the backend itself
        server.args[1:3] = [
            "-c",
            "import sys; from sonic.backends.base import add_lazy_backend; "
            "add_lazy_backend('hls4ml', 'sonic.backends.hls4ml'); "
            "from sonic.cli import main; sys.exit(main(sys.argv[1:]))",
        ]
    return server


def section_throughput(tmp: Path, seconds: float) -> dict[str, Any]:
    repo = tmp / "repo"
    zoo.write_sonic_repository(repo, ["mlp"], instances=2, intra_op_threads=1)
    conv = convert("zoo:mlp", repo / "mlp_fpga" / "1" / PROJECT_DIR, ConversionConfig())
    write_model_entry(conv.project_dir, repo / "mlp_fpga", instances=2)
    x1 = np.random.default_rng(2).standard_normal((1, 16)).astype(np.float32)
    x64 = np.random.default_rng(3).standard_normal((64, 16)).astype(np.float32)
    emu = conv.emulation()
    n = 2000
    t1 = _time(lambda: [emu.predict(x1) for _ in range(n)], 3) / n
    t64 = _time(lambda: emu.predict(x64), 20) / 64
    th = _time(lambda: conv.hls4ml_predict(x64), 10) / 64
    inproc = {
        "sonic_ctypes_batch1_us": t1 * 1e6,
        "sonic_ctypes_batch64_us_per_sample": t64 * 1e6,
        "hls4ml_predict_batch64_us_per_sample": th * 1e6,
    }
    print("\n4. emulation throughput")
    print(
        f"   in-process, sonic's ctypes loader: {1 / t1:,.0f} samples/s at batch 1, "
        f"{1 / t64:,.0f} at batch 64 ({t64 * 1e6:.1f} µs per sample)"
    )
    print(f"   in-process, hls4ml predict:        {1 / th:,.0f} samples/s at batch 64")
    results = []
    with _serve(repo) as server:
        for model in ("mlp_fpga", "mlp"):
            for conc, batch in ((1, 1), (8, 1), (8, 16)):
                results.append(
                    asyncio.run(
                        run_load(
                            server.grpc_url,
                            model,
                            protocol="grpc",
                            concurrency=conc,
                            batch=batch,
                            seconds=seconds,
                        )
                    )
                )
    print("   served by sonic serve (gRPC, 2 instances, closed loop):")
    print("   " + table(results).replace("\n", "\n   "))
    return {
        "in_process": inproc,
        "served": [
            {
                "model": r.model,
                "concurrency": r.concurrency,
                "batch": r.batch,
                "infer_per_s": r.throughput,
                "p50_us": r.percentile(50),
                "p99_us": r.percentile(99),
                "compute_us": r.server_compute_us,
            }
            for r in results
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="Vitis only, shorter load")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    out: dict[str, Any] = {"reference": REFERENCE}
    with tempfile.TemporaryDirectory(prefix="sonic-fpga-bench-") as tmpdir:
        tmp = Path(tmpdir)
        out["backends"] = section_backends(tmp, ["Vitis"] if args.quick else list(BACKENDS))
        out["scan"] = section_scan(tmp)
        out["qat"] = section_qat(tmp)
        out["throughput"] = section_throughput(tmp, 1.0 if args.quick else args.seconds)
        est = next(p for p in out["scan"]["points"] if p["label"] == "ap_fixed<16,6>")["estimate"]
    print(
        f"\n5. target regime: {REFERENCE}; sonic's pre-synthesis ESTIMATE for the same design: "
        f"{est['latency_ns']:.0f} ns, {est['dsp']} DSP (not a synthesis result)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fpga_emulation.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"\nwrote {RESULTS / 'fpga_emulation.json'} and {RESULTS / 'fpga_scan.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
