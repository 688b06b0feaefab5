"""The Redis triggers: lists (``redis``) and streams (``redis-streams``), standalone, cluster and sentinel.

``lists`` and ``streams`` hold the scalers and their configs; ``_connection`` the
connection settings both share (:class:`RedisConnection`), ``_client`` the shared clients
and every call made on them (:class:`ScalerClient`, :func:`redis_call`, which the
Python job-queue triggers in ``eventscale.scalers.pyqueues`` reuse). The reads of one
poll slot on a client leave as one pipeline (``_batch``), and every keyspace wait on a
client shares one pub/sub connection (``_keyspace``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.scalers.redis._client import (
        RedisLease,
        ScalerClient,
        redis_call,
        wait_on_keyspace,
    )
    from eventscale.scalers.redis._connection import RedisConnection, RedisMode, parse_connection
    from eventscale.scalers.redis.lists import (
        ListEnd,
        QueueAgeMode,
        RedisListConfig,
        RedisListScaler,
        item_timestamp,
    )
    from eventscale.scalers.redis.streams import (
        ERR_MISSING_STREAM,
        RedisStreamsConfig,
        RedisStreamsScaler,
        StreamMode,
    )

__all__ = (
    "ERR_MISSING_STREAM",
    "ListEnd",
    "QueueAgeMode",
    "RedisConnection",
    "RedisLease",
    "RedisListConfig",
    "RedisListScaler",
    "RedisMode",
    "RedisStreamsConfig",
    "RedisStreamsScaler",
    "ScalerClient",
    "StreamMode",
    "item_timestamp",
    "parse_connection",
    "redis_call",
    "wait_on_keyspace",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "ERR_MISSING_STREAM": "eventscale.scalers.redis.streams",
        "ListEnd": "eventscale.scalers.redis.lists",
        "QueueAgeMode": "eventscale.scalers.redis.lists",
        "RedisConnection": "eventscale.scalers.redis._connection",
        "RedisLease": "eventscale.scalers.redis._client",
        "ScalerClient": "eventscale.scalers.redis._client",
        "parse_connection": "eventscale.scalers.redis._connection",
        "redis_call": "eventscale.scalers.redis._client",
        "RedisListConfig": "eventscale.scalers.redis.lists",
        "RedisListScaler": "eventscale.scalers.redis.lists",
        "RedisMode": "eventscale.scalers.redis._connection",
        "RedisStreamsConfig": "eventscale.scalers.redis.streams",
        "RedisStreamsScaler": "eventscale.scalers.redis.streams",
        "StreamMode": "eventscale.scalers.redis.streams",
        "item_timestamp": "eventscale.scalers.redis.lists",
        "wait_on_keyspace": "eventscale.scalers.redis._client",
    },
    __all__,
)
