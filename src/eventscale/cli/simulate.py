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
from eventscale.errors import ConfigError, EventscaleError, MissingExtraError

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests

__all__ = ("add_parser", "execute", "simulate_scaled_job")


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
    sim.add_argument("--trace", required=True, metavar="TRACE.csv", help="the metric trace")
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
    sim.set_defaults(execute=execute)
    return sim


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale simulate`` for parsed ``args``; return the exit status."""
    from eventscale.simulation.scaled_object import Trace, simulate

    manifests = load([args.manifest], jobs=True)
    if not manifests.scaled_objects or args.job_seconds is not None:
        return simulate_scaled_job(
            manifests,
            trace_path=args.trace,
            job_seconds=args.job_seconds,
            name=args.name,
            as_json=args.json,
            out=out,
        )
    spec = manifests.scaled_object(args.name)
    trace = Trace.from_csv(args.trace)
    if args.ready_delay < 0:
        raise ConfigError("must be >= 0", path="--ready-delay")
    if args.plot:
        _check_plotting()
    timeline = simulate(
        spec, trace, initial_replicas=args.current_replicas or 0, ready_delay=args.ready_delay
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
) -> int:
    """``eventscale simulate`` for a ScaledJob; returns the exit status (0)."""
    from eventscale.simulation.scaled_job import simulate_jobs
    from eventscale.simulation.scaled_object import Trace

    if job_seconds is None:
        raise ConfigError(
            "a ScaledJob needs --job-seconds (how long each job runs)", path="--job-seconds"
        )
    spec = manifests.scaled_job(name)
    timeline = simulate_jobs(spec, Trace.from_csv(trace_path), job_seconds=job_seconds)
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
