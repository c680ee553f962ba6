"""onnxruntime backend: an ONNX model file run by an InferenceSession per instance.

Execution providers follow the instance kind: KIND_CPU uses the CPU provider; KIND_GPU asks for
TensorRT (when the config's ``optimization.execution_accelerators.gpu_execution_accelerator``
names ``tensorrt``) and CUDA on the instance's device, and fails with an install hint when the
installed onnxruntime has neither. Thread counts come from the config parameters
``intra_op_thread_count`` / ``inter_op_thread_count`` as in Triton's onnxruntime backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sonic.backends.base import (
    BackendRequest,
    LoadContext,
    ModelInstance,
    Result,
    Timing,
    check_outputs,
    merge_inputs,
    now_ns,
    register,
    split_outputs,
)
from sonic.protocol.errors import Internal, InvalidArgument, SonicError, Unavailable


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - depends on the environment
        raise Unavailable("the onnxruntime backend needs onnxruntime: pip install 'sonic[onnx]'") from None
    return onnxruntime


def providers_for(ctx: LoadContext, available: Sequence[str]) -> list[Any]:
    """Execution providers for one instance, from its kind and the config's accelerators."""
    if ctx.instance.kind != "KIND_GPU":
        return ["CPUExecutionProvider"]
    wanted: list[Any] = []
    accels = ctx.config.optimization.execution_accelerators.gpu_execution_accelerator
    device = {"device_id": str(ctx.instance.device_id)}
    if any(a.name.lower() == "tensorrt" for a in accels):
        wanted.append(("TensorrtExecutionProvider", device))
    wanted.append(("CUDAExecutionProvider", device))
    usable = [p for p in wanted if p[0] in available]
    if not usable:
        raise Unavailable(
            f"model '{ctx.model_name}': instance {ctx.instance.name} is KIND_GPU but onnxruntime "
            f"offers only {list(available)}; install onnxruntime-gpu on a machine with a GPU, "
            "or set instance_group kind: KIND_CPU"
        )
    return [*usable, "CPUExecutionProvider"]


def _runner(session: Any) -> Callable[[list[str], dict[str, Any]], list[Any]]:
    """``session.run`` for a CPU session minus the Python wrapper's per-call checks (input
    names, OrtValue ownership, graph capture): the data plane has already checked the inputs
    against the model, and for a tiny model the wrapper costs as much as the run. Sessions
    with other providers keep the wrapper, which handles their fallback to CPU."""
    inner = getattr(session, "_sess", None)
    if inner is None or session.get_providers() != ["CPUExecutionProvider"]:
        return cast(Callable[[list[str], dict[str, Any]], list[Any]], session.run)

    def run(names: list[str], feed: dict[str, Any]) -> list[Any]:
        return cast(list[Any], inner.run(names, feed, None))

    return run


@register("onnxruntime")
class OnnxRuntimeInstance(ModelInstance):
    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        _ort()  # fail here, with the install hint, when onnxruntime is missing
        path = ctx.model_file("model.onnx")
        self._path = path
        self.session = self._session(int(ctx.parameter("intra_op_thread_count", "0") or 0))
        self._run = _runner(self.session)
        self._batched = ctx.config.max_batch_size > 0
        self._all_outputs = [o.name for o in self.session.get_outputs()]

    def _session(self, intra_threads: int) -> Any:
        ort, ctx, path = _ort(), self.ctx, self._path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = int(ctx.parameter("inter_op_thread_count", "0") or 0)
        if ctx.config.optimization.graph.level == -1:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        try:
            return ort.InferenceSession(
                str(path), sess_options=opts, providers=providers_for(ctx, ort.get_available_providers())
            )
        except SonicError:
            raise
        except Exception as exc:
            raise InvalidArgument(f"model '{ctx.model_name}': onnxruntime cannot load {path}: {exc}") from exc

    def run_inline(self) -> None:
        """On the loop, one intra-op thread: extra ORT threads only spin for a tiny model
        (measured: at c=64 the second thread burnt half a core for nothing). An explicit
        ``intra_op_thread_count`` in the config is kept."""
        if "intra_op_thread_count" not in self.ctx.config.parameters:
            self.session = self._session(1)
            self._run = _runner(self.session)

    def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        t0 = now_ns()
        feed = merge_inputs(requests)
        names = self._all_outputs if len(requests) > 1 else list(requests[0].requested)
        t1 = now_ns()
        try:
            values = self._run(names, feed)
        except Exception as exc:
            raise Internal(f"onnxruntime execution failed for model '{self.ctx.model_name}': {exc}") from exc
        t2 = now_ns()
        outputs = dict(zip(names, values, strict=True))
        batch = sum(r.batch_size for r in requests)
        check_outputs(self.ctx.model_name, outputs, batch, self._batched)
        results = split_outputs(outputs, requests)
        timing.input_ns, timing.infer_ns, timing.output_ns = t1 - t0, t2 - t1, now_ns() - t2
        return results

    def close(self) -> None:
        del self.session
