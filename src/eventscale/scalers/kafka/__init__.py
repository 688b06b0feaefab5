"""The ``kafka`` and ``apache-kafka`` triggers: consumer-group lag.

``config`` holds the settings (:class:`KafkaMetadata`), ``scaler`` the scaler, ``_lag``
the pure lag maths, ``_pool`` the shared clients and Kerberos files, ``_msk_iam`` the
AWS MSK IAM tokens (docs/scalers/kafka.md); ``apache`` the ``apache-kafka`` trigger,
KEDA's second Kafka scaler, on the same machinery (docs/scalers/apache-kafka.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.scalers.kafka._lag import (
        INVALID_OFFSET,
        LagTotals,
        TopicPartition,
        cap_total_lag,
        compute_lag,
        find_factors,
        lag_for_partition,
        next_factor,
        select_partitions,
    )
    from eventscale.scalers.kafka.apache import (
        ApacheKafkaMetadata,
        ApacheKafkaScaler,
        parse_partition_ranges,
    )
    from eventscale.scalers.kafka.config import (
        KafkaMetadata,
        OffsetResetPolicy,
        SaslMechanism,
        parse_kafka_metadata,
        parse_partition_limitation,
    )
    from eventscale.scalers.kafka.scaler import (
        KafkaScaler,
    )

__all__ = (
    "INVALID_OFFSET",
    "ApacheKafkaMetadata",
    "ApacheKafkaScaler",
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
    "parse_partition_ranges",
    "select_partitions",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "INVALID_OFFSET": "eventscale.scalers.kafka._lag",
        "ApacheKafkaMetadata": "eventscale.scalers.kafka.apache",
        "ApacheKafkaScaler": "eventscale.scalers.kafka.apache",
        "KafkaMetadata": "eventscale.scalers.kafka.config",
        "KafkaScaler": "eventscale.scalers.kafka.scaler",
        "LagTotals": "eventscale.scalers.kafka._lag",
        "OffsetResetPolicy": "eventscale.scalers.kafka.config",
        "SaslMechanism": "eventscale.scalers.kafka.config",
        "TopicPartition": "eventscale.scalers.kafka._lag",
        "cap_total_lag": "eventscale.scalers.kafka._lag",
        "compute_lag": "eventscale.scalers.kafka._lag",
        "find_factors": "eventscale.scalers.kafka._lag",
        "lag_for_partition": "eventscale.scalers.kafka._lag",
        "next_factor": "eventscale.scalers.kafka._lag",
        "parse_kafka_metadata": "eventscale.scalers.kafka.config",
        "parse_partition_limitation": "eventscale.scalers.kafka.config",
        "parse_partition_ranges": "eventscale.scalers.kafka.apache",
        "select_partitions": "eventscale.scalers.kafka._lag",
    },
    __all__,
)
