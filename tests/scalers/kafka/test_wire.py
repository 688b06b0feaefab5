"""The lean decoders of the batch path against kafka-python's own encoder and decoder.

Answers are encoded by kafka-python (the library the batch path sends its requests with)
or captured from tansu; the lean decoder must read the same values as kafka-python's
generic decoder, and bad input (truncated, oversized counts, random bytes) must be a
:class:`WireError`, never another exception or a large allocation.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventscale.scalers.kafka._wire import (
    WireError,
    decode_list_offsets,
    decode_metadata,
    decode_offset_fetch,
    encode_list_offsets,
    encode_metadata,
    encode_offset_fetch,
)
from servers._proc import unique_name
from servers.kafka_srv import KafkaBroker
from servers.kafka_wire import (
    ListOffsetsRequest,
    ListOffsetsResponse,
    MetadataRequest,
    MetadataResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    fetch_bytes,
    list_bytes,
)

names = st.text(min_size=1, max_size=12)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
codes = st.sampled_from([0, 0, 0, 3, 6, 16, 30])
partitions = st.lists(
    st.tuples(i32, i64, i32, st.none() | st.text(max_size=300), codes),
    max_size=12,
    unique_by=lambda p: p[0],
)
fetch_groups = st.dictionaries(
    names, st.tuples(codes, st.dictionaries(names, partitions, max_size=3)), max_size=4
)
list_topics = st.dictionaries(
    names,
    st.lists(st.tuples(i32, codes, i64, i64, i32), max_size=12, unique_by=lambda p: p[0]),
    max_size=4,
)


def fetch_values(data: bytes, version: int) -> dict[str, Any]:
    """kafka-python's own reading of an OffsetFetch answer, in the lean decoder's shape."""
    response = OffsetFetchResponse.decode(data, version=version)
    out: dict[str, Any] = {}
    for g in response.groups:
        topics: dict[str, Any] = {}
        for t in g.topics:
            offsets, errors = topics.setdefault(t.name, ({}, {}))
            for p in t.partitions:
                offsets[p.partition_index] = p.committed_offset
                if p.error_code:
                    errors[p.partition_index] = p.error_code
        out[g.group_id] = (g.error_code, topics)
    return out


def lean_fetch_values(data: bytes, version: int) -> dict[str, Any]:
    answer = decode_offset_fetch(data, version)
    assert answer.throttle_time_ms == OffsetFetchResponse.decode(data, version).throttle_time_ms
    return {
        g: (code, {t: (found.offsets, found.errors) for t, found in topics.items()})
        for g, (code, topics) in answer.groups.items()
    }


def list_values(data: bytes, version: int) -> dict[str, Any]:
    response = ListOffsetsResponse.decode(data, version=version)
    out: dict[str, Any] = {}
    for t in response.topics:
        offsets, errors = out.setdefault(t.name, ({}, {}))
        for p in t.partitions:
            offsets[p.partition_index] = p.offset
            if p.error_code:
                errors[p.partition_index] = p.error_code
    return out


def lean_list_values(data: bytes, version: int) -> dict[str, Any]:
    answer = decode_list_offsets(data, version)
    return {t: (found.offsets, found.errors) for t, found in answer.topics.items()}


@given(fetch_groups, st.sampled_from([8, 9]))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_offset_fetch_reads_what_kafka_python_reads(groups: dict[str, Any], version: int) -> None:
    data = fetch_bytes(groups, version)
    assert lean_fetch_values(data, version) == fetch_values(data, version)


@given(list_topics, st.integers(1, 11))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_list_offsets_reads_what_kafka_python_reads(topics: dict[str, Any], version: int) -> None:
    data = list_bytes(topics, version)
    assert lean_list_values(data, version) == list_values(data, version)


@given(fetch_groups.filter(bool), st.data())
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_or_padded_offset_fetch_is_an_error(groups: dict[str, Any], data: Any) -> None:
    whole = fetch_bytes(groups, 8)
    cut = data.draw(st.integers(0, len(whole) - 1))
    with pytest.raises(WireError):
        decode_offset_fetch(whole[:cut], 8)
    with pytest.raises(WireError):
        decode_offset_fetch(whole + b"\x00", 8)


@given(list_topics.filter(bool), st.integers(1, 11), st.data())
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_list_offsets_is_an_error(
    topics: dict[str, Any], version: int, data: Any
) -> None:
    whole = list_bytes(topics, version)
    cut = data.draw(st.integers(0, len(whole) - 1))
    with pytest.raises(WireError):
        decode_list_offsets(whole[:cut], version)


@given(st.binary(max_size=200), st.sampled_from([8, 9]), st.integers(1, 11))
@settings(max_examples=300)
def test_random_bytes_are_an_error_or_an_answer(data: bytes, fetch_v: int, list_v: int) -> None:
    for decode, version in ((decode_offset_fetch, fetch_v), (decode_list_offsets, list_v)):
        with contextlib.suppress(WireError):
            decode(data, version)


def test_oversized_counts_are_refused_before_allocating() -> None:
    # an OffsetFetch answer announcing 2**32-2 groups in 10 bytes
    with pytest.raises(WireError, match="longer than the answer"):
        decode_offset_fetch(b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff\x0f" + b"\x00", 8)
    # a ListOffsets v5 answer announcing 2**31-1 topics
    with pytest.raises(WireError, match="longer than the answer"):
        decode_list_offsets(b"\x00\x00\x00\x00\x7f\xff\xff\xff", 5)
    # a varint that never ends
    with pytest.raises(WireError, match="varint"):
        decode_offset_fetch(b"\x00\x00\x00\x00" + b"\xff" * 9, 8)
    # a string longer than what is left
    with pytest.raises(WireError, match="string"):
        decode_offset_fetch(b"\x00\x00\x00\x00\x02\x7f" + b"g" * 5, 8)
    with pytest.raises(WireError, match="not decoded here"):
        decode_offset_fetch(b"", 7)


@pytest.mark.parametrize("odd", [None, 0, 1023, 1024, 1500, 2499])
def test_long_runs_read_what_kafka_python_reads(odd: int | None) -> None:
    # 2,500 partitions: read in runs of 1,024; one partition (``odd``) carries metadata
    # and an error code, which sends the whole topic to the record-by-record reader
    parts: list[tuple[int, int, int, str | None, int]] = [
        (p, p * 7, -1, None, 0) for p in range(2500)
    ]
    if odd is not None:
        parts[odd] = (odd, 5, 3, "meta", 16)
    groups = {"g": (0, {"t": parts, "u": parts[:3]})}
    for version in (8, 9):
        data = fetch_bytes(groups, version)
        assert lean_fetch_values(data, version) == fetch_values(data, version)
    listed = [(p, 6 if p == odd else 0, -1, p * 3, 2) for p in range(2500)]
    for version in (1, 3, 4, 5, 6, 7, 11):
        data = list_bytes({"t": listed, "u": listed[:2]}, version)
        assert lean_list_values(data, version) == list_values(data, version)


fetch_specs = st.dictionaries(
    names,
    st.none() | st.dictionaries(names, st.lists(i32, max_size=30), max_size=3),
    max_size=4,
)


@given(fetch_specs, st.sampled_from([8, 9]))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_offset_fetch_request_is_what_kafka_python_writes(
    groups: dict[str, Any], version: int
) -> None:
    group_cls = OffsetFetchRequest.OffsetFetchRequestGroup
    topic_cls = group_cls.OffsetFetchRequestTopics
    request = OffsetFetchRequest(
        groups=[
            group_cls(
                group_id=g,
                topics=None
                if topics is None
                else [topic_cls(name=t, partition_indexes=ps) for t, ps in topics.items()],
            )
            for g, topics in groups.items()
        ],
        require_stable=False,
    )
    assert encode_offset_fetch(version, groups) == bytes(request.encode(version=version))


@given(
    st.dictionaries(names, st.lists(i32, max_size=30), max_size=4),
    st.sampled_from([-1, -2]),
    st.integers(1, 11),
)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_list_offsets_request_is_what_kafka_python_writes(
    topics: dict[str, list[int]], timestamp: int, version: int
) -> None:
    topic_cls = ListOffsetsRequest.ListOffsetsTopic
    part_cls = topic_cls.ListOffsetsPartition
    request = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=0,
        topics=[
            topic_cls(
                name=t, partitions=[part_cls(partition_index=p, timestamp=timestamp) for p in ps]
            )
            for t, ps in topics.items()
        ],
    )
    assert encode_list_offsets(version, timestamp, topics) == bytes(request.encode(version=version))


_MD = MetadataResponse.MetadataResponseTopic
metadata_topics = st.lists(
    st.tuples(
        codes,
        st.none() | names,
        st.lists(
            st.tuples(codes, i32, i32, st.lists(i32, max_size=3)),
            max_size=8,
            unique_by=lambda p: p[1],
        ),
    ),
    max_size=4,
    unique_by=lambda t: t[1],
)


def metadata_bytes(topics: list[Any], version: int, rack: str | None = None) -> bytes:
    broker = MetadataResponse.MetadataResponseBroker
    response = MetadataResponse(
        throttle_time_ms=4,
        brokers=[broker(node_id=1, host="h1", port=9092, rack=rack), broker(2, "h2", 9093, None)],
        cluster_id="c" if version >= 2 else None,
        controller_id=1,
        topics=[
            _MD(
                error_code=code,
                name=name,
                is_internal=False,
                partitions=[
                    _MD.MetadataResponsePartition(
                        error_code=c,
                        partition_index=p,
                        leader_id=leader,
                        leader_epoch=3,
                        replica_nodes=replicas,
                        isr_nodes=replicas[:1],
                        offline_replicas=replicas[1:],
                    )
                    for c, p, leader, replicas in parts
                ],
            )
            for code, name, parts in topics
            if name is not None or version >= 12
        ],
    )
    return bytes(response.encode(version=version))


def metadata_values(data: bytes, version: int) -> dict[str, Any]:
    """kafka-python's reading, in the lean decoder's shape (as Transport made it)."""
    response = MetadataResponse.decode(data, version=version)
    return {
        t.name: (
            t.error_code,
            {p.partition_index: -1 if p.error_code else p.leader_id for p in t.partitions},
        )
        for t in response.topics
        if t.name is not None
    }


@given(metadata_topics, st.integers(1, 13), st.none() | names)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_metadata_reads_what_kafka_python_reads(
    topics: list[Any], version: int, rack: str | None
) -> None:
    data = metadata_bytes(topics, version, rack)
    answer = decode_metadata(data, version)
    assert answer.topics == metadata_values(data, version)
    if version >= 3:
        assert answer.throttle_time_ms == 4


@given(metadata_topics, st.integers(1, 13), st.data())
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_or_padded_metadata_is_an_error(
    topics: list[Any], version: int, data: Any
) -> None:
    whole = metadata_bytes(topics, version)
    cut = data.draw(st.integers(0, len(whole) - 1))
    with pytest.raises(WireError):
        decode_metadata(whole[:cut], version)
    with pytest.raises(WireError):
        decode_metadata(whole + b"\x00", version)


@given(st.binary(max_size=200), st.integers(1, 13))
@settings(max_examples=200)
def test_random_metadata_bytes_are_an_error_or_an_answer(data: bytes, version: int) -> None:
    with contextlib.suppress(WireError):
        decode_metadata(data, version)


@given(st.lists(names, max_size=4), st.integers(1, 13))
@settings(max_examples=60)
def test_metadata_request_is_what_kafka_python_writes(topics: list[str], version: int) -> None:
    request = MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=False,
    )
    assert encode_metadata(version, topics) == bytes(request.encode(version=version))


def test_requests_of_other_versions_are_refused() -> None:
    with pytest.raises(WireError, match="not encoded here"):
        encode_metadata(0, ["t"])
    with pytest.raises(WireError, match="not decoded here"):
        decode_metadata(b"", 14)
    with pytest.raises(WireError, match="not encoded here"):
        encode_offset_fetch(7, {"g": None})
    with pytest.raises(WireError, match="not encoded here"):
        encode_list_offsets(0, -1, {"t": [0]})


def _round_trip(port: int, request: Any, version: int) -> bytes:
    """One request over a raw socket; the answer body after its (flexible) header."""
    request.with_header(correlation_id=1, client_id="test-wire")
    frame = bytes(request.encode(version=version, header=True, framed=True))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame)
        head = b""
        while len(head) < 4:
            head += sock.recv(4 - len(head))
        (size,) = struct.unpack(">i", head)
        body = b""
        while len(body) < size:
            chunk = sock.recv(size - len(body))
            assert chunk
            body += chunk
    assert body[:4] == b"\x00\x00\x00\x01"  # the correlation id
    return body[5:] if version >= 6 else body[4:]  # flexible headers end with tags (0)


def test_tansu_answers_read_the_same(kafka_broker: KafkaBroker) -> None:
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, {0: 3, 2: 5})
    groups = [unique_name("group") for _ in range(2)]
    kafka_broker.commit(groups[0], topic, {0: 1, 2: 4})
    kafka_broker.commit(groups[1], topic, {1: 0})
    port = int(kafka_broker.bootstrap.rsplit(":", 1)[1])
    fetch_cls = OffsetFetchRequest.OffsetFetchRequestGroup
    fetch = OffsetFetchRequest(
        groups=[
            fetch_cls(
                group_id=g,
                topics=[
                    fetch_cls.OffsetFetchRequestTopics(name=topic, partition_indexes=[0, 1, 2, 3])
                ],
            )
            for g in groups
        ],
        require_stable=False,
        version=8,
    )
    data = _round_trip(port, fetch, 8)
    lean = lean_fetch_values(data, 8)
    assert lean == fetch_values(data, 8)
    assert lean[groups[0]][1][topic][0] == {0: 1, 1: -1, 2: 4, 3: -1}
    assert lean[groups[1]][1][topic][0] == {0: -1, 1: 0, 2: -1, 3: -1}
    topic_cls = ListOffsetsRequest.ListOffsetsTopic
    listing = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=0,
        topics=[
            topic_cls(
                name=topic,
                partitions=[
                    topic_cls.ListOffsetsPartition(partition_index=p, timestamp=-1)
                    for p in range(4)
                ],
            )
        ],
        version=7,
    )
    data = _round_trip(port, listing, 7)
    assert lean_list_values(data, 7) == list_values(data, 7)
    assert lean_list_values(data, 7)[topic][0] == {0: 3, 1: 0, 2: 5, 3: 0}
