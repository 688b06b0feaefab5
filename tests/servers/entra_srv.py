"""A local stand-in for the Microsoft Entra ID token endpoint (workload identity).

``login.microsoftonline.com`` cannot be reached here, so an HTTPS endpoint (certificate
from a ``trustme`` authority) plays it for the real ``azure-identity`` client:
``POST /{tenant}/oauth2/v2.0/token`` with the client-credentials grant and a JWT-bearer
client assertion (the federated token file's content). It checks the tenant, the client
id, the assertion type and the assertion itself, and answers as Entra ID does: a JSON
body with ``access_token``, ``expires_in`` (and ``refresh_in`` when asked), or ``401``
with ``invalid_client``.

The access tokens are real RS256 JWTs signed with the endpoint's own RSA key:
``aud`` is the scope without ``/.default`` (``https://storage.azure.com``,
``https://servicebus.azure.net``), ``iss`` ``https://sts.windows.net/{tenant}/``, with
``tid``, ``appid``, ``iat``, ``nbf`` and ``exp``. Resource stand-ins check them with
:attr:`TokenEndpoint.public_key_pem` (the Service Bus stand-in does: signature, audience,
expiry); Azurite's ``--oauth basic`` checks issuer, audience and lifetime.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from servers._proc import unique_name

CLIENT_ID = "00000000-1111-2222-3333-444444444444"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
OTHER_TENANT = "ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issuer(tenant: str) -> str:
    """The ``iss`` of Entra ID's v1 access tokens for ``tenant``."""
    return f"https://sts.windows.net/{tenant}/"


def audience(scope: str) -> str:
    """The ``aud`` Entra ID gives a token for ``scope`` (``https://x//.default`` too)."""
    return scope.removesuffix(".default").rstrip("/")


@attrs.define
class TokenEndpoint:
    """The stand-in Entra ID: accepts one client id, ``tenants`` and the ``assertion``."""

    url: str
    assertion: str
    tenants: set[str]
    client_id: str = CLIENT_ID
    lifetime: int = 3600
    refresh_in: int | None = None
    issued: list[str] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)
    #: every access token handed out (leak tests look for them in logs and errors)
    tokens: list[str] = attrs.field(factory=list, repr=False)
    private_key: rsa.RSAPrivateKey = attrs.field(default=_KEY, repr=False)
    #: faults: sign with this key instead, put this ``aud`` or this ``exp`` offset in the
    #: token while ``expires_in`` still says :attr:`lifetime` (a stale or foreign token)
    signing_key: rsa.RSAPrivateKey | None = attrs.field(default=None, repr=False)
    audience_override: str | None = None
    exp_override: int | None = None

    @property
    def public_key_pem(self) -> bytes:
        """The PEM public key that checks this endpoint's access tokens."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def access_token(self, tenant: str, scope: str, lifetime: int | None = None) -> str:
        """A signed access token as this endpoint issues it (``lifetime`` may be negative)."""
        now = int(time.time())
        span = self.lifetime if lifetime is None else lifetime
        if self.exp_override is not None:
            span = self.exp_override
        claims = {
            "aud": self.audience_override or audience(scope),
            "iss": issuer(tenant),
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + span,
            "tid": tenant,
            "appid": self.client_id,
        }
        return jwt.encode(claims, self.signing_key or self.private_key, algorithm="RS256")


@pytest.fixture
def entra_ca() -> trustme.CA:
    """The authority of the token endpoint's certificate (clients trust its PEM)."""
    return trustme.CA()


@pytest.fixture
async def entra_endpoint(entra_ca: trustme.CA) -> AsyncIterator[TokenEndpoint]:
    """A running token endpoint for this test (its own port; state per test)."""
    state = TokenEndpoint(url="", assertion=unique_name("federated"), tenants={TENANT})

    async def token(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = await request.post()
        problems = []
        if tenant not in state.tenants:
            problems.append(f"tenant {tenant}")
        if form.get("client_id") != state.client_id:
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
        scope = str(form.get("scope"))
        state.issued.append(scope)
        access = state.access_token(tenant, scope)
        state.tokens.append(access)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": state.lifetime,
            "access_token": access,
        }
        if state.refresh_in is not None:
            body["refresh_in"] = state.refresh_in
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    entra_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
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
    entra_endpoint: TokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The environment the workload identity webhook gives a pod, pointing at the stand-in:
    ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE`` (holding the
    assertion the endpoint accepts) and ``AZURE_AUTHORITY_HOST``. Returns the token file."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(entra_endpoint.assertion)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra_endpoint.url)
    return token_file
