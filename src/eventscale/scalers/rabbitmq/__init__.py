"""The ``rabbitmq`` trigger: queue length or message rate over AMQP or the management API.

``config`` holds the settings (:class:`RabbitMQConfig`), ``scaler`` the scaler; the
private modules read the queue (``_amqp``, ``_management``), share one management
request between the reads of a poll slot (``_listing``) and build TLS contexts and
errors (``_tls``, ``_errors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.scalers.rabbitmq._amqp import closing_connection_class
    from eventscale.scalers.rabbitmq._errors import anonymize_error
    from eventscale.scalers.rabbitmq._management import (
        QueueInfo,
        aggregate_queues,
        vhost_and_prefix,
    )
    from eventscale.scalers.rabbitmq.config import Mode, Operation, Protocol, RabbitMQConfig
    from eventscale.scalers.rabbitmq.scaler import RabbitMQScaler

__all__ = (
    "Mode",
    "Operation",
    "Protocol",
    "QueueInfo",
    "RabbitMQConfig",
    "RabbitMQScaler",
    "aggregate_queues",
    "anonymize_error",
    "closing_connection_class",
    "vhost_and_prefix",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Mode": "eventscale.scalers.rabbitmq.config",
        "Operation": "eventscale.scalers.rabbitmq.config",
        "Protocol": "eventscale.scalers.rabbitmq.config",
        "QueueInfo": "eventscale.scalers.rabbitmq._management",
        "RabbitMQConfig": "eventscale.scalers.rabbitmq.config",
        "RabbitMQScaler": "eventscale.scalers.rabbitmq.scaler",
        "aggregate_queues": "eventscale.scalers.rabbitmq._management",
        "anonymize_error": "eventscale.scalers.rabbitmq._errors",
        "closing_connection_class": "eventscale.scalers.rabbitmq._amqp",
        "vhost_and_prefix": "eventscale.scalers.rabbitmq._management",
    },
    __all__,
)
