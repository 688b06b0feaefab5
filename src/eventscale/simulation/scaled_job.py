"""Replay a metric trace through a ScaledJob on a virtual clock, with job durations.

The trace is what the triggers read (the CSV format of
:class:`eventscale.simulation.scaled_object.Trace`: a ``time`` column and one column per trigger). Every
``pollingInterval`` from 0 to the trace's end, the decision of the runtime
(:func:`~eventscale.runtime.scaled_job.decide_job_starts`) is made from the trace's values
and the jobs still running; each job started runs ``job_seconds`` and then finishes.
Jobs are never pending in the model. The trace is *not* drained by the jobs: write
it as the backlog your triggers would see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs

import eventscale.simulation._plotting as _plotting
from eventscale.engine.jobs import JobScalerMetric
from eventscale.errors import ConfigError
from eventscale.jobs.base import JobCounts
from eventscale.metrics import MetricSpec
from eventscale.runtime.scaled_job import decide_job_starts
from eventscale.simulation.scaled_object import trigger_metric_specs
from eventscale.simulation.trace import Trace
from eventscale.spec import ScaledJobSpec

__all__ = (
    "JobStep",
    "JobTimeline",
    "plot_jobs",
    "simulate_jobs",
)


@attrs.frozen(kw_only=True)
class JobStep:
    """One tick: the trigger values, the jobs running before it, what it started."""

    time: float
    metrics: Mapping[str, float | None]
    running: int
    finished: int
    started: int
    queue_length: float
    active: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the shape ``eventscale simulate --json`` prints for jobs)."""
        return {
            "time": self.time,
            "metrics": dict(self.metrics),
            "running": self.running,
            "finished": self.finished,
            "started": self.started,
            "queueLength": self.queue_length,
            "active": self.active,
            "reason": self.reason,
        }


@attrs.frozen
class JobTimeline:
    """The result of :func:`simulate_jobs`."""

    spec: ScaledJobSpec
    steps: tuple[JobStep, ...]
    job_seconds: float

    @property
    def jobs_started(self) -> int:
        """Jobs started over the whole run."""
        return sum(s.started for s in self.steps)

    @property
    def peak_running(self) -> int:
        """The most jobs running at once (right after a tick's starts)."""
        return max((s.running + s.started for s in self.steps), default=0)

    def plot(self, path: str) -> None:
        """Draw trigger values and jobs running and started to ``path`` (eventscale[plot])."""

        plot_jobs(self, path)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "ScaledJob", "jobSeconds": ..., "timeline": [...]}``."""
        return {
            "kind": "ScaledJob",
            "jobSeconds": self.job_seconds,
            "jobsStarted": self.jobs_started,
            "peakRunning": self.peak_running,
            "timeline": [s.to_dict() for s in self.steps],
        }


def _column(spec: ScaledJobSpec, index: int, trace: Trace) -> str:
    trig = spec.triggers[index]
    for candidate in (trig.name, str(index)):
        if candidate and candidate in trace.columns:
            return candidate
    wanted = f"{trig.name!r} or {str(index)!r}" if trig.name else repr(str(index))
    raise ConfigError(
        f"the trace has no column {wanted} for this trigger", path=f"spec.triggers[{index}]"
    )


def simulate_jobs(
    spec: ScaledJobSpec,
    trace: Trace,
    *,
    job_seconds: float,
    metric_specs: Sequence[MetricSpec] | None = None,
) -> JobTimeline:
    """Run ``spec`` over ``trace``; each job runs ``job_seconds``.

    A trigger's metric target comes from its metadata (as for ScaledObjects, see
    :func:`eventscale.simulation.scaled_object.trigger_metric_specs`) unless ``metric_specs`` are given.
    An empty trace cell is a failed read: the trigger is skipped that tick, as at run
    time.

    :raises ConfigError: ``job_seconds`` is not positive, a trigger has no trace
        column, or a trigger's target cannot be found.
    """
    if not (job_seconds > 0 and math.isfinite(job_seconds)):
        raise ConfigError("must be a positive number of seconds", path="--job-seconds")
    # trigger_metric_specs reads only ``spec.triggers``, which a ScaledJob has too.
    specs = (
        tuple(metric_specs) if metric_specs is not None else trigger_metric_specs(cast(Any, spec))
    )
    columns = [_column(spec, i, trace) for i in range(len(spec.triggers))]
    ends: list[float] = []  # when each running job finishes
    steps: list[JobStep] = []
    interval = spec.polling_interval
    row_seen = -2
    shown: Mapping[str, float | None] = {}
    metrics: list[JobScalerMetric] = []
    for n, (row, values) in enumerate(trace.sample(interval)):
        now = n * interval
        finished = sum(1 for end in ends if end <= now)
        ends = [end for end in ends if end > now]
        if row != row_seen:  # shared by every tick the row is in force
            row_seen = row
            shown, metrics = _read(spec, specs, columns, values)
        decision = decide_job_starts(spec, metrics, JobCounts(running=len(ends)))
        steps.append(
            JobStep(
                time=now,
                metrics=shown,
                running=len(ends),
                finished=finished,
                started=decision.create,
                queue_length=decision.queue_length,
                active=decision.is_active,
                reason=decision.reason,
            )
        )
        ends.extend([now + job_seconds] * decision.create)
    return JobTimeline(spec, tuple(steps), float(job_seconds))


def _read(
    spec: ScaledJobSpec,
    specs: Sequence[MetricSpec],
    columns: Sequence[str],
    values: Mapping[str, float | None],
) -> tuple[Mapping[str, float | None], list[JobScalerMetric]]:
    """What the triggers read while ``values`` are in force: shown values, metrics."""
    shown: dict[str, float | None] = {}
    metrics: list[JobScalerMetric] = []
    for i, col in enumerate(columns):
        value = values.get(col)
        shown[spec.triggers[i].name or str(i)] = value
        if value is None:
            continue
        mspec = specs[i]
        metrics.append(
            JobScalerMetric(
                queue_length=value,
                target_average=mspec.target,
                is_active=value > mspec.activation_target,
                name=mspec.name,
            )
        )
    return shown, metrics


def plot_jobs(timeline: JobTimeline, path: str) -> None:
    """Draw a ScaledJob run (trigger values, jobs running and started) to ``path``."""
    plt = _plotting.pyplot("simulate --plot")
    spec = timeline.spec
    steps = timeline.steps
    times = [s.time for s in steps]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    for i, trig in enumerate(spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        top.step(times, ys, where="post", label=f"{label} ({trig.type})")
    _plotting.failed_spans(
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
    _plotting.fit_replicas(bottom, max(running, default=0), spec.effective_max)
    bottom.set_ylabel("jobs")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle(
        f"ScaledJob {spec.name}: {timeline.jobs_started} jobs of {timeline.job_seconds:g}s"
    )
    _plotting.save(plt, fig, path)
