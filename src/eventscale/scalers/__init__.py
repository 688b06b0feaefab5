"""Scalers read the state of an event source: the ``Scaler`` protocol and the registry.

A scaler is built from one trigger (its KEDA metadata, resolved auth parameters and
environment) and, on each poll, returns a :class:`~eventscale.metrics.ScalerReport`
or raises :class:`~eventscale.errors.ScalerError`. It never reports an error as 0.

Built-in trigger types are imported lazily, so ``import eventscale`` loads no broker
client; a missing optional dependency raises :class:`~eventscale.errors.MissingExtraError`
(a :class:`~eventscale.errors.ConfigError`) that names the extra to install. Third-party
scalers register through the ``eventscale.scalers`` entry-point group or
:func:`register_scaler`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Protocol, Self, runtime_checkable

from eventscale._lazy import lazy_exports as _lazy_exports
from eventscale._resource import AsyncResource
from eventscale.errors import ConfigError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport
from eventscale.redaction import Secret
from eventscale.scalers.params import TriggerContext

__all__ = (
    "ENTRY_POINT_GROUP",
    "PushScaler",
    "Scaler",
    "ScalerBase",
    "ScalerFactory",
    "TriggerContext",
    "create_scaler",
    "register_scaler",
    "registered_types",
    "resolve_scaler_class",
)

ENTRY_POINT_GROUP: Final = "eventscale.scalers"


@runtime_checkable
class Scaler(Protocol):
    """Reads one trigger's event source.

    * :meth:`metric_specs` does no I/O: the metric names, targets and activation targets.
    * :meth:`get_metrics` polls the source once. It raises
      :class:`~eventscale.errors.ScalerError` when the source cannot be read
      (unreachable, bad credentials, missing queue, timeout): never a value of 0.
    * :meth:`aclose` releases connections; it is safe to call twice.
    """

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The metrics this scaler reports, with their targets."""
        ...

    async def get_metrics(self) -> ScalerReport:
        """Poll the source once. :raises ScalerError: when it cannot be read."""
        ...

    async def aclose(self) -> None:
        """Release every resource the scaler holds."""
        ...


@runtime_checkable
class PushScaler(Scaler, Protocol):
    """A scaler that can wake the controller as soon as its source becomes active."""

    async def wait_for_activity(self) -> None:
        """Return when the source may have become active (e.g. the first item arrived).

        It may return spuriously; the controller polls after it returns. It raises
        :class:`~eventscale.errors.ScalerError` when it cannot watch the source.
        """
        ...


class ScalerFactory(Protocol):
    """What the registry holds: a class that builds a scaler from a trigger context."""

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> Scaler:
        """Parse and validate ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        ...


class ScalerBase(AsyncResource):
    """Optional base class for scalers: ``async with`` closes the scaler.

    :meth:`aclose` does nothing by default; a scaler that holds connections overrides it.
    A subclass that sets :attr:`trigger_type` and implements ``from_context`` also gets
    :meth:`from_metadata`, to build it from plain KEDA metadata.
    """

    #: The trigger type :meth:`from_metadata` builds a context for by default.
    trigger_type: ClassVar[str] = ""

    async def aclose(self) -> None:
        """Release resources (nothing by default)."""

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> Self:
        """Parse and validate ``ctx`` (raising :class:`ConfigError`) and build the scaler.

        A subclass may accept keyword arguments after ``ctx`` for what is not KEDA
        metadata (a clock, a credential); :meth:`from_metadata` passes them through.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement from_context()")

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        auth: Mapping[str, str | Secret] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        trigger_type: str | None = None,
        index: int = 0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        **injected: Any,
    ) -> Self:
        """Build the scaler from KEDA trigger ``metadata`` (and resolved auth parameters / env).

        ``injected`` goes to :meth:`from_context` (for example a test clock).

        :raises ConfigError: bad metadata, every problem with its field path.
        """
        ctx = TriggerContext(
            metadata=metadata,
            auth=auth or {},
            env=env or {},
            index=index,
            trigger_type=trigger_type or cls.trigger_type,
            metric_type=metric_type,
        )
        return cls.from_context(ctx, **injected)


# trigger type -> "module:attribute" for the built-ins; imported on first use.
_BUILTIN: Final[Mapping[str, str]] = {
    "kafka": "eventscale.scalers.kafka.scaler:KafkaScaler",
    "apache-kafka": "eventscale.scalers.kafka.apache:ApacheKafkaScaler",
    "rabbitmq": "eventscale.scalers.rabbitmq.scaler:RabbitMQScaler",
    "redis": "eventscale.scalers.redis.lists:RedisListScaler",
    "redis-cluster": "eventscale.scalers.redis.lists:RedisListScaler",
    "redis-sentinel": "eventscale.scalers.redis.lists:RedisListScaler",
    "redis-streams": "eventscale.scalers.redis.streams:RedisStreamsScaler",
    "redis-cluster-streams": "eventscale.scalers.redis.streams:RedisStreamsScaler",
    "redis-sentinel-streams": "eventscale.scalers.redis.streams:RedisStreamsScaler",
    "azure-servicebus": "eventscale.scalers.azure.servicebus:AzureServiceBusScaler",
    "azure-queue": "eventscale.scalers.azure.storage_queue:AzureQueueScaler",
    "cron": "eventscale.scalers.cron:CronScaler",
    "postgresql": "eventscale.scalers.postgresql:PostgreSQLScaler",
    "mysql": "eventscale.scalers.mysql:MySQLScaler",
    "nats-jetstream": "eventscale.scalers.nats_jetstream:NATSJetStreamScaler",
    "prometheus": "eventscale.scalers.prometheus:PrometheusScaler",
    "metrics-api": "eventscale.scalers.metrics_api:MetricsAPIScaler",
    "gauge": "eventscale.scalers.gauge:GaugeScaler",
    "cpu": "eventscale.scalers.resource:ResourceScaler",
    "memory": "eventscale.scalers.resource:ResourceScaler",
    "celery": "eventscale.scalers.pyqueues.celery:CeleryScaler",
    "rq": "eventscale.scalers.pyqueues.rq:RQScaler",
    "dramatiq": "eventscale.scalers.pyqueues.dramatiq:DramatiqScaler",
    "http": "eventscale.http.scaler:HTTPScaler",
    "external": "eventscale.external.client:ExternalScaler",
    "external-push": "eventscale.external.client:ExternalPushScaler",
}

_registered: dict[str, type[Any] | str] = {}
_entry_points_loaded = False


def register_scaler(trigger_type: str, factory: type[Any] | str, *, replace: bool = False) -> None:
    """Register ``factory`` (a class with ``from_context`` or ``"module:Class"``) for a type.

    Registering a built-in or already registered type needs ``replace=True``.
    """
    if not replace and (trigger_type in _BUILTIN or trigger_type in _registered):
        raise ValueError(f"trigger type {trigger_type!r} is already registered")
    _registered[trigger_type] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _registered.setdefault(ep.name, ep.value)


def registered_types() -> list[str]:
    """Every trigger type that :func:`create_scaler` knows, sorted."""
    _load_entry_points()
    return sorted({*_BUILTIN, *_registered})


def _import_ref(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_scaler_class(trigger_type: str, *, path: str | None = None) -> ScalerFactory:
    """The class registered for ``trigger_type``.

    :raises ConfigError: unknown type, or :class:`MissingExtraError` when its optional
        dependency is not installed.
    """
    _load_entry_points()
    ref: type[Any] | str | None = _registered.get(trigger_type) or _BUILTIN.get(trigger_type)
    if ref is None:
        known = ", ".join(registered_types())
        raise ConfigError(f"unknown trigger type {trigger_type!r} (known: {known})", path=path)
    if isinstance(ref, str):
        ref = _import_ref(ref)
    return ref  # type: ignore[return-value]


def create_scaler(ctx: TriggerContext) -> Scaler:
    """Build the scaler for ``ctx.trigger_type`` from its metadata.

    :raises ConfigError: bad metadata (every problem listed, each with its field path).
    """
    path = f"{ctx.path}.type" if ctx.path else "type"
    cls = resolve_scaler_class(ctx.trigger_type, path=path)
    return cls.from_context(ctx)


# Built-in scaler classes by name (``eventscale.scalers.RedisListScaler``), imported on
# first use so that importing this package loads no broker client.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        **{ref.partition(":")[2]: ref.partition(":")[0] for ref in _BUILTIN.values()},
        "MemoryScaler": "eventscale.scalers.gauge",  # the old name of GaugeScaler
    },
    __all__,
)
