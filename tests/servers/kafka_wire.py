"""Kafka answers as a broker sends them, encoded by kafka-python's own encoder.

Used by the tests of the batch path's lean decoders (``scalers/kafka/test_wire.py``) and
by its stand-in transport (``scalers/kafka/test_batch.py``): the bytes are what a broker
would send, so the decoders read them exactly as on a real connection.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = [
    "ListOffsetsRequest",
    "ListOffsetsResponse",
    "MetadataRequest",
    "MetadataResponse",
    "OffsetFetchRequest",
    "OffsetFetchResponse",
    "fetch_bytes",
    "list_bytes",
]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.consumer import (
        ListOffsetsRequest,
        ListOffsetsResponse,
        OffsetFetchRequest,
        OffsetFetchResponse,
    )
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse

_Group = OffsetFetchResponse.OffsetFetchResponseGroup
_Topic = _Group.OffsetFetchResponseTopics
_Part = _Topic.OffsetFetchResponsePartitions
_LTopic = ListOffsetsResponse.ListOffsetsTopicResponse
_LPart = _LTopic.ListOffsetsPartitionResponse


def fetch_bytes(groups: dict[str, Any], version: int) -> bytes:
    response = OffsetFetchResponse(
        throttle_time_ms=7,
        groups=[
            _Group(
                group_id=g,
                error_code=code,
                topics=[
                    _Topic(
                        name=t,
                        partitions=[
                            _Part(
                                partition_index=p,
                                committed_offset=o,
                                committed_leader_epoch=e,
                                metadata=m,
                                error_code=c,
                            )
                            for p, o, e, m, c in ps
                        ],
                    )
                    for t, ps in topics.items()
                ],
            )
            for g, (code, topics) in groups.items()
        ],
        version=version,
    )
    return bytes(response.encode(version=version))


def list_bytes(topics: dict[str, Any], version: int) -> bytes:
    response = ListOffsetsResponse(
        throttle_time_ms=3,
        topics=[
            _LTopic(
                name=t,
                partitions=[
                    _LPart(partition_index=p, error_code=c, timestamp=ts, offset=o, leader_epoch=e)
                    for p, c, ts, o, e in ps
                ],
            )
            for t, ps in topics.items()
        ],
        version=version,
    )
    return bytes(response.encode(version=version))
