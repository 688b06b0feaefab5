"""A counting TCP tap between a client under test and a real server.

The tap listens on a free local port in the test's event loop and forwards every
connection to the real server, counting per connection (a :class:`Link`):

* *turns*: client data arriving after the tap has forwarded a reply since the client
  last sent. A client that waits for each reply before sending the next request makes
  one turn per request; a pipeline is one turn whatever its length;
* the bytes each way;
* *messages*: whatever the ``on_client`` hook counts in the client's stream (commands,
  request lines, frames), with ``Link.buffer`` for the hook's unread rest of a message.

``hold = True`` swallows the server's answers, as a server that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Link", "Tap"]


@attrs.define(eq=False)
class Link:
    """One client connection through the tap."""

    turns: int = 0
    sent: int = 0  # bytes from the client to the server
    received: int = 0  # bytes forwarded from the server to the client
    messages: int = 0  # what the tap's on_client hook counted
    buffer: bytes = b""  # the on_client hook's unread rest of the client's stream
    replied: bool = True  # a reply was forwarded since the client last sent


class Tap:
    """A TCP proxy to ``upstream`` that counts turns, bytes and messages per connection.

    ``on_client(link, data)`` sees every chunk the client sends, before it is forwarded.
    Use as ``async with Tap(...) as tap``; leaving closes every connection through it.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        on_client: Callable[[Link, bytes], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.on_client = on_client
        self.links: list[Link] = []
        self.hold = False  # True: swallow the server's replies (a server that hangs)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "the tap is not listening"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """``127.0.0.1:port``: where clients connect instead of the server."""
        return f"127.0.0.1:{self.port}"

    @property
    def turns(self) -> int:
        return sum(link.turns for link in self.links)

    @property
    def messages(self) -> int:
        return sum(link.messages for link in self.links)

    @property
    def sent(self) -> int:
        return sum(link.sent for link in self.links)

    @property
    def received(self) -> int:
        return sum(link.received for link in self.links)

    def busy_links(self) -> list[Link]:
        """The connections that made a turn since the last :meth:`reset`."""
        return [link for link in self.links if link.turns]

    def reset(self) -> None:
        """Forget the counts so far (say, after connections were opened and authenticated);
        a message the hook has partly read stays in its buffer."""
        for link in self.links:
            link.turns = link.sent = link.received = link.messages = 0
            link.replied = True

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # the connection handlers close their sockets once their pumps are gone
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        link = Link()
        self.links.append(link)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def client_to_server() -> None:
            while data := await reader.read(1 << 20):
                if link.replied:
                    link.turns += 1
                    link.replied = False
                link.sent += len(data)
                if self.on_client is not None:
                    self.on_client(link, data)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(1 << 20):
                if self.hold:
                    continue
                link.replied = True
                link.received += len(data)
                writer.write(data)
                await writer.drain()
            writer.close()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            for stream in (writer, up_writer):
                stream.close()
                with contextlib.suppress(Exception):
                    await stream.wait_closed()
