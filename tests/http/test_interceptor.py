"""The interceptor: routing, pending counts, holding at zero, and scale from zero end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from eventscale.errors import ConfigError
from eventscale.http import Interceptor, Route, load_http_scaled_objects, registry
from eventscale.runtime.controller import Controller
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.targets.memory import MemoryTarget
from servers._proc import free_port, unique_name
from servers.http_srv import Upstream, poll_until, upstream

pytestmark = pytest.mark.anyio


async def _get(
    session: aiohttp.ClientSession, port: int, path: str, host: str, **kwargs: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    method = kwargs.pop("method", "GET")
    async with session.request(
        method, f"http://127.0.0.1:{port}{path}", headers={"Host": host}, **kwargs
    ) as resp:
        text = await resp.text()
        body: Any = await resp.json() if resp.content_type == "application/json" else text
        return resp.status, body, resp.headers


def _prometheus(text: str) -> dict[tuple[str, str], float]:
    """Parse the exposition text with prometheus_client's own parser."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, sample.labels["route"])] = sample.value
    return out


async def test_routes_by_host_path_prefix_and_header() -> None:
    async with (
        upstream("a") as a,
        upstream("b") as b,
        upstream("api") as api,
        upstream("wild") as wild,
        upstream("canary") as canary,
    ):
        routes = [
            Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url),
            Route(name=unique_name("b"), hosts=["B.Test"], upstream=b.url),
            Route(
                name=unique_name("api"), hosts=["a.test"], path_prefixes=["/api"], upstream=api.url
            ),
            Route(name=unique_name("wild"), hosts=["*.wild.test"], upstream=wild.url),
            Route(
                name=unique_name("canary"),
                hosts=["a.test"],
                path_prefixes=["/api"],
                headers={"x-canary": "1"},
                upstream=canary.url,
            ),
        ]
        async with Interceptor(routes) as icpt, aiohttp.ClientSession() as s:
            assert icpt.port is not None
            status, body, headers = await _get(s, icpt.port, "/x?q=1", "a.test:8080")
            assert (status, body["upstream"], body["path"]) == (200, "a", "/x?q=1")
            assert headers["X-Upstream"] == "a"
            assert body["host"] == "a.test:8080"  # the Host header is passed through
            assert body["forwardedFor"] == "127.0.0.1"
            assert body["forwardedHost"] == "a.test:8080"
            assert (await _get(s, icpt.port, "/", "b.test"))[1]["upstream"] == "b"
            assert (await _get(s, icpt.port, "/api/v1", "a.test"))[1]["upstream"] == "api"
            async with s.get(
                f"http://127.0.0.1:{icpt.port}/api/v1", headers={"Host": "a.test", "X-Canary": "1"}
            ) as resp:
                assert (await resp.json())["upstream"] == "canary"
            assert (await _get(s, icpt.port, "/", "x.y.wild.test"))[1]["upstream"] == "wild"
            status, body, _ = await _get(s, icpt.port, "/", "unknown.test")
            assert status == 404
            status, body, _ = await _get(
                s, icpt.port, "/echo", "b.test", method="POST", data=b"payload" * 1000
            )
            assert (status, body["method"], body["body"]) == (200, "POST", "payload" * 1000)
            # A large streamed response goes through intact.
            async with s.get(
                f"http://127.0.0.1:{icpt.port}/big?n=3000000", headers={"Host": "a.test"}
            ) as resp:
                data = await resp.read()
            assert len(data) == 3_000_000
            assert icpt.metrics(routes[0].name).total == 2  # /x and /big; /api went elsewhere
            assert icpt.metrics(routes[0].name).pending == 0


async def test_pending_requests_are_counted_per_host() -> None:
    async with upstream("a") as a, upstream("b") as b:
        a.gate.clear()
        b.gate.clear()
        ra = Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url)
        rb = Route(name=unique_name("b"), hosts=["b.test"], upstream=b.url)
        icpt = Interceptor([ra, rb])
        await icpt.start(admin_port=0)
        try:
            assert registry.get(ra.name) is icpt.stats(ra.name)
            async with aiohttp.ClientSession() as s:
                port = icpt.port
                assert port is not None
                tasks = [asyncio.create_task(_get(s, port, "/slow", "a.test")) for _ in range(3)]
                tasks.append(asyncio.create_task(_get(s, port, "/slow", "b.test")))
                await poll_until(
                    lambda: (
                        icpt.metrics(ra.name).pending == 3 and icpt.metrics(rb.name).pending == 1
                    ),
                    what="3 pending for a.test and 1 for b.test",
                )
                async with s.get(
                    f"http://127.0.0.1:{icpt.admin_port}/_eventscale/metrics",
                    params={"name": ra.name},
                ) as resp:
                    doc = await resp.json()
                assert (doc["inFlight"], doc["pending"], doc["held"]) == (3, 3, 0)
                async with s.get(f"http://127.0.0.1:{icpt.admin_port}/_eventscale/metrics") as resp:
                    routes = {r["name"]: r for r in (await resp.json())["routes"]}
                assert routes[rb.name]["pending"] == 1
                async with s.get(f"http://127.0.0.1:{icpt.admin_port}/metrics") as resp:
                    assert resp.status == 200
                    samples = _prometheus(await resp.text())
                assert samples[("eventscale_http_pending", ra.name)] == 3
                assert samples[("eventscale_http_pending", rb.name)] == 1
                assert samples[("eventscale_http_requests_total", ra.name)] == 3
                a.gate.set()
                b.gate.set()
                results = await asyncio.gather(*tasks)
                assert [r[0] for r in results] == [200] * 4
            assert icpt.metrics(ra.name).pending == 0
        finally:
            await icpt.aclose()
        assert registry.get(ra.name) is None


async def test_bounded_hold_queue_answers_503_with_retry_after() -> None:
    port = free_port()
    up = Upstream("late", port)
    wakes: list[str] = []
    route = Route(
        name=unique_name("r"),
        hosts=["app.test"],
        upstream=up.url,
        max_held=3,
        retry_after=7,
        hold_timeout=30,
    )
    async with Interceptor([route], wake=wakes.append) as icpt, aiohttp.ClientSession() as s:
        assert icpt.port is not None
        held = [asyncio.create_task(_get(s, icpt.port, "/", "app.test")) for _ in range(3)]
        await poll_until(lambda: icpt.metrics(route.name).held == 3, what="3 held")
        assert set(wakes) == {route.name}
        # The queue is full: more requests are refused at once, not queued.
        for _ in range(4):
            status, _, headers = await _get(s, icpt.port, "/", "app.test")
            assert status == 503
            assert headers["Retry-After"] == "7"
        metrics = icpt.metrics(route.name)
        assert (metrics.held, metrics.rejected, metrics.ready) == (3, 4, False)
        await up.start()
        try:
            results = await asyncio.gather(*held)
            assert [r[0] for r in results] == [200, 200, 200]
            metrics = icpt.metrics(route.name)
            assert metrics.ready
            assert metrics.held == 0
            assert len(metrics.cold_starts) == 1
            samples = _prometheus(icpt.prometheus_text())
            assert samples[("eventscale_http_rejected_total", route.name)] == 4
            assert samples[("eventscale_http_cold_start_seconds_count", route.name)] == 1
            assert samples[("eventscale_http_cold_start_seconds_sum", route.name)] == pytest.approx(
                metrics.cold_starts[0], abs=1e-3
            )
        finally:
            await up.stop()


async def test_hold_timeout_answers_504_or_goes_to_the_failover() -> None:
    async with upstream("fallback") as fallback:
        down = f"http://127.0.0.1:{free_port()}"
        plain = Route(name=unique_name("r"), hosts=["plain.test"], upstream=down, hold_timeout=0.3)
        with_failover = Route(
            name=unique_name("f"),
            hosts=["fo.test"],
            upstream=down,
            hold_timeout=0.3,
            failover=fallback.url,
        )
        async with Interceptor([plain, with_failover]) as icpt, aiohttp.ClientSession() as s:
            assert icpt.port is not None
            status, _, headers = await _get(s, icpt.port, "/", "plain.test")
            assert status == 504
            assert "Retry-After" in headers
            assert icpt.metrics(plain.name).timed_out == 1
            status, body, _ = await _get(s, icpt.port, "/", "fo.test")
            assert (status, body["upstream"]) == (200, "fallback")
            assert icpt.metrics(with_failover.name).failovers == 1
            # The failover's answer is not the upstream's: no cold-start latency from it.
            assert icpt.metrics(with_failover.name).cold_starts == ()
            # Nobody is held any more: the abandoned cold start records no latency.
            await poll_until(lambda: icpt.metrics(plain.name).held == 0, what="nothing held")
            assert icpt.metrics(plain.name).cold_starts == ()


async def test_an_upstream_that_goes_away_is_held_again() -> None:
    port = free_port()
    up = Upstream("app", port)
    await up.start()
    route = Route(name=unique_name("r"), hosts=["app.test"], upstream=up.url, hold_timeout=10)
    wakes: list[str] = []
    async with Interceptor([route], wake=wakes.append) as icpt, aiohttp.ClientSession() as s:
        assert icpt.port is not None
        assert (await _get(s, icpt.port, "/", "app.test"))[0] == 200
        await up.stop()  # scaled to zero
        pending = asyncio.create_task(_get(s, icpt.port, "/", "app.test"))
        await poll_until(lambda: icpt.metrics(route.name).held == 1, what="held after scale-in")
        assert set(wakes) == {route.name}
        restarted = Upstream("app", port)
        await restarted.start()
        try:
            assert (await pending)[0] == 200
        finally:
            await restarted.stop()


async def test_first_request_after_a_quiet_spell_wakes_the_controller() -> None:
    async with upstream("app") as up:
        route = Route(name=unique_name("r"), hosts=["app.test"], upstream=up.url)
        wakes: list[str] = []
        async with (
            Interceptor([route], wake=wakes.append, wake_after_idle=60) as icpt,
            aiohttp.ClientSession() as s,
        ):
            assert icpt.port is not None
            assert (await _get(s, icpt.port, "/", "app.test"))[0] == 200
            assert wakes == [route.name]  # the route had never seen a request
            assert (await _get(s, icpt.port, "/", "app.test"))[0] == 200
            assert wakes == [route.name]  # busy route: no further wake-up


class StartingTarget(MemoryTarget):
    """A memory target whose workload (a real upstream server) starts ``delay`` s after 0 -> N."""

    def __init__(self, upstream: Upstream, delay: float) -> None:
        super().__init__(0)
        self.upstream = upstream
        self.delay = delay
        self.starter: asyncio.Task[None] | None = None

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        await super().set_replicas(replicas, reason=reason)
        if replicas >= 1 and self.starter is None:
            self.starter = asyncio.create_task(self._start())

    async def _start(self) -> None:
        await asyncio.sleep(self.delay)
        await self.upstream.start()


MANIFEST = """
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: {name}
  namespace: shop
spec:
  hosts: [shop.test]
  scaleTargetRef:
    name: shop
    kind: Deployment
    apiVersion: apps/v1
    service: shop-svc
    port: 8080
  replicas:
    min: 0
    max: 5
  scalingMetric:
    concurrency:
      targetValue: 10
  scaledownPeriod: 60
  timeouts:
    conditionWait: 15s
"""


@pytest.fixture
async def started_upstream() -> AsyncIterator[Upstream]:
    up = Upstream("shop")
    try:
        yield up
    finally:
        await up.stop()


async def test_scale_from_zero_end_to_end(started_upstream: Upstream) -> None:
    """Constant-rate load at a target at zero whose app takes 2 s to start: nothing fails."""
    (http_so,) = load_http_scaled_objects(MANIFEST.format(name=unique_name("shop")))
    route = http_so.to_route({"shop-svc": started_upstream.url})
    assert route.hold_timeout == 15
    target = StartingTarget(started_upstream, delay=2.0)
    obj = ScaledObject(http_so.to_scaled_object_spec(polling_interval=30), target=target)
    async with Controller() as ctl:
        icpt = Interceptor([route], wake=ctl.wake)
        await icpt.start()
        try:
            ctl.add(obj)
            # The first reconcile sees no traffic: the target stays at zero.
            await poll_until(lambda: ctl.status(obj.key).polls >= 1, what="first reconcile")
            assert target.requested == 0
            port = icpt.port
            assert port is not None
            statuses: list[int] = []
            async with aiohttp.ClientSession() as s:

                async def one(i: int) -> None:
                    status, body, _ = await _get(s, port, f"/item/{i}", "shop.test")
                    statuses.append(status)
                    assert body["upstream"] == "shop"

                started = time.monotonic()
                tasks = []
                for i in range(60):  # 20 requests/s for 3 s
                    delay = started + i / 20 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one(i)))
                await asyncio.gather(*tasks)
            assert statuses == [200] * 60
            # polling_interval is 30 s: only the interceptor's wake can explain the scale-up.
            assert target.requested_counts()[:2] == [0, 1]
            metrics = icpt.metrics(route.name)
            assert len(metrics.cold_starts) == 1
            assert metrics.cold_starts[0] >= 2.0  # the app's start delay is inside it
            assert metrics.rejected == 0
            assert metrics.timed_out == 0
            assert started_upstream.requests == 60
        finally:
            await icpt.aclose()


def test_route_validation() -> None:
    with pytest.raises(ConfigError) as info:
        Route(
            name="",
            hosts=[],
            upstream="http://x",
            path_prefixes=["api"],
            hold_timeout=0,
            max_held=-1,
        )
    assert sorted(info.value.all_paths()) == [
        "hold_timeout",
        "hosts",
        "max_held",
        "name",
        "path_prefixes",
    ]
    with pytest.raises(ConfigError, match="http://"):
        Route(name="r", hosts=["a"], upstream="tcp://x:1")
    with pytest.raises(ConfigError, match="duplicate route"):
        Interceptor(
            [
                Route(name="r", hosts=["a"], upstream="http://x"),
                Route(name="r", hosts=["b"], upstream="http://y"),
            ]
        )


def test_match_prefers_exact_hosts_and_longest_prefixes() -> None:
    routes = [
        Route(name="any", hosts=["*"], upstream="http://any"),
        Route(name="wild", hosts=["*.example.com"], upstream="http://wild"),
        Route(name="deep", hosts=["*.api.example.com"], upstream="http://deep"),
        Route(name="exact", hosts=["www.example.com"], upstream="http://exact"),
        Route(name="docs", hosts=["www.example.com"], path_prefixes=["/docs"], upstream="http://d"),
    ]
    icpt = Interceptor(routes, registry=type(registry)())

    def name(host: str, path: str = "/") -> str | None:
        route = icpt.match(host, path)
        return route.name if route else None

    assert name("www.example.com") == "exact"
    assert name("WWW.example.com:443", "/docs/x") == "docs"
    assert name("shop.example.com") == "wild"
    assert name("v1.api.example.com") == "deep"
    assert name("example.org") == "any"
    assert name("[::1]:8080") == "any"
