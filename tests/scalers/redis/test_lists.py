"""The Redis list scaler against real Redis servers (shared, private, TLS, cluster, sentinel)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

from eventscale.errors import MissingExtraError, ScalerError, ScalerTimeout
from eventscale.scalers import PushScaler, Scaler
from eventscale.scalers.redis._client import REGISTRY
from eventscale.scalers.redis._connection import RedisConnection, RedisMode
from eventscale.scalers.redis.lists import QueueAgeMode, RedisListConfig, RedisListScaler
from servers._proc import unique_name
from servers.redis_srv import RedisCluster, RedisSentinel, RedisServer, RedisTLS

pytestmark = pytest.mark.anyio


class ManualClock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admin(server: RedisServer, password: str | None = None) -> aioredis.Redis:
    return aioredis.Redis(host=server.host, port=server.port, password=password)


async def eventscale_clients(client: aioredis.Redis) -> int:
    """Connections the server sees from eventscale (its clients are named so)."""
    listing = await client.client_list()
    return sum(1 for entry in listing if entry.get("name") == "eventscale")


async def settled_clients(client: aioredis.Redis, expected: int, within: float = 5.0) -> int:
    """The eventscale connection count once it reaches ``expected`` or ``within`` passes.

    A client closes its socket before the server has processed the disconnect, so a
    count read right after ``aclose()`` can still include it for a moment.
    """
    deadline = anyio.current_time() + within
    count = await eventscale_clients(client)
    while count != expected and anyio.current_time() < deadline:
        await anyio.sleep(0.02)
        count = await eventscale_clients(client)
    return count


@pytest.mark.parametrize(
    ("items", "activation", "active"),
    [
        pytest.param(0, 0, False, id="empty-inactive"),
        pytest.param(1, 0, True, id="one-item-active"),
        pytest.param(3, 3, False, id="equal-to-activation-inactive"),
        pytest.param(4, 3, True, id="above-activation-active"),
        pytest.param(7, 0, True, id="seven"),
    ],
)
async def test_length_and_activation(
    redis_server: RedisServer, items: int, activation: int, active: bool
) -> None:
    key = unique_name("list")
    async with admin(redis_server) as client:
        if items:
            await client.lpush(key, *[f"job-{i}" for i in range(items)])
        scaler = RedisListScaler.from_metadata(
            {
                "address": redis_server.address,
                "listName": key,
                "listLength": "5",
                "activationListLength": str(activation),
            }
        )
        try:
            assert isinstance(scaler, Scaler)
            assert isinstance(scaler, PushScaler)
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-{key}") == items
            assert report.is_active is active
            spec = scaler.metric_specs()[0]
            assert (spec.name, spec.target, spec.activation_target) == (
                f"s0-redis-{key}",
                5,
                activation,
            )
        finally:
            await scaler.aclose()
            await client.delete(key)


async def test_other_key_types_like_keda(redis_server: RedisServer) -> None:
    key = unique_name("types")
    async with (
        admin(redis_server) as client,
        RedisListScaler(
            RedisListConfig(
                list_name=key, connection=RedisConnection(addresses=redis_server.address)
            )
        ) as scaler,
    ):
        try:
            await client.sadd(key, "a", "b")
            assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 2
            await client.delete(key)
            await client.zadd(key, {"a": 1, "b": 2, "c": 3})
            assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 3
            await client.delete(key)
            await client.hset(key, mapping={"a": "1"})
            assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 1
            await client.delete(key)
            await client.set(key, "text")
            with pytest.raises(ScalerError, match="unsupported type 'string'") as info:
                await scaler.get_metrics()
            assert info.value.transient is False
        finally:
            await client.delete(key)


async def test_database_index(redis_server: RedisServer) -> None:
    key = unique_name("db")
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port, db=3) as client:
        await client.rpush(key, "a", "b")
        try:
            async with (
                RedisListScaler.from_metadata(
                    {"address": redis_server.address, "listName": key, "databaseIndex": "3"}
                ) as in_db3,
                RedisListScaler(
                    RedisListConfig(
                        list_name=key, connection=RedisConnection(addresses=redis_server.address)
                    )
                ) as in_db0,
            ):
                assert (await in_db3.get_metrics()).value_of(f"s0-redis-{key}") == 2
                assert (await in_db0.get_metrics()).value_of(f"s0-redis-{key}") == 0
        finally:
            await client.delete(key)


async def test_queue_age_from_prefix_timestamp(redis_server: RedisServer) -> None:
    key = unique_name("age")
    clock = ManualClock(1_000_030.0)
    scaler = RedisListScaler(
        RedisListConfig(
            list_name=key,
            connection=RedisConnection(addresses=redis_server.address),
            queue_age_mode=QueueAgeMode.TIMESTAMP,
            activation_list_length=10,
            activation_queue_age=20,
        ),
        clock=clock,
    )
    async with admin(redis_server) as client, scaler:
        try:
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-queue-age-{key}") == 0
            assert not report.is_active
            # LPUSH producers: the oldest item is at the right end
            await client.lpush(key, "1000000.0|first", "1000005.0|second")
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-{key}") == 2
            assert report.value_of(f"s0-redis-queue-age-{key}") == 30
            assert report.is_active  # by age (30 > 20), not by length (2 <= 10)
            clock.now = 1_000_020.0
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-queue-age-{key}") == 20
            assert not report.is_active  # 20 is not above 20
            assert [s.name for s in scaler.metric_specs()] == [
                f"s0-redis-{key}",
                f"s0-redis-queue-age-{key}",
            ]
        finally:
            await client.delete(key)


async def test_queue_age_from_json_field_left_end(redis_server: RedisServer) -> None:
    key = unique_name("agejson")
    clock = ManualClock(1_700_000_060.0)
    scaler = RedisListScaler.from_metadata(
        {
            "address": redis_server.address,
            "listName": key,
            "queueAgeMode": "timestamp",
            "timestampField": "meta.enqueued_at",
            "oldestItemAt": "left",
            "queueAgeTarget": "15",
        },
        clock=clock,
    )
    async with admin(redis_server) as client, scaler:
        try:
            await client.rpush(
                key,
                json.dumps({"meta": {"enqueued_at": 1_700_000_000_000}}),  # milliseconds
                json.dumps({"meta": {"enqueued_at": 1_700_000_050.0}}),
            )
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-queue-age-{key}") == pytest.approx(60.0)
            assert scaler.metric_specs()[1].target == 15
            await client.lpush(key, b"\x80\x04 secret-payload-data")
            with pytest.raises(ScalerError, match="no readable timestamp") as info:
                await scaler.get_metrics()
            assert "secret-payload-data" not in str(info.value)
        finally:
            await client.delete(key)


async def test_queue_age_since_empty(redis_server: RedisServer) -> None:
    key = unique_name("since")
    clock = ManualClock(100.0)
    scaler = RedisListScaler(
        RedisListConfig(
            list_name=key,
            connection=RedisConnection(addresses=redis_server.address),
            queue_age_mode=QueueAgeMode.SINCE_EMPTY,
            activation_list_length=100,
            activation_queue_age=20,
        ),
        clock=clock,
    )
    name = f"s0-redis-queue-age-{key}"
    async with admin(redis_server) as client, scaler:
        try:
            assert (await scaler.get_metrics()).value_of(name) == 0
            await client.lpush(key, "a")
            clock.now = 110.0
            assert (await scaler.get_metrics()).value_of(name) == 0  # first sight of items
            clock.now = 135.0
            report = await scaler.get_metrics()
            assert report.value_of(name) == 25
            assert report.is_active
            await client.delete(key)
            clock.now = 140.0
            assert (await scaler.get_metrics()).value_of(name) == 0
            await client.lpush(key, "b")
            clock.now = 150.0
            assert (await scaler.get_metrics()).value_of(name) == 0  # the backlog restarted
        finally:
            await client.delete(key)


async def test_wait_for_activity_wakes_on_push(redis_server: RedisServer) -> None:
    key = unique_name("push")
    async with (
        admin(redis_server) as client,
        RedisListScaler(
            RedisListConfig(
                list_name=key, connection=RedisConnection(addresses=redis_server.address)
            ),
            push_poll_interval=30.0,
        ) as scaler,
    ):
        try:
            waiter = asyncio.create_task(scaler.wait_for_activity())
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await client.lpush(key, "job")
            # A generous bound: with keyspace notifications it returns almost at once,
            # and the 30 s fallback poll interval would blow it.
            await asyncio.wait_for(waiter, timeout=10)
            # already active: returns at once
            await asyncio.wait_for(scaler.wait_for_activity(), timeout=10)
        finally:
            await client.delete(key)


async def test_clients_are_shared_and_closed(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    key = unique_name("shared")
    async with admin(server) as client:
        first = RedisListScaler(
            RedisListConfig(list_name=key, connection=RedisConnection(addresses=server.address))
        )
        second = RedisListScaler.from_metadata({"address": server.address, "listName": key})
        other_db = RedisListScaler(
            RedisListConfig(
                list_name=key,
                connection=RedisConnection(addresses=server.address, database_index=1),
            )
        )
        for scaler in (first, second, other_db):
            await scaler.get_metrics()
        assert REGISTRY.refcount(first.config.connection) == 2
        assert REGISTRY.refcount(other_db.config.connection) == 1
        assert await eventscale_clients(client) == 2  # one pool per distinct settings
        await first.aclose()
        await first.aclose()  # idempotent
        assert REGISTRY.refcount(first.config.connection) == 1
        assert (await second.get_metrics()).value_of(f"s0-redis-{key}") == 0
        await second.aclose()
        await other_db.aclose()
        assert REGISTRY.refcount(first.config.connection) == 0
        assert await settled_clients(client, 0) == 0
        with pytest.raises(ScalerError, match="closed"):
            await first.get_metrics()


async def test_server_down_then_back(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    key = unique_name("fault")
    scaler = RedisListScaler(
        RedisListConfig(
            list_name=key, connection=RedisConnection(addresses=server.address, timeout=2.0)
        )
    )
    try:
        async with admin(server) as client:
            await client.rpush(key, "a", "b")
        assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 2
        assert server.proc is not None
        server.proc.stop()
        for _ in range(3):
            with pytest.raises(ScalerError) as info:
                await scaler.get_metrics()
            assert info.value.transient
            assert str(server.port) in str(info.value)
        restarted = private_redis(port=server.port)
        async with admin(restarted) as client:
            await client.rpush(key, "x")
            # recovers by itself: the same scaler object, no rebuild
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-{key}") == 1
            for _ in range(5):
                await scaler.get_metrics()
            assert await eventscale_clients(client) == 1  # no leaked connections
            await scaler.aclose()
            assert await settled_clients(client, 0) == 0
    finally:
        await scaler.aclose()


async def test_wrong_password_is_an_error_without_the_password(
    private_redis: Callable[..., RedisServer],
) -> None:
    server = private_redis("--requirepass", "right-pass-123")
    key = unique_name("auth")
    wrong = RedisListScaler.from_metadata(
        {"address": server.address, "listName": key}, {"password": "wrong-pass-456"}
    )
    async with wrong:
        with pytest.raises(ScalerError) as info:
            await wrong.get_metrics()
        err = info.value
        assert not isinstance(err, ScalerTimeout)
        assert err.transient is False
        assert "authentication failed" in str(err)
        for text in (str(err), repr(err), repr(wrong.config), str(err.__cause__)):
            assert "wrong-pass-456" not in text
        assert err.trigger == "redis[0]"
    async with RedisListScaler(
        RedisListConfig(
            list_name=key,
            connection=RedisConnection(addresses=server.address, password="right-pass-123"),
        )
    ) as right:
        assert (await right.get_metrics()).is_active is False
    missing = RedisListScaler(
        RedisListConfig(list_name=key, connection=RedisConnection(addresses=server.address))
    )
    async with missing:
        with pytest.raises(ScalerError, match="authentication failed"):
            await missing.get_metrics()


async def test_timeout_is_scaler_timeout(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    key = unique_name("slow")
    async with RedisListScaler(
        RedisListConfig(
            list_name=key, connection=RedisConnection(addresses=server.address, timeout=0.3)
        )
    ) as scaler:
        await scaler.get_metrics()  # connected before the freeze
        assert server.proc is not None
        os.kill(server.proc.popen.pid, signal.SIGSTOP)  # accepts TCP, never answers
        try:
            with pytest.raises(ScalerTimeout) as info:
                await scaler.get_metrics()
            assert info.value.transient
            assert isinstance(info.value, TimeoutError)
        finally:
            os.kill(server.proc.popen.pid, signal.SIGCONT)
        assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 0


async def test_refused_connection(private_redis: Callable[..., RedisServer]) -> None:
    server = private_redis()
    assert server.proc is not None
    server.proc.stop()
    async with RedisListScaler(
        RedisListConfig(list_name="x", connection=RedisConnection(addresses=server.address))
    ) as scaler:
        with pytest.raises(ScalerError, match="cannot connect") as info:
            await scaler.get_metrics()
        assert info.value.transient


async def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError, match=r"eventscale\[redis\]"):
        RedisListScaler(
            RedisListConfig(
                list_name="jobs", connection=RedisConnection(addresses="127.0.0.1:6379")
            )
        )


async def test_tls_with_ca(redis_tls: RedisTLS) -> None:
    key = unique_name("tls")
    meta = {"address": redis_tls.server.address, "listName": key, "enableTLS": "true"}
    async with RedisListScaler.from_metadata(meta, {"ca": redis_tls.ca_pem}) as scaler:
        assert (await scaler.get_metrics()).value_of(f"s0-redis-{key}") == 0
    async with RedisListScaler.from_metadata({**meta, "unsafeSsl": "true"}) as unsafe:
        assert (await unsafe.get_metrics()).value_of(f"s0-redis-{key}") == 0
    async with RedisListScaler.from_metadata(meta) as untrusted:
        with pytest.raises(ScalerError) as info:
            await untrusted.get_metrics()
        assert "certificate" in str(info.value).lower()


async def test_tls_with_client_certificate(redis_tls: RedisTLS) -> None:
    key = unique_name("mtls")
    scaler = RedisListScaler.from_metadata(
        {"address": redis_tls.server.address, "listName": key},
        {
            "tls": "enable",
            "ca": redis_tls.ca_pem,
            "cert": redis_tls.client_cert_pem,
            "key": redis_tls.client_key_pem,
        },
    )
    async with scaler:
        assert scaler.config.connection.enable_tls
        assert (await scaler.get_metrics()).is_active is False
        info = await scaler._acquire().client.execute_command("CLIENT", "INFO")
        assert b"eventscale" in info


async def test_redis_cluster(redis_cluster: RedisCluster) -> None:
    keys = [unique_name("cl") for _ in range(4)]  # spread over the slots of three masters
    scalers = [
        RedisListScaler.from_metadata(
            {"addresses": ",".join(redis_cluster.addresses), "listName": key},
            trigger_type="redis-cluster",
        )
        for key in keys
    ]
    seed = RedisConnection(addresses=redis_cluster.addresses, mode=RedisMode.CLUSTER)
    cluster_client = aioredis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        for n, key in enumerate(keys, start=1):
            await cluster_client.rpush(key, *[str(i) for i in range(n)])
        for n, (key, scaler) in enumerate(zip(keys, scalers, strict=True), start=1):
            assert scaler.config.connection == seed
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-{key}") == n
            assert report.is_active
        assert REGISTRY.refcount(seed) == len(keys)
        # push path in a cluster: checks every push_poll_interval
        waiter_key = unique_name("clpush")
        async with RedisListScaler(
            RedisListConfig(connection=seed, list_name=waiter_key), push_poll_interval=0.05
        ) as waiter_scaler:
            waiter = asyncio.create_task(waiter_scaler.wait_for_activity())
            await asyncio.sleep(0.1)
            assert not waiter.done()
            await cluster_client.lpush(waiter_key, "x")
            await asyncio.wait_for(waiter, timeout=10)
            await cluster_client.delete(waiter_key)
    finally:
        for key in keys:
            await cluster_client.delete(key)
        await cluster_client.aclose()
        for scaler in scalers:
            await scaler.aclose()


async def test_redis_sentinel(redis_sentinel: RedisSentinel) -> None:
    key = unique_name("sent")
    async with admin(redis_sentinel.master) as client:
        await client.rpush(key, "a", "b", "c")
        try:
            scaler = RedisListScaler.from_metadata(
                {
                    "addresses": redis_sentinel.sentinel.address,
                    "listName": key,
                    "sentinelMaster": redis_sentinel.master_name,
                    "activationListLength": "2",
                },
                trigger_type="redis-sentinel",
            )
            async with scaler:
                report = await scaler.get_metrics()
                assert report.value_of(f"s0-redis-{key}") == 3
                assert report.is_active
                await client.delete(key)
                waiter = asyncio.create_task(scaler.wait_for_activity())
                await asyncio.sleep(0.1)
                await client.rpush(key, "a", "b", "c")
                await asyncio.wait_for(waiter, timeout=10)
            wrong = RedisListScaler.from_metadata(
                {
                    "addresses": redis_sentinel.sentinel.address,
                    "listName": key,
                    "sentinelMaster": "no-such-master",
                },
                trigger_type="redis-sentinel",
            )
            async with wrong:
                with pytest.raises(ScalerError):
                    await wrong.get_metrics()
        finally:
            await client.delete(key)
