"""Plots of simulations and of a tuning search's trade-off (needs eventscale[plot]).

:func:`plot_timeline` draws an open-loop run (a replayed trace): each trigger's value
with its activation threshold and its target (for an ``AverageValue`` metric, the
target times the replicas, the total the replicas are sized for), the
``scalingModifiers`` composite against its target, and the replicas on an axis fitted
to them. :func:`plot_jobs` draws a ScaledJob's run: trigger values and jobs running
and started.
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
    from eventscale.simulation.closed_loop_jobs import JobsClosedLoopResult
    from eventscale.simulation.scaled_job import JobTimeline
    from eventscale.simulation.scaled_object import Timeline
    from eventscale.simulation.tuning import TuneResult

__all__ = (
    "plot_closed_loop",
    "plot_jobs",
    "plot_jobs_closed_loop",
    "plot_timeline",
    "plot_tradeoff",
)

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


def _failed_spans(ax: Any, times: Sequence[float], failed: Sequence[bool], width: float) -> None:
    """Shade the ticks whose read failed (a failed read is not a 0)."""
    label = "read failed"
    for t, bad in zip(times, failed, strict=True):
        if bad:
            ax.axvspan(t, t + width, color="tab:red", alpha=0.15, linewidth=0, label=label)
            label = "_nolegend_"


def _save(plt: Any, fig: Any, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _age_axis(ax: Any, times: Sequence[float], ages: Sequence[float]) -> None:
    """The oldest waiting item's age on a right-hand axis of ``ax``."""
    age = ax.twinx()
    age.step(
        times,
        ages,
        where="post",
        color="tab:brown",
        linewidth=0.8,
        label="oldest age (s, right axis)",
    )
    age.set_ylabel("oldest age (s)")
    age.legend(loc="upper left", fontsize="small")


def _fit_replicas(ax: Any, peak: int, maximum: int) -> None:
    """A replica axis fitted to the counts drawn; the max line only if it is near them."""
    top = max(1, peak) * 1.15 + 0.5
    if maximum <= top * 1.5:
        ax.axhline(maximum, color="grey", linestyle=":", linewidth=0.8, label="max")
        top = max(top, maximum * 1.05 + 0.5)
    ax.set_ylim(0, top)


def _cooldowns(
    steps: Sequence[ClosedLoopStep], cooldown: float
) -> Iterator[tuple[str, float, float]]:
    """The cooldown windows: from the last active poll until scale-to-zero is allowed.

    Drawn while replicas are up and the triggers inactive (the window the engine waits
    out before scaling to zero; docs/engine.md).
    """
    last_active: float | None = None
    for step in steps:
        if step.active:
            last_active = step.time
        elif last_active is not None and step.desired_replicas > 0:
            yield "cooldown", last_active, min(last_active + cooldown, step.time + 1e-9)
    return


def _merged(spans: Iterator[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Overlapping spans of one kind joined."""
    out: list[tuple[str, float, float]] = []
    for kind, start, end in spans:
        if out and out[-1][0] == kind and start <= out[-1][2]:
            out[-1] = (kind, out[-1][1], max(out[-1][2], end))
        else:
            out.append((kind, start, end))
    return out


def plot_timeline(timeline: Timeline, path: str) -> None:
    """Draw an open-loop ScaledObject run to the image file ``path``."""
    from eventscale.engine import FormulaError, compile_formula
    from eventscale.metrics import MetricType

    plt = _pyplot("simulate --plot")
    spec = timeline.spec
    steps = timeline.steps
    times = [s.time for s in steps]
    mods = spec.advanced.scaling_modifiers
    rows = 3 if mods is not None else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(10, 3 * rows))
    top, bottom = axes[0], axes[-1]
    for i, trig in enumerate(spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        (line,) = top.step(times, ys, where="post", label=f"{label} ({trig.type})")
        mspec = timeline.metric_specs[i]
        colour = line.get_color()
        if mspec.metric_type is MetricType.AVERAGE_VALUE and mods is None:
            # the HPA sizes replicas so that the total is at most target x replicas
            top.step(
                times,
                [mspec.target * max(1, s.desired_replicas) for s in steps],
                where="post",
                color=colour,
                linestyle="--",
                linewidth=0.8,
                label=f"{label} target {mspec.target:g} x replicas",
            )
        elif mods is None:
            top.axhline(
                mspec.target,
                color=colour,
                linestyle="--",
                linewidth=0.8,
                label=f"{label} target {mspec.target:g}",
            )
        if mspec.activation_target > 0:
            top.axhline(
                mspec.activation_target,
                color=colour,
                linestyle=":",
                linewidth=0.8,
                label=f"{label} activation {mspec.activation_target:g}",
            )
    interval = spec.polling_interval
    _failed_spans(top, times, [any(v is None for v in s.metrics.values()) for s in steps], interval)
    top.set_ylabel("metric")
    top.legend(loc="upper right", fontsize="small")
    if mods is not None:
        middle = axes[1]
        names = [t.name for t in spec.triggers if t.name]
        formula = compile_formula(mods.formula, names)
        values = []
        for s in steps:
            try:
                value = formula.evaluate({n: s.metrics.get(n) for n in names})
            except FormulaError:
                value = None
            values.append(math.nan if value is None else value)
        middle.step(
            times, values, where="post", color="tab:purple", label=f"composite: {mods.formula}"
        )
        if mods.metric_type is MetricType.AVERAGE_VALUE:
            middle.step(
                times,
                [mods.target * max(1, s.desired_replicas) for s in steps],
                where="post",
                color="tab:purple",
                linestyle="--",
                linewidth=0.8,
                label=f"target {mods.target:g} x replicas",
            )
        else:
            middle.axhline(
                mods.target,
                color="tab:purple",
                linestyle="--",
                linewidth=0.8,
                label=f"target {mods.target:g}",
            )
        if mods.activation_target > 0:
            middle.axhline(
                mods.activation_target,
                color="tab:purple",
                linestyle=":",
                linewidth=0.8,
                label=f"activation {mods.activation_target:g}",
            )
        middle.set_ylabel("scalingModifiers")
        middle.legend(loc="upper right", fontsize="small")
    bottom.step(times, [s.desired_replicas for s in steps], where="post", label="desired")
    bottom.step(times, [s.replicas for s in steps], where="post", label="ready", linestyle="--")
    _fit_replicas(
        bottom, max((s.desired_replicas for s in steps), default=0), spec.max_replica_count
    )
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"ScaledObject {spec.name}")
    _save(plt, fig, path)


def plot_jobs(timeline: JobTimeline, path: str) -> None:
    """Draw a ScaledJob run (trigger values, jobs running and started) to ``path``."""
    plt = _pyplot("simulate --plot")
    spec = timeline.spec
    steps = timeline.steps
    times = [s.time for s in steps]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    for i, trig in enumerate(spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        top.step(times, ys, where="post", label=f"{label} ({trig.type})")
    _failed_spans(
        top,
        times,
        [any(v is None for v in s.metrics.values()) for s in steps],
        spec.polling_interval,
    )
    top.set_ylabel("metric")
    top.legend(loc="upper right", fontsize="small")
    running = [s.running + s.started for s in steps]
    bottom.step(times, running, where="post", label="running")
    bottom.bar(
        times,
        [s.started for s in steps],
        width=spec.polling_interval * 0.8,
        align="edge",
        alpha=0.4,
        color="tab:green",
        label="started",
    )
    _fit_replicas(bottom, max(running, default=0), spec.effective_max)
    bottom.set_ylabel("jobs")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle(
        f"ScaledJob {spec.name}: {timeline.jobs_started} jobs of {timeline.job_seconds:g}s"
    )
    _save(plt, fig, path)


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
    _age_axis(backlog, poll_times, [s.oldest_age for s in steps])
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
    windows = [
        *_spans(steps, workload.duration),
        *_merged(_cooldowns(steps, result.spec.cooldown_period)),
    ]
    for rule, start, end in windows:
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
    _save(plt, fig, path)


def plot_jobs_closed_loop(result: JobsClosedLoopResult, path: str) -> None:
    """Draw a ScaledJob's closed-loop run: backlog and age, jobs, trigger reads."""
    plt = _pyplot("simulate --plot")
    steps = result.steps
    times = [s.time for s in steps]
    fig, (backlog, jobs, metric) = plt.subplots(3, 1, sharex=True, figsize=(11, 7))
    backlog.step(
        times, [s.backlog for s in steps], where="post", color="tab:purple", label="waiting"
    )
    backlog.set_ylabel("backlog")
    backlog.legend(loc="upper right", fontsize="small")
    _age_axis(backlog, times, [s.oldest_age for s in steps])
    unfinished = [s.running + s.started for s in steps]
    jobs.step(times, unfinished, where="post", label="unfinished")
    interval = result.spec.polling_interval
    jobs.bar(
        times,
        [s.started for s in steps],
        width=interval * 0.8,
        align="edge",
        alpha=0.4,
        color="tab:green",
        label="started",
    )
    _fit_replicas(jobs, max(unfinished, default=0), result.spec.effective_max)
    jobs.set_ylabel("jobs")
    jobs.legend(loc="upper right", fontsize="small")
    for i, trig in enumerate(result.spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        metric.step(times, ys, where="post", label=f"{label} ({result.kinds[i].value})")
    _failed_spans(
        metric, times, [any(v is None for v in s.metrics.values()) for s in steps], interval
    )
    metric.set_ylabel("trigger reads")
    metric.set_xlabel("seconds")
    metric.legend(loc="upper right", fontsize="small")
    s = result.summary
    fig.suptitle(
        f"ScaledJob {result.spec.name}: p95 wait {s.wait_p95:g}s, max {s.wait_max:g}s, "
        f"{s.scale_actions} jobs, {s.replica_seconds:.0f} job-seconds"
    )
    _save(plt, fig, path)


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
    _save(plt, fig, path)
