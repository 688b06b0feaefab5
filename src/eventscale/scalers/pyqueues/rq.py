"""The ``rq`` trigger: RQ jobs waiting in Redis.

RQ keeps a queue's job ids in the list ``rq:queue:<name>`` (``RPUSH``; workers take
from the left, so the oldest job is the first item) and each job in the hash
``rq:job:<id>``, whose ``enqueued_at`` field is the enqueue time
(``%Y-%m-%dT%H:%M:%S.%fZ``, UTC). A worker moves the job it takes to
``rq:queue:<name>:intermediate`` and then into the started-job registry, the sorted
set ``rq:wip:<name>`` scored by the time its lease runs out (rq: rq/queue.py,
rq/registry.py ``StartedJobRegistry``, rq/intermediate_queue.py). ``includeHeld``
adds those whose lease has not run out, and the intermediate list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import attrs

from eventscale.errors import ScalerError
from eventscale.scalers.params import Params, TriggerContext
from eventscale.scalers.pyqueues._common import (
    Broker,
    QueueScalerBase,
    QueueSettings,
    parse_broker,
    parse_settings,
)
from eventscale.scalers.redis import RedisConnection, RedisLease, redis_call

__all__ = ("RQConfig", "RQScaler", "parse_enqueued_at")

_LOOK_AHEAD: Final = 10
"""How many job ids latency tries when the first ones have no job hash (deleted jobs)."""


def parse_enqueued_at(raw: bytes | str) -> float:
    """RQ's ``enqueued_at`` (ISO 8601, ``Z`` or no offset meaning UTC) as Unix seconds.

    :raises ValueError: not a timestamp.
    """
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    if len(text) > 64:
        raise ValueError("enqueued_at is too long")
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@attrs.frozen(kw_only=True)
class RQConfig:
    """Settings of one ``rq`` trigger: the queue settings, the Redis connection and
    RQ's key prefix (``RQ_KEY_PREFIX``, ``rq`` by default)."""

    settings: QueueSettings
    redis: RedisConnection
    key_prefix: str = "rq"

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RQConfig:
        """Parse the trigger metadata. :raises ConfigError: listing every bad parameter."""
        p = Params(ctx)
        settings = parse_settings(p, default_queue="default")
        prefix = p.string("keyPrefix", default="rq")
        redis, _ = parse_broker(p, settings, brokers=(Broker.REDIS,))
        p.finish()
        assert settings is not None
        assert redis is not None
        return cls(settings=settings, redis=redis, key_prefix=prefix or "rq")


class RQScaler(QueueScalerBase):
    """Scale RQ workers on queued (and started) jobs or on queue latency.

    ``RQScaler(RQConfig(settings=QueueSettings(queues=("default",)),
    redis=RedisConnection(addresses="127.0.0.1:6379")))``, or from metadata with
    :meth:`from_context`. ``clock`` (Unix seconds) measures latency and lease expiry.
    """

    kind = "rq"

    config: RQConfig
    config_type = RQConfig

    def _queue_key(self, queue: str) -> str:
        return f"{self.config.key_prefix}:queue:{queue}"

    def _watch_keys(self) -> list[str]:
        return [self._queue_key(queue) for queue in self.settings.queues]

    async def _redis_count(self, lease: RedisLease) -> int:
        pipe = lease.client.pipeline(transaction=False)
        now = self._now()
        for queue in self.settings.queues:
            pipe.llen(self._queue_key(queue))
            if self.settings.include_held:
                pipe.llen(self._queue_key(queue) + ":intermediate")
                # entries whose lease ran out belong to dead workers: not held
                pipe.zcount(f"{self.config.key_prefix}:wip:{queue}", f"({now}", "+inf")
        counts = await redis_call(lease.conn, "LLEN", pipe.execute)
        return sum(int(n) for n in counts)

    async def _redis_latency(self, lease: RedisLease) -> float:
        now = self._now()
        oldest = 0.0
        for queue in self.settings.queues:
            enqueued = await self._oldest(lease, queue)
            if enqueued is not None:
                oldest = max(oldest, now - enqueued)
        return oldest

    async def _oldest(self, lease: RedisLease, queue: str) -> float | None:
        client, conn = lease.client, lease.conn
        ids = await redis_call(
            conn, "LRANGE", lambda: client.lrange(self._queue_key(queue), 0, _LOOK_AHEAD - 1)
        )
        if not ids:
            return None
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            text = job_id.decode("utf-8", "replace") if isinstance(job_id, bytes) else job_id
            pipe.hget(f"{self.config.key_prefix}:job:{text}", "enqueued_at")
        stamps = await redis_call(conn, "HGET enqueued_at", pipe.execute)
        for stamp in stamps:
            if stamp is None:  # a deleted job: RQ's worker skips it too
                continue
            try:
                return parse_enqueued_at(stamp)
            except ValueError:
                raise ScalerError(
                    f"the oldest job of RQ queue {queue!r} has an unreadable enqueued_at",
                    transient=False,
                ) from None
        raise ScalerError(
            f"none of the first {len(ids)} jobs of RQ queue {queue!r} has a job hash "
            "with enqueued_at",
            transient=True,
        )
