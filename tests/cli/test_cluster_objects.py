"""``evaluate --target kubernetes`` resolves what the manifest file lacks from the
cluster, as KEDA's authentication docs examples expect: TriggerAuthentications,
ClusterTriggerAuthentications (their Secrets in ``KEDA_CLUSTER_OBJECT_NAMESPACE``),
Secrets, and the scale target container's environment (``envFrom``, ``valueFrom``,
``$(VAR)``). RBAC refusals name the verb and resource; nothing secret is printed, even
at ``-vv``."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli._runner import Runner, assert_no_secret, command, write
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

REDIS = "127.0.0.1:6379"


@pytest.fixture
def redis_list() -> Iterator[str]:
    name = unique_name("list")
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.rpush(name, *range(12))
    yield name
    client.delete(name)
    client.close()


def _app_container(secret: str) -> list[dict[str, object]]:
    """KEDA's example container: a Secret's keys under ``R_``, and a variable built
    from one of them."""
    return [
        {
            "name": "app",
            "image": "busybox",
            "envFrom": [{"secretRef": {"name": secret}, "prefix": "R_"}],
            "env": [
                {"name": "PORT", "value": "6379"},
                {"name": "REDIS_ADDR", "value": "$(R_HOST):$(PORT)"},
            ],
        }
    ]


def _ta(kind: str, name: str, ns: str | None, secret: str) -> dict[str, object]:
    meta: dict[str, str] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {"secretTargetRef": [{"parameter": "address", "name": secret, "key": "addr"}]},
    }


def test_keda_auth_example_resolves_from_the_cluster(
    cli: Runner, tmp_path: Path, redis_list: str, kube_standin: KubeStandIn
) -> None:
    ns, keda_ns = unique_name("ns"), unique_name("keda")
    api = kube_standin.api
    marker = uuid.uuid4().hex  # the Secret values carry a marker that must never print
    api.deployment("web", ns, containers=_app_container("redis-env"))
    api.secret("redis-env", ns, {"HOST": "127.0.0.1", "UNUSED_TOKEN": marker})
    api.secret("redis-auth", ns, {"addr": REDIS, "token": marker})
    api.secret("redis-auth", keda_ns, {"addr": REDIS, "token": marker})
    api.put(_ta("TriggerAuthentication", "ta", ns, "redis-auth"))
    cta = unique_name("cta")
    api.put(_ta("ClusterTriggerAuthentication", cta, None, "redis-auth"))
    path = write(
        tmp_path / "so.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: web, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: web}}
  triggers:
    - {{type: redis, metadata: {{addressFromEnv: REDIS_ADDR, listName: {redis_list}, listLength: "5"}}}}
    - type: redis
      metadata: {{listName: {redis_list}, listLength: "5"}}
      authenticationRef: {{name: ta}}
    - type: redis
      metadata: {{listName: {redis_list}, listLength: "5"}}
      authenticationRef: {{name: {cta}, kind: ClusterTriggerAuthentication}}
""",
    )
    env = {
        "KUBECONFIG": str(kube_standin.kubeconfig(ns)),
        "KEDA_CLUSTER_OBJECT_NAMESPACE": keda_ns,
    }
    args = ("-vv", "evaluate", path, "--json", "--target", "kubernetes", "--no-os-env")
    result = cli(*args, env=env)
    assert result.code == 0, result.output
    [obj] = result.json()["scaledObjects"]
    assert [t["value"] for t in obj["triggers"]] == [12, 12, 12]
    assert_no_secret(result, [marker, kube_standin.token])
    paths = {p for _, p, _ in api.log}
    assert f"/api/v1/namespaces/{keda_ns}/secrets/redis-auth" in paths
    assert f"/apis/keda.sh/v1alpha1/clustertriggerauthentications/{cta}" in paths
    assert f"/apis/keda.sh/v1alpha1/namespaces/{ns}/triggerauthentications/ta" in paths

    # --env wins over the container's environment.
    override = cli(*args, "--env", "REDIS_ADDR=127.0.0.1:1", env=env)
    assert override.code == 1, override.output
    first, *others = override.json()["scaledObjects"][0]["triggers"]
    assert first["error"]
    assert [t["value"] for t in others] == [12, 12]

    # Files first: a TriggerAuthentication in the file hides the cluster's.
    local = write(
        tmp_path / "local.yaml",
        Path(path).read_text()
        + f"""\
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: ta, namespace: {ns}}}
spec:
  secretTargetRef: [{{parameter: address, name: local-secret, key: addr}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: local-secret, namespace: {ns}}}
stringData: {{addr: "127.0.0.1:2"}}
""",
    )
    files_first = cli("evaluate", local, "--json", "--target", "kubernetes", env=env)
    assert files_first.code == 1, files_first.output
    values = [t["value"] for t in files_first.json()["scaledObjects"][0]["triggers"]]
    assert values[0] == 12
    assert values[2] == 12
    assert files_first.json()["scaledObjects"][0]["triggers"][1]["error"]


def test_rbac_refusal_names_the_verb_and_resource(
    cli: Runner, tmp_path: Path, redis_list: str, kube_standin: KubeStandIn
) -> None:
    ns = unique_name("ns")
    kube_standin.api.deployment("locked", ns, replicas=1)
    kube_standin.api.put(_ta("TriggerAuthentication", "secretive", ns, "redis-auth"))
    kube_standin.api.deny("get", "triggerauthentications", "secretive")
    path = write(
        tmp_path / "so.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: locked, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: locked}}
  triggers:
    - type: redis
      metadata: {{listName: {redis_list}, listLength: "5"}}
      authenticationRef: {{name: secretive}}
""",
    )
    env = {"KUBECONFIG": str(kube_standin.kubeconfig(ns))}
    result = cli("evaluate", path, "--target", "kubernetes", env=env)
    assert result.code == 2, result.output
    assert "may not 'get' triggerauthentications" in result.stderr
    assert "grant RBAC verb 'get' on resource 'triggerauthentications'" in result.stderr


def test_unset_from_env_names_the_variable_and_where(
    cli: Runner, tmp_path: Path, redis_list: str
) -> None:
    path = write(
        tmp_path / "so.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: envless}}
spec:
  scaleTargetRef: {{name: envless}}
  triggers:
    - {{type: redis, metadata: {{addressFromEnv: NOT_SET_ANYWHERE, listName: {redis_list}}}}}
""",
    )
    result = cli("evaluate", path, "--no-os-env")
    assert result.code == 2, result.output
    assert "addressFromEnv names variable 'NOT_SET_ANYWHERE'" in result.stderr
    assert "not set (or empty) in --env" in result.stderr


def test_run_scales_with_the_workloads_env_from_the_cluster(
    tmp_path: Path, redis_list: str, kube_standin: KubeStandIn
) -> None:
    """KEDA's authentication example (Secret + Deployment envFrom + ScaledObject) under
    ``eventscale run --target kubernetes``: only the ScaledObject is in the file."""
    ns = unique_name("ns")
    marker = uuid.uuid4().hex
    kube_standin.api.secret("redis-env", ns, {"HOST": "127.0.0.1", "API_TOKEN": marker})
    kube_standin.api.deployment("worker", ns, containers=_app_container("redis-env"))
    path = write(
        tmp_path / "so.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: worker}}
  pollingInterval: 1
  triggers:
    - {{type: redis, metadata: {{addressFromEnv: REDIS_ADDR, listName: {redis_list}, listLength: "5"}}}}
""",
    )
    env = {**os.environ, "KUBECONFIG": str(kube_standin.kubeconfig(ns))}
    proc = subprocess.Popen(
        [*command(), "-vv", "run", path, "--target", "kubernetes", "--json", "--no-os-env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        replicas = 1
        while time.monotonic() < deadline and proc.poll() is None:
            obj = kube_standin.api.get("apis/apps/v1", "deployments", ns, "worker")
            replicas = ((obj or {}).get("spec") or {}).get("replicas", 1)
            if replicas == 3:  # 12 items, listLength 5
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert replicas == 3, err
    assert marker not in out
    assert marker not in err
