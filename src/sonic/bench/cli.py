"""``sonic bench``, ``sonic optimize`` and ``sonic plan``: the command-line faces of the package.

``bench`` takes perf_analyzer's flag names where they exist, so that a perf_analyzer command
line mostly works as it is; ``optimize`` and ``plan`` have no NVIDIA counterpart (model
analyzer aside) and take their own. Wired into ``sonic`` by :func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sonic.protocol.errors import SonicError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench``, ``optimize`` and ``plan`` to the ``sonic`` command."""
    _bench_parser(subparsers)
    _optimize_parser(subparsers)
    _plan_parser(subparsers)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- bench ----------------------------------------------------------------------------------------


def _load_args(p: argparse.ArgumentParser) -> None:
    """The flags that say which server and model, shared by bench and optimize."""
    p.add_argument("-m", "--model", dest="model", required=True, help="model name")
    p.add_argument("-x", "--model-version", default="", help="model version (default: the server's choice)")
    p.add_argument(
        "-u", "--url", default="", help="server host:port (default localhost:8001 for grpc, :8000 for http)"
    )
    p.add_argument(
        "-i",
        "--protocol",
        choices=["grpc", "http", "local"],
        default="grpc",
        help="grpc, http, or local (the model runs inside the load generator)",
    )
    p.add_argument("-b", "--batch-size", type=int, default=1, help="samples per request (default 1)")
    p.add_argument(
        "--input-data",
        default="random",
        help="random (default), zero, or a file: perf_analyzer's JSON or .npz",
    )
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:D1,D2",
        help="dims of a variable-size input (repeatable)",
    )
    p.add_argument(
        "--shared-memory",
        choices=["none", "system"],
        default="none",
        help="pass tensors through system shared memory (server on this host)",
    )
    p.add_argument(
        "--output-shared-memory-size",
        type=int,
        default=100 * 1024,
        help="bytes reserved for an output of unknown size (default 102400)",
    )
    p.add_argument("--input-tensor-format", choices=["binary", "json"], default="binary", help="HTTP only")
    p.add_argument("--output-tensor-format", choices=["binary", "json"], default="binary", help="HTTP only")
    p.add_argument(
        "--grpc-compression-algorithm",
        "--compression",
        dest="compression",
        choices=["none", "gzip", "deflate"],
        default="none",
        help="compress requests and responses (gRPC and HTTP)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--sync",
        dest="sync",
        action="store_true",
        default=True,
        help="one blocking thread per request in flight, each sending its next request as soon as "
        "its answer is in (default, as perf_analyzer's default mode)",
    )
    mode.add_argument(
        "-a",
        "--async",
        dest="sync",
        action="store_false",
        help="asyncio senders on one event loop per process: about half the client CPU; the "
        "answers of one read are re-sent together, so a dynamic batcher forms larger batches "
        "than under perf_analyzer (whose --async is also a thread per request)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="load-generating processes (default: 1 on <= 4 cores, more on bigger hosts)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument(
        "--engine",
        choices=["wire", "client"],
        default="wire",
        help="wire: requests encoded once, answers checked not decoded, lean HTTP/1.1 and "
        "HTTP/2 (default; as perf_analyzer); client: the SONIC client's transports, each "
        "request encoded and each answer decoded (what a workflow pays)",
    )
    p.add_argument(
        "--grpc-senders-per-connection",
        type=int,
        default=6,
        metavar="N",
        help="closed-loop senders per gRPC connection with the wire engine (default 6, laid out as "
        "perf_analyzer's channels: 1 connection up to concurrency 4, 3 at 16); 1: one connection "
        "per sender; 0: one per load-generating process",
    )


def _bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure a model's throughput and latency on any v2 server (perf_analyzer's job)",
        description="Closed-loop concurrency sweeps or open-loop request-rate sweeps against a KServe "
        "v2 / Triton server (or in-process), with perf_analyzer's measurement windows and stability "
        "rule; reports throughput, latency percentiles, the server-side queue/compute breakdown and "
        "the load generator's own CPU use. Flags follow perf_analyzer's names.",
    )
    _load_args(p)
    p.add_argument(
        "--model-repository",
        action="append",
        default=[],
        type=Path,
        help="model repository for -i local (repeatable)",
    )
    p.add_argument(
        "--concurrency-range",
        default=None,
        metavar="START[:END[:STEP]]",
        help="requests in flight (closed loop); default 1",
    )
    p.add_argument(
        "--request-rate-range",
        default=None,
        metavar="START[:END[:STEP]]",
        help="requests per second (open loop)",
    )
    p.add_argument("--request-distribution", choices=["constant", "poisson"], default="constant")
    p.add_argument(
        "-p",
        "--measurement-interval",
        type=float,
        default=5000.0,
        metavar="MS",
        help="measurement window in ms (default 5000)",
    )
    p.add_argument(
        "-s",
        "--stability-percentage",
        type=float,
        default=10.0,
        help="the last 3 windows must agree within this %% (default 10)",
    )
    p.add_argument("-r", "--max-trials", type=int, default=10, help="windows per level at most (default 10)")
    p.add_argument(
        "--percentile",
        type=int,
        default=None,
        help="stabilise on this latency percentile instead of the average",
    )
    p.add_argument(
        "-l",
        "--latency-threshold",
        type=float,
        default=None,
        metavar="MS",
        help="stop the sweep once latency exceeds this",
    )
    p.add_argument(
        "--warmup", type=float, default=0.5, metavar="SECONDS", help="warm-up per level (default 0.5)"
    )
    p.add_argument(
        "--max-outstanding",
        type=int,
        default=1024,
        help="request-rate mode: requests in flight at most (default 1024)",
    )
    p.add_argument(
        "-f",
        "--latency-report-file",
        dest="csv",
        type=Path,
        default=None,
        help="CSV in perf_analyzer's format",
    )
    p.add_argument("--json", type=Path, default=None, help="everything as JSON (what sonic plan reads)")
    p.add_argument("--plot", type=Path, default=None, help="throughput-vs-latency PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="print every measurement window")
    p.set_defaults(handler=cmd_bench)


def bench_config(args: argparse.Namespace) -> Any:
    from sonic.bench.engine import BenchConfig, parse_range

    if args.concurrency_range and args.request_rate_range:
        raise SystemExit("sonic bench: give --concurrency-range or --request-rate-range, not both")
    rates = parse_range(args.request_rate_range, integer=False) if args.request_rate_range else []
    conc = [int(c) for c in parse_range(args.concurrency_range or "1", integer=True)] if not rates else []
    return BenchConfig(
        **_engine_settings(args),
        repository=tuple(str(r) for r in args.model_repository),
        concurrency=conc,
        request_rates=rates,
        distribution=args.request_distribution,
        percentile=args.percentile,
        latency_threshold_ms=args.latency_threshold,
        max_outstanding=args.max_outstanding,
    )


def _engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The BenchConfig fields that `bench` and `optimize` take from the same flags."""
    from sonic.bench.inputs import parse_shapes

    return {
        "model": args.model,
        "url": args.url,
        "protocol": args.protocol,
        "model_version": args.model_version,
        "batch": args.batch_size,
        "shared_memory": args.shared_memory,
        "output_shm_size": args.output_shared_memory_size,
        "input_data": args.input_data,
        "shapes": parse_shapes(args.shape),
        "input_format": args.input_tensor_format,
        "output_format": args.output_tensor_format,
        "compression": args.compression,
        "sync": args.sync,
        "measurement_interval_ms": args.measurement_interval,
        "stability_percent": args.stability_percentage,
        "max_trials": args.max_trials,
        "warmup_s": args.warmup,
        "processes": args.processes,
        "timeout_s": args.timeout,
        "seed": args.seed,
        "engine": args.engine,
        "grpc_senders_per_connection": args.grpc_senders_per_connection,
    }


def cmd_bench(args: argparse.Namespace) -> int:
    from sonic.bench.engine import run_bench

    try:
        cfg = bench_config(args)
        print("*** Measurement Settings ***")
        print(f"  Model: {cfg.model}  Protocol: {cfg.protocol}  Server: {cfg.url or 'in-process'}")
        print(
            f"  Batch size: {cfg.batch}  Measurement window: {cfg.measurement_interval_ms:g} msec  "
            f"Stability: {cfg.stability_percent:g}% over 3 windows, at most {cfg.max_trials} windows"
        )
        print(
            f"  {'Synchronous threads' if cfg.sync else 'Asyncio senders'}; "
            f"{cfg.auto_processes()} load-generating process(es); shared memory: {cfg.shared_memory}; "
            f"compression: {cfg.compression or 'none'}"
        )
        print(flush=True)
        report = run_bench(
            cfg,
            log=_say if args.verbose else None,
            on_level=lambda r: print(report_block(r), "\n", sep="", flush=True),
        )
    except SonicError as exc:
        print(f"sonic bench: {exc.message}", file=sys.stderr)
        return 2
    print(report.table())
    report.write(args.csv, args.json)
    for path in (args.csv, args.json):
        if path:
            print(f"wrote {path}")
    if args.plot:
        from sonic.bench.plots import plot_bench

        try:
            print(f"wrote {plot_bench(report.results, args.plot, f'{cfg.model} over {cfg.protocol}')}")
        except SonicError as exc:
            print(f"sonic bench: {exc.message}", file=sys.stderr)
            return 2
    failed = sum(r.errors for r in report.results)
    if failed:
        print(f"sonic bench: {failed} requests failed", file=sys.stderr)
    return 1 if failed or not report.results else 0


def report_block(r: Any) -> str:
    from sonic.bench.results import BenchReport

    return BenchReport({}, {}, {}, [r]).describe(r)


# -- optimize -------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _delays(text: str) -> list[int]:
    return [-1 if x.strip().lower() == "off" else int(x) for x in text.split(",") if x.strip()]


def _optimize_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "optimize",
        help="search a model's server configuration for the best throughput within a latency budget",
        description="Sweep instance count, max_batch_size, preferred batch sizes, max_queue_delay and "
        "backend threads on a sonic server (self-started on a copy of --model-repository, or a running "
        "one in explicit model-control mode via -u), measure each configuration with the bench engine, "
        "and report the Pareto front of throughput vs p99 latency. With --latency-budget-ms it writes "
        "the best config.pbtxt.",
    )
    _load_args(p)
    p.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="start sonic serve on a temporary copy of this repository (else use -u)",
    )
    p.add_argument("--instances", type=_ints, default=[1, 2], help="instance counts to try (default 1,2)")
    p.add_argument(
        "--max-batch-size", type=_ints, default=[], help="max_batch_size values (default: the model's)"
    )
    p.add_argument(
        "--preferred-batch-sizes",
        default="none",
        help="comma-separated choices: none, max, half, or sizes joined by + (e.g. none,max,4+8)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=_delays,
        default=[0, 100, 1000],
        help="max_queue_delay_microseconds values; 'off' = no dynamic batching (default 0,100,1000)",
    )
    p.add_argument(
        "--threads",
        type=_ints,
        default=[0],
        help="onnxruntime intra-op threads per instance (0 = its default; default 0)",
    )
    p.add_argument(
        "--concurrency", type=_ints, default=[1, 4, 16], help="load levels per configuration (default 1,4,16)"
    )
    p.add_argument(
        "--search",
        choices=["auto", "brute", "coordinate", "halving"],
        default="auto",
        help="auto: brute force up to --brute-limit configurations, else coordinate ascent",
    )
    p.add_argument("--brute-limit", type=int, default=12)
    p.add_argument(
        "--latency-budget-ms", type=float, default=None, help="p99 budget; writes the best config.pbtxt"
    )
    p.add_argument(
        "-p",
        "--measurement-interval",
        type=float,
        default=1000.0,
        metavar="MS",
        help="measurement window (default 1000 ms)",
    )
    p.add_argument("-s", "--stability-percentage", type=float, default=10.0)
    p.add_argument(
        "-r", "--max-trials", type=int, default=5, help="windows per measurement at most (default 5)"
    )
    p.add_argument("--warmup", type=float, default=0.3, metavar="SECONDS")
    p.add_argument("--server-flag", action="append", default=[], help="extra sonic serve flag (repeatable)")
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=None,
        help="report.json, report.txt, pareto.png, config.pbtxt (default ./sonic-optimize-MODEL)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_optimize)


def cmd_optimize(args: argparse.Namespace) -> int:
    from sonic.bench.engine import BenchConfig
    from sonic.bench.optimize import SearchSpace, optimize

    if args.protocol == "local":
        print("sonic optimize: -i local has no server to configure; use grpc or http", file=sys.stderr)
        return 2
    if args.model_repository is None and not args.url:
        print(
            "sonic optimize: give --model-repository (a server of its own) or -u (a running sonic "
            "server in explicit model-control mode)",
            file=sys.stderr,
        )
        return 2
    out_dir = args.output_dir or Path(f"sonic-optimize-{args.model}")
    try:
        bench = BenchConfig(**_engine_settings(args), concurrency=args.concurrency)
        space = SearchSpace(
            instances=args.instances,
            max_batch_size=args.max_batch_size,
            preferred=[t for t in args.preferred_batch_sizes.split(",") if t.strip()],
            max_queue_delay_us=args.max_queue_delay_us,
            threads=args.threads,
        )
        flags = list(args.server_flag)
        if args.shared_memory == "system" and "--allow-client-shm" not in flags:
            flags.append("--allow-client-shm")
        report = optimize(
            bench,
            space,
            concurrency=args.concurrency,
            search=args.search,
            budget_ms=args.latency_budget_ms,
            repository=args.model_repository,
            server_flags=flags,
            brute_limit=args.brute_limit,
            seed=args.seed,
            log=_say,
        )
    except SonicError as exc:
        print(f"sonic optimize: {exc.message}", file=sys.stderr)
        return 2
    print(report.summary())
    print()
    print(report.table())
    files = report.write(out_dir)
    try:
        files.append(report.plot(out_dir / "pareto.png"))
    except SonicError as exc:
        print(f"sonic optimize: no plot: {exc.message}", file=sys.stderr)
    print()
    for f in files:
        print(f"wrote {f}")
    if args.latency_budget_ms is not None and report.best is None:
        return 1
    return 0


# -- plan -----------------------------------------------------------------------------------------


def _price(text: str) -> Any:
    from sonic.bench.plan import Price

    name, _, rest = text.partition(":")
    parts = rest.split(":")
    if not name or len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--price {text!r}: expected NAME:CPU_PER_HOUR:GPU_PER_HOUR")
    try:
        return Price(name, float(parts[0]), float(parts[1]), "given with --price")
    except ValueError:
        raise argparse.ArgumentTypeError(f"--price {text!r}: prices must be numbers") from None


def _plan_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="size and cost inference as a service for a workflow (speed-up, GPUs, GPU:CPU, network, $)",
        description="From a workflow profile (a `sonic run` report or numbers by hand) and a server curve "
        "(`sonic bench --json`, or throughput and latency by hand): the whole-job speed-up (Amdahl with "
        "latency hiding), servers (GPUs) for N client threads, the GPU:CPU ratio, network bandwidth and "
        "cost per million events. Worked examples: examples/plan/.",
    )
    p.add_argument(
        "plan_file",
        nargs="?",
        type=Path,
        default=None,
        help="plan file (YAML/JSON: workflow, server, cluster, prices), or a sonic run report",
    )
    g = p.add_argument_group("workflow (per event, one CPU thread; override the file)")
    g.add_argument(
        "--profile",
        type=Path,
        metavar="REPORT",
        help="the workflow profile from a `sonic run --report-json` file (replaces the plan file's "
        "workflow; the flags below override its keys)",
    )
    g.add_argument("--cpu-ms", type=float, help="CPU time outside ML")
    g.add_argument("--ml-ms", type=float, help="ML time when run inline")
    g.add_argument("--requests", type=float, help="inference requests per event")
    g.add_argument("--batch", type=float, help="inferences per request")
    g.add_argument("--bytes-in", type=float, help="bytes sent per request")
    g.add_argument("--bytes-out", type=float, help="bytes received per request")
    g.add_argument("--client-ms", type=float, help="client CPU per request")
    g.add_argument("--streams", type=int, help="events in flight per thread (latency hiding)")
    g.add_argument("--hidden-fraction", type=float, help="fraction of the wait hidden (instead of --streams)")
    s = p.add_argument_group("server")
    s.add_argument("--bench", type=Path, help="sonic bench --json report: the server curve")
    s.add_argument(
        "--latency",
        choices=["avg", "p50", "p90", "p95", "p99"],
        default=None,
        help="which latency of the bench report (default avg)",
    )
    s.add_argument(
        "--server-throughput", type=float, help="by hand: inferences/s of one server at saturation"
    )
    s.add_argument("--server-latency-ms", type=float, help="by hand: latency per request at low load")
    s.add_argument("--rtt-ms", type=float, help="network round trip added to the curve's latencies")
    s.add_argument("--utilization", type=float, help="target server utilisation (default 1.0)")
    c = p.add_argument_group("cluster and prices")
    c.add_argument("--threads", type=int, help="client CPU threads of the cluster (default 1000)")
    c.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="NAME:CPU:GPU",
        help="$ per CPU-thread hour and per GPU hour (repeatable; replaces the defaults)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the plan as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write the plots (PNG)")
    p.set_defaults(handler=cmd_plan)


def plan_from_args(args: argparse.Namespace) -> Any:
    from sonic.bench import plan as planmod

    wf = {
        k: v
        for k, v in {
            "cpu_ms_per_event": args.cpu_ms,
            "ml_ms_per_event_inline": args.ml_ms,
            "requests_per_event": args.requests,
            "inferences_per_request": args.batch,
            "bytes_in_per_request": args.bytes_in,
            "bytes_out_per_request": args.bytes_out,
            "client_ms_per_request": args.client_ms,
            "streams": args.streams,
            "hidden_fraction": args.hidden_fraction,
        }.items()
        if v is not None
    }
    server: dict[str, Any] = {}
    if args.bench is not None:
        server["bench"] = str(args.bench.resolve())
        if args.latency:
            server["latency"] = args.latency
    if args.server_throughput is not None or args.server_latency_ms is not None:
        if args.server_throughput is None or args.server_latency_ms is None:
            raise SystemExit("sonic plan: give both --server-throughput and --server-latency-ms")
        server.update(throughput=args.server_throughput, latency_ms=args.server_latency_ms)
        if args.batch is not None:
            server["batch"] = args.batch
    for key, val in (("rtt_ms", args.rtt_ms), ("target_utilization", args.utilization)):
        if val is not None:
            server[key] = val
    base = planmod.load_profile(args.profile) if args.profile is not None else None
    if args.plan_file is not None:
        return planmod.load_plan_file(
            args.plan_file, wf, server, threads=args.threads, prices=args.price or None, workflow=base
        )
    profile = planmod.Profile.from_mapping({**(base or {}), **wf})
    if not server.get("bench") and not server.get("throughput"):
        raise SystemExit(
            "sonic plan: give a server curve: --bench FILE or --server-throughput and --server-latency-ms"
        )
    curve = planmod.load_curve(server, Path.cwd())
    return planmod.make_plan(
        profile,
        curve,
        threads=args.threads or 1000,
        utilization=float(server.get("target_utilization", 1.0)),
        rtt_ms=float(server.get("rtt_ms", 0.0)),
        prices=args.price or planmod.DEFAULT_PRICES,
    )


def cmd_plan(args: argparse.Namespace) -> int:
    import json

    try:
        plan = plan_from_args(args)
    except SonicError as exc:
        print(f"sonic plan: {exc.message}", file=sys.stderr)
        return 2
    print(plan.text())
    if args.json:
        args.json.write_text(json.dumps(plan.as_dict(), indent=2, default=str))
        print(f"\nwrote {args.json}")
    if args.plot:
        try:
            print(f"wrote {plan.plot(args.plot)}")
        except SonicError as exc:
            print(f"sonic plan: no plot: {exc.message}", file=sys.stderr)
            return 2
    return 0
