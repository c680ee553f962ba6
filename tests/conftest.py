"""Shared fixtures: one model repository served by ``sonic serve`` and by NVIDIA's Triton.

The conformance suite is differential: every test that takes the ``server`` fixture runs once
against sonic and once against NVIDIA's own tritonserver (``tests/triton_ref.py``), on the
*same* repository directory (Triton python-backend models, which sonic runs unchanged), with
NVIDIA's clients only. A test passes against both or it says where sonic differs.

Both servers are session-scoped (Triton takes ~7 s to load the conformance models), so tests
must leave them as they found them: tests that load or unload models use the ``control_server``
servers (module-scoped, their own small repository) and restore the state they change.
The ``triton`` parameters are marked ``triton`` and skip, with the reason, where NVIDIA's Triton
cannot run (``-m "not triton"`` deselects them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import pytest

from sonic import zoo
from sonic.server.process import ServerProcess
from triton_ref import run_triton, triton_available, unavailable_reason

#: Flags for sonic; Triton gets the same minus ``--allow-client-shm`` (Triton 2.51 accepts
#: client shared memory without being asked; sonic refuses it unless told, as Triton >= 2.69).
EXPLICIT_ALL = ("--model-control-mode=explicit", "--load-model=*")
SONIC_FLAGS = (*EXPLICIT_ALL, "--allow-client-shm")

#: The models the control servers load at start; ``broken`` (a config.pbtxt that does not
#: parse) sits in their repository too, for load-failure tests, and is never loaded.
CONTROL_MODELS = ("add_sub", "identity_fp32")
BROKEN_CONFIG = 'name: "broken"\nbackend: "python"\nthis is not a model config {{{\n'

SERVER_KINDS = ("sonic", pytest.param("triton", marks=pytest.mark.triton))


class _Urls(Protocol):
    @property
    def http_url(self) -> str: ...
    @property
    def grpc_url(self) -> str: ...
    @property
    def metrics_url(self) -> str: ...


@dataclass(frozen=True)
class Target:
    """A running server as the tests see it: ``host:port`` URLs and which server it is."""

    kind: str  # "sonic" or "triton"
    http_url: str
    grpc_url: str
    metrics_url: str
    repository: Path

    @classmethod
    def of(cls, kind: str, urls: _Urls, repository: Path) -> Target:
        return cls(kind, urls.http_url, urls.grpc_url, urls.metrics_url, repository)

    @property
    def is_sonic(self) -> bool:
        return self.kind == "sonic"


# -- Prometheus text format, read strictly -----------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Metrics:
    """One scrape: ``# TYPE`` by metric name, and sample values by (name, sorted labels).

    Read literally, without prometheus_client's parser, which renames counters: the test
    sees the names a Triton dashboard queries.
    """

    types: dict[str, str]
    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def has(self, name: str, **labels: str) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.samples


def parse_metrics(text: str) -> Metrics:
    types: dict[str, str] = {}
    samples: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return Metrics(types, samples)


def scrape_metrics(metrics_url: str) -> Metrics:
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as response:
        return parse_metrics(response.read().decode())


EXAMPLE_WORKFLOWS = Path(__file__).resolve().parents[1] / "examples" / "workflows"


def example_module(filename: str) -> ModuleType:
    """A module file of examples/workflows (``protodune.py``...), imported under its own name."""
    path = EXAMPLE_WORKFLOWS / filename
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _require_triton() -> None:
    if not triton_available():
        pytest.skip(f"NVIDIA Triton unavailable: {unavailable_reason()}")


@contextlib.contextmanager
def sonic_process(repo: Path | list[Path], *flags: str) -> Iterator[ServerProcess]:
    """``sonic serve`` on free ports for the duration of the block."""
    with ServerProcess(repo, *flags) as server:
        yield server


@contextlib.contextmanager
def _sonic(repo: Path, *flags: str) -> Iterator[Target]:
    with sonic_process(repo, *flags) as proc:
        yield Target.of("sonic", proc, repo)
        assert proc.proc is not None
        if proc.proc.poll() is not None:  # it died during the tests: say so, with its log
            pytest.fail(f"sonic serve exited with {proc.proc.returncode}:\n{proc.tail()}")


@contextlib.contextmanager
def _triton(repo: Path, *flags: str) -> Iterator[Target]:
    with run_triton(repo, flags, timeout=120) as endpoint:
        yield Target.of("triton", endpoint, repo)


# -- the conformance repository and its two servers ---------------------------------------------


@pytest.fixture(scope="session")
def conformance_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every conformance model (identity per datatype, add_sub, sleep) plus the python MLP."""
    repo = tmp_path_factory.mktemp("conformance-repo")
    zoo.write_conformance_repository(repo)
    zoo.write_triton_python_repository(repo, models=("mlp",))
    return repo


@pytest.fixture(scope="session")
def sonic_server(conformance_repo: Path) -> Iterator[Target]:
    with _sonic(conformance_repo, *SONIC_FLAGS) as target:
        yield target


@pytest.fixture(scope="session")
def triton_server(conformance_repo: Path) -> Iterator[Target]:
    _require_triton()
    with _triton(conformance_repo, *EXPLICIT_ALL) as target:
        yield target


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Target:
    """The server under test: sonic, then NVIDIA's Triton, serving the conformance repository."""
    target: Target = request.getfixturevalue(f"{request.param}_server")
    return target


# -- servers whose model state the tests change --------------------------------------------------


@pytest.fixture(scope="session")
def control_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("control-repo")
    zoo.write_conformance_repository(repo, models=CONTROL_MODELS)
    broken = repo / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text(BROKEN_CONFIG)
    return repo


def _control_flags() -> list[str]:
    return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in CONTROL_MODELS)]


@pytest.fixture(scope="module", params=SERVER_KINDS)
def control_server(request: pytest.FixtureRequest, control_repo: Path) -> Iterator[Target]:
    """A server in explicit mode with add_sub and identity_fp32 loaded, for load/unload tests.

    Module-scoped and separate from ``server``, so a test that fails half-way through a
    load/unload sequence cannot take the models of the other tests with it.
    """
    if request.param == "sonic":
        with _sonic(control_repo, *_control_flags(), "--allow-client-shm") as target:
            yield target
    else:
        _require_triton()
        with _triton(control_repo, *_control_flags()) as target:
            yield target
