"""eventscale: KEDA-style event-driven autoscaling as an importable Python library.

Scalers read event sources, one pure engine turns their metrics into a replica
count, and targets apply it. Only re-exports live here; importing this package
loads no broker client (each scaler's client is imported when it is first used).
"""

from __future__ import annotations

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
from eventscale.manifest import (
    Manifests,
    dump_manifests,
    load_manifests,
    load_scaled_job,
    load_scaled_object,
    to_manifest,
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

__all__ = (
    "ConfigError",
    "EventscaleError",
    "Manifests",
    "MetricSpec",
    "MetricType",
    "MetricValue",
    "MissingExtraError",
    "PushScaler",
    "ScaleTargetRef",
    "ScaledJobSpec",
    "ScaledObjectSpec",
    "Scaler",
    "ScalerError",
    "ScalerReport",
    "ScalerTimeout",
    "Secret",
    "Target",
    "TargetConflict",
    "TargetError",
    "TargetNotFound",
    "TriggerAuthenticationSpec",
    "TriggerContext",
    "TriggerSpec",
    "__version__",
    "create_scaler",
    "dump_manifests",
    "load_manifests",
    "load_scaled_job",
    "load_scaled_object",
    "register_scaler",
    "to_manifest",
)
