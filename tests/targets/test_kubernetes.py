"""KubernetesTarget and KubeClient against the Kubernetes API stand-in, over TLS."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from eventscale.errors import ConfigError, TargetConflict, TargetError, TargetNotFound
from eventscale.kube import KubeClient, KubeConfig
from eventscale.spec import ScaleTargetRef
from eventscale.targets import Target
from eventscale.targets.kubernetes import KubernetesTarget
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

APPS = "apis/apps/v1"


@pytest.fixture
def ns() -> str:
    return unique_name("ns")


@pytest.mark.anyio
async def test_read_and_write_a_deployment_scale(kube_standin: KubeStandIn, ns: str) -> None:
    kube_standin.api.deployment("web", ns, replicas=2)
    async with KubernetesTarget("web", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        assert isinstance(target, Target)
        assert target.namespace == ns
        assert await target.get_replicas() == 2
        before = kube_standin.api.get(APPS, "deployments", ns, "web")
        assert before is not None
        await target.set_replicas(5, reason="queue at 50")
        assert await target.get_replicas() == 5
        scale = await target.get_scale()
        assert scale.selector == "app=web"
        assert scale.status_replicas == 5

    stored = kube_standin.api.get(APPS, "deployments", ns, "web")
    assert stored is not None
    assert stored["spec"]["replicas"] == 5
    assert int(stored["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    puts = [p for m, p, _ in kube_standin.api.log if m == "PUT" and ns in p]
    assert puts == [f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale"]


@pytest.mark.anyio
async def test_setting_the_same_count_writes_nothing(kube_standin: KubeStandIn, ns: str) -> None:
    kube_standin.api.deployment("same", ns, replicas=3)
    async with KubernetesTarget("same", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        await target.set_replicas(3)
    assert not [p for m, p, _ in kube_standin.api.log if m == "PUT" and ns in p]


@pytest.mark.anyio
async def test_statefulset_and_custom_resource_via_discovery(
    kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.deployment("db", ns, replicas=1, kind="StatefulSet")
    kube_standin.api.worker("crunch", ns, replicas=0)
    config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns))
    client = KubeClient(config)
    try:
        sts = KubernetesTarget.from_ref(
            ScaleTargetRef(name="db", kind="StatefulSet", api_version="apps/v1"), client=client
        )
        await sts.set_replicas(3)
        assert await sts.get_replicas() == 3

        worker = KubernetesTarget.from_ref(
            ScaleTargetRef(name="crunch", kind="Worker", api_version="batch.example.com/v1"),
            client=client,
        )
        await worker.set_replicas(4)
        assert await worker.get_replicas() == 4
        stored = kube_standin.api.get("apis/batch.example.com/v1", "workers", ns, "crunch")
        assert stored is not None
        assert stored["spec"]["replicas"] == 4
        assert (await worker.get_scale()).selector == "worker=crunch"
        gets = [
            p
            for m, p, _ in kube_standin.api.log
            if m == "GET" and p.endswith("batch.example.com/v1")
        ]
        assert gets, "the plural of a custom kind comes from discovery"

        leases = KubernetesTarget(
            "x", kind="Lease", api_version="coordination.k8s.io/v1", client=client
        )
        with pytest.raises(TargetError, match="no scale subresource"):
            await leases.get_replicas()
        unknown = KubernetesTarget(
            "x", kind="Gadget", api_version="batch.example.com/v1", client=client
        )
        with pytest.raises(TargetNotFound, match="Gadget"):
            await unknown.get_replicas()
        missing_group = KubernetesTarget(
            "x", kind="Thing", api_version="nope.example.com/v1", client=client
        )
        with pytest.raises(TargetNotFound, match="not served"):
            await missing_group.get_replicas()
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_conflicts_are_retried_with_a_fresh_read(kube_standin: KubeStandIn, ns: str) -> None:
    kube_standin.api.deployment("busy", ns, replicas=1)
    kube_standin.api.concurrent_writes(APPS, "deployments", ns, "busy", times=2)
    async with KubernetesTarget(
        "busy", kubeconfig=kube_standin.kubeconfig(ns), backoff=0.001
    ) as target:
        await target.set_replicas(6)
        assert await target.get_replicas() == 6
    calls = [(m, p) for m, p, _ in kube_standin.api.log if ns in p and p.endswith("/scale")]
    assert [m for m, _ in calls] == ["GET", "PUT", "GET", "PUT", "GET", "PUT", "GET"]
    stored = kube_standin.api.get(APPS, "deployments", ns, "busy")
    assert stored is not None
    assert stored["metadata"]["annotations"]["standin/concurrent-writes"] == "1"


@pytest.mark.anyio
async def test_conflicts_that_outlive_the_retries_are_target_conflict(
    kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.deployment("hot", ns, replicas=1)
    kube_standin.api.concurrent_writes(APPS, "deployments", ns, "hot", times=100)
    async with KubernetesTarget(
        "hot", kubeconfig=kube_standin.kubeconfig(ns), conflict_retries=2, backoff=0.001
    ) as target:
        with pytest.raises(TargetConflict, match="after 3 attempts") as info:
            await target.set_replicas(2)
    assert info.value.status == 409
    assert info.value.target == f"Deployment/{ns}/hot"
    assert isinstance(info.value.__cause__, TargetConflict)
    assert "the object has been modified" in str(info.value.__cause__)
    stored = kube_standin.api.get(APPS, "deployments", ns, "hot")
    assert stored is not None
    assert stored["spec"]["replicas"] == 1


@pytest.mark.anyio
async def test_missing_workload_is_target_not_found(kube_standin: KubeStandIn, ns: str) -> None:
    async with KubernetesTarget("ghost", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        with pytest.raises(TargetNotFound) as info:
            await target.get_replicas()
        assert info.value.status == 404
        assert 'deployments.apps "ghost" not found' in str(info.value)
        with pytest.raises(TargetNotFound):
            await target.set_replicas(1)


@pytest.mark.anyio
async def test_forbidden_is_a_target_error_with_status_and_message(
    kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.deployment("locked", ns, replicas=1)
    kube_standin.api.deny("update", "deployments/scale", "locked")
    async with KubernetesTarget("locked", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        assert await target.get_replicas() == 1  # reading is still allowed
        with pytest.raises(TargetError) as info:
            await target.set_replicas(4)
    assert type(info.value) is TargetError
    assert info.value.status == 403
    assert 'cannot update resource "deployments/scale"' in str(info.value)


@pytest.mark.anyio
async def test_container_env_resolves_values_secrets_and_configmaps(
    kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.secret("redis-auth", ns, {"password": "s3cret-value"})
    kube_standin.api.configmap("settings", ns, {"HOST": "redis.local", "PORT": "6379"})
    containers: list[dict[str, Any]] = [
        {"name": "sidecar", "image": "proxy", "env": [{"name": "ONLY_SIDECAR", "value": "1"}]},
        {
            "name": "app",
            "image": "worker",
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "REDIS_"}],
            "env": [
                {"name": "LIST", "value": "jobs"},
                {"name": "ADDRESS", "value": "$(REDIS_HOST):$(REDIS_PORT)"},
                {"name": "LITERAL", "value": "$$(REDIS_HOST)"},
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}},
                },
                {
                    "name": "HOST2",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "HOST"}},
                },
                {
                    "name": "OPTIONAL",
                    "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        },
    ]
    kube_standin.api.deployment("worker", ns, replicas=1, containers=containers)
    async with KubernetesTarget.from_ref(
        ScaleTargetRef(name="worker", env_source_container_name="app"),
        kubeconfig=kube_standin.kubeconfig(ns),
    ) as target:
        env = await target.container_env()
        assert env == {
            "REDIS_HOST": "redis.local",
            "REDIS_PORT": "6379",
            "LIST": "jobs",
            "ADDRESS": "redis.local:6379",
            "LITERAL": "$(REDIS_HOST)",
            "PASSWORD": "s3cret-value",
            "HOST2": "redis.local",
        }
        assert await target.container_env("sidecar") == {"ONLY_SIDECAR": "1"}
        with pytest.raises(TargetError, match="no container named 'nope'"):
            await target.container_env("nope")

    containers[1]["env"] = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "nokey"}}}
    ]
    kube_standin.api.deployment("broken-env", ns, replicas=1, containers=containers)
    async with KubernetesTarget("broken-env", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        assert await target.container_env() == {"ONLY_SIDECAR": "1"}  # first container
        with pytest.raises(TargetError, match="key 'nokey' is missing"):
            await target.container_env("app")


def test_bad_arguments_are_config_errors(kube_standin: KubeStandIn, ns: str) -> None:
    path = kube_standin.kubeconfig(ns)
    with pytest.raises(ConfigError):
        KubernetesTarget("", kubeconfig=path)
    with pytest.raises(ConfigError):
        KubernetesTarget("x", kubeconfig=path, conflict_retries=-1)
    with pytest.raises(ConfigError, match="timeout"):
        KubernetesTarget("x", kubeconfig=path, timeout=0)
    target = KubernetesTarget("x", kubeconfig=path)
    assert "Deployment/" in repr(target)
    assert json.dumps(target.identity)
    anyio.run(target.aclose)
