"""``eventscale tune``: find the cheapest settings that meet a latency goal.

Every combination of the ``--set`` values is simulated in the closed loop over the
same workload (:func:`eventscale.simulation.tuning.tune`); the best few are printed, the
chosen ScaledObject can be written as a manifest (``--write``) and the trade-off
curve drawn (``--plot``). Exit status 1 when no combination meets the goal. See
docs/simulation.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from eventscale.cli._common import EXIT_FAILED, EXIT_OK, load
from eventscale.cli._output import Writable, table, write_json
from eventscale.cli._whatif import (
    add_workload_arguments,
    checked_metric_specs,
    closed_loop_kwargs,
)
from eventscale.errors import ConfigError

__all__ = ("add_parser", "execute")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand to the ``eventscale`` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "tune",
        help="search settings for the lowest cost that meets a wait goal",
        description="Simulate the ScaledObject in MANIFEST against a workload once per "
        "combination of the --set values, and rank them: those meeting the goal by cost "
        "(replica-seconds), then the others by how far they miss it.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="YAML file with the ScaledObject")
    p.add_argument("--name", help="the ScaledObject to tune when the file holds several")
    add_workload_arguments(p, required=True)
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="values to try for a setting: a ScaledObject field (pollingInterval, "
        "cooldownPeriod, minReplicaCount, maxReplicaCount...), scaleUp/scaleDown."
        "stabilizationWindowSeconds, scaleUp/scaleDown.pods or .percent (VALUE/PERIOD), "
        "or trigger metadata (listLength, triggers[1].lagThreshold...); repeatable",
    )
    goal = p.add_argument_group("goal (seconds an item waits before a replica takes it)")
    goal.add_argument("--p50-wait", type=float, metavar="SECONDS")
    goal.add_argument("--p95-wait", type=float, metavar="SECONDS")
    goal.add_argument("--p99-wait", type=float, metavar="SECONDS")
    goal.add_argument(
        "--max-wait", "--max-age", type=float, metavar="SECONDS", help="no item older than this"
    )
    p.add_argument("--top", type=int, default=5, metavar="N", help="print the best N (default 5)")
    p.add_argument("--write", metavar="OUT.yaml", help="write the chosen ScaledObject here")
    p.add_argument("--plot", metavar="OUT.png", help="draw the trade-off curve (eventscale[plot])")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="simulate in N processes (default: the cores, at most 4); same result",
    )
    p.add_argument(
        "--current-replicas", type=int, metavar="N", help="replicas at time 0 (default 0)"
    )
    p.set_defaults(execute=execute)
    return p


def _settings(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not parts:
            raise ConfigError(f"{item!r} is not NAME=V1,V2,...", path="--set")
        if name in out:
            raise ConfigError(f"{name!r} is given twice", path="--set")
        out[name] = parts
    if not out:
        raise ConfigError("name at least one setting to search", path="--set")
    return out


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale tune`` for parsed ``args``; return the exit status."""
    from eventscale.manifests.writer import dump_manifests
    from eventscale.simulation.tuning import Goal, tune

    goal = Goal(
        p50_wait=args.p50_wait,
        p95_wait=args.p95_wait,
        p99_wait=args.p99_wait,
        max_wait=args.max_wait,
    )
    if goal.describe() == "none":
        raise ConfigError("give a goal: --p95-wait, --max-wait, ...", path="--p95-wait")
    if args.top < 1:
        raise ConfigError("must be >= 1", path="--top")
    if args.jobs < 1:
        raise ConfigError("must be >= 1", path="--jobs")
    settings = _settings(args.settings)
    manifests = load([args.manifest])
    spec = manifests.scaled_object(args.name)
    checked_metric_specs(manifests, spec)  # refuse what evaluate refuses
    result = tune(
        spec,
        goal=goal,
        settings=settings,
        initial_replicas=args.current_replicas or 0,
        workers=args.jobs,
        **closed_loop_kwargs(args),
    )
    best = result.best
    if best is not None and args.write:
        Path(args.write).write_text(dump_manifests(best.spec), encoding="utf-8")
    if args.plot:
        from eventscale.simulation.tuning import plot_tradeoff

        plot_tradeoff(result, args.plot)
    if args.json:
        write_json(result.to_dict(top=args.top), out)
    else:
        names = list(settings)
        rows = [
            ["#", *names, "GOAL", "REPLICA-S", "P50", "P95", "P99", "MAX", "ACTIONS"],
        ]
        for rank, cand in enumerate(result.candidates[: args.top], 1):
            s = cand.summary
            rows.append(
                [
                    str(rank),
                    *[cand.settings[n] for n in names],
                    "met" if cand.meets_goal else "missed",
                    f"{s.replica_seconds:.0f}",
                    f"{s.wait_p50:g}s",
                    f"{s.wait_p95:g}s",
                    f"{s.wait_p99:g}s",
                    f"{s.wait_max:g}s",
                    str(s.scale_actions),
                ]
            )
        table(rows, out)
        met = sum(c.meets_goal for c in result.candidates)
        out.write(
            f"{len(result.candidates)} settings simulated, {met} meet the goal "
            f"({goal.describe()})"
            + (f", {len(result.invalid)} invalid skipped" if result.invalid else "")
            + "\n"
        )
        if best is not None and args.write:
            out.write(f"the chosen ScaledObject written to {args.write}\n")
        if args.plot:
            out.write(f"plot written to {args.plot}\n")
    if best is None:
        err.write("eventscale: no setting meets the goal\n")
        return EXIT_FAILED
    return EXIT_OK
