"""End to end: an azure-queue trigger whose connection string lives in a Kubernetes Secret.

The Secret is fetched from the Kubernetes API stand-in through the real KubeClient, the
scaler polls a real Azurite, once with the right account key and once with a wrong one.
Logs are captured at DEBUG on the root logger throughout: neither key nor connection
string (nor its base64 form, as the API carried it) may appear in any log record, repr,
ConfigError or ScalerError.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterable

import pytest
from azure.storage.queue.aio import QueueServiceClient

from eventscale.authentication.resolver import resolve_trigger_contexts_async
from eventscale.authentication.sources import ClusterSource
from eventscale.errors import ConfigError, ScalerError
from eventscale.kube import KubeClient, KubeConfig
from eventscale.manifests.reader import load_manifests
from eventscale.scalers import create_scaler
from servers._proc import unique_name
from servers.azurite_srv import DEV_KEY, AzuriteServer
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio

WRONG_KEY = base64.b64encode(b"this-is-not-the-azurite-account-key!!").decode()


def record_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    texts: list[str] = []
    for record in records:
        texts += [record.getMessage(), repr(record.args), repr(record.msg)]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
        if record.exc_text:
            texts.append(record.exc_text)
    return texts


def error_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    return texts


async def test_no_key_or_connection_string_leaks_while_resolving_and_polling(
    azurite_server: AzuriteServer,
    kube_standin: KubeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's DEBUG records
    ns = unique_name("ns")
    good = azurite_server.connection_string()
    bad = azurite_server.connection_string(WRONG_KEY)
    kube_standin.api.secret("storage-good", ns, {"connection": good})
    kube_standin.api.secret("storage-bad", ns, {"connection": bad})

    async with QueueServiceClient.from_connection_string(good) as svc:
        queue = await svc.create_queue(unique_name("q"))
        try:
            for i in range(3):
                await queue.send_message(f"job {i}")
            m = load_manifests(
                f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
  - type: azure-queue
    name: right-key
    metadata: {{queueName: {queue.queue_name}, queueLength: "1"}}
    authenticationRef: {{name: storage-good}}
  - type: azure-queue
    name: wrong-key
    metadata: {{queueName: {queue.queue_name}}}
    authenticationRef: {{name: storage-bad}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: storage-good}}
spec:
  secretTargetRef:
  - {{parameter: connection, name: storage-good, key: connection}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: storage-bad}}
spec:
  secretTargetRef:
  - {{parameter: connection, name: storage-bad, key: connection}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: misconfigured, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
  - type: azure-queue
    metadata: {{queueName: {queue.queue_name}}}
    authenticationRef: {{name: wrong-entry}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: wrong-entry}}
spec:
  secretTargetRef:
  - {{parameter: connection, name: storage-good, key: connectionString}}
"""
            )
            texts: list[str] = []
            config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns))
            client = KubeClient(config)
            try:
                right_ctx, wrong_ctx = await resolve_trigger_contexts_async(
                    m.scaled_object("worker"), m, kube_client=client
                )
                with pytest.raises(ConfigError) as config_error:
                    await resolve_trigger_contexts_async(
                        m.scaled_object("misconfigured"), m, kube_client=client
                    )
                assert config_error.value.path == "spec.secretTargetRef[0].key"
                assert "has no key 'connectionString'" in str(config_error.value)
                texts += error_texts(config_error.value)
                texts += [repr(ClusterSource(client)), repr(client.config)]
            finally:
                await client.aclose()

            right = create_scaler(right_ctx)
            wrong = create_scaler(wrong_ctx)
            try:
                report = await right.get_metrics()
                assert report.is_active
                assert [mv.value for mv in report.values] == [3]
                with pytest.raises(ScalerError) as scaler_error:
                    await wrong.get_metrics()
                assert not scaler_error.value.transient  # bad credentials need a change
                texts += error_texts(scaler_error.value)
                texts += [repr(right), str(right), repr(wrong), str(wrong)]
                texts += [repr(right_ctx), str(right_ctx), repr(wrong_ctx)]
                texts += [repr(right_ctx.auth), repr(getattr(right, "metadata", None))]
            finally:
                await right.aclose()
                await wrong.aclose()
        finally:
            await queue.delete_queue()

    # The test saw the traffic it meant to: Secrets read from the API, DEBUG records kept.
    paths = [p for meth, p, _ in kube_standin.api.log if meth == "GET" and ns in p]
    assert f"/api/v1/namespaces/{ns}/secrets/storage-good" in paths
    assert f"/api/v1/namespaces/{ns}/secrets/storage-bad" in paths
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert any(r.name == "eventscale.secrets" for r in caplog.records)

    texts += record_texts(caplog.records)
    texts.append(caplog.text)
    forbidden = {
        "account key": DEV_KEY,
        "wrong account key": WRONG_KEY,
        "connection string": good,
        "wrong connection string": bad,
        "base64 connection string": base64.b64encode(good.encode()).decode(),
        "base64 wrong connection string": base64.b64encode(bad.encode()).decode(),
    }
    for text in texts:
        for what, value in forbidden.items():
            assert value not in text, f"the {what} leaked into: {text[:300]}"
