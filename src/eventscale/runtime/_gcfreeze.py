"""Keeping a controller's resident objects out of the cyclic collector's walk.

A controller holding many objects keeps a few dozen long-lived, GC-tracked objects
per object (its spec, scalers, target, status). Python's full collections walk every
tracked object, so at 100,000 objects each one stops the event loop for about a
second. :class:`Freezer` moves them to the collector's permanent generation with
:func:`gc.freeze` once the controller's set of objects has been quiet for a moment
after an add, and :func:`gc.unfreeze`, a full collection and :func:`gc.freeze` again
after objects are removed or replaced (frozen objects are never collected, so a
removed object caught in a reference cycle would otherwise stay forever). Objects
without cycles are freed by reference counting whether frozen or not. See
docs/runtime.md, "Running thousands of objects".
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ("FREEZE_AFTER", "FREEZE_MIN_OBJECTS", "SETTLE_LIMIT", "Freezer")

#: With ``Controller(freeze=None)`` (the default) the controller freezes once it holds
#: at least this many objects.
FREEZE_MIN_OBJECTS: Final = 1000

#: Seconds without an add, update or remove before the controller (re)freezes.
FREEZE_AFTER: Final = 2.0

#: The longest the freeze waits, once the objects are quiet, for every object to have
#: finished its first poll (what a first poll builds, its engine, is frozen with it).
SETTLE_LIMIT: Final = 60.0

logger = logging.getLogger("eventscale.controller")


class Freezer:
    """When to call :func:`gc.freeze` / :func:`gc.unfreeze` for one controller.

    :param mode: ``True`` always, ``False`` never, ``None`` from
        :data:`FREEZE_MIN_OBJECTS` objects on.
    :param after: seconds of quiet after a change before acting.
    """

    __slots__ = ("_due", "_quiet_since", "_removed", "after", "frozen", "mode", "refreezes")

    def __init__(self, mode: bool | None, after: float = FREEZE_AFTER) -> None:
        self.mode = mode
        self.after = after
        #: whether this controller froze the process's objects (and has not unfrozen)
        self.frozen = False
        #: full refreezes done (after removals), for tests and logs
        self.refreezes = 0
        self._due = 0.0
        self._quiet_since = 0.0
        self._removed = False

    def changed(self, *, removed: bool) -> None:
        """An object was added (``removed=False``), or removed or replaced."""
        if self.mode is False:
            return
        self._due = time.monotonic() + self.after
        self._quiet_since = 0.0
        self._removed = self._removed or removed

    def tick(self, count: int, settled: Callable[[], bool]) -> None:
        """Act if the objects have been quiet for ``after`` seconds (``count`` held) and
        ``settled()`` (every object has finished its first poll; at most
        :data:`SETTLE_LIMIT` seconds are waited for that)."""
        due = self._due
        now = time.monotonic()
        if not due or now < due:
            return
        if not self._quiet_since:
            self._quiet_since = now
        if now - self._quiet_since < SETTLE_LIMIT and not settled():
            self._due = now + self.after  # (look again later)
            return
        self._due = self._quiet_since = 0.0
        removed, self._removed = self._removed, False
        wanted = self.mode is True or (self.mode is None and count >= FREEZE_MIN_OBJECTS)
        if self.frozen and (removed or not wanted):
            # what was removed may sit in the permanent generation: collect it
            gc.unfreeze()
            self.frozen = False
            started = time.perf_counter()
            gc.collect()
            self.refreezes += 1
            logger.debug("unfroze and collected in %.3fs", time.perf_counter() - started)
        if wanted:
            gc.collect(1)  # (the young garbage: cheap, and not frozen with the rest)
            gc.freeze()
            self.frozen = True

    def close(self) -> None:
        """The controller is done: give what it froze back to the collector."""
        self._due = 0.0
        if self.frozen:
            self.frozen = False
            gc.unfreeze()
