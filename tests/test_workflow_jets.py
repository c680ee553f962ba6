"""The CMS-like workflow (examples/workflows/jet_tagging.yaml) on Pythia 8 jets, three ways.

The same description runs with the shipped tagger in-process (``local``), against ``sonic
serve`` and against NVIDIA's Triton (the python-backend flavour of the same ONNX), switched
with ``sonic run --set``; the scores must agree, and match the ONNX run directly here.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import _require_triton, _triton, sonic_process
from sonic.cli import main
from sonic.models import weights_path
from sonic.models.repository import write_repository
from sonic.workflow import ConfigError, load_process, read_columns

pytest.importorskip("pythia8mc", reason="needs the physics extra: pip install 'sonic[physics]'")
ort = pytest.importorskip("onnxruntime")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jet_tagging.yaml + its modules, a tt̄ + W′ Pythia sample, both repository flavours."""
    from sonic.data.io import write_nanoaod
    from sonic.data.jets import JetGenConfig, generate_jets

    d = tmp_path_factory.mktemp("jets-workflow")
    for f in ("jet_tagging.yaml", "jet_tagger.py"):
        shutil.copy(EXAMPLES / f, d / f)
    for i, process in enumerate(("ttbar", "wprime")):
        sample = generate_jets(JetGenConfig(process, 25, seed=20 + i))
        write_nanoaod(
            d / f"{process}.root",
            event=sample.event + 1000 * i,
            collections={"FatJet": (sample.n_jets, sample.jets)},
        )
    write_repository(d / "models", ["jets_mlp"], max_batch_size=8)  # events of up to 4 jets: 1 request
    write_repository(d / "models_triton", ["jets_mlp"], backend="python", max_batch_size=8)
    return d


def _run(d: Path, tag: str, *sets: str) -> dict[str, Any]:
    out = f"out/{tag}.root"
    argv = ["run", str(d / "jet_tagging.yaml"), "-q", "--set", "source.files=[ttbar.root, wprime.root]"]
    argv += ["--set", f"sinks.0.path={out}", "--set", f"sinks.1.path=out/{tag}.parquet"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    return read_columns(d / out)


@pytest.fixture(scope="module")
def local(workdir: Path) -> dict[str, Any]:
    return _run(workdir, "local", "clients.tagger.transport=local", "clients.tagger.fallback=false")


def _expected(d: Path) -> np.ndarray:
    from sonic.data.io import read_nanoaod
    from sonic.data.jets import TAGGER_FEATURES

    feats = [
        np.stack([read_nanoaod(d / f"{p}.root")[f"FatJet_{n}"] for n in TAGGER_FEATURES], axis=1)
        for p in ("ttbar", "wprime")
    ]
    session = ort.InferenceSession(str(weights_path("jets_mlp")), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": np.concatenate(feats).astype(np.float32)})[0])


def test_local_scores_are_the_onnx_scores(workdir: Path, local: dict[str, Any]) -> None:
    scores = local["FatJet_score"]
    np.testing.assert_allclose(scores.content, _expected(workdir), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(local["FatJet_tag"].content, scores.content.argmax(axis=1))
    assert len(local["event"]) == 50
    # t t̄ → hadronic tops and W′ → WZ: the tagger should call most jets W, Z or t
    assert (np.isin(local["FatJet_tag"].content, [2, 3, 4])).mean() > 0.5


@pytest.mark.parametrize("kind", ["sonic", "triton"])
def test_same_scores_on_sonic_serve_and_triton(workdir: Path, local: dict[str, Any], kind: str) -> None:
    ctx: contextlib.AbstractContextManager[Any]
    if kind == "sonic":
        ctx = sonic_process(workdir / "models")
    else:
        _require_triton()
        ctx = _triton(workdir / "models_triton")
    with ctx as server:
        url = server.grpc_url
        served = _run(
            workdir, kind, f"clients.tagger.servers=[{url}]", "clients.tagger.fallback=false", "streams=4"
        )
    for column in ("event", "FatJet_pt", "FatJet_tag"):
        a, b = local[column], served[column]
        np.testing.assert_array_equal(getattr(a, "content", a), getattr(b, "content", b))
    np.testing.assert_allclose(
        served["FatJet_score"].content,
        local["FatJet_score"].content,
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clients.tagger.transport", "expected key.path=value"),
        ("clients.taggr.transport=local", r"no such key \(did you mean 'tagger'\?\)"),
        ("modules.7.params.label=W", "no item 7 in a list of 2"),
        ("name.x=1", "name is not a mapping or a list"),
        ("clients.tagger.transport=carrier-pigeon", "transport"),
    ],
)
def test_bad_overrides_are_clear(workdir: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_process(workdir / "jet_tagging.yaml", ["source.files=ttbar.root", override]).run()
