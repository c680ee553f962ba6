"""The fallback server: ``sonic serve`` on this host's CPU, for when no server can help.

CMS's SonicTriton starts a local Triton server when no configured server has the model (its
"fallback server"); this is the same, with sonic's own server: a subprocess on free ports,
serving the configured repository, loading only the client's model, started on demand and
stopped when the client closes. It runs on the same CPU as the client, so a client that runs
on it is put in synchronous mode (see ``Client.mode``): overlapping requests would only make
the model and the job compete for the same cores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from sonic.client._errors import ServerUnreachable

__all__ = ["FallbackServer"]

log = logging.getLogger("sonic.client")


class FallbackServer:
    """One ``sonic serve`` subprocess (started by :meth:`start`, stopped by :meth:`stop`)."""

    def __init__(
        self,
        repositories: Sequence[Path],
        model: str,
        flags: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.repositories = [Path(r) for r in repositories]
        self.model = model
        self.flags = [
            "--model-control-mode=explicit",
            f"--load-model={model}",
            "--allow-client-shm",
            "--allow-metrics=false",
            *flags,
        ]
        self.startup_timeout = startup_timeout
        self._proc: object | None = None
        self._lock = threading.Lock()

    def start(self) -> tuple[str, str]:
        """Start (once); return the (gRPC, HTTP) addresses."""
        from sonic.server.process import ServerProcess

        with self._lock:
            if self._proc is None:
                proc = ServerProcess(self.repositories, *self.flags, startup_timeout=self.startup_timeout)
                log.warning(
                    "starting the fallback server (sonic serve on this host's CPU) for model '%s'",
                    self.model,
                )
                try:
                    proc.start()
                except RuntimeError as exc:
                    raise ServerUnreachable(f"the fallback server did not start: {exc}") from None
                self._proc = proc
            p = self._proc
            assert isinstance(p, ServerProcess)
            return p.grpc_url, p.http_url

    @property
    def running(self) -> bool:
        return self._proc is not None

    def stop(self) -> None:
        from sonic.server.process import ServerProcess

        with self._lock:
            proc, self._proc = self._proc, None
        if isinstance(proc, ServerProcess):
            proc.stop()  # SIGTERM (SIGKILL after a grace period); closes its output pipe
