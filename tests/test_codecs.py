"""The wire codecs: HTTP/REST (JSON + binary tensors), gRPC messages, protobuf <-> JSON.

NVIDIA's tritonclient is the oracle: the bodies and messages it builds must decode, and what
we encode must read back through its ``InferResult``. Round trips over every datatype and a
range of shapes are checked with hypothesis; every malformed input must raise
InvalidArgument with a message that says what was wrong.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import _utils as grpc_utils
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from sonic.protocol import grpc_codec, http_codec, json_pb
from sonic.protocol.errors import Code, Internal, InvalidArgument
from sonic.protocol.types import (
    InferRequest,
    InferResponse,
    InputTensor,
    OutputTensor,
    Params,
    RequestedOutput,
    ShmRef,
)

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
ALL = [*NUMERIC, "BYTES"]


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> npt.NDArray[Any]:
    """Deterministic test data exercising each type's range."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if datatype == "BYTES":
        items = [f"é{i}".encode() if i % 2 else bytes([i % 256]) * (i % 4) for i in range(n)]
        arr = np.empty(n, dtype=np.object_)
        arr[:] = items
        return arr.reshape(shape)
    dtype: np.dtype[Any] = np.dtype(NUMERIC[datatype])
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True).reshape(shape)
    return (rng.standard_normal(n) * 100).astype(dtype).reshape(shape)


def utf8_sample(shape: tuple[int, ...]) -> npt.NDArray[Any]:
    arr = np.empty(int(np.prod(shape)), dtype=np.object_)
    arr[:] = [f"s{i}é".encode() for i in range(arr.size)]
    return arr.reshape(shape)


def assert_same(got: npt.NDArray[Any] | None, want: npt.NDArray[Any]) -> None:
    assert got is not None
    assert got.shape == want.shape
    if want.dtype == np.object_:
        assert got.dtype == np.object_
        assert [bytes(x) for x in got.reshape(-1)] == [bytes(x) for x in want.reshape(-1)]
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def join(chunks: list[bytes | memoryview]) -> bytes:
    return b"".join(chunks)


def http_body(header: dict[str, Any], *binary: bytes) -> tuple[bytes, int | None]:
    head = json.dumps(header).encode()
    if not binary:
        return head, None
    return head + b"".join(binary), len(head)


def bad_http(header: dict[str, Any] | bytes, *binary: bytes, header_length: Any = "auto") -> str:
    """Decode a malformed request; return the InvalidArgument message."""
    if isinstance(header, bytes):
        body, hl = header + b"".join(binary), (len(header) if binary else None)
    else:
        body, hl = http_body(header, *binary)
    if header_length != "auto":
        hl = header_length
    with pytest.raises(InvalidArgument) as e:
        http_codec.decode_infer_request("m", "", body, hl)
    assert e.value.code is Code.INVALID_ARG
    return e.value.message


# ============================================================================================
# HTTP: tritonclient as oracle
# ============================================================================================


@pytest.mark.parametrize("datatype", ALL)
@pytest.mark.parametrize("binary", [True, False])
def test_http_decodes_tritonclient_requests(datatype: str, binary: bool) -> None:
    shape = (2, 3)
    x = utf8_sample(shape) if datatype == "BYTES" and not binary else sample(datatype, shape)
    inp = thttp.InferInput("IN", list(shape), datatype).set_data_from_numpy(x, binary_data=binary)
    const = thttp.InferInput("C", [1], "INT32").set_data_from_numpy(
        np.array([7], np.int32), binary_data=not binary
    )
    outs = [
        thttp.InferRequestedOutput("OUT", binary_data=binary),
        thttp.InferRequestedOutput("CLS", binary_data=False, class_count=3),
    ]
    body, hl = thttp.InferenceServerClient.generate_request_body(
        [inp, const],
        outputs=outs,
        request_id="req-1",
        priority=2,
        timeout=1000,
        parameters={"custom": "v", "ratio": 0.5},
    )
    if datatype == "FP16" and not binary:  # Triton refuses FP16 as JSON numbers; so does sonic
        with pytest.raises(InvalidArgument, match="FP16 data via JSON is not supported"):
            http_codec.decode_infer_request("model", "3", body, hl)
        return
    req = http_codec.decode_infer_request("model", "3", body, hl)
    assert (req.model_name, req.model_version, req.id) == ("model", "3", "req-1")
    assert req.parameters == {"priority": 2, "timeout": 1000, "custom": "v", "ratio": 0.5}
    assert [t.name for t in req.inputs] == ["IN", "C"]
    assert req.inputs[0].datatype == datatype and req.inputs[0].shape == shape
    assert_same(req.inputs[0].data, x)
    assert_same(req.inputs[1].data, np.array([7], np.int32))
    assert req.inputs[0].parameters == {} and req.inputs[0].shm is None
    assert req.outputs == [
        RequestedOutput("OUT", binary_data=binary),
        RequestedOutput("CLS", binary_data=False, classification=3),
    ]


def test_http_decodes_tritonclient_sequence_and_default_outputs() -> None:
    x = np.ones((1, 4), np.float32)
    inp = thttp.InferInput("IN", [1, 4], "FP32").set_data_from_numpy(x)
    body, hl = thttp.InferenceServerClient.generate_request_body(
        [inp], sequence_id=42, sequence_start=True, sequence_end=False
    )
    req = http_codec.decode_infer_request("m", "", body, hl)
    assert req.parameters == {
        "sequence_id": 42,
        "sequence_start": True,
        "sequence_end": False,
        "binary_data_output": True,
    }
    assert req.outputs == []
    assert http_codec.binary_default(req.parameters) is True
    assert http_codec.binary_default({}) is False


def test_http_decodes_tritonclient_shared_memory() -> None:
    a = thttp.InferInput("A", [4], "FP32")
    a.set_shared_memory("in_region", 16)
    b = thttp.InferInput("B", [2], "INT64")
    b.set_shared_memory("in_region", 16, offset=16)
    c = thttp.InferInput("C", [2], "FP32").set_data_from_numpy(np.array([1, 2], np.float32))
    out = thttp.InferRequestedOutput("OUT")
    out.set_shared_memory("out_region", 64, offset=8)
    body, hl = thttp.InferenceServerClient.generate_request_body([a, b, c], outputs=[out])
    req = http_codec.decode_infer_request("m", "", body, hl)
    assert req.inputs[0].shm == ShmRef("in_region", 0, 16) and req.inputs[0].data is None
    assert req.inputs[1].shm == ShmRef("in_region", 16, 16) and req.inputs[1].data is None
    assert_same(req.inputs[2].data, np.array([1, 2], np.float32))
    assert req.inputs[0].parameters == {}
    # tritonclient turns binary_data off for shm outputs
    assert req.outputs == [RequestedOutput("OUT", False, 0, ShmRef("out_region", 8, 64))]


def test_http_decodes_tritonclient_bf16() -> None:
    x = np.array([[1.5, -2.0, 3.25]], dtype=ml_dtypes.bfloat16)
    inp = thttp.InferInput("IN", [1, 3], "BF16").set_data_from_numpy(x, binary_data=True)
    body, hl = thttp.InferenceServerClient.generate_request_body([inp])
    req = http_codec.decode_infer_request("m", "", body, hl)
    assert_same(req.inputs[0].data, x)


def response_outputs(binary: bool | None) -> list[OutputTensor]:
    outs = [
        OutputTensor(dt, dt, (2, 3), sample(dt, (2, 3), i), binary_data=binary)
        for i, dt in enumerate(ALL)
        if dt != "BYTES"
    ]
    outs.append(OutputTensor("BYTES", "BYTES", (3, 1), utf8_sample((3, 1)), binary_data=binary))
    outs.append(OutputTensor("EMPTY", "FP32", (0, 4), np.zeros((0, 4), np.float32), binary_data=binary))
    outs.append(OutputTensor("SCALAR", "INT32", (), np.array(5, np.int32), binary_data=binary))
    return outs


@pytest.mark.parametrize(
    ("binary", "default_binary"),
    [(True, False), (False, True), (None, True), (None, False)],
)
def test_http_response_reads_back_through_tritonclient(binary: bool | None, default_binary: bool) -> None:
    outs = response_outputs(binary)
    resp = InferResponse("model", "1", "rid", outs, parameters={"sequence_id": 3})
    chunks, hl = http_codec.encode_infer_response(resp, default_binary)
    goes_binary = default_binary if binary is None else binary
    assert (hl is not None) == goes_binary
    body = join(chunks)
    result = thttp.InferenceServerClient.parse_response_body(body, header_length=hl)
    full = result.get_response()
    assert (full["model_name"], full["model_version"], full["id"]) == ("model", "1", "rid")
    assert full["parameters"] == {"sequence_id": 3}
    for o in outs:
        got = result.as_numpy(o.name)
        assert o.data is not None
        if o.datatype == "BYTES" and not goes_binary:
            # JSON BYTES come back as str, as from Triton
            assert [s.encode() for s in got.reshape(-1)] == list(o.data.reshape(-1))
        else:
            assert_same(got, o.data)
        assert ("binary_data_size" in full["outputs"][outs.index(o)].get("parameters", {})) == (goes_binary)


def test_http_response_bf16_and_non_utf8_go_binary_even_when_json_asked() -> None:
    bf = np.array([1.0, 2.5], dtype=ml_dtypes.bfloat16)
    raw = np.array([b"\xff\xfe", b"ok"], dtype=np.object_)
    resp = InferResponse(
        "m",
        "1",
        outputs=[
            OutputTensor("BF", "BF16", (2,), bf, binary_data=False),
            OutputTensor("RAW", "BYTES", (2,), raw, binary_data=False),
            OutputTensor("J", "INT8", (2,), np.array([-1, 1], np.int8), binary_data=False),
        ],
    )
    chunks, hl = http_codec.encode_infer_response(resp, False)
    assert hl is not None
    result = thttp.InferResult.from_response_body(join(chunks), header_length=hl)
    assert_same(result.as_numpy("BF"), bf)
    assert list(result.as_numpy("RAW")) == [b"\xff\xfe", b"ok"]
    assert result.get_output("J")["data"] == [-1, 1]


def test_http_response_shm_outputs_carry_no_data_and_no_parameters() -> None:
    resp = InferResponse(
        "m",
        "1",
        outputs=[
            OutputTensor("A", "FP32", (4,), shm=ShmRef("out", 0, 16)),
            OutputTensor("B", "FP32", (2,), np.array([1, 2], np.float32)),
            OutputTensor("C", "INT32", (2,), shm=ShmRef("out", 16, 8)),
        ],
    )
    chunks, hl = http_codec.encode_infer_response(resp, True)
    head = json.loads(join(chunks)[:hl])
    # as Triton: name, datatype and shape only (perf_analyzer rejects shm outputs with parameters)
    assert head["outputs"][0] == {"name": "A", "datatype": "FP32", "shape": [4]}
    assert head["outputs"][2] == {"name": "C", "datatype": "INT32", "shape": [2]}
    result = thttp.InferResult.from_response_body(join(chunks), header_length=hl)
    assert_same(result.as_numpy("B"), np.array([1, 2], np.float32))
    shm = {"A": ShmRef("out", 0, 16), "C": ShmRef("out", 16, 8)}
    back = http_codec.decode_infer_response(join(chunks), hl, shm)
    assert back.outputs[0].shm == ShmRef("out", 0, 16) and back.outputs[0].data is None
    assert back.outputs[2].shm == ShmRef("out", 16, 8)
    with pytest.raises(InvalidArgument, match="has no data"):  # without knowing, it is an error
        http_codec.decode_infer_response(join(chunks), hl)


def test_http_response_all_shm_is_pure_json() -> None:
    resp = InferResponse("m", "1", outputs=[OutputTensor("A", "FP32", (4,), shm=ShmRef("o", 0, 16))])
    chunks, hl = http_codec.encode_infer_response(resp, True)
    assert hl is None and len(chunks) == 1


def test_http_response_large_output_is_not_copied() -> None:
    big = np.arange(1 << 16, dtype=np.float32)
    resp = InferResponse("m", "1", outputs=[OutputTensor("Y", "FP32", big.shape, big)])
    chunks, _ = http_codec.encode_infer_response(resp, True)
    assert isinstance(chunks[1], memoryview)
    assert np.shares_memory(np.frombuffer(chunks[1], np.float32), big)


def test_http_response_converts_layout_and_byte_order() -> None:
    fortran = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    big_endian = np.arange(3, dtype=">f8")
    wide = np.array([1, 2], dtype=np.int64)  # declared INT16
    resp = InferResponse(
        "m",
        "1",
        outputs=[
            OutputTensor("F", "INT32", (2, 3), fortran),
            OutputTensor("E", "FP64", (3,), big_endian),
            OutputTensor("W", "INT16", (2,), wide),
        ],
    )
    chunks, hl = http_codec.encode_infer_response(resp, True)
    result = thttp.InferResult.from_response_body(join(chunks), header_length=hl)
    assert_same(result.as_numpy("F"), np.arange(6, dtype=np.int32).reshape(2, 3))
    assert_same(result.as_numpy("E"), np.arange(3, dtype=np.float64))
    assert_same(result.as_numpy("W"), np.array([1, 2], np.int16))


def test_http_response_rejects_inconsistent_outputs() -> None:
    resp = InferResponse("m", "1", outputs=[OutputTensor("Y", "FP32", (2, 2), np.zeros(3))])
    with pytest.raises(Internal, match=r"output 'Y' has 3 elements but its shape \[2, 2\] needs 4"):
        http_codec.encode_infer_response(resp, True)
    resp = InferResponse("m", "1", outputs=[OutputTensor("Y", "FP32", (2,))])
    with pytest.raises(Internal, match="output 'Y' has neither data nor shared memory"):
        http_codec.encode_infer_response(resp, True)


# ============================================================================================
# HTTP: request decoding details
# ============================================================================================


def test_http_json_data_nested_or_flat() -> None:
    for data in ([1, 2, 3, 4], [[1, 2], [3, 4]]):
        body, hl = http_body({"inputs": [{"name": "X", "shape": [2, 2], "datatype": "INT32", "data": data}]})
        req = http_codec.decode_infer_request("m", "", body, hl)
        assert_same(req.inputs[0].data, np.array([[1, 2], [3, 4]], np.int32))
    body, hl = http_body(
        {"inputs": [{"name": "S", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["é"]]}]}
    )
    req = http_codec.decode_infer_request("m", "", body, hl)
    assert_same(req.inputs[0].data, np.array([[b"a"], ["é".encode()]], dtype=np.object_))


def test_http_json_bool_fp16_and_int_for_float() -> None:
    body, hl = http_body(
        {
            "inputs": [
                {"name": "B", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
                {"name": "F", "shape": [2], "datatype": "FP32", "data": [1, 2.5]},
                {"name": "U", "shape": [1], "datatype": "UINT64", "data": [2**64 - 1]},
                {"name": "E", "shape": [0, 3], "datatype": "FP32", "data": []},
            ]
        }
    )
    req = http_codec.decode_infer_request("m", "", body, hl)
    assert_same(req.inputs[0].data, np.array([True, False, True]))
    assert_same(req.inputs[1].data, np.array([1, 2.5], np.float32))
    assert_same(req.inputs[2].data, np.array([2**64 - 1], np.uint64))
    assert_same(req.inputs[3].data, np.zeros((0, 3), np.float32))
    fp16, hl16 = http_body({"inputs": [{"name": "H", "shape": [1], "datatype": "FP16", "data": [0.5]}]})
    with pytest.raises(InvalidArgument, match="binary data format for input H"):
        http_codec.decode_infer_request("m", "", fp16, hl16)


def test_http_binary_inputs_are_zero_copy_views() -> None:
    x = np.arange(8, dtype=np.float32)
    body, hl = http_body(
        {"inputs": [{"name": "X", "shape": [8], "datatype": "FP32", "parameters": {"binary_data_size": 32}}]},
        x.tobytes(),
    )
    buf = bytearray(body)
    assert hl is not None
    req = http_codec.decode_infer_request("m", "", memoryview(buf), hl)
    arr = req.inputs[0].data
    assert arr is not None
    buf[hl : hl + 4] = np.float32(42).tobytes()
    assert arr[0] == 42


def test_http_keeps_other_tensor_parameters_and_memoryview_body() -> None:
    body, hl = http_body(
        {
            "id": "a",
            "inputs": [
                {"name": "X", "shape": [1], "datatype": "INT8", "data": [1], "parameters": {"custom": True}}
            ],
            "outputs": [{"name": "Y", "parameters": {"binary_data": True, "note": "x"}}],
        }
    )
    req = http_codec.decode_infer_request("m", "", memoryview(body), hl)
    assert req.inputs[0].parameters == {"custom": True}
    assert req.outputs == [RequestedOutput("Y", True, 0, None, {"note": "x"})]


MALFORMED: list[tuple[str, Any, tuple[bytes, ...], str]] = [
    ("bad json", b'{"inputs": [', (), "failed to parse the request JSON"),
    ("not an object", b"[1, 2]", (), "the request JSON must be an object, got list"),
    ("inputs not a list", {"inputs": {"name": "X"}}, (), "'inputs' of the request must be"),
    ("input not an object", {"inputs": [3]}, (), "inputs[0] must be a JSON object"),
    (
        "missing name",
        {"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]},
        (),
        "inputs[0] has no 'name'",
    ),
    (
        "missing shape",
        {"inputs": [{"name": "X", "datatype": "FP32", "data": [1]}]},
        (),
        "input 'X' has no 'shape'",
    ),
    (
        "negative shape",
        {"inputs": [{"name": "X", "shape": [-1], "datatype": "FP32", "data": [1]}]},
        (),
        "input 'X' has shape [-1]",
    ),
    (
        "float shape",
        {"inputs": [{"name": "X", "shape": [1.0], "datatype": "FP32", "data": [1]}]},
        (),
        "non-negative 64-bit integers",
    ),
    (
        "missing datatype",
        {"inputs": [{"name": "X", "shape": [1], "data": [1]}]},
        (),
        "input 'X' has no 'datatype'",
    ),
    (
        "unknown datatype",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP33", "data": [1]}]},
        (),
        "input 'X' has unknown datatype 'FP33'",
    ),
    (
        "neither data nor binary",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32"}]},
        (),
        "input 'X' has no data; expected 'data', a 'binary_data_size' parameter",
    ),
    (
        "data and binary",
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1],
                    "datatype": "FP32",
                    "data": [1],
                    "parameters": {"binary_data_size": 4},
                }
            ]
        },
        (b"\0" * 4,),
        "input 'X' has both 'binary_data_size' and data",
    ),
    (
        "shm and binary",
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1],
                    "datatype": "FP32",
                    "parameters": {
                        "binary_data_size": 4,
                        "shared_memory_region": "r",
                        "shared_memory_byte_size": 4,
                    },
                }
            ]
        },
        (b"\0" * 4,),
        "input 'X' has both 'binary_data_size' and shared memory",
    ),
    (
        "shm and data",
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1],
                    "datatype": "FP32",
                    "data": [1],
                    "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4},
                }
            ]
        },
        (),
        "input 'X' has both 'data' and shared memory",
    ),
    (
        "shm without size",
        {
            "inputs": [
                {"name": "X", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "r"}}
            ]
        },
        (),
        "input 'X' uses shared-memory region 'r' but gives no 'shared_memory_byte_size'",
    ),
    (
        "shm size without region",
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1],
                    "datatype": "FP32",
                    "data": [1],
                    "parameters": {"shared_memory_byte_size": 4},
                }
            ]
        },
        (),
        "input 'X' gives shared-memory offset/byte size but no 'shared_memory_region'",
    ),
    (
        "negative shm offset",
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1],
                    "datatype": "FP32",
                    "parameters": {
                        "shared_memory_region": "r",
                        "shared_memory_byte_size": 4,
                        "shared_memory_offset": -4,
                    },
                }
            ]
        },
        (),
        "'shared_memory_offset' must be a non-negative integer, got -4",
    ),
    (
        "binary overrun",
        {"inputs": [{"name": "X", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]},
        (b"\0" * 8,),
        "input 'X' has 'binary_data_size' 16 but only 8 bytes of binary data remain",
    ),
    (
        "trailing bytes",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
        (b"\0" * 8,),
        "the request has 4 unexpected bytes after the binary data of its inputs",
    ),
    (
        "binary size mismatch",
        {
            "inputs": [
                {"name": "X", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 12}}
            ]
        },
        (b"\0" * 12,),
        "input 'X': got 12 bytes of FP32 data, expected 16 for shape [2, 2]",
    ),
    (
        "negative binary size",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -4}}]},
        (b"\0" * 4,),
        "'binary_data_size' must be a non-negative integer, got -4",
    ),
    (
        "element count",
        {"inputs": [{"name": "X", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3]}]},
        (),
        "input 'X' has 3 elements in 'data' but shape [2, 2] needs 4",
    ),
    (
        "bytes element count",
        {"inputs": [{"name": "S", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
        (),
        "input 'S' has 1 elements in 'data' but shape [2] needs 2",
    ),
    (
        "ragged",
        {"inputs": [{"name": "X", "shape": [3], "datatype": "INT32", "data": [[1, 2], [3]]}]},
        (),
        "input 'X' has 'data' that is not a rectangular nested list of INT32 values",
    ),
    (
        "float for int",
        {"inputs": [{"name": "X", "shape": [2], "datatype": "INT32", "data": [1, 2.5]}]},
        (),
        "input 'X' is INT32; expected integers in 'data', got non-integer numbers",
    ),
    (
        "int for bool",
        {"inputs": [{"name": "X", "shape": [2], "datatype": "BOOL", "data": [1, 0]}]},
        (),
        "input 'X' is BOOL; expected true/false in 'data', got integers",
    ),
    (
        "string for float",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": ["1.0"]}]},
        (),
        "input 'X' is FP32; expected numbers in 'data', got strings",
    ),
    (
        "out of range",
        {"inputs": [{"name": "X", "shape": [2], "datatype": "UINT8", "data": [1, 256]}]},
        (),
        "input 'X' has 'data' outside the UINT8 range [0, 255]",
    ),
    (
        "null in data",
        {"inputs": [{"name": "X", "shape": [2], "datatype": "FP32", "data": [1, None]}]},
        (),
        "expected numbers in 'data', got values of mixed or out-of-range types",
    ),
    (
        "data not a list",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": 1.0}]},
        (),
        "input 'X' has 'data' of type float; expected a JSON array",
    ),
    (
        "number for bytes",
        {"inputs": [{"name": "S", "shape": [1], "datatype": "BYTES", "data": [1]}]},
        (),
        "input 'S' is BYTES but its 'data' holds a int; expected strings",
    ),
    (
        "bf16 json",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "BF16", "data": [1.0]}]},
        (),
        "input 'X' is BF16, which JSON cannot carry; send it as binary data",
    ),
    (
        "bytes framing",
        {"inputs": [{"name": "S", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
        (struct.pack("<I", 5) + b"ab",),
        "input 'S': BYTES element 0 declares 5 bytes",
    ),
    (
        "huge bytes shape",
        {
            "inputs": [
                {"name": "S", "shape": [10**12], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}
            ]
        },
        (b"\0" * 8,),
        "cannot hold the 1000000000000 elements",
    ),
    (
        "parameter not scalar",
        {"inputs": [], "parameters": {"x": [1]}},
        (),
        "parameter 'x' of the request must be a boolean, number or string, got list",
    ),
    (
        "parameters not object",
        {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1], "parameters": [1]}]},
        (),
        "'parameters' of input 'X' must be a JSON object",
    ),
    ("id not string", {"id": 3, "inputs": []}, (), "request 'id' must be a string"),
    ("output without name", {"inputs": [], "outputs": [{"parameters": {}}]}, (), "outputs[0] has no 'name'"),
    (
        "binary_data not bool",
        {"inputs": [], "outputs": [{"name": "Y", "parameters": {"binary_data": "yes"}}]},
        (),
        "output 'Y': 'binary_data' must be true or false, got 'yes'",
    ),
    (
        "bad classification",
        {"inputs": [], "outputs": [{"name": "Y", "parameters": {"classification": -1}}]},
        (),
        "output 'Y': 'classification' must be a non-negative integer, got -1",
    ),
    (
        "classification in shm",
        {
            "inputs": [],
            "outputs": [
                {
                    "name": "Y",
                    "parameters": {
                        "classification": 2,
                        "shared_memory_region": "r",
                        "shared_memory_byte_size": 8,
                    },
                }
            ],
        },
        (),
        "output 'Y': a classification output cannot be in shared memory",
    ),
]


@pytest.mark.parametrize(
    ("header", "binary", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_http_malformed_requests(header: Any, binary: tuple[bytes, ...], message: str) -> None:
    assert message in bad_http(header, *binary)


def test_http_header_length_errors() -> None:
    body = b'{"inputs": []}'
    msg = bad_http(body, header_length=100)
    assert "Inference-Header-Content-Length is 100 but the request body has 14 bytes" in msg
    assert "Inference-Header-Content-Length is -1" in bad_http(body, header_length=-1)
    header = {
        "inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]
    }
    msg = bad_http(json.dumps(header).encode(), header_length=None)
    assert "has 'binary_data_size' 4 but the request has no Inference-Header-Content-Length" in msg
    # the header length cuts the JSON short
    assert "failed to parse" in bad_http(json.dumps(header).encode() + b"\0" * 4, header_length=5)


def test_http_deeply_nested_json_is_rejected_cleanly() -> None:
    deep = (
        b'{"inputs": [{"name": "X", "shape": [1], "datatype": "BYTES", "data": '
        + (b"[" * 5000)
        + b'"a"'
        + (b"]" * 5000)
        + b"}]}"
    )
    assert "failed to parse the request JSON" in bad_http(deep)
    nested: Any = ["a"]
    for _ in range(200):
        nested = [nested]
    req = http_codec.decode_infer_request(
        "m", "", *http_body({"inputs": [{"name": "X", "shape": [1], "datatype": "BYTES", "data": nested}]})
    )
    assert_same(req.inputs[0].data, np.array([b"a"], dtype=np.object_))


def test_http_response_decode_errors() -> None:
    head = json.dumps(
        {
            "model_name": "m",
            "model_version": "1",
            "outputs": [
                {"name": "Y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
            ],
        }
    ).encode()
    with pytest.raises(InvalidArgument, match="output 'Y' has 'binary_data_size' 8 but only 4"):
        http_codec.decode_infer_response(head + b"\0" * 4, len(head))
    with pytest.raises(InvalidArgument, match="response has 4 unexpected bytes"):
        http_codec.decode_infer_response(head + b"\0" * 12, len(head))
    head = json.dumps(
        {
            "model_name": "m",
            "model_version": "1",
            "outputs": [
                {"name": "Y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}
            ],
        }
    ).encode()
    with pytest.raises(InvalidArgument, match="output 'Y': got 4 bytes of FP32 data, expected 8"):
        http_codec.decode_infer_response(head + b"\0" * 4, len(head))
    with pytest.raises(InvalidArgument, match="output 'Y' has no data"):
        http_codec.decode_infer_response(
            json.dumps({"outputs": [{"name": "Y", "datatype": "FP32", "shape": [1]}]}).encode(), None
        )


# ============================================================================================
# HTTP: client direction
# ============================================================================================


def test_http_encode_request_layout() -> None:
    x = np.arange(4, dtype=np.float32)
    req = InferRequest(
        "m",
        "1",
        "id7",
        inputs=[
            InputTensor("X", "FP32", (4,), x),
            InputTensor("S", "BYTES", (1,), np.array([b"\xff"], dtype=np.object_)),
            InputTensor("M", "INT32", (2,), shm=ShmRef("r", 8, 8)),
        ],
        outputs=[
            RequestedOutput("Y"),
            RequestedOutput("Z", binary_data=False, classification=2),
            RequestedOutput("W", shm=ShmRef("o", 0, 16)),
        ],
        parameters={"priority": 1},
    )
    chunks, hl = http_codec.encode_infer_request(req, binary_inputs=False, binary_outputs=True)
    assert hl is not None
    head = json.loads(join(chunks)[:hl])
    assert head["id"] == "id7"
    assert head["inputs"][0]["data"] == [0.0, 1.0, 2.0, 3.0]
    # non-UTF-8 BYTES cannot be JSON: sent binary
    assert head["inputs"][1]["parameters"] == {"binary_data_size": 5}
    assert head["inputs"][2]["parameters"] == {
        "shared_memory_region": "r",
        "shared_memory_byte_size": 8,
        "shared_memory_offset": 8,
    }
    assert head["outputs"] == [
        {"name": "Y", "parameters": {"binary_data": True}},
        {"name": "Z", "parameters": {"binary_data": False, "classification": 2}},
        {"name": "W", "parameters": {"shared_memory_region": "o", "shared_memory_byte_size": 16}},
    ]
    assert head["parameters"] == {"priority": 1}
    back = http_codec.decode_infer_request("m", "1", join(chunks), hl)
    assert back.outputs == [RequestedOutput("Y", True), *req.outputs[1:]]
    assert back.inputs[2].shm == ShmRef("r", 8, 8)


def test_http_encode_request_defaults() -> None:
    req = InferRequest("m", inputs=[InputTensor("X", "INT32", (1,), np.array([1], np.int32))])
    chunks, hl = http_codec.encode_infer_request(req, binary_inputs=False)
    assert hl is None
    assert json.loads(bytes(chunks[0])) == {
        "inputs": [{"name": "X", "shape": [1], "datatype": "INT32", "data": [1]}],
        "parameters": {"binary_data_output": True},
    }
    chunks, hl = http_codec.encode_infer_request(req, binary_outputs=False)
    assert "parameters" not in json.loads(join(chunks)[:hl])
    with pytest.raises(InvalidArgument, match=r"input 'X' has 2 elements but its shape \[1\]"):
        http_codec.encode_infer_request(
            InferRequest("m", inputs=[InputTensor("X", "INT32", (1,), np.zeros(2, np.int32))])
        )
    with pytest.raises(InvalidArgument, match="input 'X' has neither data nor shared memory"):
        http_codec.encode_infer_request(InferRequest("m", inputs=[InputTensor("X", "FP32", (1,))]))


# ============================================================================================
# gRPC: tritonclient as oracle
# ============================================================================================


def wire(msg: Any) -> Any:
    """Through the wire and back, as a server would see it."""
    return type(msg).FromString(msg.SerializeToString())


def grpc_request(inputs: list[Any], outputs: list[Any] | None = None, **kw: Any) -> Any:
    args = {
        "model_version": "",
        "request_id": "",
        "sequence_id": 0,
        "sequence_start": False,
        "sequence_end": False,
        "priority": 0,
        "timeout": None,
        "parameters": None,
    }
    args.update(kw)
    return wire(grpc_utils._get_inference_request(model_name="model", inputs=inputs, outputs=outputs, **args))


@pytest.mark.parametrize("datatype", [*ALL, "BF16"])
def test_grpc_decodes_tritonclient_requests(datatype: str) -> None:
    shape = (3, 2)
    if datatype == "BF16":
        x = np.arange(6, dtype=ml_dtypes.bfloat16).reshape(shape)
    else:
        x = sample(datatype, shape)
    a = tgrpc.InferInput("IN", list(shape), datatype)
    a.set_data_from_numpy(x)
    s = tgrpc.InferInput("SHM", [4], "FP32")
    s.set_shared_memory("region", 16, offset=32)
    c = tgrpc.InferInput("C", [1], "INT64")
    c.set_data_from_numpy(np.array([-5], np.int64))
    out = tgrpc.InferRequestedOutput("OUT", class_count=2)
    out_shm = tgrpc.InferRequestedOutput("OUT2")
    out_shm.set_shared_memory("oregion", 64)
    msg = grpc_request(
        [a, s, c],
        [out, out_shm],
        request_id="r",
        priority=4,
        timeout=10,
        sequence_id="corr",
        sequence_start=True,
        sequence_end=True,
        parameters={"flag": False, "n": 3, "f": 1.5},
    )
    req = grpc_codec.decode_infer_request(msg)
    assert (req.model_name, req.id) == ("model", "r")
    assert req.parameters == {
        "priority": 4,
        "timeout": 10,
        "sequence_id": "corr",
        "sequence_start": True,
        "sequence_end": True,
        "flag": False,
        "n": 3,
        "f": 1.5,
    }
    assert_same(req.inputs[0].data, x)
    assert req.inputs[1].shm == ShmRef("region", 32, 16) and req.inputs[1].data is None
    assert_same(req.inputs[2].data, np.array([-5], np.int64))
    assert req.outputs == [
        RequestedOutput("OUT", classification=2),
        RequestedOutput("OUT2", shm=ShmRef("oregion", 0, 64)),
    ]


@pytest.mark.parametrize("datatype", ALL)
def test_grpc_response_reads_back_through_tritonclient(datatype: str) -> None:
    x = sample(datatype, (2, 2))
    resp = InferResponse(
        "model",
        "2",
        "rid",
        outputs=[
            OutputTensor("SHM", "FP32", (4,), shm=ShmRef("out", 0, 16)),
            OutputTensor("Y", datatype, (2, 2), x),
            OutputTensor("E", datatype, (0,), sample(datatype, (0,))),
        ],
        parameters={"triton_final_response": True},
    )
    msg = wire(grpc_codec.encode_infer_response(resp))
    assert len(msg.raw_output_contents) == 3 and msg.raw_output_contents[0] == b""
    result = tgrpc.InferResult(msg)
    assert_same(result.as_numpy("Y"), x)
    assert result.as_numpy("E").shape == (0,)
    assert not msg.outputs[0].parameters  # as Triton: the client knows where it asked for it
    back = grpc_codec.decode_infer_response(msg, {"SHM": ShmRef("out", 0, 16)})
    assert back.parameters == {"triton_final_response": True}
    assert back.outputs[0].shm == ShmRef("out", 0, 16) and back.outputs[0].data is None
    assert_same(back.outputs[1].data, x)


def test_grpc_response_without_shm_entries_decodes() -> None:
    """A server that sends raw entries only for non-shm outputs is understood too."""
    msg = pb.ModelInferResponse(
        model_name="m",
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name="A", datatype="INT32", shape=[1]),
            pb.ModelInferResponse.InferOutputTensor(name="B", datatype="INT32", shape=[1]),
        ],
        raw_output_contents=[np.array([9], np.int32).tobytes()],
    )
    grpc_codec.params_to_pb(
        {"shared_memory_region": "r", "shared_memory_byte_size": 4}, msg.outputs[0].parameters
    )
    back = grpc_codec.decode_infer_response(msg)
    assert back.outputs[0].shm == ShmRef("r", 0, 4)
    assert_same(back.outputs[1].data, np.array([9], np.int32))


# ============================================================================================
# gRPC: typed contents and errors
# ============================================================================================

CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def typed_request(datatype: str, shape: list[int], field: str, values: list[Any]) -> Any:
    msg = pb.ModelInferRequest(model_name="model")
    t = msg.inputs.add(name="X", datatype=datatype, shape=shape)
    getattr(t.contents, field).extend(values)
    return wire(msg)


@pytest.mark.parametrize("datatype", list(CONTENTS_FIELD))
def test_grpc_typed_contents(datatype: str) -> None:
    x = sample(datatype, (2, 2))
    req = grpc_codec.decode_infer_request(
        typed_request(datatype, [2, 2], CONTENTS_FIELD[datatype], x.reshape(-1).tolist())
    )
    assert_same(req.inputs[0].data, x)


def test_grpc_typed_contents_errors() -> None:
    with pytest.raises(
        InvalidArgument,
        match=(
            r"input tensor 'X' for model 'model' \(FP32, shape \[2\]\) expects 2 values in "
            r"contents.fp32_contents, got 0; data found in int_contents \(2\)"
        ),
    ):
        grpc_codec.decode_infer_request(typed_request("FP32", [2], "int_contents", [1, 2]))
    with pytest.raises(InvalidArgument, match="is FP16, which has no typed contents field"):
        grpc_codec.decode_infer_request(typed_request("FP16", [1], "fp32_contents", [1.0]))
    with pytest.raises(InvalidArgument, match=r"outside the INT8 range \[-128, 127\]"):
        grpc_codec.decode_infer_request(typed_request("INT8", [2], "int_contents", [1, 300]))
    with pytest.raises(InvalidArgument, match=r"outside the UINT16 range \[0, 65535\]"):
        grpc_codec.decode_infer_request(typed_request("UINT16", [1], "uint_contents", [70000]))


def raw_request(*inputs: tuple[str, str, list[int]], raw: list[bytes]) -> Any:
    msg = pb.ModelInferRequest(model_name="model")
    for name, dt, shape in inputs:
        msg.inputs.add(name=name, datatype=dt, shape=shape)
    msg.raw_input_contents.extend(raw)
    return msg


def test_grpc_request_errors() -> None:
    four = np.zeros(1, np.float32).tobytes()
    cases: list[tuple[Any, str]] = [
        (
            raw_request(("A", "FP32", [1]), ("B", "FP32", [1]), raw=[four]),
            "expected 2 raw_input_contents entries for 2 inputs of model 'model', got 1",
        ),
        (
            raw_request(("A", "FP32", [2]), raw=[four]),
            "input 'A': got 4 bytes of FP32 data, expected 8 for shape [2]",
        ),
        (raw_request(("A", "FP33", [1]), raw=[four]), "input tensor 'A' has unknown datatype 'FP33'"),
        (raw_request(("A", "FP32", [-1]), raw=[four]), "input 'A' has negative dimension"),
        (
            raw_request(("", "FP32", [1]), raw=[four]),
            "inputs[0] of the request for model 'model' has no name",
        ),
        (
            raw_request(("A", "FP32", [1]), raw=[]),
            "input tensor 'A' for model 'model' has no data; expected raw_input_contents",
        ),
    ]
    mixed = raw_request(("A", "FP32", [1]), ("B", "INT32", [1]), raw=[four])
    mixed.inputs[1].contents.int_contents.append(1)
    cases.append(
        (
            mixed,
            "unexpected explicit tensor data for input tensor 'B' for model "
            "'model': the request uses raw_input_contents",
        )
    )
    shm = raw_request(("A", "FP32", [1]), ("B", "FP32", [1]), raw=[four])
    grpc_codec.params_to_pb({"shared_memory_region": "r"}, shm.inputs[0].parameters)
    cases.append(
        (shm, "input tensor 'A' uses shared-memory region 'r' but gives no 'shared_memory_byte_size'")
    )
    shm2 = raw_request(("A", "FP32", [1]), ("B", "FP32", [1]), ("C", "FP32", [1]), raw=[four])
    grpc_codec.params_to_pb(
        {"shared_memory_region": "r", "shared_memory_byte_size": 4}, shm2.inputs[0].parameters
    )
    cases.append(
        (
            shm2,
            "expected 2 raw_input_contents entries for 3 inputs (1 in shared memory) of model 'model', got 1",
        )
    )
    for msg, message in cases:
        with pytest.raises(InvalidArgument) as e:
            grpc_codec.decode_infer_request(msg)
        assert message in e.value.message


def test_grpc_positional_raw_with_shm_input() -> None:
    """One raw entry per input (the shm one empty) is accepted as well as tritonclient's
    one-per-non-shm-input layout."""
    four = np.array([2.5], np.float32).tobytes()
    msg = raw_request(("A", "FP32", [1]), ("B", "FP32", [1]), raw=[b"", four])
    grpc_codec.params_to_pb(
        {"shared_memory_region": "r", "shared_memory_byte_size": 4}, msg.inputs[0].parameters
    )
    req = grpc_codec.decode_infer_request(msg)
    assert req.inputs[0].shm == ShmRef("r", 0, 4)
    assert_same(req.inputs[1].data, np.array([2.5], np.float32))
    msg.raw_input_contents[0] = four
    with pytest.raises(InvalidArgument, match=r"tensor 'A' .* the input is in shared memory"):
        grpc_codec.decode_infer_request(msg)


def test_grpc_empty_tensor_needs_no_data() -> None:
    req = grpc_codec.decode_infer_request(raw_request(("A", "FP16", [0, 3]), raw=[]))
    assert_same(req.inputs[0].data, np.zeros((0, 3), np.float16))


def test_grpc_params() -> None:
    m = pb.ModelInferRequest()
    params: Params = {"b": True, "i": -3, "big": 2**64 - 1, "f": 0.25, "s": "x", "priority": 7}
    grpc_codec.params_to_pb(params, m.parameters)
    assert m.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert m.parameters["i"].WhichOneof("parameter_choice") == "int64_param"
    assert m.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert m.parameters["priority"].WhichOneof("parameter_choice") == "uint64_param"
    assert grpc_codec.params_from_pb(wire(m).parameters) == params
    with pytest.raises(InvalidArgument, match="parameter 'x' = 18446744073709551616 does not"):
        grpc_codec.params_to_pb({"x": 2**64}, m.parameters)
    with pytest.raises(InvalidArgument, match="parameter 'x' must be a bool, int, float or str"):
        grpc_codec.params_to_pb({"x": [1]}, m.parameters)  # type: ignore[dict-item]
    m.parameters["unset"].Clear()
    assert "unset" not in grpc_codec.params_from_pb(m.parameters)


def test_grpc_encode_request_matches_tritonclient_layout() -> None:
    x = np.arange(3, dtype=np.int16)
    req = InferRequest(
        "m",
        "2",
        "id",
        inputs=[
            InputTensor("S", "FP32", (2,), shm=ShmRef("r", 4, 8)),
            InputTensor("X", "INT16", (3,), x),
        ],
        outputs=[RequestedOutput("Y", classification=3), RequestedOutput("Z", shm=ShmRef("o", 0, 4))],
        parameters={"priority": 1, "timeout": 5},
    )
    msg = wire(grpc_codec.encode_infer_request(req))
    a = tgrpc.InferInput("S", [2], "FP32")
    a.set_shared_memory("r", 8, offset=4)
    b = tgrpc.InferInput("X", [3], "INT16")
    b.set_data_from_numpy(x)
    y = tgrpc.InferRequestedOutput("Y", class_count=3)
    z = tgrpc.InferRequestedOutput("Z")
    z.set_shared_memory("o", 4)
    theirs = grpc_request([a, b], [y, z], model_version="2", request_id="id", priority=1, timeout=5)
    theirs.model_name = "m"
    assert msg == theirs
    back = grpc_codec.decode_infer_request(msg)
    assert back.outputs == req.outputs and back.parameters == req.parameters
    assert_same(back.inputs[1].data, x)


# ============================================================================================
# round trips (hypothesis)
# ============================================================================================

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, utf8: bool = False) -> tuple[str, npt.NDArray[Any]]:
    datatype = draw(st.sampled_from(ALL))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        n = int(np.prod(shape))
        elems = st.text(max_size=5).map(str.encode) if utf8 else st.binary(max_size=6)
        items = draw(st.lists(elems, min_size=n, max_size=n))
        arr = np.empty(n, dtype=np.object_)
        arr[:] = items
        return datatype, arr.reshape(shape)
    return datatype, draw(hnp.arrays(np.dtype(NUMERIC[datatype]).newbyteorder("<"), shape))


@st.composite
def requests(draw: st.DrawFn) -> InferRequest:
    ts = draw(st.lists(tensors(), min_size=0, max_size=3))
    inputs = [InputTensor(f"in{i}", dt, arr.shape, arr) for i, (dt, arr) in enumerate(ts)]
    if draw(st.booleans()):
        inputs.append(InputTensor("shm", "FP32", (2,), shm=ShmRef("reg", 8, 8)))
    outputs = [
        RequestedOutput(
            f"out{i}",
            binary_data=draw(st.sampled_from([None, True, False])),
            classification=draw(st.integers(0, 3)),
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    params: Params = draw(
        st.dictionaries(
            st.sampled_from(["priority", "timeout", "custom", "flag"]),
            st.one_of(st.booleans(), st.integers(0, 2**62), st.text(max_size=4)),
            max_size=2,
        )
    )
    return InferRequest("model", "1", draw(st.text(max_size=4)), inputs, outputs, params)


@st.composite
def responses(draw: st.DrawFn) -> InferResponse:
    ts = draw(st.lists(tensors(), min_size=0, max_size=3))
    outputs = [
        OutputTensor(f"out{i}", dt, arr.shape, arr, binary_data=draw(st.sampled_from([None, True, False])))
        for i, (dt, arr) in enumerate(ts)
    ]
    if draw(st.booleans()):
        outputs.insert(
            draw(st.integers(0, len(outputs))), OutputTensor("shm", "INT32", (2,), shm=ShmRef("reg", 0, 8))
        )
    return InferResponse(
        "model",
        "1",
        draw(st.text(max_size=4)),
        outputs,
        draw(st.dictionaries(st.just("sequence_id"), st.integers(0, 9))),
    )


def same_inputs(got: list[InputTensor], want: list[InputTensor]) -> None:
    assert [(t.name, t.datatype, t.shape, t.shm) for t in got] == [
        (t.name, t.datatype, t.shape, t.shm) for t in want
    ]
    for g, w in zip(got, want, strict=True):
        if w.data is not None:
            assert_same(g.data, w.data)


def same_outputs(got: list[OutputTensor], want: list[OutputTensor]) -> None:
    assert [(t.name, t.datatype, t.shape, t.shm) for t in got] == [
        (t.name, t.datatype, t.shape, t.shm) for t in want
    ]
    for g, w in zip(got, want, strict=True):
        if w.data is not None:
            assert_same(g.data, w.data)


def _shm_of(resp: InferResponse) -> dict[str, ShmRef]:
    """What the client knows: the outputs it placed in shared memory."""
    return {o.name: o.shm for o in resp.outputs if o.shm is not None}


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(req=requests(), binary_inputs=st.booleans(), binary_outputs=st.booleans())
def test_http_request_round_trip(req: InferRequest, binary_inputs: bool, binary_outputs: bool) -> None:
    chunks, hl = http_codec.encode_infer_request(req, binary_inputs, binary_outputs)
    back = http_codec.decode_infer_request(req.model_name, req.model_version, join(chunks), hl)
    assert back.id == req.id
    same_inputs(back.inputs, req.inputs)
    assert [(o.name, o.classification) for o in back.outputs] == [
        (o.name, o.classification) for o in req.outputs
    ]
    assert [o.binary_data for o in back.outputs] == [
        binary_outputs if o.binary_data is None else o.binary_data for o in req.outputs
    ]
    expected = dict(req.parameters)
    if not req.outputs and binary_outputs:
        expected.setdefault("binary_data_output", True)
    assert back.parameters == expected


@PROPERTY
@given(resp=responses(), default_binary=st.booleans())
def test_http_response_round_trip(resp: InferResponse, default_binary: bool) -> None:
    chunks, hl = http_codec.encode_infer_response(resp, default_binary)
    body = join(chunks)
    back = http_codec.decode_infer_response(body, hl, _shm_of(resp))
    assert (back.model_name, back.model_version, back.id) == ("model", "1", resp.id)
    assert back.parameters == resp.parameters
    same_outputs(back.outputs, resp.outputs)
    # and tritonclient reads the same arrays
    result = thttp.InferResult.from_response_body(body, header_length=hl)
    for o in resp.outputs:
        if o.data is not None and o.datatype != "BYTES":
            assert_same(result.as_numpy(o.name), o.data)


@PROPERTY
@given(req=requests())
def test_grpc_request_round_trip(req: InferRequest) -> None:
    back = grpc_codec.decode_infer_request(wire(grpc_codec.encode_infer_request(req)))
    assert (back.model_name, back.model_version, back.id) == (req.model_name, req.model_version, req.id)
    same_inputs(back.inputs, req.inputs)
    assert [(o.name, o.classification, o.shm) for o in back.outputs] == [
        (o.name, o.classification, o.shm) for o in req.outputs
    ]
    assert back.parameters == req.parameters


@PROPERTY
@given(resp=responses())
def test_grpc_response_round_trip(resp: InferResponse) -> None:
    msg = wire(grpc_codec.encode_infer_response(resp))
    back = grpc_codec.decode_infer_response(msg, _shm_of(resp))
    assert back.id == resp.id and back.parameters == resp.parameters
    same_outputs(back.outputs, resp.outputs)
    result = tgrpc.InferResult(msg)
    for o in resp.outputs:
        if o.data is not None:
            assert_same(result.as_numpy(o.name), o.data)


def _decoded(decode: Any) -> Any:
    """What a decode gives, comparable: the request's every field with arrays as bytes, or
    the error's type and text."""
    try:
        req = decode()
    except Exception as exc:
        return type(exc), str(exc)

    def data(a: npt.NDArray[Any] | None) -> Any:
        if a is None:
            return None
        if a.dtype == np.object_:
            return a.shape, [bytes(x) for x in a.reshape(-1)]
        return a.dtype.str, a.shape, a.tobytes(), a.flags.writeable

    return (
        req.model_name,
        req.model_version,
        req.id,
        req.parameters,
        [(t.name, t.datatype, t.shape, data(t.data), t.shm, t.parameters) for t in req.inputs],
        req.outputs,
    )


def _reversed(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.flip(a.reshape(-1)).reshape(a.shape)


def _upb_decode(data: bytes) -> InferRequest:
    return grpc_codec.decode_infer_request(pb.ModelInferRequest.FromString(data))


@PROPERTY
@given(
    req=requests(),
    damage=st.one_of(
        st.none(),
        st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.integers(0, 2**20), st.just(0)),
    ),
)
def test_grpc_decode_from_bytes_matches_upb(req: InferRequest, damage: Any) -> None:
    """The cached-template decode of the server's hot path against upb + decode_infer_request,
    on valid, damaged and truncated requests, before and after its template is cached, and
    for a second request of the same shape with other data and id."""
    grpc_codec._TEMPLATES.clear()
    wire_bytes = grpc_codec.encode_infer_request(req).SerializeToString()
    if damage is not None and wire_bytes:
        kind, at, xor = damage
        at %= len(wire_bytes)
        if kind == "flip":
            wire_bytes = wire_bytes[:at] + bytes([wire_bytes[at] ^ xor]) + wire_bytes[at + 1 :]
        else:
            wire_bytes = wire_bytes[:at]
    parse = pb.ModelInferRequest.FromString
    want = _decoded(lambda: _upb_decode(wire_bytes))
    for _ in range(2):  # the second time from the template, if the first made one
        assert _decoded(lambda: grpc_codec.decode_infer_request_bytes(wire_bytes, parse)) == want
        assert _decoded(lambda: grpc_codec.decode_infer_request_bytes(memoryview(wire_bytes), parse)) == want
    # same fields but the id and the tensor data: answered from the template
    other = InferRequest(
        req.model_name,
        req.model_version,
        req.id + "é",
        [
            InputTensor(t.name, t.datatype, t.shape, None if t.data is None else _reversed(t.data), t.shm)
            for t in req.inputs
        ],
        req.outputs,
        req.parameters,
    )
    other_bytes = grpc_codec.encode_infer_request(other).SerializeToString()
    assert _decoded(lambda: grpc_codec.decode_infer_request_bytes(other_bytes, parse)) == _decoded(
        lambda: _upb_decode(other_bytes)
    )


def test_grpc_decode_from_bytes_uses_its_template_and_checks_each_request() -> None:
    grpc_codec._TEMPLATES.clear()
    parse = pb.ModelInferRequest.FromString
    four = np.arange(4, dtype=np.float32)
    msg = raw_request(("A", "FP32", [1, 4]), raw=[four.tobytes()])
    msg.outputs.add(name="y")
    msg.parameters["triton_enable_empty_final_response"].bool_param = True
    first = grpc_codec.decode_infer_request_bytes(msg.SerializeToString(), parse)
    assert len(grpc_codec._TEMPLATES) == 1
    msg.id = "req-2"
    msg.raw_input_contents[0] = (four + 1).tobytes()
    second = grpc_codec.decode_infer_request_bytes(msg.SerializeToString(), parse)
    assert len(grpc_codec._TEMPLATES) == 1  # the id and the data are not part of the template
    assert first.id == "" and second.id == "req-2"
    assert_same(second.inputs[0].data, (four + 1).reshape(1, 4))
    assert_same(first.inputs[0].data, four.reshape(1, 4))
    # each request owns its mutable parts
    second.parameters["x"] = 1
    second.outputs[0].parameters["x"] = 1
    third = grpc_codec.decode_infer_request_bytes(msg.SerializeToString(), parse)
    assert third.parameters == {"triton_enable_empty_final_response": True}
    assert third.outputs[0].parameters == {}
    # a wrong tensor size in a cached shape gets the full path's error
    msg.raw_input_contents[0] = four.tobytes()[:8]
    with pytest.raises(InvalidArgument, match="got 8 bytes of FP32 data, expected 16"):
        grpc_codec.decode_infer_request_bytes(msg.SerializeToString(), parse)
    # the cache is bounded
    for i in range(5):
        msg.model_name = f"m{i}"
        msg.raw_input_contents[0] = four.tobytes()
        grpc_codec.decode_infer_request_bytes(msg.SerializeToString(), parse, limit=3)
    assert len(grpc_codec._TEMPLATES) <= 3


@PROPERTY
@given(resp=responses(), version=st.sampled_from(["", "1", "12"]), rid=st.text(max_size=4))
def test_grpc_serialize_response_is_upbs_bytes(resp: InferResponse, version: str, rid: str) -> None:
    resp.model_version, resp.id = version, rid
    assert (
        grpc_codec.serialize_infer_response(resp)
        == grpc_codec.encode_infer_response(resp).SerializeToString()
    )
    resp.parameters = {}
    assert (
        grpc_codec.serialize_infer_response(resp)
        == grpc_codec.encode_infer_response(resp).SerializeToString()
    )


def test_grpc_serialize_response_edge_cases() -> None:
    x = np.ones((300, 2), np.float32)
    cases = [
        InferResponse("m" * 200, "", "", [OutputTensor("o", "FP32", (300, 2), x)]),  # 2-byte lengths
        InferResponse("m", "1", "", [OutputTensor("o", "FP32", (300, 2), x, parameters={"p": 1})]),
        InferResponse("m", "1", "", []),
        InferResponse("m", "1", "", [OutputTensor("o", "FP32", [300, 2], x)]),  # type: ignore[arg-type]
    ]
    for resp in cases:
        assert (
            grpc_codec.serialize_infer_response(resp)
            == grpc_codec.encode_infer_response(resp).SerializeToString()
        )
    with pytest.raises(Internal, match="neither data nor shared memory"):
        grpc_codec.serialize_infer_response(InferResponse("m", "1", "", [OutputTensor("o", "FP32", (1,))]))


# ============================================================================================
# protobuf <-> JSON
# ============================================================================================


def model_config() -> Any:
    c = mc.ModelConfig(name="mlp", backend="onnxruntime", max_batch_size=8)
    c.input.add(name="x", data_type=mc.TYPE_FP32, dims=[-1, 16])
    c.output.add(name="y", data_type=mc.TYPE_INT64, dims=[4], label_filename="labels.txt")
    c.dynamic_batching.max_queue_delay_microseconds = 2**40
    c.dynamic_batching.preferred_batch_size.extend([4, 8])
    c.dynamic_batching.priority_queue_policy[2].default_timeout_microseconds = 5
    c.instance_group.add(count=2, kind=mc.ModelInstanceGroup.KIND_CPU)
    spec = c.optimization.cuda.graph_spec.add(batch_size=4)
    spec.input["x"].dim.extend([4, 16])
    c.parameters["k"].string_value = "v"
    return c


def test_message_to_json_dict_matches_triton_rendering() -> None:
    d = json_pb.message_to_json_dict(model_config())
    assert json.loads(json.dumps(d)) == d  # plain JSON values only
    assert d["max_batch_size"] == 8
    assert d["input"][0]["dims"] == [-1, 16] and d["input"][0]["data_type"] == "TYPE_FP32"
    assert d["input"][0]["is_shape_tensor"] is False  # defaults printed, as Triton does
    assert d["output"][0]["dims"] == [4]
    dyn = d["dynamic_batching"]
    assert dyn["max_queue_delay_microseconds"] == 2**40
    assert dyn["preferred_batch_size"] == [4, 8]
    assert dyn["priority_queue_policy"]["2"]["default_timeout_microseconds"] == 5
    assert d["instance_group"][0]["kind"] == "KIND_CPU"
    assert d["optimization"]["cuda"]["graph_spec"][0]["input"]["x"]["dim"] == [4, 16]
    assert d["batch_input"] == [] and d["cc_model_filenames"] == {}
    compact = json_pb.message_to_json_dict(model_config(), include_defaults=False)
    assert "batch_input" not in compact and "is_shape_tensor" not in compact["input"][0]


def test_message_to_json_dict_statistics_and_parameters() -> None:
    stats = pb.ModelStatisticsResponse(
        model_stats=[
            pb.ModelStatistics(
                name="m",
                version="1",
                inference_count=3,
                last_inference=1_700_000_000_000,
                batch_stats=[
                    pb.InferBatchStatistics(
                        batch_size=1, compute_infer=pb.StatisticDuration(count=3, ns=2**45)
                    )
                ],
            )
        ]
    )
    d = json_pb.message_to_json_dict(stats)
    s = d["model_stats"][0]
    assert s["inference_count"] == 3 and s["execution_count"] == 0
    assert s["last_inference"] == 1_700_000_000_000
    assert s["batch_stats"][0]["compute_infer"] == {"count": 3, "ns": 2**45}
    shm = pb.SystemSharedMemoryStatusResponse()
    shm.regions["r"].CopyFrom(
        pb.SystemSharedMemoryStatusResponse.RegionStatus(name="r", key="/k", offset=8, byte_size=2**33)
    )
    assert json_pb.message_to_json_dict(shm)["regions"]["r"]["byte_size"] == 2**33
    req = pb.ModelInferRequest()
    req.parameters["p"].int64_param = -(2**40)
    d = json_pb.message_to_json_dict(req, include_defaults=False)
    assert d == {"parameters": {"p": {"int64_param": -(2**40)}}}


def test_message_to_json_dict_int64_map_values() -> None:
    """Triton's protos have no map<_, int64>; a message made here checks that path."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sonic_test_maps.proto", package="sonic_test", syntax="proto3"
    )
    msg = fdp.message_type.add(name="Holder")
    entry = msg.nested_type.add(name="CountsEntry")
    entry.options.map_entry = True
    f = descriptor_pb2.FieldDescriptorProto
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_UINT64, label=f.LABEL_OPTIONAL)
    msg.field.add(
        name="counts",
        number=1,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=".sonic_test.Holder.CountsEntry",
    )
    msg.field.add(name="sizes", number=2, type=f.TYPE_SINT64, label=f.LABEL_REPEATED)
    node = fdp.message_type.add(name="Node")  # a type that contains itself
    node.field.add(name="v", number=1, type=f.TYPE_FIXED64, label=f.LABEL_OPTIONAL)
    node.field.add(
        name="kids", number=2, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED, type_name=".sonic_test.Node"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    holder_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("sonic_test.Holder"))
    h: Any = holder_cls()
    h.counts["a"] = 2**63
    h.sizes.extend([-(2**50), 3])
    d = json_pb.message_to_json_dict(h)
    assert d == {"counts": {"a": 2**63}, "sizes": [-(2**50), 3]}
    assert json_pb.json_dict_to_message(d, holder_cls) == h
    node_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("sonic_test.Node"))
    tree: Any = node_cls(v=1)
    tree.kids.add(v=2).kids.add(v=2**64 - 1)
    assert json_pb.message_to_json_dict(tree, include_defaults=False) == {
        "v": 1,
        "kids": [{"v": 2, "kids": [{"v": 2**64 - 1}]}],
    }


def test_json_dict_to_message_round_trip_and_errors() -> None:
    c = model_config()
    assert json_pb.json_dict_to_message(json_pb.message_to_json_dict(c), mc.ModelConfig) == c
    # int64 given as strings and camelCase names (protobuf's own JSON) are accepted too
    parsed = json_pb.json_dict_to_message(
        {"maxBatchSize": 2, "input": [{"name": "x", "dims": ["3"]}]}, mc.ModelConfig
    )
    assert parsed.max_batch_size == 2 and list(parsed.input[0].dims) == [3]
    with pytest.raises(InvalidArgument, match=r"invalid JSON for inference\.ModelConfig: .*nope"):
        json_pb.json_dict_to_message({"nope": 1}, mc.ModelConfig)
    with pytest.raises(InvalidArgument, match="Invalid enum value TYPE_NOPE"):
        json_pb.json_dict_to_message({"input": [{"data_type": "TYPE_NOPE"}]}, mc.ModelConfig)
    with pytest.raises(InvalidArgument, match="expected an object, got list"):
        json_pb.json_dict_to_message([1], mc.ModelConfig)  # type: ignore[arg-type]
    assert (
        json_pb.json_dict_to_message(
            {"nope": 1, "name": "a"}, mc.ModelConfig, ignore_unknown_fields=True
        ).name
        == "a"
    )
