"""Helpers of the Kafka tests against a real broker (``test_broker.py``,
``test_apache_broker.py``); their fixtures are in ``conftest.py``."""

from __future__ import annotations

from collections.abc import Sequence

from eventscale.scalers.kafka.scaler import KafkaScaler

__all__ = ["close_all", "metric"]


async def close_all(made: Sequence[KafkaScaler]) -> None:
    """Close every scaler (closing twice is fine)."""
    for scaler in made:
        await scaler.aclose()


async def metric(scaler: KafkaScaler) -> tuple[float, bool]:
    """The scaler's metric value and whether it is active, from one poll."""
    report = await scaler.get_metrics()
    return report.value_of(scaler.meta.metric_name), report.is_active
