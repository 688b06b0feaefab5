"""eventscale.manifests.writer: ``load(to_manifest(spec)) == spec`` for every example file and
for generated specs, as dicts and as YAML; only non-defaults are written."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventscale.errors import ConfigError
from eventscale.manifests.reader import load_manifests, load_scaled_object
from eventscale.manifests.writer import dump_manifests, to_manifest
from eventscale.metrics import MetricType
from eventscale.spec import (
    ANNOTATION_PAUSED,
    ANNOTATION_PAUSED_REPLICAS,
    Advanced,
    AuthenticationRef,
    Behavior,
    ConfigMapRef,
    EnvRef,
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
    SecretRef,
    SelectPolicy,
    TriggerAuthenticationSpec,
    TriggerSpec,
)
from manifests._docs import FIXTURES, load, so_doc

names = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
keys = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,12}", fullmatch=True)
# Any text YAML can carry (no surrogates), including "", "010", "yes", "1e3" and newlines.
texts = st.text(st.characters(codec="utf-8"), max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
seconds = st.integers(min_value=0, max_value=100_000).map(float)
TRIGGER_TYPES = ("kafka", "rabbitmq", "redis", "redis-streams", "azure-queue", "cron", "x-y")


# Utilization is for cpu/memory triggers only (test_reader.py covers it).
EXTERNAL_TYPES = (MetricType.AVERAGE_VALUE, MetricType.VALUE)


@st.composite
def triggers(draw: st.DrawFn, *, named: bool) -> tuple[TriggerSpec, ...]:
    count = draw(st.integers(min_value=1, max_value=3))
    trigger_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    out = []
    for name in trigger_names:
        trigger_type = draw(st.sampled_from(TRIGGER_TYPES))
        ref = draw(
            st.none()
            | st.builds(
                AuthenticationRef,
                name=names,
                kind=st.sampled_from(["TriggerAuthentication", "ClusterTriggerAuthentication"]),
            )
        )
        out.append(
            TriggerSpec(
                type=trigger_type,
                metadata=draw(st.dictionaries(keys, texts, max_size=4)),
                name=name if named or draw(st.booleans()) else None,
                metric_type=draw(st.sampled_from(EXTERNAL_TYPES)),
                use_cached_metrics=trigger_type != "cron" and draw(st.booleans()),
                authentication_ref=ref,
            )
        )
    return tuple(out)


policies = st.builds(
    ScalingPolicy,
    type=st.sampled_from(PolicyType),
    value=st.integers(min_value=1, max_value=1000),
    period_seconds=st.integers(min_value=1, max_value=1800),
)
rules = st.builds(
    ScalingRules,
    stabilization_window_seconds=st.none() | st.integers(min_value=0, max_value=3600),
    select_policy=st.none() | st.sampled_from(SelectPolicy),
    policies=st.none() | st.lists(policies, min_size=1, max_size=3).map(tuple),
    tolerance=st.none() | st.floats(min_value=0, max_value=10, allow_nan=False),
)
annotation_maps = st.dictionaries(
    st.sampled_from(["team", "example.com/owner", ANNOTATION_PAUSED]), texts, max_size=2
) | st.integers(min_value=0, max_value=50).map(lambda n: {ANNOTATION_PAUSED_REPLICAS: str(n)})


@st.composite
def scaled_objects(draw: st.DrawFn) -> ScaledObjectSpec:
    modifiers = draw(
        st.none()
        | st.builds(
            ScalingModifiers,
            formula=texts.filter(bool),
            target=st.floats(min_value=1e-6, max_value=1e9),
            activation_target=finite,
            metric_type=st.sampled_from(EXTERNAL_TYPES),
        )
    )
    minimum = draw(st.integers(min_value=0, max_value=50))
    maximum = draw(st.integers(min_value=max(minimum, 1), max_value=1000))
    idle = draw(st.none() | st.integers(min_value=0, max_value=max(minimum - 1, 0)))
    if idle is not None and idle >= minimum:
        idle = None
    behaviors = [b for b in FallbackBehavior if modifiers or b is not b.SCALING_MODIFIERS]
    fallback = draw(
        st.none()
        | st.builds(
            Fallback,
            failure_threshold=st.integers(min_value=0, max_value=10),
            replicas=st.integers(min_value=0, max_value=10),
            behavior=st.sampled_from(behaviors),
        )
    )
    behavior = draw(
        st.none() | st.builds(Behavior, scale_up=st.none() | rules, scale_down=st.none() | rules)
    )
    return ScaledObjectSpec(
        name=draw(names),
        namespace=draw(names),
        labels=draw(st.dictionaries(keys, texts, max_size=2)),
        annotations=draw(annotation_maps),
        scale_target_ref=ScaleTargetRef(
            name=draw(names),
            kind=draw(st.sampled_from(["Deployment", "StatefulSet", "Rollout"])),
            api_version=draw(st.sampled_from(["apps/v1", "argoproj.io/v1alpha1"])),
            env_source_container_name=draw(st.none() | names),
        ),
        triggers=draw(triggers(named=modifiers is not None)),
        polling_interval=draw(st.integers(min_value=1, max_value=3600).map(float)),
        cooldown_period=draw(seconds),
        initial_cooldown_period=draw(seconds),
        min_replica_count=minimum,
        max_replica_count=maximum,
        idle_replica_count=idle,
        fallback=fallback,
        advanced=Advanced(
            restore_to_original_replica_count=draw(st.booleans()),
            horizontal_pod_autoscaler_config=HPAConfig(
                name=draw(st.none() | names), behavior=behavior
            ),
            scaling_modifiers=modifiers,
        ),
    )


json_leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | texts
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def scaled_jobs(draw: st.DrawFn) -> ScaledJobSpec:
    template: dict[str, Any] = {"spec": draw(st.dictionaries(keys, json_values, max_size=3))}
    extra = draw(st.dictionaries(keys.filter(lambda k: k != "template"), json_values, max_size=2))
    return ScaledJobSpec(
        name=draw(names),
        namespace=draw(names),
        labels=draw(st.dictionaries(keys, texts, max_size=2)),
        annotations=draw(st.dictionaries(keys, texts, max_size=2)),
        job_target_ref={**extra, "template": template},
        triggers=draw(triggers(named=False)),
        env_source_container_name=draw(st.none() | names),
        polling_interval=draw(st.integers(min_value=1, max_value=3600).map(float)),
        successful_jobs_history_limit=draw(st.integers(min_value=0, max_value=1000)),
        failed_jobs_history_limit=draw(st.integers(min_value=0, max_value=1000)),
        min_replica_count=draw(st.integers(min_value=0, max_value=100)),
        max_replica_count=draw(st.integers(min_value=0, max_value=1000)),
        rollout=JobRollout(
            strategy=draw(st.sampled_from(["default", "gradual"])),
            propagation_policy=draw(st.sampled_from(["background", "foreground"])),
        ),
        strategy=draw(st.sampled_from(ScalingStrategy)),
        custom_scaling_queue_length_deduction=draw(st.none() | st.integers(-5, 100)),
        custom_scaling_running_job_percentage=draw(
            st.none() | st.floats(min_value=0, max_value=1).map(repr)
        ),
        pending_pod_conditions=tuple(draw(st.lists(keys, max_size=3))),
        multiple_scalers_calculation=draw(st.sampled_from(["max", "min", "avg", "sum"])),
    )


trigger_auths = st.builds(
    TriggerAuthenticationSpec,
    name=names,
    kind=st.sampled_from(["TriggerAuthentication", "ClusterTriggerAuthentication"]),
    namespace=names,
    secret_target_ref=st.lists(
        st.builds(SecretRef, parameter=keys, name=names, key=keys), max_size=3
    ).map(tuple),
    config_map_target_ref=st.lists(
        st.builds(ConfigMapRef, parameter=keys, name=names, key=keys), max_size=2
    ).map(tuple),
    env=st.lists(
        st.builds(EnvRef, parameter=keys, name=keys, container_name=st.none() | names), max_size=2
    ).map(tuple),
    pod_identity=st.none()
    | st.sampled_from([{"provider": "none"}, {"provider": "aws", "roleArn": "r"}]),
    other=st.sampled_from([{}, {"hashiCorpVault": {"address": "http://vault:8200"}}]),
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scaled_objects())
def test_scaled_object_round_trip(spec: ScaledObjectSpec) -> None:
    assert load_manifests(to_manifest(spec)).scaled_objects == (spec,)
    assert load_manifests(dump_manifests(spec)).scaled_objects == (spec,)


@SETTINGS
@given(scaled_jobs())
def test_scaled_job_round_trip(spec: ScaledJobSpec) -> None:
    assert load_manifests(to_manifest(spec)).scaled_jobs == (spec,)
    assert load_manifests(dump_manifests(spec)).scaled_jobs == (spec,)


@SETTINGS
@given(trigger_auths)
def test_trigger_authentication_round_trip(spec: TriggerAuthenticationSpec) -> None:
    key = (spec.kind, spec.name)
    assert load_manifests(to_manifest(spec)).trigger_authentications == {key: spec}
    assert load_manifests(dump_manifests(spec)).trigger_authentications == {key: spec}


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in FIXTURES.glob("*.yaml")),
)
def test_every_fixture_round_trips(name: str) -> None:
    m = load(name)
    specs: list[ScaledObjectSpec | ScaledJobSpec | TriggerAuthenticationSpec] = [
        *m.scaled_objects,
        *m.scaled_jobs,
        *m.trigger_authentications.values(),
    ]
    assert specs
    again = load_manifests([to_manifest(s) for s in specs])
    assert [*again.scaled_objects, *again.scaled_jobs] == [*m.scaled_objects, *m.scaled_jobs]
    assert again.trigger_authentications == m.trigger_authentications
    # And through YAML text.
    text = load_manifests(dump_manifests(*specs))
    assert text.scaled_objects == m.scaled_objects
    assert text.scaled_jobs == m.scaled_jobs
    assert text.trigger_authentications == m.trigger_authentications


def test_to_manifest_rejects_fractional_seconds() -> None:
    so = load_scaled_object(so_doc())
    with pytest.raises(ConfigError) as info:
        to_manifest(attrs.evolve(so, polling_interval=2.5))
    assert info.value.path == "spec.pollingInterval"


def test_to_manifest_writes_only_non_defaults() -> None:
    assert to_manifest(load_scaled_object(so_doc()))["spec"] == {
        "scaleTargetRef": {"name": "worker"},
        "triggers": [{"type": "redis", "metadata": {"listName": "jobs", "listLength": "5"}}],
    }
