"""The local transport: the model runs in this process, through the server's own data plane.

No network and no serialization: the request's numpy arrays go straight to
:class:`sonic.server.dataplane.DataPlane`, which validates them, schedules them (dynamic
batching included) and runs the backend exactly as ``sonic serve`` would; its errors are the
server's errors, with the same codes. The data plane lives on a private event loop in its own
thread (its schedulers are bound to that loop), shared by every local transport of the
process that serves the same repositories; it loads models on first use and stops when the
last transport using it closes.

Arrays are handed over without copies; to keep the wire's semantics, outputs come back
read-only, and an output that shares memory with an input (an identity model) is copied.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import numpy as np

from sonic.client._errors import DeadlineExceeded, ServerUnreachable
from sonic.client._grpc import _statistics
from sonic.client._transport import (
    Infer,
    Metadata,
    Op,
    Ready,
    RepositoryIndex,
    ShmRegister,
    ShmStatus,
    ShmUnregister,
    Statistics,
)
from sonic.client._types import IndexEntry, ModelInfo
from sonic.protocol.errors import Internal, NotFound, SonicError, Unsupported, nearest
from sonic.protocol.types import InferRequest, InferResponse

__all__ = ["LocalServer", "LocalTransport"]

T = TypeVar("T")


class LocalServer:
    """A ModelManager + DataPlane on a private event-loop thread."""

    _registry: ClassVar[dict[tuple[str, ...], tuple[LocalServer, int]]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, repositories: Sequence[Path]) -> None:
        from sonic.server.dataplane import DataPlane
        from sonic.server.models import ModelManager
        from sonic.server.shm import SystemSharedMemory

        self.repositories = [Path(r) for r in repositories]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="sonic-local-server", daemon=True)
        self._thread.start()
        self._load_lock = threading.Lock()

        async def setup() -> Any:
            models = ModelManager(self.repositories, "explicit")
            dp = DataPlane(models, SystemSharedMemory(False), name="sonic-local")
            dp.started = True
            return dp

        try:
            self.dataplane = self.run(setup())
        except BaseException:
            self._shutdown()
            raise

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the server's loop and wait for it (from another thread)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def ensure_loaded(self, model: str) -> None:
        """Load ``model`` if it is not loaded yet (from a caller's thread)."""
        models = self.dataplane.models
        if models.ready(model):
            return
        with self._load_lock:
            if models.ready(model):
                return
            if model not in models.repository.models():
                raise NotFound(
                    f"model '{model}' is not in the local repositories "
                    f"{[str(r) for r in self.repositories]}" + nearest(model, models.repository.models())
                )
            self.run(models.load(model))

    def _shutdown(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self.loop.is_running():
            self.loop.close()

    def stop(self) -> None:
        try:
            self.run(self.dataplane.models.stop(), timeout=60)
        finally:
            self._shutdown()

    # -- sharing between transports -----------------------------------------------------------

    @classmethod
    def acquire(cls, repositories: Sequence[Path]) -> LocalServer:
        key = tuple(sorted(str(Path(r).resolve()) for r in repositories))
        with cls._registry_lock:
            entry = cls._registry.get(key)
            if entry is None:
                server = LocalServer([Path(k) for k in key])
                cls._registry[key] = (server, 1)
            else:
                server = entry[0]
                cls._registry[key] = (server, entry[1] + 1)
            return server

    @classmethod
    def release(cls, server: LocalServer) -> None:
        with cls._registry_lock:
            for key, (s, n) in list(cls._registry.items()):
                if s is server:
                    if n > 1:
                        cls._registry[key] = (s, n - 1)
                        return
                    del cls._registry[key]
                    break
            else:
                return
        server.stop()


class LocalTransport:
    """The in-process "server": a :class:`LocalServer` for ``repositories``."""

    address = "local"
    same_host = False  # nothing to share: the arrays are handed over as they are

    def __init__(self, repositories: Sequence[Path], models: Sequence[str] = ()) -> None:
        if not repositories:
            raise Unsupported(
                "the local transport needs a model repository: set 'repository' in the client "
                "config (the directories that `sonic serve --model-repository` would serve)"
            )
        self._server: LocalServer | None = LocalServer.acquire(repositories)
        try:
            for m in models:
                self._server.ensure_loaded(m)
        except BaseException:
            self.close()
            raise

    def _live(self) -> LocalServer:
        server = self._server
        if server is None:
            raise ServerUnreachable("the local transport is closed")
        return server

    # -- the interface --------------------------------------------------------------------

    def handle(self, op: Op[T]) -> T:
        server = self._live()
        timeout = getattr(op, "timeout", None) or None
        try:
            return server.run(self._do(server, op), timeout)
        except concurrent.futures.TimeoutError:
            raise DeadlineExceeded(f"no answer from the local model within {timeout} s") from None

    async def handle_async(self, op: Op[T]) -> T:
        server = self._live()
        timeout = getattr(op, "timeout", None) or None
        fut = asyncio.run_coroutine_threadsafe(self._do(server, op), server.loop)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(fut)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from the local model within {timeout} s") from None
        finally:
            fut.cancel()  # no-op once done; stops the work when the caller gave up

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            LocalServer.release(server)

    async def aclose(self) -> None:
        """Nothing is bound to the caller's loop; the server closes with :meth:`close`."""

    # -- operations (on the server's loop) ----------------------------------------------------

    async def _do(self, server: LocalServer, op: Op[T]) -> T:
        dp = server.dataplane
        try:
            if type(op) is Infer:
                return cast(T, _own_outputs(op.request, await dp.infer(op.request)))
            answer: Any
            if isinstance(op, Metadata):
                if not dp.models.ready(op.model, op.version) and op.model in dp.models.repository.models():
                    await dp.models.load(op.model)
                meta = dp.model_metadata(op.model, op.version)
                config = dp.model_config(op.model, op.version)
                cfg = {
                    "name": config.name,
                    "max_batch_size": config.max_batch_size,
                    "input": [{"name": t.name, "optional": t.optional} for t in config.input],
                }
                answer = ModelInfo.from_v2(meta, cfg)
            elif isinstance(op, RepositoryIndex):
                answer = [
                    IndexEntry(r["name"], r.get("version", ""), r.get("state", ""), r.get("reason", ""))
                    for r in dp.repository_index()
                ]
            elif isinstance(op, Statistics):
                answer = [_statistics(s) for s in dp.statistics(op.model, op.version)]
            elif isinstance(op, Ready):
                answer = dp.model_ready(op.model, op.version) if op.model else dp.ready()
            elif isinstance(op, ShmRegister | ShmUnregister | ShmStatus):
                raise Unsupported("the local transport has no shared memory: arrays are handed over")
            else:
                raise TypeError(f"the local transport cannot handle {type(op).__name__}")
            return cast(T, answer)
        except SonicError:
            raise
        except Exception as exc:  # a backend bug must look like a server's INTERNAL error
            raise Internal(f"{type(exc).__name__}: {exc}") from exc


def _own_outputs(req: InferRequest, resp: InferResponse) -> InferResponse:
    """Outputs as the wire would give them: read-only, never aliasing an input."""
    inputs = [t.data for t in req.inputs if t.data is not None]
    for out in resp.outputs:
        data = out.data
        if data is None:
            continue
        if any(np.may_share_memory(data, a) for a in inputs):
            data = data.copy()
        elif data.flags.writeable:
            data = data.view()
        data.flags.writeable = False
        out.data = data
    return resp
