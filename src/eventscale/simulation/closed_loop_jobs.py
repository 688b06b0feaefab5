"""Closed-loop simulation of a ScaledJob: jobs that take items and run for their duration.

:func:`simulate_jobs_closed_loop` is the ScaledJob form of
:func:`~eventscale.simulation.closed_loop.simulate_closed_loop`. Every
``pollingInterval`` the triggers read the queue, the runtime's decision
(:func:`~eventscale.runtime.scaled_job.decide_job_starts`, the strategies of KEDA)
says how many jobs to start, and each job, ``startup`` seconds later, takes
``items_per_job`` items from the front of the queue (fewer if fewer wait) and runs
``job_seconds``. A job counts as unfinished (``running``, and ``pending`` while it
starts) from its creation to its end, as KEDA counts them. See docs/simulation.md.

The :class:`~eventscale.simulation.closed_loop.Summary` reads for jobs: replica-seconds
are job-seconds (creation to end), ready replica-seconds the seconds jobs ran, scale
actions the jobs started, peak replicas the most unfinished jobs at once, time at zero
the seconds with none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import attrs

import eventscale.simulation._plotting as _plotting
from eventscale.engine.jobs import JobScalerMetric
from eventscale.errors import ConfigError
from eventscale.jobs.base import JobCounts
from eventscale.metrics import MetricSpec
from eventscale.runtime.scaled_job import decide_job_starts
from eventscale.simulation.closed_loop import Summary, check_windows, metric_kinds
from eventscale.simulation.queue_model import MetricKind, QueueModel
from eventscale.simulation.scaled_object import MAX_TICKS, trigger_metric_specs
from eventscale.simulation.workload import Workload
from eventscale.spec import ScaledJobSpec

__all__ = (
    "JobsClosedLoopResult",
    "JobsClosedLoopStep",
    "plot_jobs_closed_loop",
    "simulate_jobs_closed_loop",
)


@attrs.frozen(kw_only=True)
class JobsClosedLoopStep:
    """One poll: the queue, what the triggers read, the jobs unfinished and started."""

    time: float
    backlog: float
    oldest_age: float
    metrics: dict[str, float | None]
    running: int
    started: int
    active: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "time": self.time,
            "backlog": self.backlog,
            "oldestAge": self.oldest_age,
            "metrics": dict(self.metrics),
            "running": self.running,
            "started": self.started,
            "active": self.active,
            "reason": self.reason,
        }


@attrs.frozen
class JobsClosedLoopResult:
    """The result of :func:`simulate_jobs_closed_loop`."""

    spec: ScaledJobSpec
    summary: Summary
    steps: tuple[JobsClosedLoopStep, ...]
    kinds: tuple[MetricKind, ...]

    def plot(self, path: str) -> None:
        """Draw backlog, jobs and trigger reads to ``path`` (needs eventscale[plot])."""

        plot_jobs_closed_loop(self, path)

    def to_dict(self, *, timeline: bool = True) -> dict[str, Any]:
        """``{"kind": "ScaledJob", "summary": {...}, "timeline": [...]}``."""
        out: dict[str, Any] = {"kind": "ScaledJob", "summary": self.summary.to_dict()}
        if timeline:
            out["timeline"] = [s.to_dict() for s in self.steps]
        return out


def simulate_jobs_closed_loop(
    spec: ScaledJobSpec,
    workload: Workload,
    *,
    job_seconds: float,
    items_per_job: float = 1.0,
    startup: float = 0.0,
    failures: Sequence[tuple[float, float]] = (),
    kinds: Sequence[MetricKind | str] | None = None,
    metric_specs: Sequence[MetricSpec] | None = None,
    keep_timeline: bool = True,
) -> JobsClosedLoopResult:
    """Run ``spec`` against ``workload``: jobs take items and run ``job_seconds``.

    :raises ConfigError: a bad argument, a trigger without a kind, too many polls.
    """
    for name, value, low in (
        ("job_seconds", job_seconds, 0.0),
        ("items_per_job", items_per_job, 0.0),
    ):
        if not (math.isfinite(value) and value > low):
            raise ConfigError("must be a finite number > 0", path=name)
    if not (math.isfinite(startup) and startup >= 0):
        raise ConfigError("must be a finite number >= 0", path="startup")
    windows = check_windows(failures)
    specs = (
        tuple(metric_specs) if metric_specs is not None else trigger_metric_specs(cast(Any, spec))
    )
    kinds_read = metric_kinds(spec, kinds)
    interval = spec.polling_interval
    res = workload.resolution
    if res > interval + 1e-9:
        raise ConfigError(
            "the workload's resolution must not exceed the pollingInterval",
            path="workload.resolution",
        )
    n_bins = len(workload.rates)
    polls = math.ceil(workload.duration / interval - 1e-9)
    if polls > MAX_TICKS:
        raise ConfigError(
            f"{polls} polls, more than the limit of {MAX_TICKS}", path="spec.pollingInterval"
        )
    model = QueueModel(workload.arrivals(), res)
    names = [t.name or str(i) for i, t in enumerate(spec.triggers)]
    # unfinished jobs: [bin it takes its items, bin it ends, items held]
    jobs: list[list[float]] = []
    steps: list[JobsClosedLoopStep] = []
    start_bins = math.ceil(startup / res - 1e-9)
    run_bins = max(1, math.ceil(job_seconds / res - 1e-9))
    job_seconds_total = run_seconds = time_at_zero = 0.0
    started_total = peak = 0
    for poll in range(polls):
        i = min(n_bins - 1, math.ceil(poll * interval / res - 1e-9))
        stop = min(n_bins, math.ceil((poll + 1) * interval / res - 1e-9))
        now = poll * interval
        jobs = [j for j in jobs if j[1] > i]
        model.busy = sum(j[2] for j in jobs)
        failing = any(a <= now < b for a, b in windows)
        shown: dict[str, float | None] = {}
        metrics: list[JobScalerMetric] = []
        for t, kind in enumerate(kinds_read):
            if failing:
                shown[names[t]] = None
                continue  # a failed trigger is left out, as at run time
            value = model.read(kind, i)
            shown[names[t]] = value
            mspec = specs[t]
            metrics.append(
                JobScalerMetric(
                    queue_length=value,
                    target_average=mspec.target,
                    is_active=value > mspec.activation_target,
                    name=mspec.name,
                )
            )
        pending = sum(1 for j in jobs if j[0] > i)
        decision = decide_job_starts(spec, metrics, JobCounts(running=len(jobs), pending=pending))
        running_before = len(jobs)
        for _ in range(decision.create):
            jobs.append([float(i + start_bins), float(i + start_bins + run_bins), 0.0])
        started_total += decision.create
        peak = max(peak, len(jobs))
        if keep_timeline:
            steps.append(
                JobsClosedLoopStep(
                    time=now,
                    backlog=model.waiting,
                    oldest_age=model.oldest_age(i),
                    metrics=shown,
                    running=running_before,
                    started=decision.create,
                    active=decision.is_active,
                    reason=decision.reason,
                )
            )
        # the bins to the next poll: arrivals, and jobs taking their items when they start
        for b in range(i, stop):
            for job in jobs:
                if job[0] == b:
                    job[2] = model.take(b, items_per_job)
            model.advance(b, b + 1, 0, 0.0)
            alive = sum(1 for j in jobs if j[1] > b)
            running = sum(1 for j in jobs if j[0] <= b < j[1])
            job_seconds_total += alive * res
            run_seconds += running * res
            if alive == 0:
                time_at_zero += res
    summary = Summary.of_run(
        workload,
        model,
        replica_seconds=job_seconds_total,
        ready_replica_seconds=run_seconds,
        scale_actions=started_total,
        time_at_zero=time_at_zero,
        peak_replicas=peak,
    )
    return JobsClosedLoopResult(spec, summary, tuple(steps), kinds_read)


def plot_jobs_closed_loop(result: JobsClosedLoopResult, path: str) -> None:
    """Draw a ScaledJob's closed-loop run: backlog and age, jobs, trigger reads."""
    plt = _plotting.pyplot("simulate --plot")
    steps = result.steps
    times = [s.time for s in steps]
    fig, (backlog, jobs, metric) = plt.subplots(3, 1, sharex=True, figsize=(11, 7))
    backlog.step(
        times, [s.backlog for s in steps], where="post", color="tab:purple", label="waiting"
    )
    backlog.set_ylabel("backlog")
    backlog.legend(loc="upper right", fontsize="small")
    _plotting.age_axis(backlog, times, [s.oldest_age for s in steps])
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
    _plotting.fit_replicas(jobs, max(unfinished, default=0), result.spec.effective_max)
    jobs.set_ylabel("jobs")
    jobs.legend(loc="upper right", fontsize="small")
    for i, trig in enumerate(result.spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        metric.step(times, ys, where="post", label=f"{label} ({result.kinds[i].value})")
    _plotting.failed_spans(
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
    _plotting.save(plt, fig, path)
