"""azure-workload: the real azure-identity client against a local Entra ID token endpoint.

A local HTTPS endpoint (trustme certificate) plays ``login.microsoftonline.com``: it
checks the client assertion (the federated token file's content), the client id and the
tenant, and returns a JWT that Azurite's ``--oauth basic`` accepts (it checks issuer,
audience and lifetime, not the signature). The queue scaler reads a real Azurite queue
with that bearer token. Both servers' certificates come from test authorities that the
scaler is told to trust through public azure-core options: ``connection_verify`` (the
storage account) and ``credential_options={"connection_verify": ...}`` (the authority
host), both given one CA bundle file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
import trustme
from azure.storage.queue.aio import QueueServiceClient

from eventscale.authentication.resolver import resolve_trigger_contexts_async
from eventscale.errors import ConfigError, ScalerError
from eventscale.manifests.reader import load_manifests
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.azure.storage_queue import AzureQueueScaler
from servers._proc import unique_name
from servers.azurite_srv import AzuriteOAuthServer
from servers.entra_srv import CLIENT_ID, OTHER_TENANT, TENANT, TokenEndpoint

pytestmark = pytest.mark.anyio

pytest.importorskip("azure.identity")


@pytest.fixture
def token_endpoint(entra_endpoint: TokenEndpoint) -> TokenEndpoint:
    return entra_endpoint


@pytest.fixture
def oauth_azurite(azurite_oauth_server: AzuriteOAuthServer) -> AzuriteOAuthServer:
    return azurite_oauth_server


@pytest.fixture
def ca_bundle(entra_ca: trustme.CA, oauth_azurite: AzuriteOAuthServer, tmp_path: Path) -> str:
    """One PEM file with both test authorities: the token endpoint's and Azurite's."""
    path = tmp_path / "ca-bundle.pem"
    path.write_bytes(entra_ca.cert_pem.bytes() + oauth_azurite.ca.cert_pem.bytes())
    return str(path)


async def make_queue(server: AzuriteOAuthServer, messages: int, bundle: str) -> str:
    name = unique_name("wi").lower()
    async with QueueServiceClient.from_connection_string(
        server.connection_string(), connection_verify=bundle
    ) as svc:
        queue = svc.get_queue_client(name)
        await queue.create_queue()
        for i in range(messages):
            await queue.send_message(f"m{i}")
    return name


def queue_scaler(
    server: AzuriteOAuthServer, queue: str, bundle: str, auth: dict[str, str] | None = None
) -> AzureQueueScaler:
    ctx = TriggerContext(
        metadata={"queueName": queue, "accountName": "devstoreaccount1"},
        auth={"podIdentity": "azure-workload", **(auth or {})},
        trigger_type="azure-queue",
    )
    scaler = AzureQueueScaler.from_context(
        ctx, connection_verify=bundle, credential_options={"connection_verify": bundle}
    )
    # Azurite serves accounts path-style (https://host:port/account); the scaler's
    # https://<account>.queue.core.windows.net is not resolvable here.
    scaler.endpoint = server.queue_endpoint
    return scaler


async def length(scaler: AzureQueueScaler) -> float:
    report = await scaler.get_metrics()
    return report.value_of(scaler.metadata.metric_name)


async def test_queue_read_with_a_federated_token(
    webhook_env: Path,
    token_endpoint: TokenEndpoint,
    oauth_azurite: AzuriteOAuthServer,
    ca_bundle: str,
) -> None:
    queue = await make_queue(oauth_azurite, 3, ca_bundle)
    scaler = queue_scaler(oauth_azurite, queue, ca_bundle)
    try:
        assert await length(scaler) == 3
    finally:
        await scaler.aclose()
    assert token_endpoint.refused == []
    assert token_endpoint.issued == ["https://storage.azure.com/.default"]


async def test_token_renewed_when_it_runs_out(
    webhook_env: Path,
    token_endpoint: TokenEndpoint,
    oauth_azurite: AzuriteOAuthServer,
    ca_bundle: str,
) -> None:
    # A short-lived token is reused while valid, and never sent once expired: the poll
    # after its end gets a new one (Azurite refuses an expired token, so the read after
    # the pause succeeds only with the renewed token). Renewal ahead of expiry (Entra
    # ID's refresh_in, or 5 minutes before) is azure-core's policy, throttled by
    # azure-identity to one attempt per 30 s (docs/authentication.md, Pod identity).
    token_endpoint.lifetime = 3
    queue = await make_queue(oauth_azurite, 2, ca_bundle)
    scaler = queue_scaler(oauth_azurite, queue, ca_bundle)
    try:
        assert await length(scaler) == 2
        assert await length(scaler) == 2
        assert len(token_endpoint.issued) == 1  # still valid: reused
        await anyio.sleep(4)
        assert await length(scaler) == 2
    finally:
        await scaler.aclose()
    assert len(token_endpoint.issued) == 2
    assert token_endpoint.refused == []


async def test_pod_identity_overrides_from_the_trigger_authentication(
    webhook_env: Path,
    token_endpoint: TokenEndpoint,
    oauth_azurite: AzuriteOAuthServer,
    ca_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The webhook's environment names another client and tenant and no authority:
    # identityId, identityTenantId and identityAuthorityHost win.
    token_endpoint.tenants = {OTHER_TENANT}
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-this-client")
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.delenv("AZURE_AUTHORITY_HOST")
    queue = await make_queue(oauth_azurite, 4, ca_bundle)
    docs = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
  - type: azure-queue
    metadata: {{queueName: {queue}, accountName: devstoreaccount1}}
    authenticationRef: {{name: wi}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: wi}}
spec:
  podIdentity:
    provider: azure-workload
    identityId: {CLIENT_ID}
    identityTenantId: {OTHER_TENANT}
    identityAuthorityHost: {token_endpoint.url}
"""
    m = load_manifests(docs)
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m)
    scaler = AzureQueueScaler.from_context(
        ctx, connection_verify=ca_bundle, credential_options={"connection_verify": ca_bundle}
    )
    scaler.endpoint = oauth_azurite.queue_endpoint
    try:
        assert await length(scaler) == 4
    finally:
        await scaler.aclose()
    assert token_endpoint.refused == []
    assert len(token_endpoint.issued) == 1


async def test_refused_assertion_is_an_error_not_zero(
    webhook_env: Path,
    token_endpoint: TokenEndpoint,
    oauth_azurite: AzuriteOAuthServer,
    ca_bundle: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_queue(oauth_azurite, 1, ca_bundle)
    secret_assertion = token_endpoint.assertion
    await anyio.Path(webhook_env).write_text("a-federated-token-the-endpoint-does-not-know")
    token_endpoint.assertion = "expected-something-else"
    scaler = queue_scaler(oauth_azurite, queue, ca_bundle)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    finally:
        await scaler.aclose()
    assert not info.value.transient
    assert "authentication failed" in str(info.value)
    assert token_endpoint.refused == ["client_assertion"]
    assert "a-federated-token-the-endpoint-does-not-know" not in caplog.text
    assert secret_assertion not in str(info.value)


def test_missing_webhook_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    ctx = TriggerContext(
        metadata={"queueName": "q", "accountName": "acct"},
        auth={"podIdentity": "azure-workload"},
        trigger_type="azure-queue",
    )
    with pytest.raises(ConfigError) as info:
        create_scaler(ctx)
    assert info.value.path == "podIdentity"
