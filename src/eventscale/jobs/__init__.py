"""ScaledJob: one job per unit of work, started as work arrives (KEDA's ScaledJob).

* :class:`ScaledJob`: the runtime object (poll, decide, start jobs, clean history);
  it lives in :mod:`eventscale.runtime` and runs in its ``Controller`` beside
  ScaledObjects (importable from here too).
* :class:`JobTarget`: the job-launching protocol, with :class:`JobInfo`,
  :class:`JobPhase` and :class:`JobCounts`.
* Backends: :class:`MemoryJobTarget` (tests), :class:`KubernetesJobTarget`
  (``batch/v1`` Jobs), :class:`DockerJobTarget` (one-shot containers).
* :func:`simulate_jobs`: replay a metric trace with modelled job durations.

docs/scaledjob.md has a worked example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports
from eventscale.jobs.base import (
    JOB_LABEL,
    REVISION_LABEL,
    JobCounts,
    JobInfo,
    JobPhase,
    JobTarget,
    history_to_delete,
    template_revision,
)
from eventscale.jobs.memory import MemoryJob, MemoryJobTarget

if TYPE_CHECKING:
    # ScaledJob is the runtime's (eventscale.runtime); kept here as an old path.
    from eventscale.jobs.docker import DockerJobTarget
    from eventscale.jobs.kubernetes import KubernetesJobTarget
    from eventscale.runtime.scaled_job import JobReport, JobState, ScaledJob
    from eventscale.simulation.scaled_job import JobStep, JobTimeline, simulate_jobs

__all__ = (
    "JOB_LABEL",
    "REVISION_LABEL",
    "DockerJobTarget",
    "JobCounts",
    "JobInfo",
    "JobPhase",
    "JobReport",
    "JobState",
    "JobStep",
    "JobTarget",
    "JobTimeline",
    "KubernetesJobTarget",
    "MemoryJob",
    "MemoryJobTarget",
    "ScaledJob",
    "history_to_delete",
    "simulate_jobs",
    "template_revision",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "DockerJobTarget": "eventscale.jobs.docker",
        "KubernetesJobTarget": "eventscale.jobs.kubernetes",
        "JobReport": "eventscale.runtime.scaled_job",
        "JobState": "eventscale.runtime.scaled_job",
        "ScaledJob": "eventscale.runtime.scaled_job",
        "JobStep": "eventscale.simulation.scaled_job",
        "JobTimeline": "eventscale.simulation.scaled_job",
        "simulate_jobs": "eventscale.simulation.scaled_job",
    },
    __all__,
)
