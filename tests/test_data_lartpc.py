"""The toy ProtoDUNE-like LArTPC: stopping power, MIP dE/dx, truth, patches, seeds."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest

from sonic.data.lartpc import (
    CLASSES,
    MICHEL,
    MMU,
    NONE,
    PATCH,
    LArTPCConfig,
    bethe_dedx,
    cut_patches,
    generate_lartpc,
    simulate_event,
)

pytest.importorskip("scipy", reason="needs the physics extra: pip install 'sonic[physics]'")


def test_bethe_minimum_is_2_1_mev_per_cm_and_rises_at_low_energy() -> None:
    dedx = np.array([bethe_dedx(ke, MMU) for ke in np.linspace(50, 3000, 300)])
    assert dedx.min() == pytest.approx(2.12, abs=0.05)  # PDG: 2.12 MeV/cm in LAr
    assert bethe_dedx(10.0, MMU) > 5.0  # Bragg rise
    assert bethe_dedx(100.0, 938.272) > 5.0  # protons are heavily ionising


def test_mip_tracks_deposit_2_1_mev_per_cm() -> None:
    cfg = LArTPCConfig(events=1, seed=1, muons=(2, 2), protons=(0, 0), showers=(0, 0))
    rng = np.random.Generator(np.random.PCG64(3))
    e, dx = [], []
    for _ in range(5):
        d = simulate_event(cfg, rng).deposits
        mip = (d["pdg"] == 13) & (d["ke"] > 250) & (d["ke"] < 1000) & (d["dx"] > 0)
        e.append(d["e"][mip])
        dx.append(d["dx"][mip])
    de, ln = np.concatenate(e), np.concatenate(dx)
    assert len(de) > 200
    assert de.sum() / ln.sum() == pytest.approx(2.15, abs=0.15)  # mean dE/dx of a MIP
    per_cm = de / ln
    assert np.median(per_cm) < de.sum() / ln.sum()  # Landau-like: skewed to high losses
    # the image sees it too: a MIP crossing a wire makes ~25 ADC (collection, 6-tick mean)


def test_event_truth_and_patches() -> None:
    s = generate_lartpc(LArTPCConfig(events=4, seed=7, patches_per_class=3))
    assert s.images.shape == (4, 256, 384) and s.truth.shape == s.images.shape
    assert set(np.unique(s.truth)) <= set(range(len(CLASSES)))
    assert s.patches.shape[1:] == (PATCH, PATCH)
    # each patch's label is its centre pixel's truth, and the patch is cut from the image
    for i in range(len(s.patch_label)):
        ev, w, t = s.patch_event[i], s.patch_wire[i], s.patch_time[i]
        assert s.truth[ev, w, t] == s.patch_label[i]
        assert s.patches[i, PATCH // 2, PATCH // 2] == s.images[ev, w, t]
    # dead wires read zero and are labelled none
    ev_dead = np.argwhere(s.dead)
    for ev, w in ev_dead:
        assert np.all(s.images[ev, w] == 0) and np.all(s.truth[ev, w] == NONE)
    # track pixels are far above the noise; quiet pixels are noise
    track = s.truth == 1
    assert np.median(s.images[track]) > 8 * LArTPCConfig(events=0).pixel_noise
    assert abs(float(np.median(s.images[s.truth == NONE]))) < 1.0


def test_stopping_muons_make_michel_electrons() -> None:
    cfg = LArTPCConfig(events=1, seed=1, muons=(3, 3), muon_ke=(50, 150), michel_prob=1.0, showers=(0, 0))
    rng = np.random.Generator(np.random.PCG64(5))
    ev = simulate_event(cfg, rng)
    assert ev.n_michel >= 1
    michel = ev.deposits["label"] == MICHEL
    assert 0 < ev.deposits["e"][michel].sum() <= 52.83 * ev.n_michel


def test_cut_patches_pads_at_the_edges() -> None:
    img = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    p = cut_patches(img, np.array([[0, 0], [50, 60]]))
    assert p.shape == (2, PATCH, PATCH)
    assert p[0, 0, 0] == 0 and p[0, 24, 24] == img[0, 0]
    np.testing.assert_array_equal(p[1], img[26:74, 36:84])


def test_reproducible_hdf5_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("h5py")
    from sonic.data.cli import register
    from sonic.data.lartpc import read_lartpc

    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for p in paths:
        args = parser.parse_args(["data", "lartpc", "--events", "2", "--seed", "9", "-o", str(p)])
        assert args.handler(args) == 0
    assert "sonic data lartpc: 2 events" in capsys.readouterr().out
    assert hashlib.sha256(paths[0].read_bytes()).digest() == hashlib.sha256(paths[1].read_bytes()).digest()
    back = read_lartpc(paths[0])
    assert back.images.shape == (2, 256, 384) and back.config.seed == 9
