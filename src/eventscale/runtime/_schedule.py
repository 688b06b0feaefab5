"""The bookkeeping of one object's loop in the controller, and its waits.

:class:`ObjectLoop` is what :class:`~eventscale.runtime.controller.Controller` keeps per
object: the loop's cancel scope, pending wake-ups and reconcile counters. The
functions are the loop's waits and its schedule offset. See docs/runtime.md for why
nothing here allocates per tick.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers import PushScaler

if TYPE_CHECKING:
    from eventscale.runtime.objects import ObjectStatus, Reconcilable

__all__ = (
    "PUSH_RETRY_CAP",
    "ObjectLoop",
    "abandon",
    "aclose_quietly",
    "bounded",
    "close_unused",
    "phase",
    "running_asyncio_loop",
    "sleep_or_wake",
    "wake_or_sleep",
)

#: The longest wait, in seconds, before a failed push watch (``wait_for_activity``) is
#: tried again: after an outage of the source, push wake-ups work again this soon.
PUSH_RETRY_CAP = 4.0


class ObjectLoop:
    """One object's loop: its cancel scope, wake-ups and reconcile counters.

    The events other tasks wait on are created only when one waits (most loops never
    have a waiter), so an idle loop holds no per-tick objects.
    """

    __slots__ = (
        "abandoned",
        "cancelled",
        "cancelled_at",
        "done_event",
        "ended",
        "finished",
        "interval",
        "limit",
        "next_at",
        "number",
        "obj",
        "push",
        "reconciled",
        "scaled_object",
        "scheduler",
        "scope",
        "shift",
        "since",
        "started",
        "state",
        "status",
        "stuck",
        "task",
        "wake_event",
        "watch",
        "woken",
    )

    def __init__(self, obj: Reconcilable, status: ObjectStatus, push: tuple[PushScaler, ...]):
        self.obj = obj
        #: the cancel scope of the loop (or of the push watches): made when entered
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        #: the scheduler's handle on the object (its heap items hold numbers, not objects)
        self.number = 0
        self.status = status
        #: the object's push-capable scalers (a runtime protocol check is slow: done once)
        self.push = push
        self.scaled_object = isinstance(obj, ScaledObject)
        #: a wake-up is pending (``wake_event`` is its event, made when someone waits)
        self.woken = False
        self.wake_event: anyio.Event | None = None
        #: the loop has ended (``done_event``, made by a waiter, is then set)
        self.ended = False
        self.done_event: anyio.Event | None = None
        # Reconciles started and finished (numbered), and an event set after each finishes:
        # a push watcher waits for the first reconcile that started after its wake-up.
        self.started = 0
        self.finished = 0
        self.reconciled: anyio.Event | None = None
        #: the loop's own asyncio task (``None`` on trio, where it runs in the task group)
        self.task: asyncio.Task[None] | None = None
        #: when the running reconcile started (``time.monotonic()``; 0.0 between them),
        #: the seconds after which it counts as stuck, and whether that was reported
        self.since = 0.0
        self.limit = 0.0
        self.stuck = False
        # Used by the shared scheduler (runtime/_scheduler.py) only: where the object
        # is (IDLE, READY, RUNNING, STOPPED), when its next poll is due (the
        # controller's clock), the first tick's spread offset, its interval, the task of
        # its push watches, and whether its running poll was cancelled / abandoned.
        self.scheduler: Any = None
        self.state = 0
        self.next_at = 0.0
        self.shift = 0.0
        self.interval = 0.0
        self.watch: asyncio.Task[None] | None = None
        self.cancelled_at = 0.0
        self.abandoned = False

    def open_scope(self) -> anyio.CancelScope:
        """The cancel scope to run the loop (or the push watches) in."""
        scope = self.scope
        if scope is None:
            scope = self.scope = anyio.CancelScope()
            if self.cancelled:
                scope.cancel()
        return scope

    def cancel(self) -> None:
        """Cancel the loop (or the push watches), now or as soon as it starts."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    def notify(self) -> None:
        """Record a wake-up: the object polls at once (or right after its running poll)."""
        self.woken = True
        event = self.wake_event
        if event is not None:
            event.set()
        if self.scheduler is not None:
            self.scheduler.wake(self)

    def consume_wake(self) -> None:
        """The reconcile starting now serves the pending wake-up."""
        self.woken = False
        self.wake_event = None

    def wake_waiter(self) -> anyio.Event:
        """The event set by the next wake-up (already set when one is pending)."""
        event = self.wake_event
        if event is None:
            event = self.wake_event = anyio.Event()
            if self.woken:
                event.set()
        return event

    def reconcile_finished(self, number: int) -> None:
        """Count reconcile ``number`` finished and release whoever waits for one."""
        self.finished = number
        event = self.reconciled
        if event is not None:
            self.reconciled = None
            event.set()

    def loop_ended(self) -> None:
        """Mark the loop ended and release whoever waits for it."""
        self.ended = True
        if self.done_event is not None:
            self.done_event.set()

    async def wait_ended(self) -> None:
        """Return once the loop has ended."""
        if not self.ended:
            if self.done_event is None:
                self.done_event = anyio.Event()
            await self.done_event.wait()


def phase(key: str, interval: float) -> float:
    """A fixed offset in ``[0, interval)`` for ``key``: the same in every process."""
    return zlib.crc32(key.encode()) / 2**32 * interval


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or ``None`` on another anyio backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another anyio backend (trio)
        return None


async def sleep_or_wake(
    sleep: Callable[[float], Awaitable[None]], delay: float, wake: anyio.Event
) -> None:
    """``sleep(delay)``, cut short when ``wake`` is set."""
    with anyio.CancelScope() as scope:

        async def cut_short() -> None:
            await wake.wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cut_short)
            await sleep(delay)
            tg.cancel_scope.cancel()


async def wake_or_sleep(
    sleep: Callable[[float], Awaitable[None]], delay: float, wake: anyio.Event
) -> None:
    """Wait for ``wake``, for at most ``sleep(delay)``."""
    with anyio.CancelScope() as scope:

        async def sleeper() -> None:
            await sleep(delay)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await wake.wait()
            tg.cancel_scope.cancel()


logger = logging.getLogger("eventscale.controller")

#: Calls given up on by :func:`bounded`, still running: kept referenced until they end.
_ABANDONED: set[asyncio.Task[None]] = set()


async def bounded(call: Callable[[], Awaitable[object]], within: float, grace: float) -> bool:
    """Run ``call()``, shielded from the caller's cancellation, for at most about
    ``within + grace`` seconds.

    After ``within`` seconds the call is cancelled; if it ignores that for ``grace``
    seconds more it is left running on its own (asyncio) and ``False`` is returned.
    Its exceptions are logged. On trio the call is only cancelled after ``within``.
    """
    loop = running_asyncio_loop()
    if loop is None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(within):
            await _logged(call)
        return True
    task = loop.create_task(_logged(call))
    done = anyio.Event()
    task.add_done_callback(lambda _: done.set())
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(within):
            await done.wait()
        if not task.done():
            task.cancel()
            with anyio.move_on_after(grace):
                await done.wait()
    if task.done():
        return True
    abandon(task)
    return False


def abandon(task: asyncio.Task[None]) -> None:
    """Keep ``task`` referenced until it ends (nobody waits for it any more)."""
    _ABANDONED.add(task)
    task.add_done_callback(_ABANDONED.discard)


async def _logged(call: Callable[[], Awaitable[object]]) -> None:
    try:
        await call()
    except Exception:
        logger.exception("%r failed", call)


async def close_unused(old: Reconcilable, new: Reconcilable) -> None:
    """Close the scalers and target of ``old`` that ``new`` does not reuse."""
    reused = {id(s) for s in new.scalers} | {id(new.target)}
    with anyio.CancelScope(shield=True):
        for scaler in old.scalers:
            if id(scaler) not in reused:
                await aclose_quietly(scaler)
        if id(old.target) not in reused:
            await aclose_quietly(old.target)


async def aclose_quietly(resource: Any) -> None:
    """``await resource.aclose()`` within 10 s; a failure is logged (debug), not raised."""
    try:
        with anyio.move_on_after(10):
            await resource.aclose()
    except Exception:
        logger.debug("closing %r failed", resource, exc_info=True)
