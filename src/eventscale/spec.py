"""Typed, frozen specs of KEDA objects: ScaledObject, ScaledJob, TriggerAuthentication.

These are the values :mod:`eventscale.manifests.reader` produces from YAML and the engine and
controller consume. They can also be built directly in Python; every field has KEDA's
default. Durations are seconds as ``float`` (KEDA's fields are whole seconds; the
engine works in seconds throughout). Cross-field rules are checked in
``__attrs_post_init__`` and raise :class:`~eventscale.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.redaction import REDACTED, is_secret_name, redact_text

__all__ = (
    "ANNOTATION_FORCE_ACTIVATION",
    "ANNOTATION_PAUSED",
    "ANNOTATION_PAUSED_REPLICAS",
    "ANNOTATION_PAUSED_SCALE_IN",
    "ANNOTATION_PAUSED_SCALE_OUT",
    "Advanced",
    "AuthenticationRef",
    "Behavior",
    "ConfigMapRef",
    "EnvRef",
    "Fallback",
    "FallbackBehavior",
    "HPAConfig",
    "JobRollout",
    "PolicyType",
    "ScaleTargetRef",
    "ScaledJobSpec",
    "ScaledObjectSpec",
    "ScalingModifiers",
    "ScalingPolicy",
    "ScalingRules",
    "ScalingStrategy",
    "SecretRef",
    "SelectPolicy",
    "TriggerAuthenticationSpec",
    "TriggerSpec",
)

ANNOTATION_PAUSED: Final = "autoscaling.keda.sh/paused"
ANNOTATION_PAUSED_REPLICAS: Final = "autoscaling.keda.sh/paused-replicas"
ANNOTATION_PAUSED_SCALE_IN: Final = "autoscaling.keda.sh/paused-scale-in"
ANNOTATION_PAUSED_SCALE_OUT: Final = "autoscaling.keda.sh/paused-scale-out"
ANNOTATION_FORCE_ACTIVATION: Final = "autoscaling.keda.sh/force-activation"

#: KEDA's resource-metric trigger types (docs/scalers/cpu-memory.md).
RESOURCE_TRIGGER_TYPES: Final = frozenset({"cpu", "memory"})

_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _annotation_flag(annotations: Mapping[str, str], key: str) -> bool:
    """KEDA's reading of a boolean annotation: present and not a Go 'false' means true."""
    if key not in annotations:
        return False
    return annotations[key].strip() not in _GO_FALSE


def _freeze_str_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return dict(value or {})


def _redacted_map_repr(value: Mapping[str, Any]) -> str:
    """``repr`` of trigger metadata with secret-bearing values (``password``...) hidden."""
    shown = {
        key: REDACTED if is_secret_name(key) else redact_text(str(val))
        for key, val in value.items()
    }
    return repr(shown)


# ----------------------------------------------------------------------- triggers


@attrs.frozen(kw_only=True)
class AuthenticationRef:
    """A trigger's ``authenticationRef``: a (Cluster)TriggerAuthentication by name."""

    name: str
    kind: str = "TriggerAuthentication"


@attrs.frozen(kw_only=True)
class TriggerSpec:
    """One entry of ``spec.triggers``.

    ``metadata`` holds the KEDA metadata strings as written; each scaler parses it.
    """

    type: str
    metadata: Mapping[str, str] = attrs.field(
        factory=dict, converter=_freeze_str_map, repr=_redacted_map_repr
    )
    name: str | None = None
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    use_cached_metrics: bool = False
    authentication_ref: AuthenticationRef | None = None


def _trigger_tuple(value: Iterable[TriggerSpec]) -> tuple[TriggerSpec, ...]:
    """Converter for ``triggers`` (typed, so mypy checks what callers pass)."""
    return tuple(value)


# ----------------------------------------------------------------------- behavior


class PolicyType(enum.Enum):
    """HPA scaling policy type."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(enum.Enum):
    """Which policy wins when several allow different changes."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _bounds(
    low: float | None = None, high: float | None = None, *, above: float | None = None
) -> Any:
    """An attrs validator that raises :class:`ConfigError` at the field's KEDA name.

    ``None`` values pass (optional fields); ``low``/``high`` are inclusive and ``above``
    exclusive.
    """

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if above is not None and not value > above:
            reason = f"must be greater than {above:g}"
        elif low is not None and value < low:
            reason = f"must be at least {low:g}"
        elif high is not None and value > high:
            reason = f"must be at most {high:g}"
        else:
            return
        raise ConfigError(f"{reason} (got {value!r})", path=_camel(attribute.name))

    return check


@attrs.frozen(kw_only=True)
class ScalingPolicy:
    """Allow at most ``value`` pods (or percent) of change per ``period_seconds``."""

    type: PolicyType
    value: int = attrs.field(validator=_bounds(above=0))
    period_seconds: int = attrs.field(validator=_bounds(1, 1800))


@attrs.frozen(kw_only=True)
class ScalingRules:
    """One direction of ``behavior`` (HPA ``HPAScalingRules``). ``None`` fields take the HPA default."""

    stabilization_window_seconds: int | None = attrs.field(
        default=None,
        validator=_bounds(0, 3600),
    )
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    tolerance: float | None = attrs.field(default=None, validator=_bounds(0))


@attrs.frozen(kw_only=True)
class Behavior:
    """HPA ``behavior`` (``advanced.horizontalPodAutoscalerConfig.behavior``)."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


@attrs.frozen(kw_only=True)
class HPAConfig:
    """``advanced.horizontalPodAutoscalerConfig``."""

    name: str | None = None
    behavior: Behavior | None = None


@attrs.frozen(kw_only=True)
class ScalingModifiers:
    """``advanced.scalingModifiers``: a formula over named triggers."""

    formula: str
    target: float
    activation_target: float = 0.0
    metric_type: MetricType = MetricType.AVERAGE_VALUE


@attrs.frozen(kw_only=True)
class Advanced:
    """``spec.advanced``."""

    restore_to_original_replica_count: bool = False
    horizontal_pod_autoscaler_config: HPAConfig = attrs.field(factory=HPAConfig)
    scaling_modifiers: ScalingModifiers | None = None


class FallbackBehavior(enum.Enum):
    """How fallback picks its replica count."""

    STATIC = "static"
    CURRENT_REPLICAS = "currentReplicas"
    CURRENT_REPLICAS_IF_HIGHER = "currentReplicasIfHigher"
    CURRENT_REPLICAS_IF_LOWER = "currentReplicasIfLower"
    SCALING_MODIFIERS = "scalingModifiers"


@attrs.frozen(kw_only=True)
class Fallback:
    """``spec.fallback``: replicas to hold after ``failure_threshold`` consecutive failures."""

    failure_threshold: int = attrs.field(validator=_bounds(0))
    replicas: int = attrs.field(validator=_bounds(0))
    behavior: FallbackBehavior = FallbackBehavior.STATIC


@attrs.frozen(kw_only=True)
class ScaleTargetRef:
    """``spec.scaleTargetRef``: the workload to scale."""

    name: str
    kind: str = "Deployment"
    api_version: str = "apps/v1"
    env_source_container_name: str | None = None


# ----------------------------------------------------------------------- ScaledObject


@attrs.frozen(kw_only=True)
class ScaledObjectSpec:
    """A KEDA ``ScaledObject`` (``keda.sh/v1alpha1``), with KEDA's defaults.

    Cross-field rules (KEDA's admission webhook): ``min <= max``, ``idle < min``, at
    least one trigger, unique trigger names, and scaling modifiers need named triggers.
    """

    name: str
    scale_target_ref: ScaleTargetRef
    triggers: tuple[TriggerSpec, ...] = attrs.field(converter=_trigger_tuple)
    namespace: str = "default"
    annotations: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_str_map)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_str_map)
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    min_replica_count: int = 0
    max_replica_count: int = 100
    idle_replica_count: int | None = None
    fallback: Fallback | None = None
    advanced: Advanced = attrs.field(factory=Advanced)

    def __attrs_post_init__(self) -> None:
        errors = _check_replica_bounds(
            self.min_replica_count, self.max_replica_count, self.idle_replica_count
        )
        if self.polling_interval < 1:
            errors.append(ConfigError("must be at least 1 second", path="spec.pollingInterval"))
        if self.cooldown_period < 0:
            errors.append(ConfigError("must be >= 0", path="spec.cooldownPeriod"))
        if self.initial_cooldown_period < 0:
            errors.append(ConfigError("must be >= 0", path="spec.initialCooldownPeriod"))
        errors.extend(_check_triggers(self.triggers))
        mods = self.advanced.scaling_modifiers
        # Only the triggers the formula uses need a name, as in KEDA: an unknown name is
        # the formula's error (engine/modifiers.py, compile_formula).
        if mods is not None and mods.target <= 0:
            errors.append(
                ConfigError("must be a number > 0", path="spec.advanced.scalingModifiers.target")
            )
        if self.fallback is not None and all(
            t.type in RESOURCE_TRIGGER_TYPES for t in self.triggers
        ):
            errors.append(
                ConfigError(
                    "fallback needs at least one trigger that is not a resource (cpu/memory) trigger",
                    path="spec.fallback",
                )
            )
        if (
            self.fallback is not None
            and self.fallback.behavior is FallbackBehavior.SCALING_MODIFIERS
            and mods is None
        ):
            errors.append(
                ConfigError(
                    "behavior 'scalingModifiers' needs spec.advanced.scalingModifiers",
                    path="spec.fallback.behavior",
                )
            )
        ConfigError.collect(errors, what=f"invalid ScaledObject {self.name!r}")

    # -- annotation-driven switches (KEDA reads them the same way) -----------------

    @property
    def paused(self) -> bool:
        """``autoscaling.keda.sh/paused`` set (any non-false value)."""
        return _annotation_flag(self.annotations, ANNOTATION_PAUSED)

    @property
    def paused_replicas(self) -> int | None:
        """``autoscaling.keda.sh/paused-replicas`` as an int, or ``None`` when not set."""
        raw = self.annotations.get(ANNOTATION_PAUSED_REPLICAS)
        if raw is None:
            return None
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(
                f"annotation value must be an integer, got {raw!r}",
                path=f"metadata.annotations[{ANNOTATION_PAUSED_REPLICAS!r}]",
            ) from None

    @property
    def paused_scale_in(self) -> bool:
        """``autoscaling.keda.sh/paused-scale-in`` set."""
        return _annotation_flag(self.annotations, ANNOTATION_PAUSED_SCALE_IN)

    @property
    def paused_scale_out(self) -> bool:
        """``autoscaling.keda.sh/paused-scale-out`` set."""
        return _annotation_flag(self.annotations, ANNOTATION_PAUSED_SCALE_OUT)

    @property
    def force_activation(self) -> bool:
        """``autoscaling.keda.sh/force-activation`` set."""
        return _annotation_flag(self.annotations, ANNOTATION_FORCE_ACTIVATION)

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA's minReplicas KEDA would generate: ``max(minReplicaCount, 1)``."""
        return self.min_replica_count if self.min_replica_count > 0 else 1

    @property
    def behavior(self) -> Behavior | None:
        """Shortcut to ``advanced.horizontalPodAutoscalerConfig.behavior``."""
        return self.advanced.horizontal_pod_autoscaler_config.behavior


def _check_replica_bounds(minimum: int, maximum: int, idle: int | None) -> list[ConfigError]:
    errors: list[ConfigError] = []
    if minimum < 0:
        errors.append(ConfigError("must be >= 0", path="spec.minReplicaCount"))
    if maximum < 1:
        errors.append(ConfigError("must be >= 1", path="spec.maxReplicaCount"))
    if minimum > maximum:
        errors.append(
            ConfigError(
                f"minReplicaCount ({minimum}) must be <= maxReplicaCount ({maximum})",
                path="spec.minReplicaCount",
            )
        )
    if idle is not None:
        if idle < 0:
            errors.append(ConfigError("must be >= 0", path="spec.idleReplicaCount"))
        elif idle >= minimum:
            errors.append(
                ConfigError(
                    f"idleReplicaCount ({idle}) must be less than minReplicaCount ({minimum})",
                    path="spec.idleReplicaCount",
                )
            )
    return errors


def _check_triggers(triggers: tuple[TriggerSpec, ...]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    if not triggers:
        errors.append(ConfigError("at least one trigger is required", path="spec.triggers"))
    seen: dict[str, int] = {}
    for i, trig in enumerate(triggers):
        if not trig.type:
            errors.append(ConfigError("is required", path=f"spec.triggers[{i}].type"))
        if trig.name:
            if trig.name in seen:
                errors.append(
                    ConfigError(
                        f"duplicate trigger name {trig.name!r} (also spec.triggers[{seen[trig.name]}])",
                        path=f"spec.triggers[{i}].name",
                    )
                )
            seen[trig.name] = i
    return errors


# ----------------------------------------------------------------------- ScaledJob


class ScalingStrategy(enum.Enum):
    """ScaledJob ``scalingStrategy.strategy``."""

    DEFAULT = "default"
    CUSTOM = "custom"
    ACCURATE = "accurate"
    EAGER = "eager"


@attrs.frozen(kw_only=True)
class JobRollout:
    """ScaledJob ``rollout``."""

    strategy: str = "default"
    propagation_policy: str = "background"


@attrs.frozen(kw_only=True)
class ScaledJobSpec:
    """A KEDA ``ScaledJob``: one Job per unit of work."""

    name: str
    job_target_ref: Mapping[str, Any]
    triggers: tuple[TriggerSpec, ...] = attrs.field(converter=_trigger_tuple)
    namespace: str = "default"
    annotations: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_str_map)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_str_map)
    env_source_container_name: str | None = None
    polling_interval: float = 30.0
    successful_jobs_history_limit: int = 100
    failed_jobs_history_limit: int = 100
    min_replica_count: int = 0
    #: ``None``: not set, so up to 100 jobs (KEDA's default, not reduced by
    #: ``minReplicaCount``); see :attr:`effective_max`.
    max_replica_count: int | None = None
    rollout: JobRollout = attrs.field(factory=JobRollout)
    strategy: ScalingStrategy = ScalingStrategy.DEFAULT
    custom_scaling_queue_length_deduction: int | None = None
    custom_scaling_running_job_percentage: str | None = None
    pending_pod_conditions: tuple[str, ...] = ()
    multiple_scalers_calculation: str = "max"

    def __attrs_post_init__(self) -> None:
        errors: list[ConfigError] = []
        if self.polling_interval < 1:
            errors.append(ConfigError("must be at least 1 second", path="spec.pollingInterval"))
        if self.min_replica_count < 0:
            errors.append(ConfigError("must be >= 0", path="spec.minReplicaCount"))
        if self.max_replica_count is not None and self.max_replica_count < 0:
            errors.append(ConfigError("must be >= 0", path="spec.maxReplicaCount"))
        for field, value in (
            ("successfulJobsHistoryLimit", self.successful_jobs_history_limit),
            ("failedJobsHistoryLimit", self.failed_jobs_history_limit),
        ):
            if value < 0:
                errors.append(ConfigError("must be >= 0", path=f"spec.{field}"))
        if self.multiple_scalers_calculation not in ("max", "min", "avg", "sum"):
            errors.append(
                ConfigError(
                    "must be one of max, min, avg, sum",
                    path="spec.scalingStrategy.multipleScalersCalculation",
                )
            )
        if self.rollout.strategy not in ("default", "gradual"):
            errors.append(
                ConfigError("must be 'default' or 'gradual'", path="spec.rollout.strategy")
            )
        errors.extend(_check_triggers(self.triggers))
        ConfigError.collect(errors, what=f"invalid ScaledJob {self.name!r}")

    @property
    def paused(self) -> bool:
        """``autoscaling.keda.sh/paused`` set."""
        return _annotation_flag(self.annotations, ANNOTATION_PAUSED)

    @property
    def max_jobs(self) -> int:
        """``maxReplicaCount``, or KEDA's default of 100 when it is not set."""
        return self.max_replica_count if self.max_replica_count is not None else 100

    @property
    def effective_min(self) -> int:
        """KEDA's ``MinReplicaCount()``: ``min(min, max)`` (``min`` when max is not set)."""
        if self.max_replica_count is None:
            return self.min_replica_count
        return min(self.min_replica_count, self.max_replica_count)

    @property
    def effective_max(self) -> int:
        """KEDA's ``MaxReplicaCount()`` (``apis/keda/v1alpha1/scaledjob_types.go``): 100 when
        ``maxReplicaCount`` is not set; else ``max - min`` when ``min <= max``, else ``max``."""
        if self.max_replica_count is None:
            return 100
        if self.min_replica_count <= self.max_replica_count:
            return self.max_replica_count - self.effective_min
        return self.max_replica_count


# ----------------------------------------------------------------------- TriggerAuthentication


@attrs.frozen(kw_only=True)
class SecretRef:
    """``secretTargetRef`` entry: parameter <- Secret ``name`` key ``key``."""

    parameter: str
    name: str
    key: str


@attrs.frozen(kw_only=True)
class ConfigMapRef:
    """``configMapTargetRef`` entry: parameter <- ConfigMap ``name`` key ``key``."""

    parameter: str
    name: str
    key: str


@attrs.frozen(kw_only=True)
class EnvRef:
    """``env`` entry: parameter <- environment variable ``name`` (of ``container_name``)."""

    parameter: str
    name: str
    container_name: str | None = None


@attrs.frozen(kw_only=True)
class TriggerAuthenticationSpec:
    """A ``TriggerAuthentication`` or ``ClusterTriggerAuthentication``.

    Only ``secretTargetRef``, ``configMapTargetRef`` and ``env`` can be resolved by
    eventscale itself; other
    providers (Vault, Azure Key Vault, pod identity, ...) are kept in ``other`` so a
    manifest still parses, and resolving them is a :class:`ConfigError`.
    """

    name: str
    kind: str = "TriggerAuthentication"
    namespace: str = "default"
    secret_target_ref: tuple[SecretRef, ...] = ()
    config_map_target_ref: tuple[ConfigMapRef, ...] = ()
    env: tuple[EnvRef, ...] = ()
    pod_identity: Mapping[str, Any] | None = None
    other: Mapping[str, Any] = attrs.field(factory=dict)
