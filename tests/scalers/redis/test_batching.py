"""Reads of many Redis scalers on one client go out as one pipeline per poll slot.

The round trips are counted on the wire: every scaler talks to Redis through a TCP tap
(``servers.tap``) that counts, per connection, the *turns*: client data arriving after
a reply was forwarded since the client last sent. A client that waits for each reply
before sending the next command makes one turn per command; a pipeline is one turn
whatever its length. The tap's hook also counts the commands (RESP arrays) the client
sent, so the test knows the reads really went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.metrics import ScalerReport
from eventscale.scalers.redis._client import REGISTRY
from eventscale.scalers.redis._connection import RedisConnection, RedisMode
from eventscale.scalers.redis.lists import ListEnd, QueueAgeMode, RedisListConfig, RedisListScaler
from eventscale.scalers.redis.streams import RedisStreamsConfig, RedisStreamsScaler
from servers._proc import unique_name
from servers.redis_srv import RedisCluster, RedisSentinel, RedisServer
from servers.tap import Link, Tap

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- the proxy


def _command_end(buf: bytes) -> int | None:
    """Where the first complete RESP command (an array of bulk strings) in ``buf`` ends."""
    line = buf.find(b"\r\n")
    if line < 0:
        return None
    if not buf.startswith(b"*"):
        return line + 2  # an inline command: one line
    pos = line + 2
    for _ in range(int(buf[1:line])):
        line = buf.find(b"\r\n", pos)
        if line < 0:
            return None
        size = int(buf[pos + 1 : line])
        pos = line + 2 + size + 2
        if pos > len(buf):
            return None
    return pos


def count_commands(link: Link, data: bytes) -> None:
    """The tap's hook: counts the complete commands in a client's byte stream."""
    link.buffer += data
    while (end := _command_end(link.buffer)) is not None:
        link.messages += 1
        link.buffer = link.buffer[end:]


@contextlib.asynccontextmanager
async def proxy_to(server: RedisServer) -> AsyncIterator[Tap]:
    """A tap to ``server`` whose ``messages`` are the commands the clients sent."""
    async with Tap((server.host, server.port), on_client=count_commands) as proxy:
        yield proxy


def list_scaler(conn: RedisConnection, key: str, **extra: Any) -> RedisListScaler:
    return RedisListScaler(RedisListConfig(list_name=key, connection=conn, **extra))


@contextlib.asynccontextmanager
async def warm_lists(
    server: RedisServer, keys: Sequence[str], **connection: Any
) -> AsyncIterator[tuple[Tap, list[RedisListScaler]]]:
    """List scalers of ``keys`` on one connection through a tap to ``server``: connected
    and authenticated by a first poll, then the tap's counts reset; closed on leaving."""
    async with proxy_to(server) as proxy:
        conn = RedisConnection(addresses=proxy.address, **connection)
        scalers = [list_scaler(conn, key) for key in keys]
        try:
            await scalers[0].get_metrics()
            proxy.reset()
            yield proxy, scalers
        finally:
            await close_all(scalers)


async def poll_all(scalers: Sequence[Any]) -> list[ScalerReport | BaseException]:
    """Poll every scaler in the same slot, as a controller does with objects due together."""
    return list(await asyncio.gather(*(s.get_metrics() for s in scalers), return_exceptions=True))


async def close_all(scalers: Sequence[Any]) -> None:
    for scaler in scalers:
        await scaler.aclose()


# --------------------------------------------------------------------------- the goal


async def test_a_thousand_lists_in_one_slot_take_one_round_trip(
    redis_server: RedisServer,
) -> None:
    prefix = unique_name("batch")
    keys = [f"{prefix}:{i}" for i in range(1000)]
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as admin:
        pipe = admin.pipeline(transaction=False)
        for i, key in enumerate(keys):
            if i % 7:
                pipe.rpush(key, *range(i % 7))
        await pipe.execute()
        try:
            async with warm_lists(redis_server, keys) as (proxy, scalers):
                reports = await poll_all(scalers)
                assert [r.values[0].value for r in reports] == [  # type: ignore[union-attr]
                    float(i % 7) for i in range(1000)
                ]
                assert proxy.messages == 1000
                assert proxy.turns == 1, "1,000 LLEN must leave in one pipelined round trip"
                assert len(proxy.busy_links()) == 1
                # the next slot is one round trip again
                proxy.reset()
                await poll_all(scalers)
                assert (proxy.turns, proxy.messages) == (1, 1000)
        finally:
            await admin.delete(*keys)


async def test_without_batching_each_read_is_a_round_trip(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same measure counts a turn per read when batching is off."""
    monkeypatch.setattr(REGISTRY, "batch_window", None)
    prefix = unique_name("unbatched")
    keys = [f"{prefix}:{i}" for i in range(200)]
    async with warm_lists(redis_server, keys) as (proxy, scalers):
        reports = await poll_all(scalers)
        assert all(isinstance(r, ScalerReport) for r in reports)
        # 200 LLEN (plus the handshakes of the pool's other connections), each sent
        # alone once the previous reply on its connection came back
        assert proxy.messages >= 200
        assert proxy.turns >= 200


async def test_a_window_collects_polls_that_start_apart(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(REGISTRY, "batch_window", 0.05)
    prefix = unique_name("window")
    keys = [f"{prefix}:{i}" for i in range(20)]
    async with warm_lists(redis_server, keys) as (proxy, scalers):

        async def staggered(i: int, scaler: RedisListScaler) -> ScalerReport:
            for _ in range(i):  # each poll starts a few loop iterations after the last
                await asyncio.sleep(0)
            return await scaler.get_metrics()

        await asyncio.gather(*(staggered(i, s) for i, s in enumerate(scalers)))
        assert (proxy.turns, proxy.messages) == (1, 20)


# --------------------------------------------------------------------------- per caller


async def test_each_caller_gets_its_own_result_or_error(redis_server: RedisServer) -> None:
    prefix = unique_name("mixed")
    keys = {name: f"{prefix}:{name}" for name in ("list", "hash", "string", "old", "stream")}
    now = time.time()
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as admin:
        await admin.rpush(keys["list"], "a", "b", "c")
        await admin.hset(keys["hash"], mapping={"x": "1", "y": "2"})
        await admin.set(keys["string"], "not a list")
        await admin.rpush(keys["old"], "no timestamp here", f"{now - 30}|job")
        await admin.xadd(keys["stream"], {"f": "1"})
        await admin.xgroup_create(keys["stream"], "workers", id="0")
        try:
            async with proxy_to(redis_server) as proxy:
                conn = RedisConnection(addresses=proxy.address)
                scalers: list[Any] = [
                    list_scaler(conn, keys["list"]),
                    list_scaler(conn, keys["hash"]),
                    list_scaler(conn, keys["string"]),
                    list_scaler(conn, f"{prefix}:missing"),
                    # the oldest item (right end) carries a timestamp; the left one does not
                    list_scaler(conn, keys["old"], queue_age_mode=QueueAgeMode.TIMESTAMP),
                    list_scaler(
                        conn,
                        keys["old"],
                        queue_age_mode=QueueAgeMode.TIMESTAMP,
                        oldest_item_at=ListEnd.LEFT,
                    ),
                    RedisStreamsScaler(
                        RedisStreamsConfig(
                            stream=keys["stream"], connection=conn, consumer_group="workers"
                        )
                    ),
                    RedisStreamsScaler(
                        RedisStreamsConfig(
                            stream=keys["stream"], connection=conn, consumer_group="nobody"
                        )
                    ),
                    RedisStreamsScaler(RedisStreamsConfig(stream=keys["stream"], connection=conn)),
                ]
                try:
                    await scalers[0].get_metrics()
                    proxy.reset()
                    (
                        lst,
                        hsh,
                        string,
                        missing,
                        age,
                        bad_age,
                        pending,
                        nogroup,
                        length,
                    ) = await poll_all(scalers)
                    assert isinstance(lst, ScalerReport)
                    assert lst.values[0].value == 3
                    assert isinstance(hsh, ScalerReport)
                    assert hsh.values[0].value == 2
                    assert isinstance(string, ScalerError)
                    assert "unsupported type 'string'" in str(string)
                    assert isinstance(missing, ScalerReport)
                    assert missing.values[0].value == 0
                    assert isinstance(age, ScalerReport)
                    assert age.values[0].value == 2
                    assert age.values[1].value >= 29
                    assert isinstance(bad_age, ScalerError)
                    assert "carries no readable timestamp" in str(bad_age)
                    assert isinstance(pending, ScalerReport)
                    assert pending.values[0].value == 0
                    assert isinstance(nogroup, ScalerError)
                    assert "NOGROUP" in str(nogroup)
                    assert nogroup.transient is False
                    assert isinstance(length, ScalerReport)
                    assert length.values[0].value == 1
                    # first slot: 9 reads; second: TYPE of the hash and the string, LINDEX
                    # of both age lists; third: HLEN of the hash
                    assert proxy.turns == 3
                    assert proxy.messages == 9 + 4 + 1
                finally:
                    await close_all(scalers)
        finally:
            await admin.delete(*keys.values())


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(
    redis_server: RedisServer,
) -> None:
    prefix = unique_name("cancel")
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as admin:
        await admin.rpush(f"{prefix}:0", "x")
        await admin.rpush(f"{prefix}:2", "x", "y")
        try:
            conn = RedisConnection(addresses=redis_server.address)
            scalers = [list_scaler(conn, f"{prefix}:{i}") for i in range(3)]
            try:
                await scalers[0].get_metrics()
                tasks = [asyncio.create_task(s.get_metrics()) for s in scalers]
                await asyncio.sleep(0)  # every poll has queued its read
                tasks[1].cancel()
                first, second, third = await asyncio.gather(*tasks, return_exceptions=True)
                assert isinstance(second, asyncio.CancelledError)
                assert isinstance(first, ScalerReport)
                assert first.values[0].value == 1
                assert isinstance(third, ScalerReport)
                assert third.values[0].value == 2
            finally:
                await close_all(scalers)
        finally:
            await admin.delete(f"{prefix}:0", f"{prefix}:2")


async def test_a_hanging_server_times_every_caller_out(redis_server: RedisServer) -> None:
    prefix = unique_name("hang")
    keys = [f"{prefix}:{i}" for i in range(5)]
    async with warm_lists(redis_server, keys, timeout=0.5) as (proxy, scalers):
        proxy.hold = True
        results = await poll_all(scalers)
        assert all(isinstance(r, ScalerTimeout) for r in results), results
        assert "timed out after 0.5s" in str(results[0])
        proxy.hold = False
        recovered = await poll_all(scalers)
        assert all(isinstance(r, ScalerReport) for r in recovered), recovered


async def test_different_credentials_never_share_a_batch(private_redis: Any) -> None:
    secret_a, secret_b = "pw-" + unique_name("a"), "pw-" + unique_name("b")
    server = private_redis("--requirepass", secret_a)
    async with aioredis.Redis(host=server.host, port=server.port, password=secret_a) as admin:
        await admin.acl_setuser(
            "other", enabled=True, passwords=[f"+{secret_b}"], commands=["+@all"], keys=["*"]
        )
        await admin.rpush("jobs", "1", "2")
    async with proxy_to(server) as proxy:
        first = RedisConnection(addresses=proxy.address, password=secret_a)
        second = RedisConnection(addresses=proxy.address, username="other", password=secret_b)
        wrong = RedisConnection(addresses=proxy.address, password="wrong-" + secret_a)
        scalers = (
            [list_scaler(first, "jobs") for _ in range(4)]
            + [list_scaler(second, "jobs") for _ in range(4)]
            + [list_scaler(wrong, "jobs") for _ in range(4)]
        )
        try:
            await scalers[0].get_metrics()
            await scalers[4].get_metrics()
            assert REGISTRY.batcher(first) is not REGISTRY.batcher(second)
            proxy.reset()
            results = await poll_all(scalers)
            assert [r.values[0].value for r in results[:8]] == [2.0] * 8  # type: ignore[union-attr]
            for failed in results[8:]:
                assert isinstance(failed, ScalerError)
                assert "authentication failed" in str(failed)
                assert secret_a not in str(failed)
            # one turn for each good client's 4 reads, none shared between them
            good = [link for link in proxy.busy_links() if link.messages == 4]
            assert len(good) == 2
            assert all(link.turns == 1 for link in good)
        finally:
            await close_all(scalers)


async def test_cluster_batches_group_by_node(redis_cluster: RedisCluster) -> None:
    prefix = unique_name("cluster")
    keys = [f"{prefix}:{i}" for i in range(60)]
    seed = redis_cluster.nodes[0]
    async with aioredis.RedisCluster(host=seed.host, port=seed.port) as admin:
        for i, key in enumerate(keys):
            await admin.rpush(key, *range(i % 5 + 1))
        await admin.set(f"{prefix}:string", "x")
        try:
            conn = RedisConnection(addresses=redis_cluster.addresses, mode=RedisMode.CLUSTER)
            scalers = [list_scaler(conn, key) for key in [*keys, f"{prefix}:string"]]
            try:
                await scalers[0].get_metrics()
                batcher = REGISTRY.batcher(conn)
                assert batcher is not None
                before = batcher.batches
                results = await poll_all(scalers)
                assert [r.values[0].value for r in results[:-1]] == [  # type: ignore[union-attr]
                    float(i % 5 + 1) for i in range(60)
                ]
                assert isinstance(results[-1], ScalerError)
                assert "unsupported type 'string'" in str(results[-1])
                # LLEN of all 61 keys in one pipeline; then TYPE of the string
                assert batcher.batches - before == 2
            finally:
                await close_all(scalers)
        finally:
            await admin.delete(*keys, f"{prefix}:string")


async def test_cluster_stream_reads_batch_with_their_own_errors(
    redis_cluster: RedisCluster,
) -> None:
    prefix = unique_name("cstream")
    streams = [f"{prefix}:{i}" for i in range(12)]
    seed = redis_cluster.nodes[0]
    async with aioredis.RedisCluster(host=seed.host, port=seed.port) as admin:
        for i, stream in enumerate(streams):
            for _ in range(i + 1):
                await admin.xadd(stream, {"f": "1"})
            await admin.xgroup_create(stream, "workers", id="0")
        try:
            conn = RedisConnection(addresses=redis_cluster.addresses, mode=RedisMode.CLUSTER)
            scalers: list[Any] = [
                RedisStreamsScaler(
                    RedisStreamsConfig(
                        stream=stream, connection=conn, consumer_group="workers", lag_count=1
                    )
                )
                for stream in streams
            ]
            scalers += [
                RedisStreamsScaler(RedisStreamsConfig(stream=f"{prefix}:none", connection=conn)),
                RedisStreamsScaler(
                    RedisStreamsConfig(
                        stream=f"{prefix}:none", connection=conn, consumer_group="g", lag_count=1
                    )
                ),
                RedisStreamsScaler(
                    RedisStreamsConfig(stream=streams[0], connection=conn, consumer_group="nobody")
                ),
            ]
            try:
                *lags, length, missing_lag, nogroup = await poll_all(scalers)
                assert [r.values[0].value for r in lags] == [  # type: ignore[union-attr]
                    float(i + 1) for i in range(12)
                ]
                assert isinstance(length, ScalerReport)
                assert length.values[0].value == 0
                assert isinstance(missing_lag, ScalerReport)  # no stream yet: lag 0, as KEDA
                assert missing_lag.values[0].value == 0
                assert isinstance(nogroup, ScalerError)
                assert "NOGROUP" in str(nogroup)
            finally:
                await close_all(scalers)
        finally:
            await admin.delete(*streams)


async def test_sentinel_master_reads_batch(redis_sentinel: RedisSentinel) -> None:
    prefix = unique_name("sbatch")
    keys = [f"{prefix}:{i}" for i in range(20)]
    master = redis_sentinel.master
    async with aioredis.Redis(host=master.host, port=master.port) as admin:
        for i, key in enumerate(keys):
            await admin.rpush(key, *range(i + 1))
        try:
            conn = RedisConnection(
                addresses=[redis_sentinel.sentinel.address],
                mode=RedisMode.SENTINEL,
                sentinel_master=redis_sentinel.master_name,
            )
            scalers = [list_scaler(conn, key) for key in keys]
            try:
                await scalers[0].get_metrics()
                batcher = REGISTRY.batcher(conn)
                assert batcher is not None
                before = batcher.batches
                results = await poll_all(scalers)
                assert [r.values[0].value for r in results] == [  # type: ignore[union-attr]
                    float(i + 1) for i in range(20)
                ]
                assert batcher.batches - before == 1
            finally:
                await close_all(scalers)
        finally:
            await admin.delete(*keys)


async def test_lag_mode_checks_the_server_version_once_per_client(
    redis_server: RedisServer,
) -> None:
    prefix = unique_name("lagv")
    async with proxy_to(redis_server) as proxy:
        conn = RedisConnection(addresses=proxy.address)
        warm = list_scaler(conn, f"{prefix}:warm")
        scalers = [
            RedisStreamsScaler(
                RedisStreamsConfig(
                    stream=f"{prefix}:{i}", connection=conn, consumer_group="g", lag_count=5
                )
            )
            for i in range(10)
        ]
        try:
            await warm.get_metrics()  # connect first
            proxy.reset()
            results = await poll_all(scalers)
            assert all(isinstance(r, ScalerReport) for r in results), results
            # one INFO for the ten scalers, then their ten XINFO GROUPS in one pipeline
            assert (proxy.turns, proxy.messages) == (2, 11)
            proxy.reset()
            await poll_all(scalers)
            assert (proxy.turns, proxy.messages) == (1, 10)
        finally:
            await close_all([warm, *scalers])


async def test_keyspace_waits_share_one_pubsub_connection(private_redis: Any) -> None:
    """Thirty scalers waiting for activity hold one pub/sub connection, not thirty, and
    each wakes on its own key only."""
    server = private_redis()
    conn = RedisConnection(addresses=server.address)
    keys = [f"jobs-{i}" for i in range(30)]
    scalers = [list_scaler(conn, key) for key in keys]
    async with aioredis.Redis(host=server.host, port=server.port) as admin:
        waits = [asyncio.create_task(s.wait_for_activity()) for s in scalers]
        try:
            deadline = time.monotonic() + 10
            hub = REGISTRY.hub(conn)
            while (hub is None or hub.channels < 30) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                hub = REGISTRY.hub(conn)
            assert hub is not None
            assert hub.channels == 30
            listing = await admin.client_list()
            subscribers = [c for c in listing if c.get("name") == "eventscale" and c["sub"] != "0"]
            assert len(subscribers) == 1
            assert subscribers[0]["sub"] == "30"
            # a push wakes its waiter only
            await admin.rpush(keys[7], "x")
            await asyncio.wait_for(waits[7], 5)
            await asyncio.sleep(0.2)
            assert [w.done() for w in waits].count(True) == 1
            # reads still work while the waits hold the subscription
            report = await scalers[7].get_metrics()
            assert report.values[0].value == 1
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            await close_all(scalers)
