"""One scheduler per controller: a timer heap that starts each object's poll when due.

On asyncio with the real clock the :class:`~eventscale.runtime.controller.Controller`
keeps no task per object. Every object waits in one heap ordered by the time its next
poll is due; one event-loop timer is armed for the earliest of them. When it fires,
the due polls start, each as a short-lived task that ends with the poll, at most
``limit`` at once (the others queue, first due first). When a poll ends the object
goes back into the heap at its next tick. A push wake-up moves the object's entry to
"due now". The controller's watchdog cancels a poll that overran its bound and, when
it ignores that for ``grace`` seconds, abandons it: its slot is freed, and the object
skips its ticks until the abandoned call ends. See docs/runtime.md, "Many objects".
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final

from eventscale.runtime._polling import stop_task
from eventscale.runtime._schedule import ObjectLoop, abandon

__all__ = ("DEFAULT_MAX_IN_FLIGHT", "IDLE", "READY", "RUNNING", "STOPPED", "Scheduler")

#: How many polls a controller runs at once by default (``Controller(max_in_flight=)``).
DEFAULT_MAX_IN_FLIGHT: Final = 1000

logger = logging.getLogger("eventscale.controller")

#: Where an object is: waiting for its tick in the heap, due and waiting for a slot,
#: polling, or removed.
IDLE: Final = 0
READY: Final = 1
RUNNING: Final = 2
STOPPED: Final = 3

#: Polls due within this many seconds of a firing timer start with it (one timer per
#: burst, not per object).
_COALESCE: Final = 0.001

#: Objects polled every :data:`_SLOW` seconds or less often start up to this much early
#: with a firing timer (0.1% of a 10 s interval at most): at 100,000 objects every 30 s
#: the loop wakes about 100 times a second instead of 1,000.
_COALESCE_SLOW: Final = 0.010
_SLOW: Final = 10.0


class Scheduler:
    """The timer heap, the queue of due objects and the polls in flight.

    :param loop: the running asyncio loop.
    :param clock: the controller's clock (due times are on it).
    :param poll: runs one reconcile of an object (``lag`` is how late it started).
    :param limit: polls in flight at most.
    :param grace: seconds a cancelled poll gets before it is abandoned.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float],
        poll: Callable[[ObjectLoop, float], Coroutine[Any, Any, None]],
        limit: int,
        grace: float,
    ) -> None:
        self.loop = loop
        self.grace = grace
        self.clock = clock
        self.poll = poll
        self.limit = limit
        # (due, number): tuples of two atoms, which the collector stops tracking, so
        # the heap adds no long-lived tracked object per tick; stale items (a wake-up
        # moved the entry, or it is polling or gone) are skipped when popped
        self._heap: list[tuple[float, int]] = []
        # the objects polled every _SLOW seconds or less often, which may start early
        self._slow_heap: list[tuple[float, int]] = []
        self._numbers = itertools.count(1)
        self._entries: dict[int, ObjectLoop] = {}
        self._ready: deque[ObjectLoop] = deque()
        #: the objects whose poll holds a slot
        self.running: set[ObjectLoop] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # the poll tasks and the timer run in one context, not a copy of the caller's each
        self._context = contextvars.copy_context()
        self.closed = False

    # ------------------------------------------------------------------ the heap

    def add(self, entry: ObjectLoop, first_at: float) -> None:
        """Schedule ``entry``'s first poll at ``first_at``."""
        entry.scheduler = self
        entry.number = number = next(self._numbers)
        self._entries[number] = entry
        entry.state = IDLE
        entry.next_at = first_at
        self._push(entry, first_at)

    def _push(self, entry: ObjectLoop, at: float) -> None:
        heap = self._slow_heap if entry.interval >= _SLOW else self._heap
        heapq.heappush(heap, (at, entry.number))
        if len(heap) > 2 * len(self._entries) + 64:
            self._compact()
        if at < self._timer_at - _COALESCE:
            self._arm(at)

    def _compact(self) -> None:
        """Drop the stale items (wake-ups leave one behind each): one per idle object."""
        fast: list[tuple[float, int]] = []
        slow: list[tuple[float, int]] = []
        for number, entry in self._entries.items():
            if entry.state == IDLE:
                (slow if entry.interval >= _SLOW else fast).append((entry.next_at, number))
        heapq.heapify(fast)
        heapq.heapify(slow)
        self._heap, self._slow_heap = fast, slow

    def _arm(self, at: float) -> None:
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = at - self.clock()
        loop = self.loop
        self._timer = loop.call_at(
            loop.time() + (delay if delay > 0.0 else 0.0), self._fire, context=self._context
        )
        self._timer_at = at

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self.clock()
        self._take(self._heap, now + _COALESCE)
        self._take(self._slow_heap, now + _COALESCE_SLOW)
        self._start_ready()
        heap, slow = self._heap, self._slow_heap
        if heap or slow:
            self._arm(min(heap[0][0] if heap else math.inf, slow[0][0] if slow else math.inf))

    def _take(self, heap: list[tuple[float, int]], horizon: float) -> None:
        """Move the objects of ``heap`` due by ``horizon`` to the ready queue."""
        pop = heapq.heappop
        entries = self._entries
        ready = self._ready
        while heap and heap[0][0] <= horizon:
            due, number = pop(heap)
            entry = entries.get(number)
            if entry is None or entry.state != IDLE or due != entry.next_at:
                continue  # stale: the entry was woken, is polling or was removed
            entry.state = READY
            ready.append(entry)

    def _start_ready(self) -> None:
        ready, running = self._ready, self.running
        while ready and len(running) < self.limit:
            entry = ready.popleft()
            if entry.state != READY:
                continue
            entry.state = RUNNING
            running.add(entry)
            lag = self.clock() - entry.next_at
            entry.task = self.loop.create_task(
                self._run(entry, lag if lag > 0.0 else 0.0), context=self._context
            )

    def wake(self, entry: ObjectLoop) -> None:
        """Make ``entry`` due now (a running poll is followed by another at once)."""
        if entry.state == IDLE:
            entry.next_at = now = self.clock()
            self._push(entry, now)

    # ------------------------------------------------------------------ polls

    async def _run(self, entry: ObjectLoop, lag: float) -> None:
        try:
            await self.poll(entry, lag)
        finally:
            self._finished(entry)

    def _finished(self, entry: ObjectLoop) -> None:
        entry.task = None
        if entry.abandoned:  # its slot was freed when it was given up on
            entry.abandoned = False
        else:
            self.running.discard(entry)
        entry.cancelled_at = 0.0
        if entry.state != STOPPED and not self.closed:
            entry.state = IDLE
            self._reschedule(entry)
        self._start_ready()

    def _reschedule(self, entry: ObjectLoop) -> None:
        now = self.clock()
        if entry.woken:  # a wake-up came while polling: again at once, the grid restarts
            entry.next_at = now
            self._push(entry, now)
            return
        interval = entry.interval
        next_at = entry.next_at + interval - entry.shift
        entry.shift = 0.0
        if next_at < now:  # fell behind by whole intervals: skip them, do not burst
            next_at += math.ceil((now - next_at) / interval) * interval
        entry.next_at = next_at
        self._push(entry, next_at)

    def stop(self, entry: ObjectLoop) -> None:
        """Take ``entry`` out of the schedule and cancel its running poll, if any."""
        entry.state = STOPPED
        entry.scheduler = None
        self._entries.pop(entry.number, None)
        task = entry.task
        if task is not None and not task.done():
            # a task cancelled before its first step never runs _run's ``finally``:
            # its slot is given back when it is done, whichever way it ends
            task.add_done_callback(functools.partial(self._release, entry))
            stop_task(task)

    def _release(self, entry: ObjectLoop, task: object) -> None:
        if entry in self.running and not entry.abandoned:
            self.running.discard(entry)
            if not self.closed:
                self._start_ready()

    def overran(self, entry: ObjectLoop, now: float) -> None:
        """The watchdog's verdict on a poll past its bound: cancel it, later abandon it."""
        task = entry.task
        if task is None or entry.abandoned:
            return
        if not entry.cancelled_at:
            entry.cancelled_at = now
            stop_task(task)
        elif now - entry.cancelled_at > self.grace:
            # it ignored cancellation: free its slot; the object skips its ticks
            # until the call ends (one abandoned call per object at most)
            entry.abandoned = True
            self.running.discard(entry)
            abandon(task)
            logger.error(
                "abandoning the poll of %s: it ignored cancellation (a scaler or its "
                "target does not let itself be cancelled); its slot is free again",
                entry.status.key,
            )
            self._start_ready()

    def close(self) -> list[asyncio.Task[None]]:
        """Stop the timer and every object; return the tasks still running."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = []
        for entry in self._entries.values():
            entry.state = STOPPED
        for entry in (*self.running, *self._ready):
            entry.state = STOPPED
            if entry.task is not None and not entry.task.done():
                stop_task(entry.task)
                tasks.append(entry.task)
        self._heap.clear()
        self._slow_heap.clear()
        self._ready.clear()
        self._entries.clear()
        return tasks
