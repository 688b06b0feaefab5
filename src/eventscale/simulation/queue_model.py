"""A FIFO queue fed by a workload and drained by ready replicas, in bins of time.

The model is fluid: a bin's arrivals are an amount (not necessarily whole items) that
joins the back of the queue, and each ready replica takes ``throughput`` items per
second from the front. An item taken in the bin it arrived in waited 0; one taken
``k`` bins later waited ``k * resolution`` seconds (so waits are exact to one bin).
What the triggers read is derived from the queue (docs/simulation.md, "What a
trigger reads"):

- ``length``: items waiting (a Redis list's ``LLEN``, a RabbitMQ queue's ready
  messages): items a worker has taken are no longer in it;
- ``lag``: items waiting plus items being worked on (Kafka consumer lag counts
  everything not committed; RabbitMQ's management ``messages`` includes unacked);
- ``age``: the oldest waiting item's age in seconds;
- ``rate``: the arrival rate of the last bin, items per second.

Items still waiting at the end count with the wait they had reached (a lower bound),
so a queue that never drains shows in the percentiles.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from itertools import compress

__all__ = ("MetricKind", "QueueModel", "WaitHistogram")


class MetricKind(enum.Enum):
    """What a trigger reads from the simulated queue."""

    LENGTH = "length"
    LAG = "lag"
    AGE = "age"
    RATE = "rate"


class WaitHistogram:
    """Amounts of items by wait, in whole bins; weighted percentiles."""

    __slots__ = ("counts", "resolution")

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        #: ``counts[k]``: the amount of items that waited ``k`` bins.
        self.counts: list[float] = [0.0]

    def add(self, bins: int, amount: float) -> None:
        """Record ``amount`` items that waited ``bins`` bins."""
        counts = self.counts
        if bins >= len(counts):
            counts.extend([0.0] * (bins + 1 - len(counts)))
        counts[bins] += amount

    @property
    def total(self) -> float:
        """The amount of items recorded."""
        return math.fsum(self.counts)

    def percentile(self, q: float) -> float:
        """The wait (seconds) that a fraction ``q`` (0..1) of the items did not exceed."""
        total = self.total
        if total <= 0:
            return 0.0
        wanted = q * total
        running = 0.0
        for k, amount in enumerate(self.counts):
            running += amount
            if amount > 0 and running >= wanted - 1e-9 * total:
                return k * self.resolution
        return self.maximum

    @property
    def maximum(self) -> float:
        """The longest wait recorded, seconds."""
        for k in range(len(self.counts) - 1, -1, -1):
            if self.counts[k] > 0:
                return k * self.resolution
        return 0.0


class QueueModel:
    """The queue's state: waiting amounts by arrival bin, and the waits so far."""

    __slots__ = (
        "_amounts",
        "_bins",
        "arrivals",
        "busy",
        "last_rate",
        "peak",
        "resolution",
        "waiting",
        "waits",
    )

    def __init__(self, arrivals: tuple[float, ...], resolution: float) -> None:
        self.arrivals = arrivals
        self.resolution = resolution
        # the arrival bins of the waiting items and the amount left of each, oldest first
        self._bins: deque[int] = deque()
        self._amounts: deque[float] = deque()
        self.waiting = 0.0
        #: Items being worked on during the last bin (busy replicas).
        self.busy = 0.0
        self.last_rate = 0.0
        #: The most items waiting at the end of a bin.
        self.peak = 0.0
        self.waits = WaitHistogram(resolution)
        # every wait a run can record, so the hot loop needs no bounds check
        self.waits.counts.extend([0.0] * len(arrivals))

    def oldest_age(self, now_bin: int) -> float:
        """Seconds the oldest waiting item has waited at the start of bin ``now_bin``."""
        if not self._bins:
            return 0.0
        return (now_bin - self._bins[0]) * self.resolution

    def read(self, kind: MetricKind, now_bin: int) -> float:
        """What a trigger of ``kind`` reads at the start of bin ``now_bin``."""
        if kind is MetricKind.LENGTH:
            return self.waiting
        if kind is MetricKind.LAG:
            return self.waiting + self.busy
        if kind is MetricKind.AGE:
            return self.oldest_age(now_bin)
        return self.last_rate

    def advance(self, start: int, stop: int, replicas: int, per_replica: float) -> None:
        """Run bins ``start`` to ``stop - 1`` with ``replicas`` each taking ``per_replica`` a bin."""
        capacity = replicas * per_replica
        arrivals = self.arrivals
        queue = self._bins
        counts = self.waits.counts
        if stop <= start:
            return
        if not queue:
            segment = arrivals[start:stop]
            if max(segment) <= capacity:
                # nothing waits the whole segment: every arrival is taken at once
                counts[0] += math.fsum(segment)
                self._after(arrivals[stop - 1], replicas, per_replica, stop)
                return
        waiting = self.waiting
        peak = self.peak
        amounts = self._amounts
        taken = 0.0
        for i in range(start, stop):
            a = arrivals[i]
            if not queue and a <= capacity:
                # the common case: nothing waits, every arrival is taken at once
                counts[0] += a
                taken = a
                continue
            if a > 0:
                queue.append(i)
                amounts.append(a)
                waiting += a
            left = self._pop(i, capacity)
            taken = capacity - left
            waiting -= taken
            if not queue or waiting < 1e-9:
                waiting = 0.0
                queue.clear()
                amounts.clear()
            elif waiting > peak:
                peak = waiting
        self.waiting = waiting
        self.peak = peak
        self._after(taken, replicas, per_replica, stop)

    def _after(self, taken: float, replicas: int, per_replica: float, stop: int) -> None:
        # each busy replica works on one item at a time
        self.busy = min(float(replicas), taken / per_replica) if per_replica > 0 else 0.0
        self.last_rate = self.arrivals[stop - 1] / self.resolution

    def _pop(self, now_bin: int, amount: float) -> float:
        """Take up to ``amount`` from the front at ``now_bin``, recording waits; return what is left."""
        queue = self._bins
        amounts = self._amounts
        counts = self.waits.counts
        left = amount
        while queue and left > 0:
            head = amounts[0]
            if head <= left:
                counts[now_bin - queue.popleft()] += amounts.popleft()
                left -= head
            else:
                counts[now_bin - queue[0]] += left
                amounts[0] = head - left
                left = 0.0
        return left

    def take(self, now_bin: int, amount: float) -> float:
        """Take up to ``amount`` items from the front at bin ``now_bin``; return how many."""
        queue = self._bins
        left = self._pop(now_bin, amount)
        taken = amount - left
        self.waiting = 0.0 if not queue else max(0.0, self.waiting - taken)
        return taken

    def finish(self, end_bin: int) -> None:
        """Count the items still waiting at ``end_bin`` with the wait they reached."""
        for arrival, amount in zip(self._bins, self._amounts, strict=True):
            self.waits.add(end_bin - arrival, amount)
        self._bins.clear()
        self._amounts.clear()
        counts = self.waits.counts
        # drop the unused tail (the longest wait is the last non-zero count)
        del counts[max(compress(range(len(counts)), counts), default=0) + 1 :]
