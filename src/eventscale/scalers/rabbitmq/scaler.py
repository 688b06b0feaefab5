"""The ``rabbitmq`` scaler: queue length or message rates of a RabbitMQ queue.

Two ways to read a queue (KEDA ``protocol``; ``auto`` picks from the ``host`` URL scheme):

* **AMQP** (``amqp://`` / ``amqps://``): a *passive* queue declare. The count it
  returns is the number of **ready** messages only: messages that consumers hold
  unacknowledged are *not* counted (user-voice D17; see the docs page). Scalers that
  talk to the same broker with the same settings share **one** long-lived connection
  (reference-counted, one per event loop) and its few channels kept for declares; a
  missing queue closes only its channel. A connection that breaks is replaced on the
  next poll.
* **HTTP** (``http://`` / ``https://``): the management API. It can count
  unacknowledged messages too (the default; ``excludeUnacknowledged`` counts ready
  only), report publish/deliver rates, and match queues by regex with ``operation``
  ``sum``/``max``/``avg``. Note that the management API's counts lag a few seconds.
  Single-queue reads of one poll slot on the same API share one request (``_listing``).

:meth:`RabbitMQScaler.wait_for_activity` lets a controller wake on the first message:
RabbitMQ cannot announce an arrival without delivering the message, so it is a
consumer-free poll (a passive declare on one held channel every 0.25 s over AMQP).

Every failure (broker down, wrong credentials, missing queue or vhost, non-200 answer,
timeout, a TLS handshake that fails) is a :class:`~eventscale.errors.ScalerError`, never
a count of 0. Messages are
anonymised as KEDA does (``user:password@``) and scrubbed of every secret the scaler holds.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Final

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricSpec, ScalerReport, sanitize_metric_value
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq._amqp import AmqpReader, import_aio_pika
from eventscale.scalers.rabbitmq._errors import ErrorFactory
from eventscale.scalers.rabbitmq._listing import LISTINGS
from eventscale.scalers.rabbitmq._management import (
    CountsNotPublished,
    ManagementClient,
    QueueInfo,
    import_aiohttp,
)
from eventscale.scalers.rabbitmq._tls import build_ssl_context
from eventscale.scalers.rabbitmq.config import Mode, Protocol, RabbitMQConfig

# Fail at import time, with the extra to install, when the client library is missing.
import_optional("aio_pika", extra="rabbitmq", what="the rabbitmq scaler")

__all__ = ("RabbitMQScaler", "metric_and_activity")

_AMQP_PUSH_POLL_INTERVAL: Final = 0.25  # seconds between passive declares in wait_for_activity
_HTTP_PUSH_POLL_INTERVAL: Final = 1.0  # seconds between management API reads in wait_for_activity


def metric_and_activity(
    mode: Mode, info: QueueInfo, count: int, activation: float
) -> tuple[float, bool]:
    """The metric value and activity for ``mode`` (spec/scalers.md 3.4)."""
    m, p, d, a = float(count), info.publish_rate, info.deliver_get_rate, activation
    if mode is Mode.QUEUE_LENGTH:
        return m, m > a
    if mode is Mode.MESSAGE_RATE:
        return p, p > a or m > a
    if mode is Mode.DELIVER_GET_RATE:
        return d, d > a
    if mode is Mode.PUBLISHED_TO_DELIVERED_RATIO:
        if p == 0:
            r = 0.0
        elif d == 0:
            r = a
        else:
            r = p / d
        return r, r > a or (p > 0 and d == 0)
    # ExpectedQueueConsumptionTime (KEDA main: an empty queue is 0)
    if m == 0:
        e = 0.0
    elif d == 0:
        e = a
    else:
        e = (p - d) / d + m / d
    return e, e > a or (d == 0 and m > 0)


class RabbitMQScaler(ScalerBase):
    """Scale on a RabbitMQ queue's length or message rates (KEDA ``rabbitmq``).

    In Python, from a :class:`~eventscale.scalers.rabbitmq.RabbitMQConfig`::

        RabbitMQScaler(RabbitMQConfig(host="amqp://user:pass@rabbit:5672/", queue_name="jobs",
                                      value=10))
        RabbitMQScaler(RabbitMQConfig(host="http://user:pass@rabbit:15672/", queue_name="jobs",
                                      mode=Mode.QUEUE_LENGTH, value=10))

    or from KEDA metadata with :meth:`from_context`. The defaults are KEDA's: mode
    ``QueueLength`` with a target ``value`` of 20 messages per replica.

    It is a :class:`~eventscale.scalers.PushScaler`: :meth:`wait_for_activity` watches an
    idle queue with cheap, consumer-free polls every ``push_poll_interval`` seconds
    (default 0.25 over AMQP, 1.0 over HTTP), so a controller wakes within about that
    long after the first message instead of waiting for its polling interval.

    ``trigger_name`` names the trigger in errors; ``clock`` (monotonic seconds) times the
    OAuth2 token cache (tests inject one).
    """

    def __init__(
        self,
        config: RabbitMQConfig,
        *,
        trigger_name: str | None = None,
        push_poll_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if push_poll_interval is not None and push_poll_interval <= 0:
            raise ConfigError("push_poll_interval must be positive", path="push_poll_interval")
        import_aio_pika() if config.protocol is Protocol.AMQP else import_aiohttp()
        self.config = config
        self._identity = trigger_name or f"rabbitmq[{config.index}]"
        error = ErrorFactory(config, self._identity)
        tls: ssl.SSLContext | None = None
        if config.tls and config.cert and config.key:
            # Load the client certificate now: a bad key or keyPassword is a ConfigError
            # when the trigger is built, not an error on every poll.
            tls = build_ssl_context(config)
        self._amqp = AmqpReader(config, error)
        self._http = ManagementClient(config, error, clock, tls)
        self._closed = False
        if push_poll_interval is None:
            push_poll_interval = (
                _AMQP_PUSH_POLL_INTERVAL
                if config.protocol is Protocol.AMQP
                else _HTTP_PUSH_POLL_INTERVAL
            )
        self._push_poll_interval = push_poll_interval

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RabbitMQScaler:
        """Parse KEDA trigger metadata with KEDA's lookup orders, defaults and checks."""
        return cls(RabbitMQConfig.from_context(ctx), trigger_name=ctx.identity)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"RabbitMQScaler(queue_name={c.queue_name!r}, protocol={c.protocol.value}, "
            f"mode={c.mode.value}, value={c.value}, host={c.host!r})"
        )

    # -- Scaler protocol -----------------------------------------------------------

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: target ``value``, activation target ``activationValue``."""
        c = self.config
        return (
            MetricSpec(
                name=c.metric_name,
                target=sanitize_metric_value(c.value),
                metric_type=c.metric_type,
                activation_target=c.activation_value,
            ),
        )

    async def get_metrics(self) -> ScalerReport:
        """Read the queue once. :raises ScalerError: on any failure (never a 0 instead)."""
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._identity, transient=False)
        c = self.config
        if c.protocol is Protocol.AMQP:
            count = await self._amqp.read()
            info = QueueInfo(messages=count, messages_ready=count)
        elif c.use_regex:
            info = await self._http.read()
            count = info.messages_ready if c.exclude_unacknowledged else info.messages
        else:
            # shares one management request with the slot's other reads (see _listing)
            info = await LISTINGS.read(self._http)
            count = info.messages_ready if c.exclude_unacknowledged else info.messages
        value, active = metric_and_activity(c.mode, info, count, c.activation_value)
        return ScalerReport.single(c.metric_name, value, is_active=active)

    async def wait_for_activity(self) -> None:
        """Return once the trigger is active (at once if it already is).

        RabbitMQ cannot notify a client that a message arrived without delivering it
        to a consumer (and a consumer that takes and requeues messages changes their
        redelivery state), so this is a cheap, consumer-free poll while the trigger is
        idle:

        * **AMQP:** one channel on the shared connection is held for the whole wait,
          and the queue is declared passively on it every ``push_poll_interval``
          seconds (default 0.25): one small round trip per interval, no consumer, no
          message touched. A publish is seen within about one interval.
        * **HTTP:** :meth:`get_metrics` every ``push_poll_interval`` seconds (default
          1.0); the management API's statistics lag a few seconds behind the broker,
          so the wake-up does too.

        :raises ScalerError: the queue cannot be read (as :meth:`get_metrics`).
        """
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._identity, transient=False)
        interval = self._push_poll_interval
        if self.config.protocol is Protocol.HTTP:
            while True:
                try:
                    if (await self.get_metrics()).is_active:
                        return
                except CountsNotPublished:
                    pass  # a queue declared a moment ago: not active as far as anyone knows
                await asyncio.sleep(interval)
        c = self.config

        def is_active(count: int) -> bool:
            info = QueueInfo(messages=count, messages_ready=count)
            return metric_and_activity(c.mode, info, count, c.activation_value)[1]

        await self._amqp.watch(is_active, interval)

    async def aclose(self) -> None:
        """Release this scaler's share of the AMQP connection, or its HTTP session."""
        if self._closed:
            return
        self._closed = True
        await self._amqp.aclose()
        await self._http.aclose()
