"""The Python API given a KubeClient: ``Manifests.trigger_contexts_async`` and
``cluster_authentications`` find (Cluster)TriggerAuthentications, their Secrets (a
ClusterTriggerAuthentication's in the cluster object namespace) and the scale target's
environment in the cluster, the stream's own objects first; RBAC refusals name the verb
and resource."""

from __future__ import annotations

import logging
import uuid

import pytest

from eventscale.authentication import ClusterSource, cluster_authentications
from eventscale.errors import ConfigError
from eventscale.kube import KubeClient
from eventscale.manifests import load_manifests
from eventscale.manifests.reader import load_trigger_authentication
from eventscale.redaction import Secret
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn


def _reveal(value: str | Secret) -> str:
    assert isinstance(value, Secret)
    return value.reveal()


def _auth(kind: str, name: str, ns: str | None, secret: str) -> dict[str, object]:
    meta = {"name": name} | ({"namespace": ns} if ns else {})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {"secretTargetRef": [{"parameter": "password", "name": secret, "key": "pw"}]},
    }


@pytest.mark.anyio
async def test_trigger_contexts_async_reads_what_the_stream_lacks(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keda_ns = unique_name("keda")
    in_ns, in_keda, in_file = (f"pw-{uuid.uuid4().hex}" for _ in range(3))
    api = kube_standin.api
    api.secret("creds", ns, {"pw": in_ns})
    api.secret("creds", keda_ns, {"pw": in_keda})
    api.put(_auth("TriggerAuthentication", "ta", ns, "creds"))
    cta = unique_name("cta")
    api.put(_auth("ClusterTriggerAuthentication", cta, None, "creds"))
    api.deployment(
        "web",
        ns,
        containers=[
            {
                "name": "app",
                "image": "busybox",
                "env": [
                    {
                        "name": "QUEUE",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}},
                    }
                ],
            }
        ],
    )
    stream = f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: web, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: web}}
  triggers:
  - {{type: memory, metadata: {{nameFromEnv: QUEUE}}, authenticationRef: {{name: ta}}}}
  - type: memory
    metadata: {{}}
    authenticationRef: {{name: {cta}, kind: ClusterTriggerAuthentication}}
  - {{type: memory, metadata: {{}}, authenticationRef: {{name: local}}}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: local, namespace: {ns}}}
spec:
  secretTargetRef: [{{parameter: password, name: creds, key: pw}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {ns}}}
stringData: {{other: x}}
"""
    manifests = load_manifests(stream)
    spec = manifests.scaled_object()
    # The file's Secret "creds" (files first) lacks the key the TriggerAuthentications use.
    with pytest.raises(
        ConfigError, match=r"key 'pw' of Secret 'creds' is missing \(in the manifest"
    ):
        await manifests.trigger_contexts_async(spec, kube_client=kube, cluster_namespace=keda_ns)

    without_secret = load_manifests(stream.rsplit("---", 1)[0])
    first, second, third = await without_secret.trigger_contexts_async(
        spec, kube_client=kube, cluster_namespace=keda_ns
    )
    assert str(first.auth["password"]) != in_ns  # a Secret, shown redacted
    assert _reveal(first.auth["password"]) == in_ns
    assert first.env["QUEUE"] == in_ns  # the Deployment's secretKeyRef
    assert _reveal(second.auth["password"]) == in_keda  # the cluster object namespace
    assert _reveal(third.auth["password"]) == in_ns
    for value in (in_ns, in_keda, in_file):
        assert value not in caplog.text
        assert value not in repr((first, second, third))


@pytest.mark.anyio
async def test_refused_reads_name_the_verb_and_resource(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    cta = unique_name("cta")
    kube_standin.api.put(_auth("ClusterTriggerAuthentication", cta, None, "creds"))
    kube_standin.api.deny("get", "clustertriggerauthentications", cta)
    lookup = cluster_authentications(kube, load_trigger_authentication)
    with pytest.raises(ConfigError) as info:
        await lookup("ClusterTriggerAuthentication", cta, ns)
    assert "may not 'get' clustertriggerauthentications cluster-wide" in str(info.value)
    kube_standin.api.deny("get", "secrets", "locked")
    with pytest.raises(ConfigError, match="grant RBAC verb 'get' on resource 'secrets'"):
        await ClusterSource(kube).get_secret("locked", ns)
    assert await lookup("TriggerAuthentication", "absent", ns) is None


@pytest.mark.anyio
async def test_env_entries_read_their_container(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.deployment(
        "multi",
        ns,
        containers=[
            {"name": "app", "image": "busybox", "env": [{"name": "TOKEN", "value": "from-app"}]},
            {
                "name": "sidecar",
                "image": "busybox",
                "env": [{"name": "TOKEN", "value": "from-sidecar"}],
            },
        ],
    )
    stream = f"""\
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: by-container, namespace: {ns}}}
spec:
  env:
  - {{parameter: first, name: TOKEN}}
  - {{parameter: second, name: TOKEN, containerName: sidecar}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: wrong-container, namespace: {ns}}}
spec:
  env:
  - {{parameter: x, name: TOKEN, containerName: nope}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: multi, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: multi}}
  triggers:
  - {{type: memory, metadata: {{}}, authenticationRef: {{name: by-container}}}}
"""
    manifests = load_manifests(stream)
    (ctx,) = await manifests.trigger_contexts_async(manifests.scaled_object(), kube_client=kube)
    assert _reveal(ctx.auth["first"]) == "from-app"
    assert _reveal(ctx.auth["second"]) == "from-sidecar"

    wrong = load_manifests(stream.replace("name: by-container}", "name: wrong-container}"))
    with pytest.raises(ConfigError, match="no container named 'nope'") as info:
        await wrong.trigger_contexts_async(wrong.scaled_object(), kube_client=kube)
    assert "spec.env[0].containerName" in str(info.value)
