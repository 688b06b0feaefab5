"""Trigger authentication for the Azure scalers: auth params and FromEnv, and secret hygiene.

Connection strings arrive through a TriggerAuthentication (``ctx.auth``, values are
``Secret``) or through ``connectionFromEnv``. Whatever the path, success or failure, the
key and the connection string must not show in a repr, a str, an error or a DEBUG log
record (user-voice K31).
"""

from __future__ import annotations

import logging

import pytest
from azure.storage.queue.aio import QueueServiceClient

from eventscale.errors import ConfigError, ScalerError
from eventscale.manifests.reader import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.azure.servicebus import AzureServiceBusMetadata, AzureServiceBusScaler
from eventscale.scalers.azure.storage_queue import AzureQueueMetadata, AzureQueueScaler
from servers._proc import unique_name
from servers.azurite_srv import DEV_KEY, AzuriteServer
from servers.servicebus_srv import ServiceBusStandIn

pytestmark = pytest.mark.anyio


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_hidden(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:200]}"


@pytest.mark.parametrize("via", ["auth", "env"])
async def test_queue_connection_via_auth_or_env(
    via: str, azurite_server: AzuriteServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    conn = azurite_server.connection_string()
    async with QueueServiceClient.from_connection_string(conn) as svc:
        queue = await svc.create_queue(unique_name("q"))
        await queue.send_message("x")
        if via == "auth":
            c = TriggerContext(
                metadata={"queueName": queue.queue_name},
                auth={"connection": Secret(conn)},
                trigger_type="azure-queue",
            )
        else:
            c = TriggerContext(
                metadata={"queueName": queue.queue_name, "connectionFromEnv": "CONN"},
                env={"CONN": conn},
                trigger_type="azure-queue",
            )
        scaler = create_scaler(c)
        assert isinstance(scaler, AzureQueueScaler)
        report = await scaler.get_metrics()
        assert report.is_active
        assert_hidden(
            [
                repr(scaler),
                str(scaler),
                repr(scaler.metadata),
                str(scaler.metadata),
                debug_logs.text,
            ],
            conn,
            DEV_KEY,
        )
        await scaler.aclose()
        await queue.delete_queue()


@pytest.mark.parametrize("via", ["auth", "env"])
async def test_servicebus_connection_via_auth_or_env(
    via: str, servicebus_server: ServiceBusStandIn, debug_logs: pytest.LogCaptureFixture
) -> None:
    conn = servicebus_server.connection_string()
    name = unique_name("q")
    servicebus_server.set_queue(name, active=4)
    meta = {"queueName": name, "caCertFile": str(servicebus_server.cafile)}
    if via == "auth":
        c = TriggerContext(
            metadata=meta, auth={"connection": Secret(conn)}, trigger_type="azure-servicebus"
        )
    else:
        c = TriggerContext(
            metadata={**meta, "connectionFromEnv": "SB"},
            env={"SB": conn},
            trigger_type="azure-servicebus",
        )
    scaler = create_scaler(c)
    assert isinstance(scaler, AzureServiceBusScaler)
    assert (await scaler.get_metrics()).is_active
    assert_hidden(
        [repr(scaler), str(scaler), repr(scaler.metadata), debug_logs.text],
        conn,
        servicebus_server.key,
    )
    await scaler.aclose()


async def test_failures_with_credentials_do_not_leak(
    azurite_server: AzuriteServer,
    servicebus_server: ServiceBusStandIn,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    bad_storage_key = "QmFkU3RvcmFnZUtleUJhZFN0b3JhZ2VLZXlCYWRTdG9yYWdlS2V5"
    bad_sb_key = "QmFkU2VydmljZUJ1c0tleUJhZFNlcnZpY2VCdXNLZXk="
    storage = AzureQueueScaler.from_context(
        TriggerContext(
            metadata={"queueName": unique_name("q")},
            auth={"connection": Secret(azurite_server.connection_string(bad_storage_key))},
        )
    )
    sb = AzureServiceBusScaler.from_context(
        TriggerContext(
            metadata={"queueName": unique_name("q"), "caCertFile": str(servicebus_server.cafile)},
            auth={"connection": Secret(servicebus_server.connection_string(bad_sb_key))},
        )
    )
    texts: list[str] = []
    for scaler in (storage, sb):
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        texts += [str(info.value), repr(info.value), repr(info.value.__cause__), repr(scaler)]
        await scaler.aclose()
    texts.append(debug_logs.text)
    assert_hidden(texts, bad_storage_key, bad_sb_key, DEV_KEY, servicebus_server.key)


def test_config_errors_do_not_echo_connection_strings() -> None:
    secret_cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=NotForLogs42"
    # A metadata literal is ignored by azure-servicebus (KEDA), so this is "no connection".
    with pytest.raises(ConfigError) as info:
        AzureServiceBusMetadata.from_context(
            TriggerContext(
                metadata={"queueName": "q", "connection": secret_cs, "messageCount": "x"}
            )
        )
    assert "NotForLogs42" not in str(info.value)
    storage_cs = "AccountName=a;AccountKey=NotForLogsEither"
    with pytest.raises(ConfigError) as info2:
        AzureQueueMetadata.from_context(
            TriggerContext(
                metadata={"queueName": "q", "queueLengthStrategy": "bad"},
                auth={"connection": Secret(storage_cs)},
            )
        )
    assert "NotForLogsEither" not in str(info2.value)
    ok = AzureQueueMetadata.from_context(
        TriggerContext(metadata={"queueName": "q"}, auth={"connection": Secret(storage_cs)})
    )
    assert "NotForLogsEither" not in repr(ok)


def test_trigger_authentication_manifest_with_env_and_secret_refs() -> None:
    """A TriggerAuthentication's ``env`` entry resolves from the container environment."""
    manifest = """
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: sb-auth
spec:
  env:
    - parameter: connection
      name: SB_CONNECTION
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: w
spec:
  scaleTargetRef:
    name: w
  triggers:
    - type: azure-servicebus
      metadata:
        queueName: jobs
      authenticationRef:
        name: sb-auth
"""
    cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=EnvKey123456"
    m = load_manifests(manifest)
    (ctx,) = m.trigger_contexts(m.scaled_object(), env={"SB_CONNECTION": cs})
    scaler = create_scaler(ctx)
    assert isinstance(scaler, AzureServiceBusScaler)
    assert scaler.namespace == "ns.servicebus.windows.net"
    assert scaler.metadata.connection == Secret(cs)
    # The auth parameter is a Secret in the context; (ctx.env itself is the caller's mapping.)
    assert repr(ctx.auth["connection"]) == "Secret('***')"
    assert_hidden([repr(scaler), repr(scaler.metadata), repr(ctx.auth)], cs, "EnvKey123456")
