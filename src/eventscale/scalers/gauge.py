"""The ``gauge`` trigger: scale on a number your own process publishes.

A process keeps named gauges in a :class:`GaugeRegistry` (the module-level
:data:`gauges` by default): a queue length it tracks itself, in-flight requests, a
backlog computed from a database. The ``gauge`` trigger reads one gauge::

    triggers:
      - type: gauge
        metadata:
          name: pending-jobs      # the gauge
          target: "10"            # per replica (AverageValue) or in total (Value)
          activationTarget: "0"   # active when the gauge is greater

A gauge that was never set (or was cleared) is an error, never a value of 0.

Earlier releases called this trigger ``memory``; ``memory`` is now KEDA's pod-memory
trigger (:mod:`eventscale.scalers.resource`), and the old form (a ``name`` and no
``value``) is rejected with a message that names ``gauge``. :class:`MemoryScaler` is
the old name of :class:`GaugeScaler`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Final

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext

__all__ = ("GaugeRegistry", "GaugeScaler", "MemoryScaler", "gauges", "set_gauge")


class GaugeRegistry:
    """Named float gauges, safe to set from any thread and read from the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}

    def set(self, name: str, value: float) -> None:
        """Set gauge ``name`` to ``value`` (a finite number)."""
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"gauge {name!r}: value must be finite, got {value!r}")
        with self._lock:
            self._values[name] = number

    def add(self, name: str, delta: float) -> float:
        """Add ``delta`` to gauge ``name`` (an unset gauge counts as 0); return the new value."""
        with self._lock:
            value = self._values.get(name, 0.0) + float(delta)
            if math.isnan(value) or math.isinf(value):
                raise ValueError(f"gauge {name!r}: value must be finite, got {value!r}")
            self._values[name] = value
            return value

    def get(self, name: str) -> float | None:
        """The value of gauge ``name``, or ``None`` when it is not set."""
        with self._lock:
            return self._values.get(name)

    def clear(self, name: str) -> None:
        """Unset gauge ``name`` (reading it is an error again)."""
        with self._lock:
            self._values.pop(name, None)

    def names(self) -> list[str]:
        """Names of the gauges that are set, sorted."""
        with self._lock:
            return sorted(self._values)


gauges: Final = GaugeRegistry()
"""The process-wide registry the ``gauge`` trigger reads by default."""


def set_gauge(name: str, value: float) -> None:
    """Set gauge ``name`` in the process-wide registry :data:`gauges`."""
    gauges.set(name, value)


class GaugeScaler(ScalerBase):
    """Reads one gauge of a :class:`GaugeRegistry`.

    :param gauge: the gauge name (metadata ``name``).
    :param target: the value per replica (``AverageValue``) or for the whole target
        (``Value``); metadata ``target`` (alias ``value``), must be > 0.
    :param activation_target: the trigger is active when the gauge is greater
        (metadata ``activationTarget``, alias ``activationValue``; default 0).
    :param index: the trigger's position, used in the metric name ``s{index}-gauge-{gauge}``.
    """

    def __init__(
        self,
        gauge: str,
        *,
        target: float,
        activation_target: float = 0.0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        index: int = 0,
        registry: GaugeRegistry | None = None,
        trigger_name: str | None = None,
    ) -> None:
        if not gauge:
            raise ConfigError("the gauge name must not be empty", path="name")
        if not target > 0:
            raise ConfigError(f"target must be greater than 0, got {target!r}", path="target")
        self.gauge = gauge
        self.registry = registry if registry is not None else gauges
        self.trigger = trigger_name or f"gauge[{index}]"
        self._last: ScalerReport | None = None
        self.spec = MetricSpec(
            name=metric_name(index, normalize_metric_name(f"gauge-{gauge}")),
            target=target,
            metric_type=metric_type,
            activation_target=activation_target,
        )

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> GaugeScaler:
        """Build the scaler from a ``gauge`` trigger's metadata."""
        p = Params(ctx)
        name = p.string("name", required=True)
        target = p.number("target", aliases=("value",), required=True)
        activation = p.number("activationTarget", aliases=("activationValue",), default=0.0)
        if target is not None and not target > 0:
            p.fail('"target" must be greater than 0', "target")
        p.finish()
        assert name is not None
        assert target is not None
        return cls(
            name,
            target=target,
            activation_target=activation,
            metric_type=ctx.metric_type,
            index=ctx.index,
            trigger_name=ctx.identity,
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric, ``s{index}-gauge-{gauge}``."""
        return (self.spec,)

    async def get_metrics(self) -> ScalerReport:
        """Read the gauge; :class:`ScalerError` when it is not set.

        A dictionary read: it does not yield to the event loop (no I/O to wait for). While
        the value stays the same the same (immutable) report is returned.
        """
        value = self.registry.get(self.gauge)
        if value is None:
            raise ScalerError(
                f"gauge {self.gauge!r} has not been set", trigger=self.trigger, transient=True
            )
        last = self._last
        if last is not None and last.values[0].value == value:  # (NaN never equals itself)
            return last
        report = self._last = ScalerReport.single(
            self.spec.name, value, is_active=value > self.spec.activation_target
        )
        return report


MemoryScaler = GaugeScaler
"""The old name of :class:`GaugeScaler` (kept for one release)."""
