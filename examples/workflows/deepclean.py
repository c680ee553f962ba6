"""The modules of the LIGO-like noise-cleaning workflow (``deepclean.yaml``), and its inputs.

DeepClean (Ormiston et al. 2020) predicts, from witness channels (here the 60 Hz mains monitor,
an angular and a seismic sensor), the noise that couples non-linearly into a gravitational-wave
detector's strain, and subtracts it. As a service: the source cuts the strain and the witnesses
into 1 s frames (``H5Source(frame=4096, context=2048)``), each event carrying 0.5 s of the
neighbouring witnesses either side, so every request is complete on its own ("stateless with
context": no server keeps state, any server of a pool can answer, frames go in parallel).

- :class:`DeepClean` (a SONIC module): ``acquire`` sends the witnesses of the frame with their
  context, ``(1, 3, 8192)`` float32, to the ``deepclean`` model; ``produce`` band-passes the
  predicted noise to 55-65 and 115-125 Hz on the whole padded frame, drops the context and
  subtracts it from the strain frame — exactly what :func:`sonic.models.train.clean` does
  offline (the network is trained in those bands only; outside them its output is
  unconstrained). Products: ``cleaned`` and ``noise`` (one frame each), ``t0`` (seconds from
  the start of the file) and ``noise_rms``.
- :class:`NoiseReport` (a plain module): at the end of the job, the ratio of the amplitude
  spectral densities cleaned/raw around 60 and 120 Hz over the whole stream
  (:func:`sonic.models.metrics.asd_ratio`), printed, and kept in ``result``.
- :func:`prepare`: the input HDF5 (``sonic data gw``'s generator) and the model repository,
  for ``sonic serve`` (``models/``) and for NVIDIA Triton (``models_triton/``, python backend).

Under Dask every partition reports on its own stretch; :func:`report` (``python deepclean.py
report out/cleaned.h5 gw_strain.h5``) gives the figures of the merged output.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.workflow import Event, Module, SonicModule

HERE = Path(__file__).resolve().parent
INPUT = "gw_strain.h5"
WITNESSES = ("mains", "angular", "seismic")
BANDS = ((55.0, 65.0), (115.0, 125.0))  # sonic.models.train.BANDS: where the model was trained

Array = npt.NDArray[np.float64]


def band_mask(n: int, fs: float, bands: Sequence[Sequence[float]] = BANDS, edge: float = 1.0) -> Array:
    """The FFT mask of :func:`sonic.models.train.bandpass`: 1 inside ``bands``, raised-cosine
    edges ``edge`` Hz wide outside them, 0 elsewhere (rfft bins of ``n`` samples at ``fs``)."""
    freq = np.fft.rfftfreq(n, 1.0 / fs)
    mask = np.zeros(len(freq))
    for lo, hi in bands:
        mask[(freq >= lo) & (freq <= hi)] = 1.0
        for f0, sign in ((lo, -1.0), (hi, 1.0)):
            ramp = (sign * (freq - f0) > 0) & (sign * (freq - f0) < edge)
            mask[ramp] = np.maximum(mask[ramp], 0.5 * (1 + np.cos(np.pi * np.abs(freq[ramp] - f0) / edge)))
    return mask


class DeepClean(SonicModule):
    """Subtract the witnesses' predicted noise from each frame of strain (see the module doc).

    ``strain``, ``witnesses``: the source's columns; ``frame``, ``context``: samples, as the
    source cuts them (each column holds ``frame + 2·context`` samples per event);
    ``sample_rate`` in Hz; ``bands``, ``edge``: the band-pass of the prediction.
    """

    def __init__(
        self,
        strain: str = "strain",
        witnesses: Sequence[str] = WITNESSES,
        frame: int = 4096,
        context: int = 2048,
        sample_rate: float = 4096.0,
        bands: Sequence[Sequence[float]] = BANDS,
        edge: float = 1.0,
    ) -> None:
        self.strain = strain
        self.witnesses = tuple(witnesses)
        self.frame = int(frame)
        self.context = int(context)
        self.sample_rate = float(sample_rate)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.edge = float(edge)
        self._mask = band_mask(self.frame + 2 * self.context, self.sample_rate, self.bands, self.edge)

    def acquire(self, event: Event) -> dict[str, Any]:
        w = np.stack([np.asarray(event[k]) for k in self.witnesses]).astype(np.float32)
        if w.shape[1] != self.frame + 2 * self.context:
            raise ValueError(
                f"the source gives {w.shape[1]} samples per event, but this module expects frame + "
                f"2·context = {self.frame} + 2·{self.context}; make the source's frame/context match"
            )
        return {"witness": w[None]}  # (1, 3, frame + 2·context): one sequence per request

    def produce(self, event: Event, result: Any) -> None:
        pred = np.asarray(result["noise"])[0].astype(np.float64)  # strain units
        n = len(pred)
        noise = np.fft.irfft(np.fft.rfft(pred) * self._mask, n)[self.context : self.context + self.frame]
        # a copy: a view would keep the source's whole chunk alive as long as the product lives
        raw = np.array(event[self.strain][self.context : self.context + self.frame], dtype=np.float64)
        event.put("raw", raw, fixed=True)
        event.put("noise", noise, fixed=True)
        event.put("cleaned", raw - noise, fixed=True)
        event["t0"] = event.entry * self.frame / self.sample_rate
        event["noise_rms"] = float(np.sqrt(np.mean(noise**2)))


class NoiseReport(Module):
    """ASD ratio ``after``/``before`` around ``frequencies`` (± ``half_width`` Hz, Welch with
    ``seconds``-long segments) over the whole stream, at the end of the job.

    Keeps both series in memory until then (16 bytes a sample: ~235 MB an hour at 4096 Hz).
    ``result`` holds the figures (``asd_ratio_60hz`` ...) after ``end()``.
    """

    def __init__(
        self,
        before: str = "raw",
        after: str = "cleaned",
        frequencies: Sequence[float] = (60.0, 120.0),
        sample_rate: float = 4096.0,
        half_width: float = 1.0,
        seconds: float = 4.0,
    ) -> None:
        self.before = before
        self.after = after
        self.frequencies = tuple(float(f) for f in frequencies)
        self.sample_rate = float(sample_rate)
        self.half_width = float(half_width)
        self.seconds = float(seconds)
        self.result: dict[str, float] = {}
        self._frames: dict[int, tuple[Array, Array]] = {}

    def begin(self) -> None:
        self._frames = {}
        self.result = {}

    def produce(self, event: Event) -> None:
        self._frames[event.index] = (np.asarray(event[self.before]), np.asarray(event[self.after]))

    def end(self) -> None:
        if not self._frames:
            return
        order = sorted(self._frames)
        before = np.concatenate([self._frames[i][0] for i in order])
        after = np.concatenate([self._frames[i][1] for i in order])
        self._frames = {}
        self.result = noise_reduction(
            before, after, self.sample_rate, self.frequencies, self.half_width, self.seconds
        )
        gaps = order[-1] - order[0] + 1 - len(order)
        print(
            f"{self.name or 'NoiseReport'}: {describe(self.result, len(before) / self.sample_rate)}"
            + (f" (events {order[0]}..{order[-1]}, {gaps} missing)" if gaps else ""),
            flush=True,
        )


def noise_reduction(
    before: Array,
    after: Array,
    sample_rate: float,
    frequencies: Sequence[float] = (60.0, 120.0),
    half_width: float = 1.0,
    seconds: float = 4.0,
) -> dict[str, float]:
    """``{"asd_ratio_<f>hz": ASD(after)/ASD(before) around f}`` (:func:`sonic.models.metrics.asd_ratio`)."""
    from sonic.models.metrics import asd_ratio

    return {
        f"asd_ratio_{f:g}hz": asd_ratio(before, after, sample_rate, f, half_width, seconds)
        for f in frequencies
    }


def describe(result: dict[str, float], seconds: float) -> str:
    parts = [
        f"{key.removeprefix('asd_ratio_').removesuffix('hz')} Hz {r:.4f} ({20 * np.log10(r):+.1f} dB)"
        for key, r in result.items()
    ]
    return f"noise ASD cleaned/raw over {seconds:g} s of strain: " + ", ".join(parts)


def report(
    cleaned_h5: Path, input_h5: Path, frequencies: Sequence[float] = (60.0, 120.0)
) -> dict[str, float]:
    """The figures of :class:`NoiseReport` from the files: the workflow's output (``cleaned``,
    ``raw`` continuous) or, without ``raw``, the input's strain of the same length."""
    from sonic.workflow import read_columns

    out = read_columns(cleaned_h5)
    import h5py

    with h5py.File(cleaned_h5, "r") as f:
        fs = float(f.attrs.get("sample_rate", 4096.0))
    after = np.asarray(out["cleaned"], dtype=np.float64)
    if "raw" in out:
        before = np.asarray(out["raw"], dtype=np.float64)
    else:
        with h5py.File(input_h5, "r") as f:
            before = np.asarray(f["strain/strain"][: len(after)], dtype=np.float64)
    result = noise_reduction(before, after, fs, frequencies)
    print(describe(result, len(after) / fs))
    return result


def prepare(dest: Path, seconds: int, seed: int) -> None:
    """Write ``gw_strain.h5`` (``seconds`` of LIGO-like strain and witnesses, ``sonic data gw``'s
    generator with ``seed``) and the ``deepclean`` model, under ``dest/models`` for sonic and
    ``dest/models_triton`` for NVIDIA Triton (python backend running the same ONNX file)."""
    from sonic.data.gw import GWConfig, generate_gw, write_gw
    from sonic.models.repository import write_repository

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_gw(generate_gw(GWConfig(duration=float(seconds), seed=seed)), dest / INPUT)
    write_repository(dest / "models", ["deepclean"])
    write_repository(dest / "models_triton", ["deepclean"], backend="python")
    print(
        f"wrote {dest / INPUT} ({seconds} s, seed {seed}), {dest / 'models' / 'deepclean'} and "
        f"{dest / 'models_triton' / 'deepclean'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="Noise reduction of the DeepClean workflow's output.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="ASD ratio cleaned/raw at 60 and 120 Hz of an output file")
    r.add_argument("cleaned", type=Path, nargs="?", default=HERE / "out" / "cleaned.h5")
    r.add_argument("input", type=Path, nargs="?", default=HERE / INPUT)
    args = ap.parse_args()
    report(args.cleaned, args.input)


if __name__ == "__main__":
    main()
