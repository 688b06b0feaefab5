"""The engine's acceptance vectors for ScaledObjects, one parametrized test each.

H: replicas from a metric (the HPA formula), N: normalization with and without
``behavior``, K: KEDA's lifecycle (activation, cooldown, idle, pause, fallback,
scalingModifiers); docs/engine.md describes each rule, after KEDA's pkg/scaling and the
HPA's replica_calculator_test.go. The ScaledJob vectors (J) are in test_jobs.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from eventscale.engine import (
    EngineOptions,
    Rule,
    ScalingState,
    Tolerance,
    average_value_replicas,
    decide,
    pods_average_replicas,
    value_replicas,
)
from eventscale.engine.behavior import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Limit,
    ResolvedRules,
    normalize_legacy,
    normalize_with_behavior,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from eventscale.spec import (
    ANNOTATION_FORCE_ACTIVATION,
    ANNOTATION_PAUSED_REPLICAS,
    ANNOTATION_PAUSED_SCALE_IN,
    Advanced,
    Behavior,
    Fallback,
    FallbackBehavior,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScalingModifiers,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    TriggerSpec,
)

from .helpers import fail, make_spec, ok

NOW = 10_000.0


def with_behavior(behavior: Behavior, **kwargs: Any) -> ScaledObjectSpec:
    kwargs.setdefault("min_replica_count", 1)
    return make_spec(
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior)), **kwargs
    )


# ----------------------------------------------------------------------- 6.1 HPA per metric


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        pytest.param(lambda: value_replicas(8.6, 14.334, 5, ready=5), 3, id="H1-value-scale-down"),
        pytest.param(lambda: average_value_replicas(8.6, 2.867, 5), 3, id="H2-avg-scale-down"),
        pytest.param(lambda: value_replicas(8.6, 8.888, 3), 3, id="H3-value-within-tolerance"),
        pytest.param(lambda: average_value_replicas(8.6, 2.9, 3), 3, id="H4-avg-within-tolerance"),
        pytest.param(lambda: average_value_replicas(8.6, 2.15, 3), 4, id="H5-avg-scale-up"),
        pytest.param(
            lambda: value_replicas(8.6, 4.4, 3, ready=1), 2, id="H6-value-ready-pods-only"
        ),
        pytest.param(lambda: value_replicas(8.6, 4.4, 1, ready=1), 2, id="H7-value-scale-up"),
        pytest.param(
            lambda: value_replicas(50, 10, 3, ready=1), 5, id="H8-object-value-ready-only"
        ),
        pytest.param(lambda: pods_average_replicas([20, 10, 30], 15), 4, id="H9-pods-avg-up"),
        pytest.param(lambda: pods_average_replicas([12] * 5, 20), 3, id="H10-pods-avg-down"),
        pytest.param(lambda: average_value_replicas(900, 100, 3), 9, id="H11-avg-ratio-3"),
    ],
)
def test_hpa_metric_vectors(got: object, expected: int) -> None:
    assert callable(got)
    assert got() == expected


def test_h11_through_decide() -> None:
    policy = (ScalingPolicy(type=PolicyType.PODS, value=100, period_seconds=15),)
    spec = with_behavior(Behavior(scale_up=ScalingRules(policies=policy)), max_replica_count=20)
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 900, target=100)], 3, NOW)
    assert d.replicas == 9
    assert d.raw_replicas == 9
    assert d.rule is Rule.METRICS


# ----------------------------------------------------------------------- 6.2 normalization


def up_rules(*policies: ScalingPolicy, select: SelectPolicy = SelectPolicy.MAX) -> ResolvedRules:
    return ResolvedRules(0.0, select, tuple(policies), 0.1)


def down_rules(
    *policies: ScalingPolicy, select: SelectPolicy = SelectPolicy.MAX, window: float = 0.0
) -> ResolvedRules:
    return ResolvedRules(window, select, tuple(policies), 0.1)


def pods(value: int, period: int) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PODS, value=value, period_seconds=period)


def pct(value: int, period: int) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PERCENT, value=value, period_seconds=period)


UP_EVENTS = ((NOW - 10, 1), (NOW - 50, 5), (NOW - 100, 9), (NOW - 500, 40))
DOWN_EVENTS_2_4_6 = ((NOW - 10, -2), (NOW - 50, -4), (NOW - 100, -6))
DOWN_EVENTS_10 = ((NOW - 10, -10), (NOW - 50, -10), (NOW - 100, -10))


@pytest.mark.parametrize(
    ("raw", "current", "lo", "hi", "expected", "limit"),
    [
        pytest.param(7, 5, 3, 8, 7, Limit.NONE, id="N1-within-range"),
        pytest.param(1, 3, 2, 8, 2, Limit.TOO_FEW, id="N2-too-few"),
        pytest.param(1000, 20, 1, 10, 10, Limit.TOO_MANY, id="N3-too-many"),
        pytest.param(1000, 3, 1, 2000, 6, Limit.SCALE_UP_LIMIT, id="N4-legacy-max-2x-4"),
    ],
)
def test_legacy_vectors(
    raw: int, current: int, lo: int, hi: int, expected: int, limit: Limit
) -> None:
    n = normalize_legacy(raw, current, lo, hi, (), NOW)
    assert (n.replicas, n.limit) == (expected, limit)


@pytest.mark.parametrize(
    ("raw", "current", "lo", "hi", "up", "down", "events", "expected"),
    [
        pytest.param(
            50, 10, 1, 1000, DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN, (), 20, id="N5-default-behavior"
        ),
        pytest.param(
            500,
            10,
            1,
            1000,
            up_rules(pods(100, 60), pct(100, 60)),
            DEFAULT_SCALE_DOWN,
            (),
            110,
            id="N6-pods-100-percent-100-max",
        ),
        pytest.param(
            500,
            10,
            1,
            1000,
            up_rules(pods(2, 60), pct(100, 60)),
            DEFAULT_SCALE_DOWN,
            (),
            20,
            id="N7-pods-2-percent-100-max",
        ),
        pytest.param(
            50, 10, 1, 1000, up_rules(pods(30, 60)), DEFAULT_SCALE_DOWN, (), 40, id="N8-pods-30"
        ),
        pytest.param(
            50, 10, 1, 1000, up_rules(pct(200, 60)), DEFAULT_SCALE_DOWN, (), 30, id="N9-percent-200"
        ),
        pytest.param(
            2,
            100,
            1,
            1000,
            DEFAULT_SCALE_UP,
            down_rules(pods(20, 60), pct(1, 60), window=300),
            (),
            80,
            id="N10-down-pods-20-max",
        ),
        pytest.param(
            2, 10, 1, 1000, DEFAULT_SCALE_UP, down_rules(pods(5, 60)), (), 5, id="N11-down-pods-5"
        ),
        pytest.param(
            5,
            10,
            1,
            1000,
            DEFAULT_SCALE_UP,
            down_rules(pct(50, 60)),
            (),
            5,
            id="N12-down-percent-50",
        ),
        pytest.param(
            500,
            100,
            1,
            1000,
            up_rules(pods(150, 120)),
            DEFAULT_SCALE_DOWN,
            UP_EVENTS,
            235,
            id="N13-pods-with-events",
        ),
        pytest.param(
            500,
            100,
            1,
            1000,
            up_rules(pct(200, 120)),
            DEFAULT_SCALE_DOWN,
            UP_EVENTS,
            255,
            id="N14-percent-with-events",
        ),
        pytest.param(
            500,
            100,
            1,
            1000,
            up_rules(pods(5, 120)),
            DEFAULT_SCALE_DOWN,
            UP_EVENTS,
            100,
            id="N15-limit-below-current",
        ),
        pytest.param(
            0,
            100,
            1,
            1000,
            DEFAULT_SCALE_UP,
            down_rules(pct(50, 120)),
            DOWN_EVENTS_2_4_6,
            56,
            id="N16-down-percent-with-events",
        ),
        pytest.param(
            0,
            100,
            1,
            1000,
            DEFAULT_SCALE_UP,
            down_rules(pct(10, 120)),
            DOWN_EVENTS_10,
            100,
            id="N17-down-limit-above-current",
        ),
    ],
)
def test_behavior_vectors(
    raw: int,
    current: int,
    lo: int,
    hi: int,
    up: ResolvedRules,
    down: ResolvedRules,
    events: tuple[tuple[float, int], ...],
    expected: int,
) -> None:
    n = normalize_with_behavior(raw, current, lo, hi, up, down, (), events, NOW)
    assert n.replicas == expected


def test_n18_scale_up_limit_select_min() -> None:
    assert (
        scale_up_limit(1, up_rules(pods(2, 60), pct(50, 60), select=SelectPolicy.MIN), (), NOW) == 2
    )


def test_n19_scale_down_limit_select_min() -> None:
    rules = down_rules(pods(2, 60), pct(50, 60), select=SelectPolicy.MIN)
    assert scale_down_limit(5, rules, (), NOW) == 3


HISTORY = ((NOW - 120, 4), (NOW - 60, 5))


def test_n20_scale_down_stabilization() -> None:
    assert stabilize(3, 100, HISTORY, NOW, 0, 180)[0] == 5


def test_n21_scale_up_stabilization() -> None:
    assert stabilize(7, 1, HISTORY, NOW, 300, 0)[0] == 4


def test_n22_legacy_stabilization() -> None:
    recs = ((NOW - 600, 10), (NOW - 60, 4), (NOW - 120, 5), (NOW - 540, 9))
    assert normalize_legacy(3, 10, 1, 100, recs, NOW).replicas == 5


def test_n23_failed_metric_blocks_scale_down() -> None:
    spec = make_spec(2, min_replica_count=1)
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 3), fail(1)], 5, NOW)
    assert d.replicas == 5
    assert d.rule is Rule.ERROR_BLOCKS_SCALE_DOWN
    assert d.trigger == "t1"


def test_n24_failed_metric_allows_scale_up() -> None:
    spec = make_spec(2, min_replica_count=1)
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 4), fail(1)], 3, NOW)
    assert d.replicas == 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(10.7, 11, id="N25-ratio-1.07-scales"),
        pytest.param(9.2, 10, id="N25-ratio-0.92-holds"),
    ],
)
def test_n25_per_direction_tolerance(value: float, expected: int) -> None:
    tol = Tolerance(scale_up=0.05, scale_down=0.1)
    assert not tol.within(1.07)
    assert tol.within(0.92)
    behavior = Behavior(
        scale_up=ScalingRules(tolerance=0.05),
        scale_down=ScalingRules(tolerance=0.1, stabilization_window_seconds=0),
    )
    spec = with_behavior(behavior)
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, value)], 10, NOW)
    assert d.replicas == expected


# ----------------------------------------------------------------------- 6.3 KEDA lifecycle


def test_k1_inactive_scales_to_zero() -> None:
    state, d = decide(make_spec(), ScalingState(), [ok(0, 0)], 10, NOW)
    assert (d.replicas, d.is_active, d.rule) == (0, False, Rule.SCALE_TO_ZERO)
    assert state.last_active is None


def test_k2_inactive_below_min_goes_to_min() -> None:
    _, d = decide(make_spec(min_replica_count=5), ScalingState(), [ok(0, 0)], 1, NOW)
    assert d.replicas == 5


def test_k3_active_from_zero() -> None:
    state, d = decide(make_spec(), ScalingState(), [ok(0, 1)], 0, NOW)
    assert (d.replicas, d.is_active, d.rule) == (1, True, Rule.SCALE_FROM_ZERO)
    assert state.last_active == NOW


def test_k3_eventscale_goes_straight_to_what_metrics_ask() -> None:
    # KEDA gives 1 and waits for the HPA; eventscale goes to the metrics' count within
    # the scale-up policy (the default allows +4 from zero; here +100).
    _, d = decide(make_spec(), ScalingState(), [ok(0, 30)], 0, NOW)
    assert d.replicas == 4
    spec = with_behavior(
        Behavior(scale_up=ScalingRules(policies=(pods(100, 15),))), min_replica_count=0
    )
    _, d = decide(spec, ScalingState(), [ok(0, 30)], 0, NOW)
    assert d.replicas == 30
    assert "metrics ask for 30" in d.reason


def test_k4_inactive_scales_to_idle() -> None:
    spec = make_spec(idle_replica_count=0, min_replica_count=5)
    _, d = decide(spec, ScalingState(), [ok(0, 0)], 10, NOW)
    assert d.replicas == 0


def test_k5_active_from_idle_to_min() -> None:
    spec = make_spec(idle_replica_count=0, min_replica_count=5)
    _, d = decide(spec, ScalingState(), [ok(0, 1)], 0, NOW)
    assert d.replicas == 5


def test_k6_paused_replicas() -> None:
    spec = make_spec(annotations={ANNOTATION_PAUSED_REPLICAS: "0"})
    _, d = decide(spec, ScalingState(), [ok(0, 100)], 2, NOW)
    assert (d.replicas, d.paused, d.rule) == (0, True, Rule.PAUSED_REPLICAS)


def test_k7_paused_scale_in() -> None:
    spec = make_spec(annotations={ANNOTATION_PAUSED_SCALE_IN: "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 0)], 10, NOW)
    assert (d.replicas, d.rule) == (10, Rule.PAUSED_SCALE_IN)


def test_k8_force_activation() -> None:
    spec = make_spec(annotations={ANNOTATION_FORCE_ACTIVATION: "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 0)], 0, NOW)
    assert (d.replicas, d.is_active) == (1, True)


@pytest.mark.parametrize(
    ("elapsed", "expected", "rule"),
    [
        pytest.param(299, 1, Rule.COOLDOWN, id="K9-cooldown-holds"),
        pytest.param(301, 0, Rule.SCALE_TO_ZERO, id="K10-cooldown-over"),
    ],
)
def test_k9_k10_cooldown(elapsed: float, expected: int, rule: Rule) -> None:
    t0 = 1000.0
    state = ScalingState(created_at=0.0, last_active=t0)
    _, d = decide(make_spec(cooldown_period=300), state, [ok(0, 0)], 1, t0 + elapsed)
    assert (d.replicas, d.is_active, d.rule) == (expected, False, rule)


@pytest.mark.parametrize(
    ("elapsed", "expected", "rule"),
    [
        pytest.param(100, 1, Rule.INITIAL_COOLDOWN, id="K11-initial-cooldown-holds"),
        pytest.param(121, 0, Rule.SCALE_TO_ZERO, id="K11-initial-cooldown-over"),
    ],
)
def test_k11_initial_cooldown(elapsed: float, expected: int, rule: Rule) -> None:
    t0 = 1000.0
    spec = make_spec(initial_cooldown_period=120)
    _, d = decide(spec, ScalingState(created_at=t0), [ok(0, 0)], 1, t0 + elapsed)
    assert (d.replicas, d.rule) == (expected, rule)


def test_k12_error_without_fallback_holds() -> None:
    state, d = decide(make_spec(), ScalingState(), [fail(0)], 3, NOW)
    assert (d.replicas, d.rule) == (3, Rule.HOLD_ON_ERROR)
    assert "connection refused" in d.reason
    assert state.failure_count(0) == 1


@pytest.mark.parametrize(
    ("behavior", "current", "expected"),
    [
        pytest.param(FallbackBehavior.STATIC, 2, 10, id="K13-static"),
        pytest.param(FallbackBehavior.CURRENT_REPLICAS, 6, 6, id="K14-current-replicas"),
        pytest.param(FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER, 4, 10, id="K15-if-higher"),
        pytest.param(FallbackBehavior.STATIC, 15, 10, id="K16-static-from-above"),
        pytest.param(FallbackBehavior.CURRENT_REPLICAS_IF_LOWER, 4, 4, id="if-lower"),
        pytest.param(FallbackBehavior.STATIC, 0, 10, id="static-from-zero"),
    ],
)
def test_k13_k16_fallback(behavior: FallbackBehavior, current: int, expected: int) -> None:
    spec = make_spec(fallback=Fallback(failure_threshold=3, replicas=10, behavior=behavior))
    state = ScalingState(created_at=0.0, failures=((0, 3),))
    new_state, d = decide(spec, state, [fail(0, target=10)], current, NOW)
    assert (d.replicas, d.rule, d.fallback_active) == (expected, Rule.FALLBACK, True)
    assert new_state.failure_count(0) == 4


def test_k17_fallback_not_before_threshold() -> None:
    spec = make_spec(fallback=Fallback(failure_threshold=3, replicas=10))
    new_state, d = decide(spec, ScalingState(created_at=0.0), [fail(0)], 2, NOW)
    assert (d.replicas, d.rule, d.fallback_active) == (2, Rule.HOLD_ON_ERROR, False)
    assert new_state.failure_count(0) == 1


def test_k18_scaling_modifiers_formula() -> None:
    spec = make_spec(
        triggers=(
            TriggerSpec(type="gauge", name="trigger_one"),
            TriggerSpec(type="gauge", name="trigger_two"),
        ),
        advanced=Advanced(
            scaling_modifiers=ScalingModifiers(formula="trigger_one + trigger_two", target=2)
        ),
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 2), ok(1, 5)], 1, NOW)
    assert (d.raw_replicas, d.replicas) == (4, 4)
    assert d.trigger == "composite"


def test_k19_cpu_memory_only_is_always_active() -> None:
    spec = make_spec(triggers=(TriggerSpec(type="cpu"), TriggerSpec(type="memory")))
    opts = EngineOptions(resource_trigger_types={"cpu", "memory"})
    _, d = decide(spec, ScalingState(), [ok(0, 0), ok(1, 0)], 0, NOW, options=opts)
    assert d.is_active
    assert d.replicas == 1


def test_k19_cpu_memory_only_is_always_active_by_default() -> None:
    spec = make_spec(triggers=(TriggerSpec(type="cpu"), TriggerSpec(type="memory")))
    _, d = decide(spec, ScalingState(), [ok(0, 0), ok(1, 0)], 0, NOW)
    assert d.is_active
    assert d.replicas == 1


def test_gauge_trigger_is_not_a_resource_metric() -> None:
    spec = make_spec(triggers=(TriggerSpec(type="cpu"), TriggerSpec(type="gauge")))
    _, d = decide(spec, ScalingState(), [ok(0, 0), ok(1, 0)], 0, NOW)
    assert not d.is_active
    assert d.replicas == 0
