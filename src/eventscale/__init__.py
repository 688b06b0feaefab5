"""eventscale: KEDA-style event-driven autoscaling as an importable Python library.

Scalers read event sources, one pure engine turns their metrics into a replica
count, and targets apply it. Only re-exports live here. Importing this package loads
no broker client, and the heavier parts (manifest reader, engine, runtime) load on
first use of one of their names, which keeps ``import eventscale`` fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventscale._version import __version__
from eventscale.auth import Secret
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
    from eventscale.controller import Controller
    from eventscale.engine import (
        Decision,
        EngineOptions,
        ScalingState,
        TriggerObservation,
        decide,
    )
    from eventscale.manifest import (
        Manifests,
        dump_manifests,
        load_manifests,
        load_scaled_job,
        load_scaled_object,
        to_manifest,
    )
    from eventscale.observability import Event, EventBus, EventKind
    from eventscale.runtime import EvaluationReport, ScaledObject
    from eventscale.secrets import resolve_trigger_contexts_async
    from eventscale.simulate import Trace

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
    "Controller": "eventscale.controller",
    "Decision": "eventscale.engine",
    "EngineOptions": "eventscale.engine",
    "ScalingState": "eventscale.engine",
    "TriggerObservation": "eventscale.engine",
    "decide": "eventscale.engine",
    "Manifests": "eventscale.manifest",
    "dump_manifests": "eventscale.manifest",
    "load_manifests": "eventscale.manifest",
    "load_scaled_job": "eventscale.manifest",
    "load_scaled_object": "eventscale.manifest",
    "to_manifest": "eventscale.manifest",
    "Event": "eventscale.observability",
    "EventBus": "eventscale.observability",
    "EventKind": "eventscale.observability",
    "EvaluationReport": "eventscale.runtime",
    "ScaledObject": "eventscale.runtime",
    "resolve_trigger_contexts_async": "eventscale.secrets",
    "Trace": "eventscale.simulate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
