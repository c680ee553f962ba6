"""Quantization-aware training for the FPGA: Brevitas → QONNX → hls4ml, bit-exact.

Where this sits: post-training quantization (:mod:`sonic.fpga.scan`) rounds a float model and
loses agreement below ~12 bits; quantization-aware training (QAT) trains the model *with* its
fixed-point rounding, so a 6-bit-weight, 8-bit-activation design keeps its accuracy. This
module is the tested path:

1. :func:`build_mlp` — the jet-tagger MLP (16→64→32→32→5) in Brevitas with power-of-two
   scales everywhere (``*FixedPoint`` quantizers: weights, activations, an ``Int16Bias``
   bias), so every tensor is exactly an ``ap_fixed`` value;
2. :func:`train` — a short training (a minute or less on two CPU cores);
3. :func:`export_qonnx` — Brevitas' QONNX export (``Quant`` nodes carry scale and bit width);
4. :func:`convert_qat` — hls4ml reads the QONNX model with the ``auto`` policy (types from the
   quantizers) and the input type from the first ``Quant`` node (:func:`input_type`), so the
   float → fixed conversion of the input rounds exactly as Brevitas does;
5. :func:`bit_exactness` — the emulation against the Brevitas model in PyTorch, sample by sample.

The model's output is the quantized logits (the softmax runs on the CPU after the trigger
decision, or is replaced by argmax): hls4ml's softmax is a table approximation and could never
be bit-exact with torch's. The data are a synthetic stand-in for the hls4ml jet data set
(:func:`synthetic_jets`: 16 features, 5 classes), enough to train and to measure bit-exactness;
the physics data set is not needed for that.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.fpga import _deps
from sonic.fpga.convert import ConversionConfig, ConvertedModel, convert
from sonic.fpga.types import FixedType

__all__ = [
    "QatModel",
    "bit_exactness",
    "build_mlp",
    "convert_qat",
    "export_qonnx",
    "input_type",
    "synthetic_jets",
    "train",
    "train_jet_tagger",
]

Array = npt.NDArray[Any]
LAYERS = (16, 64, 32, 32, 5)


def synthetic_jets(n: int, seed: int = 0) -> tuple[Array, Array]:
    """``n`` samples of 16 standardised features in 5 overlapping classes (not physics).

    Class centres are fixed (seed 1234); each sample is its centre plus unit Gaussian noise, so
    the classes overlap: the QAT MLP reaches ~90% held-out accuracy, not 100%.
    """
    centres = np.random.default_rng(1234).normal(0.0, 0.6, (LAYERS[-1], LAYERS[0]))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, LAYERS[-1], n)
    x = centres[y] + rng.normal(0.0, 1.0, (n, LAYERS[0]))
    return x.astype(np.float32), y.astype(np.int64)


def _brevitas() -> tuple[Any, Any]:
    _deps.need("torch", "quantization-aware training", "pip install torch")
    qnn = _deps.need(
        "brevitas.nn", "quantization-aware training with Brevitas", "pip install 'sonic[fpga]' brevitas"
    )
    quant = _deps.need("brevitas.quant", "quantization-aware training with Brevitas")
    return qnn, quant


def build_mlp(weight_bits: int = 6, act_bits: int = 8, layers: tuple[int, ...] = LAYERS) -> Any:
    """The MLP in Brevitas, every quantizer a power-of-two (fixed-point) one."""
    import torch

    qnn, quant = _brevitas()
    mods: list[Any] = [
        qnn.QuantIdentity(
            act_quant=quant.Int8ActPerTensorFixedPoint, bit_width=act_bits, return_quant_tensor=True
        )
    ]
    last = len(layers) - 2
    for i in range(len(layers) - 1):
        mods.append(
            qnn.QuantLinear(
                layers[i],
                layers[i + 1],
                bias=True,
                weight_quant=quant.Int8WeightPerTensorFixedPoint,
                weight_bit_width=weight_bits,
                bias_quant=quant.Int16Bias,
                return_quant_tensor=True,
            )
        )
        if i < last:
            mods.append(
                qnn.QuantReLU(
                    act_quant=quant.Uint8ActPerTensorFixedPoint, bit_width=act_bits, return_quant_tensor=True
                )
            )
    mods.append(
        qnn.QuantIdentity(
            act_quant=quant.Int8ActPerTensorFixedPoint, bit_width=act_bits, return_quant_tensor=False
        )
    )
    return torch.nn.Sequential(*mods)


def train(
    model: Any, x: Array, y: Array, *, epochs: int = 6, batch: int = 256, lr: float = 3e-3, seed: int = 0
) -> float:
    """Adam on cross-entropy; returns the seconds it took. One torch thread (shared machines)."""
    import torch

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * math.ceil(len(x) / batch))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), batch):
                idx = perm[i : i + batch]
                opt.zero_grad()
                loss: Any = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - t0


def predict(model: Any, x: Array) -> Array:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return np.asarray(out.detach().numpy())


def export_qonnx(model: Any, path: Path, n_features: int = LAYERS[0]) -> Path:
    """Brevitas' QONNX export (TorchScript exporter: no dynamo logging, same graph)."""
    import torch

    export = _deps.need("brevitas.export", "exporting QONNX from Brevitas")
    _deps.need("onnxoptimizer", "Brevitas' ONNX export", "pip install onnxoptimizer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with _deps.quiet():
        export.export_qonnx(model, torch.zeros(1, n_features), export_path=str(path), dynamo=False)
    return path


def input_type(onnx_model: Any) -> FixedType | None:
    """The ap_fixed type of the first ``Quant`` node reading the graph input, if its scale is 2^k.

    Setting the design's input type to it makes the float → fixed conversion at the input round
    once, as Brevitas does (hls4ml's default input type would truncate first, then round:
    double rounding, off by one LSB on some samples).
    """
    from onnx import numpy_helper

    graph = onnx_model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(a.t)
        for n in graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    values = inits | consts
    start = graph.input[0].name
    for node in graph.node:
        if node.op_type != "Quant" or not node.input or node.input[0] != start:
            continue
        scale, zero, bits = (values.get(node.input[k]) for k in (1, 2, 3))
        if (
            scale is None
            or zero is None
            or bits is None
            or np.size(scale) != 1
            or float(np.asarray(zero).max()) != 0.0
        ):
            return None
        exponent = math.log2(float(np.asarray(scale).reshape(-1)[0]))
        if exponent != round(exponent):
            return None
        attrs = {a.name: a for a in node.attribute}
        signed = bool(attrs["signed"].i) if "signed" in attrs else True
        narrow = bool(attrs["narrow"].i) if "narrow" in attrs else False
        rounding = attrs["rounding_mode"].s.decode() if "rounding_mode" in attrs else "ROUND"
        width = int(float(np.asarray(bits).reshape(-1)[0]))
        return FixedType(
            width,
            width + round(exponent),  # int * 2**e in w bits: I = w + e (the sign bit included)
            signed,
            "RND_CONV" if rounding.upper() == "ROUND" else "TRN",
            "SAT_SYM" if narrow else "SAT",
        )
    return None


@dataclass
class QatModel:
    """A trained Brevitas model and its QONNX export."""

    model: Any
    qonnx_path: Path
    train_s: float
    accuracy: float  # on held-out synthetic data
    weight_bits: int
    act_bits: int


def train_jet_tagger(
    out_dir: Path,
    *,
    weight_bits: int = 6,
    act_bits: int = 8,
    samples: int = 20000,
    epochs: int = 6,
    seed: int = 0,
) -> QatModel:
    """Train the Brevitas MLP on :func:`synthetic_jets` and export it to ``out_dir/qat.onnx``."""
    x, y = synthetic_jets(samples, seed)
    xt, yt = synthetic_jets(5000, seed + 1)
    model = build_mlp(weight_bits, act_bits)
    seconds = train(model, x, y, epochs=epochs, seed=seed)
    acc = float(np.mean(predict(model, xt).argmax(1) == yt))
    path = export_qonnx(model, Path(out_dir) / "qat.onnx")
    return QatModel(model, path, seconds, acc, weight_bits, act_bits)


def convert_qat(
    qat: QatModel | Path, out_dir: Path, config: ConversionConfig | None = None
) -> ConvertedModel:
    """hls4ml conversion of the QONNX export: policy ``auto``, input type from the first Quant."""
    onnx = _deps.need("onnx", "a QONNX model")
    path = qat.qonnx_path if isinstance(qat, QatModel) else Path(qat)
    proto = onnx.load(str(path))
    base = config or ConversionConfig()
    typ = input_type(proto)
    cfg = ConversionConfig(
        **{**base.to_json(), "policy": "auto", "input_precision": typ.hls if typ else None}
    )
    return convert(proto, out_dir, cfg)


def bit_exactness(qat: QatModel, converted: ConvertedModel, x: Array) -> dict[str, float]:
    """Emulation vs the Brevitas model in PyTorch: fraction of samples identical in every output."""
    ref = predict(qat.model, x)
    fixed = converted.predict(x).reshape(ref.shape)
    same = np.all(fixed == ref, axis=1)
    return {
        "samples": float(len(x)),
        "bit_exact_fraction": float(same.mean()),
        "max_abs_diff": float(np.abs(fixed - ref).max()),
        "argmax_agreement": float(np.mean(fixed.argmax(1) == ref.argmax(1))),
    }
