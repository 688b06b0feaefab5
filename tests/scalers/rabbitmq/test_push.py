"""``RabbitMQScaler.wait_for_activity()`` against the machine's broker: it returns soon
after a publish to an idle queue, consumes nothing, fails like a poll, and wakes a
Controller long before its polling interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from eventscale.errors import ConfigError, ScalerError
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers import PushScaler
from eventscale.scalers.rabbitmq import RabbitMQConfig, RabbitMQScaler
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.targets.memory import MemoryTarget
from servers._proc import unique_name
from servers.rabbitmq_srv import RabbitMQServer

pytestmark = pytest.mark.anyio

WAKE_BOUND = 10.0  # generous: the AMQP watch polls every 0.25 s
HTTP_WAKE_BOUND = 20.0  # the management API's statistics lag a few seconds


@pytest.fixture
async def channel(rabbitmq_server: RabbitMQServer) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    conn = await aio_pika.connect(rabbitmq_server.amqp_url)
    try:
        yield await conn.channel()
    finally:
        await conn.close()


async def new_queue(channel: aio_pika.abc.AbstractChannel) -> str:
    name = unique_name("es-push")
    await channel.declare_queue(name, auto_delete=False, arguments={"x-expires": 120_000})
    return name


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, n: int = 1) -> None:
    for i in range(n):
        await channel.default_exchange.publish(
            aio_pika.Message(f"m{i}".encode()), routing_key=queue
        )


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAKE_BOUND
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_rabbitmq_scaler_is_a_push_scaler(rabbitmq_server: RabbitMQServer) -> None:
    scaler = RabbitMQScaler(RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name="q"))
    assert isinstance(scaler, PushScaler)


async def test_returns_at_once_when_already_active(
    rabbitmq_server: RabbitMQServer, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await new_queue(channel)
    await publish(channel, queue, 2)
    async with RabbitMQScaler(
        RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name=queue)
    ) as scaler:
        await asyncio.wait_for(scaler.wait_for_activity(), WAKE_BOUND)
    await channel.queue_delete(queue)


async def test_amqp_watch_wakes_after_a_publish_and_consumes_nothing(
    rabbitmq_server: RabbitMQServer, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await new_queue(channel)
    scaler = RabbitMQScaler(
        RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name=queue, activation_value=1)
    )
    try:
        watch = asyncio.create_task(scaler.wait_for_activity())
        await asyncio.sleep(0.6)  # a few watch polls on the empty queue
        assert not watch.done()
        await publish(channel, queue, 1)  # 1 is not > activation 1: still idle
        await asyncio.sleep(0.6)
        assert not watch.done()
        published = time.monotonic()
        await publish(channel, queue, 1)
        await asyncio.wait_for(watch, WAKE_BOUND)
        print(f"AMQP wake-up {time.monotonic() - published:.3f} s after the publish")

        # Nothing was consumed or requeued: both messages wait, never delivered before.
        report = await scaler.get_metrics()
        assert report.values[0].value == 2
        q = await channel.get_queue(queue, ensure=False)
        for _ in range(2):
            message = await q.get(no_ack=True, fail=True)
            assert message is not None
            assert message.redelivered is False
    finally:
        await scaler.aclose()
        await channel.queue_delete(queue)


async def test_amqp_watch_of_a_missing_queue_is_an_error(
    rabbitmq_server: RabbitMQServer,
) -> None:
    async with RabbitMQScaler(
        RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name=unique_name("es-push-missing"))
    ) as scaler:
        with pytest.raises(ScalerError, match="does not exist") as info:
            await asyncio.wait_for(scaler.wait_for_activity(), WAKE_BOUND)
        assert info.value.transient is False


async def test_http_watch_wakes_after_a_publish(
    rabbitmq_server: RabbitMQServer, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await new_queue(channel)
    scaler = RabbitMQScaler(
        RabbitMQConfig(host=rabbitmq_server.management_url + "/", queue_name=queue),
        push_poll_interval=0.5,
    )
    try:
        watch = asyncio.create_task(scaler.wait_for_activity())
        await asyncio.sleep(0.3)
        assert not watch.done()
        published = time.monotonic()
        await publish(channel, queue, 3)
        await asyncio.wait_for(watch, HTTP_WAKE_BOUND)
        print(f"HTTP wake-up {time.monotonic() - published:.3f} s after the publish")
    finally:
        await scaler.aclose()
        await channel.queue_delete(queue)


async def test_push_poll_interval_must_be_positive(rabbitmq_server: RabbitMQServer) -> None:
    with pytest.raises(ConfigError, match="push_poll_interval"):
        RabbitMQScaler(
            RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name="q"), push_poll_interval=0
        )


async def test_controller_wakes_on_the_first_message(
    rabbitmq_server: RabbitMQServer, channel: aio_pika.abc.AbstractChannel
) -> None:
    """An idle object with a 600 s polling interval scales from zero soon after a publish."""
    queue = await new_queue(channel)
    scaler = RabbitMQScaler(
        RabbitMQConfig(host=rabbitmq_server.amqp_url, queue_name=queue, value=5)
    )
    target = MemoryTarget(0)
    spec = ScaledObjectSpec(
        name=unique_name("es-push-so"),
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[TriggerSpec(type="rabbitmq", name="t0")],
        polling_interval=600.0,
    )
    polls: list[Event] = []
    try:
        async with Controller() as ctl:
            ctl.events.add_hook(lambda e: polls.append(e) if e.kind is EventKind.POLL else None)
            ctl.add(ScaledObject(spec, target=target, scalers=[scaler]))
            await until(lambda: bool(polls), "the first poll")
            assert target.requested == 0
            published = time.monotonic()
            await publish(channel, queue, 7)
            await until(lambda: target.requested > 0, "the scale-up from zero")
            woke = time.monotonic() - published
            assert target.requested == 2  # ceil(7 / 5), long before the 600 s tick
            print(f"controller scaled from zero {woke:.3f} s after the publish")
    finally:
        await scaler.aclose()
        await channel.queue_delete(queue)
