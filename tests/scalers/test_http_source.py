"""The shared HTTP source of the HTTP-based triggers: KEDA's auth parameters, TLS, bounded
reads and error translation, against a real local aiohttp server."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from eventscale.errors import ConfigError, ScalerError
from eventscale.redaction import Secret
from eventscale.scalers._http_source import (
    MAX_BODY,
    AuthMode,
    HTTPAuth,
    HTTPSource,
    read_key_value_map,
)
from eventscale.scalers.params import Params, TriggerContext
from servers._proc import free_port

ALL = frozenset(AuthMode) - {AuthMode.OAUTH}


def params(metadata: dict[str, str], auth: dict[str, str | Secret] | None = None) -> Params:
    return Params(
        TriggerContext(
            metadata=metadata, auth=auth or {}, trigger_type="t", path="spec.triggers[0]"
        )
    )


def read_auth(metadata: dict[str, str], auth: dict[str, str | Secret] | None = None) -> HTTPAuth:
    p = params(metadata, auth)
    result = HTTPAuth.from_params(p, supported=ALL, trigger_type="t")
    p.finish()
    return result


# ---------------------------------------------------------------------------- parameters


def test_key_value_map() -> None:
    p = params({"h": " A=1 , B = two ", "bad": "a=b=c", "empty": "  "})
    assert read_key_value_map(p, "h") == {"A": "1", "B": "two"}
    assert read_key_value_map(p, "empty") == {}
    assert read_key_value_map(p, "missing") == {}
    assert read_key_value_map(p, "bad") == {}
    (error,) = p.errors
    assert error.path == "spec.triggers[0].metadata.bad"
    assert "expected key=value pairs" in str(error)


def test_no_auth_by_default() -> None:
    auth = read_auth({})
    assert auth.modes == frozenset()
    assert auth.headers() == {}
    assert auth.query() == {}


def test_modes_from_metadata_or_auth_and_alias() -> None:
    assert read_auth({"authModes": "bearer"}, {"bearerToken": "x"}).modes == {AuthMode.BEARER}
    assert read_auth({"authMode": "basic"}, {"username": "u"}).modes == {AuthMode.BASIC}
    assert read_auth({}, {"authModes": "tls , custom", **_tls(), **_custom()}).modes == {
        AuthMode.TLS,
        AuthMode.CUSTOM,
    }


def _tls() -> dict[str, str | Secret]:
    return {"cert": Secret("c"), "key": Secret("k")}


def _custom() -> dict[str, str | Secret]:
    return {"customAuthHeader": "X-A", "customAuthValue": Secret("v4lue")}


def test_headers_of_each_mode() -> None:
    basic = read_auth({"authModes": "basic"}, {"username": "u", "password": Secret("p")})
    assert basic.headers() == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    no_password = read_auth({"authModes": "basic"}, {"username": "u"})
    assert no_password.headers()["Authorization"] == "Basic " + base64.b64encode(b"u:").decode()
    bearer = read_auth({"authModes": "bearer"}, {"token": Secret("tok")})
    assert bearer.headers() == {"Authorization": "Bearer tok"}
    custom = read_auth({"authModes": "custom"}, _custom())
    assert custom.headers() == {"X-A": "v4lue"}
    key_header = read_auth({"authModes": "apiKey", "apiKey": "k1"})
    assert key_header.headers() == {"X-API-KEY": "k1"}
    assert key_header.query() == {}
    key_named = read_auth({"authModes": "apiKey", "keyParamName": "X-K"}, {"apiKey": "k2"})
    assert key_named.headers() == {"X-K": "k2"}
    key_query = read_auth({"authModes": "apiKey", "method": "query"}, {"apiKey": "k3"})
    assert key_query.headers() == {}
    assert key_query.query() == {"api_key": "k3"}
    # method and keyParamName may come from the TriggerAuthentication too
    from_auth = read_auth(
        {"authModes": "apiKey"}, {"apiKey": "k4", "method": "query", "keyParamName": "key"}
    )
    assert from_auth.query() == {"key": "k4"}


def test_every_problem_is_collected() -> None:
    p = params({"authModes": "bearer,basic,tls,custom,apiKey", "method": "cookie"})
    HTTPAuth.from_params(p, supported=ALL, trigger_type="t")
    text = "\n".join(str(e) for e in p.errors)
    assert "must contain only one of [bearer basic oauth]" in text
    assert "bearerToken is required" in text
    assert "username is required" in text
    assert "cert and key are required" in text
    assert "customAuthHeader and customAuthValue are required" in text
    assert "apiKey is required" in text
    assert 'value "cookie" must be one of [header query]' in text


def test_unknown_and_unsupported_modes() -> None:
    p = params({"authModes": "kerberos"})
    HTTPAuth.from_params(p, supported=ALL, trigger_type="t")
    assert "must be one of" in str(p.errors[0])
    p = params({"authModes": "oauth"})
    HTTPAuth.from_params(p, supported=ALL, trigger_type="t")
    assert 'authModes "oauth" is not supported by the t trigger' in str(p.errors[0])


def test_repr_never_shows_secrets() -> None:
    auth = read_auth(
        {"authModes": "basic,custom,tls,apiKey"},
        {
            "username": "u",
            "password": Secret("pa55word"),
            "customAuthHeader": "X-A",
            "customAuthValue": Secret("cust0m"),
            "cert": Secret("cert-pem"),
            "key": Secret("key-pem"),
            "apiKey": Secret("ap1key"),
        },
    )
    shown = repr(auth)
    for secret in ("pa55word", "cust0m", "cert-pem", "key-pem", "ap1key"):
        assert secret not in shown


def test_bad_tls_material_is_a_config_error() -> None:
    auth = read_auth({"authModes": "tls"}, {"cert": Secret("not a pem"), "key": Secret("nope")})
    with pytest.raises(ConfigError, match="invalid TLS material") as info:
        HTTPSource(
            auth=auth,
            unsafe_ssl=False,
            timeout=1,
            trigger="t",
            what="API",
            extra="http",
            path="spec.triggers[0]",
        )
    assert info.value.path == "spec.triggers[0]"
    with pytest.raises(ConfigError, match="invalid TLS material"):
        HTTPSource(
            auth=read_auth({}, {"ca": Secret("garbage")}),
            unsafe_ssl=False,
            timeout=1,
            trigger="t",
            what="API",
            extra="http",
        )


# ---------------------------------------------------------------------------- requests


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        what = request.match_info["what"]
        if what == "announced-big":
            return web.Response(body=b"x" * 2048)
        if what == "prom-error":
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "token=s3cr3t-value bad"},
                status=422,
            )
        if what.startswith("status-"):
            return web.Response(status=int(what.removeprefix("status-")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{what}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def source(auth: HTTPAuth | None = None, **kwargs: Any) -> HTTPSource:
    return HTTPSource(
        auth=auth or HTTPAuth(),
        unsafe_ssl=False,
        timeout=kwargs.pop("timeout", 2.0),
        trigger="api[0]",
        what="the API",
        extra="http",
        **kwargs,
    )


@pytest.mark.anyio
async def test_get_sends_params_headers_and_auth(server: tuple[str, list[web.Request]]) -> None:
    url, seen = server
    auth = read_auth({"authModes": "apiKey", "method": "query"}, {"apiKey": Secret("k3y-123")})
    src = source(auth)
    try:
        body = await src.get(
            f"{url}/x", params=[("a", "1"), ("b", "two words")], headers={"X-H": "v"}
        )
    finally:
        await src.aclose()
    assert body == b"ok"
    assert dict(seen[-1].query) == {"a": "1", "b": "two words", "api_key": "k3y-123"}
    assert seen[-1].headers["X-H"] == "v"


@pytest.mark.anyio
async def test_announced_length_over_the_bound(server: tuple[str, list[web.Request]]) -> None:
    url, _ = server
    src = source(max_body=1024)
    try:
        with pytest.raises(ScalerError, match="answered more than 1024 bytes") as info:
            await src.get(f"{url}/announced-big")
        assert await src.get(f"{url}/x") == b"ok"
    finally:
        await src.aclose()
    assert info.value.trigger == "api[0]"
    assert info.value.transient is False
    assert MAX_BODY == 4 * 1024 * 1024


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "transient", "extra"),
    [
        (400, False, ""),
        (401, False, " (the credentials were refused)"),
        (403, False, " (the credentials were refused)"),
        (408, True, ""),
        (429, True, ""),
        (502, True, ""),
    ],
)
async def test_status_errors(
    server: tuple[str, list[web.Request]], status: int, transient: bool, extra: str
) -> None:
    url, _ = server
    src = source()
    try:
        with pytest.raises(ScalerError) as info:
            await src.get(f"{url}/status-{status}")
    finally:
        await src.aclose()
    assert (
        str(info.value) == f"[api[0]] the API {url}/status-{status} answered HTTP {status}{extra}"
    )
    assert info.value.transient is transient


@pytest.mark.anyio
async def test_error_detail_is_redacted(server: tuple[str, list[web.Request]]) -> None:
    url, _ = server

    def detail(body: bytes) -> str:
        return body.decode()

    src = source()
    try:
        with pytest.raises(ScalerError, match="HTTP 422") as info:
            await src.get(f"{url}/prom-error", error_detail=detail)
    finally:
        await src.aclose()
    assert "s3cr3t-value" not in str(info.value)
    assert "bad_data" in str(info.value)


@pytest.mark.anyio
async def test_url_password_and_secrets_are_not_shown() -> None:
    port = free_port()
    auth = read_auth({"authModes": "apiKey", "method": "query"}, {"apiKey": Secret("t0k3n-xyz")})
    src = source(auth)
    try:
        with pytest.raises(ScalerError, match="cannot connect to the API") as info:
            await src.get(f"http://user:pa55-xyz@127.0.0.1:{port}/x?q=1")
    finally:
        await src.aclose()
    message = str(info.value)
    assert "pa55-xyz" not in message
    assert "t0k3n-xyz" not in message
    assert f"http://user:***@127.0.0.1:{port}/x" in message
    assert info.value.transient is True


@pytest.mark.anyio
async def test_closing_twice_is_safe(server: tuple[str, list[web.Request]]) -> None:
    url, _ = server
    src = source()
    assert await src.get(f"{url}/x") == b"ok"
    await src.aclose()
    await src.aclose()


@pytest.mark.parametrize(
    ("trigger_type", "metadata", "extra"),
    [
        (
            "prometheus",
            {"serverAddress": "http://p:9090", "query": "up", "threshold": "1"},
            "prometheus",
        ),
        ("metrics-api", {"url": "http://a/b", "valueLocation": "x", "targetValue": "1"}, "http"),
    ],
)
def test_missing_aiohttp_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, trigger_type: str, metadata: dict[str, str], extra: str
) -> None:
    from eventscale.errors import MissingExtraError
    from eventscale.metrics import MetricType
    from eventscale.scalers import create_scaler

    ctx = TriggerContext(metadata=metadata, trigger_type=trigger_type, metric_type=MetricType.VALUE)
    (spec,) = create_scaler(ctx).metric_specs()
    assert spec.metric_type is MetricType.VALUE
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(MissingExtraError, match=rf"eventscale\[{extra}\]"):
        create_scaler(ctx)
