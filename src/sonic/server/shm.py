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
            return [self._get(name, "system ")]
        return list(self._regions.values())

    def _get(self, name: str, kind: str = "") -> Region:
        try:
            return self._regions[name]
        except KeyError:
            # Triton's wording: "system shared memory region" from the status API, plain
            # "shared memory region" on the inference path
            raise NotFound(
                f"Unable to find {kind}shared memory region: '{name}'" + nearest(name, self._regions)
            ) from None

    def _slice(self, ref: ShmRef) -> memoryview:
        region = self._get(ref.region)
        if ref.offset < 0 or ref.byte_size < 0 or ref.offset + ref.byte_size > region.byte_size:
            raise InvalidArgument(
                f"Invalid offset + byte size for shared memory region: '{ref.region}' "
                f"(offset {ref.offset} + byte_size {ref.byte_size} > region size {region.byte_size})"
            )
        start = region.offset + ref.offset
        return memoryview(region.mm)[start : start + ref.byte_size]

    def read(self, ref: ShmRef) -> memoryview:
        return self._slice(ref)

    def write(self, ref: ShmRef, data: bytes | memoryview, output: str) -> None:
        view = self._slice(ref)
        if len(data) > len(view):
            raise Internal(
                f"shared memory size specified with the request for output '{output}' "
                f"({len(view)} bytes) should be at least {len(data)} bytes to hold the results"
            )
        view[: len(data)] = data


def cuda_unsupported() -> Unsupported:
    return Unsupported("CUDA shared memory is not supported: this server has no GPU support built in")
