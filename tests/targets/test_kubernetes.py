"""KubernetesTarget and KubeClient against the Kubernetes API stand-in, over TLS."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventscale.errors import ConfigError, TargetConflict, TargetError, TargetNotFound
from eventscale.spec import ScaleTargetRef
from eventscale.targets import Target
from eventscale.targets.kubernetes import KubeClient, KubeConfig, KubernetesTarget
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
async def test_a_hung_api_call_times_out(kube_standin: KubeStandIn, ns: str) -> None:
    kube_standin.api.deployment("slow", ns, replicas=1)
    release = kube_standin.api.hang(f"{ns}/deployments/slow")
    try:
        async with KubernetesTarget(
            "slow", kubeconfig=kube_standin.kubeconfig(ns), timeout=0.3
        ) as target:
            with pytest.raises(TargetError, match=r"timed out after 0\.3s") as info:
                await target.get_replicas()
        assert isinstance(info.value.__cause__, TimeoutError)
    finally:
        release.set()


@pytest.mark.anyio
async def test_kubeconfig_context_selection(kube_standin: KubeStandIn, ns: str) -> None:
    other_ns = unique_name("other")
    kube_standin.api.deployment("web", ns, replicas=1)
    kube_standin.api.deployment("web", other_ns, replicas=7)
    path = kube_standin.kubeconfig(ns, other_namespace=other_ns)

    async with KubernetesTarget("web", kubeconfig=path) as current:
        assert await current.get_replicas() == 1
    async with KubernetesTarget("web", kubeconfig=path, context="other") as other:
        assert other.namespace == other_ns
        assert await other.get_replicas() == 7
    users = {u for _, p, u in kube_standin.api.log if other_ns in p}
    assert users == {"system:serviceaccount:other:reader"}

    async with KubernetesTarget("web", kubeconfig=path, context="broken") as broken:
        with pytest.raises(TargetError) as info:
            await broken.get_replicas()
    assert info.value.status == 401
    assert "not-a-valid-token" not in str(info.value)

    with pytest.raises(ConfigError, match="no context named 'nope'"):
        KubeConfig.from_kubeconfig(path, context="nope")
    config = KubeConfig.from_kubeconfig(path, context="other")
    assert kube_standin.other_token not in repr(config)
    assert config.context == "other"


def test_kubeconfig_from_env_and_bad_files(
    kube_standin: KubeStandIn, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kube_standin.kubeconfig(ns)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{path}:{tmp_path / 'second'}")
    assert KubeConfig.load().namespace == ns
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        KubeConfig.from_kubeconfig(tmp_path / "missing")
    (tmp_path / "bad").write_text("current-context: x\ncontexts: []\n")
    with pytest.raises(ConfigError, match="no context named 'x'"):
        KubeConfig.from_kubeconfig(tmp_path / "bad")


@pytest.mark.anyio
async def test_in_cluster_service_account(
    kube_standin: KubeStandIn, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube_standin.api.deployment("incluster", ns, replicas=2)
    (tmp_path / "token").write_text(kube_standin.token + "\n")
    (tmp_path / "ca.crt").write_bytes(kube_standin.ca.cert_pem.bytes())
    (tmp_path / "namespace").write_text(ns)
    port = kube_standin.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    config = KubeConfig.in_cluster(tmp_path)
    assert config.server == kube_standin.url
    async with KubernetesTarget("incluster", config=config) as target:
        assert target.namespace == ns
        await target.set_replicas(3)
        assert await target.get_replicas() == 3
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigError, match="not running in a cluster"):
        KubeConfig.in_cluster(tmp_path)


@pytest.mark.anyio
async def test_exec_credential_plugin(kube_standin: KubeStandIn, ns: str, tmp_path: Path) -> None:
    kube_standin.api.deployment("viaexec", ns, replicas=1)
    script = tmp_path / "cred.py"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": kube_standin.token, "expirationTimestamp": "2999-01-01T00:00:00Z"},
    }
    script.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
    base = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns))
    import attrs

    from eventscale.targets.kubernetes import ExecCredentialPlugin

    config = attrs.evolve(
        base,
        token=None,
        exec_plugin=ExecCredentialPlugin(command=sys.executable, args=(str(script),)),
    )
    async with KubernetesTarget("viaexec", config=config) as target:
        assert await target.get_replicas() == 1

    script.write_text("raise SystemExit(3)\n")
    async with KubernetesTarget("viaexec", config=config) as failing:
        with pytest.raises(TargetError, match="exit code 3"):
            await failing.get_replicas()


@pytest.mark.anyio
async def test_unreachable_server_is_a_target_error() -> None:
    config = KubeConfig(server="http://127.0.0.1:9", namespace="x")
    async with KubernetesTarget("web", config=config, timeout=5) as target:
        with pytest.raises(TargetError, match="cannot reach the Kubernetes API"):
            await target.get_replicas()


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
