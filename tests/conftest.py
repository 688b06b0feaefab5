"""Test-suite wiring: server fixtures live in ``tests/servers`` and load as plugins."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "servers.redis_srv",
    "servers.rabbitmq_srv",
    "servers.kafka_srv",
    "servers.azurite_srv",
    "servers.servicebus_srv",
    "servers.entra_srv",
    "servers.kubernetes_srv",
    "servers.docker_srv",
    "servers.prometheus_srv",
]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the broker clients are asyncio libraries)."""
    return "asyncio"
