"""Write specs back as KEDA manifests.

:func:`to_manifest` writes a spec as a manifest mapping (camelCase, non-default fields
only) such that ``load_manifests(to_manifest(spec))`` gives an equal spec again;
:func:`dump_manifests` writes several as one YAML stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from eventscale.errors import ConfigError
from eventscale.manifests.reader import KEDA_API_VERSION
from eventscale.metrics import MetricType
from eventscale.spec import (
    FallbackBehavior,
    ScaledJobSpec,
    ScaledObjectSpec,
    ScalingRules,
    ScalingStrategy,
    TriggerAuthenticationSpec,
    TriggerSpec,
)

__all__ = ("Spec", "dump_manifests", "to_manifest")

Spec: TypeAlias = "ScaledObjectSpec | ScaledJobSpec | TriggerAuthenticationSpec"
"""A spec :func:`to_manifest` can write."""


def _seconds(value: float, path: str) -> int:
    if not float(value).is_integer():
        raise ConfigError(
            f"KEDA durations are whole seconds; {value} cannot be written to a manifest",
            path=path,
        )
    return int(value)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def _meta_out(
    name: str, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace and namespace != "default":
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _trigger_out(trig: TriggerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": trig.type}
    if trig.name:
        out["name"] = trig.name
    out["metadata"] = dict(trig.metadata)
    if trig.metric_type is not MetricType.AVERAGE_VALUE:
        out["metricType"] = trig.metric_type.value
    if trig.use_cached_metrics:
        out["useCachedMetrics"] = True
    if trig.authentication_ref is not None:
        ref: dict[str, Any] = {"name": trig.authentication_ref.name}
        if trig.authentication_ref.kind != "TriggerAuthentication":
            ref["kind"] = trig.authentication_ref.kind
        out["authenticationRef"] = ref
    return out


def _rules_out(rules: ScalingRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.select_policy is not None:
        out["selectPolicy"] = rules.select_policy.value
    if rules.policies is not None:
        out["policies"] = [
            {"type": p.type.value, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ]
    if rules.tolerance is not None:
        out["tolerance"] = rules.tolerance
    return out


def _scaled_object_out(so: ScaledObjectSpec) -> dict[str, Any]:
    ref = so.scale_target_ref
    target: dict[str, Any] = {"name": ref.name}
    if ref.api_version != "apps/v1":
        target["apiVersion"] = ref.api_version
    if ref.kind != "Deployment":
        target["kind"] = ref.kind
    if ref.env_source_container_name:
        target["envSourceContainerName"] = ref.env_source_container_name
    spec: dict[str, Any] = {"scaleTargetRef": target}
    for key, value, default in (
        ("pollingInterval", so.polling_interval, 30),
        ("cooldownPeriod", so.cooldown_period, 300),
        ("initialCooldownPeriod", so.initial_cooldown_period, 0),
    ):
        if value != default:
            spec[key] = _seconds(value, f"spec.{key}")
    if so.idle_replica_count is not None:
        spec["idleReplicaCount"] = so.idle_replica_count
    if so.min_replica_count != 0:
        spec["minReplicaCount"] = so.min_replica_count
    if so.max_replica_count != 100:
        spec["maxReplicaCount"] = so.max_replica_count
    if so.fallback is not None:
        fb: dict[str, Any] = {
            "failureThreshold": so.fallback.failure_threshold,
            "replicas": so.fallback.replicas,
        }
        if so.fallback.behavior is not FallbackBehavior.STATIC:
            fb["behavior"] = so.fallback.behavior.value
        spec["fallback"] = fb
    adv_out: dict[str, Any] = {}
    adv = so.advanced
    if adv.restore_to_original_replica_count:
        adv_out["restoreToOriginalReplicaCount"] = True
    hpa = adv.horizontal_pod_autoscaler_config
    hpa_out: dict[str, Any] = {}
    if hpa.name:
        hpa_out["name"] = hpa.name
    if hpa.behavior is not None:
        beh: dict[str, Any] = {}
        if hpa.behavior.scale_up is not None:
            beh["scaleUp"] = _rules_out(hpa.behavior.scale_up)
        if hpa.behavior.scale_down is not None:
            beh["scaleDown"] = _rules_out(hpa.behavior.scale_down)
        hpa_out["behavior"] = beh
    if hpa_out:
        adv_out["horizontalPodAutoscalerConfig"] = hpa_out
    mods = adv.scaling_modifiers
    if mods is not None:
        mods_out: dict[str, Any] = {"formula": mods.formula, "target": _number_text(mods.target)}
        if mods.activation_target != 0:
            mods_out["activationTarget"] = _number_text(mods.activation_target)
        if mods.metric_type is not MetricType.AVERAGE_VALUE:
            mods_out["metricType"] = mods.metric_type.value
        adv_out["scalingModifiers"] = mods_out
    if adv_out:
        spec["advanced"] = adv_out
    spec["triggers"] = [_trigger_out(t) for t in so.triggers]
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": _meta_out(so.name, so.namespace, so.labels, so.annotations),
        "spec": spec,
    }


def _scaled_job_out(sj: ScaledJobSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"jobTargetRef": _plain(sj.job_target_ref)}
    if sj.polling_interval != 30:
        spec["pollingInterval"] = _seconds(sj.polling_interval, "spec.pollingInterval")
    for key, value, default in (
        ("successfulJobsHistoryLimit", sj.successful_jobs_history_limit, 100),
        ("failedJobsHistoryLimit", sj.failed_jobs_history_limit, 100),
        ("minReplicaCount", sj.min_replica_count, 0),
        ("maxReplicaCount", sj.max_replica_count, None),
    ):
        if value != default:
            spec[key] = value
    if sj.env_source_container_name:
        spec["envSourceContainerName"] = sj.env_source_container_name
    rollout: dict[str, Any] = {}
    if sj.rollout.strategy != "default":
        rollout["strategy"] = sj.rollout.strategy
    if sj.rollout.propagation_policy != "background":
        rollout["propagationPolicy"] = sj.rollout.propagation_policy
    if rollout:
        spec["rollout"] = rollout
    strategy: dict[str, Any] = {}
    if sj.strategy is not ScalingStrategy.DEFAULT:
        strategy["strategy"] = sj.strategy.value
    if sj.custom_scaling_queue_length_deduction is not None:
        strategy["customScalingQueueLengthDeduction"] = sj.custom_scaling_queue_length_deduction
    if sj.custom_scaling_running_job_percentage is not None:
        strategy["customScalingRunningJobPercentage"] = sj.custom_scaling_running_job_percentage
    if sj.pending_pod_conditions:
        strategy["pendingPodConditions"] = list(sj.pending_pod_conditions)
    if sj.multiple_scalers_calculation != "max":
        strategy["multipleScalersCalculation"] = sj.multiple_scalers_calculation
    if strategy:
        spec["scalingStrategy"] = strategy
    spec["triggers"] = [_trigger_out(t) for t in sj.triggers]
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledJob",
        "metadata": _meta_out(sj.name, sj.namespace, sj.labels, sj.annotations),
        "spec": spec,
    }


def _trigger_auth_out(ta: TriggerAuthenticationSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if ta.pod_identity is not None:
        spec["podIdentity"] = _plain(ta.pod_identity)
    if ta.secret_target_ref:
        spec["secretTargetRef"] = [
            {"parameter": s.parameter, "name": s.name, "key": s.key} for s in ta.secret_target_ref
        ]
    if ta.config_map_target_ref:
        spec["configMapTargetRef"] = [
            {"parameter": c.parameter, "name": c.name, "key": c.key}
            for c in ta.config_map_target_ref
        ]
    if ta.env:
        spec["env"] = [
            {"parameter": e.parameter, "name": e.name}
            | ({"containerName": e.container_name} if e.container_name else {})
            for e in ta.env
        ]
    for key, value in ta.other.items():
        spec[key] = _plain(value)
    meta: dict[str, Any] = {"name": ta.name}
    if ta.namespace and ta.namespace != "default":
        meta["namespace"] = ta.namespace
    return {"apiVersion": KEDA_API_VERSION, "kind": ta.kind, "metadata": meta, "spec": spec}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_manifest(spec: Spec) -> dict[str, Any]:
    """Write ``spec`` as a KEDA manifest mapping (camelCase, non-default fields only).

    ``load_manifests(to_manifest(spec))`` reads back an equal spec.

    :raises ConfigError: for a value KEDA cannot express (a duration that is not whole seconds).
    """
    if isinstance(spec, ScaledObjectSpec):
        return _scaled_object_out(spec)
    if isinstance(spec, ScaledJobSpec):
        return _scaled_job_out(spec)
    if isinstance(spec, TriggerAuthenticationSpec):
        return _trigger_auth_out(spec)
    raise TypeError(
        f"to_manifest() takes a ScaledObjectSpec, ScaledJobSpec or "
        f"TriggerAuthenticationSpec, got {type(spec).__name__}"
    )


def dump_manifests(*specs: Spec) -> str:
    """``specs`` as one multi-document YAML text (see :func:`to_manifest`)."""
    import yaml

    return yaml.safe_dump_all(
        [to_manifest(s) for s in specs], sort_keys=False, default_flow_style=False
    )
