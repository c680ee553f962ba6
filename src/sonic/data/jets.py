
"""Collider jets from Pythia 8 and FastJet: the CMS-like jet-tagging workload.

Where this sits: ``sonic data jets`` runs :func:`generate_jets` and writes the sample with
:func:`sonic.data.io.write_nanoaod`; the jet taggers of :mod:`sonic.models` train on it and
the CMS-like workflow reads it back. Nothing here is on the serving path.

The physics, step by step:

1. **Generation** — Pythia 8 (PyPI ``pythia8mc``) at √s = 13 TeV with its default tune
   (Monash), multi-parton interactions, parton showers and hadronisation on; no pile-up, no
   detector. Three processes:

   - ``qcd``: ``HardQCD:all`` with p̂T > ``pthat_min`` (default 300 GeV): quark and gluon jets.
   - ``ttbar``: ``Top:gg2ttbar`` + ``Top:qqbar2ttbar`` with p̂T > ``pthat_min`` (default
     300 GeV, so that a fair part of the tops is boosted enough to be contained in one
     R = 0.8 jet), both W → qq̄' (all-hadronic).
   - ``wprime``: ``NewGaugeBoson:ffbar2Wprime`` with W′ (mass ``wprime_mass``, default
     1.2 TeV) → WZ only (``Wprime:coup2WZ = 1``), W → qq̄' and Z → qq̄: boosted W and Z jets
     of p_T ≈ m_W′/2.

2. **Jets** — all visible final-state particles (neutrinos dropped) clustered with FastJet,
   anti-kT R = 0.8, p_T > 200 GeV, |η| < 2.4 (these are "generator-level PF candidates":
   there is no detector simulation).

3. **Substructure** (on all constituents of each jet):

   - soft-drop mass (β = 0, z_cut = 0.1, R0 = 0.8: the "mMDT"/CMS ``msoftdrop``), with the
     momentum fraction ``sdZg`` and opening angle ``sdRg`` of the splitting that passed,
     from a Cambridge/Aachen reclustering;
   - N-subjettiness τ1, τ2, τ3 (β = 1) with winner-take-all exclusive-kT axes, and the
     ratios τ21 = τ2/τ1, τ32 = τ3/τ2;
   - energy-correlation ratios C2 = e3/e2² and D2 = e3/e2³ for angular exponents β = 1 and
     β = 2 (normalised ECFs in (y, φ), computed exactly: e3 = tr(A³)/6 with
     A_ij = √(z_i z_j) ΔR_ij^β);
   - multiplicity, charged multiplicity, p_T^D, girth, leading-constituent and charged p_T
     fractions.

4. **Truth labels** from the hard partons of Pythia's event record, in the order of the
   hls4ml jet-tagging benchmark (:data:`LABELS` = g, q, W, Z, t):
   ``t`` if the top's b and both W daughters lie within ΔR < 0.8 of the jet axis; else ``W``
   or ``Z`` if both quarks of a hadronic W or Z do; else ``g`` or ``q`` by the nearest
   outgoing hard parton (status 23; a b from a top decay is a ``q``) within ΔR < 0.8; else
   ``-1``: unmatched (e.g. a jet made of ISR) or ambiguous (two or more resonance-decay quarks
   inside but no complete t/W/Z, i.e. a partially merged top). So a ttbar sample holds t, W and q
   jets, a W′ sample W, Z and some q/g jets, a QCD sample g and q jets.

5. **Output** — up to :attr:`JetGenConfig.max_constituents` (50) hardest constituents per
   jet, in a NanoAOD-like layout (``nFatJet``, ``FatJet_*``, ``nFatJetPFCands``,
   ``FatJetPFCands_*`` with ``FatJetPFCands_jetIdx``).

Reproducibility: Pythia's random engine is seeded with the seed, and nothing else is random,
so the same configuration and seed give identical events on the same platform and Pythia
version (the version is pinned by the ``physics`` extra).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.data._deps import require
from sonic.protocol.errors import InvalidArgument

__all__ = [
    "CAND_FIELDS",
    "JET_FEATURES",
    "LABELS",
    "PROCESSES",
    "TAGGER_FEATURES",
    "JetGenConfig",
    "JetSample",
    "ecf_ratios",
    "generate_jets",
    "nsubjettiness",
]

PROCESSES = ("qcd", "ttbar", "wprime")
#: Class names of ``FatJet_label`` (0..4), the output order of the jet taggers; -1 = unmatched.
LABELS = ("g", "q", "W", "Z", "t")

#: Float branches ``FatJet_<name>`` (one value per jet).
JET_FEATURES = (
    "pt",
    "eta",
    "phi",
    "mass",
    "msoftdrop",
    "sdZg",
    "sdRg",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "c2b1",
    "d2b1",
    "c2b2",
    "d2b2",
    "ptD",
    "girth",
    "leadPtFrac",
    "chargedPtFrac",
)
#: Integer branches ``FatJet_<name>``.
JET_INT_FEATURES = ("nConstituents", "nCharged", "label", "truthPdgId")

#: The 16 high-level inputs of the jet-tagging MLP (16 → 64 → 32 → 32 → 5), in input order.
TAGGER_FEATURES = (
    "mass",
    "msoftdrop",
    "sdZg",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "c2b1",
    "d2b1",
    "c2b2",
    "d2b2",
    "nConstituents",
    "nCharged",
    "ptD",
    "girth",
)

#: Branches ``FatJetPFCands_<name>`` (one value per stored constituent).
CAND_FIELDS = ("pt", "eta", "phi", "mass", "pdgId", "charge", "jetIdx")

_DEFAULT_PTHAT = {"qcd": 300.0, "ttbar": 300.0, "wprime": 0.0}
_NEUTRINOS = {12, 14, 16}


@dataclass(frozen=True)
class JetGenConfig:
    """What to generate; every field is a physics or selection choice, all with defaults."""

    process: str
    events: int
    seed: int = 1
    ecm_gev: float = 13000.0
    pthat_min_gev: float | None = None
    wprime_mass_gev: float = 1200.0
    jet_r: float = 0.8
    jet_pt_min_gev: float = 200.0
    jet_eta_max: float = 2.4
    max_constituents: int = 50
    zcut: float = 0.1
    sd_beta: float = 0.0

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise InvalidArgument(f"unknown process {self.process!r}: expected one of {', '.join(PROCESSES)}")
        if self.events < 0:
            raise InvalidArgument(f"events must be >= 0, got {self.events}")
        if not 0 <= self.seed <= 900_000_000:
            raise InvalidArgument(f"Pythia seeds lie in [0, 900000000], got {self.seed}")

    @property
    def pthat_min(self) -> float:
        return _DEFAULT_PTHAT[self.process] if self.pthat_min_gev is None else self.pthat_min_gev

    def pythia_settings(self) -> list[str]:
        """The ``readString`` lines that set Pythia up for this configuration."""
        common = [
            f"Beams:eCM = {self.ecm_gev}",
            "Random:setSeed = on",
            f"Random:seed = {self.seed}",
            "Print:quiet = on",
            "Next:numberCount = 0",
        ]
        hadronic_w = ["24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
        if self.process == "qcd":
            proc = ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {self.pthat_min}"]
        elif self.process == "ttbar":
            proc = [
                "Top:gg2ttbar = on",
                "Top:qqbar2ttbar = on",
                f"PhaseSpace:pTHatMin = {self.pthat_min}",
                *hadronic_w,
            ]
        else:
            proc = [
                "NewGaugeBoson:ffbar2Wprime = on",
                f"34:m0 = {self.wprime_mass_gev}",
                "Wprime:coup2WZ = 1.0",
                "34:onMode = off",
                "34:onIfMatch = 24 23",
                *hadronic_w,
                "23:onMode = off",
                "23:onIfAny = 1 2 3 4 5",
            ]
            if self.pthat_min > 0:
                proc.append(f"PhaseSpace:pTHatMin = {self.pthat_min}")
        return common + proc


@dataclass
class JetSample:
    """A generated sample as flat numpy arrays with per-event counts (NanoAOD's layout).

    ``jets[name]`` holds one entry per jet, ``n_jets[i]`` jets belong to event ``i``;
    ``cands[name]`` one entry per stored constituent, ``n_cands[i]`` of them to event ``i``,
    and ``cands["jetIdx"]`` is the index of the jet *within its event*.
    """

    config: JetGenConfig
    event: npt.NDArray[np.int64]
    n_jets: npt.NDArray[np.int32]
    jets: dict[str, npt.NDArray[Any]]
    n_cands: npt.NDArray[np.int32]
    cands: dict[str, npt.NDArray[Any]]
    seconds: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return len(self.event)

    def tagger_inputs(self) -> npt.NDArray[np.float32]:
        """The (n_jets, 16) float32 input matrix of the MLP, columns as :data:`TAGGER_FEATURES`."""
        return np.stack([self.jets[n].astype(np.float32) for n in TAGGER_FEATURES], axis=1)


# --------------------------------------------------------------------------------------------
# Substructure observables (pure numpy, testable without the generators)
# --------------------------------------------------------------------------------------------


def _delta_phi(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    d = np.asarray(a - b, dtype=np.float64)
    return (d + np.pi) % (2 * np.pi) - np.pi


def _pairwise_dr(y: npt.NDArray[np.float64], phi: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    dy = y[:, None] - y[None, :]
    dphi = _delta_phi(phi[:, None], phi[None, :])
    dr: npt.NDArray[np.float64] = np.sqrt(dy * dy + dphi * dphi)
    return dr


def ecf_ratios(
    pt: npt.NDArray[np.float64], y: npt.NDArray[np.float64], phi: npt.NDArray[np.float64], beta: float
) -> tuple[float, float]:
    """(C2, D2) of one jet from its constituents, normalised ECFs with angular exponent beta.

    e2 = Σ_{i<j} z_i z_j ΔR_ij^β, e3 = Σ_{i<j<k} z_i z_j z_k (ΔR_ij ΔR_jk ΔR_ki)^β, computed as
    tr(A³)/6 with A_ij = √(z_i z_j) ΔR_ij^β (exact, O(n³) in BLAS). C2 = e3/e2², D2 = e3/e2³;
    both are 0 for a jet of fewer than three constituents.
    """
    if len(pt) < 3:
        return 0.0, 0.0
    z = pt / pt.sum()
    rb = _pairwise_dr(y, phi) ** beta
    e2 = float(0.5 * (z[:, None] * z[None, :] * rb).sum())
    sq = np.sqrt(z)
    a = sq[:, None] * sq[None, :] * rb
    e3 = float(np.einsum("ij,jk,ki->", a, a, a) / 6.0)
    if e2 <= 0.0:
        return 0.0, 0.0
    return e3 / e2**2, e3 / e2**3


def nsubjettiness(
    pt: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    phi: npt.NDArray[np.float64],
    axes: list[tuple[float, float]],
    r0: float,
) -> float:
    """τ_N (β = 1) of the constituents with respect to ``axes`` [(y, φ), ...]."""
    if not axes or len(pt) == 0:
        return 0.0
    ay = np.array([a[0] for a in axes])
    aphi = np.array([a[1] for a in axes])
    dr = np.sqrt((y[:, None] - ay[None, :]) ** 2 + _delta_phi(phi[:, None], aphi[None, :]) ** 2)
    return float((pt * dr.min(axis=1)).sum() / (pt.sum() * r0))


# --------------------------------------------------------------------------------------------
# FastJet helpers
# --------------------------------------------------------------------------------------------

_BANNER_SHOWN = False


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send C-level stdout to stderr (FastJet's banner, Pythia's messages): stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _fastjet() -> Any:
    global _BANNER_SHOWN
    fj = require("fastjet._swig")
    if not _BANNER_SHOWN:
        # FastJet asks to be cited; its banner goes to stderr so that stdout stays parseable.
        with _stdout_to_stderr():
            fj.ClusterSequence.print_banner()
        _BANNER_SHOWN = True
    return fj


def _xmldoc() -> str | None:
    env = os.environ.get("PYTHIA8DATA")
    if env:
        return env
    guess = Path(sys.prefix) / "share" / "Pythia8" / "xmldoc"
    return str(guess) if guess.is_dir() else None


def _make_pythia(config: JetGenConfig) -> Any:
    py8 = require("pythia8mc")
    xml = _xmldoc()
    with _stdout_to_stderr():
        pythia = py8.Pythia(xml, False) if xml else py8.Pythia()
    for line in config.pythia_settings():
        if not pythia.readString(line):
            raise InvalidArgument(f"Pythia refused the setting {line!r}")
    with _stdout_to_stderr():
        ok = pythia.init()
    if not ok:
        raise InvalidArgument(f"Pythia failed to initialise for {config.process} (see the log on stderr)")
    return pythia


# --------------------------------------------------------------------------------------------
# One event
# --------------------------------------------------------------------------------------------


@dataclass
class _Truth:
    #: (label index, [(eta, phi) of the decay quarks that must be contained])
    resonances: list[tuple[int, list[tuple[float, float]]]]
    #: (pdg id, eta, phi) of the outgoing hard partons (status 23)
    partons: list[tuple[int, float, float]]


def _eta_phi(p: Any) -> tuple[float, float]:
    return float(p.eta()), float(p.phi())


def _read_event(event: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], _Truth]:
    """Visible final-state four-momenta (n, 4: px py pz E), their pdg ids, and the truth."""
    mom: list[tuple[float, float, float, float]] = []
    ids: list[int] = []
    truth = _Truth([], [])
    for i in range(event.size()):
        p = event[i]
        pid = p.id()
        aid = abs(pid)
        if p.isFinal():
            if aid not in _NEUTRINOS:
                mom.append((p.px(), p.py(), p.pz(), p.e()))
                ids.append(pid)
            continue
        status = abs(p.status())
        if status == 23 and (aid <= 5 or aid == 21):
            eta, phi = _eta_phi(p)
            truth.partons.append((pid, eta, phi))
        if aid in (6, 23, 24) and p.iBotCopyId() == i:
            daughters = [event[d] for d in p.daughterList()]
            if aid == 6:
                quarks = [d for d in daughters if abs(d.id()) == 5]
                ws = [d for d in daughters if abs(d.id()) == 24]
                if len(quarks) == 1 and len(ws) == 1:
                    w_last = event[ws[0].iBotCopyId()]
                    wq = [event[d] for d in w_last.daughterList() if abs(event[d].id()) <= 5]
                    if len(wq) == 2:
                        truth.resonances.append((4, [_eta_phi(q) for q in (quarks[0], *wq)]))
            else:
                qs = [d for d in daughters if abs(d.id()) <= 5]
                if len(qs) == 2:
                    truth.resonances.append((2 if aid == 24 else 3, [_eta_phi(q) for q in qs]))
    return np.asarray(mom, dtype=np.float64).reshape(-1, 4), np.asarray(ids, dtype=np.int64), truth


def _dr(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def _label(eta: float, phi: float, truth: _Truth, r: float) -> tuple[int, int]:
    """(label index, truth pdg id) of a jet at (eta, phi); see the module docstring."""
    best: tuple[int, int] | None = None
    for label, quarks in sorted(truth.resonances, key=lambda t: -t[0]):  # t before W/Z
        if all(_dr(eta, phi, qe, qp) < r for qe, qp in quarks):
            pdg = {4: 6, 2: 24, 3: 23}[label]
            if best is None or label == 4:
                best = (label, pdg)
            if label == 4:
                break
    if best is not None:
        return best
    merged = sum(_dr(eta, phi, qe, qp) < r for _, quarks in truth.resonances for qe, qp in quarks)
    if merged >= 2:
        return -1, 0  # a partially merged top (e.g. b + one W quark): no clean class
    nearest = min(truth.partons, key=lambda t: _dr(eta, phi, t[1], t[2]), default=None)
    if nearest is not None and _dr(eta, phi, nearest[1], nearest[2]) < r:
        return (0 if nearest[0] == 21 else 1), nearest[0]
    return -1, 0


_CHARGE = {11: -1, 13: -1, 15: -1, 211: 1, 321: 1, 2212: 1, 3222: 1, 3112: -1, 3312: -1, 3334: -1}


def _charge(pdg: npt.NDArray[np.int64]) -> npt.NDArray[np.int8]:
    """Electric charge of the stable particles Pythia leaves in the final state."""
    out = np.zeros(len(pdg), dtype=np.int8)
    for aid, q in _CHARGE.items():
        sel = np.abs(pdg) == aid
        out[sel] = q * np.sign(pdg[sel])
    return out


def _softdrop(fj: Any, jet: Any, zcut: float, beta: float, r0: float) -> tuple[Any, float, float]:
    """Groomed jet, z_g and R_g: decluster the C/A tree until the soft-drop condition holds."""
    j = jet
    p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    while j.has_parents(p1, p2):
        pt1, pt2 = p1.pt(), p2.pt()
        dr = p1.delta_R(p2)
        z = min(pt1, pt2) / (pt1 + pt2)
        if z > zcut * (dr / r0) ** beta:
            return j, z, dr
        j = p1 if pt1 >= pt2 else p2
        p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    return j, 0.0, 0.0


def _jet_record(
    fj: Any,
    jet: Any,
    mom: npt.NDArray[np.float64],
    ids: npt.NDArray[np.int64],
    charge: npt.NDArray[np.int8],
    config: JetGenConfig,
) -> tuple[dict[str, float], npt.NDArray[np.int64]]:
    """Substructure of one jet and the event-level indices of its constituents, by p_T."""
    consts = list(jet.constituents())
    idx = np.array([c.user_index() for c in consts], dtype=np.int64)
    px, py, pz, e = mom[idx].T
    pt = np.hypot(px, py)
    order = np.argsort(-pt, kind="stable")
    idx, pt, px, py, pz, e = idx[order], pt[order], px[order], py[order], pz[order], e[order]
    y = 0.5 * np.log(np.maximum(e + pz, 1e-12) / np.maximum(e - pz, 1e-12))
    phi = np.arctan2(py, px)
    r0 = config.jet_r
    ordered = [consts[k] for k in order]

    # soft drop on a C/A reclustering (one jet: R large enough to merge everything)
    ca = fj.ClusterSequence(ordered, fj.JetDefinition(fj.cambridge_algorithm, 10.0))
    ca_jet = ca.exclusive_jets(1)[0]
    groomed, zg, rg = _softdrop(fj, ca_jet, config.zcut, config.sd_beta, r0)
    msd = groomed.m() if groomed.m2() > 0 else 0.0

    # N-subjettiness with WTA exclusive-kT axes
    kt = fj.ClusterSequence(ordered, fj.JetDefinition(fj.kt_algorithm, 10.0, fj.WTA_pt_scheme))
    taus = []
    for n in (1, 2, 3):
        if len(ordered) >= n:
            axes = [(a.rap(), a.phi_std()) for a in kt.exclusive_jets(n)]
            taus.append(nsubjettiness(pt, y, phi, axes, r0))
        else:
            taus.append(0.0)
    del ca, kt

    c2b1, d2b1 = ecf_ratios(pt, y, phi, 1.0)
    c2b2, d2b2 = ecf_ratios(pt, y, phi, 2.0)
    ch = charge[idx] != 0
    sum_pt = float(pt.sum())
    jet_y, jet_phi = jet.rap(), jet.phi_std()
    dr_axis = np.sqrt((y - jet_y) ** 2 + _delta_phi(phi, jet_phi) ** 2)
    t1, t2, t3 = taus
    rec = {
        "pt": jet.pt(),
        "eta": jet.eta(),
        "phi": jet_phi,
        "mass": jet.m() if jet.m2() > 0 else 0.0,
        "msoftdrop": msd,
        "sdZg": zg,
        "sdRg": rg,
        "tau1": t1,
        "tau2": t2,
        "tau3": t3,
        "tau21": t2 / t1 if t1 > 0 else 0.0,
        "tau32": t3 / t2 if t2 > 0 else 0.0,
        "c2b1": c2b1,
        "d2b1": d2b1,
        "c2b2": c2b2,
        "d2b2": d2b2,
        "ptD": float(np.sqrt((pt**2).sum()) / sum_pt),
        "girth": float((pt * dr_axis).sum() / sum_pt),
        "leadPtFrac": float(pt[0] / sum_pt),
        "chargedPtFrac": float(pt[ch].sum() / sum_pt),
        "nConstituents": len(idx),
        "nCharged": int(ch.sum()),
    }
    return rec, idx


def generate_jets(config: JetGenConfig, progress: Callable[[int, int], None] | None = None) -> JetSample:
    """Generate ``config.events`` events and return their jets; see the module docstring."""
    fj = _fastjet()
    pythia = _make_pythia(config)
    jet_def = fj.JetDefinition(fj.antikt_algorithm, config.jet_r)
    jet_cols: dict[str, list[float]] = {n: [] for n in (*JET_FEATURES, *JET_INT_FEATURES)}
    cand_cols: dict[str, list[Any]] = {n: [] for n in CAND_FIELDS}
    n_jets: list[int] = []
    n_cands: list[int] = []
    start = time.perf_counter()
    failures = 0
    done = 0
    while done < config.events:
        with _stdout_to_stderr():
            ok = pythia.next()
        if not ok:
            failures += 1
            if failures > 10 * max(config.events, 10):
                raise InvalidArgument(f"Pythia failed {failures} times in a row for {config.process}")
            continue
        mom, ids, truth = _read_event(pythia.event)
        charge = _charge(ids)
        pjs = []
        for k, (px, py, pz, e) in enumerate(mom):
            pj = fj.PseudoJet(float(px), float(py), float(pz), float(e))
            pj.set_user_index(k)
            pjs.append(pj)
        cs = fj.ClusterSequence(pjs, jet_def)
        jets = [
            j
            for j in fj.sorted_by_pt(cs.inclusive_jets(config.jet_pt_min_gev))
            if abs(j.eta()) < config.jet_eta_max
        ]
        ncand_event = 0
        for jet_index, jet in enumerate(jets):
            rec, idx = _jet_record(fj, jet, mom, ids, charge, config)
            label, pdg = _label(rec["eta"], rec["phi"], truth, config.jet_r)
            rec["label"] = label
            rec["truthPdgId"] = pdg
            for name, value in rec.items():
                jet_cols[name].append(value)
            keep = idx[: config.max_constituents]
            px, py, pz, e = mom[keep].T
            pt = np.hypot(px, py)
            p = np.sqrt(px**2 + py**2 + pz**2)
            eta = np.arcsinh(pz / np.maximum(pt, 1e-12))
            m2 = e**2 - p**2
            cand_cols["pt"].append(pt)
            cand_cols["eta"].append(eta)
            cand_cols["phi"].append(np.arctan2(py, px))
            cand_cols["mass"].append(np.sqrt(np.maximum(m2, 0.0)))
            cand_cols["pdgId"].append(ids[keep])
            cand_cols["charge"].append(charge[keep])
            cand_cols["jetIdx"].append(np.full(len(keep), jet_index))
            ncand_event += len(keep)
        del cs, pjs
        n_jets.append(len(jets))
        n_cands.append(ncand_event)
        done += 1
        failures = 0
        if progress is not None:
            progress(done, config.events)
    seconds = time.perf_counter() - start

    float_jets = {n: np.asarray(jet_cols[n], dtype=np.float32) for n in JET_FEATURES}
    int_jets = {n: np.asarray(jet_cols[n], dtype=np.int32) for n in JET_INT_FEATURES}

    def _cat(name: str, dtype: Any) -> npt.NDArray[Any]:
        parts = cand_cols[name]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    cands = {
        "pt": _cat("pt", np.float32),
        "eta": _cat("eta", np.float32),
        "phi": _cat("phi", np.float32),
        "mass": _cat("mass", np.float32),
        "pdgId": _cat("pdgId", np.int32),
        "charge": _cat("charge", np.int32),
        "jetIdx": _cat("jetIdx", np.int32),
    }
    with _stdout_to_stderr():
        sigma_mb = float(pythia.infoPython().sigmaGen())
    meta = {
        "generator": "Pythia 8 (pythia8mc) + FastJet",
        "process": config.process,
        "seed": str(config.seed),
        "settings": "; ".join(config.pythia_settings()),
        "sigma_gen_mb": repr(sigma_mb),
    }
    return JetSample(
        config=config,
        event=np.arange(1, config.events + 1, dtype=np.int64),
        n_jets=np.asarray(n_jets, dtype=np.int32),
        jets={**float_jets, **int_jets},
        n_cands=np.asarray(n_cands, dtype=np.int32),
        cands=cands,
        seconds=seconds,
        meta=meta,
    )
