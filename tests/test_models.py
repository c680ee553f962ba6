"""Reference models: exports agree with PyTorch, metrics are right, training runs, inputs build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonic.models.metrics import classification_report, matched_filter_snr, roc_auc

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'sonic[torch]'")
pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'sonic[onnx]'")
pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (torch extra)")

from sonic.models.export import check_exports, example_inputs, export_onnx, export_torchscript  # noqa: E402
from sonic.models.nets import DeepClean, JetMLP, ParticleTagger, PatchCNN  # noqa: E402


@pytest.mark.parametrize("cls", [JetMLP, ParticleTagger, PatchCNN, DeepClean])
def test_onnx_and_torchscript_agree_with_pytorch(cls: type, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    if isinstance(model, DeepClean):  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    onnx_path = export_onnx(model, tmp_path / "m.onnx")
    ts_path = export_torchscript(model, tmp_path / "m.ts")
    diffs = check_exports(model, onnx_path, ts_path, batch=5)
    assert diffs["onnx"] <= 1e-5 and diffs["torchscript"] <= 1e-5, diffs
    # the batch dimension is dynamic
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    args = example_inputs(model, batch=1)
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
    assert out.shape[0] == 1


def test_serving_shapes_match_the_zoo_stand_ins() -> None:
    x = torch.rand(2, 16)
    assert JetMLP()(x).shape == (2, 5)
    assert PatchCNN()(torch.rand(2, 1, 48, 48)).shape == (2, 4)
    assert torch.allclose(JetMLP()(x).sum(1), torch.ones(2))
    assert DeepClean()(torch.rand(2, 3, 4096)).shape == (2, 4096)


def test_particle_tagger_ignores_padding_and_order() -> None:
    torch.manual_seed(1)
    model = ParticleTagger().eval()
    feats, mask = example_inputs(model, batch=2)
    garbage = feats + (1 - mask)[..., None] * 100.0
    perm = torch.randperm(50)
    with torch.no_grad():
        ref = model(feats, mask)
        assert torch.allclose(model(garbage, mask), ref, atol=1e-6)
        assert torch.allclose(model(feats[:, perm], mask[:, perm]), ref, atol=1e-6)


def test_roc_auc_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=300), 1)  # ties on purpose
    y = rng.uniform(size=300) < 0.4 + 0.2 * (s > 0)
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    brute = wins / (len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(brute)
    assert roc_auc(np.arange(10), np.arange(10) >= 5) == 1.0
    assert np.isnan(roc_auc(np.arange(3), np.zeros(3, dtype=bool)))
    prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    rep = classification_report(prob, np.array([0, 1, 1]), ("a", "b"))
    assert rep["accuracy"] == pytest.approx(2 / 3, abs=1e-3) and rep["per_class"]["b"]["accuracy"] == 0.5


def test_matched_filter_snr_recovers_a_known_signal() -> None:
    pytest.importorskip("scipy")
    rng = np.random.default_rng(3)
    fs, n = 1024, 64 * 1024
    t = np.arange(n) / fs
    pulse = np.exp(-(((t - 32) / 0.005) ** 2)) * np.sin(2 * np.pi * 200 * t)  # broadband
    h = pulse * 8.0 / np.sqrt(np.sum(pulse**2))  # unit white noise: optimal SNR = sqrt(sum h^2) = 8
    snrs = [matched_filter_snr(rng.normal(size=n) + h, h, fs, f_low=20.0) for _ in range(24)]
    assert np.mean(snrs) == pytest.approx(8.0, abs=0.6)  # the mean of 24 has an RMS of 0.2
    assert abs(matched_filter_snr(rng.normal(size=n), h, fs, f_low=20.0)) < 4


def test_particle_inputs_from_flat_branches() -> None:
    from sonic.models.features import particle_inputs

    jets = {
        "FatJet_pt": np.array([300.0, 250.0]),
        "FatJet_eta": np.array([0.0, 1.0]),
        "FatJet_phi": np.array([0.0, 3.1]),
        "FatJetPFCands_globalJet": np.array([0, 0, 1]),
        "FatJetPFCands_pt": np.array([200.0, 100.0, 250.0]),
        "FatJetPFCands_eta": np.array([0.1, -0.1, 1.0]),
        "FatJetPFCands_phi": np.array([0.0, 0.0, -3.1]),
        "FatJetPFCands_pdgId": np.array([211, 22, 13]),
        "FatJetPFCands_charge": np.array([1, 0, -1]),
    }
    f, m = particle_inputs(jets)
    assert f.shape == (2, 50, 10) and m.sum() == 3
    assert m[0, :2].tolist() == [1, 1] and m[1, 0] == 1 and m[1, 1] == 0
    assert f[0, 0, 6] == 1 and f[0, 1, 8] == 1 and f[1, 0, 9] == 1  # charged hadron, photon, lepton
    assert f[1, 0, 3] == pytest.approx(-6.2 + 2 * np.pi, abs=1e-5)  # dphi wraps


def test_training_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from sonic.data.lartpc import LArTPCConfig, generate_lartpc, write_lartpc
    from sonic.models.train import TrainConfig, train

    data = tmp_path / "l.h5"
    write_lartpc(generate_lartpc(LArTPCConfig(events=3, seed=2, keep_images=False)), data)
    cfg = TrainConfig(
        model="lartpc_cnn", out_dir=tmp_path / "out", epochs=1, threads=1, data=[data], log=lambda m: None
    )
    report = train(cfg)
    assert report["export_max_abs_diff"]["onnx"] <= 1e-5
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"lartpc_cnn.pt", "lartpc_cnn.onnx", "lartpc_cnn.json"}
