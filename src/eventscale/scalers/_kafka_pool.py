"""A shared, reference-counted pool of librdkafka admin clients, one per cluster connection.

Every Kafka scaler whose connection settings (bootstrap servers, TLS and SASL options) are
equal shares one :class:`confluent_kafka.admin.AdminClient`. The client is created on the
first request that needs it, not when the scaler is built, and it is dropped when the last
scaler using it releases its lease. librdkafka reconnects by itself after a broker outage,
so a failed poll never replaces the client: there is never more than one client per
connection settings, however often the cluster goes away and comes back.

The pool can also hand out *snapshots*: the futures of a metadata or list-offsets request
are kept for a short, caller-chosen time, and other scalers asking for the same thing in
that window reuse them instead of sending another request (requests still in flight are
shared too). This is off unless a scaler asks for a TTL.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Final

import attrs

from eventscale._optional import import_optional
from eventscale.auth import Secret

__all__ = ("POOL", "KafkaClientPool", "KafkaConnection", "Settings")

_LOG: Final = logging.getLogger("eventscale.scalers.kafka.librdkafka")

#: librdkafka configuration for one cluster connection: name -> value (secrets wrapped).
Settings = tuple[tuple[str, "str | Secret"], ...]

Futures = Mapping[Any, "concurrent.futures.Future[Any]"]


@attrs.define(eq=False)
class _Snapshot:
    created: float
    futures: Futures

    def usable(self, now: float, ttl: float) -> bool:
        if now - self.created > ttl:
            return False
        # A failed request is never shared: the next caller asks again.
        return not any(f.done() and f.exception() is not None for f in self.futures.values())


class KafkaConnection:
    """One cluster connection: a lazily created admin client shared by several scalers.

    Obtain one with :meth:`KafkaClientPool.acquire` and give it back with
    :meth:`KafkaClientPool.release`.
    """

    def __init__(self, key: Settings) -> None:
        self.key = key
        self.refs = 0
        #: How many clients this connection has created: at most one admin client plus
        #: one offsets consumer per consumer group, by design.
        self.clients_created = 0
        self._admin: Any = None
        self._consumers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._snapshots: dict[Hashable, _Snapshot] = {}

    @property
    def has_client(self) -> bool:
        """Whether a client has been created (and not dropped yet)."""
        return self._admin is not None or bool(self._consumers)

    def admin(self) -> Any:
        """The admin client, created on first use."""
        admin = self._admin
        if admin is not None:
            return admin
        with self._lock:
            if self._admin is None:
                ck = import_optional(
                    "confluent_kafka.admin", extra="kafka", what="the kafka scaler"
                )
                conf: dict[str, Any] = {
                    k: (v.reveal() if isinstance(v, Secret) else v) for k, v in self.key
                }
                conf.setdefault("client.id", "eventscale")
                conf["logger"] = _LOG
                self._admin = ck.AdminClient(conf)
                self.clients_created += 1
            return self._admin

    def _conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            k: (v.reveal() if isinstance(v, Secret) else v) for k, v in self.key
        }
        conf.setdefault("client.id", "eventscale")
        conf["logger"] = _LOG
        return conf

    def consumer(self, group: str) -> Any:
        """A consumer carrying ``group.id = group``, used only to read committed offsets.

        It never subscribes, so it never joins the group or takes partitions from its
        members. (Committed offsets are read through a consumer and not through the admin
        API because librdkafka 2.16 aborts the process when an admin group request times
        out during a broker outage and the broker then comes back.)
        """
        consumer = self._consumers.get(group)
        if consumer is not None:
            return consumer
        with self._lock:
            consumer = self._consumers.get(group)
            if consumer is None:
                ck = import_optional("confluent_kafka", extra="kafka", what="the kafka scaler")
                conf = self._conf()
                conf.update(
                    {
                        "group.id": group,
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                    }
                )
                consumer = self._consumers[group] = ck.Consumer(conf)
                self.clients_created += 1
            return consumer

    def serve_logs(self) -> None:
        """Deliver librdkafka's queued log lines to the ``eventscale`` logger."""
        admin = self._admin
        if admin is not None:
            admin.poll(0)
        for consumer in list(self._consumers.values()):
            consumer.poll(0)

    def shared(self, key: Hashable, ttl: float, request: Callable[[], Futures]) -> Futures:
        """The futures of ``request()``, reused for ``ttl`` seconds by identical requests.

        With ``ttl <= 0`` the request is always sent.
        """
        if ttl <= 0:
            return request()
        now = time.monotonic()
        with self._lock:
            snap = self._snapshots.get(key)
            if snap is not None and snap.usable(now, ttl):
                return snap.futures
            for stale in [k for k, s in self._snapshots.items() if now - s.created > ttl]:
                del self._snapshots[stale]
        futures = request()
        with self._lock:
            self._snapshots[key] = _Snapshot(now, futures)
        return futures

    def _drop(self) -> list[Any]:
        with self._lock:
            admin, self._admin = self._admin, None
            consumers = list(self._consumers.values())
            self._consumers.clear()
            self._snapshots.clear()
        return [*consumers, *([admin] if admin is not None else [])]


class KafkaClientPool:
    """Connections keyed by their settings, counted by the scalers that hold them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[Settings, KafkaConnection] = {}

    def acquire(self, settings: Mapping[str, str | Secret]) -> KafkaConnection:
        """A lease on the connection for ``settings``; no network I/O happens here."""
        key: Settings = tuple(sorted(settings.items()))
        with self._lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = self._connections[key] = KafkaConnection(key)
            conn.refs += 1
            return conn

    def release(self, conn: KafkaConnection) -> list[Any]:
        """Give a lease back. Returns the clients to destroy when it was the last one.

        The caller closes them (``close()`` on consumers, dropping the admin client):
        destroying a librdkafka handle can block briefly, so the scaler does it in a
        worker thread.
        """
        with self._lock:
            conn.refs -= 1
            if conn.refs > 0:
                return []
            if self._connections.get(conn.key) is conn:
                del self._connections[conn.key]
        return conn._drop()

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def connections(self) -> list[KafkaConnection]:
        """The connections currently held by at least one scaler."""
        with self._lock:
            return list(self._connections.values())


#: The process-wide pool every :class:`~eventscale.scalers.kafka.KafkaScaler` uses by default.
POOL: Final = KafkaClientPool()
