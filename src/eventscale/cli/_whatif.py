"""What ``eventscale simulate --workload`` and ``eventscale tune`` share: the workload
options, reading them, and the summary table. See docs/simulation.md.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING, Any

from eventscale.cli._output import Writable, table
from eventscale.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests
    from eventscale.metrics import MetricSpec
    from eventscale.scalers import Scaler
    from eventscale.spec import ScaledJobSpec, ScaledObjectSpec

__all__ = (
    "add_workload_arguments",
    "checked_metric_specs",
    "closed_loop_kwargs",
    "summary_table",
)


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


def closed_loop_kwargs(args: argparse.Namespace, *, jobs: bool = False) -> dict[str, Any]:
    """The workload and keyword arguments of ``simulate_closed_loop`` from ``args``.

    With ``jobs`` (a ScaledJob, whose jobs take items when they start) there is no
    throughput.
    """
    from eventscale.simulation.workload import parse_workload

    common = {
        "workload": parse_workload(args.workload),
        "startup": args.startup,
        "failures": [_window(w) for w in args.fail],
        "kinds": args.metric,
    }
    if not (math.isfinite(args.startup) and args.startup >= 0):
        raise ConfigError("must be a finite number >= 0", path="--startup")
    if jobs:
        return common
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
    return {**common, "throughput": throughput}


def summary_table(rows: list[tuple[str, str]], out: Writable) -> None:
    """A two-column table of a run's summary."""
    table([["", "VALUE"], *[[label, value] for label, value in rows]], out)


def checked_metric_specs(
    manifests: Manifests, spec: ScaledObjectSpec | ScaledJobSpec
) -> tuple[MetricSpec, ...]:
    """Each trigger's metric spec as ``evaluate`` would have it: from the scaler it builds.

    Building the scaler (it connects on its first poll, never here) checks the trigger
    as ``evaluate`` does, so a trigger ``evaluate`` rejects is rejected here too, and
    the target is the scaler's own (the cron trigger's is 1). Where the scaler cannot be
    built offline (a secret that is not in the manifest, a client library not
    installed) the target comes from the trigger's metadata instead.

    :raises ConfigError: an unknown trigger type or metadata the scaler refuses.
    """
    import anyio

    from eventscale.scalers import create_scaler, resolve_scaler_class
    from eventscale.simulation.scaled_object import trigger_metric_specs

    for i, trig in enumerate(spec.triggers):
        resolve_scaler_class(trig.type, path=f"spec.triggers[{i}].type")
    try:
        contexts = manifests.trigger_contexts(spec, env=dict(os.environ))
    except ConfigError:
        contexts = ()
    built: list[Scaler | None] = []
    try:
        for ctx in contexts:
            try:
                built.append(create_scaler(ctx))
            except MissingExtraError:
                built.append(None)
        out: list[MetricSpec] = []
        metadata_specs: tuple[MetricSpec, ...] | None = None
        for i in range(len(spec.triggers)):
            scaler = built[i] if i < len(built) else None
            own = tuple(scaler.metric_specs()) if scaler is not None else ()
            if len(own) == 1:
                out.append(own[0])
                continue
            if metadata_specs is None:
                metadata_specs = trigger_metric_specs(spec)  # type: ignore[arg-type]
            out.append(metadata_specs[i])
        return tuple(out)
    finally:
        if any(s is not None for s in built):
            anyio.run(_close, [s for s in built if s is not None])


async def _close(scalers: list[Scaler]) -> None:
    for scaler in scalers:
        await scaler.aclose()
