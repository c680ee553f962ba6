"""The reference models (sonic.zoo): valid ONNX, right shapes, deterministic, repositories as
Triton lays them out (configs parsed with Triton's own ModelConfig protobuf)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sonic import zoo

MODEL_SHAPES = {"mlp": ((16,), 5), "cnn": ((1, 48, 48), 4)}


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _onnx(name: str, seed: int = 0) -> bytes:
    return zoo.mlp_onnx(seed) if name == "mlp" else zoo.cnn_onnx(seed)


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_onnx_model_runs_with_symbolic_batch(name: str) -> None:
    dims, classes = MODEL_SHAPES[name]
    data = _onnx(name)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version <= 17
    session = _session(data)
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", *dims])
    assert (out.name, out.type, out.shape) == ("output", "tensor(float)", ["batch", classes])
    rng = np.random.default_rng(7)
    for batch in (1, 5, 32):
        x = rng.standard_normal((batch, *dims)).astype(np.float32)
        (y,) = session.run(None, {"input": x})
        assert y.shape == (batch, classes)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
        assert (y >= 0).all()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_outputs_are_non_trivial(name: str) -> None:
    dims, classes = MODEL_SHAPES[name]
    x = np.random.default_rng(3).standard_normal((64, *dims)).astype(np.float32)
    (y,) = _session(_onnx(name)).run(None, {"input": x})
    # Not uniform, and different inputs give different outputs.
    assert np.abs(y - 1.0 / classes).max() > 0.05
    assert np.std(y, axis=0).max() > 1e-3


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_deterministic_per_seed(name: str) -> None:
    assert _onnx(name, 0) == _onnx(name, 0)
    assert _onnx(name, 1) != _onnx(name, 0)
    dims, _ = MODEL_SHAPES[name]
    x = np.ones((2, *dims), np.float32)
    (a,) = _session(_onnx(name, 0)).run(None, {"input": x})
    (b,) = _session(_onnx(name, 1)).run(None, {"input": x})
    assert not np.allclose(a, b)


def test_batch_rows_are_independent() -> None:
    """A batched run equals the per-row runs: what a server's batch merge/split relies on."""
    session = _session(zoo.mlp_onnx())
    x = np.random.default_rng(5).standard_normal((9, 16)).astype(np.float32)
    (batched,) = session.run(None, {"input": x})
    rows = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(9)])
    np.testing.assert_allclose(batched, rows, rtol=1e-6, atol=1e-7)


def test_sonic_repository(tmp_path: Path) -> None:
    repo = zoo.write_sonic_repository(tmp_path / "repo", instances=2, preferred=(4, 8))
    assert sorted(p.name for p in repo.iterdir()) == ["cnn", "mlp"]
    for name, max_batch in (("mlp", 64), ("cnn", 32)):
        config = _config(repo / name / "config.pbtxt")
        assert config.name == name
        assert config.backend == "onnxruntime"
        assert config.max_batch_size == max_batch
        dims, classes = MODEL_SHAPES[name]
        (inp,) = config.input
        (out,) = config.output
        assert (inp.name, inp.data_type, list(inp.dims)) == (
            "input",
            model_config_pb2.TYPE_FP32,
            list(dims),
        )
        assert (out.name, out.data_type, list(out.dims)) == (
            "output",
            model_config_pb2.TYPE_FP32,
            [classes],
        )
        assert config.HasField("dynamic_batching")
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 100
        (group,) = config.instance_group
        assert group.count == 2
        assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert (repo / name / "1" / "model.onnx").read_bytes() == _onnx(name)
        assert sorted(p.name for p in (repo / name / "1").iterdir()) == ["model.onnx"]


def test_sonic_repository_options(tmp_path: Path) -> None:
    repo = zoo.write_sonic_repository(
        tmp_path, models=("mlp",), max_batch_size=0, dynamic_batching=False, seed=3
    )
    config = _config(repo / "mlp" / "config.pbtxt")
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert (repo / "mlp" / "1" / "model.onnx").read_bytes() == zoo.mlp_onnx(3)
    assert not (repo / "cnn").exists()
    with pytest.raises(ValueError, match="unknown zoo model 'resnet'"):
        zoo.write_sonic_repository(tmp_path, models=("resnet",))


def test_triton_python_repository(tmp_path: Path) -> None:
    repo = zoo.write_triton_python_repository(tmp_path, intra_op_num_threads=2)
    sonic = zoo.write_sonic_repository(tmp_path / "sonic")
    for name in ("mlp", "cnn"):
        config = _config(repo / name / "config.pbtxt")
        assert config.backend == "python"
        assert config.parameters["intra_op_num_threads"].string_value == "2"
        # Same config as sonic's apart from the backend and its parameter.
        reference = _config(sonic / name / "config.pbtxt")
        reference.backend = "python"
        reference.parameters["intra_op_num_threads"].string_value = "2"
        assert config == reference
        version = repo / name / "1"
        assert (version / "model.onnx").read_bytes() == _onnx(name)
        model_py = (version / "model.py").read_text()
        ast.parse(model_py)
        assert "class TritonPythonModel" in model_py


def test_conformance_repository(tmp_path: Path) -> None:
    repo = zoo.write_conformance_repository(tmp_path, sleep_delay_ms=5)
    names = {p.name for p in repo.iterdir()}
    assert names == set(zoo.CONFORMANCE_MODELS)
    for datatype in zoo.IDENTITY_DATATYPES:
        config = _config(repo / f"identity_{datatype.lower()}" / "config.pbtxt")
        type_name = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
        expected = model_config_pb2.DataType.Value(type_name)
        assert config.backend == "python"
        assert config.max_batch_size == 8
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
            ("INPUT0", expected, [-1])
        ]
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
            ("OUTPUT0", expected, [-1])
        ]
    assert _config(repo / "identity_fp32_nobatch" / "config.pbtxt").max_batch_size == 0
    add_sub = _config(repo / "add_sub" / "config.pbtxt")
    assert [t.name for t in add_sub.input] == ["INPUT0", "INPUT1"]
    assert [t.name for t in add_sub.output] == ["OUTPUT0", "OUTPUT1"]
    assert all(list(t.dims) == [16] for t in [*add_sub.input, *add_sub.output])
    sleep = _config(repo / "sleep" / "config.pbtxt")
    assert sleep.parameters["delay_ms"].string_value == "5"
    assert sleep.HasField("dynamic_batching")
    for name in names:
        ast.parse((repo / name / "1" / "model.py").read_text())
    with pytest.raises(ValueError, match="unknown conformance model 'nope'"):
        zoo.write_conformance_repository(tmp_path, models=("nope",))


def test_repositories_combine(tmp_path: Path) -> None:
    zoo.write_conformance_repository(tmp_path, models=("add_sub",))
    zoo.write_triton_python_repository(tmp_path, models=("mlp",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["add_sub", "mlp"]
