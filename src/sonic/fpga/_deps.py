"""Optional heavy dependencies of :mod:`sonic.fpga`, imported on first use with install hints.

hls4ml, qonnx, torch, keras and brevitas are large and only needed by the tools that convert,
scan or train; serving a converted design needs none of them (see :mod:`sonic.fpga.emulation`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

from sonic.protocol.errors import Unavailable

_HINT = "pip install 'sonic[fpga]'"


#: Warnings some packages issue while being imported, understood and harmless.
_IMPORT_WARNINGS = (
    # Brevitas deprecates its own fork of torch.fx, which its export path still imports.
    r"brevitas\.fx is deprecated",
    # Brevitas' optional fused Hadamard kernel (not used by the quantizers sonic uses).
    r"fast_hadamard_transform package not found",
)


def need(module: str, what: str, hint: str = _HINT) -> Any:
    """Import ``module`` or raise :class:`Unavailable` naming what needed it and how to install it."""
    try:
        with warnings.catch_warnings():
            for pattern in _IMPORT_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(
            f"{what} needs the Python package '{module.split('.', maxsplit=1)[0]}' ({exc}); {hint}"
        ) from None


def hls4ml() -> Any:
    return need("hls4ml", "converting a model to an FPGA design")


def keras() -> Any:
    """Keras 3 on the torch backend unless the caller chose another (KERAS_BACKEND)."""
    if "keras" not in importlib.sys.modules:  # type: ignore[attr-defined]
        with contextlib.suppress(ImportError):
            importlib.import_module("torch")
            os.environ.setdefault("KERAS_BACKEND", "torch")
    return need("keras", "a Keras model", "pip install 'sonic[fpga]' keras")


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Collect what hls4ml and qonnx print (layer lists, progress) instead of flooding stdout.

    The text is kept (``ConvertedModel.log``) for when a conversion needs explaining.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


#: Warnings of the conversion tool chain that are understood and harmless (see known_warnings).
_BENIGN = (
    # qonnx's GemmToMatMul supports "Gemm version 9"; the semantics it maps (alpha, beta, transA,
    # transB, 2-D operands) are unchanged up to the latest opset, which only made the bias optional,
    # and every conversion is checked numerically against the float model.
    r"The GemmToMatMul transformation only offers explicit support",
    # hls4ml announces that sonic's config sets a layer attribute the converter also derived
    # (the softmax table index type set by the softmax guard): that is the intent.
    r"Overriding attribute '\w+_t' of layer",
)
#: Warnings that change the design: kept as notes of the conversion.
_NOTED = (r"Softmax layer \S+ table size is too large",)


@contextlib.contextmanager
def known_warnings(notes: list[str] | None = None) -> Iterator[None]:
    """Drop the understood, harmless warnings of qonnx/hls4ml; turn design changes into notes.

    Anything else is re-issued unchanged after the block, so it is not hidden.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if any(re.search(p, text) for p in _BENIGN):
            continue
        if any(re.search(p, text) for p in _NOTED):
            if notes is not None and text not in notes:
                notes.append(" ".join(text.split()))
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
