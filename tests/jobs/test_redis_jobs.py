"""ScaledJob against the real Redis: the queue is a Redis list, jobs are in memory.

Each in-memory job takes its work item when it starts (``LPOP`` on the real list, in
``on_start``), then "works" for a scripted time on a manual clock. The trigger is the
real ``redis`` scaler reading ``LLEN`` from the server. Items arrive in bursts while
jobs run. For every strategy, the invariants are: no job starts without an item, no
item is left without a job at the end (each is taken exactly once), and never more
than ``maxReplicaCount`` jobs are unfinished at once.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from eventscale.jobs import JobCounts, MemoryJob, MemoryJobTarget, ScaledJob
from eventscale.testing import ManualClock
from servers._proc import unique_name
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio

MAX = 4
# items pushed at these ticks (one tick = pollingInterval = 5 s)
BURSTS = {0: 6, 1: 3, 3: 9, 4: 1, 8: 2}


def manifest(address: str, queue: str, strategy: str) -> str:
    extra = ""
    if strategy == "custom":
        extra = (
            "    customScalingQueueLengthDeduction: 0\n"
            "    customScalingRunningJobPercentage: '0.5'\n"
        )
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: {queue}}}
spec:
  jobTargetRef:
    template:
      spec:
        containers: [{{name: worker, image: busybox}}]
  pollingInterval: 5
  maxReplicaCount: {MAX}
  successfulJobsHistoryLimit: 3
  scalingStrategy:
    strategy: {strategy}
{extra}  triggers:
  - type: redis
    metadata:
      address: "{address}"
      listName: {queue}
      listLength: "1"
"""


@pytest.mark.parametrize("strategy", ["default", "custom", "accurate", "eager"])
async def test_every_item_gets_exactly_one_job_within_max(
    redis_server: RedisServer, strategy: str
) -> None:
    queue = unique_name("sj-queue")
    clock = ManualClock(1_000.0)
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    pushed: list[str] = []

    async def take_item(job: MemoryJob) -> str | None:
        raw = await client.lpop(queue)
        assert raw is None or isinstance(raw, bytes)
        return raw.decode() if raw is not None else None

    # jobs take 7 to 12 seconds; every fifth one fails (its item still counts as taken)
    target = MemoryJobTarget(
        clock=clock,
        duration=lambda i: 7.0 + (i % 6),
        exit_code=lambda i: 1 if i % 5 == 4 else 0,
        on_start=take_item,
    )
    sj = ScaledJob.from_manifest(
        manifest(redis_server.address, queue, strategy), target=target, clock=clock
    )
    try:
        for tick in range(40):
            for _ in range(BURSTS.get(tick, 0)):
                item = f"item-{len(pushed)}"
                pushed.append(item)
                await client.rpush(queue, item)
            report = await sj.reconcile()
            assert report.ok, report
            now = clock()
            assert target.unfinished_at(now) <= MAX
            left = await client.llen(queue)
            if strategy in ("accurate", "eager"):
                # these count the list as work not yet taken: no item waits while
                # there is room for a job
                assert left == 0 or target.unfinished_at(now) == MAX, (tick, left)
            if tick > max(BURSTS) and left == 0 and target.unfinished_at(now) == 0:
                break
            clock.advance(5)
        else:
            pytest.fail(f"work left after 40 ticks: {await client.llen(queue)} items")
        taken = [job.payload for job in target.jobs]
        assert None not in taken, "a job was started without a work item"
        assert sorted(taken) == sorted(pushed)  # each item taken exactly once
        assert target.max_concurrent() <= MAX
        assert target.max_concurrent() == MAX  # the bursts are big enough to fill it
        final = JobCounts.of(await target.list_jobs())
        assert final.running == 0
        # history: at most 3 succeeded kept; failed ones kept (limit 100)
        assert final.succeeded <= 3
        assert final.failed == sum(1 for j in target.jobs if j.exit_code != 0)
    finally:
        await sj.aclose()
        await client.delete(queue)
        await client.aclose()


async def test_a_down_redis_starts_no_jobs_and_reports_the_error(
    redis_server: RedisServer,
) -> None:
    from servers._proc import free_port

    clock = ManualClock(0.0)
    target = MemoryJobTarget(clock=clock)
    text = manifest(f"127.0.0.1:{free_port()}", unique_name("sj-down"), "default")
    sj = ScaledJob.from_manifest(text, target=target, clock=clock, poll_timeout=3)
    try:
        report = await sj.reconcile()
    finally:
        await sj.aclose()
    assert not report.ok
    assert report.triggers[0].error is not None
    assert report.triggers[0].value is None  # an error, never a length of 0
    assert report.started == ()
    assert not report.decision.is_active
