"""``sonic fpga``: convert, scan, estimate, qat.

Where this sits: :func:`register` adds the ``fpga`` subcommand to the ``sonic`` parser and sets
``handler`` on the parsed namespace; each handler returns the exit status. Everything heavy is
imported inside the handlers, so ``sonic --help`` stays fast without hls4ml installed.

    sonic fpga convert MODEL -o REPO/NAME [--precision 'ap_fixed<16,6>'] [--reuse-factor R]
        [--strategy latency|resource] [--io parallel|stream] [--backend Vitis|Vivado|Catapult|Quartus]
        [--part PART] [--clock-period NS] [--input-shape 16] [--policy uniform|auto]
    sonic fpga scan MODEL [-o DIR] [--precisions 'ap_fixed<16,6>,ap_fixed<8,3>'] [--data x.npy]
        [--labels y.npy] [--include-pitfall]
    sonic fpga estimate REPO/NAME | PROJECT_DIR
    sonic fpga qat -o REPO/NAME [--weight-bits 6] [--act-bits 8]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sonic.protocol.errors import SonicError

__all__ = ["register"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 16 or 1,48,48, got {text!r}") from None


def _design_args(p: argparse.ArgumentParser) -> None:
    from sonic.fpga.convert import BACKENDS

    p.add_argument("--reuse-factor", type=int, default=1, help="multiplications per multiplier (default 1)")
    p.add_argument("--strategy", choices=["latency", "resource"], default="latency")
    p.add_argument("--io", dest="io_type", choices=["parallel", "stream"], default="parallel")
    p.add_argument(
        "--backend", default="Vitis", help=f"hls4ml backend: {', '.join(BACKENDS)} (default Vitis)"
    )
    p.add_argument("--part", default=None, help="FPGA part (default: hls4ml's for the backend)")
    p.add_argument("--clock-period", type=float, default=5.0, help="ns (default 5)")
    p.add_argument("--input-shape", type=_shape, default=None, help="one sample's shape, for PyTorch models")
    p.add_argument(
        "--policy",
        choices=["uniform", "auto"],
        default="uniform",
        help="uniform: every type is --precision (default); auto: hls4ml infers types (quantized models)",
    )
    p.add_argument(
        "--no-softmax-guard",
        dest="softmax_guard",
        action="store_false",
        help="do not fix a softmax whose table index type is too wide (reproduces the pitfall)",
    )
    p.add_argument("--input-precision", default=None, help="type of the input layer")


def register(subparsers: Any) -> None:
    """Add ``sonic fpga {convert,scan,estimate,qat}`` to the ``sonic`` command's subparsers."""
    fpga = subparsers.add_parser(
        "fpga",
        help="convert models to FPGA designs with hls4ml, check their numerics, serve them",
        description="hls4ml conversion, fixed-point emulation and precision scans; the model-repository "
        "entries it writes are served by 'sonic serve' (backend hls4ml).",
    )
    sub = fpga.add_subparsers(dest="fpga_command", required=True)

    conv = sub.add_parser(
        "convert",
        help="model -> HLS project + compiled emulation + model-repository entry",
        description="Convert an ONNX, PyTorch (.pt of a whole nn.Module) or Keras (.keras/.h5) model, or "
        "zoo:mlp, to an hls4ml project, compile its bit-accurate C simulation and write REPO/NAME "
        "(config.pbtxt with backend hls4ml) for 'sonic serve'.",
    )
    conv.add_argument("model", help="model file, or zoo:mlp")
    conv.add_argument(
        "-o", "--output", required=True, type=Path, help="REPO/NAME: the model directory to write"
    )
    conv.add_argument(
        "--precision", default="ap_fixed<16,6>", help="fixed-point type (default ap_fixed<16,6>)"
    )
    _design_args(conv)
    conv.add_argument(
        "--layer-precision",
        action="append",
        default=[],
        metavar="LAYER=TYPE",
        help="result type of one layer",
    )
    conv.add_argument("--max-batch-size", type=int, default=64)
    conv.add_argument("--instances", type=int, default=1)
    conv.add_argument("--device", choices=["emulation", "xrt"], default="emulation")
    conv.add_argument("--version", type=int, default=1)
    conv.set_defaults(handler=cmd_convert)

    sc = sub.add_parser(
        "scan",
        help="fixed-point precision sweep against the float model",
        description="Convert the model once per precision, compare with the float model (argmax agreement, "
        "errors, accuracy with --labels), trace every layer, flag broken configurations; write a table, "
        "scan.json and a plot.",
    )
    sc.add_argument("model", help="model file, or zoo:mlp")
    sc.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("sonic-fpga-scan"),
        help="directory for projects and results",
    )
    sc.add_argument(
        "--precisions", default=None, help="comma-separated types (default: 18,8 16,6 12,5 10,4 8,3)"
    )
    _design_args(sc)
    sc.add_argument("--data", type=Path, default=None, help=".npy inputs (default: standard-normal samples)")
    sc.add_argument("--labels", type=Path, default=None, help=".npy labels, for accuracy")
    sc.add_argument("--samples", type=int, default=1000)
    sc.add_argument("--threshold", type=float, default=0.95, help="argmax agreement below this is flagged")
    sc.add_argument(
        "--include-pitfall",
        action="store_true",
        help="add the known-bad configuration (policy auto without the softmax guard) as a control",
    )
    sc.add_argument("--plot", type=Path, default=None, help="PNG path (default OUTPUT/scan.png)")
    sc.set_defaults(handler=cmd_scan)

    est = sub.add_parser(
        "estimate",
        help="DSPs and latency of a converted design (estimate, or the vendor report when synthesis ran)",
    )
    est.add_argument("project", type=Path, help="REPO/NAME, REPO/NAME/1/hls4ml_prj or a project directory")
    est.add_argument("--json", action="store_true")
    est.set_defaults(handler=cmd_estimate)

    qat = sub.add_parser(
        "qat",
        help="train the jet-tagger MLP with Brevitas QAT, convert via QONNX, measure bit-exactness",
    )
    qat.add_argument("-o", "--output", required=True, type=Path, help="REPO/NAME for the QAT design")
    qat.add_argument("--weight-bits", type=int, default=6)
    qat.add_argument("--act-bits", type=int, default=8)
    qat.add_argument("--epochs", type=int, default=6)
    qat.add_argument("--backend", default="Vitis")
    qat.set_defaults(handler=cmd_qat)


def _config(args: argparse.Namespace, precision: str, layer_precision: dict[str, str] | None = None) -> Any:
    from sonic.fpga.convert import ConversionConfig

    return ConversionConfig(
        precision=precision,
        reuse_factor=args.reuse_factor,
        strategy=args.strategy,
        io_type=args.io_type,
        backend=args.backend,
        part=args.part,
        clock_period=args.clock_period,
        policy=args.policy,
        softmax_guard=args.softmax_guard,
        input_precision=args.input_precision,
        layer_precision=layer_precision or {},
    ).checked()


def _fail(cmd: str, exc: Exception) -> int:
    print(f"sonic fpga {cmd}: {exc}", file=sys.stderr)
    return 2


def _quick_check(conv: Any) -> str:
    import numpy as np

    from sonic.fpga.numerics import agreement

    x = np.random.default_rng(0).standard_normal((500, *conv.source.input_shape)).astype(np.float32)
    a = agreement(conv.predict(x), conv.source.predict(x))
    return (
        f"check on 500 standard-normal inputs: argmax agreement {a.argmax_agreement:.1%}, "
        f"max |fixed - float| {a.max_abs_error:.4g}"
        + (" — BROKEN: constant output" if a.constant_output else "")
    )


def cmd_convert(args: argparse.Namespace) -> int:
    from sonic.fpga.convert import convert
    from sonic.fpga.repository import PROJECT_DIR, write_model_entry

    try:
        layer_precision = dict(item.split("=", 1) for item in args.layer_precision)
    except ValueError:
        return _fail("convert", ValueError("--layer-precision takes LAYER=TYPE"))
    try:
        cfg = _config(args, args.precision, layer_precision)
        model_dir: Path = args.output
        project = model_dir / str(args.version) / PROJECT_DIR
        conv = convert(args.model, project, cfg, input_shape=args.input_shape)
        write_model_entry(
            project,
            model_dir,
            version=args.version,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            device=args.device,
        )
    except SonicError as exc:
        return _fail("convert", exc)
    print(
        f"sonic fpga convert: {conv.source.description} -> {cfg.backend} design, {cfg.precision}, "
        f"reuse factor {cfg.reuse_factor}, {cfg.strategy}, io_{cfg.io_type}"
    )
    print(f"  HLS project:     {conv.project_dir}  (vendor synthesis starts here)")
    print(f"  emulation:       {conv.project_dir / conv.meta.library}")
    print(
        f"  model entry:     {model_dir}/config.pbtxt  (backend hls4ml; serve with: "
        f"sonic serve --model-repository {model_dir.parent})"
    )
    print(f"  time:            convert {conv.convert_s:.1f} s, compile {conv.compile_s:.1f} s")
    for note in conv.notes:
        print(f"  note: {note}")
    if conv.source.framework in ("onnx", "pytorch", "keras") and len(conv.meta.inputs) == 1:
        print("  " + _quick_check(conv))
    print(conv.estimate.table())
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    import numpy as np

    from sonic.fpga.convert import ConversionConfig
    from sonic.fpga.scan import DEFAULT_PRECISIONS, scan

    precisions = (
        [p.strip() for p in args.precisions.split(",") if p.strip()]
        if args.precisions
        else list(DEFAULT_PRECISIONS)
    )
    # "ap_fixed<16,6>,ap_fixed<8,3>" splits inside the brackets: rejoin W,I pairs
    merged: list[str] = []
    for part in precisions:
        if merged and merged[-1].count("<") > merged[-1].count(">"):
            merged[-1] += "," + part
        else:
            merged.append(part)
    try:
        base = _config(args, merged[0] if merged else "ap_fixed<16,6>")
        extra = []
        if args.include_pitfall:
            pitfall = ConversionConfig(**{**base.to_json(), "policy": "auto", "softmax_guard": False})
            extra.append(("auto, no softmax guard", pitfall))
        x = np.load(args.data) if args.data else None
        labels = np.load(args.labels) if args.labels else None
        result = scan(
            args.model,
            args.output,
            precisions=merged,
            base=base,
            extra=extra,
            x=x,
            labels=labels,
            samples=args.samples,
            threshold=args.threshold,
            input_shape=args.input_shape,
        )
        plot = result.plot(args.plot or args.output / "scan.png")
    except SonicError as exc:
        return _fail("scan", exc)
    print(result.table())
    print(f"\nresults: {args.output / 'scan.json'}; plot: {plot}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from sonic.fpga.emulation import META_FILE
    from sonic.fpga.estimate import project_estimate
    from sonic.fpga.repository import PROJECT_DIR

    path: Path = args.project
    if not (path / META_FILE).is_file():
        found = sorted(path.glob(f"*/{PROJECT_DIR}/{META_FILE}"))
        if found:
            path = found[-1].parent
    try:
        est = project_estimate(path)
    except SonicError as exc:
        return _fail("estimate", exc)
    print(json.dumps(est.to_json(), indent=2) if args.json else est.table())
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    from sonic.fpga import qat
    from sonic.fpga.convert import ConversionConfig
    from sonic.fpga.repository import PROJECT_DIR, write_model_entry

    model_dir: Path = args.output
    try:
        print(
            f"sonic fpga qat: training the Brevitas jet-tagger MLP ({args.weight_bits}-bit weights, "
            f"{args.act_bits}-bit activations) on synthetic data ..."
        )
        trained = qat.train_jet_tagger(
            model_dir / "qat", weight_bits=args.weight_bits, act_bits=args.act_bits, epochs=args.epochs
        )
        conv = qat.convert_qat(trained, model_dir / "1" / PROJECT_DIR, ConversionConfig(backend=args.backend))
        write_model_entry(conv.project_dir, model_dir)
        x, _ = qat.synthetic_jets(2000, seed=99)
        exact = qat.bit_exactness(trained, conv, x)
    except SonicError as exc:
        return _fail("qat", exc)
    print(f"  trained in {trained.train_s:.1f} s; held-out accuracy {trained.accuracy:.1%}")
    print(f"  QONNX: {trained.qonnx_path}; input type {conv.config.input_precision}")
    print(f"  model entry: {model_dir}/config.pbtxt")
    print(
        f"  bit-exact vs Brevitas on {int(exact['samples'])} samples: {exact['bit_exact_fraction']:.2%} "
        f"(max |diff| {exact['max_abs_diff']:g})"
    )
    print(conv.estimate.table())
    return 0 if exact["bit_exact_fraction"] == 1.0 else 1
