"""Replay metric traces through the engine on a virtual clock (ScaledObjects and ScaledJobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy

if TYPE_CHECKING:
    from eventscale.simulation.scaled_job import (
        JobStep,
        JobTimeline,
        simulate_jobs,
    )
    from eventscale.simulation.scaled_object import (
        Step,
        Timeline,
        Trace,
        simulate,
        trigger_metric_specs,
    )

__all__ = (
    "JobStep",
    "JobTimeline",
    "Step",
    "Timeline",
    "Trace",
    "simulate",
    "simulate_jobs",
    "trigger_metric_specs",
)

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "JobStep": "eventscale.simulation.scaled_job",
        "JobTimeline": "eventscale.simulation.scaled_job",
        "Step": "eventscale.simulation.scaled_object",
        "Timeline": "eventscale.simulation.scaled_object",
        "Trace": "eventscale.simulation.scaled_object",
        "simulate": "eventscale.simulation.scaled_object",
        "simulate_jobs": "eventscale.simulation.scaled_job",
        "trigger_metric_specs": "eventscale.simulation.scaled_object",
    },
    __all__,
)
