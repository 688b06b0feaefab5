"""One management API request for every queue read in the same poll slot.

Scalers that read single queues (not a regex) through the same management API, vhost,
credentials, TLS settings and timeout (:meth:`ManagementClient.batch_key`) share a
:class:`QueueListingBatcher`. A read waits for the others issued in the same slot (the
rest of the current event-loop iteration): one read alone is sent as before, as
``GET /api/queues/{vhost}/{name}``; two or more (within :data:`WINDOW` seconds) become a
single
``GET /api/queues/{vhost}?columns=...`` (only the fields the scaler reads), and each
scaler takes its own queue out of the listing:

* a queue missing from the listing is that scaler's error (as the single read's 404),
  a queue whose counts are not published yet that scaler's
  :class:`~eventscale.scalers.rabbitmq._management.CountsNotPublished`;
* a failed request (broker down, wrong credentials, missing vhost, timeout) is the error
  of every scaler in the batch, worded for each (its own trigger name);
* a batch that wants fewer than 1 in :data:`LISTING_SHARE` of the vhost's queues (as
  counted by the last listing) asks for its queues one by one instead, on one session: a
  few objects in a vhost of thousands of queues do not pay for the whole listing; so
  does every batch once a listing was larger than ``MAX_LISTING_BYTES``;
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


WINDOW: Final = 0.002
"""Seconds a read waits for the others of its slot (polls a controller spreads over their
interval still share requests; a read is at most 2 ms later)."""
LISTING_SHARE: Final = 8
"""A batch asks for the whole vhost only when it wants at least 1 in this many of its
queues (as last counted); fewer are read one by one on one session."""


class QueueListingBatcher:
    """The reads of one batch key waiting for this slot's request."""

    __slots__ = ("_handle", "_lead", "_pending", "_tasks", "requests", "vhost_queues", "window")

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.vhost_queues: int | None = None
        """Queues in the vhost at the last listing (``None``: not listed yet)."""
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
            if self.window > 0:
                self._handle = loop.call_later(self.window, self._flush)
            else:
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
        names = {client.config.queue_name for client, _ in batch}
        if len(names) > 1 and (
            self.vhost_queues is None or len(names) * LISTING_SHARE >= self.vhost_queues
        ):
            await self._send_listing(lead, batch)
            return
        # one request per queue, all on the lead's session
        self.requests += len(names)
        by_name: dict[str, list[tuple[ManagementClient, asyncio.Future[QueueInfo]]]] = {}
        for client, future in batch:
            by_name.setdefault(client.config.queue_name, []).append((client, future))
        await asyncio.gather(*(_read_for(lead, name, group) for name, group in by_name.items()))

    async def _send_listing(
        self,
        lead: ManagementClient,
        batch: list[tuple[ManagementClient, asyncio.Future[QueueInfo]]],
    ) -> None:
        try:
            self.requests += 1
            listing = await lead.list_queues()
        except ScalerError as exc:
            for client, future in batch:
                _settle(future, None, _reworded(exc, client))
            return
        except asyncio.CancelledError:
            for client, future in batch:
                _settle(
                    future, None, ScalerError("the read was interrupted", trigger=client.identity)
                )
            raise
        if listing is None:  # too large: one request per queue from now on
            self.vhost_queues = 1 << 62
            self.requests += len(batch)
            await asyncio.gather(
                *(_read_for(lead, c.config.queue_name, [(c, f)]) for c, f in batch)
            )
            return
        self.vhost_queues = len(listing)
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


async def _read_for(
    lead: ManagementClient,
    name: str,
    group: list[tuple[ManagementClient, asyncio.Future[QueueInfo]]],
) -> None:
    """Read queue ``name`` with ``lead``'s session for every caller in ``group``."""
    try:
        info = await lead.read(name)
    except ScalerError as exc:
        for client, future in group:
            _settle(future, None, _reworded(exc, client))
    else:
        for _, future in group:
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
