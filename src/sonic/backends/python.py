"""python backend: a user's ``model.py`` for algorithms that are not a framework model.

Two styles are served:

- Triton's: ``class TritonPythonModel`` with ``initialize(args)``, ``execute(requests) ->
  responses`` and ``finalize()``, importing ``triton_python_backend_utils`` (provided by
  :mod:`sonic.backends.pb_utils`). The same model directory runs on NVIDIA Triton.
- sonic's array style: ``class SonicModel`` with ``execute(inputs: dict[str, ndarray]) ->
  dict[str, ndarray]`` called once per batch on the merged inputs (the batch dimension
  first), which is what most physics algorithms want.

Each instance imports the file as its own module, so module-level state is per instance.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections.abc import Sequence

from google.protobuf import json_format

from sonic.backends import pb_utils
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
from sonic.protocol.errors import Code, Internal, InvalidArgument, SonicError

_counter = itertools.count()
_PB_CODES = {
    pb_utils.TritonError.INVALID_ARG: Code.INVALID_ARG,
    pb_utils.TritonError.NOT_FOUND: Code.NOT_FOUND,
    pb_utils.TritonError.UNAVAILABLE: Code.UNAVAILABLE,
    pb_utils.TritonError.UNSUPPORTED: Code.UNSUPPORTED,
    pb_utils.TritonError.ALREADY_EXISTS: Code.ALREADY_EXISTS,
}


def _args(ctx: LoadContext) -> dict[str, str]:
    config = json_format.MessageToDict(ctx.config, preserving_proto_field_name=True)
    return {
        "model_config": json.dumps(config),
        "model_instance_kind": ctx.instance.kind.removeprefix("KIND_"),
        "model_instance_name": ctx.instance.name,
        "model_instance_device_id": str(ctx.instance.device_id),
        "model_repository": str(ctx.model_dir),
        "model_version": str(ctx.version),
        "model_name": ctx.model_name,
    }


@register("python")
class PythonInstance(ModelInstance):
    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        path = ctx.model_file("model.py")
        sys.modules.setdefault("triton_python_backend_utils", pb_utils)
        modname = f"_sonic_model_{ctx.model_name}_{ctx.version}_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise InvalidArgument(f"model '{ctx.model_name}': cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise InvalidArgument(
                f"model '{ctx.model_name}': importing {path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        cls = getattr(module, "SonicModel", None)
        self._array_style = cls is not None
        if cls is None:
            cls = getattr(module, "TritonPythonModel", None)
        if cls is None:
            raise InvalidArgument(
                f"model '{ctx.model_name}': {path} defines neither class TritonPythonModel "
                "(Triton style: execute(requests)) nor class SonicModel (execute(inputs dict))"
            )
        self.model = cls()
        self._batched = ctx.config.max_batch_size > 0
        init = getattr(self.model, "initialize", None)
        if init is not None:
            try:
                init(_args(ctx))
            except Exception as exc:
                raise InvalidArgument(
                    f"model '{ctx.model_name}': initialize() failed: {type(exc).__name__}: {exc}"
                ) from exc

    def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        try:
            if self._array_style:
                results = self._execute_arrays(requests, timing)
            else:
                results = self._execute_triton(requests, timing)
        except SonicError:
            raise
        except Exception as exc:
            raise Internal(
                f"Failed to process the request(s) for model '{self.ctx.instance.name}', "
                f"message: {type(exc).__name__}: {exc}"
            ) from exc
        return results

    def _execute_arrays(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        t0 = now_ns()
        merged = merge_inputs(requests)
        t1 = now_ns()
        outputs = self.model.execute(merged)
        t2 = now_ns()
        timing.input_ns, timing.infer_ns = t1 - t0, t2 - t1
        if not isinstance(outputs, dict):
            raise Internal(
                f"model '{self.ctx.model_name}': SonicModel.execute must return a dict of arrays, "
                f"got {type(outputs).__name__}"
            )
        batch = sum(r.batch_size for r in requests)
        check_outputs(self.ctx.model_name, outputs, batch, self._batched)
        missing = {n for r in requests for n in r.requested} - outputs.keys()
        if missing:
            raise Internal(f"model '{self.ctx.model_name}' did not return outputs {sorted(missing)}")
        results = split_outputs(outputs, requests)
        timing.output_ns = now_ns() - t2
        return results

    def _execute_triton(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        t0 = now_ns()
        pb_requests = [
            pb_utils.InferenceRequest(
                [pb_utils.Tensor(n, a) for n, a in r.inputs.items()],
                list(r.requested),
                r.id,
                dict(r.parameters),
            )
            for r in requests
        ]
        t1 = now_ns()
        responses = self.model.execute(pb_requests)
        t2 = now_ns()
        timing.input_ns, timing.infer_ns = t1 - t0, t2 - t1
        if responses is None or len(responses) != len(requests):
            n = "None" if responses is None else str(len(responses))
            raise Internal(
                f"model '{self.ctx.model_name}': execute() returned {n} responses "
                f"for {len(requests)} requests; it must return one per request"
            )
        results: list[Result] = []
        for req, resp in zip(requests, responses, strict=True):
            if resp.has_error():
                err = resp.error()
                code = _PB_CODES.get(err.code(), Code.INTERNAL) if err else Code.INTERNAL
                results.append(SonicError(err.message() if err else "error", code))
                continue
            tensors = {t.name(): t.as_numpy() for t in resp.output_tensors()}
            missing = [n for n in req.requested if n not in tensors]
            if missing:
                results.append(
                    Internal(f"model '{self.ctx.model_name}' did not return requested outputs {missing}")
                )
                continue
            results.append({n: tensors[n] for n in req.requested})
        timing.output_ns = now_ns() - t2
        return results

    def close(self) -> None:
        fin = getattr(self.model, "finalize", None)
        if fin is not None:
            fin()
