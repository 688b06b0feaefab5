"""KEDA's operator metrics, fed from the controller's events (extra ``prometheus``).

Grafana dashboards and alerts written for KEDA query the operator's ``keda_*`` series
by name and label. :class:`KedaMetrics` exports the ones that mean something for
eventscale, with KEDA's names, label names and label values (KEDA's
``pkg/metricscollector/prommetrics.go`` is the reference), from the same
:class:`~eventscale.runtime.observability.EventBus` that feeds eventscale's own
``eventscale_*`` series (:class:`~eventscale.runtime.observability.PrometheusExporter`).
docs/metrics.md lists every series and what eventscale does not export.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from eventscale.runtime.observability import Event, EventKind, TriggerResult

if TYPE_CHECKING:
    from eventscale.runtime.objects import Reconcilable

__all__ = (
    "KEDA_METRIC_NAMES",
    "KedaMetrics",
    "keda_scaler_name",
    "resource_type",
)

#: The series :class:`KedaMetrics` exports, as a scrape shows them.
KEDA_METRIC_NAMES = (
    "keda_build_info",
    "keda_scaler_metrics_value",
    "keda_scaler_metrics_latency_seconds",
    "keda_scaler_active",
    "keda_scaler_detail_errors_total",
    "keda_scaled_object_errors_total",
    "keda_scaled_job_errors_total",
    "keda_scaled_object_paused",
    "keda_internal_scale_loop_latency_seconds",
    "keda_trigger_registered_total",
    "keda_resource_registered_total",
)

# The Go type KEDA names a scaler by (its ``scaler`` label) when the trigger has no
# ``name``: ``%T`` of the scaler without its package (pkg/scaling/scale_handler.go).
_GO_SCALERS: Mapping[str, str] = {
    "redis": "redisScaler",
    "redis-cluster": "redisScaler",
    "redis-sentinel": "redisScaler",
    "redis-streams": "redisStreamsScaler",
    "redis-cluster-streams": "redisStreamsScaler",
    "redis-sentinel-streams": "redisStreamsScaler",
    "kafka": "kafkaScaler",
    "apache-kafka": "apacheKafkaScaler",
    "rabbitmq": "rabbitMQScaler",
    "azure-queue": "azureQueueScaler",
    "azure-servicebus": "azureServiceBusScaler",
    "cron": "cronScaler",
    "prometheus": "prometheusScaler",
    "metrics-api": "metricsAPIScaler",
    "postgresql": "postgreSQLScaler",
    "mysql": "mySQLScaler",
    "nats-jetstream": "natsJetStreamScaler",
    "cpu": "cpuMemoryScaler",
    "memory": "cpuMemoryScaler",
    "external": "externalScaler",
    "external-push": "externalPushScaler",
}

# What KEDA's resource_registered_total calls each kind (its ``type`` label).
_RESOURCE_TYPES: Mapping[str, str] = {
    "ScaledObject": "scaled_object",
    "ScaledJob": "scaled_job",
    "TriggerAuthentication": "trigger_authentication",
    "ClusterTriggerAuthentication": "cluster_trigger_authentication",
}

# Go's names for the machine (the goarch label), from Python's.
_GOARCH: Mapping[str, str] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def keda_scaler_name(trigger_type: str, trigger_name: str | None) -> str:
    """The ``scaler`` label KEDA gives a trigger: its ``name``, else the scaler's Go type.

    Types KEDA does not have get ``<camelCaseType>Scaler`` (``celery`` -> ``celeryScaler``).
    """
    if trigger_name:
        return trigger_name
    known = _GO_SCALERS.get(trigger_type)
    if known is not None:
        return known
    head, *rest = trigger_type.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest) + "Scaler"


def resource_type(kind: str) -> str:
    """KEDA's ``resource_registered_total`` ``type`` label for a kind (``scaled_object``...)."""
    try:
        return _RESOURCE_TYPES[kind]
    except KeyError:
        raise ValueError(f"not a KEDA kind: {kind!r}") from None


@attrs.define
class _Tracked:
    """What was registered for one object, to undo it when the object goes."""

    namespace: str
    name: str
    scaled_job: bool
    trigger_types: tuple[str, ...]
    scaler_labels: set[tuple[str, ...]] = attrs.field(factory=set)
    # The label children, looked up once (a labels() call per series per poll costs
    # more than the update): per trigger (see _trigger_children) by (index, type,
    # name, metric name); the object's errors, paused and loop latency.
    triggers: dict[tuple[Any, ...], list[Any]] = attrs.field(factory=dict)
    errors: Any = None
    paused: Any = None
    loop: Any = None

    @property
    def type_label(self) -> str:
        return "scaledjob" if self.scaled_job else "scaledobject"


class KedaMetrics:
    """KEDA's operator metrics from controller events; register it as an event hook.

    ``attach(controller)`` registers it on the controller's event bus and lets it look
    each object up when it is added (its kind and trigger types)::

        metrics = KedaMetrics()
        metrics.attach(controller)

    Per trigger (labels ``namespace``, ``metric``, ``scaledObject``, ``scaler``,
    ``triggerIndex``, ``type``; ``scaledObject`` holds a ScaledJob's name too, ``type``
    is ``scaledobject`` or ``scaledjob``): ``keda_scaler_metrics_value``,
    ``keda_scaler_metrics_latency_seconds``, ``keda_scaler_active``,
    ``keda_scaler_detail_errors_total``. Per object: ``keda_scaled_object_errors_total``
    / ``keda_scaled_job_errors_total`` (one per failed trigger, as KEDA counts),
    ``keda_scaled_object_paused``, ``keda_internal_scale_loop_latency_seconds``.
    Totals: ``keda_trigger_registered_total{type}``,
    ``keda_resource_registered_total{type,namespace}`` and ``keda_build_info``.

    The series of an object removed from the controller are dropped.

    :param registry: a ``prometheus_client`` registry (the default one when omitted).
    :param kind_of: the kind (``"ScaledObject"`` or ``"ScaledJob"``) and trigger types
        of an object by key, when it is not attached to a controller.
    """

    def __init__(
        self,
        registry: Any | None = None,
        *,
        kind_of: Callable[[str], tuple[str, tuple[str, ...]] | None] | None = None,
    ) -> None:
        from eventscale._optional import import_optional

        prom = import_optional("prometheus_client", extra="prometheus", what="Prometheus metrics")
        kwargs: Mapping[str, Any] = {"registry": registry} if registry is not None else {}
        labels = ["namespace", "metric", "scaledObject", "scaler", "triggerIndex", "type"]
        self._kind_of = kind_of
        self.build_info = prom.Gauge(
            "keda_build_info",
            "Info metric: the eventscale version and the Python runtime it runs on "
            "(KEDA's label names: goversion holds the Python version).",
            ["version", "git_commit", "goversion", "goos", "goarch"],
            **kwargs,
        )
        self.value = prom.Gauge(
            "keda_scaler_metrics_value",
            "The last value each scaler's metric gave: what the autoscaler compares with "
            "its target.",
            labels,
            **kwargs,
        )
        self.latency = prom.Gauge(
            "keda_scaler_metrics_latency_seconds",
            "How long each scaler took to give its metric in the last poll, in seconds.",
            labels,
            **kwargs,
        )
        self.active = prom.Gauge(
            "keda_scaler_active", "1 while a scaler is active, else 0.", labels, **kwargs
        )
        self.scaler_errors = prom.Counter(
            "keda_scaler_detail_errors", "Failed polls of each scaler.", labels, **kwargs
        )
        self.object_errors = prom.Counter(
            "keda_scaled_object_errors",
            "Errors of each ScaledObject (one per failed trigger or target call).",
            ["namespace", "scaledObject"],
            **kwargs,
        )
        self.job_errors = prom.Counter(
            "keda_scaled_job_errors",
            "Errors of each ScaledJob (one per failed trigger or target call).",
            ["namespace", "scaledJob"],
            **kwargs,
        )
        self.paused = prom.Gauge(
            "keda_scaled_object_paused",
            "1 while a ScaledObject is paused by annotation, else 0.",
            ["namespace", "scaledObject"],
            **kwargs,
        )
        self.loop_latency = prom.Gauge(
            "keda_internal_scale_loop_latency_seconds",
            "How late the last poll of each object started against its schedule, in seconds.",
            ["namespace", "type", "resource"],
            **kwargs,
        )
        self.triggers = prom.Gauge(
            "keda_trigger_registered_total",
            "Triggers registered, per trigger type.",
            ["type"],
            **kwargs,
        )
        self.resources = prom.Gauge(
            "keda_resource_registered_total",
            "KEDA resources registered, per kind and namespace.",
            ["type", "namespace"],
            **kwargs,
        )
        from eventscale._version import __version__

        self.build_info.labels(
            __version__,
            "",
            f"{platform.python_implementation().lower()}{platform.python_version()}",
            sys.platform,
            _GOARCH.get(platform.machine().lower(), platform.machine().lower()),
        ).set(1)
        self._objects: dict[str, _Tracked] = {}
        self._controller: Any = None
        self._resource_namespaces: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ wiring

    def attach(self, controller: Any) -> None:
        """Feed on ``controller``'s events; objects are looked up there when added."""
        self._controller = controller
        controller.events.add_hook(self)

    def count_resources(self, kind: str, namespaces: Iterable[str | None]) -> None:
        """Set the count of resources of ``kind`` the controller does not run itself.

        For TriggerAuthentications and ClusterTriggerAuthentications: ``namespaces``
        has one entry per resource (``None`` or empty counts under ``default``, as
        KEDA does). Namespaces counted before and absent now drop to 0.
        """
        label = resource_type(kind)
        counts: dict[str, int] = {}
        for namespace in namespaces:
            counts[namespace or "default"] = counts.get(namespace or "default", 0) + 1
        for namespace in self._resource_namespaces.get(label, set()) - set(counts):
            self.resources.labels(label, namespace).set(0)
        for namespace, count in counts.items():
            self.resources.labels(label, namespace).set(count)
        self._resource_namespaces[label] = set(counts)

    # ------------------------------------------------------------------ events

    def __call__(self, event: Event) -> None:
        """Update the metrics from one event."""
        kind = event.kind
        key = event.scaled_object
        if kind is EventKind.OBJECT_REMOVED:
            self._forget(key)
            return
        tracked = self._objects.get(key)
        if tracked is None:
            if kind is EventKind.RELOAD or kind is EventKind.CONFIG_ERROR:
                return
            tracked = self._learn(key)
            if tracked is None:
                return
        if kind is EventKind.POLL:
            self._poll(tracked, event)
        elif kind is EventKind.DECISION:
            if tracked.paused is not None:
                tracked.paused.set(1 if event.rule in ("paused", "paused-replicas") else 0)
        elif kind is EventKind.TARGET_ERROR:
            tracked.errors.inc()

    def _poll(self, tracked: _Tracked, event: Event) -> None:
        if event.lag is not None:
            tracked.loop.set(max(event.lag, 0.0))
        for trig in event.triggers:
            ident = (trig.index, trig.type, trig.name, trig.metric_name)
            children = tracked.triggers.get(ident)
            if children is None:
                children = self._trigger_children(tracked, trig)
                tracked.triggers[ident] = children
            if trig.latency is not None:
                children[1].set(trig.latency)
            if trig.error is not None:
                children[2].inc()
                tracked.errors.inc()
                continue
            if len(children) == 3:  # the first success: only now a value series exists
                labels = children[0]
                children.extend((self.value.labels(*labels), self.active.labels(*labels)))
            if trig.value is not None and math.isfinite(trig.value):
                children[3].set(trig.value)
            children[4].set(1 if trig.active else 0)

    def _trigger_children(self, tracked: _Tracked, trig: TriggerResult) -> list[Any]:
        """[labels, latency, errors], then value and active after the first success
        (a trigger that never answered has no value series: an error is not a 0)."""
        labels = self._labels(tracked, trig)
        tracked.scaler_labels.add(labels)
        return [
            labels,
            self.latency.labels(*labels),
            self.scaler_errors.labels(*labels),  # present at 0, as KEDA initializes it
        ]

    @staticmethod
    def _labels(tracked: _Tracked, trig: TriggerResult) -> tuple[str, ...]:
        # namespace, metric, scaledObject, scaler, triggerIndex, type (KEDA's order)
        return (
            tracked.namespace,
            trig.metric_name or "",
            tracked.name,
            keda_scaler_name(trig.type, trig.name),
            str(trig.index),
            tracked.type_label,
        )

    def _learn(self, key: str) -> _Tracked | None:
        """Register an object seen for the first time: its kind, triggers and counts."""
        found = self._lookup(key)
        if found is None:
            return None
        kind, trigger_types = found
        namespace, _, name = key.partition("/")
        tracked = _Tracked(
            namespace=namespace,
            name=name,
            scaled_job=kind == "ScaledJob",
            trigger_types=trigger_types,
        )
        self._objects[key] = tracked
        self.resources.labels(resource_type(kind), namespace or "default").inc()
        for trigger_type in trigger_types:
            self.triggers.labels(trigger_type).inc()
        errors = self.job_errors if tracked.scaled_job else self.object_errors
        tracked.errors = errors.labels(namespace, name)  # present at 0
        tracked.loop = self.loop_latency.labels(namespace, tracked.type_label, name)
        if not tracked.scaled_job:
            tracked.paused = self.paused.labels(namespace, name)
            tracked.paused.set(0)
        return tracked

    def _lookup(self, key: str) -> tuple[str, tuple[str, ...]] | None:
        if self._kind_of is not None:
            found = self._kind_of(key)
            if found is not None:
                return found
        controller = self._controller
        if controller is None or key not in controller:
            return None
        return _describe(controller.get(key))

    def _forget(self, key: str) -> None:
        """Drop every series of a removed object and uncount it."""
        tracked = self._objects.pop(key, None)
        if tracked is None:
            return
        for labels in tracked.scaler_labels:
            for metric in (self.value, self.latency, self.active, self.scaler_errors):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)
        pair = (tracked.namespace, tracked.name)
        _remove(self.job_errors if tracked.scaled_job else self.object_errors, pair)
        _remove(self.paused, pair)
        _remove(self.loop_latency, (tracked.namespace, tracked.type_label, tracked.name))
        kind = "ScaledJob" if tracked.scaled_job else "ScaledObject"
        self.resources.labels(resource_type(kind), tracked.namespace or "default").dec()
        for trigger_type in tracked.trigger_types:
            self.triggers.labels(trigger_type).dec()


def _describe(obj: Reconcilable) -> tuple[str, tuple[str, ...]]:
    """An object's kind (``ScaledObject`` or ``ScaledJob``) and its trigger types."""
    from eventscale.spec import ScaledJobSpec

    spec: Any = obj.spec
    kind = "ScaledJob" if isinstance(spec, ScaledJobSpec) else "ScaledObject"
    triggers: Iterable[Any] = getattr(spec, "triggers", ())
    return kind, tuple(str(t.type) for t in triggers)


def _remove(metric: Any, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
