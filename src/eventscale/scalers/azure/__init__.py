"""The Azure triggers: Service Bus (``azure-servicebus``) and Storage Queue (``azure-queue``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.scalers.azure.servicebus import (
        AzureServiceBusMetadata,
        AzureServiceBusScaler,
        EntityType,
        Operation,
    )
    from eventscale.scalers.azure.storage_queue import (
        AzureQueueMetadata,
        AzureQueueScaler,
        QueueLengthStrategy,
    )

__all__ = (
    "AzureQueueMetadata",
    "AzureQueueScaler",
    "AzureServiceBusMetadata",
    "AzureServiceBusScaler",
    "EntityType",
    "Operation",
    "QueueLengthStrategy",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "AzureQueueMetadata": "eventscale.scalers.azure.storage_queue",
        "AzureQueueScaler": "eventscale.scalers.azure.storage_queue",
        "AzureServiceBusMetadata": "eventscale.scalers.azure.servicebus",
        "AzureServiceBusScaler": "eventscale.scalers.azure.servicebus",
        "EntityType": "eventscale.scalers.azure.servicebus",
        "Operation": "eventscale.scalers.azure.servicebus",
        "QueueLengthStrategy": "eventscale.scalers.azure.storage_queue",
    },
    __all__,
)
