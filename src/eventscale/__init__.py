"""eventscale: KEDA-style event-driven autoscaling as an importable Python library.

Scalers read event sources, one pure engine turns their metrics into a replica
count, and targets apply it. Only re-exports live here. Importing this package loads
no broker client, and the heavier parts (manifest reader, engine, runtime) load on
first use of one of their names, which keeps ``import eventscale`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports
from eventscale._version import __version__
from eventscale.errors import (
    ConfigError,
    EventscaleError,
    FormulaError,
    LeadershipLost,
    MissingExtraError,
    ScalerError,
    ScalerTimeout,
    TargetConflict,
    TargetError,
    TargetNotFound,
)
from eventscale.metrics import MetricSpec, MetricType, MetricValue, ScalerReport
from eventscale.redaction import Secret
from eventscale.scalers import (
    PushScaler,
    Scaler,
    ScalerBase,
    TriggerContext,
    create_scaler,
    register_scaler,
)
from eventscale.scalers.params import Params
from eventscale.spec import (
    ScaledJobSpec,
    ScaledObjectSpec,
    ScaleTargetRef,
    TriggerAuthenticationSpec,
    TriggerSpec,
)
from eventscale.targets import Target, TargetBase

if TYPE_CHECKING:
    from eventscale.authentication import resolve_trigger_contexts_async
    from eventscale.engine import (
        Decision,
        Engine,
        EngineOptions,
        ScalingState,
        TriggerObservation,
        decide,
    )
    from eventscale.manifests import (
        Manifests,
        load_manifests,
        load_scaled_job,
        load_scaled_object,
    )
    from eventscale.runtime import (
        Controller,
        EvaluationReport,
        Event,
        EventBus,
        EventKind,
        ScaledJob,
        ScaledObject,
    )
    from eventscale.simulation import Trace, simulate

__all__ = (
    "ConfigError",
    "Controller",
    "Decision",
    "Engine",
    "EngineOptions",
    "EvaluationReport",
    "Event",
    "EventBus",
    "EventKind",
    "EventscaleError",
    "FormulaError",
    "LeadershipLost",
    "Manifests",
    "MetricSpec",
    "MetricType",
    "MetricValue",
    "MissingExtraError",
    "Params",
    "PushScaler",
    "ScaleTargetRef",
    "ScaledJob",
    "ScaledJobSpec",
    "ScaledObject",
    "ScaledObjectSpec",
    "Scaler",
    "ScalerBase",
    "ScalerError",
    "ScalerReport",
    "ScalerTimeout",
    "ScalingState",
    "Secret",
    "Target",
    "TargetBase",
    "TargetConflict",
    "TargetError",
    "TargetNotFound",
    "Trace",
    "TriggerAuthenticationSpec",
    "TriggerContext",
    "TriggerObservation",
    "TriggerSpec",
    "__version__",
    "create_scaler",
    "decide",
    "dump_manifests",
    "load_manifests",
    "load_scaled_job",
    "load_scaled_object",
    "register_scaler",
    "resolve_trigger_contexts_async",
    "simulate",
    "to_manifest",
)

# Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "Controller": "eventscale.runtime",
    "Decision": "eventscale.engine",
    "Engine": "eventscale.engine",
    "EngineOptions": "eventscale.engine",
    "ScalingState": "eventscale.engine",
    "TriggerObservation": "eventscale.engine",
    "decide": "eventscale.engine",
    "Manifests": "eventscale.manifests",
    "dump_manifests": "eventscale.manifests",
    "load_manifests": "eventscale.manifests",
    "load_scaled_job": "eventscale.manifests",
    "load_scaled_object": "eventscale.manifests",
    "to_manifest": "eventscale.manifests",
    "Event": "eventscale.runtime",
    "EventBus": "eventscale.runtime",
    "EventKind": "eventscale.runtime",
    "EvaluationReport": "eventscale.runtime",
    "ScaledJob": "eventscale.runtime",
    "ScaledObject": "eventscale.runtime",
    "resolve_trigger_contexts_async": "eventscale.authentication",
    "Trace": "eventscale.simulation",
    "simulate": "eventscale.simulation",
}
__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, __all__)
