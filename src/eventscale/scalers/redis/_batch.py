"""Coalescing the Redis reads of many scalers into one pipeline per poll slot.

Every scaler that shares a client (the same :class:`RedisConnection`: the same server,
credentials, TLS and timeout) shares its :class:`CommandBatcher`. A read issued through
:meth:`CommandBatcher.call` does not go out at once: it waits for the other reads issued
in the same *slot* and they leave together, as one non-transactional pipeline, in one
round trip. The slot is the rest of the current event-loop iteration (the default
``window`` of 0): the polls a controller starts together (one timer, one
``asyncio.gather``) each reach their first Redis read before the loop turns, so they land
in one batch. A positive ``window`` waits that many seconds more, to collect polls that
start a little apart.

Semantics per caller stay those of a single call:

* each caller gets its own reply, or its own error: a command that fails (``WRONGTYPE``,
  a missing consumer group) fails only its caller; a failure of the whole round trip
  (connection refused, authentication) is every caller's error;
* each caller keeps its own timeout: it waits for its reply under its own deadline and a
  caller that gave up (timed out or was cancelled) is skipped when the replies arrive;
* a batch of one is sent as a plain command, as without batching.

On a cluster, redis-py's cluster pipeline sends each node the commands of the keys it
owns, all nodes at once; every batched command names exactly one key, so none is
cross-slot. A batch holds at most :data:`MAX_BATCH` commands; more are split into
several pipelines sent at once (on different pooled connections). At most
:data:`MAX_IN_FLIGHT` pipelines of one client are out at once: reads issued meanwhile
wait for one to come back and then leave together, so under load the batches grow
instead of the connections.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from eventscale.scalers.redis._connection import import_exceptions

__all__ = ("MAX_BATCH", "MAX_IN_FLIGHT", "CommandBatcher")

MAX_BATCH: Final = 10_000
"""Most commands in one pipeline (bounds one round trip's request and reply size)."""
MAX_IN_FLIGHT: Final = 4
"""Most pipelines of one client in flight at once (the pool holds 8 connections). Reads
issued while this many are out wait and leave together when one comes back."""


class _Slot:
    """The reads queued in one slot and their shared deadline (one timer, not one each)."""

    __slots__ = ("futures", "timer")

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []
        self.timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """The deadline passed: every read still waiting fails with ``TimeoutError``."""
        self.timer = None
        for future in self.futures:
            if not future.done():
                future.set_exception(TimeoutError())
        self.futures = []

    def settled(self) -> None:
        """Drop the timer once every read of the slot has its answer."""
        if self.timer is not None and all(future.done() for future in self.futures):
            self.timer.cancel()
            self.timer = None
            self.futures = []


_Item = tuple[str, tuple[Any, ...], "asyncio.Future[Any]", _Slot]


class CommandBatcher:
    """One client's pending reads and the pipelines that carry them.

    ``client`` is a redis-py asyncio client (standalone, sentinel master or cluster),
    ``timeout`` is each read's deadline, counted from the slot it was issued in (one
    timer per slot) and the bound of each pipeline; ``window`` is the slot length in
    seconds beyond the current event-loop iteration (0: this iteration only).
    """

    __slots__ = (
        "_client",
        "_handle",
        "_in_flight",
        "_pending",
        "_slot",
        "_tasks",
        "batches",
        "commands",
        "timeout",
        "window",
    )

    def __init__(self, client: Any, *, timeout: float, window: float = 0.0) -> None:
        self._client = client
        self.timeout = timeout
        self.window = window
        self._pending: list[_Item] = []
        self._slot: _Slot | None = None
        self._handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self.batches = 0
        """Round trips sent so far (pipelines and single commands; for diagnostics)."""
        self.commands = 0
        """Commands sent so far."""

    def call(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Queue ``client.<method>(*args)`` for this slot's pipeline; a future of its reply.

        The future's exception is the driver's (``redis.exceptions.ResponseError`` for a
        failed command), as awaiting the command alone would raise, or ``TimeoutError``
        once ``timeout`` seconds have passed since the read was queued. Cancelling the
        future (its caller gave up) leaves the other reads alone.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        slot = self._slot
        if slot is None:
            slot = self._slot = _Slot()
            slot.timer = loop.call_at(loop.time() + self.timeout, slot.expire)
            if self._handle is None and self._in_flight < MAX_IN_FLIGHT:
                if self.window > 0:
                    self._handle = loop.call_later(self.window, self._flush)
                else:
                    self._handle = loop.call_soon(self._flush)
            else:  # the reads wait for a pipeline to come back: the slot ends anyway
                loop.call_soon(self._end_slot, slot)
        slot.futures.append(future)
        self._pending.append((method, args, future, slot))
        return future

    def _end_slot(self, slot: _Slot) -> None:
        if self._slot is slot:
            self._slot = None

    def _flush(self) -> None:
        self._handle = None
        self._slot = None  # later reads open a new slot (and a new deadline)
        pending = [item for item in self._pending if not item[2].done()]
        loop = asyncio.get_running_loop()
        while pending and self._in_flight < MAX_IN_FLIGHT:
            batch, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
            self._in_flight += 1
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._sent)
        # what is left waits for a pipeline to come back (and collects more meanwhile)
        self._pending = pending

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if self._pending and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[_Item]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            async with asyncio.timeout(self.timeout):
                if len(batch) == 1:
                    method, args, _, _ = batch[0]
                    replies: list[Any] = [await getattr(self._client, method)(*args)]
                else:
                    pipe = self._client.pipeline(transaction=False)
                    for method, args, _, _ in batch:
                        getattr(pipe, method)(*args)
                    replies = list(await pipe.execute(raise_on_error=False))
        except asyncio.CancelledError:
            _fail(batch, import_exceptions().ConnectionError("the client was closed"))
            raise
        except Exception as exc:  # the whole round trip failed: every caller's error
            _fail(batch, exc)
            return
        for (_, _, future, _), reply in zip(batch, replies, strict=False):
            if future.done():
                continue  # its caller gave up, or its deadline passed
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        if len(replies) < len(batch):
            _fail(batch, import_exceptions().RedisError("the pipeline returned fewer replies"))
        _settled(batch)

    async def aclose(self) -> None:
        """Fail what is queued, cancel what is in flight (the client is closing)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pending, self._pending, self._slot = self._pending, [], None
        _fail(pending, import_exceptions().ConnectionError("the client was closed"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _fail(batch: list[_Item], exc: BaseException) -> None:
    for _, _, future, _ in batch:
        if not future.done():
            future.set_exception(exc)
    _settled(batch)


def _settled(batch: list[_Item]) -> None:
    last: _Slot | None = None
    for _, _, _, slot in batch:
        if slot is not last:
            slot.settled()
            last = slot
