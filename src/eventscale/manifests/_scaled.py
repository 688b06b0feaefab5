"""ScaledObject and ScaledJob documents to specs, with KEDA's defaults and limits.

The limits are those of KEDA's CRDs and admission webhook (``keda/apis/keda/v1alpha1``):
``pollingInterval >= 1``, a ``stabilizationWindowSeconds`` of at most an hour, a
scaling policy's ``periodSeconds`` of at most 30 minutes, and so on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from eventscale.manifests._auth import TA_KINDS
from eventscale.manifests.fields import FieldReader, did_you_mean, shown
from eventscale.metrics import MetricType
from eventscale.spec import (
    Advanced,
    AuthenticationRef,
    Behavior,
    Fallback,
    FallbackBehavior,
    HPAConfig,
    JobRollout,
    PolicyType,
    ScaledJobSpec,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingModifiers,
    ScalingPolicy,
    ScalingRules,
    ScalingStrategy,
    SelectPolicy,
    TriggerSpec,
)

__all__ = ("read_scaled_job", "read_scaled_object")

_NO_CACHE_TYPES: Final = frozenset({"cpu", "memory", "cron"})
_RESOURCE_TYPES: Final = frozenset({"cpu", "memory"})


def _metric_type(r: FieldReader, raw: Any, path: str, trigger_type: str = "") -> MetricType:
    """A trigger's or the modifiers' ``metricType``; never echoes the value."""
    if raw is None or raw == "":
        return MetricType.AVERAGE_VALUE
    if raw == "Utilization" and trigger_type in _RESOURCE_TYPES:
        return MetricType.UTILIZATION  # docs/scalers/cpu-memory.md
    if isinstance(raw, str):
        for member in (MetricType.AVERAGE_VALUE, MetricType.VALUE):
            if member.value == raw:
                return member
    if raw == "Utilization":
        r.fail(
            path,
            "metricType 'Utilization' is only for cpu/memory triggers; "
            "use 'AverageValue' or 'Value'",
        )
    else:
        choices = [MetricType.AVERAGE_VALUE.value, MetricType.VALUE.value]
        r.fail(
            path,
            f"must be one of {', '.join(choices)}; got {shown(raw)}{did_you_mean(raw, choices)}",
        )
    return MetricType.AVERAGE_VALUE


def _check_no_resource_triggers(r: FieldReader, triggers: Any) -> None:
    """KEDA: cpu/memory triggers are for ScaledObjects only (docs/scalers/cpu-memory.md)."""
    for i, trig in enumerate(triggers or ()):
        if trig.type in _RESOURCE_TYPES:
            r.fail(
                f"spec.triggers[{i}].type",
                f"{trig.type!r} triggers are for ScaledObjects only, not ScaledJobs",
            )


def _check_resource_only(r: FieldReader, spec: Mapping[str, Any], triggers: Any) -> None:
    """KEDA's webhook: only cpu/memory triggers cannot scale to zero (docs/scalers/cpu-memory.md)."""
    if (
        triggers
        and all(t.type in _RESOURCE_TYPES for t in triggers)
        and spec.get("minReplicaCount") == 0
        and not isinstance(spec.get("minReplicaCount"), bool)
    ):
        r.fail(
            "spec.minReplicaCount",
            "must be at least 1 when every trigger is cpu or memory (they cannot scale "
            "to zero); add an event trigger or raise minReplicaCount",
        )


def _read_trigger(r: FieldReader, value: Any, path: str) -> TriggerSpec | None:
    trig = r.mapping(
        value,
        path,
        ("type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"),
    )
    if trig is None:
        return None
    trigger_type = r.string(trig, "type", path, required=True) or ""
    name = r.string(trig, "name", path)
    if "metadata" not in trig:
        r.fail(f"{path}.metadata", "is required")
    metadata = r.string_map(trig, "metadata", path)
    metric_type = _metric_type(r, trig.get("metricType"), f"{path}.metricType", trigger_type)
    if (
        trigger_type in _RESOURCE_TYPES
        and trig.get("metricType") in (None, "")
        and "value" in metadata
        and not metadata.get("type")
    ):  # KEDA's cpu_memory_scaler.go: "unsupported metric type"
        r.fail(
            f"{path}.metricType",
            f"is required for {trigger_type} triggers: 'Utilization' or 'AverageValue'",
        )
    cached = r.boolean(trig, "useCachedMetrics", path, default=False)
    if cached and trigger_type in _NO_CACHE_TYPES:
        r.fail(f"{path}.useCachedMetrics", f"is not supported for {trigger_type!r} triggers")
    auth_ref: AuthenticationRef | None = None
    ref = r.sub(trig, "authenticationRef", path, ("name", "kind"))
    if ref is not None:
        ref_path = f"{path}.authenticationRef"
        auth_ref = AuthenticationRef(
            name=r.string(ref, "name", ref_path, required=True) or "",
            kind=r.string(ref, "kind", ref_path, default=TA_KINDS[0], choices=TA_KINDS)
            or TA_KINDS[0],
        )
    return TriggerSpec(
        type=trigger_type,
        metadata=metadata,
        name=name,
        metric_type=metric_type,
        use_cached_metrics=cached,
        authentication_ref=auth_ref,
    )


def _read_triggers(r: FieldReader, spec: Mapping[str, Any]) -> tuple[TriggerSpec, ...]:
    items = r.items(spec, "triggers", "spec")
    if items is None:
        if "triggers" not in spec or spec.get("triggers") is None:
            r.fail("spec.triggers", "is required")
        return ()
    if not items:
        r.fail("spec.triggers", "at least one trigger is required")
    out: list[TriggerSpec] = []
    for i, item in enumerate(items):
        trig = _read_trigger(r, item, f"spec.triggers[{i}]")
        if trig is not None:
            out.append(trig)
    return tuple(out)


def _read_rules(
    r: FieldReader, behavior: Mapping[str, Any], key: str, path: str
) -> ScalingRules | None:
    rules = r.sub(
        behavior, key, path, ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
    )
    if rules is None:
        return None
    rpath = f"{path}.{key}"
    window = r.integer(
        rules, "stabilizationWindowSeconds", rpath, default=None, minimum=0, maximum=3600
    )
    select = None
    if rules.get("selectPolicy") is not None:
        select = r.enum(rules, "selectPolicy", rpath, SelectPolicy, default=SelectPolicy.MAX)
    policies: tuple[ScalingPolicy, ...] | None = None
    items = r.items(rules, "policies", rpath)
    if items is not None:
        if not items:
            r.fail(f"{rpath}.policies", "must hold at least one policy (omit it for the default)")
        collected: list[ScalingPolicy] = []
        for j, item in enumerate(items):
            ppath = f"{rpath}.policies[{j}]"
            pol = r.mapping(item, ppath, ("type", "value", "periodSeconds"))
            if pol is None:
                continue
            before = len(r.errors)
            if pol.get("type") is None:
                r.fail(f"{ppath}.type", "is required")
            ptype = r.enum(pol, "type", ppath, PolicyType, default=PolicyType.PODS)
            value = r.integer(pol, "value", ppath, default=None, required=True, minimum=1)
            period = r.integer(
                pol, "periodSeconds", ppath, default=None, required=True, minimum=1, maximum=1800
            )
            if len(r.errors) == before and value is not None and period is not None:
                collected.append(ScalingPolicy(type=ptype, value=value, period_seconds=period))
        policies = tuple(collected)
    tolerance = None
    if rules.get("tolerance") is not None:
        tolerance = _read_quantity(r, rules, "tolerance", rpath)
    return ScalingRules(
        stabilization_window_seconds=window,
        select_policy=select,
        policies=policies,
        tolerance=tolerance,
    )


_QUANTITY: Final = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<milli>m?)")


def _read_quantity(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """A non-negative Kubernetes quantity such as ``0.05``, ``"0.1"`` or ``"50m"``."""
    value = obj.get(key)
    field = f"{path}.{key}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            r.fail(field, f"must be a quantity >= 0, got {shown(value)}")
            return None
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY.fullmatch(value.strip())
        if m:
            number = float(m["num"])
            return number / 1000 if m["milli"] else number
    r.fail(field, f"must be a quantity >= 0 such as 0.1 or '100m', got {shown(value)}")
    return None


def _read_advanced(r: FieldReader, spec: Mapping[str, Any]) -> Advanced:
    adv = r.sub(
        spec,
        "advanced",
        "spec",
        ("restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers"),
    )
    if adv is None:
        return Advanced()
    path = "spec.advanced"
    restore = r.boolean(adv, "restoreToOriginalReplicaCount", path, default=False)
    hpa = HPAConfig()
    hpa_map = r.sub(adv, "horizontalPodAutoscalerConfig", path, ("name", "behavior"))
    if hpa_map is not None:
        hpath = f"{path}.horizontalPodAutoscalerConfig"
        behavior = None
        beh = r.sub(hpa_map, "behavior", hpath, ("scaleUp", "scaleDown"))
        if beh is not None:
            bpath = f"{hpath}.behavior"
            behavior = Behavior(
                scale_up=_read_rules(r, beh, "scaleUp", bpath),
                scale_down=_read_rules(r, beh, "scaleDown", bpath),
            )
        hpa = HPAConfig(name=r.string(hpa_map, "name", hpath), behavior=behavior)
    modifiers = None
    mods = r.sub(
        adv, "scalingModifiers", path, ("formula", "target", "activationTarget", "metricType")
    )
    if mods is not None:
        mpath = f"{path}.scalingModifiers"
        formula = r.string(mods, "formula", mpath, required=True)
        target = r.number(mods, "target", mpath, required=True)
        activation = r.number(mods, "activationTarget", mpath)
        metric_type = _metric_type(r, mods.get("metricType"), f"{mpath}.metricType")
        if formula is not None and target is not None:
            modifiers = ScalingModifiers(
                formula=formula,
                target=target,
                activation_target=activation if activation is not None else 0.0,
                metric_type=metric_type,
            )
    return Advanced(
        restore_to_original_replica_count=restore,
        horizontal_pod_autoscaler_config=hpa,
        scaling_modifiers=modifiers,
    )


def _read_fallback(r: FieldReader, spec: Mapping[str, Any]) -> Fallback | None:
    fb = r.sub(spec, "fallback", "spec", ("failureThreshold", "replicas", "behavior"))
    if fb is None:
        return None
    path = "spec.fallback"
    threshold = r.integer(fb, "failureThreshold", path, default=None, required=True, minimum=0)
    replicas = r.integer(fb, "replicas", path, default=None, required=True, minimum=0)
    behavior = r.enum(fb, "behavior", path, FallbackBehavior, default=FallbackBehavior.STATIC)
    if threshold is None or replicas is None:
        return None
    return Fallback(failure_threshold=threshold, replicas=replicas, behavior=behavior)


_SO_SPEC_FIELDS: Final = (
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "advanced",
    "fallback",
    "triggers",
)


def read_scaled_object(r: FieldReader, doc: Mapping[str, Any]) -> ScaledObjectSpec | None:
    """The ScaledObject ``doc``, or ``None`` when ``r`` recorded problems."""
    meta = r.object_meta(doc)
    spec = r.sub(doc, "spec", "", _SO_SPEC_FIELDS, required=True)
    if spec is None:
        return None
    target = r.sub(
        spec,
        "scaleTargetRef",
        "spec",
        ("name", "kind", "apiVersion", "envSourceContainerName"),
        required=True,
    )
    target_ref = None
    if target is not None:
        tpath = "spec.scaleTargetRef"
        target_ref = ScaleTargetRef(
            name=r.string(target, "name", tpath, required=True) or "",
            kind=r.string(target, "kind", tpath, default="Deployment") or "Deployment",
            api_version=r.string(target, "apiVersion", tpath, default="apps/v1") or "apps/v1",
            env_source_container_name=r.string(target, "envSourceContainerName", tpath),
        )
    polling = r.integer(spec, "pollingInterval", "spec", default=30, minimum=1)
    cooldown = r.integer(spec, "cooldownPeriod", "spec", default=300, minimum=0)
    initial = r.integer(spec, "initialCooldownPeriod", "spec", default=0, minimum=0)
    min_count = r.integer(spec, "minReplicaCount", "spec", default=0, minimum=0)
    max_count = r.integer(spec, "maxReplicaCount", "spec", default=100, minimum=1)
    idle = r.integer(spec, "idleReplicaCount", "spec", default=None, minimum=0)
    advanced = _read_advanced(r, spec)
    fallback = _read_fallback(r, spec)
    triggers = _read_triggers(r, spec)
    _check_resource_only(r, spec, triggers)
    if target_ref is None:
        return None
    return r.build(
        lambda: ScaledObjectSpec(
            name=meta.name,
            namespace=meta.namespace,
            labels=meta.labels,
            annotations=meta.annotations,
            scale_target_ref=target_ref,
            triggers=triggers,
            polling_interval=float(polling if polling is not None else 30),
            cooldown_period=float(cooldown if cooldown is not None else 300),
            initial_cooldown_period=float(initial if initial is not None else 0),
            min_replica_count=min_count if min_count is not None else 0,
            max_replica_count=max_count if max_count is not None else 100,
            idle_replica_count=idle,
            fallback=fallback,
            advanced=advanced,
        ),
        check=_check_paused_replicas,
    )


def _check_paused_replicas(spec: ScaledObjectSpec) -> None:
    _ = spec.paused_replicas  # raises ConfigError naming the annotation


_SJ_SPEC_FIELDS: Final = (
    "jobTargetRef",
    "pollingInterval",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "rolloutStrategy",
    "rollout",
    "envSourceContainerName",
    "minReplicaCount",
    "maxReplicaCount",
    "scalingStrategy",
    "triggers",
)


def read_scaled_job(r: FieldReader, doc: Mapping[str, Any]) -> ScaledJobSpec | None:
    """The ScaledJob ``doc``, or ``None`` when ``r`` recorded problems."""
    meta = r.object_meta(doc)
    spec = r.sub(doc, "spec", "", _SJ_SPEC_FIELDS, required=True)
    if spec is None:
        return None
    job = r.sub(spec, "jobTargetRef", "spec", required=True)
    if job is not None and not isinstance(job.get("template"), Mapping):
        r.fail("spec.jobTargetRef.template", "is required (a Job's pod template)")
    polling = r.integer(spec, "pollingInterval", "spec", default=30, minimum=1)
    ok_limit = r.integer(spec, "successfulJobsHistoryLimit", "spec", default=100, minimum=0)
    bad_limit = r.integer(spec, "failedJobsHistoryLimit", "spec", default=100, minimum=0)
    min_count = r.integer(spec, "minReplicaCount", "spec", default=0, minimum=0)
    max_count = r.integer(spec, "maxReplicaCount", "spec", default=None, minimum=0)
    env_container = r.string(spec, "envSourceContainerName", "spec")
    legacy = r.string(spec, "rolloutStrategy", "spec", choices=("default", "gradual"))
    rollout = JobRollout(strategy=legacy or "default")
    ro = r.sub(spec, "rollout", "spec", ("strategy", "propagationPolicy"))
    if ro is not None:
        rollout = JobRollout(
            strategy=r.string(
                ro,
                "strategy",
                "spec.rollout",
                default=legacy or "default",
                choices=("default", "gradual"),
            )
            or "default",
            propagation_policy=r.string(
                ro,
                "propagationPolicy",
                "spec.rollout",
                default="background",
                choices=("background", "foreground"),
            )
            or "background",
        )
    strategy = ScalingStrategy.DEFAULT
    deduction: int | None = None
    percentage: str | None = None
    pending: tuple[str, ...] = ()
    calculation = "max"
    ss = r.sub(
        spec,
        "scalingStrategy",
        "spec",
        (
            "strategy",
            "customScalingQueueLengthDeduction",
            "customScalingRunningJobPercentage",
            "pendingPodConditions",
            "multipleScalersCalculation",
        ),
    )
    if ss is not None:
        spath = "spec.scalingStrategy"
        strategy = r.enum(ss, "strategy", spath, ScalingStrategy, default=ScalingStrategy.DEFAULT)
        deduction = r.integer(ss, "customScalingQueueLengthDeduction", spath, default=None)
        raw_pct = ss.get("customScalingRunningJobPercentage")
        if raw_pct is not None:
            pct_path = f"{spath}.customScalingRunningJobPercentage"
            percentage = r.scalar_text(raw_pct, pct_path)
            if percentage is None or isinstance(raw_pct, bool):
                r.fail(pct_path, f"must be a number written as a string, got {shown(raw_pct)}")
                percentage = None
            else:
                try:
                    float(percentage)
                except ValueError:
                    r.fail(pct_path, f"must be a number such as '0.5', got {shown(raw_pct)}")
        conds = r.items(ss, "pendingPodConditions", spath)
        if conds is not None:
            good: list[str] = []
            for k, cond in enumerate(conds):
                if isinstance(cond, str) and cond:
                    good.append(cond)
                else:
                    r.fail(f"{spath}.pendingPodConditions[{k}]", "must be a condition type name")
            pending = tuple(good)
        calculation = (
            r.string(
                ss,
                "multipleScalersCalculation",
                spath,
                default="max",
                choices=("max", "min", "avg", "sum"),
            )
            or "max"
        )
    triggers = _read_triggers(r, spec)
    _check_no_resource_triggers(r, triggers)
    if job is None:
        return None
    return r.build(
        lambda: ScaledJobSpec(
            name=meta.name,
            namespace=meta.namespace,
            labels=meta.labels,
            annotations=meta.annotations,
            job_target_ref=dict(job),
            triggers=triggers,
            env_source_container_name=env_container,
            polling_interval=float(polling if polling is not None else 30),
            successful_jobs_history_limit=ok_limit if ok_limit is not None else 100,
            failed_jobs_history_limit=bad_limit if bad_limit is not None else 100,
            min_replica_count=min_count if min_count is not None else 0,
            max_replica_count=max_count,  # None: not set (KEDA's 100, not less minReplicaCount)
            rollout=rollout,
            strategy=strategy,
            custom_scaling_queue_length_deduction=deduction,
            custom_scaling_running_job_percentage=percentage,
            pending_pod_conditions=pending,
            multiple_scalers_calculation=calculation,
        ),
    )
