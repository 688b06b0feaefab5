"""Kafka lag maths: per-partition lag, sums, partition selection and capping.

The KL and KD vectors follow KEDA's ``pkg/scalers/kafka_scaler_test.go``; the functions
are pure, so no broker is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscale.errors import ScalerError
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka._lag import (
    INVALID_OFFSET,
    cap_total_lag,
    compute_lag,
    compute_lag_by_topic,
    find_factors,
    lag_for_partition,
    next_factor,
    select_partitions,
)
from eventscale.scalers.kafka.config import KafkaMetadata, OffsetResetPolicy

TOPIC = {"bootstrapServers": "foobar:9092", "consumerGroup": "my-group", "topic": "my-topic"}


def parse(metadata: Mapping[str, str]) -> KafkaMetadata:
    return KafkaMetadata.from_context(TriggerContext(metadata=metadata, trigger_type="kafka"))


# ---------------------------------------------------------------------------- topic partitions


def test_topic_partitions_limited() -> None:
    assert select_partitions("my-topic", range(1, 7), (1, 2, 3)) == [1, 2, 3]
    assert select_partitions("my-topic", range(1, 7), None) == [1, 2, 3, 4, 5, 6]


def test_topic_partitions_none_left_is_error() -> None:
    with pytest.raises(ScalerError, match="at least one active partition"):
        select_partitions("my-topic", range(4), (7, 8))


# ---------------------------------------------------------------------------- KL1-KL5


@pytest.mark.parametrize(
    ("committed", "latest", "policy", "scale_to_zero", "expected"),
    [
        pytest.param(-1, {"test-topic": {}}, "earliest", True, (0, 0), id="KL1"),
        pytest.param(-1, {"test-topic": {}}, "earliest", False, (0, 0), id="KL2"),
        pytest.param(100, {"test-topic": {}}, "earliest", False, (0, 0), id="KL3"),
        pytest.param(100, {"test-topic": {0: 150}}, "earliest", False, (50, 50), id="KL4"),
        pytest.param(-1, {"test-topic": {0: 150}}, "latest", True, (0, 0), id="KL5"),
        pytest.param(-1, {"test-topic": {0: 150}}, "latest", False, (1, 1), id="latest-invalid"),
        pytest.param(-1, {}, "earliest", False, (0, 0), id="topic-missing"),
        pytest.param(200, {"test-topic": {0: 150}}, "latest", False, (-50, -50), id="ahead"),
    ],
)
def test_lag_for_partition(
    committed: int,
    latest: dict[str, dict[int, int]],
    policy: str,
    scale_to_zero: bool,
    expected: tuple[int, int],
) -> None:
    got = lag_for_partition(
        "test-topic",
        0,
        committed,
        latest,
        policy=OffsetResetPolicy(policy),
        scale_to_zero_on_invalid_offset=scale_to_zero,
    )
    assert got == expected


def test_earliest_without_commit_counts_log_end_minus_log_start() -> None:
    # KEDA PR #7937: retention deleted 40 records, only 110 remain to be read
    got = lag_for_partition(
        "t",
        0,
        INVALID_OFFSET,
        {"t": {0: 150}},
        policy=OffsetResetPolicy.EARLIEST,
        earliest_offsets={("t", 0): 40},
    )
    assert got == (110, 110)
    # log start unknown (its request failed): the log end offset, as upstream falls back
    got = lag_for_partition(
        "t", 0, INVALID_OFFSET, {"t": {0: 150}}, policy=OffsetResetPolicy.EARLIEST
    )
    assert got == (150, 150)


def test_no_committed_offset_answer_is_an_error() -> None:
    with pytest.raises(ScalerError):
        lag_for_partition("t", 0, None, {"t": {0: 1}})


# ---------------------------------------------------------------------------- factors


@pytest.mark.parametrize(
    ("n", "factors"),
    [
        (10, [1, 2, 5, 10]),
        (13, [1, 13]),
        (17, [1, 17]),
        (25, [1, 5, 25]),
        (50, [1, 2, 5, 10, 25, 50]),
        (100, [1, 2, 4, 5, 10, 20, 25, 50, 100]),
    ],
)
def test_find_factors(n: int, factors: list[int]) -> None:
    assert find_factors(n) == factors


@pytest.mark.parametrize(
    ("lag", "factor"), [(10, 1), (20, 2), (40, 4), (50, 5), (99, 10), (100, 10), (101, 20)]
)
def test_next_factor(lag: int, factor: int) -> None:
    assert next_factor(lag, 100, 10) == factor


# ---------------------------------------------------------------------------- KD1-KD9


def _evaluate(
    lags_or_committed: Mapping[int, int],
    latest: Mapping[int, int],
    **metadata: str,
) -> tuple[int, bool]:
    meta = parse({**TOPIC, **metadata})
    totals = compute_lag(
        {("my-topic", p): o for p, o in lags_or_committed.items()},
        {"my-topic": dict(latest)},
        policy=meta.offset_reset_policy,
        scale_to_zero_on_invalid_offset=meta.scale_to_zero_on_invalid_offset,
    )
    active = totals.total_lag_with_persistent > meta.activation_lag_threshold
    return cap_total_lag(totals, meta), active


def _committed_for(lags: list[int], end: int = 1000) -> tuple[dict[int, int], dict[int, int]]:
    return {p: end - lag for p, lag in enumerate(lags)}, dict.fromkeys(range(len(lags)), end)


@pytest.mark.parametrize(
    ("lags", "metadata", "metric", "active"),
    [
        pytest.param([5, 0, 0], {}, 5, True, id="KD1"),
        pytest.param([15, 14], {"allowIdleConsumers": "false"}, 29, True, id="KD2"),
        pytest.param([20, 15], {}, 20, True, id="KD3"),
        pytest.param([20, 15], {"allowIdleConsumers": "true"}, 35, True, id="KD4"),
        pytest.param(
            [15] + [0] * 9, {"ensureEvenDistributionOfPartitions": "true"}, 20, True, id="KD5"
        ),
        pytest.param(
            [0] * 10,
            {"ensureEvenDistributionOfPartitions": "true", "activationLagThreshold": "0"},
            10,
            False,
            id="KD6",
        ),
        pytest.param([30, 0, 0, 0], {"limitToPartitionsWithLag": "true"}, 10, True, id="KD7"),
        pytest.param([0, 0, 0], {}, 0, False, id="no-lag"),
        pytest.param([3, 0], {"activationLagThreshold": "3"}, 3, False, id="activation-boundary"),
        pytest.param([4, 0], {"activationLagThreshold": "3"}, 4, True, id="activation-over"),
    ],
)
def test_derived_vectors(
    lags: list[int], metadata: dict[str, str], metric: int, active: bool
) -> None:
    committed, latest = _committed_for(lags)
    assert _evaluate(committed, latest, **metadata) == (metric, active)


def test_kd8_latest_without_commits() -> None:
    got = _evaluate(dict.fromkeys(range(3), INVALID_OFFSET), dict.fromkeys(range(3), 500))
    assert got == (3, True)


def test_kd9_exclude_persistent_lag_over_two_polls() -> None:
    # KD9 states the uncapped metric: with one partition and threshold 10, the default cap
    # would clamp 50 to 10, so idle consumers are allowed here.
    meta = parse({**TOPIC, "excludePersistentLag": "true", "allowIdleConsumers": "true"})
    memory: dict[tuple[str, int], int] = {}

    def poll(offset: int) -> tuple[int, bool]:
        totals = compute_lag(
            {("my-topic", 0): offset},
            {"my-topic": {0: 150}},
            exclude_persistent_lag=True,
            previous_offsets=memory,
        )
        return cap_total_lag(totals, meta), totals.total_lag_with_persistent > 0

    assert poll(100) == (50, True)
    assert poll(100) == (0, True)  # same offset as last time: excluded, still active
    assert poll(120) == (30, True)  # the consumer moved: counts again


def test_partition_missing_from_committed_is_error() -> None:
    with pytest.raises(ScalerError):
        compute_lag({}, {"t": {0: 5}})


# ---------------------------------------------------------------------------- the fast sums

offsets = st.integers(-3, 50)  # -1 is "no commit"; other negatives count as offsets here
topic_offsets = st.dictionaries(st.integers(0, 12), offsets, max_size=12)
inputs = st.tuples(
    st.dictionaries(st.sampled_from("abc"), topic_offsets, max_size=3),  # committed
    st.dictionaries(st.sampled_from("abcd"), topic_offsets, max_size=3),  # latest
    st.dictionaries(st.tuples(st.sampled_from("abc"), st.integers(0, 12)), offsets),  # starts
)


@given(
    inputs,
    st.sampled_from(list(OffsetResetPolicy)),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=300)
def test_sums_are_the_per_partition_rules(
    data: tuple[dict[str, dict[int, int]], dict[str, dict[int, int]], dict[tuple[str, int], int]],
    policy: OffsetResetPolicy,
    scale_to_zero: bool,
    exclude: bool,
    with_starts: bool,
) -> None:
    """compute_lag_by_topic (fast per topic) and compute_lag agree with
    lag_for_partition applied to every partition, errors included."""
    committed, latest, starts = data
    flat = {(t, p): o for t, ps in committed.items() for p, o in ps.items()}
    memory: dict[tuple[str, int], int] = {("a", 0): 5, ("b", 1): 7}
    expected: dict[tuple[str, int], tuple[int, int]] | None = {}
    reference_memory = dict(memory)
    for topic, partitions in latest.items():
        for partition in partitions:
            try:
                assert expected is not None
                expected[(topic, partition)] = lag_for_partition(
                    topic,
                    partition,
                    flat.get((topic, partition)),
                    latest,
                    policy=policy,
                    scale_to_zero_on_invalid_offset=scale_to_zero,
                    earliest_offsets=starts if with_starts else None,
                    exclude_persistent_lag=exclude,
                    previous_offsets=reference_memory,
                )
            except ScalerError:
                expected = None
                break
        if expected is None:
            break
    for how in (compute_lag_by_topic, compute_lag):
        given_offsets: Any = committed if how is compute_lag_by_topic else flat
        kwargs: dict[str, Any] = {
            "policy": policy,
            "scale_to_zero_on_invalid_offset": scale_to_zero,
            "earliest_offsets": starts if with_starts else None,
            "exclude_persistent_lag": exclude,
            "previous_offsets": dict(memory),
        }
        if expected is None:
            with pytest.raises(ScalerError):
                how(given_offsets, latest, **kwargs)
            continue
        got = how(given_offsets, latest, **kwargs)
        assert dict(got.per_partition) == expected
        assert list(got.per_partition) == list(expected)
        assert len(got.per_partition) == len(expected)
        assert got == attrs.evolve(got, per_partition=expected)  # built when first read
        assert repr(expected) in repr(got)
        assert got.total_lag == sum(lag for lag, _ in expected.values())
        assert got.total_lag_with_persistent == sum(p for _, p in expected.values())
        assert got.partitions == len(expected)
        assert got.partitions_with_lag == sum(1 for lag, _ in expected.values() if lag > 0)
        assert kwargs["previous_offsets"] == reference_memory
