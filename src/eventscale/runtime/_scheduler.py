"""One scheduler per controller: time slots that start each object's poll when due.

On asyncio with the real clock the :class:`~eventscale.runtime.controller.Controller`
keeps no task per object. Every object waits in the time slot (1 ms wide, 10 ms for
objects polled every 10 s or less often) of its next poll; one event-loop timer is
armed for the first slot. When the slot opens, its polls start, each as a short-lived
task that ends with the poll, at most ``limit`` at once (the others queue, first due
first). When a poll ends the object goes into the slot of its next tick. A push wake-up moves the object's entry to
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

#: Where an object is: waiting for its tick in a slot, due and waiting for a slot,
#: polling, or removed.
IDLE: Final = 0
READY: Final = 1
RUNNING: Final = 2
STOPPED: Final = 3

#: Polls start in slots of this many seconds: when a slot opens, every poll due in it
#: starts (one timer per slot, not per object), up to one slot early.
_SLOT: Final = 0.001

#: Objects polled every :data:`_SLOW` seconds or less often use slots this wide (0.1%
#: of a 10 s interval at most): at 100,000 objects every 30 s the loop wakes about
#: 100 times a second instead of 1,000.
_SLOT_SLOW: Final = 0.010
_SLOW: Final = 10.0

#: A timer that fires this little before its slot opens still opens it.
_SLACK: Final = 0.0002


class _Wheel:
    """Due objects by time slot: a dictionary of lists and a heap of slot numbers.

    Adding an object is a dictionary lookup and a list append, whatever the number of
    objects; only the distinct slots (at most one per ``width`` of the longest
    interval) are kept in order. A heap of one item per object made every tick pay
    for about 17 comparisons between items scattered in memory, which at 100,000
    objects was most of the scheduler's cost. Items are object numbers; an item whose
    object was woken, removed or is polling is stale and skipped when its slot opens.
    """

    __slots__ = ("_lists", "_slots", "items", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self._lists: dict[int, list[int]] = {}
        self._slots: list[int] = []
        #: items held, stale ones included
        self.items = 0

    def push(self, at: float, number: int) -> float:
        """Add object ``number``, due at ``at``; return when its slot opens."""
        slot = int(at // self.width)  # (self.slot inline: once per poll)
        found = self._lists.get(slot)
        if found is None:
            self._lists[slot] = [number]
            heapq.heappush(self._slots, slot)
        else:
            found.append(number)
        self.items += 1
        return slot * self.width

    def opens(self) -> float:
        """When the first slot opens (``inf``: empty)."""
        return self._slots[0] * self.width if self._slots else math.inf

    def take(self, now: float) -> list[tuple[int, list[int]]]:
        """Remove and return ``(slot, numbers)`` of every slot open at ``now``."""
        slots, lists = self._slots, self._lists
        last = (now + _SLACK) // self.width
        taken = []
        while slots and slots[0] <= last:
            slot = heapq.heappop(slots)
            found = lists.pop(slot)
            self.items -= len(found)
            taken.append((slot, found))
        return taken

    def slot(self, at: float) -> int:
        """The slot of due time ``at``."""
        return int(at // self.width)

    def clear(self) -> None:
        """Drop every item."""
        self._lists.clear()
        self._slots.clear()
        self.items = 0


class Scheduler:
    """The time slots, the queue of due objects and the polls in flight.

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
        # object numbers by slot (ints the entries hold anyway: no object per tick)
        self._wheel = _Wheel(_SLOT)
        # the objects polled every _SLOW seconds or less often, in wider slots
        self._slow_wheel = _Wheel(_SLOT_SLOW)
        self._numbers = itertools.count(1)
        self._entries: dict[int, ObjectLoop] = {}
        self._ready: deque[ObjectLoop] = deque()
        #: the objects whose poll holds a slot
        self.running: set[ObjectLoop] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # the poll tasks and the timer run in one context, not a copy of the caller's each
        self._context = context = contextvars.copy_context()
        self._new_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
        if loop.get_task_factory() is None:  # the Task class itself (no Python wrapper)
            self._new_task = functools.partial(asyncio.Task, loop=loop, context=context)
        else:  # the application's factory (instrumentation, eager tasks) is honoured
            self._new_task = functools.partial(loop.create_task, context=context)
        self.closed = False

    # ------------------------------------------------------------------ the slots

    def add(self, entry: ObjectLoop, first_at: float) -> None:
        """Schedule ``entry``'s first poll at ``first_at``."""
        entry.scheduler = self
        entry.number = number = next(self._numbers)
        self._entries[number] = entry
        entry.state = IDLE
        entry.next_at = first_at
        self._push(entry, first_at)

    def _push(self, entry: ObjectLoop, at: float) -> None:
        wheel = self._slow_wheel if entry.interval >= _SLOW else self._wheel
        opens = wheel.push(at, entry.number)
        if wheel.items > 2 * len(self._entries) + 64:
            self._compact()
        if opens < self._timer_at:
            self._arm(opens)

    def _compact(self) -> None:
        """Drop the stale items (wake-ups leave one behind each): one per idle object."""
        self._wheel.clear()
        self._slow_wheel.clear()
        for number, entry in self._entries.items():
            if entry.state == IDLE:
                wheel = self._slow_wheel if entry.interval >= _SLOW else self._wheel
                wheel.push(entry.next_at, number)

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
        entries, ready = self._entries, self._ready
        for wheel in (self._wheel, self._slow_wheel):
            width = wheel.width
            for slot, numbers in wheel.take(now):
                for number in numbers:
                    entry = entries.get(number)
                    if entry is None or entry.state != IDLE or entry.next_at // width != slot:
                        continue  # stale: the entry was woken, is polling or was removed
                    entry.state = READY
                    ready.append(entry)
        self._start_ready()
        opens = min(self._wheel.opens(), self._slow_wheel.opens())
        if opens < math.inf:
            self._arm(opens)

    def _start_ready(self) -> None:
        ready, running = self._ready, self.running
        while ready and len(running) < self.limit:
            entry = ready.popleft()
            if entry.state != READY:
                continue
            entry.state = RUNNING
            running.add(entry)
            lag = self.clock() - entry.next_at
            entry.task = self._new_task(self._run(entry, lag if lag > 0.0 else 0.0))

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
            # the next tick (inline: this runs once per poll)
            now = self.clock()
            if entry.woken:  # a wake-up came while polling: again at once, the grid restarts
                next_at = now
            else:
                interval = entry.interval
                next_at = entry.next_at + interval - entry.shift
                entry.shift = 0.0
                if next_at < now:  # fell behind by whole intervals: skip them, no burst
                    next_at += math.ceil((now - next_at) / interval) * interval
            entry.next_at = next_at
            self._push(entry, next_at)
        if self._ready:
            self._start_ready()

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
        self._wheel.clear()
        self._slow_wheel.clear()
        self._ready.clear()
        self._entries.clear()
        return tasks
