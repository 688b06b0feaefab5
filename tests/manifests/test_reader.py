"""KEDA manifests: parsing the documented examples, defaults, validation paths, auth."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.manifests import resolve_trigger_contexts
from eventscale.manifests.reader import (
    Manifests,
    load_manifests,
    load_scaled_job,
    load_scaled_object,
    load_trigger_authentication,
)
from eventscale.manifests.writer import dump_manifests
from eventscale.metrics import MetricType
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.params import AUTH, ENV, META, Params
from eventscale.spec import (
    FallbackBehavior,
    PolicyType,
    ScaledJobSpec,
    ScaledObjectSpec,
    ScalingStrategy,
    SelectPolicy,
)
from manifests._docs import fixture, load, so_doc

# ----------------------------------------------------------------------------- examples


def test_kafka_example_and_its_secret_backed_auth() -> None:
    m = load("kafka.yaml")
    so = m.scaled_object()
    assert so.name == "kafka-scaledobject"
    assert so.scale_target_ref.name == "order-processor"
    assert so.scale_target_ref.kind == "Deployment"
    (trig,) = so.triggers
    assert trig.type == "kafka"
    assert trig.metadata["lagThreshold"] == "5"
    assert trig.metadata["partitionLimitation"] == "1,2,10-20,31"
    # YAML booleans in metadata are normalised to KEDA's strings.
    assert trig.metadata["allowIdleConsumers"] == "false"
    assert trig.authentication_ref is not None
    assert trig.authentication_ref.name == "keda-trigger-auth-kafka-credential"

    (ctx,) = m.trigger_contexts(so)
    assert isinstance(ctx, TriggerContext)
    assert ctx.path == "spec.triggers[0]"
    assert ctx.trigger_type == "kafka"
    assert ctx.index == 0
    assert {k: v.reveal() for k, v in ctx.auth.items() if isinstance(v, Secret)} == {
        "sasl": "plaintext",
        "username": "admin",
        "password": "s3cr3t",
        "tls": "enable",
        "ca": "-----BEGIN CERTIFICATE-----",
    }
    # The shared parameter helper reads the resolved context.
    p = Params(ctx)
    assert p.string("topic") == "test-topic"
    assert p.integer("lagThreshold", default=10) == 5
    secret = p.secret("password", order=(AUTH,))
    assert secret is not None
    assert secret.reveal() == "s3cr3t"
    p.finish()


def test_kafka_example_defaults() -> None:
    so = load("kafka.yaml").scaled_object()
    assert so.polling_interval == 30
    assert so.cooldown_period == 300
    assert so.initial_cooldown_period == 0
    assert so.min_replica_count == 0
    assert so.max_replica_count == 100
    assert so.idle_replica_count is None
    assert so.fallback is None
    assert so.advanced.scaling_modifiers is None
    assert so.behavior is None
    assert so.triggers[0].metric_type is MetricType.AVERAGE_VALUE
    assert so.triggers[0].use_cached_metrics is False
    assert not so.paused
    assert so.paused_replicas is None


def test_rabbitmq_example_host_from_base64_secret() -> None:
    m = load("rabbitmq.yaml")
    so = m.scaled_object("rabbitmq-scaledobject")
    assert so.triggers[0].metadata == {
        "protocol": "amqp",
        "queueName": "testqueue",
        "mode": "QueueLength",
        "value": "20",
        "activationValue": "2",
    }
    (ctx,) = m.trigger_contexts(so)
    host = ctx.auth["host"]
    assert isinstance(host, Secret)
    assert host.reveal() == "amqp://guest:password@localhost:5672/vhost"
    assert "password" not in repr(ctx.auth)


def test_redis_example_auth_from_env() -> None:
    m = load("redis.yaml")
    so = m.scaled_object()
    assert so.namespace == "jobs"
    assert (so.min_replica_count, so.max_replica_count) == (1, 20)
    assert so.scale_target_ref.env_source_container_name == "worker"
    ta = m.trigger_authentication("keda-trigger-auth-redis-secret")
    assert ta.env[0].container_name == "worker"
    (ctx,) = m.trigger_contexts(so, env={"REDIS_PASSWORD": "pw-from-env"})
    assert ctx.auth == {"password": Secret("pw-from-env")}
    assert ctx.env == {"REDIS_PASSWORD": "pw-from-env"}


def test_redis_streams_example_from_env_metadata() -> None:
    so = load_scaled_object(fixture("redis-streams.yaml"))
    assert (so.polling_interval, so.cooldown_period) == (15, 200)
    assert (so.min_replica_count, so.max_replica_count) == (1, 25)
    (ctx,) = resolve_trigger_contexts(so, env={"REDIS_HOST": "h:6379", "REDIS_PASSWORD": "x"})
    p = Params(ctx)
    assert p.string("address", order=(META, ENV)) == "h:6379"
    assert p.integer("pendingEntriesCount") == 10
    p.finish()


def test_azure_servicebus_example_two_triggers_share_auth() -> None:
    m = load("azure-servicebus.yaml")
    so = m.scaled_object()
    assert [t.type for t in so.triggers] == ["azure-servicebus", "azure-servicebus"]
    assert so.triggers[1].metadata["messageCount"] == "10"
    assert so.triggers[1].metadata["useRegex"] == "false"
    contexts = m.trigger_contexts(so)
    assert [c.path for c in contexts] == ["spec.triggers[0]", "spec.triggers[1]"]
    for ctx in contexts:
        conn = ctx.auth["connection"]
        assert isinstance(conn, Secret)
        assert conn.reveal().startswith("Endpoint=sb://example.servicebus.windows.net/")


def test_azure_queue_and_cron_examples() -> None:
    queue = load_scaled_object(fixture("azure-queue.yaml"))
    assert queue.triggers[0].metadata["connectionFromEnv"] == "STORAGE_CONNECTIONSTRING_ENV_NAME"
    assert queue.triggers[0].metadata["activationQueueLength"] == "50"
    cron = load_scaled_object(fixture("cron.yaml"))
    assert cron.triggers[0].metadata == {
        "timezone": "Asia/Kolkata",
        "start": "30 * * * *",
        "end": "45 * * * *",
        "desiredReplicas": "10",
    }


def test_scaled_job_example() -> None:
    sj = load_scaled_job(fixture("scaledjob.yaml"))
    assert isinstance(sj, ScaledJobSpec)
    assert sj.name == "rabbitmq-consumer"
    assert sj.labels == {"team": "payments"}
    assert sj.job_target_ref["backoffLimit"] == 6
    assert sj.job_target_ref["template"]["spec"]["restartPolicy"] == "Never"
    assert sj.polling_interval == 10
    assert (sj.successful_jobs_history_limit, sj.failed_jobs_history_limit) == (5, 5)
    assert sj.env_source_container_name == "rabbitmq-client"
    assert (sj.min_replica_count, sj.max_replica_count) == (10, 100)
    assert (sj.rollout.strategy, sj.rollout.propagation_policy) == ("gradual", "foreground")
    assert sj.strategy is ScalingStrategy.CUSTOM
    assert sj.custom_scaling_queue_length_deduction == 1
    assert sj.custom_scaling_running_job_percentage == "0.5"
    assert sj.pending_pod_conditions == ("Ready", "PodScheduled")
    assert sj.multiple_scalers_calculation == "sum"
    (ctx,) = resolve_trigger_contexts(sj, env={"RABBITMQ_URL": "amqp://u:p@h/"})
    assert Params(ctx).string("host", order=(META, ENV)) == "amqp://u:p@h/"


def test_scaled_job_defaults() -> None:
    sj = load_scaled_job(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledJob",
            "metadata": {"name": "j"},
            "spec": {
                "jobTargetRef": {"template": {"spec": {"containers": []}}},
                "triggers": [{"type": "redis", "metadata": {"listName": "l"}}],
            },
        }
    )
    assert sj.polling_interval == 30
    assert (sj.successful_jobs_history_limit, sj.failed_jobs_history_limit) == (100, 100)
    assert (sj.min_replica_count, sj.max_replica_count, sj.effective_max) == (0, None, 100)
    assert sj.strategy is ScalingStrategy.DEFAULT
    assert sj.multiple_scalers_calculation == "max"
    assert (sj.rollout.strategy, sj.rollout.propagation_policy) == ("default", "background")
    assert sj.custom_scaling_queue_length_deduction is None
    assert sj.pending_pod_conditions == ()


def test_advanced_example_every_section() -> None:
    so = load_scaled_object(fixture("advanced.yaml"))
    assert so.namespace == "shop"
    assert so.scale_target_ref.kind == "StatefulSet"
    assert so.paused_replicas == 3
    assert so.paused is False  # "false" unpauses
    assert so.paused_scale_in is True
    assert so.paused_scale_out is False
    assert (so.polling_interval, so.cooldown_period, so.initial_cooldown_period) == (5, 60, 120)
    assert (so.idle_replica_count, so.min_replica_count, so.max_replica_count) == (0, 2, 50)
    assert so.fallback is not None
    assert so.fallback.failure_threshold == 3
    assert so.fallback.replicas == 6
    assert so.fallback.behavior is FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER
    assert so.advanced.restore_to_original_replica_count is True
    assert so.advanced.horizontal_pod_autoscaler_config.name == "orders-hpa"
    behavior = so.behavior
    assert behavior is not None
    assert behavior.scale_down is not None
    assert behavior.scale_down.stabilization_window_seconds == 300
    assert behavior.scale_down.select_policy is None
    assert behavior.scale_down.policies is not None
    assert [(p.type, p.value, p.period_seconds) for p in behavior.scale_down.policies] == [
        (PolicyType.PERCENT, 100, 15)
    ]
    assert behavior.scale_up is not None
    assert behavior.scale_up.stabilization_window_seconds == 0
    assert behavior.scale_up.select_policy is SelectPolicy.MAX
    assert behavior.scale_up.tolerance == pytest.approx(0.05)
    assert behavior.scale_up.policies is not None
    assert [p.type for p in behavior.scale_up.policies] == [PolicyType.PERCENT, PolicyType.PODS]
    mods = so.advanced.scaling_modifiers
    assert mods is not None
    assert mods.formula == "(queue + backlog) / 2"
    assert (mods.target, mods.activation_target) == (5.0, 1.5)
    assert mods.metric_type is MetricType.VALUE
    assert [t.name for t in so.triggers] == ["queue", "backlog"]
    assert so.triggers[0].use_cached_metrics is True
    assert so.triggers[1].metric_type is MetricType.VALUE
    assert so.triggers[0].metadata["listLength"] == "10"


# ----------------------------------------------------------------------------- reading details


def test_metadata_numbers_keep_their_written_text() -> None:
    text = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef: {name: w}
  triggers:
  - type: kafka
    metadata:
      lagThreshold: 010
      activationLagThreshold: 1.50
      offsetTime: 12:30
      enabled: yes
      empty:
"""
    meta = load_scaled_object(text).triggers[0].metadata
    # 010 stays "010" (which KEDA's integer parser rejects) rather than becoming 8.
    assert meta == {
        "lagThreshold": "010",
        "activationLagThreshold": "1.50",
        "offsetTime": "12:30",
        "enabled": "true",
        "empty": "",
    }
    # From a dict there is no source text: ints become str(int).
    d = so_doc()
    d["spec"]["triggers"][0]["metadata"]["listLength"] = 7
    assert load_scaled_object(d).triggers[0].metadata["listLength"] == "7"


def test_unknown_metadata_keys_are_kept() -> None:
    d = so_doc()
    d["spec"]["triggers"][0]["metadata"]["somethingNew"] = "x"
    assert load_scaled_object(d).triggers[0].metadata["somethingNew"] == "x"


def test_multi_document_errors_are_prefixed_and_all_collected() -> None:
    bad = _set(so_doc(pollingInterval=0), "metadata.name", "bad")
    worse = _set(so_doc(cooldownPeriod=-1, maxReplicaCount="x"), "metadata.name", "worse")
    with pytest.raises(ConfigError) as info:
        load_manifests([so_doc(), bad, worse])
    assert set(info.value.all_paths()) == {
        "[doc 1].spec.pollingInterval",
        "[doc 2].spec.cooldownPeriod",
        "[doc 2].spec.maxReplicaCount",
    }


def test_yaml_errors_carry_the_line() -> None:
    text = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: [so\n"
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_manifests(text)


def test_field_errors_carry_the_line_of_the_field() -> None:
    text = (
        fixture("cron.yaml")
        .replace("desiredReplicas", "desiredReplicas")
        .replace("  triggers:", "  pollingInterval: fast\n  triggers:")
    )
    with pytest.raises(ConfigError) as info:
        load_manifests(text)
    assert info.value.path == "spec.pollingInterval"
    line = text.splitlines().index("  pollingInterval: fast") + 1
    assert f"(line {line})" in str(info.value)


def test_empty_documents_and_v1_list_are_read() -> None:
    text = "---\n---\n" + dump_manifests(load_scaled_object(so_doc()))
    assert len(load_manifests(text).scaled_objects) == 1
    listed = {"apiVersion": "v1", "kind": "List", "items": [so_doc(), fixture_dict_secret()]}
    m = load_manifests(listed)
    assert len(m.scaled_objects) == 1
    assert m.secrets["s"]["k"] == Secret("v")


def fixture_dict_secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}


def test_unknown_kinds_can_be_ignored() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}}
    with pytest.raises(ConfigError) as info:
        load_manifests([deployment, so_doc()])
    assert info.value.path == "[doc 0].kind"
    m = load_manifests([deployment, so_doc()], ignore_unknown_kinds=True)
    assert len(m.scaled_objects) == 1


def test_status_and_object_meta_from_kubectl_are_accepted() -> None:
    d = so_doc()
    d["metadata"].update(uid="1234", resourceVersion="7", generation=2)
    d["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert load_scaled_object(d).name == "so"


def test_string_data_overrides_data_in_a_secret() -> None:
    secret = fixture_dict_secret()
    secret["stringData"] = {"k": "plain", "n": 5}
    m = load_manifests(secret)
    assert m.secrets["s"] == {"k": Secret("plain"), "n": Secret("5")}


def test_duplicate_objects_are_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_manifests([so_doc(), so_doc()])
    assert info.value.path == "[doc 1].metadata.name"


def test_pick_needs_a_name_when_several() -> None:
    other = so_doc()
    other["metadata"]["name"] = "other"
    m = load_manifests([so_doc(), other])
    with pytest.raises(ConfigError, match="exactly one ScaledObject"):
        m.scaled_object()
    assert m.scaled_object("other").name == "other"
    with pytest.raises(ConfigError, match="no ScaledObject named 'nope'"):
        m.scaled_object("nope")


# ----------------------------------------------------------------------------- malformed

_DELETE = object()


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``path`` (``spec.triggers[0].name``) set or deleted."""
    out = copy.deepcopy(doc)
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    node: Any = out
    for part in parts[:-1]:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


BASE_SO = so_doc()
BEHAVIOR = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
POLICY = {"type": "Pods", "value": 1, "periodSeconds": 15}
BASE_SJ: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledJob",
    "metadata": {"name": "job"},
    "spec": {
        "jobTargetRef": {"template": {"spec": {"containers": []}}},
        "triggers": [{"type": "rabbitmq", "metadata": {"queueName": "q"}}],
    },
}
BASE_TA: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "TriggerAuthentication",
    "metadata": {"name": "auth"},
    "spec": {"secretTargetRef": [{"parameter": "password", "name": "s", "key": "k"}]},
}


def _named_triggers(*names: str | None) -> list[dict[str, Any]]:
    out = []
    for name in names:
        trig: dict[str, Any] = {"type": "redis", "metadata": {"listName": "l"}}
        if name is not None:
            trig["name"] = name
        out.append(trig)
    return out


MALFORMED: list[Any] = [
    pytest.param(
        _set(_set(BASE_SO, "spec.minReplicaCount", 10), "spec.maxReplicaCount", 5),
        "spec.minReplicaCount",
        id="min-greater-than-max",
    ),
    pytest.param(
        _set(_set(BASE_SO, "spec.minReplicaCount", 2), "spec.idleReplicaCount", 2),
        "spec.idleReplicaCount",
        id="idle-not-below-min",
    ),
    pytest.param(_set(BASE_SO, "spec.pollingInterval", 0), "spec.pollingInterval", id="polling-0"),
    pytest.param(
        _set(BASE_SO, "spec.pollingInterval", "30"), "spec.pollingInterval", id="polling-string"
    ),
    pytest.param(
        _set(BASE_SO, "spec.pollingInterval", True), "spec.pollingInterval", id="polling-bool"
    ),
    pytest.param(
        _set(BASE_SO, "spec.pollingInterval", 2.5), "spec.pollingInterval", id="polling-float"
    ),
    pytest.param(
        _set(BASE_SO, "spec.cooldownPeriod", -1), "spec.cooldownPeriod", id="cooldown-neg"
    ),
    pytest.param(
        _set(BASE_SO, "spec.initialCooldownPeriod", -5),
        "spec.initialCooldownPeriod",
        id="initial-cooldown-neg",
    ),
    pytest.param(_set(BASE_SO, "spec.maxReplicaCount", 0), "spec.maxReplicaCount", id="max-0"),
    pytest.param(
        _set(BASE_SO, "spec.maxReplicaCount", 2**31), "spec.maxReplicaCount", id="max-over-int32"
    ),
    pytest.param(
        _set(BASE_SO, "spec.maxReplicas", 10), "spec.maxReplicas", id="unknown-spec-field"
    ),
    pytest.param(_set(BASE_SO, "specs", {}), "specs", id="unknown-top-level-field"),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].metadta", {}),
        "spec.triggers[0].metadta",
        id="unknown-trigger-field",
    ),
    pytest.param(
        _set(BASE_SO, "spec.scaleTargetRef.name", _DELETE),
        "spec.scaleTargetRef.name",
        id="missing-target-name",
    ),
    pytest.param(
        _set(BASE_SO, "spec.scaleTargetRef.name", 5),
        "spec.scaleTargetRef.name",
        id="target-name-not-string",
    ),
    pytest.param(
        _set(BASE_SO, "spec.scaleTargetRef", _DELETE), "spec.scaleTargetRef", id="missing-target"
    ),
    pytest.param(_set(BASE_SO, "spec.triggers", _DELETE), "spec.triggers", id="missing-triggers"),
    pytest.param(_set(BASE_SO, "spec.triggers", []), "spec.triggers", id="empty-triggers"),
    pytest.param(_set(BASE_SO, "spec.triggers", {"type": "x"}), "spec.triggers", id="triggers-map"),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].type", _DELETE),
        "spec.triggers[0].type",
        id="trigger-without-type",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].metadata", _DELETE),
        "spec.triggers[0].metadata",
        id="trigger-without-metadata",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].metadata.lagThreshold", {"a": 1}),
        "spec.triggers[0].metadata.lagThreshold",
        id="metadata-value-mapping",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers", _named_triggers("a", "a")),
        "spec.triggers[1].name",
        id="duplicate-trigger-names",
    ),
    pytest.param(
        _set(BASE_SO, "spec.advanced.scalingModifiers", {"target": "2"}),
        "spec.advanced.scalingModifiers.formula",
        id="modifiers-without-formula",
    ),
    pytest.param(
        _set(
            _set(BASE_SO, "spec.triggers", _named_triggers("a")),
            "spec.advanced.scalingModifiers",
            {"formula": "a", "target": "lots"},
        ),
        "spec.advanced.scalingModifiers.target",
        id="modifiers-target-not-number",
    ),
    pytest.param(
        _set(
            _set(BASE_SO, "spec.triggers", _named_triggers("a")),
            "spec.advanced.scalingModifiers",
            {"formula": "a", "target": "0"},
        ),
        "spec.advanced.scalingModifiers.target",
        id="modifiers-target-zero",
    ),
    pytest.param(
        _set(
            _set(BASE_SO, "spec.triggers", _named_triggers("a")),
            "spec.advanced.scalingModifiers",
            {"formula": "a", "target": "1", "metricType": "Utilization"},
        ),
        "spec.advanced.scalingModifiers.metricType",
        id="modifiers-utilization",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].metricType", "Utilization"),
        "spec.triggers[0].metricType",
        id="trigger-utilization",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].metricType", "Average"),
        "spec.triggers[0].metricType",
        id="trigger-metric-type-bogus",
    ),
    pytest.param(
        _set(
            _set(BASE_SO, "spec.triggers[0].type", "cron"),
            "spec.triggers[0].useCachedMetrics",
            True,
        ),
        "spec.triggers[0].useCachedMetrics",
        id="cached-metrics-on-cron",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].authenticationRef", {"name": "a", "kind": "Secret"}),
        "spec.triggers[0].authenticationRef.kind",
        id="auth-ref-kind-bogus",
    ),
    pytest.param(
        _set(BASE_SO, "spec.triggers[0].authenticationRef", {"kind": "TriggerAuthentication"}),
        "spec.triggers[0].authenticationRef.name",
        id="auth-ref-without-name",
    ),
    pytest.param(
        _set(BASE_SO, "spec.fallback", {"failureThreshold": 3, "replicas": 2, "behavior": "x"}),
        "spec.fallback.behavior",
        id="fallback-behavior-bogus",
    ),
    pytest.param(
        _set(BASE_SO, "spec.fallback", {"failureThreshold": 3}),
        "spec.fallback.replicas",
        id="fallback-without-replicas",
    ),
    pytest.param(
        _set(BASE_SO, "spec.fallback", {"failureThreshold": 3, "replicas": -1}),
        "spec.fallback.replicas",
        id="fallback-negative-replicas",
    ),
    pytest.param(
        _set(
            _set(
                BASE_SO,
                "spec.triggers",
                [{"type": "cpu", "metadata": {"type": "Utilization", "value": "50"}}],
            ),
            "spec.fallback",
            {"failureThreshold": 3, "replicas": 2},
        ),
        "spec.fallback",
        id="fallback-with-only-cpu",
    ),
    pytest.param(
        _set(
            BASE_SO,
            "spec.fallback",
            {"failureThreshold": 3, "replicas": 2, "behavior": "scalingModifiers"},
        ),
        "spec.fallback.behavior",
        id="fallback-scaling-modifiers-without-modifiers",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleDown.policies", [{**POLICY, "periodSeconds": 0}]),
        f"{BEHAVIOR}.scaleDown.policies[0].periodSeconds",
        id="policy-period-0",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleUp.policies", [POLICY, {**POLICY, "periodSeconds": 1801}]),
        f"{BEHAVIOR}.scaleUp.policies[1].periodSeconds",
        id="policy-period-1801",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleUp.policies", [{**POLICY, "value": 0}]),
        f"{BEHAVIOR}.scaleUp.policies[0].value",
        id="policy-value-0",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleUp.policies", [{**POLICY, "type": "Replicas"}]),
        f"{BEHAVIOR}.scaleUp.policies[0].type",
        id="policy-type-bogus",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleUp.policies", []),
        f"{BEHAVIOR}.scaleUp.policies",
        id="policies-empty",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleUp.stabilizationWindowSeconds", 3601),
        f"{BEHAVIOR}.scaleUp.stabilizationWindowSeconds",
        id="stabilization-3601",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleDown.selectPolicy", "bogus"),
        f"{BEHAVIOR}.scaleDown.selectPolicy",
        id="select-policy-bogus",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleDown.tolerance", -0.1),
        f"{BEHAVIOR}.scaleDown.tolerance",
        id="tolerance-negative",
    ),
    pytest.param(
        _set(BASE_SO, f"{BEHAVIOR}.scaleDown.window", 10),
        f"{BEHAVIOR}.scaleDown.window",
        id="behavior-unknown-field",
    ),
    pytest.param(
        _set(BASE_SO, "metadata.annotations", {"autoscaling.keda.sh/paused-replicas": "three"}),
        "metadata.annotations['autoscaling.keda.sh/paused-replicas']",
        id="paused-replicas-not-integer",
    ),
    pytest.param(_set(BASE_SO, "metadata.name", _DELETE), "metadata.name", id="missing-name"),
    pytest.param(_set(BASE_SO, "kind", "Deployment"), "kind", id="wrong-kind"),
    pytest.param(_set(BASE_SO, "apiVersion", "keda.k8s.io/v1alpha1"), "apiVersion", id="old-api"),
    pytest.param(
        _set(BASE_SJ, "spec.cooldownPeriod", 10), "spec.cooldownPeriod", id="job-cooldown-unknown"
    ),
    pytest.param(
        _set(BASE_SJ, "spec.jobTargetRef", _DELETE), "spec.jobTargetRef", id="job-without-target"
    ),
    pytest.param(
        _set(BASE_SJ, "spec.jobTargetRef.template", _DELETE),
        "spec.jobTargetRef.template",
        id="job-without-template",
    ),
    pytest.param(
        _set(BASE_SJ, "spec.scalingStrategy.multipleScalersCalculation", "median"),
        "spec.scalingStrategy.multipleScalersCalculation",
        id="job-calculation-bogus",
    ),
    pytest.param(
        _set(BASE_SJ, "spec.scalingStrategy.strategy", "fast"),
        "spec.scalingStrategy.strategy",
        id="job-strategy-bogus",
    ),
    pytest.param(
        _set(BASE_SJ, "spec.rollout.propagationPolicy", "orphan"),
        "spec.rollout.propagationPolicy",
        id="job-propagation-bogus",
    ),
    pytest.param(
        _set(BASE_TA, "spec.secretTargetRef[0].key", _DELETE),
        "spec.secretTargetRef[0].key",
        id="auth-secret-ref-without-key",
    ),
    pytest.param(
        _set(BASE_TA, "spec.podIdentity", {"provider": "vault"}),
        "spec.podIdentity.provider",
        id="auth-pod-identity-bogus",
    ),
    pytest.param(
        _set(BASE_TA, "spec.env", [{"parameter": "p"}]),
        "spec.env[0].name",
        id="auth-env-without-name",
    ),
    pytest.param(
        {**fixture_dict_secret(), "data": {"password": "not base64!"}},
        "data.password",
        id="secret-not-base64",
    ),
]


@pytest.mark.parametrize(("doc", "path"), MALFORMED)
def test_malformed_manifest_names_the_field(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifests(doc)
    assert path in info.value.all_paths(), str(info.value)


def test_there_are_many_malformed_cases() -> None:
    assert len(MALFORMED) >= 25


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        pytest.param(
            "kind: ScaledObject\nmetadata:\n  name: x\n   bad: indent\n",
            None,
            "line 4",
            id="bad-yaml-syntax",
        ),
        pytest.param("- a\n- b\n", "[doc 0]", "must be a mapping", id="document-is-a-list"),
        pytest.param("just text\n", "[doc 0]", "must be a mapping", id="document-is-a-string"),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
            "kind",
            "unsupported kind",
            id="pod-kind",
        ),
    ],
)
def test_malformed_text(text: str, path: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifests(text)
    assert info.value.path == path
    assert fragment in str(info.value)


def test_all_errors_of_a_document_are_collected() -> None:
    doc = _set(
        _set(_set(BASE_SO, "spec.pollingInterval", 0), "spec.triggers[0].metricType", "Bogus"),
        "spec.scaleTargetRef.name",
        _DELETE,
    )
    with pytest.raises(ConfigError) as info:
        load_manifests(doc)
    assert sorted(info.value.all_paths()) == [
        "spec.pollingInterval",
        "spec.scaleTargetRef.name",
        "spec.triggers[0].metricType",
    ]
    assert "invalid ScaledObject 'so'" in str(info.value)


def test_unknown_field_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'pollingInterval'"):
        load_manifests(_set(BASE_SO, "spec.pollingIntervall", 5))


# ----------------------------------------------------------------------------- resolution


def _stream(*docs: dict[str, Any]) -> Manifests:
    return load_manifests(list(docs))


SO_WITH_AUTH = _set(BASE_SO, "spec.triggers[0].authenticationRef", {"name": "auth"})


@pytest.mark.parametrize(
    ("docs", "path", "fragment"),
    [
        pytest.param(
            [SO_WITH_AUTH],
            "spec.triggers[0].authenticationRef.name",
            "not found",
            id="missing-trigger-authentication",
        ),
        pytest.param(
            [SO_WITH_AUTH, BASE_TA],
            "spec.secretTargetRef[0].name",
            "Secret 's' not found",
            id="missing-secret",
        ),
        pytest.param(
            [SO_WITH_AUTH, BASE_TA, _set(fixture_dict_secret(), "data", {"other": "dg=="})],
            "spec.secretTargetRef[0].key",
            "has no key 'k'",
            id="missing-secret-key",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"env": [{"parameter": "p", "name": "NOPE"}]})],
            "spec.env[0].name",
            "'NOPE' is not set",
            id="missing-env",
        ),
        pytest.param(
            [
                SO_WITH_AUTH,
                _set(
                    BASE_TA,
                    "spec",
                    {"configMapTargetRef": [{"parameter": "p", "name": "cm", "key": "k"}]},
                ),
            ],
            "spec.configMapTargetRef[0].name",
            "ConfigMap 'cm' not found",
            id="missing-config-map",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"hashiCorpVault": {"address": "http://v"}})],
            "spec.hashiCorpVault",
            "HashiCorp Vault",
            id="vault-unsupported",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"azureKeyVault": {"vaultUri": "x"}})],
            "spec.azureKeyVault",
            "Azure Key Vault",
            id="key-vault-unsupported",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"awsSecretManager": {"secrets": []}})],
            "spec.awsSecretManager",
            "AWS Secrets Manager",
            id="aws-unsupported",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"gcpSecretManager": {"secrets": []}})],
            "spec.gcpSecretManager",
            "GCP Secret Manager",
            id="gcp-unsupported",
        ),
        pytest.param(
            [SO_WITH_AUTH, _set(BASE_TA, "spec", {"podIdentity": {"provider": "gcp"}})],
            "spec.podIdentity.provider",
            "not supported",
            id="pod-identity-unsupported",
        ),
    ],
)
def test_unresolvable_auth(docs: list[dict[str, Any]], path: str, fragment: str) -> None:
    m = _stream(*docs)
    with pytest.raises(ConfigError) as info:
        m.trigger_contexts(m.scaled_object())
    assert path in info.value.all_paths()
    assert fragment in str(info.value)


def test_pod_identity_none_and_config_maps_resolve() -> None:
    ta = _set(
        BASE_TA,
        "spec",
        {
            "podIdentity": {"provider": "none"},
            "configMapTargetRef": [{"parameter": "host", "name": "cm", "key": "h"}],
            "env": [{"parameter": "host", "name": "HOST"}],
        },
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"h": "cm"}}
    m = _stream(SO_WITH_AUTH, ta, cm)
    # env first, then configMapTargetRef: the later one wins, as in KEDA.
    (ctx,) = m.trigger_contexts(m.scaled_object(), env={"HOST": "env"})
    assert ctx.auth == {"host": Secret("cm")}


def test_secret_target_ref_overrides_env() -> None:
    ta = _set(BASE_TA, "spec.env", [{"parameter": "password", "name": "PW"}])
    m = _stream(SO_WITH_AUTH, ta, _set(fixture_dict_secret(), "data", {"k": "c2VjcmV0"}))
    (ctx,) = m.trigger_contexts(m.scaled_object(), env={"PW": "from-env"})
    assert ctx.auth == {"password": Secret("secret")}


def test_extra_secrets_can_be_given_in_code() -> None:
    m = _stream(SO_WITH_AUTH, BASE_TA)
    (ctx,) = m.trigger_contexts(m.scaled_object(), secrets={"s": {"k": "given"}})
    assert ctx.auth == {"password": Secret("given")}
    # The same through the function, with a plain list of TriggerAuthentications.
    (ctx,) = resolve_trigger_contexts(
        m.scaled_object(),
        trigger_authentications=list(m.trigger_authentications.values()),
        secrets={"s": {"k": Secret("given2")}},
    )
    assert ctx.auth == {"password": Secret("given2")}


def test_cluster_trigger_authentication() -> None:
    cta = {**BASE_TA, "kind": "ClusterTriggerAuthentication"}
    so = _set(
        BASE_SO,
        "spec.triggers[0].authenticationRef",
        {"name": "auth", "kind": "ClusterTriggerAuthentication"},
    )
    m = _stream(so, cta, _set(fixture_dict_secret(), "data", {"k": "eA=="}))
    assert load_trigger_authentication(cta).kind == "ClusterTriggerAuthentication"
    (ctx,) = m.trigger_contexts(m.scaled_object())
    assert ctx.auth == {"password": Secret("x")}
    # A TriggerAuthentication of the same name is a different object.
    with pytest.raises(ConfigError):
        _stream(SO_WITH_AUTH, cta).trigger_contexts(m.scaled_object("so"))


def test_triggers_without_auth_get_env_and_metadata() -> None:
    so = load_scaled_object(BASE_SO)
    (ctx,) = resolve_trigger_contexts(so, env={"A": "1"})
    assert ctx.auth == {}
    assert ctx.env == {"A": "1"}
    assert ctx.metadata == {"listName": "jobs", "listLength": "5"}
    assert ctx.metric_type is MetricType.AVERAGE_VALUE


def test_binary_secret_only_fails_when_used() -> None:
    binary = _set(fixture_dict_secret(), "data", {"k": "//79"})  # 0xff 0xfe 0xfd
    m = _stream(SO_WITH_AUTH, BASE_TA, binary)
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        m.trigger_contexts(m.scaled_object())
    assert info.value.path == "spec.secretTargetRef[0].key"
    assert isinstance(m, Manifests)


# ----------------------------------------------------------------------------- secrets


PASSWORD = "Sup3r-S3cret-Pa55"


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    cases: list[Any] = [
        _set(BASE_SO, "spec.triggers[0].metadata.password", {"nested": PASSWORD}),
        _set(BASE_SO, "spec.triggers[0].metadata.connection", [PASSWORD]),
        _set(BASE_SO, "spec.scaleTargetRef.name", {"x": PASSWORD}),
        _set(BASE_SO, "spec.pollingInterval", f"amqp://user:{PASSWORD}@host"),
        {**fixture_dict_secret(), "data": {"password": PASSWORD + "!!"}},
        {**fixture_dict_secret(), "stringData": {"password": {"v": PASSWORD}}},
        _set(BASE_TA, "spec.podIdentity", {"provider": PASSWORD}),
    ]
    for doc in cases:
        with pytest.raises(ConfigError) as info:
            load_manifests(doc)
        assert PASSWORD not in str(info.value)
        assert PASSWORD not in repr(info.value)
    text = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: so}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
  - type: rabbitmq
    metadata: {{host: "amqp://u:{PASSWORD}@h", password: {PASSWORD}}}
    password: {PASSWORD}
  bad: [{PASSWORD}
"""
    with pytest.raises(ConfigError) as info:
        load_manifests(text)
    assert PASSWORD not in str(info.value)
    ok = load_scaled_object(
        _set(
            BASE_SO,
            "spec.triggers[0].metadata",
            {"host": f"amqp://u:{PASSWORD}@h", "password": PASSWORD},
        )
    )
    assert PASSWORD not in repr(ok)
    m = _stream(SO_WITH_AUTH, BASE_TA, _set(fixture_dict_secret(), "stringData", {"k": PASSWORD}))
    assert PASSWORD not in repr(m)
    assert PASSWORD not in repr(m.trigger_contexts(m.scaled_object())[0].auth)


def test_scaled_object_spec_type() -> None:
    assert isinstance(load_scaled_object(BASE_SO), ScaledObjectSpec)


def test_modifiers_need_only_the_names_they_use() -> None:
    # KEDA (validateScalingModifiersFormula) binds the named triggers only: an unnamed
    # trigger the formula does not use is fine; a name the formula uses must exist,
    # which the engine checks when it compiles the formula.
    from eventscale.engine import check_spec

    doc = _set(
        _set(BASE_SO, "spec.triggers", _named_triggers(None, "b")),
        "spec.advanced.scalingModifiers",
        {"formula": "b * 2", "target": "2"},
    )
    assert check_spec(load_scaled_object(doc)) == ()
    typo = _set(doc, "spec.advanced.scalingModifiers", {"formula": "a * b", "target": "2"})
    with pytest.raises(ConfigError) as info:
        check_spec(load_scaled_object(typo))
    assert info.value.path == "spec.advanced.scalingModifiers.formula"
