"""Network inputs from the generated files (numpy only; shared by training and workflows).

The workflows build the same inputs on the client side before sending them through SONIC,
so these functions are the one definition of what each network expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "N_CONSTITUENTS",
    "PF_FEATURES",
    "jet_inputs",
    "load_jets",
    "particle_inputs",
]

N_CONSTITUENTS = 50
PF_FEATURES = (
    "log_pt",
    "log_ptrel",
    "deta",
    "dphi",
    "dr",
    "charge",
    "is_charged_hadron",
    "is_neutral_hadron",
    "is_photon",
    "is_lepton",
)


def load_jets(paths: list[Path] | list[str]) -> dict[str, npt.NDArray[Any]]:
    """Concatenate the branches of NanoAOD-like jet files, with ``FatJetPFCands_globalJet``.

    ``FatJetPFCands_globalJet`` is the constituent's jet index in the concatenated
    ``FatJet_*`` arrays (``FatJetPFCands_jetIdx`` counts within an event).
    """
    from sonic.data.io import read_nanoaod

    parts: list[dict[str, npt.NDArray[Any]]] = []
    jet_offset = 0
    for p in paths:
        d = read_nanoaod(p)
        n_jets, n_cands = d["nFatJet"].astype(np.int64), d["nFatJetPFCands"].astype(np.int64)
        first_jet = np.cumsum(n_jets) - n_jets
        ev_of_cand = np.repeat(np.arange(len(n_cands)), n_cands)
        d["FatJetPFCands_globalJet"] = first_jet[ev_of_cand] + d["FatJetPFCands_jetIdx"] + jet_offset
        jet_offset += int(n_jets.sum())
        parts.append(d)
    keys = [k for k in parts[0] if k.startswith(("FatJet_", "FatJetPFCands_"))]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def jet_inputs(jets: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    """(n_jets, 16) MLP inputs in :data:`sonic.data.jets.TAGGER_FEATURES` order."""
    from sonic.data.jets import TAGGER_FEATURES

    return np.stack([np.asarray(jets[f"FatJet_{n}"], dtype=np.float32) for n in TAGGER_FEATURES], axis=1)


def particle_inputs(
    jets: dict[str, npt.NDArray[Any]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(features (n_jets, 50, 10), mask (n_jets, 50)) of the particle-level tagger.

    Constituents are stored p_T-ordered per jet; padded rows are zero with mask 0.
    """
    n_jets = len(jets["FatJet_pt"])
    gj = np.asarray(jets["FatJetPFCands_globalJet"], dtype=np.int64)
    first = np.searchsorted(gj, np.arange(n_jets))
    pos = np.arange(len(gj)) - first[gj]
    keep = pos < N_CONSTITUENTS
    gj, pos = gj[keep], pos[keep]
    pt = jets["FatJetPFCands_pt"][keep].astype(np.float64)
    eta = jets["FatJetPFCands_eta"][keep].astype(np.float64)
    phi = jets["FatJetPFCands_phi"][keep].astype(np.float64)
    pdg = np.abs(jets["FatJetPFCands_pdgId"][keep])
    charge = jets["FatJetPFCands_charge"][keep].astype(np.float64)
    jpt = jets["FatJet_pt"].astype(np.float64)[gj]
    deta = eta - jets["FatJet_eta"].astype(np.float64)[gj]
    dphi = (phi - jets["FatJet_phi"].astype(np.float64)[gj] + np.pi) % (2 * np.pi) - np.pi
    lepton = (pdg == 11) | (pdg == 13)
    photon = pdg == 22
    cols = [
        np.log(np.maximum(pt, 1e-3)),
        np.log(np.maximum(pt / jpt, 1e-6)),
        deta,
        dphi,
        np.hypot(deta, dphi),
        charge,
        ((charge != 0) & ~lepton).astype(np.float64),
        ((charge == 0) & ~photon).astype(np.float64),
        photon.astype(np.float64),
        lepton.astype(np.float64),
    ]
    feats = np.zeros((n_jets, N_CONSTITUENTS, len(PF_FEATURES)), dtype=np.float32)
    mask = np.zeros((n_jets, N_CONSTITUENTS), dtype=np.float32)
    feats[gj, pos] = np.stack(cols, axis=1)
    mask[gj, pos] = 1.0
    return feats, mask
