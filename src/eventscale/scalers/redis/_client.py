"""Redis clients shared by the list and stream scalers, and every call made on them.

* :class:`RedisClientRegistry`: one client (and so one connection pool) per distinct
  connection settings and event loop, shared by every scaler that uses them, counted by
  reference and closed when the last scaler releases it.
* :func:`redis_call`: runs one Redis call under the connection's timeout and translates
  driver exceptions into :class:`~eventscale.errors.ScalerError` (or
  :class:`~eventscale.errors.ScalerTimeout`) whose message never carries a secret.
* :func:`redis_read`: a read that shares its round trip with the other reads issued on
  the same client in the same poll slot (one pipeline; see ``_batch``).
* :class:`ScalerClient`: one scaler's use of the registry (its lease, closing, and
  waiting for activity through keyspace notifications).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.metrics import ScalerReport
from eventscale.redaction import Secret, redact_text
from eventscale.scalers.redis._batch import CommandBatcher
from eventscale.scalers.redis._connection import (
    RedisConnection,
    RedisMode,
    import_exceptions,
    import_redis,
    import_redis_module,
)
from eventscale.scalers.redis._keyspace import KeyspaceHub, Watch

__all__ = (
    "DEFAULT_BATCH_WINDOW",
    "REGISTRY",
    "RedisClientRegistry",
    "RedisLease",
    "ScalerClient",
    "once_per_client",
    "redis_call",
    "redis_read",
    "translate_error",
    "wait_on_keyspace",
)

T = TypeVar("T")

# --------------------------------------------------------------------------- errors


def _split_address(conn: RedisConnection, address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ScalerError(f"invalid redis address {address!r}: expected host:port", transient=False)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ScalerError(
            f"invalid redis address {address!r}: port {port_text!r} is not a number",
            transient=False,
        ) from None
    return host or "localhost", port


def translate_error(conn: RedisConnection, what: str, exc: BaseException) -> ScalerError:
    """A :class:`ScalerError` for a driver exception, with every secret redacted."""
    exceptions = import_exceptions()
    detail = redact_text(str(exc) or type(exc).__name__, conn.secrets())
    where = conn.describe()
    if isinstance(exc, (TimeoutError, exceptions.TimeoutError)):
        return ScalerTimeout(f"{what} on {where} timed out after {conn.timeout:g}s", transient=True)
    auth_markers = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")
    if isinstance(exc, (exceptions.AuthenticationError, exceptions.NoPermissionError)) or any(
        marker in str(exc) for marker in auth_markers
    ):
        return ScalerError(f"{what} on {where}: authentication failed: {detail}", transient=False)
    # RedisClusterUnreachableError (redis-py >= 7): no seed node of a cluster answered
    unreachable = getattr(exceptions, "RedisClusterUnreachableError", exceptions.ConnectionError)
    if isinstance(exc, (exceptions.ConnectionError, unreachable)):
        return ScalerError(f"{what} on {where}: cannot connect: {detail}", transient=True)
    if isinstance(exc, exceptions.ResponseError):
        return ScalerError(f"{what} on {where}: {detail}", transient=False)
    if isinstance(exc, OSError):
        return ScalerError(f"{what} on {where}: {detail}", transient=True)
    return ScalerError(f"{what} on {where}: {detail}", transient=True)


async def redis_call(conn: RedisConnection, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` within ``conn.timeout``; translate any driver error.

    :raises ScalerTimeout: the call did not finish in time.
    :raises ScalerError: connection refused, authentication failure, Redis error reply.
    """
    exceptions = import_exceptions()
    try:
        async with asyncio.timeout(conn.timeout):
            return await call()
    except ScalerError:
        raise
    except (TimeoutError, OSError, exceptions.RedisError, exceptions.RedisClusterException) as exc:
        raise translate_error(conn, what, exc) from exc


# --------------------------------------------------------------------------- registry

DEFAULT_BATCH_WINDOW: Final = 0.002
"""Seconds a read waits for the others of its slot. Polls a controller spreads over
their interval still share round trips, and a read is at most 2 ms later."""


@attrs.define(eq=False)
class _Entry:
    client: Any
    refs: int = 0
    sentinel: Any = None
    tmpdir: str | None = None
    batcher: CommandBatcher | None = None
    memo: dict[str, asyncio.Future[Any]] = attrs.Factory(dict)
    hub: KeyspaceHub | None = None


@attrs.define(eq=False)
class RedisLease:
    """A scaler's share of a registry client; give it back with ``REGISTRY.release``.

    ``batcher`` coalesces the reads of every lease on the same client (``None``: each
    read is its own round trip).
    """

    conn: RedisConnection
    client: Any
    loop: asyncio.AbstractEventLoop
    released: bool = False
    batcher: CommandBatcher | None = None
    memo: dict[str, asyncio.Future[Any]] = attrs.Factory(dict)
    """Answers shared by every lease on the client (see :func:`once_per_client`)."""
    hub: KeyspaceHub | None = None
    """The client's one pub/sub connection for keyspace waits (see ``_keyspace``)."""

    @classmethod
    def of_client(cls, conn: RedisConnection, client: Any) -> RedisLease:
        """A lease on a client the caller made and closes (not from :data:`REGISTRY`),
        with its own keyspace hub for :func:`wait_on_keyspace`; :meth:`aclose_hub`
        closes that hub's pub/sub connection."""
        return cls(
            conn=conn,
            client=client,
            loop=asyncio.get_running_loop(),
            hub=KeyspaceHub(client, conn, translate_error),
        )

    async def aclose_hub(self) -> None:
        """Close the keyspace hub of a lease made by :meth:`of_client`."""
        if self.hub is not None:
            await self.hub.aclose()


async def redis_read(lease: RedisLease, what: str, method: str, *args: Any) -> Any:
    """``lease.client.<method>(*args)``, sent with this slot's other reads on the client.

    Only for commands on one key whose reply needs no other command (``LLEN``, ``TYPE``,
    ``LINDEX``, ``XLEN``, ``XPENDING``, ``XINFO GROUPS``...). Errors as :func:`redis_call`
    (a failed command raises in its own caller only; the driver's exception is the
    ``__cause__``), within ``conn.timeout`` counted from the slot the read was issued in.

    :raises ScalerTimeout: no reply in time.
    :raises ScalerError: connection refused, authentication failure, Redis error reply.
    """
    batcher = lease.batcher
    if batcher is None:
        return await redis_call(lease.conn, what, lambda: getattr(lease.client, method)(*args))
    try:
        return await batcher.call(method, *args)
    except (TimeoutError, OSError, import_exceptions().RedisError) as exc:
        raise translate_error(lease.conn, what, exc) from exc


async def once_per_client(lease: RedisLease, key: str, call: Callable[[], Awaitable[T]]) -> T:
    """``await call()`` once per client: later and concurrent callers share its answer.

    For facts about the server that do not change while the client lives (its version).
    The call runs in its own task, so every caller (the first too) resumes in the same
    loop iteration and their next reads share a batch; a caller that is cancelled does
    not cancel it. A failure is every waiting caller's error (each its own copy) and is
    not kept: the next call tries again.
    """
    shared = lease.memo.get(key)
    if shared is None:
        memo = lease.memo

        async def run() -> Any:
            try:
                return await call()
            except BaseException:
                memo.pop(key, None)
                raise

        shared = memo[key] = asyncio.get_running_loop().create_task(run())
    try:
        result: T = await asyncio.shield(shared)
    except ScalerError as exc:  # each waiter its own error (it sets its own trigger)
        raise type(exc)(exc.message, transient=exc.transient) from exc.__cause__
    return result


class RedisClientRegistry:
    """One Redis client per (connection settings, event loop), shared and refcounted.

    redis-py's asyncio clients belong to the event loop that opened their connections,
    hence the loop in the key. The client is created on the first :meth:`acquire` and
    closed (with its pool, sentinels and temporary TLS files) on the last :meth:`release`.

    ``batch_window`` is the poll slot in which reads on one client are coalesced into one
    pipeline (see :func:`redis_read`): the reads issued within that many seconds of the
    first leave together (default :data:`DEFAULT_BATCH_WINDOW`); ``0`` is the rest of the
    current event-loop iteration only, ``None`` turns batching off (each read its own
    round trip). It applies to clients created after it is set.
    """

    def __init__(self, *, batch_window: float | None = DEFAULT_BATCH_WINDOW) -> None:
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[RedisConnection, _Entry]
        ] = weakref.WeakKeyDictionary()
        self.batch_window = batch_window

    def acquire(self, conn: RedisConnection) -> RedisLease:
        """Take a reference to the client for ``conn`` in the running loop (no I/O)."""
        loop = asyncio.get_running_loop()
        entries = self._loops.setdefault(loop, {})
        entry = entries.get(conn)
        if entry is None:
            entry = _build_client(conn)
            entry.hub = KeyspaceHub(entry.client, conn, translate_error)
            if self.batch_window is not None:
                entry.batcher = CommandBatcher(
                    entry.client, timeout=conn.timeout, window=self.batch_window
                )
            entries[conn] = entry
        entry.refs += 1
        return RedisLease(
            conn=conn,
            client=entry.client,
            loop=loop,
            batcher=entry.batcher,
            memo=entry.memo,
            hub=entry.hub,
        )

    async def release(self, lease: RedisLease) -> None:
        """Drop ``lease``; close the client when it was the last reference. Idempotent."""
        if lease.released:
            return
        lease.released = True
        entries = self._loops.get(lease.loop)
        if entries is None:
            return
        entry = entries.get(lease.conn)
        if entry is None or entry.client is not lease.client:
            return
        entry.refs -= 1
        if entry.refs > 0:
            return
        del entries[lease.conn]
        if not entries:
            self._loops.pop(lease.loop, None)
        await _close_entry(entry)

    def open_clients(self) -> int:
        """How many clients are open in the running loop (for tests and diagnostics)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0
        return len(self._loops.get(loop, {}))

    def batcher(self, conn: RedisConnection) -> CommandBatcher | None:
        """The batcher of the client for ``conn`` in the running loop (for diagnostics)."""
        entry = self._loops.get(asyncio.get_running_loop(), {}).get(conn)
        return entry.batcher if entry is not None else None

    def hub(self, conn: RedisConnection) -> KeyspaceHub | None:
        """The keyspace hub of the client for ``conn`` in the running loop (diagnostics)."""
        entry = self._loops.get(asyncio.get_running_loop(), {}).get(conn)
        return entry.hub if entry is not None else None

    def refcount(self, conn: RedisConnection) -> int:
        """How many leases share the client for ``conn`` in the running loop."""
        entry = self._loops.get(asyncio.get_running_loop(), {}).get(conn)
        return entry.refs if entry is not None else 0


REGISTRY: Final = RedisClientRegistry()


def _write_pem(directory: str, name: str, secret: Secret) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.reveal())
    return path


def _common_kwargs(conn: RedisConnection, entry_tmp: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": conn.username,
        "password": conn.password.reveal() if conn.password else None,
        "socket_timeout": conn.timeout,
        "socket_connect_timeout": conn.timeout,
        "client_name": "eventscale",
    }
    if conn.enable_tls:
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = "none" if conn.unsafe_ssl else "required"
        kwargs["ssl_check_hostname"] = not conn.unsafe_ssl
        if conn.ca:
            kwargs["ssl_ca_data"] = conn.ca.reveal()
        if conn.cert and conn.key:
            directory = tempfile.mkdtemp(prefix="eventscale-redis-tls-")
            entry_tmp.append(directory)
            kwargs["ssl_certfile"] = _write_pem(directory, "cert.pem", conn.cert)
            kwargs["ssl_keyfile"] = _write_pem(directory, "key.pem", conn.key)
            if conn.key_password:
                kwargs["ssl_password"] = conn.key_password.reveal()
    return kwargs


def _build_client(conn: RedisConnection) -> _Entry:
    redis_mod = import_redis()
    retry_mod = import_optional("redis.asyncio.retry", extra="redis", what="the redis scaler")
    backoff = import_optional("redis.backoff", extra="redis", what="the redis scaler")
    tmp: list[str] = []
    kwargs = _common_kwargs(conn, tmp)
    # One immediate retry: a pooled connection that died with a server restart is
    # replaced transparently; a server that is really down still fails fast.
    retry = retry_mod.Retry(backoff.NoBackoff(), 1)
    try:
        if conn.mode is RedisMode.CLUSTER:
            cluster_mod = import_redis_module("redis.asyncio.cluster")
            nodes = [cluster_mod.ClusterNode(*_split_address(conn, a)) for a in conn.addresses if a]
            client = cluster_mod.RedisCluster(
                startup_nodes=nodes, retry=retry, max_connections=8, **kwargs
            )
            return _Entry(client=client, tmpdir=tmp[0] if tmp else None)
        if conn.mode is RedisMode.SENTINEL:
            sentinel_mod = import_redis_module("redis.asyncio.sentinel")
            sentinel_kwargs = dict(kwargs)
            sentinel_kwargs["username"] = conn.sentinel_username
            sentinel_pw = conn.sentinel_password
            sentinel_kwargs["password"] = sentinel_pw.reveal() if sentinel_pw else None
            sentinel = sentinel_mod.Sentinel(
                [_split_address(conn, a) for a in conn.addresses if a],
                sentinel_kwargs=sentinel_kwargs,
                db=conn.database_index,
                retry=retry,
                **kwargs,
            )
            client = sentinel.master_for(conn.sentinel_master or "", max_connections=8)
            return _Entry(client=client, sentinel=sentinel, tmpdir=tmp[0] if tmp else None)
        host, port = _split_address(conn, conn.addresses[0])
        client = redis_mod.Redis(
            host=host, port=port, db=conn.database_index, retry=retry, **kwargs
        )
        # A pool that waits (up to the timeout) for a free connection instead of failing
        # with "Too many connections" when more than 8 calls are out at once; built from
        # the connection settings redis-py assembled for the client's own pool.
        base = client.connection_pool
        client.connection_pool = redis_mod.BlockingConnectionPool(
            max_connections=8,
            timeout=conn.timeout,
            connection_class=base.connection_class,
            **base.connection_kwargs,
        )
        return _Entry(client=client, tmpdir=tmp[0] if tmp else None)
    except BaseException:
        for directory in tmp:
            shutil.rmtree(directory, ignore_errors=True)
        raise


async def _close_entry(entry: _Entry) -> None:
    try:
        if entry.batcher is not None:
            await entry.batcher.aclose()
        if entry.hub is not None:
            await entry.hub.aclose()
        with contextlib.suppress(Exception):
            await entry.client.aclose()
        if entry.sentinel is not None:
            for sentinel_client in entry.sentinel.sentinels:
                with contextlib.suppress(Exception):
                    await sentinel_client.aclose()
    finally:
        if entry.tmpdir:
            shutil.rmtree(entry.tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------- push


async def _enable_notifications(lease: RedisLease, flags: str) -> bool:
    """Make sure the server publishes keyspace events of class ``flags``.

    Adds ``K`` and ``flags`` to ``notify-keyspace-events`` with ``CONFIG SET`` (keeping
    the flags already set). Returns ``False`` when the server does not allow it.
    """
    client = lease.client
    try:
        current_map = await redis_call(
            lease.conn,
            "CONFIG GET notify-keyspace-events",
            lambda: client.config_get("notify-keyspace-events"),
        )
        name = "notify-keyspace-events"
        raw = current_map.get(name, current_map.get(name.encode(), ""))
        current = raw.decode() if isinstance(raw, bytes) else str(raw)
        wanted = set(flags) | {"K"}
        have = set(current)
        if "A" in have:
            have |= set("g$lshzxetd")
        if wanted <= have:
            return True
        merged = current + "".join(sorted(wanted - set(current)))
        await redis_call(
            lease.conn,
            "CONFIG SET notify-keyspace-events",
            lambda: client.config_set("notify-keyspace-events", merged),
        )
        return True
    except ScalerError as exc:
        if isinstance(exc, ScalerTimeout) or exc.transient:
            raise
        return False


async def wait_on_keyspace(
    lease: RedisLease,
    key: str | Sequence[str],
    flags: str,
    is_active: Callable[[], Awaitable[bool]],
    *,
    poll_interval: float,
    notified_interval: float,
) -> None:
    """Return as soon as ``is_active()`` is true, woken by keyspace events on ``key``
    (one key, or several: an event on any of them wakes).

    The check runs once after subscribing (no race with an item pushed meanwhile), on
    every event for ``key`` and every ``notified_interval`` seconds as a safety net.
    Every wait on one client shares its one pub/sub connection (``_keyspace``).
    Where keyspace notifications cannot be used (a cluster, or a server that refuses
    ``CONFIG SET``) it checks every ``poll_interval`` seconds instead.
    """
    conn = lease.conn
    if (
        conn.mode is RedisMode.CLUSTER
        or lease.hub is None
        or not await once_per_client(
            lease, f"notify-keyspace-events {flags}", lambda: _enable_notifications(lease, flags)
        )
    ):
        while True:
            if await is_active():
                return
            await asyncio.sleep(poll_interval)
    hub = lease.hub
    keys = (key,) if isinstance(key, str) else tuple(key)
    woken = asyncio.Event()  # one event for every key's watch: any of them wakes
    watches: list[Watch] = []
    try:
        for k in keys:
            watches.append(await hub.watch(f"__keyspace@{conn.database_index}__:{k}", woken))
        if await is_active():
            return
        while True:
            # Any event on the key, or a quiet interval, leads to a fresh check.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(notified_interval):
                    await woken.wait()
            woken.clear()
            for watch in watches:
                watch.check()
            if await is_active():
                return
    finally:
        for watch in watches:
            await hub.unwatch(watch)


class ScalerClient:
    """One scaler's share of the :data:`REGISTRY` client for its connection.

    ``identity`` is the scaler's trigger identity: a "closed" error names it, and
    :meth:`wait_until_active` sets it on the errors it raises.
    """

    def __init__(self, conn: RedisConnection, identity: str) -> None:
        self.conn = conn
        self.identity = identity
        self._lease: RedisLease | None = None
        self._closed = False

    def acquire(self) -> RedisLease:
        """The lease, taken on first use. :raises ScalerError: after :meth:`aclose`."""
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self.identity, transient=False)
        if self._lease is None or self._lease.released:
            self._lease = REGISTRY.acquire(self.conn)
        return self._lease

    async def aclose(self) -> None:
        """Give back the lease; the last user closes the client. Safe to call twice."""
        self._closed = True
        lease, self._lease = self._lease, None
        if lease is not None:
            await REGISTRY.release(lease)

    async def wait_until_active(
        self,
        key: str | Sequence[str],
        flags: str,
        get_metrics: Callable[[], Awaitable[ScalerReport]],
        *,
        poll_interval: float,
        notified_interval: float = 5.0,
    ) -> None:
        """Return once ``get_metrics()`` reports active: :func:`wait_on_keyspace` on ``key``.

        :raises ScalerError: Redis cannot be read (with this scaler's identity).
        """

        async def active() -> bool:
            return (await get_metrics()).is_active

        lease = self.acquire()
        try:
            await wait_on_keyspace(
                lease,
                key,
                flags,
                active,
                poll_interval=poll_interval,
                notified_interval=notified_interval,
            )
        except ScalerError as exc:
            raise exc.with_trigger(self.identity) from exc.__cause__
