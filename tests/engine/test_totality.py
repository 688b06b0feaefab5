"""The engine never raises on finite input: huge values saturate (docs/errors.md, Limits)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscale.engine import (
    ScalingState,
    Tolerance,
    average_value_replicas,
    decide,
    metric_replicas,
    value_replicas,
)
from eventscale.engine.hpa import MILLI_CAP, REPLICA_CAP, pods_average_replicas, to_milli_int
from eventscale.metrics import MetricType
from eventscale.spec import Advanced, ScalingModifiers

from .helpers import make_spec, ok

HUGE = [1e15, 1e16, 1e18, 1e300, 1e306, 1.7976931348623157e308, math.inf]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("metric_type", [MetricType.AVERAGE_VALUE, MetricType.VALUE])
def test_huge_values_ask_for_the_cap(value: float, metric_type: MetricType) -> None:
    spec = make_spec(max_replica_count=50)
    obs = [ok(0, value, metric_type=metric_type)]
    _, d = decide(spec, ScalingState(created_at=0.0), obs, 3, 0.0)
    assert d.raw_replicas == REPLICA_CAP
    assert 3 < d.replicas <= 50  # up, within the scale-up policy and the maximum
    assert metric_replicas(metric_type, value, 1.0, 3) == REPLICA_CAP


def test_saturating_milli_values() -> None:
    assert to_milli_int(1e306) == MILLI_CAP
    assert to_milli_int(-math.inf) == -MILLI_CAP
    assert to_milli_int(8.6) == 8600
    with pytest.raises(ValueError, match="NaN"):
        to_milli_int(math.nan)


def test_a_nan_value_is_a_trigger_error_not_a_crash() -> None:
    spec = make_spec(2)
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, math.nan), ok(1, 4.0)], 3, 0.0)
    assert "NaN" in (d.triggers[0].error or "")
    assert d.triggers[1].error is None


def test_a_formula_overflow_is_a_composite_error_not_a_crash() -> None:
    spec = make_spec(
        2, advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="(t0*1e300) % 7", target=1))
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 1e10), ok(1, 1.0)], 3, 0.0)
    assert d.replicas == 3  # held: an error is never 0
    assert any("not a finite number" in (t.error or "") for t in d.triggers) or (
        "not a finite number" in d.reason
    )


finite = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=-5, max_value=2**40)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(total=finite, target=finite, current=counts, ready=st.none() | counts, tol=finite)
def test_hpa_maths_is_total_on_finite_input(
    total: float, target: float, current: int, ready: int | None, tol: float
) -> None:
    tolerance = Tolerance(abs(tol), abs(tol))
    for n in (
        average_value_replicas(total, target, current, tolerance),
        value_replicas(total, target, current, ready, tolerance),
        pods_average_replicas([total, target], target, tolerance),
    ):
        assert isinstance(n, int)
        assert n <= max(REPLICA_CAP, current, 2)  # within tolerance: the current count


@settings(max_examples=200, deadline=None, derandomize=True)
@given(value=finite, target=st.floats(min_value=1e-3, max_value=1e300), current=counts)
def test_decide_is_total_on_finite_values(value: float, target: float, current: int) -> None:
    spec = make_spec()
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, value, target=target)], current, 0.0)
    assert 0 <= d.replicas <= 100


@pytest.mark.parametrize("result", [math.nan, math.inf, 10**400, "many", [1]])
def test_a_combiner_that_gives_no_number_is_a_composite_error(result: object) -> None:
    from eventscale.engine import Combiner
    from eventscale.engine._composite import Composite

    combiner = Combiner(function=lambda _: result, target=2.0)  # type: ignore[arg-type,return-value]
    composite = Composite(None, combiner, 2.0, 0.0, MetricType.AVERAGE_VALUE)
    unresolved: list[tuple[str, str]] = []
    got = composite.replicas({"a": 1.0}, unresolved, [], None, 3, None, Tolerance())
    assert got == (None, False, None)
    assert unresolved[0][0] == "composite"
    assert "combiner gave" in unresolved[0][1]
