"""Python's own job queues: the ``celery``, ``rq`` and ``dramatiq`` triggers.

Each reads the queue layout its library writes, on Redis (through the shared clients
of :mod:`eventscale.scalers.redis`) or, for Celery and Dramatiq, on RabbitMQ (through
:class:`~eventscale.scalers.rabbitmq.RabbitMQScaler`). ``_common`` holds what they
share. See docs/python-queues.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.scalers.pyqueues._common import Broker, QueueMode, QueueSettings
    from eventscale.scalers.pyqueues.celery import CeleryConfig, CeleryScaler, stamp_publish_time
    from eventscale.scalers.pyqueues.dramatiq import DramatiqConfig, DramatiqScaler
    from eventscale.scalers.pyqueues.rq import RQConfig, RQScaler

__all__ = (
    "Broker",
    "CeleryConfig",
    "CeleryScaler",
    "DramatiqConfig",
    "DramatiqScaler",
    "QueueMode",
    "QueueSettings",
    "RQConfig",
    "RQScaler",
    "stamp_publish_time",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Broker": "eventscale.scalers.pyqueues._common",
        "QueueMode": "eventscale.scalers.pyqueues._common",
        "QueueSettings": "eventscale.scalers.pyqueues._common",
        "CeleryConfig": "eventscale.scalers.pyqueues.celery",
        "CeleryScaler": "eventscale.scalers.pyqueues.celery",
        "stamp_publish_time": "eventscale.scalers.pyqueues.celery",
        "DramatiqConfig": "eventscale.scalers.pyqueues.dramatiq",
        "DramatiqScaler": "eventscale.scalers.pyqueues.dramatiq",
        "RQConfig": "eventscale.scalers.pyqueues.rq",
        "RQScaler": "eventscale.scalers.pyqueues.rq",
    },
    __all__,
)
