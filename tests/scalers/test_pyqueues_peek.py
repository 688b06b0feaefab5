"""Latency on RabbitMQ by peeking (``latencyPeek``), against the real RabbitMQ with real
Celery and Dramatiq publishers and consumers: the latency is the head message's age,
the count does not change, the peeked message is consumed normally afterwards, and
quorum queues are refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import pytest
import redis

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.scalers.pyqueues import CeleryScaler, DramatiqScaler, stamp_publish_time
from servers._proc import unique_name, wait_until
from servers.rabbitmq_srv import PrivateRabbitMQ, RabbitMQServer
from servers.redis_srv import RedisServer

celery = pytest.importorskip("celery")
signals = pytest.importorskip("celery.signals")
dramatiq = pytest.importorskip("dramatiq")
rabbit_broker = pytest.importorskip("dramatiq.brokers.rabbitmq")

pytestmark = pytest.mark.anyio


def peek_meta(server: RabbitMQServer, queue: str, **extra: str) -> dict[str, str]:
    return {
        "broker": "rabbitmq",
        "host": server.amqp_url,
        "queueName": queue,
        "mode": "latency",
        "latencyPeek": "true",
        **extra,
    }


def count_meta(server: RabbitMQServer, queue: str) -> dict[str, str]:
    return {"broker": "rabbitmq", "host": server.amqp_url, "queueName": queue}


async def value_of(scaler: Any) -> float:
    report = await scaler.get_metrics()
    return float(report.values[0].value)


# ------------------------------------------------------------------------------ Celery

WORKER_APP = """
import redis
from celery import Celery

app = Celery("es-peek-worker", broker={broker!r})
marks = redis.Redis.from_url({redis_url!r})

@app.task(name="es.mark")
def mark(key, redelivered_key):
    marks.set(key, 1, ex=120)
    if mark.request.delivery_info.get("redelivered"):
        marks.set(redelivered_key, 1, ex=120)
"""


@pytest.fixture
def celery_queue(rabbitmq_server: RabbitMQServer) -> Iterator[str]:
    name = unique_name("celery")
    yield name
    rabbitmq_server.api("DELETE", f"queues/%2F/{name}")


def run_worker(
    tmp_path: Path, broker: str, redis_url: str, queue: str, log: Any
) -> subprocess.Popen[bytes]:
    module = tmp_path / "es_peek_worker.py"
    module.write_text(textwrap.dedent(WORKER_APP.format(broker=broker, redis_url=redis_url)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "es_peek_worker", "worker"),
            *("--pool", "solo", "-Q", queue, "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def test_celery_latency_peek_then_a_real_worker_runs_every_task(
    rabbitmq_server: RabbitMQServer,
    redis_server: RedisServer,
    celery_queue: str,
    tmp_path: Path,
) -> None:
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    marks = [unique_name("mark") for _ in range(3)]
    redelivered = unique_name("redelivered")
    signals.before_task_publish.connect(stamp_publish_time, weak=False)
    try:
        sent_at = time.time()
        for key in marks:
            app.send_task("es.mark", args=(key, redelivered), queue=celery_queue)
    finally:
        signals.before_task_publish.disconnect(stamp_publish_time)
    later = sent_at + 100.0
    async with CeleryScaler.from_metadata(
        peek_meta(rabbitmq_server, celery_queue), clock=lambda: later
    ) as scaler:
        first = await value_of(scaler)
        second = await value_of(scaler)  # the same head message again: still in place
    assert 95.0 < first <= 100.0
    assert second == first
    async with CeleryScaler.from_metadata(count_meta(rabbitmq_server, celery_queue)) as counter:
        assert await value_of(counter) == 3  # nothing taken, nothing added
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    log = (tmp_path / "worker.log").open("wb")
    worker = run_worker(tmp_path, rabbitmq_server.amqp_url, redis_server.url, celery_queue, log)
    try:
        wait_until(
            lambda: client.exists(*marks) == len(marks), timeout=60, what="the worker's tasks"
        )
        # the peeked head message arrives marked redelivered; Celery runs it all the same
        assert client.exists(redelivered) == 1
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
        client.delete(*marks, redelivered)
        client.close()
    async with CeleryScaler.from_metadata(count_meta(rabbitmq_server, celery_queue)) as counter:
        assert await value_of(counter) == 0


async def test_celery_without_the_hook_is_an_error_and_leaves_the_task(
    rabbitmq_server: RabbitMQServer, celery_queue: str
) -> None:
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    app.send_task("es.never_run", queue=celery_queue)
    async with CeleryScaler.from_metadata(peek_meta(rabbitmq_server, celery_queue)) as scaler:
        with pytest.raises(ScalerError, match="before_task_publish"):
            await scaler.get_metrics()
    async with CeleryScaler.from_metadata(count_meta(rabbitmq_server, celery_queue)) as counter:
        assert await value_of(counter) == 1


async def test_the_amqp_timestamp_property_serves_without_the_hook(
    rabbitmq_server: RabbitMQServer, celery_queue: str
) -> None:
    """A publisher (or the broker's timestamp interceptor) that sets the AMQP
    ``timestamp`` property needs no hook."""
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    sent_at = int(time.time())
    app.send_task("es.never_run", queue=celery_queue, timestamp=sent_at)
    async with CeleryScaler.from_metadata(
        peek_meta(rabbitmq_server, celery_queue), clock=lambda: sent_at + 20.0
    ) as scaler:
        assert await value_of(scaler) == pytest.approx(20.0)


async def test_an_empty_queue_has_no_latency_and_a_missing_one_is_an_error(
    rabbitmq_server: RabbitMQServer, celery_queue: str
) -> None:
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    app.send_task("es.never_run", queue=celery_queue)
    rabbitmq_server.api("DELETE", f"queues/%2F/{celery_queue}/contents")
    async with CeleryScaler.from_metadata(peek_meta(rabbitmq_server, celery_queue)) as scaler:
        report = await scaler.get_metrics()
        assert report.values[0].value == 0
        assert not report.is_active
    missing = unique_name("celery-missing")
    async with CeleryScaler.from_metadata(peek_meta(rabbitmq_server, missing)) as scaler:
        with pytest.raises(ScalerError, match="does not exist"):
            await scaler.get_metrics()


async def test_an_unreachable_broker_is_an_error_not_zero() -> None:
    meta = {
        "broker": "rabbitmq",
        "host": "amqp://guest:guest@127.0.0.1:1/",
        "queueName": "q",
        "mode": "latency",
        "latencyPeek": "true",
    }
    async with DramatiqScaler.from_metadata(meta) as scaler:
        with pytest.raises(ScalerError):
            await scaler.get_metrics()


async def test_a_peek_cut_short_before_the_reject_gives_the_message_back(
    rabbitmq_server: RabbitMQServer, celery_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout between basic.get and the reject must not leave the task with the
    scaler: the peek's channel is closed, so the broker requeues it at once."""
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    app.send_task("es.never_run", queue=celery_queue)

    async def stuck(self: Any, requeue: bool = False) -> None:
        await asyncio.sleep(3600)

    async with (
        CeleryScaler.from_metadata(peek_meta(rabbitmq_server, celery_queue)) as scaler,
        CeleryScaler.from_metadata(count_meta(rabbitmq_server, celery_queue)) as counter,
    ):
        with monkeypatch.context() as patch:
            patch.setattr(aio_pika.IncomingMessage, "reject", stuck)
            with pytest.raises(ScalerTimeout):
                await scaler.get_metrics()
        # still inside the scaler's life: the message is ready again, not held
        with anyio.fail_after(10):
            while await value_of(counter) != 1:  # noqa: ASYNC110 - polling the broker
                await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------ Dramatiq


async def test_dramatiq_latency_peek_then_a_real_worker_runs_every_message(
    rabbitmq_server: RabbitMQServer,
) -> None:
    broker = rabbit_broker.RabbitmqBroker(url=rabbitmq_server.amqp_url)
    queue = unique_name("dramatiq")
    done: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        with lock:
            done.append(n)

    actor = dramatiq.actor(work, actor_name=unique_name("actor"), queue_name=queue, broker=broker)
    first = actor.send(1)
    actor.send(2)
    later = first.message_timestamp / 1000.0 + 64.0
    try:
        async with DramatiqScaler.from_metadata(
            peek_meta(rabbitmq_server, queue), clock=lambda: later
        ) as scaler:
            assert await value_of(scaler) == pytest.approx(64.0, abs=0.01)
            assert await value_of(scaler) == pytest.approx(64.0, abs=0.01)
        async with DramatiqScaler.from_metadata(count_meta(rabbitmq_server, queue)) as counter:
            assert await value_of(counter) == 2
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            broker.join(queue, timeout=30_000)
        finally:
            worker.stop()
        assert sorted(done) == [1, 2]
        async with DramatiqScaler.from_metadata(count_meta(rabbitmq_server, queue)) as counter:
            assert await value_of(counter) == 0
    finally:
        broker.close()
        for q in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            rabbitmq_server.api("DELETE", f"queues/%2F/{q}")


async def test_the_peek_over_tls_with_a_ca_and_with_a_client_certificate(
    private_rabbitmq: PrivateRabbitMQ,
) -> None:
    """amqps:// with the TriggerAuthentication's ``ca`` (password login), and with a
    client certificate and no password (SASL EXTERNAL), as the rabbitmq trigger does."""
    broker = rabbit_broker.RabbitmqBroker(url=private_rabbitmq.server.amqp_url)
    queue = unique_name("dramatiq")
    actor = dramatiq.actor(
        lambda: None, actor_name=unique_name("actor"), queue_name=queue, broker=broker
    )
    message = actor.send()
    later = message.message_timestamp / 1000.0 + 5.0
    ca = private_rabbitmq.ca.cert_pem.bytes().decode()
    cert = private_rabbitmq.client_cert.cert_chain_pems[0].bytes().decode()
    key = private_rabbitmq.client_cert.private_key_pem.bytes().decode()
    with_password = peek_meta(private_rabbitmq.server, queue)
    with_password["host"] = private_rabbitmq.amqps_url
    external = {**with_password, "host": f"amqps://localhost:{private_rabbitmq.amqps_port}/"}
    try:
        for meta, auth in (
            (with_password, {"tls": "enable", "ca": ca}),
            (external, {"tls": "enable", "ca": ca, "cert": cert, "key": key}),
        ):
            async with DramatiqScaler.from_metadata(meta, auth=auth, clock=lambda: later) as s:
                assert await value_of(s) == pytest.approx(5.0, abs=0.01)
        # a CA that did not sign the server's certificate: an error, never 0
        wrong_ca = private_rabbitmq.other_ca.cert_pem.bytes().decode()
        async with DramatiqScaler.from_metadata(
            with_password, auth={"tls": "enable", "ca": wrong_ca}
        ) as s:
            with pytest.raises(ScalerError):
                await s.get_metrics()
    finally:
        broker.close()
        for q in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            private_rabbitmq.server.api("DELETE", f"queues/%2F/{q}")


# ------------------------------------------------------------------------------ quorum


@pytest.fixture
async def quorum_queue(rabbitmq_server: RabbitMQServer) -> AsyncIterator[tuple[str, Any]]:
    name = unique_name("quorum")
    connection = await aio_pika.connect(rabbitmq_server.amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name, channel
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()


async def delivery_count(channel: Any, queue: str) -> int:
    """The head message's x-delivery-count (0 without one), put back afterwards."""
    handle = await channel.get_queue(queue)
    message = await handle.get(no_ack=False, fail=False)
    assert message is not None, "the message is gone"
    await message.reject(requeue=True)
    return int((message.headers or {}).get("x-delivery-count", 0))


async def test_quorum_queues_are_refused(
    rabbitmq_server: RabbitMQServer, quorum_queue: tuple[str, Any]
) -> None:
    name, channel = quorum_queue
    stamp = datetime.fromtimestamp(int(time.time()), UTC)
    await channel.default_exchange.publish(aio_pika.Message(b"{}", timestamp=stamp), name)
    async with CeleryScaler.from_metadata(peek_meta(rabbitmq_server, name)) as scaler:
        with pytest.raises(ScalerError, match="quorum queue") as info:
            await scaler.get_metrics()
        assert not info.value.transient
        touched = await delivery_count(channel, name)
        # the first peek took the message twice: that check recognised the queue
        assert touched >= 1
        for _ in range(3):
            with pytest.raises(ScalerError, match="quorum queue"):
                await scaler.get_metrics()
    # refused without touching the message again (our own check above added one)
    assert await delivery_count(channel, name) == touched + 1


# ------------------------------------------------------------------------------ config


def test_latency_on_rabbitmq_is_opt_in_and_needs_amqp() -> None:
    base = {"broker": "rabbitmq", "queueName": "q", "mode": "latency"}
    with pytest.raises(ConfigError, match="latencyPeek") as info:
        CeleryScaler.from_metadata({**base, "host": "amqp://h/"})
    assert "metadata.mode" in str(info.value)
    with pytest.raises(ConfigError, match="amqp") as info:
        DramatiqScaler.from_metadata({**base, "host": "http://h:15672/", "latencyPeek": "true"})
    assert "latencyPeek" in str(info.value)
    scaler = DramatiqScaler.from_metadata({**base, "host": "amqp://h/", "latencyPeek": "true"})
    assert scaler.settings.latency_peek
    assert scaler.metric_name.endswith("-latency")
