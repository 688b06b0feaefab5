"""Health checks and the metrics server: probes' codes and bodies, a scrape over HTTP."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anyio
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from docs_run import DOCS, python_blocks, run_script
from eventscale.errors import ConfigError
from eventscale.runtime.controller import Controller
from eventscale.runtime.health import Health, controller_checks
from eventscale.runtime.metrics_server import MetricsServer, parse_address
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def test_addresses_parse_as_go_listens() -> None:
    assert parse_address(":8080") == ("0.0.0.0", 8080)
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:9022") == ("::1", 9022)
    for bad in ("8080", "host:", "host:http", "::1:80", "h:70000"):
        with pytest.raises(ConfigError) as info:
            parse_address(bad)
        assert info.value.path == "--metrics-address"


async def test_checks_answer_booleans_messages_coroutines_and_failures() -> None:
    health = Health()
    state = {"synced": False}

    async def informer() -> tuple[bool, str]:
        return state["synced"], "first list reconciled" if state["synced"] else "listing"

    def broken() -> bool:
        raise RuntimeError("redis://user:hunter2@db:6379 unreachable")

    health.add_check("informer", ready=informer, live=lambda: True)
    health.add_check("watch", live=broken)
    ready = await health.ready()
    assert not ready.ok
    assert ready.render() == "[-]informer failed: listing\nfailed\n"
    state["synced"] = True
    ready = await health.ready()
    assert ready.ok
    assert ready.render() == "ok\n"
    assert "[+]informer ok: first list reconciled" in ready.render(verbose=True)
    live = await health.live()
    assert not live.ok
    assert "RuntimeError" in live.render()
    assert "hunter2" not in live.render()
    health.remove_check("watch")
    assert (await health.live()).ok
    assert health.names == ("informer",)
    with pytest.raises(ValueError, match="ready=, live="):
        health.add_check("nothing")


async def test_server_serves_metrics_and_probes_from_a_controller() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("keda_scaler_active", "test", ["scaledObject"], registry=registry)
    gauge.labels("orders").set(1)
    clock = ManualClock(100.0)
    spec = ScaledObjectSpec(
        name="orders",
        scale_target_ref=ScaleTargetRef(name="orders"),
        triggers=[TriggerSpec(type="gauge")],
        polling_interval=10,
    )
    obj = ScaledObject(
        spec, target=MemoryTarget(0, clock=clock), scalers=[StaticScaler(3, target=1)], clock=clock
    )
    health = Health()
    ctl = Controller(clock=clock, sleep=clock.sleep)
    checks = controller_checks(health, ctl)
    async with MetricsServer("127.0.0.1:0", registry=registry, health=health) as server:
        assert server.port != 0
        status, _, body = await get(f"{server.url}/readyz")
        assert (status, body) == (
            503,
            "[-]controller failed: the controller is not running\nfailed\n",
        )
        assert (await get(f"{server.url}/healthz"))[0] == 503
        ctl.add(obj)
        async with ctl:
            with checks.running_while():
                assert (await get(f"{server.url}/healthz"))[:1] == (200,)
                assert (await get(f"{server.url}/livez"))[0] == 200
                with anyio.fail_after(5):
                    await clock.wait_for_sleepers(1)  # the first reconcile is done
                status, _, body = await get(f"{server.url}/readyz?verbose")
                assert status == 200
                assert "[+]controller ok: 1 object(s) reconciled" in body
                status, ctype, text = await get(f"{server.url}/metrics")
                assert status == 200
                assert ctype.startswith("text/plain")
                (family,) = [
                    f
                    for f in text_string_to_metric_families(text)
                    if f.name == "keda_scaler_active"
                ]
                assert [(s.labels, s.value) for s in family.samples] == [
                    ({"scaledObject": "orders"}, 1.0)
                ]
        assert (await get(f"{server.url}/healthz"))[0] == 503
        assert (await get(f"{server.url}/nothing"))[0] == 404
    assert not server.started


async def test_a_port_in_use_is_a_config_error() -> None:
    async with MetricsServer("127.0.0.1:0", registry=CollectorRegistry()) as first:
        second = MetricsServer(f"127.0.0.1:{first.port}", registry=CollectorRegistry())
        with pytest.raises(ConfigError, match="cannot listen"):
            await second.start()
        assert not second.started


def test_the_metrics_page_example_runs(tmp_path: Path) -> None:
    (code,) = python_blocks(DOCS / "metrics.md")
    result = run_script(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "12.0\n"
