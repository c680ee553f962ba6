"""The ``sonic`` command: ``serve`` here; every other subcommand registers itself from its package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sonic.bench.cli import register as register_bench
from sonic.data.cli import register as register_data
from sonic.demo import register as register_demo
from sonic.fpga.cli import register as register_fpga
from sonic.models.cli import register as register_train
from sonic.workflow.cli import register as register_run


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run a Triton-compatible inference server",
        description="Serve a Triton model repository over KServe v2 HTTP and gRPC, "
        "with Prometheus metrics. Flags follow tritonserver's names.",
    )
    p.add_argument(
        "--model-repository",
        "--model-store",
        action="append",
        required=True,
        type=Path,
        help="model repository path (repeatable)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    p.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port")
    p.add_argument("--allow-http", type=_bool, default=True)
    p.add_argument("--allow-grpc", type=_bool, default=True)
    p.add_argument("--allow-metrics", type=_bool, default=True)
    p.add_argument("--model-control-mode", choices=["none", "poll", "explicit"], default="none")
    p.add_argument(
        "--load-model",
        action="append",
        default=[],
        help="model to load at start in explicit mode (repeatable; '*' = all)",
    )
    p.add_argument("--repository-poll-secs", type=float, default=15.0)
    p.add_argument(
        "--allow-client-shm",
        nargs="?",
        const=True,
        default=False,
        type=_bool,
        help="accept client system shared-memory regions (refused otherwise)",
    )
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument(
        "--grpc-impl",
        choices=["sonic", "grpcio"],
        default="sonic",
        help="gRPC transport: sonic's own HTTP/2 on asyncio (default), or grpcio",
    )
    p.add_argument("--grpc-use-ssl", type=_bool, default=False, help="TLS on the gRPC port")
    p.add_argument("--grpc-server-cert", type=Path, help="PEM certificate (chain) for --grpc-use-ssl")
    p.add_argument("--grpc-server-key", type=Path, help="PEM private key for --grpc-use-ssl")


def cmd_serve(args: argparse.Namespace) -> int:
    from sonic.server.app import ServerOptions, run

    for repo in args.model_repository:
        if not repo.is_dir():
            print(f"sonic serve: model repository {repo} is not a directory", file=sys.stderr)
            return 2
    return run(
        ServerOptions(
            model_repositories=args.model_repository,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            allow_http=args.allow_http,
            allow_grpc=args.allow_grpc,
            allow_metrics=args.allow_metrics,
            model_control_mode=args.model_control_mode,
            load_models=args.load_model,
            repository_poll_secs=args.repository_poll_secs,
            allow_client_shm=args.allow_client_shm,
            log_verbose=args.log_verbose,
            grpc_impl=args.grpc_impl,
            grpc_use_ssl=args.grpc_use_ssl,
            grpc_server_cert=args.grpc_server_cert,
            grpc_server_key=args.grpc_server_key,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sonic", description="Inference as a service for physics")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    register_demo(sub)
    register_fpga(sub)
    register_data(sub)
    register_train(sub)
    register_run(sub)
    register_bench(sub)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is not None:  # subcommands registered by their own packages
        return int(handler(args))
    return cmd_serve(args)
