"""Request queue time (X-Request-Start): parsing, ASGI under uvicorn, WSGI under wsgiref,
and the http trigger's ``queueTime`` metric in-process and over the metrics endpoint."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import aiohttp
import pytest

from eventscale.errors import ScalerError
from eventscale.http import (
    HTTPScaler,
    InFlightMiddleware,
    RequestStats,
    StatsRegistry,
    WSGIInFlightMiddleware,
    parse_request_start,
)
from eventscale.scalers.params import TriggerContext
from servers._proc import unique_name
from servers.http_srv import Gates, UvicornServer, make_app

pytestmark = pytest.mark.anyio

NOW = 1_750_000_000.0  # the app's wall clock in these tests (Unix seconds)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1749999999.750", 1749999999.75),  # nginx: t=${msec}, seconds with a fraction
        ("1749999999750", 1749999999.75),  # Heroku: milliseconds
        ("t=1749999999750000", 1749999999.75),  # Apache %t: microseconds
        (b"t=1749999999", 1749999999.0),
        (" t=1749999999.5 ", 1749999999.5),
    ],
)
def test_units_are_told_from_the_size(header: str | bytes, expected: float) -> None:
    assert parse_request_start(header) == pytest.approx(expected)


@pytest.mark.parametrize("header", [None, "", "t=", "soon", "t=nan", "t=-5", "1" * 100, "t=inf"])
def test_unreadable_headers_are_ignored(header: str | None) -> None:
    assert parse_request_start(header) is None


def scaler_for(name: str, registry: StatsRegistry) -> HTTPScaler:
    ctx = TriggerContext(
        metadata={"name": name, "metric": "queueTime", "targetValue": "0.2"}, trigger_type="http"
    )
    scaler = HTTPScaler.from_context(ctx)
    scaler.registry = registry
    return scaler


async def test_asgi_middleware_under_uvicorn() -> None:
    name = unique_name("qt")
    registry = StatsRegistry()
    middleware = InFlightMiddleware(
        make_app(Gates()),
        name=name,
        registry=registry,
        queue_time_header="X-Request-Start",
        wall_clock=lambda: NOW,
    )
    server = UvicornServer(middleware)
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for header in ("t=1749999999.700", "1749999999900", None, "garbage"):
                headers = {"X-Request-Start": header} if header else {}
                async with session.get(f"{server.url}/hello", headers=headers) as resp:
                    assert resp.status == 200
            async with session.get(f"{server.url}/_eventscale/metrics") as resp:
                document = await resp.json()
    finally:
        server.stop()
    # two requests carried a readable stamp: 0.3 s and 0.1 s
    assert document["queueTimeSeconds"] == pytest.approx(0.2)
    scaler = scaler_for(name, registry)
    report = await scaler.get_metrics()
    assert report.values[0].value == pytest.approx(0.2)


async def test_queue_time_off_by_default_records_nothing() -> None:
    stats = RequestStats(unique_name("qt"))
    middleware = InFlightMiddleware(make_app(Gates()), stats=stats, registry=StatsRegistry())
    server = UvicornServer(middleware)
    server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/hello", headers={"X-Request-Start": "t=1"}) as resp,
        ):
            assert resp.status == 200
    finally:
        server.stop()
    assert stats.queue_time(60) == 0.0
    assert stats.total == 1


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_server() -> Iterator[tuple[str, WSGIInFlightMiddleware]]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    middleware = WSGIInFlightMiddleware(
        app,
        name=unique_name("wsgi"),
        registry=StatsRegistry(),
        queue_time_header="X-Request-Start",
        wall_clock=lambda: NOW,
    )
    server = make_server("127.0.0.1", 0, middleware, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", middleware
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_wsgi_middleware_under_wsgiref(wsgi_server: tuple[str, WSGIInFlightMiddleware]) -> None:
    url, middleware = wsgi_server
    for header in ("t=1749999998.000", "t=1749999999000000"):
        request = urllib.request.Request(f"{url}/x", headers={"X-Request-Start": header})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.read() == b"hello"
    with urllib.request.urlopen(f"{url}/_eventscale/metrics?window=60", timeout=10) as resp:
        document = json.loads(resp.read())
    assert document["queueTimeSeconds"] == pytest.approx(1.5)  # (2 s + 1 s) / 2
    assert document["total"] == 2
    assert middleware.stats.in_flight == 0  # ended when wsgiref closed the response


async def test_http_trigger_reads_queue_time_from_the_endpoint(
    wsgi_server: tuple[str, WSGIInFlightMiddleware],
) -> None:
    url, _ = wsgi_server
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/x", headers={"X-Request-Start": "t=1749999999.5"}) as resp,
    ):
        assert resp.status == 200
    ctx = TriggerContext(
        metadata={"url": f"{url}/_eventscale/metrics", "metric": "queueTime", "targetValue": "1"},
        trigger_type="http",
    )
    async with HTTPScaler.from_context(ctx) as scaler:
        report = await scaler.get_metrics()
    assert report.values[0].value == pytest.approx(0.5)


async def test_an_endpoint_without_queue_time_is_an_error() -> None:
    async def older_endpoint(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"inFlight": 1, "requestRate": 0.5}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    server = UvicornServer(older_endpoint)
    server.start()
    try:
        ctx = TriggerContext(
            metadata={"url": f"{server.url}/metrics", "metric": "queueTime"}, trigger_type="http"
        )
        async with HTTPScaler.from_context(ctx) as scaler:
            with pytest.raises(ScalerError, match="queueTimeSeconds"):
                await scaler.get_metrics()
    finally:
        server.stop()
