"""What ``eventscale simulate --workload`` and ``eventscale tune`` share: the workload
options, reading them, and the summary table. See docs/simulation.md.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from eventscale.cli._output import Writable, table
from eventscale.errors import ConfigError

__all__ = ("add_workload_arguments", "closed_loop_kwargs", "summary_table")


def add_workload_arguments(p: Any, *, required: bool) -> None:
    """Add ``--workload``, ``--throughput``/``--work-seconds``, ``--startup``, ``--fail``, ``--metric``."""
    p.add_argument(
        "--workload",
        required=required,
        metavar="SPEC",
        help="arrivals: a CSV (time, arrivals per second) or KIND:key=value,... with KIND "
        "constant, steps, sine or bursts (add poisson=SEED for seeded whole arrivals); "
        "switches simulate to the closed loop",
    )
    rate = p.add_mutually_exclusive_group()
    rate.add_argument(
        "--throughput", type=float, metavar="ITEMS", help="items per second one replica takes"
    )
    rate.add_argument(
        "--work-seconds", type=float, metavar="SECONDS", help="seconds of work per item"
    )
    p.add_argument(
        "--startup",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="new replicas take work this long after a scale-up (default 0)",
    )
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="START-END",
        help="the source fails between these seconds (repeatable)",
    )
    p.add_argument(
        "--metric",
        action="append",
        metavar="KIND",
        help="what a trigger reads: length, lag, age or rate (once per trigger, in order; "
        "default from the trigger type)",
    )


def _window(text: str) -> tuple[float, float]:
    start, sep, end = text.partition("-")
    try:
        window = (float(start), float(end))
    except ValueError:
        window = (math.nan, math.nan)
    if not sep or not all(math.isfinite(v) for v in window) or not 0 <= window[0] < window[1]:
        raise ConfigError(f"{text!r} is not START-END seconds with START < END", path="--fail")
    return window


def closed_loop_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The workload and keyword arguments of ``simulate_closed_loop`` from ``args``."""
    from eventscale.simulation.workload import parse_workload

    if args.throughput is not None:
        throughput = args.throughput
        where = "--throughput"
    elif args.work_seconds is not None:
        where = "--work-seconds"
        throughput = 1.0 / args.work_seconds if args.work_seconds > 0 else math.nan
    else:
        raise ConfigError(
            "the closed loop needs --throughput or --work-seconds", path="--throughput"
        )
    if not (math.isfinite(throughput) and throughput > 0):
        raise ConfigError("must be a finite number > 0", path=where)
    if not (math.isfinite(args.startup) and args.startup >= 0):
        raise ConfigError("must be a finite number >= 0", path="--startup")
    return {
        "workload": parse_workload(args.workload),
        "throughput": throughput,
        "startup": args.startup,
        "failures": [_window(w) for w in args.fail],
        "kinds": args.metric,
    }


def summary_table(rows: list[tuple[str, str]], out: Writable) -> None:
    """A two-column table of a run's summary."""
    table([["", "VALUE"], *[[label, value] for label, value in rows]], out)
