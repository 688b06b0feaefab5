"""The Redis streams scaler against a real Redis 7 server and a real cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from eventscale.errors import ScalerError
from eventscale.scalers.redis._connection import RedisConnection, RedisMode
from eventscale.scalers.redis.streams import RedisStreamsConfig, RedisStreamsScaler, StreamMode
from servers._proc import unique_name
from servers.redis_srv import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def stream(redis_server: RedisServer) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A stream of 10 entries; group ``workers`` has read 4 and acknowledged 1.

    So: length 10, pending 3, lag 6.
    """
    key = unique_name("stream")
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    for i in range(10):
        await client.xadd(key, {"n": str(i)})
    await client.xgroup_create(key, "workers", id="0")
    await client.xreadgroup("workers", "c1", {key: ">"}, count=4)
    pending = await client.xpending_range(key, "workers", min="-", max="+", count=10)
    await client.xack(key, "workers", pending[0]["message_id"])
    try:
        yield client, key
    finally:
        await client.delete(key)
        await client.aclose()


@pytest.mark.parametrize(
    ("meta", "mode", "count"),
    [
        pytest.param({}, StreamMode.LENGTH, 10, id="length"),
        pytest.param({"consumerGroup": "workers"}, StreamMode.PENDING, 3, id="pending"),
        pytest.param({"consumerGroup": "workers", "lagCount": "4"}, StreamMode.LAG, 6, id="lag"),
        pytest.param(
            {"consumerGroup": "not-created-yet", "lagCount": "4"},
            StreamMode.LAG,
            10,
            id="lag-group-missing-counts-xlen",
        ),
    ],
)
async def test_modes(
    redis_server: RedisServer,
    stream: tuple[aioredis.Redis, str],
    meta: dict[str, str],
    mode: StreamMode,
    count: int,
) -> None:
    _, key = stream
    for activation, active in ((count, False), (count - 1, True)):
        scaler = RedisStreamsScaler.from_metadata(
            {
                "address": redis_server.address,
                "stream": key,
                "activationLagCount": str(activation),
                **meta,
            },
            index=2,
        )
        async with scaler:
            assert scaler.config.mode is mode
            report = await scaler.get_metrics()
            assert report.value_of(f"s2-redis-streams-{key}") == count
            assert report.is_active is active  # equal to the activation value: inactive


async def test_rs19_rs20_activation_in_lag_mode(redis_server: RedisServer) -> None:
    key = unique_name("rs19")
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        await client.xgroup_create(key, "g", id="$", mkstream=True)
        scaler = RedisStreamsScaler.from_metadata(
            {
                "address": redis_server.address,
                "stream": key,
                "consumerGroup": "g",
                "lagCount": "5",
                "activationLagCount": "3",
            }
        )
        try:
            async with scaler:
                report = await scaler.get_metrics()
                assert (report.value_of(f"s0-redis-streams-{key}"), report.is_active) == (0, False)
                for i in range(4):
                    await client.xadd(key, {"n": str(i)})
                report = await scaler.get_metrics()
                assert (report.value_of(f"s0-redis-streams-{key}"), report.is_active) == (4, True)
        finally:
            await client.delete(key)


async def test_missing_stream(redis_server: RedisServer) -> None:
    key = unique_name("nostream")
    base = {"address": redis_server.address, "stream": key}
    async with RedisStreamsScaler.from_metadata(base) as length:
        assert (await length.get_metrics()).value_of(f"s0-redis-streams-{key}") == 0
    async with RedisStreamsScaler.from_metadata(
        {**base, "consumerGroup": "g", "lagCount": "1"}
    ) as lag:
        report = await lag.get_metrics()  # no stream yet: nothing to do (as KEDA)
        assert (report.value_of(f"s0-redis-streams-{key}"), report.is_active) == (0, False)
    async with RedisStreamsScaler.from_metadata({**base, "consumerGroup": "g"}) as pending:
        with pytest.raises(ScalerError, match="NOGROUP") as info:
            await pending.get_metrics()
        assert info.value.transient is False


async def test_xinfo_error_is_an_error_not_xlen(redis_server: RedisServer) -> None:
    key = unique_name("notastream")
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        await client.rpush(key, "a", "b")
        try:
            scaler = RedisStreamsScaler(
                RedisStreamsConfig(
                    stream=key,
                    connection=RedisConnection(addresses=redis_server.address),
                    consumer_group="g",
                    lag_count=5,
                )
            )
            async with scaler:
                with pytest.raises(ScalerError, match="XINFO GROUPS") as info:
                    await scaler.get_metrics()
                assert "WRONGTYPE" in str(info.value)
        finally:
            await client.delete(key)


async def test_undeterminable_lag_is_an_error(
    redis_server: RedisServer, stream: tuple[aioredis.Redis, str]
) -> None:
    client, key = stream
    entries = await client.xrange(key)
    assert entries is not None
    unread_id = entries[7][0]
    assert unread_id is not None
    await client.xdel(key, unread_id)  # delete an entry the group has not read yet
    info = await client.xinfo_groups(key)
    assert info[0]["lag"] is None  # Redis itself cannot tell
    scaler = RedisStreamsScaler(
        RedisStreamsConfig(
            stream=key,
            connection=RedisConnection(addresses=redis_server.address),
            consumer_group="workers",
            lag_count=5,
        )
    )
    async with scaler:
        with pytest.raises(ScalerError, match="cannot determine the lag"):
            await scaler.get_metrics()


async def test_wait_for_activity_wakes_on_xadd(redis_server: RedisServer) -> None:
    key = unique_name("pushstream")
    async with (
        aioredis.Redis(host=redis_server.host, port=redis_server.port) as client,
        RedisStreamsScaler(
            RedisStreamsConfig(
                stream=key, connection=RedisConnection(addresses=redis_server.address)
            ),
            push_poll_interval=30.0,
        ) as scaler,
    ):
        try:
            waiter = asyncio.create_task(scaler.wait_for_activity())
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await client.xadd(key, {"n": "1"})
            await asyncio.wait_for(waiter, timeout=10)
        finally:
            await client.delete(key)


async def test_cluster_streams(redis_cluster: RedisCluster) -> None:
    key = unique_name("clstream")
    client = aioredis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        for i in range(5):
            await client.xadd(key, {"n": str(i)})
        await client.xgroup_create(key, "g", id="0")
        await client.xreadgroup("g", "c", {key: ">"}, count=2)
        scaler = RedisStreamsScaler.from_metadata(
            {
                "addresses": ",".join(redis_cluster.addresses),
                "stream": key,
                "consumerGroup": "g",
                "lagCount": "2",
            },
            trigger_type="redis-cluster-streams",
        )
        async with scaler:
            assert scaler.config.connection == RedisConnection(
                addresses=redis_cluster.addresses, mode=RedisMode.CLUSTER
            )
            report = await scaler.get_metrics()
            assert report.value_of(f"s0-redis-streams-{key}") == 3
    finally:
        await client.delete(key)
        await client.aclose()
