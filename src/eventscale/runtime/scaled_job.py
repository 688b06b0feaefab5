"""A ScaledJob at run time: its scalers, its job target, one decision per tick.

:class:`ScaledJob` follows :class:`eventscale.runtime.scaled_object.ScaledObject`: it polls every
trigger concurrently (each call under a timeout), lists the jobs its target started,
and asks the pure strategies in :mod:`eventscale.engine.jobs` how many new jobs to
start. :meth:`ScaledJob.reconcile` then applies the template rollout, starts the jobs
and deletes finished ones beyond the history limits. A failing source or target is
never raised: it is part of the :class:`JobReport` and of the events.

One reconcile, in order:

1. poll the triggers; a trigger that fails is skipped (KEDA's rule) and reported;
2. list the jobs; if that fails nothing else happens this tick;
3. rollout: with ``rollout.strategy: default`` unfinished jobs of an older template
   revision are deleted; with ``gradual`` they run to the end (and still count);
4. decide (``minReplicaCount``, the strategy, ``maxReplicaCount``) and start jobs,
   never letting more than ``maxReplicaCount`` jobs be unfinished at once;
5. delete finished jobs beyond ``successfulJobsHistoryLimit`` /
   ``failedJobsHistoryLimit``, oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from eventscale.engine.jobs import (
    JobDecision,
    JobScalerMetric,
    decide_jobs,
    running_job_percentage,
)
from eventscale.engine.model import TriggerObservation
from eventscale.jobs.base import JobCounts, JobInfo, JobTarget, history_to_delete
from eventscale.runtime._base import PollingBase, ReportBase
from eventscale.runtime._polling import failure_message, trigger_results
from eventscale.runtime.observability import Event, EventBus, EventKind, TriggerResult
from eventscale.scalers import Scaler
from eventscale.spec import ScaledJobSpec, ScalingStrategy

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests

__all__ = ("JobReport", "JobState", "ScaledJob", "decide_job_starts")


@attrs.define
class JobState:
    """What a ScaledJob remembers between ticks (kept by :meth:`Controller.update`)."""

    last_active_time: float | None = None
    jobs_started: int = 0


@attrs.frozen(kw_only=True)
class JobReport(ReportBase):
    """One tick of a ScaledJob: the triggers, the jobs counted, the decision, the actions.

    ``counts`` are the jobs before anything was started this tick. ``started``,
    ``rolled_out`` (deleted for a template change) and ``cleaned`` (deleted beyond the
    history limits) name the jobs acted on; ``target_error`` is set when the target
    could not be listed or an action failed.
    """

    name: str
    namespace: str
    time: float
    counts: JobCounts
    decision: JobDecision
    triggers: tuple[TriggerResult, ...]
    observations: tuple[TriggerObservation, ...] = attrs.field(repr=False)
    jobs: tuple[JobInfo, ...] = attrs.field(default=(), repr=False)
    started: tuple[str, ...] = ()
    rolled_out: tuple[str, ...] = ()
    cleaned: tuple[str, ...] = ()
    target_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the shape ``eventscale evaluate --json`` prints for jobs)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "running": self.counts.running,
            "pending": self.counts.pending,
            "succeeded": self.counts.succeeded,
            "failed": self.counts.failed,
            "queueLength": self.decision.queue_length,
            "maxScale": self.decision.max_scale,
            "jobsToCreate": self.decision.create,
            "active": self.decision.is_active,
            "reason": self.decision.reason,
            "started": list(self.started),
            "rolledOut": list(self.rolled_out),
            "cleaned": list(self.cleaned),
            "targetError": self.target_error,
            "triggers": [t.to_dict() for t in self.triggers],
        }


def decide_job_starts(
    spec: ScaledJobSpec, metrics: Sequence[JobScalerMetric], counts: JobCounts
) -> JobDecision:
    """KEDA's decision, then eventscale's two rules on top.

    Paused (``autoscaling.keda.sh/paused``): start nothing. Otherwise never let more
    than ``maxReplicaCount`` jobs be unfinished at once: KEDA's ``custom`` strategy can
    ask for more, and eventscale holds the cap and says so in the reason.

    :raises ConfigError: ``customScalingRunningJobPercentage`` does not parse.
    """
    decision = decide_jobs(spec, metrics, counts.running, counts.pending)
    room = max(0, spec.max_jobs - counts.running)
    if spec.paused and decision.create:
        return attrs.evolve(decision, create=0, reason=decision.reason + "; paused: creating none")
    if decision.create > room:
        return attrs.evolve(
            decision,
            create=room,
            reason=f"{decision.reason}; capped at {room} so no more than "
            f"maxReplicaCount {spec.max_jobs} jobs are unfinished",
        )
    return decision


def _message(exc: BaseException, timeout: float) -> str:
    return failure_message(exc, timeout, "job target")


class ScaledJob(PollingBase[ScaledJobSpec, JobTarget]):
    """A ScaledJob spec bound to live scalers and a :class:`~eventscale.jobs.JobTarget`.

    :param spec: the ScaledJob.
    :param target: where jobs are started.
    :param scalers: one per trigger, in order; built through the scaler registry from
        ``contexts`` (or the spec's own metadata) when omitted.
    :param clock: wall-clock seconds for report and event times.
    :param poll_timeout: seconds each scaler call and each job listing may take
        (default ``min(10, pollingInterval)``).
    :param action_timeout: seconds starting or deleting a batch of jobs may take
        (default 60: a backend may start many jobs one by one).
    :param events: the event bus (the controller sets its own when this is ``None``).

    It runs in :class:`eventscale.runtime.controller.Controller` like a ScaledObject;
    :meth:`aclose` closes the scalers and the target (jobs keep running).
    """

    _kind = "ScaledJob"

    def __init__(
        self,
        spec: ScaledJobSpec,
        *,
        target: JobTarget,
        scalers: Sequence[Scaler] | None = None,
        contexts: Sequence[Any] | None = None,
        state: JobState | None = None,
        clock: Callable[[], float] = time.time,
        poll_timeout: float | None = None,
        action_timeout: float = 60.0,
        events: EventBus | None = None,
    ) -> None:
        self.action_timeout = action_timeout
        self.state = state if state is not None else JobState()
        super().__init__(
            spec,
            target=target,
            scalers=scalers,
            contexts=contexts,
            clock=clock,
            poll_timeout=poll_timeout,
            events=events,
        )
        if spec.strategy is ScalingStrategy.CUSTOM:
            running_job_percentage(spec)  # a bad percentage is a ConfigError now, not per tick

    @classmethod
    def _spec_from(cls, manifests: Manifests, name: str | None) -> ScaledJobSpec:
        return manifests.scaled_job(name)

    async def _emit(self, event: Event) -> None:
        if self.events is not None:
            await self.events.emit(event)

    async def _list(self) -> tuple[tuple[JobInfo, ...], str | None]:
        try:
            with anyio.fail_after(self.poll_timeout):
                return tuple(await self.target.list_jobs()), None
        except Exception as exc:
            return (), _message(exc, self.poll_timeout)

    # ------------------------------------------------------------------ deciding

    def decide(self, observations: Sequence[TriggerObservation], counts: JobCounts) -> JobDecision:
        """The decision for ``observations`` and ``counts`` (see :func:`decide_job_starts`)."""
        metrics = [
            m for m in (JobScalerMetric.from_observation(o) for o in observations) if m is not None
        ]
        return decide_job_starts(self.spec, metrics, counts)

    async def evaluate(self, *, running: int | None = None, pending: int = 0) -> JobReport:
        """Poll the triggers and decide; start and delete nothing.

        ``running`` (and ``pending``) override listing the target's jobs.
        """
        observations = await self.poll()
        if running is not None:
            counts = JobCounts(running=running, pending=pending)
            return await self._report(observations, (), None, None, counts=counts)
        jobs, target_error = await self._list()
        return await self._report(observations, jobs, None, target_error)

    # ------------------------------------------------------------------ acting

    async def _act(self, what: str, call: Any) -> str | None:
        try:
            with anyio.fail_after(self.action_timeout):
                await call
        except Exception as exc:
            message = f"{what}: {_message(exc, self.action_timeout)}"
            await self._emit(
                Event(
                    kind=EventKind.TARGET_ERROR,
                    time=self.clock(),
                    scaled_object=self.key,
                    error=message,
                )
            )
            return message
        return None

    async def reconcile(
        self,
        *,
        lag: float | None = None,
        guard: Callable[[], Awaitable[bool]] | None = None,
    ) -> JobReport:
        """One tick: poll, count, roll out, start jobs, clean up history.

        ``guard`` is awaited once, right before the first change (a rollout deletion,
        a job start or a history clean-up); when it returns ``False`` the tick changes
        nothing. The controller passes one that re-checks this process still owns the
        ScaledJob's Lease, since polling took time.
        """
        observations = await self.poll()
        jobs, target_error = await self._list()
        if target_error is not None:
            report = await self._report(observations, (), lag, target_error)
            await self._emit(
                Event(
                    kind=EventKind.TARGET_ERROR,
                    time=report.time,
                    scaled_object=self.key,
                    error=target_error,
                )
            )
            return report
        allowed: bool | None = None

        async def may_act() -> bool:
            nonlocal allowed
            if allowed is None:
                allowed = guard is None or await guard()
            return allowed

        rolled: tuple[str, ...] = ()
        if self.spec.rollout.strategy != "gradual" and not self.spec.paused:
            revision = self.target.revision
            rolled = tuple(j.name for j in jobs if not j.phase.finished and j.revision != revision)
            if rolled and not await may_act():
                return await self._report(observations, jobs, lag, None)
            if rolled:
                error = await self._act(
                    "deleting jobs of an older template", self.target.delete_jobs(rolled)
                )
                if error is not None:
                    report = await self._report(observations, jobs, lag, error)
                    return report
                jobs = tuple(j for j in jobs if j.name not in set(rolled))
        report = await self._report(observations, jobs, lag, None)
        report = attrs.evolve(report, rolled_out=rolled)
        if report.decision.is_active:
            self.state.last_active_time = report.time
        started: tuple[str, ...] = ()
        if report.decision.create > 0 and not await may_act():
            return report
        if report.decision.create > 0:
            names: list[str] = []

            async def start() -> None:
                names.extend(await self.target.start_jobs(report.decision.create))

            error = await self._act("starting jobs", start())
            if error is not None:
                return attrs.evolve(report, target_error=error)
            started = tuple(names)
            self.state.jobs_started += len(started)
            await self._emit(
                Event(
                    kind=EventKind.SCALE,
                    time=report.time,
                    scaled_object=self.key,
                    from_replicas=report.counts.running,
                    to_replicas=report.counts.running + len(started),
                    rule="jobs",
                    reason=report.decision.reason,
                )
            )
        report = attrs.evolve(report, started=started)
        cleaned = history_to_delete(
            jobs,
            successful_limit=self.spec.successful_jobs_history_limit,
            failed_limit=self.spec.failed_jobs_history_limit,
        )
        if cleaned and not self.spec.paused and await may_act():
            error = await self._act("deleting finished jobs", self.target.delete_jobs(cleaned))
            if error is not None:
                return attrs.evolve(report, target_error=error)
            report = attrs.evolve(report, cleaned=cleaned)
        return report

    async def _report(
        self,
        observations: tuple[TriggerObservation, ...],
        jobs: tuple[JobInfo, ...],
        lag: float | None,
        target_error: str | None,
        *,
        counts: JobCounts | None = None,
    ) -> JobReport:
        """Count, decide, emit the poll and decision events; act on nothing."""
        if counts is None:
            counts = JobCounts.of(jobs)
        now = self.clock()
        triggers = trigger_results(self.spec.triggers, observations, self.latencies)
        await self._emit(
            Event(
                kind=EventKind.POLL,
                time=now,
                scaled_object=self.key,
                triggers=triggers,
                current_replicas=None if target_error else counts.running,
                lag=lag,
            )
        )
        decision = self.decide(observations, counts)
        if target_error is not None:
            decision = attrs.evolve(decision, create=0, reason=f"no jobs started: {target_error}")
        report = JobReport(
            name=self.spec.name,
            namespace=self.spec.namespace,
            time=now,
            counts=counts,
            decision=decision,
            triggers=triggers,
            observations=observations,
            jobs=jobs,
            target_error=target_error,
        )
        await self._emit(
            Event(
                kind=EventKind.DECISION,
                time=now,
                scaled_object=self.key,
                current_replicas=counts.running,
                desired_replicas=counts.running + decision.create,
                active=decision.is_active,
                rule="jobs",
                reason=decision.reason,
            )
        )
        return report
