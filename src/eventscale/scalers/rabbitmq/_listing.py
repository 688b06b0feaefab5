"""One management API request for every queue read in the same poll slot.

Scalers that read single queues (not a regex) through the same management API, vhost,
credentials, TLS settings and timeout (:meth:`ManagementClient.batch_key`) share a
:class:`QueueListingBatcher`. A read waits for the others issued in the same slot (the
rest of the current event-loop iteration): one read alone is sent as before, as
``GET /api/queues/{vhost}/{name}``; two or more become a single
``GET /api/queues/{vhost}?columns=...`` (only the fields the scaler reads), and each
scaler takes its own queue out of the listing:

* a queue missing from the listing is that scaler's error (as the single read's 404),
  a queue whose counts are not published yet that scaler's
  :class:`~eventscale.scalers.rabbitmq._management.CountsNotPublished`;
* a failed request (broker down, wrong credentials, missing vhost, timeout) is the error
  of every scaler in the batch, worded for each (its own trigger name);
* a listing larger than ``MAX_LISTING_BYTES`` falls back to one request per queue;
* each scaler waits under its own timeout; one that gives up is skipped.

The request is made with one member's client (its session and OAuth2 token), the same
one as long as it keeps reading: the batch key makes every member's client equivalent,
and the other members open no connection of their own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any, Final

from eventscale.errors import ScalerError
from eventscale.scalers.rabbitmq._management import ManagementClient, QueueInfo

__all__ = ("LISTINGS", "QueueListingBatcher", "QueueListings")


class QueueListingBatcher:
    """The reads of one batch key waiting for this slot's request."""

    __slots__ = ("_handle", "_lead", "_pending", "_tasks", "requests")

    def __init__(self) -> None:
        self._pending: list[tuple[ManagementClient, asyncio.Future[QueueInfo]]] = []
        self._lead: ManagementClient | None = None
        self._handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        """Management API requests sent so far (for diagnostics and tests)."""

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight."""
        return not self._pending and not self._tasks and self._handle is None

    def read(self, client: ManagementClient) -> asyncio.Future[QueueInfo]:
        """Queue ``client``'s read for this slot; a future of its queue's counts."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[QueueInfo] = loop.create_future()
        self._pending.append((client, future))
        if self._handle is None:
            self._handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._handle = None
        batch = [item for item in self._pending if not item[1].done()]
        self._pending = []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[ManagementClient, asyncio.Future[QueueInfo]]]) -> None:
        # The same member's client (session, token) makes every request while it is
        # in the batches, so the others never open a connection of their own.
        lead = self._lead
        if lead is None or all(client is not lead for client, _ in batch):
            lead = self._lead = batch[0][0]
        try:
            if len({client.config.queue_name for client, _ in batch}) == 1:
                self.requests += 1
                info = await batch[0][0].read()
                for _, future in batch:
                    _settle(future, info, None)
                return
            self.requests += 1
            listing = await lead.list_queues()
        except ScalerError as exc:
            for client, future in batch:
                _settle(future, None, _reworded(exc, client))
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        if listing is None:  # too large: one request per queue, all at once
            self.requests += len(batch)
            await asyncio.gather(*(_read_one(client, future) for client, future in batch))
            return
        for client, future in batch:
            try:
                _settle(future, client.queue_from_listing(listing), None)
            except ScalerError as exc:
                _settle(future, None, exc)

    async def aclose(self) -> None:
        """Cancel what is queued or in flight."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for _, future in self._pending:
            future.cancel()
        self._pending = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _settle(
    future: asyncio.Future[QueueInfo], info: QueueInfo | None, error: BaseException | None
) -> None:
    if future.done():
        return  # its caller timed out or was cancelled
    if error is not None:
        future.set_exception(error)
    else:
        assert info is not None
        future.set_result(info)


def _reworded(exc: ScalerError, client: ManagementClient) -> ScalerError:
    """``exc`` (raised for the batch's first scaler) named for ``client``'s trigger."""
    error = type(exc)(exc.message, trigger=client.identity, transient=exc.transient)
    error.__cause__ = exc.__cause__
    return error


async def _read_one(client: ManagementClient, future: asyncio.Future[QueueInfo]) -> None:
    try:
        info = await client.read()
    except ScalerError as exc:
        _settle(future, None, exc)
    else:
        _settle(future, info, None)


_MAX_KEYS: Final = 10_000  # idle batchers beyond this are dropped (keys of closed scalers)


class QueueListings:
    """The batchers of one process, per event loop and batch key."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[Any, ...], QueueListingBatcher]
        ] = weakref.WeakKeyDictionary()

    def batcher(self, client: ManagementClient) -> QueueListingBatcher:
        """The batcher for ``client``'s key in the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        batchers = self._loops.setdefault(loop, {})
        key = client.batch_key()
        batcher = batchers.get(key)
        if batcher is None:
            if len(batchers) >= _MAX_KEYS:
                _drop_idle(batchers)
            batcher = batchers[key] = QueueListingBatcher()
        return batcher

    async def read(self, client: ManagementClient) -> QueueInfo:
        """``client``'s queue, read with this slot's other reads of the same key.

        :raises ScalerError: as :meth:`ManagementClient.read`.
        """
        future = self.batcher(client).read(client)
        try:
            async with asyncio.timeout(client.config.effective_timeout):
                return await future
        except TimeoutError as exc:
            if isinstance(exc, ScalerError):
                raise
            # the request has the same timeout and fails first; this is a backstop
            raise client.timed_out(exc) from exc


def _drop_idle(batchers: Mapping[tuple[Any, ...], QueueListingBatcher]) -> None:
    assert isinstance(batchers, dict)
    for key in [key for key, batcher in batchers.items() if batcher.idle]:
        del batchers[key]


LISTINGS: Final = QueueListings()
"""The process's listing batchers (one per event loop and batch key)."""
