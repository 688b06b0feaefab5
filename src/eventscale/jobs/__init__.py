"""ScaledJob: one job per unit of work, started as work arrives (KEDA's ScaledJob).

* :class:`ScaledJob`: the runtime object (poll, decide, start jobs, clean history);
  it runs in :class:`eventscale.controller.Controller` beside ScaledObjects.
* :class:`JobTarget`: the job-launching protocol, with :class:`JobInfo`,
  :class:`JobPhase` and :class:`JobCounts`.
* Backends: :class:`MemoryJobTarget` (tests), :class:`KubernetesJobTarget`
  (``batch/v1`` Jobs), :class:`DockerJobTarget` (one-shot containers).
* :func:`simulate_jobs`: replay a metric trace with modelled job durations.

docs/scaledjob.md has a worked example.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from eventscale.jobs.runtime import JobReport, JobState, ScaledJob

if TYPE_CHECKING:
    from eventscale.jobs.docker import DockerJobTarget
    from eventscale.jobs.kubernetes import KubernetesJobTarget
    from eventscale.jobs.simulate import JobStep, JobTimeline, simulate_jobs

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

_LAZY = {
    "DockerJobTarget": "eventscale.jobs.docker",
    "KubernetesJobTarget": "eventscale.jobs.kubernetes",
    "JobStep": "eventscale.jobs.simulate",
    "JobTimeline": "eventscale.jobs.simulate",
    "simulate_jobs": "eventscale.jobs.simulate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
