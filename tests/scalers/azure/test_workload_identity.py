"""azure-workload: the real azure-identity client against a local Entra ID token endpoint.

A local HTTPS endpoint (trustme certificate) plays ``login.microsoftonline.com``: it
checks the client assertion (the federated token file's content), the client id and the
tenant, and returns a JWT that Azurite's ``--oauth basic`` accepts (it checks issuer,
audience and lifetime, not the signature). The queue scaler reads a real Azurite queue
with that bearer token. aiohttp builds its verifying SSL context at import, so the tests
add their CAs to it (``configure_trust``) rather than to the environment.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.connector
import anyio
import attrs
import pytest
import trustme
from aiohttp import web
from azure.storage.queue.aio import QueueServiceClient

from eventscale.authentication.resolver import resolve_trigger_contexts_async
from eventscale.errors import ConfigError, ScalerError
from eventscale.manifests.reader import load_manifests
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.azure.storage_queue import AzureQueueScaler
from servers._proc import unique_name
from servers.azurite_srv import AzuriteOAuthServer

pytestmark = pytest.mark.anyio

pytest.importorskip("azure.identity")

CLIENT_ID = "00000000-1111-2222-3333-444444444444"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
OTHER_TENANT = "ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def storage_jwt(tenant: str, lifetime: int) -> str:
    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime,
        "tid": tenant,
    }
    return f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"


@attrs.define
class TokenEndpoint:
    """The stand-in Entra ID: accepts one client id, tenants and federated token."""

    url: str
    assertion: str
    tenants: set[str]
    lifetime: int = 3600
    refresh_in: int | None = None
    issued: list[str] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)


@pytest.fixture
def ca() -> trustme.CA:
    authority = trustme.CA()
    # aiohttp's verifying context (the default for azure-core's aiohttp transport).
    authority.configure_trust(aiohttp.connector._SSL_CONTEXT_VERIFIED)
    return authority


@pytest.fixture
async def token_endpoint(ca: trustme.CA) -> AsyncIterator[TokenEndpoint]:
    state = TokenEndpoint(url="", assertion=unique_name("federated"), tenants={TENANT})

    async def token(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = await request.post()
        problems = []
        if tenant not in state.tenants:
            problems.append(f"tenant {tenant}")
        if form.get("client_id") != CLIENT_ID:
            problems.append("client_id")
        if form.get("client_assertion_type") != JWT_BEARER:
            problems.append("client_assertion_type")
        if form.get("client_assertion") != state.assertion:
            problems.append("client_assertion")
        if form.get("grant_type") != "client_credentials":
            problems.append("grant_type")
        if problems:
            state.refused.append(", ".join(problems))
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS700213: refused"},
                status=401,
            )
        state.issued.append(str(form.get("scope")))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": state.lifetime,
            "access_token": storage_jwt(tenant, state.lifetime),
        }
        if state.refresh_in is not None:
            body["refresh_in"] = state.refresh_in
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"https://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
def webhook_env(
    token_endpoint: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The environment the workload identity webhook gives a pod."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(token_endpoint.assertion)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", token_endpoint.url)
    return token_file


@pytest.fixture
def oauth_azurite(azurite_oauth_server: AzuriteOAuthServer) -> AzuriteOAuthServer:
    azurite_oauth_server.ca.configure_trust(aiohttp.connector._SSL_CONTEXT_VERIFIED)
    return azurite_oauth_server


async def make_queue(server: AzuriteOAuthServer, messages: int) -> str:
    name = unique_name("wi").lower()
    async with QueueServiceClient.from_connection_string(server.connection_string()) as svc:
        queue = svc.get_queue_client(name)
        await queue.create_queue()
        for i in range(messages):
            await queue.send_message(f"m{i}")
    return name


def queue_scaler(
    server: AzuriteOAuthServer, queue: str, auth: dict[str, str] | None = None
) -> AzureQueueScaler:
    ctx = TriggerContext(
        metadata={"queueName": queue, "accountName": "devstoreaccount1"},
        auth={"podIdentity": "azure-workload", **(auth or {})},
        trigger_type="azure-queue",
    )
    scaler = create_scaler(ctx)
    assert isinstance(scaler, AzureQueueScaler)
    # Azurite serves accounts path-style (https://host:port/account); the scaler's
    # https://<account>.queue.core.windows.net is not resolvable here.
    scaler.endpoint = server.queue_endpoint
    return scaler


async def length(scaler: AzureQueueScaler) -> float:
    report = await scaler.get_metrics()
    return report.value_of(scaler.metadata.metric_name)


async def test_queue_read_with_a_federated_token(
    webhook_env: Path, token_endpoint: TokenEndpoint, oauth_azurite: AzuriteOAuthServer
) -> None:
    queue = await make_queue(oauth_azurite, 3)
    scaler = queue_scaler(oauth_azurite, queue)
    try:
        assert await length(scaler) == 3
    finally:
        await scaler.aclose()
    assert token_endpoint.refused == []
    assert token_endpoint.issued == ["https://storage.azure.com/.default"]


async def test_token_renewed_when_it_runs_out(
    webhook_env: Path, token_endpoint: TokenEndpoint, oauth_azurite: AzuriteOAuthServer
) -> None:
    # A short-lived token is reused while valid, and never sent once expired: the poll
    # after its end gets a new one (Azurite refuses an expired token, so the read after
    # the pause succeeds only with the renewed token). Renewal ahead of expiry (Entra
    # ID's refresh_in, or 5 minutes before) is azure-core's policy, throttled by
    # azure-identity to one attempt per 30 s (docs/authentication.md, Pod identity).
    token_endpoint.lifetime = 3
    queue = await make_queue(oauth_azurite, 2)
    scaler = queue_scaler(oauth_azurite, queue)
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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The webhook's environment names another client and tenant and no authority:
    # identityId, identityTenantId and identityAuthorityHost win.
    token_endpoint.tenants = {OTHER_TENANT}
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-this-client")
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.delenv("AZURE_AUTHORITY_HOST")
    queue = await make_queue(oauth_azurite, 4)
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
    scaler = create_scaler(ctx)
    assert isinstance(scaler, AzureQueueScaler)
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
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_queue(oauth_azurite, 1)
    secret_assertion = token_endpoint.assertion
    await anyio.Path(webhook_env).write_text("a-federated-token-the-endpoint-does-not-know")
    token_endpoint.assertion = "expected-something-else"
    scaler = queue_scaler(oauth_azurite, queue)
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
