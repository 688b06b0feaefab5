"""Push wake-ups of the celery, rq and dramatiq triggers, woken by enqueues through the
real libraries: Redis keyspace notifications (standalone, Sentinel, and on a cluster
from each node that holds a key), and the rabbitmq trigger's watch on RabbitMQ.

Each test starts ``wait_for_activity()`` on an idle queue, checks that it is still
waiting, enqueues one task and expects the wait to end within a bound shorter than any
fallback (keyspace: the safety-net recheck, 5 s here; RabbitMQ: a few watch intervals).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
from redis.sentinel import Sentinel

from eventscale.scalers import PushScaler
from eventscale.scalers.pyqueues import CeleryScaler, DramatiqScaler, RQScaler
from eventscale.scalers.pyqueues.celery import priority_keys
from servers._proc import unique_name
from servers.rabbitmq_srv import RabbitMQServer
from servers.redis_srv import RedisCluster, RedisSentinel, RedisServer

celery = pytest.importorskip("celery")
rq = pytest.importorskip("rq")
dramatiq = pytest.importorskip("dramatiq")
dramatiq_redis = pytest.importorskip("dramatiq.brokers.redis")
rabbit_broker = pytest.importorskip("dramatiq.brokers.rabbitmq")

pytestmark = pytest.mark.anyio

WAKE_WITHIN = 3.0
"""Seconds an enqueue may take to wake a waiter."""
SLOW_NET = {"timeout": "30s"}
"""A Redis timeout that puts the keyspace wait's safety-net recheck 5 s apart (it is
half the timeout, at most 5 s): a wake-up within WAKE_WITHIN is the notification's."""


async def wakes_on(scaler: Any, enqueue: Callable[[], object]) -> None:
    """``scaler.wait_for_activity()`` waits while idle and returns soon after ``enqueue``."""
    assert isinstance(scaler, PushScaler)
    assert not (await scaler.get_metrics()).is_active
    waiter = asyncio.ensure_future(scaler.wait_for_activity())
    try:
        await asyncio.sleep(0.5)
        assert not waiter.done(), "returned while the queue was idle"
        await anyio.to_thread.run_sync(enqueue)
        with anyio.fail_after(WAKE_WITHIN):
            await waiter
    finally:
        waiter.cancel()
    assert (await scaler.get_metrics()).is_active


def sync_redis(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port)


# ------------------------------------------------------------------------------ Redis


async def test_celery_wakes_on_a_task_sent_with_priority(redis_server: RedisServer) -> None:
    queue = unique_name("celery")
    app = celery.Celery("es-test", broker=redis_server.url, set_as_current=False)
    try:
        async with CeleryScaler.from_metadata(
            {"queueName": queue, "address": redis_server.address, **SLOW_NET},
            push_poll_interval=60.0,
        ) as scaler:
            # priority 9 lands in the list q\x06\x169: every sub-list is watched
            await wakes_on(scaler, lambda: app.send_task("es.never_run", queue=queue, priority=9))
    finally:
        client = sync_redis(redis_server)
        client.delete(*priority_keys(queue))
        client.close()


async def test_rq_wakes_on_an_enqueue(redis_server: RedisServer) -> None:
    client = sync_redis(redis_server)
    queue = rq.Queue(unique_name("rq"), connection=client)
    jobs: list[Any] = []
    try:
        async with RQScaler.from_metadata(
            {"queueName": queue.name, "address": redis_server.address, **SLOW_NET},
            push_poll_interval=60.0,
        ) as scaler:
            await wakes_on(scaler, lambda: jobs.append(queue.enqueue("time.sleep", 0)))
    finally:
        client.delete(f"rq:queue:{queue.name}", *(f"rq:job:{j.id}" for j in jobs))
        client.close()


async def test_dramatiq_wakes_on_a_delayed_message(redis_server: RedisServer) -> None:
    queue = unique_name("dramatiq")
    broker = dramatiq_redis.RedisBroker(host=redis_server.host, port=redis_server.port)
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name=queue, broker=broker
    )
    try:
        async with DramatiqScaler.from_metadata(
            {"queueName": queue, "address": redis_server.address, **SLOW_NET},
            push_poll_interval=60.0,
        ) as scaler:
            # sent by Dramatiq's Lua script into the delay queue q.DQ
            await wakes_on(scaler, lambda: actor.send_with_options(delay=600_000))
    finally:
        broker.close()
        client = sync_redis(redis_server)
        for q in (queue, f"{queue}.DQ"):
            client.delete(f"dramatiq:{q}", f"dramatiq:{q}.msgs")
        client.close()


async def test_celery_wakes_through_sentinel(redis_sentinel: RedisSentinel) -> None:
    queue = unique_name("celery")
    sentinel = redis_sentinel.sentinel
    app = celery.Celery("es-test", broker=f"sentinel://{sentinel.address}", set_as_current=False)
    app.conf.broker_transport_options = {"master_name": redis_sentinel.master_name}
    meta = {
        "broker": "redis-sentinel",
        "addresses": sentinel.address,
        "sentinelMaster": redis_sentinel.master_name,
        "queueName": queue,
        **SLOW_NET,
    }
    try:
        async with CeleryScaler.from_metadata(meta, push_poll_interval=60.0) as scaler:
            await wakes_on(scaler, lambda: app.send_task("es.never_run", queue=queue))
    finally:
        master = Sentinel([(sentinel.host, sentinel.port)]).master_for(redis_sentinel.master_name)
        master.delete(*priority_keys(queue))
        master.close()


async def test_a_cluster_wakes_from_the_node_that_holds_the_key(
    redis_cluster: RedisCluster,
) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as SyncCluster

    nodes = [ClusterNode(n.host, n.port) for n in redis_cluster.nodes]  # type: ignore[no-untyped-call]
    client = SyncCluster(startup_nodes=nodes)

    def node_of(name: str) -> str:
        node: Any = client.get_node_from_key(f"rq:queue:{name}")  # type: ignore[no-untyped-call]
        return str(node.name)

    # two queues whose lists live on different nodes; the enqueue goes to the second
    first = unique_name("rq")
    second = unique_name("rq")
    while node_of(second) == node_of(first):
        second = unique_name("rq")
    queue = rq.Queue(second, connection=client)
    jobs: list[Any] = []
    meta = {
        "broker": "redis-cluster",
        "addresses": ",".join(redis_cluster.addresses),
        "queues": f"{first},{second}",
        **SLOW_NET,
    }
    try:
        async with RQScaler.from_metadata(meta, push_poll_interval=60.0) as scaler:
            await wakes_on(scaler, lambda: jobs.append(queue.enqueue("time.sleep", 0)))
    finally:
        client.delete(f"rq:queue:{second}", *(f"rq:job:{j.id}" for j in jobs))
        client.close()


# ------------------------------------------------------------------------------ RabbitMQ


@pytest.fixture
def dramatiq_rabbit(rabbitmq_server: RabbitMQServer) -> Iterator[tuple[Any, str, Any]]:
    """A Dramatiq actor on RabbitMQ whose queues exist and are empty."""
    broker = rabbit_broker.RabbitmqBroker(url=rabbitmq_server.amqp_url)
    queue = unique_name("dramatiq")
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name=queue, broker=broker
    )
    actor.send()
    actor.send_with_options(delay=600_000)
    broker.flush(queue)
    yield actor, queue, broker
    broker.close()
    for q in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        rabbitmq_server.api("DELETE", f"queues/%2F/{q}")


async def test_dramatiq_on_rabbitmq_wakes_on_the_delay_queue(
    rabbitmq_server: RabbitMQServer, dramatiq_rabbit: tuple[Any, str, Any]
) -> None:
    actor, queue, _ = dramatiq_rabbit
    meta = {"broker": "rabbitmq", "host": rabbitmq_server.amqp_url, "queueName": queue}
    async with DramatiqScaler.from_metadata(meta) as scaler:
        # two watches (q and q.DQ); the delayed message wakes the one on q.DQ
        await wakes_on(scaler, lambda: actor.send_with_options(delay=600_000))


async def test_celery_on_rabbitmq_wakes_on_a_task(rabbitmq_server: RabbitMQServer) -> None:
    queue = unique_name("celery")
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    app.send_task("es.never_run", queue=queue)  # Celery declares the queue
    rabbitmq_server.api("DELETE", f"queues/%2F/{queue}/contents")
    meta = {"broker": "rabbitmq", "host": rabbitmq_server.amqp_url, "queueName": queue}
    try:
        async with CeleryScaler.from_metadata(meta) as scaler:
            await wakes_on(scaler, lambda: app.send_task("es.never_run", queue=queue))
    finally:
        rabbitmq_server.api("DELETE", f"queues/%2F/{queue}")


async def test_latency_wakes_when_the_head_message_is_old_enough(
    rabbitmq_server: RabbitMQServer, dramatiq_rabbit: tuple[Any, str, Any]
) -> None:
    actor, queue, _ = dramatiq_rabbit
    meta = {
        "broker": "rabbitmq",
        "host": rabbitmq_server.amqp_url,
        "queueName": queue,
        "mode": "latency",
        "latencyPeek": "true",
        "activationValue": "1.5",
    }
    async with DramatiqScaler.from_metadata(meta) as scaler:
        waiter = asyncio.ensure_future(scaler.wait_for_activity())
        try:
            await asyncio.sleep(0.5)
            assert not waiter.done()
            message = await anyio.to_thread.run_sync(actor.send)
            # active only once the message has waited 1.5 s: not at the first sight of it
            await asyncio.sleep(0.5)
            assert not waiter.done(), "woke before the message was activationValue old"
            with anyio.fail_after(WAKE_WITHIN):
                await waiter
        finally:
            waiter.cancel()
        report = await scaler.get_metrics()
        assert report.is_active
        assert report.values[0].value >= 1.5
        assert message.message_timestamp > 0
