"""The prometheus trigger against real Prometheus servers (Debian's ``prometheus``).

The servers scrape an exporter in this process every second; tests wait for the series
to appear through the query API. Prometheus cannot check a bearer token or a custom
header, so those modes go through a small aiohttp proxy that checks the header and then
forwards the query to the real server. The KEDA documentation examples
(tests/data/manifests/prometheus-*.yaml) load with ``load_manifests`` and run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import ClientSession, web

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.manifests import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.prometheus import PrometheusMetadata, PrometheusScaler
from servers._proc import free_port
from servers.prometheus_srv import BASIC_PASSWORD, BASIC_USER, Exporter, PrometheusServer

pytestmark = pytest.mark.anyio

MANIFESTS = Path(__file__).parents[1] / "data" / "manifests"


def scaler(
    metadata: dict[str, str], auth: dict[str, str | Secret] | None = None, **kwargs: Any
) -> PrometheusScaler:
    ctx = TriggerContext(
        metadata=metadata, auth=auth or {}, trigger_type="prometheus", index=kwargs.pop("index", 0)
    )
    built = create_scaler(ctx)
    assert isinstance(built, PrometheusScaler)
    if kwargs:
        return PrometheusScaler(PrometheusMetadata.from_context(ctx), **kwargs)
    return built


async def read(s: PrometheusScaler) -> tuple[float, bool]:
    async with s:
        report = await s.get_metrics()
    return report.value_of(s.metadata.metric_name), report.is_active


# ---------------------------------------------------------------------------- values


async def test_value_and_threshold(
    prometheus_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    prometheus_exporter.set(unique_metric, ({"queue": "orders"}, "42"))
    prometheus_server.wait_for(unique_metric)
    s = scaler(
        {
            "serverAddress": prometheus_server.url,
            "query": f"sum({unique_metric})",
            "threshold": "10",
        },
        index=2,
    )
    (spec,) = s.metric_specs()
    assert spec.name == "s2-prometheus"
    assert spec.target == 10
    assert await read(s) == (42.0, True)


async def test_activation_threshold(
    prometheus_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    prometheus_exporter.set(unique_metric, ({}, "4.5"))
    prometheus_server.wait_for(unique_metric)
    meta = {"serverAddress": prometheus_server.url, "query": unique_metric, "threshold": "2"}
    assert await read(scaler({**meta, "activationThreshold": "5"})) == (4.5, False)
    assert await read(scaler({**meta, "activationThreshold": "4"})) == (4.5, True)


async def test_empty_result_is_zero_only_with_ignore_null_values(
    prometheus_server: PrometheusServer, unique_metric: str
) -> None:
    meta = {"serverAddress": prometheus_server.url, "query": unique_metric, "threshold": "2"}
    assert await read(scaler(meta)) == (0.0, False)
    assert await read(scaler({**meta, "ignoreNullValues": "true"})) == (0.0, False)
    with pytest.raises(ScalerError, match="returned no series") as info:
        await read(scaler({**meta, "ignoreNullValues": "false"}))
    assert info.value.trigger == "prometheus[0]"


async def test_several_series_are_an_error(
    prometheus_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    prometheus_exporter.set(unique_metric, ({"q": "a"}, "1"), ({"q": "b"}, "2"))
    prometheus_server.wait_for(unique_metric, count=2)
    s = scaler({"serverAddress": prometheus_server.url, "query": unique_metric, "threshold": "1"})
    with pytest.raises(ScalerError, match=r"returned 2 series; it must return one"):
        await read(s)


@pytest.mark.parametrize(("value", "shown"), [("NaN", "NaN"), ("+Inf", "+Inf"), ("-Inf", "-Inf")])
async def test_non_finite_values_are_an_error(
    prometheus_server: PrometheusServer,
    prometheus_exporter: Exporter,
    unique_metric: str,
    value: str,
    shown: str,
) -> None:
    prometheus_exporter.set(unique_metric, ({}, value))
    prometheus_server.wait_for(unique_metric)
    s = scaler({"serverAddress": prometheus_server.url, "query": unique_metric, "threshold": "1"})
    with pytest.raises(ScalerError, match=rf"returned {shown.replace('+', '[+]')}$"):
        await read(s)


async def test_scalar_result(prometheus_server: PrometheusServer) -> None:
    s = scaler(
        {"serverAddress": prometheus_server.url, "query": "scalar(vector(7))", "threshold": "5"}
    )
    assert await read(s) == (7.0, True)


async def test_bad_query_carries_prometheus_message(prometheus_server: PrometheusServer) -> None:
    s = scaler({"serverAddress": prometheus_server.url, "query": "sum(", "threshold": "5"})
    with pytest.raises(ScalerError) as info:
        await read(s)
    message = str(info.value)
    assert "answered HTTP 400: bad_data:" in message
    assert "parse error" in message
    assert info.value.transient is False


async def test_string_result_is_an_error(prometheus_server: PrometheusServer) -> None:
    s = scaler({"serverAddress": prometheus_server.url, "query": '"text"', "threshold": "5"})
    with pytest.raises(ScalerError, match="'string' result"):
        await read(s)


async def test_unreachable_server() -> None:
    s = scaler(
        {"serverAddress": f"http://127.0.0.1:{free_port()}", "query": "up", "threshold": "5"}
    )
    with pytest.raises(ScalerError, match="cannot connect to Prometheus") as info:
        await read(s)
    assert info.value.transient is True


async def test_oversized_answer(
    prometheus_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    prometheus_exporter.set(unique_metric, ({}, "1"))
    prometheus_server.wait_for(unique_metric)
    meta = {"serverAddress": prometheus_server.url, "query": unique_metric, "threshold": "1"}
    with pytest.raises(ScalerError, match="answered more than 64 bytes"):
        await read(scaler(meta, max_body=64))


# ---------------------------------------------------------------------------- TLS, basic


def tls_auth(server: PrometheusServer, **extra: str) -> dict[str, str | Secret]:
    assert server.tls is not None
    auth: dict[str, str | Secret] = {
        "ca": Secret(server.tls.ca_pem),
        "cert": Secret(server.tls.client_cert_pem),
        "key": Secret(server.tls.client_key_pem),
        "username": BASIC_USER,
        "password": Secret(BASIC_PASSWORD),
    }
    auth.update(
        {key: Secret(value) if key == "password" else value for key, value in extra.items()}
    )
    return auth


async def test_tls_and_basic_auth(
    prometheus_secure_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    prometheus_exporter.set(unique_metric, ({}, "3"))
    prometheus_secure_server.wait_for(unique_metric)
    meta = {
        "serverAddress": prometheus_secure_server.url,
        "query": unique_metric,
        "threshold": "1",
        "authModes": "tls,basic",
    }
    assert await read(scaler(meta, tls_auth(prometheus_secure_server))) == (3.0, True)


async def test_wrong_password_is_refused_and_not_shown(
    prometheus_secure_server: PrometheusServer,
) -> None:
    meta = {
        "serverAddress": prometheus_secure_server.url,
        "query": "up",
        "threshold": "1",
        "authModes": "tls,basic",
    }
    with pytest.raises(ScalerError, match=r"HTTP 401 \(the credentials were refused\)") as info:
        await read(scaler(meta, tls_auth(prometheus_secure_server, password="wrong-password-1")))
    assert "wrong-password-1" not in str(info.value)
    assert info.value.transient is False


async def test_missing_client_certificate_fails_tls(
    prometheus_secure_server: PrometheusServer,
) -> None:
    auth = tls_auth(prometheus_secure_server)
    meta = {
        "serverAddress": prometheus_secure_server.url,
        "query": "up",
        "threshold": "1",
        "authModes": "basic",
    }
    # The CA alone is honoured without the tls mode; the server then wants a client cert.
    with pytest.raises(ScalerError) as info:
        await read(scaler(meta, auth))
    assert "Prometheus" in str(info.value)
    assert BASIC_PASSWORD not in str(info.value)


async def test_unknown_ca_fails_unless_unsafe_ssl(
    prometheus_secure_server: PrometheusServer, prometheus_exporter: Exporter, unique_metric: str
) -> None:
    auth = tls_auth(prometheus_secure_server)
    auth["ca"] = Secret(trustme.CA().cert_pem.bytes().decode())
    meta = {
        "serverAddress": prometheus_secure_server.url,
        "query": unique_metric,
        "threshold": "1",
        "authModes": "tls,basic",
    }
    with pytest.raises(ScalerError, match=r"TLS with Prometheus .* failed") as info:
        await read(scaler(meta, auth))
    assert info.value.transient is False
    prometheus_exporter.set(unique_metric, ({}, "8"))
    prometheus_secure_server.wait_for(unique_metric)
    del auth["ca"]
    assert await read(scaler({**meta, "unsafeSsl": "true"}, auth)) == (8.0, True)


# ---------------------------------------------------------------------------- proxy checks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def checking_proxy(
    prometheus_server: PrometheusServer,
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A proxy in front of Prometheus: 401 unless ``Authorization: Bearer t0ken-abc`` or
    ``X-Auth: custom-v4lue``; ``/slow`` paths answer after 2 s. Records each request."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if request.path.startswith("/slow"):
            await asyncio.sleep(2)
        good = (
            request.headers.get("Authorization") == "Bearer t0ken-abc"
            or request.headers.get("X-Auth") == "custom-v4lue"
        )
        if not good:
            return web.Response(status=401, text="unauthorized")
        async with (
            ClientSession() as client,
            client.get(f"{prometheus_server.url}/api/v1/query", params=request.query) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read())

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_bearer_auth_and_request_shape(
    checking_proxy: tuple[str, list[web.Request]],
    prometheus_server: PrometheusServer,
    prometheus_exporter: Exporter,
    unique_metric: str,
) -> None:
    url, seen = checking_proxy
    prometheus_exporter.set(unique_metric, ({}, "12"))
    prometheus_server.wait_for(unique_metric)
    meta = {
        "serverAddress": url,
        "query": unique_metric,
        "threshold": "5",
        "authModes": "bearer",
        "namespace": "team-a",
        "queryParameters": "dedup=true, partial_response=false",
        "customHeaders": "X-Client-Id=cid,X-Tenant-Id=tid",
    }
    assert await read(scaler(meta, {"bearerToken": Secret("t0ken-abc")})) == (12.0, True)
    request = seen[-1]
    assert request.path == "/api/v1/query"
    assert request.query["query"] == unique_metric
    assert request.query["namespace"] == "team-a"
    assert request.query["dedup"] == "true"
    assert request.query["partial_response"] == "false"
    assert "time" in request.query
    assert request.headers["X-Client-Id"] == "cid"
    assert request.headers["X-Tenant-Id"] == "tid"
    # the "token" alias works too; a wrong token is refused and not shown
    assert await read(scaler(meta, {"token": Secret("t0ken-abc")})) == (12.0, True)
    with pytest.raises(ScalerError, match="HTTP 401") as info:
        await read(scaler(meta, {"bearerToken": Secret("wrong-t0ken")}))
    assert "wrong-t0ken" not in str(info.value)


async def test_custom_header_auth(
    checking_proxy: tuple[str, list[web.Request]], prometheus_server: PrometheusServer
) -> None:
    url, _ = checking_proxy
    meta = {"serverAddress": url, "query": "vector(3)", "threshold": "1", "authModes": "custom"}
    auth: dict[str, str | Secret] = {
        "customAuthHeader": "X-Auth",
        "customAuthValue": Secret("custom-v4lue"),
    }
    assert await read(scaler(meta, auth)) == (3.0, True)


async def test_timeout(checking_proxy: tuple[str, list[web.Request]]) -> None:
    url, _ = checking_proxy
    meta = {"serverAddress": f"{url}/slow", "query": "up", "threshold": "1", "timeout": "300ms"}
    with pytest.raises(ScalerTimeout, match=r"did not answer within 0\.3s"):
        await read(scaler(meta))
    # the constructor's default applies when the trigger sets none
    meta.pop("timeout")
    with pytest.raises(ScalerTimeout, match=r"within 0\.2s"):
        await read(scaler(meta, timeout=0.2))


# ---------------------------------------------------------------------------- config


def test_config_errors_are_collected() -> None:
    with pytest.raises(ConfigError) as info:
        scaler(
            {
                "serverAddress": "prometheus:9090",
                "threshold": "x",
                "ignoreNullValues": "maybe",
                "customHeaders": "a=b=c",
                "authModes": "bearer,basic",
            }
        )
    paths = info.value.all_paths()
    for name in ("serverAddress", "query", "threshold", "ignoreNullValues", "customHeaders"):
        assert f"metadata.{name}" in paths
    assert "must contain only one of [bearer basic oauth]" in str(info.value)


def test_auth_requirements_and_unsupported_modes() -> None:
    base = {"serverAddress": "http://p:9090", "query": "up", "threshold": "1"}
    with pytest.raises(ConfigError, match="bearerToken is required"):
        scaler({**base, "authModes": "bearer"})
    with pytest.raises(ConfigError, match="username is required"):
        scaler({**base, "authModes": "basic"})
    with pytest.raises(ConfigError, match="cert and key are required"):
        scaler({**base, "authModes": "tls"}, {"cert": Secret("c")})
    with pytest.raises(ConfigError, match='authModes "apiKey" is not supported by the prometheus'):
        scaler({**base, "authModes": "apiKey"}, {"apiKey": Secret("k")})
    with pytest.raises(ConfigError, match="invalid TLS material") as info:
        scaler({**base, "authModes": "tls"}, {"cert": Secret("not-pem"), "key": Secret("nope-key")})
    assert "not-pem" not in str(info.value)


def test_repr_hides_secrets() -> None:
    s = scaler(
        {
            "serverAddress": "http://user:hunter22@p:9090",
            "query": "up",
            "threshold": "1",
            "authModes": "bearer",
            "customHeaders": "X-Key=header-secret",
        },
        {"bearerToken": Secret("t0ken-zzz")},
    )
    shown = repr(s) + repr(s.metadata)
    for secret in ("hunter22", "t0ken-zzz", "header-secret"):
        assert secret not in shown


# ---------------------------------------------------------------------------- KEDA docs


def docs_contexts(name: str, host: str, **secrets: str) -> tuple[TriggerContext, ...]:
    text = (MANIFESTS / name).read_text().replace("PROMETHEUS_HOST", host)
    manifests = load_manifests(text)
    overrides = {"keda-prom-secret": {k: Secret(v) for k, v in secrets.items()}}
    return manifests.trigger_contexts(manifests.scaled_object(), secrets=overrides)


@pytest.fixture
def http_requests(prometheus_exporter: Exporter) -> float:
    """``http_requests_total{deployment="my-deployment"}`` growing by 150 per second."""
    prometheus_exporter.set_counter("http_requests_total", {"deployment": "my-deployment"}, 150)
    return 150.0


async def until_rate(s: PrometheusScaler) -> float:
    # rate() over the docs' 2m window is extrapolated from the few samples scraped so
    # far, so it starts well below the true 150/s and only converges after 2 minutes.
    for _ in range(100):
        value = await s.query()
        if value > 0:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("rate() never rose above 0")


async def test_docs_example(prometheus_server: PrometheusServer, http_requests: float) -> None:
    (ctx,) = docs_contexts("prometheus-basic.yaml", prometheus_server.url.removeprefix("http://"))
    s = create_scaler(ctx)
    assert isinstance(s, PrometheusScaler)
    async with s:
        value = await until_rate(s)
        report = await s.get_metrics()
    assert 0 < value < 1.2 * http_requests
    assert report.is_active
    assert s.metric_specs()[0].target == 100


async def test_docs_example_tls_and_basic(
    prometheus_secure_server: PrometheusServer, http_requests: float
) -> None:
    tls = prometheus_secure_server.tls
    assert tls is not None
    (ctx,) = docs_contexts(
        "prometheus-tls-basic.yaml",
        prometheus_secure_server.url.removeprefix("https://"),
        cert=tls.client_cert_pem,
        key=tls.client_key_pem,
        ca=tls.ca_pem,
        username=BASIC_USER,
        password=BASIC_PASSWORD,
    )
    s = create_scaler(ctx)
    assert isinstance(s, PrometheusScaler)
    async with s:
        value = await until_rate(s)
    assert 0 < value < 1.2 * http_requests


async def test_docs_example_bearer(
    checking_proxy: tuple[str, list[web.Request]], http_requests: float
) -> None:
    url, _ = checking_proxy
    (ctx,) = docs_contexts(
        "prometheus-bearer.yaml",
        url.removeprefix("http://"),
        bearerToken="t0ken-abc",
        ca=trustme.CA().cert_pem.bytes().decode(),
    )
    s = create_scaler(ctx)
    assert isinstance(s, PrometheusScaler)
    async with s:
        value = await until_rate(s)
    assert 0 < value < 1.2 * http_requests


def test_docs_page_examples_build() -> None:
    """The manifests and trigger snippets of docs/scalers/prometheus.md parse and build."""
    import re

    import yaml

    page = (Path(__file__).parents[2] / "docs" / "scalers" / "prometheus.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    built = 0
    for block in blocks:
        doc = yaml.safe_load(block)
        if doc.get("kind") == "ScaledObject":
            manifests = load_manifests(block)
            for ctx in manifests.trigger_contexts(manifests.scaled_object()):
                assert isinstance(create_scaler(ctx), PrometheusScaler)
                built += 1
        else:
            load_manifests(block)
    assert built == 1


# ---------------------------------------------------------------------------- KEDA vectors

_OK = {"serverAddress": "http://localhost:9090", "threshold": "100", "query": "up"}

# KEDA's prometheus_scaler_test.go (testPromMetadata, testPrometheusAuthMetadata): the
# metadata and auth parameters it accepts and refuses when parsing.
KEDA_METADATA: list[tuple[dict[str, str], dict[str, str], bool]] = [
    ({}, {}, True),
    ({**_OK, "metricName": "http_requests_total"}, {}, False),
    ({**_OK, "namespace": "foo"}, {}, False),
    ({**_OK, "ignoreNullValues": "false"}, {}, False),
    ({**_OK, "activationThreshold": "50"}, {}, False),
    ({**_OK, "serverAddress": ""}, {}, True),
    ({"serverAddress": "http://localhost:9090", "query": "up"}, {}, True),
    ({**_OK, "threshold": "one"}, {}, True),
    ({**_OK, "activationThreshold": "one"}, {}, True),
    ({**_OK, "query": ""}, {}, True),
    ({**_OK, "ignoreNullValues": "xxxx"}, {}, True),
    ({**_OK, "serverAddress": "https://localhost:9090", "unsafeSsl": "true"}, {}, False),
    ({**_OK, "customHeaders": "key1=value1,key2=value2"}, {}, False),
    ({**_OK, "customHeaders": "key1=value1,key2"}, {}, True),
    ({**_OK, "queryParameters": "key1=value1,key2=value2"}, {}, False),
    ({**_OK, "queryParameters": "key1=value1,key2"}, {}, True),
    ({**_OK, "timeout": "1000"}, {}, False),
    ({**_OK, "timeout": "-1"}, {}, True),
    ({**_OK, "timeout": "a"}, {}, True),
    ({**_OK, "authModes": "tls"}, {"ca": "caaa", "cert": "ceert", "key": "keey"}, False),
    ({**_OK, "authModes": "tls"}, {"cert": "ceert", "key": "keey"}, False),
    ({**_OK, "authModes": "tls"}, {"ca": "caaa", "cert": "ceert"}, True),
    ({**_OK, "authModes": "tls"}, {"ca": "caaa", "key": "keey"}, True),
    ({**_OK, "authModes": "bearer"}, {"bearerToken": "tooooken"}, False),
    ({**_OK, "authModes": "bearer"}, {}, True),
    ({**_OK, "authModes": "basic"}, {"username": "user", "password": "pass"}, False),
    ({**_OK, "authModes": "basic"}, {}, True),
    (
        {**_OK, "authModes": "tls, basic"},
        {"ca": "caaa", "cert": "ceert", "key": "keey", "username": "user", "password": "pass"},
        False,
    ),
    ({**_OK, "authModes": "tls,basic"}, {"username": "user", "password": "pass"}, True),
    (
        {**_OK, "authModes": "custom"},
        {"customAuthHeader": "header", "customAuthValue": "value"},
        False,
    ),
    ({**_OK, "authModes": "custom"}, {"customAuthHeader": ""}, True),
    ({**_OK, "authModes": "custom"}, {"customAuthValue": ""}, True),
    (
        {**_OK, "authModes": "custom"},
        {"customAuthHeader": "header\n", "customAuthValue": "value\n"},
        False,
    ),
]


@pytest.mark.parametrize(("metadata", "auth", "is_error"), KEDA_METADATA)
def test_keda_metadata_vectors(
    metadata: dict[str, str], auth: dict[str, str], is_error: bool
) -> None:
    ctx = TriggerContext(metadata=metadata, auth=auth, trigger_type="prometheus")
    if is_error:
        with pytest.raises(ConfigError):
            PrometheusMetadata.from_context(ctx)
    else:
        PrometheusMetadata.from_context(ctx)


@pytest.mark.parametrize("index", [0, 1])
def test_keda_metric_names(index: int) -> None:
    ctx = TriggerContext(metadata=_OK, trigger_type="prometheus", index=index)
    assert PrometheusMetadata.from_context(ctx).metric_name == f"s{index}-prometheus"
