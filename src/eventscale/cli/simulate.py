"""``eventscale simulate``: replay a metric trace through the engine on a virtual clock.

The trace is a CSV file (a ``time`` column in seconds, one column per trigger); no
source is contacted. A ScaledObject's timeline shows desired and ready replicas, a
ScaledJob's (with ``--job-seconds``) the jobs running, finished and started. See
docs/cli.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from eventscale.cli._common import EXIT_OK, load, tidy_reason
from eventscale.cli._output import Writable, fmt, table, write_json
from eventscale.cli._whatif import (
    add_workload_arguments,
    checked_metric_specs,
    closed_loop_kwargs,
    summary_table,
)
from eventscale.errors import ConfigError, EventscaleError, MissingExtraError

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests

__all__ = ("add_parser", "execute", "execute_closed_loop", "simulate_scaled_job")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to the ``eventscale`` parser's subparsers."""
    sim: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="replay a metric trace through the engine on a virtual clock",
        description="Replay TRACE (CSV: a 'time' column in seconds and one column per trigger, "
        "named by the trigger's name or index) through the engine, ticking every pollingInterval "
        "from 0 to the last time. No source is contacted. A value holds until the next row; an "
        "empty cell is a failed read (so fallback can be simulated).",
    )
    sim.add_argument("manifest", metavar="MANIFEST", help="YAML file with the ScaledObject")
    sim.add_argument("--trace", metavar="TRACE.csv", help="the metric trace (or --workload)")
    sim.add_argument(
        "--plot", metavar="OUT.png", help="draw metrics and replicas (needs eventscale[plot])"
    )
    sim.add_argument("--json", action="store_true", help="print the timeline as JSON")
    sim.add_argument(
        "--ready-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="new replicas become ready this long after a scale-up (default 0)",
    )
    sim.add_argument(
        "--current-replicas", type=int, metavar="N", help="replicas at time 0 (default 0)"
    )
    sim.add_argument("--name", help="the ScaledObject to simulate when the file holds several")
    sim.add_argument(
        "--job-seconds",
        type=float,
        metavar="SECONDS",
        help="simulate the ScaledJob (--name) instead: each job runs this long",
    )
    closed = sim.add_argument_group(
        "closed loop", "simulate a workload and the queue the replicas drain (docs/simulation.md)"
    )
    add_workload_arguments(closed, required=False)
    closed.add_argument(
        "--timeline", action="store_true", help="print one row per poll, not only the summary"
    )
    closed.add_argument(
        "--items-per-job",
        type=float,
        default=1.0,
        metavar="N",
        help="a ScaledJob's job takes this many items when it starts (default 1)",
    )
    sim.set_defaults(execute=execute)
    return sim


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale simulate`` for parsed ``args``; return the exit status."""
    from eventscale.simulation.scaled_object import Trace, simulate

    if args.workload is not None:
        if args.trace is not None:
            raise ConfigError("give --trace or --workload, not both", path="--workload")
        if args.ready_delay:
            raise ConfigError("the closed loop takes --startup instead", path="--ready-delay")
        return execute_closed_loop(args, out)
    if args.trace is None:
        raise ConfigError("give --trace (a metric trace) or --workload", path="--trace")
    manifests = load([args.manifest], jobs=True)
    if not manifests.scaled_objects or args.job_seconds is not None:
        return simulate_scaled_job(
            manifests,
            trace_path=args.trace,
            job_seconds=args.job_seconds,
            name=args.name,
            as_json=args.json,
            out=out,
            plot=args.plot,
        )
    spec = manifests.scaled_object(args.name)
    trace = Trace.from_csv(args.trace)
    if args.ready_delay < 0:
        raise ConfigError("must be >= 0", path="--ready-delay")
    if args.plot:
        _check_plotting()
    timeline = simulate(
        spec,
        trace,
        initial_replicas=args.current_replicas or 0,
        ready_delay=args.ready_delay,
        metric_specs=checked_metric_specs(manifests, spec),
    )
    if args.plot:
        timeline.plot(args.plot)
    if args.json:
        write_json(timeline.to_dict(), out)
        return EXIT_OK
    _timeline_table(
        spec.triggers,
        timeline.steps,
        ["DESIRED", "READY", "ACTIVE", "REASON"],
        lambda step: [
            str(step.desired_replicas),
            str(step.replicas),
            "yes" if step.active else "no",
            tidy_reason(step.reason),
        ],
        out,
    )
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return EXIT_OK


def execute_closed_loop(args: argparse.Namespace, out: Writable) -> int:
    """``eventscale simulate --workload``: the closed loop; returns the exit status (0)."""
    from eventscale.simulation.closed_loop import simulate_closed_loop

    if args.plot:
        _check_plotting()
    manifests = load([args.manifest], jobs=True)
    if not manifests.scaled_objects or args.job_seconds is not None:
        return _closed_loop_jobs(manifests, args, out)
    spec = manifests.scaled_object(args.name)
    result = simulate_closed_loop(
        spec,
        initial_replicas=args.current_replicas or 0,
        metric_specs=checked_metric_specs(manifests, spec),
        **closed_loop_kwargs(args),
    )
    if args.plot:
        result.plot(args.plot)
    if args.json:
        write_json(result.to_dict(timeline=args.timeline), out)
        return EXIT_OK
    if args.timeline:
        _timeline_table(
            spec.triggers,
            result.steps,
            ["BACKLOG", "AGE", "DESIRED", "READY", "REASON"],
            lambda step: [
                f"{step.backlog:.0f}",
                f"{step.oldest_age:g}",
                str(step.desired_replicas),
                str(step.replicas),
                step.reason,
            ],
            out,
        )
        out.write("\n")
    summary_table(result.summary.rows(), out)
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return EXIT_OK


def _closed_loop_jobs(manifests: Manifests, args: argparse.Namespace, out: Writable) -> int:
    """``eventscale simulate --workload`` for a ScaledJob (``--job-seconds``)."""
    from eventscale.simulation.closed_loop_jobs import simulate_jobs_closed_loop

    if args.job_seconds is None:
        raise ConfigError(
            "a ScaledJob needs --job-seconds (how long each job runs)", path="--job-seconds"
        )
    spec = manifests.scaled_job(args.name)
    kwargs = closed_loop_kwargs(args, jobs=True)
    result = simulate_jobs_closed_loop(
        spec,
        job_seconds=args.job_seconds,
        items_per_job=args.items_per_job,
        metric_specs=checked_metric_specs(manifests, spec),
        **kwargs,
    )
    if args.plot:
        result.plot(args.plot)
    if args.json:
        write_json(result.to_dict(timeline=args.timeline), out)
        return EXIT_OK
    if args.timeline:
        _timeline_table(
            spec.triggers,
            result.steps,
            ["BACKLOG", "AGE", "RUNNING", "STARTED", "REASON"],
            lambda step: [
                f"{step.backlog:.0f}",
                f"{step.oldest_age:g}",
                str(step.running),
                str(step.started),
                step.reason,
            ],
            out,
        )
        out.write("\n")
    rows = result.summary.rows()
    renamed = {
        "replica-seconds": "job-seconds",
        "ready replica-seconds": "running job-seconds",
        "peak replicas": "peak jobs",
        "scale actions": "jobs started",
        "time at zero": "time with no job",
    }
    summary_table([(renamed.get(label, label), value) for label, value in rows], out)
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return EXIT_OK


def _check_plotting() -> None:
    """Fail before simulating when matplotlib is missing: a run-time failure (exit 1, as
    docs/cli.md says), not invalid input."""
    from eventscale._optional import import_optional

    try:
        import_optional("matplotlib", extra="plot", what="simulate --plot")
    except MissingExtraError as exc:
        raise EventscaleError(str(exc)) from None


def simulate_scaled_job(
    manifests: Manifests,
    *,
    trace_path: str,
    job_seconds: float | None,
    name: str | None,
    as_json: bool,
    out: Writable,
    plot: str | None = None,
) -> int:
    """``eventscale simulate`` for a ScaledJob; returns the exit status (0)."""
    from eventscale.simulation.scaled_job import simulate_jobs
    from eventscale.simulation.scaled_object import Trace

    if job_seconds is None:
        raise ConfigError(
            "a ScaledJob needs --job-seconds (how long each job runs)", path="--job-seconds"
        )
    spec = manifests.scaled_job(name)
    if plot:
        _check_plotting()
    timeline = simulate_jobs(
        spec,
        Trace.from_csv(trace_path),
        job_seconds=job_seconds,
        metric_specs=checked_metric_specs(manifests, spec),
    )
    if plot:
        timeline.plot(plot)
    if as_json:
        write_json(timeline.to_dict(), out)
        return EXIT_OK
    _timeline_table(
        spec.triggers,
        timeline.steps,
        ["RUNNING", "FINISHED", "STARTED", "REASON"],
        lambda step: [
            str(step.running),
            str(step.finished),
            str(step.started),
            tidy_reason(step.reason),
        ],
        out,
    )
    out.write(
        f"{timeline.jobs_started} jobs started, at most {timeline.peak_running} running at once\n"
    )
    if plot:
        out.write(f"plot written to {plot}\n")
    return EXIT_OK


def _timeline_table(
    triggers: Sequence[Any],
    steps: Iterable[Any],
    columns: list[str],
    cells: Callable[[Any], list[str]],
    out: Writable,
) -> None:
    """One row per step: its time, each trigger's metric, then ``cells(step)``."""
    names = [t.name or str(i) for i, t in enumerate(triggers)]
    rows = [["TIME", *[n.upper() for n in names], *columns]]
    for step in steps:
        rows.append([f"{step.time:g}", *[fmt(step.metrics.get(n)) for n in names], *cells(step)])
    table(rows, out)
