"""The YAML and Python examples of the Redis docs pages run against the real server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.redis.lists import RedisListScaler
from eventscale.scalers.redis.streams import RedisStreamsScaler
from servers._proc import unique_name
from servers.redis_srv import RedisServer

DOCS = Path(__file__).resolve().parents[3] / "docs" / "scalers"
K8S_ADDRESS = "redis-master.default.svc.cluster.local:6379"


def code_block(page: str, language: str) -> str:
    text = (DOCS / page).read_text()
    match = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert match, f"{page} has no {language} block"
    return match.group(1)


def first_trigger(page: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all(code_block(page, "yaml")))
    scaled_object = next(d for d in documents if d["kind"] == "ScaledObject")
    trigger: dict[str, Any] = scaled_object["spec"]["triggers"][0]
    return trigger


def test_lists_yaml_example(redis_server: RedisServer) -> None:
    trigger = first_trigger("redis-lists.md")
    assert trigger["metadata"]["address"] == K8S_ADDRESS
    key = unique_name("docs")
    metadata = {**trigger["metadata"], "address": redis_server.address, "listName": key}
    # the TriggerAuthentication carries the password; the test server has none
    scaler = create_scaler(TriggerContext(metadata=metadata, trigger_type=trigger["type"]))
    assert isinstance(scaler, RedisListScaler)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    now = time.time()
    client.lpush(key, *[json.dumps({"enqueued_at": now - 45 + i}) for i in range(6)])

    async def poll() -> tuple[float, float, bool]:
        async with scaler:
            report = await scaler.get_metrics()
        return report.values[0].value, report.values[1].value, report.is_active

    try:
        length, age, active = asyncio.run(poll())
    finally:
        client.delete(key)
        client.close()
    assert length == 6
    assert 45 <= age < 45 + 60  # wall clock: only a lower bound is exact
    assert active
    assert [s.target for s in scaler.metric_specs()] == [5, 30]


def test_lists_python_example(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    key = unique_name("docs")
    source = code_block("redis-lists.md", "python")
    assert '"127.0.0.1:6379"' in source
    assert '"image-jobs"' in source
    source = source.replace('"127.0.0.1:6379"', repr(redis_server.address))
    source = source.replace('"image-jobs"', repr(key))
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.rpush(key, "a", "b")
    try:
        exec(compile(source, "redis-lists.md", "exec"), {"__name__": "docs_example"})
    finally:
        client.delete(key)
        client.close()
    out = capsys.readouterr().out
    assert f"s0-redis-{key} 2.0" in out
    assert "active: True" in out


def test_streams_yaml_and_python_examples(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    trigger = first_trigger("redis-streams.md")
    key = unique_name("docs-stream")
    metadata = {**trigger["metadata"], "address": redis_server.address, "stream": key}
    scaler = create_scaler(TriggerContext(metadata=metadata, trigger_type=trigger["type"]))
    assert isinstance(scaler, RedisStreamsScaler)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    for i in range(12):
        client.xadd(key, {"n": str(i)})
    client.xgroup_create(key, "consumers", id="0")
    client.xreadgroup("consumers", "c1", {key: ">"}, count=5)

    async def poll() -> tuple[float, bool]:
        async with scaler:
            report = await scaler.get_metrics()
        return report.values[0].value, report.is_active

    source = code_block("redis-streams.md", "python")
    assert '"127.0.0.1:6379"' in source
    source = source.replace('"127.0.0.1:6379"', repr(redis_server.address))
    source = source.replace('stream="events"', f"stream={key!r}")
    try:
        assert asyncio.run(poll()) == (7, True)
        exec(compile(source, "redis-streams.md", "exec"), {"__name__": "docs_example"})
    finally:
        client.delete(key)
        client.close()
    out = capsys.readouterr().out
    assert "StreamMode.LAG" in out
    assert f"s0-redis-streams-{key} 7.0 True" in out
