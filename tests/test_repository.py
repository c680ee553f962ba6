"""The model repository: config parsing, auto-completion, validation, versions, layout.

Models are real: tiny ONNX graphs (Gemm + Relu) written by onnx.helper into tmp_path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from sonic.protocol.errors import (
    AlreadyExists,
    Code,
    InvalidArgument,
    NotFound,
    SonicError,
    Unsupported,
)
from sonic.repository import (
    DEFAULT_MAX_BATCH_SIZE,
    ModelConfig,
    ModelRepository,
    autocomplete,
    config_from_json,
    load_model_config,
    parse_config,
    select_versions,
    validate,
    versions_on_disk,
)

SRC = "models/mlp/config.pbtxt"
FP32 = mc.DataType.Value("TYPE_FP32")
INT64 = mc.DataType.Value("TYPE_INT64")
KIND_CPU = mc.ModelInstanceGroup.Kind.Value("KIND_CPU")
KIND_GPU = mc.ModelInstanceGroup.Kind.Value("KIND_GPU")


# --------------------------------------------------------------------------------------------
# helpers: real ONNX models, repository trees


def onnx_mlp(path: Path, batch: int | str = "N", *, initializer_as_input: bool = False) -> Path:
    """y = relu(x @ W + b), x: [batch, 4] FP32, y: [batch, 3]; batch is a dim_param or fixed."""
    onnx = pytest.importorskip("onnx")
    import numpy as np

    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    fp = onnx.TensorProto.FLOAT
    w = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), name="W")
    b = numpy_helper.from_array(np.zeros(3, dtype=np.float32), name="B")
    inputs = [helper.make_tensor_value_info("x", fp, [batch, 4])]
    if initializer_as_input:  # the IR < 4 style: initializers also listed as graph inputs
        inputs.append(helper.make_tensor_value_info("W", fp, [4, 3]))
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
            helper.make_node("Relu", ["h"], ["y"]),
        ],
        "mlp",
        inputs,
        [helper.make_tensor_value_info("y", fp, [batch, 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_typed(path: Path) -> Path:
    """ids: [N] INT64 (a scalar per item), feats: [N, K, 2] FP32 -> out: [N, K, 2] FP32."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["feats"], ["out"])],
        "typed",
        [
            helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("feats", onnx.TensorProto.FLOAT, ["N", "K", 2]),
        ],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["N", "K", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def python_model(
    model_dir: Path, config: str | None = None, versions: tuple[int, ...] = (1,)
) -> Path:
    for v in versions:
        write(model_dir / str(v) / "model.py", "class TritonPythonModel: pass\n")
    if config is not None:
        write(model_dir / "config.pbtxt", config)
    return model_dir


def cfg(text: str) -> ModelConfig:
    return parse_config(text, SRC)


def error_of(exc: pytest.ExceptionInfo[SonicError]) -> str:
    return str(exc.value)


PY_IO = """
backend: "python"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""


def completed(text: str, name: str = "mlp") -> ModelConfig:
    """A parsed config with a name, auto-completed without a model directory."""
    config = cfg(text)
    if not config.name:
        config.name = name
    return autocomplete(config, None)


# --------------------------------------------------------------------------------------------
# parse_config


def test_parse_reads_a_triton_config() -> None:
    config = cfg(
        """
        name: "mlp"   # comments are allowed
        backend: "onnxruntime"
        max_batch_size: 8
        input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
        output [ { name: "y", data_type: TYPE_FP32, dims: [ 3 ] } ]
        dynamic_batching { max_queue_delay_microseconds: 100 }
        instance_group [ { count: 2 kind: KIND_CPU } ]
        """
    )
    assert config.name == "mlp"
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [-1, 4]
    assert config.input[0].data_type == FP32
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].count == 2


def test_parse_unknown_field_names_file_position_and_suggestion() -> None:
    text = 'name: "mlp"\nbackend: "python"\n\n  max_batch_sizee: 4\n'
    with pytest.raises(InvalidArgument) as exc:
        parse_config(text, SRC)
    msg = error_of(exc)
    assert msg.startswith("models/mlp/config.pbtxt:4:3: unknown field 'max_batch_sizee'")
    assert "did you mean 'max_batch_size'" in msg
    assert exc.value.code is Code.INVALID_ARG


def test_parse_unknown_nested_field_names_its_message() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config('input [ { name: "x" data_typ: TYPE_FP32 } ]', SRC)
    msg = error_of(exc)
    assert f"{SRC}:1:21:" in msg
    assert "unknown field 'data_typ' in ModelInput" in msg
    assert "'data_type'" in msg


def test_parse_unknown_enum_value_names_field_and_nearest_value() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config('input [ {\n  name: "x"\n  data_type: TYPE_FP3 } ]', SRC)
    msg = error_of(exc)
    assert f"{SRC}:3:14:" in msg
    assert "unknown value 'TYPE_FP3' for field 'data_type'" in msg
    assert "'TYPE_FP32'" in msg


def test_parse_bad_integer_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config('input [ { name: "x" dims: [ 1, x ] } ]', SRC)
    msg = error_of(exc)
    assert msg.startswith(f"{SRC}:1:")
    assert "field 'dims': Couldn't parse integer: x" in msg
    assert "[ 1, x ]" not in msg  # the source line is not echoed back


def test_parse_singular_field_twice() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config('name: "a"\nname: "b"', SRC)
    assert f"{SRC}:2:" in error_of(exc)
    assert "'name' is given more than once" in error_of(exc)


def test_parse_unclosed_brace_gives_position() -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_config("dynamic_batching {\n  max_queue_delay_microseconds: 5\n", SRC)
    assert error_of(exc).startswith(f"{SRC}:")
    assert '"}"' in error_of(exc)


# --------------------------------------------------------------------------------------------
# config_from_json


def test_json_override_from_text_and_dict() -> None:
    text = '{"name": "mlp", "max_batch_size": 2, "input": [{"name": "x", "dims": [-1, 3]}]}'
    from_text = config_from_json(text)
    from_dict = config_from_json(
        {"name": "mlp", "maxBatchSize": 2, "input": [{"name": "x", "dims": ["-1", 3]}]}
    )
    assert from_text == from_dict
    assert from_text.max_batch_size == 2
    assert list(from_text.input[0].dims) == [-1, 3]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"max_batch_sizee": 4}, ["unknown field 'max_batch_sizee'", "'max_batch_size'"]),
        (
            {"dynamic_batching": {"prefered_batch_size": [4]}},
            [
                "unknown field 'prefered_batch_size' in ModelDynamicBatching",
                "'preferred_batch_size'",
                "dynamic_batching",
            ],
        ),
        (
            {"input": [{"name": "x", "data_type": "TYPE_FP3"}]},
            ["unknown value 'TYPE_FP3'", "input[0].data_type", "'TYPE_FP32'"],
        ),
        ({"max_batch_size": "x"}, ["max_batch_size"]),
        ("[1, 2]", ["must be a JSON object", "list"]),
        ("{bad", ["not valid JSON", "line 1"]),
    ],
)
def test_json_override_errors(obj: Any, expected: list[str]) -> None:
    with pytest.raises(InvalidArgument) as exc:
        config_from_json(obj)
    for part in expected:
        assert part in error_of(exc)
    assert error_of(exc).startswith("model config override")


# --------------------------------------------------------------------------------------------
# autocomplete: ONNX


def test_autocomplete_batching_onnx_model(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    config = autocomplete(ModelConfig(), tmp_path / "mlp" / "1")
    assert config.name == "mlp"
    assert config.backend == "onnxruntime"
    assert config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "model.onnx"
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE == 4
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("x", FP32, [4])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("y", FP32, [3])]
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [4]  # Triton's normalisation
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1
    # Triton's default for onnxruntime on CPU: one group of two instances, named as the model.
    assert [(g.name, g.kind, g.count) for g in config.instance_group] == [("mlp", KIND_CPU, 2)]
    assert config.optimization.input_pinned_memory.enable
    validate(config, SRC)


def test_autocomplete_fixed_batch_onnx_model_keeps_full_dims(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "fixed" / "1" / "model.onnx", batch=2)
    config = autocomplete(ModelConfig(), tmp_path / "fixed" / "1")
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 4]
    assert list(config.output[0].dims) == [2, 3]
    assert not config.HasField("dynamic_batching")
    validate(config, SRC)


def test_autocomplete_keeps_given_max_batch_size_and_strips_batch_dim(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    config = autocomplete(cfg("max_batch_size: 16"), tmp_path / "mlp" / "1")
    assert config.max_batch_size == 16
    assert list(config.input[0].dims) == [4]
    assert list(config.dynamic_batching.preferred_batch_size) == [16]


def test_autocomplete_max_batch_size_one_does_not_enable_dynamic_batching(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    config = autocomplete(cfg("max_batch_size: 1"), tmp_path / "mlp" / "1")
    assert config.max_batch_size == 1
    assert list(config.input[0].dims) == [4]
    assert not config.HasField("dynamic_batching")


def test_autocomplete_keeps_a_sequence_batcher(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    config = autocomplete(cfg("sequence_batching { }"), tmp_path / "mlp" / "1")
    assert config.max_batch_size == 4
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    assert config.sequence_batching.max_sequence_idle_microseconds == 1_000_000


def test_autocomplete_rejects_batching_for_a_fixed_model(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "fixed" / "1" / "model.onnx", batch=2)
    with pytest.raises(InvalidArgument) as exc:
        autocomplete(cfg("max_batch_size: 4"), tmp_path / "fixed" / "1")
    msg = error_of(exc)
    assert "max_batch_size is 4" in msg
    assert "model.onnx" in msg
    assert "'x'" in msg
    assert "max_batch_size: 0" in msg


def test_autocomplete_reads_nothing_when_io_is_given(tmp_path: Path) -> None:
    write(tmp_path / "m" / "1" / "model.onnx", "not an onnx file")
    text = (
        'backend: "onnxruntime"\ninput [ { name: "a" data_type: TYPE_INT64 dims: [ 2 ] } ]\n'
        'output [ { name: "b" data_type: TYPE_FP32 dims: [ 2 ] } ]'
    )
    config = autocomplete(cfg(text), tmp_path / "m" / "1")
    assert [i.name for i in config.input] == ["a"]
    assert config.max_batch_size == 0


def test_autocomplete_fills_only_the_missing_side(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    text = 'max_batch_size: 8\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]'
    config = autocomplete(cfg(text), tmp_path / "mlp" / "1")
    assert [i.name for i in config.input] == ["x"]
    assert [(o.name, list(o.dims)) for o in config.output] == [("y", [3])]


def test_autocomplete_reports_a_bad_onnx_file(tmp_path: Path) -> None:
    write(tmp_path / "m" / "1" / "model.onnx", "not an onnx file")
    with pytest.raises(InvalidArgument) as exc:
        autocomplete(ModelConfig(), tmp_path / "m" / "1")
    assert "cannot read ONNX model" in error_of(exc)
    assert "model.onnx" in error_of(exc)


def test_autocomplete_excludes_initializers_listed_as_inputs(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx", initializer_as_input=True)
    config = autocomplete(ModelConfig(), tmp_path / "mlp" / "1")
    assert [i.name for i in config.input] == ["x"]
    assert config.max_batch_size == 4


def test_autocomplete_types_dynamic_dims_and_scalars(tmp_path: Path) -> None:
    onnx_typed(tmp_path / "typed" / "1" / "model.onnx")
    config = autocomplete(ModelConfig(), tmp_path / "typed" / "1")
    assert config.max_batch_size == 4
    ids, feats = config.input
    assert (ids.name, ids.data_type, list(ids.dims)) == ("ids", INT64, [1])
    assert ids.HasField("reshape") and list(ids.reshape.shape) == []
    assert (feats.name, list(feats.dims)) == ("feats", [-1, 2])
    assert not feats.HasField("reshape")
    validate(config, SRC)


def test_autocomplete_onnx_model_in_a_directory(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "big" / "1" / "model.onnx" / "model.onnx")
    config = autocomplete(ModelConfig(), tmp_path / "big" / "1")
    assert config.backend == "onnxruntime"
    assert [i.name for i in config.input] == ["x"]


def test_autocomplete_without_onnx_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(Unsupported) as exc:
        autocomplete(ModelConfig(), tmp_path / "mlp" / "1")
    assert "pip install 'sonic[onnx]'" in error_of(exc)
    assert exc.value.code is Code.UNSUPPORTED


def test_autocomplete_missing_model_file(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(NotFound) as exc:
        autocomplete(cfg('backend: "onnxruntime"'), tmp_path / "m" / "1")
    assert str(tmp_path / "m" / "1" / "model.onnx") in error_of(exc)


def test_autocomplete_does_not_modify_its_argument(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    original = cfg("max_batch_size: 2")
    autocomplete(original, tmp_path / "mlp" / "1")
    assert original == cfg("max_batch_size: 2")


# --------------------------------------------------------------------------------------------
# autocomplete: backend fields and instance groups


def test_autocomplete_python_model_from_file(tmp_path: Path) -> None:
    python_model(tmp_path / "pre")
    config = autocomplete(ModelConfig(), tmp_path / "pre" / "1")
    assert (config.name, config.backend, config.platform) == ("pre", "python", "")
    assert config.default_model_filename == "model.py"
    assert [(g.name, g.kind, g.count) for g in config.instance_group] == [("pre", KIND_CPU, 1)]


@pytest.mark.parametrize(
    ("text", "backend", "platform", "filename"),
    [
        ('platform: "onnxruntime_onnx"', "onnxruntime", "onnxruntime_onnx", "model.onnx"),
        ('backend: "onnxruntime"', "onnxruntime", "onnxruntime_onnx", "model.onnx"),
        ('backend: "python"', "python", "", "model.py"),
        ('default_model_filename: "model.py"', "python", "", "model.py"),
        ('backend: "python" default_model_filename: "net.py"', "python", "", "net.py"),
        ('platform: "pytorch_libtorch"', "pytorch", "pytorch_libtorch", "model.pt"),
    ],
)
def test_autocomplete_backend_platform_and_file_name(
    text: str, backend: str, platform: str, filename: str
) -> None:
    config = completed(
        text + '\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]'
    )
    assert (config.backend, config.platform, config.default_model_filename) == (
        backend,
        platform,
        filename,
    )


def test_autocomplete_instance_groups() -> None:
    config = completed(
        PY_IO
        + """
        instance_group [
          { kind: KIND_AUTO },
          { kind: KIND_GPU count: 3 },
          { name: "named" count: 2 kind: KIND_CPU }
        ]
        """
    )
    groups = [(g.name, g.kind, g.count) for g in config.instance_group]
    assert groups == [("mlp_0", KIND_CPU, 1), ("mlp_1", KIND_GPU, 3), ("named", KIND_CPU, 2)]


def test_autocomplete_onnx_default_cpu_count_is_two_but_gpu_one() -> None:
    text = PY_IO.replace('"python"', '"onnxruntime"')
    assert [g.count for g in completed(text).instance_group] == [2]
    gpu = completed(text + "instance_group [ { kind: KIND_GPU } ]")
    assert [(g.kind, g.count) for g in gpu.instance_group] == [(KIND_GPU, 1)]


def test_autocomplete_without_version_path_reads_no_file() -> None:
    config = autocomplete(cfg('name: "m" backend: "onnxruntime"'), None)
    assert config.platform == "onnxruntime_onnx"
    assert len(config.input) == 0


# --------------------------------------------------------------------------------------------
# validate


def test_validate_accepts_a_good_config() -> None:
    validate(completed(PY_IO + "dynamic_batching { preferred_batch_size: [ 4, 8 ] }"), SRC)


def test_validate_missing_backend_says_what_is_expected() -> None:
    config = completed('input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]')
    with pytest.raises(InvalidArgument) as exc:
        validate(config, SRC)
    msg = error_of(exc)
    assert msg.startswith(SRC)
    assert "no backend or platform" in msg
    for expected in ('"onnxruntime"', '"python"', "model.onnx", "model.py"):
        assert expected in msg


INVALID: list[tuple[str, str, list[str]]] = [
    (
        'platform: "onnxruntime_onx"',
        "unknown platform",
        ["'onnxruntime_onx'", "did you mean 'onnxruntime_onnx'"],
    ),
    (
        'backend: "onnxruntime" platform: "pytorch_libtorch"',
        "platform/backend pair",
        ["'pytorch_libtorch' does not go with backend 'onnxruntime'", "'onnxruntime_onnx'"],
    ),
    (
        'backend: "python" max_batch_size: -1',
        "negative max_batch_size",
        ["max_batch_size is -1", ">= 0"],
    ),
    (
        PY_IO + 'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]',
        "duplicate input",
        ["input 'x' is listed twice", "unique"],
    ),
    (
        PY_IO + 'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]',
        "duplicate output",
        ["output 'y' is listed twice"],
    ),
    (
        'backend: "python" input [ { name: "x" data_type: TYPE_FP32 dims: [ 0, 3 ] } ]',
        "zero dim",
        ["input 'x'", "dims [0, 3]", "dimension 0", "-1 for a variable size"],
    ),
    (
        'backend: "python" output [ { name: "y" data_type: TYPE_FP32 dims: [ -2 ] } ]',
        "dim below -1",
        ["output 'y'", "dimension -2"],
    ),
    (
        'backend: "python" input [ { name: "x" data_type: TYPE_FP32 } ]',
        "no dims",
        ["input 'x'", "dims is empty"],
    ),
    (
        'backend: "python" input [ { name: "x" dims: [ 1 ] } ]',
        "no data type",
        ["input 'x'", "data_type", "TYPE_INVALID", "TYPE_FP32"],
    ),
    (
        'backend: "python" input [ { data_type: TYPE_FP32 dims: [ 1 ] } ]',
        "no tensor name",
        ["input[0] has no name"],
    ),
    (
        PY_IO + "dynamic_batching { preferred_batch_size: [ 4, 16 ] }",
        "preferred above max",
        ["dynamic_batching.preferred_batch_size has 16", "<= max_batch_size (8)"],
    ),
    (
        PY_IO + "dynamic_batching { preferred_batch_size: [ 0 ] }",
        "preferred zero",
        ["preferred_batch_size has 0", ">= 1"],
    ),
    (
        PY_IO.replace("max_batch_size: 8", "max_batch_size: 0")
        + "dynamic_batching { preferred_batch_size: [ 2 ] }",
        "preferred on a non-batching model",
        ["preferred_batch_size has 2", "does not batch (max_batch_size: 0)"],
    ),
    (
        PY_IO + "dynamic_batching { priority_levels: 3 }",
        "default priority level unset",
        ["default_priority_level is 0", "[1, 3]"],
    ),
    (
        PY_IO + "dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
        "default priority level too high",
        ["default_priority_level is 3", "priority_levels: 2", "[1, 2]"],
    ),
    (
        PY_IO
        + "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
        + "priority_queue_policy { key: 5 value: { max_queue_size: 1 } } }",
        "queue policy level out of range",
        ["priority_queue_policy has level 5", "[1, 2]"],
    ),
    (
        PY_IO
        + "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
        + "preserve_ordering: true }",
        "preserve ordering with priorities",
        ["preserve_ordering", "priority_levels: 1"],
    ),
    (
        PY_IO + "instance_group [ { count: -1 kind: KIND_CPU } ]",
        "negative instance count",
        ["instance_group[0] ('mlp_0') count is -1", ">= 1"],
    ),
    (
        PY_IO + "instance_group [ { count: 1 kind: KIND_CPU gpus: [ 0 ] } ]",
        "cpu group with gpus",
        ["KIND_CPU but lists gpus [0]"],
    ),
    (
        'backend: "python" max_batch_size: 2 input [ { name: "x" data_type: TYPE_FP32 '
        "dims: [ 2, 3 ] reshape: { shape: [ 5 ] } } ]",
        "reshape count mismatch",
        ["input 'x'", "dims [2, 3] and reshape.shape [5]", "different numbers of elements"],
    ),
    (
        'backend: "python" input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, -1 ] '
        "reshape: { shape: [ -1 ] } } ]",
        "reshape wildcard chunks",
        ["dims [2, -1] and reshape.shape [-1]"],
    ),
    (
        'backend: "python" input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] '
        "reshape: { shape: [ ] } } ]",
        "scalar reshape on a non-batching model",
        ["input 'x'", "needs a batching model"],
    ),
    (
        'backend: "python" version_policy { latest { } }',
        "latest zero",
        ["num_versions must be >= 1"],
    ),
    (
        'backend: "python" version_policy { specific { } }',
        "specific without versions",
        ["specific lists no versions"],
    ),
    ('platform: "ensemble"', "ensemble without steps", ["ensemble_scheduling"]),
]


@pytest.mark.parametrize(("text", "why", "expected"), INVALID, ids=[case[1] for case in INVALID])
def test_validate_rejects(text: str, why: str, expected: list[str]) -> None:
    config = completed(text)
    with pytest.raises(InvalidArgument) as exc:
        validate(config, SRC)
    msg = error_of(exc)
    assert msg.startswith(f"{SRC} (model 'mlp'): "), why
    for part in expected:
        assert part in msg, (why, part, msg)


@pytest.mark.parametrize(
    "extra",
    [
        # Triton accepts a dynamic batcher on a non-batching model (requests run one by one).
        "dynamic_batching { }",
        'input [ { name: "z" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
        "reshape: { shape: [ 8, -1, 1, 6 ] } } ]",
        'input [ { name: "s" data_type: TYPE_FP32 dims: [ -1 ] } ]',
        "dynamic_batching { priority_levels: 2 default_priority_level: 2 "
        "priority_queue_policy { key: 1 value: { max_queue_size: 4 } } }",
    ],
)
def test_validate_accepts_edge_cases(extra: str) -> None:
    text = 'backend: "python"\n' + extra
    validate(completed(text), SRC)


# --------------------------------------------------------------------------------------------
# load_model_config


def test_load_python_model_with_config(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path / "pre", 'name: "pre"\n' + PY_IO)
    config = load_model_config(model_dir)
    assert config.name == "pre"
    assert config.max_batch_size == 8
    assert config.default_model_filename == "model.py"
    assert [i.name for i in config.input] == ["x"]


def test_load_onnx_model_without_config(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    config = load_model_config(tmp_path / "mlp")
    assert (config.name, config.backend, config.max_batch_size) == ("mlp", "onnxruntime", 4)
    assert [list(i.dims) for i in config.input] == [[4]]


def test_load_name_must_match_directory(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path / "pre", 'name: "preprocess"\n' + PY_IO)
    with pytest.raises(InvalidArgument) as exc:
        load_model_config(model_dir)
    msg = error_of(exc)
    assert str(model_dir / "config.pbtxt") in msg
    assert "'preprocess'" in msg and "directory 'pre'" in msg
    assert 'name: "pre"' in msg


def test_load_parse_error_names_the_file(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path / "pre", 'backend: "python"\nmax_batch_sise: 2\n')
    with pytest.raises(InvalidArgument) as exc:
        load_model_config(model_dir)
    assert error_of(exc).startswith(
        f"{model_dir / 'config.pbtxt'}:2:1: unknown field 'max_batch_sise'"
    )


def test_load_validation_error_names_the_file(tmp_path: Path) -> None:
    model_dir = python_model(
        tmp_path / "pre", PY_IO.replace("max_batch_size: 8", "max_batch_size: -3")
    )
    with pytest.raises(InvalidArgument) as exc:
        load_model_config(model_dir)
    assert error_of(exc).startswith(
        f"{model_dir / 'config.pbtxt'} (model 'pre'): max_batch_size is -3"
    )


def test_load_override_replaces_the_file(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path / "pre", "this is { not a config")
    override = config_from_json({"backend": "python", "max_batch_size": 2})
    config = load_model_config(model_dir, override)
    assert (config.name, config.backend, config.max_batch_size) == ("pre", "python", 2)
    override.name = "other"
    with pytest.raises(InvalidArgument) as exc:
        load_model_config(model_dir, override)
    assert "override" in error_of(exc) and "'other'" in error_of(exc)


def test_load_autocompletes_from_the_version_the_policy_serves(tmp_path: Path) -> None:
    onnx_mlp(tmp_path / "mlp" / "1" / "model.onnx", batch=2)
    onnx_mlp(tmp_path / "mlp" / "2" / "model.onnx")
    assert load_model_config(tmp_path / "mlp").max_batch_size == 4  # latest: version 2 batches
    write(tmp_path / "mlp" / "config.pbtxt", "version_policy { specific { versions: [ 1 ] } }")
    config = load_model_config(tmp_path / "mlp")
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 4]


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as exc:
        load_model_config(tmp_path / "nope")
    assert str(tmp_path / "nope") in error_of(exc)


def test_load_without_config_or_model_file_says_what_to_add(tmp_path: Path) -> None:
    write(tmp_path / "m" / "1" / "weights.bin", "")
    with pytest.raises(InvalidArgument) as exc:
        load_model_config(tmp_path / "m")
    assert "no config.pbtxt" in error_of(exc)
    assert "no backend or platform" in error_of(exc)


# --------------------------------------------------------------------------------------------
# versions


def test_versions_on_disk_only_numeric_directories(tmp_path: Path) -> None:
    m = tmp_path / "m"
    for name in ("1", "2", "10", "9", "0", "007", "v3", ".4", "latest"):
        (m / name).mkdir(parents=True)
    write(m / "5", "a file, not a version")
    write(m / "config.pbtxt")
    assert versions_on_disk(m) == [1, 2, 9, 10]
    with pytest.raises(NotFound):
        versions_on_disk(tmp_path / "missing")


def policy(text: str) -> ModelConfig:
    return cfg('name: "m"\n' + text)


def test_select_versions_policies() -> None:
    disk = [3, 1, 7, 5]
    assert select_versions(policy(""), disk) == [7]
    assert select_versions(policy("version_policy { latest { num_versions: 2 } }"), disk) == [5, 7]
    assert select_versions(policy("version_policy { latest { num_versions: 9 } }"), disk) == [
        1,
        3,
        5,
        7,
    ]
    assert select_versions(policy("version_policy { all { } }"), disk) == [1, 3, 5, 7]
    assert select_versions(policy("version_policy { specific { versions: [ 5, 1 ] } }"), disk) == [
        1,
        5,
    ]


def test_select_versions_specific_missing_names_missing_and_present() -> None:
    with pytest.raises(NotFound) as exc:
        select_versions(policy("version_policy { specific { versions: [ 1, 4, 6 ] } }"), [1, 2])
    msg = error_of(exc)
    assert "[4, 6]" in msg
    assert "versions present: [1, 2]" in msg
    assert "model 'm'" in msg


def test_select_versions_nothing_to_serve() -> None:
    with pytest.raises(NotFound) as exc:
        select_versions(policy(""), [])
    assert "no version to serve" in error_of(exc)
    with pytest.raises(InvalidArgument):
        select_versions(policy("version_policy { latest { } }"), [1])


# --------------------------------------------------------------------------------------------
# ModelRepository


@pytest.fixture
def two_repos(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    python_model(a / "pre")
    python_model(a / "mlp")
    python_model(b / "post")
    (a / ".git").mkdir()
    write(a / "README.md", "not a model")
    return a, b


def test_repository_lists_models_of_all_paths(two_repos: tuple[Path, Path]) -> None:
    a, b = two_repos
    repo = ModelRepository([a, str(b)])
    assert repo.models() == {"mlp": a / "mlp", "post": b / "post", "pre": a / "pre"}
    assert repo.model_dir("post") == b / "post"
    assert repo.paths == (a, b)


def test_repository_sees_new_models(two_repos: tuple[Path, Path]) -> None:
    a, b = two_repos
    repo = ModelRepository([a, b])
    python_model(b / "late")
    assert "late" in repo.models()


def test_repository_unknown_model_suggests(two_repos: tuple[Path, Path]) -> None:
    repo = ModelRepository(two_repos)
    with pytest.raises(NotFound) as exc:
        repo.model_dir("mpl")
    assert "model 'mpl' is not in the model repository" in error_of(exc)
    assert "did you mean 'mlp'" in error_of(exc)


def test_repository_duplicate_name_across_repositories(two_repos: tuple[Path, Path]) -> None:
    a, b = two_repos
    python_model(b / "mlp")
    repo = ModelRepository([a, b])
    with pytest.raises(AlreadyExists) as exc:
        repo.models()
    msg = error_of(exc)
    assert "'mlp'" in msg and str(a / "mlp") in msg and str(b / "mlp") in msg
    assert exc.value.code is Code.ALREADY_EXISTS
    with pytest.raises(AlreadyExists):
        repo.model_dir("mlp")
    assert repo.model_dir("pre") == a / "pre"  # other models are unaffected
    assert repo.duplicates() == {"mlp": [a / "mlp", b / "mlp"]}


def test_repository_same_path_twice_is_one_repository(two_repos: tuple[Path, Path]) -> None:
    a, _ = two_repos
    repo = ModelRepository([a, a / ".." / "a"])
    assert set(repo.models()) == {"mlp", "pre"}


def test_repository_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as exc:
        ModelRepository([tmp_path / "missing"])
    assert str(tmp_path / "missing") in error_of(exc)
    with pytest.raises(InvalidArgument):
        ModelRepository([])


def touch(path: Path, mtime: int) -> None:
    os.utime(path, ns=(mtime, mtime))


def test_fingerprint_tracks_changes(tmp_path: Path) -> None:
    model_dir = python_model(tmp_path / "repo" / "pre", 'backend: "python"')
    repo = ModelRepository([tmp_path / "repo"])
    base = repo.fingerprint("pre")
    assert repo.fingerprint("pre") == base
    assert base[0] == str(model_dir)

    # __pycache__ written by the python backend and hidden files are not changes
    write(model_dir / "1" / "__pycache__" / "model.cpython-311.pyc", "x")
    write(model_dir / ".hidden", "x")
    assert repo.fingerprint("pre") == base

    touch(model_dir / "config.pbtxt", 1_000_000_000)
    edited = repo.fingerprint("pre")
    assert edited != base

    (model_dir / "1" / "model.py").write_text("class TritonPythonModel:\n    x = 1\n")
    touch(model_dir / "1" / "model.py", 1_000_000_000)  # same mtime as before? size differs
    changed_file = repo.fingerprint("pre")
    assert changed_file != edited

    python_model(model_dir, versions=(2,))
    new_version = repo.fingerprint("pre")
    assert new_version != changed_file
    assert any(path.startswith("2/") for path, _, _ in new_version[1])

    (model_dir / "2" / "model.py").unlink()
    assert repo.fingerprint("pre") != new_version


def test_fingerprint_unknown_model(tmp_path: Path) -> None:
    python_model(tmp_path / "repo" / "pre")
    with pytest.raises(NotFound):
        ModelRepository([tmp_path / "repo"]).fingerprint("post")
