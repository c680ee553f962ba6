"""Exactly once under failure: a workflow keeps every event when a server dies or is missing.

Real ``sonic serve`` processes on loopback. A workflow of thousands of events sends each
event's jets to the MLP through a pool of two servers; in the middle of it (when event 1000 is
processed) one server is SIGKILLed. The client retries and fails over; the workflow must still
process every event exactly once (a counting module sees each event index once) and write the
same output as a clean run. Without any reachable server, the client's fallback server (sonic
serve on this CPU) starts and the job completes.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sonic import zoo
from sonic.server.process import ServerProcess
from sonic.workflow import ArraySink, ArraySource, Event, Jagged, Module, Process
from sonic.workflow.modules import Infer

N_EVENTS = 3000
KILL_AT = 1000


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo.write_sonic_repository(tmp_path_factory.mktemp("failover-mlp"), models=("mlp",))


@contextlib.contextmanager
def two_servers(repo: Path) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack, futures.ThreadPoolExecutor(2) as pool:
        yield list(pool.map(lambda _: stack.enter_context(ServerProcess(repo)), range(2)))


def events(n: int = N_EVENTS, seed: int = 5) -> ArraySource:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, n)
    jets = [rng.normal(size=(c, 16)).astype(np.float32) for c in counts]
    return ArraySource({"event": np.arange(n), "jet": jets}, step_size=250)


class Count(Module):
    """How many times each event reached this module (after the SONIC module)."""

    def __init__(self, n: int) -> None:
        self.seen = np.zeros(n, dtype=np.int64)

    def produce(self, event: Event) -> None:
        self.seen[event["event"]] += 1


class KillAt(Module):
    """SIGKILL a server when event ``at`` goes by (once)."""

    def __init__(self, at: int, server: ServerProcess) -> None:
        self.at, self.server, self.killed = at, server, False

    def produce(self, event: Event) -> None:
        if event.index == self.at and not self.killed:
            self.killed = True
            self.server.kill()


def tagger() -> Infer:
    return Infer({"input": "jet"}, {"output": "score"}, name="tagger")


def run(client: dict[str, Any], *extra: Module, streams: int = 16) -> tuple[dict[str, Any], Any, Count]:
    count = Count(N_EVENTS)
    sink = ArraySink(["event", "score"])
    report = Process(events(), [*extra, tagger(), count], [sink], client=client, streams=streams).run(
        progress=False
    )
    return sink.result, report, count


@pytest.fixture(scope="module")
def clean(repo: Path) -> dict[str, Any]:
    result, report, count = run({"model": "mlp", "transport": "local", "repository": [str(repo)]})
    assert (count.seen == 1).all() and report.events == N_EVENTS
    return result


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sigkill_one_of_two_servers_mid_workflow(repo: Path, clean: dict[str, Any], transport: str) -> None:
    with two_servers(repo) as (victim, survivor):

        def address(s: ServerProcess) -> str:
            return s.grpc_url if transport == "grpc" else s.http_url

        client = {
            "model": "mlp",
            "transport": transport,
            "servers": [address(victim), address(survivor)],
            "preferred_server": address(victim),  # the victim has traffic when it dies
            "allowed_tries": 2,
            "timeout": 10,
        }
        killer = KillAt(KILL_AT, victim)
        result, report, count = run(client, killer)
        assert killer.killed and victim.proc is not None and victim.proc.poll() is not None

    # every event exactly once, and the output of a clean run
    assert (count.seen == 1).all(), np.nonzero(count.seen != 1)[0][:10]
    np.testing.assert_array_equal(result["event"], np.arange(N_EVENTS))
    assert isinstance(result["score"], Jagged) and result["score"].equals(clean["score"])
    assert report.events == report.written == N_EVENTS
    [c] = report.clients
    assert c.failures == 0 and c.failovers >= 1
    assert c.by_server.get(address(victim), 0) > 0 and c.by_server.get(address(survivor), 0) > 0
    assert sum(c.by_server.values()) == c.requests
    assert "failovers" in report.table()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_reachable_server_starts_the_fallback(repo: Path, clean: dict[str, Any]) -> None:
    client = {
        "model": "mlp",
        "transport": "grpc",
        "servers": [f"127.0.0.1:{_closed_port()}"],
        "fallback": True,
        "repository": [str(repo)],
        "allowed_tries": 1,
    }
    result, report, count = run(client, streams=8)
    assert (count.seen == 1).all()
    np.testing.assert_array_equal(result["event"], np.arange(N_EVENTS))
    assert result["score"].equals(clean["score"])
    [c] = report.clients
    assert c.mode == "sync", "a client on its CPU fallback server runs synchronously, as in CMS"
    assert c.fallback == c.requests > 0 and c.failures == 0
