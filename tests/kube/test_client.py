"""KubeClient: timeouts, exec credential plugins and unreachable servers, against the
Kubernetes API stand-in, over TLS."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest

from eventscale.errors import TargetError
from eventscale.kube import ExecCredentialPlugin, KubeConfig
from eventscale.targets.kubernetes import KubernetesTarget
from servers.kubernetes_srv import KubeStandIn


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
