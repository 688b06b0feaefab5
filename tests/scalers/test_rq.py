"""The rq trigger against the real Redis, with jobs enqueued by RQ itself and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from eventscale.errors import ConfigError, ScalerError
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.pyqueues.rq import RQScaler, parse_enqueued_at
from servers._proc import unique_name, wait_until
from servers.redis_srv import RedisServer

rq = pytest.importorskip("rq")

pytestmark = pytest.mark.anyio


@pytest.fixture
def conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield client
    client.close()


@pytest.fixture
def queue(conn: redis.Redis) -> Iterator[Any]:
    q = rq.Queue(unique_name("rq"), connection=conn)
    yield q
    keys = [f"rq:queue:{q.name}", f"rq:queue:{q.name}:intermediate", f"rq:wip:{q.name}"]
    job_ids: list[bytes] = conn.lrange(keys[0], 0, -1)  # type: ignore[assignment]
    conn.delete(*keys, *(f"rq:job:{job_id.decode()}" for job_id in job_ids))


async def value_of(scaler: RQScaler) -> float:
    report = await scaler.get_metrics()
    return report.values[0].value


async def test_counts_queued_jobs(redis_server: RedisServer, queue: Any) -> None:
    for _ in range(4):
        queue.enqueue("time.sleep", 0)
    async with RQScaler.from_metadata(
        {"queueName": queue.name, "address": redis_server.address, "activationValue": "3"}
    ) as scaler:
        report = await scaler.get_metrics()
    assert report.values[0].value == 4
    assert report.is_active
    async with RQScaler.from_metadata(
        {"queueName": unique_name("rq-empty"), "address": redis_server.address}
    ) as scaler:
        report = await scaler.get_metrics()
    assert report.values[0].value == 0  # an absent key is an empty queue, as KEDA's redis
    assert not report.is_active


async def test_latency_from_enqueued_at(redis_server: RedisServer, queue: Any) -> None:
    before = time.time()
    first = queue.enqueue("time.sleep", 0)
    queue.enqueue("time.sleep", 0)
    assert first.enqueued_at is not None
    later = before + 300.0
    async with RQScaler.from_metadata(
        {"queueName": queue.name, "address": redis_server.address, "mode": "latency"},
        clock=lambda: later,
    ) as scaler:
        latency = await value_of(scaler)
    assert 290.0 < latency <= 300.0


async def test_latency_skips_a_deleted_job(
    redis_server: RedisServer, queue: Any, conn: redis.Redis
) -> None:
    gone = queue.enqueue("time.sleep", 0)
    kept = queue.enqueue("time.sleep", 0)
    conn.delete(f"rq:job:{gone.id}")
    assert kept.enqueued_at is not None
    now = kept.enqueued_at.timestamp() + 50.0
    async with RQScaler.from_metadata(
        {"queueName": queue.name, "address": redis_server.address, "mode": "latency"},
        clock=lambda: now,
    ) as scaler:
        assert await value_of(scaler) == pytest.approx(50.0, abs=0.01)


async def test_an_unreadable_enqueue_time_is_an_error(
    redis_server: RedisServer, queue: Any, conn: redis.Redis
) -> None:
    job = queue.enqueue("time.sleep", 0)
    conn.hset(f"rq:job:{job.id}", "enqueued_at", "yesterday")
    async with RQScaler.from_metadata(
        {"queueName": queue.name, "address": redis_server.address, "mode": "latency"}
    ) as scaler:
        with pytest.raises(ScalerError, match="enqueued_at"):
            await scaler.get_metrics()


async def test_a_queue_key_of_the_wrong_type_is_an_error(
    redis_server: RedisServer, conn: redis.Redis
) -> None:
    name = unique_name("rq")
    conn.set(f"rq:queue:{name}", "not a list")
    try:
        async with RQScaler.from_metadata(
            {"queueName": name, "address": redis_server.address}
        ) as scaler:
            with pytest.raises(ScalerError, match="WRONGTYPE"):
                await scaler.get_metrics()
    finally:
        conn.delete(f"rq:queue:{name}")


@pytest.fixture
def rq_worker(redis_server: RedisServer, queue: Any) -> Iterator[None]:
    """A real RQ ``SimpleWorker`` (burst) on the queue, in its own process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "rq.SimpleWorker"),
            *("--url", redis_server.url, queue.name),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


async def test_started_jobs_count_with_include_held(
    redis_server: RedisServer, queue: Any, conn: redis.Redis, rq_worker: None
) -> None:
    for _ in range(3):
        queue.enqueue("time.sleep", 60)
    wait_until(
        lambda: conn.zcard(f"rq:wip:{queue.name}") == 1,
        timeout=60,
        what="the RQ worker to start a job",
    )
    async with (
        RQScaler.from_metadata({"queueName": queue.name, "address": redis_server.address}) as q,
        RQScaler.from_metadata(
            {"queueName": queue.name, "address": redis_server.address, "includeHeld": "true"}
        ) as held,
    ):
        assert await value_of(q) == 2
        assert await value_of(held) == 3


def test_registered_config_and_parsing() -> None:
    ctx = TriggerContext(metadata={"address": "127.0.0.1:6379"}, trigger_type="rq")
    scaler = create_scaler(ctx)
    assert isinstance(scaler, RQScaler)
    assert scaler.settings.queues == ("default",)
    with pytest.raises(ConfigError) as info:
        RQScaler.from_metadata({"broker": "rabbitmq", "host": "http://h/"})
    assert "metadata.broker" in str(info.value)
    with pytest.raises(ConfigError) as info:
        RQScaler.from_metadata({"address": "h:1", "mode": "latency", "includeHeld": "true"})
    assert "metadata.includeHeld" in str(info.value)
    assert parse_enqueued_at(b"2024-06-01T12:00:00.250000Z") == 1717243200.25
    with pytest.raises(ValueError, match="too long"):
        parse_enqueued_at("x" * 100)
