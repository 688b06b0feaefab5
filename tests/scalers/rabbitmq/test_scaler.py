"""The RabbitMQ scaler against real RabbitMQ nodes: exact counts, activity at the
boundaries, regex operations, vhosts, faults, recovery and connection hygiene."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from eventscale.errors import ScalerError
from eventscale.metrics import ScalerReport
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import Mode, QueueInfo, RabbitMQConfig, RabbitMQScaler
from eventscale.scalers.rabbitmq.scaler import metric_and_activity
from servers._proc import free_port, unique_name
from servers.rabbitmq_srv import PrivateRabbitMQ, RabbitMQServer

pytestmark = pytest.mark.anyio

HTTP_LAG = 12.0  # the management API's counts trail the broker by a few seconds


class Broker:
    """Publishes and consumes on one RabbitMQ node for a test."""

    def __init__(self, server: RabbitMQServer, conn: aio_pika.abc.AbstractConnection) -> None:
        self.server = server
        self.conn = conn
        self.queues: list[tuple[str, str]] = []

    async def queue(self, name: str, messages: int = 0, vhost: str = "/") -> str:
        channel = await self.conn.channel()
        await channel.declare_queue(name, durable=False)
        for i in range(messages):
            await channel.default_exchange.publish(
                aio_pika.Message(str(i).encode()), routing_key=name
            )
        await channel.close()
        self.queues.append((vhost, name))
        return name

    def delete_all(self) -> None:
        for vhost, name in self.queues:
            path = (
                f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(name, safe='')}"
            )
            with contextlib.suppress(Exception):  # best-effort; the vhost may be gone
                self.server.api("DELETE", path)


@pytest.fixture
async def broker(rabbitmq_server: RabbitMQServer) -> AsyncIterator[Broker]:
    conn = await aio_pika.connect(rabbitmq_server.amqp_url)
    b = Broker(rabbitmq_server, conn)
    try:
        yield b
    finally:
        await conn.close()
        b.delete_all()


def amqp(server: RabbitMQServer, queue: str, **kw: Any) -> RabbitMQScaler:
    return RabbitMQScaler(RabbitMQConfig(host=server.amqp_url, queue_name=queue, **kw))


def http(server: RabbitMQServer, queue: str, **kw: Any) -> RabbitMQScaler:
    return RabbitMQScaler(RabbitMQConfig(host=server.management_url + "/", queue_name=queue, **kw))


async def poll_until(
    scaler: RabbitMQScaler, check: Callable[[ScalerReport], bool], within: float = HTTP_LAG
) -> ScalerReport:
    """Poll until ``check`` holds (the management API lags); return the last report."""
    deadline = time.monotonic() + within
    while True:
        try:
            report = await scaler.get_metrics()
        except ScalerError as exc:  # a fresh queue's counts are not published yet
            if "not reported" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
            continue
        if check(report) or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.25)


def value(report: ScalerReport) -> float:
    return report.values[0].value


async def wait_for(check: Callable[[], Awaitable[bool] | bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def connections_named(server: RabbitMQServer, name: str) -> int:
    conns = server.api("GET", "connections")
    assert isinstance(conns, list)
    return sum(
        1 for c in conns if (c.get("client_properties") or {}).get("connection_name") == name
    )


# ------------------------------------------------------------------ counts and activity


async def test_amqp_counts_ready_messages_with_activation_boundary(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    name = await broker.queue(unique_name("es-amqp"), messages=5)
    at_five = amqp(rabbitmq_server, name, activation_value=5, value=2)
    below = amqp(rabbitmq_server, name, activation_value=4, value=2)
    try:
        report = await at_five.get_metrics()
        assert value(report) == 5
        assert report.is_active is False  # activation equal to the count is inactive
        assert (await below.get_metrics()).is_active is True

        # Take two messages without acknowledging them: AMQP counts ready ones only.
        channel = await broker.conn.channel()
        queue = await channel.get_queue(name, ensure=False)
        held = [await queue.get(no_ack=False) for _ in range(2)]
        assert all(m is not None for m in held)
        assert value(await at_five.get_metrics()) == 3
        for message in held:
            assert message is not None
            await message.ack()
        await channel.close()
        assert value(await at_five.get_metrics()) == 3
    finally:
        await at_five.aclose()
        await below.aclose()


async def test_amqp_empty_queue_is_zero_and_inactive(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    name = await broker.queue(unique_name("es-empty"))
    async with amqp(rabbitmq_server, name) as scaler:
        report = await scaler.get_metrics()
        assert (value(report), report.is_active) == (0, False)


async def test_http_counts_unacknowledged_unless_excluded(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    name = await broker.queue(unique_name("es-http"), messages=5)
    channel = await broker.conn.channel()
    queue = await channel.get_queue(name, ensure=False)
    held = [await queue.get(no_ack=False) for _ in range(2)]
    total = http(rabbitmq_server, name, activation_value=5)
    ready = http(rabbitmq_server, name, exclude_unacknowledged=True, activation_value=2)
    try:
        report = await poll_until(total, lambda r: value(r) == 5)
        assert value(report) == 5  # ready 3 + unacknowledged 2
        assert report.is_active is False  # 5 is not > 5
        report = await poll_until(ready, lambda r: value(r) == 3)
        assert value(report) == 3
        assert report.is_active is True
        for message in held:
            assert message is not None
            await message.ack()
        report = await poll_until(total, lambda r: value(r) == 3)
        assert value(report) == 3
    finally:
        await channel.close()
        await total.aclose()
        await ready.aclose()


async def test_http_message_rate_mode(broker: Broker, rabbitmq_server: RabbitMQServer) -> None:
    name = await broker.queue(unique_name("es-rate"), messages=1)
    async with http(rabbitmq_server, name, mode=Mode.MESSAGE_RATE, value=100) as scaler:
        # Active because m (1) > activation (0) even when the publish rate has decayed.
        report = await poll_until(scaler, lambda r: r.is_active)
        assert report.is_active is True
        assert value(report) >= 0


async def test_regex_operations_over_several_queues(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    prefix = unique_name("es-rx")
    for suffix, count in (("a", 1), ("b", 2), ("c", 6)):
        await broker.queue(f"{prefix}-{suffix}", messages=count)
    await broker.queue(unique_name("es-other"), messages=50)  # must not match
    pattern = f"^{prefix}-"
    expected = {"sum": 9, "max": 6, "avg": 3}
    for operation, want in expected.items():
        async with http(rabbitmq_server, pattern, use_regex=True, operation=operation) as scaler:
            report = await poll_until(scaler, lambda r, w=want: value(r) == w)  # type: ignore[misc]
            assert value(report) == want, operation
            assert report.is_active is True
    async with http(rabbitmq_server, f"^{unique_name('es-none')}$", use_regex=True) as scaler:
        report = await scaler.get_metrics()
        assert (value(report), report.is_active) == (0, False)


async def test_vhost_name_for_both_protocols(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    vhost = unique_name("es-vhost")
    vpath = urllib.parse.quote(vhost, safe="")
    rabbitmq_server.api("PUT", f"vhosts/{vpath}")
    try:
        rabbitmq_server.api(
            "PUT",
            f"permissions/{vpath}/guest",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        conn = await aio_pika.connect(rabbitmq_server.amqp_url + vpath)
        try:
            channel = await conn.channel()
            await channel.declare_queue("jobs")
            for _ in range(4):
                await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="jobs")
        finally:
            await conn.close()
        async with amqp(rabbitmq_server, "jobs", vhost_name=vhost) as scaler:
            assert value(await scaler.get_metrics()) == 4
        async with http(rabbitmq_server, "jobs", vhost_name=vhost) as scaler:
            assert value(await poll_until(scaler, lambda r: value(r) == 4)) == 4
        # the default vhost has no such queue
        async with amqp(rabbitmq_server, "jobs") as scaler:
            with pytest.raises(ScalerError, match="does not exist"):
                await scaler.get_metrics()
    finally:
        rabbitmq_server.api("DELETE", f"vhosts/{vpath}")


async def test_keda_metadata_against_real_broker(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    name = await broker.queue(unique_name("es-meta"), messages=3)
    scaler = RabbitMQScaler.from_context(
        TriggerContext(
            metadata={"queueName": name, "hostFromEnv": "RABBIT", "activationValue": "2"},
            env={"RABBIT": rabbitmq_server.amqp_url},
            index=4,
            trigger_type="rabbitmq",
        )
    )
    async with scaler:
        report = await scaler.get_metrics()
        assert report.value_of(f"s4-rabbitmq-{name}") == 3
        assert report.is_active is True


# ------------------------------------------------------------------ errors


async def test_missing_queue_is_an_error_and_keeps_the_connection(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    conn_name = unique_name("es-conn")
    present = await broker.queue(unique_name("es-present"), messages=2)
    missing = amqp(rabbitmq_server, unique_name("es-missing"), connection_name=conn_name)
    ok = amqp(rabbitmq_server, present, connection_name=conn_name)
    try:
        with pytest.raises(ScalerError, match="does not exist") as info:
            await missing.get_metrics()
        assert info.value.transient is False
        assert value(await ok.get_metrics()) == 2  # same shared connection still works
        with pytest.raises(ScalerError):
            await missing.get_metrics()
        assert value(await ok.get_metrics()) == 2
        await wait_for(
            lambda: connections_named(rabbitmq_server, conn_name) == 1, 10, "one connection"
        )
    finally:
        await missing.aclose()
        await ok.aclose()

    http_missing = http(rabbitmq_server, unique_name("es-missing"))
    async with http_missing:
        with pytest.raises(ScalerError, match="404") as http_info:
            await http_missing.get_metrics()
        assert http_info.value.transient is False


SECRET = "s3cr3t-Pa55word"


@pytest.mark.parametrize("protocol", ["amqp", "http"])
async def test_wrong_credentials_error_never_shows_password(
    rabbitmq_server: RabbitMQServer, protocol: str
) -> None:
    port = rabbitmq_server.amqp_port if protocol == "amqp" else rabbitmq_server.management_port
    host = f"{protocol}://guest:{SECRET}@127.0.0.1:{port}/"
    async with RabbitMQScaler(RabbitMQConfig(host=host, queue_name="anything")) as scaler:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    err = info.value
    assert err.transient is False
    for text in (str(err), repr(err), err.message):
        assert SECRET not in text
    assert "rabbitmq[0]" in str(err)

    # password given as a separate auth parameter
    scaler = RabbitMQScaler.from_context(
        TriggerContext(
            metadata={"queueName": "anything", "host": f"{protocol}://127.0.0.1:{port}/"},
            auth={"username": "guest", "password": SECRET},
            trigger_type="rabbitmq",
        )
    )
    async with scaler:
        with pytest.raises(ScalerError) as info2:
            await scaler.get_metrics()
    assert SECRET not in str(info2.value)
    assert SECRET not in repr(info2.value)


@pytest.mark.parametrize("scheme", ["amqp", "http"])
async def test_unreachable_broker_is_a_transient_error(scheme: str) -> None:
    host = f"{scheme}://guest:{SECRET}@127.0.0.1:{free_port()}/"
    async with RabbitMQScaler(RabbitMQConfig(host=host, queue_name="q")) as scaler:
        for _ in range(2):
            with pytest.raises(ScalerError) as info:
                await scaler.get_metrics()
            assert info.value.transient is True
            assert SECRET not in str(info.value)
            assert isinstance(info.value.__cause__, BaseException)


# ------------------------------------------------------------------ connection hygiene


async def test_scalers_share_one_connection_and_release_it(
    broker: Broker, rabbitmq_server: RabbitMQServer
) -> None:
    conn_name = unique_name("es-share")
    names = [await broker.queue(unique_name("es-s"), messages=i + 1) for i in range(3)]
    scalers = [amqp(rabbitmq_server, n, connection_name=conn_name) for n in names]
    try:
        for _ in range(3):
            values = [value(await s.get_metrics()) for s in scalers]
            assert values == [1, 2, 3]
        await wait_for(
            lambda: connections_named(rabbitmq_server, conn_name) == 1, 10, "one shared connection"
        )
        await scalers[0].aclose()
        assert value(await scalers[1].get_metrics()) == 2  # still open for the others
    finally:
        for s in scalers:
            await s.aclose()
    await wait_for(
        lambda: connections_named(rabbitmq_server, conn_name) == 0, 10, "connection closed"
    )


@pytest.mark.slow
async def test_stopped_broker_is_an_error_then_recovers_without_leaks(
    private_rabbitmq: PrivateRabbitMQ,
) -> None:
    server = private_rabbitmq.server
    conn_name = unique_name("es-fault")
    queue = unique_name("es-fault-q")
    conn = await aio_pika.connect(server.amqp_url)
    channel = await conn.channel()
    await channel.declare_queue(queue, durable=True)
    for _ in range(3):
        await channel.default_exchange.publish(
            aio_pika.Message(b"x", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue,
        )
    await conn.close()

    a = amqp(server, queue, connection_name=conn_name)
    h = http(server, queue)
    try:
        assert value(await a.get_metrics()) == 3
        assert value(await poll_until(h, lambda r: value(r) == 3)) == 3

        private_rabbitmq.stop()
        for scaler in (a, h):
            for _ in range(2):
                with pytest.raises(ScalerError) as info:
                    await scaler.get_metrics()
                assert info.value.transient is True

        private_rabbitmq.start()

        # Recovers by itself on the next polls: no rebuild, no restart of the scaler.
        async def amqp_back() -> bool:
            try:
                return value(await a.get_metrics()) == 3
            except ScalerError:
                return False

        await wait_for(amqp_back, 30, "AMQP reads after restart")
        for _ in range(3):
            assert value(await a.get_metrics()) == 3

        async def http_back() -> bool:
            try:
                return value(await h.get_metrics()) == 3
            except ScalerError:
                return False

        await wait_for(http_back, 30, "HTTP reads after restart")
        await wait_for(
            lambda: connections_named(server, conn_name) == 1, 15, "exactly one connection"
        )
    finally:
        await a.aclose()
        await h.aclose()
    await wait_for(lambda: connections_named(server, conn_name) == 0, 15, "no connection left")


async def test_failed_connect_leaves_no_unclosed_connection_behind() -> None:
    """aio-pika's Connection.__del__ creates a close() coroutine for a connection left
    unclosed, which cannot be awaited when the collector runs outside the event loop;
    the scaler closes a connection whose connect() failed instead of dropping it."""
    import gc

    import aio_pika

    host = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    async with RabbitMQScaler(RabbitMQConfig(host=host, queue_name="q")) as scaler:
        with pytest.raises(ScalerError):
            await scaler.get_metrics()
    gc.collect()
    unclosed = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, aio_pika.Connection) and not obj.is_closed
    ]
    assert unclosed == []


# ------------------------------------------------------------------ metric and activity


@pytest.mark.parametrize(
    ("info", "mode", "active"),
    [
        pytest.param(QueueInfo(4, 3, 0, 0), Mode.QUEUE_LENGTH, True, id="RH1"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.QUEUE_LENGTH, False, id="RH2"),
        pytest.param(QueueInfo(0, 0, 1.4, 2), Mode.QUEUE_LENGTH, False, id="RH3"),
        pytest.param(QueueInfo(1, 1, 0, 1), Mode.MESSAGE_RATE, True, id="RH4"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.MESSAGE_RATE, False, id="RH5"),
        pytest.param(QueueInfo(0, 0, 1.4, 0), Mode.MESSAGE_RATE, True, id="RH6"),
        pytest.param(QueueInfo(20, 20, 0, 10), Mode.DELIVER_GET_RATE, True, id="RH7"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.DELIVER_GET_RATE, False, id="RH8"),
    ],
)
def test_http_activity(info: QueueInfo, mode: Mode, active: bool) -> None:
    _, is_active = metric_and_activity(mode, info, info.messages, 0)
    assert is_active is active


@pytest.mark.parametrize(
    ("m", "p", "d", "milli", "active"),
    [
        pytest.param(0, 0, 0, 0, False, id="RE1"),
        pytest.param(0, 0, 2, 0, False, id="RE2"),
        pytest.param(10, 3, 0, 1000, True, id="RE3"),
        pytest.param(10, 3, 2, 5500, True, id="RE4"),
        pytest.param(4, 0, 2, 1000, False, id="RE5"),
    ],
)
def test_expected_queue_consumption_time(
    m: int, p: float, d: float, milli: int, active: bool
) -> None:
    value, is_active = metric_and_activity(
        Mode.EXPECTED_QUEUE_CONSUMPTION_TIME, QueueInfo(m, m, p, d), m, 1
    )
    assert round(value * 1000) == milli
    assert is_active is active


def test_published_to_delivered_ratio() -> None:
    mode = Mode.PUBLISHED_TO_DELIVERED_RATIO
    assert metric_and_activity(mode, QueueInfo(0, 0, 0, 5), 0, 1) == (0, False)
    assert metric_and_activity(mode, QueueInfo(0, 0, 3, 0), 0, 1) == (1, True)
    assert metric_and_activity(mode, QueueInfo(0, 0, 6, 2), 0, 1) == (3, True)
