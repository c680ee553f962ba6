"""Model configuration: from ``config.pbtxt`` (or a JSON override) to a complete ModelConfig.

Where it sits: the repository layer turns a model directory into the configuration that the
server, the scheduler and a backend all read. :func:`load_model_config` is the one entry point
and runs the same pipeline as Triton with auto-complete enabled:

    parse (text format, or the load API's JSON)  ->  name check against the directory
      ->  :func:`autocomplete` (backend/platform/file name, ONNX inputs and outputs,
          max_batch_size and dynamic batching, Triton's normalisation of defaults)
      ->  :func:`validate` (clear errors that name the file, the field and the fix)

The message type is Triton's own ``inference.ModelConfig`` (as generated in tritonclient), so
what the server returns from the model-config endpoint is what Triton would return. Only the
filesystem is touched here; the ``onnx`` package is imported lazily and only when inputs or
outputs must be read from a model file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# No stubs ship with protobuf; types-protobuf may or may not be installed.
from google.protobuf import json_format, text_format  # type: ignore[import-untyped, unused-ignore]
from tritonclient.grpc.model_config_pb2 import (
    DataType,
    ModelConfig,
    ModelInstanceGroup,
)

from sonic.protocol.errors import InvalidArgument, NotFound, Unsupported, nearest
from sonic.repository.layout import select_versions, versions_on_disk

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "ModelConfig",
    "autocomplete",
    "config_from_json",
    "load_model_config",
    "parse_config",
    "validate",
]

CONFIG_FILENAME = "config.pbtxt"

# Triton's --backend-config=default-max-batch-size default: what an auto-completed batching
# model gets when its configuration does not give max_batch_size.
DEFAULT_MAX_BATCH_SIZE = 4

ONNXRUNTIME = "onnxruntime"
PYTHON = "python"
PYTORCH = "pytorch"
ENSEMBLE_PLATFORM = "ensemble"

# Backend -> (platform it implies, default model file name). The python backend has no platform.
_BACKEND_DEFAULTS: dict[str, tuple[str, str]] = {
    ONNXRUNTIME: ("onnxruntime_onnx", "model.onnx"),
    PYTORCH: ("pytorch_libtorch", "model.pt"),
    PYTHON: ("", "model.py"),
}
# Platforms whose backend is fixed; a config pairing one with another known backend is an error.
_PLATFORM_BACKEND: dict[str, str] = {
    "onnxruntime_onnx": ONNXRUNTIME,
    "pytorch_libtorch": PYTORCH,
    "tensorrt_plan": "tensorrt",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}
_TYPED_BACKENDS = frozenset(_PLATFORM_BACKEND.values())
# Triton starts two CPU instances for these backends when no count is given, one otherwise.
_TWO_CPU_INSTANCE_BACKENDS = frozenset({ONNXRUNTIME, "tensorflow"})
_SEQUENCE_IDLE_DEFAULT_US = 1_000_000

# ONNX TensorProto element type name -> model-config data type name.
_ONNX_TO_CONFIG = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FLOAT16": "TYPE_FP16",
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "STRING": "TYPE_STRING",
    "BFLOAT16": "TYPE_BF16",
}

_KIND_NAMES = ModelInstanceGroup.Kind


# --------------------------------------------------------------------------------------------
# parsing


def parse_config(text: str, source: str) -> ModelConfig:
    """Parse ``config.pbtxt`` text; a syntax error names ``source``, line, column and field."""
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidArgument(_describe_text_error(exc, text, source)) from None
    return config


def config_from_json(obj: dict[str, Any] | str) -> ModelConfig:
    """A ModelConfig from the JSON of Triton's load API (``parameters.config``).

    Accepts the JSON text or the decoded object; field names may be the proto names
    (``max_batch_size``) or their JSON camelCase forms, as protobuf's JSON mapping allows.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                f"model config override is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from None
    if not isinstance(obj, dict):
        raise InvalidArgument(
            f"model config override must be a JSON object, got {type(obj).__name__}"
        )
    config = ModelConfig()
    try:
        json_format.ParseDict(obj, config)
    except json_format.ParseError as exc:
        raise InvalidArgument("model config override: " + _describe_json_error(str(exc))) from None
    return config


_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "([^"]+)"')
_NO_ENUM_VALUE = re.compile(r'Enum type "([\w.]+)" has no value named (\S+?)\.?$')
_MULTIPLE = re.compile(r'Message type "([\w.]+)" should not have multiple "([^"]+)" fields')
_POSITION = re.compile(r"^\d+:\d+ : ")
_JSON_ENUM = re.compile(r"Invalid enum value (\S+) for enum type ([\w.]+) at ([\w.\[\]]+?)\.*$")
_JSON_AT = re.compile(r' at "([\w.\[\]]*)"')


def _message_descriptor(full_name: str) -> Any:
    try:
        found = ModelConfig.DESCRIPTOR.file.pool.FindMessageTypeByName(full_name)
    except KeyError:
        return None
    return found


def _enum_values(full_name: str) -> list[str]:
    try:
        enum = ModelConfig.DESCRIPTOR.file.pool.FindEnumTypeByName(full_name)
    except KeyError:
        return []
    return list(enum.values_by_name)


def _unknown_field(type_name: str, field: str) -> str:
    """'unknown field ...' with the message it was found in and the nearest valid fields."""
    desc = _message_descriptor(type_name)
    where = "" if desc is None or desc.name == "ModelConfig" else f" in {desc.name}"
    choices = [f.name for f in desc.fields] if desc is not None else []
    return f"unknown field {field!r}{where}" + nearest(field, choices)


def _field_before(text: str, line: int, column: int) -> str | None:
    """The field whose value starts at (line, column): the last ``name:`` before that point."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    head = "\n".join([*lines[: line - 1], lines[line - 1][: max(column - 1, 0)]])
    match = re.search(r"([A-Za-z_]\w*)\s*:\s*(\[[^\[\]{}]*)?$", head)
    return match.group(1) if match else None


def _describe_text_error(exc: text_format.ParseError, text: str, source: str) -> str:
    line, column = exc.GetLine(), exc.GetColumn()
    detail = _POSITION.sub("", str(exc))
    if line is not None:
        lines = text.splitlines()
        if 1 <= line <= len(lines):
            detail = detail.removeprefix(f"'{lines[line - 1]}': ")
    where = source if line is None else f"{source}:{line}:{column}"
    if m := _NO_FIELD.search(detail):
        return f"{where}: {_unknown_field(m.group(1), m.group(2))}"
    if m := _MULTIPLE.search(detail):
        return (
            f"{where}: field {m.group(2)!r} is given more than once; it takes a single value "
            "(use [ ... ] only for repeated fields such as input, output, dims)"
        )
    field = _field_before(text, line, column) if line is not None and column is not None else None
    if m := _NO_ENUM_VALUE.search(detail):
        value = m.group(2)
        in_field = f" for field {field!r}" if field else ""
        return f"{where}: unknown value {value!r}{in_field}" + nearest(
            value, _enum_values(m.group(1))
        )
    in_field = f"field {field!r}: " if field else ""
    return f"{where}: {in_field}{detail.rstrip('.')}"


def _describe_json_error(detail: str) -> str:
    if m := _NO_FIELD.search(detail):
        at = _JSON_AT.search(detail)
        path = f" (at {at.group(1)})" if at and at.group(1) not in ("", "ModelConfig") else ""
        return _unknown_field(m.group(1), m.group(2)) + path
    if m := _JSON_ENUM.search(detail):
        value = m.group(1)
        return f"unknown value {value!r} at {m.group(3)}" + nearest(value, _enum_values(m.group(2)))
    return detail.split("\n", maxsplit=1)[0].rstrip(".")


# --------------------------------------------------------------------------------------------
# auto-completion


def autocomplete(config: ModelConfig, model_dir_version_path: Path | None) -> ModelConfig:
    """Fill what Triton fills when auto-complete is on; returns a new message.

    ``model_dir_version_path`` is the version directory the model file is read from
    (``<model_dir>/<version>``), or None when there is none yet; then the name comes only from
    the configuration and nothing is read from a model file.

    In order: the name (from the model directory); backend, platform and default model file
    name (from each other, or from the model file found in the version directory); for the
    onnxruntime backend, inputs and outputs read from the ONNX file when either side is
    missing, with max_batch_size set to :data:`DEFAULT_MAX_BATCH_SIZE` and dynamic batching
    enabled when every tensor has a dynamic first dimension; finally Triton's normalisation
    (version policy, preferred batch size, sequence idle time, pinned memory, instance groups).
    """
    out = ModelConfig()
    out.CopyFrom(config)
    if not out.name and model_dir_version_path is not None:
        out.name = model_dir_version_path.parent.name
    _complete_backend(out, model_dir_version_path)
    if out.backend == ONNXRUNTIME and model_dir_version_path is not None:
        _complete_onnx_io(out, model_dir_version_path / out.default_model_filename)
    _normalize(out)
    return out


def _complete_backend(config: ModelConfig, version_path: Path | None) -> None:
    """Backend from platform, default model file name, or the file present; then the reverse."""
    if not config.backend:
        if config.platform in _PLATFORM_BACKEND:
            config.backend = _PLATFORM_BACKEND[config.platform]
        elif config.default_model_filename:
            for backend, (_, filename) in _BACKEND_DEFAULTS.items():
                if config.default_model_filename == filename:
                    config.backend = backend
        elif not config.platform and version_path is not None:
            for backend, (_, filename) in _BACKEND_DEFAULTS.items():
                if (version_path / filename).exists():
                    config.backend = backend
                    break
    if config.backend in _BACKEND_DEFAULTS:
        platform, filename = _BACKEND_DEFAULTS[config.backend]
        if platform and not config.platform:
            config.platform = platform
        if not config.default_model_filename:
            config.default_model_filename = filename


def _complete_onnx_io(config: ModelConfig, model_path: Path) -> None:
    """Inputs, outputs and batching from the ONNX graph, as Triton's onnxruntime backend does.

    Nothing is read when the configuration already lists both inputs and outputs. Otherwise
    the model batches when every graph input and output has a dynamic first dimension; then a
    missing max_batch_size becomes the default and, with max_batch_size > 1 and no scheduler
    given, dynamic batching is enabled. A graph that cannot batch with a non-zero
    max_batch_size in the configuration is an error. The sides that are missing are filled,
    without the batch dimension when the model batches.
    """
    has_inputs = len(config.input) + len(config.batch_input) > 0
    has_outputs = len(config.output) > 0
    if has_inputs and has_outputs:
        return
    inputs, outputs = _onnx_signature(model_path)
    fixed = [name for name, _, dims in (*inputs, *outputs) if not dims or dims[0] != -1]
    if not fixed:
        if config.max_batch_size == 0:
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
            config.dynamic_batching.SetInParent()
    elif config.max_batch_size != 0:
        raise InvalidArgument(
            f"model '{config.name}': max_batch_size is {config.max_batch_size} but {model_path} "
            f"cannot batch: tensor {fixed[0]!r} has no dynamic first dimension; set "
            "max_batch_size: 0, or export the model with a dynamic batch dimension"
        )
    batching = config.max_batch_size > 0
    if not has_inputs:
        _add_tensors(config.input, inputs, batching)
    if not has_outputs:
        _add_tensors(config.output, outputs, batching)


def _add_tensors(field: Any, tensors: list[tuple[str, str, list[int]]], batching: bool) -> None:
    for name, data_type, dims in tensors:
        io = field.add()
        io.name = name
        io.data_type = DataType.Value(data_type)
        shape = dims[1:] if batching else dims
        if shape:
            io.dims.extend(shape)
        else:
            # A per-item scalar is spelled dims [1] with an empty reshape (batching models only;
            # validation explains the problem for a non-batching one).
            io.dims.append(1)
            if batching:
                io.reshape.SetInParent()


def _import_onnx(model_path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise Unsupported(
            f"reading inputs and outputs from {model_path} needs the 'onnx' package: "
            "pip install 'sonic[onnx]' (or list input and output in config.pbtxt)"
        ) from None
    return onnx


def _onnx_signature(
    model_path: Path,
) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """(name, TYPE_*, dims with -1 for dynamic) of the graph inputs (less initializers), outputs."""
    if model_path.is_dir():  # a large ONNX model is a directory holding model.onnx + weights
        model_path = model_path / "model.onnx"
    if not model_path.is_file():
        raise NotFound(
            f"model file {model_path} not found: auto-completion of inputs and outputs reads "
            "it; add the file or list input and output in config.pbtxt"
        )
    onnx = _import_onnx(model_path)
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # the onnx package raises several types for a bad file
        raise InvalidArgument(f"cannot read ONNX model {model_path}: {exc}") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [
        _onnx_tensor(onnx, vi, model_path) for vi in graph.input if vi.name not in initializers
    ]
    outputs = [_onnx_tensor(onnx, vi, model_path) for vi in graph.output]
    return inputs, outputs


def _onnx_tensor(onnx: Any, value_info: Any, model_path: Path) -> tuple[str, str, list[int]]:
    name = str(value_info.name)
    hint = "list it in config.pbtxt"
    if value_info.type.WhichOneof("value") != "tensor_type":
        raise Unsupported(f"{model_path}: {name!r} is not a tensor; {hint}")
    tensor = value_info.type.tensor_type
    try:
        onnx_type = onnx.TensorProto.DataType.Name(tensor.elem_type)
    except ValueError:
        onnx_type = str(tensor.elem_type)
    if onnx_type not in _ONNX_TO_CONFIG:
        raise Unsupported(
            f"{model_path}: tensor {name!r} has ONNX element type {onnx_type}, which has no "
            f"Triton data type (supported: {', '.join(_ONNX_TO_CONFIG)})"
        )
    if not tensor.HasField("shape"):
        raise Unsupported(f"{model_path}: tensor {name!r} has no shape in the graph; {hint}")
    dims = [
        int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1
        for d in tensor.shape.dim
    ]
    return name, _ONNX_TO_CONFIG[onnx_type], dims


def _normalize(config: ModelConfig) -> None:
    """The defaults Triton writes into every loaded configuration."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching"):
        batcher = config.dynamic_batching
        if not batcher.preferred_batch_size and config.max_batch_size > 0:
            batcher.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        seq = config.sequence_batching
        if seq.max_sequence_idle_microseconds == 0:
            seq.max_sequence_idle_microseconds = _SEQUENCE_IDLE_DEFAULT_US
        if (
            seq.HasField("oldest")
            and not seq.oldest.preferred_batch_size
            and config.max_batch_size > 0
        ):
            seq.oldest.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("ensemble_scheduling") or config.platform == ENSEMBLE_PLATFORM:
        return
    optimization = config.optimization
    if not optimization.HasField("input_pinned_memory"):
        optimization.input_pinned_memory.enable = True
    if not optimization.HasField("output_pinned_memory"):
        optimization.output_pinned_memory.enable = True
    _normalize_instance_groups(config)


def _normalize_instance_groups(config: ModelConfig) -> None:
    """One CPU group when none is given; names, kinds and counts filled in each group.

    KIND_AUTO resolves to KIND_CPU (this server sees no GPU); KIND_GPU is kept and left to the
    backend. A count of 0 (proto3's "unset") becomes Triton's default: 2 CPU instances for the
    onnxruntime and tensorflow backends, 1 otherwise.
    """
    if not config.instance_group:
        group = config.instance_group.add()
        group.name = config.name
        group.kind = _KIND_NAMES.Value("KIND_CPU")
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == _KIND_NAMES.Value("KIND_AUTO"):
            group.kind = _KIND_NAMES.Value("KIND_CPU")
        if group.count == 0:
            two = (
                group.kind == _KIND_NAMES.Value("KIND_CPU")
                and config.backend in _TWO_CPU_INSTANCE_BACKENDS
            )
            group.count = 2 if two else 1


# --------------------------------------------------------------------------------------------
# validation


def validate(config: ModelConfig, source: str) -> None:
    """Raise InvalidArgument for the first problem found, naming ``source``, field and fix.

    Meant for an auto-completed configuration (the output of :func:`autocomplete`). The checks
    are Triton's (backend/platform, batching, tensor shapes, dynamic batching, priorities,
    instance groups) plus duplicate tensor names, which Triton's backends reject at load.
    """
    problem = (
        _check_identity(config)
        or _check_batching(config)
        or _check_version_policy(config)
        or _check_tensors(config, "input")
        or _check_tensors(config, "output")
        or _check_dynamic_batching(config)
        or _check_instance_groups(config)
    )
    if problem:
        name = f" (model '{config.name}')" if config.name else ""
        raise InvalidArgument(f"{source}{name}: {problem}")


def _check_identity(config: ModelConfig) -> str | None:
    if not config.name:
        return 'missing name: set name: "<model directory name>"'
    platform, backend = config.platform, config.backend
    known = ", ".join(f'"{b}"' for b in _BACKEND_DEFAULTS)
    if platform == ENSEMBLE_PLATFORM:
        if backend:
            return (
                f'an ensemble has platform: "ensemble" and no backend; remove backend: "{backend}"'
            )
        if not config.HasField("ensemble_scheduling"):
            return 'platform "ensemble" needs an ensemble_scheduling { step [ ... ] } section'
        if not config.ensemble_scheduling.step:
            return "ensemble_scheduling lists no step; add at least one step [ ... ]"
        if config.instance_group:
            return "an ensemble takes no instance_group; remove it"
        return None
    if config.HasField("ensemble_scheduling"):
        return f'ensemble_scheduling is only for platform: "ensemble" (platform is {platform!r})'
    if not backend:
        if platform:
            return (
                f"unknown platform {platform!r} and no backend"
                + nearest(platform, [*_PLATFORM_BACKEND, ENSEMBLE_PLATFORM])
                + f"; set backend: one of {known}"
            )
        files = ", ".join(filename for _, filename in _BACKEND_DEFAULTS.values())
        return (
            f"no backend or platform: set backend: one of {known} (or platform: "
            f'"onnxruntime_onnx" / "ensemble"), or put a model file ({files}) in a version '
            "directory so it can be auto-completed"
        )
    implied = _PLATFORM_BACKEND.get(platform)
    if backend in _TYPED_BACKENDS and implied != backend:
        expected = [p for p, b in _PLATFORM_BACKEND.items() if b == backend]
        return (
            f"platform {platform!r} does not go with backend {backend!r}; "
            f"expected platform {' or '.join(repr(p) for p in expected)} (or no platform)"
        )
    return None


def _check_batching(config: ModelConfig) -> str | None:
    if config.max_batch_size < 0:
        return (
            f"max_batch_size is {config.max_batch_size}; it must be >= 0 "
            "(0 for a model without a batch dimension)"
        )
    return None


def _check_version_policy(config: ModelConfig) -> str | None:
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "latest" and policy.latest.num_versions < 1:
        return "version_policy.latest.num_versions must be >= 1 (latest { num_versions: 1 })"
    if choice == "specific" and not policy.specific.versions:
        return "version_policy.specific lists no versions; e.g. specific { versions: [1] }"
    return None


def _check_tensors(config: ModelConfig, kind: str) -> str | None:
    seen: set[str] = set()
    for index, io in enumerate(getattr(config, kind)):
        label = f"{kind}[{index}]" if not io.name else f"{kind} {io.name!r}"
        if not io.name:
            return f'{label} has no name; set name: "..."'
        if io.name in seen:
            return f"{label} is listed twice; {kind} names must be unique"
        seen.add(io.name)
        problem = _check_tensor_shape(io, config.max_batch_size)
        if problem:
            return f"{label}: {problem}"
    return None


def _check_tensor_shape(io: Any, max_batch_size: int) -> str | None:
    if io.data_type == DataType.Value("TYPE_INVALID"):
        return "data_type is missing or TYPE_INVALID; set e.g. data_type: TYPE_FP32"
    dims = list(io.dims)
    if not dims:
        return (
            "dims is empty; list the shape without the batch dimension, e.g. dims: [ 16 ] "
            "(a scalar per batch item is dims: [ 1 ] with reshape: { shape: [ ] })"
        )
    if bad := _bad_dims(dims):
        return f"dims {dims} has {bad}; each dimension must be >= 1, or -1 for a variable size"
    if not io.HasField("reshape"):
        return None
    shape = list(io.reshape.shape)
    if not shape and max_batch_size == 0:
        return (
            "reshape: { shape: [ ] } (a scalar) needs a batching model (max_batch_size > 0); "
            "give the tensor at least one dimension"
        )
    if bad := _bad_dims(shape):
        return (
            f"reshape.shape {shape} has {bad}; each dimension must be >= 1, or -1 for a "
            "variable size"
        )
    if not _same_element_count(dims, shape):
        return (
            f"dims {dims} and reshape.shape {shape} hold different numbers of elements; a "
            "reshape must keep the element count (and the same variable-size dimensions)"
        )
    return None


def _bad_dims(dims: list[int]) -> str | None:
    for d in dims:
        if d < 1 and d != -1:
            return f"dimension {d}"
    return None


def _same_element_count(dims: list[int], shape: list[int]) -> bool:
    """Triton's reshape rule: equal products between the variable-size (-1) dimensions."""
    if not shape:
        return _chunks(dims) == [1]
    return _chunks(dims) == _chunks(shape)


def _chunks(dims: list[int]) -> list[int]:
    """Products of the fixed dimensions between -1s: [2, 4, -1, 6] -> [8, 6]."""
    chunks = [1]
    for d in dims:
        if d == -1:
            chunks.append(1)
        else:
            chunks[-1] *= d
    return chunks


def _check_dynamic_batching(config: ModelConfig) -> str | None:
    if config.HasField("sequence_batching") and config.sequence_batching.HasField("oldest"):
        problem = _check_preferred(
            list(config.sequence_batching.oldest.preferred_batch_size),
            config.max_batch_size,
            "sequence_batching.oldest.preferred_batch_size",
        )
        if problem:
            return problem
    if not config.HasField("dynamic_batching"):
        return None
    batcher = config.dynamic_batching
    problem = _check_preferred(
        list(batcher.preferred_batch_size),
        config.max_batch_size,
        "dynamic_batching.preferred_batch_size",
    )
    if problem:
        return problem
    levels = batcher.priority_levels
    if levels:
        default = batcher.default_priority_level
        if not 1 <= default <= levels:
            return (
                f"dynamic_batching.default_priority_level is {default}; with priority_levels: "
                f"{levels} it must be in [1, {levels}]"
            )
        for level in sorted(batcher.priority_queue_policy):
            if not 1 <= level <= levels:
                return (
                    f"dynamic_batching.priority_queue_policy has level {level}; with "
                    f"priority_levels: {levels} levels must be in [1, {levels}]"
                )
    if batcher.preserve_ordering and levels > 1:
        return (
            f"dynamic_batching.preserve_ordering allows one priority level, not {levels}; "
            "set priority_levels: 1 or preserve_ordering: false"
        )
    return None


def _check_preferred(sizes: list[int], max_batch_size: int, field: str) -> str | None:
    for size in sizes:
        if size <= 0:
            return f"{field} has {size}; preferred batch sizes must be >= 1"
        if size > max_batch_size:
            fix = (
                "the model does not batch (max_batch_size: 0); set max_batch_size or remove it"
                if max_batch_size == 0
                else f"it must be <= max_batch_size ({max_batch_size})"
            )
            return f"{field} has {size}; {fix}"
    return None


def _check_instance_groups(config: ModelConfig) -> str | None:
    for index, group in enumerate(config.instance_group):
        label = f"instance_group[{index}]" + (f" ({group.name!r})" if group.name else "")
        if group.count < 0:
            return f"{label} count is {group.count}; it must be >= 1 (or left out for the default)"
        if group.kind == _KIND_NAMES.Value("KIND_CPU") and group.gpus:
            return f"{label} has kind KIND_CPU but lists gpus {list(group.gpus)}; remove gpus"
        if group.kind == _KIND_NAMES.Value("KIND_MODEL") and group.gpus:
            return f"{label} has kind KIND_MODEL but lists gpus {list(group.gpus)}; remove gpus"
    return None


# --------------------------------------------------------------------------------------------
# the pipeline


def load_model_config(model_dir: Path, override: ModelConfig | None = None) -> ModelConfig:
    """Read, auto-complete and validate the configuration of the model in ``model_dir``.

    ``config.pbtxt`` may be absent: then everything comes from auto-completion, as in Triton.
    An ``override`` (the load API's JSON config, see :func:`config_from_json`) replaces the
    file entirely, as Triton ignores ``config.pbtxt`` when a load request carries a config.
    The name, when given, must equal the directory name.
    """
    model_dir = Path(model_dir)
    name = model_dir.name
    if not model_dir.is_dir():
        raise NotFound(f"model directory {model_dir} does not exist")
    path = model_dir / CONFIG_FILENAME
    if override is not None:
        config = ModelConfig()
        config.CopyFrom(override)
        source = f"config override for {model_dir}"
    elif path.is_file():
        config = parse_config(_read_text(path), str(path))
        source = str(path)
    else:
        config = ModelConfig()
        source = f"{model_dir} (no {CONFIG_FILENAME}; auto-completed)"
    if config.name and config.name != name:
        raise InvalidArgument(
            f"{source}: name {config.name!r} does not match the model directory {name!r}; a "
            f'model is named after its directory: set name: "{name}" or remove the name field'
        )
    config.name = name
    completed = autocomplete(config, _version_for_autocomplete(config, model_dir))
    validate(completed, source)
    return completed


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read the model configuration: {exc}") from None


def _version_for_autocomplete(config: ModelConfig, model_dir: Path) -> Path | None:
    """The newest version the policy serves (else the newest on disk): where files are read."""
    on_disk = versions_on_disk(model_dir)
    if not on_disk:
        return None
    try:
        chosen = select_versions(config, on_disk)
    except NotFound:
        chosen = on_disk
    return model_dir / str(chosen[-1] if chosen else on_disk[-1])
