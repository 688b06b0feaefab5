"""``eventscale intercept`` as a user runs it: a subprocess in front of a real upstream."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from servers._proc import free_port, unique_name
from servers.http_srv import Upstream, upstream

pytestmark = pytest.mark.anyio

MANIFEST = """
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: {name}
spec:
  hosts: [cli.test]
  scaleTargetRef:
    name: web
    service: web-svc
    port: 80
  replicas: {{min: 0, max: 3}}
  scaledownPeriod: 300
"""


async def _read_json_line(stream: asyncio.StreamReader, what: str) -> Any:
    line = await asyncio.wait_for(stream.readline(), 30)
    if not line:
        pytest.fail(f"eventscale intercept closed stdout before {what}", pytrace=False)
    return json.loads(line)


async def test_intercept_proxies_and_scales_from_zero(tmp_path: Path) -> None:
    name = unique_name("cli")
    manifest = tmp_path / "httpso.yaml"
    manifest.write_text(MANIFEST.format(name=name))
    admin = free_port()
    async with upstream("web") as up:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventscale",
            "intercept",
            str(manifest),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            f"127.0.0.1:{admin}",
            "--target",
            "memory",
            "--upstream",
            f"web-svc={up.url}",
            "--polling-interval",
            "30",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            ready = await _read_json_line(proc.stdout, "it listened")
            assert ready["routes"] == [f"default/{name}"]
            port = int(ready["listening"].rsplit(":", 1)[1])
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{port}/hello", headers={"Host": "cli.test"}) as resp,
            ):
                assert resp.status == 200
                assert (await resp.json())["upstream"] == "web"
            # The request made the route active: the memory target goes 0 -> 1 on the
            # interceptor's wake-up (the polling interval is 30 s).
            event = await _read_json_line(proc.stdout, "a scale event")
            assert event["kind"] == "scale"
            assert event["scaledObject"] == f"default/{name}"
            assert (event["fromReplicas"], event["toReplicas"]) == (0, 1)
            async with (
                aiohttp.ClientSession() as s,
                s.get(
                    f"http://127.0.0.1:{admin}/_eventscale/metrics",
                    params={"name": f"default/{name}"},
                ) as resp,
            ):
                doc = await resp.json()
            assert (doc["total"], doc["pending"]) == (1, 0)
        finally:
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0


async def test_intercept_rejects_a_bad_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(MANIFEST.format(name="bad").replace("port: 80", "port: 0"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventscale",
        "intercept",
        str(manifest),
        "--target",
        "memory",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "spec.scaleTargetRef.port" in err.decode()


MIXED = """
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: {legacy}
spec:
  hosts: [legacy.test]
  scaleTargetRef:
    name: legacy
    service: legacy-svc
    port: 80
---
apiVersion: http.keda.sh/v1beta1
kind: InterceptorRoute
metadata:
  name: {route}
spec:
  target:
    service: shop-svc
    port: 80
  rules:
    - hosts: [shop.test]
      paths: [{{value: /api}}]
  scalingMetric:
    concurrency:
      targetValue: 10
  timeouts:
    readiness: 30s
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {so}
spec:
  scaleTargetRef:
    name: shop
  pollingInterval: 300
  minReplicaCount: 0
  maxReplicaCount: 4
  triggers:
    - type: external-push
      metadata:
        scalerAddress: keda-add-ons-http-external-scaler.keda:9090
        interceptorRoute: {route}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
"""


async def test_intercept_holds_an_interceptor_route_request_while_scaling_from_zero(
    tmp_path: Path,
) -> None:
    route, so, legacy = unique_name("ir"), unique_name("so"), unique_name("legacy")
    manifest = tmp_path / "routes.yaml"
    manifest.write_text(MIXED.format(route=route, so=so, legacy=legacy))
    admin = free_port()
    shop = Upstream("shop", free_port())  # not started: the app is at zero
    async with upstream("legacy") as legacy_up:
        proc = await _intercept(
            manifest,
            "--listen=127.0.0.1:0",
            f"--admin=127.0.0.1:{admin}",
            f"--upstream=shop-svc={shop.url}",
            f"--upstream=legacy-svc={legacy_up.url}",
        )
        try:
            assert proc.stdout is not None
            ready = await _read_json_line(proc.stdout, "it listened")
            assert ready["routes"] == [f"default/{legacy}", f"default/{route}"]
            port = int(ready["listening"].rsplit(":", 1)[1])
            async with aiohttp.ClientSession() as s:
                # Both kinds of the file are served.
                async with s.get(
                    f"http://127.0.0.1:{port}/x", headers={"Host": "legacy.test"}
                ) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["upstream"] == "legacy"
                # A path outside the route's rule is not routed.
                async with s.get(
                    f"http://127.0.0.1:{port}/other", headers={"Host": "shop.test"}
                ) as resp:
                    assert resp.status == 404
                held = asyncio.create_task(
                    _get_json(s, f"http://127.0.0.1:{port}/api/items", "shop.test")
                )
                # The ScaledObject bound to the route is woken at once (its polling
                # interval is 300 s) and scales the memory target from zero.
                while True:
                    event = await _read_json_line(proc.stdout, "a scale event")
                    if event["scaledObject"] == f"default/{so}":
                        break
                assert event["kind"] == "scale"
                assert (event["fromReplicas"], event["toReplicas"]) == (0, 1)
                async with s.get(
                    f"http://127.0.0.1:{admin}/_eventscale/metrics",
                    params={"name": f"default/{route}"},
                ) as resp:
                    doc = await resp.json()
                assert (doc["held"], doc["pending"], doc["ready"]) == (1, 1, False)
                assert not held.done()
                # The app comes up: the held request is forwarded to it.
                await shop.start()
                status, body = await asyncio.wait_for(held, 30)
                assert status == 200
                assert (body["upstream"], body["path"]) == ("shop", "/api/items")
                async with s.get(
                    f"http://127.0.0.1:{admin}/_eventscale/metrics",
                    params={"name": f"default/{route}"},
                ) as resp:
                    doc = await resp.json()
                assert (doc["held"], doc["total"], doc["coldStarts"]["count"]) == (0, 1, 1)
        finally:
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 30)
            await shop.stop()
        assert code == 0


async def _intercept(manifest: Path, *options: str) -> asyncio.subprocess.Process:
    """``eventscale intercept MANIFEST --target memory OPTIONS...`` as a subprocess."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventscale",
        "intercept",
        str(manifest),
        "--target=memory",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _get_json(s: aiohttp.ClientSession, url: str, host: str) -> tuple[int, Any]:
    async with s.get(url, headers={"Host": host}) as resp:
        return resp.status, await resp.json()


async def test_intercept_rejects_an_unsupported_interceptor_route_field(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    text = MIXED.format(route="r", so="s", legacy="l").replace(
        "    readiness: 30s\n", "    readiness: 30s\n    request: 1m\n"
    )
    manifest.write_text(text)
    proc = await _intercept(manifest)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "spec.timeouts.request" in err.decode()
    assert "(line 29)" in err.decode()
