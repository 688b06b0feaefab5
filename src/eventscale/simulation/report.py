"""Plots of closed-loop runs and of a tuning search's trade-off (needs eventscale[plot]).

:func:`plot_closed_loop` draws four panels sharing the time axis: arrivals, the
backlog, the replicas (desired and ready), and what the triggers read against their
targets, with the polls the engine spent in cooldown, a scale-down stabilization
window or on errors shaded. :func:`plot_tradeoff` draws every candidate of a search as
cost against p95 wait, the trade-off curve through the undominated ones, and the goal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from eventscale._optional import import_optional

if TYPE_CHECKING:
    from eventscale.simulation.closed_loop import ClosedLoopResult, ClosedLoopStep
    from eventscale.simulation.tuning import TuneResult

__all__ = ("plot_closed_loop", "plot_tradeoff")

#: Shaded spans: rule values -> (label, colour).
_WINDOWS = {
    "cooldown": ("cooldown", "tab:blue"),
    "scale-down-stabilization": ("scale-down stabilization", "tab:orange"),
    "scale-up-stabilization": ("scale-up stabilization", "tab:olive"),
    "hold-on-error": ("read failed", "tab:red"),
    "error-blocks-scale-down": ("read failed", "tab:red"),
    "fallback": ("fallback", "tab:red"),
}


def _pyplot(what: str) -> Any:
    mpl = import_optional("matplotlib", extra="plot", what=what)
    mpl.use("Agg")
    return import_optional("matplotlib.pyplot", extra="plot", what=what)


def _spans(steps: Sequence[ClosedLoopStep], end: float) -> Iterator[tuple[str, float, float]]:
    """``(rule, start, end)`` runs of consecutive polls under one shaded rule."""
    current: str | None = None
    start = 0.0
    for step in steps:
        rule = step.rule if step.rule in _WINDOWS else None
        if rule != current:
            if current is not None:
                yield current, start, step.time
            current, start = rule, step.time
    if current is not None:
        yield current, start, end


def plot_closed_loop(result: ClosedLoopResult, path: str) -> None:
    """Draw ``result`` (run with its timeline kept) to the image file ``path``."""
    plt = _pyplot("simulate --plot")
    workload = result.workload
    res = workload.resolution
    times = [i * res for i in range(len(workload.rates))]
    fig, (arrivals, backlog, replicas, metric) = plt.subplots(4, 1, sharex=True, figsize=(11, 9))
    arrivals.step(times, workload.rates, where="post", color="tab:gray")
    arrivals.set_ylabel("arrivals / s")
    if result.backlog:
        backlog.step(times, result.backlog, where="post", color="tab:purple", label="waiting")
    steps = result.steps
    poll_times = [s.time for s in steps]
    age = backlog.twinx()
    age.step(
        poll_times,
        [s.oldest_age for s in steps],
        where="post",
        color="tab:brown",
        linewidth=0.8,
        label="oldest age (s, right axis)",
    )
    age.set_ylabel("oldest age (s)")
    age.legend(loc="upper left", fontsize="small")
    backlog.set_ylabel("backlog")
    backlog.legend(loc="upper right", fontsize="small")
    replicas.step(poll_times, [s.desired_replicas for s in steps], where="post", label="desired")
    replicas.step(
        poll_times, [s.replicas for s in steps], where="post", linestyle="--", label="ready"
    )
    peak = max((s.desired_replicas for s in steps), default=0)
    replicas.set_ylim(0, max(1, peak) * 1.15 + 0.5)
    replicas.set_ylabel("replicas")
    for i, trig in enumerate(result.spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        (line,) = metric.step(
            poll_times, ys, where="post", label=f"{label} ({result.kinds[i].value})"
        )
        mspec = result.metric_specs[i]
        metric.axhline(
            mspec.target,
            color=line.get_color(),
            linestyle="--",
            linewidth=0.8,
            label=f"{label} target {mspec.target:g}",
        )
    metric.set_ylabel("trigger reads")
    metric.set_xlabel("seconds")
    seen: set[str] = set()
    for rule, start, end in _spans(steps, workload.duration):
        label, colour = _WINDOWS[rule]
        replicas.axvspan(
            start,
            end,
            color=colour,
            alpha=0.12,
            linewidth=0,
            label=label if label not in seen else "_nolegend_",
        )
        seen.add(label)
    replicas.legend(loc="upper right", fontsize="small")
    metric.legend(loc="upper right", fontsize="small")
    s = result.summary
    fig.suptitle(
        f"ScaledObject {result.spec.name}: p95 wait {s.wait_p95:g}s, max {s.wait_max:g}s, "
        f"{s.replica_seconds:.0f} replica-seconds"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_tradeoff(result: TuneResult, path: str) -> None:
    """Draw cost against p95 wait for every candidate of ``result`` to ``path``."""
    plt = _pyplot("tune --plot")
    fig, ax = plt.subplots(figsize=(8, 5))
    met = [c for c in result.candidates if c.meets_goal]
    missed = [c for c in result.candidates if not c.meets_goal]
    for group, colour, label in (
        (met, "tab:green", "meets the goal"),
        (missed, "tab:gray", "misses it"),
    ):
        if group:
            ax.scatter(
                [c.summary.replica_seconds for c in group],
                [c.summary.wait_p95 for c in group],
                s=12,
                color=colour,
                label=label,
            )
    front = result.frontier()
    ax.plot(
        [c.summary.replica_seconds for c in front],
        [c.summary.wait_p95 for c in front],
        color="black",
        linewidth=1,
        label="trade-off curve",
    )
    if result.goal.p95_wait is not None:
        ax.axhline(result.goal.p95_wait, color="tab:red", linestyle="--", label="goal (p95 wait)")
    best = result.best
    if best is not None:
        ax.scatter(
            [best.summary.replica_seconds],
            [best.summary.wait_p95],
            s=80,
            marker="*",
            color="tab:red",
            label="chosen",
            zorder=3,
        )
    ax.set_xlabel("replica-seconds (cost)")
    ax.set_ylabel("p95 wait (s)")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
