"""Reading the triggers: the inline ``AverageValue`` arithmetic and failed metrics.

The reader computes ``AverageValue`` replicas inline instead of calling
:func:`average_value_replicas`; a property test compares the two.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventscale.engine import (
    Rule,
    ScalingState,
    Tolerance,
    TriggerObservation,
    TriggerStatus,
    average_value_replicas,
    decide,
)
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.spec import (
    Advanced,
    Behavior,
    HPAConfig,
    ScalingRules,
)

from .helpers import make_spec, ok, two_metric

# ----------------------------------------------------------------------- AverageValue inline


@settings(max_examples=300, deadline=None)
@example(value=9.0, target=1.0, current=10, tolerance=0.1)  # ratio exactly 1 - tolerance
@example(value=11.0, target=1.0, current=10, tolerance=0.1)  # ratio exactly 1 + tolerance
@example(value=4.5, target=0.5, current=10, tolerance=0.1)
@example(value=7.5, target=1.0, current=10, tolerance=0.25)
@example(value=5.0, target=0.0, current=3, tolerance=0.1)  # target 0: the cap
@given(
    value=st.floats(0, 10_000, allow_nan=False) | st.sampled_from([0.0, 8.6, 9.0, 11.0, 4.5]),
    target=st.sampled_from([0.0, 0.5, 1.0, 2.15, 2.867, 3.0, 10.0]),
    current=st.integers(0, 40),
    tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
)
def test_inline_average_value_matches_the_hpa_function(
    value: float, target: float, current: int, tolerance: float
) -> None:
    behavior = Behavior(
        scale_up=ScalingRules(tolerance=tolerance), scale_down=ScalingRules(tolerance=tolerance)
    )
    spec = make_spec(
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior))
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, value, target=target)], current, 0.0)
    expected = average_value_replicas(value, target, current, Tolerance(tolerance, tolerance))
    assert d.raw_replicas == expected
    assert d.triggers[0].metrics[0].replicas == expected


def test_value_metric_and_missing_metric_still_reported() -> None:
    spec = make_spec(2)
    broken = TriggerObservation.success(
        1,
        [MetricSpec(name="s1-m", target=1.0)],
        ScalerReport.single("other", 3.0, is_active=True),
        name="t1",
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [two_metric(0, 5.0, 4.0), broken], 3, 0.0)
    assert d.triggers[0].replicas == 4
    assert d.triggers[1].status is TriggerStatus.ERROR
    assert d.triggers[1].error == "metric 's1-m' missing from the scaler's report"
    assert (d.replicas, d.rule, d.raw_replicas) == (4, Rule.METRICS, 4)
