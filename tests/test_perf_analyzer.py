"""NVIDIA perf_analyzer drives ``sonic serve`` as it drives Triton.

perf_analyzer is the tool operators size Triton deployments with; it must work against sonic
unchanged: over gRPC and HTTP, with tensors in the request or in system shared memory (which
it creates, registers, and reads through the shared-memory extension), and with the
server-side statistics it folds into its report (queue and compute times, from the
statistics extension). Each measurement is short (0.5 s windows, concurrency 4): this proves
the protocol, it does not benchmark (see ``benchmarks/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from conftest import sonic_process
from sonic import zoo
from sonic.server.process import ServerProcess
from triton_ref import parse_perf_csv, run_perf_analyzer, triton_available, unavailable_reason

pytestmark = [pytest.mark.triton, pytest.mark.slow]

CONCURRENCY = 4


@pytest.fixture(scope="module")
def sonic_mlp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """sonic serving the MLP with its onnxruntime backend, client shared memory allowed."""
    if not triton_available():
        pytest.skip(f"perf_analyzer unavailable: {unavailable_reason()}")
    repo = zoo.write_sonic_repository(tmp_path_factory.mktemp("perf-repo"), models=("mlp",))
    with sonic_process(repo, "--allow-client-shm") as server:
        yield server


def _stats(server: ServerProcess) -> dict[str, Any]:
    """mlp's request counts, and the shared-memory regions registered on the server."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        (entry,) = client.get_inference_statistics("mlp", as_json=True)["model_stats"]
        regions = sorted(client.get_system_shared_memory_status(as_json=True).get("regions", {}))
    finally:
        client.close()
    stats = entry["inference_stats"]
    return {
        "success": int(stats["success"].get("count", 0)),
        "fail": int(stats["fail"].get("count", 0)),
        "inference_count": int(entry.get("inference_count", 0)),
        "regions": regions,
    }


@pytest.mark.parametrize("shared_memory", ["none", "system"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer(sonic_mlp: ServerProcess, tmp_path: Path, protocol: str, shared_memory: str) -> None:
    url = sonic_mlp.grpc_url if protocol == "grpc" else sonic_mlp.http_url
    csv_path = tmp_path / "out.csv"
    before = _stats(sonic_mlp)
    stdout = run_perf_analyzer(
        [
            "-m", "mlp",
            "-u", url,
            "-i", protocol,
            "--concurrency-range", str(CONCURRENCY),
            "--shared-memory", shared_memory,
            "-p", "500",
            "--max-trials", "6",
            "-s", "1000",  # stability is not the point here: any 3 windows do
            "-f", str(csv_path),
        ],
        timeout=120,
    )  # fmt: skip
    assert "Throughput" in stdout, stdout
    assert "error" not in stdout.lower(), stdout
    (row,) = parse_perf_csv(csv_path)
    assert row.load == CONCURRENCY
    assert row.throughput > 0
    assert 0 < row.p50_us <= row.p99_us
    # server-side figures, which perf_analyzer reads from the statistics extension
    assert row.server_queue_us > 0, row.raw
    assert float(row.raw["Server Compute Infer"]) > 0, row.raw
    assert row.server_compute_us > 0, row.raw
    after = _stats(sonic_mlp)
    assert after["fail"] == before["fail"]
    assert after["success"] > before["success"]
    assert after["inference_count"] - before["inference_count"] >= after["success"] - before["success"]
    # perf_analyzer unregistered every shared-memory region it registered
    assert after["regions"] == before["regions"]
