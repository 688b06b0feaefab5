"""Rule 2 of a decision: read every trigger's observation (docs/engine.md, "The rules, in order").

A healthy trigger gives one replica proposal per metric (the HPA formula; the highest
is the trigger's proposal) and its activity; a failed trigger (an error, no
observation, or a metric missing from its report) adds one to its consecutive failure
count and is in fallback once that count exceeds ``fallback.failureThreshold``.

This is the hot path of the engine (docs/engine.md, "Performance"): the details are
recorded as plain tuples that :class:`~eventscale.engine.Decision` turns into objects
only when read, and ``AverageValue`` replicas are computed inline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

from eventscale.engine.hpa import REPLICA_CAP, Tolerance, average_value_replicas, value_replicas
from eventscale.engine.model import PendingDetail, TriggerDetail, TriggerObservation, TriggerStatus
from eventscale.engine.state import ScalingState
from eventscale.metrics import MetricType
from eventscale.spec import Fallback

__all__ = ("Reading", "TriggerReader")

# Reading an enum member through its class is slow on CPython 3.11 (see lifecycle.py).
_VALUE: Final[MetricType] = MetricType.VALUE
# Below it, value * 1000 is an exact int64 milli-value: the inlined maths cannot overflow.
_MILLI_SAFE: Final = 1e15

Reading: TypeAlias = tuple[
    int | None,  # raw: the highest proposal of a healthy trigger (None without a composite)
    str | None,  # raw_trigger: the trigger that gave it
    bool,  # any_active: a healthy trigger is active (always False with a composite)
    list[tuple[str, str]],  # unresolved: (name, error) of failed triggers not in fallback
    list[str],  # fallen: names of the triggers in fallback
    dict[str, float | None],  # variables: formula variable -> the trigger's summed value
    list[TriggerDetail | PendingDetail],  # details, one per trigger
    list[tuple[int, int]],  # failures: (index, consecutive failures) of failed triggers
]
"""What :meth:`TriggerReader.read` returns (a plain tuple: cheaper than an object)."""


class TriggerReader:
    """The triggers of one spec, ready to read a poll's observations.

    :param rows: ``(index, name, formula variable)`` per trigger, in spec order.
    :param tolerance: the HPA tolerance for ``Value`` metrics.
    :param fallback: the spec's fallback (decides when a failing trigger is in fallback).
    :param composite: a formula or combiner combines the triggers: their values are
        collected as variables instead of proposing replicas themselves.
    :param resource: indexes of the resource (cpu/memory) triggers, whose value is the
        replica count the HPA's resource calculator proposes (docs/scalers/cpu-memory.md).
    """

    __slots__ = (
        "_band_high",
        "_band_low",
        "_composite",
        "_fallback",
        "_resource",
        "_rows",
        "_tolerance",
    )

    def __init__(
        self,
        rows: tuple[tuple[int, str, str | None], ...],
        tolerance: Tolerance,
        fallback: Fallback | None,
        *,
        composite: bool,
        resource: frozenset[int] = frozenset(),
    ) -> None:
        self._rows = rows
        self._resource = resource
        self._tolerance = tolerance
        self._fallback = fallback
        self._composite = composite
        # the tolerance band for AverageValue ratios (Tolerance.within, precomputed)
        self._band_low = 1.0 - tolerance.scale_down
        self._band_high = 1.0 + tolerance.scale_up

    def read(
        self,
        observations: Iterable[TriggerObservation],
        state: ScalingState,
        current: int,
        ready_replicas: int | None,
    ) -> Reading:
        """Read one poll's observations against the previous state's failure counts."""
        by_index: dict[int, TriggerObservation] = {}
        for item in observations:  # (a plain loop: cheaper than a comprehension here)
            by_index[item.trigger_index] = item
        fallback = self._fallback
        tolerance = self._tolerance
        details: list[TriggerDetail | PendingDetail] = []
        failures: list[tuple[int, int]] = []
        raw: int | None = None
        raw_trigger: str | None = None
        any_active = False
        unresolved: list[tuple[str, str]] = []
        fallen: list[str] = []
        variables: dict[str, float | None] = {}
        composite = self._composite
        band_low = self._band_low
        band_high = self._band_high
        resource = self._resource
        for index, name, variable in self._rows:
            obs = by_index.get(index)
            if obs is None:
                error: str | None = "no observation for this trigger"
            elif obs.report is None:
                error = "no observation for this trigger" if obs.error is None else str(obs.error)
            else:
                report = obs.report
                error = None
                # the details are recorded as plain tuples; Decision builds the
                # TriggerDetail/MetricDetail objects only if they are read
                metrics: tuple[tuple[str, float, float, MetricType, int], ...] = ()
                proposal: int | None = None
                total = 0.0
                if obs.specs:
                    reported = report.values
                    for ms in obs.specs:
                        metric = ms.name
                        for item_value in reported:  # ScalerReport.value_of, inlined
                            if item_value.name == metric:
                                value = item_value.value
                                break
                        else:
                            error = f"metric {metric!r} missing from the scaler's report"
                            break
                        if value != value:  # NaN: no replica count (docs/errors.md, Limits)
                            error = f"metric {metric!r} is not a number (NaN)"
                            break
                        total += value
                        metric_target = ms.target
                        metric_type = ms.metric_type
                        if index in resource:  # the value is the proposal
                            n = min(REPLICA_CAP, max(0, int(value)))
                        elif metric_type is _VALUE:
                            n = value_replicas(
                                value, metric_target, current, ready_replicas, tolerance
                            )
                        elif not (
                            -_MILLI_SAFE < value < _MILLI_SAFE and metric_target < _MILLI_SAFE
                        ):  # huge numbers: the saturating maths of hpa.py
                            n = average_value_replicas(value, metric_target, current, tolerance)
                        else:  # average_value_replicas(), inlined (the common metric type)
                            usage = round(value * 1000)
                            milli_target = round(metric_target * 1000)
                            if milli_target <= 0:
                                n = REPLICA_CAP if usage > 0 else 0
                            elif (
                                current > 0
                                and band_low <= usage / (milli_target * current) <= band_high
                            ):
                                n = current
                            else:
                                n = -(-usage // milli_target)
                                if n > REPLICA_CAP:
                                    n = REPLICA_CAP
                        metrics += ((metric, value, metric_target, metric_type, n),)
                        if proposal is None or n > proposal:
                            proposal = n
                else:
                    total = sum(v.value for v in report.values)
                if error is None:
                    active = report.is_active
                    if not composite or index in resource:  # cpu/memory stay beside a formula
                        any_active = any_active or active
                        if proposal is not None and (raw is None or proposal > raw):
                            raw = proposal
                            raw_trigger = name
                    elif variable is not None:
                        variables[variable] = total
                    details.append((index, name, active, proposal, metrics))
                    continue
            # the trigger failed (or reported no value for one of its metrics)
            assert error is not None
            count = state.failure_count(index) + 1
            failures.append((index, count))
            in_fallback = fallback is not None and count > fallback.failure_threshold
            if in_fallback:
                fallen.append(name)
                if variable is not None:
                    variables[variable] = None
            else:
                unresolved.append((name, error))
            details.append(
                TriggerDetail(
                    index=index,
                    name=name,
                    status=TriggerStatus.FALLBACK if in_fallback else TriggerStatus.ERROR,
                    is_active=in_fallback,
                    replicas=None,
                    error=error,
                    failures=count,
                )
            )
        return raw, raw_trigger, any_active, unresolved, fallen, variables, details, failures
