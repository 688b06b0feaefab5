"""Fixtures shared by the Kafka tests against a real broker (``test_broker.py``,
``test_apache_broker.py``, ``test_batch.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventscale.scalers.kafka.scaler import KafkaScaler
from scalers.kafka._broker import close_all
from servers._proc import unique_name


@pytest.fixture
def group() -> str:
    """A consumer group of this test only."""
    return unique_name("group")


@pytest.fixture
async def scalers() -> AsyncIterator[list[KafkaScaler]]:
    """The scalers a test builds (it appends them): closed after the test, and each must
    then hold no connection (a leftover lease would leak a client)."""
    made: list[KafkaScaler] = []
    yield made
    await close_all(made)
    assert all(s.connection is None for s in made), "a scaler kept its connection"
