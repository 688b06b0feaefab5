"""``apache-kafka`` against a real broker (tansu): topic lists, discovery without a topic,
KEDA's documentation example, errors. Each test uses its own topics and consumer group;
every expected lag is worked out from what the test produced and committed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventscale.errors import ScalerError
from eventscale.manifests import load_manifests
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.kafka.apache import ApacheKafkaMetadata, ApacheKafkaScaler
from eventscale.scalers.kafka.scaler import KafkaScaler
from scalers.kafka._broker import metric
from servers._proc import free_port, unique_name
from servers.kafka_srv import KafkaBroker

pytestmark = pytest.mark.anyio


def build(
    servers: str, group: str, scalers: list[KafkaScaler], **metadata: str
) -> ApacheKafkaScaler:
    ctx = TriggerContext(
        metadata={"bootstrapServers": servers, "consumerGroup": group, **metadata},
        trigger_type="apache-kafka",
    )
    scaler = create_scaler(ctx)
    assert isinstance(scaler, ApacheKafkaScaler)
    scalers.append(scaler)
    return scaler


def from_manifest(text: str, scalers: list[KafkaScaler]) -> ApacheKafkaScaler:
    """The scaler of the one trigger of the ScaledObject in ``text``."""
    loaded = load_manifests(text)
    (ctx,) = loaded.trigger_contexts(loaded.scaled_object())
    scaler = create_scaler(ctx)
    assert isinstance(scaler, ApacheKafkaScaler)
    scalers.append(scaler)
    return scaler


async def test_lag_over_a_topic_list(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    first, second = kafka_broker.create_topic(2), kafka_broker.create_topic(3)
    kafka_broker.produce(first, {0: 9, 1: 4})
    kafka_broker.produce(second, {0: 5, 2: 2})
    kafka_broker.commit(group, first, {0: 3, 1: 4})
    kafka_broker.commit(group, second, {0: 1, 1: 0, 2: 2})
    scaler = build(
        kafka_broker.bootstrap, group, scalers, topic=f"{first}, {second}", lagThreshold="100"
    )
    lag = await scaler.get_lag()
    assert dict(lag.per_partition) == {
        (first, 0): (6, 6),
        (first, 1): (0, 0),
        (second, 0): (4, 4),
        (second, 1): (0, 0),
        (second, 2): (0, 0),
    }
    assert (lag.partitions, lag.partitions_with_lag) == (5, 2)
    assert scaler.meta.metric_name == f"s0-kafka-{first},{second}"
    assert await metric(scaler) == (10.0, True)


async def test_partition_limitation_applies_to_every_listed_topic(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    first, second = kafka_broker.create_topic(3), kafka_broker.create_topic(3)
    kafka_broker.produce(first, {0: 5, 1: 6, 2: 7})
    kafka_broker.produce(second, {0: 1, 1: 2, 2: 3})
    kafka_broker.commit(group, first, {0: 0, 1: 0, 2: 0})
    kafka_broker.commit(group, second, {0: 0, 1: 0, 2: 0})
    scaler = build(
        kafka_broker.bootstrap,
        group,
        scalers,
        topic=f"{first},{second}",
        partitionLimitation="1-2",
        allowIdleConsumers="true",
    )
    lag = await scaler.get_lag()
    assert set(lag.per_partition) == {(first, 1), (first, 2), (second, 1), (second, 2)}
    assert lag.total_lag == 6 + 7 + 2 + 3


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({}, {0: 1, 1: 1}, id="latest"),
        pytest.param({"offsetResetPolicy": "earliest"}, {0: 8, 1: 3}, id="earliest"),
        pytest.param({"scaleToZeroOnInvalidOffset": "true"}, {0: 0, 1: 0}, id="latest-zero"),
    ],
)
async def test_uncommitted_partitions_follow_the_kafka_rules(
    kafka_broker: KafkaBroker,
    group: str,
    scalers: list[KafkaScaler],
    metadata: dict[str, str],
    expected: dict[int, int],
) -> None:
    topic = kafka_broker.create_topic(2)
    kafka_broker.produce(topic, {0: 8, 1: 3})
    scaler = build(kafka_broker.bootstrap, group, scalers, topic=topic, **metadata)
    lag = await scaler.get_lag()
    assert {tp[1]: v[0] for tp, v in lag.per_partition.items()} == expected


async def test_a_partition_missing_from_the_answer_counts_from_offset_zero(
    kafka_broker: KafkaBroker,
    group: str,
    scalers: list[KafkaScaler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broker that leaves a partition out of its committed-offsets answer: KEDA's
    # apache-kafka reads it as offset 0, so its lag is the log end offset.
    topic = kafka_broker.create_topic(2)
    kafka_broker.produce(topic, {0: 4, 1: 6})
    kafka_broker.commit(group, topic, {0: 1, 1: 2})
    scaler = build(kafka_broker.bootstrap, group, scalers, topic=topic, allowIdleConsumers="true")

    class PartialAnswer:
        def __init__(self, real: Any) -> None:
            self.real = real

        def committed(self, tps: list[Any], timeout: float) -> list[Any]:
            return [tp for tp in self.real.committed(tps, timeout=timeout) if tp.partition != 1]

    conn = scaler.connection
    assert conn is not None
    real = conn.consumer(group)
    monkeypatch.setattr(conn, "consumer", lambda _group: PartialAnswer(real))
    monkeypatch.setattr(conn, "consumer_created", lambda _group: True)
    try:
        lag = await scaler.get_lag()
        assert dict(lag.per_partition) == {(topic, 0): (3, 3), (topic, 1): (6, 6)}
    finally:
        monkeypatch.undo()  # before the scalers fixture closes the connection


async def test_without_topic_a_group_without_members_is_an_error(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(1)
    kafka_broker.produce(topic, {0: 5})
    kafka_broker.commit(group, topic, {0: 1})
    scaler = build(kafka_broker.bootstrap, group, scalers)
    with pytest.raises(ScalerError, match="no active members") as info:
        await scaler.get_metrics()
    assert info.value.transient


async def test_without_topic_every_topic_of_the_cluster_is_read(
    private_kafka: Callable[[], KafkaBroker],
    group: str,
    scalers: list[KafkaScaler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tansu's DescribeGroups answer lists no members even for a group with an active
    # consumer, so the members check is skipped here; the rest runs against the broker.
    async def members_present(self: ApacheKafkaScaler, admin: Any, limit: float) -> None:
        return None

    monkeypatch.setattr(ApacheKafkaScaler, "_check_active_members", members_present)
    broker = private_kafka()  # a cluster of exactly these two topics
    consumed, other = broker.create_topic(2), broker.create_topic(3)
    broker.produce(consumed, {0: 7, 1: 2})
    broker.produce(other, {0: 9})
    broker.commit(group, consumed, {0: 5, 1: 2})
    scaler = build(broker.bootstrap, group, scalers, lagThreshold="1", allowIdleConsumers="true")
    lag = await scaler.get_lag()
    # the topic the group never committed to counts 1 per partition (latest), as KEDA
    assert dict(lag.per_partition) == {
        (consumed, 0): (2, 2),
        (consumed, 1): (0, 0),
        (other, 0): (1, 1),
        (other, 1): (1, 1),
        (other, 2): (1, 1),
    }
    assert scaler.meta.metric_name == f"s0-kafka-{group}-topics"
    assert await metric(scaler) == (5.0, True)


async def test_a_listed_topic_that_does_not_exist_is_an_error(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    present = kafka_broker.create_topic(1)
    scaler = build(kafka_broker.bootstrap, group, scalers, topic=f"{present},{unique_name('gone')}")
    with pytest.raises(ScalerError, match="does not exist") as info:
        await scaler.get_metrics()
    assert not info.value.transient


async def test_unreachable_cluster_is_an_error(group: str, scalers: list[KafkaScaler]) -> None:
    scaler = build(f"127.0.0.1:{free_port()}", group, scalers, topic="t", timeout="1s")
    with pytest.raises(ScalerError):
        await scaler.get_metrics()


# The "no SASL/TLS" example of keda-docs content/docs/2.21/scalers/apache-kafka-go.md
# (host changed; the page writes `type: kafka` there, a slip on the apache-kafka page).
KEDA_EXAMPLE = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: kafka-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: azure-functions-deployment
  pollingInterval: 30
  triggers:
  - type: apache-kafka
    metadata:
      bootstrapServers: {servers}
      consumerGroup: {group}       # Make sure that this consumer group name is the same one as the one that is consuming topics
      topic: {topic}
      # Optional
      lagThreshold: "50"
      offsetResetPolicy: latest
"""

# The AWS MSK IAM example of the same page (credentials changed; the Secret's values are
# base64 as Kubernetes stores them).
KEDA_MSK_EXAMPLE = """
apiVersion: v1
kind: Secret
metadata:
  name: keda-kafka-secrets
  namespace: default
data:
  sasl: YXdzX21za19pYW0=
  tls: ZW5hYmxl
  awsAccessKeyID: QUtJQUVYQU1QTEU=
  awsSecretAccessKey: ZXhhbXBsZS1zZWNyZXQ=
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-trigger-auth-kafka-credential
  namespace: default
spec:
  secretTargetRef:
  - parameter: sasl
    name: keda-kafka-secrets
    key: sasl
  - parameter: tls
    name: keda-kafka-secrets
    key: tls
  - parameter: awsAccessKeyID
    name: keda-kafka-secrets
    key: awsAccessKeyID
  - parameter: awsSecretAccessKey
    name: keda-kafka-secrets
    key: awsSecretAccessKey
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: kafka-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: azure-functions-deployment
  pollingInterval: 30
  triggers:
  - type: apache-kafka
    metadata:
      bootstrapServers: localhost:9092
      consumerGroup: my-group       # Make sure that this consumer group name is the same one as the one that is consuming topics
      topic: test-topic
      awsRegion: us-east-1         # AWS region of your MSK cluster
      # Optional
      lagThreshold: "50"
      offsetResetPolicy: latest
    authenticationRef:
      name: keda-trigger-auth-kafka-credential
"""


async def test_keda_docs_example_evaluates_against_the_broker(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(2)
    kafka_broker.produce(topic, {0: 30, 1: 45})
    kafka_broker.commit(group, topic, {0: 10, 1: 0})
    text = KEDA_EXAMPLE.format(servers=kafka_broker.bootstrap, group=group, topic=topic)
    scaler = from_manifest(text, scalers)
    assert await metric(scaler) == (65.0, True)
    (spec,) = scaler.metric_specs()
    assert spec.target == 50


def test_keda_docs_msk_example_loads() -> None:
    loaded = load_manifests(KEDA_MSK_EXAMPLE)
    (ctx,) = loaded.trigger_contexts(loaded.scaled_object())
    meta = ApacheKafkaMetadata.from_context(ctx)
    assert meta.sasl_type == "aws_msk_iam"
    assert meta.tls
    assert meta.msk_iam is not None
    assert meta.metric_name == "s0-kafka-test-topic"


DOC = Path(__file__).parents[3] / "docs" / "scalers" / "apache-kafka.md"


async def test_docs_page_example_evaluates_against_the_broker(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    orders, audit = kafka_broker.create_topic(1), kafka_broker.create_topic(2)
    kafka_broker.produce(orders, {0: 40})
    kafka_broker.produce(audit, {0: 20, 1: 10})
    kafka_broker.commit(group, orders, {0: 0})
    kafka_broker.commit(group, audit, {0: 5, 1: 10})
    text = (
        example.replace("localhost:9092", kafka_broker.bootstrap)
        .replace("my-group", group)
        .replace("test-topic", orders)
        .replace("audit-topic", audit)
    )
    scaler = from_manifest(text, scalers)
    assert scaler.meta.metric_name == f"s0-kafka-{orders},{audit}"
    assert await metric(scaler) == (55.0, True)
