"""Keyspace-notification wake-ups on a Redis Cluster.

Keyspace notifications are local to the node that holds a key: a client subscribed to
one node never hears of a push to a key on another. So on a cluster the trigger's keys
are grouped by the node that serves their slot, and one subscription is opened on each
of those nodes (a plain connection made with the cluster client's own connection
settings: credentials, TLS), each running
:func:`~eventscale.scalers.redis.wait_on_keyspace`; the first to see the trigger
active ends the wait. A slot that moves to another node during the wait is caught by
the periodic safety-net check, and the next wait subscribes where the keys now are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from eventscale._optional import import_optional
from eventscale.scalers.redis import RedisLease, RedisMode, redis_call, wait_on_keyspace

__all__ = ("wait_on_cluster",)


async def wait_on_cluster(
    lease: RedisLease,
    keys: Sequence[str],
    flags: str,
    is_active: Callable[[], Awaitable[bool]],
    *,
    poll_interval: float,
    notified_interval: float = 5.0,
) -> None:
    """Return once ``is_active()`` is true, woken by keyspace events on ``keys``, which
    live on the nodes of the cluster ``lease.client``.

    :raises ScalerError: the cluster cannot be read.
    """
    client, conn = lease.client, lease.conn
    await redis_call(conn, "reading the cluster's slots", client.initialize)
    by_node: dict[str, tuple[Any, list[str]]] = {}
    for key in keys:
        node = client.get_node_from_key(key)
        if node is None:  # a slot without a master right now: poll
            by_node.clear()
            break
        by_node.setdefault(node.name, (node, []))[1].append(key)
    if not by_node:
        while True:
            if await is_active():
                return
            await asyncio.sleep(poll_interval)
    redis_asyncio = import_optional("redis.asyncio", extra="redis", what="the redis scaler")
    node_clients: list[Any] = []
    node_leases: list[RedisLease] = []
    waits: list[asyncio.Future[None]] = []
    try:
        for node, node_keys in by_node.values():
            pool = redis_asyncio.ConnectionPool(
                connection_class=node.connection_class,
                max_connections=4,
                **node.connection_kwargs,
            )
            node_client = redis_asyncio.Redis(connection_pool=pool)
            node_clients.append(node_client)
            node_conn = attrs.evolve(
                conn, mode=RedisMode.STANDALONE, addresses=(f"{node.host}:{node.port}",)
            )
            node_lease = RedisLease.of_client(node_conn, node_client)
            node_leases.append(node_lease)
            waits.append(
                asyncio.ensure_future(
                    wait_on_keyspace(
                        node_lease,
                        node_keys,
                        flags,
                        is_active,
                        poll_interval=poll_interval,
                        notified_interval=notified_interval,
                    )
                )
            )
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in done:
            wait.result()  # a failed subscription fails the wait
    finally:
        for wait in waits:
            wait.cancel()
        for wait in waits:
            with contextlib.suppress(BaseException):
                await wait
        for node_lease in node_leases:
            with contextlib.suppress(Exception):
                await node_lease.aclose_hub()
        for node_client in node_clients:
            with contextlib.suppress(Exception):
                await node_client.aclose(close_connection_pool=True)
