"""The http trigger: metadata, in-process and endpoint reads, and activity over a window."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.http import HTTPMetric, HTTPScaler, HTTPTriggerConfig, RequestStats, StatsRegistry
from eventscale.metrics import MetricType
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.targets.memory import MemoryTarget
from eventscale.testing import ManualClock
from servers._proc import free_port, unique_name
from servers.http_srv import Gates, poll_until, served_app

pytestmark = pytest.mark.anyio


def ctx(**metadata: str) -> TriggerContext:
    return TriggerContext(metadata=metadata, trigger_type="http", index=2, path="spec.triggers[2]")


# --------------------------------------------------------------------------- metadata


def test_metadata_defaults_and_registry() -> None:
    scaler = create_scaler(ctx(name="web"))
    assert isinstance(scaler, HTTPScaler)
    cfg = scaler.config
    assert (cfg.name, cfg.url, cfg.metric, cfg.target) == ("web", None, HTTPMetric.CONCURRENCY, 100)
    assert cfg.activity_window == 60
    assert cfg.window == 60
    assert cfg.timeout == 3
    spec = scaler.metric_specs()[0]
    assert spec.name == "s2-http-web"
    assert spec.metric_type is MetricType.AVERAGE_VALUE
    assert spec.target == 100


def test_metadata_full() -> None:
    cfg = HTTPTriggerConfig.from_metadata(
        ctx(
            url="http://app:8000/_eventscale/metrics",
            metric="requestRate",
            targetPendingRequests="7",
            activationTargetValue="2",
            activityWindow="2m",
            window="30s",
            timeout="500ms",
        )
    )
    assert cfg.url == "http://app:8000/_eventscale/metrics"
    assert cfg.metric is HTTPMetric.REQUEST_RATE
    assert (cfg.target, cfg.activation_target) == (7, 2)
    assert (cfg.activity_window, cfg.window, cfg.timeout) == (120, 30, 0.5)


@pytest.mark.parametrize(
    ("metadata", "paths"),
    [
        pytest.param({}, ["spec.triggers[2].metadata.name"], id="neither-name-nor-url"),
        pytest.param(
            {"name": "a", "url": "http://x/"}, ["spec.triggers[2].metadata.name"], id="both"
        ),
        pytest.param({"url": "ftp://x/"}, ["spec.triggers[2].metadata.url"], id="bad-url"),
        pytest.param(
            {"name": "a", "targetValue": "0"},
            ["spec.triggers[2].metadata.targetValue"],
            id="zero-target",
        ),
        pytest.param(
            {"name": "a", "metric": "latency"}, ["spec.triggers[2].metadata.metric"], id="metric"
        ),
        pytest.param(
            {"name": "a", "activityWindow": "soon", "window": "0s"},
            ["spec.triggers[2].metadata.activityWindow", "spec.triggers[2].metadata.window"],
            id="durations",
        ),
        pytest.param(
            {"name": "a", "activationTargetValue": "-1"},
            ["spec.triggers[2].metadata.activationTargetValue"],
            id="negative-activation",
        ),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, str], paths: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        create_scaler(ctx(**metadata))
    assert sorted(info.value.all_paths()) == sorted(paths)


# --------------------------------------------------------------------------- window semantics


def test_stats_window_arithmetic_on_a_manual_clock() -> None:
    clock = ManualClock(1000.0)
    stats = RequestStats("w", clock=clock)
    assert stats.last_activity_age() is None
    assert not stats.active_within(60)
    token = stats.begin()
    clock.advance(5)
    assert stats.oldest_age() == 5
    assert stats.active_within(0.001)  # in flight
    stats.end(token)
    stats.end(token)  # ignored
    assert stats.in_flight == 0
    assert stats.oldest_age() == 0
    clock.advance(30)
    assert stats.last_activity_age() == 30
    assert stats.active_within(60)
    assert not stats.active_within(29)
    for _ in range(9):
        stats.end(stats.begin())
        clock.advance(1)
    assert stats.arrivals_within(10) == 9
    assert stats.rate(10) == pytest.approx(0.9)
    assert stats.total == 10


async def test_steady_light_traffic_keeps_the_trigger_active() -> None:
    # One 20 ms request a minute never shows up as "in flight" at a poll, but each one
    # lands inside the activity window, so every poll is active (http-add-on#1352).
    clock = ManualClock(0.0)
    reg = StatsRegistry()
    stats = reg.register(RequestStats("light", clock=clock))
    windowed = HTTPScaler(HTTPTriggerConfig(name="light", activity_window=120), registry=reg)
    sampled = HTTPScaler(HTTPTriggerConfig(name="light", activity_window=0), registry=reg)
    windowed_polls: list[bool] = []
    sampled_polls: list[bool] = []
    for second in range(0, 600, 10):  # ten minutes, a poll every 10 s
        clock.set(float(second))
        if second % 60 == 0:
            token = stats.begin()
            clock.advance(0.02)
            stats.end(token)
        clock.set(second + 5.0)
        w = await windowed.get_metrics()
        s = await sampled.get_metrics()
        assert w.values[0].value == 0 == s.values[0].value
        windowed_polls.append(w.is_active)
        sampled_polls.append(s.is_active)
    assert all(windowed_polls)
    assert not any(sampled_polls)
    # Traffic stops: active until the window has passed, then inactive.
    clock.set(540.02 + 119)
    assert (await windowed.get_metrics()).is_active
    clock.set(540.02 + 121)
    assert not (await windowed.get_metrics()).is_active


# --------------------------------------------------------------------------- real server


async def test_in_process_and_endpoint_reads_of_a_real_app() -> None:
    gates = Gates()
    name = unique_name("web")
    gate = unique_name("gate")
    with served_app(name, gates) as (server, mw):
        in_proc = create_scaler(ctx(name=name, targetValue="2"))
        endpoint = create_scaler(
            ctx(url=f"{server.url}/_eventscale/metrics", targetValue="2", activityWindow="0")
        )
        try:
            report = await in_proc.get_metrics()
            assert report.values[0].value == 0
            assert not report.is_active
            async with aiohttp.ClientSession() as session:

                async def slow() -> int:
                    async with session.get(f"{server.url}/wait", params={"gate": gate}) as r:
                        return r.status

                tasks = [asyncio.create_task(slow()) for _ in range(3)]
                await poll_until(lambda: mw.stats.in_flight == 3, what="3 in flight")
                for scaler in (in_proc, endpoint):
                    report = await scaler.get_metrics()
                    assert report.values[0].value == 3
                    assert report.is_active
                gates.open(gate)
                assert await asyncio.gather(*tasks) == [200, 200, 200]
            await poll_until(lambda: mw.stats.in_flight == 0, what="drained")
            after = await in_proc.get_metrics()
            assert after.values[0].value == 0
            assert after.is_active
            after = await endpoint.get_metrics()
            assert after.values[0].value == 0
            assert not after.is_active
        finally:
            await in_proc.aclose()
            await endpoint.aclose()


async def test_steady_real_traffic_is_active_at_every_poll() -> None:
    gates = Gates()
    name = unique_name("web")
    with served_app(name, gates) as (server, _mw):
        windowed = create_scaler(ctx(name=name, activityWindow="1s"))
        polls: list[bool] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(15):  # ~10 requests/s for 1.5 s, polled between requests
                async with session.get(f"{server.url}/hello") as resp:
                    assert resp.status == 200
                polls.append((await windowed.get_metrics()).is_active)
                await asyncio.sleep(0.1)
        assert all(polls)


async def test_endpoint_errors_are_errors_not_zero() -> None:
    port = free_port()
    down = create_scaler(ctx(url=f"http://user:hunter2pw@127.0.0.1:{port}/m"))
    with pytest.raises(ScalerError) as info:
        await down.get_metrics()
    assert info.value.transient
    assert "hunter2pw" not in str(info.value)
    await down.aclose()
    with served_app(unique_name("web"), Gates()) as (server, _mw):
        missing = create_scaler(ctx(url=f"{server.url}/nowhere"))
        with pytest.raises(ScalerError, match="HTTP 404"):
            await missing.get_metrics()
        await missing.aclose()
        not_json = create_scaler(ctx(url=f"{server.url}/hello"))
        with pytest.raises(ScalerError, match="JSON"):
            await not_json.get_metrics()
        await not_json.aclose()


async def test_endpoint_timeout_is_a_scaler_timeout() -> None:
    # A listening socket that never answers.
    writers: list[asyncio.StreamWriter] = []

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        scaler = create_scaler(ctx(url=f"http://127.0.0.1:{port}/m", timeout="200ms"))
        with pytest.raises(ScalerTimeout):
            await scaler.get_metrics()
        await scaler.aclose()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_unknown_in_process_name_is_an_error() -> None:
    scaler = create_scaler(ctx(name=unique_name("nobody")))
    with pytest.raises(ScalerError, match="no request stats"):
        await scaler.get_metrics()


async def test_request_rate_metric() -> None:
    with served_app(unique_name("web"), Gates()) as (server, mw):
        scaler = create_scaler(ctx(name=mw.stats.name, metric="requestRate", window="10s"))
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(f"{server.url}/hello") as resp:
                    assert resp.status == 200
        report = await scaler.get_metrics()
        assert report.values[0].value == pytest.approx(2.0)  # 20 requests / 10 s
        assert report.is_active


async def test_light_load_does_not_scale_and_pending_load_scales_out() -> None:
    """A constant-rate load generator against a real app; the engine decides from the trigger."""
    with served_app(unique_name("web"), Gates()) as (server, mw):
        spec = ScaledObjectSpec(
            name=unique_name("so"),
            scale_target_ref=ScaleTargetRef(name="web"),
            triggers=(
                TriggerSpec(type="http", metadata={"name": mw.stats.name, "targetValue": "25"}),
            ),
            min_replica_count=1,
            max_replica_count=20,
            polling_interval=1,
        )

        async def load(rate: float, seconds: float, path: str) -> tuple[list[int], list[int]]:
            """Send ``rate`` requests/s for ``seconds``; evaluate every 100 ms meanwhile."""
            statuses: list[int] = []
            desired: list[int] = []
            async with (
                ScaledObject(spec, target=MemoryTarget(1)) as so,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
            ):

                async def one() -> None:
                    async with session.get(f"{server.url}{path}") as resp:
                        await resp.read()
                        statuses.append(resp.status)

                async def sampler() -> None:
                    while True:
                        desired.append((await so.evaluate()).decision.replicas)
                        await asyncio.sleep(0.1)

                sampling = asyncio.create_task(sampler())
                start = time.monotonic()
                tasks = []
                for i in range(int(rate * seconds)):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one()))
                await asyncio.gather(*tasks)
                sampling.cancel()
            return statuses, desired

        statuses, desired = await load(100, 1.5, "/sleep?ms=5")
        assert statuses == [200] * 150
        assert desired
        assert set(desired) == {1}
        # 100 requests/s that each take 1 s: up to ~100 pending, target 25 per replica.
        statuses, desired = await load(100, 1.5, "/sleep?ms=1000")
        assert statuses == [200] * 150
        assert max(desired) >= 3


def test_url_password_never_shown() -> None:
    cfg = HTTPTriggerConfig.from_metadata(ctx(url="http://ops:s3cretpw@app:8000/m"))
    assert "s3cretpw" not in repr(cfg)
    assert "app:8000" in repr(cfg)
