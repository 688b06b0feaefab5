"""Request accounting shared by the ASGI middleware and the interceptor.

A :class:`RequestStats` counts the requests in flight, remembers when each began (so
the age of the oldest is known), and keeps per-second arrival counts for a while, so
"were there requests in the last N seconds?" and "how many per second?" can be
answered without keeping one entry per request. It is safe to use from several
threads (an ASGI server thread, and the controller's event loop reading it).

Times come from an injectable monotonic clock; only ages and counts leave this
module, never clock readings, so they mean the same thing in another process.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ("RequestStats", "StatsRegistry", "registry")

_DEFAULT_RETENTION: Final = 3600.0
_QUEUE_TIME_SAMPLES: Final = 4096  # request queue times kept (the newest)


class RequestStats:
    """Counts requests in flight and recent arrivals for one app or one route.

    :param name: how the ``http`` scaler finds these stats in :data:`registry`.
    :param clock: monotonic seconds (``time.monotonic`` by default).
    :param granularity: width in seconds of the arrival-count buckets.
    :param retention: how far back (seconds) arrival counts are kept; windows longer
        than this are cut to it.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        clock: Callable[[], float] = time.monotonic,
        granularity: float = 1.0,
        retention: float = _DEFAULT_RETENTION,
    ) -> None:
        if not granularity > 0:
            raise ValueError(f"granularity must be > 0, got {granularity!r}")
        if not retention >= granularity:
            raise ValueError(f"retention must be >= granularity, got {retention!r}")
        self.name = name
        self.clock = clock
        self.granularity = float(granularity)
        self.retention = float(retention)
        self._lock = threading.Lock()
        self._next_token = 0
        # token -> start time, in start order: the first entry is the oldest request.
        self._starts: dict[int, float] = {}
        # [bucket index, arrivals] oldest first.
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._total = 0
        self._last_activity: float | None = None
        # (arrival, seconds the request waited before the app got it), newest last
        self._queue_times: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=_QUEUE_TIME_SAMPLES
        )

    # ------------------------------------------------------------------ recording

    def record_queue_time(self, seconds: float) -> None:
        """Record how long a request waited before the app received it (the middleware's
        ``X-Request-Start`` option); non-finite or negative values count as 0."""
        value = seconds if math.isfinite(seconds) and seconds > 0 else 0.0
        now = self.clock()
        with self._lock:
            self._queue_times.append((now, value))

    def begin(self) -> int:
        """Record that a request began; returns the token to pass to :meth:`end`."""
        now = self.clock()
        index = math.floor(now / self.granularity)
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._starts[token] = now
            self._total += 1
            self._last_activity = now
            buckets = self._buckets
            if buckets and buckets[-1][0] == index:
                buckets[-1][1] += 1
            else:
                buckets.append([index, 1])
                oldest = index - math.ceil(self.retention / self.granularity)
                while buckets and buckets[0][0] < oldest:
                    buckets.popleft()
        return token

    def end(self, token: int) -> None:
        """Record that the request ``token`` finished (a second call is ignored)."""
        now = self.clock()
        with self._lock:
            if self._starts.pop(token, None) is not None:
                self._last_activity = now

    # ------------------------------------------------------------------ reading

    @property
    def in_flight(self) -> int:
        """Requests begun and not yet finished."""
        return len(self._starts)

    @property
    def total(self) -> int:
        """Requests begun since these stats were created."""
        return self._total

    def oldest_age(self) -> float:
        """Seconds since the oldest request in flight began (0 when none is)."""
        now = self.clock()
        with self._lock:
            for start in self._starts.values():
                return max(0.0, now - start)
        return 0.0

    def last_activity_age(self) -> float | None:
        """Seconds since a request last began or finished; ``None`` before the first one."""
        with self._lock:
            last = self._last_activity
        if last is None:
            return None
        return max(0.0, self.clock() - last)

    def arrivals_within(self, window: float) -> int:
        """Requests begun in the last ``window`` seconds (to the bucket granularity)."""
        if window <= 0:
            return 0
        now = self.clock()
        window = min(window, self.retention)
        first = math.floor((now - window) / self.granularity) + 1
        with self._lock:
            return sum(count for index, count in self._buckets if index >= first)

    def rate(self, window: float) -> float:
        """Average requests per second over the last ``window`` seconds."""
        if window <= 0:
            return 0.0
        window = min(window, self.retention)
        return self.arrivals_within(window) / window

    def queue_time(self, window: float) -> float:
        """Average request queue time (seconds) of the requests that arrived in the last
        ``window`` seconds; 0 when none was recorded."""
        since = self.clock() - window
        with self._lock:
            recent = [seconds for at, seconds in self._queue_times if at >= since]
        return sum(recent) / len(recent) if recent else 0.0

    def active_within(self, window: float) -> bool:
        """Whether a request is in flight or one began or finished in the last ``window`` s."""
        if self.in_flight > 0:
            return True
        age = self.last_activity_age()
        return age is not None and window > 0 and age <= window

    def snapshot(self, window: float = 60.0) -> dict[str, Any]:
        """A JSON-ready view: what the metrics endpoints serve.

        ``window`` (seconds) is the span ``arrivalsInWindow`` and ``requestRate`` cover.
        """
        return {
            "name": self.name,
            "inFlight": self.in_flight,
            "oldestAgeSeconds": round(self.oldest_age(), 6),
            "total": self.total,
            "lastActivityAgeSeconds": self.last_activity_age(),
            "window": window,
            "arrivalsInWindow": self.arrivals_within(window),
            "requestRate": self.rate(window),
            "queueTimeSeconds": round(self.queue_time(window), 6),
        }


class StatsRegistry:
    """Named :class:`RequestStats`, so an ``http`` trigger can find them by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, RequestStats] = {}

    def register(self, stats: RequestStats, *, replace: bool = True) -> RequestStats:
        """Make ``stats`` findable under ``stats.name``; returns it."""
        with self._lock:
            if not replace and stats.name in self._stats:
                raise ValueError(f"request stats {stats.name!r} are already registered")
            self._stats[stats.name] = stats
        return stats

    def get(self, name: str) -> RequestStats | None:
        """The stats registered under ``name``, or ``None``."""
        with self._lock:
            return self._stats.get(name)

    def unregister(self, name: str, stats: RequestStats | None = None) -> None:
        """Forget ``name`` (only if it is still ``stats``, when given)."""
        with self._lock:
            if stats is None or self._stats.get(name) is stats:
                self._stats.pop(name, None)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        with self._lock:
            return sorted(self._stats)


registry: Final = StatsRegistry()
"""The process-wide registry the ``http`` trigger reads in-process stats from."""
