"""The same jet-tagging step on the float model and on its FPGA design, by model name only.

    .venv/bin/python examples/fpga/portability.py [--precision 'ap_fixed<16,6>'] [--events 2000]

Builds one model repository holding the float jet-tagger MLP ("mlp", onnxruntime) and its
hls4ml design ("mlp_fpga", backend hls4ml: the bit-accurate emulation of what the FPGA
computes), serves both with `sonic serve`, and runs the same tagging function over the same
events twice, changing only the model name. Prints how often the two agree on the jet class and
how far the probabilities differ: what a trigger study needs to know before the design goes to
hardware. Needs `pip install 'sonic[fpga]'` and g++.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from sonic import zoo
from sonic.backends import base
from sonic.fpga.convert import ConversionConfig, convert
from sonic.fpga.numerics import agreement
from sonic.fpga.repository import PROJECT_DIR, write_model_entry
from sonic.server.process import ServerProcess

CLASSES = ("g", "q", "W", "Z", "t")


def tag_jets(
    client: grpcclient.InferenceServerClient, model: str, features: np.ndarray, batch: int = 50
) -> np.ndarray:
    """The workflow step: class probabilities for each jet; `model` is the only knob."""
    out = []
    for i in range(0, len(features), batch):
        chunk = np.ascontiguousarray(features[i : i + batch])
        inp = grpcclient.InferInput("input", list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk)
        out.append(client.infer(model, [inp]).as_numpy("output"))
    return np.concatenate(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="ap_fixed<16,6>")
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sonic-fpga-example-") as tmp:
        repo = zoo.write_sonic_repository(Path(tmp) / "models", ["mlp"])
        design = convert(
            "zoo:mlp", repo / "mlp_fpga" / "1" / PROJECT_DIR, ConversionConfig(precision=args.precision)
        )
        write_model_entry(design.project_dir, repo / "mlp_fpga")
        print(f"repository {repo}: mlp (float ONNX) and mlp_fpga ({args.precision}, Vitis design)")
        server = ServerProcess(repo)
        if "hls4ml" not in base._LAZY:  # until sonic.backends.base names the backend itself
            server.args[1:3] = [
                "-c",
                "import sys; from sonic.backends.base import add_lazy_backend; "
                "add_lazy_backend('hls4ml', 'sonic.backends.hls4ml'); "
                "from sonic.cli import main; sys.exit(main(sys.argv[1:]))",
            ]
        features = np.random.default_rng(0).standard_normal((args.events, 16)).astype(np.float32)
        with server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            on_cpu = tag_jets(client, "mlp", features)
            on_fpga = tag_jets(client, "mlp_fpga", features)
            client.close()
    a = agreement(on_fpga, on_cpu)
    print(
        f"{args.events} jets: same class on {a.argmax_agreement:.1%}; probabilities differ by at most "
        f"{a.max_abs_error:.3f} (mean {a.mean_abs_error:.4f})"
    )
    for k, name in enumerate(CLASSES):
        share_cpu, share_fpga = np.mean(on_cpu.argmax(1) == k), np.mean(on_fpga.argmax(1) == k)
        print(f"  {name}: float {share_cpu:6.1%}   fpga {share_fpga:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
