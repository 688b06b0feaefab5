"""The Docker target's pod resources against the private dockerd: ``docker stats``
usage, limits as the Utilization denominator, and a redis list + cpu ScaledObject."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from eventscale.errors import ScalerError
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers.resource import ResourceScaler
from eventscale.targets.docker import ContainerTemplate, DockerTarget
from eventscale.targets.resources import ResourceMetricsTarget
from servers._proc import unique_name
from servers.docker_srv import DockerDaemon
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio

IDLE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
BUSY = ("sh", "-c", "trap 'exit 0' TERM; while :; do :; done")
MIB = 2**20


def _template(daemon: DockerDaemon, command: tuple[str, ...], **kw: object) -> ContainerTemplate:
    return ContainerTemplate(
        image=daemon.image,
        command=command,
        network_mode="none",
        **kw,  # type: ignore[arg-type]
    )


async def test_stats_usage_and_limits(docker_daemon: DockerDaemon) -> None:
    name = unique_name("busy")
    template = _template(docker_daemon, BUSY, cpus=0.25, memory=64 * MIB)
    async with DockerTarget(
        name, template=template, url=docker_daemon.url, stop_timeout=2
    ) as target:
        assert isinstance(target, ResourceMetricsTarget)
        await target.set_replicas(1)
        try:
            found = await target.get_pod_resources()
            assert found.replicas == 1
            assert found.utilization_of == "limits"
            (pod,) = found.pods
            (container,) = pod.containers
            assert container.name == name
            assert container.limits == {"cpu": 0.25, "memory": 64 * MIB}
            assert container.requests == {}
            assert pod.usage is not None
            usage = pod.usage[name]
            assert 0.0 < usage["cpu"] <= 0.25 * 1.5  # a busy loop held to a quarter CPU
            assert 0.0 < usage["memory"] < 64 * MIB
            assert pod.ready is True
            assert pod.start_time is not None
            assert pod.window > 0

            scaler = ResourceScaler("cpu", target=50, workload=target)
            report = await scaler.get_metrics()
            assert report.value_of("s0-cpu") >= 1
        finally:
            await target.set_replicas(0)


async def test_utilization_without_a_limit_is_a_clear_error(docker_daemon: DockerDaemon) -> None:
    name = unique_name("nolimit")
    async with DockerTarget(
        name, template=_template(docker_daemon, IDLE), url=docker_daemon.url, stop_timeout=2
    ) as target:
        await target.set_replicas(1)
        try:
            scaler = ResourceScaler("memory", target=50, workload=target)
            with pytest.raises(ScalerError, match="missing memory limit in container"):
                await scaler.get_metrics()
        finally:
            await target.set_replicas(0)


async def test_redis_list_plus_cpu_runs_on_docker(
    docker_daemon: DockerDaemon, redis_server: RedisServer
) -> None:
    name = unique_name("mixed")
    key = unique_name("jobs")
    manifest = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{name: {name}}}
  minReplicaCount: 1
  maxReplicaCount: 4
  triggers:
  - type: redis
    metadata: {{address: "{redis_server.address}", listName: {key}, listLength: "5"}}
  - type: cpu
    metricType: Utilization
    metadata: {{value: "50"}}
"""
    template = _template(docker_daemon, IDLE, cpus=0.5, memory=32 * MIB)
    target = DockerTarget(name, template=template, url=docker_daemon.url, stop_timeout=2)
    await target.set_replicas(1)
    async with (
        aioredis.Redis(host=redis_server.host, port=redis_server.port) as client,
        ScaledObject.from_manifest(manifest, target=target) as obj,
    ):
        try:
            await client.rpush(key, *range(10))  # 10 items / 5 per replica: 2
            report = await obj.reconcile()
            assert report.ok, report.triggers
            cpu = next(t for t in report.triggers if t.type == "cpu")
            assert cpu.value is not None
            assert cpu.value <= 1  # idle members: cpu asks for no more than one
            assert report.decision.raw_replicas == 2
            assert await target.get_replicas() == 2
        finally:
            await client.delete(key)
            await target.set_replicas(0)
