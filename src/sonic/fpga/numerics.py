"""How a fixed-point design compares with its float model: metrics and the tolerance a type implies.

Where this sits: the scan (:mod:`sonic.fpga.scan`), the tests and the benchmarks compare the
emulation with the float reference through these functions, so "agreement" means one thing
everywhere.

The tolerance a precision implies (:func:`logit_tolerance`): in hls4ml's uniform setting every
product of a dense layer is truncated to the precision (one LSB ``q`` of error each, biased the
same way), and so is the bias and the result; a layer with ``n_in`` inputs therefore adds up to
``(n_in + 1) q``, and with weights of order one the errors of earlier layers pass through
roughly unchanged. The bound used is twice the sum over the dense layers, ``2 q Σ (n_in + 1)``,
on the pre-softmax outputs (the logits). For the jet-tagger MLP at ap_fixed<16,6> that is
0.29; measured errors are about half of it. A sample's class must then agree whenever its
float logit margin (top-1 minus top-2) exceeds twice the tolerance. The softmax output itself is
further coarsened by hls4ml's lookup tables (an 18-bit inverse table indexed by 10 bits), which
is why it is not the quantity the tolerance is stated for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.fpga.types import FixedType

__all__ = ["Agreement", "agreement", "logit_tolerance", "margin"]

Array = npt.NDArray[Any]
_DENSE = ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")


@dataclass(frozen=True, slots=True)
class Agreement:
    """Fixed point vs float on one batch."""

    samples: int
    argmax_agreement: float  # fraction of samples whose top class is the same
    max_abs_error: float
    mean_abs_error: float
    accuracy_fixed: float | None = None  # against labels, when given
    accuracy_float: float | None = None
    constant_output: bool = False  # every sample gave the same output (a broken design)
    nonfinite: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def agreement(fixed: Array, ref: Array, labels: Array | None = None) -> Agreement:
    """Compare emulation outputs ``fixed`` with float outputs ``ref`` (batch first)."""
    f = np.asarray(fixed, dtype=np.float64).reshape(len(fixed), -1)
    r = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    finite = np.isfinite(f)
    err = np.abs(np.where(finite, f, 0.0) - r)
    varies_ref = bool(np.ptp(r, axis=0).max() > 0) if len(r) > 1 else False
    constant = len(f) > 1 and varies_ref and bool(np.ptp(f, axis=0).max() == 0)
    acc_fixed = acc_float = None
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        acc_fixed = float(np.mean(f.argmax(1) == lab))
        acc_float = float(np.mean(r.argmax(1) == lab))
    return Agreement(
        samples=len(f),
        argmax_agreement=float(np.mean(f.argmax(1) == r.argmax(1))) if f.shape[1] > 1 else float("nan"),
        max_abs_error=float(err.max()) if err.size else 0.0,
        mean_abs_error=float(err.mean()) if err.size else 0.0,
        accuracy_fixed=acc_fixed,
        accuracy_float=acc_float,
        constant_output=constant,
        nonfinite=int((~finite).sum()),
    )


def logit_tolerance(layers: list[dict[str, Any]], precision: FixedType) -> float:
    """The bound ``2 q Σ (n_in + 1)`` on pre-softmax errors (see the module docstring).

    ``layers`` are the per-layer summaries in ``sonic_fpga.json`` (``info["layers"]``).
    """
    total = sum(int(la.get("n_in", 0)) + 1 for la in layers if la.get("class") in _DENSE)
    return 2.0 * precision.lsb * total


def margin(logits: Array) -> Array:
    """Top-1 minus top-2 value per sample: how far a sample is from changing class."""
    s = np.sort(np.asarray(logits, dtype=np.float64).reshape(len(logits), -1), axis=1)
    result: Array = s[:, -1] - s[:, -2]
    return result
