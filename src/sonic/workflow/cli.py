"""``sonic run process.yaml``: run a workflow described in YAML, here or on Dask.

The lead's ``sonic.cli`` calls :func:`register` with its subparsers; ``run`` sets ``handler``
to a function of the parsed arguments that returns the exit code: 0 done, 1 the job failed,
2 the description is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sonic.protocol.errors import SonicError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``."""
    p = subparsers.add_parser(
        "run",
        help="run an event-processing workflow described in YAML",
        description="Run a process (source, modules, sinks, clients) described in a YAML file: "
        "here with N streams, or on Dask. Prints the end-of-job report.",
    )
    p.add_argument("process", type=Path, help="the process description (YAML)")
    p.add_argument(
        "--dask",
        metavar="CLUSTER",
        help="run on Dask: 'local:N' (a LocalCluster of N processes), 'tcp://host:8786' (a "
        "running scheduler), or 'none' to ignore the file's dask block",
    )
    p.add_argument("--partitions", type=int, help="partitions of the input on Dask (default 2 per worker)")
    p.add_argument("--streams", type=int, help="events in flight per process (overrides the file)")
    p.add_argument("--threads", type=int, help="threads for modules' CPU work (overrides the file)")
    p.add_argument("--max-events", type=int, help="stop after this many events")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the description: dotted key path, YAML value (repeatable), e.g. "
        "clients.tagger.transport=local or clients.tagger.servers=[gpu1:8001]",
    )
    p.add_argument("--sync", action="store_true", help="blocking inference calls (no latency hiding)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--report-json",
        type=Path,
        metavar="PATH",
        help="also write the report as JSON; its 'profile' block is the workflow profile that "
        "`sonic plan PATH` (or `sonic plan --profile PATH`) reads",
    )
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    p.set_defaults(handler=cmd_run)


def _positive(name: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise SystemExit(f"sonic run: --{name} must be >= {low}, got {value}")


def cmd_run(args: argparse.Namespace) -> int:
    from sonic.workflow._config import ConfigError, load_process

    logging.basicConfig(level=str(args.log_level).upper(), format="%(levelname)s %(name)s: %(message)s")
    _positive("streams", args.streams, 1)
    _positive("threads", args.threads, 0)
    _positive("max-events", args.max_events, 0)
    _positive("partitions", args.partitions, 1)
    try:
        process = load_process(args.process, args.set)
    except ConfigError as exc:
        print(f"sonic run: {exc.message}", file=sys.stderr)
        return 2
    except SonicError as exc:
        print(f"sonic run: {args.process}: {exc.message}", file=sys.stderr)
        return 2
    if args.streams is not None:
        process.streams = args.streams
    if args.threads is not None:
        process.threads = args.threads
    if args.max_events is not None:
        process.max_events = args.max_events
    if args.sync:
        process.sync = True
    dask: Any = None
    if args.dask is not None:
        dask = False if args.dask.lower() == "none" else args.dask
    try:
        report = process.run(dask=dask, partitions=args.partitions, progress=False if args.quiet else None)
    except SonicError as exc:
        print(f"sonic run: the job failed: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sonic run: interrupted; partial outputs were removed", file=sys.stderr)
        return 130
    print(report.table())
    if args.report_json is not None:
        args.report_json.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return 0
