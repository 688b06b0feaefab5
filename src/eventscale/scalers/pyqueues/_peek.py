"""Latency on RabbitMQ: peek at a queue's head message and put it straight back.

RabbitMQ has no way to show a message without delivering it, so the opt-in
``latencyPeek`` reads the age of the oldest waiting task this way, once a poll per
queue, on one AMQP channel the scaler keeps for itself:

1. ``basic.get`` without auto-ack takes the head message (the next one a worker would
   get: on a priority queue, the highest priority one);
2. its publish time is read (a header, the AMQP ``timestamp`` property, or the body);
3. ``basic.reject`` with ``requeue`` puts it back. A classic queue puts a requeued
   message back at its original place; if the scaler dies in between, the broker
   requeues the unacknowledged message when the channel closes.

What changes for the message: it is marked ``redelivered``, and for a few
milliseconds it is not available to workers. On a quorum queue every return counts as
a delivery attempt (``x-delivery-count``, and a ``delivery-limit`` dead-letters or
drops the message after that many), so the peek refuses quorum queues. AMQP cannot
tell a queue's type; the first peek at a queue therefore takes the head message twice:
a classic queue hands it back marked redelivered and otherwise unchanged, a quorum
queue adds ``x-delivery-count``, and the peek then fails for that queue from then on
(having counted a delivery attempt or two on that one message).
See docs/python-queues.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import redact_text
from eventscale.scalers.rabbitmq import RabbitMQConfig, closing_connection_class

__all__ = ("MAX_PEEK_BYTES", "QUORUM_HEADER", "PeekedMessage", "RabbitPeeker")

MAX_PEEK_BYTES: Final = 8 * 1024 * 1024
"""The largest head message whose body the peek hands on for parsing."""
QUORUM_HEADER: Final = "x-delivery-count"
"""The header a quorum queue adds to a message it delivers again."""


@attrs.frozen
class PeekedMessage:
    """What the peek saw of a head message: headers, the AMQP timestamp, the body."""

    headers: Mapping[str, Any]
    timestamp: float | None
    body: bytes


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class RabbitPeeker:
    """Peeks at the head message of queues over one AMQP connection and channel.

    ``published_at(message)`` returns the message's publish time in Unix seconds (or
    raises :class:`ScalerError`); :meth:`oldest` returns it for a queue's head, or
    ``None`` when the queue has no ready message. The connection (one per scaler, named
    ``<connectionName> (latency peek)`` in the management UI) opens on first use and is
    replaced when it breaks; errors carry no secret.
    """

    def __init__(
        self,
        config: RabbitMQConfig,
        published_at: Callable[[PeekedMessage], float],
    ) -> None:
        self.config = config
        self._published_at = published_at
        self._connection: Any = None
        self._channel: Any = None
        self._refused: set[str] = set()
        self._checked: set[str] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()

    def _error(self, what: str, exc: BaseException) -> ScalerError:
        detail = redact_text(str(exc) or type(exc).__name__, self.config.secrets())
        if isinstance(exc, TimeoutError):
            return ScalerTimeout(
                f"{what} timed out after {self.config.effective_timeout:g}s", transient=True
            )
        if "NOT_FOUND" in detail:
            return ScalerError(f"{what}: the queue does not exist: {detail}", transient=True)
        if "ACCESS_REFUSED" in detail or "authentication" in detail.lower():
            return ScalerError(f"{what}: access refused: {detail}", transient=False)
        return ScalerError(f"{what}: {detail}", transient=True)

    async def _connect(self) -> Any:
        aio_pika = import_optional("aio_pika", extra="rabbitmq", what="the rabbitmq broker")
        c = self.config
        parts = urlsplit(c.host.reveal())
        tls = parts.scheme == "amqps"
        # the rabbitmq trigger's rules: credentials from the URL unless username and
        # password are given; SASL EXTERNAL for a client certificate and no password
        login = unquote(parts.username or "guest")
        password = unquote(parts.password or "")
        if c.username and c.password:
            login, password = c.username, c.password.reveal()
        external = bool(c.tls and c.cert and c.key and not password)
        vhost = c.vhost_name or (unquote(parts.path[1:]) if parts.path not in ("", "/") else "/")
        kwargs: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or (5671 if tls else 5672),
            "login": login,
            "password": password,
            "virtualhost": vhost,
            "ssl": tls,
            "timeout": c.effective_timeout,
            "client_properties": {"connection_name": f"{c.connection_name} (latency peek)"},
        }
        if tls:
            kwargs["ssl_context"] = _ssl_context(c)
        if external:
            kwargs["auth"] = "external"
        # closed at once if connecting fails (an unclosed Connection's __del__ makes a
        # close() coroutine nobody awaits)
        kwargs["connection_class"] = closing_connection_class()
        return await aio_pika.connect(**kwargs)

    async def _get_channel(self) -> Any:
        if self._connection is None or self._connection.is_closed:
            await self._drop()
            self._connection = await self._connect()
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def _take(self, queue: str) -> Any:
        """``basic.get`` the head message and reject it with requeue at once."""
        channel = await self._get_channel()
        handle = await channel.get_queue(queue, ensure=True)
        message = await handle.get(no_ack=False, fail=False)
        if message is not None:
            # back first: nothing below may keep the message from workers
            await message.reject(requeue=True)
        return message

    async def _peek(self, queue: str) -> Any:
        """The head message (already requeued); checks the queue type on first use."""
        message = await self._take(queue)
        if message is None or queue in self._checked:
            return message
        if QUORUM_HEADER not in (message.headers or {}):
            # Take it once more: a classic queue hands the same message back marked
            # redelivered and unchanged, a quorum queue adds its delivery count.
            again = await self._take(queue)
            if again is not None and again.redelivered:
                if QUORUM_HEADER in (again.headers or {}):
                    message = again
                else:
                    self._checked.add(queue)
        return message

    async def oldest(self, queue: str) -> float | None:
        """The publish time of ``queue``'s head message, or ``None`` when it has none.

        :raises ScalerError: the broker cannot be read, the queue is missing or is a
            quorum queue, or the message carries no publish time.
        """
        if queue in self._refused:
            raise _quorum_error(queue)
        async with self._lock:
            try:
                async with asyncio.timeout(self.config.effective_timeout):
                    message = await self._peek(queue)
            except BaseException as exc:
                # A timeout or cancellation may fall between basic.get and the reject:
                # closing the channel makes the broker requeue what it still holds.
                self._abandon_channel()
                if isinstance(exc, Exception):
                    raise self._error(f"peeking at RabbitMQ queue {queue!r}", exc) from exc
                raise
        if message is None:
            return None
        headers = dict(message.headers or {})
        if QUORUM_HEADER in headers:
            self._refused.add(queue)
            raise _quorum_error(queue)
        body = message.body
        if len(body) > MAX_PEEK_BYTES:
            raise ScalerError(
                f"the head message of {queue!r} is larger than {MAX_PEEK_BYTES} bytes; not parsed",
                transient=False,
            )
        seen = PeekedMessage(headers=headers, timestamp=_timestamp(message.timestamp), body=body)
        published = self._published_at(seen)
        if not math.isfinite(published):
            raise ScalerError(f"the head message of {queue!r} has no finite publish time")
        return published

    def _abandon_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is None or channel.is_closed:
            return
        task = asyncio.ensure_future(_close_quietly(channel))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def aclose(self) -> None:
        """Close the channel and connection (a message in flight is requeued by the broker)."""
        for task in list(self._closing):
            with contextlib.suppress(BaseException):
                await task
        await self._drop()


async def _close_quietly(channel: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(channel.close(), 2)


def _quorum_error(queue: str) -> ScalerError:
    return ScalerError(
        f"RabbitMQ queue {queue!r} is a quorum queue (its messages carry {QUORUM_HEADER}): "
        "latencyPeek would count a delivery attempt on every poll; not peeked",
        transient=False,
    )


def _ssl_context(config: RabbitMQConfig) -> ssl.SSLContext:
    """CA, client certificate and ``unsafeSsl`` from the trigger's TLS parameters."""
    context = ssl.create_default_context(cadata=config.ca if config.tls and config.ca else None)
    if config.tls and config.cert and config.key:
        with tempfile.TemporaryDirectory(prefix="eventscale-peek-tls-") as tmp:
            paths = []
            for name, text in (("cert.pem", config.cert), ("key.pem", config.key.reveal())):
                path = os.path.join(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                paths.append(path)
            password = config.key_password.reveal() if config.key_password else None
            try:
                context.load_cert_chain(paths[0], paths[1], password=password)
            except (ssl.SSLError, OSError):
                raise ScalerError(
                    "cannot load the client certificate/key for the latency peek",
                    transient=False,
                ) from None
    if config.unsafe_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
