"""The ``rabbitmq`` trigger: queue length or message rate over AMQP or the management API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy

if TYPE_CHECKING:
    from eventscale.scalers.rabbitmq.scaler import (
        Mode,
        Operation,
        Protocol,
        QueueInfo,
        RabbitMQConfig,
        RabbitMQScaler,
        aggregate_queues,
        anonymize_error,
        vhost_and_prefix,
    )

__all__ = (
    "Mode",
    "Operation",
    "Protocol",
    "QueueInfo",
    "RabbitMQConfig",
    "RabbitMQScaler",
    "aggregate_queues",
    "anonymize_error",
    "vhost_and_prefix",
)

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "Mode": "eventscale.scalers.rabbitmq.scaler",
        "Operation": "eventscale.scalers.rabbitmq.scaler",
        "Protocol": "eventscale.scalers.rabbitmq.scaler",
        "QueueInfo": "eventscale.scalers.rabbitmq.scaler",
        "RabbitMQConfig": "eventscale.scalers.rabbitmq.scaler",
        "RabbitMQScaler": "eventscale.scalers.rabbitmq.scaler",
        "aggregate_queues": "eventscale.scalers.rabbitmq.scaler",
        "anonymize_error": "eventscale.scalers.rabbitmq.scaler",
        "vhost_and_prefix": "eventscale.scalers.rabbitmq.scaler",
    },
    __all__,
)
