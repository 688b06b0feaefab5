"""What scalers report: metric specs, metric values and a report per poll.

Quantities are plain floats. KEDA renders them as Kubernetes milli-quantities
(``%.3f``); :func:`to_milli` reproduces that rounding where exact KEDA parity matters.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence

import attrs

from eventscale.errors import ConfigError

__all__ = (
    "MAX_METRIC_VALUE",
    "MetricSpec",
    "MetricType",
    "MetricValue",
    "ScalerReport",
    "metric_name",
    "normalize_metric_name",
    "remove_index_from_metric_name",
    "sanitize_metric_value",
    "to_milli",
    "validate_metric_value",
)

#: The largest metric value a scaler may report. Kubernetes compares metrics as int64
#: milli-values, so 1e15 (1e18 milli) still fits, and below it the replica maths
#: (``value / target``) is exact to well under one replica (doubles hold every
#: integer up to 2**53, about 9e15). Larger values are a ScalerError (docs/errors.md).
MAX_METRIC_VALUE = 1e15


class MetricType(enum.Enum):
    """How the engine turns a metric into replicas (the HPA's external metric target types).

    ``AVERAGE_VALUE``: ``desired = ceil(value / target)`` (the value is shared by all replicas).
    ``VALUE``: ``desired = ceil(current * value / target)`` (the value is per replica already).
    ``UTILIZATION``: only for the ``cpu`` and ``memory`` triggers (a percentage of the
    pods' requests, see docs/scalers/cpu-memory.md); :meth:`parse` rejects it.
    """

    AVERAGE_VALUE = "AverageValue"
    VALUE = "Value"
    UTILIZATION = "Utilization"  # cpu/memory only (eventscale.scalers.resource)

    @classmethod
    def parse(cls, raw: str | None, *, path: str | None = "metricType") -> MetricType:
        """Parse a trigger's ``metricType``; empty means ``AverageValue``."""
        if raw is None or raw.strip() == "":
            return cls.AVERAGE_VALUE
        value = raw.strip()
        for member in (cls.AVERAGE_VALUE, cls.VALUE):
            if member.value == value:
                return member
        if value == "Utilization":
            raise ConfigError(
                "metricType 'Utilization' is only for cpu/memory triggers; "
                "use 'Value' or 'AverageValue' for external metrics",
                path=path,
            )
        raise ConfigError(
            f"metricType must be one of 'AverageValue', 'Value', got {value!r}", path=path
        )


_NORMALIZE = re.compile(r"[/.:%()]")


def normalize_metric_name(name: str) -> str:
    """Replace each of ``/ . : % ( )`` with ``-`` as KEDA's ``NormalizeString`` does."""
    return _NORMALIZE.sub("-", name)


def metric_name(index: int, name: str) -> str:
    """The metric name KEDA gives trigger ``index``: ``s{index}-{name}``."""
    return f"s{index}-{name}"


def remove_index_from_metric_name(index: int, name: str) -> str:
    """Undo :func:`metric_name`; raises :class:`ValueError` when the prefix is not ``s{index}``."""
    prefix, sep, rest = name.partition("-")
    if not sep:
        raise ValueError(f"metric name {name!r} has no 's{index}-' prefix")
    if prefix != f"s{index}":
        raise ValueError(f"metric name {name!r} does not belong to trigger {index}")
    return rest


def sanitize_metric_value(value: float) -> float:
    """NaN, infinities and negatives become 0, as KEDA's ``GenerateMetricInMili`` does.

    Only for rendering a value the KEDA way (:func:`to_milli`, a RabbitMQ target): a
    value a scaler reports is not sanitized but checked by
    :func:`validate_metric_value`, since a NaN read as 0 would scale a workload in.
    """
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0.0
    return float(value)


def to_milli(value: float) -> float:
    """Round like a KEDA milli-quantity (three decimals) after :func:`sanitize_metric_value`."""
    return round(sanitize_metric_value(value), 3)


def _non_negative_finite(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class MetricSpec:
    """One metric a scaler reports, and the target the engine compares it with.

    ``name`` is the full metric name (``s0-redis-orders``). ``target`` is the value
    per replica (``AverageValue``) or the whole-target value (``Value``).
    ``activation_target``: the trigger is active when its value is strictly greater.
    """

    name: str
    target: float = attrs.field(converter=float, validator=_non_negative_finite)
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    activation_target: float = attrs.field(default=0.0, converter=float)


def validate_metric_value(name: str, value: float) -> str | None:
    """Why ``value`` of metric ``name`` cannot be used, or ``None`` when it can.

    NaN, infinities, negative values and values above :data:`MAX_METRIC_VALUE` cannot:
    KEDA would report them as 0 (or overflow), which scales a workload in on a broken
    reading. The runtime turns the answer into a :class:`~eventscale.errors.ScalerError`
    naming the trigger (docs/errors.md, "Limits").
    """
    if math.isnan(value):
        return f"scaler returned NaN for {name}"
    if math.isinf(value):
        return f"scaler returned an infinite value for {name}"
    if value < 0:
        return f"scaler returned a negative value for {name}: {value!r}"
    if value > MAX_METRIC_VALUE:
        return f"scaler returned {value!r} for {name}, above the limit of {MAX_METRIC_VALUE:g}"
    return None


@attrs.frozen(kw_only=True)
class MetricValue:
    """A metric reading: ``value`` is what the scaler computed, as a float.

    It is not clamped: the runtime checks it when it receives the report (see
    :func:`validate_metric_value`).
    """

    name: str
    value: float = attrs.field(converter=float)


def _to_values(values: Iterable[MetricValue]) -> tuple[MetricValue, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class ScalerReport:
    """The result of one successful poll of one trigger: its metric values and activity.

    A failed poll is not a report: the scaler raises :class:`~eventscale.errors.ScalerError`.
    """

    values: tuple[MetricValue, ...] = attrs.field(converter=_to_values)
    is_active: bool

    @classmethod
    def single(cls, name: str, value: float, *, is_active: bool) -> ScalerReport:
        """A report with one metric value."""
        return cls(values=(MetricValue(name=name, value=value),), is_active=is_active)

    def value_of(self, name: str) -> float:
        """The value reported for metric ``name``; :class:`KeyError` if absent."""
        for item in self.values:
            if item.name == name:
                return item.value
        raise KeyError(name)

    @property
    def names(self) -> Sequence[str]:
        """Names of the reported metrics, in order."""
        return tuple(v.name for v in self.values)
