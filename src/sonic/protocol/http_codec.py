"""The v2 HTTP/REST inference body: JSON tensors and the binary tensor extension.

Sits between the HTTP edge (and the sonic HTTP client) and the transport-agnostic data model
in :mod:`sonic.protocol.types`: the edge hands over the raw body plus the value of the
``Inference-Header-Content-Length`` header, and gets back an :class:`InferRequest`; the data
plane's :class:`InferResponse` goes out as a list of body chunks, ready for one vectored write.

Wire format (Triton's binary tensor extension): the body opens with a JSON header of
``header_length`` bytes; after it come the raw tensors, back to back, in the order of the
tensors whose ``parameters`` carry ``binary_data_size``. Without the header length the whole
body is JSON. A tensor may instead live in a registered shared-memory region
(``shared_memory_region`` / ``_offset`` / ``_byte_size`` parameters), in which case it carries
no data at all.

Both directions are here: the server decodes requests and encodes responses; the client
encodes requests and decodes responses. Decoding is zero-copy for fixed-size binary tensors:
their arrays are read-only :func:`numpy.frombuffer` views into the body, which may be
unaligned; a backend that needs aligned or writable memory copies them itself.

Every malformed body raises :class:`~sonic.protocol.errors.InvalidArgument` naming the tensor
and what was expected. The helpers prefixed ``_`` that deal with shared-memory parameters and
raw tensor bytes are shared with :mod:`sonic.protocol.grpc_codec`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.datatypes import (
    DATATYPES,
    array_from_buffer,
    element_count,
    numpy_dtype,
    serialize_bytes,
)
from sonic.protocol.errors import Internal, InvalidArgument, nearest
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
    "binary_default",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
]

Chunk = bytes | memoryview


# python-rapidjson (a tritonclient dependency) is ~2x faster than the stdlib on small headers;
# both emit ASCII-only JSON, so a header's byte length equals its string length.
_loads: Callable[[bytes], Any]
_dumps: Callable[[Any], str]
try:
    from rapidjson import dumps as _dumps
    from rapidjson import loads as _loads
except ImportError:  # pragma: no cover - exercised only without tritonclient
    _loads = json.loads
    _dumps = json.JSONEncoder(separators=(",", ":")).encode

# Fixed-size datatypes -> numpy dtype; BF16 is added lazily (ml_dtypes), BYTES is special.
_DTYPES: dict[str, np.dtype[Any]] = {dt: numpy_dtype(dt) for dt in DATATYPES if dt not in ("BYTES", "BF16")}
_VALID_DATATYPES = frozenset(DATATYPES)
_INT_KINDS = "iu"
_MAX_DIM = 2**63 - 1
_SCALARS = (int, float, str)  # JSON parameter values (bool is an int)
# numpy kinds that JSON values may take for each datatype kind (JSON 1 is a valid float).
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}

SHM_REGION = "shared_memory_region"
SHM_OFFSET = "shared_memory_offset"
SHM_BYTE_SIZE = "shared_memory_byte_size"
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
CLASSIFICATION = "classification"


# --------------------------------------------------------------------------------------------
# helpers shared with the gRPC codec
# --------------------------------------------------------------------------------------------


def _bf16_dtype() -> np.dtype[Any]:
    """numpy has no bfloat16; ml_dtypes (a tritonclient dependency) provides it."""
    try:
        import ml_dtypes  # only BF16 needs it
    except ImportError:  # pragma: no cover - ml_dtypes ships with tritonclient
        raise InvalidArgument("BF16 tensors need the ml_dtypes package (pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)  # type: ignore[no-any-return]


def _check_datatype(owner: str, datatype: object) -> str:
    if not isinstance(datatype, str):
        raise InvalidArgument(f"{owner} has no 'datatype'; expected a string such as 'FP32'")
    if datatype not in _VALID_DATATYPES:
        raise InvalidArgument(
            f"{owner} has unknown datatype {datatype!r}; expected one of "
            f"{', '.join(DATATYPES)}" + nearest(datatype, DATATYPES)
        )
    return datatype


def _array_from_raw(
    kind: str, name: str, datatype: str, shape: tuple[int, ...], buf: bytes | memoryview
) -> npt.NDArray[Any]:
    """Raw little-endian tensor bytes -> array of ``shape`` (a view for fixed-size types)."""
    dtype = _DTYPES.get(datatype)
    if dtype is not None and len(buf) == element_count(shape) * dtype.itemsize:
        # the fast path: a read-only view (as np.frombuffer(...).reshape(...), in half the time)
        return np.ndarray(shape, dtype, buf)
    if datatype == "BF16":
        expected = element_count(shape) * 2
        if len(buf) != expected:
            raise InvalidArgument(
                f"{kind} '{name}': got {len(buf)} bytes of BF16 data, expected {expected} "
                f"for shape {list(shape)}"
            )
        return np.frombuffer(buf, dtype=_bf16_dtype()).reshape(shape)
    return array_from_buffer(name, datatype, shape, buf, kind=kind)


def _raw_from_array(
    kind: str, name: str, datatype: str, array: npt.NDArray[Any], view_min: int = 4096
) -> Chunk:
    """An array as raw wire bytes. BYTES are serialized; other types are converted to their
    little-endian wire dtype if needed, then copied when small (``tobytes`` is cheaper than
    building a view below a few KiB) or returned as a zero-copy byte view of the array."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        if datatype != "BF16":
            raise InvalidArgument(f"{kind} '{name}' has unknown datatype {datatype!r}")
        if array.dtype.itemsize != 2:
            raise InvalidArgument(
                f"{kind} '{name}' is BF16 but its array has dtype {array.dtype}; expected a "
                "2-byte bfloat16 array (ml_dtypes.bfloat16)"
            )
    elif array.dtype != dtype:
        array = array.astype(dtype)
    if array.nbytes < view_min or not array.flags.c_contiguous:
        return array.tobytes()
    return array.reshape(-1).view(np.uint8).data


def _has_shm(params: Mapping[str, object]) -> bool:
    return bool(params) and (SHM_REGION in params or SHM_BYTE_SIZE in params or SHM_OFFSET in params)


def _shm_from_params(owner: str, params: dict[str, Any]) -> ShmRef | None:
    """Pop the shared-memory parameters out of ``params`` into a :class:`ShmRef`."""
    region = params.pop(SHM_REGION, None)
    offset = params.pop(SHM_OFFSET, 0)
    size = params.pop(SHM_BYTE_SIZE, None)
    if region is None:
        if size is not None or offset != 0:
            raise InvalidArgument(f"{owner} gives shared-memory offset/byte size but no '{SHM_REGION}'")
        return None
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"{owner}: '{SHM_REGION}' must be a non-empty string")
    if size is None:
        raise InvalidArgument(f"{owner} uses shared-memory region '{region}' but gives no '{SHM_BYTE_SIZE}'")
    if type(size) is not int or size < 0:
        raise InvalidArgument(f"{owner}: '{SHM_BYTE_SIZE}' must be a non-negative integer, got {size!r}")
    if type(offset) is not int or offset < 0:
        raise InvalidArgument(f"{owner}: '{SHM_OFFSET}' must be a non-negative integer, got {offset!r}")
    return ShmRef(region, offset, size)


def _shm_params(shm: ShmRef) -> Params:
    """The wire parameters of a shared-memory reference (offset only when non-zero, as
    tritonclient and Triton write it)."""
    params: Params = {SHM_REGION: shm.region, SHM_BYTE_SIZE: shm.byte_size}
    if shm.offset:
        params[SHM_OFFSET] = shm.offset
    return params


# --------------------------------------------------------------------------------------------
# JSON pieces
# --------------------------------------------------------------------------------------------


def _split_body(
    body: bytes | memoryview, header_length: int | None, what: str
) -> tuple[bytes, memoryview | None]:
    """(JSON header bytes, binary section or None)."""
    if header_length is None:
        return (body if isinstance(body, bytes) else bytes(body)), None
    size = len(body)
    if header_length < 0 or header_length > size:
        raise InvalidArgument(
            f"Inference-Header-Content-Length is {header_length} but the {what} body has "
            f"{size} bytes; expected a JSON header length between 0 and {size}"
        )
    mv = memoryview(body)
    return bytes(mv[:header_length]), mv[header_length:]


def _parse_json(header: bytes, what: str) -> dict[str, Any]:
    try:
        obj = _loads(header)
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"failed to parse the {what} JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"the {what} JSON must be an object, got {type(obj).__name__}")
    return obj


def _params(owner: str, value: object) -> dict[str, Any]:
    """A JSON ``parameters`` object as a fresh dict of scalars."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"'parameters' of {owner} must be a JSON object, got {type(value).__name__}")
    for key, v in value.items():
        if not isinstance(v, _SCALARS):
            raise InvalidArgument(
                f"parameter '{key}' of {owner} must be a boolean, number or string, got {type(v).__name__}"
            )
    return dict(value)


def _name(kind: str, index: int, item: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidArgument(f"{kind}s[{index}] must be a JSON object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidArgument(f"{kind}s[{index}] has no 'name'; expected a string")
    return name, item


def _shape(owner: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{owner} has no 'shape'; expected a list of non-negative integers")
    for d in value:
        if type(d) is not int or d < 0 or d > _MAX_DIM:
            raise InvalidArgument(
                f"{owner} has shape {value}; expected a list of non-negative 64-bit integers"
            )
    return tuple(value)


def _tensor_list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    items = obj.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidArgument(f"'{key}' of the {what} must be a JSON array")
    return items


def _flatten_strings(owner: str, data: list[Any]) -> list[bytes]:
    """Nested JSON lists of strings -> flat list of utf-8 bytes (iterative: depth-safe)."""
    out: list[bytes] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is str:
                out.append(item.encode())
            elif type(item) is list:
                stack.append(iter(item))
                break
            else:
                raise InvalidArgument(
                    f"{owner} is BYTES but its 'data' holds a {type(item).__name__}; expected strings"
                )
        else:
            stack.pop()
    return out


def _array_from_json(owner: str, datatype: str, shape: tuple[int, ...], data: object) -> npt.NDArray[Any]:
    """JSON ``data`` (flat or nested lists) -> array of ``shape``, strictly typed:
    integers for integer types, true/false for BOOL, numbers for floats, strings for BYTES."""
    if not isinstance(data, list):
        raise InvalidArgument(f"{owner} has 'data' of type {type(data).__name__}; expected a JSON array")
    count = element_count(shape)
    if datatype == "BYTES":
        if all(type(s) is str for s in data):
            flat = [s.encode() for s in data]
        else:
            flat = _flatten_strings(owner, data)
        if len(flat) != count:
            raise InvalidArgument(
                f"{owner} has {len(flat)} elements in 'data' but shape {list(shape)} needs {count}"
            )
        arr = np.empty(count, dtype=np.object_)
        arr[:] = flat
        return arr.reshape(shape)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"{owner} is {datatype}, which JSON cannot carry; send it as binary data")
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidArgument(
            f"{owner} has 'data' that is not a rectangular nested list of {datatype} values"
        ) from None
    if arr.size != count:
        raise InvalidArgument(
            f"{owner} has {arr.size} elements in 'data' but shape {list(shape)} needs {count}"
        )
    if count == 0:
        return np.empty(shape, dtype=dtype)
    if dtype.kind in _INT_KINDS and arr.dtype.kind in "fO":
        # numpy infers float64 (or object) for integers beyond int64 mixed with others:
        # look at the Python values themselves (rare, so a per-element check is fine).
        return _big_ints_from_json(owner, datatype, dtype, data, shape)
    if arr.dtype.kind not in _JSON_KINDS[dtype.kind]:
        want = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}[dtype.kind]
        raise InvalidArgument(f"{owner} is {datatype}; expected {want} in 'data', got {_json_kind(arr)}")
    if dtype.kind in _INT_KINDS:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidArgument(f"{owner} has 'data' outside the {datatype} range [{info.min}, {info.max}]")
    return arr.astype(dtype, copy=False).reshape(shape)


def _big_ints_from_json(
    owner: str, datatype: str, dtype: np.dtype[Any], data: list[Any], shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    values = np.array(data, dtype=np.object_).reshape(-1).tolist()
    for v in values:
        if type(v) is not int:
            got = (
                "booleans"
                if type(v) is bool
                else "non-integer numbers"
                if isinstance(v, float)
                else f"a {type(v).__name__}"
            )
            raise InvalidArgument(f"{owner} is {datatype}; expected integers in 'data', got {got}")
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except OverflowError:
        info = np.iinfo(dtype)
        raise InvalidArgument(
            f"{owner} has 'data' outside the {datatype} range [{info.min}, {info.max}]"
        ) from None


def _json_kind(arr: npt.NDArray[Any]) -> str:
    kind = arr.dtype.kind
    if kind == "b":
        return "booleans"
    if kind == "f":
        return "non-integer numbers"
    if kind in "US":
        return "strings"
    if kind in _INT_KINDS:
        return "integers"
    return "values of mixed or out-of-range types"


def _json_from_array(datatype: str, array: npt.NDArray[Any]) -> list[Any] | None:
    """Array -> flat JSON list, or None when JSON cannot carry it (BF16, or BYTES that
    are not UTF-8): such a tensor goes out binary instead."""
    if datatype == "BYTES":
        try:
            return [item.decode() if isinstance(item, bytes) else str(item) for item in array.reshape(-1)]
        except UnicodeDecodeError:
            return None
    if datatype == "BF16":
        return None
    return array.reshape(-1).tolist()


def _check_count(kind: str, name: str, shape: tuple[int, ...], array: npt.NDArray[Any]) -> None:
    if array.size != element_count(shape):
        err = Internal if kind == "output" else InvalidArgument
        raise err(
            f"{kind} '{name}' has {array.size} elements but its shape {list(shape)} needs "
            f"{element_count(shape)}"
        )


# --------------------------------------------------------------------------------------------
# server direction
# --------------------------------------------------------------------------------------------


def decode_infer_request(
    model_name: str,
    model_version: str,
    body: bytes | memoryview,
    header_length: int | None,
) -> InferRequest:
    """Parse a ``POST /v2/models/{name}[/versions/{v}]/infer`` body.

    ``header_length`` is the ``Inference-Header-Content-Length`` header as an int, or None
    when absent (then the whole body is JSON). Request ``parameters`` (``binary_data_output``,
    ``priority``, ``timeout``, ``sequence_id`` ...) are copied as they are into
    ``InferRequest.parameters``; the transport parameters of each tensor (shared memory,
    ``binary_data_size``, ``binary_data``, ``classification``) become fields.
    """
    header, binary = _split_body(body, header_length, "request")
    obj = _parse_json(header, "request")
    req_id = obj.get("id", "")
    if not isinstance(req_id, str):
        raise InvalidArgument(f"request 'id' must be a string, got {type(req_id).__name__}")
    req = InferRequest(
        model_name, model_version, req_id, parameters=_params("the request", obj.get("parameters"))
    )
    pos = 0
    end = 0 if binary is None else len(binary)
    for i, item in enumerate(_tensor_list(obj, "inputs", "request")):
        name, t = _name("input", i, item)
        owner = f"input '{name}'"
        datatype = t.get("datatype")
        if type(datatype) is not str or datatype not in _VALID_DATATYPES:
            datatype = _check_datatype(owner, datatype)
        shape = _shape(owner, t.get("shape"))
        params = _params(owner, t.get("parameters"))
        shm = _shm_from_params(owner, params) if _has_shm(params) else None
        size = params.pop(BINARY_DATA_SIZE, None)
        data = t.get("data")
        array: npt.NDArray[Any] | None = None
        if size is not None:
            if data is not None or shm is not None:
                raise InvalidArgument(
                    f"{owner} has both '{BINARY_DATA_SIZE}' and "
                    f"{'data' if data is not None else 'shared memory'}; expected exactly one "
                    "source of tensor data"
                )
            if type(size) is not int or size < 0:
                raise InvalidArgument(
                    f"{owner}: '{BINARY_DATA_SIZE}' must be a non-negative integer, got {size!r}"
                )
            if binary is None:
                raise InvalidArgument(
                    f"{owner} has '{BINARY_DATA_SIZE}' {size} but the request has no "
                    "Inference-Header-Content-Length header, so it carries no binary data"
                )
            if pos + size > end:
                raise InvalidArgument(
                    f"{owner} has '{BINARY_DATA_SIZE}' {size} but only {end - pos} bytes of "
                    f"binary data remain after the JSON header (binary section: {end} bytes)"
                )
            array = _array_from_raw("input", name, datatype, shape, binary[pos : pos + size])
            pos += size
        elif data is not None:
            if shm is not None:
                raise InvalidArgument(
                    f"{owner} has both 'data' and shared memory; expected exactly one source of tensor data"
                )
            if datatype == "FP16":  # as Triton: JSON numbers cannot carry half precision exactly
                raise InvalidArgument(
                    "receiving FP16 data via JSON is not supported. Please use the binary data "
                    f"format for input {name}"
                )
            array = _array_from_json(owner, datatype, shape, data)
        elif shm is None:
            raise InvalidArgument(
                f"{owner} has no data; expected 'data', a '{BINARY_DATA_SIZE}' parameter "
                "(binary tensor extension) or shared-memory parameters"
            )
        req.inputs.append(InputTensor(name, datatype, shape, array, shm, params))
    if pos != end:
        raise InvalidArgument(
            f"the request has {end - pos} unexpected bytes after the binary data of its inputs: "
            f"the inputs' '{BINARY_DATA_SIZE}' add up to {pos} but the body carries {end} bytes "
            "after the JSON header"
        )
    for i, item in enumerate(_tensor_list(obj, "outputs", "request")):
        name, t = _name("output", i, item)
        owner = f"output '{name}'"
        params = _params(owner, t.get("parameters"))
        req.outputs.append(_requested_output(owner, name, params))
    return req


def _requested_output(owner: str, name: str, params: dict[str, Any]) -> RequestedOutput:
    """Shared with gRPC: lift ``binary_data``, ``classification`` and shm out of params."""
    if not params:
        return RequestedOutput(name)
    binary = params.pop(BINARY_DATA, None)
    if binary is not None and not isinstance(binary, bool):
        raise InvalidArgument(f"{owner}: '{BINARY_DATA}' must be true or false, got {binary!r}")
    classes = params.pop(CLASSIFICATION, 0)
    if type(classes) is not int or classes < 0:
        raise InvalidArgument(f"{owner}: '{CLASSIFICATION}' must be a non-negative integer, got {classes!r}")
    shm = _shm_from_params(owner, params) if _has_shm(params) else None
    if shm is not None and classes:
        raise InvalidArgument(f"{owner}: a classification output cannot be in shared memory")
    return RequestedOutput(name, binary, classes, shm, params)


def encode_infer_response(resp: InferResponse, default_binary: bool) -> tuple[list[Chunk], int | None]:
    """Encode a response body: ``(chunks, header_length)``.

    Each output goes binary if ``OutputTensor.binary_data`` is True, as JSON if False, else
    as ``default_binary`` says (the edge passes the request's ``binary_data_output``).
    ``header_length`` is None when no output is binary: the body is then pure JSON and the
    edge sends no ``Inference-Header-Content-Length``. Outputs written to shared memory carry
    no data and no parameters, as Triton answers (perf_analyzer relies on that). BYTES that are
    not UTF-8 and BF16 cannot be JSON; they go binary, which clients handle per output.
    """
    outputs: list[dict[str, Any]] = []
    chunks: list[Chunk] = [b""]
    for o in resp.outputs:
        t: dict[str, Any] = {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        params: dict[str, ParamValue] = dict(o.parameters)
        if o.shm is not None:
            pass  # written to the client's region: name, datatype and shape only (as Triton)
        elif o.data is None:
            raise Internal(f"output '{o.name}' has neither data nor shared memory")
        else:
            _check_count("output", o.name, o.shape, o.data)
            binary = default_binary if o.binary_data is None else o.binary_data
            data = None if binary else _json_from_array(o.datatype, o.data)
            if data is None:
                raw = _raw_from_array("output", o.name, o.datatype, o.data)
                params[BINARY_DATA_SIZE] = len(raw)
                chunks.append(raw)
            else:
                t["data"] = data
        if params:
            t["parameters"] = params
        outputs.append(t)
    head: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.id:
        head["id"] = resp.id
    if resp.parameters:
        head["parameters"] = resp.parameters
    head["outputs"] = outputs
    header = _dumps(head).encode()
    if len(chunks) == 1:
        return [header], None
    chunks[0] = header
    return chunks, len(header)


# --------------------------------------------------------------------------------------------
# client direction
# --------------------------------------------------------------------------------------------


def encode_infer_request(
    req: InferRequest, binary_inputs: bool = True, binary_outputs: bool = True
) -> tuple[list[Chunk], int | None]:
    """Encode a request body: ``(chunks, header_length)``, None when pure JSON.

    Inputs go binary when ``binary_inputs`` (and always for BF16 and non-UTF-8 BYTES);
    shm inputs carry only their region parameters. Each requested output asks for binary
    data per ``RequestedOutput.binary_data``, defaulting to ``binary_outputs``; with no
    requested outputs, ``binary_data_output`` is set unless the request's parameters
    already say.
    """
    inputs: list[dict[str, Any]] = []
    chunks: list[Chunk] = [b""]
    for t in req.inputs:
        d: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "datatype": t.datatype}
        params: dict[str, ParamValue] = dict(t.parameters)
        if t.shm is not None:
            params.update(_shm_params(t.shm))
        elif t.data is None:
            raise InvalidArgument(f"input '{t.name}' has neither data nor shared memory")
        else:
            _check_count("input", t.name, t.shape, t.data)
            # FP16 inputs go binary: servers (Triton, sonic) refuse FP16 as JSON numbers
            json_ok = not binary_inputs and t.datatype != "FP16"
            data = _json_from_array(t.datatype, t.data) if json_ok else None
            if data is None:
                raw = _raw_from_array("input", t.name, t.datatype, t.data)
                params[BINARY_DATA_SIZE] = len(raw)
                chunks.append(raw)
            else:
                d["data"] = data
        if params:
            d["parameters"] = params
        inputs.append(d)
    head: dict[str, Any] = {}
    if req.id:
        head["id"] = req.id
    head["inputs"] = inputs
    if req.outputs:
        outputs: list[dict[str, Any]] = []
        for o in req.outputs:
            oparams: dict[str, ParamValue] = dict(o.parameters)
            if o.shm is not None:
                oparams.update(_shm_params(o.shm))
            else:
                oparams[BINARY_DATA] = binary_outputs if o.binary_data is None else o.binary_data
            if o.classification:
                oparams[CLASSIFICATION] = o.classification
            outputs.append({"name": o.name, "parameters": oparams})
        head["outputs"] = outputs
    rparams = dict(req.parameters)
    if not req.outputs and binary_outputs:
        rparams.setdefault("binary_data_output", True)
    if rparams:
        head["parameters"] = rparams
    header = _dumps(head).encode()
    if len(chunks) == 1:
        return [header], None
    chunks[0] = header
    return chunks, len(header)


def decode_infer_response(
    body: bytes | memoryview, header_length: int | None, shm_outputs: Mapping[str, ShmRef] | None = None
) -> InferResponse:
    """Parse an infer response body (the client side of :func:`encode_infer_response`).

    Binary outputs are zero-copy views into ``body``; ``OutputTensor.binary_data`` records
    how each output came (True binary, False JSON, None shared memory). Servers answer an
    output written to shared memory with its name, datatype and shape only, so the client
    says which outputs it placed there (``shm_outputs``: name -> the slice it asked for).
    """
    shm_outputs = shm_outputs or {}
    header, binary = _split_body(body, header_length, "response")
    obj = _parse_json(header, "response")
    model_name = obj.get("model_name", "")
    model_version = obj.get("model_version", "")
    resp_id = obj.get("id", "")
    if not isinstance(model_name, str) or not isinstance(model_version, str):
        raise InvalidArgument("response 'model_name' and 'model_version' must be strings")
    if not isinstance(resp_id, str):
        raise InvalidArgument(f"response 'id' must be a string, got {type(resp_id).__name__}")
    params = _params("the response", obj.get("parameters"))
    resp = InferResponse(model_name, model_version, resp_id, parameters=params)
    pos = 0
    end = 0 if binary is None else len(binary)
    for i, item in enumerate(_tensor_list(obj, "outputs", "response")):
        name, t = _name("output", i, item)
        owner = f"output '{name}'"
        datatype = _check_datatype(owner, t.get("datatype"))
        shape = _shape(owner, t.get("shape"))
        params = _params(owner, t.get("parameters"))
        shm = _shm_from_params(owner, params) if _has_shm(params) else None
        size = params.pop(BINARY_DATA_SIZE, None)
        if shm is None and size is None and "data" not in t:
            shm = shm_outputs.get(name)
        out = OutputTensor(name, datatype, shape, shm=shm, parameters=params)
        if size is not None:
            if type(size) is not int or size < 0:
                raise InvalidArgument(
                    f"{owner}: '{BINARY_DATA_SIZE}' must be a non-negative integer, got {size!r}"
                )
            if binary is None or pos + size > end:
                raise InvalidArgument(
                    f"{owner} has '{BINARY_DATA_SIZE}' {size} but only {end - pos} bytes of "
                    "binary data remain after the JSON header"
                )
            out.data = _array_from_raw("output", name, datatype, shape, binary[pos : pos + size])
            out.binary_data = True
            pos += size
        elif "data" in t:
            out.data = _array_from_json(owner, datatype, shape, t["data"])
            out.binary_data = False
        elif shm is None:
            raise InvalidArgument(
                f"{owner} has no data; expected 'data', '{BINARY_DATA_SIZE}' or shared memory"
            )
        resp.outputs.append(out)
    if pos != end:
        raise InvalidArgument(
            f"the response has {end - pos} unexpected bytes after the binary data of its "
            f"outputs (their '{BINARY_DATA_SIZE}' add up to {pos})"
        )
    return resp


def binary_default(parameters: Mapping[str, ParamValue]) -> bool:
    """The ``default_binary`` for :func:`encode_infer_response`: the request's
    ``binary_data_output`` parameter (Triton's default is JSON)."""
    return parameters.get("binary_data_output") is True
