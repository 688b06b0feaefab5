"""What the Celery, RQ and Dramatiq triggers share: settings, brokers, the scaler frame.

:class:`QueueSettings` holds the parameters every one of them reads (``queueName`` /
``queues``, ``mode``, ``includeHeld``, ``value``, ``activationValue``);
:class:`QueueScalerBase` turns one count or latency into a report and makes every
failure a :class:`~eventscale.errors.ScalerError`, and wakes on arrivals
(``wait_for_activity``). Redis (standalone, Sentinel or Cluster: ``broker``) is read
through the shared clients of :mod:`eventscale.scalers.redis`, RabbitMQ through
:class:`~eventscale.scalers.rabbitmq.RabbitMQScaler` (management API or AMQP) and, for
latency, :class:`~eventscale.scalers.pyqueues._peek.RabbitPeeker`.
See docs/python-queues.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Self

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
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext
from eventscale.scalers.pyqueues._peek import PeekedMessage, RabbitPeeker
from eventscale.scalers.pyqueues._push import wait_on_cluster
from eventscale.scalers.rabbitmq import Protocol, RabbitMQConfig, RabbitMQScaler
from eventscale.scalers.redis import (
    RedisConnection,
    RedisLease,
    RedisMode,
    ScalerClient,
    parse_connection,
)

__all__ = (
    "MAX_ITEM_BYTES",
    "Broker",
    "QueueMode",
    "QueueScalerBase",
    "QueueSettings",
    "load_json",
    "parse_broker",
    "parse_settings",
)

MAX_ITEM_BYTES: Final = 8 * 1024 * 1024
"""The largest queue item (a task message) the latency mode parses."""


class QueueMode(enum.Enum):
    """What the metric measures (``mode``)."""

    QUEUE_LENGTH = "queueLength"
    """Waiting tasks (plus held ones with ``includeHeld``); target per replica ``value``."""
    LATENCY = "latency"
    """Seconds the oldest waiting task has waited; target ``value`` seconds."""


class Broker(enum.Enum):
    """Where the queue lives (``broker``): the Redis forms mirror KEDA's trigger types
    ``redis``, ``redis-cluster`` and ``redis-sentinel``."""

    REDIS = "redis"
    REDIS_CLUSTER = "redis-cluster"
    REDIS_SENTINEL = "redis-sentinel"
    RABBITMQ = "rabbitmq"

    @property
    def redis_mode(self) -> RedisMode | None:
        """The Redis connection mode of this broker (``None`` for RabbitMQ)."""
        return _REDIS_MODES.get(self)


_REDIS_MODES: Final = {
    Broker.REDIS: RedisMode.STANDALONE,
    Broker.REDIS_CLUSTER: RedisMode.CLUSTER,
    Broker.REDIS_SENTINEL: RedisMode.SENTINEL,
}


def _queues(value: Sequence[str] | str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or any(not name for name in names):
        raise ConfigError("give one or more non-empty queue names", path="queueName")
    return names


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"must be a finite number >= 0, got {value!r}", path=attribute.name)


@attrs.frozen(kw_only=True)
class QueueSettings:
    """The parameters every Python job-queue trigger reads.

    ``queues`` are summed (length) or the oldest task over all of them is taken
    (latency). ``value`` is the target per replica (tasks, or seconds of latency),
    ``activation_value`` the activation threshold (strictly greater is active).
    ``latency_peek`` allows latency on RabbitMQ by peeking at the head message
    (``latencyPeek``, opt-in; see docs/python-queues.md).
    """

    queues: tuple[str, ...] = attrs.field(converter=_queues)
    mode: QueueMode = QueueMode.QUEUE_LENGTH
    include_held: bool = False
    value: float = attrs.field(default=5.0, converter=float, validator=_non_negative)
    activation_value: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    latency_peek: bool = False

    def __attrs_post_init__(self) -> None:
        if self.mode is QueueMode.LATENCY and self.include_held:
            raise ConfigError("includeHeld applies to mode queueLength only", path="includeHeld")


def parse_settings(p: Params, *, default_queue: str) -> QueueSettings | None:
    """Read ``queueName``/``queues``, ``mode``, ``includeHeld``, ``value``, ``activationValue``.

    Returns ``None`` when an error was recorded on ``p``.
    """
    before = len(p.errors)
    queues = p.string_list("queueName", aliases=("queues",), default=(default_queue,))
    mode = p.enum("mode", QueueMode, default=QueueMode.QUEUE_LENGTH)
    include_held = p.boolean("includeHeld", default=False)
    peek = p.boolean("latencyPeek", default=False)
    default_value = 30.0 if mode is QueueMode.LATENCY else 5.0
    value = p.number("value", default=default_value)
    activation = p.number("activationValue", default=0.0)
    numbers: tuple[tuple[str, object], ...] = (("value", value), ("activationValue", activation))
    for name, number in numbers:
        # a value that did not parse was recorded already (and reads as None)
        if isinstance(number, int | float) and not (math.isfinite(number) and number >= 0):
            p.fail(f"{name} must be a finite number >= 0", name)
    if queues is not None and any(not q for q in queues):
        p.fail("queue names must not be empty", "queueName")
    if mode is QueueMode.LATENCY and include_held:
        p.fail("includeHeld applies to mode queueLength only", "includeHeld")
    if len(p.errors) > before:
        return None
    assert queues is not None
    return QueueSettings(
        queues=queues,
        mode=mode or QueueMode.QUEUE_LENGTH,
        include_held=bool(include_held),
        value=value,
        activation_value=activation or 0.0,
        index=p.ctx.index,
        metric_type=p.ctx.metric_type,
        latency_peek=bool(peek),
    )


# The rabbitmq trigger's connection parameters, passed through to RabbitMQConfig.
_RABBIT_KEYS: Final = ("host", "hostFromEnv", "protocol", "vhostName", "timeout", "unsafeSsl")


def parse_broker(
    p: Params, settings: QueueSettings | None, *, brokers: Sequence[Broker]
) -> tuple[RedisConnection | None, RabbitMQConfig | None]:
    """The broker connection: ``broker`` picks Redis (``redis``, ``redis-cluster`` or
    ``redis-sentinel``, with the connection parameters of KEDA's trigger of that name)
    or RabbitMQ (KEDA ``rabbitmq`` ``host``, ``protocol``, ``vhostName``, ``timeout``,
    TLS and credentials from the TriggerAuthentication).

    ``brokers`` lists the kinds the trigger supports (``Broker.REDIS`` stands for all
    three Redis forms). The RabbitMQ config returned is a template for the first
    queue; the scaler makes one per queue. Errors are recorded on ``p``.
    """
    choices = [
        b.value
        for b in Broker
        if (b.redis_mode is not None and Broker.REDIS in brokers) or b in brokers
    ]
    raw = p.choice("broker", choices, default=brokers[0].value)
    if raw is None:
        return None, None
    broker = Broker(raw)
    if broker.redis_mode is not None:
        if broker is not Broker.REDIS_SENTINEL and "sentinelMaster" in p.ctx.metadata:
            p.fail(
                f"sentinelMaster is set but broker is {raw}: use broker redis-sentinel", "broker"
            )
            return None, None
        return parse_connection(p, broker.redis_mode), None
    if settings is None:
        return None, None
    http = _rabbit_protocol(p) is Protocol.HTTP
    if settings.mode is QueueMode.LATENCY:
        if not settings.latency_peek:
            p.fail(
                "mode latency on RabbitMQ needs latencyPeek: true (RabbitMQ cannot show the "
                "oldest message without delivering it; the peek takes the head message and "
                "requeues it at once, see docs/python-queues.md)",
                "mode",
            )
            return None, None
        if http:
            p.fail("latencyPeek needs an amqp:// or amqps:// host", "latencyPeek")
            return None, None
    metadata: dict[str, Any] = {k: p.ctx.metadata[k] for k in _RABBIT_KEYS if k in p.ctx.metadata}
    metadata.update(queueName=settings.queues[0], mode="QueueLength", value="1")
    if http:
        metadata["excludeUnacknowledged"] = "false" if settings.include_held else "true"
    elif settings.include_held:
        p.fail(
            "includeHeld needs the RabbitMQ management API (an http:// or https:// host): "
            "AMQP counts ready messages only",
            "includeHeld",
        )
        return None, None
    inner = attrs.evolve(p.ctx, metadata=metadata, trigger_type="rabbitmq")
    try:
        return None, RabbitMQConfig.from_context(inner)
    except ConfigError as exc:
        p.errors.append(exc)
        return None, None


def _rabbit_protocol(p: Params) -> Protocol:
    raw = p.lookup("protocol", order=(META, AUTH))
    if raw is not None and raw.raw in ("amqp", "http"):
        return Protocol(raw.raw)
    host = p.lookup("host", order=(META, AUTH, ENV))
    scheme = host.raw.partition(":")[0].lower() if host is not None else ""
    return Protocol.HTTP if scheme in ("http", "https") else Protocol.AMQP


def load_json(item: bytes | str | None, what: str) -> Any:
    """Parse one queue item as JSON, bounded by :data:`MAX_ITEM_BYTES`.

    :raises ScalerError: the item is too large or is not JSON (never quoting it).
    """
    if item is None:
        raise ScalerError(f"{what} is missing", transient=True)
    if len(item) > MAX_ITEM_BYTES:
        raise ScalerError(
            f"{what} is larger than {MAX_ITEM_BYTES} bytes; not parsed", transient=False
        )
    try:
        return json.loads(item)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ScalerError(f"{what} is not JSON", transient=False) from None


class QueueScalerBase(ScalerBase):
    """One metric from a count or a latency; subclasses read their queue layout.

    A :class:`~eventscale.scalers.PushScaler`: :meth:`wait_for_activity` wakes on
    keyspace notifications (Redis) or the ``rabbitmq`` trigger's watch (RabbitMQ).

    A subclass sets :attr:`kind` and :attr:`config_type` (a config class with
    ``settings``, ``redis``, optionally ``rabbitmq`` and ``from_context``) and
    implements :meth:`_redis_count` and :meth:`_redis_latency`; over RabbitMQ the count
    is the sum of the management API's (or AMQP's) counts of :meth:`_rabbit_queues`.
    ``clock`` is Unix seconds (what latency is measured with); ``push_poll_interval``
    (seconds) paces :meth:`wait_for_activity` where it must poll (default 0.25 over
    AMQP, 1.0 otherwise).
    """

    kind: ClassVar[str] = "queue"
    config_type: ClassVar[Any] = None

    def __init__(
        self,
        config: Any,
        *,
        trigger_name: str | None = None,
        clock: Callable[[], float] = time.time,
        push_poll_interval: float | None = None,
    ) -> None:
        settings: QueueSettings = config.settings
        redis: RedisConnection | None = config.redis
        rabbitmq: RabbitMQConfig | None = getattr(config, "rabbitmq", None)
        if (redis is None) == (rabbitmq is None):
            raise ConfigError("give exactly one of a redis connection or a rabbitmq config")
        latency = settings.mode is QueueMode.LATENCY
        if rabbitmq is not None and latency and not settings.latency_peek:
            raise ConfigError("mode latency on RabbitMQ needs latencyPeek", path="latencyPeek")
        if rabbitmq is not None and latency and rabbitmq.protocol is Protocol.HTTP:
            raise ConfigError("latencyPeek needs an amqp:// or amqps:// host", path="latencyPeek")
        if push_poll_interval is not None and not push_poll_interval > 0:
            raise ConfigError("push_poll_interval must be > 0", path="push_poll_interval")
        self.config = config
        self.settings = settings
        self._clock = clock
        self._identity = trigger_name or f"{self.kind}[{settings.index}]"
        self._redis = ScalerClient(redis, self._identity) if redis is not None else None
        self._rabbit: list[RabbitMQScaler] = []
        self._peeker: RabbitPeeker | None = None
        if push_poll_interval is None:
            http = rabbitmq is not None and rabbitmq.protocol is Protocol.HTTP
            push_poll_interval = 0.25 if rabbitmq is not None and not http else 1.0
        self._push_poll_interval = push_poll_interval
        if rabbitmq is not None:
            # in latency mode these only watch for arrivals (wait_for_activity)
            names = settings.queues if latency else self._rabbit_queues()
            self._rabbit = [
                RabbitMQScaler(
                    attrs.evolve(rabbitmq, queue_name=name, index=settings.index),
                    trigger_name=self._identity,
                    push_poll_interval=push_poll_interval,
                )
                for name in names
            ]
            if latency:
                self._peeker = RabbitPeeker(rabbitmq, self._peeked_at)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.trigger_type = cls.kind  # what ScalerBase.from_metadata builds a context for

    @classmethod
    def from_context(
        cls,
        ctx: TriggerContext,
        *,
        clock: Callable[[], float] = time.time,
        push_poll_interval: float | None = None,
    ) -> Self:
        """Build the scaler from a trigger context. :raises ConfigError: bad metadata."""
        return cls(
            cls.config_type.from_context(ctx),
            trigger_name=ctx.identity,
            clock=clock,
            push_poll_interval=push_poll_interval,
        )

    @property
    def metric_name(self) -> str:
        """``s{index}-{kind}-{queues}`` (``-latency`` appended in latency mode)."""
        name = f"{self.kind}-{'-'.join(self.settings.queues)}"
        if self.settings.mode is QueueMode.LATENCY:
            name += "-latency"
        return metric_name(self.settings.index, normalize_metric_name(name))

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The one metric, target ``value`` and activation ``activationValue``."""
        s = self.settings
        return [
            MetricSpec(
                name=self.metric_name,
                target=s.value,
                metric_type=s.metric_type,
                activation_target=s.activation_value,
            )
        ]

    async def get_metrics(self) -> ScalerReport:
        """Read the count or the latency. :raises ScalerError: the broker cannot be read."""
        try:
            if self.settings.mode is QueueMode.LATENCY and self._peeker is not None:
                value = await self._rabbit_latency(self._peeker)
            elif self.settings.mode is QueueMode.LATENCY:
                assert self._redis is not None
                value = await self._redis_latency(self._redis.acquire())
            elif self._redis is not None:
                value = float(await self._redis_count(self._redis.acquire()))
            else:
                value = 0.0
                for scaler in self._rabbit:
                    report = await scaler.get_metrics()
                    value += report.values[0].value
            if not math.isfinite(value):
                raise ScalerError(f"the {self.kind} metric is not a finite number", transient=True)
        except ScalerError as exc:
            raise exc.with_trigger(self._identity) from exc.__cause__
        values: Any = (MetricValue(name=self.metric_name, value=value),)
        return ScalerReport(values=values, is_active=value > self.settings.activation_value)

    async def wait_for_activity(self) -> None:
        """Return once the trigger is active (at once if it already is).

        Redis: keyspace notifications on the queue's lists (:meth:`_watch_keys`), as the
        ``redis`` trigger does; on a cluster one subscription per node that holds one
        of them (:func:`~eventscale.scalers.pyqueues._push.wait_on_cluster`). A server
        that refuses ``CONFIG SET`` is checked every ``push_poll_interval`` seconds.

        RabbitMQ: the ``rabbitmq`` trigger's watch on each queue (a passive declare
        every ``push_poll_interval`` seconds over AMQP, the management API every second
        over HTTP); when one sees a message the whole trigger is read, and in latency
        mode the next check is due when the head message will have waited
        ``activationValue`` seconds.

        :raises ScalerError: the broker cannot be read.
        """
        if self._redis is not None and self._redis.conn.mode is RedisMode.CLUSTER:

            async def active() -> bool:
                return (await self.get_metrics()).is_active

            try:
                await wait_on_cluster(
                    self._redis.acquire(),
                    self._watch_keys(),
                    "l",
                    active,
                    poll_interval=self._push_poll_interval,
                )
            except ScalerError as exc:
                raise exc.with_trigger(self._identity) from exc.__cause__
            return
        if self._redis is not None:
            await self._redis.wait_until_active(
                self._watch_keys(),
                "l",
                self.get_metrics,
                poll_interval=self._push_poll_interval,
            )
            return
        while True:
            await self._any_rabbit_queue_busy()
            try:
                report = await self.get_metrics()
            except ScalerError as exc:
                if "not reported" not in str(exc):  # a fresh queue's counts: not yet
                    raise
            else:
                if report.is_active:
                    return
                await asyncio.sleep(self._next_check(report.values[0].value))
                continue
            await asyncio.sleep(self._push_poll_interval)

    def _next_check(self, value: float) -> float:
        interval = self._push_poll_interval
        if self.settings.mode is not QueueMode.LATENCY:
            return interval
        # the head message becomes active when its age passes activationValue
        due = self.settings.activation_value - value
        return min(max(interval, due + 0.05), max(interval, 30.0))

    async def _any_rabbit_queue_busy(self) -> None:
        """Return once one of the RabbitMQ queues holds a message."""
        if len(self._rabbit) == 1:
            await self._rabbit[0].wait_for_activity()
            return
        tasks = [asyncio.ensure_future(s.wait_for_activity()) for s in self._rabbit]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed watch fails the wait
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def aclose(self) -> None:
        """Give back the Redis client / close the RabbitMQ readers. Safe to call twice."""
        if self._redis is not None:
            await self._redis.aclose()
        for scaler in self._rabbit:
            await scaler.aclose()
        if self._peeker is not None:
            await self._peeker.aclose()

    async def _rabbit_latency(self, peeker: RabbitPeeker) -> float:
        now = self._now()
        oldest = 0.0
        for queue in self.settings.queues:
            published = await peeker.oldest(queue)
            if published is not None:
                oldest = max(oldest, now - published)
        return oldest

    # -- what subclasses provide ------------------------------------------------------

    def _rabbit_queues(self) -> Sequence[str]:
        return self.settings.queues

    def _watch_keys(self) -> Sequence[str]:
        """The Redis keys whose changes may make the trigger active."""
        raise NotImplementedError

    def _peeked_at(self, message: PeekedMessage) -> float:
        """The publish time (Unix seconds) of a message the RabbitMQ peek saw."""
        raise NotImplementedError

    async def _redis_count(self, lease: RedisLease) -> int:
        raise NotImplementedError

    async def _redis_latency(self, lease: RedisLease) -> float:
        raise NotImplementedError

    def _now(self) -> float:
        return self._clock()
