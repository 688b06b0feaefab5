"""Pure lag maths of the ``kafka`` scaler: no I/O, every rule testable with plain numbers.

Per-partition lag, the sums of one poll, ``partitionLimitation``, and the cap at the
partition count with ``limitToPartitionsWithLag`` and
``ensureEvenDistributionOfPartitions``, as in KEDA's ``pkg/scalers/kafka_scaler.go``
(``getLagForPartition``, ``getTotalLag``); docs/scalers/kafka.md explains each rule.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Final

import attrs

from eventscale.errors import ScalerError
from eventscale.scalers.kafka.config import KafkaMetadata, OffsetResetPolicy

__all__ = (
    "INVALID_OFFSET",
    "LagTotals",
    "TopicPartition",
    "cap_total_lag",
    "compute_lag",
    "compute_lag_by_topic",
    "find_factors",
    "lag_for_partition",
    "next_factor",
    "select_partitions",
)

#: The committed offset a group has for a partition it never committed (Kafka's -1).
INVALID_OFFSET: Final = -1

#: (topic, partition)
TopicPartition = tuple[str, int]


def lag_for_partition(
    topic: str,
    partition: int,
    committed: int | None,
    latest_offsets: Mapping[str, Mapping[int, int]],
    *,
    policy: OffsetResetPolicy = OffsetResetPolicy.LATEST,
    scale_to_zero_on_invalid_offset: bool = False,
    earliest_offsets: Mapping[TopicPartition, int] | None = None,
    exclude_persistent_lag: bool = False,
    previous_offsets: MutableMapping[TopicPartition, int] | None = None,
) -> tuple[int, int]:
    """``(lag, lag_with_persistent)`` of one partition (KEDA's ``getLagForPartition``).

    With ``earliest`` and no commit it counts ``log end - log start`` (KEDA PR #7937).

    ``committed`` is the group's committed offset (:data:`INVALID_OFFSET` when there is
    none); ``None`` means the broker gave no answer for the partition, which is an error.
    ``earliest_offsets`` holds log start offsets; where one is missing, ``earliest`` with
    no commit falls back to the log end offset. ``previous_offsets`` is the
    ``excludePersistentLag`` memory and is updated in place.

    :raises ScalerError: when ``committed`` is ``None``.
    """
    if committed is None:
        raise ScalerError(
            f"no committed-offset answer for topic {topic!r} partition {partition}",
            transient=True,
        )
    if committed == INVALID_OFFSET:
        if policy is OffsetResetPolicy.LATEST:
            return (0, 0) if scale_to_zero_on_invalid_offset else (1, 1)
        if scale_to_zero_on_invalid_offset:
            return (0, 0)
    partitions = latest_offsets.get(topic)
    if partitions is None or partition not in partitions:
        return (0, 0)
    latest = partitions[partition]
    if committed == INVALID_OFFSET:
        start = (earliest_offsets or {}).get((topic, partition))
        lag = latest - start if start is not None else latest
        return (lag, lag)
    if exclude_persistent_lag and previous_offsets is not None:
        seen = previous_offsets.get((topic, partition))
        if seen is not None and seen == committed:
            return (0, latest - committed)
        previous_offsets[(topic, partition)] = committed
    lag = latest - committed
    return (lag, lag)


@attrs.frozen(kw_only=True)
class LagTotals:
    """The sums of one poll before capping.

    ``per_partition`` maps (topic, partition) to (lag, lag with persistent lag); it may be
    built when first read.
    """

    total_lag: int
    total_lag_with_persistent: int
    partitions: int
    partitions_with_lag: int
    per_partition: Mapping[TopicPartition, tuple[int, int]] = attrs.field(factory=dict)


def compute_lag(
    committed: Mapping[TopicPartition, int],
    latest_offsets: Mapping[str, Mapping[int, int]],
    *,
    policy: OffsetResetPolicy = OffsetResetPolicy.LATEST,
    scale_to_zero_on_invalid_offset: bool = False,
    earliest_offsets: Mapping[TopicPartition, int] | None = None,
    exclude_persistent_lag: bool = False,
    previous_offsets: MutableMapping[TopicPartition, int] | None = None,
) -> LagTotals:
    """Sum :func:`lag_for_partition` over every partition in ``latest_offsets``.

    A partition of ``latest_offsets`` that is missing from ``committed`` is an error.
    """
    by_topic: dict[str, dict[int, int]] = {}
    for (topic, partition), offset in committed.items():
        found = by_topic.get(topic)
        if found is None:
            found = by_topic[topic] = {}
        found[partition] = offset
    return compute_lag_by_topic(
        by_topic,
        latest_offsets,
        policy=policy,
        scale_to_zero_on_invalid_offset=scale_to_zero_on_invalid_offset,
        earliest_offsets=earliest_offsets,
        exclude_persistent_lag=exclude_persistent_lag,
        previous_offsets=previous_offsets,
    )


_NO_COMMITS: Final[Mapping[int, int]] = {}
_ZERO: Final = 0


def compute_lag_by_topic(
    committed: Mapping[str, Mapping[int, int]],
    latest_offsets: Mapping[str, Mapping[int, int]],
    *,
    policy: OffsetResetPolicy = OffsetResetPolicy.LATEST,
    scale_to_zero_on_invalid_offset: bool = False,
    earliest_offsets: Mapping[TopicPartition, int] | None = None,
    exclude_persistent_lag: bool = False,
    previous_offsets: MutableMapping[TopicPartition, int] | None = None,
) -> LagTotals:
    """:func:`compute_lag` with the committed offsets per topic (topic -> partition ->
    offset), the shape the batch path reads them in.

    A topic whose partitions all have a commit (the common case) is counted in one pass
    of C-level maps, ``log end - committed``; every other case (no commit, no answer,
    ``excludePersistentLag``) goes partition by partition through
    :func:`lag_for_partition`, the one place of the rules.
    """
    total = total_persistent = count = with_lag = 0
    per: dict[TopicPartition, tuple[int, int]] = {}
    runs: list[_Run] = []  # what per_partition is built from, in order
    remember = exclude_persistent_lag and previous_offsets is not None
    for topic, partitions in latest_offsets.items():
        commits = committed.get(topic, _NO_COMMITS)
        count += len(partitions)
        if not remember and commits.keys() >= partitions.keys():
            offsets = list(map(commits.__getitem__, partitions))
            if INVALID_OFFSET not in offsets:
                lags = list(map(operator.sub, partitions.values(), offsets))
                lag_sum = sum(lags)
                total += lag_sum
                total_persistent += lag_sum
                with_lag += len(lags) - sum(map(_ZERO.__ge__, lags))  # lags > 0
                if per:
                    runs.append(per)
                    per = {}
                runs.append((topic, list(partitions), lags))
                continue
        for partition, latest in partitions.items():
            offset = commits.get(partition)
            if offset is not None and offset != INVALID_OFFSET and not remember:
                lag = persistent = latest - offset
            else:
                lag, persistent = lag_for_partition(
                    topic,
                    partition,
                    offset,
                    latest_offsets,
                    policy=policy,
                    scale_to_zero_on_invalid_offset=scale_to_zero_on_invalid_offset,
                    earliest_offsets=earliest_offsets,
                    exclude_persistent_lag=exclude_persistent_lag,
                    previous_offsets=previous_offsets,
                )
            per[(topic, partition)] = (lag, persistent)
            total += lag
            total_persistent += persistent
            if lag > 0:
                with_lag += 1
    if runs and per:
        runs.append(per)
    return LagTotals(
        total_lag=total,
        total_lag_with_persistent=total_persistent,
        partitions=count,
        partitions_with_lag=with_lag,
        per_partition=_PerPartition(runs) if runs else per,
    )


#: A part of ``per_partition``: a topic summed in one pass (topic, its partitions, their
#: lags; the lag with persistent lag is the same there) or a ready dictionary.
_Run = tuple[str, list[int], list[int]] | dict[TopicPartition, tuple[int, int]]


class _PerPartition(Mapping[TopicPartition, tuple[int, int]]):
    """``per_partition`` of :class:`LagTotals` built when first read: a poll whose totals
    nobody inspects per partition makes no object per partition."""

    __slots__ = ("_built", "_runs")

    def __init__(self, runs: list[_Run]) -> None:
        self._runs = runs
        self._built: dict[TopicPartition, tuple[int, int]] | None = None

    def _dict(self) -> dict[TopicPartition, tuple[int, int]]:
        built = self._built
        if built is None:
            built = {}
            for run in self._runs:
                if isinstance(run, dict):
                    built.update(run)
                    continue
                topic, partitions, lags = run
                keys = zip(itertools.repeat(topic), partitions)
                built.update(zip(keys, zip(lags, lags, strict=True), strict=False))
            self._built, self._runs = built, []
        return built

    def __getitem__(self, key: TopicPartition) -> tuple[int, int]:
        return self._dict()[key]

    def __iter__(self) -> Iterator[TopicPartition]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return repr(self._dict())


def select_partitions(
    topic: str, partitions: Iterable[int], limitation: Sequence[int] | None
) -> list[int]:
    """The partitions of ``topic`` to read: all, or those ``partitionLimitation`` allows.

    :raises ScalerError: when none is left.
    """
    ids = sorted(partitions)
    if limitation is not None:
        allowed = set(limitation)
        ids = [i for i in ids if i in allowed]
    if not ids:
        raise ScalerError(
            f"expected at least one active partition within the topic {topic!r}",
            transient=False,
        )
    return ids


def find_factors(n: int) -> list[int]:
    """Every divisor of ``n`` in ascending order (``find_factors(10) == [1, 2, 5, 10]``)."""
    if n < 1:
        return []
    small: list[int] = []
    large: list[int] = []
    for i in range(1, math.isqrt(n) + 1):
        if n % i == 0:
            small.append(i)
            if i != n // i:
                large.append(n // i)
    return small + large[::-1]


def next_factor(total_lag: int, partitions: int, lag_threshold: int) -> int:
    """The smallest divisor ``f`` of ``partitions`` with ``f * lag_threshold >= total_lag``."""
    for factor in find_factors(partitions):
        if factor * lag_threshold >= total_lag:
            return factor
    return partitions


def cap_total_lag(totals: LagTotals, meta: KafkaMetadata) -> int:
    """The metric value after capping (KEDA's ``getTotalLag``); activity uses the uncapped sum."""
    total = totals.total_lag
    if not meta.capped:
        return total
    upper = totals.partitions
    if meta.ensure_even_distribution_of_partitions:
        factor = next_factor(total, totals.partitions, meta.lag_threshold)
        total = factor * meta.lag_threshold
    if meta.limit_to_partitions_with_lag:
        upper = totals.partitions_with_lag
    # Go's integer division truncates toward zero.
    quotient = int(total / meta.lag_threshold)
    if quotient > upper:
        total = upper * meta.lag_threshold
    return total
