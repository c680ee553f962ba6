"""The FPGA path: hls4ml conversion, fixed-point emulation, and FPGA-as-a-service.

Where this sits: a trigger developer's model (ONNX, PyTorch, Keras, or quantization-aware
Brevitas → QONNX) becomes an hls4ml HLS project plus its compiled bit-accurate C simulation
(:func:`convert`), is checked against the float model across precisions (:func:`scan`), and is
laid out as a Triton model-repository entry with ``backend: "hls4ml"``
(:func:`write_model_entry`) that ``sonic serve`` loads (:mod:`sonic.backends.hls4ml`) and serves
with the same batching, metrics and protocol as any model. Serving needs only the project
directory and g++ (:mod:`sonic.fpga.emulation`); converting needs ``pip install 'sonic[fpga]'``.

Modules: :mod:`~sonic.fpga.types` (fixed-point types), :mod:`~sonic.fpga.source` (the float
model and its reference), :mod:`~sonic.fpga.convert`, :mod:`~sonic.fpga.emulation`,
:mod:`~sonic.fpga.repository`, :mod:`~sonic.fpga.scan`, :mod:`~sonic.fpga.estimate`,
:mod:`~sonic.fpga.device` (emulation and the XRT device path), :mod:`~sonic.fpga.qat`,
:mod:`~sonic.fpga.cli`. Heavy imports are lazy: importing this package imports none of hls4ml,
qonnx, torch or keras.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConversionConfig",
    "ConvertedModel",
    "EmulationLibrary",
    "Estimate",
    "FixedType",
    "ScanResult",
    "convert",
    "load_model",
    "parse_fixed",
    "project_estimate",
    "scan",
    "write_model_entry",
]

_WHERE = {
    "ConversionConfig": "sonic.fpga.convert",
    "ConvertedModel": "sonic.fpga.convert",
    "convert": "sonic.fpga.convert",
    "EmulationLibrary": "sonic.fpga.emulation",
    "Estimate": "sonic.fpga.estimate",
    "project_estimate": "sonic.fpga.estimate",
    "FixedType": "sonic.fpga.types",
    "parse_fixed": "sonic.fpga.types",
    "load_model": "sonic.fpga.source",
    "ScanResult": "sonic.fpga.scan",
    "scan": "sonic.fpga.scan",
    "write_model_entry": "sonic.fpga.repository",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sonic.fpga' has no attribute {name!r}")
