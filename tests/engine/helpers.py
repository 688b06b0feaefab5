"""Small builders shared by the engine tests."""

from __future__ import annotations

from typing import Any

from eventscale.engine import TriggerObservation
from eventscale.errors import ScalerError
from eventscale.metrics import MetricSpec, MetricType, MetricValue, ScalerReport
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec


def make_spec(n_triggers: int = 1, **kwargs: Any) -> ScaledObjectSpec:
    """A ScaledObject with ``n_triggers`` redis triggers named ``t0``, ``t1``, ..."""
    triggers = kwargs.pop(
        "triggers", tuple(TriggerSpec(type="redis", name=f"t{i}") for i in range(n_triggers))
    )
    return ScaledObjectSpec(
        name="obj", scale_target_ref=ScaleTargetRef(name="work"), triggers=triggers, **kwargs
    )


def ok(
    index: int,
    value: float,
    *,
    target: float = 1.0,
    active: bool | None = None,
    metric_type: MetricType = MetricType.AVERAGE_VALUE,
    activation: float = 0.0,
) -> TriggerObservation:
    """A successful poll of trigger ``index``; active defaults to ``value > activation``."""
    name = f"s{index}-m"
    spec = MetricSpec(
        name=name, target=target, metric_type=metric_type, activation_target=activation
    )
    is_active = value > activation if active is None else active
    return TriggerObservation.success(
        index, [spec], ScalerReport.single(name, value, is_active=is_active), name=f"t{index}"
    )


def fail(
    index: int, message: str = "connection refused", *, target: float = 1.0
) -> TriggerObservation:
    """A failed poll of trigger ``index``."""
    spec = MetricSpec(name=f"s{index}-m", target=target)
    return TriggerObservation.failure(index, [spec], ScalerError(message, trigger=f"t{index}"))


def two_metric(index: int, first: float, second: float) -> TriggerObservation:
    """A successful poll with two metrics: ``AverageValue`` target 2 and ``Value`` target 3."""
    specs = [
        MetricSpec(name=f"s{index}-a", target=2.0),
        MetricSpec(name=f"s{index}-b", target=3.0, metric_type=MetricType.VALUE),
    ]
    report = ScalerReport(
        values=[
            MetricValue(name=f"s{index}-a", value=first),
            MetricValue(name=f"s{index}-b", value=second),
        ],
        is_active=True,
    )
    return TriggerObservation.success(index, specs, report, name=f"t{index}")
