
"""Gravitational-wave strain with non-linearly coupled noise and BBH injections (LIGO-like).

Where this sits: ``sonic data gw`` runs :func:`generate_gw` and writes HDF5; the DeepClean-like
model of :mod:`sonic.models` learns to predict the coupled noise from the witness channels,
and the LIGO-like workflow streams the strain through it. Nothing here is on the serving path.

What is simulated (one detector, sampled at ``sample_rate``, default 4096 Hz):

- **Gaussian noise** coloured by the Advanced LIGO design sensitivity
  (LALSimulation ``SimNoisePSDaLIGODesignSensitivityP1200087``, LIGO-P1200087), zero below
  ``f_low`` (10 Hz): white noise shaped in the frequency domain, normalised so that its
  one-sided PSD equals the design PSD (:func:`colored_noise`).
- **Witness channels** (arbitrary units, unit RMS), as the auxiliary channels DeepClean uses:
  ``mains`` — a 60 Hz power-line monitor whose phase wanders (random walk) and whose amplitude
  breathes slowly, with a weak 180 Hz harmonic; ``angular`` — a slow alignment (ASC pitch)
  signal: microseism-driven lines at 0.1-0.6 Hz plus red noise below ~2 Hz; ``seismic`` —
  ground motion, the 0.15 Hz microseism peak plus anthropogenic 1-5 Hz noise. Each witness
  carries its own small sensor noise.
- **Coupling** into the strain, non-linear as in the DeepClean paper (Ormiston et al. 2020):
  ``a60 · (1 + k_ang · angular) · mains`` — the 60 Hz line with angular-modulation sidebands
  (bilinear); ``a120 · (mains² − ⟨mains²⟩) · (1 + k_seis · seismic)`` — the 120 Hz harmonic
  from a quadratic (rectifying) coupling, modulated by ground motion. Coupling amplitudes are
  given in strain; the defaults put the 60 Hz line ~100× and 120 Hz ~40× above the design ASD
  in a 1/8 Hz Welch bin. No scattered-light up-conversion is simulated.
- **BBH injections**: IMRPhenomD (LALSimulation ``SimInspiralChooseTDWaveform``) with
  component masses uniform in [10, 50] M☉, aligned spins uniform in [−0.5, 0.5], isotropic
  orientation and sky position projected with LIGO Hanford's antenna pattern; the distance is
  set so that the optimal SNR against the design PSD (from ``f_low_snr`` = 20 Hz) equals
  ``snr``. One merger per ``injection_interval`` seconds, at a random time inside it.

HDF5 layout (:func:`write_gw`): ``strain/strain`` (the sum), ``truth/{gaussian, coupled,
signal}``, ``witness/{mains, angular, seismic}``, ``injections/*`` (one row per merger),
``psd/{frequency, psd}``; file attributes hold the sample rate, seed and every coupling
parameter. All strain arrays are float64: strain is ~1e-21, and its squares underflow float32.

Limits: one detector, stationary Gaussian noise (no glitches, no calibration lines other
than the coupled ones), witnesses independent of each other, no time delays in the coupling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.data._deps import require
from sonic.protocol.errors import InvalidArgument

__all__ = [
    "WITNESSES",
    "GWConfig",
    "GWSample",
    "colored_noise",
    "design_psd",
    "generate_gw",
    "optimal_snr",
    "read_gw",
    "write_gw",
]

WITNESSES = ("mains", "angular", "seismic")
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GWConfig:
    duration: float
    seed: int = 1
    sample_rate: int = 4096
    f_low: float = 10.0
    f_low_snr: float = 20.0
    mains_hz: float = 60.0
    a60: float = 2.0e-22
    k_ang: float = 0.6
    a120: float = 8.0e-23
    k_seis: float = 0.5
    snr: float = 20.0
    injection_interval: float = 32.0
    mass_range: tuple[float, float] = (10.0, 50.0)
    spin_max: float = 0.5

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.duration * self.sample_rate < 16:
            raise InvalidArgument(
                f"duration must be positive and cover at least 16 samples, got {self.duration}"
            )
        if self.sample_rate < 512:
            raise InvalidArgument(
                f"sample_rate must be >= 512 Hz (the 120 Hz harmonic), got {self.sample_rate}"
            )

    @property
    def n(self) -> int:
        return round(self.duration * self.sample_rate)


@dataclass
class GWSample:
    config: GWConfig
    strain: Array
    gaussian: Array
    coupled: Array
    signal: Array
    witness: dict[str, Array]
    injections: dict[str, Array]
    psd_frequency: Array
    psd: Array

    @property
    def time(self) -> Array:
        return np.arange(len(self.strain)) / self.config.sample_rate


def design_psd(frequency: Array, f_low: float = 10.0) -> Array:
    """aLIGO design one-sided PSD (1/Hz) at ``frequency``, 0 below ``f_low``, from LALSimulation."""
    lal = require("lal")
    lalsim = require("lalsimulation")
    frequency = np.asarray(frequency, dtype=np.float64)
    df = float(frequency[1] - frequency[0]) if len(frequency) > 1 else 1.0
    if len(frequency) > 1 and (frequency[0] != 0.0 or not np.allclose(np.diff(frequency), df)):
        # not a uniform grid from 0: interpolate a fine one
        fine = np.arange(0.0, frequency.max() + 0.25, 0.125)
        return np.interp(frequency, fine, design_psd(fine, f_low))
    series = lal.CreateREAL8FrequencySeries(
        "psd", lal.LIGOTimeGPS(0), 0.0, df, lal.DimensionlessUnit, len(frequency)
    )
    lalsim.SimNoisePSDaLIGODesignSensitivityP1200087(series, f_low)
    psd = np.array(series.data.data, dtype=np.float64)
    psd[frequency < f_low] = 0.0
    return psd


def colored_noise(rng: np.random.Generator, n: int, sample_rate: float, psd_fn: Any) -> Array:
    """Gaussian noise of one-sided PSD ``psd_fn(f)``: E|X_k|² = N·fs·S(f_k)/2 for numpy's FFT."""
    freq = np.fft.rfftfreq(n, 1.0 / sample_rate)
    white = np.fft.rfft(rng.standard_normal(n))
    shaped = white * np.sqrt(psd_fn(freq) * sample_rate / 2.0)
    out: Array = np.fft.irfft(shaped, n)
    return out


def _unit(x: Array) -> Array:
    x = x - x.mean()
    s = x.std()
    return x / s if s > 0 else x


def _witnesses(rng: np.random.Generator, cfg: GWConfig) -> dict[str, Array]:
    n, fs = cfg.n, cfg.sample_rate
    t = np.arange(n) / fs
    # mains: 60 Hz with a random-walk phase (~0.05 rad/√s) and 2% slow amplitude breathing
    phase = np.cumsum(rng.standard_normal(n)) * (0.05 / math.sqrt(fs)) + rng.uniform(0, 2 * np.pi)
    breathe = 1.0 + 0.02 * np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 2 * np.pi))
    mains = breathe * np.cos(2 * np.pi * cfg.mains_hz * t + phase)
    mains += 0.05 * np.cos(2 * np.pi * 3 * cfg.mains_hz * t + 3 * phase)
    mains = mains / np.sqrt(np.mean(mains**2))

    def red(f_knee: float, slope: float) -> Array:
        return colored_noise(rng, n, fs, lambda f: 1.0 / (1.0 + (np.maximum(f, 1e-3) / f_knee) ** slope))

    # angular: a few slow lines (0.1-0.6 Hz) + red noise below ~2 Hz
    ang = sum(
        rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    ang = _unit(np.asarray(ang) + 0.7 * _unit(red(2.0, 4.0)))
    # seismic: microseism peak at 0.15 Hz + anthropogenic band 1-5 Hz
    micro = colored_noise(rng, n, fs, lambda f: np.exp(-0.5 * ((f - 0.15) / 0.04) ** 2))
    anthro = colored_noise(rng, n, fs, lambda f: ((f > 1.0) & (f < 5.0)).astype(np.float64))
    seis = _unit(_unit(micro) + 0.5 * _unit(anthro))
    clean = {"mains": mains, "angular": ang, "seismic": seis}
    return {k: v + 0.01 * rng.standard_normal(n) for k, v in clean.items()}  # sensor noise


def coupled_noise(witness: dict[str, Array], cfg: GWConfig) -> Array:
    """The noise the witnesses put into the strain (see the module docstring)."""
    m, a, s = witness["mains"], witness["angular"], witness["seismic"]
    m2 = m * m
    out: Array = cfg.a60 * (1.0 + cfg.k_ang * a) * m + cfg.a120 * (m2 - m2.mean()) * (1.0 + cfg.k_seis * s)
    return out


def optimal_snr(h: Array, sample_rate: float, f_low: float, f_low_psd: float = 10.0) -> float:
    """√(4 ∫ |h̃|²/S df) of a time series ``h`` against the design PSD, from ``f_low``."""
    n = len(h)
    freq = np.fft.rfftfreq(n, 1.0 / sample_rate).astype(np.float64)
    hf = np.fft.rfft(h) / sample_rate
    psd = design_psd(freq, f_low_psd)
    sel = (freq >= f_low) & (psd > 0)
    df = sample_rate / n
    return float(np.sqrt(4.0 * np.sum(np.abs(hf[sel]) ** 2 / psd[sel]) * df))


def _waveform(lal: Any, lalsim: Any, params: dict[str, float], cfg: GWConfig) -> tuple[Array, Array, float]:
    """(h+, h×, time of t=0 (merger) in samples from the start of the arrays) at 1 Mpc."""
    hp, hc = lalsim.SimInspiralChooseTDWaveform(
        params["mass1"] * lal.MSUN_SI,
        params["mass2"] * lal.MSUN_SI,
        0.0,
        0.0,
        params["spin1z"],
        0.0,
        0.0,
        params["spin2z"],
        1.0e6 * lal.PC_SI,
        params["inclination"],
        params["phase"],
        0.0,
        0.0,
        0.0,
        1.0 / cfg.sample_rate,
        cfg.f_low,
        cfg.f_low,
        lal.CreateDict(),
        lalsim.IMRPhenomD,
    )
    return (
        np.array(hp.data.data, dtype=np.float64),
        np.array(hc.data.data, dtype=np.float64),
        -float(hp.epoch) * cfg.sample_rate,
    )


def _injections(rng: np.random.Generator, cfg: GWConfig) -> tuple[Array, dict[str, Array]]:
    lal = require("lal")
    lalsim = require("lalsimulation")
    n, fs = cfg.n, cfg.sample_rate
    signal = np.zeros(n)
    rows: list[dict[str, float]] = []
    n_inj = int(cfg.duration // cfg.injection_interval) if cfg.snr > 0 else 0
    detector = lal.CachedDetectors[lal.LHO_4K_DETECTOR]
    for k in range(n_inj):
        lo, hi = cfg.mass_range
        m1, m2 = sorted(rng.uniform(lo, hi, 2), reverse=True)
        p = {
            "mass1": float(m1),
            "mass2": float(m2),
            "spin1z": float(rng.uniform(-cfg.spin_max, cfg.spin_max)),
            "spin2z": float(rng.uniform(-cfg.spin_max, cfg.spin_max)),
            "inclination": float(np.arccos(rng.uniform(-1, 1))),
            "phase": float(rng.uniform(0, 2 * np.pi)),
            "ra": float(rng.uniform(0, 2 * np.pi)),
            "dec": float(np.arcsin(rng.uniform(-1, 1))),
            "psi": float(rng.uniform(0, np.pi)),
        }
        # merger inside the slot, leaving 2 s of margin for the ringdown and the next inspiral
        margin = min(2.0, cfg.injection_interval / 4)
        t_merger = k * cfg.injection_interval + rng.uniform(
            margin + 0.5 * cfg.injection_interval, cfg.injection_interval - margin
        )
        hp, hc, t0 = _waveform(lal, lalsim, p, cfg)
        fplus, fcross = lal.ComputeDetAMResponse(detector.response, p["ra"], p["dec"], p["psi"], 0.0)
        h = fplus * hp + fcross * hc
        snr_1mpc = optimal_snr(h, fs, cfg.f_low_snr, cfg.f_low)
        scale = cfg.snr / snr_1mpc
        start = round(t_merger * fs - t0)
        a, b = max(start, 0), min(start + len(h), n)
        if b > a:
            signal[a:b] += scale * h[a - start : b - start]
        p.update(
            t_merger=float(t_merger),
            distance_mpc=float(1.0 / scale),
            snr_opt=float(cfg.snr),
            fplus=float(fplus),
            fcross=float(fcross),
            start_sample=float(start),
            length=float(len(h)),
        )
        rows.append(p)
    keys = [
        "t_merger", "mass1", "mass2", "spin1z", "spin2z", "distance_mpc", "inclination", "phase",
        "ra", "dec", "psi", "fplus", "fcross", "snr_opt", "start_sample", "length",
    ]  # fmt: skip
    table = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    return signal, table


def generate_gw(cfg: GWConfig) -> GWSample:
    """Generate ``cfg.duration`` seconds of strain, witnesses and injections; see the module doc."""
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    fs, n = cfg.sample_rate, cfg.n
    gaussian = colored_noise(rng, n, fs, lambda f: design_psd(f, cfg.f_low))
    witness = _witnesses(rng, cfg)
    coupled = coupled_noise(witness, cfg)
    signal, injections = _injections(rng, cfg)
    psd_f = np.arange(0.0, fs / 2 + 0.125, 0.125)
    return GWSample(
        config=cfg,
        strain=gaussian + coupled + signal,
        gaussian=gaussian,
        coupled=coupled,
        signal=signal,
        witness=witness,
        injections=injections,
        psd_frequency=psd_f,
        psd=design_psd(psd_f, cfg.f_low),
    )


def write_gw(sample: GWSample, path: str | Path) -> None:
    from sonic.data.io import write_h5

    cfg = sample.config
    attrs: dict[str, Any] = {
        k: (np.asarray(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
    }
    attrs.update(
        generator="sonic.data.gw (LALSuite aLIGO design PSD, IMRPhenomD)",
        psd_model="SimNoisePSDaLIGODesignSensitivityP1200087",
        approximant="IMRPhenomD",
        witnesses=",".join(WITNESSES),
    )
    write_h5(
        path,
        {
            "strain": {"strain": sample.strain},
            "truth": {"gaussian": sample.gaussian, "coupled": sample.coupled, "signal": sample.signal},
            "witness": sample.witness,
            "injections": sample.injections,
            "psd": {"frequency": sample.psd_frequency, "psd": sample.psd},
        },
        attrs=attrs,
    )


def read_gw(path: str | Path) -> GWSample:
    from sonic.data.io import read_h5

    groups, attrs = read_h5(path)
    fields = {k: attrs[k] for k in GWConfig.__dataclass_fields__ if k in attrs}
    if "mass_range" in fields:
        fields["mass_range"] = tuple(float(x) for x in fields["mass_range"])
    cfg = GWConfig(**fields)
    return GWSample(
        config=cfg,
        strain=groups["strain"]["strain"],
        gaussian=groups["truth"]["gaussian"],
        coupled=groups["truth"]["coupled"],
        signal=groups["truth"]["signal"],
        witness={k: groups["witness"][k] for k in WITNESSES},
        injections=groups["injections"],
        psd_frequency=groups["psd"]["frequency"],
        psd=groups["psd"]["psd"],
    )
