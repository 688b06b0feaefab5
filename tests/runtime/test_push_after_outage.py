"""After a Redis outage the push wake-up works again within seconds (runtime/controller.py,
``PUSH_RETRY_CAP``), not after a retry back-off grown towards the polling interval."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

from eventscale.runtime.controller import PUSH_RETRY_CAP, Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import MemoryTarget
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio


async def test_push_works_again_soon_after_an_outage(
    private_redis: Callable[..., RedisServer],
) -> None:
    server = private_redis()
    meta = {"address": server.address, "listName": "jobs", "listLength": "1"}
    spec = ScaledObjectSpec(
        name="pushed",
        scale_target_ref=ScaleTargetRef(name="w"),
        triggers=(TriggerSpec(type="redis", metadata=meta),),
        polling_interval=300,  # a poll never explains a scale-out within this test
    )
    target = MemoryTarget(0)
    scaled = anyio.Event()

    def on_event(event: Event) -> None:
        if event.kind is EventKind.SCALE and (event.to_replicas or 0) > 0:
            scaled.set()

    async with Controller(spread=False) as ctl:
        ctl.events.add_hook(on_event)
        ctl.add(ScaledObject(spec, target=target))
        await anyio.sleep(1)  # the first reconcile (idle) and the watch armed
        assert server.proc is not None
        server.proc.stop()
        await anyio.sleep(20)  # the outage: the watch fails and backs off meanwhile
        server = private_redis(port=server.port)
        client = aioredis.Redis(port=server.port)
        try:
            await client.rpush("jobs", "a")
            # the watch retries within PUSH_RETRY_CAP, then one keyspace event wakes
            # the object: far below the 300 s polling interval (and the ~16 s an
            # uncapped back-off had reached after this outage: 16 s, then 32 s)
            with anyio.fail_after(PUSH_RETRY_CAP + 6):
                await scaled.wait()
        finally:
            await client.aclose()
    assert target.requested == 1
