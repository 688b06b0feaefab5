"""Lean, bounded decoders and encoders for the three exchanges of a batched Kafka slot.

kafka-python decodes every answer into generic objects, one per partition; for an
OffsetFetch of 10 groups x 1,000 partitions that is most of a slot's CPU. These decoders
read the same bytes with :func:`struct.unpack_from` straight into dictionaries of ints:

* :func:`decode_offset_fetch`: OffsetFetch responses v8 and v9 (KIP-709, many groups;
  flexible: compact arrays and strings, tagged fields);
* :func:`decode_list_offsets`: ListOffsets responses v1 to v11 (flexible from v6);
* :func:`decode_metadata`: Metadata responses v1 to v13 (flexible from v9), read for
  each topic's error code and its partitions' leaders only.

Their requests are written from plain names and partition numbers
(:func:`encode_metadata`, :func:`encode_offset_fetch`, :func:`encode_list_offsets`): the
bytes kafka-python's encoder writes for the same fields, without one object per partition.

Every length and count is checked against the bytes that remain before anything is
allocated (an array of *n* elements needs at least *n* times its smallest element), a
varint is at most 5 bytes, and the answer must end where its bytes end. Bad input raises
:class:`WireError` (a ``ValueError``, which kafka-python's parser reports as a protocol
error), never another exception. Error codes stay per group, per topic and per partition.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = (
    "ListOffsetsAnswer",
    "MetadataAnswer",
    "OffsetFetchAnswer",
    "TopicOffsets",
    "WireError",
    "decode_list_offsets",
    "decode_metadata",
    "decode_offset_fetch",
    "encode_list_offsets",
    "encode_metadata",
    "encode_offset_fetch",
)

OFFSET_FETCH_VERSIONS: Final = (8, 9)
LIST_OFFSETS_VERSIONS: Final = (1, 11)
METADATA_VERSIONS: Final = (1, 13)

_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_FETCH_PART: Final = struct.Struct(">iqi")  # partition, committed offset, leader epoch
_LIST_PART: Final = struct.Struct(">ihqq")  # partition, error, timestamp, offset
# partition, committed offset, leader epoch, metadata's first byte, error, tag count byte
_FETCH_FAST: Final = struct.Struct(">iqiBhB")
_META_PART: Final = struct.Struct(">hii")  # error, partition, leader


class WireError(ValueError):
    """An answer that does not parse: truncated, oversized or inconsistent."""


class TopicOffsets:
    """One topic's partitions in an answer: offsets and the partitions' error codes."""

    __slots__ = ("errors", "offsets")

    def __init__(self) -> None:
        #: partition -> offset (committed offset, or the listed log offset)
        self.offsets: dict[int, int] = {}
        #: partition -> error code, only for partitions whose code is not 0
        self.errors: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"TopicOffsets({len(self.offsets)} partitions, errors={self.errors})"


class OffsetFetchAnswer:
    """A decoded OffsetFetch v8+ response: per group, its error code and its topics."""

    __slots__ = ("groups", "throttle_time_ms")

    def __init__(self, throttle_time_ms: int) -> None:
        self.throttle_time_ms = throttle_time_ms  # kafka-python reads it for quotas
        #: group -> (group error code, topic -> offsets)
        self.groups: dict[str, tuple[int, dict[str, TopicOffsets]]] = {}

    def __repr__(self) -> str:
        return f"OffsetFetchAnswer({len(self.groups)} groups)"


class ListOffsetsAnswer:
    """A decoded ListOffsets response: topic -> offsets and error codes."""

    __slots__ = ("throttle_time_ms", "topics")

    def __init__(self, throttle_time_ms: int) -> None:
        self.throttle_time_ms = throttle_time_ms
        self.topics: dict[str, TopicOffsets] = {}

    def __repr__(self) -> str:
        return f"ListOffsetsAnswer({len(self.topics)} topics)"


class MetadataAnswer:
    """A decoded Metadata response: topic -> (topic error code, partition -> leader id).

    A partition whose own error code is not 0 has leader ``-1`` (no usable leader)."""

    __slots__ = ("throttle_time_ms", "topics")

    def __init__(self, throttle_time_ms: int) -> None:
        self.throttle_time_ms = throttle_time_ms
        self.topics: dict[str, tuple[int, dict[int, int]]] = {}

    def __repr__(self) -> str:
        return f"MetadataAnswer({len(self.topics)} topics)"


def _uvarint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes (a 32-bit value)."""
    value = shift = 0
    for _ in range(5):
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise WireError("varint out of range")
            return value, pos
        shift += 7
    raise WireError("varint longer than 5 bytes")


def _count(data: bytes, pos: int, end: int, flexible: bool, least: int) -> tuple[int, int]:
    """An array's element count (``-1``, null, is refused), bounded by what remains:
    every element takes at least ``least`` bytes."""
    if flexible:
        raw, pos = _uvarint(data, pos, end)
        n = raw - 1
    else:
        if pos + 4 > end:
            raise WireError("truncated array length")
        (n,) = _I32.unpack_from(data, pos)
        pos += 4
    if n < 0:
        raise WireError("null array")
    if n * least > end - pos:
        raise WireError(f"array of {n} elements is longer than the answer")
    return n, pos


def _string(data: bytes, pos: int, end: int, flexible: bool) -> tuple[str, int]:
    if flexible:
        raw, pos = _uvarint(data, pos, end)
        n = raw - 1
    else:
        if pos + 2 > end:
            raise WireError("truncated string length")
        (n,) = _I16.unpack_from(data, pos)
        pos += 2
    if n < 0:
        raise WireError("null string")
    if n > end - pos:
        raise WireError("string longer than the answer")
    try:
        return data[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise WireError("string is not UTF-8") from exc


def _skip_string(data: bytes, pos: int, end: int, flexible: bool) -> int:
    """Skip a nullable string (its length checked against what remains)."""
    if flexible:
        raw, pos = _uvarint(data, pos, end)
        n = raw - 1
    else:
        _need(pos, 2, end)
        (n,) = _I16.unpack_from(data, pos)
        pos += 2
    if n < -1:
        raise WireError("negative string length")
    if n > end - pos:
        raise WireError("string longer than the answer")
    return pos + max(n, 0)


def _skip_ints(data: bytes, pos: int, end: int, flexible: bool) -> int:
    """Skip an array of int32 (replica lists)."""
    n, pos = _count(data, pos, end, flexible, 4)
    return pos + 4 * n


def _skip_tags(data: bytes, pos: int, end: int) -> int:
    """Skip a tagged-fields section (nothing in these answers is read from it)."""
    if pos < end and data[pos] == 0:  # the common case: no tagged fields
        return pos + 1
    count, pos = _uvarint(data, pos, end)
    if count > end - pos:
        raise WireError("more tagged fields than bytes")
    for _ in range(count):
        _, pos = _uvarint(data, pos, end)
        size, pos = _uvarint(data, pos, end)
        if size > end - pos:
            raise WireError("tagged field longer than the answer")
        pos += size
    return pos


def _need(pos: int, size: int, end: int) -> None:
    if pos + size > end:
        raise WireError("truncated answer")


def _fetch_slow(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The rest of an OffsetFetch partition from its metadata on: (next position, error)."""
    # metadata: a compact nullable string, skipped (0 is null, 1 is empty)
    raw, pos = _uvarint(data, pos, end)
    if raw - 1 > end - pos:
        raise WireError("metadata longer than the answer")
    pos += max(raw - 1, 0)
    _need(pos, 2, end)
    (code,) = _I16.unpack_from(data, pos)
    return _skip_tags(data, pos + 2, end), code


#: Records per unpack of a run (the cached structs of one shape stay about 200 KB each).
_RUN: Final = 1024


@functools.lru_cache(maxsize=16)
def _run_struct(shape: str, n: int) -> struct.Struct:
    """``n`` records of ``shape`` in one struct (cached: a slot reads the same counts)."""
    return struct.Struct(">" + shape * n)


def _unpack_run(shape: str, data: bytes, pos: int, n: int) -> list[tuple[int, ...]]:
    """``n`` records of ``shape`` from ``pos``, as flat tuples of at most :data:`_RUN`
    records each (the caller checked that they fit in the bytes that remain)."""
    size = struct.calcsize(">" + shape)
    out = []
    while n > 0:
        k = min(n, _RUN)
        out.append(_run_struct(shape, k).unpack_from(data, pos))
        pos += k * size
        n -= k
    return out


def _fetch_run(
    data: bytes, pos: int, n: int, offsets: dict[int, int], errors: dict[int, int]
) -> bool:
    """Read ``n`` OffsetFetch partitions at ``pos`` in a few unpacks when every one has
    the common shape (20 bytes: metadata null or empty, no tagged fields); ``False`` (and
    nothing read) otherwise. The caller checked that ``20 * n`` bytes remain.

    Each record's shape is checked: if the first record that is not the common shape is
    the ``k``-th, the records before it were read at their true places and the ``k``-th
    itself fails the check, so the run is refused.
    """
    if n < 2:
        return False
    flats = _unpack_run("iqiBhB", data, pos, n)
    for flat in flats:
        if max(flat[3::6]) > 1 or any(flat[5::6]):
            return False
    for flat in flats:
        parts = flat[0::6]
        offsets.update(zip(parts, flat[1::6], strict=True))
        codes = flat[4::6]
        if any(codes):
            errors.update((p, c) for p, c in zip(parts, codes, strict=True) if c)
    return True


def decode_offset_fetch(data: bytes, version: int) -> OffsetFetchAnswer:
    """Decode an OffsetFetch response body (after its header), versions 8 and 9."""
    if not OFFSET_FETCH_VERSIONS[0] <= version <= OFFSET_FETCH_VERSIONS[1]:
        raise WireError(f"OffsetFetch v{version} is not decoded here")
    end = len(data)
    _need(0, 4, end)
    (throttle,) = _I32.unpack_from(data, 0)
    answer = OffsetFetchAnswer(throttle)
    # smallest group: id (1) + topics (1) + error (2) + tags (1)
    n_groups, pos = _count(data, 4, end, True, 5)
    for _ in range(n_groups):
        group, pos = _string(data, pos, end, True)
        # smallest topic: name (1) + partitions (1) + tags (1)
        n_topics, pos = _count(data, pos, end, True, 3)
        topics: dict[str, TopicOffsets] = {}
        for _ in range(n_topics):
            name, pos = _string(data, pos, end, True)
            # smallest partition: 16 fixed + metadata (1) + error (2) + tags (1)
            n_parts, pos = _count(data, pos, end, True, 20)
            found = topics.get(name)
            if found is None:
                found = topics[name] = TopicOffsets()
            offsets, errors = found.offsets, found.errors
            if _fetch_run(data, pos, n_parts, offsets, errors):
                pos += 20 * n_parts
                n_parts = 0
            for _ in range(n_parts):
                if pos + 20 > end:  # the smallest partition (see above)
                    raise WireError("truncated answer")
                # the common shape in one unpack: metadata null or empty, no tagged fields
                partition, offset, _epoch, meta, code, tags = _FETCH_FAST.unpack_from(data, pos)
                if meta < 2 and tags == 0:
                    pos += 20
                else:
                    pos, code = _fetch_slow(data, pos + 16, end)
                offsets[partition] = offset
                if code:
                    errors[partition] = code
            pos = _skip_tags(data, pos, end)
        _need(pos, 2, end)
        (group_code,) = _I16.unpack_from(data, pos)
        pos = _skip_tags(data, pos + 2, end)
        answer.groups[group] = (group_code, topics)
    pos = _skip_tags(data, pos, end)
    if pos != end:
        raise WireError(f"{end - pos} bytes left after the answer")
    return answer


def _list_run(
    data: bytes, pos: int, n: int, version: int, offsets: dict[int, int], errors: dict[int, int]
) -> bool:
    """Read ``n`` ListOffsets partitions at ``pos`` in a few unpacks (flexible versions:
    when none has tagged fields); ``False`` (and nothing read) otherwise. The caller
    checked that the records fit in the bytes that remain."""
    if n < 2:
        return False
    shape = "ihqq" + ("i" if version >= 4 else "") + ("B" if version >= 6 else "")
    width = len(shape)
    flats = _unpack_run(shape, data, pos, n)
    if version >= 6:
        for flat in flats:
            if any(flat[width - 1 :: width]):
                return False
    for flat in flats:
        parts = flat[0::width]
        offsets.update(zip(parts, flat[3::width], strict=True))
        codes = flat[1::width]
        if any(codes):
            errors.update((p, c) for p, c in zip(parts, codes, strict=True) if c)
    return True


def decode_metadata(data: bytes, version: int) -> MetadataAnswer:
    """Decode a Metadata response body (after its header), versions 1 to 13: each topic's
    error code and its partitions' leaders; brokers and replica lists are skipped."""
    if not METADATA_VERSIONS[0] <= version <= METADATA_VERSIONS[1]:
        raise WireError(f"Metadata v{version} is not decoded here")
    flexible = version >= 9
    tag = 1 if flexible else 0
    end = len(data)
    pos = 0
    throttle = 0
    if version >= 3:
        _need(0, 4, end)
        (throttle,) = _I32.unpack_from(data, 0)
        pos = 4
    answer = MetadataAnswer(throttle)
    # smallest broker: node (4) + host (1 or 2) + port (4) + rack (1 or 2) + tags
    n_brokers, pos = _count(data, pos, end, flexible, 11 if flexible else 12)
    for _ in range(n_brokers):
        _need(pos, 4, end)
        pos = _skip_string(data, pos + 4, end, flexible)  # node id, host
        _need(pos, 4, end)
        pos = _skip_string(data, pos + 4, end, flexible)  # port, rack
        if flexible:
            pos = _skip_tags(data, pos, end)
    if version >= 2:
        pos = _skip_string(data, pos, end, flexible)  # cluster id
    _need(pos, 4, end)
    pos += 4  # controller id
    uuid = 16 if version >= 10 else 0
    topic_auth = 4 if version >= 8 else 0
    epoch = 4 if version >= 7 else 0
    offline = version >= 5
    # smallest topic: error (2) + name + id + internal (1) + partitions + auth + tags
    least_topic = 2 + (1 if flexible else 2) + uuid + 1 + (1 if flexible else 4) + topic_auth + tag
    n_topics, pos = _count(data, pos, end, flexible, least_topic)
    for _ in range(n_topics):
        _need(pos, 2, end)
        (topic_code,) = _I16.unpack_from(data, pos)
        pos += 2
        name: str | None = None
        if version >= 12 and pos < end and data[pos] == 0:  # null (a topic asked by id)
            pos += 1
        else:
            name, pos = _string(data, pos, end, flexible)
        _need(pos, uuid + 1, end)
        pos += uuid + 1  # topic id, is internal
        arrays = 2 + int(offline)
        # smallest partition: error (2) + index (4) + leader (4) + epoch + arrays + tags
        least = 10 + epoch + arrays * (1 if flexible else 4) + tag
        n_parts, pos = _count(data, pos, end, flexible, least)
        leaders: dict[int, int] = {}
        for _ in range(n_parts):
            _need(pos, 10 + epoch, end)
            code, partition, leader = _META_PART.unpack_from(data, pos)
            pos += 10 + epoch
            for _ in range(arrays):  # replicas, in-sync replicas, offline replicas
                # the common case inline: a compact array of fewer than 127 ids
                if flexible and pos < end and 0 < data[pos] < 0x80:
                    pos += 1 + 4 * (data[pos] - 1)
                else:
                    pos = _skip_ints(data, pos, end, flexible)
            if flexible:
                if pos < end and data[pos] == 0:
                    pos += 1
                else:
                    pos = _skip_tags(data, pos, end)
            leaders[partition] = leader if not code else -1
        _need(pos, topic_auth, end)
        pos += topic_auth
        if flexible:
            pos = _skip_tags(data, pos, end)
        if name is not None:
            answer.topics[name] = (topic_code, leaders)
    if 8 <= version <= 10:
        _need(pos, 4, end)
        pos += 4  # cluster authorized operations
    if version >= 13:
        _need(pos, 2, end)
        pos += 2  # top-level error code (the topics then come back empty)
    if flexible:
        pos = _skip_tags(data, pos, end)
    if pos != end:
        raise WireError(f"{end - pos} bytes left after the answer")
    return answer


def decode_list_offsets(data: bytes, version: int) -> ListOffsetsAnswer:
    """Decode a ListOffsets response body (after its header), versions 1 to 11."""
    if not LIST_OFFSETS_VERSIONS[0] <= version <= LIST_OFFSETS_VERSIONS[1]:
        raise WireError(f"ListOffsets v{version} is not decoded here")
    flexible = version >= 6
    epoch = 4 if version >= 4 else 0
    fixed = _LIST_PART.size + epoch
    end = len(data)
    pos = 0
    throttle = 0
    if version >= 2:
        _need(0, 4, end)
        (throttle,) = _I32.unpack_from(data, 0)
        pos = 4
    answer = ListOffsetsAnswer(throttle)
    n_topics, pos = _count(data, pos, end, flexible, 2 if flexible else 6)
    for _ in range(n_topics):
        name, pos = _string(data, pos, end, flexible)
        n_parts, pos = _count(data, pos, end, flexible, fixed + (1 if flexible else 0))
        found = answer.topics.get(name)
        if found is None:
            found = answer.topics[name] = TopicOffsets()
        offsets, errors = found.offsets, found.errors
        if _list_run(data, pos, n_parts, version, offsets, errors):
            pos += (fixed + (1 if flexible else 0)) * n_parts
            n_parts = 0
        for _ in range(n_parts):
            _need(pos, fixed, end)
            partition, code, _timestamp, offset = _LIST_PART.unpack_from(data, pos)
            pos += fixed
            if flexible:
                pos = _skip_tags(data, pos, end)
            offsets[partition] = offset
            if code:
                errors[partition] = code
        if flexible:
            pos = _skip_tags(data, pos, end)
    if flexible:
        pos = _skip_tags(data, pos, end)
    if pos != end:
        raise WireError(f"{end - pos} bytes left after the answer")
    return answer


# -- requests -------------------------------------------------------------------------------

_I32_I64: Final = struct.Struct(">iq")  # partition, timestamp (v1-3)
_I32_I32_I64: Final = struct.Struct(">iiq")  # partition, leader epoch, timestamp (v4-5)
_I32_I32_I64_TAGS: Final = struct.Struct(">iiqB")  # the same and no tagged fields (v6+)
_NO_EPOCH: Final = -1  # CurrentLeaderEpoch / MemberEpoch: unknown


def _put_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_string(out: bytearray, text: str, flexible: bool) -> None:
    raw = text.encode("utf-8")
    if flexible:
        _put_uvarint(out, len(raw) + 1)
    else:
        if len(raw) > 0x7FFF:
            raise WireError("string too long for the request")
        out += _I16.pack(len(raw))
    out += raw


def _put_count(out: bytearray, n: int, flexible: bool) -> None:
    if flexible:
        _put_uvarint(out, n + 1)
    else:
        out += _I32.pack(n)


def encode_offset_fetch(
    version: int, groups: Mapping[str, Mapping[str, Sequence[int]] | None]
) -> bytes:
    """An OffsetFetch request body, v8 or v9 (many groups; ``None``: every topic the
    group committed to), ``require_stable`` false."""
    if not OFFSET_FETCH_VERSIONS[0] <= version <= OFFSET_FETCH_VERSIONS[1]:
        raise WireError(f"OffsetFetch v{version} is not encoded here")
    out = bytearray()
    _put_count(out, len(groups), True)
    for group, topics in groups.items():
        _put_string(out, group, True)
        if version >= 9:
            out += b"\x00"  # MemberId: null
            out += _I32.pack(_NO_EPOCH)
        if topics is None:
            out += b"\x00"  # null: every topic
        else:
            _put_count(out, len(topics), True)
            for topic, ps in topics.items():
                _put_string(out, topic, True)
                _put_count(out, len(ps), True)
                out += struct.pack(f">{len(ps)}i", *ps)
                out += b"\x00"  # tagged fields (topic)
        out += b"\x00"  # tagged fields (group)
    out += b"\x00\x00"  # RequireStable false, tagged fields
    return bytes(out)


def encode_list_offsets(version: int, timestamp: int, topics: Mapping[str, Sequence[int]]) -> bytes:
    """A ListOffsets request body, v1 to v11, from a consumer (replica -1, read
    uncommitted): one ``timestamp`` (-1 latest, -2 earliest) for every partition."""
    if not LIST_OFFSETS_VERSIONS[0] <= version <= LIST_OFFSETS_VERSIONS[1]:
        raise WireError(f"ListOffsets v{version} is not encoded here")
    flexible = version >= 6
    out = bytearray(_I32.pack(-1))  # ReplicaId: a consumer
    if version >= 2:
        out.append(0)  # IsolationLevel: read uncommitted
    _put_count(out, len(topics), flexible)
    for topic, ps in topics.items():
        _put_string(out, topic, flexible)
        _put_count(out, len(ps), flexible)
        if flexible:
            pack = _I32_I32_I64_TAGS.pack
            out += b"".join([pack(p, _NO_EPOCH, timestamp, 0) for p in ps])
            out += b"\x00"  # tagged fields (topic)
        elif version >= 4:
            pack3 = _I32_I32_I64.pack
            out += b"".join([pack3(p, _NO_EPOCH, timestamp) for p in ps])
        else:
            pack2 = _I32_I64.pack
            out += b"".join([pack2(p, timestamp) for p in ps])
    if version >= 10:
        out += _I32.pack(0)  # TimeoutMs
    if flexible:
        out += b"\x00"  # tagged fields
    return bytes(out)


def encode_metadata(version: int, topics: Sequence[str]) -> bytes:
    """A Metadata request body, v1 to v13, for ``topics`` by name: no topic creation, no
    authorized operations."""
    if not METADATA_VERSIONS[0] <= version <= METADATA_VERSIONS[1]:
        raise WireError(f"Metadata v{version} is not encoded here")
    flexible = version >= 9
    out = bytearray()
    _put_count(out, len(topics), flexible)
    for topic in topics:
        if version >= 10:
            out += bytes(16)  # TopicId: zero, the topic is named
        _put_string(out, topic, flexible)
        if flexible:
            out.append(0)  # tagged fields (topic)
    if version >= 4:
        out.append(0)  # AllowAutoTopicCreation false
    if 8 <= version <= 10:
        out.append(0)  # IncludeClusterAuthorizedOperations false
    if version >= 8:
        out.append(0)  # IncludeTopicAuthorizedOperations false
    if flexible:
        out.append(0)  # tagged fields
    return bytes(out)
