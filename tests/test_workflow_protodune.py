"""The ProtoDUNE-like workflow of examples/workflows (protodune.yaml + protodune.py).

A few toy events from ``protodune.prepare`` (the ``sonic data lartpc`` generator and the
shipped ``lartpc_cnn`` as a model repository), run through the shipped YAML with only the
input, the output paths and the client changed: in-process (``local``), against ``sonic serve``
over gRPC, and against NVIDIA's Triton serving the python-backend flavour. The three must
agree: the same hits, the same argmax labels and cluster counts, scores within
``SCORE_ATOL``. The in-process run is also checked against onnxruntime called directly on
patches cut in this file, and against the generator's truth.

Tolerance: every server runs the same ONNX file with onnxruntime (one thread); a server's
dynamic batcher may concatenate two events' requests, and a ragged event is split in
another place, so the same patch can go through a differently shaped batch. onnxruntime's
CPU kernels are then free to round differently; ``SCORE_ATOL`` = 1e-5 on probabilities in
[0, 1] allows that and nothing else (a wrong patch or a wrong normalisation moves them by
far more). Seen on this machine: identical bits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import _require_triton, _triton, example_module, sonic_process
from sonic.data.lartpc import read_lartpc
from sonic.models import weights_path
from sonic.models.repository import write_repository
from sonic.workflow import Chunk, Event, Report, process_from_mapping, read_columns

yaml = pytest.importorskip("yaml")
pytest.importorskip("scipy")
pytest.importorskip("pyarrow")
ort = pytest.importorskip("onnxruntime")

WORKFLOWS = Path(__file__).resolve().parents[1] / "examples" / "workflows"
EVENTS = 6
SEED = 5
SMALL_BATCH = 64  # max_batch_size of the repository that makes every event ragged
SCORE_ATOL = 1e-5
HALF = 24  # half a 48x48 patch


protodune = example_module("protodune.py")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """protodune.h5, models/ (sonic), models_triton/ (Triton), and models_small/ (batch 64)."""
    dest = tmp_path_factory.mktemp("protodune")
    protodune.prepare(dest, EVENTS, SEED)
    write_repository(dest / "models_small", ["lartpc_cnn"], max_batch_size=SMALL_BATCH)
    return dest


def run_workflow(sample: Path, out: Path, client: dict[str, Any]) -> tuple[dict[str, Any], Report]:
    """The shipped protodune.yaml on ``sample`` with ``client``; the parquet output, the report."""
    data = yaml.safe_load((WORKFLOWS / "protodune.yaml").read_text())
    data["source"]["files"] = str(sample / "protodune.h5")
    for sink in data["sinks"]:
        sink["path"] = str(out / Path(sink["path"]).name)
    data["clients"] = {"cnn": client}
    data["streams"] = 4
    process = process_from_mapping(data, base_dir=WORKFLOWS, file="protodune.yaml")
    report = process.run(progress=False)
    assert report.events == report.written == EVENTS
    return read_columns(out / "protodune.parquet"), report


@pytest.fixture(scope="module")
def local_run(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    client = {"model": "lartpc_cnn", "transport": "local", "repository": [str(sample / "models")]}
    out, _ = run_workflow(sample, tmp_path_factory.mktemp("out-local"), client)
    return out


def reference(sample: Path) -> list[dict[str, np.ndarray]]:
    """Per event, computed here without the workflow's code: hits (numpy sliding-window
    maxima), patches (slices of the zero-padded image) and onnxruntime's scores."""
    data = read_lartpc(sample / "protodune.h5")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(weights_path("lartpc_cnn")), options, providers=["CPUExecutionProvider"]
    )
    events = []
    for image, truth in zip(data.images, data.truth, strict=True):
        padded = np.pad(image, ((0, 0), (2, 2)), mode="edge")
        peak = np.lib.stride_tricks.sliding_window_view(padded, 5, axis=1).max(axis=2)
        wire, time = np.nonzero((image >= 6.0) & (image == peak))
        zero = np.pad(image, HALF)
        patches = np.stack(
            [zero[w : w + 2 * HALF, t : t + 2 * HALF] for w, t in zip(wire, time, strict=True)]
        )
        scores = session.run(None, {"input": patches[:, None]})[0]
        events.append({"wire": wire, "time": time, "truth": truth[wire, time], "score": scores})
    return events


def rows(column: Any) -> list[np.ndarray]:
    return [np.asarray(column[i]) for i in range(len(column))]


def assert_same_output(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Identical hits, labels, clusters and counts; scores within SCORE_ATOL."""
    for name in ("event", "n_hits", "n_track", "n_shower", "n_michel", "true_michel"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{what}: {name}")
    for name in ("hit_wire", "hit_time", "hit_truth", "patch_label", "hit_cluster", "cluster_label"):
        assert got[name].equals(want[name]), f"{what}: {name} differs"
    for name in ("patch_score", "cluster_score"):
        np.testing.assert_array_equal(got[name].offsets, want[name].offsets, err_msg=f"{what}: {name}")
        np.testing.assert_allclose(
            got[name].content, want[name].content, rtol=0, atol=SCORE_ATOL, err_msg=f"{what}: {name}"
        )


# -- the pieces ------------------------------------------------------------------------------------


def test_patches_are_cut_as_for_training(sample: Path) -> None:
    """CutPatches at the generator's own patch centres gives the generator's (training) patches."""
    data = read_lartpc(sample / "protodune.h5")
    checked = 0
    for i in range(EVENTS):
        sel = data.patch_event == i
        chunk = Chunk({"image": data.images[i : i + 1]}, 1)
        event = Event(chunk, 0)
        event["hit_wire"] = data.patch_wire[sel].astype(np.int32)
        event["hit_time"] = data.patch_time[sel].astype(np.int32)
        protodune.CutPatches().produce(event)
        np.testing.assert_array_equal(event["patches"], data.patches[sel])
        checked += int(sel.sum())
    assert checked > 4 * EVENTS


def test_clusters_of_a_drawn_event() -> None:
    """Two separate track lines, one shower blob, three Michel hits (below min_hits=5)."""
    image = np.zeros((64, 96), dtype=np.float32)
    hits = [(w, 10, 1) for w in range(5, 25)]  # a track along the wires
    hits += [(40, t, 1) for t in range(20, 60, 5)]  # a track along the drift, hits 5 ticks apart
    hits += [(w, t, 2) for w in range(50, 56) for t in (70, 73)]  # a shower blob
    hits += [(25, 12, 3), (26, 13, 3), (27, 14, 3)]  # a Michel stub at the first track's end
    wire, time, label = (np.array(x) for x in zip(*hits, strict=True))
    scores = np.eye(4, dtype=np.float32)[label] * 0.7 + 0.075
    event = Event(Chunk({"image": image[None]}, 1), 0)
    event.products.update(hit_wire=wire, hit_time=time, patch_label=label, patch_score=scores)
    protodune.ClusterHits(link_wires=1, link_ticks=2, min_hits=5).produce(event)
    # the hits along the drift are 5 ticks apart: linked (boxes of +-2 ticks touch)
    assert (event["n_track"], event["n_shower"], event["n_michel"]) == (2, 1, 0)
    np.testing.assert_array_equal(event["cluster_label"], [1, 1, 2])
    np.testing.assert_array_equal(event["cluster_size"], [20, 8, 12])
    np.testing.assert_array_equal(event["hit_cluster"], [0] * 20 + [1] * 8 + [2] * 12 + [-1] * 3)
    np.testing.assert_allclose(event["cluster_score"], scores[[0, 20, 28]], rtol=1e-6)
    protodune.ClusterHits(link_wires=1, link_ticks=1, min_hits=1).produce(event)
    assert (event["n_track"], event["n_shower"], event["n_michel"]) == (9, 1, 1)  # drift hits unlinked


# -- the whole workflow --------------------------------------------------------------------------


def test_in_process_matches_onnxruntime_and_truth(sample: Path, local_run: dict[str, Any]) -> None:
    want = reference(sample)
    got = local_run
    np.testing.assert_array_equal(got["event"], np.arange(EVENTS))
    np.testing.assert_array_equal(got["n_hits"], [len(e["wire"]) for e in want])
    for i, (w, t, truth, s) in enumerate(
        zip(
            rows(got["hit_wire"]),
            rows(got["hit_time"]),
            rows(got["hit_truth"]),
            rows(got["patch_score"]),
            strict=True,
        )
    ):
        np.testing.assert_array_equal(w, want[i]["wire"])
        np.testing.assert_array_equal(t, want[i]["time"])
        np.testing.assert_array_equal(truth, want[i]["truth"])
        np.testing.assert_allclose(s, want[i]["score"], rtol=0, atol=SCORE_ATOL)
    label = got["patch_label"].content
    np.testing.assert_array_equal(label, got["patch_score"].content.argmax(axis=1))
    # one request per event up to the model's max_batch_size (256), a ragged batch beyond
    np.testing.assert_array_equal(got["n_requests"], [math.ceil(n / 256) for n in got["n_hits"]])

    # physics: the CNN's labels against the generator's truth at the hit
    truth = got["hit_truth"].content
    accuracy = float((label == truth).mean())
    majority = float(np.bincount(truth).max() / len(truth))
    assert accuracy > max(0.75, majority + 0.1), (accuracy, majority)
    for cls in (1, 2):  # track, shower: most of their hits recognised
        assert (label[truth == cls] == cls).mean() > 0.6, cls
    # clusters: every hit of a cluster has its cluster's predicted class, the counts add up
    for hc, lab, cl, size in zip(
        rows(got["hit_cluster"]),
        rows(got["patch_label"]),
        rows(got["cluster_label"]),
        rows(got["cluster_size"]),
        strict=True,
    ):
        np.testing.assert_array_equal(np.bincount(hc[hc >= 0], minlength=len(cl)), size)
        assert (size >= 5).all()
        assert all(set(lab[hc == j]) == {cl[j]} for j in range(len(cl)))
    for cls, name in ((1, "n_track"), (2, "n_shower"), (3, "n_michel")):
        np.testing.assert_array_equal(got[name], [int((c == cls).sum()) for c in rows(got["cluster_label"])])
    assert got["n_track"].sum() >= EVENTS  # every event throws at least one muon


def test_sonic_serve_ragged_same_output(sample: Path, local_run: dict[str, Any], tmp_path: Path) -> None:
    """sonic serve over gRPC, max_batch_size 64: every event is a ragged batch; same output."""
    with sonic_process(sample / "models_small") as server:
        client = {"model": "lartpc_cnn", "transport": "grpc", "servers": [server.grpc_url]}
        got, report = run_workflow(sample, tmp_path, client)
    assert_same_output(got, local_run, "sonic serve (batch 64) vs local")
    expected = [math.ceil(n / SMALL_BATCH) for n in got["n_hits"]]
    np.testing.assert_array_equal(got["n_requests"], expected)
    assert min(expected) >= 2, "the sample should make every event ragged"
    [c] = report.clients
    assert c.requests == sum(expected) and c.failures == 0
    assert c.by_server == {server.grpc_url: sum(expected)}
    assert c.server_side and c.server_side[0]["requests"] == sum(expected)


@pytest.mark.triton
def test_triton_python_backend_same_output(sample: Path, local_run: dict[str, Any], tmp_path: Path) -> None:
    """NVIDIA Triton serving models_triton/ (python backend + onnxruntime): same output."""
    _require_triton()
    with _triton(sample / "models_triton") as triton:
        client = {"model": "lartpc_cnn", "transport": "grpc", "servers": [triton.grpc_url]}
        got, report = run_workflow(sample, tmp_path, client)
    assert_same_output(got, local_run, "Triton vs local")
    [c] = report.clients
    assert c.requests == int(got["n_requests"].sum()) and c.failures == 0
    assert c.by_server == {triton.grpc_url: c.requests}
