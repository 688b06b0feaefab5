"""The Python examples of docs/authentication.md run, and their assertions hold.

The cluster example talks to the Kubernetes API stand-in (``KubeConfig.load()`` finds it
through ``$KUBECONFIG``); the mounted-directory and ``filePath`` examples read files laid
out under ``tmp_path``, their absolute paths rewritten there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from servers.kubernetes_srv import KubeStandIn

DOC = Path(__file__).parent.parent.parent / "docs" / "authentication.md"
CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey=ZG9jcy1rZXk=;"
    "EndpointSuffix=core.windows.net"
)


def test_authentication_doc_examples_run(
    kube_standin: KubeStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster the example reads: namespace "shop", its Secret and its Deployment.
    kube_standin.api.secret("queue-secret", "shop", {"connection": CONNECTION})
    kube_standin.api.deployment(
        "orders-worker",
        "shop",
        containers=[
            {
                "name": "worker",
                "image": "busybox",
                "env": [{"name": "STORAGE_ACCOUNT", "value": "shop"}],
            }
        ],
    )
    monkeypatch.setenv("KUBECONFIG", str(kube_standin.kubeconfig("shop")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("ORDERS_QUEUE_CONNECTION", "restored after the test")

    # The mounted Secret and the filePath file.
    mounted = tmp_path / "secrets" / "rabbitmq"
    mounted.mkdir(parents=True)
    (mounted / "host").write_text("amqp://mailer:pw@rabbitmq.shop:5672/\n")
    auth_root = tmp_path / "auth"
    (auth_root / "credentials").mkdir(parents=True)
    (auth_root / "credentials" / "storage.json").write_text(json.dumps({"connection": CONNECTION}))

    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 6
    before = len([p for m, p, _ in kube_standin.api.log if m == "GET" and "/namespaces/shop/" in p])
    namespace: dict[str, object] = {}
    for block in blocks:
        code = block.replace("/etc/secrets", str(tmp_path / "secrets")).replace(
            "/etc/eventscale/auth", str(auth_root)
        )
        exec(compile(code, str(DOC), "exec"), namespace)
    reads = [p for m, p, _ in kube_standin.api.log if m == "GET" and "/namespaces/shop/" in p]
    assert "/api/v1/namespaces/shop/secrets/queue-secret" in reads[before:]
    assert "/apis/apps/v1/namespaces/shop/deployments/orders-worker" in reads[before:]
