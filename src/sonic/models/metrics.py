"""Quality figures of the reference models, in numpy (no torch): what the reports print.

- classification: one-vs-rest ROC AUC per class, per-class accuracy (recall), overall
  accuracy, and for taggers the background rejection at a fixed signal efficiency;
- denoising: the ratio of amplitude spectral densities (ASD) after/before cleaning around the
  60 and 120 Hz lines, and the matched-filter SNR recovered on injected signals, estimated with
  the PSD of the data being filtered (as a search would).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "asd_ratio",
    "classification_report",
    "matched_filter_snr",
    "roc_auc",
]


def roc_auc(score: npt.NDArray[Any], positive: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan if one class."""
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    ranks[order] = np.arange(1, len(score) + 1)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    ranks = (sums / counts)[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_report(
    prob: npt.NDArray[Any], label: npt.NDArray[Any], classes: Sequence[str]
) -> dict[str, Any]:
    """AUC (one vs rest) and accuracy per class, overall accuracy and counts, as plain floats."""
    prob = np.asarray(prob, dtype=np.float64)
    label = np.asarray(label)
    pred = prob.argmax(axis=1)
    per: dict[str, dict[str, float]] = {}
    for k, name in enumerate(classes):
        sel = label == k
        if not sel.any():
            continue
        per[name] = {
            "n": int(sel.sum()),
            "auc": round(roc_auc(prob[:, k], sel), 4),
            "accuracy": round(float((pred[sel] == k).mean()), 4),
        }
    return {
        "n": len(label),
        "accuracy": round(float((pred == label).mean()), 4) if len(label) else float("nan"),
        "per_class": per,
    }


def _welch(
    x: npt.NDArray[np.float64], fs: float, seconds: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    from scipy.signal import welch

    nperseg = min(len(x), int(seconds * fs))
    f, p = welch(x, fs=fs, nperseg=nperseg)
    return np.asarray(f, dtype=np.float64), np.asarray(p, dtype=np.float64)


def asd_ratio(
    before: npt.NDArray[np.float64],
    after: npt.NDArray[np.float64],
    fs: float,
    frequency: float,
    half_width: float = 1.0,
    seconds: float = 4.0,
) -> float:
    """√(Σ PSD_after / Σ PSD_before) over [f − w, f + w]: < 1 means the noise went down."""
    f, pb = _welch(before, fs, seconds)
    _, pa = _welch(after, fs, seconds)
    sel = np.abs(f - frequency) <= half_width
    return float(np.sqrt(pa[sel].sum() / pb[sel].sum()))


def matched_filter_snr(
    data: npt.NDArray[np.float64],
    template: npt.NDArray[np.float64],
    fs: float,
    f_low: float = 20.0,
    psd_seconds: float = 4.0,
) -> float:
    """ρ = ⟨d, h⟩/√⟨h, h⟩ with the noise PSD estimated (Welch) from ``data`` itself.

    ``template`` is the exact injected signal, aligned with ``data`` (same length), so ρ
    estimates the SNR a search with a perfect template would recover; its expectation is the
    optimal SNR against the data's own noise. Excess noise (e.g. unremoved lines) lowers it.
    """
    n = len(data)
    f_psd, psd = _welch(data, fs, psd_seconds)
    freq = np.fft.rfftfreq(n, 1.0 / fs)
    s = np.interp(freq, f_psd, psd)
    window = np.hanning(n) ** 0.25  # gentle taper against edge leakage
    d = np.fft.rfft(data * window) / fs
    h = np.fft.rfft(template * window) / fs
    sel = (freq >= f_low) & (s > 0)
    df = fs / n
    dh = 4.0 * np.real(np.sum(d[sel] * np.conj(h[sel]) / s[sel])) * df
    hh = 4.0 * np.sum(np.abs(h[sel]) ** 2 / s[sel]) * df
    return float(dh / np.sqrt(hh)) if hh > 0 else 0.0
