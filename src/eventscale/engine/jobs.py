"""ScaledJob: how many Jobs to create this tick (KEDA's strategies, as pure functions).

A ScaledJob runs one Job per unit of work and never deletes running Jobs to scale in, so
the question each tick is only "how many new Jobs?". The quantities have names here:

* **backlog** (``queue_length``): the work waiting, summed over a scaler's metrics;
* **capacity per job** (``target_average``): how much work one Job takes;
* **max scale**: ``ceil(min(backlog / capacity, max jobs))``, the Jobs the backlog needs;
* **running**: unfinished Jobs (pending ones included, as KEDA counts them);
* **pending**: unfinished Jobs whose pods are not running yet;
* **max jobs** (``spec.effective_max``): ``maxReplicaCount - minReplicaCount``.

Where KEDA has quirks, eventscale resolves them as follows (docs/engine.md lists them):
``max`` and ``min`` consider every *active* scaler, including one whose backlog is 0
(KEDA's ``max`` never picks a 0 and its ``min`` treats 0 as "unset", which makes the
result depend on trigger order); a ``Value`` target is used as the capacity per job like
an ``AverageValue`` one (KEDA reads it as 0 and asks for no Jobs); an unparsable
``customScalingRunningJobPercentage`` is a :class:`~eventscale.errors.ConfigError`
(KEDA silently switches to ``default``); ``accurate`` follows KEDA's code (which
subtracts pending Jobs), not its docs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from eventscale.engine.model import TriggerObservation
from eventscale.errors import ConfigError
from eventscale.spec import ScaledJobSpec, ScalingStrategy

__all__ = (
    "JobDecision",
    "JobMetrics",
    "JobScalerMetric",
    "combine_job_metrics",
    "decide_jobs",
    "jobs_to_delete",
    "running_job_percentage",
    "strategy_max_scale",
)


@attrs.frozen(kw_only=True)
class JobScalerMetric:
    """One scaler's reading for a ScaledJob: its backlog, capacity per job and activity."""

    queue_length: float
    target_average: float
    is_active: bool
    name: str = ""

    @classmethod
    def from_observation(cls, obs: TriggerObservation) -> JobScalerMetric | None:
        """From a trigger observation; ``None`` when the poll failed (the scaler is skipped)."""
        report = obs.report
        if report is None:
            return None
        queue = 0.0
        targets: list[float] = []
        for ms in obs.specs:
            try:
                queue += report.value_of(ms.name)
            except KeyError:
                return None
            targets.append(ms.target)
        if not obs.specs:
            queue = sum(v.value for v in report.values)
        target = sum(targets) / len(targets) if targets else 0.0
        return cls(
            queue_length=queue,
            target_average=target,
            is_active=report.is_active,
            name=obs.name or f"trigger#{obs.trigger_index}",
        )

    def max_value(self, max_jobs: int) -> float:
        """``min(queue_length / target_average, max_jobs)``; 0 when the target is 0."""
        if self.target_average <= 0:
            return 0.0
        return min(self.queue_length / self.target_average, float(max_jobs))


@attrs.frozen(kw_only=True)
class JobMetrics:
    """The scalers combined by ``multipleScalersCalculation``."""

    is_active: bool
    queue_length: float
    max_value: float

    @property
    def scale_to(self) -> int:
        """``ceil(queue_length)``."""
        return math.ceil(self.queue_length)

    @property
    def max_scale(self) -> int:
        """``ceil(max_value)``."""
        return math.ceil(self.max_value)


def combine_job_metrics(spec: ScaledJobSpec, scalers: Sequence[JobScalerMetric]) -> JobMetrics:
    """Combine the active scalers by ``spec.multiple_scalers_calculation``.

    ``max``/``min``: the active scaler with the largest/smallest backlog (first one on
    ties) gives both numbers; ``avg``/``sum``: mean/sum of backlogs and of max values.
    With ``minReplicaCount > 0`` the job is always active. The max value is capped at
    ``spec.effective_max``.
    """
    max_jobs = spec.effective_max
    active = [s for s in scalers if s.is_active]
    queue = 0.0
    value = 0.0
    if active:
        how = spec.multiple_scalers_calculation
        if how in ("max", "min"):
            best = active[0]
            for s in active[1:]:
                if (how == "max" and s.queue_length > best.queue_length) or (
                    how == "min" and s.queue_length < best.queue_length
                ):
                    best = s
            queue, value = best.queue_length, best.max_value(max_jobs)
        else:
            queue = sum(s.queue_length for s in active)
            value = sum(s.max_value(max_jobs) for s in active)
            if how == "avg":
                queue /= len(active)
                value /= len(active)
    is_active = bool(active) or spec.min_replica_count > 0
    return JobMetrics(
        is_active=is_active, queue_length=queue, max_value=min(value, float(max_jobs))
    )


def running_job_percentage(spec: ScaledJobSpec) -> float:
    """``customScalingRunningJobPercentage`` as a float; 1.0 when unset.

    :raises ConfigError: the value does not parse as a number.
    """
    raw = spec.custom_scaling_running_job_percentage
    if raw is None or raw.strip() == "":
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"must be a number, got {raw!r}",
            path="spec.scalingStrategy.customScalingRunningJobPercentage",
        ) from None
    if not math.isfinite(value):
        raise ConfigError(
            f"must be a finite number, got {raw!r}",
            path="spec.scalingStrategy.customScalingRunningJobPercentage",
        )
    return value


def strategy_max_scale(
    strategy: ScalingStrategy,
    max_scale: int,
    running: int,
    pending: int,
    max_jobs: int,
    scale_to: int,
    *,
    deduction: int = 0,
    percentage: float = 1.0,
) -> tuple[int, int]:
    """``(effective max scale, scale to)`` for one strategy (not yet floored at 0).

    * ``default``: ``max_scale - running``.
    * ``custom``: ``min(max_scale - deduction - trunc(running * percentage), max_jobs)``.
    * ``accurate``: ``max_jobs - running`` if ``max_scale + running - pending > max_jobs``,
      else ``max_scale - pending``.
    * ``eager``: ``min(max_jobs - running - pending, max_scale)``, and scale to ``max_jobs``.
    """
    if strategy is ScalingStrategy.CUSTOM:
        return min(max_scale - deduction - math.trunc(running * percentage), max_jobs), scale_to
    if strategy is ScalingStrategy.ACCURATE:
        if max_scale + running - pending > max_jobs:
            return max_jobs - running, scale_to
        return max_scale - pending, scale_to
    if strategy is ScalingStrategy.EAGER:
        return min(max_jobs - running - pending, max_scale), max_jobs
    return max_scale - running, scale_to


@attrs.frozen(kw_only=True)
class JobDecision:
    """How many Jobs to create now, and why."""

    create: int
    is_active: bool
    effective_max_scale: int
    scale_to: int
    queue_length: float
    max_scale: int
    reason: str


def decide_jobs(
    spec: ScaledJobSpec,
    scalers: Sequence[JobScalerMetric],
    running: int,
    pending: int = 0,
) -> JobDecision:
    """Jobs to create this tick.

    ``running``: unfinished Jobs of this ScaledJob (pending included); ``pending``:
    those whose pods are not running yet. Below ``minReplicaCount`` running Jobs, create
    the difference; otherwise apply the strategy to ``running - min`` and create
    ``min(scale_to, effective)`` Jobs when active.

    :raises ConfigError: ``customScalingRunningJobPercentage`` does not parse.
    """
    metrics = combine_job_metrics(spec, scalers)
    minimum = spec.effective_min
    max_jobs = spec.effective_max
    if running < minimum:
        create = minimum - running
        return JobDecision(
            create=create,
            is_active=metrics.is_active,
            effective_max_scale=create,
            scale_to=create,
            queue_length=metrics.queue_length,
            max_scale=metrics.max_scale,
            reason=f"{running} running Jobs, below minReplicaCount {minimum}: creating {create}",
        )
    percentage = 1.0
    if spec.strategy is ScalingStrategy.CUSTOM:
        percentage = running_job_percentage(spec)
    effective, scale_to = strategy_max_scale(
        spec.strategy,
        metrics.max_scale,
        running - minimum,
        pending,
        max_jobs,
        metrics.scale_to,
        deduction=spec.custom_scaling_queue_length_deduction or 0,
        percentage=percentage,
    )
    effective = max(effective, 0)
    create = min(scale_to, effective) if metrics.is_active and effective > 0 else 0
    if not metrics.is_active:
        reason = "no active trigger: creating no Jobs"
    else:
        reason = (
            f"backlog {metrics.queue_length:g} needs {metrics.max_scale} Jobs; "
            f"{spec.strategy.value} strategy with {running} running and {pending} pending "
            f"allows {effective}: creating {create}"
        )
    return JobDecision(
        create=create,
        is_active=metrics.is_active,
        effective_max_scale=effective,
        scale_to=scale_to,
        queue_length=metrics.queue_length,
        max_scale=metrics.max_scale,
        reason=reason,
    )


def jobs_to_delete(finished: Sequence[tuple[str, float]], limit: int) -> tuple[str, ...]:
    """Names of finished Jobs beyond the history ``limit``, oldest first.

    ``finished`` holds ``(name, completion time)`` for the successful (or the failed)
    Jobs; the newest ``limit`` are kept.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    ordered = sorted(finished, key=lambda item: (item[1], item[0]))
    excess = len(ordered) - limit
    return tuple(name for name, _ in ordered[:excess]) if excess > 0 else ()
