"""The ``celery`` trigger: Celery tasks waiting on a Redis or RabbitMQ broker.

On Redis, kombu's transport keeps one list per priority step: the queue ``q`` itself
and ``q\\x06\\x163``, ``q\\x06\\x166``, ``q\\x06\\x169`` (separator ``\\x06\\x16``, steps
``0, 3, 6, 9``; kombu: kombu/transport/redis.py ``_q_for_pri``). The count sums them
all. Producers ``LPUSH`` and workers ``BRPOP``, so the oldest task is the last item.
Tasks a worker has taken (prefetched or running, not yet acknowledged) sit in kombu's
``unacked`` hash; ``includeHeld`` counts the ones that belong to the queues, matched
through the exchange bindings kombu stores (``_kombu.binding.<exchange>``).

Celery messages carry no publish time. The latency mode reads a header that
:func:`stamp_publish_time`, connected to Celery's ``before_task_publish`` signal,
writes (docs/scalers/celery.md). On RabbitMQ the count comes from the management API
(ready, or ready plus unacknowledged with ``includeHeld``) or AMQP (ready only), and
latency from the opt-in peek at the head message (``latencyPeek``, :mod:`._peek`).
The keys are the same through Sentinel and on a Redis Cluster (``broker``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import attrs

from eventscale.errors import ScalerError
from eventscale.scalers.params import Params, TriggerContext
from eventscale.scalers.pyqueues._common import (
    Broker,
    QueueScalerBase,
    QueueSettings,
    load_json,
    parse_broker,
    parse_settings,
)
from eventscale.scalers.pyqueues._peek import PeekedMessage
from eventscale.scalers.rabbitmq import RabbitMQConfig
from eventscale.scalers.redis import RedisConnection, RedisLease, redis_call

__all__ = (
    "BROKER_TIMESTAMP_HEADER",
    "DEFAULT_PRIORITY_STEPS",
    "PUBLISHED_AT_HEADER",
    "PRIORITY_SEPARATOR",
    "CeleryConfig",
    "CeleryScaler",
    "priority_keys",
    "stamp_publish_time",
)

PRIORITY_SEPARATOR: Final = "\x06\x16"
"""kombu's Redis transport ``sep`` between a queue name and its priority step."""
DEFAULT_PRIORITY_STEPS: Final = (0, 3, 6, 9)
"""kombu's ``PRIORITY_STEPS`` (transport option ``priority_steps``)."""
PUBLISHED_AT_HEADER: Final = "published_at"
"""The header :func:`stamp_publish_time` writes: Unix seconds at publish time."""
BROKER_TIMESTAMP_HEADER: Final = "timestamp_in_ms"
"""The header RabbitMQ's ``set_header_timestamp`` message interceptor adds (milliseconds)."""
MAX_HELD_ENTRIES: Final = 100_000
"""The most entries of kombu's ``unacked`` hash ``includeHeld`` reads in one poll."""


def stamp_publish_time(headers: MutableMapping[str, Any] | None = None, **_: Any) -> None:
    """A Celery ``before_task_publish`` handler: stamps the publish time in the headers.

    Connect it in the code that sends tasks (and the workers, which send too)::

        from celery.signals import before_task_publish
        from eventscale.scalers.pyqueues.celery import stamp_publish_time

        before_task_publish.connect(stamp_publish_time, weak=False)

    The header (:data:`PUBLISHED_AT_HEADER`) is what ``mode: latency`` reads.
    """
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


def priority_keys(
    queue: str, steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS, prefix: str = ""
) -> list[str]:
    """The Redis lists kombu keeps for ``queue``: one per priority step (step 0 is ``queue``)."""
    return [prefix + (f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue) for step in steps]


def _steps(value: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return tuple(sorted(set(value))) or DEFAULT_PRIORITY_STEPS


@attrs.frozen(kw_only=True)
class CeleryConfig:
    """Settings of one ``celery`` trigger.

    ``redis`` or ``rabbitmq`` (exactly one) is the broker. ``priority_steps`` and
    ``key_prefix`` mirror kombu's transport options ``priority_steps`` and
    ``global_keyprefix``; ``timestamp_header`` is the header latency reads.
    """

    settings: QueueSettings
    redis: RedisConnection | None = None
    rabbitmq: RabbitMQConfig | None = None
    priority_steps: tuple[int, ...] = attrs.field(default=DEFAULT_PRIORITY_STEPS, converter=_steps)
    key_prefix: str = ""
    timestamp_header: str = PUBLISHED_AT_HEADER

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> CeleryConfig:
        """Parse the trigger metadata. :raises ConfigError: listing every bad parameter."""
        p = Params(ctx)
        settings = parse_settings(p, default_queue="celery")
        steps = p.int_list("prioritySteps")
        prefix = p.string("keyPrefix", default="")
        header = p.string("timestampHeader", default=PUBLISHED_AT_HEADER)
        if steps is not None and any(s < 0 for s in steps):
            p.fail("prioritySteps must be integers >= 0", "prioritySteps")
        redis, rabbitmq = parse_broker(p, settings, brokers=(Broker.REDIS, Broker.RABBITMQ))
        p.finish()
        assert settings is not None
        return cls(
            settings=settings,
            redis=redis,
            rabbitmq=rabbitmq,
            priority_steps=steps or DEFAULT_PRIORITY_STEPS,
            key_prefix=prefix or "",
            timestamp_header=header or PUBLISHED_AT_HEADER,
        )


class CeleryScaler(QueueScalerBase):
    """Scale Celery workers on waiting (and held) tasks or on queue latency.

    ``CeleryScaler(CeleryConfig(settings=QueueSettings(queues=("celery",)),
    redis=RedisConnection(addresses="127.0.0.1:6379")))``, or from KEDA-style metadata
    with :meth:`from_context`. ``clock`` (Unix seconds) measures latency.
    """

    kind = "celery"

    config: CeleryConfig
    config_type = CeleryConfig

    def _keys(self) -> list[str]:
        cfg = self.config
        return [
            key
            for queue in self.settings.queues
            for key in priority_keys(queue, cfg.priority_steps, cfg.key_prefix)
        ]

    async def _redis_count(self, lease: RedisLease) -> int:
        keys = self._keys()
        pipe = lease.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        lengths = await redis_call(lease.conn, "LLEN", pipe.execute)
        waiting = sum(int(n) for n in lengths)
        if self.settings.include_held:
            waiting += await self._held(lease)
        return waiting

    async def _held(self, lease: RedisLease) -> int:
        """Entries of kombu's ``unacked`` hash routed to one of the queues."""
        prefix, client, conn = self.config.key_prefix, lease.client, lease.conn
        entries: list[tuple[str, str]] = []
        cursor = 0
        while True:
            cursor, page = await redis_call(
                conn,
                "HSCAN unacked",
                lambda c=cursor: client.hscan(prefix + "unacked", c, count=500),  # type: ignore[misc]
            )
            for raw in page.values():
                entry = load_json(raw, "an entry of kombu's unacked hash")
                if isinstance(entry, list) and len(entry) == 3:
                    entries.append((str(entry[1] or ""), str(entry[2] or "")))
            if len(entries) > MAX_HELD_ENTRIES:
                raise ScalerError(
                    f"kombu's unacked hash holds more than {MAX_HELD_ENTRIES} tasks; "
                    "not counted (turn includeHeld off)",
                    transient=False,
                )
            if int(cursor) == 0:
                break
        if not entries:
            return 0
        routes = await self._routes(lease, {exchange for exchange, _ in entries})
        queues = set(self.settings.queues)
        held = 0
        for exchange, routing_key in entries:
            bound = routes.get(exchange)
            if bound is None:  # no binding stored: Celery's default, routing key = queue
                held += routing_key in queues
            else:
                held += bool(bound.get(routing_key, set()) & queues)
        return held

    async def _routes(
        self, lease: RedisLease, exchanges: set[str]
    ) -> dict[str, dict[str, set[str]]]:
        """exchange -> routing key -> queues, from ``_kombu.binding.<exchange>`` sets."""
        names = sorted(exchanges)
        pipe = lease.client.pipeline(transaction=False)
        for exchange in names:
            pipe.smembers(f"{self.config.key_prefix}_kombu.binding.{exchange}")
        members = await redis_call(lease.conn, "SMEMBERS", pipe.execute)
        routes: dict[str, dict[str, set[str]]] = {}
        for exchange, found in zip(names, members, strict=True):
            if not found:
                continue
            table = routes.setdefault(exchange, {})
            for member in found:
                text = member.decode("utf-8", "replace") if isinstance(member, bytes) else member
                routing_key, _, rest = text.partition(PRIORITY_SEPARATOR)
                queue = rest.partition(PRIORITY_SEPARATOR)[2]
                table.setdefault(routing_key, set()).add(queue)
        return routes

    async def _redis_latency(self, lease: RedisLease) -> float:
        keys = self._keys()
        pipe = lease.client.pipeline(transaction=False)
        for key in keys:
            pipe.lindex(key, -1)
        items = await redis_call(lease.conn, "LINDEX", pipe.execute)
        now = self._now()
        oldest = 0.0
        for item in items:
            if item is None:
                continue
            published = self._published_at(item)
            oldest = max(oldest, now - published)
        return oldest

    def _watch_keys(self) -> list[str]:
        return self._keys()

    def _published_at(self, item: bytes | str) -> float:
        message = load_json(item, "the oldest task message")
        headers = message.get("headers") if isinstance(message, dict) else None
        return self._stamp(headers if isinstance(headers, dict) else {})

    def _peeked_at(self, message: PeekedMessage) -> float:
        """The hook's header, else RabbitMQ's ``timestamp_in_ms`` header (the broker's
        ``message_interceptors.incoming.set_header_timestamp``), else the AMQP
        ``timestamp`` property."""
        headers = message.headers
        if self.config.timestamp_header not in headers:
            in_ms = headers.get(BROKER_TIMESTAMP_HEADER)
            if isinstance(in_ms, int | float) and not isinstance(in_ms, bool):
                return float(in_ms) / 1000.0
            if message.timestamp is not None:
                return message.timestamp
        return self._stamp(headers)

    def _stamp(self, headers: Mapping[str, Any]) -> float:
        header = self.config.timestamp_header
        stamp = headers.get(header)
        if isinstance(stamp, bool) or not isinstance(stamp, int | float | str):
            raise ScalerError(
                f"the oldest task has no {header!r} header: connect "
                "eventscale.scalers.pyqueues.celery.stamp_publish_time to Celery's "
                "before_task_publish signal (docs/scalers/celery.md)",
                transient=False,
            )
        try:
            value = float(stamp)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ScalerError(f"header {header!r} is not a Unix time", transient=False)
        return value
