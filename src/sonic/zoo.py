"""The reference models of the project and the model repositories that serve them.

Where this sits: nothing in the serving path imports this module. Tests, benchmarks, examples
and ``sonic demo`` use it to make real, small models (no mocks, no downloads) and to lay them
out as Triton model repositories, so that the *same* model can be served

- by sonic's onnxruntime backend (:func:`write_sonic_repository`), and
- by NVIDIA's own Triton, which here has only the python backend
  (:func:`write_triton_python_repository`: a ``model.py`` that runs the same ONNX file with
  onnxruntime),

which is what side-by-side benchmarks and differential (conformance) tests need.

The models:

- :func:`mlp_onnx` — the hls4ml jet-tagging benchmark shape (16 high-level jet features →
  64 → 32 → 32 → 5 classes: g, q, W, Z, t). It is the canonical "tiny model" of the field:
  per-request overhead dominates, so it measures a server's data path, not its arithmetic.
- :func:`cnn_onnx` — a ProtoDUNE EmTrackMichel-like patch classifier (one 48x48 wire-time
  patch → 4 classes: EM shower, track, Michel electron, empty). It is compute-bound on a CPU,
  so it measures batching and instance scaling.
- :func:`write_conformance_repository` — protocol test models (identity per datatype,
  ``add_sub``, ``sleep``) as python-backend models that run unchanged under NVIDIA Triton and
  under sonic's Triton-compatible python backend.

Weights come from a seeded numpy Generator with He-style initialisation, so the outputs are
deterministic per seed and non-trivial (softmax rows are not uniform).
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "CONFORMANCE_MODELS",
    "IDENTITY_DATATYPES",
    "MODELS",
    "ModelSpec",
    "TensorSpec",
    "cnn_onnx",
    "config_pbtxt",
    "conformance_specs",
    "mlp_onnx",
    "model_spec",
    "write_conformance_repository",
    "write_sonic_repository",
    "write_triton_python_repository",
]

#: Opset and IR version of the ONNX files: old enough that any onnxruntime >= 1.14 loads them.
OPSET = 17
IR_VERSION = 8

# --------------------------------------------------------------------------------------------
# ONNX models
# --------------------------------------------------------------------------------------------

MLP_LAYERS = (16, 64, 32, 32, 5)
CNN_CHANNELS = (24, 48, 96)
CNN_PATCH = 48
CNN_HIDDEN = 64
CNN_CLASSES = 4


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> npt.NDArray[np.float32]:
    weights: npt.NDArray[np.float32] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(
        np.float32
    )
    return weights


def _bias(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    bias: npt.NDArray[np.float32] = rng.normal(0.0, 0.1, n).astype(np.float32)
    return bias


def _serialize(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sonic.zoo",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def _dense(
    rng: np.random.Generator,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    x: str,
    *,
    n_in: int,
    n_out: int,
    prefix: str,
    relu: bool,
) -> str:
    """Append ``Gemm(x, W, b)`` (+ ReLU) to the graph; return the output name."""
    w, b = f"{prefix}.weight", f"{prefix}.bias"
    inits.append(numpy_helper.from_array(_he(rng, (n_in, n_out), n_in), w))
    inits.append(numpy_helper.from_array(_bias(rng, n_out), b))
    y = f"{prefix}.out"
    nodes.append(helper.make_node("Gemm", [x, w, b], [y], name=f"{prefix}.gemm"))
    if not relu:
        return y
    nodes.append(helper.make_node("Relu", [y], [f"{prefix}.relu"], name=f"{prefix}.relu"))
    return f"{prefix}.relu"


def mlp_onnx(seed: int = 0) -> bytes:
    """The jet-tagger MLP 16→64→32→32→5 (ReLU, final Softmax) as a serialized ONNX model.

    Why it exists: this is the hls4ml jet-tagging benchmark network (the same layer widths),
    the reference "tiny model" for trigger-latency studies. Served, it costs microseconds of
    arithmetic, so throughput measures the server's per-request overhead.

    Input ``"input"`` FP32 ``[batch, 16]``; output ``"output"`` FP32 ``[batch, 5]``; ``batch``
    is a symbolic dimension.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "input"
    last = len(MLP_LAYERS) - 2
    for i, (n_in, n_out) in enumerate(itertools.pairwise(MLP_LAYERS)):
        x = _dense(rng, nodes, inits, x, n_in=n_in, n_out=n_out, prefix=f"fc{i + 1}", relu=i < last)
    nodes.append(helper.make_node("Softmax", [x], ["output"], axis=-1, name="softmax"))
    graph = helper.make_graph(
        nodes,
        "jet_tagger_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", MLP_LAYERS[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", MLP_LAYERS[-1]])],
        inits,
    )
    return _serialize(graph)


def cnn_onnx(seed: int = 0) -> bytes:
    """A ProtoDUNE EmTrackMichel-like CNN patch classifier as a serialized ONNX model.

    Why it exists: DUNE/ProtoDUNE reconstruction classifies 48x48 wire-time patches of the
    collection plane as EM shower, track, Michel electron or empty, with a small CNN run
    millions of times per job; that workload is the original motivation of SONIC for
    neutrino experiments. On a CPU it is compute-bound (~12.5 M multiply-adds, ~0.15 ms per
    patch on one core: ~6.5k patches/s in-process, the scale of the reference measurements in
    DESIGN.md), the opposite of the MLP.

    Layers: three blocks of Conv 3x3 (pad 1; 24, 48, 96 channels) + ReLU + MaxPool 2
    (48 → 24 → 12 → 6), Flatten (96·6·6 = 3456), Dense 64 + ReLU, Dense 4, Softmax.
    Input ``"input"`` FP32 ``[batch, 1, 48, 48]``; output ``"output"`` FP32 ``[batch, 4]``.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x, c_in, side = "input", 1, CNN_PATCH
    for i, c_out in enumerate(CNN_CHANNELS):
        p = f"conv{i + 1}"
        inits.append(numpy_helper.from_array(_he(rng, (c_out, c_in, 3, 3), c_in * 9), f"{p}.w"))
        inits.append(numpy_helper.from_array(_bias(rng, c_out), f"{p}.b"))
        nodes += [
            helper.make_node(
                "Conv",
                [x, f"{p}.w", f"{p}.b"],
                [f"{p}.conv"],
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                name=f"{p}.conv",
            ),
            helper.make_node("Relu", [f"{p}.conv"], [f"{p}.relu"], name=f"{p}.relu"),
            helper.make_node(
                "MaxPool",
                [f"{p}.relu"],
                [f"{p}.pool"],
                kernel_shape=[2, 2],
                strides=[2, 2],
                name=f"{p}.pool",
            ),
        ]
        x, c_in, side = f"{p}.pool", c_out, side // 2
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="flatten"))
    flat = c_in * side * side
    x = _dense(rng, nodes, inits, "flat", n_in=flat, n_out=CNN_HIDDEN, prefix="fc1", relu=True)
    x = _dense(rng, nodes, inits, x, n_in=CNN_HIDDEN, n_out=CNN_CLASSES, prefix="fc2", relu=False)
    nodes.append(helper.make_node("Softmax", [x], ["output"], axis=-1, name="softmax"))
    graph = helper.make_graph(
        nodes,
        "protodune_emtrackmichel_cnn",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", 1, CNN_PATCH, CNN_PATCH]
            )
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CNN_CLASSES])],
        inits,
    )
    return _serialize(graph)


# --------------------------------------------------------------------------------------------
# Model configurations (config.pbtxt)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model config: v2 datatype name and dims without the batch."""

    name: str
    datatype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What a config.pbtxt says about a model (the subset the zoo uses)."""

    name: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()
    instances: int = 1
    parameters: Mapping[str, str] = field(default_factory=dict)


def _type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _tensors(key: str, tensors: Sequence[TensorSpec]) -> list[str]:
    lines = [f"{key} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.dims)
        lines += [
            "  {",
            f'    name: "{t.name}"',
            f"    data_type: {_type(t.datatype)}",
            f"    dims: [ {dims} ]",
            "  }" + ("," if i < len(tensors) - 1 else ""),
        ]
    return [*lines, "]"]


def config_pbtxt(spec: ModelSpec) -> str:
    """The config.pbtxt text of ``spec``, in the layout of Triton's documentation."""
    lines = [
        f'name: "{spec.name}"',
        f'backend: "{spec.backend}"',
        f"max_batch_size: {spec.max_batch_size}",
        *_tensors("input", spec.inputs),
        *_tensors("output", spec.outputs),
    ]
    if spec.dynamic_batching and spec.max_batch_size > 0:
        lines.append("dynamic_batching {")
        if spec.preferred_batch_sizes:
            sizes = ", ".join(str(s) for s in spec.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines += [f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}", "}"]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {spec.instances}",
        "    kind: KIND_CPU",
        "  }",
        "]",
    ]
    for key, value in spec.parameters.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


#: Names of the ONNX reference models (see :func:`mlp_onnx`, :func:`cnn_onnx`).
MODELS = ("mlp", "cnn")
_DEFAULT_MAX_BATCH = {"mlp": 64, "cnn": 32}
_INPUT_DIMS = {"mlp": (MLP_LAYERS[0],), "cnn": (1, CNN_PATCH, CNN_PATCH)}
_OUTPUT_DIMS = {"mlp": (MLP_LAYERS[-1],), "cnn": (CNN_CLASSES,)}


def _onnx_bytes(name: str, seed: int) -> bytes:
    if name == "mlp":
        return mlp_onnx(seed)
    if name == "cnn":
        return cnn_onnx(seed)
    raise ValueError(f"unknown zoo model {name!r}; expected one of {', '.join(MODELS)}")


def model_spec(
    name: str,
    backend: str = "onnxruntime",
    *,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 100,
    preferred: Sequence[int] = (),
    instances: int = 1,
    parameters: Mapping[str, str] | None = None,
) -> ModelSpec:
    """The config of zoo model ``name`` ("mlp" or "cnn") for ``backend``."""
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; expected one of {', '.join(MODELS)}")
    return ModelSpec(
        name=name,
        backend=backend,
        max_batch_size=_DEFAULT_MAX_BATCH[name] if max_batch_size is None else max_batch_size,
        inputs=(TensorSpec("input", "FP32", _INPUT_DIMS[name]),),
        outputs=(TensorSpec("output", "FP32", _OUTPUT_DIMS[name]),),
        dynamic_batching=dynamic_batching,
        max_queue_delay_us=max_queue_delay_us,
        preferred_batch_sizes=tuple(preferred),
        instances=instances,
        parameters=dict(parameters or {}),
    )


def _write_model(dest: Path, spec: ModelSpec, files: Mapping[str, bytes | str]) -> None:
    version = dest / spec.name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (dest / spec.name / "config.pbtxt").write_text(config_pbtxt(spec))
    for filename, content in files.items():
        if isinstance(content, bytes):
            (version / filename).write_bytes(content)
        else:
            (version / filename).write_text(content)


def write_sonic_repository(
    dest: Path,
    models: Iterable[str] = MODELS,
    *,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 100,
    preferred: Sequence[int] = (),
    instances: int = 1,
    intra_op_threads: int = 0,
    seed: int = 0,
) -> Path:
    """Write the zoo models as a Triton-layout repository for sonic's onnxruntime backend.

    Layout: ``<dest>/<name>/config.pbtxt`` and ``<dest>/<name>/1/model.onnx``.
    ``max_batch_size=None`` takes each model's default (mlp 64, cnn 32). Other models already
    in ``dest`` are left alone, so repositories can be combined. ``intra_op_threads`` > 0 sets
    onnxruntime's thread count per instance (0 leaves onnxruntime's default). Returns ``dest``.
    """
    dest = Path(dest)
    for name in models:
        spec = model_spec(
            name,
            "onnxruntime",
            max_batch_size=max_batch_size,
            dynamic_batching=dynamic_batching,
            max_queue_delay_us=max_queue_delay_us,
            preferred=preferred,
            instances=instances,
            parameters={"intra_op_thread_count": str(intra_op_threads)} if intra_op_threads else None,
        )
        _write_model(dest, spec, {"model.onnx": _onnx_bytes(name, seed)})
    return dest


# --------------------------------------------------------------------------------------------
# Python-backend models (run under NVIDIA Triton unchanged)
# --------------------------------------------------------------------------------------------

#: ``model.py`` that runs ``1/model.onnx`` with onnxruntime: the requests of one execute()
#: call are concatenated along the batch dimension into one ORT run and split back.
#: Everything it needs (tensor names, thread count) comes from the model config.
ORT_MODEL_PY = textwrap.dedent(
    '''\
    """Triton python-backend model running model.onnx with onnxruntime (written by sonic.zoo).

    The requests of one execute() call are concatenated along the batch dimension into one
    onnxruntime run, then split back per request. Config parameter "intra_op_num_threads"
    (default 1) sizes onnxruntime's thread pool.
    """
    import json
    import os

    import numpy as np
    import onnxruntime as ort
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            params = config.get("parameters", {})
            threads = int(params.get("intra_op_num_threads", {}).get("string_value", "1"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
            self.session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
            self.inputs = [(t["name"], t["data_type"]) for t in config["input"]]
            self.outputs = [t["name"] for t in config["output"]]
            self.dtypes = {
                name: pb_utils.triton_string_to_numpy(dt) for name, dt in self.inputs
            }

        def execute(self, requests):
            feeds = {name: [] for name, _ in self.inputs}
            sizes = []
            for request in requests:
                for name, _ in self.inputs:
                    array = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    feeds[name].append(array.astype(self.dtypes[name], copy=False))
                sizes.append(feeds[self.inputs[0][0]][-1].shape[0])
            batch = {
                name: arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                for name, arrays in feeds.items()
            }
            results = self.session.run(self.outputs, batch)
            responses = []
            start = 0
            for size in sizes:
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(result[start : start + size]))
                    for name, result in zip(self.outputs, results)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
                start += size
            return responses

        def finalize(self):
            self.session = None
    '''
)

#: ``model.py`` returning each input as the output of the same position in the config.
IDENTITY_MODEL_PY = textwrap.dedent(
    '''\
    """Triton python-backend identity model (written by sonic.zoo): output i = input i."""
    import json

    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            self.pairs = [
                (i["name"], o["name"]) for i, o in zip(config["input"], config["output"])
            ]

        def execute(self, requests):
            responses = []
            for request in requests:
                tensors = [
                    pb_utils.Tensor(out, pb_utils.get_input_tensor_by_name(request, inp).as_numpy())
                    for inp, out in self.pairs
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            return responses

        def finalize(self):
            pass
    '''
)

#: ``model.py`` of ``add_sub``: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1.
ADD_SUB_MODEL_PY = textwrap.dedent(
    '''\
    """Triton python-backend add_sub model (written by sonic.zoo).

    OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, in the inputs' datatype.
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            pass

        def execute(self, requests):
            responses = []
            for request in requests:
                a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
                tensors = [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            return responses

        def finalize(self):
            pass
    '''
)

#: ``model.py`` of ``sleep``: sleeps ``delay_ms`` once per execute() call (i.e. per batch the
#: scheduler formed), then returns each request's INPUT0 as OUTPUT0.
SLEEP_MODEL_PY = textwrap.dedent(
    '''\
    """Triton python-backend sleep model (written by sonic.zoo).

    Sleeps config parameter "delay_ms" once per execute() call (one scheduler batch), then
    returns each request's INPUT0 as OUTPUT0. It makes queueing and batching observable.
    """
    import json
    import time

    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            params = config.get("parameters", {})
            self.delay_s = float(params.get("delay_ms", {}).get("string_value", "0")) / 1000.0

        def execute(self, requests):
            time.sleep(self.delay_s)
            responses = []
            for request in requests:
                array = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                tensors = [pb_utils.Tensor("OUTPUT0", array)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            return responses

        def finalize(self):
            pass
    '''
)


def write_triton_python_repository(
    dest: Path,
    models: Iterable[str] = MODELS,
    *,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 100,
    preferred: Sequence[int] = (),
    instances: int = 1,
    intra_op_num_threads: int = 1,
    seed: int = 0,
) -> Path:
    """Write the zoo models as NVIDIA-Triton python-backend models running onnxruntime.

    Same configs as :func:`write_sonic_repository` except ``backend: "python"`` and the
    ``intra_op_num_threads`` parameter; each version directory holds the same ``model.onnx``
    plus :data:`ORT_MODEL_PY` as ``model.py``. Returns ``dest``.
    """
    dest = Path(dest)
    for name in models:
        spec = model_spec(
            name,
            "python",
            max_batch_size=max_batch_size,
            dynamic_batching=dynamic_batching,
            max_queue_delay_us=max_queue_delay_us,
            preferred=preferred,
            instances=instances,
            parameters={"intra_op_num_threads": str(intra_op_num_threads)},
        )
        _write_model(dest, spec, {"model.onnx": _onnx_bytes(name, seed), "model.py": ORT_MODEL_PY})
    return dest


#: The datatypes the identity models cover: all of Triton's except BF16 (no numpy type, so
#: the python backend cannot hand it to user code).
IDENTITY_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)

#: Default delay of the ``sleep`` model, in milliseconds.
SLEEP_DELAY_MS = 20


def conformance_specs(*, sleep_delay_ms: int = SLEEP_DELAY_MS) -> dict[str, tuple[ModelSpec, str]]:
    """The protocol-conformance models: name -> (config, model.py text). All python backend.

    - ``identity_<dtype>`` (lower-case v2 name, e.g. ``identity_fp32``): INPUT0 → OUTPUT0,
      dims ``[-1]``, max_batch_size 8, no dynamic batching; one per :data:`IDENTITY_DATATYPES`.
    - ``identity_fp32_nobatch``: the same with max_batch_size 0 (shape checks without a batch
      dimension).
    - ``add_sub``: INPUT0, INPUT1 FP32 ``[16]`` → OUTPUT0 = sum, OUTPUT1 = difference,
      max_batch_size 8 (the shape of Triton's "simple" example).
    - ``sleep``: INPUT0 FP32 ``[-1]`` → OUTPUT0, sleeping ``delay_ms`` per executed batch;
      max_batch_size 8 with dynamic batching, so queueing and batching can be observed.
    """
    specs: dict[str, tuple[ModelSpec, str]] = {}

    def identity(name: str, datatype: str, max_batch_size: int) -> None:
        spec = ModelSpec(
            name=name,
            backend="python",
            max_batch_size=max_batch_size,
            inputs=(TensorSpec("INPUT0", datatype, (-1,)),),
            outputs=(TensorSpec("OUTPUT0", datatype, (-1,)),),
            dynamic_batching=False,
        )
        specs[name] = (spec, IDENTITY_MODEL_PY)

    for datatype in IDENTITY_DATATYPES:
        identity(f"identity_{datatype.lower()}", datatype, 8)
    identity("identity_fp32_nobatch", "FP32", 0)
    add_sub = ModelSpec(
        name="add_sub",
        backend="python",
        max_batch_size=8,
        inputs=(TensorSpec("INPUT0", "FP32", (16,)), TensorSpec("INPUT1", "FP32", (16,))),
        outputs=(TensorSpec("OUTPUT0", "FP32", (16,)), TensorSpec("OUTPUT1", "FP32", (16,))),
        dynamic_batching=False,
    )
    specs["add_sub"] = (add_sub, ADD_SUB_MODEL_PY)
    sleep = ModelSpec(
        name="sleep",
        backend="python",
        max_batch_size=8,
        inputs=(TensorSpec("INPUT0", "FP32", (-1,)),),
        outputs=(TensorSpec("OUTPUT0", "FP32", (-1,)),),
        dynamic_batching=True,
        max_queue_delay_us=0,
        parameters={"delay_ms": str(sleep_delay_ms)},
    )
    specs["sleep"] = (sleep, SLEEP_MODEL_PY)
    return specs


#: Names of the conformance models, in a stable order.
CONFORMANCE_MODELS = tuple(conformance_specs())


def write_conformance_repository(
    dest: Path,
    models: Iterable[str] | None = None,
    *,
    sleep_delay_ms: int = SLEEP_DELAY_MS,
) -> Path:
    """Write the protocol-conformance models (see :func:`conformance_specs`) into ``dest``.

    ``models=None`` writes all of :data:`CONFORMANCE_MODELS`. They are python-backend models
    that run unchanged under NVIDIA Triton. Returns ``dest``.
    """
    dest = Path(dest)
    specs = conformance_specs(sleep_delay_ms=sleep_delay_ms)
    for name in CONFORMANCE_MODELS if models is None else models:
        if name not in specs:
            raise ValueError(
                f"unknown conformance model {name!r}; expected one of {', '.join(specs)}"
            )
        spec, model_py = specs[name]
        _write_model(dest, spec, {"model.py": model_py})
    return dest
