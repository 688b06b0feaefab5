"""The celery trigger against real Redis and RabbitMQ, with tasks sent by Celery itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from eventscale.errors import ConfigError, ScalerError
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.pyqueues.celery import (
    PRIORITY_SEPARATOR,
    CeleryScaler,
    priority_keys,
    stamp_publish_time,
)
from servers._proc import unique_name, wait_until
from servers.rabbitmq_srv import RabbitMQServer
from servers.redis_srv import RedisServer

celery = pytest.importorskip("celery")
signals = pytest.importorskip("celery.signals")

pytestmark = pytest.mark.anyio


def redis_app(server: RedisServer) -> Any:
    return celery.Celery("es-test", broker=server.url, set_as_current=False)


@pytest.fixture
def queue(redis_server: RedisServer) -> Iterator[str]:
    name = unique_name("celery")
    yield name
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.delete(*priority_keys(name))
    client.close()


async def value_of(scaler: CeleryScaler) -> float:
    """The scaler's value; -1 while RabbitMQ has not published a fresh queue's counts."""
    try:
        report = await scaler.get_metrics()
    except ScalerError as exc:
        if "not reported" not in str(exc):
            raise
        return -1.0
    return report.values[0].value


async def test_counts_every_priority_sub_queue(redis_server: RedisServer, queue: str) -> None:
    app = redis_app(redis_server)
    for priority in (0, 0, 3, 5, 9, 9):
        app.send_task("es.never_run", queue=queue, priority=priority)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    # the layout the scaler reads is the one kombu wrote: several lists for one queue
    assert client.llen(queue) == 2
    assert client.llen(f"{queue}{PRIORITY_SEPARATOR}9") == 2
    client.close()
    async with CeleryScaler.from_metadata(
        {"queueName": queue, "address": redis_server.address, "value": "2"}
    ) as scaler:
        report = await scaler.get_metrics()
        assert report.values[0].value == 6
        assert report.is_active
        assert scaler.metric_specs()[0].target == 2


async def test_several_queues_are_summed_and_empty_is_inactive(
    redis_server: RedisServer, queue: str
) -> None:
    other = unique_name("celery")
    app = redis_app(redis_server)
    app.send_task("es.never_run", queue=queue)
    app.send_task("es.never_run", queue=other)
    app.send_task("es.never_run", queue=other)
    try:
        async with CeleryScaler.from_metadata(
            {"queues": f"{queue},{other}", "address": redis_server.address}
        ) as scaler:
            assert await value_of(scaler) == 3
        async with CeleryScaler.from_metadata(
            {"queueName": unique_name("celery-empty"), "address": redis_server.address}
        ) as scaler:
            report = await scaler.get_metrics()
            assert report.values[0].value == 0
            assert not report.is_active
    finally:
        client = redis.Redis(host=redis_server.host, port=redis_server.port)
        client.delete(*priority_keys(other))
        client.close()


async def test_latency_reads_the_publish_time_hook(redis_server: RedisServer, queue: str) -> None:
    app = redis_app(redis_server)
    signals.before_task_publish.connect(stamp_publish_time, weak=False)
    try:
        sent_at = time.time()
        app.send_task("es.never_run", queue=queue, priority=9)
        app.send_task("es.never_run", queue=queue)
    finally:
        signals.before_task_publish.disconnect(stamp_publish_time)
    later = sent_at + 120.0
    async with CeleryScaler.from_metadata(
        {"queueName": queue, "address": redis_server.address, "mode": "latency"},
        clock=lambda: later,
    ) as scaler:
        latency = await value_of(scaler)
    assert 110.0 < latency <= 120.0
    assert scaler.metric_name.endswith("-latency")


async def test_latency_without_the_hook_is_an_error(redis_server: RedisServer, queue: str) -> None:
    redis_app(redis_server).send_task("es.never_run", queue=queue)
    async with CeleryScaler.from_metadata(
        {"queueName": queue, "address": redis_server.address, "mode": "latency"}
    ) as scaler:
        with pytest.raises(ScalerError, match="before_task_publish"):
            await scaler.get_metrics()


async def test_unreachable_redis_is_an_error_not_zero() -> None:
    async with CeleryScaler.from_metadata(
        {"queueName": "celery", "address": "127.0.0.1:1", "timeout": "1s"}
    ) as scaler:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    assert info.value.trigger == "celery[0]"


WORKER_APP = """
import time
import redis
from celery import Celery

app = Celery("es-worker", broker={url!r})
release = redis.Redis.from_url({url!r})

@app.task(name="es.block")
def block(key):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not release.exists(key):
        time.sleep(0.05)
"""


@pytest.fixture
def celery_worker(
    redis_server: RedisServer, queue: str, tmp_path: Path
) -> Iterator[tuple[Any, str]]:
    """A real ``celery worker --pool solo`` on the queue; its tasks block until released."""
    module = tmp_path / "es_celery_worker.py"
    module.write_text(textwrap.dedent(WORKER_APP.format(url=redis_server.url)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    release = unique_name("celery-release")
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "es_celery_worker", "worker"),
            *("--pool", "solo", "-Q", queue, "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        yield redis_app(redis_server), release
    finally:
        client.set(release, 1, ex=120)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        client.delete(release)
        client.close()
        log.close()


async def test_held_tasks_count_with_include_held(
    redis_server: RedisServer, queue: str, celery_worker: tuple[Any, str]
) -> None:
    app, release = celery_worker
    for _ in range(8):
        app.send_task("es.block", args=(release,), queue=queue)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    # the solo worker takes a task and holds it, unacknowledged, while it runs
    wait_until(lambda: client.llen(queue) < 8, timeout=60, what="the worker to take a task")
    client.close()
    async with (
        CeleryScaler.from_metadata(
            {"queueName": queue, "address": redis_server.address}
        ) as waiting,
        CeleryScaler.from_metadata(
            {"queueName": queue, "address": redis_server.address, "includeHeld": "true"}
        ) as held,
    ):
        assert await value_of(waiting) < 8
        assert await value_of(held) == 8


async def test_rabbitmq_broker_counts_through_the_management_api(
    rabbitmq_server: RabbitMQServer,
) -> None:
    name = unique_name("celery")
    app = celery.Celery("es-test", broker=rabbitmq_server.amqp_url, set_as_current=False)
    for _ in range(3):
        app.send_task("es.never_run", queue=name)
    try:
        async with CeleryScaler.from_metadata(
            {
                "broker": "rabbitmq",
                "host": rabbitmq_server.management_url + "/",
                "queueName": name,
                "includeHeld": "true",
            }
        ) as scaler:
            with anyio.fail_after(30):
                # the management API lags a few seconds
                while await value_of(scaler) != 3:  # noqa: ASYNC110 - polling the broker
                    await anyio.sleep(0.5)
    finally:
        rabbitmq_server.api("DELETE", f"queues/%2F/{name}")


async def test_rabbitmq_missing_queue_is_an_error(rabbitmq_server: RabbitMQServer) -> None:
    async with CeleryScaler.from_metadata(
        {
            "broker": "rabbitmq",
            "host": rabbitmq_server.management_url + "/",
            "queueName": unique_name("celery-missing"),
        }
    ) as scaler:
        with pytest.raises(ScalerError):
            await scaler.get_metrics()


def test_registered_and_config_errors_name_the_field() -> None:
    ctx = TriggerContext(
        metadata={"queueName": "q", "address": "127.0.0.1:6379"}, trigger_type="celery"
    )
    assert isinstance(create_scaler(ctx), CeleryScaler)
    with pytest.raises(ConfigError) as info:
        CeleryScaler.from_metadata(
            {"broker": "rabbitmq", "host": "http://h:15672/", "queueName": "q", "mode": "latency"}
        )
    assert "metadata.mode" in str(info.value)
    with pytest.raises(ConfigError) as info:
        CeleryScaler.from_metadata({"queueName": "q", "address": "h:1", "value": "-1"})
    assert "metadata.value" in str(info.value)
    with pytest.raises(ConfigError) as info:
        CeleryScaler.from_metadata(
            {"broker": "rabbitmq", "host": "amqp://h/", "queueName": "q", "includeHeld": "true"}
        )
    assert "includeHeld" in str(info.value)


def test_priority_keys_follow_kombu() -> None:
    assert priority_keys("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
    assert priority_keys("q", (0, 5), prefix="p:") == ["p:q", "p:q\x06\x165"]
