"""``sonic serve`` as an operator meets it: flags, the ready line, signals, metrics, polling,
and what happens when a model is broken or raises.

Every test runs the real command in a subprocess on loopback port 0 and talks to it with
NVIDIA's tritonclient (and plain HTTP for /metrics), as a deployment script or a Prometheus
scraper would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BROKEN_CONFIG, Metrics, scrape_metrics, sonic_process
from sonic import zoo
from sonic.server.process import ServerProcess

SERVE = [sys.executable, "-m", "sonic", "serve"]
READY = re.compile(
    r"^sonic: ready http=(?P<host>[\d.]+):(?P<http>\d+) grpc=[\d.]+:(?P<grpc>\d+) "
    r"metrics=[\d.]+:(?P<metrics>\d+)$"
)

#: A Triton python-backend model whose execute() raises.
RAISING_MODEL_PY = textwrap.dedent(
    """\
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            pass

        def execute(self, requests):
            raise RuntimeError("boom from execute")
    """
)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _add_sub(batch: int = 2) -> list[httpclient.InferInput]:
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        t = httpclient.InferInput(name, [batch, 16], "FP32")
        t.set_data_from_numpy(np.ones((batch, 16), np.float32))
        tensors.append(t)
    return tensors


# -- flags -----------------------------------------------------------------------------------------


def test_help_lists_the_flags() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for flag in (
        "--model-repository",
        "--host",
        "--http-port",
        "--grpc-port",
        "--metrics-port",
        "--allow-http",
        "--allow-grpc",
        "--allow-metrics",
        "--model-control-mode",
        "--load-model",
        "--repository-poll-secs",
        "--allow-client-shm",
        "--log-verbose",
    ):
        assert flag in done.stdout, flag


def test_missing_repository_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repository"
    done = _run(
        "--model-repository", str(missing), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert str(missing) in done.stderr
    assert "repository" in done.stderr
    assert "Traceback" not in done.stderr


def test_repository_flag_is_required() -> None:
    done = _run()
    assert done.returncode == 2
    assert "--model-repository" in done.stderr


def test_bad_flag_value_exits_2(tmp_path: Path) -> None:
    done = _run("--model-repository", str(tmp_path), "--model-control-mode", "sometimes")
    assert done.returncode == 2
    assert "sometimes" in done.stderr


# -- start, ready line, stop -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo.write_conformance_repository(
        tmp_path_factory.mktemp("cli-repo"), models=("add_sub", "identity_fp32", "sleep"), sleep_delay_ms=300
    )


class _Serve:
    """``sonic serve`` started by hand, to see its output and its exit as a script would."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*SERVE, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.match: re.Match[str] | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("sonic: ready"):
                self.match = READY.match(line.rstrip("\n"))
                self.ready.set()
        self.ready.set()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., _Serve]]:
    started: list[_Serve] = []

    def start(*args: str) -> _Serve:
        s = _Serve(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def _ports_args() -> list[str]:
    return ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]


def test_ready_line_then_sigterm_exits_0(serve: Callable[..., _Serve], small_repo: Path) -> None:
    s = serve("--model-repository", str(small_repo), *_ports_args())
    assert s.ready.wait(60), "\n".join(s.lines)
    assert s.match is not None, f"ready line has the wrong format: {s.lines[-1]!r}"
    host = s.match["host"]
    assert host == "127.0.0.1"
    ports = {k: int(s.match[k]) for k in ("http", "grpc", "metrics")}
    assert all(p > 0 for p in ports.values())
    assert len(set(ports.values())) == 3
    # every endpoint answers on the port the line names
    http = httpclient.InferenceServerClient(f"{host}:{ports['http']}")
    grpc = grpcclient.InferenceServerClient(f"{host}:{ports['grpc']}")
    try:
        assert http.is_server_ready()
        assert grpc.is_server_live()
        assert grpc.is_model_ready("add_sub")
    finally:
        http.close()
        grpc.close()
    with urllib.request.urlopen(f"http://{host}:{ports['metrics']}/metrics", timeout=10) as r:
        assert r.status == 200
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=15) == 0, "\n".join(s.lines)
    assert time.monotonic() - t0 < 10


def test_sigterm_lets_requests_in_flight_finish(serve: Callable[..., _Serve], small_repo: Path) -> None:
    """README: 'SIGTERM or Ctrl-C stops it gracefully: queued requests finish first'."""
    s = serve("--model-repository", str(small_repo), *_ports_args())
    assert s.ready.wait(60) and s.match is not None, "\n".join(s.lines)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{s.match['grpc']}")
    answers: list[tuple[object, object]] = []
    done = threading.Event()

    def callback(result: object, error: object) -> None:
        answers.append((result, error))
        if len(answers) == 3:
            done.set()

    try:
        for i in range(3):  # the sleep model takes 300 ms per batch
            t = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
            t.set_data_from_numpy(np.full((1, 2), i, np.float32))
            grpc.async_infer("sleep", [t], callback=callback)
        time.sleep(0.1)
        s.proc.send_signal(signal.SIGINT)
        assert done.wait(30)
    finally:
        grpc.close()
    assert [e for _, e in answers if e is not None] == []
    assert s.proc.wait(timeout=15) == 0


def test_endpoints_can_be_turned_off(serve: Callable[..., _Serve], small_repo: Path) -> None:
    s = serve(
        "--model-repository", str(small_repo), *_ports_args(), "--allow-grpc=false", "--allow-metrics=false"
    )
    assert s.ready.wait(60), "\n".join(s.lines)
    line = next(x for x in s.lines if x.startswith("sonic: ready"))
    assert re.fullmatch(r"sonic: ready http=127\.0\.0\.1:\d+", line), line
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=15) == 0


# -- a repository with a broken model and a model that raises ----------------------------------


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default model control (load everything): add_sub, identity_fp32, ``raiser`` (execute
    raises) and ``broken`` (config.pbtxt does not parse)."""
    repo = zoo.write_conformance_repository(
        tmp_path_factory.mktemp("faulty-repo"), models=("add_sub", "identity_fp32")
    )
    raiser = repo / "raiser"
    (raiser / "1").mkdir(parents=True)
    config = (repo / "identity_fp32" / "config.pbtxt").read_text()
    (raiser / "config.pbtxt").write_text(config.replace('"identity_fp32"', '"raiser"'))
    (raiser / "1" / "model.py").write_text(RAISING_MODEL_PY)
    broken = repo / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text(BROKEN_CONFIG)
    with sonic_process(repo) as server:
        yield server


def test_broken_model_does_not_stop_the_server(faulty_server: ServerProcess) -> None:
    c = httpclient.InferenceServerClient(faulty_server.http_url)
    try:
        assert c.is_server_live()
        assert c.is_model_ready("add_sub")
        assert not c.is_model_ready("broken")
        result = c.infer("add_sub", _add_sub())
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((2, 16), 2, np.float32))
        index = {row["name"]: row for row in c.get_model_repository_index()}
        assert index["broken"]["state"] == "UNAVAILABLE"
        assert "config.pbtxt" in index["broken"]["reason"], index["broken"]
        assert index["add_sub"]["state"] == "READY"
        with pytest.raises(InferenceServerException) as info:
            c.infer("broken", _add_sub())
        assert info.value.status() == "404"
    finally:
        c.close()


def _raiser_input(module: Any) -> list[Any]:
    t = module.InferInput("INPUT0", [1, 3], "FP32")
    t.set_data_from_numpy(np.ones((1, 3), np.float32))
    return [t]


def test_model_that_raises_fails_only_its_request(faulty_server: ServerProcess) -> None:
    h = httpclient.InferenceServerClient(faulty_server.http_url)
    g = grpcclient.InferenceServerClient(faulty_server.grpc_url)
    try:
        before = g.get_inference_statistics("raiser", as_json=True)["model_stats"][0]["inference_stats"]
        with pytest.raises(InferenceServerException) as info:
            h.infer("raiser", _raiser_input(httpclient))
        assert info.value.status() == "500"
        assert "boom from execute" in (info.value.message() or "")
        assert h.infer("add_sub", _add_sub()).as_numpy("OUTPUT1") is not None
        with pytest.raises(InferenceServerException) as info:
            g.infer("raiser", _raiser_input(grpcclient))
        assert info.value.status() == "StatusCode.INTERNAL"
        assert "boom from execute" in (info.value.message() or "")
        assert g.infer("add_sub", _add_sub_grpc()).as_numpy("OUTPUT0") is not None
        after = g.get_inference_statistics("raiser", as_json=True)["model_stats"][0]["inference_stats"]
        assert int(after["fail"].get("count", 0)) - int(before["fail"].get("count", 0)) == 2
        assert int(after["success"].get("count", 0)) == int(before["success"].get("count", 0))
    finally:
        h.close()
        g.close()
    metrics = scrape_metrics(faulty_server.metrics_url)
    assert metrics.value("nv_inference_request_failure", model="raiser", reason="BACKEND", version="1") >= 2


def _add_sub_grpc() -> list[grpcclient.InferInput]:
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        t = grpcclient.InferInput(name, [1, 16], "FP32")
        t.set_data_from_numpy(np.ones((1, 16), np.float32))
        tensors.append(t)
    return tensors


# -- metrics -----------------------------------------------------------------------------------


def _model_figures(metrics: Metrics, model: str) -> dict[str, float]:
    names = (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_pending_request_count",
    )
    return {n: metrics.value(n, model=model, version="1") for n in names}


def test_metrics_use_triton_names_and_values_move(faulty_server: ServerProcess) -> None:
    before = scrape_metrics(faulty_server.metrics_url)
    figures = _model_figures(before, "add_sub")
    assert 0.0 <= before.value("nv_cpu_utilization") <= 1.0
    # one series per loaded model; none for the broken one
    assert before.has("nv_inference_count", model="identity_fp32", version="1")
    assert not before.has("nv_inference_count", model="broken", version="1")
    c = httpclient.InferenceServerClient(faulty_server.http_url)
    try:
        for _ in range(3):
            c.infer("add_sub", _add_sub(batch=2))
    finally:
        c.close()
    after = _model_figures(scrape_metrics(faulty_server.metrics_url), "add_sub")
    assert after["nv_inference_request_success"] - figures["nv_inference_request_success"] == 3
    assert after["nv_inference_count"] - figures["nv_inference_count"] == 6
    assert after["nv_inference_exec_count"] - figures["nv_inference_exec_count"] == 3
    assert after["nv_inference_request_duration_us"] > figures["nv_inference_request_duration_us"]
    assert after["nv_inference_queue_duration_us"] >= figures["nv_inference_queue_duration_us"]
    assert after["nv_inference_compute_infer_duration_us"] > figures["nv_inference_compute_infer_duration_us"]
    assert after["nv_inference_pending_request_count"] == 0


# -- poll mode ---------------------------------------------------------------------------------


def test_poll_mode_follows_the_repository(tmp_path: Path) -> None:
    repo = zoo.write_conformance_repository(tmp_path / "repo", models=("identity_fp32",))
    staging = zoo.write_conformance_repository(tmp_path / "staging", models=("add_sub",))
    with sonic_process(repo, "--model-control-mode=poll", "--repository-poll-secs=0.5") as server:
        c = httpclient.InferenceServerClient(server.http_url)
        try:
            assert c.is_model_ready("identity_fp32")
            assert not c.is_model_ready("add_sub")
            # a model appears (moved in whole, as a deployment tool would)
            os.rename(staging / "add_sub", repo / "add_sub")
            assert _wait_for(lambda: c.is_model_ready("add_sub")), server.tail()
            result = c.infer("add_sub", _add_sub())
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.zeros((2, 16), np.float32))
            assert "add_sub" in {row["name"] for row in c.get_model_repository_index()}
            # its config changes: the new one is served
            config = repo / "add_sub" / "config.pbtxt"
            new = tmp_path / "config.pbtxt"
            new.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size: 4"))
            os.replace(new, config)
            assert _wait_for(lambda: c.get_model_config("add_sub")["max_batch_size"] == 4), server.tail()
            # it goes away
            os.rename(repo / "add_sub", staging / "add_sub")
            assert _wait_for(lambda: not c.is_model_ready("add_sub")), server.tail()
            assert "add_sub" not in {row["name"] for row in c.get_model_repository_index()}
            assert c.is_model_ready("identity_fp32")
        finally:
            c.close()


def test_metrics_type_lines_name_the_metrics(faulty_server: ServerProcess) -> None:
    """``# TYPE`` lines carry the sample names, as Triton writes them: a counter named
    ``nv_inference_count`` must not be announced as ``nv_inference_count_total``, or the
    samples lose their type in Prometheus."""
    metrics = scrape_metrics(faulty_server.metrics_url)
    for name, kind in (
        ("nv_inference_request_success", "counter"),
        ("nv_inference_request_failure", "counter"),
        ("nv_inference_count", "counter"),
        ("nv_inference_exec_count", "counter"),
        ("nv_inference_queue_duration_us", "counter"),
        ("nv_inference_compute_infer_duration_us", "counter"),
        ("nv_inference_pending_request_count", "gauge"),
        ("nv_cpu_utilization", "gauge"),
    ):
        assert metrics.types.get(name) == kind, (name, metrics.types.get(name))
    sample_names = {name for name, _ in metrics.samples}
    assert set(metrics.types) <= sample_names, sorted(set(metrics.types) - sample_names)
