"""The celery, rq and dramatiq triggers on a real Redis Cluster and a real Redis Sentinel.

Where the library runs on the topology, the test enqueues through it: RQ enqueues on a
cluster client, Dramatiq on a cluster when its namespace is a hash tag, and all three
through Sentinel (Celery with kombu's ``sentinel://`` transport). kombu has no Redis
Cluster transport, so for Celery the keys are written by the real Celery into a
standalone Redis and copied byte for byte (``DUMP``/``RESTORE``) into the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as SyncCluster
from redis.sentinel import Sentinel

from eventscale.errors import ConfigError, ScalerError
from eventscale.scalers.pyqueues import Broker, CeleryScaler, DramatiqScaler, RQScaler
from eventscale.scalers.pyqueues.celery import PRIORITY_SEPARATOR, priority_keys
from eventscale.scalers.redis import RedisMode
from servers._proc import unique_name
from servers.redis_srv import (
    RedisCluster,
    RedisSentinel,
    RedisSentinelAuth,
    RedisServer,
    RedisTLS,
)

celery = pytest.importorskip("celery")
signals = pytest.importorskip("celery.signals")
rq = pytest.importorskip("rq")
dramatiq = pytest.importorskip("dramatiq")
dramatiq_redis = pytest.importorskip("dramatiq.brokers.redis")

pytestmark = pytest.mark.anyio


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> Iterator[SyncCluster]:
    nodes = [ClusterNode(n.host, n.port) for n in redis_cluster.nodes]  # type: ignore[no-untyped-call]
    client = SyncCluster(startup_nodes=nodes)
    yield client
    client.close()


def slot_of(cluster: SyncCluster, key: str) -> int:
    slot: int = cluster.keyslot(key)  # type: ignore[no-untyped-call]
    return slot


def cluster_meta(redis_cluster: RedisCluster, **extra: str) -> dict[str, str]:
    return {"broker": "redis-cluster", "addresses": ",".join(redis_cluster.addresses), **extra}


def sentinel_meta(redis_sentinel: RedisSentinel, **extra: str) -> dict[str, str]:
    return {
        "broker": "redis-sentinel",
        "addresses": redis_sentinel.sentinel.address,
        "sentinelMaster": redis_sentinel.master_name,
        **extra,
    }


def master_of(redis_sentinel: RedisSentinel) -> redis.Redis:
    sentinel = Sentinel([(redis_sentinel.sentinel.host, redis_sentinel.sentinel.port)])
    master: redis.Redis = sentinel.master_for(redis_sentinel.master_name)
    return master


async def value_of(scaler: Any) -> float:
    report = await scaler.get_metrics()
    return float(report.values[0].value)


# ------------------------------------------------------------------------------ cluster


async def test_rq_on_a_cluster(redis_cluster: RedisCluster, cluster: SyncCluster) -> None:
    queue = rq.Queue(unique_name("rq"), connection=cluster)
    jobs = [queue.enqueue("time.sleep", 0) for _ in range(3)]
    # RQ's keys spread over the cluster: the queue list and the job hashes
    slots = {slot_of(cluster, f"rq:job:{job.id}") for job in jobs}
    slots.add(slot_of(cluster, f"rq:queue:{queue.name}"))
    assert len(slots) > 1
    enqueued = min(rq.job.Job.fetch(j.id, connection=cluster).enqueued_at for j in jobs)
    later = enqueued.timestamp() + 42.0
    try:
        async with RQScaler.from_metadata(cluster_meta(redis_cluster, queueName=queue.name)) as s:
            assert s.config.redis.mode is RedisMode.CLUSTER
            assert await value_of(s) == 3
        async with RQScaler.from_metadata(
            cluster_meta(redis_cluster, queueName=queue.name, mode="latency"), clock=lambda: later
        ) as s:
            assert await value_of(s) == pytest.approx(42.0, abs=0.01)
    finally:
        cluster.delete(f"rq:queue:{queue.name}", *(f"rq:job:{j.id}" for j in jobs))


async def test_dramatiq_on_a_cluster_with_a_hash_tag_namespace(
    redis_cluster: RedisCluster, cluster: SyncCluster
) -> None:
    namespace = "{" + unique_name("dq") + "}"
    queue = unique_name("dramatiq")
    broker = dramatiq_redis.RedisBroker(client=cluster, namespace=namespace)
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name=queue, broker=broker
    )
    first = actor.send()
    actor.send()
    actor.send_with_options(delay=600_000)
    later = first.message_timestamp / 1000.0 + 30.0
    meta = cluster_meta(redis_cluster, queueName=queue, namespace=namespace)
    try:
        async with DramatiqScaler.from_metadata(meta) as scaler:
            assert await value_of(scaler) == 3
        async with DramatiqScaler.from_metadata(
            {**meta, "mode": "latency"}, clock=lambda: later
        ) as scaler:
            assert await value_of(scaler) == pytest.approx(30.0, abs=0.01)
    finally:
        for q in (queue, f"{queue}.DQ"):
            cluster.delete(f"{namespace}:{q}", f"{namespace}:{q}.msgs")


def test_dramatiq_without_a_hash_tag_cannot_enqueue_on_a_cluster(cluster: SyncCluster) -> None:
    """Why the docs ask for a hash-tag namespace: Dramatiq's script touches several keys."""
    broker = dramatiq_redis.RedisBroker(client=cluster, namespace=unique_name("dq"))
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name="q", broker=broker
    )
    with pytest.raises(redis.ResponseError, match="non local key"):
        actor.send()


def take_without_ack(app: Any, queue: str) -> Any:
    """What a worker does when it takes a task: kombu's own ``basic_get`` without an
    ack moves the message into kombu's ``unacked`` hash."""
    connection = app.connection_for_read()
    channel = connection.default_channel
    channel.queue_declare(queue=queue, passive=True)
    message = channel.basic_get(queue, no_ack=False)
    assert message is not None
    return connection, message


@pytest.fixture
def celery_keys_on_cluster(private_redis: Any, cluster: SyncCluster) -> Iterator[tuple[str, float]]:
    """Tasks sent by the real Celery (with the publish-time hook) to a private Redis, one
    of them taken (unacknowledged) by kombu, then every key copied into the cluster
    unchanged: the queue's lists, kombu's ``unacked`` hash and its bindings."""
    staging: RedisServer = private_redis()
    queue = unique_name("celery")
    app = celery.Celery("es-test", broker=staging.url, set_as_current=False)
    signals.before_task_publish.connect(stamp, weak=False)
    try:
        sent_at = time.time()
        for priority in (0, 0, 3, 6, 9, 9):
            app.send_task("es.never_run", queue=queue, priority=priority)
    finally:
        signals.before_task_publish.disconnect(stamp)
    connection, _ = take_without_ack(app, queue)
    source = redis.Redis(host=staging.host, port=staging.port)
    copied = []
    keys: list[bytes] = source.keys("*")  # type: ignore[assignment]
    for key in keys:
        if key.startswith((queue.encode(), b"unacked", b"_kombu.binding.")):
            dumped: bytes = source.dump(key)  # type: ignore[assignment]
            cluster.restore(key, 0, dumped, replace=True)
            copied.append(key)
    source.close()
    connection.release()
    assert b"unacked" in copied
    assert sum(key.startswith(queue.encode()) for key in copied) == 4  # a list per step
    yield queue, sent_at
    cluster.delete(*copied)


def stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from eventscale.scalers.pyqueues import stamp_publish_time

    stamp_publish_time(headers=headers)


async def test_celery_on_a_cluster(
    redis_cluster: RedisCluster, cluster: SyncCluster, celery_keys_on_cluster: tuple[str, float]
) -> None:
    queue, sent_at = celery_keys_on_cluster
    # kombu's priority lists hash to different slots: what breaks kombu on a cluster
    assert len({slot_of(cluster, key) for key in priority_keys(queue)}) > 1
    assert cluster.llen(f"{queue}{PRIORITY_SEPARATOR}9") == 2
    async with CeleryScaler.from_metadata(cluster_meta(redis_cluster, queueName=queue)) as s:
        assert await value_of(s) == 5
    # the held task: kombu's unacked hash and binding sets live in other slots
    assert slot_of(cluster, "unacked") != slot_of(cluster, queue)
    async with CeleryScaler.from_metadata(
        cluster_meta(redis_cluster, queueName=queue, includeHeld="true")
    ) as s:
        assert await value_of(s) == 6
    later = sent_at + 90.0
    async with CeleryScaler.from_metadata(
        cluster_meta(redis_cluster, queueName=queue, mode="latency"), clock=lambda: later
    ) as s:
        assert 85.0 < await value_of(s) <= 90.0


async def test_a_cluster_that_is_unreachable_is_an_error() -> None:
    async with RQScaler.from_metadata(
        {"broker": "redis-cluster", "addresses": "127.0.0.1:1", "timeout": "1s"}
    ) as scaler:
        with pytest.raises(ScalerError, match="cannot connect") as info:
            await scaler.get_metrics()
    assert info.value.transient


# ------------------------------------------------------------------------------ sentinel


async def test_celery_through_sentinel(redis_sentinel: RedisSentinel) -> None:
    queue = unique_name("celery")
    sentinel = redis_sentinel.sentinel
    app = celery.Celery("es-test", broker=f"sentinel://{sentinel.address}", set_as_current=False)
    app.conf.broker_transport_options = {"master_name": redis_sentinel.master_name}
    for priority in (0, 5, 9):
        app.send_task("es.never_run", queue=queue, priority=priority)
    master = master_of(redis_sentinel)
    try:
        # kombu's sentinel transport wrote to the master the sentinel names
        assert master.llen(f"{queue}{PRIORITY_SEPARATOR}9") == 1
        async with CeleryScaler.from_metadata(
            sentinel_meta(redis_sentinel, queueName=queue)
        ) as scaler:
            assert scaler.config.redis is not None
            assert scaler.config.redis.mode is RedisMode.SENTINEL
            assert await value_of(scaler) == 3
    finally:
        master.delete(*priority_keys(queue))
        master.close()


async def test_celery_held_tasks_through_sentinel(redis_sentinel: RedisSentinel) -> None:
    queue = unique_name("celery")
    sentinel = redis_sentinel.sentinel
    app = celery.Celery("es-test", broker=f"sentinel://{sentinel.address}", set_as_current=False)
    app.conf.broker_transport_options = {"master_name": redis_sentinel.master_name}
    for _ in range(3):
        app.send_task("es.never_run", queue=queue)
    connection, message = take_without_ack(app, queue)
    master = master_of(redis_sentinel)
    try:
        meta = sentinel_meta(redis_sentinel, queueName=queue)
        async with CeleryScaler.from_metadata(meta) as scaler:
            assert await value_of(scaler) == 2
        async with CeleryScaler.from_metadata({**meta, "includeHeld": "true"}) as scaler:
            assert await value_of(scaler) == 3
    finally:
        message.ack()
        connection.release()
        master.delete(*priority_keys(queue))
        master.close()


async def test_sentinel_and_master_passwords(redis_sentinel_auth: RedisSentinelAuth) -> None:
    auth = redis_sentinel_auth
    sentinel = Sentinel(
        [(auth.sentinel.host, auth.sentinel.port)],
        sentinel_kwargs={"password": auth.sentinel_password},
        password=auth.master_password,
    )
    master = sentinel.master_for(auth.master_name)
    queue = rq.Queue(unique_name("rq"), connection=master)
    jobs = [queue.enqueue("time.sleep", 0) for _ in range(2)]
    meta = {
        "broker": "redis-sentinel",
        "addresses": auth.sentinel.address,
        "sentinelMaster": auth.master_name,
        "queueName": queue.name,
        "timeout": "3s",
    }
    secrets = {"password": auth.master_password, "sentinelPassword": auth.sentinel_password}
    try:
        async with RQScaler.from_metadata(meta, auth=secrets) as scaler:
            assert await value_of(scaler) == 2
        for wrong in ({**secrets, "sentinelPassword": "nope"}, {**secrets, "password": "nope"}):
            async with RQScaler.from_metadata(meta, auth=wrong) as scaler:
                with pytest.raises(ScalerError) as info:
                    await scaler.get_metrics()
            assert "authentication failed" in str(info.value)
            assert not info.value.transient
            assert auth.master_password not in str(info.value)
            assert auth.sentinel_password not in str(info.value)
    finally:
        master.delete(f"rq:queue:{queue.name}", *(f"rq:job:{j.id}" for j in jobs))
        master.close()


async def test_rq_through_sentinel(redis_sentinel: RedisSentinel) -> None:
    master = master_of(redis_sentinel)
    queue = rq.Queue(unique_name("rq"), connection=master)
    jobs = [queue.enqueue("time.sleep", 0) for _ in range(2)]
    try:
        async with RQScaler.from_metadata(
            sentinel_meta(redis_sentinel, queueName=queue.name)
        ) as scaler:
            assert await value_of(scaler) == 2
    finally:
        master.delete(f"rq:queue:{queue.name}", *(f"rq:job:{j.id}" for j in jobs))
        master.close()


async def test_dramatiq_through_sentinel(redis_sentinel: RedisSentinel) -> None:
    master = master_of(redis_sentinel)
    queue = unique_name("dramatiq")
    broker = dramatiq_redis.RedisBroker(client=master)
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name=queue, broker=broker
    )
    first = actor.send()
    later = first.message_timestamp / 1000.0 + 12.0
    try:
        async with DramatiqScaler.from_metadata(
            sentinel_meta(redis_sentinel, queueName=queue, mode="latency"), clock=lambda: later
        ) as scaler:
            assert await value_of(scaler) == pytest.approx(12.0, abs=0.01)
    finally:
        master.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")
        master.close()


async def test_a_sentinel_that_does_not_know_the_master_is_an_error(
    redis_sentinel: RedisSentinel,
) -> None:
    meta = sentinel_meta(redis_sentinel, queueName="q", timeout="2s")
    meta["sentinelMaster"] = unique_name("nomaster")
    async with RQScaler.from_metadata(meta) as scaler:
        with pytest.raises(ScalerError):
            await scaler.get_metrics()


# ------------------------------------------------------------------------------ TLS


async def test_tls_material_reaches_the_redis_connection(redis_tls: RedisTLS) -> None:
    """The TLS parameters of the redis triggers (``enableTLS``, ``ca``, ``cert``, ``key``
    from the TriggerAuthentication) work for the job-queue triggers too."""
    server = redis_tls.server
    client = redis.Redis(host=server.host, port=server.port, ssl=True, ssl_ca_data=redis_tls.ca_pem)
    queue = rq.Queue(unique_name("rq"), connection=client)
    jobs = [queue.enqueue("time.sleep", 0) for _ in range(2)]
    meta = {"address": server.address, "enableTLS": "true", "queueName": queue.name}
    try:
        mutual = {
            "ca": redis_tls.ca_pem,
            "cert": redis_tls.client_cert_pem,
            "key": redis_tls.client_key_pem,
        }
        for auth in ({"ca": redis_tls.ca_pem}, mutual):
            async with RQScaler.from_metadata(meta, auth=auth) as scaler:
                assert await value_of(scaler) == 2
        # without the CA the server's certificate is not trusted: an error, not 0
        async with RQScaler.from_metadata({**meta, "timeout": "2s"}) as scaler:
            with pytest.raises(ScalerError):
                await scaler.get_metrics()
    finally:
        client.delete(f"rq:queue:{queue.name}", *(f"rq:job:{j.id}" for j in jobs))
        client.close()


# ------------------------------------------------------------------------------ config


def test_sentinel_and_tls_parameters_reach_the_connection() -> None:
    scaler = CeleryScaler.from_metadata(
        {
            "broker": "redis-sentinel",
            "hosts": "s1,s2",
            "ports": "26379,26380",
            "sentinelMaster": "mymaster",
            "enableTLS": "true",
            "queueName": "q",
        },
        auth={"sentinelUsername": "watcher", "sentinelPassword": "s3cret", "ca": "PEM"},
    )
    conn = scaler.config.redis
    assert conn is not None
    assert conn.mode is RedisMode.SENTINEL
    assert conn.addresses == ("s1:26379", "s2:26380")
    assert conn.sentinel_master == "mymaster"
    assert conn.sentinel_username == "watcher"
    assert conn.sentinel_password is not None
    assert conn.sentinel_password.reveal() == "s3cret"
    assert conn.enable_tls
    assert "s3cret" not in repr(scaler.config)


def test_broker_choices_and_their_errors() -> None:
    assert Broker("redis-cluster").redis_mode is RedisMode.CLUSTER
    assert Broker.RABBITMQ.redis_mode is None
    with pytest.raises(ConfigError) as info:
        RQScaler.from_metadata({"broker": "redis-sentinel", "address": "s:26379"})
    assert "sentinelMaster" in str(info.value)
    with pytest.raises(ConfigError) as info:
        DramatiqScaler.from_metadata({"address": "h:6379", "sentinelMaster": "m"})
    assert "metadata.broker" in str(info.value)
    with pytest.raises(ConfigError) as info:
        RQScaler.from_metadata({"broker": "rabbitmq", "host": "amqp://h/"})
    assert "metadata.broker" in str(info.value)
