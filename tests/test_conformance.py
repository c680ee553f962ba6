"""Differential conformance: sonic and NVIDIA's Triton, driven by NVIDIA's own clients only.

Every test that takes ``server`` runs twice: against ``sonic serve`` and against NVIDIA's
tritonserver 2.51, both serving the same repository of Triton python-backend models (see
``conftest.py``). The expectations written here are what Triton answers (status codes, message
phrases, response fields); a test that passes against Triton and fails against sonic points at
a place where a Triton user could tell the two apart. Where sonic differs from Triton on purpose
the test says so in a comment and checks each server's own answer.

Only ``tritonclient.http``, ``tritonclient.http.aio``, ``tritonclient.grpc``,
``tritonclient.grpc.aio`` and ``tritonclient.utils.shared_memory`` talk to the servers, plus
``urllib`` for the few HTTP bodies tritonclient cannot produce (malformed JSON and the like).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from conftest import Target, scrape_metrics
from sonic import zoo
from sonic.protocol.datatypes import from_numpy, numpy_dtype

Client = Any  # httpclient.InferenceServerClient | grpcclient.InferenceServerClient
PROTOCOLS = ("http", "grpc")
ALL_MODELS = (*zoo.CONFORMANCE_MODELS, "mlp")

#: The extensions both servers announce (Triton 2.51 also has sequence and cuda_shared_memory).
COMMON_EXTENSIONS = {
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "parameters",
    "schedule_policy",
    "statistics",
    "system_shared_memory",
}

#: The status tritonclient reports for each kind of error, per protocol (Triton's mapping).
HTTP_STATUS = {"INVALID_ARG": "400", "NOT_FOUND": "404", "ALREADY_EXISTS": "400", "INTERNAL": "500"}
GRPC_STATUS = {
    "INVALID_ARG": "StatusCode.INVALID_ARGUMENT",
    "NOT_FOUND": "StatusCode.NOT_FOUND",
    "ALREADY_EXISTS": "StatusCode.ALREADY_EXISTS",
    "INTERNAL": "StatusCode.INTERNAL",
}


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_client(target: Target, protocol: str, **kwargs: Any) -> Client:
    if protocol == "http":
        return httpclient.InferenceServerClient(target.http_url, **kwargs)
    return grpcclient.InferenceServerClient(target.grpc_url, **kwargs)


@pytest.fixture
def client(server: Target, protocol: str) -> Iterator[Client]:
    c = make_client(server, protocol)
    yield c
    c.close()


@pytest.fixture
def control(control_server: Target, protocol: str) -> Iterator[Client]:
    c = make_client(control_server, protocol)
    yield c
    c.close()


def is_http(client: Client) -> bool:
    return isinstance(client, httpclient.InferenceServerClient)


def module_of(client: Client) -> Any:
    return httpclient if is_http(client) else grpcclient


def tensor(
    module: Any, name: str, array: np.ndarray, datatype: str | None = None, *, binary: bool = True
) -> Any:
    t = module.InferInput(name, list(array.shape), datatype or from_numpy(array.dtype))
    if module is httpclient:
        t.set_data_from_numpy(array, binary_data=binary)
    else:
        t.set_data_from_numpy(array)
    return t


def inputs_for(client: Client, arrays: dict[str, np.ndarray], *, binary: bool = True) -> list[Any]:
    module = module_of(client)
    return [tensor(module, name, array, binary=binary) for name, array in arrays.items()]


def requested(client: Client, names: list[str], *, binary: bool = True) -> list[Any]:
    if is_http(client):
        return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    return [grpcclient.InferRequestedOutput(n) for n in names]


def output_names(result: Any) -> list[str]:
    response = result.get_response()
    if isinstance(response, dict):
        return [o["name"] for o in response["outputs"]]
    return [o.name for o in response.outputs]


def response_id(result: Any) -> str:
    response = result.get_response()
    return str(response.get("id", "")) if isinstance(response, dict) else str(response.id)


def add_sub_inputs(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "INPUT0": rng.standard_normal((batch, 16)).astype(np.float32),
        "INPUT1": rng.standard_normal((batch, 16)).astype(np.float32),
    }


def check_add_sub(client: Client, batch: int = 1) -> None:
    """One good add_sub request: the server still serves."""
    arrays = add_sub_inputs(batch, seed=99)
    result = client.infer("add_sub", inputs_for(client, arrays))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])


def sample(datatype: str, shape: tuple[int, ...], *, json_safe: bool) -> np.ndarray:
    """Values that exercise each datatype's range (extremes included); BYTES with non-ASCII
    UTF-8 always, and with bytes that are not UTF-8 at all unless the tensor goes as JSON."""
    n = int(np.prod(shape))
    if datatype == "BYTES":
        values = [b"", b"a", b"hello world", "caf\u00e9 \u03bc\u2192\u4e2d".encode(), b"x" * 100]
        if not json_safe:
            values += [b"\x00\xff\x01", b"\xfe\x80 \x00"]
        return np.array([values[i % len(values)] for i in range(n)], dtype=np.object_).reshape(shape)
    if datatype == "BOOL":
        flags: np.ndarray = (np.arange(n) % 3 == 0).reshape(shape)
        return flags
    dtype = numpy_dtype(datatype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        base = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=dtype)
    else:
        big = 6.0e4 if dtype.itemsize == 2 else 1e30
        base = np.array([-1.5, 0.0, 3.25, 1e-3, big], dtype=dtype)
    return np.resize(base, n).reshape(shape)


def as_bytes_list(array: np.ndarray) -> list[bytes]:
    """BYTES outputs: binary answers give bytes, JSON answers give str; compare as bytes."""
    return [x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)]


def error_of(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def assert_error(err: InferenceServerException, client: Client, kind: str, *phrases: str) -> None:
    want = (HTTP_STATUS if is_http(client) else GRPC_STATUS)[kind]
    assert err.status() == want, f"status {err.status()} (want {want}): {err.message()}"
    for phrase in phrases:
        assert phrase in (err.message() or ""), f"{phrase!r} not in {err.message()!r}"


def stats_of(client: Client, model: str) -> dict[str, int]:
    """A model's statistics as flat ints (gRPC's JSON has int64 as strings and drops zeros)."""
    if is_http(client):
        raw = client.get_inference_statistics(model)
    else:
        raw = client.get_inference_statistics(model, as_json=True)
    (entry,) = raw["model_stats"]
    flat = {k: int(entry.get(k, 0)) for k in ("inference_count", "execution_count", "last_inference")}
    for key, value in entry.get("inference_stats", {}).items():
        flat[f"{key}.count"] = int(value.get("count", 0))
        flat[f"{key}.ns"] = int(value.get("ns", 0))
    return flat


def http_request(
    target: Target, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """A raw HTTP request, for bodies tritonclient cannot produce; returns (status, body)."""
    request = urllib.request.Request(
        f"http://{target.http_url}{path}",
        data=body,
        method="GET" if body is None else "POST",
        headers=headers or {},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), err.read().decode(errors="replace")


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- health and metadata -------------------------------------------------------------------------


def test_live_and_ready(client: Client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in ALL_MODELS:
        assert client.is_model_ready(name), name
        assert client.is_model_ready(name, "1"), name
    assert not client.is_model_ready("no_such_model")
    assert not client.is_model_ready("add_sub", "3")


def test_server_metadata(client: Client, server: Target) -> None:
    meta = client.get_server_metadata() if is_http(client) else client.get_server_metadata(as_json=True)
    assert meta["name"] == ("sonic" if server.is_sonic else "triton")
    assert isinstance(meta["version"], str) and meta["version"]
    missing = COMMON_EXTENSIONS - set(meta["extensions"])
    assert not missing, f"extensions not announced: {sorted(missing)}"


#: Triton's model metadata for these models (its answer, verbatim, over HTTP).
EXPECTED_METADATA: dict[str, dict[str, Any]] = {
    "add_sub": {
        "name": "add_sub",
        "versions": ["1"],
        "platform": "python",
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]},
            {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 16]},
        ],
        "outputs": [
            {"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 16]},
            {"name": "OUTPUT1", "datatype": "FP32", "shape": [-1, 16]},
        ],
    },
    "mlp": {
        "name": "mlp",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 5]}],
    },
    "identity_fp32_nobatch": {
        "name": "identity_fp32_nobatch",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1]}],
    },
    "identity_bytes": {
        "name": "identity_bytes",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [-1, -1]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "BYTES", "shape": [-1, -1]}],
    },
}


def _metadata(client: Client, model: str) -> dict[str, Any]:
    if is_http(client):
        meta: dict[str, Any] = client.get_model_metadata(model)
        return meta
    meta = client.get_model_metadata(model, as_json=True)
    for t in (*meta.get("inputs", []), *meta.get("outputs", [])):
        t["shape"] = [int(d) for d in t["shape"]]  # int64 dims are strings in gRPC's JSON
    return meta


def _config(client: Client, model: str) -> dict[str, Any]:
    if is_http(client):
        config: dict[str, Any] = client.get_model_config(model)
        return config
    config = client.get_model_config(model, as_json=True)["config"]
    return config


@pytest.mark.parametrize("model", sorted(EXPECTED_METADATA))
def test_model_metadata(client: Client, model: str) -> None:
    assert _metadata(client, model) == EXPECTED_METADATA[model]
    assert _metadata(client, model) == _metadata_v1(client, model)


def _metadata_v1(client: Client, model: str) -> dict[str, Any]:
    if is_http(client):
        meta: dict[str, Any] = client.get_model_metadata(model, "1")
        return meta
    meta = client.get_model_metadata(model, "1", as_json=True)
    for t in (*meta.get("inputs", []), *meta.get("outputs", [])):
        t["shape"] = [int(d) for d in t["shape"]]
    return meta


@pytest.mark.parametrize("model", ["add_sub", "mlp", "identity_fp32_nobatch", "sleep"])
def test_model_config(client: Client, model: str) -> None:
    config = _config(client, model)
    spec = zoo.conformance_specs()[model][0] if model != "mlp" else zoo.model_spec("mlp", "python")
    assert config["name"] == model
    assert config["backend"] == "python"
    assert int(config.get("max_batch_size", 0)) == spec.max_batch_size
    assert [i["name"] for i in config["input"]] == [t.name for t in spec.inputs]
    assert [o["name"] for o in config["output"]] == [t.name for t in spec.outputs]
    for got, want in zip(config["input"] + config["output"], spec.inputs + spec.outputs, strict=True):
        assert got["data_type"] == ("TYPE_STRING" if want.datatype == "BYTES" else f"TYPE_{want.datatype}")
        assert [int(d) for d in got["dims"]] == list(want.dims)
    assert ("dynamic_batching" in config) == (spec.dynamic_batching and spec.max_batch_size > 0)
    (group,) = config["instance_group"]
    assert group["kind"] == "KIND_CPU"
    assert int(group["count"]) == spec.instances
    for key, value in spec.parameters.items():
        assert config["parameters"][key] == {"string_value": value}


@pytest.mark.triton
@pytest.mark.parametrize("model", ["add_sub", "mlp", "identity_fp32_nobatch", "identity_bytes", "sleep"])
def test_metadata_and_config_identical_to_triton(
    sonic_server: Target, triton_server: Target, protocol: str, model: str
) -> None:
    """The whole metadata and the whole config (Triton's auto-completed fields included) match."""
    sonic, triton = make_client(sonic_server, protocol), make_client(triton_server, protocol)
    try:
        assert _metadata(sonic, model) == _metadata(triton, model)
        assert _config(sonic, model) == _config(triton, model)
    finally:
        sonic.close()
        triton.close()


def _shape_of(value: Any) -> Any:
    """The structure of a JSON value: keys and element shapes, with types for leaves."""
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape_of(value[0])] if value else []
    return type(value).__name__


@pytest.mark.triton
def test_statistics_and_settings_shaped_as_triton(sonic_server: Target, triton_server: Target) -> None:
    """Over HTTP (JSON, every field present), statistics, trace and log settings have Triton's
    fields; the settings have Triton's defaults."""
    answers = []
    for target in (sonic_server, triton_server):
        c = httpclient.InferenceServerClient(target.http_url)
        try:
            check_add_sub(c, batch=2)
            stats = c.get_inference_statistics("add_sub")
            answers.append((stats, c.get_trace_settings(), c.get_log_settings()))
        finally:
            c.close()
    (sonic_stats, sonic_trace, sonic_log), (triton_stats, triton_trace, triton_log) = answers
    assert _shape_of(sonic_stats) == _shape_of(triton_stats)
    assert sonic_trace == triton_trace
    assert sonic_log == triton_log


def test_repository_index(client: Client) -> None:
    if is_http(client):
        rows = client.get_model_repository_index()
    else:
        rows = client.get_model_repository_index(as_json=True)["models"]
    # Triton lists ready models as exactly name/version/state (no empty "reason").
    assert rows == [{"name": n, "version": "1", "state": "READY"} for n in sorted(ALL_MODELS)]


# -- inference -----------------------------------------------------------------------------------


def _identity_cases() -> list[Any]:
    cases = []
    for datatype in zoo.IDENTITY_DATATYPES:
        cases += [(datatype, "grpc"), (datatype, "http-binary")]
        if datatype != "FP16":  # Triton refuses FP16 as JSON: see test_fp16_as_json
            cases.append((datatype, "http-json"))
    return cases


@pytest.mark.parametrize(("datatype", "mode"), _identity_cases())
def test_identity_every_datatype(server: Target, datatype: str, mode: str) -> None:
    """Every datatype round-trips bit-exactly, binary and JSON, at batch 1, 3 and the max 8."""
    c = make_client(server, "grpc" if mode == "grpc" else "http")
    json_mode = mode == "http-json"
    model = f"identity_{datatype.lower()}"
    try:
        for shape in ((3, 5), (1, 1), (8, 2), (2, 0)):
            x = sample(datatype, shape, json_safe=json_mode)
            outputs = requested(c, ["OUTPUT0"], binary=not json_mode) if mode != "grpc" else None
            result = c.infer(model, inputs_for(c, {"INPUT0": x}, binary=not json_mode), outputs=outputs)
            assert output_names(result) == ["OUTPUT0"]
            if is_http(c):
                out = result.get_output("OUTPUT0")
                assert out["datatype"] == datatype
                assert out["shape"] == list(shape)
                # the answer comes in the form asked for: JSON "data", or binary
                assert ("data" in out) == json_mode, out
            y = result.as_numpy("OUTPUT0")
            assert y.shape == x.shape
            if datatype == "BYTES":
                assert as_bytes_list(y) == as_bytes_list(x)
            else:
                assert y.dtype == x.dtype
                np.testing.assert_array_equal(y, x)
    finally:
        c.close()


def test_identity_without_batch_dimension(client: Client) -> None:
    for n in (1, 9, 0):
        x = np.arange(n, dtype=np.float32)
        result = client.infer("identity_fp32_nobatch", inputs_for(client, {"INPUT0": x}))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


@pytest.mark.parametrize("batch", [1, 4, 8])
def test_add_sub(client: Client, batch: int) -> None:
    arrays = add_sub_inputs(batch, seed=batch)
    result = client.infer("add_sub", inputs_for(client, arrays))
    assert sorted(output_names(result)) == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"])


def test_add_sub_json(server: Target) -> None:
    c = httpclient.InferenceServerClient(server.http_url)
    try:
        arrays = add_sub_inputs(3)
        result = c.infer(
            "add_sub",
            inputs_for(c, arrays, binary=False),
            outputs=requested(c, ["OUTPUT0", "OUTPUT1"], binary=False),
        )
        for name in ("OUTPUT0", "OUTPUT1"):
            assert "data" in result.get_output(name)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"], rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"], rtol=1e-6)
    finally:
        c.close()


def test_mlp_matches_in_process_onnxruntime(client: Client) -> None:
    x = np.random.default_rng(11).standard_normal((7, 16)).astype(np.float32)
    session = ort.InferenceSession(zoo.mlp_onnx(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": x})
    result = client.infer("mlp", inputs_for(client, {"input": x}))
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=0, atol=1e-5)


def test_requested_output_subset(client: Client) -> None:
    arrays = add_sub_inputs(2)
    for names in (["OUTPUT1"], ["OUTPUT0"], ["OUTPUT1", "OUTPUT0"]):
        result = client.infer("add_sub", inputs_for(client, arrays), outputs=requested(client, names))
        assert sorted(output_names(result)) == sorted(names)
        if "OUTPUT1" in names:
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"])
        if "OUTPUT0" not in names:
            assert result.as_numpy("OUTPUT0") is None


def test_outputs_come_in_model_order(client: Client) -> None:
    """Triton lists the outputs in the order the model produced them, not the request's."""
    arrays = add_sub_inputs(1)
    result = client.infer(
        "add_sub", inputs_for(client, arrays), outputs=requested(client, ["OUTPUT1", "OUTPUT0"])
    )
    assert output_names(result) == ["OUTPUT0", "OUTPUT1"]


def test_mixed_binary_and_json_outputs(server: Target) -> None:
    c = httpclient.InferenceServerClient(server.http_url)
    try:
        arrays = add_sub_inputs(2)
        outputs = [
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
        ]
        result = c.infer("add_sub", inputs_for(c, arrays), outputs=outputs)
        assert "binary_data_size" in result.get_output("OUTPUT0")["parameters"]
        assert "data" in result.get_output("OUTPUT1")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"], rtol=1e-6)
    finally:
        c.close()


def test_classification(client: Client) -> None:
    """Triton's classification extension: top-k 'value:index' strings per batch row."""
    x = (np.arange(32, dtype=np.float32) / 32).reshape(2, 16)
    outputs = [module_of(client).InferRequestedOutput("output", class_count=2)]
    result = client.infer("mlp", inputs_for(client, {"input": x}), outputs=outputs)
    session = ort.InferenceSession(zoo.mlp_onnx(), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input": x})
    got = result.as_numpy("output")
    assert got.shape == (2, 2)
    for row, prob in zip(got, probs, strict=True):
        top = np.argsort(-prob, kind="stable")[:2]
        assert [s.decode() for s in row] == [f"{prob[i]:f}:{i}" for i in top]


def test_request_id_echoed(client: Client) -> None:
    for rid in ("req-1", "\u00e9v\u00e9nement 42", "x" * 200):
        result = client.infer("add_sub", inputs_for(client, add_sub_inputs(1)), request_id=rid)
        assert response_id(result) == rid
    result = client.infer("add_sub", inputs_for(client, add_sub_inputs(1)))
    assert response_id(result) == ""


def test_response_names_model_and_version(client: Client) -> None:
    for version in ("", "1"):
        result = client.infer("add_sub", inputs_for(client, add_sub_inputs(1)), model_version=version)
        response = result.get_response()
        if is_http(client):
            assert (response["model_name"], response["model_version"]) == ("add_sub", "1")
        else:
            assert (response.model_name, response.model_version) == ("add_sub", "1")


def test_sync_client_async_infer(server: Target, protocol: str) -> None:
    """tritonclient's own async_infer: HTTP (greenlets, concurrency 8) and gRPC (callbacks)."""
    n = 24
    arrays = [add_sub_inputs(1, seed=i) for i in range(n)]
    if protocol == "http":
        c = httpclient.InferenceServerClient(server.http_url, concurrency=8)
        try:
            pending = [
                c.async_infer("add_sub", inputs_for(c, a), request_id=f"r{i}") for i, a in enumerate(arrays)
            ]
            results = [p.get_result() for p in pending]
        finally:
            c.close()
    else:
        g = grpcclient.InferenceServerClient(server.grpc_url)
        done: queue.Queue[tuple[Any, Any]] = queue.Queue()
        try:
            for i, a in enumerate(arrays):
                g.async_infer(
                    "add_sub",
                    inputs_for(g, a),
                    request_id=f"r{i}",
                    callback=lambda result, error: done.put((result, error)),
                )
            answers = [done.get(timeout=30) for _ in range(n)]
        finally:
            g.close()
        assert [e for _, e in answers if e is not None] == []
        results = sorted((r for r, _ in answers), key=lambda r: int(response_id(r)[1:]))
    for i, (a, r) in enumerate(zip(arrays, results, strict=True)):
        assert response_id(r) == f"r{i}"
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a["INPUT0"] + a["INPUT1"])


async def _aio_many(target: Target, protocol: str, n: int) -> list[tuple[int, Any]]:
    module: Any = httpclient if protocol == "http" else grpcclient
    if protocol == "http":
        c: Any = httpaio.InferenceServerClient(target.http_url, conn_limit=16)
    else:
        c = grpcaio.InferenceServerClient(target.grpc_url)
    try:
        assert await c.is_server_ready()
        assert await c.is_model_ready("add_sub")

        async def one(i: int) -> tuple[int, Any]:
            a = add_sub_inputs(1 + i % 8, seed=i)
            result = await c.infer("add_sub", [tensor(module, k, v) for k, v in a.items()], request_id=str(i))
            return i, result

        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await c.close()


def test_aio_clients_many_concurrent_requests(server: Target, protocol: str) -> None:
    n = 64
    results = asyncio.run(_aio_many(server, protocol, n))
    assert len(results) == n
    for i, result in results:
        a = add_sub_inputs(1 + i % 8, seed=i)
        assert response_id(result) == str(i)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a["INPUT0"] + a["INPUT1"])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a["INPUT0"] - a["INPUT1"])


def test_grpc_stream(server: Target) -> None:
    """start_stream / async_stream_infer: every request answered, ids matching, one bad
    request in the middle answered with its error while the stream goes on."""
    g = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    n = 10
    try:
        g.start_stream(callback=lambda result, error: answers.put((result, error)))
        for i in range(n):
            g.async_stream_infer("add_sub", inputs_for(g, add_sub_inputs(1, seed=i)), request_id=f"s{i}")
        bad = inputs_for(
            g, {"INPUT0": np.zeros((1, 15), np.float32), "INPUT1": np.zeros((1, 15), np.float32)}
        )
        g.async_stream_infer("add_sub", bad, request_id="bad")
        for i in range(n, 2 * n):
            g.async_stream_infer("add_sub", inputs_for(g, add_sub_inputs(1, seed=i)), request_id=f"s{i}")
        got = [answers.get(timeout=30) for _ in range(2 * n + 1)]
        g.stop_stream()
    finally:
        g.close()
    errors = [e for r, e in got if e is not None]
    assert len(errors) == 1
    assert "unexpected shape for input" in errors[0].message()
    results = {response_id(r): r for r, e in got if e is None}
    assert sorted(results) == sorted(f"s{i}" for i in range(2 * n))
    for i in range(2 * n):
        a = add_sub_inputs(1, seed=i)
        np.testing.assert_array_equal(results[f"s{i}"].as_numpy("OUTPUT1"), a["INPUT0"] - a["INPUT1"])


async def _aio_stream(target: Target, n: int) -> list[tuple[Any, Any]]:
    c = grpcaio.InferenceServerClient(target.grpc_url)

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for i in range(n):
            yield {
                "model_name": "add_sub",
                "inputs": [tensor(grpcclient, k, v) for k, v in add_sub_inputs(2, seed=i).items()],
                "request_id": f"a{i}",
            }

    out: list[tuple[Any, Any]] = []
    try:
        async for result, error in c.stream_infer(requests()):
            out.append((result, error))
            if len(out) == n:
                break
    finally:
        await c.close()
    return out


def test_grpc_aio_stream(server: Target) -> None:
    n = 16
    got = asyncio.run(_aio_stream(server, n))
    assert [e for _, e in got if e is not None] == []
    results = {response_id(r): r for r, _ in got}
    assert sorted(results) == sorted(f"a{i}" for i in range(n))
    for i in range(n):
        a = add_sub_inputs(2, seed=i)
        np.testing.assert_array_equal(results[f"a{i}"].as_numpy("OUTPUT0"), a["INPUT0"] + a["INPUT1"])


# -- compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_algorithm", "response_algorithm"),
    [("gzip", "gzip"), ("deflate", "deflate"), ("gzip", "deflate"), (None, "gzip"), ("deflate", None)],
)
def test_http_compression(
    server: Target, request_algorithm: str | None, response_algorithm: str | None
) -> None:
    c = httpclient.InferenceServerClient(server.http_url)
    try:
        arrays = add_sub_inputs(8, seed=5)
        for binary in (True, False):
            result = c.infer(
                "add_sub",
                inputs_for(c, arrays, binary=binary),
                outputs=requested(c, ["OUTPUT0", "OUTPUT1"], binary=binary),
                request_compression_algorithm=request_algorithm,
                response_compression_algorithm=response_algorithm,
            )
            np.testing.assert_allclose(
                result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"], rtol=1e-6
            )
            np.testing.assert_allclose(
                result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"], rtol=1e-6
            )
        x = sample("BYTES", (4, 3), json_safe=False)
        result = c.infer(
            "identity_bytes",
            inputs_for(c, {"INPUT0": x}),
            request_compression_algorithm=request_algorithm,
            response_compression_algorithm=response_algorithm,
        )
        assert as_bytes_list(result.as_numpy("OUTPUT0")) == as_bytes_list(x)
    finally:
        c.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_grpc_compression(server: Target, algorithm: str) -> None:
    g = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        arrays = add_sub_inputs(8, seed=6)
        result = g.infer("add_sub", inputs_for(g, arrays), compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])
    finally:
        g.close()


# -- statistics ----------------------------------------------------------------------------------


def test_statistics_count_exactly_the_requests_sent(client: Client) -> None:
    model, n, batch = "identity_int32", 5, 2
    before = stats_of(client, model)
    for i in range(n):
        x = np.full((batch, 3), i, np.int32)
        client.infer(model, inputs_for(client, {"INPUT0": x}))
    after = stats_of(client, model)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["success.count"] == n
    assert delta["fail.count"] == 0
    assert delta["inference_count"] == n * batch  # counts batch elements
    assert 1 <= delta["execution_count"] <= n
    assert delta["queue.count"] == n
    assert delta["compute_infer.count"] == n
    assert delta["compute_input.count"] == n
    assert delta["compute_output.count"] == n
    assert delta["success.ns"] > 0
    assert delta["queue.ns"] > 0
    assert delta["compute_infer.ns"] > 0
    # last_inference: the server's clock, in ms since the epoch
    assert abs(after["last_inference"] / 1000 - time.time()) < 600


def test_statistics_time_every_phase(client: Client) -> None:
    """Triton times compute input (handing the tensors to the model) and compute output
    (taking its results) separately from compute infer; perf_analyzer reports all three."""
    before = stats_of(client, "add_sub")
    for _ in range(3):
        check_add_sub(client, batch=4)
    after = stats_of(client, "add_sub")
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert after[f"{phase}.ns"] > before[f"{phase}.ns"], phase


def test_statistics_not_counted_for_invalid_requests(client: Client) -> None:
    """Requests refused before they reach the model count neither as success nor as failure."""
    before = stats_of(client, "add_sub")
    error_of(lambda: client.infer("add_sub", inputs_for(client, {"INPUT0": np.zeros((1, 16), np.float32)})))
    after = stats_of(client, "add_sub")
    assert after["success.count"] == before["success.count"]
    assert after["inference_count"] == before["inference_count"]


def test_statistics_of_all_models_and_errors(client: Client) -> None:
    if is_http(client):
        every = client.get_inference_statistics()
    else:
        every = client.get_inference_statistics(as_json=True)
    assert sorted(s["name"] for s in every["model_stats"]) == sorted(ALL_MODELS)
    assert all(s["version"] == "1" for s in every["model_stats"])
    err = error_of(lambda: client.get_inference_statistics("no_such_model"))
    assert_error(err, client, "INVALID_ARG", "requested model 'no_such_model' is not available")


# -- metrics -------------------------------------------------------------------------------------


#: Triton's metrics with per-model labels, and their types.
MODEL_METRICS = {
    "nv_inference_request_success": "counter",
    "nv_inference_count": "counter",
    "nv_inference_exec_count": "counter",
    "nv_inference_request_duration_us": "counter",
    "nv_inference_queue_duration_us": "counter",
    "nv_inference_compute_input_duration_us": "counter",
    "nv_inference_compute_infer_duration_us": "counter",
    "nv_inference_compute_output_duration_us": "counter",
    "nv_inference_pending_request_count": "gauge",
}


def test_metrics_have_triton_names(server: Target) -> None:
    g = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        check_add_sub(g)
    finally:
        g.close()
    metrics = scrape_metrics(server.metrics_url)
    for name, kind in MODEL_METRICS.items():
        assert metrics.has(name, model="add_sub", version="1"), name
        # the TYPE line names the metric itself (no "_total" suffix), as Triton writes it
        assert metrics.types.get(name) == kind, (name, metrics.types.get(name))
    assert metrics.value("nv_inference_request_success", model="add_sub", version="1") >= 1
    assert metrics.value("nv_inference_count", model="add_sub", version="1") >= 1
    assert metrics.types.get("nv_inference_request_failure") == "counter"
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert metrics.has("nv_inference_request_failure", model="add_sub", reason=reason, version="1")
    assert metrics.types.get("nv_cpu_utilization") == "gauge"
    assert 0.0 <= metrics.value("nv_cpu_utilization") <= 1.0


# -- errors --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    model: str
    arrays: dict[str, np.ndarray]
    kind: str  # key of HTTP_STATUS / GRPC_STATUS
    phrases: tuple[str, ...]
    version: str = ""
    outputs: tuple[str, ...] = ()
    request_id: str = ""


_ONE = np.ones((1, 16), np.float32)
ERROR_CASES = {
    "unknown_model": ErrorCase(
        "no_such_model",
        {"INPUT0": _ONE},
        "NOT_FOUND",
        ("Request for unknown model: 'no_such_model' is not found",),
    ),
    "unknown_version": ErrorCase(
        "add_sub",
        {"INPUT0": _ONE, "INPUT1": _ONE},
        "NOT_FOUND",
        ("Request for unknown model: 'add_sub' version 3 is not found",),
        version="3",
    ),
    "wrong_shape": ErrorCase(
        "add_sub",
        {"INPUT0": np.ones((1, 15), np.float32), "INPUT1": _ONE},
        "INVALID_ARG",
        (
            "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'add_sub'. "
            "Expected [-1,16], got [1,15]. NOTE: Setting a non-zero max_batch_size",
        ),
    ),
    "wrong_shape_nobatch": ErrorCase(
        "identity_fp32_nobatch",
        {"INPUT0": np.ones((2, 3), np.float32)},
        "INVALID_ARG",
        ("unexpected shape for input 'INPUT0' for model 'identity_fp32_nobatch'. Expected [-1], got [2,3]",),
    ),
    "wrong_datatype": ErrorCase(
        "add_sub",
        {"INPUT0": np.ones((1, 16), np.float64), "INPUT1": _ONE},
        "INVALID_ARG",
        (
            "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'FP64', "
            "but model 'add_sub' expects 'FP32'",
        ),
    ),
    "missing_input": ErrorCase(
        "add_sub",
        {"INPUT0": _ONE},
        "INVALID_ARG",
        (
            "expected 2 inputs but got 1 inputs for model 'add_sub'",
            "missing required input(s) ['INPUT1']",
        ),
    ),
    "unknown_input": ErrorCase(
        "add_sub",
        {"INPUT0": _ONE, "INPUTX": _ONE},
        "INVALID_ARG",
        ("unexpected inference input 'INPUTX' for model 'add_sub'",),
    ),
    "unknown_output": ErrorCase(
        "add_sub",
        {"INPUT0": _ONE, "INPUT1": _ONE},
        "INVALID_ARG",
        ("unexpected inference output 'OUTPUTX' for model 'add_sub'",),
        outputs=("OUTPUT0", "OUTPUTX"),
    ),
    "batch_too_large": ErrorCase(
        "add_sub",
        {"INPUT0": np.ones((9, 16), np.float32), "INPUT1": np.ones((9, 16), np.float32)},
        "INVALID_ARG",
        ("[request id: <id_unknown>] inference request batch-size must be <= 8 for 'add_sub'",),
    ),
    "batch_mismatch": ErrorCase(
        "add_sub",
        {"INPUT0": np.ones((2, 16), np.float32), "INPUT1": np.ones((3, 16), np.float32)},
        "INVALID_ARG",
        ("batch size does not match other inputs for 'add_sub'",),
    ),
    "request_id_in_message": ErrorCase(
        "add_sub",
        {"INPUT0": np.ones((1, 15), np.float32), "INPUT1": _ONE},
        "INVALID_ARG",
        ("[request id: bad-7] unexpected shape for input 'INPUT0'",),
        request_id="bad-7",
    ),
    "wrong_datatype_bytes": ErrorCase(
        "identity_int32",
        {"INPUT0": np.array([[b"1", b"2"]], dtype=np.object_)},
        "INVALID_ARG",
        ("inference input 'INPUT0' data-type is 'BYTES', but model 'identity_int32' expects 'INT32'",),
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error(client: Client, case: str) -> None:
    """Same status as Triton, Triton's key phrase in the message; the server serves on."""
    e = ERROR_CASES[case]
    inputs = inputs_for(client, e.arrays)
    outputs = requested(client, list(e.outputs)) if e.outputs else None
    err = error_of(
        lambda: client.infer(
            e.model, inputs, model_version=e.version, outputs=outputs, request_id=e.request_id
        )
    )
    assert_error(err, client, e.kind, *e.phrases)
    check_add_sub(client)


def test_duplicate_input(client: Client) -> None:
    inputs = inputs_for(client, {"INPUT0": _ONE}) * 2
    err = error_of(lambda: client.infer("add_sub", inputs))
    assert_error(err, client, "INVALID_ARG", "input 'INPUT0' already exists in request")
    check_add_sub(client)


def test_metadata_errors(client: Client) -> None:
    for call, phrase in (
        (lambda: client.get_model_metadata("no_such_model"), "'no_such_model' is not found"),
        (lambda: client.get_model_metadata("add_sub", "3"), "'add_sub' version 3 is not found"),
        (lambda: client.get_model_config("no_such_model"), "'no_such_model' is not found"),
    ):
        assert_error(error_of(call), client, "NOT_FOUND", "Request for unknown model: " + phrase)


def test_many_bad_requests_then_good(client: Client) -> None:
    """A burst of every kind of bad request does not take the server down or disturb it."""
    for _ in range(3):
        for case in ERROR_CASES.values():
            inputs = [tensor(module_of(client), k, v) for k, v in case.arrays.items()]
            with contextlib.suppress(InferenceServerException):
                client.infer(case.model, inputs, model_version=case.version)
    check_add_sub(client, batch=8)
    assert client.is_server_ready()


def test_http_unknown_path_and_model_ready(server: Target) -> None:
    assert http_request(server, "/v2/health/live")[0] == 200
    assert http_request(server, "/v2/health/ready")[0] == 200
    assert http_request(server, "/v2/models/add_sub/ready")[0] == 200
    assert http_request(server, "/v2/models/add_sub/versions/1/ready")[0] == 200
    # Triton answers 400 for a model that is not ready or does not exist
    assert http_request(server, "/v2/models/no_such_model/ready")[0] == 400
    assert http_request(server, "/v2/models/add_sub/versions/3/ready")[0] == 400
    assert http_request(server, "/v2/no_such_endpoint")[0] == 404


def test_http_fp16_as_json(server: Target) -> None:
    body = b'{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"FP16","data":[1.5,2]}]}'
    status, text = http_request(server, "/v2/models/identity_fp16/infer", body)
    assert status == 400, text
    assert "receiving FP16 data via JSON is not supported" in text


def test_http_unknown_datatype(server: Target) -> None:
    body = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FOO","data":[1]}]}'
    status, text = http_request(server, "/v2/models/identity_fp32/infer", body)
    assert status == 400, text
    assert "datatype" in text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(
            b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":[0]},'
            b'{"name":"INPUT1","shape":[1,16],"datatype":"FP32","data":[0]}]}',
            id="data-shorter-than-shape",
        ),
        pytest.param(
            b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":[true]},'
            b'{"name":"INPUT1","shape":[1,16],"datatype":"FP32","data":[0]}]}',
            id="bool-for-fp32",
        ),
    ],
)
def test_http_malformed_body(server: Target, body: bytes) -> None:
    """Deliberate difference: Triton answers 500 (its JSON parser's errors are not mapped to a
    client error); sonic answers 400 with a message saying what was wrong, since the body, not
    the server, is at fault. tritonclient raises InferenceServerException for both."""
    status, text = http_request(server, "/v2/models/add_sub/infer", body)
    assert status == (400 if server.is_sonic else 500), text
    assert json.loads(text)["error"]
    c = httpclient.InferenceServerClient(server.http_url)
    try:
        check_add_sub(c)
    finally:
        c.close()


# -- system shared memory ------------------------------------------------------------------------


@contextlib.contextmanager
def _region(name: str, byte_size: int) -> Iterator[tuple[Any, str]]:
    key = f"/sonic_ct_{name}"
    handle = shm.create_shared_memory_region(name, key, byte_size)
    try:
        yield handle, key
    finally:
        shm.destroy_shared_memory_region(handle)


def _regions(client: Client) -> dict[str, dict[str, Any]]:
    if is_http(client):
        return {r["name"]: r for r in client.get_system_shared_memory_status()}
    status = client.get_system_shared_memory_status(as_json=True)
    return dict(status.get("regions", {}))


def test_system_shared_memory(client: Client) -> None:
    module = module_of(client)
    tag = uuid.uuid4().hex[:8]
    arrays = add_sub_inputs(2, seed=3)
    nbytes = arrays["INPUT0"].nbytes
    in_name, out_name = f"in_{tag}", f"out_{tag}"
    with _region(in_name, 2 * nbytes) as (h_in, in_key), _region(out_name, 2 * nbytes) as (h_out, out_key):
        shm.set_shared_memory_region(h_in, [arrays["INPUT0"], arrays["INPUT1"]])
        client.register_system_shared_memory(in_name, in_key, 2 * nbytes)
        client.register_system_shared_memory(out_name, out_key, 2 * nbytes)
        try:
            regions = _regions(client)
            assert regions[in_name]["key"] == in_key
            assert int(regions[in_name]["byte_size"]) == 2 * nbytes
            assert int(regions[out_name]["byte_size"]) == 2 * nbytes
            (only,) = _regions_named(client, in_name)
            assert only["name"] == in_name

            inputs = []
            for i, name in enumerate(("INPUT0", "INPUT1")):
                t = module.InferInput(name, [2, 16], "FP32")
                t.set_shared_memory(in_name, nbytes, offset=i * nbytes)
                inputs.append(t)
            outputs = []
            for i, name in enumerate(("OUTPUT0", "OUTPUT1")):
                o = module.InferRequestedOutput(name)
                o.set_shared_memory(out_name, nbytes, offset=i * nbytes)
                outputs.append(o)
            result = client.infer("add_sub", inputs, outputs=outputs, request_id="shm-1")
            assert response_id(result) == "shm-1"
            # The data is in the region, not in the response; Triton's answer names each such
            # output with its datatype and shape only (no parameters echoed, no data).
            if is_http(client):
                for name in ("OUTPUT0", "OUTPUT1"):
                    assert result.get_output(name) == {"name": name, "datatype": "FP32", "shape": [2, 16]}
            else:
                response = result.get_response()
                assert [(o.name, list(o.shape), dict(o.parameters)) for o in response.outputs] == [
                    ("OUTPUT0", [2, 16], {}),
                    ("OUTPUT1", [2, 16], {}),
                ]
                assert list(response.raw_output_contents) in ([], [b"", b""])
            sums = shm.get_contents_as_numpy(h_out, np.float32, [2, 16], offset=0)
            diffs = shm.get_contents_as_numpy(h_out, np.float32, [2, 16], offset=nbytes)
            np.testing.assert_array_equal(sums, arrays["INPUT0"] + arrays["INPUT1"])
            np.testing.assert_array_equal(diffs, arrays["INPUT0"] - arrays["INPUT1"])

            # inputs from the region, outputs in the response
            result = client.infer("add_sub", inputs)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"])

            # registering the same name twice
            err = error_of(lambda: client.register_system_shared_memory(in_name, in_key, 2 * nbytes))
            assert_error(
                err, client, "ALREADY_EXISTS", f"shared memory region '{in_name}' already in manager"
            )

            client.unregister_system_shared_memory(in_name)
            assert in_name not in _regions(client)
            assert out_name in _regions(client)
            err = error_of(lambda: client.infer("add_sub", inputs))
            assert_error(err, client, "NOT_FOUND", f"Unable to find shared memory region: '{in_name}'")
        finally:
            client.unregister_system_shared_memory(in_name)
            client.unregister_system_shared_memory(out_name)
        assert in_name not in _regions(client)
        assert out_name not in _regions(client)
    check_add_sub(client)


def _regions_named(client: Client, name: str) -> list[dict[str, Any]]:
    if is_http(client):
        return list(client.get_system_shared_memory_status(name))
    return list(client.get_system_shared_memory_status(name, as_json=True)["regions"].values())


def test_shm_status_of_unknown_region(client: Client) -> None:
    name = f"nope_{uuid.uuid4().hex[:8]}"
    err = error_of(lambda: client.get_system_shared_memory_status(name))
    assert_error(err, client, "NOT_FOUND", f"Unable to find system shared memory region: '{name}'")
    client.unregister_system_shared_memory(name)  # unregistering an unknown region is no error


def test_shm_register_missing_key(client: Client) -> None:
    tag = uuid.uuid4().hex[:8]
    key = f"/sonic_ct_missing_{tag}"
    err = error_of(lambda: client.register_system_shared_memory(f"missing_{tag}", key, 64))
    # Triton: INTERNAL (500), "Unable to open shared memory region: '<key>'"
    assert_error(err, client, "INTERNAL", f"Unable to open shared memory region: '{key}'")
    check_add_sub(client)


@pytest.fixture
def region(client: Client) -> Iterator[str]:
    """A registered 128-byte system shared-memory region; its name."""
    name = f"r_{uuid.uuid4().hex[:8]}"
    with _region(name, 128) as (_, key):
        client.register_system_shared_memory(name, key, 128)
        try:
            yield name
        finally:
            client.unregister_system_shared_memory(name)


def _shm_input(client: Client, region: str, byte_size: int, offset: int = 0) -> list[Any]:
    x = module_of(client).InferInput("INPUT0", [1, 16], "FP32")
    x.set_shared_memory(region, byte_size, offset=offset)
    return [x, tensor(module_of(client), "INPUT1", _ONE)]


def test_shm_input_out_of_bounds(client: Client, region: str) -> None:
    err = error_of(lambda: client.infer("add_sub", _shm_input(client, region, 64, offset=100)))
    assert_error(
        err, client, "INVALID_ARG", f"Invalid offset + byte size for shared memory region: '{region}'"
    )
    check_add_sub(client)


def test_shm_input_size_mismatch(client: Client, region: str) -> None:
    err = error_of(lambda: client.infer("add_sub", _shm_input(client, region, 32)))
    assert_error(
        err,
        client,
        "INVALID_ARG",
        "input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected 64, got 32",
    )
    check_add_sub(client)


def test_shm_output_region_too_small(client: Client, region: str) -> None:
    o = module_of(client).InferRequestedOutput("OUTPUT0")
    o.set_shared_memory(region, 16)
    inputs = inputs_for(client, {"INPUT0": _ONE, "INPUT1": _ONE})
    err = error_of(lambda: client.infer("add_sub", inputs, outputs=[o]))
    # Triton finds this out after running the model and reports it as INTERNAL (500)
    assert_error(
        err,
        client,
        "INTERNAL",
        "shared memory size specified with the request for output 'OUTPUT0' (16 bytes) "
        "should be at least 64 bytes to hold the results",
    )
    check_add_sub(client)


# -- model control (explicit mode, on the control servers) ---------------------------------------


def _index(client: Client) -> dict[str, dict[str, Any]]:
    if is_http(client):
        rows = client.get_model_repository_index()
    else:
        rows = client.get_model_repository_index(as_json=True)["models"]
    return {r["name"]: r for r in rows}


ADD_SUB_CONFIG = {
    "name": "add_sub",
    "backend": "python",
    "max_batch_size": 8,
    "input": [
        {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]},
        {"name": "INPUT1", "data_type": "TYPE_FP32", "dims": [16]},
    ],
    "output": [
        {"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [16]},
        {"name": "OUTPUT1", "data_type": "TYPE_FP32", "dims": [16]},
    ],
}


def test_control_index_lists_loaded_and_unloaded(control: Client) -> None:
    index = _index(control)
    assert sorted(index) == ["add_sub", "broken", "identity_fp32"]
    assert index["add_sub"] == {"name": "add_sub", "version": "1", "state": "READY"}
    assert index["identity_fp32"] == {"name": "identity_fp32", "version": "1", "state": "READY"}
    assert index["broken"]["name"] == "broken"
    assert index["broken"].get("state", "") in ("", "UNAVAILABLE")


def test_unload_and_load_again(control: Client) -> None:
    assert control.is_model_ready("add_sub")
    control.unload_model("add_sub")
    try:
        assert wait_for(lambda: not control.is_model_ready("add_sub"))
        err = error_of(lambda: check_add_sub(control))
        assert_error(
            err, control, "NOT_FOUND", "Request for unknown model: 'add_sub' has no available versions"
        )
        err = error_of(lambda: control.get_model_metadata("add_sub"))
        assert_error(err, control, "NOT_FOUND", "'add_sub' has no available versions")
        # the other model is untouched
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        result = control.infer("identity_fp32", inputs_for(control, {"INPUT0": x}))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
        assert wait_for(lambda: _index(control)["add_sub"].get("state") == "UNAVAILABLE")
        # Triton keeps the version of the unloaded model in the index
        assert _index(control)["add_sub"] == {
            "name": "add_sub",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }
    finally:
        control.load_model("add_sub")
    assert control.is_model_ready("add_sub")
    assert _index(control)["add_sub"] == {"name": "add_sub", "version": "1", "state": "READY"}
    check_add_sub(control, batch=8)


def test_load_with_config_override(control: Client) -> None:
    smaller = dict(ADD_SUB_CONFIG, max_batch_size=4)
    control.load_model("add_sub", config=json.dumps(smaller))
    try:
        assert control.is_model_ready("add_sub")
        assert int(_config(control, "add_sub")["max_batch_size"]) == 4
        check_add_sub(control, batch=4)
        arrays = add_sub_inputs(5)
        err = error_of(lambda: control.infer("add_sub", inputs_for(control, arrays)))
        assert_error(err, control, "INVALID_ARG", "inference request batch-size must be <= 4 for 'add_sub'")
    finally:
        # Restore with the original config as an override: after a load with an override,
        # Triton keeps serving that config on a plain load() while the files are unchanged.
        control.load_model("add_sub", config=json.dumps(ADD_SUB_CONFIG))
    assert int(_config(control, "add_sub")["max_batch_size"]) == 8
    check_add_sub(control, batch=8)


def test_load_model_not_in_repository(control: Client) -> None:
    err = error_of(lambda: control.load_model("no_such_model"))
    assert_error(err, control, "INTERNAL", "failed to load 'no_such_model'")
    check_add_sub(control)


def test_load_invalid_config_override(control: Client) -> None:
    """Triton answers INTERNAL (500) for an override that is not JSON; the model serves on."""
    err = error_of(lambda: control.load_model("add_sub", config="{not json"))
    assert_error(err, control, "INTERNAL", "failed to load 'add_sub'")
    assert control.is_model_ready("add_sub")
    check_add_sub(control)


def test_load_model_whose_config_does_not_parse(control: Client) -> None:
    """Triton answers INTERNAL (500): the repository poll fails before any version loads."""
    err = error_of(lambda: control.load_model("broken"))
    assert_error(err, control, "INTERNAL", "failed to load 'broken'")
    assert not control.is_model_ready("broken")
    check_add_sub(control)


def test_unload_of_unknown_model_is_not_an_error(control: Client) -> None:
    control.unload_model("no_such_model")  # Triton: success, nothing to do
    assert control.is_model_ready("add_sub")
