"""The interceptor's HTTP server with bounds on slow and idle clients.

aiohttp's server waits for a request head without a deadline: a client that opens a
connection and sends nothing (or a byte now and then) holds it for ever, and 5,000 of
them hold 5,000 sockets. :class:`GuardedServer` adds two bounds (docs/http.md, "Limits"):

- ``header_timeout``: a request head (request line and headers) must arrive complete
  within this many seconds of the connection opening, or of the first byte of a later
  request on a kept-alive connection; otherwise the connection is closed.
- ``max_idle``: at most this many connections may be waiting for a request head at
  once; past that, the one that has waited longest is closed.

Between two requests of a kept-alive connection aiohttp's ``keepalive_timeout`` applies.
The handler reads a few of aiohttp's ``RequestHandler`` attributes (``_messages``,
``_waiter``, ``_payload_parser``, ``_force_close``); tests/http/test_interceptor_edges.py
checks the behaviour over raw sockets against the installed aiohttp.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ("GuardedServer",)


class _GuardedHandler(RequestHandler):
    """A connection that must deliver each request head within the server's deadline."""

    def __init__(self, server: GuardedServer, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._guard = server
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        waiting = self._head_deadline is not None
        # An idle kept-alive connection whose next request starts: the clock starts now.
        idle = self._waiter is not None and not self._waiter.done()
        super().data_received(data)
        if self._messages:
            self._head_arrived()
        elif not waiting and idle and self._payload_parser is None and not self._force_close:
            self._await_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_deadline = loop.call_later(self._guard.header_timeout, self._too_slow)
        self._guard.waiting(self)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._guard.done_waiting(self)

    def _too_slow(self) -> None:
        self._head_deadline = None
        self._guard.done_waiting(self)
        if not self._messages:
            self._guard.closed_slow += 1
            self.force_close()


class GuardedServer(web.Server):
    """``aiohttp.web.Server`` with a request-head deadline and a cap on idle connections.

    :param handler: the request handler, as for ``aiohttp.web.Server``.
    :param header_timeout: seconds a request head may take to arrive.
    :param max_idle: how many connections may wait for a request head at once.
    :param kwargs: passed on to ``aiohttp.web.Server``.
    """

    def __init__(
        self, handler: Any, *, header_timeout: float, max_idle: int, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout
        self.max_idle = max_idle
        # insertion order is waiting order: the first one has waited longest
        self._waiting: dict[_GuardedHandler, None] = {}
        #: connections closed for a slow head or to make room (for tests and metrics)
        self.closed_slow = 0

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)

    @property
    def waiting_count(self) -> int:
        """How many connections are waiting for a request head now."""
        return len(self._waiting)

    def waiting(self, handler: _GuardedHandler) -> None:
        """``handler`` waits for a request head; close the oldest waiter if over the cap."""
        self._waiting[handler] = None
        while len(self._waiting) > self.max_idle:
            oldest = next(iter(self._waiting))
            self.closed_slow += 1
            oldest._head_arrived()
            oldest.force_close()

    def done_waiting(self, handler: _GuardedHandler) -> None:
        """``handler`` no longer waits (its head arrived, or it was closed)."""
        self._waiting.pop(handler, None)
