"""The dramatiq trigger against real Redis and RabbitMQ, with messages sent by Dramatiq."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis

from eventscale.errors import ConfigError, ScalerError
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.pyqueues.dramatiq import DramatiqScaler, delay_queue
from servers._proc import unique_name, wait_until
from servers.rabbitmq_srv import RabbitMQServer
from servers.redis_srv import RedisServer

dramatiq = pytest.importorskip("dramatiq")
redis_broker = pytest.importorskip("dramatiq.brokers.redis")

pytestmark = pytest.mark.anyio


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[Any]:
    b = redis_broker.RedisBroker(host=redis_server.host, port=redis_server.port)
    yield b
    b.close()


@pytest.fixture
def queue(redis_server: RedisServer) -> Iterator[str]:
    name = unique_name("dramatiq")
    yield name
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    for q in (name, delay_queue(name)):
        client.delete(f"dramatiq:{q}", f"dramatiq:{q}.msgs")
    client.close()


def make_actor(broker: Any, queue: str, fn: Callable[..., None] | None = None) -> Any:
    def work(*_: Any) -> None:
        if fn is not None:
            fn()

    return dramatiq.actor(work, actor_name=unique_name("actor"), queue_name=queue, broker=broker)


async def value_of(scaler: DramatiqScaler) -> float:
    """The scaler's value; -1 while RabbitMQ has not published a fresh queue's counts."""
    try:
        report = await scaler.get_metrics()
    except ScalerError as exc:
        if "not reported" not in str(exc):
            raise
        return -1.0
    return report.values[0].value


async def test_counts_the_queue_and_its_delay_queue(
    redis_server: RedisServer, broker: Any, queue: str
) -> None:
    actor = make_actor(broker, queue)
    for _ in range(3):
        actor.send()
    actor.send_with_options(delay=600_000)
    meta = {"queueName": queue, "address": redis_server.address}
    async with DramatiqScaler.from_metadata(meta) as scaler:
        assert await value_of(scaler) == 4
    async with DramatiqScaler.from_metadata({**meta, "includeDelayed": "false"}) as scaler:
        assert await value_of(scaler) == 3


async def test_latency_from_message_timestamp(
    redis_server: RedisServer, broker: Any, queue: str
) -> None:
    actor = make_actor(broker, queue)
    first = actor.send()
    actor.send()
    now = first.message_timestamp / 1000.0 + 75.0
    async with DramatiqScaler.from_metadata(
        {"queueName": queue, "address": redis_server.address, "mode": "latency"},
        clock=lambda: now,
    ) as scaler:
        assert await value_of(scaler) == pytest.approx(75.0, abs=0.01)
    async with DramatiqScaler.from_metadata(
        {
            "queueName": unique_name("dramatiq-empty"),
            "address": redis_server.address,
            "mode": "latency",
        }
    ) as scaler:
        report = await scaler.get_metrics()
        assert report.values[0].value == 0
        assert not report.is_active


async def test_a_message_that_is_not_json_is_an_error(
    redis_server: RedisServer, queue: str
) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.hset(f"dramatiq:{queue}.msgs", "m1", b"\x00secret payload")
    client.rpush(f"dramatiq:{queue}", "m1")
    client.close()
    async with DramatiqScaler.from_metadata(
        {"queueName": queue, "address": redis_server.address, "mode": "latency"}
    ) as scaler:
        with pytest.raises(ScalerError, match="not JSON") as info:
            await scaler.get_metrics()
    assert "secret" not in str(info.value)


async def test_held_messages_count_with_include_held(
    redis_server: RedisServer, broker: Any, queue: str
) -> None:
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(60)

    actor = make_actor(broker, queue, block)
    for _ in range(5):
        actor.send()
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_until(started.is_set, timeout=30, what="the Dramatiq worker to start a message")
        meta = {"queueName": queue, "address": redis_server.address}
        async with (
            DramatiqScaler.from_metadata(meta) as waiting,
            DramatiqScaler.from_metadata({**meta, "includeHeld": "true"}) as held,
        ):
            assert await value_of(waiting) < 5
            assert await value_of(held) == 5
    finally:
        release.set()
        worker.stop(timeout=10_000)


async def test_rabbitmq_broker_counts_queue_and_delay_queue(
    rabbitmq_server: RabbitMQServer,
) -> None:
    rabbit = pytest.importorskip("dramatiq.brokers.rabbitmq")
    broker = rabbit.RabbitmqBroker(url=rabbitmq_server.amqp_url)
    name = unique_name("dramatiq")
    actor = make_actor(broker, name)
    actor.send()
    actor.send()
    actor.send_with_options(delay=600_000)
    try:
        async with DramatiqScaler.from_metadata(
            {"broker": "rabbitmq", "host": rabbitmq_server.management_url + "/", "queueName": name}
        ) as scaler:
            with anyio.fail_after(30):
                # the management API lags a few seconds
                while await value_of(scaler) != 3:  # noqa: ASYNC110 - polling the broker
                    await anyio.sleep(0.5)
        async with DramatiqScaler.from_metadata(
            {"broker": "rabbitmq", "host": rabbitmq_server.amqp_url, "queueName": name}
        ) as scaler:
            assert await value_of(scaler) == 3  # AMQP: ready messages, at once
    finally:
        broker.close()
        for q in (name, f"{name}.DQ", f"{name}.XQ"):
            rabbitmq_server.api("DELETE", f"queues/%2F/{q}")


async def test_rabbitmq_held_messages_are_the_unacknowledged_ones(
    rabbitmq_server: RabbitMQServer,
) -> None:
    rabbit = pytest.importorskip("dramatiq.brokers.rabbitmq")
    broker = rabbit.RabbitmqBroker(url=rabbitmq_server.amqp_url)
    name = unique_name("dramatiq")
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(60)

    actor = make_actor(broker, name, block)
    for _ in range(4):
        actor.send()
    worker = dramatiq.Worker(broker, queues={name}, worker_threads=1, worker_timeout=100)
    worker.start()
    meta = {"broker": "rabbitmq", "host": rabbitmq_server.management_url + "/", "queueName": name}
    try:
        wait_until(started.is_set, timeout=30, what="the Dramatiq worker to start a message")
        async with (
            DramatiqScaler.from_metadata(meta) as ready,
            DramatiqScaler.from_metadata({**meta, "includeHeld": "true"}) as held,
        ):
            # the management API lags: a new queue has no counts for a few seconds
            seen: tuple[float, float] = (-1.0, -1.0)
            with anyio.fail_after(30):
                while not (seen[0] < 4 and seen[1] == 4):
                    await anyio.sleep(0.5)
                    seen = (await value_of(ready), await value_of(held))
            assert seen[1] > seen[0]  # the worker's prefetched messages count as held
    finally:
        release.set()
        worker.stop(timeout=10_000)
        broker.close()
        for q in (name, f"{name}.DQ", f"{name}.XQ"):
            rabbitmq_server.api("DELETE", f"queues/%2F/{q}")


async def test_rabbitmq_missing_queue_is_an_error(rabbitmq_server: RabbitMQServer) -> None:
    async with DramatiqScaler.from_metadata(
        {"broker": "rabbitmq", "host": rabbitmq_server.amqp_url, "queueName": unique_name("dq")}
    ) as scaler:
        with pytest.raises(ScalerError):
            await scaler.get_metrics()


def test_registered_and_config_errors() -> None:
    ctx = TriggerContext(metadata={"address": "127.0.0.1:6379"}, trigger_type="dramatiq")
    assert isinstance(create_scaler(ctx), DramatiqScaler)
    with pytest.raises(ConfigError) as info:
        DramatiqScaler.from_metadata({"broker": "kafka", "address": "h:1"})
    assert "metadata.broker" in str(info.value)
    with pytest.raises(ConfigError) as info:
        DramatiqScaler.from_metadata({"address": "h:1", "mode": "age"})
    assert "metadata.mode" in str(info.value)
    assert delay_queue("q") == "q.DQ"
    assert delay_queue("q.DQ") == "q.DQ"
