"""The ``dramatiq`` trigger: Dramatiq messages waiting on a Redis or RabbitMQ broker.

Dramatiq's Redis broker (dramatiq: dramatiq/brokers/redis/dispatch.lua) keeps, for a
queue ``q`` in namespace ``dramatiq``, the waiting message ids in the list
``dramatiq:q`` (``RPUSH``; workers ``LPOP``, so the oldest is the first item) and every
message not yet acknowledged in the hash ``dramatiq:q.msgs``; messages sent with a
delay go to the queue ``q.DQ`` the same way. A message is JSON whose
``message_timestamp`` is its enqueue time in milliseconds. The ids a worker has
taken leave the list but stay in the hash until acknowledged, so the hash's size is
waiting plus held.

On RabbitMQ, Dramatiq declares the queues ``q`` and ``q.DQ``; the count comes from the
management API (ready, or ready plus unacknowledged with ``includeHeld``) or AMQP, and
latency from the opt-in peek at the head message of ``q`` (``latencyPeek``). On a
Redis Cluster Dramatiq needs a hash-tag namespace (``{dramatiq}``): its Lua script
touches several keys, which must share a slot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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

__all__ = ("DramatiqConfig", "DramatiqScaler", "delay_queue")


def delay_queue(queue: str) -> str:
    """Dramatiq's delay queue for ``queue`` (``q`` -> ``q.DQ``)."""
    return queue if queue.endswith(".DQ") else f"{queue}.DQ"


@attrs.frozen(kw_only=True)
class DramatiqConfig:
    """Settings of one ``dramatiq`` trigger.

    ``include_delayed`` counts the delay queue too (the default: only a running worker
    moves a delayed message on when it is due). ``namespace`` is the Redis broker's key
    prefix (``dramatiq``).
    """

    settings: QueueSettings
    redis: RedisConnection | None = None
    rabbitmq: RabbitMQConfig | None = None
    include_delayed: bool = True
    namespace: str = "dramatiq"

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> DramatiqConfig:
        """Parse the trigger metadata. :raises ConfigError: listing every bad parameter."""
        p = Params(ctx)
        settings = parse_settings(p, default_queue="default")
        include_delayed = p.boolean("includeDelayed", default=True)
        namespace = p.string("namespace", default="dramatiq")
        redis, rabbitmq = parse_broker(p, settings, brokers=(Broker.REDIS, Broker.RABBITMQ))
        p.finish()
        assert settings is not None
        return cls(
            settings=settings,
            redis=redis,
            rabbitmq=rabbitmq,
            include_delayed=bool(include_delayed),
            namespace=namespace or "dramatiq",
        )


class DramatiqScaler(QueueScalerBase):
    """Scale Dramatiq workers on waiting (delayed, held) messages or on queue latency.

    ``DramatiqScaler(DramatiqConfig(settings=QueueSettings(queues=("default",)),
    redis=RedisConnection(addresses="127.0.0.1:6379")))``, or from metadata with
    :meth:`from_context`. ``clock`` (Unix seconds) measures latency.
    """

    kind = "dramatiq"

    config: DramatiqConfig
    config_type = DramatiqConfig

    def _rabbit_queues(self) -> Sequence[str]:
        return self._all_queues()

    def _all_queues(self) -> list[str]:
        queues = list(self.settings.queues)
        if self.config.include_delayed:
            queues += [delay_queue(q) for q in self.settings.queues if not q.endswith(".DQ")]
        return queues

    async def _redis_count(self, lease: RedisLease) -> int:
        ns = self.config.namespace
        queues = self._all_queues()
        pipe = lease.client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(f"{ns}:{queue}")
            pipe.hlen(f"{ns}:{queue}.msgs")
        counts = await redis_call(lease.conn, "LLEN", pipe.execute)
        total = 0
        for waiting, stored in zip(counts[::2], counts[1::2], strict=True):
            # the hash holds waiting and held messages; an id whose message was
            # deleted can still sit in the list, hence the max
            total += max(int(waiting), int(stored)) if self.settings.include_held else int(waiting)
        return total

    def _watch_keys(self) -> list[str]:
        ns = self.config.namespace
        return [f"{ns}:{queue}" for queue in self._all_queues()]

    def _peeked_at(self, message: PeekedMessage) -> float:
        decoded = load_json(message.body, "the head message")
        return _message_timestamp(decoded, "the head message") / 1000.0

    async def _redis_latency(self, lease: RedisLease) -> float:
        ns, client, conn = self.config.namespace, lease.client, lease.conn
        now = self._now()
        oldest = 0.0
        for queue in self.settings.queues:
            first = await redis_call(conn, "LINDEX", lambda q=queue: client.lindex(f"{ns}:{q}", 0))  # type: ignore[misc]
            if first is None:
                continue
            raw = await redis_call(
                conn,
                "HGET",
                lambda q=queue, i=first: client.hget(f"{ns}:{q}.msgs", i),  # type: ignore[misc]
            )
            if raw is None:  # acknowledged or deleted in between
                continue
            what = f"the oldest message of Dramatiq queue {queue!r}"
            stamp = _message_timestamp(load_json(raw, what), what)
            oldest = max(oldest, now - stamp / 1000.0)
        return oldest


def _message_timestamp(message: object, what: str) -> float:
    """Dramatiq's ``message_timestamp`` (milliseconds) of a decoded message."""
    stamp = message.get("message_timestamp") if isinstance(message, dict) else None
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise ScalerError(f"{what} has no message_timestamp", transient=False)
    if not math.isfinite(stamp):
        raise ScalerError("message_timestamp is not finite", transient=False)
    return float(stamp)
