"""sonic.workflow: sources, modules, streams, sinks, YAML, the report, and ``sonic run``.

Real models made by the tests (the zoo's jet-tagger MLP: "input" [16] FP32 -> "output" [5]),
real files (a ROOT TTree written with uproot, HDF5 with h5py), real servers on loopback
(``sonic serve``, NVIDIA's Triton through ``server``). A ROOT event holds 0..4 jets of 16
features (NanoAOD layout: ``njet`` + ``jet_f00`` ... ``jet_f15``); the SONIC module sends
each event's jets as one batch and stores the (n_jets, 5) scores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import Target
from sonic import zoo
from sonic.client import InferResult
from sonic.workflow import (
    ArraySink,
    ArraySource,
    ConfigError,
    Event,
    H5Sink,
    H5Source,
    Jagged,
    Module,
    ParquetSink,
    Process,
    RootSink,
    RootSource,
    SonicModule,
    WorkflowError,
    load_process,
    read_columns,
)
from sonic.workflow.cli import register
from sonic.workflow.modules import Copy, Infer

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

N_EVENTS = 600
N_FEATURES = 16


def make_jets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(jets per event, flat jet features (sum of counts, 16) float32)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, n)
    feats = rng.normal(size=(int(counts.sum()), N_FEATURES)).astype(np.float32)
    return counts, feats


def write_jets(
    path: Path, n: int = N_EVENTS, seed: int = 0, first_event: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A TTree ``Events``: ``event`` (int64), ``met`` (float32), ``njet`` + ``jet_f00..f15``."""
    counts, feats = make_jets(n, seed)
    jet = ak.zip({f"f{k:02d}": ak.unflatten(feats[:, k], counts) for k in range(N_FEATURES)})
    met = np.random.default_rng(seed + 1).exponential(30.0, n).astype(np.float32)
    with uproot.recreate(str(path)) as f:
        t = f.mktree("Events", {"event": np.int64, "met": np.float32, "jet": jet.type})
        t.extend({"event": np.arange(first_event, first_event + n, dtype=np.int64), "met": met, "jet": jet})
    return counts, feats


def reference_scores(counts: np.ndarray, feats: np.ndarray) -> Jagged:
    """The MLP run directly in onnxruntime on every jet: the answer the workflow must give."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(zoo.mlp_onnx(), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"input": feats})[0]
    return Jagged.from_counts(counts, scores)


def jets_source(path: Path | list[Path], step_size: int = 128) -> RootSource:
    return RootSource(path, "Events", ["event", "met"], collections={"jet": "jet_f*"}, step_size=step_size)


def tagger() -> Infer:
    return Infer({"input": "jet"}, {"output": "score"}, name="tagger")


def local(repo: Path, **extra: Any) -> dict[str, Any]:
    return {"model": "mlp", "transport": "local", "repository": [str(repo)], **extra}


@pytest.fixture(scope="module")
def jets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    path = tmp_path_factory.mktemp("jets") / "jets.root"
    counts, feats = write_jets(path)
    return path, counts, feats


@pytest.fixture(scope="module")
def mlp_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo.write_sonic_repository(tmp_path_factory.mktemp("mlp-repo"), models=("mlp",))


# -- a ROOT file through a SONIC module ----------------------------------------------------------


def test_root_jets_through_the_mlp_in_process(
    jets: tuple[Path, np.ndarray, np.ndarray], mlp_repo: Path, tmp_path: Path
) -> None:
    path, counts, feats = jets
    memory = ArraySink(["event", "met", "score"])
    process = Process(
        jets_source(path),
        [tagger()],
        [
            memory,
            RootSink(tmp_path / "out.root", columns=["event", "score"]),
            ParquetSink(tmp_path / "out.parquet"),
        ],
        client=local(mlp_repo),
        streams=8,
    )
    report = process.run(progress=False)

    want = reference_scores(counts, feats)
    got = memory.result
    np.testing.assert_array_equal(got["event"], np.arange(N_EVENTS))
    assert got["score"].equals(want), "scores differ from onnxruntime on the same jets"
    assert got["met"].dtype == np.float32 and len(got["met"]) == N_EVENTS

    # the ROOT output is a TTree in NanoAOD's layout, and reads back the same
    with uproot.open(str(tmp_path / "out.root")) as f:
        tree = f["Events"]
        assert tree.classname == "TTree"
        assert {"event", "nscore", "score_0", "score_4"} <= set(tree.keys())
    back = read_columns(tmp_path / "out.root")
    np.testing.assert_array_equal(back["event"], np.arange(N_EVENTS))
    assert back["score"].equals(want)
    # parquet with the default columns: every product (here only "score")
    pq = read_columns(tmp_path / "out.parquet")
    assert list(pq) == ["score"] and pq["score"].equals(want)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"

    assert report.events == report.written == N_EVENTS
    [mod] = report.modules
    assert (mod.name, mod.kind, mod.events, mod.requests) == ("tagger", "sonic", N_EVENTS, N_EVENTS)
    [client] = report.clients
    empty = int((counts == 0).sum())
    assert client.requests == N_EVENTS - empty and client.skipped == empty
    assert client.failures == client.retries == client.failovers == 0
    assert client.server_side and client.server_side[0]["requests"] == N_EVENTS - empty
    text = report.table()
    assert "tagger" in text and "events/s" in text and "hidden" in text and "queue" in text
    json.dumps(report.as_dict())


@pytest.fixture(scope="module")
def conformance_reference(
    jets: tuple[Path, np.ndarray, np.ndarray], conformance_repo: Path
) -> dict[str, Any]:
    """The jets through the conformance repository's python-backend MLP, in-process."""
    path, _, _ = jets
    sink = ArraySink(["event", "score"])
    Process(jets_source(path), [tagger()], [sink], client=local(conformance_repo), streams=4).run(
        progress=False
    )
    return sink.result


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_root_jets_same_output_on_every_server(
    server: Target,
    transport: str,
    jets: tuple[Path, np.ndarray, np.ndarray],
    conformance_reference: dict[str, Any],
) -> None:
    """local, sonic serve and NVIDIA Triton, over gRPC and HTTP: the same output."""
    path, counts, feats = jets
    address = server.grpc_url if transport == "grpc" else server.http_url
    sink = ArraySink(["event", "score"])
    report = Process(
        jets_source(path),
        [tagger()],
        [sink],
        client={"model": "mlp", "transport": transport, "servers": [address]},
        streams=8,
    ).run(progress=False)
    np.testing.assert_array_equal(sink.result["event"], conformance_reference["event"])
    assert sink.result["score"].equals(conformance_reference["score"])
    np.testing.assert_allclose(
        sink.result["score"].content, reference_scores(counts, feats).content, rtol=1e-5, atol=1e-6
    )
    [client] = report.clients
    assert client.by_server == {address: client.requests} and client.failures == 0


# -- order, filters, modes -------------------------------------------------------------------------


class RejectEveryThird(Module):
    def produce(self, event: Event) -> bool:
        return event.index % 3 != 0


class Summary(Module):
    """A plain module: per-event number of jets and leading score (a scalar product), and a
    fixed-shape product (the mean score over the jets, zeros without jets)."""

    def produce(self, event: Event) -> None:
        score = event["score"]
        event["n"] = len(score)
        event["lead"] = float(score[:, 4].max()) if len(score) else -1.0
        event.put("mean", score.mean(axis=0) if len(score) else np.zeros(5, np.float32), fixed=True)


def _run(source: Any, repo: Path, **kw: Any) -> tuple[dict[str, Any], Any]:
    sink = ArraySink(["event", "score", "n", "lead", "mean"])
    modules = [RejectEveryThird(), tagger(), Summary()]
    report = Process(source, modules, [sink], client=local(repo), **kw).run(progress=False)
    return sink.result, report


def test_order_filters_and_modes_agree(jets: tuple[Path, np.ndarray, np.ndarray], mlp_repo: Path) -> None:
    path, counts, feats = jets
    base, report = _run(jets_source(path, step_size=50), mlp_repo, streams=16)
    keep = np.arange(N_EVENTS) % 3 != 0
    np.testing.assert_array_equal(base["event"], np.arange(N_EVENTS)[keep])
    want = reference_scores(counts, feats)
    assert base["score"].equals(want.take(np.nonzero(keep)[0]))
    np.testing.assert_array_equal(base["n"], counts[keep])
    assert base["mean"].shape == (int(keep.sum()), 5) and base["lead"].dtype == np.float64
    assert report.written == int(keep.sum()) and report.events == N_EVENTS
    assert report.modules[0].rejected == N_EVENTS - int(keep.sum())
    assert report.modules[1].events == int(keep.sum())

    for kw in ({"streams": 1}, {"sync": True, "streams": 4}, {"threads": 2, "streams": 8}):
        other, rep = _run(jets_source(path, step_size=77), mlp_repo, **kw)
        for k in base:
            got, ref = other[k], base[k]
            assert got.equals(ref) if isinstance(ref, Jagged) else np.array_equal(got, ref), (kw, k)
        assert rep.events == N_EVENTS


def test_max_events_and_empty_source(mlp_repo: Path) -> None:
    jets = [np.ones((i % 3, 16), np.float32) for i in range(50)]
    sink = ArraySink(["event", "score"])
    p = Process(
        ArraySource({"event": np.arange(50), "jet": jets}, step_size=7),
        [tagger()],
        [sink],
        client=local(mlp_repo),
        max_events=20,
    )
    assert p.run(progress=False).events == 20
    np.testing.assert_array_equal(sink.result["event"], np.arange(20))
    assert [len(s) for s in sink.result["score"].tolist()] == [i % 3 for i in range(20)]
    p.max_events = 0
    assert p.run(progress=False).events == 0 and sink.result == {}


# -- failures --------------------------------------------------------------------------------------


class Boom(Module):
    def produce(self, event: Event) -> None:
        if event.index == 57:
            raise ValueError("bad calibration")


def test_a_failing_module_fails_the_job_and_leaves_no_output(
    jets: tuple[Path, np.ndarray, np.ndarray], mlp_repo: Path, tmp_path: Path
) -> None:
    path, _, _ = jets
    out = tmp_path / "out.root"
    process = Process(
        jets_source(path),
        [tagger(), Boom()],
        [RootSink(out), ParquetSink(tmp_path / "o.parquet")],
        client=local(mlp_repo),
    )
    with pytest.raises(
        WorkflowError,
        match=r"module 'Boom' failed on event 57 \(entry 57 of .*jets.root\): "
        r"ValueError: bad calibration",
    ):
        process.run(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_product_and_bad_inputs_are_reported(mlp_repo: Path) -> None:
    src = ArraySource({"jet": [np.ones((2, 16), np.float32)] * 5})
    with pytest.raises(WorkflowError, match=r"column 'scor' is missing in event 0.*did you mean 'score'"):
        Process(src, [tagger()], [ArraySink(["scor"])], client=local(mlp_repo)).run(progress=False)

    class WrongShape(SonicModule):
        def acquire(self, event: Event) -> dict[str, Any]:
            return {"input": np.ones((2, 15), np.float32)}

        def produce(self, event: Event, result: InferResult | list[InferResult] | None) -> None:
            pass

    with pytest.raises(WorkflowError, match=r"module 'WrongShape' failed on event 0.*input") as info:
        Process(src, [WrongShape()], client=local(mlp_repo)).run(progress=False)
    assert info.value.code.name == "INVALID_ARG"


def test_process_arguments_are_checked(mlp_repo: Path) -> None:
    src = ArraySource({"x": np.zeros(3)})
    with pytest.raises(Exception, match="configures no client"):
        Process(src, [tagger()])
    with pytest.raises(Exception, match=r"no client named 'taggr'.*did you mean 'tagger'"):
        m = tagger()
        m.client = "taggr"
        Process(src, [m], clients={"tagger": local(mlp_repo), "other": local(mlp_repo)})
    with pytest.raises(Exception, match="several clients"):
        Process(src, [tagger()], clients={"a": local(mlp_repo), "b": local(mlp_repo)})
    with pytest.raises(Exception, match="streams must be an integer >= 1"):
        Process(src, [Copy({"x": "y"})], streams=0)
    with pytest.raises(Exception, match="module names must be unique"):
        Process(src, [Copy({"x": "y"}), Copy({"x": "z"})])


# -- HDF5 in, parquet out ---------------------------------------------------------------------------


class Features(Module):
    """Per event: the sum of the features (scalar), the features doubled (fixed-shape), and
    the first ``k`` features (jagged)."""

    def produce(self, event: Event) -> None:
        x = event["x"]
        event["total"] = float(x.sum())
        event.put("twice", 2 * x, fixed=True)
        event["head"] = x[: int(event["k"])]


def test_hdf5_source_and_parquet_sink_round_trip(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(3)
    files = []
    xs, ks = [], []
    for i, n in enumerate((130, 70)):
        x = rng.normal(size=(n, 8)).astype(np.float32)
        k = rng.integers(0, 9, n)
        files.append(tmp_path / f"in{i}.h5")
        with h5py.File(files[-1], "w") as f:
            f.create_dataset("data/x", data=x)
            f.create_dataset("data/k", data=k)
        xs.append(x)
        ks.append(k)
    x, k = np.concatenate(xs), np.concatenate(ks)
    out = tmp_path / "out.parquet"
    src = H5Source(files, {"x": "data/x", "k": "data/k"}, step_size=32)
    assert len(src) == 200 and src.counts() == [130, 70]
    report = Process(
        src,
        [Features(), Copy({"k": "k_copy"})],
        [ParquetSink(out, ["x", "k", "total", "twice", "head", "k_copy"])],
    ).run(progress=False)
    assert report.events == 200
    back = read_columns(out)
    np.testing.assert_array_equal(back["x"], x)
    np.testing.assert_array_equal(back["k"], k)
    np.testing.assert_array_equal(back["k_copy"], k)
    np.testing.assert_allclose(back["total"], x.sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(back["twice"], 2 * x)
    assert back["head"].equals(Jagged.from_arrays([x[i, : k[i]] for i in range(200)]))
    # pyarrow agrees on the types
    pq = pytest.importorskip("pyarrow.parquet")
    schema = pq.read_schema(out)
    pa = pytest.importorskip("pyarrow")
    twice, head = schema.field("twice").type, schema.field("head").type
    assert pa.types.is_fixed_size_list(twice) and twice.list_size == 8 and twice.value_type == pa.float32()
    assert pa.types.is_list(head) and head.value_type == pa.float32()


def test_source_split_by_file_and_range(tmp_path: Path) -> None:
    paths = [tmp_path / "a.root", tmp_path / "b.root"]
    write_jets(paths[0], 100, seed=1)
    write_jets(paths[1], 30, seed=2, first_event=100)
    src = jets_source(paths, step_size=16)
    assert len(src) == 130
    parts = src.split(4)
    ranges = [r for p in parts for r in p.all_ranges()]
    assert all(len(p.all_ranges()) == 1 for p in parts)
    assert [(r.file, r.start, r.stop) for r in ranges] == [(0, 0, 34), (0, 34, 68), (0, 68, 100), (1, 0, 30)]
    events = np.concatenate([c.columns["event"] for p in parts for c in p.chunks()])
    np.testing.assert_array_equal(events, np.arange(130))
    assert len(src.head(110)) == 110 and src.split(1000)[0].all_ranges()[0].stop == 1


def test_root_source_errors(jets: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path, _, _ = jets
    with pytest.raises(Exception, match=r"no tree 'Event'.*did you mean 'Events'"):
        len(RootSource(path, "Event"))
    with pytest.raises(Exception, match=r"no branch matching 'mett'.*did you mean 'met'"):
        next(RootSource(path, branches=["mett"]).chunks())
    with pytest.raises(Exception, match="does not exist"):
        RootSource(tmp_path / "nope.root")


# -- YAML and sonic run ---------------------------------------------------------------------------

PROCESS_YAML = """\
name: jets
streams: 8
source:
  type: root
  files: jets.root
  branches: [event]
  collections: {{jet: "jet_f*"}}
  step_size: 100
modules:
  - module: sonic.workflow.modules:Infer
    name: tagger
    client: tagger
    params: {{inputs: {{input: jet}}, outputs: {{output: score}}}}
  - module: summary.py:Leading
sinks:
  - {{type: root, path: out/scores.root, columns: [event, score, lead]}}
  - {{type: parquet, path: out/scores.parquet, columns: [event, lead]}}
clients:
  tagger:
    model: mlp
    transport: local
    repository: [{repo}]
"""

SUMMARY_PY = """\
from sonic.workflow import Module


class Leading(Module):
    def __init__(self, column="score", default=-1.0):
        self.column, self.default = column, default

    def produce(self, event):
        s = event[self.column]
        event["lead"] = float(s[:, 0].max()) if len(s) else self.default
"""


def _sonic_run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *argv])
    return int(args.handler(args))


@pytest.fixture()
def yaml_dir(tmp_path: Path, jets: tuple[Path, np.ndarray, np.ndarray], mlp_repo: Path) -> Path:
    (tmp_path / "jets.root").symlink_to(jets[0])
    (tmp_path / "summary.py").write_text(SUMMARY_PY)
    (tmp_path / "process.yaml").write_text(PROCESS_YAML.format(repo=mlp_repo))
    return tmp_path


def test_sonic_run_yaml(
    yaml_dir: Path, jets: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    _, counts, feats = jets
    rc = _sonic_run(
        str(yaml_dir / "process.yaml"),
        "--quiet",
        "--report-json",
        str(yaml_dir / "r.json"),
        "--max-events",
        "500",
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "jets: 500 events" in out.out and "tagger" in out.out and "Leading" in out.out
    report = json.loads((yaml_dir / "r.json").read_text())
    assert report["events"] == 500 and [m["name"] for m in report["modules"]] == ["tagger", "Leading"]
    back = read_columns(yaml_dir / "out" / "scores.root")
    np.testing.assert_array_equal(back["event"], np.arange(500))
    want = reference_scores(counts, feats)
    assert back["score"].equals(want.slice(0, 500))
    lead = [float(want[i][:, 0].max()) if counts[i] else -1.0 for i in range(500)]
    np.testing.assert_allclose(back["lead"], lead)
    pq = read_columns(yaml_dir / "out" / "scores.parquet")
    np.testing.assert_array_equal(pq["lead"], back["lead"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("streams: 8", "stream: 8"),
            r"process.yaml:2: process: unknown key 'stream' \(did you mean 'streams'",
        ),
        (("streams: 8", "streams: many"), r"process.yaml:2: streams: expected an integer"),
        (
            ("type: root\n", "type: rot\n"),
            r"process.yaml:4: source.type: unknown source type 'rot'.*did you mean 'root'",
        ),
        (
            ("sonic.workflow.modules:Infer", "sonic.workflow.modules:Infr"),
            r"process.yaml:10: modules\[0\].module: .*has no 'Infr' \(did you mean 'Infer'",
        ),
        (
            ("sonic.workflow.modules:Infer", "sonic.workflow.modulez:Infer"),
            r"modules\[0\].module: .*cannot import 'sonic.workflow.modulez'",
        ),
        (
            ("params: {inputs:", "params: {inptus:"),
            r"process.yaml:13: modules\[0\].params: unknown parameter 'inptus' \(did you mean 'inputs'.*\); "
            r"sonic.workflow.modules:Infer takes inputs, outputs, per_event, fixed, name, client",
        ),
        (
            ("transport: local", "transprot: local"),
            r"clients.tagger: unknown key 'transprot'.*did you mean 'transport'",
        ),
        (("transport: local", "transport: grcp"), r"clients.tagger: unknown transport 'grcp'"),
        (("client: tagger\n", "client: taggr\n"), r"no client named 'taggr'.*did you mean 'tagger'"),
        (
            ("  - module: summary.py:Leading\n", "  - module: summary.py:Leading\n    client: x\n"),
            r"modules\[1\].client: .* is not a SONIC module",
        ),
        (("{type: root, path", "{type: rot, path"), r"sinks\[0\].type: unknown sink type 'rot'"),
        (
            ("name: jets\n", "name: jets\nname: again\n"),
            r"process.yaml:2: duplicate key 'name' \(first on line 1\)",
        ),
        (("  branches: [event]\n", "  branches: [event\n"), r"process.yaml:\d+: not valid YAML"),
        (
            ("files: jets.root", "files: nothing.root"),
            r"source: root source: input file .*nothing.root' does not exist",
        ),
    ],
)
def test_yaml_errors_are_clear(yaml_dir: Path, edit: tuple[str, str], message: str) -> None:
    path = yaml_dir / "process.yaml"
    text = path.read_text()
    assert edit[0] in text, edit
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError, match=message):
        load_process(path)


def test_sonic_run_exit_codes(yaml_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = yaml_dir / "process.yaml"
    path.write_text(path.read_text().replace("streams: 8", "stream: 8"))
    assert _sonic_run(str(path), "-q") == 2
    assert "did you mean 'streams'" in capsys.readouterr().err
    assert _sonic_run(str(yaml_dir / "missing.yaml")) == 2
    path.write_text(PROCESS_YAML.format(repo=yaml_dir / "no-repo").replace("[event]", "[event, met]"))
    assert _sonic_run(str(path), "-q") == 1
    err = capsys.readouterr().err
    assert "the job failed" in err
    assert not (yaml_dir / "out" / "scores.root").exists()


# -- the examples ------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"


def test_examples_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/workflows: prepare the inputs, run both descriptions (the first one finds no
    server on localhost:8001 with the model and starts the fallback server)."""
    import runpy
    import shutil
    import sys

    for f in ("jet_tagger.py", "jet_tagging.yaml", "jet_tagging_dask.yaml"):
        shutil.copy(EXAMPLES / f, tmp_path / f)
    argv = sys.argv
    try:
        sys.argv = ["prepare.py", "--dest", str(tmp_path), "--events", "400"]
        runpy.run_path(str(EXAMPLES / "prepare.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert _sonic_run(str(tmp_path / "jet_tagging.yaml"), "-q") == 0
    assert _sonic_run(str(tmp_path / "jet_tagging_dask.yaml"), "--dask", "none", "-q") == 0
    out = capsys.readouterr().out
    assert "jet-tagging: 400 events" in out and "jet-tagging-dask: 400 events" in out
    tagged = read_columns(tmp_path / "out" / "tagged.root")
    np.testing.assert_array_equal(tagged["event"], np.arange(400))
    scores = tagged["FatJet_score"]
    assert scores.inner_shape == (5,)
    np.testing.assert_allclose(scores.content.sum(axis=1), 1.0, rtol=1e-5)  # softmax
    np.testing.assert_array_equal(tagged["FatJet_tag"].content, scores.content.argmax(axis=1))
    dask_out = read_columns(tmp_path / "out" / "tagged_dask.parquet")
    assert (dask_out["n_W_tagged"] >= 1).all()


@pytest.mark.parametrize("kind", ["parquet", "root", "h5"])
def test_a_sink_that_fails_to_close_publishes_nothing(tmp_path: Path, kind: str) -> None:
    """Closing is where the writer flushes: a failure there (a full disk) fails the job and
    leaves neither the output nor its temporary file; aborting still ignores it."""
    base = {"parquet": ParquetSink, "root": RootSink, "h5": H5Sink}[kind]

    class FullDisk(base):  # type: ignore[valid-type, misc]
        def _close_writer(self, strict: bool = False) -> None:
            super()._close_writer(strict)
            if strict:
                raise OSError(28, "No space left on device")

    source = ArraySource({"event": np.arange(10, dtype=np.int64)})
    with pytest.raises((WorkflowError, OSError), match="No space left on device"):
        Process(source, [Copy({"event": "copy"})], [FullDisk(tmp_path / f"out.{kind}")]).run()
    assert list(tmp_path.iterdir()) == []
    good = base(tmp_path / f"good.{kind}")
    Process(ArraySource({"event": np.arange(10, dtype=np.int64)}), [Copy({"event": "copy"})], [good]).run()
    np.testing.assert_array_equal(read_columns(tmp_path / f"good.{kind}")["copy"], np.arange(10))


def test_a_failing_job_waits_for_the_write_in_progress_before_aborting(tmp_path: Path) -> None:
    """The sinks write in a thread; when the job fails while a write is under way, the abort
    must come after it (a write racing the abort can recreate the temporary file it removed)."""
    seen: list[str] = []

    class SlowH5(H5Sink):
        def write(self, columns: Any, length: int) -> None:
            seen.append("write")
            time.sleep(0.3)  # a large chunk to a slow disk
            super().write(columns, length)
            seen.append("written")

        def abort(self) -> None:
            seen.append("abort")
            super().abort()

    class FailLate(Module):
        def produce(self, event: Event) -> None:
            if int(event["event"]) == 60:
                raise RuntimeError("boom")

    source = ArraySource({"event": np.arange(100, dtype=np.int64)}, step_size=10)
    with pytest.raises(WorkflowError, match="boom"):
        Process(source, [FailLate()], [SlowH5(tmp_path / "out.h5", ["event"])], streams=1).run()
    assert "write" in seen and seen[-1] == "abort"
    assert seen.count("write") == seen.count("written")  # no write was cut short by the abort
    assert list(tmp_path.iterdir()) == []
