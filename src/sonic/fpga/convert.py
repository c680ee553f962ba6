"""Model → hls4ml project → compiled bit-accurate emulation, with sonic's numerics guards.

Where this sits: ``sonic fpga convert``, ``sonic fpga scan``, the QAT path and the benchmarks
all convert through :func:`convert`. It takes a :class:`~sonic.fpga.source.SourceModel` (or
anything :func:`~sonic.fpga.source.load_model` accepts) and a :class:`ConversionConfig`, builds
hls4ml's configuration, converts, writes the HLS project (what vendor synthesis takes), compiles
its C simulation with g++ and writes ``sonic_fpga.json`` (see :mod:`sonic.fpga.emulation`), which
is all the server needs later.

Precision policies (``ConversionConfig.policy``):

- ``uniform`` (default): every type hls4ml would infer (``auto``: layer results, accumulators,
  weights, biases) is the given precision: the classic hls4ml setting of the jet-tagger papers,
  and the one whose error the precision bounds. Activation tables keep hls4ml's defaults.
- ``auto``: hls4ml infers the types per layer. This is what a quantization-aware model needs
  (the types come from its quantizers: QONNX ``Quant`` nodes, HGQ), and what produces the
  known softmax pitfall on a float model: the dense layer before the softmax gets a wide result
  type (``ap_fixed<38,18>``), the softmax indexes its exp table with the top bits of that type,
  every input lands in the first entry and all outputs come out equal.

The softmax guard (on by default) is a match/transform pair run on a first, cheap conversion:
it matches Vivado/Vitis softmax layers whose table index type would span more than
:data:`SOFTMAX_MAX_INTEGER_BITS` integer bits and sets that layer's ``inp_norm_t`` to
:data:`SOFTMAX_SAFE_INDEX` (saturating, so large differences map to exp(-x) ≈ 0 instead of
wrapping). :func:`softmax_problems` is the matching check, also used by the scan to flag a
design that was converted without the guard.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.fpga import _deps
from sonic.fpga.emulation import EmulationLibrary, ProjectMeta, TensorMeta, write_meta
from sonic.fpga.estimate import Estimate, estimate_layers
from sonic.fpga.source import SourceModel, load_model
from sonic.fpga.types import FixedType, parse_fixed
from sonic.protocol.errors import Internal, InvalidArgument, nearest

__all__ = [
    "BACKENDS",
    "IO_TYPES",
    "POLICIES",
    "SOFTMAX_MAX_INTEGER_BITS",
    "SOFTMAX_SAFE_INDEX",
    "STRATEGIES",
    "ConversionConfig",
    "ConvertedModel",
    "convert",
    "softmax_problems",
]

BACKENDS = ("Vitis", "Vivado", "Catapult", "Quartus")
STRATEGIES = ("latency", "resource")
IO_TYPES = ("parallel", "stream")
POLICIES = ("uniform", "auto")

#: A softmax whose table index type has more integer bits than this indexes its exp table with
#: steps of 2**(I - log2(table size)): at 10 the first entry already spans 1, exp(-1) = 0.37.
SOFTMAX_MAX_INTEGER_BITS = 8
#: The index type the guard gives a softmax: |x - max| up to 16, 1/64 steps in a 1024 table.
SOFTMAX_SAFE_INDEX = "ap_ufixed<16,4,AP_RND,AP_SAT>"

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class ConversionConfig:
    """What ``sonic fpga convert`` asks hls4ml for. Validated by :meth:`checked`."""

    precision: str = "ap_fixed<16,6>"
    reuse_factor: int = 1
    strategy: str = "latency"  # latency | resource
    io_type: str = "parallel"  # parallel | stream
    backend: str = "Vitis"  # Vitis | Vivado | Catapult | Quartus
    part: str | None = None  # None: hls4ml's default part for the backend
    clock_period: float = 5.0  # ns
    policy: str = "uniform"  # uniform | auto
    softmax_guard: bool = True
    input_precision: str | None = None  # type of the input layer (None: the policy decides)
    layer_precision: Mapping[str, str] = field(default_factory=dict)  # hls4ml layer -> result type
    trace: bool = False  # build the per-layer trace entry points (scan, debugging)
    project_name: str = "myproject"

    def checked(self) -> ConversionConfig:
        """Normalised copy (backend spelling, lower-case choices) or InvalidArgument."""
        parse_fixed(self.precision)
        if self.input_precision:
            parse_fixed(self.input_precision)
        for name, text in self.layer_precision.items():
            try:
                parse_fixed(text)
            except InvalidArgument as exc:
                raise InvalidArgument(f"layer '{name}': {exc.message}") from None
        backend = next((b for b in BACKENDS if b.lower() == self.backend.lower()), None)
        if backend is None:
            raise InvalidArgument(f"unknown backend {self.backend!r}" + nearest(self.backend, BACKENDS))
        checks = (
            ("strategy", self.strategy, STRATEGIES),
            ("io", self.io_type, IO_TYPES),
            ("policy", self.policy, POLICIES),
        )
        for what, value, valid in checks:
            if value.lower() not in valid:
                raise InvalidArgument(f"unknown {what} {value!r}; expected one of {', '.join(valid)}")
        if self.reuse_factor < 1:
            raise InvalidArgument(f"reuse factor {self.reuse_factor}; it must be >= 1")
        if not self.clock_period > 0:
            raise InvalidArgument(f"clock period {self.clock_period} ns; it must be > 0")
        if not self.project_name.isidentifier():
            raise InvalidArgument(f"project name {self.project_name!r} must be a C identifier")
        return replace(
            self,
            backend=backend,
            strategy=self.strategy.lower(),
            io_type=self.io_type.lower(),
            policy=self.policy.lower(),
        )

    @property
    def fixed(self) -> FixedType:
        return parse_fixed(self.precision)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer_precision"] = dict(self.layer_precision)
        return d


@dataclass
class ConvertedModel:
    """A converted, compiled design: the hls4ml model and the files it was written to."""

    source: SourceModel
    config: ConversionConfig
    project_dir: Path
    meta: ProjectMeta
    hls_model: Any  # hls4ml ModelGraph
    convert_s: float
    compile_s: float
    estimate: Estimate
    notes: list[str] = field(default_factory=list)
    log: str = ""
    _emulation: EmulationLibrary | None = field(default=None, repr=False)

    def emulation(self) -> EmulationLibrary:
        """The compiled library, loaded through ctypes as the server loads it."""
        if self._emulation is None:
            self._emulation = EmulationLibrary.open(self.project_dir)
        return self._emulation

    def predict(self, x: Array) -> Array:
        """The emulation's output for a batch (single-output designs)."""
        return self.emulation().predict(x)[0]

    def hls4ml_predict(self, x: Array) -> Array:
        """hls4ml's own in-process predict (the reference the server must match bit for bit)."""
        out = self.hls_model.predict(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(out).reshape(len(x), -1)


# -- hls4ml configuration ----------------------------------------------------------------------


def _hls_config(source: SourceModel, cfg: ConversionConfig) -> dict[str, Any]:
    hls4ml = _deps.hls4ml()
    common = {
        "granularity": "name",
        "backend": cfg.backend,
        "default_precision": cfg.precision,
        "default_reuse_factor": cfg.reuse_factor,
    }
    with _deps.quiet(), _deps.known_warnings():
        if source.framework == "onnx":
            conf = hls4ml.utils.config_from_onnx_model(source.model, **common)
        elif source.framework == "pytorch":
            conf = hls4ml.utils.config_from_pytorch_model(source.model, source.input_shape, **common)
        else:
            conf = hls4ml.utils.config_from_keras_model(source.model, **common)
    conf.pop("PytorchModel", None)
    conf.pop("InputShape", None)
    conf["Model"]["Strategy"] = cfg.strategy.capitalize()
    conf["Model"]["TraceOutput"] = cfg.trace
    layers: dict[str, Any] = conf.setdefault("LayerName", {})
    for layer in layers.values():
        layer["Trace"] = cfg.trace
        if cfg.policy == "uniform":
            prec = layer.get("Precision", {})
            for key, value in list(prec.items()):
                if value == "auto":
                    prec[key] = cfg.precision
    for name, text in cfg.layer_precision.items():
        if name not in layers:
            raise InvalidArgument(f"--layer-precision names layer '{name}'" + nearest(name, layers))
        layers[name].setdefault("Precision", {})["result"] = parse_fixed(text).hls
    result: dict[str, Any] = conf
    return result


def _convert_graph(
    source: SourceModel,
    cfg: ConversionConfig,
    conf: dict[str, Any],
    out_dir: Path,
    notes: list[str] | None = None,
) -> Any:
    hls4ml = _deps.hls4ml()
    kw: dict[str, Any] = {
        "output_dir": str(out_dir),
        "project_name": cfg.project_name,
        "backend": cfg.backend,
        "hls_config": copy.deepcopy(conf),
        "io_type": f"io_{cfg.io_type}",
        "clock_period": cfg.clock_period,
    }
    if cfg.part:
        kw["part"] = cfg.part
    with _deps.quiet(), _deps.known_warnings(notes):
        if source.framework == "onnx":
            return hls4ml.converters.convert_from_onnx_model(source.model, **kw)
        if source.framework == "pytorch":
            kw["hls_config"]["InputShape"] = source.input_shape
            return hls4ml.converters.convert_from_pytorch_model(source.model, **kw)
        return hls4ml.converters.convert_from_keras_model(source.model, **kw)


def _precision_of(var_type: Any) -> FixedType | None:
    p = getattr(var_type, "precision", None)
    if p is None or not hasattr(p, "integer") or not hasattr(p, "width"):
        return None
    return FixedType(int(p.width), int(p.integer), bool(getattr(p, "signed", True)))


def softmax_problems(hls_model: Any) -> list[str]:
    """Softmax layers whose exp-table index type makes the table useless (the pitfall).

    Applies to the Vivado/Vitis softmax (``stable`` and ``latency``), which index the exp table
    with the top log2(table size) bits of the (max-normalised) input type.
    """
    problems: list[str] = []
    backend = str(hls_model.config.get_config_value("Backend", "")).lower()
    if backend not in ("vitis", "vivado"):
        return problems
    for layer in hls_model.get_layers():
        if layer.class_name != "Softmax":
            continue
        norm = layer.get_attr("inp_norm_t")
        fixed = _precision_of(norm) if norm is not None else _precision_of(layer.get_input_variable().type)
        if fixed is None:
            continue
        integer = fixed.integer - (1 if fixed.signed and norm is None else 0)
        table = int(layer.get_attr("table_size", 1024) or 1024)
        if integer > SOFTMAX_MAX_INTEGER_BITS:
            step = 2.0 ** (integer - math.log2(table))
            problems.append(
                f"softmax '{layer.name}': its exp table is indexed by the top {int(math.log2(table))} bits "
                f"of a type with {integer} integer bits "
                f"(from input type {layer.get_input_variable().type.precision}), "
                f"so one table entry spans {step:g} in x: nearly every input reads the first entry and the "
                "outputs come out (nearly) equal. Give the layer before the softmax an explicit result "
                "precision (e.g. the model precision), or keep sonic's softmax guard on"
            )
    return problems


def _guard_softmax(
    source: SourceModel, cfg: ConversionConfig, conf: dict[str, Any], out_dir: Path
) -> list[str]:
    """Match softmax layers the pitfall would break; set their table index type. Returns notes."""
    probe = _convert_graph(source, cfg, conf, out_dir)
    bad = [la.name for la in probe.get_layers() if la.class_name == "Softmax"]
    if not softmax_problems(probe):
        return []
    notes = []
    layers = conf.setdefault("LayerName", {})
    for name in bad:
        if name in layers:
            layers[name]["inp_norm_t"] = SOFTMAX_SAFE_INDEX
            notes.append(
                f"softmax guard: layer '{name}' would index its exp table with a too-wide type "
                f"(the granularity='name' pitfall); set its inp_norm_t to {SOFTMAX_SAFE_INDEX}"
            )
    return notes


# -- the conversion -----------------------------------------------------------------------------


def _layer_summaries(hls_model: Any, cfg: ConversionConfig) -> list[dict[str, Any]]:
    """Per-layer facts for the estimate (kept in sonic_fpga.json, so no hls4ml is needed later)."""
    out: list[dict[str, Any]] = []
    for layer in hls_model.get_layers():
        entry: dict[str, Any] = {"name": layer.name, "class": layer.class_name}
        weight = layer.weights.get("weight") if hasattr(layer, "weights") else None
        if weight is not None and layer.class_name in (
            "Dense",
            "Conv1D",
            "Conv2D",
            "PointwiseConv1D",
            "PointwiseConv2D",
        ):
            data = np.asarray(weight.data)
            wt = _precision_of(weight.type) or cfg.fixed
            it = _precision_of(layer.get_input_variable().type) or cfg.fixed
            entry.update(
                n_in=int(layer.get_attr("n_in", data.shape[0] if data.ndim else 1)),
                n_out=int(layer.get_attr("n_out", data.shape[-1] if data.ndim else 1)),
                n_weights=int(data.size),
                nonzero=int(np.count_nonzero(data)),
                weight_bits=wt.width,
                input_bits=it.width,
                reuse_factor=int(layer.get_attr("reuse_factor", cfg.reuse_factor)),
                strategy=str(layer.get_attr("strategy", cfg.strategy)),
            )
        else:
            var = layer.get_output_variable()
            entry["n"] = int(np.prod(var.shape)) if var is not None else 0
        out.append(entry)
    return out


def _library_path(hls_model: Any, project_dir: Path) -> Path:
    lib = getattr(hls_model, "_top_function_lib", None)
    name = getattr(lib, "_name", None)
    if name:
        return Path(name).resolve()
    libs = sorted(project_dir.glob("firmware/*.so"), key=lambda p: p.stat().st_mtime)
    if not libs:
        raise Internal(f"hls4ml compiled {project_dir} but no firmware/*.so is there")
    return libs[-1]


def convert(
    model: Any,
    output_dir: Path | str,
    config: ConversionConfig | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> ConvertedModel:
    """Convert ``model`` into an hls4ml project in ``output_dir`` and compile its emulation.

    ``model`` is a :class:`SourceModel` or anything :func:`load_model` takes. ``output_dir`` is
    created (an existing project there is overwritten). Raises :class:`InvalidArgument` for a
    bad configuration, :class:`~sonic.protocol.errors.Unavailable` when hls4ml or g++ is missing.
    """
    cfg = (config or ConversionConfig()).checked()
    source = model if isinstance(model, SourceModel) else load_model(model, input_shape=input_shape)
    out_dir = Path(output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    conf = _hls_config(source, cfg)
    notes: list[str] = []
    warned: list[str] = []
    if source.quantized and cfg.policy == "uniform":
        notes.append(
            "the model is quantized (QONNX Quant nodes) but the policy is 'uniform': its quantizers' types "
            "are overridden by the uniform precision; use policy 'auto' to keep them"
        )
    if cfg.input_precision:
        inputs = [n for n in conf["LayerName"] if n in ("global_in", "input_1", "input_layer")] or list(
            conf["LayerName"]
        )[:1]
        for name in inputs:
            conf["LayerName"][name].setdefault("Precision", {})["result"] = parse_fixed(
                cfg.input_precision
            ).hls
    if cfg.softmax_guard:
        notes += _guard_softmax(source, cfg, conf, out_dir)
    hls_model = _convert_graph(source, cfg, conf, out_dir, warned)
    notes += warned
    problems = softmax_problems(hls_model)
    hls_model.config.trace_output = cfg.trace  # read from the top-level config, not HLSConfig.Model
    with _deps.quiet() as log, _deps.known_warnings():
        hls_model.write()
        t1 = time.perf_counter()
        try:
            hls_model._compile()
        except Exception as exc:
            raise Internal(f"compiling the C simulation of {out_dir} failed: {exc}") from exc
    t2 = time.perf_counter()
    library = _library_path(hls_model, out_dir)
    layers = _layer_summaries(hls_model, cfg)
    estimate = estimate_layers(
        layers, clock_period_ns=cfg.clock_period, backend=cfg.backend, io_type=f"io_{cfg.io_type}"
    )

    def tensor(name: str, var: Any) -> TensorMeta:
        return TensorMeta(name, str(var.name), tuple(int(s) for s in var.shape), str(var.type.precision))

    in_vars, out_vars = hls_model.get_input_variables(), hls_model.get_output_variables()
    traced: list[TensorMeta] = []
    if cfg.trace:
        for layer in hls_model.get_layers():
            if layer.get_attr("function_cpp", None) and layer.get_attr("trace", False):
                var = layer.get_output_variable()
                traced.append(
                    TensorMeta(
                        layer.name, layer.name, tuple(int(s) for s in var.shape), str(var.type.precision)
                    )
                )
    meta = ProjectMeta(
        project_name=cfg.project_name,
        backend=cfg.backend,
        io_type=f"io_{cfg.io_type}",
        inputs=[tensor(n, v) for n, v in zip(source.input_names, in_vars, strict=True)],
        outputs=[tensor(n, v) for n, v in zip(source.output_names, out_vars, strict=True)],
        library=str(library.relative_to(out_dir)),
        built_in=str(out_dir),
        traced=traced,
        info={
            "config": cfg.to_json(),
            "source": {
                "framework": source.framework,
                "description": source.description,
                "quantized": source.quantized,
            },
            "hls4ml_version": str(getattr(_deps.hls4ml(), "__version__", "?")),
            "timings_s": {"convert": round(t1 - t0, 3), "compile": round(t2 - t1, 3)},
            "layers": layers,
            "layer_tensors": layer_tensors(hls_model),
            "estimate": estimate.to_json(),
            "notes": notes + problems,
        },
    )
    write_meta(out_dir, meta)
    return ConvertedModel(
        source=source,
        config=cfg,
        project_dir=out_dir,
        meta=meta,
        hls_model=hls_model,
        convert_s=t1 - t0,
        compile_s=t2 - t1,
        estimate=estimate,
        notes=notes + problems,
        log=log.getvalue(),
    )


def layer_tensors(hls_model: Any) -> dict[str, str]:
    """hls4ml layer name -> the name of the tensor it produces (how float traces are matched)."""
    out: dict[str, str] = {}
    for layer in hls_model.get_layers():
        outputs = list(getattr(layer, "outputs", []) or [])
        if outputs:
            out[layer.name] = str(outputs[0])
    return out
