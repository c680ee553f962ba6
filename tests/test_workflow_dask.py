"""Scale-out on Dask: a LocalCluster of 2 worker processes writes what one process writes.

One ``sonic serve`` serves the MLP; the input is two ROOT files, split by file and entry
range into partitions; each partition runs in a worker with its own client and writes its
part; the driver merges the parts in order. The merged ROOT and parquet outputs must equal a
single-process run's, and the merged report must add up. ``sonic run --dask local:2`` is the
path under test (LocalCluster startup costs a few seconds, so there is one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sonic import zoo
from sonic.server.process import ServerProcess
from sonic.workflow import load_process, read_columns
from test_workflow import SUMMARY_PY, _sonic_run, reference_scores, write_jets

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

PROCESS = """\
name: dask-jets
streams: 4
source:
  type: root
  files: ["a.root", "b.root"]
  branches: [event, met]
  collections: {{jet: "jet_f*"}}
  step_size: 64
modules:
  - module: sonic.workflow.modules:Infer
    name: tagger
    params: {{inputs: {{input: jet}}, outputs: {{output: score}}}}
  - module: summary.py:Leading        # loaded from a file: shipped to the workers by value
sinks:
  - {{type: root, path: "{out}/scores.root", columns: [event, met, score, lead]}}
  - {{type: parquet, path: "{out}/scores.parquet", columns: [event, score]}}
client:
  model: mlp
  transport: grpc
  servers: ["{server}"]
dask:
  partitions: 5
"""


def test_dask_local_cluster_matches_a_single_process(tmp_path: Path) -> None:
    counts_a, feats_a = write_jets(tmp_path / "a.root", 300, seed=11)
    counts_b, feats_b = write_jets(tmp_path / "b.root", 200, seed=12, first_event=300)
    want = reference_scores(np.concatenate([counts_a, counts_b]), np.concatenate([feats_a, feats_b]))
    repo = zoo.write_sonic_repository(tmp_path / "models", models=("mlp",))
    (tmp_path / "summary.py").write_text(SUMMARY_PY)
    with ServerProcess(repo) as server:
        for name in ("single", "dask"):
            (tmp_path / f"{name}.yaml").write_text(PROCESS.format(out=name, server=server.grpc_url))
        single = load_process(tmp_path / "single.yaml").run(dask=False, progress=False)
        rc = _sonic_run(
            str(tmp_path / "dask.yaml"), "--dask", "local:2", "-q", "--report-json", str(tmp_path / "r.json")
        )
        assert rc == 0

    assert single.events == 500 and single.partitions == 1
    one = read_columns(tmp_path / "single" / "scores.root")
    many = read_columns(tmp_path / "dask" / "scores.root")
    np.testing.assert_array_equal(one["event"], np.arange(500))
    assert one["score"].equals(want)
    assert list(many) == list(one) == ["event", "met", "score", "lead"]
    for column in ("event", "met", "lead"):
        np.testing.assert_array_equal(many[column], one[column])
    assert many["score"].equals(one["score"])
    pq_one = read_columns(tmp_path / "single" / "scores.parquet")
    pq_many = read_columns(tmp_path / "dask" / "scores.parquet")
    np.testing.assert_array_equal(pq_many["event"], pq_one["event"])
    assert pq_many["score"].equals(pq_one["score"])
    # the parts are gone; only the merged outputs remain
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == ["scores.parquet", "scores.root"]

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["events"] == report["written"] == 500
    assert report["partitions"] == 5 and report["workers"] == 2
    tagger, leading = report["modules"]
    assert tagger["events"] == 500 and tagger["wait"]["count"] == 500
    assert leading["name"] == "Leading" and leading["events"] == 500
    [client] = report["clients"]
    empty = int((np.concatenate([counts_a, counts_b]) == 0).sum())
    assert client["requests"] == 500 - empty and client["skipped"] == empty
    assert client["by_server"] == {server.grpc_url: 500 - empty}
    # server-side statistics are the driver's, over the whole job: each request once
    [side] = client["server_side"]
    assert side["server"] == server.grpc_url and side["requests"] == 500 - empty
