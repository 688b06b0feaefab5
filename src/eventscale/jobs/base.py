"""The job-launching target protocol and the values it speaks in.

A :class:`~eventscale.targets.Target` resizes a long-running workload; a
:class:`JobTarget` instead *starts* one-shot jobs and reports what became of them.
It has three operations: list every job it started for one ScaledJob (running,
pending and finished, each with its outcome), start ``k`` new jobs from its
template, and delete jobs by name. Counting and history clean-up are computed from
the listing by the pure helpers here (:meth:`JobCounts.of`, :func:`history_to_delete`),
so every backend counts the same way.

Every job a target starts carries the target's :attr:`JobTarget.revision` (a hash of
its template), so the runtime can tell jobs of an older template apart for
``rollout.strategy``.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from eventscale.engine.jobs import jobs_to_delete

__all__ = (
    "JOB_LABEL",
    "REVISION_LABEL",
    "JobCounts",
    "JobInfo",
    "JobPhase",
    "JobTarget",
    "history_to_delete",
    "template_revision",
)

JOB_LABEL: Final = "scaledjob.keda.sh/name"
"""The label every job carries: the ScaledJob's name (KEDA's own label), so a new
process recounts the jobs an earlier one started."""

REVISION_LABEL: Final = "eventscale.io/template-revision"
"""The label with the template revision a job was started from."""


class JobPhase(enum.Enum):
    """Where a job is in its life."""

    PENDING = "pending"
    """Started but not running yet (image pull, scheduling, a created container)."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """``True`` for :attr:`SUCCEEDED` and :attr:`FAILED`."""
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED)


@attrs.frozen(kw_only=True)
class JobInfo:
    """One job as its target sees it.

    :param name: unique among the target's jobs; what :meth:`JobTarget.delete_jobs` takes.
    :param phase: pending, running, succeeded or failed.
    :param created: when the job was started (seconds since the epoch, or the
        target's clock).
    :param finished: when it finished (``None`` while unfinished).
    :param exit_code: the process exit code where the backend has one (Docker, memory).
    :param revision: the template revision it was started from.
    :param message: why it failed, when the backend says.
    """

    name: str
    phase: JobPhase
    created: float
    finished: float | None = None
    exit_code: int | None = None
    revision: str = ""
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "name": self.name,
            "phase": self.phase.value,
            "created": self.created,
            "finished": self.finished,
            "exitCode": self.exit_code,
            "revision": self.revision,
            "message": self.message,
        }


@attrs.frozen(kw_only=True)
class JobCounts:
    """Jobs by phase, as the strategies count them.

    ``running`` is every *unfinished* job (pending ones included, as KEDA counts them);
    ``pending`` those of them that are not running yet.
    """

    running: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0

    @classmethod
    def of(cls, jobs: Sequence[JobInfo]) -> JobCounts:
        """Count ``jobs``."""
        phases = [j.phase for j in jobs]
        return cls(
            running=sum(1 for p in phases if not p.finished),
            pending=phases.count(JobPhase.PENDING),
            succeeded=phases.count(JobPhase.SUCCEEDED),
            failed=phases.count(JobPhase.FAILED),
        )

    def to_dict(self) -> dict[str, int]:
        """JSON-ready mapping."""
        return {
            "running": self.running,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
        }


def history_to_delete(
    jobs: Sequence[JobInfo], *, successful_limit: int, failed_limit: int
) -> tuple[str, ...]:
    """Names of finished jobs beyond the history limits, oldest first.

    The newest ``successful_limit`` succeeded and ``failed_limit`` failed jobs are
    kept (by finish time, then creation time); unfinished jobs are never listed.
    """
    done = [j for j in jobs if j.phase is JobPhase.SUCCEEDED]
    failed = [j for j in jobs if j.phase is JobPhase.FAILED]

    def stamp(j: JobInfo) -> float:
        return j.finished if j.finished is not None else j.created

    return jobs_to_delete([(j.name, stamp(j)) for j in done], successful_limit) + jobs_to_delete(
        [(j.name, stamp(j)) for j in failed], failed_limit
    )


def template_revision(template: Mapping[str, Any] | Any) -> str:
    """A short, stable hash of a job template (JSON with sorted keys)."""
    raw = json.dumps(template, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:10]


@runtime_checkable
class JobTarget(Protocol):
    """Starts one-shot jobs for one ScaledJob and reports them.

    :attr:`revision` identifies the template new jobs are started from.
    :meth:`list_jobs` returns every job of this ScaledJob the backend still knows,
    found by label (not by memory), so a new process recounts what an old one
    started. :meth:`start_jobs` starts ``count`` jobs and returns their names once the
    backend accepted them (not once they run). :meth:`delete_jobs` removes jobs (a
    running one is stopped); a name that is already gone is not an error.

    Every method raises :class:`~eventscale.errors.TargetError` when the backend
    cannot be reached or refuses.
    """

    @property
    def revision(self) -> str:
        """The revision of the template new jobs are started from."""
        ...

    async def list_jobs(self) -> Sequence[JobInfo]:
        """Every job of this ScaledJob, unfinished and finished."""
        ...

    async def start_jobs(self, count: int) -> Sequence[str]:
        """Start ``count`` new jobs; return their names."""
        ...

    async def delete_jobs(self, names: Sequence[str]) -> None:
        """Delete the named jobs (stopping those still running)."""
        ...

    async def aclose(self) -> None:
        """Release every resource the target holds (jobs keep running)."""
        ...
