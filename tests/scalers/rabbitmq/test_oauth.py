"""OAuth2 client credentials end to end: a local token endpoint (real HTTP, aiohttp.web)
hands out HS256 JWTs that the private RabbitMQ node's ``rabbitmq_auth_backend_oauth2``
verifies; the scaler's bearer token is accepted by the real management API."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable

import aio_pika
import attrs
import pytest
from aiohttp import web

from eventscale.errors import ScalerError
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import RabbitMQConfig, RabbitMQScaler
from eventscale.testing import ManualClock
from servers._proc import free_port, unique_name
from servers.rabbitmq_srv import OAUTH_RESOURCE, PrivateRabbitMQ, make_jwt

pytestmark = pytest.mark.anyio

CLIENT_ID = "es-scaler"
CLIENT_SECRET = "oauth-Client-s3cret"
SCOPES = "rabbitmq.read:*/*,rabbitmq.tag:management"


@attrs.define
class TokenRequest:
    form: dict[str, list[str]]
    basic: tuple[str, str] | None


@attrs.define
class TokenEndpoint:
    """A client-credentials token endpoint (RFC 6749 4.4) for the test to steer."""

    url: str = ""
    accept_basic: bool = True  # False: only credentials in the form are accepted
    lifetime: int = 300
    issue: Callable[[int], str] | None = None  # request number -> access token
    fail: tuple[int, str] | None = None  # (status, body) for every request
    requests: list[TokenRequest] = attrs.field(factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        form = urllib.parse.parse_qs(body, keep_blank_values=True)
        basic = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            basic = (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password))
        self.requests.append(TokenRequest(form=form, basic=basic))
        if self.fail is not None:
            return web.Response(status=self.fail[0], text=self.fail[1])
        if basic is not None:
            creds = basic if self.accept_basic else None
        else:
            creds = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
        if creds != (CLIENT_ID, CLIENT_SECRET) or form.get("grant_type") != ["client_credentials"]:
            return web.json_response({"error": "invalid_client"}, status=401)
        assert self.issue is not None
        token = self.issue(len(self.requests))
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime}
        )


@pytest.fixture
async def token_endpoint(private_rabbitmq: PrivateRabbitMQ) -> AsyncIterator[TokenEndpoint]:
    endpoint = TokenEndpoint(issue=lambda _n: private_rabbitmq.oauth_token())
    app = web.Application()
    app.router.add_post("/oauth/token", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{port}/oauth/token"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


@pytest.fixture
async def queue(private_rabbitmq: PrivateRabbitMQ) -> AsyncIterator[str]:
    name = unique_name("es-oauth")
    conn = await aio_pika.connect(private_rabbitmq.server.amqp_url)
    try:
        channel = await conn.channel()
        await channel.declare_queue(name)
        for _ in range(3):
            await channel.default_exchange.publish(aio_pika.Message(b"o"), routing_key=name)
        yield name
        await channel.queue_delete(name)
    finally:
        await conn.close()


def scaler_for(
    node: PrivateRabbitMQ, endpoint: TokenEndpoint, queue: str, clock: ManualClock
) -> RabbitMQScaler:
    """The KEDA metadata path; the host has no credentials, the bearer token is all."""
    ctx = TriggerContext(
        metadata={"queueName": queue, "host": f"http://127.0.0.1:{node.management_port}/"},
        auth={
            "oauthTokenURI": endpoint.url,
            "clientID": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "scopes": SCOPES,
            "endpointParams": "audience=rabbitmq&resource=api",
        },
        trigger_type="rabbitmq",
    )
    return RabbitMQScaler(RabbitMQConfig.from_context(ctx), clock=clock)


async def read_count(scaler: RabbitMQScaler, want: float | None = None) -> float:
    """Poll until a read succeeds and, with ``want``, shows that count (the stats lag)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            got = (await scaler.get_metrics()).values[0].value
        except ScalerError as exc:
            lagging = "404" in str(exc) or "not reported" in str(exc)
            if not lagging or time.monotonic() > deadline:
                raise
        else:
            if want is None or got == want or time.monotonic() > deadline:
                return got
        await asyncio.sleep(0.25)


async def test_token_is_fetched_cached_refreshed_and_accepted_by_the_broker(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    clock = ManualClock(1000.0)
    async with scaler_for(private_rabbitmq, token_endpoint, queue, clock) as scaler:
        assert await read_count(scaler, 3) == 3
        assert len(token_endpoint.requests) == 1
        first = token_endpoint.requests[0]
        assert first.basic == (CLIENT_ID, CLIENT_SECRET)  # RFC 6749 2.3.1 header first
        assert first.form == {
            "grant_type": ["client_credentials"],
            "scope": ["rabbitmq.read:*/* rabbitmq.tag:management"],
            "audience": ["rabbitmq"],
            "resource": ["api"],
        }
        for _ in range(3):
            await scaler.get_metrics()
        assert len(token_endpoint.requests) == 1  # cached

        clock.advance(300 - 10 - 1)  # still 1 s before the 10 s margin
        await scaler.get_metrics()
        assert len(token_endpoint.requests) == 1
        clock.advance(2)
        await scaler.get_metrics()
        assert len(token_endpoint.requests) == 2  # refreshed before it expires
        await scaler.get_metrics()
        assert len(token_endpoint.requests) == 2


async def test_credentials_move_to_the_form_when_the_endpoint_wants_them_there(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    token_endpoint.accept_basic = False
    clock = ManualClock(0.0)
    async with scaler_for(private_rabbitmq, token_endpoint, queue, clock) as scaler:
        assert await read_count(scaler) in (0, 3)  # 0 until the broker's stats catch up
        header_try, form_try = token_endpoint.requests
        assert header_try.basic is not None
        assert form_try.basic is None
        assert form_try.form["client_id"] == [CLIENT_ID]
        assert form_try.form["client_secret"] == [CLIENT_SECRET]
        assert form_try.form["grant_type"] == ["client_credentials"]
        clock.advance(3600)
        await scaler.get_metrics()
        assert len(token_endpoint.requests) == 3  # the style that worked, at once
        assert token_endpoint.requests[2].basic is None


async def test_a_cached_token_the_broker_rejects_is_replaced_once(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    # The first token has already expired by its own exp claim although expires_in
    # says 300 s (as a token revoked early would look): the broker answers 401.
    token_endpoint.issue = lambda n: private_rabbitmq.oauth_token(expires_in=-60 if n == 1 else 300)
    async with scaler_for(private_rabbitmq, token_endpoint, queue, ManualClock()) as scaler:
        with pytest.raises(ScalerError, match="401"):
            await scaler.get_metrics()  # a token fetched just now is not fetched again
        assert len(token_endpoint.requests) == 1
        # The next poll finds the cached token rejected, drops it and asks once more.
        # (read_count polls on while a fresh queue's counts are not published yet)
        assert await read_count(scaler) in (0, 3)
    assert len(token_endpoint.requests) == 2


async def test_a_badly_signed_token_is_an_error(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    claims = {"sub": "x", "aud": [OAUTH_RESOURCE], "scope": ["rabbitmq.read:*/*"]}
    forged = make_jwt({**claims, "exp": int(time.time()) + 300}, key=b"not-the-broker-key")
    token_endpoint.issue = lambda _n: forged
    async with scaler_for(private_rabbitmq, token_endpoint, queue, ManualClock()) as scaler:
        with pytest.raises(ScalerError, match="401") as info:
            await scaler.get_metrics()
        # The fresh token was rejected as well: no second retry, no loop.
        assert len(token_endpoint.requests) == 1
        with pytest.raises(ScalerError, match="401"):
            await scaler.get_metrics()
        assert len(token_endpoint.requests) == 2  # cached one rejected -> one refetch
    assert forged not in str(info.value)
    assert info.value.transient is False


async def test_token_endpoint_401_is_an_error_without_the_client_secret(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    token_endpoint.fail = (
        401,
        json.dumps({"error": "invalid_client", "error_description": f"bad {CLIENT_SECRET}"}),
    )
    async with scaler_for(private_rabbitmq, token_endpoint, queue, ManualClock()) as scaler:
        with pytest.raises(ScalerError, match="OAuth2 token request failed: status 401") as info:
            await scaler.get_metrics()
    err = info.value
    assert err.transient is False
    assert "invalid_client" in str(err)
    for text in (str(err), repr(err), err.message, repr(scaler), repr(scaler.config)):
        assert CLIENT_SECRET not in text
    assert len(token_endpoint.requests) == 2  # header, then form


async def test_unreachable_token_endpoint_is_a_transient_error(
    private_rabbitmq: PrivateRabbitMQ, token_endpoint: TokenEndpoint, queue: str
) -> None:
    token_endpoint.url = f"http://127.0.0.1:{free_port()}/oauth/token"
    async with scaler_for(private_rabbitmq, token_endpoint, queue, ManualClock()) as scaler:
        with pytest.raises(ScalerError, match="token endpoint") as info:
            await scaler.get_metrics()
    assert info.value.transient is True
    assert CLIENT_SECRET not in str(info.value)
