"""A ScaledJob with a push-capable trigger polls once at start, not twice: the push watch
is armed only after the loop's first reconcile (runtime/controller.py, ``_watch``)."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis

from eventscale.jobs.memory import MemoryJobTarget
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_job import ScaledJob
from eventscale.spec import ScaledJobSpec, TriggerSpec
from servers._proc import unique_name
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio


async def test_one_poll_and_one_round_of_starts_at_start(redis_server: RedisServer) -> None:
    name = unique_name("sj-start")
    client = aioredis.Redis(port=redis_server.port)
    try:
        await client.rpush(name, "a", "b", "c")
        meta = {"address": f"127.0.0.1:{redis_server.port}", "listName": name, "listLength": "1"}
        trigger = TriggerSpec(type="redis", metadata=meta)
        spec = ScaledJobSpec(name=name, job_target_ref={}, triggers=(trigger,), polling_interval=30)
        target = MemoryJobTarget(name=name)
        job = ScaledJob(spec, target=target)
        events: list[Event] = []
        async with Controller(spread=False) as ctl:
            ctl.events.add_hook(events.append)
            ctl.add(job)
            with anyio.move_on_after(1.5):
                await ctl.run_until_cancelled()
        polls = [e for e in events if e.kind is EventKind.POLL]
        scales = [e for e in events if e.kind is EventKind.SCALE]
        assert len(polls) == 1, [e.time for e in polls]
        assert [(e.from_replicas, e.to_replicas) for e in scales] == [(0, 3)]
        assert len(await target.list_jobs()) == 3
    finally:
        await client.delete(name)
        await client.aclose()
