"""Pythia 8 + FastJet jets: substructure maths, the NanoAOD-like TTree, seeds, physics sanity."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from sonic.data.jets import (
    CAND_FIELDS,
    JET_FEATURES,
    LABELS,
    TAGGER_FEATURES,
    JetGenConfig,
    JetSample,
    ecf_ratios,
    nsubjettiness,
)
from sonic.protocol.errors import InvalidArgument

pytest.importorskip("pythia8mc", reason="needs the physics extra: pip install 'sonic[physics]'")
pytest.importorskip("fastjet", reason="needs the physics extra: pip install 'sonic[physics]'")
uproot = pytest.importorskip("uproot", reason="needs the physics extra: pip install 'sonic[physics]'")

from sonic.data.io import read_nanoaod, write_nanoaod  # noqa: E402
from sonic.data.jets import generate_jets  # noqa: E402


def _write(sample: JetSample, path: Path) -> None:
    write_nanoaod(
        path,
        event=sample.event,
        collections={"FatJet": (sample.n_jets, sample.jets), "FatJetPFCands": (sample.n_cands, sample.cands)},
        meta=sample.meta,
    )


@pytest.fixture(scope="module")
def qcd(tmp_path_factory: pytest.TempPathFactory) -> tuple[JetSample, Path]:
    sample = generate_jets(JetGenConfig("qcd", 4, seed=11))
    path = tmp_path_factory.mktemp("jets") / "qcd.root"
    _write(sample, path)
    return sample, path


def test_ecf_ratios_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    pt, y, phi = rng.uniform(1, 50, 7), rng.normal(0, 0.3, 7), rng.normal(0, 0.3, 7)
    z = pt / pt.sum()

    def dr(i: int, j: int) -> float:
        dphi = (phi[i] - phi[j] + math.pi) % (2 * math.pi) - math.pi
        return math.hypot(y[i] - y[j], dphi)

    for beta in (1.0, 2.0):
        e2 = sum(z[i] * z[j] * dr(i, j) ** beta for i, j in itertools.combinations(range(7), 2))
        e3 = sum(
            z[i] * z[j] * z[k] * (dr(i, j) * dr(j, k) * dr(i, k)) ** beta
            for i, j, k in itertools.combinations(range(7), 3)
        )
        c2, d2 = ecf_ratios(pt, y, phi, beta)
        assert c2 == pytest.approx(e3 / e2**2, rel=1e-9)
        assert d2 == pytest.approx(e3 / e2**3, rel=1e-9)
    assert ecf_ratios(pt[:2], y[:2], phi[:2], 1.0) == (0.0, 0.0)


def test_nsubjettiness_is_zero_on_its_own_axes() -> None:
    pt, y, phi = np.array([100.0, 50.0]), np.array([0.0, 0.4]), np.array([0.0, 0.0])
    assert nsubjettiness(pt, y, phi, [(0.0, 0.0), (0.4, 0.0)], 0.8) == 0.0
    # one axis on the hard prong: tau1 = 50 * 0.4 / (150 * 0.8)
    assert nsubjettiness(pt, y, phi, [(0.0, 0.0)], 0.8) == pytest.approx(50 * 0.4 / (150 * 0.8))


def test_config_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="unknown process 'ttbarr'"):
        JetGenConfig("ttbarr", 1)
    with pytest.raises(InvalidArgument, match="seeds"):
        JetGenConfig("qcd", 1, seed=-1)


def test_root_file_is_a_nanoaod_like_ttree(qcd: tuple[JetSample, Path]) -> None:
    sample, path = qcd
    with uproot.open(path) as f:
        assert f.classnames()["Events;1"] == "TTree"
        tree = f["Events"]
        assert tree.num_entries == 4
        keys = set(tree.keys())
    expected = {"event", "nFatJet", "nFatJetPFCands"}
    expected |= {f"FatJet_{n}" for n in (*JET_FEATURES, "nConstituents", "nCharged", "label", "truthPdgId")}
    expected |= {f"FatJetPFCands_{n}" for n in CAND_FIELDS}
    assert expected <= keys
    d = read_nanoaod(path)
    n_jets = int(d["nFatJet"].sum())
    assert n_jets == len(d["FatJet_pt"]) == len(sample.jets["pt"]) >= 4  # a dijet sample
    assert np.all(d["FatJet_pt"] > 200) and np.all(np.abs(d["FatJet_eta"]) < 2.4)
    assert np.all(d["FatJet_msoftdrop"] <= d["FatJet_mass"] + 1e-3)
    assert set(np.unique(d["FatJet_label"])) <= {-1, 0, 1}  # QCD: g, q (or unmatched)
    # constituents: at most 50 per jet, p_T-ordered, jetIdx within the event's jets
    first = np.repeat(np.cumsum(d["nFatJet"]) - d["nFatJet"], d["nFatJetPFCands"])
    gj = first + d["FatJetPFCands_jetIdx"]
    assert np.all(d["FatJetPFCands_jetIdx"] < np.repeat(d["nFatJet"], d["nFatJetPFCands"]))
    per_jet = np.bincount(gj, minlength=n_jets)
    assert np.all(per_jet == np.minimum(d["FatJet_nConstituents"], 50))
    for j in range(n_jets):
        pts = d["FatJetPFCands_pt"][gj == j]
        assert np.all(np.diff(pts) <= 1e-4)
    assert sample.tagger_inputs().shape == (n_jets, len(TAGGER_FEATURES))


def test_same_seed_same_file_contents(qcd: tuple[JetSample, Path], tmp_path: Path) -> None:
    _, path = qcd
    again = generate_jets(JetGenConfig("qcd", 4, seed=11))
    _write(again, tmp_path / "again.root")
    a, b = read_nanoaod(path), read_nanoaod(tmp_path / "again.root")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    other = generate_jets(JetGenConfig("qcd", 4, seed=12))
    assert not np.array_equal(other.jets["pt"][:2], again.jets["pt"][:2])


def test_wprime_jets_are_w_and_z_with_the_right_mass() -> None:
    s = generate_jets(JetGenConfig("wprime", 30, seed=3))
    label = s.jets["label"]
    msd = s.jets["msoftdrop"]
    w, z = label == LABELS.index("W"), label == LABELS.index("Z")
    assert w.sum() >= 10 and z.sum() >= 10
    assert 70.0 < float(np.median(msd[w])) < 90.0  # m_W = 80.4 GeV
    assert 80.0 < float(np.median(msd[z])) < 100.0  # m_Z = 91.2 GeV
    # two-prong: tau21 lower than in QCD jets (~0.6-0.7)
    assert float(np.median(s.jets["tau21"][w | z])) < 0.45


def test_ttbar_has_top_jets() -> None:
    s = generate_jets(JetGenConfig("ttbar", 15, seed=4))
    top = s.jets["label"] == LABELS.index("t")
    assert top.sum() >= 2
    assert 140.0 < float(np.median(s.jets["msoftdrop"][top])) < 210.0
    assert set(np.unique(s.jets["label"])) <= {-1, 1, 2, 4}  # q (b), W, t


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sonic.data.cli import register

    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "w.root"
    argv = ["data", "jets", "--process", "wprime", "--events", "2", "--seed", "5", "-o", str(out)]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    assert "sonic data jets: 2 events" in capsys.readouterr().out
    assert read_nanoaod(out)["nFatJet"].shape == (2,)
