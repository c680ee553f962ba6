"""Precision sweep: how each fixed-point configuration compares with the float model.

Where this sits: ``sonic fpga scan`` and the benchmarks call :func:`scan`. For each
configuration it converts and compiles the design with per-layer tracing, runs the samples
through the emulation and the float model, and records

- argmax agreement, max/mean absolute error, and accuracy when labels are given;
- per-layer errors (traced layer outputs against the float model's, matched by tensor name),
  and the worst layer: the largest error relative to the layer's float range;
- flags: ``constant-output`` (every sample gives the same answer: the softmax pitfall's
  signature), ``softmax-table`` (the static check of :func:`sonic.fpga.convert.softmax_problems`),
  ``overflow`` (a layer's float values leave its type's range, so the design wraps or
  saturates), ``nonfinite``, ``low-agreement``;
- the pre-synthesis estimate (DSPs, latency) of each design.

A configuration is ``broken`` (constant output, non-finite values, a useless softmax table, or
agreement below 50%), ``degraded`` (overflow, or agreement below the threshold) or ``ok``.
:meth:`ScanResult.table` prints the summary and the worst configuration's per-layer trace;
:meth:`ScanResult.plot` draws agreement and error per configuration and that trace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.fpga.convert import ConversionConfig, convert, softmax_problems
from sonic.fpga.numerics import Agreement, agreement
from sonic.fpga.source import SourceModel, load_model
from sonic.fpga.types import parse_fixed
from sonic.protocol.errors import InvalidArgument

__all__ = ["DEFAULT_PRECISIONS", "LayerError", "ScanPoint", "ScanResult", "scan"]

#: The sweep of the issue: from generous to aggressive.
DEFAULT_PRECISIONS = ("ap_fixed<18,8>", "ap_fixed<16,6>", "ap_fixed<12,5>", "ap_fixed<10,4>", "ap_fixed<8,3>")
BROKEN_AGREEMENT = 0.5

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class LayerError:
    layer: str
    type: str
    max_abs_error: float
    relative_error: float  # max abs error / max |float value|
    float_min: float
    float_max: float
    overflow: bool


@dataclass
class ScanPoint:
    label: str
    config: ConversionConfig
    agreement: Agreement
    layers: list[LayerError]
    flags: list[str]
    status: str  # ok | degraded | broken
    messages: list[str]
    compile_s: float
    dsp: int
    latency_ns: float

    @property
    def worst_layer(self) -> LayerError | None:
        return max(self.layers, key=lambda la: la.relative_error) if self.layers else None

    def to_json(self) -> dict[str, Any]:
        worst = self.worst_layer
        return {
            "label": self.label,
            "config": self.config.to_json(),
            "agreement": self.agreement.to_json(),
            "flags": self.flags,
            "status": self.status,
            "messages": self.messages,
            "compile_s": round(self.compile_s, 3),
            "estimate": {"dsp": self.dsp, "latency_ns": self.latency_ns, "source": "estimate"},
            "worst_layer": None if worst is None else worst.layer,
            "layers": [vars_of(la) for la in self.layers],
        }


def vars_of(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


@dataclass
class ScanResult:
    points: list[ScanPoint] = field(default_factory=list)
    samples: int = 0
    model: str = ""

    def point(self, label: str) -> ScanPoint:
        for p in self.points:
            if p.label == label:
                return p
        raise KeyError(label)

    @property
    def broken(self) -> list[ScanPoint]:
        return [p for p in self.points if p.status == "broken"]

    @property
    def worst(self) -> ScanPoint | None:
        if not self.points:
            return None
        return min(self.points, key=lambda p: (p.agreement.argmax_agreement, -p.agreement.max_abs_error))

    def table(self) -> str:
        acc = any(p.agreement.accuracy_fixed is not None for p in self.points)
        head = f"{'configuration':<28} {'status':<9} {'agree':>7} {'max err':>8} {'mean err':>9}"
        head += f" {'acc fx':>7} {'acc fl':>7}" if acc else ""
        head += f" {'DSP*':>6} {'lat ns*':>7}  worst layer / flags"
        lines = [f"precision scan of {self.model} on {self.samples} samples", head]
        for p in self.points:
            a = p.agreement
            row = f"{p.label:<28} {p.status:<9} {a.argmax_agreement:>7.1%} {a.max_abs_error:>8.4f}"
            row += f" {a.mean_abs_error:>9.5f}"
            if acc:
                row += f" {a.accuracy_fixed or 0:>7.1%} {a.accuracy_float or 0:>7.1%}"
            worst = p.worst_layer
            row += f" {p.dsp:>6} {p.latency_ns:>7.0f}  {worst.layer if worst else '-'}"
            row += f" [{', '.join(p.flags)}]" if p.flags else ""
            lines.append(row)
        lines.append("* DSP and latency are pre-synthesis ESTIMATES (sonic.fpga.estimate)")
        worst_point = self.worst
        if worst_point is not None and worst_point.layers:
            lines += ["", f"per-layer trace of the worst configuration, {worst_point.label}:"]
            lines.append(f"  {'layer':<22} {'type':<30} {'max err':>9} {'rel err':>8} {'float range':>20}")
            for la in worst_point.layers:
                mark = "  <- worst" if la is worst_point.worst_layer else ""
                mark += "  OVERFLOW" if la.overflow else ""
                rng = f"[{la.float_min:.3g}, {la.float_max:.3g}]"
                lines.append(
                    f"  {la.layer:<22} {la.type:<30} {la.max_abs_error:>9.4f} {la.relative_error:>8.3f} "
                    f"{rng:>20}{mark}"
                )
        for p in self.points:
            lines += [f"{p.label}: {m}" for m in p.messages]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "samples": self.samples, "points": [p.to_json() for p in self.points]}

    def plot(self, path: Path) -> Path:
        """Agreement and max error per configuration; per-layer error of the worst one (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(12, 4.5))
        labels = [p.label for p in self.points]
        xs = np.arange(len(labels))
        colors = [
            "tab:red" if p.status == "broken" else "tab:orange" if p.status == "degraded" else "tab:blue"
            for p in self.points
        ]
        ax1.bar(xs, [100 * p.agreement.argmax_agreement for p in self.points], color=colors)
        ax1.set_ylabel("argmax agreement with float (%)")
        ax1.set_ylim(0, 105)
        ax1.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        ax2 = ax1.twinx()
        ax2.plot(xs, [max(p.agreement.max_abs_error, 1e-6) for p in self.points], "k.-", label="max |error|")
        ax2.set_yscale("log")
        ax2.set_ylabel("max |fixed - float|")
        ax2.legend(loc="upper right", fontsize=8)
        ax1.set_title("precision scan (red: broken, orange: degraded)")
        worst = self.worst
        if worst is not None and worst.layers:
            names = [la.layer for la in worst.layers]
            ax3.bar(
                np.arange(len(names)),
                [max(la.relative_error, 1e-6) for la in worst.layers],
                color=[
                    "tab:red" if la.overflow or la is worst.worst_layer else "tab:gray" for la in worst.layers
                ],
            )
            ax3.set_yscale("log")
            ax3.set_xticks(np.arange(len(names)), names, rotation=45, ha="right", fontsize=7)
            ax3.set_ylabel("max |error| / max |float|")
            ax3.set_title(f"per-layer trace: {worst.label}")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _layer_errors(conv: Any, source: SourceModel, x: Array) -> list[LayerError]:
    emu = conv.emulation()
    _, fixed = emu.trace(x)
    tensors: dict[str, str] = conv.meta.info.get("layer_tensors", {})
    wanted = {tensors.get(name, name) for name in fixed}
    if source.framework != "onnx":
        wanted |= set(fixed)
    ref = source.trace(x, sorted(wanted))
    types = {t.hls_name: t.precision for t in conv.meta.traced}
    out: list[LayerError] = []
    for name, values in fixed.items():
        f = ref.get(tensors.get(name, name)) if source.framework == "onnx" else ref.get(name)
        if f is None or f.size != values.size:
            continue
        f = np.asarray(f, dtype=np.float64).reshape(values.shape)
        err = float(np.abs(values - f).max())
        scale = float(np.abs(f).max()) or 1.0
        overflow = False
        try:
            t = parse_fixed(types.get(name, ""))
            overflow = bool(f.max() > t.max + t.lsb or f.min() < t.min - t.lsb)
        except InvalidArgument:
            pass
        out.append(
            LayerError(name, types.get(name, "?"), err, err / scale, float(f.min()), float(f.max()), overflow)
        )
    return out


def scan(
    model: Any,
    out_dir: Path,
    *,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    base: ConversionConfig | None = None,
    extra: Sequence[tuple[str, ConversionConfig]] = (),
    x: Array | None = None,
    labels: Array | None = None,
    samples: int = 1000,
    trace_samples: int = 200,
    threshold: float = 0.95,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
) -> ScanResult:
    """Convert and compare one design per precision (plus ``extra`` labelled configurations).

    ``x`` defaults to ``samples`` standard-normal inputs (seeded): fine for standardised
    features, replace it with real data for accuracy. Projects go to ``out_dir/<label>``.
    """
    source = model if isinstance(model, SourceModel) else load_model(model, input_shape=input_shape)
    base = base or ConversionConfig()
    if x is None:
        x = np.random.default_rng(seed).standard_normal((samples, *source.input_shape)).astype(np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    ref = source.predict(x)
    configs: list[tuple[str, ConversionConfig]] = [
        (parse_fixed(p).hls, replace(base, precision=p, trace=True)) for p in precisions
    ]
    configs += [(label, replace(c, trace=True)) for label, c in extra]
    result = ScanResult(samples=len(x), model=source.description)
    out_dir = Path(out_dir)
    for label, cfg in configs:
        safe = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")
        conv = convert(source, out_dir / safe, cfg)
        fixed = conv.predict(x)
        agree = agreement(fixed, ref, labels)
        layers = _layer_errors(conv, source, x[:trace_samples])
        flags: list[str] = []
        messages = list(softmax_problems(conv.hls_model))
        if messages:
            flags.append("softmax-table")
        if agree.constant_output:
            flags.append("constant-output")
            messages.append("every sample gives the same output while the float model's vary")
        if agree.nonfinite:
            flags.append("nonfinite")
        overflowing = [la.layer for la in layers if la.overflow]
        if overflowing:
            flags.append("overflow")
            messages.append(f"float values leave the fixed-point range in {', '.join(overflowing)}")
        if agree.argmax_agreement < threshold:
            flags.append("low-agreement")
        broken = (
            bool({"constant-output", "nonfinite", "softmax-table"} & set(flags))
            or agree.argmax_agreement < BROKEN_AGREEMENT
        )
        status = "broken" if broken else "degraded" if flags else "ok"
        result.points.append(
            ScanPoint(
                label,
                cfg,
                agree,
                layers,
                flags,
                status,
                messages,
                conv.compile_s,
                conv.estimate.dsp,
                conv.estimate.latency_ns,
            )
        )
        conv.emulation().close()
    (out_dir / "scan.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return result
