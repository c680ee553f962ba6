"""Input data for the load generator: random, zeros, or read from a file.

Where it sits: ``sonic bench`` reads the model's metadata once, then this module turns it and
the ``--input-data``/``--shape``/``-b`` options into a short list of ready-made *entries*
(name -> array with the batch dimension), which every worker process cycles through, one
entry per request, as perf_analyzer does. Nothing here does I/O except reading the data file.

File formats (``--input-data FILE``):

- perf_analyzer's JSON: ``{"data": [{"INPUT0": [1, 2, ...], "INPUT1": {"content": [...],
  "shape": [2, 8]}}, ...]}``; each element of ``data`` is one sample (no batch dimension; a
  request of batch ``b`` takes ``b`` consecutive samples, wrapping around). ``{"b64": ...}``
  values are raw little-endian bytes, base64-encoded.
- ``.npz``: one array per input; an array with one dimension more than the model's input is a
  stack of samples, otherwise it is one sample.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.client import ModelInfo, TensorInfo
from sonic.protocol.datatypes import numpy_dtype
from sonic.protocol.errors import InvalidArgument, nearest

__all__ = ["Entry", "make_entries", "parse_shapes"]

#: One request's inputs: name -> array (batch dimension first for batching models).
Entry = dict[str, npt.NDArray[Any]]

#: perf_analyzer's default length of random strings for BYTES inputs.
STRING_LENGTH = 128


def parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["INPUT0:1,3,224", ...]`` (perf_analyzer's ``--shape``) -> name -> dims."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise InvalidArgument(f"--shape {item!r}: expected NAME:d1,d2,... (e.g. INPUT0:16)")
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise InvalidArgument(f"--shape {item!r}: dimensions must be integers") from None
        if any(d < 0 for d in shape):
            raise InvalidArgument(f"--shape {item!r}: dimensions must be >= 0")
        shapes[name] = shape
    return shapes


def _sample_dims(t: TensorInfo, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    if t.name in shapes:
        given = shapes[t.name]
        if len(given) != len(t.dims) or any(d >= 0 and d != g for d, g in zip(t.dims, given, strict=True)):
            raise InvalidArgument(
                f"--shape {t.name}:{','.join(map(str, given))} does not fit the model's input "
                f"{t.describe(False)}"
            )
        return given
    if any(d < 0 for d in t.dims):
        raise InvalidArgument(
            f"input {t.describe(False)} has variable dimensions: give them with --shape "
            f"{t.name}:{','.join('1' if d < 0 else str(d) for d in t.dims)} (or in the data file)"
        )
    return t.dims


def _random(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
        n = int(np.prod(shape, dtype=np.int64))
        chars = rng.choice(alphabet, size=(n, STRING_LENGTH))
        return np.array([row.tobytes() for row in chars], dtype=np.object_).reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    dtype = numpy_dtype(datatype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    # small non-negative integers: valid as indices, token ids, counts
    return rng.integers(0, 100, size=shape).astype(dtype)


def _zero(datatype: str, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        return np.full(shape, b"", dtype=np.object_)
    return np.zeros(shape, dtype=numpy_dtype(datatype))


def _json_value(t: TensorInfo, value: Any, where: str) -> npt.NDArray[Any]:
    shape: tuple[int, ...] | None = None
    if isinstance(value, Mapping):
        if "shape" in value:
            shape = tuple(int(d) for d in value["shape"])
        if "b64" in value:
            raw = base64.b64decode(str(value["b64"]))
            if t.datatype == "BYTES":
                raise InvalidArgument(f"{where}: b64 data is not supported for BYTES inputs")
            arr = np.frombuffer(raw, dtype=numpy_dtype(t.datatype)).copy()
            return arr.reshape(shape) if shape is not None else arr
        if "content" not in value:
            raise InvalidArgument(f"{where}: expected a list, or an object with 'content' or 'b64'")
        value = value["content"]
    if t.datatype == "BYTES":
        flat = [
            v.encode() if isinstance(v, str) else bytes(v) for v in np.ravel(np.asarray(value, dtype=object))
        ]
        arr = np.array(flat, dtype=np.object_)
    else:
        arr = np.asarray(value, dtype=numpy_dtype(t.datatype))
    if shape is not None:
        arr = arr.reshape(shape)
    return arr


def _fit(
    t: TensorInfo, arr: npt.NDArray[Any], shapes: Mapping[str, tuple[int, ...]], where: str
) -> npt.NDArray[Any]:
    """A sample of ``t`` from ``arr``: reshaped to the model's dims when they are fixed (the
    JSON format gives flat lists)."""
    if any(d < 0 for d in t.dims) and t.name not in shapes:
        if arr.ndim != len(t.dims):
            raise InvalidArgument(
                f"{where}: input {t.describe(False)} has variable dimensions; give 'shape' with its "
                f"'content' in the data file, or --shape"
            )
        return arr
    dims = _sample_dims(t, shapes)
    if int(arr.size) != int(np.prod(dims, dtype=np.int64)):
        raise InvalidArgument(
            f"{where}: input '{t.name}' has {arr.size} elements; the model expects shape "
            f"{list(dims)} ({int(np.prod(dims, dtype=np.int64))} elements)"
        )
    return arr.reshape(dims)


def _samples_from_file(
    path: Path, info: ModelInfo, shapes: Mapping[str, tuple[int, ...]]
) -> list[dict[str, npt.NDArray[Any]]]:
    if not path.is_file():
        raise InvalidArgument(
            f"--input-data {path}: no such file; expected 'random', 'zero', a JSON file in "
            "perf_analyzer's format or an .npz file"
        )
    wanted = {n: t for n, t in info.inputs.items() if not t.optional}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        missing = [n for n in wanted if n not in arrays]
        if missing:
            raise InvalidArgument(
                f"{path}: no array for input '{missing[0]}'" + nearest(missing[0], list(arrays))
            )
        ours = {n: a for n, a in arrays.items() if n in info.inputs}
        stacked = {n for n, a in ours.items() if a.ndim == len(info.inputs[n].dims) + 1}
        count = min((len(ours[n]) for n in stacked), default=1)
        samples = []
        for i in range(count):
            sample = {}
            for n, arr in ours.items():
                t = info.inputs[n]
                a = arr[i] if n in stacked else arr
                if t.datatype != "BYTES":
                    a = a.astype(numpy_dtype(t.datatype), copy=False)
                sample[n] = _fit(t, a, shapes, str(path))
            samples.append(sample)
        return samples
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"--input-data {path}: not readable JSON: {exc}") from None
    data = doc.get("data") if isinstance(doc, Mapping) else None
    if not isinstance(data, list) or not data:
        raise InvalidArgument(
            f'--input-data {path}: expected perf_analyzer\'s format {{"data": [{{"INPUT": [...]}}, ...]}}'
        )
    samples = []
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"{path}: data[{i}] is not an object of input name -> values")
        for n in entry:
            if n not in info.inputs:
                raise InvalidArgument(
                    f"{path}: data[{i}] names input '{n}', which model '{info.name}' does not have"
                    + nearest(str(n), list(info.inputs))
                )
        missing = [n for n in wanted if n not in entry]
        if missing:
            raise InvalidArgument(f"{path}: data[{i}] has no value for input '{missing[0]}'")
        samples.append(
            {
                n: _fit(
                    info.inputs[n],
                    _json_value(info.inputs[n], v, f"{path}: data[{i}].{n}"),
                    shapes,
                    f"{path}: data[{i}]",
                )
                for n, v in entry.items()
            }
        )
    return samples


def make_entries(
    info: ModelInfo,
    *,
    batch: int = 1,
    data: str = "random",
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    count: int = 4,
) -> list[Entry]:
    """The inputs of the requests: ``count`` entries for random data (so that no two
    consecutive requests are identical), one for zeros, and one per group of ``batch``
    samples for a file. Batching models get the batch dimension first; a model without
    batching (max_batch_size 0) only takes ``batch`` 1."""
    shapes = dict(shapes or {})
    for name in shapes:
        if name not in info.inputs:
            raise InvalidArgument(
                f"--shape names input '{name}', which model '{info.name}' does not have"
                + nearest(name, list(info.inputs))
            )
    if batch < 1:
        raise InvalidArgument(f"batch size must be >= 1, got {batch}")
    if not info.batched and batch != 1:
        raise InvalidArgument(f"model '{info.name}' does not support batching (max_batch_size 0): use -b 1")
    if info.batched and batch > info.max_batch_size:
        raise InvalidArgument(
            f"batch size {batch} is larger than model '{info.name}''s max_batch_size {info.max_batch_size}"
        )
    inputs = [t for t in info.inputs.values() if not t.optional]

    def batched(samples: list[dict[str, npt.NDArray[Any]]]) -> Entry:
        if not info.batched:
            return dict(samples[0])
        return {n: np.stack([s[n] for s in samples]) for n in samples[0]}

    if data in ("random", "zero"):
        rng = np.random.default_rng(seed)
        n_entries = count if data == "random" else 1
        entries = []
        for _ in range(n_entries):
            entry: Entry = {}
            for t in inputs:
                dims = _sample_dims(t, shapes)
                full = (batch, *dims) if info.batched else dims
                entry[t.name] = (
                    _random(t.datatype, full, rng) if data == "random" else _zero(t.datatype, full)
                )
            entries.append(entry)
        return entries
    samples = _samples_from_file(Path(data), info, shapes)
    if not info.batched:
        return [batched([s]) for s in samples]
    groups = max(1, len(samples) // batch) if len(samples) >= batch else 1
    out = []
    for g in range(groups):
        chunk = [samples[(g * batch + k) % len(samples)] for k in range(batch)]
        shapes_seen = {n: {s[n].shape for s in chunk} for n in chunk[0]}
        ragged = [n for n, seen in shapes_seen.items() if len(seen) > 1]
        if ragged:
            raise InvalidArgument(
                f"{data}: the samples of one batch have different shapes for input '{ragged[0]}'; "
                "use -b 1 for ragged data"
            )
        out.append(batched(chunk))
    return out


def entry_nbytes(entry: Entry) -> int:
    """Bytes of the tensors of one request (BYTES counted with their 4-byte length prefixes)."""
    total = 0
    for arr in entry.values():
        if arr.dtype == np.object_:
            total += sum(4 + len(v) for v in arr.reshape(-1))
        else:
            total += int(arr.nbytes)
    return total
