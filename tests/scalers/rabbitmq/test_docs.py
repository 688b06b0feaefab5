"""The examples of docs/scalers/rabbitmq.md run as written, against the real broker."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import anyio
import anyio.to_thread
import pytest
import yaml

from docs_run import run_script
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import RabbitMQScaler
from servers.rabbitmq_srv import RabbitMQServer

DOC = Path(__file__).parents[3] / "docs" / "scalers" / "rabbitmq.md"
QUEUE = "eventscale-docs-orders"  # the name the page uses

pytestmark = pytest.mark.anyio


def block(lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(found) == 1, f"expected one {lang} block in {DOC}"
    return str(found[0])


@pytest.fixture
async def orders(rabbitmq_server: RabbitMQServer) -> AsyncIterator[int]:
    conn = await aio_pika.connect(rabbitmq_server.amqp_url)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(QUEUE)
        await queue.purge()
        for _ in range(12):
            await channel.default_exchange.publish(aio_pika.Message(b"o"), routing_key=QUEUE)
        yield 12
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()


async def test_yaml_example(orders: int, rabbitmq_server: RabbitMQServer) -> None:
    manifest = yaml.safe_load(block("yaml"))
    trigger = manifest["spec"]["triggers"][0]
    scaler = create_scaler(
        TriggerContext(
            metadata=trigger["metadata"],
            env={"RABBITMQ_URL": rabbitmq_server.amqp_url},
            trigger_type=trigger["type"],
        )
    )
    assert isinstance(scaler, RabbitMQScaler)
    async with scaler:
        report = await scaler.get_metrics()
    assert report.value_of(f"s0-rabbitmq-{QUEUE}") == orders
    assert report.is_active
    assert scaler.metric_specs()[0].target == 10


async def test_python_example(orders: int, tmp_path: Path) -> None:
    # run as a reader would: python example.py (the page's broker is 127.0.0.1:5672)
    result = await anyio.to_thread.run_sync(run_script, block("python"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"s0-rabbitmq-{QUEUE} {float(orders)} True"
