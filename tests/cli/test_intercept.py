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
from servers.http_srv import upstream

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
