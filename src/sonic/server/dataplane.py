"""The transport-agnostic data plane: everything a v2 server does, with no wire format.

Edges (gRPC, HTTP, the in-process client transport) decode into :mod:`sonic.protocol.types`,
call a method here and encode what comes back; errors are :class:`SonicError` and each edge
maps their codes once. The inference path validates a request against the model config,
resolves shared-memory inputs, hands the request to the model's scheduler, and builds the
response (reshape, classification, shared-memory outputs) while keeping the statistics that
the statistics extension and the metrics both read.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from sonic import __version__
from sonic.backends.base import BackendRequest, Result, now_ns
from sonic.protocol.datatypes import (
    array_from_buffer,
    array_to_bytes,
    element_count,
    element_size,
    numpy_dtype,
)
from sonic.protocol.errors import Code, Internal, InvalidArgument, NotFound, SonicError, nearest
from sonic.protocol.types import InferRequest, InferResponse, InputTensor, OutputTensor, RequestedOutput
from sonic.scheduler.batcher import Pending
from sonic.server.models import ModelManager, ModelVersion, TensorSpec
from sonic.server.shm import SystemSharedMemory, cuda_unsupported

log = logging.getLogger("sonic.server")

#: How :meth:`DataPlane.start` answers: ``(response, None)`` or ``(None, error)``.
Done = Callable[[InferResponse | None, BaseException | None], None]

EXTENSIONS = [
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
]

_TRACE_DEFAULTS: dict[str, list[str]] = {
    "trace_file": [""],
    "trace_level": ["OFF"],
    "trace_rate": ["1000"],
    "trace_count": ["-1"],
    "log_frequency": ["0"],
    "trace_mode": ["triton"],
}


def _fail_reason(exc: SonicError) -> str:
    if exc.code is Code.UNAVAILABLE:
        return "REJECTED"
    if exc.code is Code.INTERNAL:
        return "BACKEND"
    return "OTHER"


def _rid(req: InferRequest) -> str:
    return f"[request id: {req.id or '<id_unknown>'}] "


def _dims(dims: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _shape_ok(shape: tuple[int, ...], dims: tuple[int, ...], skip: int = 0) -> bool:
    """Whether ``shape[skip:]`` matches the config ``dims`` (-1: any size)."""
    if len(shape) - skip != len(dims):
        return False
    for i, d in enumerate(dims):  # noqa: SIM110 (a loop: all() over a generator is slower)
        if d != -1 and d != shape[i + skip]:
            return False
    return True


def classify(arr: npt.NDArray[Any], k: int, labels: list[str] | None, batched: bool) -> npt.NDArray[Any]:
    """Triton's classification extension: top-k 'value:index[:label]' strings per batch row."""
    rows = arr.reshape(arr.shape[0], -1) if batched else arr.reshape(1, -1)
    k = min(k, rows.shape[1])
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty(idx.shape, dtype=np.object_)
    for r in range(idx.shape[0]):
        for c in range(k):
            i = int(idx[r, c])
            text = f"{float(rows[r, i]):f}:{i}"
            if labels is not None and i < len(labels):
                text += f":{labels[i]}"
            out[r, c] = text.encode()
    return out if batched else out.reshape(k)


class DataPlane:
    def __init__(self, models: ModelManager, shm: SystemSharedMemory, name: str = "sonic") -> None:
        self.models = models
        self.shm = shm
        self.name = name
        self.live = True
        self.started = False
        self._trace: dict[str, dict[str, list[str]]] = {"": dict(_TRACE_DEFAULTS)}
        self._log: dict[str, Any] = {
            "log_file": "",
            "log_info": True,
            "log_warning": True,
            "log_error": True,
            "log_verbose_level": 0,
            "log_format": "default",
        }

    # -- health and metadata ------------------------------------------------------------------

    def ready(self) -> bool:
        if not (self.live and self.started):
            return False
        return not any(
            e.state == "UNAVAILABLE" and e.reason != "unloaded" and not e.versions
            for e in self.models.entries.values()
        )

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.models.ready(name, version)

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.models.get(name, version)
        entry = self.models.entries[name]
        lead = [-1] if mv.max_batch_size > 0 else []

        def tensors(specs: dict[str, TensorSpec]) -> list[dict[str, Any]]:
            return [
                {"name": s.name, "datatype": s.datatype, "shape": [*lead, *s.dims]} for s in specs.values()
            ]

        return {
            "name": name,
            "versions": [str(v) for v in sorted(entry.versions)],
            "platform": mv.platform,
            "inputs": tensors(mv.inputs),
            "outputs": tensors(mv.outputs),
        }

    def model_config(self, name: str, version: str = "") -> Any:
        return self.models.get(name, version).config

    # -- inference ----------------------------------------------------------------------------

    async def infer(self, req: InferRequest) -> InferResponse:
        """Run one inference request (raises :class:`SonicError` on a bad request or failure)."""
        fut: asyncio.Future[InferResponse] = asyncio.get_running_loop().create_future()

        def done(resp: InferResponse | None, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(cast(InferResponse, resp))

        pending = self.start(req, done)
        try:
            return await fut
        finally:
            pending.cancel()  # no-op once answered; else the answer is dropped (cancelled)

    def start(self, req: InferRequest, done: Done) -> Pending:
        """The callback form of :meth:`infer`, for the edges' hot path: validate and queue the
        request now (a bad request raises here), and call ``done(response, None)`` or
        ``done(None, error)`` on the loop once its batch has run, never from inside this call.
        ``Pending.cancel()`` on the returned handle withdraws ``done``."""
        t0 = now_ns()
        mv = self.models.get(req.model_name, req.model_version)
        breq, key = self._prepare(mv, req)  # invalid requests are not counted as failures (Triton)
        params = req.parameters
        priority = timeout = 0
        if params:
            priority = int(params.get("priority", 0) or 0)
            timeout = int(params.get("timeout", 0) or 0)
        try:
            return mv.scheduler.submit_cb(
                breq, key, priority, timeout, self._answer, (mv, req, breq, t0, done)
            )
        except SonicError as exc:
            mv.stats.on_request(False, now_ns() - t0, _fail_reason(exc))
            raise

    def _answer(
        self, context: tuple[ModelVersion, InferRequest, BackendRequest, int, Done], result: Result
    ) -> None:
        """The scheduler's answer to :meth:`start`: the response (or the error) and its statistics."""
        mv, req, breq, t0, done = context
        if isinstance(result, BaseException):
            exc: BaseException = result
        else:
            try:
                resp = self._respond(mv, req, breq, result)
            except Exception as error:
                exc = error
            else:
                mv.stats.on_request(True, now_ns() - t0)
                done(resp, None)
                return
        if isinstance(exc, SonicError):
            mv.stats.on_request(False, now_ns() - t0, _fail_reason(exc))
        done(None, exc)

    def _prepare(self, mv: ModelVersion, req: InferRequest) -> tuple[BackendRequest, tuple[Any, ...]]:
        specs = mv.inputs
        batched = mv.max_batch_size > 0
        arrays: dict[str, npt.NDArray[Any]] = {}
        batch = 0
        for t in req.inputs:
            spec = specs.get(t.name)
            if spec is None:
                raise InvalidArgument(
                    f"unexpected inference input '{t.name}' for model '{mv.name}'" + nearest(t.name, specs)
                )
            if t.name in arrays:
                raise InvalidArgument(f"{_rid(req)}input '{t.name}' already exists in request")
            if t.datatype != spec.datatype:
                raise InvalidArgument(
                    f"{_rid(req)}inference input '{t.name}' data-type is '{t.datatype}', but model "
                    f"'{mv.name}' expects '{spec.datatype}'"
                )
            shape = t.shape
            if batched:
                if not shape or not _shape_ok(shape, spec.dims, 1):
                    raise InvalidArgument(
                        f"{_rid(req)}unexpected shape for input '{t.name}' for model '{mv.name}'. Expected "
                        f"{_dims([-1, *spec.dims])}, got {_dims(shape)}. NOTE: Setting a non-zero "
                        "max_batch_size in the model config requires a batch dimension to be "
                        "prepended to each input shape."
                    )
                b = shape[0]
                if b < 1 or b > mv.max_batch_size:
                    raise InvalidArgument(
                        f"{_rid(req)}inference request batch-size must be <= {mv.max_batch_size} for "
                        f"'{mv.name}' (got {b} in input '{t.name}')"
                    )
                if batch and b != batch:
                    raise InvalidArgument(
                        f"{_rid(req)}input '{t.name}' batch size does not match other inputs for "
                        f"'{mv.name}' ({b} vs {batch}: all inputs of a request share the batch dimension)"
                    )
                batch = b
            elif not _shape_ok(shape, spec.dims):
                raise InvalidArgument(
                    f"{_rid(req)}unexpected shape for input '{t.name}' for model '{mv.name}'. Expected "
                    f"{_dims(spec.dims)}, got {_dims(shape)}"
                )
            arr = self._input_array(mv, req, t)
            if spec.reshape is not None:
                arr = arr.reshape(((batch,) if batched else ()) + spec.reshape)
            arrays[t.name] = arr
        if len(arrays) != len(specs):
            missing = [n for n, s in specs.items() if n not in arrays and not s.optional]
            if missing:
                raise InvalidArgument(
                    f"{_rid(req)}expected {len(specs)} inputs but got {len(arrays)} inputs for model "
                    f"'{mv.name}'. Got input(s) {sorted(arrays)}, but missing required input(s) "
                    f"{missing}. Please provide all required input(s)."
                )
        if req.outputs:
            for o in req.outputs:
                if o.name not in mv.outputs:
                    raise InvalidArgument(
                        f"unexpected inference output '{o.name}' for model '{mv.name}'"
                        + nearest(o.name, mv.outputs)
                    )
            requested = tuple([o.name for o in req.outputs])
        else:
            requested = tuple(mv.outputs)
        if len(arrays) == 1:
            ((name, arr),) = arrays.items()
            key: tuple[Any, ...] = (name, arr.shape[1:])
        else:
            key = tuple(sorted((n, a.shape[1:]) for n, a in arrays.items()))
        return BackendRequest(arrays, requested, batch or 1, req.id, req.parameters), key

    def _input_array(self, mv: ModelVersion, req: InferRequest, t: InputTensor) -> npt.NDArray[Any]:
        if t.shm is not None:
            view = self.shm.read(t.shm)
            size = element_size(t.datatype)
            if size and len(view) != size * element_count(t.shape):
                raise InvalidArgument(
                    f"{_rid(req)}input byte size mismatch for input '{t.name}' for model '{mv.name}'. "
                    f"Expected {size * element_count(t.shape)}, got {len(view)}"
                )
            return array_from_buffer(t.name, t.datatype, t.shape, view)
        if t.data is None:
            raise InvalidArgument(
                f"input '{t.name}' has no data: expected tensor contents or a shared memory region"
            )
        return t.data

    def _respond(
        self, mv: ModelVersion, req: InferRequest, breq: BackendRequest, result: Any
    ) -> InferResponse:
        if req.outputs:  # answered in the model's output order, as Triton
            order = mv.output_order
            wanted = sorted(req.outputs, key=lambda o: order[o.name]) if len(req.outputs) > 1 else req.outputs
        else:
            wanted = [RequestedOutput(n) for n in breq.requested]
        batched = mv.max_batch_size > 0
        outputs: list[OutputTensor] = []
        for ro in wanted:
            spec = mv.outputs[ro.name]
            arr = result[ro.name]
            datatype = spec.datatype
            if spec.reshape is not None:
                arr = arr.reshape(((breq.batch_size,) if batched else ()) + spec.dims)
            if ro.classification:
                arr = classify(arr, ro.classification, mv.labels.get(ro.name), batched)
                datatype = "BYTES"
            elif datatype != "BYTES":
                want = numpy_dtype(datatype)
                if arr.dtype != want:
                    arr = np.asarray(arr).astype(want)
            out = OutputTensor(ro.name, datatype, tuple(arr.shape), arr, binary_data=ro.binary_data)
            if ro.shm is not None:
                self.shm.write(ro.shm, array_to_bytes(datatype, arr), ro.name)
                out.data, out.shm = None, ro.shm
            outputs.append(out)
        return InferResponse(mv.name, str(mv.version), req.id, outputs)

    # -- statistics ---------------------------------------------------------------------------

    def statistics(self, name: str = "", version: str = "") -> list[Any]:
        """ModelStatistics messages (Triton's statistics extension)."""
        if name:
            try:
                mvs = [self.models.get(name, version)] if version else self._versions(name)
            except NotFound:
                raise InvalidArgument(f"requested model '{name}' is not available") from None
        else:
            mvs = [mv for e in self.models.entries.values() for mv in e.versions.values()]
        out = []
        for mv in mvs:
            s = mv.stats
            msg = pb.ModelStatistics(
                name=mv.name,
                version=str(mv.version),
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
            )
            st = msg.inference_stats
            for field, d in (
                ("success", s.success),
                ("fail", s.fail),
                ("queue", s.queue),
                ("compute_input", s.compute_input),
                ("compute_infer", s.compute_infer),
                ("compute_output", s.compute_output),
            ):
                getattr(st, field).count = d.count
                getattr(st, field).ns = d.ns
            st.cache_hit.SetInParent()  # no response cache: zeros, present as in Triton
            st.cache_miss.SetInParent()
            for size in sorted(s.batches):
                b = s.batches[size]
                bs = msg.batch_stats.add(batch_size=size)
                bs.compute_input.count = bs.compute_infer.count = bs.compute_output.count = b.count
                bs.compute_input.ns, bs.compute_infer.ns, bs.compute_output.ns = (
                    b.input_ns,
                    b.infer_ns,
                    b.output_ns,
                )
            out.append(msg)
        return out

    def _versions(self, name: str) -> list[ModelVersion]:
        self.models.get(name)  # raises the right error when nothing is loaded
        return [self.models.entries[name].versions[v] for v in sorted(self.models.entries[name].versions)]

    # -- repository ---------------------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        return self.models.index(ready_only)

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self.models.check_control()
        override = None
        if config_json:
            try:
                override = json_format.Parse(config_json, mc.ModelConfig())
            except json_format.ParseError as exc:
                raise Internal(
                    f"failed to load '{name}', failed to poll from model repository: "
                    f"invalid config override: {exc}"
                ) from None
        model_dir = None
        if files:
            if override is None:
                raise InvalidArgument(
                    f"failed to load '{name}': model files given without a 'config' parameter"
                )
            model_dir = Path(tempfile.mkdtemp(prefix=f"sonic-{name}-")) / name
            for rel, content in files.items():
                rel_path = Path(rel.removeprefix("file:"))
                if rel_path.is_absolute() or ".." in rel_path.parts:
                    raise InvalidArgument(f"failed to load '{name}': invalid file path '{rel}'")
                target = model_dir / rel_path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        await self.models.load(name, override, model_dir)

    async def unload_model(self, name: str) -> None:
        self.models.check_control()
        await self.models.unload(name)

    # -- shared memory ------------------------------------------------------------------------

    def shm_register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.shm.register(name, key, offset, byte_size)

    def shm_unregister(self, name: str = "") -> None:
        self.shm.unregister(name)

    def shm_status(self, name: str = "") -> list[dict[str, Any]]:
        return [
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in self.shm.status(name)
        ]

    def cuda_shm(self) -> None:
        raise cuda_unsupported()

    # -- trace and log settings ----------------------------------------------------------------

    def trace_settings(
        self, model: str = "", updates: dict[str, list[str] | None] | None = None
    ) -> dict[str, list[str]]:
        if model and model not in self.models.repository.models() and model not in self.models.entries:
            raise InvalidArgument(f"Request for unknown model : {model}")
        current = self._trace.setdefault(model, {}) if model else self._trace[""]
        for key, value in (updates or {}).items():
            if key not in _TRACE_DEFAULTS:
                raise InvalidArgument(f"unknown trace setting '{key}'" + nearest(key, _TRACE_DEFAULTS))
            if value is None:
                current.pop(key, None) if model else current.__setitem__(key, list(_TRACE_DEFAULTS[key]))
            else:
                current[key] = list(value)
        return {**self._trace[""], **(self._trace.get(model, {}) if model else {})}

    def log_settings(self, updates: dict[str, Any] | None = None) -> dict[str, Any]:
        for key, value in (updates or {}).items():
            if key not in self._log:
                raise InvalidArgument(f"unknown log setting '{key}'" + nearest(key, self._log))
            expected = type(self._log[key])
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise InvalidArgument(f"log setting '{key}' expects a {expected.__name__}, got {value!r}")
            self._log[key] = value
        level = (
            logging.DEBUG
            if self._log["log_verbose_level"] > 0
            else (
                logging.INFO
                if self._log["log_info"]
                else logging.WARNING
                if self._log["log_warning"]
                else logging.ERROR
            )
        )
        logging.getLogger("sonic").setLevel(level)
        return dict(self._log)


def decode_file_params(params: dict[str, Any]) -> tuple[str | None, dict[str, bytes]]:
    """Split a load request's parameters into the config override and base64 model files."""
    config = params.get("config")
    files: dict[str, bytes] = {}
    for key, value in params.items():
        if key.startswith("file:"):
            files[key] = value if isinstance(value, bytes) else base64.b64decode(str(value))
    return (str(config) if config is not None else None), files
