"""Simulate ScaledObjects and ScaledJobs on a virtual clock: replay metric traces
(open loop), or run a workload against a queue the simulated replicas drain (closed
loop) and search settings for the cheapest that meets a wait goal (docs/simulation.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.simulation.closed_loop import (
        ClosedLoopResult,
        ClosedLoopStep,
        Summary,
        metric_kind,
        simulate_closed_loop,
    )
    from eventscale.simulation.closed_loop_jobs import (
        JobsClosedLoopResult,
        JobsClosedLoopStep,
        simulate_jobs_closed_loop,
    )
    from eventscale.simulation.queue_model import (
        MetricKind,
        QueueModel,
    )
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
    from eventscale.simulation.tuning import (
        Candidate,
        Goal,
        TuneResult,
        apply_settings,
        tune,
    )
    from eventscale.simulation.workload import (
        Workload,
        parse_workload,
    )

__all__ = (
    "Candidate",
    "ClosedLoopResult",
    "ClosedLoopStep",
    "Goal",
    "JobStep",
    "JobsClosedLoopResult",
    "JobsClosedLoopStep",
    "JobTimeline",
    "MetricKind",
    "QueueModel",
    "Step",
    "Summary",
    "Timeline",
    "Trace",
    "TuneResult",
    "Workload",
    "apply_settings",
    "metric_kind",
    "parse_workload",
    "simulate",
    "simulate_closed_loop",
    "simulate_jobs",
    "simulate_jobs_closed_loop",
    "trigger_metric_specs",
    "tune",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Candidate": "eventscale.simulation.tuning",
        "ClosedLoopResult": "eventscale.simulation.closed_loop",
        "ClosedLoopStep": "eventscale.simulation.closed_loop",
        "Goal": "eventscale.simulation.tuning",
        "JobStep": "eventscale.simulation.scaled_job",
        "JobsClosedLoopResult": "eventscale.simulation.closed_loop_jobs",
        "JobsClosedLoopStep": "eventscale.simulation.closed_loop_jobs",
        "JobTimeline": "eventscale.simulation.scaled_job",
        "MetricKind": "eventscale.simulation.queue_model",
        "QueueModel": "eventscale.simulation.queue_model",
        "Step": "eventscale.simulation.scaled_object",
        "Summary": "eventscale.simulation.closed_loop",
        "Timeline": "eventscale.simulation.scaled_object",
        "Trace": "eventscale.simulation.scaled_object",
        "TuneResult": "eventscale.simulation.tuning",
        "Workload": "eventscale.simulation.workload",
        "apply_settings": "eventscale.simulation.tuning",
        "metric_kind": "eventscale.simulation.closed_loop",
        "parse_workload": "eventscale.simulation.workload",
        "simulate": "eventscale.simulation.scaled_object",
        "simulate_closed_loop": "eventscale.simulation.closed_loop",
        "simulate_jobs": "eventscale.simulation.scaled_job",
        "simulate_jobs_closed_loop": "eventscale.simulation.closed_loop_jobs",
        "trigger_metric_specs": "eventscale.simulation.scaled_object",
        "tune": "eventscale.simulation.tuning",
    },
    __all__,
)
