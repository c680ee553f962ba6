
"""A toy ProtoDUNE-like LArTPC collection plane: images, per-pixel truth and 48×48 patches.

Where this sits: ``sonic data lartpc`` runs :func:`generate_lartpc` and writes HDF5; the
EmTrackMichel-like CNN of :mod:`sonic.models` trains on the patches, and the ProtoDUNE-like
workflow reads the full images, finds hits and cuts patches itself.

No PyPI package simulates LArTPC images (LArSoft/Geant4 do, and are not on PyPI), so this is a
*physically motivated toy*, written for this project. What it does, and what it leaves out:

Geometry and readout (ProtoDUNE-SP-like numbers)
    One collection plane with ``n_wires`` wires of pitch 4.79 mm (wire axis = z, the beam
    direction) and a drift axis x with v_drift = 1.6 mm/µs (500 V/cm); the 0.5 µs ticks are
    averaged in groups of 6 (3 µs, 4.8 mm of drift), so an image pixel is ~4.8 × 4.8 mm, as
    in the patches of the EmTrackMichel (PointIdAlg) network. The vertical coordinate y is not
    seen by this plane. The default image is 256 wires × 384 time pixels (1.23 m × 1.84 m).

Particles, stepped in 3-D with 2 mm steps
    - muons (kinetic energy uniform in [50, 800] MeV, isotropic, starting inside) and protons
      (20-200 MeV): mean energy loss from the Bethe formula for argon (Z/A = 0.4509,
      I = 188 eV, ρ = 1.396 g/cm³, with the high-energy density-effect correction), which
      gives 2.12 MeV/cm at minimum ionisation and a Bragg peak at the end of the range;
      fluctuations per step from a Moyal (Landau-like) distribution of width
      ξ = 0.1535·(Z/A)·ρ·x/β² MeV around that mean; multiple scattering with the Highland
      angle for X0 = 14 cm. Muons that stop inside decay to a **Michel electron** with
      probability 0.68 (μ⁺ always decay, μ⁻ are captured ~73% of the time in argon; cosmic
      μ⁺/μ⁻ ≈ 1.25), with energy from the spectrum x²(3 − 2x), E_max = 52.8 MeV, isotropic.
    - electrons (the Michel electrons and the shower particles): collision loss as above plus
      bremsstrahlung sampled per step (photon energy fraction y with dN/dy ∝ 1/y above 1%,
      rate (x/X0)·(4/3)·ln(1/y_min)); photons travel an exponential distance of mean
      9/7·X0 = 18 cm (pair production, energies split uniformly) above 10 MeV and of 25 cm
      (Compton, all energy to one electron) below; electrons below 1 MeV deposit locally.
      This is a real, if crude, electromagnetic cascade: **EM showers** (electrons or photons
      of 100-1000 MeV) come out branchy and gappy with the right radiation length, and
      Michel electrons come out as short wiggly tracks with a few detached photon blobs.

Charge and signal
    Ionisation charge Q = E/W_ion (W_ion = 23.6 eV) × recombination (modified Box model,
    α = 0.93, β = 0.212 (g/cm²)/MeV · (kV/cm)/ρE) × e^(−t_drift/τ) with electron lifetime
    τ = 10 ms; transverse and longitudinal diffusion (D_T = 13.2, D_L = 6.2 cm²/s) smear each
    deposit; cold-electronics shaping (2 µs peaking) along time; gain 170 e⁻/ADC; white
    electronics noise (2.5 ADC per tick), a low-frequency per-wire component and a coherent
    component shared by groups of 32 wires; ~1.5% dead wires (read as 0). Image values are the
    6-tick mean in ADC counts: a MIP crossing one wire at right angles makes ~25 ADC.

Truth
    Per pixel, the class whose shaped charge is largest there (``none`` / ``track`` /
    ``shower`` / ``michel`` = 0/1/2/3, :data:`CLASSES`), where that charge exceeds 3 σ of the
    pixel noise; dead wires are ``none``. Patches of 48 × 48 pixels (wire × time) are cut
    around pixels of each class (``none`` patches around quiet pixels); a patch's label is
    its centre pixel's.

Left out, knowingly: induction planes and the 3-D reconstruction they allow; space charge;
the field response and its long-range induced signals (the shaping is a 1-D kernel); delta
rays and the true Landau tail (the Moyal tail is lighter); hadronic interactions (protons and
pions never interact, there are no pions); photon Compton scattering chains; argon-39 and
other radioactivity; cosmic pile-up beyond the particles thrown per event. The output is
meant to look like, and be as hard to classify as, ProtoDUNE patches to first order — not to
reproduce any detector measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.data._deps import require
from sonic.protocol.errors import InvalidArgument

__all__ = [
    "CLASSES",
    "PATCH",
    "Deposits",
    "LArTPCConfig",
    "LArTPCEvent",
    "bethe_dedx",
    "cut_patches",
    "generate_lartpc",
    "read_lartpc",
    "simulate_event",
    "write_lartpc",
]

#: Per-pixel truth codes and the output order of the patch classifier.
CLASSES = ("none", "track", "shower", "michel")
NONE, TRACK, SHOWER, MICHEL = 0, 1, 2, 3
PATCH = 48

# liquid argon
Z_OVER_A = 0.4509
I_EV = 188.0
RHO = 1.396  # g/cm3
X0 = 14.0  # cm
K_BETHE = 0.307075  # MeV cm2/mol
PLASMA_EV = 22.85  # ħω_p for LAr
ME = 0.51099895
MMU = 105.6583755
MP = 938.272
W_ION = 23.6e-6  # MeV per electron-ion pair
MICHEL_EMAX = 52.83

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LArTPCConfig:
    events: int
    seed: int = 1
    n_wires: int = 256
    n_time: int = 384
    wire_pitch: float = 0.479  # cm
    tick_us: float = 0.5
    downsample: int = 6
    v_drift: float = 0.16  # cm/us
    height: float = 200.0  # cm, y extent (not seen by the plane)
    step: float = 0.2  # cm
    muons: tuple[int, int] = (1, 3)
    protons: tuple[int, int] = (0, 2)
    showers: tuple[int, int] = (0, 2)
    muon_ke: tuple[float, float] = (50.0, 800.0)
    proton_ke: tuple[float, float] = (20.0, 200.0)
    shower_e: tuple[float, float] = (100.0, 1000.0)
    michel_prob: float = 0.68
    efield_kv_cm: float = 0.5
    lifetime_us: float = 10_000.0
    diff_t: float = 13.2  # cm2/s
    diff_l: float = 6.2  # cm2/s
    peaking_us: float = 2.0
    gain_e_per_adc: float = 170.0
    noise_adc: float = 2.5  # per raw tick
    lowfreq_noise_adc: float = 0.6
    coherent_noise_adc: float = 0.5
    coherent_group: int = 32
    dead_wire_fraction: float = 0.015
    patches_per_class: int = 4
    keep_images: bool = True

    def __post_init__(self) -> None:
        if self.events < 0:
            raise InvalidArgument(f"events must be >= 0, got {self.events}")
        if self.n_wires < PATCH or self.n_time < PATCH:
            raise InvalidArgument(
                f"the image must be at least {PATCH}x{PATCH}, got {self.n_wires}x{self.n_time}"
            )

    @property
    def pixel_x(self) -> float:
        """Drift length of one time pixel (cm)."""
        return self.tick_us * self.downsample * self.v_drift

    @property
    def length_z(self) -> float:
        return self.n_wires * self.wire_pitch

    @property
    def length_x(self) -> float:
        return self.n_time * self.pixel_x

    @property
    def pixel_noise(self) -> float:
        """RMS of the white noise in one image pixel (ADC)."""
        return self.noise_adc / math.sqrt(self.downsample)


# --------------------------------------------------------------------------------------------
# Energy loss
# --------------------------------------------------------------------------------------------


def bethe_dedx(ke: float, mass: float) -> float:
    """Mean collision stopping power of liquid argon (MeV/cm) for kinetic energy ``ke`` (MeV).

    Bethe formula with T_max, and the density effect in its high-energy limit
    (δ/2 = ln(ħω_p/I) + ln βγ − 1/2, where positive). 2.12 MeV/cm at minimum (βγ ≈ 3.5).
    """
    ke = max(ke, 1e-3)
    gamma = 1.0 + ke / mass
    beta2 = 1.0 - 1.0 / gamma**2
    bg2 = beta2 * gamma**2
    tmax = 2 * ME * bg2 / (1 + 2 * gamma * ME / mass + (ME / mass) ** 2)
    half_delta = max(0.0, math.log(PLASMA_EV / I_EV) + 0.5 * math.log(bg2) - 0.5)
    arg = 2 * ME * bg2 * tmax / (I_EV * 1e-6) ** 2
    val = K_BETHE * Z_OVER_A / beta2 * (0.5 * math.log(arg) - beta2 - half_delta)
    return max(val, 0.0) * RHO


def _electron_dedx(ke: float) -> float:
    """Collision loss of electrons: the MIP value, rising below 1 MeV (crude)."""
    return 2.1 if ke > 1.0 else 2.1 + 2.0 * (1.0 - ke)


@dataclass
class Deposits:
    """Energy deposits of one event: 3-D midpoints, energy (MeV), class, step length, dE/dx."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    z: list[float] = field(default_factory=list)
    e: list[float] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    #: per deposit: particle kind (13 muon, 2212 proton, 11 electron) and kinetic energy (MeV)
    pdg: list[int] = field(default_factory=list)
    ke: list[float] = field(default_factory=list)
    dx: list[float] = field(default_factory=list)

    def add(self, pos: Array, e: float, label: int, pdg: int, ke: float, dx: float) -> None:
        self.x.append(float(pos[0]))
        self.y.append(float(pos[1]))
        self.z.append(float(pos[2]))
        self.e.append(e)
        self.label.append(label)
        self.pdg.append(pdg)
        self.ke.append(ke)
        self.dx.append(dx)

    def arrays(self) -> dict[str, Array]:
        return {
            k: np.asarray(getattr(self, k), dtype=np.float64)
            for k in ("x", "y", "z", "e", "label", "pdg", "ke", "dx")
        }


class _Sim:
    """Particle transport in one event (plain Python stepping; a few thousand steps per event)."""

    def __init__(self, cfg: LArTPCConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.dep = Deposits()
        self.lo = np.array([0.0, -cfg.height / 2, 0.0])
        self.hi = np.array([cfg.length_x, cfg.height / 2, cfg.length_z])

    def inside(self, pos: Array) -> bool:
        return bool(np.all(pos >= self.lo) and np.all(pos <= self.hi))

    def iso(self) -> Array:
        v = self.rng.standard_normal(3)
        out: Array = v / np.linalg.norm(v)
        return out

    def scatter(self, d: Array, theta0: float) -> Array:
        """Deflect unit vector ``d`` by Gaussian projected angles of RMS ``theta0``."""
        if theta0 <= 0:
            return d
        a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        u = np.cross(d, a)
        u /= np.linalg.norm(u)
        v = np.cross(d, u)
        t1, t2 = self.rng.normal(0.0, theta0, 2)
        nd = d + t1 * u + t2 * v
        out: Array = nd / np.linalg.norm(nd)
        return out

    def _loss(self, mean: float, dx: float, beta2: float) -> float:
        xi = 0.1535 * Z_OVER_A * RHO * dx / beta2
        z = self.rng.standard_normal()
        lam = -math.log(max(z * z, 1e-300))  # Moyal: exp(-λ) ~ χ²(1)
        return max(0.0, mean * dx + xi * (lam - 1.2704))

    def heavy(self, pos: Array, d: Array, ke: float, mass: float, pdg: int) -> tuple[Array, bool]:
        """Track a muon or proton; returns (end position, stopped inside)."""
        step = self.cfg.step
        while ke > 0.5:
            if not self.inside(pos):
                return pos, False
            dedx = bethe_dedx(ke, mass)
            dx = min(step, max(0.02, 0.5 * ke / dedx))
            gamma = 1.0 + ke / mass
            beta2 = 1.0 - 1.0 / gamma**2
            p = math.sqrt(ke * (ke + 2 * mass))
            e = min(self._loss(dedx, dx, beta2), ke)
            mid = pos + 0.5 * dx * d
            self.dep.add(mid, e, TRACK, pdg, ke, dx)
            ke -= e
            pos = pos + dx * d
            d = self.scatter(d, 13.6 / (math.sqrt(beta2) * p) * math.sqrt(dx / X0))
        if ke > 0:
            self.dep.add(pos, ke, TRACK, pdg, ke, 0.0)
        return pos, self.inside(pos)

    def electron(self, pos: Array, d: Array, ke: float, label: int, depth: int = 0) -> None:
        step = self.cfg.step
        ymin = 0.01
        rate = (step / X0) * (4.0 / 3.0) * math.log(1.0 / ymin)
        while ke > 1.0:
            if not self.inside(pos):
                return
            e = min(self._loss(_electron_dedx(ke), step, 1.0), ke)
            self.dep.add(pos + 0.5 * step * d, e, label, 11, ke, step)
            ke -= e
            # bremsstrahlung: Poisson number of photons, energy fraction ~ 1/y in [ymin, 1]
            for _ in range(self.rng.poisson(rate)):
                y = ymin ** self.rng.uniform()
                eg = y * ke
                if eg < 0.05 or ke <= 1.0:
                    continue
                ke -= eg
                if depth < 40:
                    self.photon(pos.copy(), d.copy(), eg, label, depth + 1)
            pos = pos + step * d
            p = math.sqrt(max(ke, 0.01) * (max(ke, 0.01) + 2 * ME))
            beta = p / (max(ke, 0.01) + ME)
            d = self.scatter(d, 13.6 / (beta * p) * math.sqrt(step / X0))
        if ke > 0 and self.inside(pos):
            self.dep.add(pos, ke, label, 11, ke, 0.0)

    def photon(self, pos: Array, d: Array, e: float, label: int, depth: int) -> None:
        mean = 9.0 / 7.0 * X0 if e > 10.0 else 25.0
        pos = pos + self.rng.exponential(mean) * d
        if not self.inside(pos):
            return
        if e > 10.0 and e > 2 * ME + 0.1:
            avail = e - 2 * ME
            f = self.rng.uniform()
            for share in (f * avail, (1 - f) * avail):
                self.electron(pos.copy(), self.scatter(d, ME / e), share, label, depth)
        else:
            self.electron(pos.copy(), self.scatter(d, 0.3), e, label, depth)

    def michel(self, pos: Array) -> None:
        while True:
            x = self.rng.uniform()
            if self.rng.uniform() * 1.0 < x * x * (3 - 2 * x):
                break
        self.electron(pos.copy(), self.iso(), x * MICHEL_EMAX, MICHEL)


# --------------------------------------------------------------------------------------------
# Readout
# --------------------------------------------------------------------------------------------


def _box_recombination(dedx: Array, efield: float) -> Array:
    alpha, beta = 0.93, 0.212 / (RHO * efield)
    xi = beta * np.maximum(dedx, 1e-3)
    out: Array = np.log(alpha + xi) / xi
    return out


def _shaping_kernel(cfg: LArTPCConfig) -> Array:
    """Semi-Gaussian (CR-RC⁴-like) response to a unit charge, summed into image pixels.

    The response peak falls in the middle tick of the deposit's pixel; the kernel is odd-length,
    centred on that pixel, and sums to 1 (charge is conserved).
    """
    t = np.arange(0.0, 6 * cfg.peaking_us, cfg.tick_us)
    tau = cfg.peaking_us / 4.0
    r = (t / tau) ** 4 * np.exp(-t / tau)
    r /= r.sum()
    ds = cfg.downsample
    pix = np.floor_divide(np.arange(len(r)) + ds // 2 - int(np.argmax(r)), ds)
    half = int(max(-pix.min(), pix.max()))
    k = np.zeros(2 * half + 1)
    np.add.at(k, pix + half, r)
    return k


@dataclass
class LArTPCEvent:
    image: npt.NDArray[np.float32]  # (n_wires, n_time) ADC
    truth: npt.NDArray[np.uint8]  # (n_wires, n_time) class code
    dead: npt.NDArray[np.bool_]  # (n_wires,)
    deposits: dict[str, Array]
    n_michel: int = 0


def simulate_event(cfg: LArTPCConfig, rng: np.random.Generator) -> LArTPCEvent:
    """One event: throw particles, transport them, read out the collection plane."""
    sim = _Sim(cfg, rng)
    n_michel = 0

    def start() -> Array:
        pos: Array = sim.lo + (sim.hi - sim.lo) * rng.uniform(0.1, 0.9, 3)
        return pos

    for _ in range(rng.integers(cfg.muons[0], cfg.muons[1] + 1)):
        end, stopped = sim.heavy(start(), sim.iso(), rng.uniform(*cfg.muon_ke), MMU, 13)
        if stopped and rng.uniform() < cfg.michel_prob:
            sim.michel(end)
            n_michel += 1
    for _ in range(rng.integers(cfg.protons[0], cfg.protons[1] + 1)):
        sim.heavy(start(), sim.iso(), rng.uniform(*cfg.proton_ke), MP, 2212)
    for _ in range(rng.integers(cfg.showers[0], cfg.showers[1] + 1)):
        e = rng.uniform(*cfg.shower_e)
        if rng.uniform() < 0.5:
            sim.electron(start(), sim.iso(), e, SHOWER)
        else:
            sim.photon(start(), sim.iso(), e, SHOWER, 0)

    dep = sim.dep.arrays()
    image, truth, dead = _readout(cfg, rng, dep)
    return LArTPCEvent(image=image, truth=truth, dead=dead, deposits=dep, n_michel=n_michel)


def _readout(
    cfg: LArTPCConfig, rng: np.random.Generator, dep: dict[str, Array]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    nw, nt = cfg.n_wires, cfg.n_time
    charge = np.zeros((4, nw, nt))  # per class, in electrons
    if len(dep["e"]):
        x, z, e, lab = dep["x"], dep["z"], dep["e"], dep["label"].astype(np.int64)
        dx = np.where(dep["dx"] > 0, dep["dx"], cfg.step)
        dedx = e / dx
        t_drift = np.maximum(x, 0.0) / cfg.v_drift  # us (a last step may end just outside)
        q = e / W_ION * _box_recombination(dedx, cfg.efield_kv_cm) * np.exp(-t_drift / cfg.lifetime_us)
        # diffusion: each deposit split into 4 jittered pieces
        sig_t = np.sqrt(2 * cfg.diff_t * t_drift * 1e-6)  # cm
        sig_l = np.sqrt(2 * cfg.diff_l * t_drift * 1e-6)
        k = 4
        zz = np.repeat(z, k) + rng.standard_normal(len(z) * k) * np.repeat(sig_t, k)
        xx = np.repeat(x, k) + rng.standard_normal(len(x) * k) * np.repeat(sig_l, k)
        qq = np.repeat(q / k, k)
        ll = np.repeat(lab, k)
        w = np.floor(zz / cfg.wire_pitch).astype(np.int64)
        t = np.floor(xx / cfg.pixel_x).astype(np.int64)
        ok = (w >= 0) & (w < nw) & (t >= 0) & (t < nt)
        np.add.at(charge, (ll[ok], w[ok], t[ok]), qq[ok])
    # shaping along time (charge-conserving), then electrons -> ADC, 6-tick mean
    ndimage = require("scipy.ndimage")
    shaped = ndimage.convolve1d(charge, _shaping_kernel(cfg), axis=2, mode="constant")
    # a pixel's value is the mean over its 6 ticks of charge/gain per tick
    adc = shaped / cfg.gain_e_per_adc / cfg.downsample
    signal = adc.sum(axis=0)
    # truth: the dominant class where its signal clears 3 sigma of the pixel noise
    best = np.argmax(adc[1:], axis=0) + 1
    truth = np.where(adc.max(axis=0) > 3 * cfg.pixel_noise, best, NONE).astype(np.uint8)
    # noise: white + low-frequency per wire + coherent per group of wires
    noise = rng.standard_normal((nw, nt)) * cfg.pixel_noise
    low = np.cumsum(rng.standard_normal((nw, nt)), axis=1)
    low -= np.linspace(0, 1, nt)[None, :] * low[:, -1:]
    low = low / max(low.std(), 1e-9) * cfg.lowfreq_noise_adc
    groups = -(-nw // cfg.coherent_group)
    coh = rng.standard_normal((groups, nt)) * cfg.coherent_noise_adc
    coh = np.repeat(coh, cfg.coherent_group, axis=0)[:nw]
    image = signal + noise + low + coh
    dead = rng.uniform(size=nw) < cfg.dead_wire_fraction
    image[dead] = 0.0
    truth[dead] = NONE
    return image.astype(np.float32), truth, dead


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def cut_patches(image: npt.NDArray[np.float32], centres: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """48×48 (wire × time) patches centred on ``centres`` (n, 2: wire, time), zero-padded."""
    h = PATCH // 2
    padded = np.pad(image, h)
    out = np.empty((len(centres), PATCH, PATCH), dtype=np.float32)
    for i, (w, t) in enumerate(centres):
        out[i] = padded[w : w + PATCH, t : t + PATCH]
    return out


def _choose_centres(
    cfg: LArTPCConfig, rng: np.random.Generator, ev: LArTPCEvent
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    centres: list[npt.NDArray[np.int64]] = []
    labels: list[npt.NDArray[np.int64]] = []
    for cls in (TRACK, SHOWER, MICHEL):
        where = np.argwhere(ev.truth == cls)
        if len(where):
            take = rng.choice(len(where), size=min(cfg.patches_per_class, len(where)), replace=False)
            centres.append(where[take])
            labels.append(np.full(len(take), cls))
    quiet = np.argwhere((ev.truth == NONE) & ~ev.dead[:, None])
    if len(quiet):
        take = rng.choice(len(quiet), size=min(cfg.patches_per_class, len(quiet)), replace=False)
        centres.append(quiet[take])
        labels.append(np.full(len(take), NONE))
    if not centres:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(centres).astype(np.int64), np.concatenate(labels).astype(np.int64)


@dataclass
class LArTPCSample:
    config: LArTPCConfig
    images: npt.NDArray[np.float32]  # (n_events, n_wires, n_time) or (0, ...) without images
    truth: npt.NDArray[np.uint8]
    dead: npt.NDArray[np.bool_]
    patches: npt.NDArray[np.float32]  # (n, 48, 48)
    patch_label: npt.NDArray[np.int64]
    patch_event: npt.NDArray[np.int64]
    patch_wire: npt.NDArray[np.int64]
    patch_time: npt.NDArray[np.int64]
    n_michel: npt.NDArray[np.int64]
    seconds: float = 0.0


def generate_lartpc(cfg: LArTPCConfig) -> LArTPCSample:
    """Simulate ``cfg.events`` events; reproducible from ``cfg.seed`` (numpy PCG64)."""
    import time

    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    images, truths, deads, patches = [], [], [], []
    labels, events, wires, times, michels = [], [], [], [], []
    start = time.perf_counter()
    for i in range(cfg.events):
        ev = simulate_event(cfg, rng)
        c, lab = _choose_centres(cfg, rng, ev)
        patches.append(cut_patches(ev.image, c))
        labels.append(lab)
        events.append(np.full(len(lab), i))
        wires.append(c[:, 0])
        times.append(c[:, 1])
        michels.append(ev.n_michel)
        deads.append(ev.dead)
        if cfg.keep_images:
            images.append(ev.image)
            truths.append(ev.truth)
    seconds = time.perf_counter() - start
    nw, nt = cfg.n_wires, cfg.n_time

    def cat(parts: list[Any], shape: tuple[int, ...], dtype: Any) -> Any:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype=dtype)

    return LArTPCSample(
        config=cfg,
        images=np.stack(images) if images else np.zeros((0, nw, nt), np.float32),
        truth=np.stack(truths) if truths else np.zeros((0, nw, nt), np.uint8),
        dead=np.stack(deads) if deads else np.zeros((0, nw), bool),
        patches=cat(patches, (0, PATCH, PATCH), np.float32),
        patch_label=cat(labels, (0,), np.int64),
        patch_event=cat(events, (0,), np.int64),
        patch_wire=cat(wires, (0,), np.int64),
        patch_time=cat(times, (0,), np.int64),
        n_michel=np.asarray(michels, dtype=np.int64),
        seconds=seconds,
    )


def write_lartpc(sample: LArTPCSample, path: str | Path) -> None:
    """HDF5: ``events/{image, truth, dead_wires, n_michel}``, ``patches/{x, label, event, wire, time}``."""
    from sonic.data.io import write_h5

    attrs: dict[str, Any] = {
        k: (np.asarray(v) if isinstance(v, tuple) else v) for k, v in asdict(sample.config).items()
    }
    attrs.update(
        generator="sonic.data.lartpc (toy ProtoDUNE-like collection plane; see its docstring)",
        classes=",".join(CLASSES),
        pixel_cm=np.asarray([sample.config.wire_pitch, sample.config.pixel_x]),
        units="ADC (6-tick mean)",
    )
    events: dict[str, Any] = {"dead_wires": sample.dead, "n_michel": sample.n_michel}
    if sample.config.keep_images:
        events.update(image=sample.images, truth=sample.truth)
    write_h5(
        path,
        {
            "events": events,
            "patches": {
                "x": sample.patches,
                "label": sample.patch_label,
                "event": sample.patch_event,
                "wire": sample.patch_wire,
                "time": sample.patch_time,
            },
        },
        attrs=attrs,
    )


def read_lartpc(path: str | Path) -> LArTPCSample:
    from sonic.data.io import read_h5

    groups, attrs = read_h5(path)
    fields: dict[str, Any] = {}
    for k in LArTPCConfig.__dataclass_fields__:
        if k in attrs:
            v = attrs[k]
            fields[k] = tuple(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else v
    cfg = LArTPCConfig(**fields)
    ev, pa = groups["events"], groups["patches"]
    nw, nt = cfg.n_wires, cfg.n_time
    return LArTPCSample(
        config=cfg,
        images=ev.get("image", np.zeros((0, nw, nt), np.float32)),
        truth=ev.get("truth", np.zeros((0, nw, nt), np.uint8)),
        dead=ev["dead_wires"],
        patches=pa["x"],
        patch_label=pa["label"],
        patch_event=pa["event"],
        patch_wire=pa["wire"],
        patch_time=pa["time"],
        n_michel=ev["n_michel"],
    )
