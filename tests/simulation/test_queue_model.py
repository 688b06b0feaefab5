"""The queue model: FIFO waits worked out by hand, what each trigger kind reads."""

from __future__ import annotations

import pytest

from eventscale.simulation.queue_model import MetricKind, QueueModel, WaitHistogram


def counts(model: QueueModel) -> list[float]:
    """The wait counts without the unused tail."""
    out = list(model.waits.counts)
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return out


def test_one_replica_takes_a_burst_in_order() -> None:
    model = QueueModel((4.0, 0.0, 0.0, 0.0), 1.0)
    model.advance(0, 4, 1, 1.0)
    # the four items waited 0, 1, 2 and 3 bins
    assert counts(model) == [1.0, 1.0, 1.0, 1.0]
    assert model.waits.percentile(0.5) == 1
    assert model.waits.percentile(0.95) == 3
    assert model.waits.maximum == 3
    assert model.waiting == 0
    assert model.peak == 3


def test_what_each_kind_reads() -> None:
    model = QueueModel((6.0, 2.0, 0.0), 1.0)
    model.advance(0, 1, 2, 1.0)  # 6 arrive, 2 replicas take 2
    assert model.read(MetricKind.LENGTH, 1) == 4
    assert model.read(MetricKind.LAG, 1) == 6  # 4 waiting + 2 being worked on
    assert model.read(MetricKind.AGE, 1) == 1
    assert model.read(MetricKind.RATE, 1) == 6
    model.advance(1, 2, 2, 1.0)  # 2 more arrive, 2 taken (from bin 0)
    assert model.read(MetricKind.LENGTH, 2) == 4
    assert model.read(MetricKind.AGE, 2) == 2
    assert model.read(MetricKind.RATE, 2) == 2


def test_an_idle_replica_banks_no_capacity() -> None:
    model = QueueModel((0.0, 0.0, 3.0, 0.0), 1.0)
    model.advance(0, 4, 1, 1.0)
    # two idle bins do not let the replica take three items in the next two
    assert counts(model) == [1.0, 1.0]
    assert model.waiting == 1


def test_a_fluid_share_is_split_between_bins() -> None:
    model = QueueModel((1.0, 1.0, 0.0), 1.0)
    model.advance(0, 3, 1, 0.5)
    # bin 0 takes half of item 0; bin 1 the other half (waited 1); bin 2 half of item 1
    assert counts(model) == [0.5, 1.0]
    assert model.waiting == pytest.approx(0.5)
    model.finish(3)
    assert counts(model) == [0.5, 1.0, 0.5]


def test_no_replica_means_items_wait_until_the_end() -> None:
    model = QueueModel((1.0, 1.0), 2.0)
    model.advance(0, 2, 0, 1.0)
    assert model.waiting == 2
    model.finish(2)
    # waits in seconds: bins of 2 s
    assert model.waits.maximum == 4
    assert model.waits.percentile(0.5) == 2


def test_an_empty_histogram_reads_zero() -> None:
    hist = WaitHistogram(1.0)
    assert hist.percentile(0.99) == 0
    assert hist.maximum == 0
    hist.add(3, 2.0)
    assert hist.total == 2
    assert hist.percentile(0.1) == 3
