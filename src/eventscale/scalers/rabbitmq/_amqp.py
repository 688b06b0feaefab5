"""AMQP: one shared connection per broker settings, passive queue declares, the watch.

A passive queue declare returns the number of **ready**
messages only: messages that consumers hold unacknowledged are *not* counted (see
docs/scalers/rabbitmq.md). Scalers that talk to the same broker with the same settings
share **one** long-lived connection (reference-counted, one per event loop); a missing
queue closes only the channel. A connection that breaks is replaced on the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import attrs

from eventscale._optional import import_optional
from eventscale.redaction import Secret
from eventscale.scalers.rabbitmq._errors import ErrorFactory
from eventscale.scalers.rabbitmq._tls import build_ssl_context, tls_failure, tls_reason
from eventscale.scalers.rabbitmq.config import RabbitMQConfig

__all__ = (
    "DECLARE_CHANNELS",
    "AmqpReader",
    "amqp_connection_count",
    "closing_connection_class",
    "import_aio_pika",
    "uses_external_auth",
)


def uses_external_auth(config: RabbitMQConfig) -> bool:
    """KEDA's SASL choice: EXTERNAL for TLS with a client cert and no password anywhere."""
    if not (config.tls and config.cert and config.key):
        return False
    if config.username and config.password:
        return False
    url_password = urlsplit(config.host.reveal()).password
    return not url_password


def import_aio_pika() -> Any:
    """``aio_pika``; a missing extra raises :class:`~eventscale.errors.MissingExtraError`."""
    return import_optional("aio_pika", extra="rabbitmq", what="the rabbitmq scaler")


@functools.cache
def closing_connection_class() -> Any:
    """aio-pika's ``Connection``, closed at once when connecting fails.

    A ``Connection`` whose ``connect()`` raised is dropped unclosed, and its ``__del__``
    then creates a ``close()`` coroutine it cannot schedule when the garbage collector
    runs outside the event loop ("coroutine 'Connection.close' was never awaited").
    Closing it on failure marks it closed, so ``__del__`` has nothing to do.
    """
    base = import_aio_pika().Connection

    class ClosingConnection(base):  # type: ignore[misc, valid-type]
        async def connect(self, timeout: Any = None) -> None:  # noqa: ASYNC109 - aio-pika's signature
            try:
                await super().connect(timeout=timeout)
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self.close()
                raise

    return ClosingConnection


@attrs.frozen
class _AmqpTarget:
    """Everything that identifies one shared AMQP connection."""

    host: str
    port: int
    vhost: str
    login: str
    password: Secret | None
    use_tls: bool
    external: bool
    tls_key: tuple[Any, ...]
    connection_name: str


DECLARE_CHANNELS: Final = 16
"""Most channels a shared connection keeps open for the scalers' passive declares."""


class _AmqpConnection:
    """One long-lived connection, shared by every scaler with the same target.

    Passive declares run on a small set of long-lived channels (at most
    :data:`DECLARE_CHANNELS`), each carrying one declare at a time: the many reads of a
    poll slot spread over them instead of opening and closing a channel each. A channel
    the broker closed (a missing queue) or one of a replaced connection is dropped, and
    the next read opens another.
    """

    def __init__(self, target: _AmqpTarget, config: RabbitMQConfig) -> None:
        self.target = target
        self.config = config
        self.refs = 0
        self.connection: Any = None
        self.lock = asyncio.Lock()
        self._idle: list[tuple[Any, Any]] = []  # (connection, channel)
        self._slots = asyncio.Semaphore(DECLARE_CHANNELS)

    @contextlib.asynccontextmanager
    async def declare_channel(self, connect_timeout: float) -> AsyncIterator[Any]:
        """A channel for one passive declare, given back (if still open) afterwards."""
        async with self._slots:
            pair: tuple[Any, Any] | None = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate[0] is self.connection and not candidate[1].is_closed:
                    pair = candidate
                    break
                await _close_quietly(candidate[1])
            if pair is None:
                conn = await self.get(connect_timeout)
                pair = (conn, await conn.channel())
            try:
                yield pair[1]
            finally:
                if pair[0] is self.connection and not pair[1].is_closed:
                    self._idle.append(pair)
                else:
                    await _close_quietly(pair[1])

    async def get(self, connect_timeout: float) -> Any:
        async with self.lock:
            conn = self.connection
            if conn is not None and not conn.is_closed:
                return conn
            await self._drop()
            aio_pika = import_aio_pika()
            t = self.target
            kwargs: dict[str, Any] = {
                "host": t.host,
                "port": t.port,
                "login": t.login,
                "password": t.password.reveal() if t.password else "",
                "virtualhost": t.vhost,
                "ssl": t.use_tls,
                "timeout": connect_timeout,
                "client_properties": {"connection_name": t.connection_name},
            }
            if t.use_tls:
                kwargs["ssl_context"] = build_ssl_context(self.config)
            if t.external:
                kwargs["auth"] = "external"
            kwargs["connection_class"] = closing_connection_class()
            self.connection = await aio_pika.connect(**kwargs)
            return self.connection

    async def _drop(self) -> None:
        self._idle.clear()  # their connection is closed with them
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def reset(self) -> None:
        async with self.lock:
            await self._drop()


async def _close_quietly(channel: Any) -> None:
    if not channel.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), 2)


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_AmqpTarget, _AmqpConnection]] = (
    weakref.WeakKeyDictionary()
)


def _pool() -> dict[_AmqpTarget, _AmqpConnection]:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = {}
    return pool


def amqp_connection_count() -> int:
    """How many shared AMQP connections this event loop holds open (for tests/metrics)."""
    return sum(
        1
        for entry in _pool().values()
        if entry.connection is not None and not entry.connection.is_closed
    )


def _amqp_target(config: RabbitMQConfig) -> _AmqpTarget:
    parts = urlsplit(config.host.reveal())
    use_tls = parts.scheme == "amqps"
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    if config.vhost_name:
        vhost = config.vhost_name
    login = unquote(parts.username or "guest")
    password: Secret | None = Secret(unquote(parts.password)) if parts.password else None
    if config.username and config.password:
        login, password = config.username, config.password
    external = uses_external_auth(config)
    tls_key = (
        config.tls,
        config.ca,
        config.cert,
        config.key,
        config.key_password,
        config.unsafe_ssl,
    )
    return _AmqpTarget(
        host=parts.hostname or "localhost",
        port=parts.port or (5671 if use_tls else 5672),
        vhost=vhost,
        login=login,
        password=password,
        use_tls=use_tls,
        external=external,
        tls_key=tls_key,
        connection_name=config.connection_name,
    )


class AmqpReader:
    """One scaler's share of the pooled AMQP connection: reads and watches its queue."""

    def __init__(self, config: RabbitMQConfig, error: ErrorFactory) -> None:
        self.config = config
        self._error = error
        self._entry: _AmqpConnection | None = None

    async def _acquire(self) -> _AmqpConnection:
        if self._entry is None:
            target = _amqp_target(self.config)
            pool = _pool()
            entry = pool.get(target)
            if entry is None:
                entry = pool[target] = _AmqpConnection(target, self.config)
            entry.refs += 1
            self._entry = entry
        return self._entry

    @contextlib.asynccontextmanager
    async def _call(self, entry: _AmqpConnection, doing: str) -> AsyncIterator[None]:
        """Run one AMQP exchange within the timeout; translate what the driver raises.

        A failure that may have broken the connection drops it, so the next call
        connects afresh (the scaler recovers by itself once the broker is back).
        """
        aio_pika = import_aio_pika()
        exceptions = import_optional(
            "aiormq.exceptions", extra="rabbitmq", what="the rabbitmq scaler"
        )
        timeout = self.config.effective_timeout
        name = self.config.queue_name
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError as exc:
            await entry.reset()
            raise self._error(
                f"timed out after {timeout:g}s {doing} over AMQP", exc, transient=True
            ) from exc
        except exceptions.ChannelNotFoundEntity as exc:
            raise self._error(f"queue {name!r} does not exist", exc, transient=False) from exc
        except exceptions.ChannelAccessRefused as exc:
            raise self._error(f"access to queue {name!r} refused", exc, transient=False) from exc
        except (exceptions.ProbableAuthenticationError, exceptions.AuthenticationError) as exc:
            await entry.reset()
            raise self._error("authentication failed", exc, transient=False) from exc
        except exceptions.ConnectionNotAllowed as exc:
            await entry.reset()
            raise self._error(
                "connection not allowed (vhost access?)", exc, transient=False
            ) from exc
        except (
            exceptions.AMQPError,
            aio_pika.exceptions.AMQPException,
            OSError,
            ConnectionError,
        ) as exc:
            await entry.reset()
            tls = tls_failure(exc)
            if tls is not None:
                raise self._error(
                    f"TLS handshake with RabbitMQ failed: {tls_reason(tls)}",
                    exc,
                    transient=False,
                ) from exc
            raise self._error("cannot reach RabbitMQ over AMQP", exc, transient=True) from exc

    async def _declare(self, channel: Any) -> int:
        queue = await channel.declare_queue(self.config.queue_name, passive=True)
        return int(queue.declaration_result.message_count or 0)

    async def read(self) -> int:
        """The number of ready messages (a passive declare on a kept channel).

        :raises ScalerError: on any failure.
        """
        entry = await self._acquire()
        async with (
            self._call(entry, f"reading queue {self.config.queue_name!r}"),
            entry.declare_channel(self.config.effective_timeout) as channel,
        ):
            return await self._declare(channel)

    async def watch(self, is_active: Callable[[int], bool], interval: float) -> None:
        """Declare the queue passively every ``interval`` seconds on one held channel
        until ``is_active(ready count)``.

        :raises ScalerError: on any failure.
        """
        c = self.config
        entry = await self._acquire()
        channel: Any = None
        try:
            while True:
                async with self._call(entry, f"watching queue {c.queue_name!r}"):
                    if channel is None or channel.is_closed:
                        conn = await entry.get(c.effective_timeout)
                        channel = await conn.channel()
                    count = await self._declare(channel)
                if is_active(count):
                    return
                await asyncio.sleep(interval)
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), 2)

    async def aclose(self) -> None:
        """Give back this share; the last user closes the connection."""
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.refs -= 1
            if entry.refs <= 0:
                pool = _POOLS.get(asyncio.get_running_loop(), {})
                if pool.get(entry.target) is entry:
                    del pool[entry.target]
                await entry.reset()
