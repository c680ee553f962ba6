"""The v2 gRPC inference messages <-> the transport-agnostic data model.

Sits between the gRPC edge (and the sonic gRPC client) and :mod:`sonic.protocol.types`. The
messages are Triton's ``inference.ModelInferRequest`` / ``ModelInferResponse`` as generated in
tritonclient. Tensor data travels either in ``raw_input_contents`` / ``raw_output_contents``
(one little-endian byte string per tensor, by position) or, for requests only in practice, in
the typed ``contents`` fields; a tensor in a registered shared-memory region carries only its
``shared_memory_*`` parameters.

Both directions are here; fixed-size tensors decoded from raw contents are read-only
:func:`numpy.frombuffer` views of the message's bytes. Malformed messages raise
:class:`~sonic.protocol.errors.InvalidArgument` with Triton-like wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2

from sonic.protocol.datatypes import check_shape, element_count
from sonic.protocol.errors import Internal, InvalidArgument
from sonic.protocol.http_codec import (
    _DTYPES,
    _VALID_DATATYPES,
    _array_from_raw,
    _check_count,
    _check_datatype,
    _has_shm,
    _raw_from_array,
    _requested_output,
    _shm_from_params,
    _shm_params,
)
from sonic.protocol.http_codec import (
    SHM_REGION as _SHM_REGION,
)
from sonic.protocol.types import (
    InferRequest,
    InferResponse,
    InputTensor,
    OutputTensor,
    Params,
    ParamValue,
    RequestedOutput,
    ShmRef,
)

__all__ = [
    "decode_infer_request",
    "decode_infer_request_bytes",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
    "params_from_pb",
    "params_to_pb",
    "serialize_infer_response",
]

_ModelInferRequest = service_pb2.ModelInferRequest
_ModelInferResponse = service_pb2.ModelInferResponse
_InferInputTensor = service_pb2.ModelInferRequest.InferInputTensor
_InferRequestedOutputTensor = service_pb2.ModelInferRequest.InferRequestedOutputTensor
_InferOutputTensor = service_pb2.ModelInferResponse.InferOutputTensor

# datatype -> (typed contents field, that field's natural numpy dtype). FP16 and BF16 have
# no typed field: they must travel raw.
_CONTENTS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(np.object_)),
}
_CONTENTS_FIELDS = tuple(f.name for f in service_pb2.InferTensorContents.DESCRIPTOR.fields)

# Triton reads these request parameters only from the given InferParameter case.
_UINT64_PARAMS = frozenset({"priority"})
_NEVER = 2**63
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


def params_from_pb(params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """A ``map<string, InferParameter>`` -> plain dict (unset parameters are skipped)."""
    if not params:
        return {}
    out: dict[str, ParamValue] = {}
    for key in params:  # (not .items(): upb maps take the slow Mapping mixin for that)
        p = params[key]
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def params_to_pb(params: Mapping[str, ParamValue], map_field: Any) -> None:
    """Write ``params`` into a ``map<string, InferParameter>`` field.

    bool -> bool_param, str -> string_param, float -> double_param, int -> int64_param (or
    uint64_param above the int64 range, and always for ``priority``, which Triton accepts
    only as uint64_param).
    """
    for key, value in params.items():
        p = map_field[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            if key in _UINT64_PARAMS and 0 <= value <= _UINT64_MAX:
                p.uint64_param = value
            elif _INT64_MIN <= value <= _INT64_MAX:
                p.int64_param = value
            elif 0 <= value <= _UINT64_MAX:
                p.uint64_param = value
            else:
                raise InvalidArgument(f"parameter '{key}' = {value} does not fit in 64 bits")
        elif isinstance(value, float):
            p.double_param = value
        elif isinstance(value, str):
            p.string_param = value
        else:
            raise InvalidArgument(
                f"parameter '{key}' must be a bool, int, float or str, got {type(value).__name__}"
            )


# --------------------------------------------------------------------------------------------
# typed contents
# --------------------------------------------------------------------------------------------


def _array_from_contents(
    owner: str, model: str, datatype: str, shape: tuple[int, ...], contents: Any
) -> npt.NDArray[Any]:
    """The typed ``contents`` of a tensor -> array, checking field, count and range."""
    entry = _CONTENTS.get(datatype)
    if entry is None:
        raise InvalidArgument(
            f"{owner} for model '{model}' is {datatype}, which has no typed contents field; "
            "expected its data in raw contents"
        )
    field, natural = entry
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        others = [
            f"{f} ({len(getattr(contents, f))})"
            for f in _CONTENTS_FIELDS
            if f != field and len(getattr(contents, f))
        ]
        raise InvalidArgument(
            f"{owner} for model '{model}' ({datatype}, shape {list(shape)}) expects {count} "
            f"values in contents.{field}, got {len(values)}"
            + (f"; data found in {', '.join(others)}" if others else "")
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=np.object_)
        arr[:] = list(values)
        return arr.reshape(shape)
    arr = np.array(values, dtype=natural)
    target = _DTYPES[datatype]
    if target != natural:
        info = np.iinfo(target)
        if count and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidArgument(
                f"{owner} for model '{model}' has contents.{field} values outside the "
                f"{datatype} range [{info.min}, {info.max}]"
            )
        arr = arr.astype(target)
    return arr.reshape(shape)


# --------------------------------------------------------------------------------------------
# server direction
# --------------------------------------------------------------------------------------------


def decode_infer_request(msg: Any) -> InferRequest:
    """A ``ModelInferRequest`` -> :class:`InferRequest`.

    When ``raw_input_contents`` is present, every input not in shared memory takes its data
    from it, by position: either one entry per input (entries of shm inputs must be empty)
    or one per non-shm input, as tritonclient sends them. Otherwise each such input carries
    typed ``contents`` in the field of its datatype.
    """
    model = msg.model_name
    raw = msg.raw_input_contents[:]
    nraw = len(raw)
    inputs = msg.inputs[:]
    positional = nraw == len(inputs)
    if nraw and not positional:
        n_shm = sum(1 for t in inputs if _SHM_REGION in t.parameters)
        if nraw != len(inputs) - n_shm:
            for t in inputs:
                if t.HasField("contents"):
                    raise InvalidArgument(
                        f"unexpected explicit tensor data for input tensor '{t.name}' for model "
                        f"'{model}': the request uses raw_input_contents, so every input must "
                        "be raw or in shared memory"
                    )
            in_shm = f" ({n_shm} in shared memory)" if n_shm else ""
            raise InvalidArgument(
                f"expected {len(inputs) - n_shm} raw_input_contents entries for "
                f"{len(inputs)} inputs{in_shm} of model '{model}', got {nraw}"
            )
    mparams = msg.parameters
    req = InferRequest(model, msg.model_version, msg.id, [], [], params_from_pb(mparams) if mparams else {})
    k = 0
    for i, t in enumerate(inputs):
        name = t.name
        if not name:
            raise InvalidArgument(f"inputs[{i}] of the request for model '{model}' has no name")
        datatype = t.datatype
        if datatype not in _VALID_DATATYPES:
            _check_datatype(f"input tensor '{name}'", datatype)
        shape = tuple(t.shape[:])
        if shape and min(shape) < 0:
            check_shape(name, shape)
        tparams = t.parameters
        params = params_from_pb(tparams) if tparams else {}
        shm = _shm_from_params(f"input tensor '{name}'", params) if params and _has_shm(params) else None
        array: npt.NDArray[Any] | None = None
        if shm is not None:
            if t.HasField("contents") or (positional and raw[i]):
                raise InvalidArgument(
                    f"unexpected explicit tensor data for input tensor '{name}' for model "
                    f"'{model}': the input is in shared memory"
                )
        elif nraw:
            if t.HasField("contents"):
                raise InvalidArgument(
                    f"unexpected explicit tensor data for input tensor '{name}' for model "
                    f"'{model}': the request uses raw_input_contents, so every input must be "
                    "raw or in shared memory"
                )
            array = _array_from_raw("input", name, datatype, shape, raw[i if positional else k])
            k += 1
        elif t.HasField("contents"):
            array = _array_from_contents(f"input tensor '{name}'", model, datatype, shape, t.contents)
        elif element_count(shape) == 0:
            array = _array_from_raw("input", name, datatype, shape, b"")
        else:
            raise InvalidArgument(
                f"input tensor '{name}' for model '{model}' has no data; expected "
                "raw_input_contents, typed contents or shared-memory parameters"
            )
        req.inputs.append(InputTensor(name, datatype, shape, array, shm, params))
    if msg.outputs:
        for i, o in enumerate(msg.outputs[:]):
            name = o.name
            if not name:
                raise InvalidArgument(f"outputs[{i}] of the request for model '{model}' has no name")
            oparams = o.parameters
            req.outputs.append(
                _requested_output(f"output '{name}'", name, params_from_pb(oparams) if oparams else {})
            )
    return req


def decode_infer_request_bytes(
    data: bytes | memoryview, parse: Callable[[bytes | memoryview], Any], limit: int = 1024
) -> InferRequest:
    """A serialized ``ModelInferRequest`` -> :class:`InferRequest`: the server's hot path.

    Equal to ``decode_infer_request(parse(data))`` (``parse``: the caller's upb parse, with
    its own error for an undecodable message), errors included,
    but a request whose fields other than ``id`` and ``raw_input_contents`` repeat, byte for
    byte, those of an earlier request (what a client sends for every event) is decoded from
    a cached template: one scan of its top-level fields, then only the id and the tensors are
    new. Requests with shared-memory or typed-contents inputs, and anything the scan does not
    take as plain (unknown fields, other wire types), take the full path through upb. The
    differential tests hold both paths to each other. ``limit``: templates kept.
    """
    scanned = _scan_request(data)
    if scanned is not None:
        key, rid, raws = scanned
        template = _TEMPLATES.get(key)
        if template is not None:
            try:
                return template.instance(rid, raws)
            except (InvalidArgument, UnicodeDecodeError):
                pass  # the full path gives the canonical error
    req = decode_infer_request(parse(data))
    if scanned is not None and _Template.fits(req, len(scanned[2])):
        if len(_TEMPLATES) >= limit:
            _TEMPLATES.clear()
        _TEMPLATES[scanned[0]] = _Template(req)
    return req


class _Template:
    """What a cached request shape decodes to; ``instance`` adds one request's id and data."""

    __slots__ = ("inputs", "model", "outputs", "parameters", "version")

    def __init__(self, req: InferRequest) -> None:
        self.model = req.model_name
        self.version = req.model_version
        self.parameters = dict(req.parameters)
        # name, datatype, shape, and the dtype and byte size of the raw data when fixed
        self.inputs = [(t.name, t.datatype, t.shape, *_fixed_size(t.datatype, t.shape)) for t in req.inputs]
        self.outputs = [
            (o.name, o.binary_data, o.classification, o.shm, dict(o.parameters)) for o in req.outputs
        ]

    @staticmethod
    def fits(req: InferRequest, nraw: int) -> bool:
        """Only requests whose every input comes from its raw entry, by position, are cached."""
        return nraw == len(req.inputs) > 0 and all(
            t.shm is None and not t.parameters and t.data is not None for t in req.inputs
        )

    def instance(self, rid: bytes | memoryview | None, raws: list[bytes | memoryview]) -> InferRequest:
        inputs = self.inputs
        if len(raws) != len(inputs):
            raise InvalidArgument("raw_input_contents do not match the cached request")
        tensors = []
        for i, (name, datatype, shape, dtype, nbytes) in enumerate(inputs):
            raw = raws[i]
            if dtype is not None and len(raw) == nbytes:
                array = np.ndarray(shape, dtype, raw)  # as _array_from_raw's fast path
            else:
                array = _array_from_raw("input", name, datatype, shape, raw)
            tensors.append(InputTensor(name, datatype, shape, array))
        return InferRequest(
            self.model,
            self.version,
            "" if rid is None else str(rid, "utf-8"),
            tensors,
            [RequestedOutput(n, b, c, shm, dict(p) if p else {}) for n, b, c, shm, p in self.outputs],
            dict(self.parameters),
        )


def _fixed_size(datatype: str, shape: tuple[int, ...]) -> tuple[np.dtype[Any] | None, int]:
    dtype = _DTYPES.get(datatype)
    return dtype, (0 if dtype is None else element_count(shape) * dtype.itemsize)


_TEMPLATES: dict[bytes, _Template] = {}


_Scan = tuple[bytes, bytes | memoryview | None, list[bytes | memoryview]]


def _scan_request(data: bytes | memoryview) -> _Scan | None:
    """Top-level fields of a serialized ModelInferRequest: (every field but ``id`` (3) and
    ``raw_input_contents`` (7), as bytes; the last id; the raw entries), or None when a field
    is not a length-delimited field 1-7 with a one-byte tag (the full path decides then)."""
    n = len(data)
    pos = 0
    key = bytearray()
    rid: bytes | memoryview | None = None
    raws: list[bytes | memoryview] = []
    while pos < n:
        start = pos
        tag = data[pos]
        field = tag >> 3
        if tag & 0x87 != 2 or field == 0 or field > 7:  # not LEN wire type / field 1-7
            return None
        pos += 1
        length = 0
        shift = 0
        while True:
            if pos >= n or shift > 28:
                return None
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        end = pos + length
        if end > n:
            return None
        if field == 7:
            raws.append(data[pos:end])
        elif field == 3:
            rid = data[pos:end]
        else:
            key += data[start:end]
        pos = end
    return bytes(key), rid, raws


def encode_infer_response(resp: InferResponse) -> Any:
    """:class:`InferResponse` -> ``ModelInferResponse``.

    Like Triton, every output gets a ``raw_output_contents`` entry so entries stay aligned
    with ``outputs`` by position (tritonclient's ``as_numpy`` indexes them so); an output in
    shared memory gets an empty entry and no parameters (as Triton).
    """
    outputs = []
    raws: list[bytes] = []
    for o in resp.outputs:
        t = _InferOutputTensor(name=o.name, datatype=o.datatype, shape=o.shape)
        if o.parameters:
            params_to_pb(o.parameters, t.parameters)
        raws.append(_raw_entry(o))
        outputs.append(t)
    msg = _ModelInferResponse(
        model_name=resp.model_name,
        model_version=resp.model_version,
        id=resp.id,
        outputs=outputs,
        raw_output_contents=raws,
    )
    if resp.parameters:
        params_to_pb(resp.parameters, msg.parameters)
    return msg


def serialize_infer_response(resp: InferResponse) -> bytes:
    """``encode_infer_response(resp).SerializeToString()``, byte for byte, without building
    the message: the server's hot path.

    ``ModelInferResponse`` is written straight in protobuf's wire format, fields in number
    order as upb writes them; each output's tensor header (name, datatype, shape) is cached.
    Responses with parameters (the response's or an output's) go through upb. The differential
    tests hold this to upb's bytes.
    """
    if resp.parameters:
        return bytes(encode_infer_response(resp).SerializeToString())
    parts: list[bytes] = []
    model = resp.model_name.encode()
    parts += (b"\x0a", _varint(len(model)), model)
    if resp.model_version:
        version = resp.model_version.encode()
        parts += (b"\x12", _varint(len(version)), version)
    if resp.id:
        rid = resp.id.encode()
        parts += (b"\x1a", _varint(len(rid)), rid)
    raws: list[bytes] = []
    for o in resp.outputs:
        if o.parameters:
            return bytes(encode_infer_response(resp).SerializeToString())
        shape = o.shape if type(o.shape) is tuple else tuple(o.shape)
        head = _OUTPUT_HEADS.get((o.name, o.datatype, shape))
        if head is None:
            head = _output_head(o.name, o.datatype, shape)
        parts.append(head)
        raws.append(_raw_entry(o))
    for raw in raws:
        parts += (b"\x32", _varint(len(raw)), raw)
    return b"".join(parts)


def _varint(n: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = tuple(bytes([i]) for i in range(0x80))
_OUTPUT_HEADS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}


def _output_head(name: str, datatype: str, shape: tuple[int, ...]) -> bytes:
    """``outputs`` field (5) of one InferOutputTensor with no parameters: name, datatype, shape."""
    body = bytearray()
    for tag, text in ((b"\x0a", name), (b"\x12", datatype)):
        if text:
            data = text.encode()
            body += tag + _varint(len(data)) + data
    if shape:
        # packed int64; a negative dimension is the 10-byte two's complement varint
        dims = b"".join(_varint(d if d >= 0 else d + (1 << 64)) for d in shape)
        body += b"\x1a" + _varint(len(dims)) + dims
    head = b"\x2a" + _varint(len(body)) + bytes(body)
    if len(_OUTPUT_HEADS) >= 4096:  # bounded: shapes vary with the batch size only
        _OUTPUT_HEADS.clear()
    _OUTPUT_HEADS[(name, datatype, shape)] = head
    return head


def _raw_entry(o: OutputTensor) -> bytes:
    """An output's ``raw_output_contents`` entry: empty for one in shared memory (as Triton)."""
    if o.shm is not None:
        return b""
    if o.data is None:
        raise Internal(f"output '{o.name}' has neither data nor shared memory")
    _check_count("output", o.name, o.shape, o.data)
    return _raw_bytes("output", o.name, o.datatype, o.data)


def _raw_bytes(kind: str, name: str, datatype: str, array: npt.NDArray[Any]) -> bytes:
    """protobuf bytes fields take only ``bytes``: one copy, unavoidable."""
    raw = _raw_from_array(kind, name, datatype, array, view_min=_NEVER)
    assert isinstance(raw, bytes)
    return raw


# --------------------------------------------------------------------------------------------
# client direction
# --------------------------------------------------------------------------------------------


def encode_infer_request(req: InferRequest) -> Any:
    """:class:`InferRequest` -> ``ModelInferRequest`` with raw contents for every input not
    in shared memory (the one layout every server accepts, and the fastest)."""
    inputs = []
    raws: list[bytes] = []
    for t in req.inputs:
        it = _InferInputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
        if t.parameters:
            params_to_pb(t.parameters, it.parameters)
        if t.shm is not None:
            params_to_pb(_shm_params(t.shm), it.parameters)
        elif t.data is None:
            raise InvalidArgument(f"input '{t.name}' has neither data nor shared memory")
        else:
            _check_count("input", t.name, t.shape, t.data)
            raws.append(_raw_bytes("input", t.name, t.datatype, t.data))
        inputs.append(it)
    outputs = []
    for o in req.outputs:
        ot = _InferRequestedOutputTensor(name=o.name)
        params: Params = dict(o.parameters)
        if o.classification:
            params["classification"] = o.classification
        if o.shm is not None:
            params.update(_shm_params(o.shm))
        if params:
            params_to_pb(params, ot.parameters)
        outputs.append(ot)
    msg = _ModelInferRequest(
        model_name=req.model_name,
        model_version=req.model_version,
        id=req.id,
        inputs=inputs,
        outputs=outputs,
        raw_input_contents=raws,
    )
    if req.parameters:
        params_to_pb(req.parameters, msg.parameters)
    return msg


def decode_infer_response(msg: Any, shm_outputs: Mapping[str, ShmRef] | None = None) -> InferResponse:
    """``ModelInferResponse`` -> :class:`InferResponse` (the client side of
    :func:`encode_infer_response`). Accepts raw contents aligned by position (Triton) or
    one per non-shm output, and typed contents when there are no raw contents.

    Servers answer outputs written to shared memory with an empty raw entry and no parameters,
    so only the client knows where they are: ``shm_outputs`` (name -> region slice it asked
    for) marks them, and they come back with ``shm`` set and no data."""
    shm_outputs = shm_outputs or {}
    model = msg.model_name
    raw = msg.raw_output_contents[:]
    nraw = len(raw)
    outs = msg.outputs[:]
    positional = nraw == len(outs)
    if nraw and not positional:
        n_plain = sum(1 for o in outs if _SHM_REGION not in o.parameters and o.name not in shm_outputs)
        if nraw != n_plain:
            raise InvalidArgument(
                f"expected {len(outs)} raw_output_contents entries for {len(outs)} outputs of "
                f"model '{model}', got {nraw}"
            )
    resp = InferResponse(model, msg.model_version, msg.id, parameters=params_from_pb(msg.parameters))
    k = 0
    for i, o in enumerate(outs):
        name = o.name
        owner = f"output '{name}'"
        datatype = o.datatype
        if datatype not in _VALID_DATATYPES:
            _check_datatype(owner, datatype)
        shape = tuple(o.shape[:])
        if shape and min(shape) < 0:
            raise InvalidArgument(f"{owner} of model '{model}' has negative shape {list(shape)}")
        params = params_from_pb(o.parameters)
        shm = _shm_from_params(owner, params) if _has_shm(params) else None
        if shm is None and name in shm_outputs and not (positional and raw[i]):
            shm = shm_outputs[name]
        out = OutputTensor(name, datatype, shape, shm=shm, parameters=params)
        if shm is None:
            if nraw:
                buf = raw[i if positional else k]
                k += 1
                out.data = _array_from_raw("output", name, datatype, shape, buf)
            elif o.HasField("contents"):
                out.data = _array_from_contents(owner, model, datatype, shape, o.contents)
            elif element_count(shape) == 0:
                out.data = _array_from_raw("output", name, datatype, shape, b"")
            else:
                raise InvalidArgument(
                    f"{owner} of model '{model}' has no data; expected raw_output_contents, "
                    "typed contents or shared-memory parameters"
                )
        resp.outputs.append(out)
    return resp
