"""The guide docs/python-queues.md and the trigger pages: their examples run as shown."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.pyqueues.celery import priority_keys
from servers._proc import unique_name
from servers.redis_srv import RedisServer

pytest.importorskip("celery")

DOCS = Path(__file__).resolve().parents[2] / "docs"


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_the_guide_example_runs(redis_server: RedisServer) -> None:
    source = blocks("python-queues.md", "python")[0]
    queue = unique_name("emails")
    assert 'QUEUE = "emails"' in source
    assert "127.0.0.1:6379" in source
    source = source.replace('QUEUE = "emails"', f"QUEUE = {queue!r}")
    source = source.replace("127.0.0.1:6379", redis_server.address)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(source, str(DOCS / "python-queues.md"), "exec"), namespace)
    signals = pytest.importorskip("celery.signals")
    try:
        replicas = asyncio.run(namespace["main"]())
    finally:
        signals.before_task_publish.disconnect(namespace["stamp_publish_time"])
        client = redis.Redis(host=redis_server.host, port=redis_server.port)
        client.delete(*priority_keys(queue))
        client.close()
    assert replicas == 3


@pytest.mark.parametrize(
    "page", ["python-queues.md", "scalers/celery.md", "scalers/rq.md", "scalers/dramatiq.md"]
)
def test_yaml_triggers_parse(page: str) -> None:
    for block in blocks(page, "yaml"):
        for document in yaml.safe_load_all(block):
            triggers = (
                document.get("spec", {}).get("triggers")
                if "spec" in document
                else document.get("triggers")
            )
            for trigger in triggers or ():
                ctx = TriggerContext(metadata=trigger["metadata"], trigger_type=trigger["type"])
                scaler = create_scaler(ctx)
                assert scaler.metric_specs()
