"""The Kubernetes target's pod resources: pods and ``metrics.k8s.io`` PodMetrics from the
stand-in, a mixed ScaledObject (redis list + cpu) reconciled on it, and the real
``kubectl top``/``kubectl get --raw`` against the stand-in's metrics API."""

from __future__ import annotations

import json
import subprocess

import pytest
import redis.asyncio as aioredis

from eventscale.errors import TargetError
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.targets.kubernetes import KubernetesTarget
from eventscale.targets.resources import ResourceMetricsTarget
from servers._proc import ensure_apt, unique_name
from servers.kubernetes_srv import KubeStandIn
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def ns() -> str:
    return unique_name("ns")


async def test_pods_and_pod_metrics_in_two_lists(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    api.deployment("web", ns, replicas=3)
    api.resource_pods(
        "web",
        ns,
        [{"cpu": "250m", "memory": "64Mi"}, {"cpu": "750000000n", "memory": "65536Ki"}, None],
        requests={"cpu": "500m", "memory": "128Mi"},
        limits={"cpu": "1", "memory": "256Mi"},
    )
    api.resource_pods("other", ns, [{"cpu": "1", "memory": "1Gi"}])  # not selected
    async with KubernetesTarget("web", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        assert isinstance(target, ResourceMetricsTarget)
        before = len(api.log)
        found = await target.get_pod_resources()
        calls = [path for _, path, _ in api.log[before:]]
    assert calls == [
        f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale",
        f"/api/v1/namespaces/{ns}/pods",
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
    ]
    assert found.replicas == 3
    assert found.utilization_of == "requests"
    assert len(found.pods) == 3
    first, second, third = sorted(found.pods, key=lambda p: p.name)
    (container,) = first.containers
    assert container.requests == {"cpu": 0.5, "memory": 128 * 2**20}
    assert container.limits == {"cpu": 1.0, "memory": 256 * 2**20}
    assert first.usage == {"app": {"cpu": 0.25, "memory": 64 * 2**20}}
    assert second.usage == {"app": {"cpu": 0.75, "memory": 64 * 2**20}}
    assert third.usage is None  # no PodMetrics yet: a "missing" pod for the HPA
    assert first.ready is True
    assert first.start_time is not None
    assert first.window == 30.0
    assert first.phase == "Running"


async def test_a_hundred_pods_still_take_two_list_calls(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    api.deployment("big", ns, replicas=100)
    api.resource_pods("big", ns, [{"cpu": "100m"}] * 100, requests={"cpu": "200m"})
    async with KubernetesTarget("big", kubeconfig=kube_standin.kubeconfig(ns)) as target:
        before = len(api.log)
        found = await target.get_pod_resources()
        assert len(api.log) - before == 3
    assert len(found.pods) == 100


async def test_without_a_selector_or_metrics_api_it_is_a_target_error(
    kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.worker("crunch", ns, replicas=1)
    api.deny("list", "pods")
    try:
        async with KubernetesTarget(
            "crunch",
            kind="Worker",
            api_version="batch.example.com/v1",
            kubeconfig=kube_standin.kubeconfig(ns),
        ) as target:
            with pytest.raises(TargetError, match="forbidden"):
                await target.get_pod_resources()
    finally:
        api.denied.clear()


async def test_redis_list_plus_cpu_reconciles_on_the_standin(
    kube_standin: KubeStandIn, redis_server: RedisServer, ns: str
) -> None:
    api = kube_standin.api
    name = unique_name("work")
    api.deployment(name, ns, replicas=2)
    # 2 pods at 100% of their requests against a 50% target: cpu asks for 4
    api.resource_pods(name, ns, [{"cpu": "500m"}, {"cpu": "500m"}], requests={"cpu": "500m"})
    key = unique_name("jobs")
    manifest = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: {name}}}
  minReplicaCount: 1
  maxReplicaCount: 20
  triggers:
  - type: redis
    metadata: {{address: "{redis_server.address}", listName: {key}, listLength: "5"}}
  - type: cpu
    metricType: Utilization
    metadata: {{value: "50"}}
"""
    target = KubernetesTarget(name, namespace=ns, kubeconfig=kube_standin.kubeconfig(ns))
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        async with ScaledObject.from_manifest(manifest, target=target) as obj:
            report = await obj.reconcile()
            assert report.ok, report.triggers
            assert {t.type: t.value for t in report.triggers} == {"redis": 0.0, "cpu": 4.0}
            assert await target.get_replicas() == 4
            await client.rpush(key, *range(40))  # 40 items / 5 per replica: 8
            report = await obj.reconcile()
            assert report.ok, report.triggers
            assert report.decision.raw_replicas == 8
            # the HPA's scale-up limit from the 2 replicas of 15 s ago: max(2 * 2, 2 + 4)
            assert await target.get_replicas() == report.decision.replicas == 6
        await client.delete(key)


def _kubectl(kube_standin: KubeStandIn, ns: str, *args: str) -> str:
    binary = ensure_apt("kubectl", "kubectl")
    done = subprocess.run(
        [binary, "--kubeconfig", str(kube_standin.kubeconfig(ns)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kubectl_top_pods_reads_the_standin(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    api.deployment("shop", ns, replicas=2)
    pods = api.resource_pods(
        "shop", ns, [{"cpu": "250m", "memory": "64Mi"}, {"cpu": "1", "memory": "1Gi"}]
    )
    out = _kubectl(kube_standin, ns, "top", "pods", "-n", ns, "-l", "app=shop")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    first, second = (p["metadata"]["name"] for p in pods)
    assert rows == {first: ["250m", "64Mi"], second: ["1000m", "1024Mi"]}

    raw = _kubectl(
        kube_standin, ns, "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"
    )
    listing = json.loads(raw)
    assert listing["kind"] == "PodMetricsList"
    assert listing["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert {item["metadata"]["name"] for item in listing["items"]} == {first, second}
