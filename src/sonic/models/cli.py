"""``sonic train <model>`` trains a reference model, reports its quality and exports it;
``sonic models`` lists the shipped ones and writes them as a model repository.

The lead's ``sonic.cli`` calls :func:`register` with its subparsers; the subcommand sets
``handler`` to a function of the parsed arguments returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from sonic.protocol.errors import SonicError

MODELS = ("jets_mlp", "jets_particle", "lartpc_cnn", "deepclean")
_SIZE_HELP = (
    "training-sample size: events per process (jets, default 2500), events (lartpc, default 600), "
    "seconds of strain (deepclean, default 512)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train``."""
    p = subparsers.add_parser(
        "train",
        help="train a reference model (jet taggers, LArTPC patch CNN, DeepClean) and export it",
        description="Train one of the reference models on generated data (or given files), "
        "report its quality on a held-out sample, and write <model>.pt, <model>.onnx and "
        "<model>.json to the output folder (needs: pip install 'sonic[physics,torch]').",
    )
    p.add_argument("model", choices=[m.replace("_", "-") for m in MODELS] + list(MODELS))
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", type=int, default=None, help=_SIZE_HELP)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="torch threads (fixed for reproducibility)")
    p.add_argument("--data", type=Path, action="append", default=[], help="training file (repeatable)")
    p.add_argument("--test-data", type=Path, action="append", default=[], help="held-out file (repeatable)")
    p.add_argument("--work-dir", type=Path, default=None, help="where generated samples are cached")
    p.set_defaults(handler=_train)

    m = subparsers.add_parser(
        "models",
        help="list the shipped reference models, or write them as a model repository",
        description="Without -o: the shipped reference models and their quality. With -o DIR: "
        "write them as a Triton-layout model repository, for sonic serve / the local transport "
        "(--backend onnxruntime) or for NVIDIA Triton (--backend python: the same ONNX run by "
        "onnxruntime in a python-backend model.py).",
    )
    m.add_argument("-o", "--output", type=Path, default=None, help="repository folder to write")
    m.add_argument(
        "--model", action="append", choices=list(MODELS), default=[], help="(repeatable; default: all)"
    )
    m.add_argument("--backend", choices=("onnxruntime", "python"), default="onnxruntime")
    m.add_argument("--max-batch-size", type=int, default=None)
    m.add_argument("--instances", type=int, default=1, help="CPU instances per model")
    m.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per instance")
    m.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from sonic.models import pretrained_report, weights_path

    names = args.model or list(MODELS)
    if args.output is None:
        for name in names:
            report = pretrained_report(name)
            quality = {k: v for k, v in report.items() if isinstance(v, (int, float)) and k != "seed"}
            print(f"{name:14s} {weights_path(name)}")
            print(f"{'':14s} {json.dumps(quality, sort_keys=True)}")
        return 0
    from sonic.models.repository import write_repository

    try:
        write_repository(
            args.output,
            names,
            backend=args.backend,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            intra_op_threads=args.threads,
        )
    except SonicError as exc:
        print(f"sonic models: {exc.message}", file=sys.stderr)
        return 2
    print(f"sonic models: wrote {', '.join(names)} ({args.backend}) to {args.output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    try:
        from sonic.models.train import TrainConfig, train
    except ImportError as exc:
        print(f"sonic train: {exc}: pip install 'sonic[physics,torch]'", file=sys.stderr)
        return 2
    model = args.model.replace("-", "_")
    argv = ["sonic", "train", args.model, "-o", str(args.output), "--seed", str(args.seed)]
    for flag in ("events", "epochs"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    cfg = TrainConfig(
        model=model,
        out_dir=args.output,
        seed=args.seed,
        events=args.events,
        epochs=args.epochs,
        threads=args.threads,
        data=list(args.data),
        test_data=list(args.test_data),
        work_dir=args.work_dir,
        command=shlex.join(argv),
    )
    try:
        report = train(cfg)
    except SonicError as exc:
        print(f"sonic train: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
