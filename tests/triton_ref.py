"""Helpers to run NVIDIA's own Triton and perf_analyzer, for conformance tests and benchmarks.

Not a test module: tests import it as ``triton_ref`` (pytest puts ``tests/`` on ``sys.path``),
benchmarks after adding ``tests/`` to their path. Everything goes through the
``triton-reference`` tool (``../shared/tools/triton-reference`` beside the repository, or the
path in ``$SONIC_TRITON_REFERENCE``), which installs tritonserver 2.51 (python backend only)
and perf_analyzer 2.41 from registry packages.

    if triton_available():
        with run_triton(repo) as triton:
            client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)
            out = run_perf_analyzer(["-m", "mlp", "-u", triton.grpc_url, "-i", "grpc"])
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Endpoint",
    "PerfRow",
    "TritonStartError",
    "free_port",
    "parse_perf_csv",
    "run_perf_analyzer",
    "run_triton",
    "tool_path",
    "triton_available",
]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_TOOL = _REPO_ROOT.parent / "shared" / "tools" / "triton-reference"
_SETUP_TIMEOUT_S = 1800.0


def tool_path() -> Path:
    """The ``triton-reference`` script: ``$SONIC_TRITON_REFERENCE`` or the one beside the repo."""
    env = os.environ.get("SONIC_TRITON_REFERENCE")
    return Path(env) if env else _DEFAULT_TOOL


@functools.cache
def _availability() -> tuple[bool, str]:
    tool = tool_path()
    if not (tool.is_file() and os.access(tool, os.X_OK)):
        return False, f"triton-reference tool not found at {tool} (set SONIC_TRITON_REFERENCE)"
    try:
        done = subprocess.run(
            [str(tool), "setup"],
            capture_output=True,
            text=True,
            timeout=_SETUP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`{tool} setup` failed: {exc}"
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        return False, f"`{tool} setup` exited with {done.returncode}:\n{tail}"
    return True, ""


def triton_available() -> bool:
    """Whether NVIDIA's Triton can run here: the tool exists and its setup completes.

    The first call runs ``triton-reference setup`` (instant once installed, minutes the first
    time); the answer is cached for the process. :func:`unavailable_reason` says why not.
    """
    return _availability()[0]


def unavailable_reason() -> str:
    """Why :func:`triton_available` is False (empty when it is True)."""
    return _availability()[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    # Hold all sockets open until every port is chosen, so the n ports are distinct.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message ends with its log tail."""


@dataclass
class Endpoint:
    """A running tritonserver: ``host:port`` URLs as tritonclient and perf_analyzer take them."""

    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    startup_s: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's combined stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=1.0) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (tritonserver and its python-backend stubs);
    SIGKILL it if it has not exited after ``grace_s``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    # Stubs can outlive tritonserver; the group id is the server's pid (start_new_session).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _start(repo: Path, extra_args: Sequence[str], log_path: Path, timeout: float) -> Endpoint:
    http, grpc, metrics = _free_ports(3)
    endpoint = Endpoint(http, grpc, metrics, log_path)
    cmd = [str(tool_path()), "serve", str(repo), str(http), str(grpc), str(metrics), *extra_args]
    start = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint.process = process
    deadline = start + timeout
    while True:
        if _ready(endpoint.http_url):
            endpoint.startup_s = time.monotonic() - start
            return endpoint
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            _stop(process)
            why = f"exited with {code}" if code is not None else f"not ready after {timeout:.0f}s"
            raise TritonStartError(
                f"tritonserver on {repo} {why}; command: {' '.join(cmd)}\n"
                f"--- log tail ---\n{endpoint.log_tail()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def run_triton(
    repo: Path,
    extra_args: Sequence[str] = (),
    *,
    timeout: float = 60.0,
    log_path: Path | None = None,
) -> Iterator[Endpoint]:
    """Run NVIDIA's tritonserver on ``repo`` on free loopback ports until the block exits.

    Waits until ``/v2/health/ready`` answers 200 (all models loaded), at most ``timeout``
    seconds; raises :class:`TritonStartError` with the server's log tail otherwise. One retry
    with fresh ports covers the race where a chosen port was taken meanwhile. ``extra_args``
    go to tritonserver (e.g. ``["--log-verbose=1"]``, ``["--model-control-mode=explicit"]``).
    The log goes to ``log_path`` (default: a temporary file, removed afterwards).
    """
    with contextlib.ExitStack() as stack:
        if log_path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="triton-ref-"))
            log_path = Path(tmp) / "tritonserver.log"
        try:
            endpoint = _start(Path(repo), extra_args, log_path, timeout)
        except TritonStartError as exc:
            if "already in use" not in str(exc).lower():
                raise
            endpoint = _start(Path(repo), extra_args, log_path, timeout)
        assert endpoint.process is not None
        try:
            yield endpoint
        finally:
            _stop(endpoint.process)


def run_perf_analyzer(args: Sequence[str], timeout: float = 120.0) -> str:
    """Run NVIDIA perf_analyzer 2.41 with ``args``; return its stdout.

    Raises ``RuntimeError`` with its output if it exits non-zero, and
    ``subprocess.TimeoutExpired`` past ``timeout`` seconds.
    """
    done = subprocess.run(
        [str(tool_path()), "perf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"perf_analyzer {' '.join(args)} exited with {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


@dataclass(frozen=True)
class PerfRow:
    """One measurement of perf_analyzer's ``-f`` CSV (times in microseconds).

    ``load`` is the concurrency, or the request rate with ``--request-rate-range``.
    ``latency_avg_us`` is the sum of all the components, i.e. perf_analyzer's "Avg latency".
    """

    load: float
    throughput: float
    latency_avg_us: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    server_queue_us: float
    server_compute_us: float
    raw: dict[str, str] = field(repr=False, compare=False)


_COMPUTE_PARTS = ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
_AVG_PARTS = (
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    *_COMPUTE_PARTS,
    "Client Recv",
)


def parse_perf_csv(source: str | Path) -> list[PerfRow]:
    """Parse perf_analyzer's ``-f file.csv`` output (a path, or the CSV text itself)."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    rows: list[PerfRow] = []
    for raw in csv.DictReader(io.StringIO(text)):
        if not raw or not any(raw.values()):
            continue

        def num(key: str, row: dict[str, str] = raw) -> float:
            value = row.get(key)
            return float(value) if value not in (None, "") else 0.0

        load_key = "Concurrency" if "Concurrency" in raw else "Request Rate"
        rows.append(
            PerfRow(
                load=num(load_key),
                throughput=num("Inferences/Second"),
                latency_avg_us=sum(num(k) for k in _AVG_PARTS),
                p50_us=num("p50 latency"),
                p90_us=num("p90 latency"),
                p95_us=num("p95 latency"),
                p99_us=num("p99 latency"),
                server_queue_us=num("Server Queue"),
                server_compute_us=sum(num(k) for k in _COMPUTE_PARTS),
                raw=dict(raw),
            )
        )
    return rows
