"""Replicas from one metric: the Kubernetes HPA's per-metric formulas, with tolerance.

Every function here is a small pure function of numbers. Values and targets are turned
into integer milli-units first (as Kubernetes compares ``Quantity.MilliValue()``), so
``8.6 / 2.15`` is exactly ``4`` and a ceiling never rounds a float's noise up.

* ``AverageValue`` (the default for KEDA triggers): ``ceil(total / target)``. It does not
  depend on the current replica count, so it works from zero.
* ``Value``: ``ceil(ready * total / target)``, where ``ready`` is the number of ready
  replicas (defaults to the current count). From zero it is ``ceil(total / target)``.

Tolerance: when ``1 - down <= ratio <= 1 + up`` (both ends inclusive) the current count
is kept. The ratio is ``total / (target * current)`` for ``AverageValue`` and
``total / target`` for ``Value``. At zero replicas there is no tolerance.

The maths is total on finite input, and saturates instead of raising: a value or target
beyond ``+/-`` :data:`MILLI_CAP` milli-units (about ``9.2e15``, a Kubernetes quantity's
``int64`` range) counts as that bound, infinities too, and every proposal is capped at
:data:`REPLICA_CAP`. So ``1e306`` asks for :data:`REPLICA_CAP` replicas (the runtime
refuses such a value as a trigger error before it gets here: docs/errors.md, "Limits").
NaN has no milli-value: :func:`to_milli_int` raises :class:`ValueError` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from eventscale.metrics import MetricType

__all__ = (
    "MILLI_CAP",
    "REPLICA_CAP",
    "Tolerance",
    "average_value_replicas",
    "metric_replicas",
    "pods_average_replicas",
    "to_milli_int",
    "value_replicas",
)

#: Upper bound of any computed proposal (the HPA caps at MaxInt32).
REPLICA_CAP: Final = 2**31 - 1
#: The largest milli-value (a Kubernetes quantity's ``int64``): larger values saturate.
MILLI_CAP: Final = 2**63 - 1


def _ge0(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Tolerance:
    """The band around a ratio of 1 inside which the current count is kept.

    ``scale_up`` is the upper margin, ``scale_down`` the lower one (HPA
    ``behavior.scaleUp.tolerance`` / ``scaleDown.tolerance``; default 0.1 each).
    """

    scale_up: float = attrs.field(default=0.1, validator=_ge0)
    scale_down: float = attrs.field(default=0.1, validator=_ge0)

    def within(self, ratio: float) -> bool:
        """``True`` when ``1 - scale_down <= ratio <= 1 + scale_up``."""
        return 1.0 - self.scale_down <= ratio <= 1.0 + self.scale_up


DEFAULT_TOLERANCE: Final = Tolerance()


def to_milli_int(value: float) -> int:
    """``value`` in integer milli-units (``8.6`` -> ``8600``), as a Kubernetes quantity.

    Saturates at ``+/-`` :data:`MILLI_CAP` (infinities included).

    :raises ValueError: ``value`` is NaN.
    """
    milli = value * 1000
    if milli != milli:
        raise ValueError("NaN has no milli-value")
    if milli >= MILLI_CAP:
        return MILLI_CAP
    if milli <= -MILLI_CAP:
        return -MILLI_CAP
    return round(milli)


def _ceil_div(num: int, den: int) -> int:
    return -(-num // den)


def average_value_replicas(
    total: float, target: float, current: int, tolerance: Tolerance = DEFAULT_TOLERANCE
) -> int:
    """Replicas for an ``AverageValue`` target: ``ceil(total / target)``.

    ``total`` is the metric summed over its series (the queue length, the lag);
    ``target`` the value each replica should handle. Within tolerance of the current
    count (``total / (target * current)``), ``current`` is returned. A target of 0
    asks for :data:`REPLICA_CAP` replicas when there is any load, 0 otherwise.
    """
    usage = to_milli_int(total)
    tgt = to_milli_int(target)
    if tgt <= 0:
        return REPLICA_CAP if usage > 0 else 0
    if current > 0 and tolerance.within(usage / (tgt * current)):
        return current
    return min(REPLICA_CAP, _ceil_div(usage, tgt))


def value_replicas(
    total: float,
    target: float,
    current: int,
    ready: int | None = None,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> int:
    """Replicas for a ``Value`` target: ``ceil(ready * total / target)``.

    ``ready`` is the number of ready replicas (the HPA counts only Running and Ready
    pods, vector H6); ``None`` or 0 means "use ``current``" (the HPA would fail with
    no pods; eventscale uses the current count instead). From zero replicas the
    result is ``ceil(total / target)`` with no tolerance.
    """
    usage = to_milli_int(total)
    tgt = to_milli_int(target)
    if tgt <= 0:
        return REPLICA_CAP if usage > 0 else 0
    if current <= 0:
        return min(REPLICA_CAP, _ceil_div(usage, tgt))
    ratio = usage / tgt
    if tolerance.within(ratio):
        return current
    base = ready if ready is not None and ready > 0 else current
    return min(REPLICA_CAP, _ceil_float(ratio * min(base, REPLICA_CAP)))


def _ceil_float(value: float) -> int:
    if value >= REPLICA_CAP:  # also infinity: the callers cap at REPLICA_CAP anyway
        return REPLICA_CAP
    whole = int(value)
    return whole if whole >= value else whole + 1


def metric_replicas(
    metric_type: MetricType,
    total: float,
    target: float,
    current: int,
    *,
    ready: int | None = None,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> int:
    """Dispatch to :func:`average_value_replicas` or :func:`value_replicas`."""
    if metric_type is MetricType.VALUE:
        return value_replicas(total, target, current, ready, tolerance)
    return average_value_replicas(total, target, current, tolerance)


def pods_average_replicas(
    per_pod: Sequence[float], target: float, tolerance: Tolerance = DEFAULT_TOLERANCE
) -> int:
    """Replicas for a per-pod average (HPA ``Pods`` metrics, all pods ready and reporting).

    ``ratio = mean(per_pod) / target``; within tolerance keeps ``len(per_pod)``,
    else ``ceil(ratio * len(per_pod))``. Provided for parity with the HPA's vectors
    and for library users with per-replica metrics.
    """
    count = len(per_pod)
    if count == 0:
        return 0
    tgt = to_milli_int(target)
    usage = sum(to_milli_int(v) for v in per_pod) // count
    if tgt <= 0:
        return REPLICA_CAP if usage > 0 else 0
    ratio = usage / tgt
    if tolerance.within(ratio):
        return count
    return min(REPLICA_CAP, _ceil_float(ratio * count))
