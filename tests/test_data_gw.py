"""LIGO-like strain: design-PSD noise, coupled witness noise, IMRPhenomD injections, HDF5."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lal", reason="needs the physics extra: pip install 'sonic[physics]'")
pytest.importorskip("h5py", reason="needs the physics extra: pip install 'sonic[physics]'")
signal = pytest.importorskip("scipy.signal", reason="needs the physics extra: pip install 'sonic[physics]'")

from sonic.data.gw import GWConfig, design_psd, generate_gw, optimal_snr, read_gw, write_gw  # noqa: E402
from sonic.protocol.errors import InvalidArgument  # noqa: E402

FS = 4096


@pytest.fixture(scope="module")
def sample():  # type: ignore[no-untyped-def]
    return generate_gw(GWConfig(duration=64, seed=5, injection_interval=32))


def test_design_psd_is_aligo() -> None:
    asd = np.sqrt(design_psd(np.array([0.0, 5.0, 100.0, 200.0]), 10.0))
    assert asd[0] == 0 and asd[1] == 0
    assert 3e-24 < asd[2] < 6e-24 and 3e-24 < asd[3] < 6e-24  # aLIGO design ~4e-24 /sqrt(Hz)


def test_noise_psd_matches_the_design(sample) -> None:  # type: ignore[no-untyped-def]
    f, p = signal.welch(sample.gaussian, FS, nperseg=4 * FS)
    d = design_psd(f)
    for lo, hi in ((20, 50), (50, 200), (200, 1000), (1000, 1900)):
        sel = (f >= lo) & (f < hi)
        assert np.mean(p[sel] / d[sel]) == pytest.approx(1.0, abs=0.1), (lo, hi)


def test_coupled_noise_is_at_60_and_120_hz(sample) -> None:  # type: ignore[no-untyped-def]
    f, p = signal.welch(sample.strain - sample.signal, FS, nperseg=8 * FS)
    d = design_psd(f)
    ratio = np.sqrt(p / np.where(d > 0, d, 1))
    at = {x: float(ratio[np.argmin(np.abs(f - x))]) for x in (60, 120, 90, 200)}
    assert at[60] > 30 and at[120] > 10
    assert at[90] < 1.5 and at[200] < 1.5
    # the coupling is non-linear: it is not a linear filter of the mains witness alone
    c = sample.coupled
    lin = np.linalg.lstsq(sample.witness["mains"][:, None], c, rcond=None)[0]
    assert np.std(c - sample.witness["mains"] * lin[0]) > 0.2 * np.std(c)


def test_injections_have_the_requested_snr(sample) -> None:  # type: ignore[no-untyped-def]
    inj = sample.injections
    assert len(inj["t_merger"]) == 2
    assert np.all((inj["mass1"] >= inj["mass2"]) & (inj["mass2"] >= 10) & (inj["mass1"] <= 50))
    for a, n in zip(inj["start_sample"].astype(int), inj["length"].astype(int), strict=True):
        lo = max(a, 0)
        assert optimal_snr(sample.signal[lo : a + n], FS, 20.0) == pytest.approx(20.0, rel=0.02)
    peak = np.argmax(np.abs(sample.signal[: 32 * FS])) / FS
    assert peak == pytest.approx(inj["t_merger"][0], abs=0.05)


def test_hdf5_is_reproducible_byte_for_byte(sample, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_gw(sample, a)
    write_gw(generate_gw(GWConfig(duration=64, seed=5, injection_interval=32)), b)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    back = read_gw(a)
    assert back.config == sample.config
    np.testing.assert_array_equal(back.strain, sample.strain)
    np.testing.assert_array_equal(back.witness["angular"], sample.witness["angular"])
    other = generate_gw(GWConfig(duration=64, seed=6, injection_interval=32))
    assert not np.array_equal(other.gaussian, sample.gaussian)


def test_config_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidArgument, match="duration"):
        GWConfig(duration=0)
    from sonic.data.cli import register

    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "g.h5"
    args = parser.parse_args(["data", "gw", "--duration", "8", "--seed", "2", "--snr", "0", "-o", str(out)])
    assert args.handler(args) == 0
    assert "sonic data gw: 8 s of strain" in capsys.readouterr().out
    assert len(read_gw(out).strain) == 8 * FS
