"""Resources and latency before synthesis (an estimate), or from a vendor report when one exists.

Where this sits: hls4ml gives no resource or latency figures without the vendor tools
(Vitis/Vivado HLS, Quartus, Catapult), which are absent on most machines that convert models.
:func:`estimate_layers` gives first-order figures from what the conversion knows, and every
figure it returns is labelled ``source="estimate"``; :func:`parse_vendor_report` reads the
C-synthesis report of Vivado/Vitis HLS (``<project>_csynth.xml``) when synthesis was run, and
:func:`project_estimate` prefers it.

The estimate's model, for io_parallel designs in hls4ml's style (fully unrolled dense layers):

- multiplications of a Dense layer = its non-zero weights (hls4ml's latency strategy drops
  multiplications by zero); multipliers instantiated = ceil(multiplications / reuse factor);
- a multiplier uses DSPs when an operand is wider than 10 bits (Xilinx DSP48E2: 27x18 bits; a
  product of a x b bits takes ceil(a/27)*ceil(b/18) DSPs; Intel: 27x27), and LUTs when both
  operands have at most 10 bits or one has at most 4 (HLS tools map such products to fabric,
  which is why DSP use drops sharply below 10-bit precisions in Duarte et al. 2018);
- latency in clock cycles: Dense = reuse factor + 1 (multiply) + adder-tree depth
  ceil(log2(n_in)) / adder levels per cycle (one level per 1.25 ns of clock period);
  ReLU-like activations and bias/scale layers 1; softmax 3 + adder-tree depth; io_stream adds
  one cycle per layer for the FIFO hand-off. The initiation interval is the largest reuse factor.

These are the rules of thumb the hls4ml papers describe; they land within a factor of about two
of synthesis for small MLPs, which is what they are for: seeing the regime (tens of ns and a
few thousand DSPs, or microseconds) before running the vendor tools.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Estimate", "LayerEstimate", "estimate_layers", "parse_vendor_report", "project_estimate"]

_XILINX_DSP = (27, 18)
_INTEL_DSP = (27, 27)
_DENSE = ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")
_SIMPLE = ("Activation", "ReLU", "LeakyReLU", "ApplyAlpha", "BatchNormalization", "Merge", "Add", "Quant")


@dataclass(slots=True)
class LayerEstimate:
    name: str
    kind: str
    multiplications: int = 0
    multipliers: int = 0
    dsp: int = 0
    lut_multipliers: int = 0
    cycles: int = 0


@dataclass(slots=True)
class Estimate:
    """Figures for one design; ``source`` says whether they are an estimate or from a report."""

    source: str  # "estimate" | "vendor report (...)"
    latency_cycles: int
    latency_ns: float
    interval_cycles: int
    clock_period_ns: float
    dsp: int
    multipliers: int
    layers: list[LayerEstimate] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)  # vendor report: LUT, FF, BRAM_18K, ...
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        label = "ESTIMATE (before synthesis, rules of thumb)" if self.source == "estimate" else self.source
        lines = [f"resources and latency: {label}"]
        if self.layers:
            lines.append(
                f"  {'layer':<22} {'kind':<12} {'mults':>7} {'multipliers':>11} {'DSP':>6} {'cycles':>6}"
            )
            for la in self.layers:
                lines.append(
                    f"  {la.name:<22} {la.kind:<12} {la.multiplications:>7} {la.multipliers:>11} "
                    f"{la.dsp:>6} {la.cycles:>6}"
                )
        lines.append(
            f"  total: {self.dsp} DSP, {self.multipliers} multipliers; latency {self.latency_cycles} "
            f"cycles = {self.latency_ns:.0f} ns at {self.clock_period_ns:g} ns clock; "
            f"interval {self.interval_cycles} cycles"
        )
        if self.resources:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in self.resources.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _dsp_per_product(a: int, b: int, backend: str) -> int:
    """DSP blocks one a x b-bit product takes; 0 when it goes to LUTs."""
    if min(a, b) <= 4 or max(a, b) <= 10:
        return 0
    big, small = max(a, b), min(a, b)
    if backend.lower() == "quartus":
        return math.ceil(big / _INTEL_DSP[0]) * math.ceil(small / _INTEL_DSP[1])
    return math.ceil(big / _XILINX_DSP[0]) * math.ceil(small / _XILINX_DSP[1])


def estimate_layers(
    layers: list[dict[str, Any]],
    *,
    clock_period_ns: float,
    backend: str = "Vitis",
    io_type: str = "io_parallel",
) -> Estimate:
    """The estimate from the per-layer summaries :mod:`sonic.fpga.convert` records.

    Each summary has ``name``, ``class``, and for weight layers ``n_in``, ``n_out``,
    ``nonzero`` (non-zero weights), ``weight_bits``, ``input_bits``, ``reuse_factor``; other
    layers have ``n`` (output size).
    """
    levels_per_cycle = max(1, int(clock_period_ns / 1.25))
    out: list[LayerEstimate] = []
    notes: list[str] = []
    interval = 1
    for la in layers:
        kind = str(la["class"])
        est = LayerEstimate(str(la["name"]), kind)
        if kind in _DENSE:
            rf = max(1, int(la.get("reuse_factor", 1)))
            n_in = max(1, int(la.get("n_in", 1)))
            est.multiplications = int(la.get("nonzero", 0))
            est.multipliers = math.ceil(est.multiplications / rf)
            per = _dsp_per_product(int(la.get("weight_bits", 16)), int(la.get("input_bits", 16)), backend)
            est.dsp = est.multipliers * per
            est.lut_multipliers = est.multipliers if per == 0 else 0
            est.cycles = rf + 1 + math.ceil(math.ceil(math.log2(n_in)) / levels_per_cycle)
            if str(la.get("strategy", "latency")).lower() == "resource":
                est.cycles += 1
            interval = max(interval, rf)
            if kind != "Dense":
                notes.append(
                    f"{est.name}: convolution counted as one dense kernel; "
                    "multiply by positions for stream designs"
                )
        elif kind == "Softmax":
            n = max(2, int(la.get("n", 2)))
            est.cycles = 3 + math.ceil(math.ceil(math.log2(n)) / levels_per_cycle)
        elif kind in ("Input", "Transpose", "Reshape", "Flatten"):
            est.cycles = 0
        else:
            est.cycles = 1
            if kind not in _SIMPLE:
                notes.append(f"{est.name}: {kind} counted as one cycle (no rule for it)")
        if io_type == "io_stream" and est.cycles:
            est.cycles += 1
        out.append(est)
    cycles = sum(la.cycles for la in out)
    return Estimate(
        source="estimate",
        latency_cycles=cycles,
        latency_ns=cycles * clock_period_ns,
        interval_cycles=interval,
        clock_period_ns=clock_period_ns,
        dsp=sum(la.dsp for la in out),
        multipliers=sum(la.multipliers for la in out),
        layers=out,
        notes=notes,
    )


def _text(root: ET.Element, *paths: str) -> str | None:
    for p in paths:
        node = root.find(p)
        if node is not None and node.text is not None and node.text.strip():
            return node.text.strip()
    return None


def parse_vendor_report(project_dir: Path, project_name: str = "myproject") -> Estimate | None:
    """Read Vivado/Vitis HLS C-synthesis results (``<project>_csynth.xml``), if synthesis ran.

    Looks under ``<project_dir>/<project>_prj/solution1/syn/report/`` (Vivado HLS and Vitis
    HLS) and anywhere below the project for a file of that name. Returns None when there is none.
    """
    project_dir = Path(project_dir)
    name = f"{project_name}_csynth.xml"
    candidates = [project_dir / f"{project_name}_prj" / "solution1" / "syn" / "report" / name]
    candidates += sorted(project_dir.rglob(name))
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    root = ET.parse(path).getroot()
    version = _text(root, "ReportVersion/Version") or "?"
    period = float(_text(root, "UserAssignments/TargetClockPeriod") or 0.0)
    estimated = _text(root, "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod")
    lat = "PerformanceEstimates/SummaryOfOverallLatency/"
    worst = int(_text(root, lat + "Worst-caseLatency", lat + "Average-caseLatency") or 0)
    interval = int(_text(root, lat + "Interval-max", lat + "Interval-min") or 0)
    resources: dict[str, int] = {}
    res = root.find("AreaEstimates/Resources")
    if res is not None:
        for child in res:
            if child.text and child.text.strip().isdigit():
                resources[child.tag] = int(child.text)
    dsp = resources.get("DSP", resources.get("DSP48E", 0))
    notes = [f"read from {path}"]
    if estimated:
        notes.append(f"estimated clock period {estimated} ns (target {period:g} ns)")
    return Estimate(
        source=f"vendor report (HLS C synthesis {version})",
        latency_cycles=worst,
        latency_ns=worst * period,
        interval_cycles=interval,
        clock_period_ns=period,
        dsp=dsp,
        multipliers=0,
        resources=resources,
        notes=notes,
    )


def project_estimate(project_dir: Path) -> Estimate:
    """The vendor report of a converted project if synthesis ran, else the estimate."""
    from sonic.fpga.emulation import read_meta

    meta = read_meta(Path(project_dir))
    report = parse_vendor_report(Path(project_dir), meta.info.get("project_name", meta.project_name))
    if report is not None:
        return report
    cfg = meta.info.get("config", {})
    return estimate_layers(
        list(meta.info.get("layers", [])),
        clock_period_ns=float(cfg.get("clock_period", 5.0)),
        backend=meta.backend,
        io_type=meta.io_type,
    )
