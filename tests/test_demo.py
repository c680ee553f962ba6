"""``sonic demo`` (the README's main job) and ``sonic models`` (the shipped models as a repository).

The demo is run for real: Pythia 8 jets, ``sonic serve`` on free ports, the workflow over gRPC,
the load. The test then reads the ROOT file the workflow wrote and checks it independently:
one score row per generated jet, equal to the shipped ONNX run here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonic.cli import main
from sonic.models import MODEL_NAMES, weights_path
from sonic.repository.config import load_model_config

pytest.importorskip("pythia8mc", reason="needs the physics extra: pip install 'sonic[physics]'")
ort = pytest.importorskip("onnxruntime")


def test_demo_runs_the_workflow_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sonic.data.io import read_nanoaod
    from sonic.data.jets import TAGGER_FEATURES
    from sonic.workflow import read_columns

    rc = main(["demo", "--events", "12", "--seconds", "0.3", "--concurrency", "2", "--keep", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "jet-tagging: 36 events" in out
    assert "tagger quality on the generator's truth" in out
    assert "lartpc_cnn grpc" in out and "jets_mlp   http" in out

    files = [tmp_path / "data" / f"jets_{p}.root" for p in ("qcd", "ttbar", "wprime")]
    inputs = np.concatenate(
        [np.stack([read_nanoaod(f)[f"FatJet_{n}"] for n in TAGGER_FEATURES], axis=1) for f in files]
    ).astype(np.float32)
    tagged = read_columns(tmp_path / "out" / "tagged.root")
    np.testing.assert_array_equal(tagged["event"], np.concatenate([read_nanoaod(f)["event"] for f in files]))
    session = ort.InferenceSession(str(weights_path("jets_mlp")), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": inputs})[0]
    np.testing.assert_allclose(tagged["FatJet_score"].content, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_sonic_models_writes_a_loadable_repository(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "-o", str(tmp_path), "--backend", backend, "--max-batch-size", "32"]) == 0
    assert "wrote jets_mlp, jets_particle, lartpc_cnn, deepclean" in capsys.readouterr().out
    for name in MODEL_NAMES:
        config = load_model_config(tmp_path / name)
        assert config.backend == backend
        assert config.max_batch_size == 32
        assert (tmp_path / name / "1" / "model.onnx").read_bytes() == weights_path(name).read_bytes()
        assert (tmp_path / name / "1" / "model.py").exists() == (backend == "python")
        session = ort.InferenceSession(str(weights_path(name)), providers=["CPUExecutionProvider"])
        assert [t.name for t in config.input] == [i.name for i in session.get_inputs()]
        assert [t.name for t in config.output] == [o.name for o in session.get_outputs()]
        # the batch dimension is the config's, not part of dims
        assert [list(t.dims) for t in config.input] == [
            list(_dims(i.shape)[1:]) for i in session.get_inputs()
        ]


def _dims(shape: list[object]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def test_sonic_models_lists_quality(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_NAMES:
        assert name in out
    assert '"t_vs_QCD_auc"' in out
