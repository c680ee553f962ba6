"""System shared memory regions registered by clients (Triton's shared-memory extension).

A client creates a POSIX shared-memory object (``shm_open(key)``, i.e. ``/dev/shm/<key>``),
registers it under a name with an offset and size, and then names ``(region, offset,
byte_size)`` in requests instead of sending tensor bytes. The server maps each region once and
reads inputs / writes outputs in place. Registration is refused unless the server was started
with ``--allow-client-shm`` (as in Triton ≥ 2.69), since it lets a client make the server map
files.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from sonic.protocol.errors import AlreadyExists, Internal, InvalidArgument, NotFound, Unsupported, nearest
from sonic.protocol.types import ShmRef

SHM_DIR = Path("/dev/shm")


@dataclass(slots=True)
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    mm: mmap.mmap


class SystemSharedMemory:
    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self._regions: dict[str, Region] = {}

    def _check_allowed(self) -> None:
        if not self.allowed:
            raise Unsupported(
                "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."
            )

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._check_allowed()
        if name in self._regions:
            raise AlreadyExists(f"shared memory region '{name}' already in manager")
        if not key or "/" in key.strip("/") or key.strip("/") in ("", ".", ".."):
            raise InvalidArgument(
                f"invalid shared memory key '{key}'; expected a POSIX shm name like '/my_region'"
            )
        if offset < 0 or byte_size <= 0:
            raise InvalidArgument(f"shared memory region '{name}': offset must be >= 0 and byte_size > 0")
        path = SHM_DIR / key.strip("/")
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise Internal(
                f"Unable to open shared memory region: '{key}' (no such object in {SHM_DIR})"
            ) from None
        except OSError as exc:
            raise InvalidArgument(f"Unable to open shared memory region '{key}': {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise InvalidArgument(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} exceeds "
                    f"the size {size} of shared memory object '{key}'"
                )
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._regions[name] = Region(name, key, offset, byte_size, mm)

    def unregister(self, name: str = "") -> None:
        self._check_allowed()
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is not None:
                # a request may still hold a view: then the map closes with its last view
                with contextlib.suppress(BufferError):
                    region.mm.close()

    def status(self, name: str = "") -> list[Region]:
        if name:
            return [self._get(name)]
        return list(self._regions.values())

    def _get(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise NotFound(
                f"Unable to find system shared memory region: '{name}'" + nearest(name, self._regions)
            ) from None

    def _slice(self, ref: ShmRef, what: str) -> memoryview:
        region = self._get(ref.region)
        if ref.offset < 0 or ref.byte_size < 0 or ref.offset + ref.byte_size > region.byte_size:
            raise InvalidArgument(
                f"{what}: shared memory region '{ref.region}' is {region.byte_size} bytes; "
                f"offset {ref.offset} + byte_size {ref.byte_size} is out of bounds"
            )
        start = region.offset + ref.offset
        return memoryview(region.mm)[start : start + ref.byte_size]

    def read(self, ref: ShmRef, what: str) -> memoryview:
        return self._slice(ref, what)

    def write(self, ref: ShmRef, data: bytes | memoryview, what: str) -> None:
        view = self._slice(ref, what)
        if len(data) > len(view):
            raise InvalidArgument(
                f"{what}: {len(data)} bytes of output do not fit in shared memory region "
                f"'{ref.region}' slice of {len(view)} bytes"
            )
        view[: len(data)] = data


def cuda_unsupported() -> Unsupported:
    return Unsupported("CUDA shared memory is not supported: this server has no GPU support built in")
