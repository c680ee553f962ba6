"""Model repository layout: which models exist, which versions to serve, what changed.

Where it sits: below model control (none / poll / explicit). A repository is one or more
directories (Triton's ``--model-repository`` is repeatable); each subdirectory is a model,
named by the directory, holding an optional ``config.pbtxt`` and numbered version
directories::

    <repository>/<model>/config.pbtxt
    <repository>/<model>/<version>/model.onnx

This module only looks at the filesystem: it lists models and versions, applies a version
policy, and computes a cheap fingerprint that poll mode compares to decide a reload. Reading
configurations is :mod:`sonic.repository.config`; loading models is the server's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from tritonclient.grpc.model_config_pb2 import ModelConfig

from sonic.protocol.errors import AlreadyExists, InvalidArgument, NotFound, nearest

__all__ = ["Fingerprint", "ModelRepository", "select_versions", "versions_on_disk"]

# (model directory, ((relative path, mtime_ns, size), ...)); directories have mtime and size 0.
Fingerprint = tuple[str, tuple[tuple[str, int, int], ...]]

# Entries never part of a model: hidden files (.git, .ipynb_checkpoints) and the bytecode
# cache the python backend writes next to model.py, which must not look like a change.
_IGNORED = frozenset({"__pycache__"})


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED


def _is_version_name(name: str) -> bool:
    """Triton serves subdirectories named by a positive integer without a leading zero."""
    return name.isascii() and name.isdigit() and not name.startswith("0")


def versions_on_disk(model_dir: Path) -> list[int]:
    """The version numbers present under ``model_dir``, ascending; other entries are ignored."""
    try:
        entries = list(os.scandir(model_dir))
    except FileNotFoundError:
        raise NotFound(f"model directory {model_dir} does not exist") from None
    except NotADirectoryError:
        raise NotFound(f"{model_dir} is not a directory") from None
    return sorted(int(e.name) for e in entries if _is_version_name(e.name) and e.is_dir())


def select_versions(config: ModelConfig, on_disk: list[int]) -> list[int]:
    """The versions ``config.version_policy`` serves from ``on_disk``, ascending.

    ``latest { num_versions: n }`` (the default, with n = 1) takes the n highest, ``all``
    takes every one, ``specific { versions: [...] }`` takes exactly those and raises NotFound
    when one is missing. A policy that selects nothing raises NotFound as well: a model needs at
    least one version to serve.
    """
    present = sorted(set(on_disk))
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    name = f"model '{config.name}'" if config.name else "the model"
    if choice == "all":
        chosen = present
        described = "all"
    elif choice == "specific":
        wanted = sorted(set(policy.specific.versions))
        missing = [v for v in wanted if v not in present]
        if missing:
            raise NotFound(
                f"version_policy of {name} names version(s) {missing} that are not on disk; "
                f"versions present: {present or 'none'}"
            )
        chosen = wanted
        described = f"specific {wanted}"
    else:
        count = policy.latest.num_versions if choice == "latest" else 1
        if count < 1:
            raise InvalidArgument(
                f"version_policy of {name}: latest.num_versions must be >= 1, got {count}"
            )
        chosen = present[-count:]
        described = f"latest {count}"
    if not chosen:
        raise NotFound(
            f"{name} has no version to serve under version_policy {described}: add a numbered "
            "version directory (e.g. 1/) holding the model file"
        )
    return chosen


class ModelRepository:
    """The model directories of one or more repository paths.

    Listing is done on every call, so what is returned is always what is on disk now; poll
    mode and explicit load calls see new models without a restart.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        unique: list[Path] = []
        seen: set[Path] = set()
        for raw in paths:
            path = Path(raw)
            if not path.is_dir():
                raise NotFound(f"model repository {path} does not exist or is not a directory")
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                unique.append(path)
        if not unique:
            raise InvalidArgument("no model repository path given (--model-repository)")
        self._paths = tuple(unique)

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    def _scan(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for repo in self._paths:
            try:
                entries = sorted(os.scandir(repo), key=lambda e: e.name)
            except OSError as exc:
                raise NotFound(f"cannot list model repository {repo}: {exc}") from None
            for entry in entries:
                if not _ignored(entry.name) and entry.is_dir():
                    found.setdefault(entry.name, []).append(Path(entry.path))
        return found

    def models(self) -> dict[str, Path]:
        """Every model name and its directory; a name in two repositories is an error."""
        found = self._scan()
        for name, dirs in found.items():
            if len(dirs) > 1:
                raise _duplicate(name, dirs)
        return {name: dirs[0] for name, dirs in sorted(found.items())}

    def duplicates(self) -> dict[str, list[Path]]:
        """Names found in more than one repository (Triton serves none of them), with paths."""
        return {name: dirs for name, dirs in sorted(self._scan().items()) if len(dirs) > 1}

    def model_dir(self, name: str) -> Path:
        """The directory of model ``name``; NotFound suggests the nearest model names."""
        found = self._scan()
        dirs = found.get(name)
        if dirs is None:
            where = ", ".join(str(p) for p in self._paths)
            raise NotFound(
                f"model '{name}' is not in the model repository ({where})" + nearest(name, found)
            )
        if len(dirs) > 1:
            raise _duplicate(name, dirs)
        return dirs[0]

    def fingerprint(self, name: str) -> Fingerprint:
        """A cheap change detector for model ``name``: equal fingerprints mean no reload.

        Covers every file and directory under the model directory (config.pbtxt, version
        directories and their files, label files) by relative path, modification time and
        size, following symlinks; hidden entries and ``__pycache__`` are left out.
        """
        model_dir = self.model_dir(name)
        entries: list[tuple[str, int, int]] = []
        _walk(model_dir, "", entries, set())
        return str(model_dir), tuple(sorted(entries))


def _duplicate(name: str, dirs: list[Path]) -> AlreadyExists:
    listed = " and ".join(str(d) for d in dirs)
    return AlreadyExists(
        f"model '{name}' is in more than one model repository ({listed}); model names must be "
        "unique across repositories: rename or remove one"
    )


def _walk(
    directory: Path, prefix: str, out: list[tuple[str, int, int]], seen: set[tuple[int, int]]
) -> None:
    try:
        info = directory.stat()
        entries = list(os.scandir(directory))
    except OSError:
        return  # removed while we looked: its absence is the change
    key = (info.st_dev, info.st_ino)
    if key in seen:  # a symlink loop
        return
    seen.add(key)
    for entry in entries:
        if _ignored(entry.name):
            continue
        rel = prefix + entry.name
        try:
            st = entry.stat()  # follows symlinks: a linked model file counts by its target
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            out.append((rel + "/", 0, 0))
            _walk(Path(entry.path), rel + "/", out, seen)
        else:
            out.append((rel, st.st_mtime_ns, st.st_size))
