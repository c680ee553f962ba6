"""Quantization-aware training → QONNX → hls4ml, bit-exact (sonic.fpga.qat).

Trains the Brevitas jet-tagger MLP (6-bit weights, 8-bit activations, power-of-two scales) on
synthetic data for a few seconds, exports QONNX, converts it with hls4ml and checks that the
emulation equals the Brevitas model in PyTorch on every sample, bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hls4ml", reason="the FPGA path needs hls4ml: pip install 'sonic[fpga]'")
pytest.importorskip("torch", reason="QAT needs torch")
pytest.importorskip("onnxoptimizer", reason="Brevitas' ONNX export needs onnxoptimizer")
if shutil.which("g++") is None:  # pragma: no cover - depends on the machine
    pytest.skip("the hls4ml C simulation is compiled with g++", allow_module_level=True)

from sonic.fpga import _deps

_deps.need("brevitas.nn", "the QAT tests")  # imports Brevitas with its known import warnings handled

from sonic.fpga import qat  # noqa: E402
from sonic.fpga.types import FixedType  # noqa: E402


def test_brevitas_qonnx_hls4ml_is_bit_exact(tmp_path: Path) -> None:
    trained = qat.train_jet_tagger(tmp_path, samples=12000, epochs=4)
    assert trained.accuracy > 0.7  # learned something on the synthetic classes

    import onnx

    proto = onnx.load(str(trained.qonnx_path))
    assert any(n.op_type == "Quant" for n in proto.graph.node)  # QONNX, not float ONNX
    typ = qat.input_type(proto)
    assert typ is not None and typ.width == 8 and typ.rounding == "RND_CONV" and typ.saturation == "SAT"

    conv = qat.convert_qat(trained, tmp_path / "prj")
    assert conv.config.policy == "auto" and conv.config.input_precision == typ.hls
    x, _ = qat.synthetic_jets(2000, seed=5)
    exact = qat.bit_exactness(trained, conv, x)
    assert exact["bit_exact_fraction"] == 1.0, exact
    assert exact["max_abs_diff"] == 0.0
    # narrow types: no multiplier needs a DSP (6-bit weights x 8-bit activations go to LUTs)
    assert conv.estimate.dsp == 0 and conv.estimate.multipliers > 0


def test_input_type_reads_power_of_two_scales_only() -> None:
    from onnx import TensorProto, helper, numpy_helper

    def graph(scale: float) -> object:
        inits = [
            numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(0.0, np.float32), "z"),
            numpy_helper.from_array(np.array(6.0, np.float32), "b"),
        ]
        node = helper.make_node(
            "Quant", ["x", "s", "z", "b"], ["y"], signed=0, narrow=0, rounding_mode="ROUND"
        )
        g = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
            inits,
        )
        return helper.make_model(g)

    assert qat.input_type(graph(0.25)) == FixedType(6, 4, False, "RND_CONV", "SAT")
    assert qat.input_type(graph(0.3)) is None
