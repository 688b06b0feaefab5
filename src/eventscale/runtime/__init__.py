"""The runtime: scaled objects and jobs polling their triggers, and the controller.

This is the only layer where scalers, the pure engine and targets meet. It also
holds the event bus (observability), KEDA's operator metrics and the health probes,
live manifest files, Lease sharding and leader election.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.health import Health
    from eventscale.runtime.keda_metrics import KedaMetrics
    from eventscale.runtime.leader import (
        LeaderElector,
        LeadershipLost,
        LeaseRecord,
    )
    from eventscale.runtime.metrics_server import MetricsServer
    from eventscale.runtime.objects import ObjectStatus, Reconcilable, ReconcileReport
    from eventscale.runtime.observability import (
        Event,
        EventBus,
        EventHook,
        EventKind,
        PrometheusExporter,
        TriggerResult,
        log_level,
        logger,
    )
    from eventscale.runtime.ownership import NotifyingOwnership, Ownership
    from eventscale.runtime.reload import ManifestReloader
    from eventscale.runtime.scaled_job import (
        JobReport,
        JobState,
        ScaledJob,
        decide_job_starts,
    )
    from eventscale.runtime.scaled_object import (
        DEFAULT_POLL_TIMEOUT,
        EvaluationReport,
        ScaledObject,
    )
    from eventscale.runtime.sharding import (
        LeaseSharding,
    )

__all__ = (
    "Controller",
    "DEFAULT_POLL_TIMEOUT",
    "EvaluationReport",
    "Event",
    "EventBus",
    "EventHook",
    "EventKind",
    "Health",
    "JobReport",
    "JobState",
    "KedaMetrics",
    "LeaderElector",
    "LeadershipLost",
    "LeaseRecord",
    "LeaseSharding",
    "ManifestReloader",
    "MetricsServer",
    "NotifyingOwnership",
    "ObjectStatus",
    "Ownership",
    "PrometheusExporter",
    "Reconcilable",
    "ReconcileReport",
    "ScaledJob",
    "ScaledObject",
    "TriggerResult",
    "decide_job_starts",
    "log_level",
    "logger",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Controller": "eventscale.runtime.controller",
        "DEFAULT_POLL_TIMEOUT": "eventscale.runtime.scaled_object",
        "EvaluationReport": "eventscale.runtime.scaled_object",
        "Event": "eventscale.runtime.observability",
        "EventBus": "eventscale.runtime.observability",
        "EventHook": "eventscale.runtime.observability",
        "EventKind": "eventscale.runtime.observability",
        "Health": "eventscale.runtime.health",
        "JobReport": "eventscale.runtime.scaled_job",
        "JobState": "eventscale.runtime.scaled_job",
        "KedaMetrics": "eventscale.runtime.keda_metrics",
        "LeaderElector": "eventscale.runtime.leader",
        "LeadershipLost": "eventscale.runtime.leader",
        "LeaseRecord": "eventscale.runtime.leader",
        "LeaseSharding": "eventscale.runtime.sharding",
        "ManifestReloader": "eventscale.runtime.reload",
        "MetricsServer": "eventscale.runtime.metrics_server",
        "NotifyingOwnership": "eventscale.runtime.ownership",
        "ObjectStatus": "eventscale.runtime.objects",
        "Ownership": "eventscale.runtime.ownership",
        "PrometheusExporter": "eventscale.runtime.observability",
        "Reconcilable": "eventscale.runtime.objects",
        "ReconcileReport": "eventscale.runtime.objects",
        "ScaledJob": "eventscale.runtime.scaled_job",
        "ScaledObject": "eventscale.runtime.scaled_object",
        "TriggerResult": "eventscale.runtime.observability",
        "decide_job_starts": "eventscale.runtime.scaled_job",
        "log_level": "eventscale.runtime.observability",
        "logger": "eventscale.runtime.observability",
    },
    __all__,
)
