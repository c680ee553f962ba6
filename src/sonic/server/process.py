"""Start ``sonic serve`` as a subprocess on free ports and stop it again.

Used by the demo, the tests, the benchmarks and (later) the client's fallback server: the child
prints one ``sonic: ready http=H:P grpc=H:P metrics=H:P`` line once every edge is bound, which
is parsed here; stopping sends SIGTERM (graceful: queued requests finish) and then SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

_READY = re.compile(r"^sonic: ready (.*)$")


class ServerProcess:
    def __init__(
        self,
        repositories: list[Path] | Path,
        *extra: str,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        repos = [repositories] if isinstance(repositories, Path) else list(repositories)
        self.args = [
            sys.executable,
            "-m",
            "sonic",
            "serve",
            "--host",
            host,
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ]
        for r in repos:
            self.args += ["--model-repository", str(r)]
        self.args += list(extra)
        self.host = host
        self.timeout = startup_timeout
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self.log: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"{self.host}:{self.ports['metrics']}"

    def start(self) -> ServerProcess:
        env = dict(os.environ if self.env is None else self.env)
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                m = _READY.match(line.strip())
                if m and not ready.is_set():
                    for part in m.group(1).split():
                        key, _, addr = part.partition("=")
                        self.ports[key] = int(addr.rsplit(":", 1)[1])
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sonic serve did not become ready in time:\n" + self.tail())
        if not self.ports:
            self.stop()
            raise RuntimeError("sonic serve exited before it was ready:\n" + self.tail())
        return self

    def tail(self, n: int = 40) -> str:
        return "\n".join(list(self.log)[-n:])

    def kill(self) -> None:
        """SIGKILL, as a crashed server."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
