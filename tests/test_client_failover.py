"""The client's reliability with real processes: failover, fallback, discovery, retries.

Servers are ``sonic serve`` subprocesses on loopback; "crashing" one is a SIGKILL. A request
stream carries a distinct value per request, so an answer that went missing, came twice, or
came from another request shows up as a wrong value.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import sonic_process
from sonic import zoo
from sonic.client import (
    Client,
    Code,
    InvalidArgument,
    NoServerAvailable,
    NotFound,
    ServerUnreachable,
)
from sonic.server.process import ServerProcess

TRANSPORTS = ("grpc", "http")
STREAM = 3000
KILL_AFTER = 1000
CONCURRENCY = 16


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("failover-repo")
    zoo.write_conformance_repository(path, models=("identity_fp32", "add_sub"))
    return path


@pytest.fixture(scope="module")
def other_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository without identity_fp32 (a server that does not have the model)."""
    path = tmp_path_factory.mktemp("other-repo")
    zoo.write_conformance_repository(path, models=("add_sub",))
    return path


@contextlib.contextmanager
def servers(*repos: Path) -> Iterator[list[ServerProcess]]:
    """Start one sonic serve per repository, in parallel."""
    with contextlib.ExitStack() as stack, futures.ThreadPoolExecutor(len(repos)) as pool:
        procs = list(pool.map(lambda r: stack.enter_context(sonic_process(r)), repos))
        yield procs


def address(server: ServerProcess, transport: str) -> str:
    return server.grpc_url if transport == "grpc" else server.http_url


def port_open(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def request(i: int) -> dict[str, np.ndarray]:
    return {"INPUT0": np.array([[i, -i, i * 0.5]], dtype=np.float32)}


def check(i: int, out: np.ndarray) -> None:
    np.testing.assert_array_equal(out, np.array([[i, -i, i * 0.5]], dtype=np.float32))


# -- SIGKILL one of two servers in the middle of a stream ------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kill_one_of_two_servers_async_stream(repo: Path, transport: str) -> None:
    with servers(repo, repo) as (a, b):
        config = {
            "model": "identity_fp32",
            "transport": transport,
            "servers": [address(a, transport), address(b, transport)],
            "allowed_tries": 2,
            "timeout": 30,
        }
        answers: dict[int, int] = {}

        async def stream(client: Client) -> None:
            todo = iter(range(STREAM))
            done = 0

            async def worker() -> None:
                nonlocal done
                for i in todo:
                    result = await client.ainfer(request(i))
                    check(i, result["OUTPUT0"])
                    answers[i] = answers.get(i, 0) + 1
                    done += 1
                    if done == KILL_AFTER:
                        b.kill()  # SIGKILL, with requests in flight on it

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        async def run() -> Client:
            async with Client.from_config(config) as client:
                await stream(client)
                return client

        client = asyncio.run(run())
        assert sorted(answers) == list(range(STREAM))
        assert set(answers.values()) == {1}
        stats = client.stats
        assert stats.requests == stats.successes == STREAM
        assert stats.failures == 0
        # the killed server had requests in flight (fewest-in-flight spreads the load), so
        # some requests moved to the survivor; after the kill only the survivor answers
        assert stats.by_server[address(b, transport)] >= 1
        assert stats.by_server[address(a, transport)] >= STREAM - KILL_AFTER
        assert stats.failovers >= 1
        dead = next(s for s in client.servers if s.address == address(b, transport))
        assert dead.failures >= 1


def test_kill_one_of_two_servers_sync_threads(repo: Path) -> None:
    """The blocking API from several threads (a multi-stream job), gRPC."""
    with servers(repo, repo) as (a, b):
        config = {
            "model": "identity_fp32",
            "transport": "grpc",
            "servers": [a.grpc_url, b.grpc_url],
            "timeout": 30,
        }
        counts = [0] * STREAM
        lock = threading.Lock()
        done = 0
        with Client.from_config(config) as client:

            def one(i: int) -> None:
                nonlocal done
                check(i, client.infer(request(i))["OUTPUT0"])
                with lock:
                    counts[i] += 1
                    done += 1
                    if done == KILL_AFTER:
                        b.kill()

            with futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(STREAM)))
        assert counts == [1] * STREAM
        assert client.stats.successes == STREAM
        assert client.stats.failovers >= 1


def test_every_server_killed_then_fallback_takes_over(repo: Path) -> None:
    with servers(repo) as (a,):
        config = {
            "model": "identity_fp32",
            "transport": "grpc",
            "servers": [a.grpc_url],
            "fallback": True,
            "repository": [str(repo)],
            "timeout": 30,
        }
        with Client.from_config(config) as client:
            for i in range(50):
                check(i, client.infer(request(i))["OUTPUT0"])
            a.kill()
            for i in range(50, 100):
                check(i, client.infer(request(i))["OUTPUT0"])
            assert client.mode == "async"  # the fallback is a last resort here, not the primary
            stats = client.stats
            assert stats.successes == 100
            assert stats.fallback == 50
            fallback = [s for s in client.servers if s.fallback]
            assert len(fallback) == 1
            fallback_address = fallback[0].address
        assert not port_open(fallback_address)  # stopped with the client


# -- the fallback server ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("configured", ["server-without-model", "no-server"])
def test_fallback_when_no_server_has_the_model(
    repo: Path, other_repo: Path, transport: str, configured: str
) -> None:
    with servers(other_repo) as (other,):
        config = {
            "model": "identity_fp32",
            "transport": transport,
            "servers": [address(other, transport)] if configured == "server-without-model" else [],
            "fallback": True,
            "repository": [str(repo)],
        }
        with Client.from_config(config) as client:
            assert client.mode == "sync"  # CPU fallback forces synchronous mode (CMS)
            results = client.infer([request(i) for i in range(5)])
            for i, r in enumerate(results):
                check(i, r["OUTPUT0"][None, ...] if r["OUTPUT0"].ndim == 1 else r["OUTPUT0"])
            got: list[object] = []
            fut = client.infer_callback(request(7), lambda r, e: got.append((r, e)))
            assert len(got) == 1  # sync mode: the callback ran before infer_callback returned
            check(7, fut.result()["OUTPUT0"])

            async def one() -> None:
                check(8, (await client.ainfer(request(8)))["OUTPUT0"])

            asyncio.run(one())
            fallback = [s for s in client.servers if s.fallback]
            assert len(fallback) == 1 and fallback[0].has_model
            assert client.stats.fallback == client.stats.successes == 7
            fallback_address = fallback[0].address
            assert port_open(fallback_address)
        assert not port_open(fallback_address)


def test_no_server_has_the_model_without_fallback(repo: Path, other_repo: Path) -> None:
    with servers(other_repo) as (other,):
        client = Client.from_config(
            {"model": "identity_fp32", "transport": "grpc", "servers": [other.grpc_url]}
        )
        with pytest.raises(NotFound) as err:
            client.start()
        client.close()
        assert err.value.code is Code.NOT_FOUND
        assert "no server has model 'identity_fp32'" in err.value.message
        assert "fallback" in err.value.message


# -- discovery: a server whose RepositoryIndex fails is skipped ------------------------------------


class _Shedding(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A gRPC server that sheds every call with UNAVAILABLE (a saturated load balancer)."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(grpc.StatusCode.UNAVAILABLE, "server overloaded: shedding load")
            raise AssertionError("abort raises")

        return grpc.unary_unary_rpc_method_handler(refuse)


class _Refuse(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(503)
        body = b'{"error":"server overloaded: shedding load"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def shedding_server(transport: str) -> Iterator[str]:
    if transport == "grpc":
        server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[_Shedding()])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(None).wait()
    else:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_whose_repository_index_fails_is_skipped(repo: Path, transport: str) -> None:
    with servers(repo) as (good,), shedding_server(transport) as shedding:
        dead = closed_port()
        config = {
            "model": "identity_fp32",
            "transport": transport,
            "servers": [shedding, dead, address(good, transport)],
            "preferred_server": shedding,
        }
        with Client.from_config(config) as client:
            states = {s.address: s for s in client.servers}
            assert not states[shedding].has_model
            assert "RepositoryIndex failed" in states[shedding].skipped
            assert "shedding load" in states[shedding].skipped
            assert not states[dead].has_model and states[dead].skipped
            assert states[address(good, transport)].has_model
            for i in range(20):
                check(i, client.infer(request(i))["OUTPUT0"])
            assert client.stats.by_server == {address(good, transport): 20}
            assert client.stats.retries == 0


def test_every_server_skipped_without_fallback(repo: Path) -> None:
    with shedding_server("grpc") as shedding:
        client = Client.from_config(
            {"model": "identity_fp32", "transport": "grpc", "servers": [shedding, closed_port()]}
        )
        with pytest.raises(NoServerAvailable) as err:
            client.start()
        client.close()
        assert "no configured server answered its RepositoryIndex" in err.value.message


# -- what is retried and what is not -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_argument_is_never_retried(repo: Path, transport: str) -> None:
    with servers(repo, repo) as (a, b):
        config = {
            "model": "identity_fp32",
            "transport": transport,
            "servers": [address(a, transport), address(b, transport)],
            "allowed_tries": 3,
            "validate": False,  # let the server judge: it answers INVALID_ARG
        }
        with Client.from_config(config) as client:
            with pytest.raises(InvalidArgument):
                client.infer({"INPUT0": np.zeros((1, 3), dtype=np.float64)})
            stats = client.stats
            assert stats.requests == stats.failures == 1
            assert stats.retries == stats.failovers == 0
            assert all(s.healthy and s.failures == 0 for s in client.servers)


def test_unreachable_server_is_marked_down_and_probed_after_backoff(repo: Path) -> None:
    with servers(repo, repo) as (a, b):
        config = {
            "model": "identity_fp32",
            "transport": "grpc",
            "servers": [a.grpc_url, b.grpc_url],
            "backoff": 0.5,
        }
        with Client.from_config(config) as client:
            for i in range(4):  # round-robin between two idle servers: both answer
                check(i, client.infer(request(i))["OUTPUT0"])
            assert set(client.stats.by_server) == {a.grpc_url, b.grpc_url}
            b.kill()
            for i in range(4, 40):
                check(i, client.infer(request(i))["OUTPUT0"])
            states = {s.address: s for s in client.servers}
            assert states[b.grpc_url].failures == 1 and not states[b.grpc_url].healthy
            assert states[a.grpc_url].failures == 0 and states[a.grpc_url].healthy
            # b failed once; while it is down, requests go straight to a
            assert client.stats.failovers == 1
            # after the back-off one request probes b, fails over to a, and b's back-off doubles
            time.sleep(0.6)
            for i in range(40, 50):
                check(i, client.infer(request(i))["OUTPUT0"])
            assert client.stats.failovers == 2
            assert {s.address: s for s in client.servers}[b.grpc_url].failures == 2
            assert client.stats.successes == 50
            assert client.stats.failures == 0


def test_preferred_server_takes_the_load_while_healthy(repo: Path) -> None:
    with servers(repo, repo) as (a, b):
        config = {
            "model": "identity_fp32",
            "transport": "http",
            "servers": [a.http_url, b.http_url],
            "preferred_server": b.http_url,
        }
        with Client.from_config(config) as client:
            for i in range(20):
                check(i, client.infer(request(i))["OUTPUT0"])
            assert client.stats.by_server == {b.http_url: 20}
            b.kill()
            for i in range(20, 30):
                check(i, client.infer(request(i))["OUTPUT0"])
            assert client.stats.by_server == {b.http_url: 20, a.http_url: 10}


def test_fewest_in_flight_spreads_concurrent_requests(repo: Path) -> None:
    with servers(repo, repo) as (a, b):
        config = {"model": "identity_fp32", "transport": "grpc", "servers": [a.grpc_url, b.grpc_url]}

        async def run() -> Client:
            async with Client.from_config(config) as client:
                results = await asyncio.gather(*(client.ainfer(request(i)) for i in range(200)))
                for i, r in enumerate(results):
                    check(i, r["OUTPUT0"])
                assert all(s.in_flight == 0 for s in client.servers)
                return client

        by_server = asyncio.run(run()).stats.by_server
        assert sorted(by_server) == sorted([a.grpc_url, b.grpc_url])
        assert min(by_server.values()) >= 80  # about half each


def test_dead_single_server_without_fallback_gives_up_with_the_cause(repo: Path) -> None:
    with servers(repo) as (a,), Client.from_config(
        {"model": "identity_fp32", "transport": "http", "servers": [a.http_url], "allowed_tries": 3}
    ) as client:
        check(1, client.infer(request(1))["OUTPUT0"])
        a.kill()
        with pytest.raises(NoServerAvailable) as err:
            client.infer(request(2))
        assert isinstance(err.value.last, ServerUnreachable)
        assert err.value.code is Code.UNAVAILABLE
        assert client.stats.failures == 1
