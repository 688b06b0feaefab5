"""One pub/sub connection per Redis client for every keyspace-notification wait on it.

A scaler waiting for its key to become active (``wait_for_activity``) needs to hear the
key's keyspace events. A pub/sub subscription holds its connection for as long as it
lasts, so one subscription per waiting scaler would take one pooled connection each: the
ninth idle object on a server would exhaust a pool of 8 and starve every poll. The
:class:`KeyspaceHub` of a client holds **one** ``PubSub`` for all of them: a channel is
subscribed while at least one scaler watches it, one reader task receives every event
and wakes the scalers watching that channel.

If the pub/sub connection fails, every watcher is woken with the error (each raises it
as its own ``ScalerError``) and the next watch opens a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

from eventscale.errors import ScalerError
from eventscale.scalers.redis._connection import RedisConnection

__all__ = ("KeyspaceHub", "Watch")

_READ_INTERVAL: Final = 1.0  # seconds the reader waits for an event before it checks again


class Watch:
    """One waiter's interest in one channel: ``event`` is set on each event for it
    (several watches of one waiter may share an event)."""

    __slots__ = ("channel", "error", "event")

    def __init__(self, channel: str, event: asyncio.Event | None = None) -> None:
        self.channel = channel
        self.event = event if event is not None else asyncio.Event()
        self.error: ScalerError | None = None
        """Set when the pub/sub connection failed (the event is set too)."""

    def check(self) -> None:
        """:raises ScalerError: the connection this watch listened on failed."""
        if self.error is not None:
            error = self.error
            raise type(error)(error.message, transient=error.transient) from error.__cause__


class KeyspaceHub:
    """The keyspace subscriptions of one client (see the module docstring).

    ``translate`` turns a driver exception into the ScalerError to raise
    (``translate_error``).
    """

    def __init__(
        self,
        client: Any,
        conn: RedisConnection,
        translate: Callable[[RedisConnection, str, BaseException], ScalerError],
    ) -> None:
        self._client = client
        self._conn = conn
        self._translate = translate
        self._pubsub: Any = None
        self._watches: dict[str, set[Watch]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE at a time

    @property
    def channels(self) -> int:
        """How many channels are subscribed (for tests and diagnostics)."""
        return len(self._watches)

    async def watch(self, channel: str, event: asyncio.Event | None = None) -> Watch:
        """Watch ``channel``; the subscription is sent when this returns. ``event``
        (default: a new one) is set on each event for it.

        :raises ScalerError: the subscription could not be made.
        """
        watch = Watch(channel, event)
        async with self._lock:
            watches = self._watches.get(channel)
            if watches is None:
                if self._pubsub is None:
                    self._pubsub = self._client.pubsub()
                pubsub = self._pubsub
                try:
                    async with asyncio.timeout(self._conn.timeout):
                        await pubsub.subscribe(channel)
                except Exception as exc:
                    # the connection may be broken: every watcher on it hears of it
                    error = self._translate(self._conn, "SUBSCRIBE", exc)
                    self._fail(pubsub, error)
                    await self._reset(pubsub)
                    raise error from exc
                watches = self._watches[channel] = set()
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
            watches.add(watch)
        return watch

    async def unwatch(self, watch: Watch) -> None:
        """Stop watching; the last watcher of a channel unsubscribes it (best effort)."""
        async with self._lock:
            watches = self._watches.get(watch.channel)
            if watches is None or watch not in watches:
                return
            watches.discard(watch)
            if watches:
                return
            del self._watches[watch.channel]
            pubsub = self._pubsub
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._conn.timeout):
                        await pubsub.unsubscribe(watch.channel)

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_READ_INTERVAL
                )
                if not message:
                    continue
                channel = message.get("channel")
                if isinstance(channel, bytes):
                    channel = channel.decode(errors="replace")
                for watch in self._watches.get(str(channel), ()):
                    watch.event.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = self._translate(self._conn, "waiting for keyspace events", exc)
            error.__cause__ = exc
            self._fail(pubsub, error)
            await self._reset(pubsub)

    def _fail(self, pubsub: Any, error: ScalerError) -> None:
        if self._pubsub is not pubsub:
            return
        for watches in self._watches.values():
            for watch in watches:
                watch.error = error
                watch.event.set()
        self._watches.clear()

    async def _reset(self, pubsub: Any) -> None:
        if self._pubsub is pubsub:
            self._pubsub = None
        with contextlib.suppress(Exception):
            await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop the reader and close the pub/sub connection (the client is closing)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        pubsub = self._pubsub
        if pubsub is not None:
            self._fail(pubsub, ScalerError("the Redis client was closed", transient=True))
            await self._reset(pubsub)
