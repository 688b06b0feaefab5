"""An in-memory target: a replica count in a Python object, with a recorded history.

:class:`MemoryTarget` is what you unit-test your scaling with (it is re-exported from
:mod:`eventscale.testing`). It keeps every change with its time and reason, can be told
to fail like a real API would, and can *lag*: the count it reports converges to the
requested count only after a delay, measured on an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from eventscale._faults import InjectedFailure
from eventscale.errors import TargetError, TargetNotFound
from eventscale.targets import TargetBase
from eventscale.targets.resources import ContainerResources, PodResources, WorkloadResources

__all__ = ("DEFAULT_HISTORY", "MemoryTarget", "ReplicaChange")

#: How many ``set_replicas`` calls a :class:`MemoryTarget` remembers by default.
DEFAULT_HISTORY = 1000


@attrs.frozen(kw_only=True)
class ReplicaChange:
    """One accepted ``set_replicas`` call.

    ``at`` is the clock time of the call, ``old`` the count requested before it (the
    initial count for the first change), ``new`` the count requested, ``reason`` the
    optional text the caller passed.
    """

    at: float
    old: int
    new: int
    reason: str | None = None


def _check_count(replicas: int) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise TypeError(f"replicas must be an int, got {type(replicas).__name__}")
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    return replicas


class MemoryTarget(TargetBase):
    """A target that holds its replica count in memory.

    :param replicas: the initial count (already converged).
    :param name: how errors name the target.
    :param lag: seconds (on ``clock``) between a request and the moment
        :meth:`get_replicas` reports it; ``0`` reports it at once. While a request is
        pending, :meth:`get_replicas` keeps returning the count from before it, as a
        workload that has not finished scaling would.
    :param clock: a callable returning the current time in seconds; defaults to
        :func:`time.monotonic`. :class:`eventscale.testing.ManualClock` is one.
    :param history: how many accepted ``set_replicas`` calls :attr:`history` keeps,
        the newest (default :data:`DEFAULT_HISTORY`, 1,000; ``None`` keeps them all).
        A target that a long-running controller drives is bounded this way; once
        older calls are dropped, :meth:`requested_counts` starts with the ``old``
        count of the oldest call kept instead of :attr:`initial`.

    Set-to-the-same-count calls are recorded too (a controller that re-applies its
    decision is visible in :attr:`history`); use :attr:`changes` to see only the
    calls that changed the requested count.
    """

    def __init__(
        self,
        replicas: int = 0,
        *,
        name: str = "memory",
        lag: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        history: int | None = DEFAULT_HISTORY,
    ) -> None:
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag!r}")
        if history is not None and history < 1:
            raise ValueError(f"history must be >= 1 or None, got {history!r}")
        self.name = name
        self.lag = float(lag)
        self.clock = clock
        self.initial = _check_count(replicas)
        self._requested = self.initial
        # (time the request becomes visible, count) in request order; the first is the
        # visible count, the others are pending (see _settle: it never grows past them).
        self._timeline: list[tuple[float, int]] = [(float("-inf"), self.initial)]
        # (at, old, new, reason): tuples of atoms, which the cyclic collector stops
        # tracking, so thousands of targets do not lengthen its full collections. A
        # list trimmed to the newest ``history`` once it holds twice that many (an
        # empty deque takes a 64-slot block: 60 MB for 100,000 targets)
        self._history: list[tuple[float, int, int, str | None]] = []
        self._limit = history
        self._dropped = False
        self._failure = InjectedFailure()
        self.get_calls = 0
        self.set_calls = 0
        self.closed = False
        self._pods: tuple[PodResources, ...] | None = None

    # -- the Target protocol ---------------------------------------------------------

    async def get_replicas(self) -> int:
        """The count the target reports now (the requested count once ``lag`` has passed)."""
        self.get_calls += 1
        self._maybe_fail()
        return self.current

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        """Request ``replicas``; ``reason`` is recorded with the change."""
        self.set_calls += 1
        count = _check_count(replicas)
        self._maybe_fail()
        now = self.clock()
        history = self._history
        history.append((now, self._requested, count, reason))
        limit = self._limit
        if limit is not None and len(history) >= 2 * limit:
            del history[:-limit]
            self._dropped = True
        self._requested = count
        self._settle(now)
        self._timeline.append((now + self.lag, count))

    def _settle(self, now: float) -> None:
        """Drop the requests that ``now`` made visible, but the last of them."""
        timeline = self._timeline
        if len(timeline) > 1 and timeline[1][0] <= now:
            visible = 1
            while visible + 1 < len(timeline) and timeline[visible + 1][0] <= now:
                visible += 1
            del timeline[:visible]

    async def aclose(self) -> None:
        """Mark the target closed (it keeps working; tests can assert on :attr:`closed`)."""
        self.closed = True

    async def get_pod_resources(self) -> WorkloadResources:
        """The pods set by :meth:`set_pods` or :meth:`set_usage` (the ``cpu``/``memory`` triggers).

        :raises TargetError: no pods were set, or an injected failure.
        """
        self._maybe_fail()
        if self._pods is None:
            raise TargetError(
                "no pod resources: an in-memory target has no pods unless a test sets them "
                "(MemoryTarget.set_usage or set_pods)",
                target=self.name,
            )
        return WorkloadResources(replicas=self.current, pods=self._pods, observed_at=self.clock())

    def set_pods(self, pods: Iterable[PodResources]) -> None:
        """Set the pods :meth:`get_pod_resources` reports (their times on :attr:`clock`)."""
        self._pods = tuple(pods)

    def set_usage(
        self,
        *usage: Mapping[str, float],
        requests: Mapping[str, float] | None = None,
        limits: Mapping[str, float] | None = None,
        container: str = "app",
    ) -> None:
        """One running, ready pod per ``usage`` mapping (``{"cpu": 0.25, "memory": 2e8}``).

        Each pod has one container named ``container`` with ``requests`` and ``limits``,
        and started an hour ago on :attr:`clock`, so no readiness rule ignores it.
        """
        started = self.clock() - 3600.0
        self.set_pods(
            PodResources(
                name=f"{self.name}-{i}",
                containers=(
                    ContainerResources(
                        name=container, requests=requests or {}, limits=limits or {}
                    ),
                ),
                usage={container: dict(amounts)},
                start_time=started,
                ready_since=started,
                sampled_at=started + 3600.0,
            )
            for i, amounts in enumerate(usage)
        )

    # -- inspection --------------------------------------------------------------------

    @property
    def requested(self) -> int:
        """The count asked for by the last :meth:`set_replicas` (or the initial count)."""
        return self._requested

    @property
    def current(self) -> int:
        """The count visible now: the last request whose ``lag`` has elapsed."""
        timeline = self._timeline
        if len(timeline) == 1:
            return timeline[0][1]
        self._settle(self.clock())
        return timeline[0][1]

    @property
    def converged(self) -> bool:
        """Whether :attr:`current` equals :attr:`requested`."""
        return self.current == self._requested

    @property
    def history(self) -> Sequence[ReplicaChange]:
        """The accepted :meth:`set_replicas` calls, oldest first (the last ``history``)."""
        return tuple(
            ReplicaChange(at=at, old=old, new=new, reason=reason)
            for at, old, new, reason in self._kept()
        )

    @property
    def changes(self) -> Sequence[ReplicaChange]:
        """The accepted calls that changed the requested count."""
        return tuple(c for c in self.history if c.old != c.new)

    def requested_counts(self) -> list[int]:
        """The requested count after each change, starting with the initial count.

        ``MemoryTarget(0)`` scaled to 3, then 3 again, then 1 gives ``[0, 3, 1]``. When
        older calls were dropped (``history``), it starts with the count requested
        before the oldest call kept.
        """
        kept = self._kept()
        start = (
            kept[0][1]
            if kept and (self._dropped or len(kept) < len(self._history))
            else self.initial
        )
        return [start, *(c.new for c in self.changes)]

    def _kept(self) -> list[tuple[float, int, int, str | None]]:
        """The newest ``history`` calls."""
        limit = self._limit
        if limit is None or len(self._history) <= limit:
            return self._history
        return self._history[-limit:]

    # -- fault injection ---------------------------------------------------------------

    def fail(
        self,
        error: TargetError | None = None,
        *,
        times: int | None = None,
        status: int | None = 503,
    ) -> None:
        """Make the next calls raise ``error`` (default: a :class:`TargetError` with ``status``).

        ``times`` limits how many calls fail (``None``: every call until :meth:`recover`).
        A failing :meth:`set_replicas` changes nothing and records nothing.
        """
        self._failure.arm(
            error or TargetError("injected failure", target=self.name, status=status), times
        )

    def fail_not_found(self, *, times: int | None = None) -> None:
        """Make the next calls raise :class:`TargetNotFound`, as if the workload was deleted."""
        self.fail(TargetNotFound("workload not found", target=self.name, status=404), times=times)

    def recover(self) -> None:
        """Stop failing."""
        self._failure.clear()

    def _maybe_fail(self) -> None:
        self._failure.check()

    def __repr__(self) -> str:
        return (
            f"MemoryTarget(name={self.name!r}, requested={self._requested}, "
            f"current={self.current}, changes={len(self._kept())})"
        )
