"""The FPGA path: hls4ml conversion, numerics against the float model, scan, serving.

The jet-tagger MLP (sonic.zoo, ONNX) is converted once per module (Vitis backend, ap_fixed<16,6>,
with per-layer tracing) into a model repository next to the float ONNX model; the tests check
the numerics against onnxruntime with the tolerance the precision implies, the scan's flags on a
deliberately broken configuration, the served design against hls4ml's in-process emulation
(bit for bit, through `sonic serve`), the device path's error, and the PyTorch and Keras front
ends. Needs `pip install 'sonic[fpga]'` and g++; skipped without hls4ml.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hls4ml", reason="the FPGA path needs hls4ml: pip install 'sonic[fpga]'")
pytest.importorskip("qonnx", reason="hls4ml reads ONNX through qonnx: pip install 'sonic[fpga]'")
if shutil.which("g++") is None:  # pragma: no cover - depends on the machine
    pytest.skip("the hls4ml C simulation is compiled with g++", allow_module_level=True)

import tritonclient.http as httpclient

from sonic import zoo
from sonic.backends import base
from sonic.fpga.convert import ConversionConfig, ConvertedModel, convert, softmax_problems
from sonic.fpga.device import NoDevice, open_device
from sonic.fpga.emulation import META_FILE, EmulationLibrary
from sonic.fpga.estimate import parse_vendor_report, project_estimate
from sonic.fpga.numerics import agreement, logit_tolerance, margin
from sonic.fpga.repository import PROJECT_DIR, config_text, write_model_entry
from sonic.fpga.scan import scan
from sonic.fpga.types import FixedType, parse_fixed
from sonic.protocol.errors import InvalidArgument, Unavailable
from sonic.server.process import ServerProcess

PRECISION = "ap_fixed<16,6>"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the float MLP ("mlp", onnxruntime) beside its FPGA design ("mlp_fpga")."""
    path = tmp_path_factory.mktemp("fpga-repo")
    zoo.write_sonic_repository(path, ["mlp"])
    return path


@pytest.fixture(scope="module")
def design(repo: Path) -> ConvertedModel:
    conv = convert(
        "zoo:mlp", repo / "mlp_fpga" / "1" / PROJECT_DIR, ConversionConfig(precision=PRECISION, trace=True)
    )
    write_model_entry(conv.project_dir, repo / "mlp_fpga")
    return conv


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((1000, 16)).astype(np.float32)


# -- conversion and numerics ------------------------------------------------------------------


def test_convert_vitis_writes_project_emulation_and_entry(design: ConvertedModel, repo: Path) -> None:
    prj = design.project_dir
    assert (prj / "firmware" / "myproject.cpp").is_file()  # the HLS C++ that vendor synthesis takes
    assert (prj / "build_prj.tcl").is_file()
    assert (prj / design.meta.library).is_file() and design.meta.library.endswith(".so")
    assert (prj / META_FILE).is_file()
    config = (repo / "mlp_fpga" / "config.pbtxt").read_text()
    assert 'backend: "hls4ml"' in config and 'name: "input"' in config and 'name: "output"' in config
    assert design.meta.inputs[0].shape == (16,) and design.meta.outputs[0].shape == (5,)
    assert design.notes == []  # uniform ap_fixed<16,6>: no guard needed, no softmax problem


def test_emulation_matches_hls4ml_predict_bit_exactly(design: ConvertedModel, inputs: np.ndarray) -> None:
    ours = design.predict(inputs)
    theirs = design.hls4ml_predict(inputs)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_agrees_with_onnx_within_the_tolerance_the_precision_implies(
    design: ConvertedModel, inputs: np.ndarray
) -> None:
    """Logits within 2 q Σ(n_in + 1); the class agrees wherever the float margin exceeds 2x that."""
    tol = logit_tolerance(design.meta.info["layers"], parse_fixed(PRECISION))
    assert 0.05 < tol < 0.5  # 2 * 2**-10 * (17 + 65 + 33 + 33)
    _, traced = design.emulation().trace(inputs[:300])
    tensors = design.meta.info["layer_tensors"]
    last = [name for name in traced if name != "Softmax_0"][-1]  # the logits (bias added)
    float_trace = design.source.trace(inputs[:300], [tensors[last]])
    logits_float = float_trace[tensors[last]]
    err = np.abs(traced[last] - logits_float).max()
    assert err <= tol, f"logit error {err} above the tolerance {tol} of {PRECISION}"

    fixed, ref = design.predict(inputs), design.source.predict(inputs)
    clear = margin(design.source.trace(inputs, [tensors[last]])[tensors[last]]) > 2 * tol
    assert clear.mean() > 0.3  # the check is not vacuous: about half the samples are clear
    np.testing.assert_array_equal(fixed[clear].argmax(1), ref[clear].argmax(1))
    a = agreement(fixed, ref)
    assert a.argmax_agreement > 0.95 and not a.constant_output and a.nonfinite == 0


def test_estimate_is_labelled_and_in_the_trigger_regime(design: ConvertedModel, tmp_path: Path) -> None:
    est = design.estimate
    assert est.source == "estimate" and "ESTIMATE" in est.table()
    dense = [la for la in est.layers if la.kind == "Dense"]
    assert [la.multiplications for la in dense] == [16 * 64, 64 * 32, 32 * 32, 32 * 5]  # no zero weights
    assert est.dsp == sum(la.multiplications for la in dense)  # 16x16-bit products: one DSP each at RF 1
    assert 50 <= est.latency_ns <= 300  # Duarte et al. 2018: ~100 ns on a Xilinx FPGA
    assert project_estimate(design.project_dir).dsp == est.dsp  # from sonic_fpga.json alone

    # a vendor report, when synthesis ran, replaces the estimate
    prj = tmp_path / "prj"
    report = prj / "myproject_prj" / "solution1" / "syn" / "report"
    report.mkdir(parents=True)
    shutil.copy(design.project_dir / META_FILE, prj / META_FILE)
    (report / "myproject_csynth.xml").write_text(CSYNTH_XML)
    vendor = project_estimate(prj)
    assert vendor.source.startswith("vendor report") and vendor.latency_cycles == 9
    assert vendor.dsp == 1025 and vendor.resources["LUT"] == 40102 and vendor.latency_ns == 45.0
    assert parse_vendor_report(tmp_path / "nothing") is None


CSYNTH_XML = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2023.2</Version></ReportVersion>
  <UserAssignments><unit>ns</unit><Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>myproject</TopModelName><TargetClockPeriod>5.00</TargetClockPeriod></UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.368</EstimatedClockPeriod></SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency><unit>clock cycles</unit><Best-caseLatency>9</Best-caseLatency>
      <Average-caseLatency>9</Average-caseLatency><Worst-caseLatency>9</Worst-caseLatency>
      <Interval-min>1</Interval-min><Interval-max>1</Interval-max></SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates><Resources><BRAM_18K>4</BRAM_18K><DSP>1025</DSP><FF>11247</FF><LUT>40102</LUT>
    <URAM>0</URAM></Resources></AreaEstimates>
</profile>
"""


def test_scan_flags_the_softmax_pitfall(design: ConvertedModel, tmp_path: Path, inputs: np.ndarray) -> None:
    """The known-bad configuration (auto types, no guard) is broken; the guard repairs it."""
    auto = ConversionConfig(precision=PRECISION, policy="auto")
    result = scan(
        design.source,
        tmp_path / "scan",
        precisions=[PRECISION],
        extra=[
            ("auto, no guard", ConversionConfig(**{**auto.to_json(), "softmax_guard": False})),
            ("auto, guarded", auto),
        ],
        x=inputs[:400],
        trace_samples=100,
    )
    ok, pitfall, guarded = result.points
    assert ok.status == "ok" and ok.flags == []
    assert pitfall.status == "broken"
    assert {"constant-output", "softmax-table"} <= set(pitfall.flags)
    assert pitfall.worst_layer is not None and pitfall.worst_layer.layer == "Softmax_0"
    assert guarded.status == "ok", guarded.messages
    assert result.broken == [pitfall] and result.worst is pitfall
    table = result.table()
    assert "per-layer trace of the worst configuration, auto, no guard" in table and "<- worst" in table
    png = result.plot(tmp_path / "scan.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "scan" / "scan.json").is_file()


def test_softmax_check_is_silent_on_a_sound_design(design: ConvertedModel) -> None:
    assert softmax_problems(design.hls_model) == []


# -- serving ----------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(repo: Path) -> Iterator[ServerProcess]:
    """`sonic serve` on the repository.

    Until `sonic.backends.base` names the hls4ml backend in its lazy table, the child process
    registers it first (the same call a plugin makes); then this is plain `sonic serve`.
    """
    server = ServerProcess(repo)
    if "hls4ml" not in base._LAZY:
        server.args[1:3] = [
            "-c",
            "import sys; from sonic.backends.base import add_lazy_backend; "
            "add_lazy_backend('hls4ml', 'sonic.backends.hls4ml'); "
            "from sonic.cli import main; sys.exit(main(sys.argv[1:]))",
        ]
    with server:
        yield server


def _infer(url: str, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer(model, [inp]).as_numpy("output")
        assert out is not None
        return out
    finally:
        client.close()


def test_served_design_is_bit_exact_with_the_in_process_emulation(
    design: ConvertedModel, repo: Path, inputs: np.ndarray
) -> None:
    with serve(repo) as server:
        whole = _infer(server.http_url, "mlp_fpga", inputs[:37])
        np.testing.assert_array_equal(whole, design.hls4ml_predict(inputs[:37]))
        # concurrent small requests: the dynamic batcher merges them, the answers must not mix
        chunks = [inputs[i : i + 3] for i in range(0, 120, 3)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            served = list(pool.map(lambda c: _infer(server.http_url, "mlp_fpga", c), chunks))
        np.testing.assert_array_equal(np.concatenate(served), design.hls4ml_predict(inputs[:120]))

        # portability: the same inputs through the float model, by model name only
        batches = [inputs[i : i + 50] for i in range(0, 200, 50)]  # max_batch_size is 64
        float_out = np.concatenate([_infer(server.http_url, "mlp", b) for b in batches])
        fpga_out = np.concatenate([_infer(server.http_url, "mlp_fpga", b) for b in batches])
        assert agreement(fpga_out, float_out).argmax_agreement > 0.95

        client = httpclient.InferenceServerClient(server.http_url)
        try:
            stats = client.get_inference_statistics("mlp_fpga")["model_stats"][0]
            assert int(stats["inference_count"]) >= 37 + 120 + 200
            config = client.get_model_config("mlp_fpga")
            assert config["backend"] == "hls4ml"
            assert config["parameters"]["precision"]["string_value"] == PRECISION
        finally:
            client.close()


def _load_context(model_dir: Path) -> Any:
    from sonic.backends.base import InstanceSpec, LoadContext
    from sonic.repository import load_model_config

    config = load_model_config(model_dir)
    return LoadContext(model_dir.name, 1, model_dir / "1", model_dir, config, InstanceSpec("x_0", "KIND_CPU"))


def test_backend_in_process_and_the_no_device_error(
    design: ConvertedModel, repo: Path, tmp_path: Path
) -> None:
    from sonic.backends.base import BackendRequest, Timing
    from sonic.backends.hls4ml import Hls4mlInstance

    instance = Hls4mlInstance(_load_context(repo / "mlp_fpga"))
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    reqs = [
        BackendRequest({"input": x[:2]}, ("output",), 2),
        BackendRequest({"input": x[2:]}, ("output",), 3),
    ]
    results = instance.execute(reqs, Timing())
    got = np.concatenate([r["output"] for r in results])  # type: ignore[index]
    np.testing.assert_array_equal(got, design.hls4ml_predict(x))
    instance.close()

    # the same design, configured for a card: a clear error naming what is missing
    card = tmp_path / "cardrepo" / "mlp_card"
    (card / "1").mkdir(parents=True)
    (card / "1" / PROJECT_DIR).symlink_to(design.project_dir)
    (card / "config.pbtxt").write_text(config_text("mlp_card", design.meta, device="xrt"))
    with pytest.raises(NoDevice) as err:
        Hls4mlInstance(_load_context(card))
    text = str(err.value)
    assert text.startswith("no FPGA device") and "pyxrt" in text and "emulation" in text
    with pytest.raises(InvalidArgument, match="did you mean 'xrt'"):
        open_device("xrtt", design.project_dir)


def test_moved_project_is_rebuilt_privately(
    design: ConvertedModel, tmp_path: Path, inputs: np.ndarray
) -> None:
    """A repository copied elsewhere: the library is rebuilt (weights path), the copy untouched."""
    moved = tmp_path / "moved"
    shutil.copytree(design.project_dir, moved)
    before = sorted(p.name for p in moved.rglob("*"))
    emu = EmulationLibrary.open(moved)
    try:
        assert moved not in emu.library_path.parents
        np.testing.assert_array_equal(emu.predict(inputs[:50])[0], design.predict(inputs[:50]))
    finally:
        emu.close()
    assert sorted(p.name for p in moved.rglob("*")) == before


# -- front ends and configuration -------------------------------------------------------------


def test_pytorch_model_converts(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    conv = convert(model, tmp_path / "pt", ConversionConfig(precision="ap_fixed<18,8>"), input_shape=(16,))
    x = np.random.default_rng(2).standard_normal((300, 16)).astype(np.float32)
    fixed, ref = conv.predict(x), conv.source.predict(x)
    tol = logit_tolerance(conv.meta.info["layers"], parse_fixed("ap_fixed<18,8>"))
    assert np.abs(fixed - ref).max() <= tol
    assert conv.meta.inputs[0].name == "input" and conv.meta.outputs[0].shape == (5,)


@pytest.mark.filterwarnings(
    # keras' torch backend calls np.array(x, copy=False) on tensors, which numpy 2 deprecates
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_keras_model_converts(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sonic.fpga import _deps

    try:
        keras = _deps.keras()  # Keras 3 on the torch backend
    except Unavailable as exc:
        pytest.skip(str(exc))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(5)]
    )
    conv = convert(model, tmp_path / "keras", ConversionConfig(precision="ap_fixed<18,8>", backend="Vivado"))
    x = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    tol = logit_tolerance(conv.meta.info["layers"], parse_fixed("ap_fixed<18,8>"))
    assert np.abs(conv.predict(x) - conv.source.predict(x)).max() <= tol


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'Vitis'"):
        ConversionConfig(backend="Vitiss").checked()
    with pytest.raises(InvalidArgument, match="not a fixed-point type"):
        ConversionConfig(precision="float<16>").checked()
    with pytest.raises(InvalidArgument, match="expected one of latency, resource"):
        ConversionConfig(strategy="fast").checked()
    assert ConversionConfig(backend="quartus").checked().backend == "Quartus"


def test_fixed_types() -> None:
    t = parse_fixed("ap_fixed<16,6>")
    assert t == FixedType(16, 6) and t.lsb == 2**-10 and t.max == 32 - 2**-10 and t.min == -32
    assert parse_fixed("ufixed<8,3,RND_CONV,SAT,0>") == FixedType(8, 3, False, "RND_CONV", "SAT")
    assert parse_fixed("ac_fixed<10,4,false>").signed is False
    assert parse_fixed(t.hls) == t
    sat = parse_fixed("ap_fixed<8,3,AP_RND_CONV,AP_SAT>")
    np.testing.assert_array_equal(sat.quantize(np.array([0.03, 100.0, -100.0])), [0.03125, sat.max, sat.min])


def test_cli_estimate_and_errors(
    design: ConvertedModel, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sonic.fpga.cli import register

    parser = argparse.ArgumentParser(prog="sonic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fpga", "estimate", str(repo / "mlp_fpga")])
    assert args.handler(args) == 0
    assert "ESTIMATE" in capsys.readouterr().out
    args = parser.parse_args(["fpga", "convert", "zoo:mlp", "-o", str(repo / "bad"), "--backend", "Vitiss"])
    assert args.handler(args) == 2
    assert "did you mean 'Vitis'" in capsys.readouterr().err
