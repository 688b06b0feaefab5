"""The metrics-api trigger against a real local HTTP(S) server (aiohttp) in the test.

The server serves the same numbers as JSON, YAML, XML and Prometheus text, checks each
auth mode itself (API key in a header or the query, basic, bearer, a client
certificate on its HTTPS port), and has paths that fail: error statuses, a huge body, a
slow answer. The KEDA documentation examples (tests/data/manifests/metrics-api-*.yaml)
load with ``load_manifests`` and run against it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from aiohttp import web

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.manifests import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler
from eventscale.scalers.metrics_api import MetricsAPIMetadata, MetricsAPIScaler
from eventscale.scalers.params import TriggerContext
from servers._proc import free_port

pytestmark = pytest.mark.anyio

MANIFESTS = Path(__file__).parents[1] / "data" / "manifests"

STATS: dict[str, Any] = {
    "components": {"worker": {"tasks": 12, "queued": "1.5k"}, "list": [{"n": 3}, {"n": 4}]},
    "count": 2.43,
    "name": "svc",
    "flag": True,
    "none": None,
    "bad": "NaN",
}
YAML_BODY = (
    "components:\n"
    "  worker: {tasks: 12, queued: '1.5k'}\n"
    "  list: [{n: 3}, {n: 4}]\n"
    "count: 2.43\n"
    "name: svc\n"
    "flag: true\n"
    "bad: NaN\n"
    "200: 7\n"
)
XML_BODY = (
    '<?xml version="1.0"?>\n'
    "<stats><components><worker><tasks>12</tasks><queued>10Mi</queued></worker>"
    "<list><n>3</n></list><list><n>4</n></list></components>"
    "<count>2.43</count><name>svc</name></stats>"
)
PROM_BODY = (
    "# HELP backend_queue_size Total number of items\n"
    "# TYPE backend_queue_size counter\n"
    'backend_queue_size{queueName="zero"} 0\n'
    'backend_queue_size{queueName="one"} 1\n'
    'backend_queue_size{queueName="two", instance="random"} 2\n'
    'backend_queue_size{queueName="two", instance="zero"} 20\n'
    "# HELP random_metric Random metric generate to include noise\n"
    "# TYPE random_metric counter\n"
    "random_metric 10\n"
    "nan_metric NaN\n"
    "# TYPE latency histogram\n"
    'latency_bucket{le="1"} 3\n'
    "latency 5"  # no final newline, as KEDA's own test
)
API_KEY = "k3y-abcdef"
TOKEN = "t0ken-abcdef"
USER, PASSWORD = "metrics-user", "p4ss-abcdef"
SEEN = web.AppKey("seen", list[web.Request])


@attrs.frozen
class APIServer:
    url: str
    https_url: str
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str
    seen: list[web.Request]


def _authorized(request: web.Request) -> bool:
    kind = request.match_info["kind"]
    headers, query = request.headers, request.query
    if kind == "open":
        return True
    if kind == "apikey-header":
        return headers.get("X-API-KEY") == API_KEY
    if kind == "apikey-custom-header":
        return headers.get("X-Custom-Key") == API_KEY
    if kind == "apikey-query":
        return query.get("api_key") == API_KEY
    if kind == "apikey-custom-query":
        return query.get("QUERY_KEY") == API_KEY or query.get("QUERY_KEY") == "APIKEY"
    if kind == "basic":
        good = {
            base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            base64.b64encode(b"username:password").decode(),
        }
        return headers.get("Authorization", "").removeprefix("Basic ") in good
    if kind == "bearer":
        return headers.get("Authorization") in (f"Bearer {TOKEN}", "Bearer PlaceYourTokenHere")
    return False


async def _handle(request: web.Request) -> web.StreamResponse:
    request.app[SEEN].append(request)
    if not _authorized(request):
        return web.Response(status=401, text="who are you?")
    what = request.match_info["what"]
    if what in ("stats.json", "stats"):
        return web.json_response(STATS)
    if what == "stats.yaml":
        return web.Response(text=YAML_BODY)
    if what == "stats.xml":
        return web.Response(text=XML_BODY, content_type="application/xml")
    if what == "metrics":
        return web.Response(text=PROM_BODY)
    if what.startswith("status-"):
        return web.Response(status=int(what.removeprefix("status-")), text="nope")
    if what == "huge":
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b" " * (1024 * 1024)
        for _ in range(6):  # 6 MiB, streamed without a Content-Length
            await response.write(chunk)
        await response.write_eof()
        return response
    if what == "slow":
        await asyncio.sleep(2)
        return web.json_response(STATS)
    if what == "not-json":
        return web.Response(text="<html>hello</html>")
    return web.Response(status=404)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def api_server() -> AsyncIterator[APIServer]:
    seen: list[web.Request] = []
    app = web.Application()
    app[SEEN] = seen
    app.router.add_get("/components/{what}", _handle_docs)
    app.router.add_get("/{kind}/{what}", _handle)
    runner = web.AppRunner(app)
    await runner.setup()
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("metrics-client@example.org")
    port, tls_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=server_ctx).start()
    try:
        yield APIServer(
            url=f"http://127.0.0.1:{port}",
            https_url=f"https://127.0.0.1:{tls_port}",
            ca_pem=ca.cert_pem.bytes().decode(),
            client_cert_pem=client.cert_chain_pems[0].bytes().decode(),
            client_key_pem=client.private_key_pem.bytes().decode(),
            seen=seen,
        )
    finally:
        await runner.cleanup()


async def _handle_docs(request: web.Request) -> web.StreamResponse:
    """``/components/stats`` (the docs' path): accepts no auth or any docs credential."""
    request.app[SEEN].append(request)
    return web.json_response({"components": {"worker": {"tasks": 12}}})


def scaler(
    metadata: dict[str, str], auth: dict[str, str | Secret] | None = None, **kwargs: Any
) -> MetricsAPIScaler:
    ctx = TriggerContext(
        metadata={"targetValue": "5", **metadata},
        auth=auth or {},
        trigger_type="metrics-api",
        index=kwargs.pop("index", 0),
    )
    built = create_scaler(ctx)
    assert isinstance(built, MetricsAPIScaler)
    if kwargs:
        return MetricsAPIScaler(MetricsAPIMetadata.from_context(ctx), **kwargs)
    return built


async def read(s: MetricsAPIScaler) -> tuple[float, bool]:
    async with s:
        report = await s.get_metrics()
    return report.value_of(s.metadata.metric_name), report.is_active


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "path", "location", "expected"),
    [
        ("json", "stats.json", "components.worker.tasks", 12.0),
        ("json", "stats.json", "count", 2.43),
        ("json", "stats.json", "components.worker.queued", 1500.0),
        ("json", "stats.json", "components.list.1.n", 4.0),
        ("json", "stats.json", "components.list.#", 2.0),
        ("yaml", "stats.yaml", "components.worker.tasks", 12.0),
        ("yaml", "stats.yaml", "components.worker.queued", 1500.0),
        ("yaml", "stats.yaml", "components.list.0.n", 3.0),
        ("yaml", "stats.yaml", "200", 7.0),
        ("xml", "stats.xml", "stats.components.worker.tasks", 12.0),
        ("xml", "stats.xml", "stats.components.worker.queued", 10.0 * 2**20),
        ("xml", "stats.xml", "stats.components.list.1.n", 4.0),
        ("xml", "stats.xml", "stats.count", 2.43),
        ("prometheus", "metrics", "random_metric", 10.0),
        ("prometheus", "metrics", 'backend_queue_size{queueName="one"}', 1.0),
        ("prometheus", "metrics", 'backend_queue_size{queueName="two"}', 2.0),
        ("prometheus", "metrics", 'backend_queue_size{queueName="two", instance="zero"}', 20.0),
        ("prometheus", "metrics", '{__name__="random_metric"}', 10.0),
    ],
)
async def test_formats(
    api_server: APIServer, fmt: str, path: str, location: str, expected: float
) -> None:
    s = scaler({"url": f"{api_server.url}/open/{path}", "format": fmt, "valueLocation": location})
    value, active = await read(s)
    assert value == pytest.approx(expected)
    assert active is (expected > 0)


async def test_metric_name_target_and_activation(api_server: APIServer) -> None:
    meta = {
        "url": f"{api_server.url}/open/stats.json",
        "valueLocation": "components.worker.tasks",
        "targetValue": "8.8",
        "activationTargetValue": "12",
    }
    s = scaler(meta, index=3)
    (spec,) = s.metric_specs()
    assert spec.name == "s3-metric-api-components-worker-tasks"
    assert (spec.target, spec.activation_target) == (8.8, 12)
    assert await read(s) == (12.0, False)
    assert await read(scaler({**meta, "activationTargetValue": "11.5"})) == (12.0, True)


@pytest.mark.parametrize(
    ("fmt", "path", "location", "message"),
    [
        (
            "json",
            "stats.json",
            "components.worker.missing",
            "'components.worker.missing' not found",
        ),
        ("json", "stats.json", "components.list.7.n", "'components.list.7' not found"),
        ("json", "stats.json", "name", "points to a string that is not a quantity"),
        ("json", "stats.json", "flag", "got a boolean"),
        ("json", "stats.json", "none", "got null"),
        ("json", "stats.json", "components.worker", "got an object"),
        ("json", "stats.json", "bad", "not a quantity"),
        ("json", "stats.json", "count.deeper", "the path continues past float"),
        ("json", "not-json", "a", "the body is not valid JSON"),
        ("yaml", "stats.yaml", "bad", "not a quantity"),
        ("yaml", "stats.yaml", "components.nothing", "not found"),
        ("xml", "stats.xml", "stats.name", "not a quantity"),
        ("xml", "stats.xml", "components.worker.tasks", "'components' not found"),
        ("xml", "stats.json", "a", "the body is not valid XML"),
        ("prometheus", "metrics", "nope_metric", "metric 'nope_metric' not found"),
        ("prometheus", "metrics", 'backend_queue_size{invalid="test"}', "not found"),
        ("prometheus", "metrics", "nan_metric", "nan"),
        ("prometheus", "metrics", "latency", "metric type 'histogram' is not supported"),
    ],
)
async def test_unreadable_values_are_errors(
    api_server: APIServer, fmt: str, path: str, location: str, message: str
) -> None:
    s = scaler({"url": f"{api_server.url}/open/{path}", "format": fmt, "valueLocation": location})
    with pytest.raises(ScalerError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        await read(s)
    assert info.value.transient is False


@pytest.mark.parametrize(("status", "transient"), [(404, False), (500, True), (503, True)])
async def test_error_statuses(api_server: APIServer, status: int, transient: bool) -> None:
    s = scaler({"url": f"{api_server.url}/open/status-{status}", "valueLocation": "a"})
    with pytest.raises(ScalerError, match=f"answered HTTP {status}") as info:
        await read(s)
    assert info.value.transient is transient


async def test_oversized_body(api_server: APIServer) -> None:
    s = scaler({"url": f"{api_server.url}/open/huge", "valueLocation": "a"})
    with pytest.raises(ScalerError, match=f"answered more than {4 * 1024 * 1024} bytes"):
        await read(s)


async def test_timeout(api_server: APIServer) -> None:
    meta = {"url": f"{api_server.url}/open/slow", "valueLocation": "count", "timeout": "250ms"}
    with pytest.raises(ScalerTimeout, match=r"did not answer within 0\.25s"):
        await read(scaler(meta))


async def test_unreachable() -> None:
    s = scaler({"url": f"http://127.0.0.1:{free_port()}/x", "valueLocation": "a"})
    with pytest.raises(ScalerError, match="cannot connect to metrics API") as info:
        await read(s)
    assert info.value.transient is True


# ---------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("kind", "metadata", "auth"),
    [
        ("apikey-header", {"authMode": "apiKey"}, {"apiKey": API_KEY}),
        (
            "apikey-custom-header",
            {"authMode": "apiKey", "keyParamName": "X-Custom-Key"},
            {"apiKey": API_KEY},
        ),
        ("apikey-query", {"authMode": "apiKey", "method": "query"}, {"apiKey": API_KEY}),
        (
            "apikey-custom-query",
            {"authMode": "apiKey", "method": "query", "keyParamName": "QUERY_KEY"},
            {"apiKey": API_KEY},
        ),
        ("basic", {"authMode": "basic"}, {"username": USER, "password": PASSWORD}),
        ("bearer", {"authMode": "bearer"}, {"token": TOKEN}),
        ("bearer", {"authModes": "bearer"}, {"bearerToken": TOKEN}),
    ],
)
async def test_auth_modes(
    api_server: APIServer, kind: str, metadata: dict[str, str], auth: dict[str, str]
) -> None:
    meta = {"url": f"{api_server.url}/{kind}/stats.json", "valueLocation": "count", **metadata}
    secrets: dict[str, str | Secret] = {
        k: v if k == "username" else Secret(v) for k, v in auth.items()
    }
    assert await read(scaler(meta, secrets)) == (2.43, True)
    # without the credential the server refuses, and the error says so without secrets
    wrong = {k: v if k == "username" else Secret("wrong-" + v) for k, v in auth.items()}
    with pytest.raises(ScalerError, match=r"HTTP 401 \(the credentials were refused\)") as info:
        await read(scaler(meta, wrong))
    for value in auth.values():
        assert value not in str(info.value) or value == USER


async def test_api_key_in_query_is_not_shown(api_server: APIServer) -> None:
    meta = {
        "url": f"{api_server.url}/apikey-query/status-500",
        "valueLocation": "count",
        "authMode": "apiKey",
        "method": "query",
    }
    with pytest.raises(ScalerError, match="HTTP 500") as info:
        await read(scaler(meta, {"apiKey": Secret(API_KEY)}))
    assert API_KEY not in str(info.value)
    assert api_server.seen[-1].query["api_key"] == API_KEY


def tls_auth(api_server: APIServer) -> dict[str, str | Secret]:
    return {
        "ca": Secret(api_server.ca_pem),
        "cert": Secret(api_server.client_cert_pem),
        "key": Secret(api_server.client_key_pem),
    }


async def test_tls_client_certificate(api_server: APIServer) -> None:
    meta = {"url": f"{api_server.https_url}/open/stats.json", "valueLocation": "count"}
    assert await read(scaler({**meta, "authMode": "tls"}, tls_auth(api_server))) == (2.43, True)
    # several modes at once: tls and an API key
    both = {**tls_auth(api_server), "apiKey": Secret(API_KEY)}
    meta_key = {**meta, "url": f"{api_server.https_url}/apikey-header/stats.json"}
    assert await read(scaler({**meta_key, "authMode": "apiKey,tls"}, both)) == (2.43, True)


async def test_tls_failures(api_server: APIServer) -> None:
    meta = {"url": f"{api_server.https_url}/open/stats.json", "valueLocation": "count"}
    # the CA without a client certificate: the server refuses the handshake
    with pytest.raises(ScalerError):
        await read(scaler(meta, {"ca": Secret(api_server.ca_pem)}))
    # no CA: the trustme CA is not trusted
    auth = tls_auth(api_server)
    del auth["ca"]
    with pytest.raises(ScalerError, match="TLS with metrics API") as info:
        await read(scaler({**meta, "authMode": "tls"}, auth))
    assert info.value.transient is False
    # unsafeSsl skips verification of the server (the client cert is still presented)
    unsafe = {**meta, "authMode": "tls", "unsafeSsl": "true"}
    assert await read(scaler(unsafe, auth)) == (2.43, True)


async def test_shared_session_is_left_open(api_server: APIServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        meta = {"url": f"{api_server.url}/open/stats.json", "valueLocation": "count"}
        s = scaler(meta, session=session)
        assert await read(s) == (2.43, True)
        assert not session.closed


# ---------------------------------------------------------------------------- config


def test_config_errors_are_collected() -> None:
    with pytest.raises(ConfigError) as info:
        create_scaler(
            TriggerContext(
                metadata={
                    "url": "api:3232/stats",
                    "format": "toml",
                    "unsafeSsl": "sometimes",
                    "authMode": "oauth",
                },
                trigger_type="metrics-api",
            )
        )
    paths = info.value.all_paths()
    for name in ("targetValue", "url", "format", "valueLocation", "unsafeSsl", "authModes"):
        assert f"metadata.{name}" in paths, paths


def test_target_value_is_required_and_positive() -> None:
    meta = {"url": "http://a/b", "valueLocation": "x"}
    ctx = TriggerContext(metadata=meta, trigger_type="metrics-api")
    with pytest.raises(ConfigError, match="no targetValue given"):
        create_scaler(ctx)
    for bad in ("0", "-1"):
        ctx = TriggerContext(metadata={**meta, "targetValue": bad}, trigger_type="metrics-api")
        with pytest.raises(ConfigError, match="must be greater than 0"):
            create_scaler(ctx)


@pytest.mark.parametrize(
    ("fmt", "location", "message"),
    [
        ("json", "components.*.tasks", "wildcards, queries and modifiers are not supported"),
        ("json", "items.#(n>1).n", "wildcards, queries and modifiers are not supported"),
        ("json", "a..b", "empty path segment"),
        ("yaml", "a.", "empty path segment"),
        ("prometheus", 'q{a=~"x.*"}', "only label equality"),
        ("prometheus", "q{a=b}", "cannot read the labels"),
    ],
)
def test_value_locations_are_checked_when_parsing(fmt: str, location: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scaler({"url": "http://a/b", "format": fmt, "valueLocation": location})


def test_aggregate_from_service_endpoints_is_refused() -> None:
    meta = {"url": "http://svc.ns:8080/x", "valueLocation": "a"}
    with pytest.raises(ConfigError, match="aggregateFromKubeServiceEndpoints is not supported"):
        scaler({**meta, "aggregateFromKubeServiceEndpoints": "true", "aggregationType": "sum"})


def test_repr_hides_secrets() -> None:
    s = scaler(
        {"url": "https://u:hunter22@a/b", "valueLocation": "a", "authMode": "apiKey"},
        {"apiKey": Secret("k3y-zzzz")},
    )
    shown = repr(s) + repr(s.metadata)
    assert "hunter22" not in shown
    assert "k3y-zzzz" not in shown


# ---------------------------------------------------------------------------- KEDA docs


@pytest.mark.parametrize(
    "name",
    [
        "metrics-api-example.yaml",
        "metrics-api-apikey.yaml",
        "metrics-api-bearer.yaml",
        "metrics-api-basic.yaml",
        "metrics-api-tls.yaml",
    ],
)
async def test_docs_examples(api_server: APIServer, name: str) -> None:
    text = (MANIFESTS / name).read_text()
    secrets: dict[str, dict[str, str | Secret]] = {}
    if name.endswith("-tls.yaml"):
        text = text.replace("http://api:3232", api_server.https_url)
        secrets["keda-metric-api-secret"] = tls_auth(api_server)
    else:
        text = text.replace("http://api:3232", api_server.url)
    manifests = load_manifests(text)
    (ctx,) = manifests.trigger_contexts(manifests.scaled_object(), secrets=secrets)
    s = create_scaler(ctx)
    assert isinstance(s, MetricsAPIScaler)
    assert await read(s) == (12.0, True)
    assert s.metric_specs()[0].target == 7
    request = api_server.seen[-1]
    if "apikey" in name:
        assert request.query["QUERY_KEY"] == "APIKEY"
    elif "bearer" in name:
        assert request.headers["Authorization"] == "Bearer PlaceYourTokenHere"
    elif "basic" in name:
        expected = base64.b64encode(b"username:password").decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
    else:
        assert "Authorization" not in request.headers


def test_docs_trigger_example_parses() -> None:
    doc = json.loads(
        json.dumps(
            {
                "targetValue": "8.8",
                "format": "json",
                "activationTargetValue": "3.8",
                "url": "http://api:3232/api/v1/stats",
                "valueLocation": "components.worker.tasks",
            }
        )
    )
    s = create_scaler(TriggerContext(metadata=doc, trigger_type="metrics-api"))
    (spec,) = s.metric_specs()
    assert (spec.target, spec.activation_target) == (8.8, 3.8)


def test_docs_page_examples_build() -> None:
    """The manifest of docs/scalers/metrics-api.md parses and builds."""
    import re

    page = (Path(__file__).parents[2] / "docs" / "scalers" / "metrics-api.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    manifests = load_manifests(block)
    (ctx,) = manifests.trigger_contexts(manifests.scaled_object())
    s = create_scaler(ctx)
    assert isinstance(s, MetricsAPIScaler)
    assert s.metadata.value_location.extract(b'{"components": {"worker": {"tasks": 12}}}') == 12


# ---------------------------------------------------------------------------- KEDA vectors

_OK = {"url": "http://dummy:1230/api/v1/", "valueLocation": "metric", "targetValue": "42"}

# KEDA's metrics_api_scaler_test.go (testMetricsAPIMetadata, testMetricsAPIAuthMetadata).
KEDA_METADATA: list[tuple[dict[str, str], dict[str, str], bool]] = [
    ({}, {}, True),
    ({**_OK, "valueLocation": "metric.test"}, {}, False),
    ({**_OK, "targetValue": "aa"}, {}, True),
    ({**_OK, "targetValue": "1", "activationTargetValue": "aa"}, {}, True),
    ({"url": "http://dummy:1230/api/v1/", "targetValue": "aa"}, {}, True),
    ({"valueLocation": "metric", "targetValue": "aa"}, {}, True),
    ({"url": "http://dummy:1230/api/v1/", "valueLocation": "metric"}, {}, True),
    ({**_OK, "timeout": "1000"}, {}, False),
    ({**_OK, "timeout": "-1"}, {}, True),
    ({**_OK, "timeout": "a"}, {}, True),
    ({**_OK, "authMode": "tls"}, {"ca": "caaa", "cert": "ceert", "key": "keey"}, False),
    ({**_OK, "authMode": "tls"}, {"cert": "ceert", "key": "keey"}, False),
    ({**_OK, "authMode": "tls"}, {"ca": "caaa", "cert": "ceert"}, True),
    ({**_OK, "authMode": "tls"}, {"ca": "caaa", "key": "keey"}, True),
    ({**_OK, "authMode": "apiKey"}, {"apiKey": "apiikey"}, False),
    ({**_OK, "authMode": "apiKey"}, {"apiKey": "apiikey", "method": "query"}, False),
    (
        {**_OK, "authMode": "apiKey"},
        {"apiKey": "apiikey", "method": "header", "keyParamName": "custom"},
        False,
    ),
    (
        {**_OK, "authMode": "apiKey"},
        {"apiKey": "apiikey", "method": "query", "keyParamName": "custom"},
        False,
    ),
    ({**_OK, "authMode": "apiKey"}, {}, True),
    ({**_OK, "authMode": "basic"}, {"username": "user", "password": "pass"}, False),
    ({**_OK, "authMode": "basic"}, {}, True),
    ({**_OK, "authMode": "bearer"}, {"token": "bearerTokenValue"}, False),
    ({**_OK, "authMode": "bearer"}, {}, True),
    ({**_OK, "unsafeSsl": "true"}, {}, False),
    ({**_OK, "unsafeSsl": "false"}, {}, False),
    ({**_OK, "unsafeSsl": "yes"}, {}, True),
    (
        {**_OK, "authMode": "apiKey,tls"},
        {"apiKey": "apiikey", "ca": "caaa", "cert": "ceert", "key": "keey"},
        False,
    ),
]


@pytest.mark.parametrize(("metadata", "auth", "is_error"), KEDA_METADATA)
def test_keda_metadata_vectors(
    metadata: dict[str, str], auth: dict[str, str], is_error: bool
) -> None:
    ctx = TriggerContext(metadata=metadata, auth=auth, trigger_type="metrics-api")
    if is_error:
        with pytest.raises(ConfigError):
            MetricsAPIMetadata.from_context(ctx)
    else:
        MetricsAPIMetadata.from_context(ctx)


def test_keda_metric_name() -> None:
    ctx = TriggerContext(
        metadata={**_OK, "valueLocation": "metric.test"}, trigger_type="metrics-api", index=1
    )
    assert MetricsAPIMetadata.from_context(ctx).metric_name == "s1-metric-api-metric-test"


def test_api_key_settings_from_the_trigger_authentication() -> None:
    ctx = TriggerContext(
        metadata={**_OK, "authMode": "apiKey"},
        auth={"apiKey": "apiikey", "method": "query", "keyParamName": "custom"},
        trigger_type="metrics-api",
    )
    auth = MetricsAPIMetadata.from_context(ctx).auth
    assert auth.query() == {"custom": "apiikey"}
    assert auth.headers() == {}
