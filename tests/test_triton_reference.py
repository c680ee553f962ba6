"""The reference models, served by NVIDIA's own Triton, answer what they should.

This proves the zoo's python-backend models (conformance set + the onnxruntime MLP/CNN) right
under the real server, through NVIDIA's own clients (tritonclient http and grpc, and
perf_analyzer), so later differential tests of sonic against Triton can trust them. It also
pins a few of Triton's error answers (status codes and message texts) that a compatible server
reproduces.
"""

from __future__ import annotations

import queue
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sonic import zoo
from sonic.protocol.datatypes import from_numpy, numpy_dtype
from triton_ref import (
    Endpoint,
    parse_perf_csv,
    run_perf_analyzer,
    run_triton,
    triton_available,
    unavailable_reason,
)

pytestmark = pytest.mark.triton

SLEEP_MS = 50
PROTOCOLS = ("http", "grpc")


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    if not triton_available():
        pytest.skip(f"NVIDIA Triton unavailable: {unavailable_reason()}")
    repo = tmp_path_factory.mktemp("triton-repo")
    zoo.write_conformance_repository(repo, sleep_delay_ms=SLEEP_MS)
    zoo.write_triton_python_repository(repo, models=("mlp", "cnn"))
    with run_triton(repo, timeout=120) as endpoint:
        yield endpoint


Client = Any  # httpclient.InferenceServerClient | grpcclient.InferenceServerClient


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(triton: Endpoint, protocol: str) -> Iterator[Client]:
    if protocol == "http":
        c: Client = httpclient.InferenceServerClient(triton.http_url)
    else:
        c = grpcclient.InferenceServerClient(triton.grpc_url)
    yield c
    c.close()


def _infer(
    client: Client,
    model: str,
    inputs: dict[str, np.ndarray],
    *,
    binary: bool = True,
) -> dict[str, np.ndarray]:
    """One inference with tritonclient (either protocol); returns the outputs by name."""
    http = isinstance(client, httpclient.InferenceServerClient)
    module: Any = httpclient if http else grpcclient
    tensors = []
    for name, array in inputs.items():
        dtype = "BYTES" if array.dtype == object else _v2(array.dtype)
        tensor = module.InferInput(name, list(array.shape), dtype)
        if http:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors)
    response = result.get_response()
    names = [o["name"] for o in response["outputs"]] if http else [o.name for o in response.outputs]
    return {name: result.as_numpy(name) for name in names}


def _v2(dtype: np.dtype[Any]) -> str:
    return from_numpy(dtype)


def _sample(datatype: str, shape: tuple[int, ...], *, json_safe: bool) -> np.ndarray:
    """Values that exercise each datatype's range (extremes included)."""
    n = int(np.prod(shape))
    if datatype == "BYTES":
        values = [b"", b"a", b"hello world", "caf\u00e9".encode(), b"x" * 100]
        if not json_safe:
            values += [b"\x00\xff\x01", b"\xfe"]
        return np.array([values[i % len(values)] for i in range(n)], dtype=object).reshape(shape)
    if datatype == "BOOL":
        flags: np.ndarray = (np.arange(n) % 3 == 0).reshape(shape)
        return flags
    dtype = numpy_dtype(datatype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype.str)
        base = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=dtype)
    else:
        base = np.array([-1.5, 0.0, 3.25, 1e-3, 6.0e4 if dtype.itemsize == 2 else 1e30], dtype)
    return np.resize(base, n).reshape(shape)


def test_server_and_every_model_ready(client: Client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in (*zoo.CONFORMANCE_MODELS, "mlp", "cnn"):
        assert client.is_model_ready(name), name
    assert not client.is_model_ready("no_such_model")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_onnx_models_match_in_process_onnxruntime(client: Client, name: str) -> None:
    onnx_bytes = zoo.mlp_onnx() if name == "mlp" else zoo.cnn_onnx()
    dims = (16,) if name == "mlp" else (1, 48, 48)
    x = np.random.default_rng(11).standard_normal((7, *dims)).astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": x})
    out = _infer(client, name, {"input": x})
    assert set(out) == {"output"}
    assert out["output"].shape == expected.shape
    np.testing.assert_allclose(out["output"], expected, rtol=0, atol=1e-5)


def _identity_cases() -> list[tuple[str, str]]:
    cases = []
    for datatype in zoo.IDENTITY_DATATYPES:
        cases += [(datatype, "grpc"), (datatype, "http-binary")]
        if datatype != "FP16":  # Triton refuses FP16 as JSON (see test_error_answers)
            cases.append((datatype, "http-json"))
    return cases


@pytest.mark.parametrize(("datatype", "mode"), _identity_cases())
def test_identity_returns_input(triton: Endpoint, datatype: str, mode: str) -> None:
    if mode == "grpc":
        c: Client = grpcclient.InferenceServerClient(triton.grpc_url)
    else:
        c = httpclient.InferenceServerClient(triton.http_url)
    json_mode = mode == "http-json"
    try:
        for shape in ((3, 5), (1, 1), (8, 2)):
            x = _sample(datatype, shape, json_safe=json_mode)
            out = _infer(c, f"identity_{datatype.lower()}", {"INPUT0": x}, binary=not json_mode)
            y = out["OUTPUT0"]
            assert y.shape == x.shape
            if datatype == "BYTES":
                assert y.tolist() == x.tolist()
            else:
                assert y.dtype == x.dtype
                np.testing.assert_array_equal(y, x)
    finally:
        c.close()


def test_identity_without_batch_dimension(client: Client) -> None:
    x = np.arange(9, dtype=np.float32)
    out = _infer(client, "identity_fp32_nobatch", {"INPUT0": x})
    np.testing.assert_array_equal(out["OUTPUT0"], x)


def test_add_sub(client: Client) -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    b = rng.standard_normal((4, 16)).astype(np.float32)
    out = _infer(client, "add_sub", {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def test_sleep_returns_input_and_batches_queued_requests(triton: Endpoint) -> None:
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        before = c.get_inference_statistics("sleep", as_json=True)["model_stats"][0]
        done: queue.Queue[tuple[Any, Any]] = queue.Queue()
        for i in range(6):
            tensor = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
            tensor.set_data_from_numpy(np.full((1, 3), i, np.float32))
            c.async_infer("sleep", [tensor], callback=lambda result, error: done.put((result, error)))
        results = [done.get(timeout=30) for _ in range(6)]
        for _, error in results:
            assert error is None, error
        got = sorted(float(r.as_numpy("OUTPUT0")[0, 0]) for r, _ in results)
        assert got == [float(i) for i in range(6)]
        after = c.get_inference_statistics("sleep", as_json=True)["model_stats"][0]
        inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
        executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
        assert inferences == 6
        # The requests queued behind the first 50 ms execution ran as batches.
        assert executions < 6
    finally:
        c.close()


def _error(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_error_answers(triton: Endpoint) -> None:
    """Triton 2.51's answers to bad requests: the status codes and texts sonic reproduces."""
    h = httpclient.InferenceServerClient(triton.http_url)
    g = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        x = np.zeros((1, 16), np.float32)

        def inputs(module: Any, name: str, array: np.ndarray, datatype: str) -> list[Any]:
            tensor = module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            return [tensor]

        unknown = "Request for unknown model: 'nope' is not found"
        e = _error(lambda: h.infer("nope", inputs(httpclient, "input", x, "FP32")))
        assert (e.status(), e.message()) == ("404", unknown)
        e = _error(lambda: g.infer("nope", inputs(grpcclient, "input", x, "FP32")))
        assert (e.status(), e.message()) == ("StatusCode.NOT_FOUND", unknown)
        e = _error(lambda: h.get_model_metadata("nope"))
        assert (e.status(), e.message()) == ("404", unknown)

        e = _error(lambda: g.infer("mlp", inputs(grpcclient, "input", x, "FP32"), model_version="3"))
        assert e.message() == "Request for unknown model: 'mlp' version 3 is not found"

        short = np.zeros((1, 15), np.float32)
        e = _error(lambda: g.infer("mlp", inputs(grpcclient, "input", short, "FP32")))
        assert e.status() == "StatusCode.INVALID_ARGUMENT"
        assert e.message().startswith(
            "[request id: <id_unknown>] unexpected shape for input 'input' for model 'mlp'. "
            "Expected [-1,16], got [1,15]. NOTE: Setting a non-zero max_batch_size"
        )

        e = _error(lambda: g.infer("mlp", inputs(grpcclient, "inputx", x, "FP32")))
        assert e.message() == "unexpected inference input 'inputx' for model 'mlp'"

        wide = x.astype(np.float64)
        e = _error(lambda: h.infer("mlp", inputs(httpclient, "input", wide, "FP64")))
        assert e.status() == "400"
        assert e.message() == (
            "[request id: <id_unknown>] inference input 'input' data-type is 'FP64', "
            "but model 'mlp' expects 'FP32'"
        )

        big = np.zeros((65, 16), np.float32)
        e = _error(lambda: g.infer("mlp", inputs(grpcclient, "input", big, "FP32")))
        assert e.message() == (
            "[request id: <id_unknown>] inference request batch-size must be <= 64 for 'mlp'"
        )

        # HTTP status codes of the same errors.
        body = b'{"inputs":[{"name":"input","shape":[1,15],"datatype":"FP32","data":[0]}]}'
        assert _post(triton, "/v2/models/nope/infer", body)[0] == 404
        status, text = _post(triton, "/v2/models/mlp/infer", body)
        assert status == 500  # data length != shape is a parse error, reported as 500
        assert "Shape does not match true shape of 'data' field" in text
        fp16 = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP16","data":[1]}]}'
        status, text = _post(triton, "/v2/models/identity_fp16/infer", fp16)
        assert status == 400
        assert "receiving FP16 data via JSON is not supported" in text
    finally:
        h.close()
        g.close()


def _post(triton: Endpoint, path: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{triton.http_url}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), err.read().decode()


def test_metrics_endpoint(triton: Endpoint, client: Client) -> None:
    ones = np.ones((1, 16), np.float32)
    _infer(client, "add_sub", {"INPUT0": ones, "INPUT1": ones})
    with urllib.request.urlopen(f"http://{triton.metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'nv_inference_count{model="add_sub",version="1"}' in text
    assert "nv_inference_queue_duration_us" in text


def test_perf_analyzer_grpc(triton: Endpoint, tmp_path: Path) -> None:
    csv_path = tmp_path / "perf.csv"
    stdout = run_perf_analyzer(
        [
            "-m", "mlp",
            "-u", triton.grpc_url,
            "-i", "grpc",
            "--concurrency-range", "2",
            "-p", "1000",
            "--max-trials", "5",
            "-s", "50",
            "-f", str(csv_path),
        ],
        timeout=120,
    )  # fmt: skip
    assert "Throughput" in stdout
    (row,) = parse_perf_csv(csv_path)
    assert row.load == 2
    assert row.throughput > 0
    assert 0 < row.p50_us <= row.p90_us <= row.p99_us
    assert row.latency_avg_us > 0
