"""The float model a design comes from: loading it and running it as the reference.

Where this sits: :func:`load_model` turns what a person hands to ``sonic fpga convert`` (an ONNX
file, a PyTorch module or a pickled one, a Keras model or file, ``zoo:mlp``) into a
:class:`SourceModel`: the object hls4ml converts, the names the served model keeps (so the
FPGA design is a drop-in for the float model: same input and output names), and two float
references the numerics checks compare against:

- :meth:`SourceModel.predict`: the framework's own float output (onnxruntime, torch, keras);
- :meth:`SourceModel.trace`: the float output of every layer, keyed by the hls4ml layer it
  corresponds to, so the per-layer traces of the emulation can be compared layer by layer.

ONNX models are first brought into the form hls4ml's ONNX front end expects with qonnx
(cleanup, channels-last, Gemm → MatMul): hls4ml 1.x reads QONNX. Quantized QONNX models
(``Quant`` nodes, e.g. exported by Brevitas) run through qonnx's executor as reference.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.fpga import _deps
from sonic.protocol.errors import InvalidArgument, NotFound, Unsupported

__all__ = ["FRAMEWORKS", "SourceModel", "load_model"]

FRAMEWORKS = ("onnx", "pytorch", "keras")
Array = npt.NDArray[Any]


@dataclass
class SourceModel:
    """A float (or QAT) model ready for hls4ml, with its float reference."""

    framework: str  # "onnx" | "pytorch" | "keras"
    model: Any  # qonnx ModelWrapper | torch.nn.Module | keras.Model
    input_names: list[str]
    output_names: list[str]
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    description: str
    quantized: bool = False  # QONNX Quant nodes: hls4ml derives types from them
    onnx_bytes: bytes | None = None  # the original ONNX file, for onnxruntime
    _session: Any = field(default=None, repr=False)

    # -- float reference ----------------------------------------------------------------------

    def predict(self, x: Array) -> Array:
        """The float model's output for a batch ``x`` (single-input, single-output models)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.framework == "onnx":
            if not self.quantized:
                return np.asarray(self._ort().run(None, {self.input_names[0]: x})[0])
            return self._qonnx_exec(x)[self.model.graph.output[0].name]
        if self.framework == "pytorch":
            torch = _deps.need("torch", "a PyTorch model")
            self.model.eval()
            with torch.no_grad():
                out = self.model(torch.from_numpy(x))
            return np.asarray(out.detach().cpu().numpy())
        keras = _deps.keras()
        return np.asarray(keras.ops.convert_to_numpy(self.model(x, training=False)))

    def trace(self, x: Array, layers: Sequence[str]) -> dict[str, Array]:
        """Float outputs per hls4ml layer name, for the layers this framework can tell apart.

        Layers without a float counterpart (hls4ml-inserted ones, a Dense whose activation
        Keras fuses) are left out.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        wanted = set(layers)
        if self.framework == "onnx":
            return self._onnx_trace(x, wanted)
        if self.framework == "pytorch":
            return self._torch_trace(x, wanted)
        return self._keras_trace(x, wanted)

    def _ort(self) -> Any:
        if self._session is None:
            ort = _deps.need("onnxruntime", "the float ONNX reference", "pip install 'sonic[onnx]'")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(
                self.onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        return self._session

    def _all_outputs_model(self, batch: int) -> Any:
        from onnx import TensorProto, helper

        m = copy.deepcopy(self.model.model)
        del m.graph.value_info[:]
        for vi in list(m.graph.input) + list(m.graph.output):
            vi.type.tensor_type.shape.dim[0].dim_value = batch
        present = {o.name for o in m.graph.output}
        for node in m.graph.node:
            for name in node.output:
                if name not in present:
                    m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
                    present.add(name)
        return m

    def _qonnx_exec(self, x: Array) -> dict[str, Array]:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx

        wrapped = ModelWrapper(self._all_outputs_model(len(x)))
        with warnings.catch_warnings():
            # qonnx compares each node's output with the (cleared) shape annotations
            warnings.filterwarnings("ignore", message=r"(?s).*found \(.*\) vs expected")
            ctx = execute_onnx(wrapped, {self.model.graph.input[0].name: x}, return_full_exec_context=True)
        return {k: np.asarray(v) for k, v in ctx.items()}

    def _onnx_trace(self, x: Array, wanted: set[str]) -> dict[str, Array]:
        if self.quantized:
            values = self._qonnx_exec(x)
        else:
            ort = _deps.need("onnxruntime", "the float ONNX reference", "pip install 'sonic[onnx]'")
            m = self._all_outputs_model(len(x))
            for vi in list(m.graph.input) + list(m.graph.output):
                if vi.type.tensor_type.HasField("shape") and vi.type.tensor_type.shape.dim:
                    vi.type.tensor_type.shape.dim[0].dim_param = "batch"
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            names = [o.name for o in sess.get_outputs()]
            values = dict(zip(names, sess.run(names, {m.graph.input[0].name: x}), strict=True))
        # hls4ml layers are matched by the tensor they produce (see convert.layer_tensors)
        return {k: np.asarray(v) for k, v in values.items() if k in wanted}

    def _torch_trace(self, x: Array, wanted: set[str]) -> dict[str, Array]:
        torch = _deps.need("torch", "a PyTorch model")
        fx = _deps.need("torch.fx", "tracing a PyTorch model")
        gm = fx.symbolic_trace(self.model)
        out: dict[str, Array] = {}

        base: Any = fx.Interpreter

        class Recorder(base):  # type: ignore[misc]
            def run_node(self, n: Any) -> Any:
                value = super().run_node(n)
                name = n.name.replace(".", "_")
                if name in wanted and isinstance(value, torch.Tensor):
                    out[name] = value.detach().cpu().numpy()
                return value

        self.model.eval()
        with torch.no_grad():
            Recorder(gm).run(torch.from_numpy(x))
        return out

    def _keras_trace(self, x: Array, wanted: set[str]) -> dict[str, Array]:
        keras = _deps.keras()
        out: dict[str, Array] = {}
        for layer in self.model.layers:
            act = getattr(layer, "activation", None)
            act_name = getattr(act, "__name__", "") if act is not None else ""
            candidates = (
                [f"{layer.name}_{act_name}", layer.name]
                if act_name and act_name != "linear"
                else [layer.name]
            )
            target = next((c for c in candidates if c in wanted), None)
            if target is None:
                continue
            sub = keras.Model(self.model.inputs, layer.output)
            out[target] = np.asarray(keras.ops.convert_to_numpy(sub(x, training=False)))
        return out


# -- loading ----------------------------------------------------------------------------------


def _onnx_source(model: Any, description: str) -> SourceModel:
    onnx = _deps.need("onnx", "an ONNX model", "pip install 'sonic[onnx]'")
    _deps.need("qonnx", "converting an ONNX model with hls4ml (hls4ml reads QONNX)")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    if isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    elif isinstance(model, ModelWrapper):
        proto = model.model
    else:
        proto = model
    data = proto.SerializeToString()
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise Unsupported(
            f"{description}: {len(inputs)} inputs and {len(proto.graph.output)} outputs; sonic fpga "
            "converts single-input, single-output ONNX models"
        )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    quantized = any(n.op_type in ("Quant", "BipolarQuant", "Trunc") for n in proto.graph.node)
    with _deps.quiet(), _deps.known_warnings():
        mw = cleanup_model(ModelWrapper(copy.deepcopy(proto)))
        mw = mw.transform(ConvertToChannelsLastAndClean())
        mw = mw.transform(GemmToMatMul())
        mw = cleanup_model(mw)
    return SourceModel(
        "onnx",
        mw,
        [inputs[0].name],
        [proto.graph.output[0].name],
        tuple(int(d) for d in dims[1:]),
        description,
        quantized=quantized,
        onnx_bytes=data,
    )


def _shape(input_shape: Sequence[int] | None, what: str) -> tuple[int, ...]:
    if not input_shape:
        raise InvalidArgument(f"{what}: give the input shape of one sample (e.g. --input-shape 16)")
    return tuple(int(d) for d in input_shape)


def load_model(
    model: Any,
    *,
    input_shape: Sequence[int] | None = None,
    input_name: str = "input",
    output_name: str = "output",
) -> SourceModel:
    """Recognise ``model`` and prepare it for hls4ml.

    Accepts: ``"zoo:mlp"`` (the jet-tagger MLP of :mod:`sonic.zoo`); a path to ``.onnx``,
    ``.pt``/``.pth`` (a whole pickled ``torch.nn.Module``, loaded with ``weights_only=False``:
    only load files you trust) or ``.keras``/``.h5``; or the objects themselves (ONNX
    ``ModelProto`` or bytes, qonnx ``ModelWrapper``, ``torch.nn.Module``, ``keras.Model``).
    PyTorch models need ``input_shape`` (one sample). ONNX models keep their tensor names;
    PyTorch and Keras models, whose tensors have no stable names, are served as
    ``input_name`` / ``output_name``.
    """
    if isinstance(model, str | Path):
        text = str(model)
        if text.startswith("zoo:"):
            from sonic import zoo

            name = text.removeprefix("zoo:")
            if name != "mlp":
                raise InvalidArgument(f"unknown zoo model {name!r} for the FPGA path; expected 'zoo:mlp'")
            return _onnx_source(zoo.mlp_onnx(0), "zoo:mlp (jet-tagger MLP 16-64-32-32-5)")
        path = Path(text)
        if not path.exists():
            raise NotFound(f"model file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return _onnx_source(path.read_bytes(), str(path))
        if suffix in (".pt", ".pth"):
            torch = _deps.need("torch", "a PyTorch model", "pip install torch")
            obj = torch.load(path, weights_only=False, map_location="cpu")
            if not isinstance(obj, torch.nn.Module):
                raise Unsupported(
                    f"{path} holds a {type(obj).__name__}, not a torch.nn.Module; save the whole module "
                    "with torch.save(model, path) (a state_dict or TorchScript cannot be converted by hls4ml)"
                )
            return load_model(obj, input_shape=input_shape, input_name=input_name, output_name=output_name)
        if suffix in (".keras", ".h5"):
            keras = _deps.keras()
            return load_model(keras.models.load_model(path), input_name=input_name, output_name=output_name)
        raise Unsupported(f"model file {path}: unknown type {suffix!r}; expected .onnx, .pt/.pth, .keras/.h5")
    kind = type(model).__module__.split(".")[0]
    if isinstance(model, bytes) or kind in ("onnx", "qonnx"):
        return _onnx_source(model, f"ONNX model {getattr(getattr(model, 'graph', None), 'name', '')}".strip())
    # a Keras 3 model on the torch backend is also a torch.nn.Module: test Keras first
    if kind == "keras" or (hasattr(model, "get_config") and hasattr(model, "layers")):
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        return SourceModel(
            "keras",
            model,
            [input_name],
            [output_name],
            shape,
            f"Keras {type(model).__name__} '{model.name}'",
        )
    if kind == "torch" or _is_torch_module(model):
        shape = _shape(input_shape, "a PyTorch model")
        return SourceModel(
            "pytorch", model, [input_name], [output_name], shape, f"PyTorch {type(model).__name__}"
        )
    raise Unsupported(
        f"cannot convert a {type(model).__module__}.{type(model).__name__}; expected an ONNX model, "
        "a torch.nn.Module or a keras.Model (or a file holding one)"
    )


def _is_torch_module(model: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(model).__mro__)
