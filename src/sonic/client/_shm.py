"""Client-side system shared memory: slots of POSIX shared memory, registered once, reused.

When the server runs on the same host and the client is asked to, tensors do not travel in
the request: the client copies inputs into a shared-memory *slot* (one ``/dev/shm`` object
holding the inputs and the fixed-size outputs of one request), names ``(region, offset,
byte_size)`` in the request, and copies the outputs out of the slot when the answer comes.

A slot serves one request at a time; concurrent requests take different slots, so a client
ends up with as many slots as it had requests in flight at its peak. Each slot is registered
with a server the first time it is used there and stays registered until the client closes.
A slot whose request did not end cleanly (timeout, broken connection) may still be written by
the server, so it is discarded, never reused. Slots grow (by replacement) when a request needs
more room than any free slot has.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import mmap
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.datatypes import numpy_dtype, serialize_bytes

__all__ = ["ShmPool", "ShmSlot", "is_same_host", "split_address"]

SHM_DIR = Path("/dev/shm")
_ALIGN = 64
_MIN_SLOT = 64 * 1024


def split_address(address: str) -> tuple[str, int | None]:
    """"host:port" (or "[v6]:port", or a bare host) -> (host, port)."""
    addr = address.split("://", 1)[-1].rstrip("/")
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else None
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return addr, None
    return host, int(port)


@functools.cache
def _local_addresses() -> frozenset[str]:
    addrs = {"127.0.0.1", "::1"}
    try:
        import psutil

        for entries in psutil.net_if_addrs().values():
            for e in entries:
                if e.family in (socket.AF_INET, socket.AF_INET6):
                    addrs.add(e.address.split("%", 1)[0])
    except Exception:  # pragma: no cover - psutil missing or restricted
        pass
    return frozenset(addrs)


@functools.cache
def _host_is_local(host: str) -> bool:
    if host in ("localhost", "") or host == socket.gethostname():
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
        resolved = {host}
    except ValueError:
        try:
            resolved = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
    return any(ipaddress.ip_address(a).is_loopback or a in _local_addresses() for a in resolved)


def is_same_host(address: str) -> bool:
    """Whether a server at ``address`` runs on this host (then /dev/shm is shared)."""
    return _host_is_local(split_address(address)[0])


def _round(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


@dataclass(eq=False)
class ShmSlot:
    """One POSIX shared-memory object, mapped here, registered on some servers."""

    name: str  # region name on the servers (also the object's file name)
    size: int
    mm: mmap.mmap
    registered: set[str] = field(default_factory=set)  # server addresses

    @property
    def key(self) -> str:
        return "/" + self.name

    def write(self, offset: int, datatype: str, array: npt.NDArray[Any]) -> int:
        """Copy ``array`` in at ``offset`` as v2 raw bytes; return the byte size."""
        if datatype == "BYTES":
            raw = serialize_bytes(array)
            self.mm[offset : offset + len(raw)] = raw
            return len(raw)
        dtype = numpy_dtype(datatype)
        count = int(array.size)
        view = np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)
        np.copyto(view, np.asarray(array).reshape(-1), casting="same_kind")
        del view
        return count * dtype.itemsize

    def read(self, offset: int, datatype: str, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """A copy of the fixed-size tensor at ``offset``."""
        dtype = numpy_dtype(datatype)
        count = 1
        for d in shape:
            count *= d
        view = np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)
        out = view.reshape(shape).copy()
        del view
        return out


def bytes_needed(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets (aligned) for tensors of ``sizes`` bytes laid out back to back, and the total."""
    offsets: list[int] = []
    pos = 0
    for n in sizes:
        offsets.append(pos)
        pos += _round(max(n, 1))
    return offsets, pos


class ShmPool:
    """The slots of one client (thread-safe)."""

    def __init__(self) -> None:
        self._prefix = f"sonic_{os.getpid()}_{secrets.token_hex(4)}"
        self._count = itertools.count()
        self._lock = threading.Lock()
        self._free: list[ShmSlot] = []
        self._all: list[ShmSlot] = []
        self._retired: list[ShmSlot] = []  # discarded: to unregister, then unlink
        self.closed = False

    def acquire(self, nbytes: int) -> ShmSlot:
        with self._lock:
            for i, slot in enumerate(self._free):
                if slot.size >= nbytes:
                    return self._free.pop(i)
            if self._free:  # too small: retire the smallest free slot, make a bigger one
                small = min(self._free, key=lambda s: s.size)
                self._free.remove(small)
                self._retire(small)
        return self._create(max(_MIN_SLOT, 1 << max(nbytes - 1, 1).bit_length()))

    def release(self, slot: ShmSlot) -> None:
        with self._lock:
            if self.closed:
                self._retire(slot)
            else:
                self._free.append(slot)

    def discard(self, slot: ShmSlot) -> None:
        """Never reuse ``slot`` (its request did not end cleanly)."""
        with self._lock:
            self._retire(slot)

    def _retire(self, slot: ShmSlot) -> None:
        if slot in self._all:
            self._all.remove(slot)
        self._retired.append(slot)
        _unlink(slot.name)

    def _create(self, size: int) -> ShmSlot:
        name = f"{self._prefix}_{next(self._count)}"
        path = SHM_DIR / name
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _unlink(name)
            raise
        os.close(fd)
        slot = ShmSlot(name, size, mm)
        with self._lock:
            self._all.append(slot)
        return slot

    def drain(self) -> list[ShmSlot]:
        """Close the pool: every slot, to unregister where it is registered; the objects are
        unlinked and unmapped by :meth:`finish`."""
        with self._lock:
            self.closed = True
            slots = self._all + self._retired
            self._all, self._free, self._retired = [], [], []
        return slots

    @staticmethod
    def finish(slots: list[ShmSlot]) -> None:
        for slot in slots:
            _unlink(slot.name)
            with contextlib.suppress(BufferError):
                slot.mm.close()

    def retired(self) -> list[ShmSlot]:
        """Discarded slots still registered somewhere (unregistered at close)."""
        with self._lock:
            return list(self._retired)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SHM_DIR / name)
