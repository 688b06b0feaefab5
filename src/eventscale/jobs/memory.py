"""An in-memory job target with scripted durations and failures, for tests.

:class:`MemoryJobTarget` keeps every job it ever started. Each job's life is scripted
by its start index (0, 1, 2, ...): ``pending_for`` seconds pending, then ``duration``
seconds running, then it exits with the code ``exit_code`` gives (0 succeeds). Time is
an injectable clock (:class:`eventscale.testing.ManualClock` fits), so a test moves
time and the jobs finish. ``on_start`` runs for each job when it is started: a test
can make the job take its work item from a real queue there.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from eventscale._faults import InjectedFailure
from eventscale.errors import TargetError
from eventscale.jobs.base import JobInfo, JobPhase

__all__ = ("MemoryJob", "MemoryJobTarget")

Script = float | Callable[[int], float]


@attrs.define
class MemoryJob:
    """One job of a :class:`MemoryJobTarget` (mutable: the target updates it).

    ``index`` is its start order; ``payload`` is what ``on_start`` returned;
    ``deleted_at`` is set when it was deleted (it then leaves :meth:`list_jobs`).
    """

    index: int
    name: str
    revision: str
    created: float
    runs_at: float
    ends_at: float
    exit_code: int
    payload: Any = None
    deleted_at: float | None = None

    def phase(self, now: float) -> JobPhase:
        """The phase at ``now``."""
        if now >= self.ends_at:
            return JobPhase.SUCCEEDED if self.exit_code == 0 else JobPhase.FAILED
        if now >= self.runs_at:
            return JobPhase.RUNNING
        return JobPhase.PENDING

    def info(self, now: float) -> JobInfo:
        """The job as :meth:`MemoryJobTarget.list_jobs` reports it at ``now``."""
        phase = self.phase(now)
        return JobInfo(
            name=self.name,
            phase=phase,
            created=self.created,
            finished=self.ends_at if phase.finished else None,
            exit_code=self.exit_code if phase.finished else None,
            revision=self.revision,
        )


def _script(value: Script, what: str) -> Callable[[int], float]:
    if callable(value):
        return value
    number = float(value)
    if number < 0 or math.isnan(number):
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return lambda _index: number


class MemoryJobTarget:
    """A :class:`~eventscale.jobs.JobTarget` that keeps its jobs in memory.

    :param clock: the time source (``time.monotonic`` by default).
    :param duration: seconds each job runs (a number, or a function of the start
        index); ``math.inf`` runs until :meth:`finish`.
    :param pending_for: seconds each job stays pending before it runs.
    :param exit_code: each job's exit code (a number, or a function of the index);
        non-zero means the job failed.
    :param revision: the template revision new jobs get (change it to model a new
        template).
    :param on_start: called with each new :class:`MemoryJob` when it is started (a
        coroutine function is awaited); its return value is kept as the job's
        ``payload``. An exception there fails :meth:`start_jobs` and the job is not kept.
    :param name: prefix of job names (``<name>-<index>``).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        duration: Script = 0.0,
        pending_for: Script = 0.0,
        exit_code: int | Callable[[int], int] = 0,
        revision: str = "r1",
        on_start: Callable[[MemoryJob], Awaitable[Any] | Any] | None = None,
        name: str = "job",
    ) -> None:
        self.clock = clock
        self._duration = _script(duration, "duration")
        self._pending_for = _script(pending_for, "pending_for")
        if callable(exit_code):
            self._exit_code = exit_code
        else:
            code = int(exit_code)
            self._exit_code = lambda _index: code
        self._revision = revision
        self.on_start = on_start
        self.name = name
        self.jobs: list[MemoryJob] = []
        self._failure = InjectedFailure()
        self.closed = False

    # -- the JobTarget protocol --------------------------------------------------------

    @property
    def revision(self) -> str:
        """The revision new jobs get."""
        return self._revision

    @revision.setter
    def revision(self, value: str) -> None:
        self._revision = value

    async def list_jobs(self) -> Sequence[JobInfo]:
        """Every job not deleted, as it stands now."""
        self._maybe_fail()
        now = self.clock()
        return tuple(j.info(now) for j in self.jobs if j.deleted_at is None)

    async def start_jobs(self, count: int) -> Sequence[str]:
        """Start ``count`` jobs (each runs ``on_start``)."""
        if type(count) is not int or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        self._maybe_fail()
        names = []
        for _ in range(count):
            index = len(self.jobs)
            now = self.clock()
            runs_at = now + self._pending_for(index)
            job = MemoryJob(
                index=index,
                name=f"{self.name}-{index}",
                revision=self._revision,
                created=now,
                runs_at=runs_at,
                ends_at=runs_at + self._duration(index),
                exit_code=self._exit_code(index),
            )
            if self.on_start is not None:
                result = self.on_start(job)
                job.payload = await result if inspect.isawaitable(result) else result
            self.jobs.append(job)
            names.append(job.name)
        return tuple(names)

    async def delete_jobs(self, names: Sequence[str]) -> None:
        """Delete the named jobs; a running one stops at once (it counts as ended)."""
        self._maybe_fail()
        wanted = set(names)
        now = self.clock()
        for job in self.jobs:
            if job.name in wanted and job.deleted_at is None:
                job.deleted_at = now
                if now < job.ends_at:  # killed: it ends now, unsuccessfully
                    job.ends_at = now
                    job.runs_at = min(job.runs_at, now)
                    job.exit_code = 137

    async def aclose(self) -> None:
        """Mark the target closed."""
        self.closed = True

    # -- control and inspection -------------------------------------------------------

    def job(self, name: str) -> MemoryJob:
        """The job called ``name`` (deleted ones included)."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def finish(self, name: str, exit_code: int = 0) -> None:
        """End job ``name`` now with ``exit_code``."""
        job = self.job(name)
        now = self.clock()
        if now < job.ends_at:
            job.ends_at = now
            job.runs_at = min(job.runs_at, now)
            job.exit_code = exit_code

    def unfinished_at(self, when: float) -> int:
        """How many jobs were started and not yet ended at ``when``."""
        return sum(1 for j in self.jobs if j.created <= when < j.ends_at)

    def max_concurrent(self) -> int:
        """The most jobs ever unfinished at the same time (over the whole history)."""
        return max((self.unfinished_at(j.created) for j in self.jobs), default=0)

    # -- fault injection ---------------------------------------------------------------

    def fail(self, error: TargetError | None = None, *, times: int | None = None) -> None:
        """Make the next calls raise ``error`` (default a 503 :class:`TargetError`)."""
        self._failure.arm(
            error or TargetError("injected failure", target=self.name, status=503), times
        )

    def recover(self) -> None:
        """Stop failing."""
        self._failure.clear()

    def _maybe_fail(self) -> None:
        self._failure.check()

    def __repr__(self) -> str:
        return f"MemoryJobTarget(name={self.name!r}, jobs={len(self.jobs)})"
