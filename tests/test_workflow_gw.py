"""The LIGO-like noise-cleaning workflow (examples/workflows/deepclean.yaml) and its HDF5 parts.

The parts first: :class:`H5Source` cutting a time series into frames with context either side
(``frame``, ``context``, ``pad``), and :class:`H5Sink` (plain, jagged and ``concat`` columns,
attributes, the atomic finish, parts merged in order). Then the workflow itself, on 24 s of
strain from ``sonic data gw``'s generator written by the example's own ``prepare()``: in
process (``local``), through ``sonic run`` against ``sonic serve`` over gRPC, on a Dask
LocalCluster, and against NVIDIA's Triton serving the python-backend flavour. Every run must
give the cleaned strain that :func:`sonic.models.train.clean` computes offline with the
PyTorch model, and reduce the noise at 60 and 120 Hz.

Tolerances (the cleaned strain is float64, the network float32):

- between runs (ONNX Runtime in process, in ``sonic serve``, in Triton's python backend):
  |Δ| ≤ 1e-6 of the largest predicted noise sample. The same ONNX file runs with one thread
  everywhere; only the batches the servers form differ, and ORT's CPU kernels may round a
  sequence differently in another batch (a few float32 ulps; here they happen to agree
  exactly).
- against ``clean()``: |Δ| ≤ 1e-5 of the largest noise sample: PyTorch and ORT differ by
  ≤ 6e-7 in network units (the export check in ``deepclean.json``); here ~1e-7 relative. A
  frame shifted by one sample, or a band-pass left out, is off by >1e-2.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import _require_triton, _triton, example_module, sonic_process
from sonic.protocol.errors import InvalidArgument
from sonic.workflow import (
    ArraySource,
    ConfigError,
    Event,
    H5Sink,
    H5Source,
    Module,
    Process,
    WorkflowError,
    load_process,
    process_from_mapping,
    read_columns,
)
from sonic.workflow.cli import register

h5py = pytest.importorskip("h5py")
yaml = pytest.importorskip("yaml")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"
SECONDS = 24
SEED = 11
FS = 4096
BETWEEN_RUNS = 1e-6  # of max |noise|: see the module doc
VS_CLEAN = 1e-5


# -- H5Source: frames with context --------------------------------------------------------------


@pytest.fixture()
def series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """50 rows: ``x`` (50,) float64 and ``y`` (50, 2) int32, in one file."""
    x = np.arange(50, dtype=np.float64) ** 1.5
    y = np.stack([np.arange(50), -np.arange(50)], axis=1).astype(np.int32)
    path = tmp_path / "series.h5"
    with h5py.File(path, "w") as f:
        f["ts/x"] = x
        f["ts/y"] = y
    return path, x, y


def _events(src: H5Source) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for chunk in src.chunks():
        for name, col in chunk.columns.items():
            out.setdefault(name, []).extend(list(col))
    return out


def test_h5source_frames_carry_reflected_context(series: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, y = series
    src = H5Source(path, {"x": "ts/x", "y": "ts/y"}, frame=8, context=3, step_size=4)
    assert len(src) == 6  # 50 // 8: the last 2 rows make no frame
    ev = _events(src)
    px = np.pad(x, (3, 3), mode="reflect")
    py = np.pad(y, ((3, 3), (0, 0)), mode="reflect")
    assert len(ev["x"]) == 6
    for i in range(6):
        np.testing.assert_array_equal(ev["x"][i], px[i * 8 : i * 8 + 14])
        np.testing.assert_array_equal(ev["y"][i], py[i * 8 : i * 8 + 14])
    assert ev["y"][0].dtype == np.int32 and ev["y"][0].shape == (14, 2)
    # frames are independent: partitions (Dask's split) read the same rows as the whole
    parts = src.split(3)
    assert len(parts) == 3
    joined = [a for p in parts for a in _events(p)["x"]]
    for a, b in zip(joined, ev["x"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_events(src.head(2))["x"][1], px[8:22])


def test_h5source_asymmetric_context_and_zero_padding(series: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, x, _ = series
    src = H5Source(path, ["ts/x"], frame=10, context=[4, 2], pad="zero")
    ev = _events(src)["ts/x"]
    padded = np.concatenate([np.zeros(4), x, np.zeros(2)])
    assert len(ev) == 5
    for i in range(5):
        np.testing.assert_array_equal(ev[i], padded[i * 10 : i * 10 + 16])
    # without context, a frame is just the rows
    plain = _events(H5Source(path, ["ts/x"], frame=10))["ts/x"]
    np.testing.assert_array_equal(np.concatenate(plain), x)


def test_h5source_frame_errors(series: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = series
    with pytest.raises(InvalidArgument, match="'context' needs 'frame'"):
        H5Source(path, ["ts/x"], context=2)
    with pytest.raises(InvalidArgument, match="pad must be one of"):
        H5Source(path, ["ts/x"], frame=4, pad="wrap")
    with pytest.raises(InvalidArgument, match="context must be"):
        H5Source(path, ["ts/x"], frame=4, context=-1)
    with pytest.raises(InvalidArgument, match="too few to reflect"):
        len(H5Source(path, ["ts/x"], frame=4, context=50))
    assert len(H5Source(path, ["ts/x"], frame=4, context=50, pad="zero")) == 12


def test_h5source_frames_from_yaml(series: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path, _, _ = series
    desc: dict[str, Any] = {
        "source": {"type": "hdf5", "file": path.name, "datasets": {"x": "ts/x"}, "frame": 5, "context": 1},
        "modules": [{"module": "sonic.workflow.modules:Copy", "params": {"columns": {"x": "x2"}}}],
    }
    process = process_from_mapping(desc, base_dir=tmp_path)
    assert isinstance(process.source, H5Source)
    assert (process.source.frame, process.source.context, process.source.step_size) == (5, (1, 1), 16)
    assert len(process.source) == 10
    desc["source"]["frame"] = 0
    with pytest.raises(ConfigError, match="frame must be an integer >= 1"):
        process_from_mapping(desc, base_dir=tmp_path)


# -- H5Sink -----------------------------------------------------------------------------------------


class Products(Module):
    """A fixed-shape frame, a jagged collection and a string per event."""

    def produce(self, event: Event) -> None:
        i = int(event["i"])
        event.put("frame", np.arange(4, dtype=np.float32) + 4 * i, fixed=True)
        event["hits"] = np.full((i % 3, 2), i, dtype=np.int64)
        event["label"] = f"ev{i}"


def _products_process(sink: H5Sink, n: int = 10, fail_at: int | None = None) -> Process:
    class Fails(Module):
        def produce(self, event: Event) -> None:
            if event.index == fail_at:
                raise RuntimeError("boom")

    return Process(
        ArraySource({"i": np.arange(n), "w": np.linspace(0, 1, n)}, step_size=3),
        [Products(), Fails()],
        [sink],
        streams=2,
    )


def test_h5sink_writes_columns_jagged_and_concatenated(tmp_path: Path) -> None:
    path = tmp_path / "out" / "p.h5"
    sink = H5Sink(
        path, ["i", "w", "frame", "hits", "label", "grid/frame2"], concat=["frame"], attrs={"fs": 4096}
    )

    class Copy2(Module):
        def produce(self, event: Event) -> None:
            event.put("grid/frame2", np.asarray(event["frame"]).reshape(2, 2), fixed=True)

    process = _products_process(sink)
    process.modules.append(Copy2())
    report = process.run(progress=False)
    assert report.outputs == [str(path)]
    got = read_columns(path)
    assert list(got) == ["i", "w", "frame", "hits", "label", "grid/frame2"]
    np.testing.assert_array_equal(got["i"], np.arange(10))
    np.testing.assert_array_equal(got["w"], np.linspace(0, 1, 10))
    np.testing.assert_array_equal(got["frame"], np.arange(40, dtype=np.float32))  # one series
    assert got["frame"].dtype == np.float32
    np.testing.assert_array_equal(got["hits"].counts, np.arange(10) % 3)
    np.testing.assert_array_equal(got["hits"].content[:, 0], np.repeat(np.arange(10), np.arange(10) % 3))
    assert got["label"].tolist() == [f"ev{i}" for i in range(10)]
    assert got["grid/frame2"].shape == (10, 2, 2)
    with h5py.File(path, "r") as f:
        assert f.attrs["fs"] == 4096 and f.attrs["events"] == 10
        assert isinstance(f["grid"], h5py.Group)
        assert f["hits_counts"].shape == (10,)
    assert [p.name for p in path.parent.iterdir()] == ["p.h5"]  # no temporary file left


def test_h5sink_failed_job_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p.h5"
    path.write_bytes(b"an older output")
    with pytest.raises(WorkflowError, match="boom"):
        _products_process(H5Sink(path, ["i", "frame"], concat="frame"), fail_at=7).run(progress=False)
    assert path.read_bytes() == b"an older output"  # neither replaced nor half-written
    assert [p.name for p in tmp_path.iterdir()] == ["p.h5"]


def test_h5sink_rejects_what_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="'i' is in 'concat' but holds one value per event"):
        _products_process(H5Sink(tmp_path / "a.h5", ["i"], concat=["i"])).run(progress=False)
    assert not list(tmp_path.iterdir())
    sink = H5Sink(tmp_path / "b.h5", ["x"])
    sink.open()
    sink.write({"x": np.zeros((2, 3))}, 2)
    with pytest.raises(InvalidArgument, match=r"rows of shape \(4,\)"):
        sink.write({"x": np.zeros((2, 4))}, 2)
    sink.write({"k": np.arange(2)}, 2)
    sink.write({"k": np.arange(2, dtype=np.int8)}, 2)  # widened to the first chunk's int64
    with pytest.raises(InvalidArgument, match="'k' is float64 in this chunk but int64"):
        sink.write({"k": np.zeros(2)}, 2)
    with pytest.raises(InvalidArgument, match="awkward array"):
        sink.write({"z": [1, 2]}, 2)
    sink.abort()
    assert not list(tmp_path.iterdir())


def test_h5sink_parts_merge_in_order(tmp_path: Path) -> None:
    """What the Dask executor does: one part per partition, merged in partition order."""
    path = tmp_path / "merged.h5"
    sink = H5Sink(path, concat=["frame"], attrs={"fs": 8})
    results = []
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(7, 4))
    hits = [np.arange(i % 3) for i in range(7)]
    for k, (a, b) in enumerate(((0, 3), (3, 3), (3, 7))):  # the middle partition is empty
        part = sink.part(k, "tok")
        part.open()
        if b > a:
            from sonic.workflow import Jagged

            part.write(
                {"i": np.arange(a, b), "frame": frames[a:b], "hits": Jagged.from_arrays(hits[a:b])}, b - a
            )
        results.append(part.close())
    assert all(Path(r).exists() for r in results)
    assert sink.merge(results) == path
    got = read_columns(path)
    np.testing.assert_array_equal(got["i"], np.arange(7))
    np.testing.assert_array_equal(got["frame"], frames.reshape(-1))
    assert got["hits"].tolist() == [h.tolist() for h in hits]
    with h5py.File(path, "r") as f:
        assert f.attrs["events"] == 7 and f.attrs["fs"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["merged.h5"]  # parts removed


# -- the DeepClean workflow -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example's inputs (its own ``prepare``), and the offline answer of ``clean()``."""
    pytest.importorskip("lal")
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from sonic.data.gw import WITNESSES, read_gw
    from sonic.models import load_pretrained
    from sonic.models.train import clean

    dest = tmp_path_factory.mktemp("gw")
    example_module("deepclean.py").prepare(dest, SECONDS, SEED)
    for f in ("deepclean.yaml", "deepclean.py"):
        shutil.copy(EXAMPLES / f, dest / f)
    sample = read_gw(dest / "gw_strain.h5")
    assert sample.config.sample_rate == FS and len(sample.strain) == SECONDS * FS
    witness = np.stack([sample.witness[k] for k in WITNESSES])
    torch.set_num_threads(1)
    noise = clean(load_pretrained("deepclean"), witness, float(FS))
    return {"dest": dest, "strain": sample.strain, "coupled": sample.coupled, "noise": noise}


def _run_yaml(gw: dict[str, Any], name: str, client: dict[str, Any], **top: Any) -> Path:
    """The shipped description with another client and output: write it next to the inputs."""
    desc = yaml.safe_load((EXAMPLES / "deepclean.yaml").read_text())
    desc["clients"]["deepclean"].update(client)
    desc["sinks"][0]["path"] = f"out/{name}.h5"
    desc.update(top)
    path = Path(gw["dest"]) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(desc, sort_keys=False))
    return path


def _sonic_run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *argv])
    return int(args.handler(args))


def _check_cleaned(gw: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """The output against ``clean()``: same noise, same cleaned strain, per-frame columns."""
    out = read_columns(path)
    scale = float(np.abs(gw["noise"]).max())
    assert out["cleaned"].shape == (SECONDS * FS,) and out["cleaned"].dtype == np.float64
    assert float(np.abs(out["noise"] - gw["noise"]).max()) <= VS_CLEAN * scale
    assert float(np.abs(out["cleaned"] - (gw["strain"] - gw["noise"])).max()) <= VS_CLEAN * scale
    np.testing.assert_array_equal(out["cleaned"], gw["strain"] - out["noise"])
    np.testing.assert_array_equal(out["t0"], np.arange(SECONDS, dtype=np.float64))
    rms = np.sqrt((out["noise"].reshape(SECONDS, FS) ** 2).mean(axis=1))
    np.testing.assert_allclose(out["noise_rms"], rms, rtol=1e-12)
    with h5py.File(path, "r") as f:
        assert f.attrs["sample_rate"] == FS and f.attrs["events"] == SECONDS
    return out


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], gw: dict[str, Any]) -> None:
    scale = float(np.abs(gw["noise"]).max())
    assert float(np.abs(a["cleaned"] - b["cleaned"]).max()) <= BETWEEN_RUNS * scale


@pytest.fixture(scope="module")
def local_run(gw: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(a) in process: ``transport: local``, through the API."""
    process = load_process(_run_yaml(gw, "local", {"transport": "local", "fallback": False}))
    report = process.run(progress=False)
    assert report.events == SECONDS and report.written == SECONDS
    client = report.clients[0]
    assert client.requests == SECONDS and client.failures == 0 and client.by_server == {"local": SECONDS}
    noise_report = process.modules[1]
    result = dict(getattr(noise_report, "result", {}))
    return _check_cleaned(gw, Path(gw["dest"]) / "out" / "local.h5"), result


def test_deepclean_in_process_matches_clean_and_reduces_the_noise(
    gw: dict[str, Any], local_run: tuple[dict[str, np.ndarray], dict[str, float]]
) -> None:
    from sonic.models.metrics import asd_ratio

    out, result = local_run
    assert set(result) == {"asd_ratio_60hz", "asd_ratio_120hz"}
    strain, cleaned = gw["strain"], out["cleaned"]
    for f0 in (60, 120):
        # the module's figure is the metric on the whole stream (raw vs the written output)
        assert result[f"asd_ratio_{f0}hz"] == asd_ratio(strain, cleaned, FS, f0)
    # the lines are mostly gone (the shipped model: 0.053 and 0.10 on its held-out sample),
    # and what is left is close to the floor of a perfect subtraction
    assert result["asd_ratio_60hz"] < 0.15 and result["asd_ratio_120hz"] < 0.25
    for f0 in (60, 120):
        floor = asd_ratio(strain, strain - gw["coupled"], FS, f0)
        assert floor <= result[f"asd_ratio_{f0}hz"] < floor + 0.1
    # away from the bands the strain is left nearly as it was: the subtracted noise is
    # band-limited on each padded frame, and only cutting it to the frame leaks a little
    # (~2% of the PSD at most here, a tenth of that on average)
    from scipy.signal import welch

    f, praw = welch(strain, fs=FS, nperseg=4 * FS)
    _, pclean = welch(cleaned, fs=FS, nperseg=4 * FS)
    away = (f > 20) & (f < 1000) & (np.abs(f - 60) > 8) & (np.abs(f - 120) > 8)
    change = np.abs(pclean[away] / praw[away] - 1)
    assert change.max() < 0.05 and change.mean() < 0.005


@pytest.fixture(scope="module")
def sonic_serve(gw: dict[str, Any]) -> Iterator[Any]:
    with sonic_process(Path(gw["dest"]) / "models") as server:
        yield server


def test_deepclean_sonic_run_against_sonic_serve(
    gw: dict[str, Any],
    local_run: tuple[dict[str, np.ndarray], dict[str, float]],
    sonic_serve: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(b) ``sonic run`` on the shipped description, gRPC to ``sonic serve``, no fallback."""
    path = _run_yaml(gw, "sonic", {"servers": [sonic_serve.grpc_url], "fallback": False})
    assert _sonic_run(str(path), "-q") == 0
    printed = capsys.readouterr().out
    out = _check_cleaned(gw, Path(gw["dest"]) / "out" / "sonic.h5")
    _same(out, local_run[0], gw)
    r60, r120 = local_run[1]["asd_ratio_60hz"], local_run[1]["asd_ratio_120hz"]
    # the report is printed with the job's table
    assert (
        f"noise_report: noise ASD cleaned/raw over {SECONDS} s of strain: "
        f"60 Hz {r60:.4f} ({20 * np.log10(r60):+.1f} dB), 120 Hz {r120:.4f}" in printed
    )
    assert f"deepclean: {SECONDS} events" in printed
    assert f"answered by {sonic_serve.grpc_url}: {SECONDS}" in printed


def test_deepclean_on_dask_matches_one_process(
    gw: dict[str, Any],
    local_run: tuple[dict[str, np.ndarray], dict[str, float]],
    sonic_serve: Any,
) -> None:
    """Stateless with context: frames in any partition, merged, give the same strain."""
    pytest.importorskip("distributed")
    path = _run_yaml(gw, "dask", {"servers": [sonic_serve.grpc_url], "fallback": False})
    report = load_process(path).run(dask="local:2", partitions=3, progress=False)
    assert report.partitions == 3 and report.events == SECONDS
    out = _check_cleaned(gw, Path(gw["dest"]) / "out" / "dask.h5")
    _same(out, local_run[0], gw)


@pytest.mark.triton
def test_deepclean_against_nvidia_triton_python_backend(
    gw: dict[str, Any], local_run: tuple[dict[str, np.ndarray], dict[str, float]]
) -> None:
    """(c) NVIDIA's Triton on ``models_triton`` (python backend running the same ONNX)."""
    _require_triton()
    dest = Path(gw["dest"])
    with _triton(dest / "models_triton") as triton:
        path = _run_yaml(gw, "triton", {"servers": [triton.grpc_url], "fallback": False})
        process = load_process(path)
        report = process.run(progress=False)
    assert report.clients[0].by_server == {triton.grpc_url: SECONDS}
    out = _check_cleaned(gw, dest / "out" / "triton.h5")
    _same(out, local_run[0], gw)
    result = getattr(process.modules[1], "result", {})
    assert set(result) == set(local_run[1])
    for key, value in local_run[1].items():
        assert result[key] == pytest.approx(value, rel=1e-6)
