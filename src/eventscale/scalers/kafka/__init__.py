"""The ``kafka`` trigger: consumer-group lag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy

if TYPE_CHECKING:
    from eventscale.scalers.kafka.scaler import (
        INVALID_OFFSET,
        KafkaMetadata,
        KafkaScaler,
        LagTotals,
        OffsetResetPolicy,
        SaslMechanism,
        TopicPartition,
        cap_total_lag,
        compute_lag,
        find_factors,
        lag_for_partition,
        next_factor,
        parse_kafka_metadata,
        parse_partition_limitation,
        select_partitions,
    )

__all__ = (
    "INVALID_OFFSET",
    "KafkaMetadata",
    "KafkaScaler",
    "LagTotals",
    "OffsetResetPolicy",
    "SaslMechanism",
    "TopicPartition",
    "cap_total_lag",
    "compute_lag",
    "find_factors",
    "lag_for_partition",
    "next_factor",
    "parse_kafka_metadata",
    "parse_partition_limitation",
    "select_partitions",
)

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "INVALID_OFFSET": "eventscale.scalers.kafka.scaler",
        "KafkaMetadata": "eventscale.scalers.kafka.scaler",
        "KafkaScaler": "eventscale.scalers.kafka.scaler",
        "LagTotals": "eventscale.scalers.kafka.scaler",
        "OffsetResetPolicy": "eventscale.scalers.kafka.scaler",
        "SaslMechanism": "eventscale.scalers.kafka.scaler",
        "TopicPartition": "eventscale.scalers.kafka.scaler",
        "cap_total_lag": "eventscale.scalers.kafka.scaler",
        "compute_lag": "eventscale.scalers.kafka.scaler",
        "find_factors": "eventscale.scalers.kafka.scaler",
        "lag_for_partition": "eventscale.scalers.kafka.scaler",
        "next_factor": "eventscale.scalers.kafka.scaler",
        "parse_kafka_metadata": "eventscale.scalers.kafka.scaler",
        "parse_partition_limitation": "eventscale.scalers.kafka.scaler",
        "select_partitions": "eventscale.scalers.kafka.scaler",
    },
    __all__,
)
