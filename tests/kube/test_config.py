"""KubeConfig: kubeconfig files, contexts, the environment and the in-cluster service
account, checked against the Kubernetes API stand-in, over TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventscale.errors import ConfigError, TargetError
from eventscale.kube import KubeConfig
from eventscale.targets.kubernetes import KubernetesTarget
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn


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


def test_a_kubeconfig_wins_over_the_pod_like_kubectl(
    kube_standin: KubeStandIn, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eventscale.kube.config as config_module

    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    monkeypatch.setattr(config_module, "SERVICE_ACCOUNT_DIR", sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(kube_standin.kubeconfig(ns)))
    assert KubeConfig.load().server == kube_standin.url
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert KubeConfig.load().server == "https://10.0.0.1:443"
