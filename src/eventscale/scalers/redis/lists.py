"""Redis lists: trigger types ``redis``, ``redis-cluster`` and ``redis-sentinel``.

The metric is the length of the key ``listName`` (``LLEN``; like KEDA, a set, sorted set
or hash counts its members, a missing key counts 0 and any other type is an error). The
trigger is active when the length is strictly greater than ``activationListLength``.

Beyond KEDA, an optional second metric reports how long work has been waiting
(``queueAgeMode``): the age of the oldest item, read from a timestamp the item carries,
or the time since the scaler last saw the list empty. :meth:`RedisListScaler.wait_for_activity`
wakes a controller as soon as the list becomes active, through keyspace notifications.
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    MetricValue,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext
from eventscale.scalers.redis._client import RedisLease, ScalerClient, redis_read
from eventscale.scalers.redis._connection import (
    RedisConnection,
    RedisMode,
    import_exceptions,
    import_redis,
    mode_for_trigger_type,
    parse_connection,
)

__all__ = (
    "ListEnd",
    "QueueAgeMode",
    "RedisConnection",
    "RedisListConfig",
    "RedisListScaler",
    "RedisMode",
    "item_timestamp",
)


class QueueAgeMode(enum.Enum):
    """Whether and how the list scaler reports a queue-age metric (``queueAgeMode``)."""

    NONE = "none"
    """No age metric (the default; KEDA's behaviour)."""
    TIMESTAMP = "timestamp"
    """Age of the oldest item, from a timestamp inside the item."""
    SINCE_EMPTY = "sinceEmpty"
    """Seconds since the scaler last saw the list empty (how long a backlog has existed)."""


class ListEnd(enum.Enum):
    """Which end of the list holds the oldest item (``oldestItemAt``)."""

    RIGHT = "right"
    """Producers ``LPUSH`` and consumers pop from the right (Celery's Redis transport)."""
    LEFT = "left"
    """Producers ``RPUSH`` and consumers pop from the left (``BLPOP`` queues)."""


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if math.isnan(value) or value < 0:
        raise ConfigError(f"must be >= 0, got {value!r}", path=attribute.name)


def _non_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ConfigError("no list name given", path=attribute.name)


@attrs.frozen(kw_only=True)
class RedisListConfig:
    """Parsed settings of one Redis list trigger.

    ``list_length`` is the target per replica (KEDA ``listLength``, default 5),
    ``activation_list_length`` the activation threshold (strictly greater is active).
    The queue-age fields are eventscale extensions (see the docs page).
    """

    list_name: str = attrs.field(validator=_non_empty)
    connection: RedisConnection
    list_length: int = 5
    activation_list_length: int = 0
    queue_age_mode: QueueAgeMode = QueueAgeMode.NONE
    queue_age_target: float = attrs.field(default=60.0, converter=float, validator=_non_negative)
    activation_queue_age: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    oldest_item_at: ListEnd = ListEnd.RIGHT
    timestamp_field: str | None = None
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def metric_name(self) -> str:
        """``s{index}-redis-{listName}``, normalized as KEDA does."""
        return metric_name(self.index, normalize_metric_name(f"redis-{self.list_name}"))

    @property
    def age_metric_name(self) -> str:
        """``s{index}-redis-queue-age-{listName}`` (only reported with a queue-age mode)."""
        return metric_name(self.index, normalize_metric_name(f"redis-queue-age-{self.list_name}"))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RedisListConfig:
        """Parse KEDA trigger metadata (spec section 4.1) plus the queue-age extensions.

        :raises ConfigError: listing every invalid or missing parameter.
        """
        p = Params(ctx)
        list_length = p.integer("listLength", default=5)
        activation = p.integer("activationListLength", default=0)
        list_name = p.string("listName", required=True)
        age_mode = p.enum("queueAgeMode", QueueAgeMode, default=QueueAgeMode.NONE)
        age_target = p.number("queueAgeTarget", default=60.0)
        activation_age = p.number("activationQueueAge", default=0.0)
        oldest = p.enum("oldestItemAt", ListEnd, default=ListEnd.RIGHT)
        field = p.string("timestampField")
        if _negative(list_length):  # KEDA does not check; a negative target fails every poll
            p.fail("listLength must be >= 0", "listLength")
        if _negative(age_target):
            p.fail("queueAgeTarget must be >= 0", "queueAgeTarget")
        if _negative(activation_age):
            p.fail("activationQueueAge must be >= 0", "activationQueueAge")
        connection = parse_connection(p, mode_for_trigger_type(ctx.trigger_type))
        p.finish()
        # finish() raised if anything was missing or invalid
        assert connection is not None
        assert list_name is not None
        return cls(
            list_name=list_name,
            connection=connection,
            list_length=list_length,
            activation_list_length=activation,
            queue_age_mode=age_mode or QueueAgeMode.NONE,
            queue_age_target=age_target,
            activation_queue_age=activation_age,
            oldest_item_at=oldest or ListEnd.RIGHT,
            timestamp_field=field,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


def _negative(value: object) -> bool:
    return isinstance(value, int | float) and value < 0


# ----------------------------------------------------------------------- timestamps

_LEADING_NUMBER: Final = re.compile(rb"\s*(-?[0-9]+(?:\.[0-9]+)?)")
_MILLIS_ABOVE: Final = 1e11  # 100 billion seconds is year 5138: such numbers are milliseconds


def _number_to_epoch(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError("the timestamp is not a finite number")
    return value / 1000.0 if abs(value) >= _MILLIS_ABOVE else value


def item_timestamp(item: bytes | str, field: str | None) -> float:
    """The enqueue time (Unix seconds) carried by a list item.

    With ``field`` (a dotted path such as ``headers.published_at``) the item is a JSON
    object and the field holds either a number (Unix seconds, or milliseconds when it
    is 100 billion or more) or an ISO-8601 string (no offset means UTC). Without
    ``field`` the item starts with a Unix timestamp in seconds or milliseconds,
    e.g. ``1718000000.25|payload``.

    :raises ValueError: the item carries no readable timestamp.
    """
    data = item.encode() if isinstance(item, str) else item
    if not field:
        match = _LEADING_NUMBER.match(data)
        if not match:
            raise ValueError("the item does not start with a Unix timestamp")
        return _number_to_epoch(float(match.group(1)))
    try:
        document: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the item is not JSON") from None
    for part in field.split("."):
        if not isinstance(document, dict) or part not in document:
            raise ValueError(f"the item has no field {field!r}")
        document = document[part]
    if isinstance(document, bool):
        raise ValueError(f"field {field!r} is not a timestamp")
    if isinstance(document, int | float):
        return _number_to_epoch(float(document))
    if isinstance(document, str):
        try:
            return _number_to_epoch(float(document))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(document)
        except ValueError:
            raise ValueError(f"field {field!r} is not a timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise ValueError(f"field {field!r} is not a timestamp")


# ----------------------------------------------------------------------- scaler

_COUNT_BY_TYPE: Final = {"list": "llen", "set": "scard", "zset": "zcard", "hash": "hlen"}


class RedisListScaler(ScalerBase):
    """Scale on the length of a Redis list (KEDA ``redis``, ``redis-cluster``, ``redis-sentinel``).

    Build it from KEDA metadata with :meth:`from_metadata` / :meth:`from_context`, or
    in Python from a :class:`RedisListConfig`::

        RedisListScaler(
            RedisListConfig(
                list_name="jobs",
                connection=RedisConnection(addresses="127.0.0.1:6379"),
                list_length=5,
            )
        )

    ``clock`` (Unix seconds) is what the queue-age metric measures time with; tests
    inject a manual clock. :meth:`wait_for_activity` falls back to a check every
    ``push_poll_interval`` seconds where keyspace notifications are unavailable.
    """

    trigger_type = "redis"

    def __init__(
        self,
        config: RedisListConfig,
        *,
        trigger_name: str | None = None,
        clock: Callable[[], float] = time.time,
        push_poll_interval: float = 1.0,
    ) -> None:
        import_redis()  # a missing extra is a configuration error, raised now
        self.config = config
        self._clock = clock
        self._push_poll_interval = push_poll_interval
        self._identity = trigger_name or f"redis[{config.index}]"
        self._client = ScalerClient(config.connection, self._identity)
        self._nonempty_since: float | None = None

    # -- construction from KEDA metadata ------------------------------------------------

    @classmethod
    def from_context(
        cls, ctx: TriggerContext, *, clock: Callable[[], float] = time.time
    ) -> RedisListScaler:
        """Build the scaler from a trigger context. :raises ConfigError: bad metadata."""
        return cls(RedisListConfig.from_context(ctx), trigger_name=ctx.identity, clock=clock)

    # -- Scaler protocol ------------------------------------------------------------------

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The length metric (target ``listLength``) and, with a queue-age mode, the age one."""
        cfg = self.config
        specs = [
            MetricSpec(
                name=cfg.metric_name,
                target=cfg.list_length,
                metric_type=cfg.metric_type,
                activation_target=cfg.activation_list_length,
            )
        ]
        if cfg.queue_age_mode is not QueueAgeMode.NONE:
            specs.append(
                MetricSpec(
                    name=cfg.age_metric_name,
                    target=cfg.queue_age_target,
                    metric_type=cfg.metric_type,
                    activation_target=cfg.activation_queue_age,
                )
            )
        return specs

    async def get_metrics(self) -> ScalerReport:
        """Read the length (and age). :raises ScalerError: Redis cannot be read."""
        try:
            return await self._poll()
        except ScalerError as exc:
            raise exc.with_trigger(self._identity) from exc.__cause__

    async def wait_for_activity(self) -> None:
        """Return once the list is active (at once if it already is).

        Subscribes to keyspace notifications for the key (``CONFIG SET
        notify-keyspace-events`` adds ``Kl`` when missing). Where that is impossible
        (a cluster, or ``CONFIG`` denied) it checks every ``push_poll_interval`` seconds.
        :raises ScalerError: Redis cannot be read.
        """
        await self._client.wait_until_active(
            self.config.list_name, "l", self.get_metrics, poll_interval=self._push_poll_interval
        )

    async def aclose(self) -> None:
        """Give back the shared client; the last user closes it. Safe to call twice."""
        await self._client.aclose()

    # -- internals --------------------------------------------------------------------------

    def _acquire(self) -> RedisLease:
        return self._client.acquire()

    async def _poll(self) -> ScalerReport:
        cfg = self.config
        lease = self._acquire()
        length, key_type = await self._length(lease)
        values = [MetricValue(name=cfg.metric_name, value=length)]
        active = length > cfg.activation_list_length
        if cfg.queue_age_mode is not QueueAgeMode.NONE:
            age = await self._age(lease, length, key_type)
            values.append(MetricValue(name=cfg.age_metric_name, value=age))
            active = active or age > cfg.activation_queue_age
        # ScalerReport's converter (tuple) is typed too loosely for mypy to check a list
        report_values: Any = tuple(values)
        return ScalerReport(values=report_values, is_active=active)

    async def _length(self, lease: RedisLease) -> tuple[int, str]:
        conn, key = lease.conn, self.config.list_name
        try:
            return int(await redis_read(lease, "LLEN", "llen", key)), "list"
        except ScalerError as exc:
            if not _wrong_type(exc.__cause__):
                raise
        raw_type = await redis_read(lease, "TYPE", "type", key)
        key_type = raw_type.decode() if isinstance(raw_type, bytes) else str(raw_type)
        command = _COUNT_BY_TYPE.get(key_type)
        if command is None:
            raise ScalerError(
                f"key {key!r} on {conn.describe()} has unsupported type {key_type!r} "
                "(expected a list, set, sorted set or hash)",
                transient=False,
            )
        count = await redis_read(lease, command.upper(), command, key)
        return int(count), key_type

    async def _age(self, lease: RedisLease, length: int, key_type: str) -> float:
        cfg = self.config
        if cfg.queue_age_mode is QueueAgeMode.SINCE_EMPTY:
            now = self._clock()
            if length == 0:
                self._nonempty_since = None
                return 0.0
            if self._nonempty_since is None:
                self._nonempty_since = now
            return max(0.0, now - self._nonempty_since)
        if length == 0:
            return 0.0
        if key_type != "list":
            raise ScalerError(
                f"queueAgeMode timestamp needs a list, but {cfg.list_name!r} is a {key_type}",
                transient=False,
            )
        position = -1 if cfg.oldest_item_at is ListEnd.RIGHT else 0
        item = await redis_read(lease, "LINDEX", "lindex", cfg.list_name, position)
        if item is None:  # emptied between LLEN and LINDEX
            return 0.0
        try:
            enqueued = item_timestamp(item, cfg.timestamp_field)
        except ValueError as exc:
            # The reason never quotes the item: it may carry private data.
            raise ScalerError(
                f"the oldest item of list {cfg.list_name!r} carries no readable timestamp: {exc}",
                transient=False,
            ) from None
        return max(0.0, self._clock() - enqueued)


def _wrong_type(exc: BaseException | None) -> bool:
    """Whether ``exc`` is Redis's ``WRONGTYPE`` reply (LLEN on a key that is no list)."""
    return isinstance(exc, import_exceptions().ResponseError) and str(exc).startswith("WRONGTYPE")
