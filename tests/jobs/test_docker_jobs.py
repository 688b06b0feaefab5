"""ScaledJob on the real dockerd: busybox jobs that take one item from the real Redis.

The queue is a Redis list read by the real ``redis`` scaler. Each job is a busybox
container on the host network that talks RESP to Redis with ``busybox nc`` (the
image has no Redis client): one ``EVAL`` atomically counts the job in (``INCR
active``, the result pushed to a ``conc`` list) and moves one item from the queue to a
``taken`` list; the job then works (``sleep``), counts itself out, records the item in
``done`` and exits 0, or 1 for an item named ``fail-*``, or 3 if there was no item.
So the jobs themselves witness the invariants: ``conc`` holds how many jobs were
working at each start (never above ``maxReplicaCount``), ``taken`` that each item went
to exactly one job, and no container exits 3 (no job without work).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from eventscale.jobs import JOB_LABEL, DockerJobTarget, JobPhase, ScaledJob
from servers._proc import unique_name
from servers.docker_srv import DockerDaemon
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio

MAX = 3

LUA = (
    "local n=redis.call('INCR',KEYS[2]) redis.call('RPUSH',KEYS[3],n) "
    "return redis.call('LMOVE',KEYS[1],KEYS[4],'LEFT','RIGHT')"
)

SCRIPT = r"""
resp() { printf "$@" | busybox nc "$REDIS_HOST" "$REDIS_PORT"; }
reply=$(resp 'EVAL "%s" 4 %s %s %s %s\r\nQUIT\r\n' "$LUA" "$QUEUE" "$ACTIVE" "$CONC" "$TAKEN")
case "$reply" in '$-1'*|'') resp 'DECR %s\r\nQUIT\r\n' "$ACTIVE" >/dev/null; exit 3;; esac
item=$(echo "$reply" | busybox sed -n 2p | busybox tr -d '\r')
sleep "$WORK"
resp 'DECR %s\r\nRPUSH %s %s\r\nQUIT\r\n' "$ACTIVE" "$DONE" "$item" >/dev/null
case "$item" in fail-*) exit 1;; esac
exit 0
"""


def manifest(
    name: str, image: str, redis: RedisServer, keys: dict[str, str], work: int = 1
) -> dict[str, Any]:
    """The ScaledJob as a dict (the Lua script makes YAML quoting error-prone)."""
    env = {"REDIS_HOST": redis.host, "REDIS_PORT": str(redis.port), "WORK": str(work), **keys}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {"name": name},
        "spec": {
            "jobTargetRef": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "worker",
                                "image": image,
                                "command": ["sh", "-c"],
                                "args": [SCRIPT],
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                            }
                        ],
                        "restartPolicy": "Never",
                    }
                }
            },
            "pollingInterval": 1,
            "maxReplicaCount": MAX,
            "successfulJobsHistoryLimit": 2,
            "failedJobsHistoryLimit": 5,
            "scalingStrategy": {"strategy": "accurate"},
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {
                        "address": redis.address,
                        "listName": keys["QUEUE"],
                        "listLength": "1",
                    },
                }
            ],
        },
    }


async def test_busybox_jobs_drain_a_redis_list(
    docker_daemon: DockerDaemon, redis_server: RedisServer
) -> None:
    name = unique_name("sj")
    keys = {k: f"{name}-{k.lower()}" for k in ("QUEUE", "ACTIVE", "CONC", "TAKEN", "DONE")}
    keys_env = {**keys, "LUA": LUA}
    text = manifest(name, docker_daemon.image, redis_server, keys_env)
    from eventscale.manifests.reader import load_manifests

    spec = load_manifests(text).scaled_job()
    target = DockerJobTarget.from_spec(spec, url=docker_daemon.url, network_mode="host")
    sj = ScaledJob.from_manifest(text, target=target, poll_timeout=10)
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    items = [f"item-{i}" for i in range(7)] + ["fail-7"]
    try:
        await client.rpush(keys["QUEUE"], *items[:5])
        pushed = 5
        deadline = time.monotonic() + 90
        peak_unfinished = 0
        while True:
            report = await sj.reconcile()
            assert report.target_error is None, report.target_error
            assert report.ok, report.triggers
            peak_unfinished = max(peak_unfinished, report.counts.running + len(report.started))
            if pushed < len(items) and report.counts.running:
                await client.rpush(keys["QUEUE"], *items[pushed:])  # more work while busy
                pushed = len(items)
            done = await client.llen(keys["DONE"])
            if pushed == len(items) and done == len(items):
                jobs = await target.list_jobs()
                if all(j.phase.finished for j in jobs):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"not drained in 90 s: done {done}, jobs {await target.list_jobs()}")
            await anyio.sleep(0.3)
        await sj.reconcile()  # the history clean-up sees every job finished
        assert sorted(await client.lrange(keys["TAKEN"], 0, -1)) == sorted(items)
        assert sorted(await client.lrange(keys["DONE"], 0, -1)) == sorted(items)
        concurrency = [int(n) for n in await client.lrange(keys["CONC"], 0, -1)]
        assert len(concurrency) == len(items)  # one start per item: no job without work
        assert max(concurrency) <= MAX
        assert peak_unfinished <= MAX
        assert sj.state.jobs_started == len(items)
        jobs = await target.list_jobs()
        failed = [j for j in jobs if j.phase is JobPhase.FAILED]
        assert [j.exit_code for j in failed] == [1]  # the fail-7 job, exit code recorded
        assert failed[0].finished is not None
        assert failed[0].finished >= failed[0].created
        succeeded = [j for j in jobs if j.phase is JobPhase.SUCCEEDED]
        assert len(succeeded) == 2  # successfulJobsHistoryLimit
        listed = docker_daemon.containers(f"{JOB_LABEL}={name}")
        assert {c["Names"][0].lstrip("/") for c in listed} == {j.name for j in jobs}
        assert all(c["State"] == "exited" for c in listed)
    finally:
        await sj.aclose()
        docker_daemon.remove_all_matching(f"{JOB_LABEL}={name}")
        await client.delete(*keys.values())
        await client.aclose()


async def test_a_new_process_recounts_running_job_containers(
    docker_daemon: DockerDaemon, redis_server: RedisServer
) -> None:
    name = unique_name("sj-restart")
    keys = {k: f"{name}-{k.lower()}" for k in ("QUEUE", "ACTIVE", "CONC", "TAKEN", "DONE")}
    # WORK=30: the jobs outlive this test's checks
    text = manifest(name, docker_daemon.image, redis_server, {**keys, "LUA": LUA}, work=30)
    from eventscale.manifests.reader import load_manifests

    spec = load_manifests(text).scaled_job()
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    first_target = DockerJobTarget.from_spec(spec, url=docker_daemon.url, network_mode="host")
    second_target = DockerJobTarget.from_spec(spec, url=docker_daemon.url, network_mode="host")
    try:
        await client.rpush(keys["QUEUE"], "a", "b")
        first = ScaledJob(spec, target=first_target, poll_timeout=10)
        assert len((await first.reconcile()).started) == 2
        await first.aclose()
        with anyio.fail_after(30):
            # the jobs take their items from Redis on their own: poll for it
            while await client.llen(keys["TAKEN"]) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.1)
        await client.rpush(keys["QUEUE"], "c")
        second = ScaledJob(spec, target=second_target, poll_timeout=10)
        report = await second.reconcile()
        await second.aclose()
        assert report.counts.running == 2  # found by label, not remembered
        assert len(report.started) == 1  # accurate: one new item, room for it
        jobs = await second_target.list_jobs()
        assert len(jobs) == 3
        assert {j.revision for j in jobs} == {second_target.revision}
        # a container without the label is never counted or touched
        outsider = docker_daemon.run_unmanaged(unique_name("outsider"), {"other": name})
        assert len(await second_target.list_jobs()) == 3
        await second_target.delete_jobs([j.name for j in jobs])
        assert await second_target.list_jobs() == ()
        assert any(c["Id"] == outsider for c in docker_daemon.containers(f"other={name}"))
    finally:
        await first_target.aclose()
        await second_target.aclose()
        docker_daemon.remove_all_matching(f"{JOB_LABEL}={name}")
        docker_daemon.remove_all_matching(f"other={name}")
        await client.delete(*keys.values())
        await client.aclose()
