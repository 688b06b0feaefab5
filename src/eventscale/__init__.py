"""eventscale: KEDA-style event-driven autoscaling as an importable Python library.

Scalers read event sources, one pure engine turns their metrics into a replica
count, and targets apply it. Only re-exports live here. Importing this package loads
no broker client, and the heavier parts (manifest reader, engine, runtime) load on
first use of one of their names, which keeps ``import eventscale`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy
from eventscale._version import __version__
from eventscale.errors import (
    ConfigError,
    EventscaleError,
    MissingExtraError,
    ScalerError,
    ScalerTimeout,
    TargetConflict,
    TargetError,
    TargetNotFound,
)
from eventscale.metrics import MetricSpec, MetricType, MetricValue, ScalerReport
from eventscale.redaction import Secret
from eventscale.scalers import PushScaler, Scaler, TriggerContext, create_scaler, register_scaler
from eventscale.spec import (
    ScaledJobSpec,
    ScaledObjectSpec,
    ScaleTargetRef,
    TriggerAuthenticationSpec,
    TriggerSpec,
)
from eventscale.targets import Target

if TYPE_CHECKING:
    from eventscale.authentication.resolver import resolve_trigger_contexts_async
    from eventscale.engine import (
        Decision,
        EngineOptions,
        ScalingState,
        TriggerObservation,
        decide,
    )
    from eventscale.manifests.reader import (
        Manifests,
        load_manifests,
        load_scaled_job,
        load_scaled_object,
    )
    from eventscale.manifests.writer import dump_manifests, to_manifest
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.observability import Event, EventBus, EventKind
    from eventscale.runtime.scaled_object import EvaluationReport, ScaledObject
    from eventscale.simulation.scaled_object import Trace

__all__ = (
    "ConfigError",
    "Controller",
    "Decision",
    "EngineOptions",
    "EvaluationReport",
    "Event",
    "EventBus",
    "EventKind",
    "EventscaleError",
    "Manifests",
    "MetricSpec",
    "MetricType",
    "MetricValue",
    "MissingExtraError",
    "PushScaler",
    "ScaleTargetRef",
    "ScaledJobSpec",
    "ScaledObject",
    "ScaledObjectSpec",
    "Scaler",
    "ScalerError",
    "ScalerReport",
    "ScalerTimeout",
    "ScalingState",
    "Secret",
    "Target",
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
    "to_manifest",
)

# Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "Controller": "eventscale.runtime",
    "Decision": "eventscale.engine",
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
    "ScaledObject": "eventscale.runtime",
    "resolve_trigger_contexts_async": "eventscale.authentication",
    "Trace": "eventscale.simulation",
}
__getattr__, __dir__ = _lazy.lazy_exports(__name__, _LAZY, __all__)
