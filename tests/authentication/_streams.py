"""Manifest snippets and checks the authentication tests share."""

from __future__ import annotations

from eventscale.manifests.reader import Manifests, load_manifests
from servers.kubernetes_srv import KubeStandIn

VALUE = "Sup3rS3cretValue!"  # never to be seen in any message or repr


def so_with(auth_name: str, *, kind: str = "TriggerAuthentication", ns: str = "default") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
  - type: azure-queue
    metadata: {{queueName: jobs}}
    authenticationRef: {{name: {auth_name}, kind: {kind}}}
"""


def ta(name: str, body: str, *, kind: str = "TriggerAuthentication") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: {kind}
metadata: {{name: {name}}}
spec:
{body}
"""


def stream(*docs: str) -> Manifests:
    return load_manifests("\n---\n".join(docs))


def assert_no_value(*texts: str, value: str = VALUE) -> None:
    for text in texts:
        assert value not in text, f"the secret value leaked into: {text[:300]}"


def gets(standin: KubeStandIn, ns: str) -> list[str]:
    return [p for m, p, _ in standin.api.log if m == "GET" and f"/namespaces/{ns}/" in p]
