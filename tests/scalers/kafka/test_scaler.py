"""KafkaScaler without a broker: its metric spec (the broker tests are in test_broker.py)."""

from __future__ import annotations

from typing import Any

import pytest

from eventscale.metrics import MetricType
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka.scaler import KafkaScaler

TOPIC = {"bootstrapServers": "foobar:9092", "consumerGroup": "my-group", "topic": "my-topic"}


async def _spec_of(ctx: TriggerContext) -> Any:
    scaler = KafkaScaler.from_context(ctx)
    try:
        return scaler.metric_specs()[0]
    finally:
        await scaler.aclose()


@pytest.mark.anyio
async def test_metric_spec_target_and_type() -> None:
    ctx = TriggerContext(
        metadata={**TOPIC, "lagThreshold": "7", "activationLagThreshold": "3"},
        index=3,
        trigger_type="kafka",
        metric_type=MetricType.VALUE,
    )
    spec = await _spec_of(ctx)
    assert spec.name == "s3-kafka-my-topic"
    assert spec.target == 7
    assert spec.activation_target == 3
    assert spec.metric_type is MetricType.VALUE
