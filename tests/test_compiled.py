"""The Cython build of the hot path (setup.py) and its run-time guard (sonic._compiled)."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sonic
from sonic import _compiled

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package with ``mod.py`` and a "build" of it that is not a loadable extension: if the
    guard ever let Python import it, the import would fail."""
    pkg = tmp_path / "sonic_fake_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("VALUE = 'source'\n")
    (pkg / f"mod{SUFFIX}").write_bytes(b"not an ELF file")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_compiled, "_NAMES", _compiled._NAMES | {"sonic_fake_pkg.mod"})
    monkeypatch.delenv("SONIC_PURE_PYTHON", raising=False)
    yield pkg
    for name in ("sonic_fake_pkg.mod", "sonic_fake_pkg"):
        sys.modules.pop(name, None)


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_build_older_than_its_source_is_not_used(fake_package: Path) -> None:
    _age(fake_package / f"mod{SUFFIX}", 60)  # the source was edited after the build
    module = importlib.import_module("sonic_fake_pkg.mod")
    assert module.VALUE == "source"
    assert module.__file__ is not None and module.__file__.endswith("mod.py")


def test_sonic_pure_python_skips_a_fresh_build(fake_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _age(fake_package / "mod.py", 60)
    finder = _compiled.FreshnessFinder()
    spec = finder.find_spec("sonic_fake_pkg.mod", [str(fake_package)])
    assert spec is None  # fresh: left to Python's import, which takes the extension
    monkeypatch.setenv("SONIC_PURE_PYTHON", "1")
    spec = finder.find_spec("sonic_fake_pkg.mod", [str(fake_package)])
    assert spec is not None and spec.origin is not None and spec.origin.endswith("mod.py")
    assert importlib.import_module("sonic_fake_pkg.mod").VALUE == "source"


def test_modules_outside_the_list_are_not_touched(fake_package: Path) -> None:
    assert _compiled.FreshnessFinder().find_spec("sonic_fake_pkg", None) is None
    assert _compiled.FreshnessFinder().find_spec("json", None) is None


def test_the_installed_hot_path_runs_what_its_files_say() -> None:
    """Each hot-path module runs compiled exactly when a build newer than its source sits next
    to it (and SONIC_PURE_PYTHON is not set): never a stale build, never a fresh one ignored."""
    assert any(isinstance(f, _compiled.FreshnessFinder) for f in sys.meta_path)
    for name in _compiled.MODULES:
        importlib.import_module(name)
    state = _compiled.compiled()
    assert set(state) == set(_compiled.MODULES)
    root = Path(sonic.__file__).parent.parent
    for name in _compiled.MODULES:
        source = root / (name.replace(".", "/") + ".py")
        build = source.with_name(source.stem + SUFFIX)
        fresh = build.exists() and build.stat().st_mtime >= source.stat().st_mtime
        assert state[name] == (fresh and not _compiled.pure_python()), name


def test_stale_lists_builds_older_than_their_source(tmp_path: Path) -> None:
    name = _compiled.MODULES[0]
    source = tmp_path / (name.replace(".", "/") + ".py")
    source.parent.mkdir(parents=True)
    source.write_text("")
    assert _compiled.stale(tmp_path) == []  # never built: nothing to rebuild
    build = source.with_name(source.stem + SUFFIX)
    build.write_bytes(b"")
    _age(source, 60)
    assert _compiled.stale(tmp_path) == []  # built after the last edit
    _age(build, 120)
    assert _compiled.stale(tmp_path) == [name]
