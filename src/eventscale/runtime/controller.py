"""The async runtime: many ScaledObjects, each on its own polling schedule.

A :class:`Controller` reconciles every
:class:`~eventscale.runtime.scaled_object.ScaledObject` on its ``pollingInterval`` (the
next tick is scheduled from the previous one, so a slow poll does not push the
schedule back), and at once when a push-capable scaler's ``wait_for_activity()``
returns. On asyncio with the real clock one scheduler (time slots,
``runtime/_scheduler.py``) starts each poll when it is due, at most ``max_in_flight``
at once, and an idle object has no task; with an injected ``sleep`` (tests,
simulations) or on trio each object runs its own loop. One object's slow or failing
scaler never delays or breaks another: every call runs under a timeout, a poll that
overruns its bound is cancelled and then abandoned, and failures are reported as
events, never raised into the group.

Several controller processes can share the objects: give each an
:class:`~eventscale.runtime.sharding.LeaseSharding` (Kubernetes Leases), and an object is
reconciled only by the process that holds its lease. The protocol it implements,
:class:`~eventscale.runtime.ownership.Ownership`, lives in
:mod:`eventscale.runtime.ownership` (also importable from here); the per-object loop
bookkeeping is in ``runtime/_schedule.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
from anyio.abc import TaskGroup

from eventscale.runtime._gcfreeze import Freezer
from eventscale.runtime._polling import DEFAULT_POLL_TIMEOUT, bounded_text, must_propagate
from eventscale.runtime._schedule import (
    PUSH_RETRY_CAP,
    ObjectLoop,
    abandon,
    bounded,
    close_unused,
    phase,
    running_asyncio_loop,
    sleep_or_wake,
    wake_or_sleep,
)
from eventscale.runtime._scheduler import DEFAULT_MAX_IN_FLIGHT, Scheduler
from eventscale.runtime.objects import ObjectStatus, Reconcilable, ReconcileReport
from eventscale.runtime.observability import Event, EventBus, EventKind, log_level
from eventscale.runtime.ownership import NotifyingOwnership, Ownership
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers import PushScaler

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = (
    "DEFAULT_MAX_IN_FLIGHT",
    "PUSH_RETRY_CAP",
    "Controller",
    "NotifyingOwnership",
    "ObjectStatus",
    "Ownership",
    "Reconcilable",
    "ReconcileReport",
)

logger = logging.getLogger("eventscale.controller")

#: OBJECT_ADDED is built only when an event at its level reaches anyone.
_ADDED_LEVEL = log_level(EventKind.OBJECT_ADDED)


class Controller:
    """Runs many scaled objects until cancelled.

    Use it as an async context manager; objects can be added, updated and removed at
    any time, before or while it runs::

        async with Controller() as ctl:
            ctl.add(scaled_object)
            await ctl.run_until_cancelled()

    Leaving the block cancels every loop and closes every object's scalers and target.

    :param clock: wall-clock seconds, for events and loop-lag figures.
    :param sleep: the sleep function (``anyio.sleep``; tests may pass a manual clock's).
    :param events: the event bus (one is created when omitted: :attr:`events`).
    :param ownership: shares objects between controller processes (Kubernetes Leases).
    :param spread: spread the objects' schedules over their polling interval. Every
        object still reconciles at once when added, but its second tick comes a fixed
        fraction of the interval early (derived from its key), so thousands of objects
        added together do not all poll at the same instant ever after. Default: on with
        the real clock, off with an injected ``sleep`` (exact schedules for tests and
        simulations).
    :param grace: seconds (real time) a call that ignores cancellation gets before it is
        given up on. A reconcile still running ``3 * poll_timeout + grace`` after it
        started is reported (``last_error`` and a ``target_error`` event); on shutdown,
        ``remove()`` and ``update()`` an object loop or a close still running ``grace``
        after it was cancelled is abandoned (logged once), so leaving the controller
        always returns (docs/runtime.md, "Many objects"). On the shared scheduler a
        poll still running at that bound is cancelled, and abandoned (its in-flight slot
        freed) when it ignores that for ``grace`` seconds more.
    :param max_in_flight: polls running at once, at most; due polls beyond it wait for
        a free slot (their lag shows it). Default 1,000.
    :param freeze: move the objects the controller holds out of the cyclic garbage
        collector's full collections (:func:`gc.freeze`, process-wide) once no object
        was added, updated or removed for ``freeze_after`` seconds and every object
        has finished its first poll (waited for 60 s at most); after removals and
        updates it unfreezes, collects once and freezes again, so removed objects are
        not kept; leaving the block unfreezes. ``None`` (the default): from 1,000
        objects on; ``False``: never (an application that manages ``gc.freeze()``
        itself). Docs: docs/runtime.md, "Running thousands of objects".
    :param freeze_after: seconds without an add, update or remove before it (re)freezes.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        events: EventBus | None = None,
        ownership: Ownership | None = None,
        spread: bool | None = None,
        grace: float = 5.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        freeze: bool | None = None,
        freeze_after: float = 2.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.grace = grace
        self.sleep = sleep
        self.spread = spread if spread is not None else sleep is anyio.sleep
        self.events = events if events is not None else EventBus()
        self.ownership = ownership
        self._entries: dict[str, ObjectLoop] = {}
        self._tg: TaskGroup | None = None
        self._pending: dict[str, Reconcilable] = {}  # added before the block, by key
        #: the shared scheduler (asyncio, real sleep) or None (a loop per object)
        self._scheduler: Scheduler | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._freezer = Freezer(freeze, freeze_after)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        loop = running_asyncio_loop()
        if loop is not None and self.sleep is anyio.sleep:
            self._scheduler = Scheduler(
                loop, self.clock, self._poll, self.max_in_flight, self.grace
            )
        else:
            self._limiter = anyio.CapacityLimiter(self.max_in_flight)
        if isinstance(self.ownership, NotifyingOwnership):
            self._unsubscribe = self.ownership.subscribe(self.wake)
        self._tg.start_soon(self._watchdog, name="eventscale:watchdog")
        pending, self._pending = list(self._pending.values()), {}
        for obj in pending:
            self._start(obj)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._scheduler is not None:
            self._scheduler.close()
        for entry in self._entries.values():
            entry.cancel()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            await self._end_loops(list(self._entries.values()))
            self._scheduler = self._limiter = None
            await self._close_all()
            self._freezer.close()

    async def _end_loops(self, entries: Sequence[ObjectLoop]) -> None:
        """Wait up to ``grace`` for the cancelled loops to end; abandon the others."""
        if self._scheduler is not None:
            await self._end_tasks(entries)
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.grace):
            for entry in entries:
                await entry.wait_ended()
        for entry in entries:
            if not entry.ended:
                if entry.task is not None:
                    abandon(entry.task)
                logger.error(
                    "abandoning the loop of %s: it ignored cancellation for %gs "
                    "(a scaler or its target does not let itself be cancelled)",
                    entry.status.key,
                    self.grace,
                )

    async def _end_tasks(self, entries: Sequence[ObjectLoop]) -> None:
        """The scheduler's counterpart of the loops' end: polls and push watches."""
        tasks = {
            task: entry
            for entry in entries
            for task in (entry.task, entry.watch)
            if task is not None and not task.done()
        }
        if not tasks:
            return
        with anyio.CancelScope(shield=True):
            await asyncio.wait(tasks, timeout=self.grace)
        named = set()
        for task, entry in tasks.items():
            if not task.done():
                abandon(task)
                if entry.status.key not in named:
                    named.add(entry.status.key)
                    logger.error(
                        "abandoning the loop of %s: it ignored cancellation for %gs "
                        "(a scaler or its target does not let itself be cancelled)",
                        entry.status.key,
                        self.grace,
                    )

    async def _close_all(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        with anyio.CancelScope(shield=True):
            for entry in entries:
                await self._close(entry.obj)
                if self.ownership is not None:
                    try:
                        await self.ownership.release(entry.status.key)
                    except Exception:
                        logger.exception("releasing %s failed", entry.status.key)

    async def run_until_cancelled(self) -> None:
        """Wait forever (the loops run in the background); cancel to stop."""
        await anyio.sleep_forever()

    # ------------------------------------------------------------------ objects

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def status(self, key: str) -> ObjectStatus:
        """The status of object ``key`` (``namespace/name``)."""
        return self._entries[key].status

    def get(self, key: str) -> Reconcilable:
        """The object registered under ``key``."""
        return self._entries[key].obj

    def add(self, obj: Reconcilable) -> None:
        """Start reconciling ``obj``; :class:`ValueError` if its key is taken (see ``update``)."""
        if obj.key in self._entries or obj.key in self._pending:
            raise ValueError(f"{obj.key} is already managed; use update()")
        if obj.events is None:
            obj.events = self.events
        self._freezer.changed(removed=False)
        if self._tg is None:
            self._pending[obj.key] = obj
        else:
            self._start(obj)

    async def update(self, obj: Reconcilable) -> None:
        """Replace the object with the same key, keeping its engine state.

        The old object's scalers and target are closed unless the new one reuses them.
        """
        old = self._entries.get(obj.key)
        if old is None:
            pending = self._pending.pop(obj.key, None)
            if pending is not None:
                obj.state = pending.state
                await close_unused(pending, obj)
            self.add(obj)
            return
        await self._stop(old, close=False)
        # Only now: a reconcile cut short by the stop may not move the state any more.
        obj.state = old.obj.state
        await close_unused(old.obj, obj)
        self.add(obj)

    async def remove(self, key: str) -> None:
        """Stop reconciling ``key`` and close its scalers and target."""
        entry = self._entries.get(key)
        if entry is None:
            self._pending.pop(key, None)
            return
        await self._stop(entry, close=True)
        if self.ownership is not None:
            with anyio.CancelScope(shield=True):
                await self.ownership.release(key)

    async def _stop(self, entry: ObjectLoop, *, close: bool) -> None:
        self._entries.pop(entry.status.key, None)
        self._freezer.changed(removed=True)
        if entry.scheduler is not None:
            entry.scheduler.stop(entry)
        entry.cancel()
        await self._end_loops((entry,))
        if close:
            with anyio.CancelScope(shield=True):
                await self._close(entry.obj)
        await self.events.emit(
            Event(kind=EventKind.OBJECT_REMOVED, time=self.clock(), scaled_object=entry.status.key)
        )

    def wake(self, key: str) -> None:
        """Reconcile ``key`` now instead of at its next tick."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.notify()

    async def _close(self, obj: Reconcilable) -> None:
        """``obj.aclose()``, given up on (and logged) when it ignores cancellation."""
        poll_timeout = getattr(obj, "poll_timeout", DEFAULT_POLL_TIMEOUT)
        # each scaler and the target close under the poll timeout (runtime/_polling.py)
        within = (len(obj.scalers) + 1) * poll_timeout + self.grace
        if not await bounded(obj.aclose, within, self.grace):
            logger.error("abandoning the close of %s: it ignored cancellation", obj.key)

    def _start(self, obj: Reconcilable) -> None:
        assert self._tg is not None
        entry = ObjectLoop(
            obj, ObjectStatus(obj.key), tuple(s for s in obj.scalers if isinstance(s, PushScaler))
        )
        poll_timeout = getattr(obj, "poll_timeout", DEFAULT_POLL_TIMEOUT)
        # a poll, a read and a write of the target, each under the poll timeout
        entry.limit = 3 * poll_timeout + self.grace
        self._entries[obj.key] = entry
        name = f"eventscale:{obj.key}"
        scheduler = self._scheduler
        if scheduler is not None:  # no task per object: one slot item
            entry.interval = obj.spec.polling_interval
            entry.shift = phase(obj.key, entry.interval) if self.spread else 0.0
            entry.ended = True  # (a loop only exists on the other path)
            scheduler.add(entry, self.clock())
            if entry.push:
                entry.watch = scheduler.loop.create_task(self._watches(entry), name=name)
            return
        loop = running_asyncio_loop()
        if loop is None:  # trio: in the task group (a loop that ignores cancellation blocks)
            self._tg.start_soon(self._run_object, entry, name=name)
        else:
            # Outside the task group: a loop stuck in a call that ignores cancellation
            # can be abandoned on shutdown instead of blocking the group's exit.
            entry.task = loop.create_task(self._run_object(entry), name=name)

    async def _watchdog(self) -> None:
        """Report (once per stuck reconcile) a loop whose reconcile overran its bound."""
        period = min(1.0, max(0.01, self.grace / 2))
        while True:
            await anyio.sleep(period)
            self._freezer.tick(len(self._entries), self._settled)
            now = time.monotonic()
            scheduler = self._scheduler
            # on the scheduler only the polls in flight can be stuck
            running = self._entries.values() if scheduler is None else scheduler.running
            for entry in tuple(running):
                since = entry.since
                if since and now - since > entry.limit:
                    if not entry.stuck:
                        entry.stuck = True
                        await self._report_stuck(entry, now - since)
                    if scheduler is not None:
                        scheduler.overran(entry, now)

    def _settled(self) -> bool:
        """Whether every object has finished its first reconcile."""
        return all(entry.finished for entry in self._entries.values())

    async def _report_stuck(self, entry: ObjectLoop, elapsed: float) -> None:
        status = entry.status
        status.last_error = (
            f"reconcile has not returned for {elapsed:.1f}s although every call has a "
            "timeout: a scaler or the target ignores cancellation"
        )
        logger.error("%s: %s", status.key, status.last_error)
        await self.events.emit(
            Event(
                kind=EventKind.TARGET_ERROR,
                time=self.clock(),
                scaled_object=status.key,
                error=status.last_error,
            )
        )

    # ------------------------------------------------------------------ the loop

    async def _run_object(self, entry: ObjectLoop) -> None:
        obj = entry.obj
        try:
            with entry.open_scope():
                await self.events.emit(
                    Event(kind=EventKind.OBJECT_ADDED, time=self.clock(), scaled_object=obj.key)
                )
                if entry.push:
                    async with anyio.create_task_group() as tg:
                        for scaler in entry.push:
                            tg.start_soon(self._watch, entry, scaler)
                        await self._tick_loop(entry)
                else:
                    await self._tick_loop(entry)
        except Exception:  # a bug of the controller's own: never silent
            logger.exception("the loop of %s failed", obj.key)
        finally:
            entry.loop_ended()

    async def _tick_loop(self, entry: ObjectLoop) -> None:
        # A loop per object: with an injected sleep (tests and simulations drive it
        # with a manual clock) and on trio. On asyncio with the real clock the shared
        # scheduler runs the same schedule without a task per object (_poll).
        obj = entry.obj
        interval = obj.spec.polling_interval
        clock = self.clock
        next_at = clock()
        shift = phase(obj.key, interval) if self.spread else 0.0
        limiter = self._limiter
        assert limiter is not None
        while True:
            now = clock()
            lag = now - next_at
            if lag < 0.0:
                lag = 0.0
            async with limiter:
                await self._reconcile_counted(entry, lag)
            next_at += interval - shift
            shift = 0.0
            now = clock()
            if next_at < now:  # we fell behind by whole intervals: skip them, do not burst
                next_at += math.ceil((now - next_at) / interval) * interval
            delay = next_at - now
            if entry.woken:
                pass
            elif delay <= 0:
                await anyio.lowlevel.checkpoint()
            else:
                await self._wait(entry, delay)
            if entry.woken:
                next_at = clock()

    async def _reconcile_counted(self, entry: ObjectLoop, lag: float) -> None:
        """One reconcile, numbered and timed for the push watches and the watchdog."""
        if entry.woken:  # this reconcile serves the pending wake-up
            entry.consume_wake()
        entry.started += 1
        number = entry.started
        entry.since = time.monotonic()
        try:
            await self._reconcile_once(entry, lag)
        finally:
            entry.since = 0.0
            entry.stuck = False
            entry.reconcile_finished(number)

    async def _poll(self, entry: ObjectLoop, lag: float) -> None:
        """One poll started by the shared scheduler (in a task that ends with it);
        :meth:`_reconcile_counted` inline (one coroutine less per poll)."""
        try:
            if not entry.started and self.events.wants(_ADDED_LEVEL):
                await self.events.emit(
                    Event(
                        kind=EventKind.OBJECT_ADDED,
                        time=self.clock(),
                        scaled_object=entry.status.key,
                    )
                )
            if entry.woken:
                entry.consume_wake()
            entry.started = number = entry.started + 1
            entry.since = time.monotonic()
            try:
                await self._reconcile_once(entry, lag)
            finally:
                entry.since = 0.0
                entry.stuck = False
                entry.reconcile_finished(number)
        except Exception:  # a bug of the controller's own: never silent
            logger.exception("the poll of %s failed", entry.status.key)

    async def _watches(self, entry: ObjectLoop) -> None:
        """The push watches of one object on the shared scheduler, in one task."""
        try:
            with entry.open_scope():
                async with anyio.create_task_group() as tg:
                    for scaler in entry.push:
                        tg.start_soon(self._watch, entry, scaler)
        except Exception:  # a bug of the controller's own: never silent
            logger.exception("the push watches of %s failed", entry.status.key)

    async def _wait(self, entry: ObjectLoop, delay: float) -> None:
        """Sleep ``delay`` seconds with ``self.sleep`` or until a wake-up."""
        waiter = entry.wake_waiter()
        if self.sleep is anyio.sleep:  # trio: no bare futures
            with anyio.move_on_after(delay):
                await waiter.wait()
            return
        if not entry.push:
            # Without push scalers only wake() can cut the wait short.
            await sleep_or_wake(self.sleep, delay, waiter)
            return
        await wake_or_sleep(self.sleep, delay, waiter)

    async def _reconcile_once(self, entry: ObjectLoop, lag: float) -> None:
        obj = entry.obj
        status = entry.status
        ownership = self.ownership
        if ownership is not None:
            try:
                owned = await ownership.owns(obj.key)
            except BaseException as exc:
                if must_propagate(exc):
                    raise
                owned = False
                status.last_error = f"ownership check failed: {bounded_text(exc)}"
            status.owned = owned
            if not owned:
                return
        try:
            if entry.scaled_object:
                # No report: the status is all the controller keeps of a tick.
                assert isinstance(obj, ScaledObject)
                cycle = await obj._cycle(
                    None,
                    lag,
                    apply=True,
                    guard=None if ownership is None else _owns(ownership, obj.key),
                )
                decision = cycle.decision
                active = decision is not None and decision.is_active
                error = cycle.target_error
                if error is None:
                    for observation in cycle.observations:
                        if observation.error is not None:
                            error = str(observation.error)
                            break
            else:
                report = await obj.reconcile(
                    lag=lag, guard=None if ownership is None else _owns(ownership, obj.key)
                )
                active = report.decision.is_active
                error = report.target_error or next(
                    (t.error for t in report.triggers if t.error is not None), None
                )
        except BaseException as exc:  # never let one object break the group
            if must_propagate(exc):
                raise
            logger.exception("reconciling %s failed", obj.key)
            status.last_error = f"{type(exc).__name__}: {bounded_text(exc)}"
            await self.events.emit(
                Event(
                    kind=EventKind.TARGET_ERROR,
                    time=self.clock(),
                    scaled_object=obj.key,
                    error=status.last_error,
                )
            )
            return
        status.polls += 1
        status.active = active
        status.last_lag = lag
        status.last_error = error

    async def _watch(self, entry: ObjectLoop, scaler: PushScaler) -> None:
        """Wake the object whenever ``scaler`` reports possible activity.

        A push scaler's ``wait_for_activity()`` returns at once while its source is
        active, so the watch is armed only while the object is idle (and owned): an
        active object is driven by its polls. A wake-up that finds the object still
        idle (a spurious return) delays the next watch, with a doubling back-off, so a
        misbehaving scaler cannot make the loop spin; a failed watch backs off to PUSH_RETRY_CAP.
        """
        interval = entry.obj.spec.polling_interval
        backoff, spurious = min(1.0, interval), min(0.05, interval)
        await self._next_reconcile(entry, 0)  # after the first reconcile, not beside it
        while True:
            while not entry.status.owned or _is_active(entry.status):
                await self._next_reconcile(entry, entry.started)
            try:
                await scaler.wait_for_activity()
            except BaseException as exc:
                if must_propagate(exc):
                    raise
                logger.debug("push watch on %s failed: %s", entry.obj.key, exc)
                await self.sleep(backoff)
                backoff = min(backoff * 2, interval, PUSH_RETRY_CAP)
                continue
            backoff = min(1.0, interval)
            started = entry.started
            entry.notify()
            await self._next_reconcile(entry, started)
            if _is_active(entry.status) or not entry.status.owned:
                spurious = min(0.05, interval)
            else:
                await self.sleep(spurious)
                spurious = min(spurious * 2, interval)

    @staticmethod
    async def _next_reconcile(entry: ObjectLoop, after: int) -> None:
        """Return once a reconcile that started after reconcile number ``after`` finished."""
        while entry.finished <= after:
            event = entry.reconciled
            if event is None:
                event = entry.reconciled = anyio.Event()
            await event.wait()


def _owns(ownership: Ownership, key: str) -> Callable[[], Awaitable[bool]]:
    """A guard checked right before a change is applied: polling took time, and the
    lease may have run out since the check at the start of the tick."""

    async def guard() -> bool:
        try:
            return await ownership.owns(key)
        except Exception:
            return False

    return guard


def _is_active(status: ObjectStatus) -> bool:
    # (a function: mypy would keep a narrowed attribute across the awaits in _watch)
    return status.active
