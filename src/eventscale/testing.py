"""Tools for testing your scaling without a broker or a cluster (public API).

* :class:`MemoryTarget`: a target that records every change (re-exported from
  :mod:`eventscale.targets.memory`).
* :class:`ManualClock`: time that moves only when you move it.
* :class:`SequenceScaler` and :class:`StaticScaler`: scalers that report scripted
  values or raise scripted errors, with a proper :class:`~eventscale.metrics.MetricSpec`.
* :func:`assert_scaled_to`, :func:`assert_history`, :func:`assert_never_scaled`:
  assertions with messages that show what the target went through.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

import anyio
import anyio.lowlevel

from eventscale.errors import ScalerError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport
from eventscale.scalers import ScalerBase
from eventscale.targets.memory import MemoryTarget, ReplicaChange

__all__ = (
    "ManualClock",
    "MemoryTarget",
    "ReplicaChange",
    "ScriptItem",
    "SequenceScaler",
    "StaticScaler",
    "assert_history",
    "assert_never_scaled",
    "assert_scaled_to",
)

ScriptItem = float | int | ScalerReport | BaseException
"""One scripted poll: a metric value, a whole report, or an exception to raise."""


class ManualClock:
    """A clock that only moves when :meth:`advance` (or :meth:`set`) is called.

    Call it (or :meth:`now`) to read the time: it fits every ``clock=`` parameter that
    takes a ``Callable[[], float]``. :meth:`sleep` is an async sleep on this clock: it
    returns once the clock has been advanced past its deadline, so code under test that
    sleeps through it waits for the test to move time. With ``autojump=True`` a sleep
    advances the clock itself and returns at once.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = False) -> None:
        self._now = float(start)
        self.autojump = autojump
        self._sleepers: list[tuple[float, anyio.Event]] = []
        self._changed: anyio.Event | None = None

    def now(self) -> float:
        """The current time in seconds."""
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0), wake due sleepers; return the new time."""
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(f"a clock only moves forward, got {seconds!r}")
        return self.set(self._now + seconds)

    def set(self, when: float) -> float:
        """Move time forward to ``when``; wake due sleepers; return the new time."""
        if when < self._now:
            raise ValueError(f"a clock only moves forward: {when} < {self._now}")
        self._now = float(when)
        due = [entry for entry in self._sleepers if entry[0] <= self._now]
        for entry in due:
            # Woken sleepers leave the list now, so wait_for_sleepers() counts only
            # tasks that went back to sleep after this advance.
            self._sleepers.remove(entry)
            entry[1].set()
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock now."""
        return len(self._sleepers)

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a sleeping task, if any."""
        return min((d for d, _ in self._sleepers), default=None)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` on this clock (cancellable)."""
        if seconds <= 0 or self.autojump:
            if seconds > 0:
                self.advance(seconds)
            await anyio.lowlevel.checkpoint()
            return
        entry = (self._now + seconds, anyio.Event())
        self._sleepers.append(entry)
        self._notify()
        try:
            await entry[1].wait()
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Return once at least ``count`` tasks sleep on this clock.

        Use it before :meth:`advance` so the task you drive has reached its sleep.
        """
        while len(self._sleepers) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now}, sleepers={len(self._sleepers)})"


class _ScriptedScaler(ScalerBase):
    def __init__(
        self,
        *,
        name: str,
        target: float,
        metric_type: MetricType,
        activation_target: float,
    ) -> None:
        self.spec = MetricSpec(
            name=name,
            target=target,
            metric_type=metric_type,
            activation_target=activation_target,
        )
        self.polls = 0
        self.closed = False

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The one metric this scaler reports."""
        return (self.spec,)

    def _report(self, item: ScriptItem) -> ScalerReport:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ScalerReport):
            return item
        value = float(item)
        return ScalerReport.single(
            self.spec.name, value, is_active=value > self.spec.activation_target
        )

    async def aclose(self) -> None:
        """Mark the scaler closed (tests can assert on :attr:`closed`)."""
        self.closed = True


class SequenceScaler(_ScriptedScaler):
    """A scaler that replays a script, one item per :meth:`get_metrics` call.

    Each item is a metric value (the trigger is active when it is greater than
    ``activation_target``, as in KEDA), a ready :class:`ScalerReport`, or an exception
    to raise (use :class:`~eventscale.errors.ScalerError` to simulate a source that
    cannot be read). When the script runs out, the last item repeats
    (``repeat_last=True``) or each poll raises a permanent :class:`ScalerError`.

    >>> scaler = SequenceScaler([0, 12, ScalerError("broker down"), 3], target=5)
    """

    def __init__(
        self,
        items: Iterable[ScriptItem],
        *,
        name: str = "s0-sequence",
        target: float = 1.0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        activation_target: float = 0.0,
        repeat_last: bool = True,
    ) -> None:
        super().__init__(
            name=name, target=target, metric_type=metric_type, activation_target=activation_target
        )
        self._items: deque[ScriptItem] = deque(items)
        self._last: ScriptItem | None = None
        self.repeat_last = repeat_last

    def push(self, *items: ScriptItem) -> None:
        """Append items to the script."""
        self._items.extend(items)

    @property
    def remaining(self) -> int:
        """How many scripted items are left (not counting a repeated last item)."""
        return len(self._items)

    async def get_metrics(self) -> ScalerReport:
        """Play the next item of the script."""
        self.polls += 1
        await anyio.lowlevel.checkpoint()
        if self._items:
            item = self._items.popleft()
            self._last = item
        elif self.repeat_last and self._last is not None:
            item = self._last
        else:
            raise ScalerError(
                f"the script is exhausted after {self.polls - 1} polls",
                trigger=self.spec.name,
                transient=False,
            )
        return self._report(item)


class StaticScaler(_ScriptedScaler):
    """A scaler that reports :attr:`value` on every poll, or raises :attr:`error` if set.

    Change either attribute between polls to drive a scenario by hand.
    """

    def __init__(
        self,
        value: float = 0.0,
        *,
        name: str = "s0-static",
        target: float = 1.0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        activation_target: float = 0.0,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(
            name=name, target=target, metric_type=metric_type, activation_target=activation_target
        )
        self.value = value
        self.error = error

    async def get_metrics(self) -> ScalerReport:
        """Report :attr:`value`, or raise :attr:`error`."""
        self.polls += 1
        await anyio.lowlevel.checkpoint()
        return self._report(self.error if self.error is not None else self.value)


# ------------------------------------------------------------------------- assertions


def _story(target: MemoryTarget) -> str:
    lines = [f"  initial: {target.initial}"]
    for change in target.history:
        why = f" ({change.reason})" if change.reason else ""
        lines.append(f"  t={change.at:g}: {change.old} -> {change.new}{why}")
    return "\n".join(lines)


def assert_scaled_to(target: MemoryTarget, replicas: int, *, converged: bool = False) -> None:
    """Assert that the last requested count is ``replicas``.

    With ``converged=True``, also assert that the count the target reports (after its
    ``lag``) has reached it.
    """
    if target.requested != replicas:
        raise AssertionError(
            f"{target.name}: expected {replicas} replicas requested, got {target.requested}\n"
            f"{_story(target)}"
        )
    if converged and target.current != replicas:
        raise AssertionError(
            f"{target.name}: {replicas} replicas requested but {target.current} "
            f"reported so far (lag {target.lag:g}s)\n{_story(target)}"
        )


def assert_history(target: MemoryTarget, expected: Sequence[int]) -> None:
    """Assert the requested counts, starting with the initial one: ``[0, 3, 1, 0]``.

    Calls that re-requested the same count are not part of the sequence.
    """
    actual = target.requested_counts()
    if actual != list(expected):
        raise AssertionError(
            f"{target.name}: expected replica history {list(expected)}, got {actual}\n"
            f"{_story(target)}"
        )


def assert_never_scaled(target: MemoryTarget) -> None:
    """Assert that no call changed the requested count."""
    if target.changes:
        raise AssertionError(f"{target.name}: expected no scaling, got\n{_story(target)}")
