"""Inputs -> request, checked against the model's metadata before anything is sent.

Rectangular batching: every input of a batched model (``max_batch_size > 0``) carries the
batch as its outer dimension, the same for all inputs; a batch of size 0 is not sent at all.
Ragged batching: a list of entries whose shapes differ, each sent as its own request; an entry
whose arrays lack the batch dimension gets one of size 1 (and its outputs lose it again).

Errors say which input, what it was, what the model expects, and the nearest valid names;
they are :class:`~sonic.protocol.errors.InvalidArgument`, raised before any I/O, and never
retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.client._types import ModelInfo, TensorInfo
from sonic.protocol.datatypes import element_size, from_numpy, numpy_dtype
from sonic.protocol.errors import InvalidArgument, SonicError, nearest
from sonic.protocol.types import InputTensor

__all__ = ["Checker", "Prepared", "check_outputs", "prepare"]


@dataclass(slots=True)
class Prepared:
    """A checked request body: tensors, batch size (None for a model without batching), and
    whether a batch dimension was added (a ragged entry given without one)."""

    tensors: list[InputTensor]
    batch: int | None
    added_batch_dim: bool = False


#: numpy kinds of plain Python values that may take each datatype's dtype.
_KINDS = {
    "BOOL": "b",
    **{f"INT{n}": "iu" for n in (8, 16, 32, 64)},
    **{f"UINT{n}": "iu" for n in (8, 16, 32, 64)},
    **{f"FP{n}": "fiu" for n in (16, 32, 64)},
}


def _dims(dims: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _as_array(name: str, value: Any, expected: TensorInfo | None) -> npt.NDArray[Any]:
    if type(value) is np.ndarray and value.dtype.kind not in "USO":
        return value
    if isinstance(value, np.ndarray):
        arr = value
    else:
        # a list or scalar: take the model's dtype when the values are of its kind and fit
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(
                f"input '{name}' is a {type(value).__name__} that is not a rectangular array "
                f"({exc}); expected a numpy array"
            ) from None
        kinds = _KINDS.get(expected.datatype, "") if expected is not None else ""
        if expected is not None and arr.dtype.kind in kinds:
            cast = arr.astype(numpy_dtype(expected.datatype))
            if arr.dtype.kind == "f" or np.array_equal(cast, arr):
                arr = cast
    if arr.dtype.kind in "US":
        # BYTES as the wire carries them: an object array of bytes
        flat = [x.encode() if isinstance(x, str) else bytes(x) for x in arr.reshape(-1).tolist()]
        obj = np.empty(len(flat), dtype=np.object_)
        obj[:] = flat
        arr = obj.reshape(arr.shape)
    return arr


_DATATYPES: dict[np.dtype[Any], str] = {}


def _shape_mismatch(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(shape) != len(want) or any(w not in (-1, s) for s, w in zip(shape, want, strict=True))


def _datatype(name: str, arr: npt.NDArray[Any]) -> str:
    dt = _DATATYPES.get(arr.dtype)
    if dt is not None:
        return dt
    try:
        dt = _DATATYPES[arr.dtype] = from_numpy(arr.dtype)
        return dt
    except SonicError:
        raise InvalidArgument(
            f"input '{name}' has numpy dtype {arr.dtype}, which has no v2 datatype; expected one "
            "of bool, (u)int8-64, float16/32/64, or bytes/str"
        ) from None


def prepare(
    info: ModelInfo | None,
    inputs: Mapping[str, Any],
    *,
    validate: bool = True,
    ragged: bool = False,
) -> Prepared:
    """Check ``inputs`` (name -> array) against ``info`` and build the request tensors."""
    if type(inputs) is not dict and not isinstance(inputs, Mapping):
        raise InvalidArgument(
            f"inputs must be a mapping of input name to array, got {type(inputs).__name__}"
            + ("" if ragged else "; a list of such mappings is a ragged batch")
        )
    if info is None or not validate:
        tensors = []
        for name, value in inputs.items():
            arr = _as_array(str(name), value, None)
            tensors.append(
                InputTensor(str(name), _datatype(str(name), arr), tuple(arr.shape), arr, None, NO_PARAMS)
            )
        batch = None
        if info is not None and info.batched and tensors:
            batch = tensors[0].shape[0] if tensors[0].shape else None
        return Prepared(tensors, batch)
    return _checked(info, inputs, ragged)


#: (name, dtype, shape, name, dtype, shape, ...) of the inputs of a request
_Signature = tuple[Any, ...]
#: The parameters of every tensor the client builds: shared, never written (the codecs and the
#: data plane only read them), so that a request does not allocate a dict per tensor.
NO_PARAMS: dict[str, Any] = {}


class Checker:
    """:func:`prepare` with a memory: a job sends the same names, dtypes and shapes over and
    over, so a signature that passed the checks once passes them again without the work."""

    _LIMIT = 1024

    def __init__(self, info: ModelInfo | None, validate: bool = True) -> None:
        self.info = info
        self.validate = validate
        self._seen: dict[_Signature, tuple[tuple[str, ...], int | None]] = {}

    def prepare(self, inputs: Mapping[str, Any], ragged: bool = False) -> Prepared:
        info = self.info
        if type(inputs) is dict and not ragged and info is not None and self.validate:
            key: list[Any] = []
            for name, value in inputs.items():
                if type(value) is not np.ndarray or value.dtype.kind in "USO":
                    break
                key += (name, value.dtype, value.shape)
            else:
                sig = tuple(key)
                hit = self._seen.get(sig)
                if hit is not None:
                    datatypes, batch = hit
                    tensors = [
                        InputTensor(name, dt, value.shape, value, None, NO_PARAMS)
                        for (name, value), dt in zip(inputs.items(), datatypes, strict=True)
                    ]
                    return Prepared(tensors, batch)
                prepared = _checked(info, inputs, ragged)
                if len(self._seen) >= self._LIMIT:
                    self._seen.clear()
                self._seen[sig] = (tuple(t.datatype for t in prepared.tensors), prepared.batch)
                return prepared
        return prepare(info, inputs, validate=self.validate, ragged=ragged)


def _checked(info: ModelInfo, inputs: Mapping[str, Any], ragged: bool) -> Prepared:
    model = info.name
    batched = info.batched
    tensors: list[InputTensor] = []
    batch: int | None = None
    batch_from = ""
    added: bool | None = None
    for raw_name, value in inputs.items():
        name = str(raw_name)
        spec = info.inputs.get(name)
        if spec is None:
            raise InvalidArgument(
                f"model '{model}' has no input '{name}'" + nearest(name, info.inputs)
                + f"; its inputs are {', '.join(t.describe(batched) for t in info.inputs.values())}"
            )
        arr = _as_array(name, value, spec)
        datatype = _datatype(name, arr)
        if datatype != spec.datatype:
            hint = ""
            if spec.datatype != "BYTES" and datatype != "BYTES":
                hint = f": convert it with .astype(numpy.{numpy_dtype(spec.datatype).name})"
            raise InvalidArgument(
                f"input '{name}' of model '{model}' is {datatype} (numpy {arr.dtype}); expected "
                f"{spec.datatype}{hint}"
            )
        shape = tuple(arr.shape)
        dims = spec.dims
        if batched and ragged and added is not False and len(shape) == len(dims):
            # a ragged entry without its batch dimension: a batch of one
            if added is None:
                added = True
            arr = arr.reshape((1, *shape))
            shape = (1, *shape)
        elif batched and ragged:
            if added:
                raise InvalidArgument(
                    f"input '{name}' of the ragged entry for model '{model}' has shape "
                    f"{_dims(shape)} with a batch dimension while another input has none; "
                    "give every input of an entry the same form"
                )
            added = False
        want = (-1, *dims) if batched else dims
        # the common case first: every dimension fixed and matching
        if not ((shape[1:] if batched else shape) == dims and (shape or not batched)) and _shape_mismatch(
            shape, want
        ):
            lead = " (batch dimension first)" if batched else ""
            raise InvalidArgument(
                f"input '{name}' of model '{model}' has shape {_dims(shape)}; expected "
                f"{_dims(want)}{lead}"
            )
        if batched:
            b = shape[0]
            if batch is None:
                batch, batch_from = b, name
            elif b != batch:
                raise InvalidArgument(
                    f"input '{name}' of model '{model}' has batch size {b} but input "
                    f"'{batch_from}' has {batch}; every input of a request shares the outer "
                    "(batch) dimension"
                )
            if b > info.max_batch_size:
                raise InvalidArgument(
                    f"input '{name}' has batch size {b}, more than the max_batch_size "
                    f"{info.max_batch_size} of model '{model}'; split it into batches of at "
                    f"most {info.max_batch_size} (or send a ragged batch: a list of entries)"
                )
        tensors.append(InputTensor(name, datatype, shape, arr, None, NO_PARAMS))
    if len(tensors) != len(info.inputs):
        given = {t.name for t in tensors}
        missing = [n for n, t in info.inputs.items() if n not in given and not t.optional]
        if missing:
            raise InvalidArgument(
                f"model '{model}' needs input(s) {', '.join(repr(m) for m in missing)}, which "
                f"the request lacks; its inputs are "
                f"{', '.join(t.describe(batched) for t in info.inputs.values())}"
            )
    return Prepared(tensors, batch if batched else None, bool(added))


def check_outputs(info: ModelInfo | None, names: Sequence[str]) -> None:
    if info is None:
        return
    for name in names:
        if name not in info.outputs:
            raise InvalidArgument(
                f"model '{info.name}' has no output '{name}'" + nearest(name, info.outputs)
                + f"; its outputs are {', '.join(info.outputs)}"
            )


def output_nbytes(spec: TensorInfo, batch: int | None) -> int | None:
    """Bytes of an output of ``batch`` rows, or None when not known in advance (variable
    dims, BYTES)."""
    if spec.datatype in ("BYTES", "BF16") or any(d < 0 for d in spec.dims):
        return None
    n = element_size(spec.datatype) * (batch if batch is not None else 1)
    for d in spec.dims:
        n *= d
    return n
