"""v2 datatypes: names, numpy dtypes, config enum names, element sizes and BYTES framing.

The v2 protocol names datatypes ``BOOL, UINT8 ... FP64, BYTES, BF16``; model configs name them
``TYPE_BOOL ... TYPE_STRING``. Fixed-size types travel as little-endian raw bytes; BYTES
elements travel as a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.errors import InvalidArgument, nearest

# v2 name -> numpy dtype (little-endian); BYTES is an object array of bytes.
_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
DATATYPES: tuple[str, ...] = (*_NUMPY, "BF16")

_CONFIG_TO_V2 = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
    "TYPE_BF16": "BF16",
}
_V2_TO_CONFIG = {v: k for k, v in _CONFIG_TO_V2.items()}


def check_datatype(datatype: str) -> str:
    if datatype not in DATATYPES:
        raise InvalidArgument(
            f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
            + nearest(datatype, DATATYPES)
        )
    return datatype


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a v2 datatype (BF16 has none in numpy)."""
    try:
        return _NUMPY[datatype]
    except KeyError:
        check_datatype(datatype)
        raise InvalidArgument(f"datatype {datatype} has no numpy equivalent") from None


def from_numpy(dtype: np.dtype[Any]) -> str:
    """The v2 datatype for a numpy dtype."""
    if dtype.kind in "OSU":
        return "BYTES"
    for name, dt in _NUMPY.items():
        if dt == dtype.newbyteorder("<") and name != "BYTES":
            return name
    raise InvalidArgument(f"numpy dtype {dtype} has no v2 datatype")


def config_to_v2(config_type: str) -> str:
    try:
        return _CONFIG_TO_V2[config_type]
    except KeyError:
        raise InvalidArgument(
            f"unknown model-config data type {config_type!r}" + nearest(config_type, _CONFIG_TO_V2)
        ) from None


def v2_to_config(datatype: str) -> str:
    return _V2_TO_CONFIG[check_datatype(datatype)]


def element_size(datatype: str) -> int:
    """Bytes per element for fixed-size types; 0 for BYTES (variable)."""
    if datatype == "BYTES":
        return 0
    if datatype == "BF16":
        return 2
    return numpy_dtype(datatype).itemsize


def element_count(shape: tuple[int, ...] | list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_shape(name: str, shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    for d in shape:
        if d < 0:
            raise InvalidArgument(
                f"input '{name}' has negative dimension in shape {list(shape)}; "
                "a request must give concrete sizes"
            )
    return tuple(shape)


def serialize_bytes(array: npt.NDArray[Any]) -> bytes:
    """BYTES tensor -> length-prefixed wire bytes (row-major order)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        b = (
            item
            if isinstance(item, bytes)
            else str(item).encode()
            if not isinstance(item, (bytearray, memoryview, np.bytes_))
            else bytes(item)
        )
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(
    name: str,
    buf: bytes | bytearray | memoryview,
    shape: tuple[int, ...],
    *,
    kind: str = "input",
) -> npt.NDArray[Any]:
    """Length-prefixed wire bytes -> BYTES object array of ``shape``.

    ``kind`` ("input" or "output") names the tensor's role in error messages."""
    mv = memoryview(buf)
    count = element_count(shape)
    end = len(mv)
    if count * 4 > end:
        # Checked before allocating: a huge declared shape must not exhaust memory.
        raise InvalidArgument(
            f"{kind} '{name}': {end} bytes of BYTES data cannot hold the {count} elements of "
            f"shape {list(shape)}; each element needs at least a 4-byte length prefix"
        )
    out = np.empty(count, dtype=np.object_)
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise InvalidArgument(
                f"{kind} '{name}': BYTES data ends after {i} of {count} elements "
                f"(shape {list(shape)}); each element needs a 4-byte length prefix"
            )
        (n,) = struct.unpack_from("<I", mv, pos)
        pos += 4
        if pos + n > end:
            raise InvalidArgument(
                f"{kind} '{name}': BYTES element {i} declares {n} bytes but only {end - pos} remain"
            )
        out[i] = bytes(mv[pos : pos + n])
        pos += n
    if pos != end:
        raise InvalidArgument(
            f"{kind} '{name}': {end - pos} unexpected trailing bytes after {count} BYTES elements "
            f"(shape {list(shape)})"
        )
    return out.reshape(shape)


def array_from_buffer(
    name: str,
    datatype: str,
    shape: tuple[int, ...],
    buf: bytes | bytearray | memoryview,
    *,
    kind: str = "input",
) -> npt.NDArray[Any]:
    """Decode raw little-endian tensor bytes, checking the byte size against the shape.

    ``kind`` ("input" or "output") names the tensor's role in error messages."""
    if datatype == "BYTES":
        return deserialize_bytes(name, buf, shape, kind=kind)
    if datatype == "BF16":
        raise InvalidArgument(f"{kind} '{name}': BF16 tensors are not supported by this server")
    dtype = numpy_dtype(datatype)
    expected = element_count(shape) * dtype.itemsize
    if len(buf) != expected:
        raise InvalidArgument(
            f"{kind} '{name}': got {len(buf)} bytes of {datatype} data, expected {expected} "
            f"for shape {list(shape)}"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def array_to_bytes(datatype: str, array: npt.NDArray[Any]) -> bytes:
    """Encode an array as v2 raw bytes."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    dtype = numpy_dtype(datatype)
    if array.dtype != dtype:
        array = array.astype(dtype)
    return np.ascontiguousarray(array).tobytes()
