"""Events, logging and optional Prometheus metrics for the runtime.

Everything the controller does is an :class:`Event`: every poll (with per-trigger
values and errors), every decision, every scale action and every target failure.
Consumers subscribe with a callable (sync or async) or iterate events
asynchronously through :meth:`EventBus.subscribe`.

The library logs through the standard ``logging`` module under the ``eventscale``
logger, which has a :class:`logging.NullHandler` (configure logging in your
application to see it). Log records carry structured fields in ``extra``
(``scaled_object``, ``event``, ``desired_replicas``...). No secret is ever logged:
error messages were redacted where they were created.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = (
    "Event",
    "EventBus",
    "EventHook",
    "EventKind",
    "PrometheusExporter",
    "TriggerResult",
    "log_level",
    "logger",
    "summarize",
)

logger = logging.getLogger("eventscale")
logger.addHandler(logging.NullHandler())


class EventKind(enum.Enum):
    """What happened."""

    POLL = "poll"
    DECISION = "decision"
    SCALE = "scale"
    TARGET_ERROR = "target_error"
    OBJECT_ADDED = "object_added"
    OBJECT_REMOVED = "object_removed"
    LEASE = "lease"
    #: Manifests were read again (``reason`` lists what was added, updated, removed).
    RELOAD = "reload"
    #: A manifest edit was refused; the running version stays (``error`` names the field).
    CONFIG_ERROR = "config_error"


@attrs.frozen(kw_only=True)
class TriggerResult:
    """One trigger's outcome in one poll: its value(s) or its error."""

    index: int
    type: str
    name: str | None
    metric_name: str | None
    value: float | None
    target: float | None
    metric_type: str | None
    activation_target: float | None
    active: bool
    error: str | None = None
    #: Seconds the scaler took to answer (or fail), when measured.
    latency: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with the field names the CLI prints (camelCase)."""
        return {
            "index": self.index,
            "type": self.type,
            "name": self.name,
            "metricName": self.metric_name,
            "value": self.value,
            "target": self.target,
            "metricType": self.metric_type,
            "activationTarget": self.activation_target,
            "active": self.active,
            "error": self.error,
        }


@attrs.frozen(kw_only=True)
class Event:
    """Something the controller did, with the time it happened (the controller's clock).

    ``scaled_object`` is ``namespace/name``. Optional fields are set by the kinds they
    concern: ``triggers`` for polls, ``desired_replicas``/``reason`` for decisions and
    scale actions, ``from_replicas``/``to_replicas`` for scale actions, ``error`` for
    failures, ``fallback`` for decisions (whether fallback replicas were in force).
    """

    kind: EventKind
    time: float
    scaled_object: str
    triggers: tuple[TriggerResult, ...] = ()
    current_replicas: int | None = None
    desired_replicas: int | None = None
    from_replicas: int | None = None
    to_replicas: int | None = None
    active: bool | None = None
    rule: str | None = None
    reason: str | None = None
    error: str | None = None
    lag: float | None = None
    fallback: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (``None`` fields omitted)."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "time": self.time,
            "scaledObject": self.scaled_object,
        }
        for key, value in (
            ("currentReplicas", self.current_replicas),
            ("desiredReplicas", self.desired_replicas),
            ("fromReplicas", self.from_replicas),
            ("toReplicas", self.to_replicas),
            ("active", self.active),
            ("rule", self.rule),
            ("reason", self.reason),
            ("error", self.error),
            ("lag", self.lag),
            ("fallback", self.fallback),
        ):
            if value is not None:
                out[key] = value
        if self.triggers:
            out["triggers"] = [t.to_dict() for t in self.triggers]
        return out


EventHook = Callable[[Event], Awaitable[None] | None]


class EventBus:
    """Fans events out to hooks and subscribers; never lets a consumer break the loop.

    A hook that raises is logged and kept. A subscriber that does not keep up loses
    the oldest events beyond its buffer (``dropped`` counts them) rather than slowing
    the controller down.
    """

    def __init__(self) -> None:
        self._hooks: list[EventHook] = []
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
        self.dropped = 0

    @property
    def has_listeners(self) -> bool:
        """Whether a hook or a subscriber is registered (events go somewhere but the log)."""
        return bool(self._hooks) or bool(self._subscribers)

    def wants(self, level: int) -> bool:
        """Whether an event logged at ``level`` reaches anyone.

        ``True`` when a hook or subscriber is registered, or when the ``eventscale``
        logger is enabled for ``level`` (see :func:`log_level`). The runtime asks
        before it builds an event, so a controller with no consumer builds none.
        """
        return bool(self._hooks) or bool(self._subscribers) or logger.isEnabledFor(level)

    def add_hook(self, hook: EventHook) -> None:
        """Call ``hook(event)`` for every event (a coroutine function is awaited)."""
        self._hooks.append(hook)

    def remove_hook(self, hook: EventHook) -> None:
        """Stop calling ``hook``."""
        self._hooks.remove(hook)

    @asynccontextmanager
    async def subscribe(
        self, buffer: int = 1000
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """An async iterator of events for the duration of the ``async with`` block."""
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.remove(send)
            send.close()

    async def emit(self, event: Event) -> None:
        """Deliver ``event`` to every hook and subscriber, and log it."""
        _log(event)
        if self._hooks:
            for hook in tuple(self._hooks):
                try:
                    result = hook(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("event hook %r failed", hook)
        if self._subscribers:
            for send in tuple(self._subscribers):
                try:
                    send.send_nowait(event)
                except anyio.WouldBlock:
                    self.dropped += 1
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass


def log_level(kind: EventKind, *, failed: bool = False) -> int:
    """The level an event of ``kind`` is logged at (``failed``: a poll with a failed trigger)."""
    if kind is EventKind.POLL:
        return logging.WARNING if failed else logging.DEBUG
    if kind is EventKind.DECISION:
        return logging.DEBUG
    if kind is EventKind.TARGET_ERROR or kind is EventKind.CONFIG_ERROR:
        return logging.WARNING
    return logging.INFO


def _log(event: Event) -> None:
    kind = event.kind
    if not logger.isEnabledFor(log_level(kind, failed=True)):
        return  # the common case: nothing to format
    extra = {"scaled_object": event.scaled_object, "event": kind.value}
    if kind is EventKind.SCALE:
        logger.info(
            "%s scaled %s -> %s: %s",
            event.scaled_object,
            event.from_replicas,
            event.to_replicas,
            event.reason,
            extra={**extra, "from_replicas": event.from_replicas, "to_replicas": event.to_replicas},
        )
    elif kind is EventKind.TARGET_ERROR:
        logger.warning("%s target error: %s", event.scaled_object, event.error, extra=extra)
    elif kind is EventKind.CONFIG_ERROR:
        logger.warning(
            "%s: edit refused, the running version stays: %s",
            event.scaled_object,
            event.error,
            extra=extra,
        )
    elif kind is EventKind.POLL:
        for trig in event.triggers:
            if trig.error is not None:
                logger.warning(
                    "%s trigger %s failed: %s",
                    event.scaled_object,
                    trig.name or trig.index,
                    trig.error,
                    extra={**extra, "trigger": trig.name or trig.index},
                )
        logger.debug("%s polled", event.scaled_object, extra=extra)
    elif kind is EventKind.DECISION:
        logger.debug(
            "%s decided %s: %s",
            event.scaled_object,
            event.desired_replicas,
            event.reason,
            extra={**extra, "desired_replicas": event.desired_replicas},
        )
    else:
        logger.info(
            "%s %s %s", event.scaled_object, event.kind.value, event.reason or "", extra=extra
        )


class PrometheusExporter:
    """Feeds controller events into ``prometheus_client`` metrics (extra ``prometheus``).

    Register it as a hook: ``controller.events.add_hook(PrometheusExporter())``.
    Metrics (label ``scaled_object``, plus ``trigger`` where per trigger):
    ``eventscale_trigger_value``, ``eventscale_trigger_active``,
    ``eventscale_trigger_errors_total``, ``eventscale_desired_replicas``,
    ``eventscale_current_replicas``, ``eventscale_loop_lag_seconds``,
    ``eventscale_last_scale_timestamp_seconds``. The series of an object removed from
    the controller are dropped.
    """

    def __init__(self, registry: Any | None = None) -> None:
        from eventscale._optional import import_optional

        prom = import_optional("prometheus_client", extra="prometheus", what="Prometheus metrics")
        kwargs: Mapping[str, Any] = {"registry": registry} if registry is not None else {}
        labels = ["scaled_object", "trigger"]
        self.value = prom.Gauge(
            "eventscale_trigger_value", "Last metric value per trigger", labels, **kwargs
        )
        self.active = prom.Gauge(
            "eventscale_trigger_active", "1 when the trigger is active", labels, **kwargs
        )
        self.errors = prom.Counter(
            "eventscale_trigger_errors", "Failed polls per trigger", labels, **kwargs
        )
        self.desired = prom.Gauge(
            "eventscale_desired_replicas",
            "Replicas the engine asks for",
            ["scaled_object"],
            **kwargs,
        )
        self.current = prom.Gauge(
            "eventscale_current_replicas", "Replicas the target holds", ["scaled_object"], **kwargs
        )
        self.lag = prom.Histogram(
            "eventscale_loop_lag_seconds",
            "How late each poll ran",
            ["scaled_object"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            **kwargs,
        )
        self.last_scale = prom.Gauge(
            "eventscale_last_scale_timestamp_seconds",
            "Time of the last scale action",
            ["scaled_object"],
            **kwargs,
        )
        self._series: dict[str, set[str]] = {}  # scaled object -> trigger labels seen

    def __call__(self, event: Event) -> None:
        """Update the metrics from one event."""
        so = event.scaled_object
        if event.kind is EventKind.POLL:
            for trig in event.triggers:
                label = trig.name or str(trig.index)
                self._series.setdefault(so, set()).add(label)
                if trig.error is not None:
                    self.errors.labels(so, label).inc()
                    continue
                if trig.value is not None and math.isfinite(trig.value):
                    self.value.labels(so, label).set(trig.value)
                self.active.labels(so, label).set(1 if trig.active else 0)
            if event.lag is not None:
                self.lag.labels(so).observe(max(event.lag, 0.0))
            if event.current_replicas is not None:
                self.current.labels(so).set(event.current_replicas)
        elif event.kind is EventKind.DECISION and event.desired_replicas is not None:
            self.desired.labels(so).set(event.desired_replicas)
        elif event.kind is EventKind.SCALE:
            self.last_scale.labels(so).set(event.time)
            if event.to_replicas is not None:
                self.current.labels(so).set(event.to_replicas)
        elif event.kind is EventKind.OBJECT_REMOVED:
            self._forget(so)

    def _forget(self, so: str) -> None:
        """Drop every series of a removed object (it would export its last values forever)."""
        for label in self._series.pop(so, ()):
            for metric in (self.value, self.active, self.errors):
                with contextlib.suppress(KeyError):
                    metric.remove(so, label)
        for metric in (self.desired, self.current, self.lag, self.last_scale):
            with contextlib.suppress(KeyError):
                metric.remove(so)


def summarize(triggers: Sequence[TriggerResult]) -> str:
    """``name=value`` pairs for a one-line view (errors as ``name=error``)."""
    parts = []
    for trig in triggers:
        label = trig.name or f"{trig.type}[{trig.index}]"
        parts.append(f"{label}=error" if trig.error is not None else f"{label}={trig.value:g}")
    return ", ".join(parts)
