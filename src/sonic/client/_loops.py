"""Asyncio resources kept per event loop, released when their loop shuts down.

An aiohttp session or a grpc.aio channel belongs to the loop that made it, while a client may
serve several loops in turn (``asyncio.run`` called again and again, the client's own callback
loop). :class:`PerLoop` keeps one resource per loop and releases it on that loop before the
loop closes: each resource comes with a suspended async generator, registered with its loop
through asyncio's async-generator hooks, and ``loop.shutdown_asyncgens()`` (which
``asyncio.run`` calls before closing the loop) finalizes it, running the release. So a caller
that uses the client inside ``asyncio.run`` without closing it leaks no sockets; ``close``
releases whatever is left, as well as each loop's state allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["PerLoop"]

R = TypeVar("R")


class PerLoop(Generic[R]):
    def __init__(self, make: Callable[[], R], release: Callable[[R], Awaitable[None]]) -> None:
        self._make = make
        self._release = release
        self._items: dict[asyncio.AbstractEventLoop, tuple[R, AsyncGenerator[None, None]]] = {}
        self._lock = threading.Lock()

    def current(self) -> R | None:
        """This loop's resource, or None (then :meth:`create`)."""
        item = self._items.get(asyncio.get_running_loop())
        return item[0] if item is not None else None

    async def create(self) -> R:
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is not None:
            return item[0]
        resource = self._make()
        guard = self._guard(loop, resource)
        await guard.__anext__()  # registers it with the loop's async-generator hooks
        with self._lock:
            self._items[loop] = (resource, guard)
        return resource

    async def _guard(self, loop: asyncio.AbstractEventLoop, resource: R) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                item = self._items.get(loop)
                if item is not None and item[0] is resource:
                    del self._items[loop]
            await self._release(resource)

    async def aclose(self) -> None:
        """Release the current loop's resource."""
        item = self._items.get(asyncio.get_running_loop())
        if item is not None:
            await item[1].aclose()

    def close(self) -> None:
        """Release every loop's resource that can still be released."""
        with self._lock:
            items = list(self._items.items())
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, (_, guard) in items:
            if loop.is_closed():
                continue
            if loop is running:  # closing from inside that loop: finish when it next runs
                loop.create_task(guard.aclose())
            elif loop.is_running():
                fut = asyncio.run_coroutine_threadsafe(guard.aclose(), loop)
                with contextlib.suppress(Exception):
                    fut.result(timeout=10)
            else:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(guard.aclose())
