"""The engine's own rules beyond the published vectors: 0..N ownership, idle, errors, pause."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from eventscale.engine import (
    Combiner,
    Decision,
    Engine,
    EngineOptions,
    Rule,
    ScalingState,
    TriggerObservation,
    TriggerStatus,
    decide,
)
from eventscale.errors import ConfigError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport
from eventscale.spec import (
    ANNOTATION_PAUSED,
    ANNOTATION_PAUSED_REPLICAS,
    ANNOTATION_PAUSED_SCALE_OUT,
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
)

from .helpers import fail, make_spec, ok


def run(
    spec: ScaledObjectSpec,
    steps: list[tuple[float, list[TriggerObservation]]],
    current: int,
    state: ScalingState | None = None,
    **kwargs: Any,
) -> list[Decision]:
    """Feed ``steps`` through decide(), applying each decision; return the decisions."""
    state = state if state is not None else ScalingState()
    out: list[Decision] = []
    for now, observations in steps:
        state, d = decide(spec, state, observations, current, now, **kwargs)
        out.append(d)
        current = d.replicas
    return out


def test_zero_to_n_to_zero_timeline() -> None:
    spec = make_spec(max_replica_count=10, cooldown_period=60)
    values = [0, 12, 12, 12, 0, 0, 0, 0, 0]
    steps = [(float(i * 30), [ok(0, v, target=2)]) for i, v in enumerate(values)]
    ds = run(spec, steps, 0)
    counts = [d.replicas for d in ds]
    # from zero the default scale-up policy allows +4, then +100 % per 15 s
    assert counts[:4] == [0, 4, 6, 6]
    # inactive at t=120: the scale-down window (300 s) holds 6 while the cooldown runs
    assert ds[4].replicas == 6
    assert not ds[4].is_active
    assert ds[4].rule is Rule.STABILIZED_DOWN
    # cooldown over at t=150 (60 s after the last activity at t=90): straight to zero
    assert counts[5] == 0
    assert ds[5].rule is Rule.SCALE_TO_ZERO
    assert counts[6:] == [0, 0, 0]
    assert ds[7].rule is Rule.IDLE


def test_reason_names_the_stabilization_window() -> None:
    spec = make_spec(min_replica_count=1)
    state = ScalingState(created_at=0.0, last_active=990.0, recommendations=((900.0, 7),))
    _, d = decide(spec, state, [ok(0, 2)], 7, 1000.0)
    assert d.replicas == 7
    assert d.rule is Rule.STABILIZED_DOWN
    assert d.reason == (
        "scale down held by stabilization window: highest recommendation in the last 300s is 7"
    )


def test_idle_between_zero_and_min_does_not_flap() -> None:
    # user-voice A4: idleReplicaCount 1 with minReplicaCount 3 must settle at 1.
    spec = make_spec(idle_replica_count=1, min_replica_count=3, cooldown_period=30)
    steps = [(float(t), [ok(0, 0)]) for t in range(0, 600, 15)]
    ds = run(spec, steps, 5, ScalingState(created_at=0.0, last_active=0.0))
    counts = [d.replicas for d in ds]
    first_idle = counts.index(1)
    assert all(c == 1 for c in counts[first_idle:])
    # and an activation goes back to at least min, then idles again after the cooldown
    more = run(spec, [(600.0, [ok(0, 1)]), (615.0, [ok(0, 0)]), (660.0, [ok(0, 0)])], 1)
    assert next(d.replicas for d in more) == 3
    assert more[-1].replicas == 1


def test_error_is_never_zero_even_after_cooldown() -> None:
    spec = make_spec(cooldown_period=0)
    ds = run(spec, [(float(t), [fail(0)]) for t in range(0, 1000, 100)], 4)
    assert all(d.replicas == 4 for d in ds)
    assert all(d.rule is Rule.HOLD_ON_ERROR for d in ds)
    assert ds[0].triggers[0].status is TriggerStatus.ERROR


def test_partial_error_while_inactive_holds() -> None:
    spec = make_spec(2, cooldown_period=0)
    ds = run(spec, [(100.0, [ok(0, 0), fail(1)])], 3, ScalingState(created_at=0.0, last_active=0.0))
    assert ds[0].replicas == 3
    assert ds[0].trigger == "t1"


def test_missing_observation_counts_as_error() -> None:
    spec = make_spec(2)
    state, d = decide(spec, ScalingState(), [ok(0, 0)], 2, 0.0)
    assert d.replicas == 2
    assert d.triggers[1].error == "no observation for this trigger"
    assert state.failure_count(1) == 1


def test_metric_missing_from_report_is_an_error() -> None:
    spec = make_spec()
    obs = TriggerObservation.success(
        0, [MetricSpec(name="s0-a", target=1)], ScalerReport.single("s0-b", 5, is_active=True)
    )
    _, d = decide(spec, ScalingState(), [obs], 2, 0.0)
    assert d.replicas == 2
    assert "missing" in (d.triggers[0].error or "")


def test_fallback_works_from_zero_and_recovers() -> None:
    spec = make_spec(fallback=Fallback(failure_threshold=1, replicas=3), cooldown_period=0)
    ds = run(spec, [(0.0, [fail(0)]), (15.0, [fail(0)]), (30.0, [ok(0, 0)])], 0)
    assert [d.replicas for d in ds[:2]] == [0, 3]
    assert ds[1].is_active
    assert ds[1].fallback_active
    # healthy again and inactive: the failure count resets, then cooldown (0) -> zero
    assert ds[2].replicas == 0
    assert ds[2].triggers[0].failures == 0


def test_fallback_counts_consecutive_failures_only() -> None:
    spec = make_spec(fallback=Fallback(failure_threshold=2, replicas=5))
    state = ScalingState()
    for now, obs in [(0.0, fail(0)), (1.0, fail(0)), (2.0, ok(0, 1)), (3.0, fail(0))]:
        state, d = decide(spec, state, [obs], 1, now)
    assert state.failure_count(0) == 1
    assert not d.fallback_active


def test_fallback_with_scaling_modifiers_behavior_routes_nil() -> None:
    spec = make_spec(
        2,
        fallback=Fallback(
            failure_threshold=0, replicas=9, behavior=FallbackBehavior.SCALING_MODIFIERS
        ),
        advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="t0 ?? t1 * 2", target=1)),
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [fail(0), ok(1, 3)], 1, 0.0)
    assert d.raw_replicas == 6
    _, d = decide(spec, ScalingState(created_at=0.0), [fail(0), fail(1)], 1, 0.0)
    assert (d.replicas, d.rule) == (9, Rule.FALLBACK)


def test_formula_error_with_unread_trigger_holds() -> None:
    spec = make_spec(
        2, advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="t0 + t1", target=1))
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 0), fail(1)], 4, 0.0)
    assert (d.replicas, d.rule) == (4, Rule.HOLD_ON_ERROR)


def test_formula_division_by_zero_holds() -> None:
    spec = make_spec(
        2, advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="t0 / t1", target=1))
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 5), ok(1, 0)], 4, 0.0)
    assert d.replicas == 4
    assert "division by zero" in d.reason


def test_modifiers_activation_target_is_strict() -> None:
    mods = ScalingModifiers(formula="t0", target=1, activation_target=5)
    spec = make_spec(advanced=Advanced(scaling_modifiers=mods))
    _, d = decide(spec, ScalingState(), [ok(0, 5, active=True)], 0, 0.0)
    assert not d.is_active
    assert d.replicas == 0
    _, d = decide(spec, ScalingState(), [ok(0, 5.5, active=False)], 0, 0.0)
    assert d.is_active
    assert d.replicas == 4


def test_plain_python_combiner() -> None:
    def window_gated(values: Mapping[str, float | None]) -> float | None:
        lag, window = values["t0"], values["t1"]
        if lag is None or window is None:
            return None
        return lag if window > 0 else 0.0

    opts = EngineOptions(combiner=Combiner(function=window_gated, target=10))
    spec = make_spec(2)
    _, d = decide(spec, ScalingState(), [ok(0, 100), ok(1, 1)], 0, 0.0, options=opts)
    assert d.is_active
    assert d.raw_replicas == 10
    _, d = decide(spec, ScalingState(), [ok(0, 100), ok(1, 0)], 0, 0.0, options=opts)
    assert not d.is_active
    assert d.replicas == 0


def test_combiner_exception_is_an_error_not_zero() -> None:
    def broken(values: Mapping[str, float | None]) -> float | None:
        raise RuntimeError("boom")

    opts = EngineOptions(combiner=Combiner(function=broken, target=1))
    _, d = decide(make_spec(), ScalingState(), [ok(0, 1)], 3, 0.0, options=opts)
    assert (d.replicas, d.rule) == (3, Rule.HOLD_ON_ERROR)
    assert "boom" in d.reason


def test_activation_strictly_greater_than_threshold() -> None:
    spec = make_spec()
    _, d = decide(spec, ScalingState(), [ok(0, 5, activation=5)], 0, 0.0)
    assert not d.is_active
    assert d.replicas == 0
    _, d = decide(spec, ScalingState(), [ok(0, 6, activation=5)], 0, 0.0)
    assert d.is_active
    assert d.replicas == 4


def test_inactive_but_metrics_ask_reason_shows_contradiction() -> None:
    _, d = decide(make_spec(), ScalingState(), [ok(0, 40, target=10, activation=50)], 3, 0.0)
    assert d.replicas == 0
    assert "asks for 4" in d.reason


def test_pause_precedence_paused_replicas_wins() -> None:
    spec = make_spec(annotations={ANNOTATION_PAUSED: "true", ANNOTATION_PAUSED_REPLICAS: "2"})
    _, d = decide(spec, ScalingState(), [ok(0, 100)], 7, 0.0)
    assert (d.replicas, d.rule, d.paused) == (2, Rule.PAUSED_REPLICAS, True)
    spec = make_spec(annotations={ANNOTATION_PAUSED: "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 100)], 7, 0.0)
    assert (d.replicas, d.rule) == (7, Rule.PAUSED)
    spec = make_spec(annotations={ANNOTATION_PAUSED: "false"})
    _, d = decide(spec, ScalingState(), [ok(0, 100)], 7, 0.0)
    assert not d.paused


def test_paused_scale_out_blocks_from_zero() -> None:
    spec = make_spec(annotations={ANNOTATION_PAUSED_SCALE_OUT: "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 100)], 0, 0.0)
    assert (d.replicas, d.rule) == (0, Rule.PAUSED_SCALE_OUT)


def test_bad_paused_replicas_is_config_error() -> None:
    spec = make_spec(annotations={ANNOTATION_PAUSED_REPLICAS: "many"})
    with pytest.raises(ConfigError, match="paused-replicas"):
        decide(spec, ScalingState(), [ok(0, 1)], 0, 0.0)


def test_bad_formula_is_config_error_at_load() -> None:
    spec = make_spec(
        2, advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="t0 + nope", target=1))
    )
    with pytest.raises(ConfigError) as info:
        Engine(spec)
    assert info.value.path == "spec.advanced.scalingModifiers.formula"
    assert "nope" in str(info.value)


def test_legacy_mode_uses_max_2x_4_and_no_memory() -> None:
    spec = make_spec(min_replica_count=1, max_replica_count=100)
    opts = EngineOptions(legacy_hpa=True)
    ds = run(spec, [(0.0, [ok(0, 100)]), (1.0, [ok(0, 100)]), (2.0, [ok(0, 100)])], 3, options=opts)
    assert [d.replicas for d in ds] == [6, 12, 24]
    assert ds[0].rule is Rule.SCALE_UP_LIMIT
    # default mode remembers the 15 s period: +100 % then wait
    ds = run(spec, [(0.0, [ok(0, 100)]), (1.0, [ok(0, 100)]), (16.0, [ok(0, 100)])], 3)
    assert [d.replicas for d in ds] == [7, 7, 14]


def test_behavior_disabled_direction() -> None:
    behavior = Behavior(scale_down=ScalingRules(select_policy=SelectPolicy.DISABLED))
    spec = make_spec(
        min_replica_count=1,
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior)),
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 1)], 8, 1000.0)
    assert d.replicas == 8


def test_scale_to_zero_from_floor_option() -> None:
    behavior = Behavior(
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            policies=(ScalingPolicy(type=PolicyType.PODS, value=2, period_seconds=15),),
        )
    )
    spec = make_spec(
        cooldown_period=0,
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior)),
    )
    opts = EngineOptions(scale_to_zero_from_floor=True)
    state = ScalingState(created_at=0.0, last_active=0.0)
    steps = [(float(t), [ok(0, 0)]) for t in range(20, 200, 20)]
    counts = [d.replicas for d in run(spec, steps, 6, state, options=opts)]
    assert counts[:4] == [4, 2, 1, 0]
    counts = [d.replicas for d in run(spec, steps, 6, state)]
    assert counts[0] == 0


def test_current_above_max_is_clamped_at_once() -> None:
    _, d = decide(make_spec(max_replica_count=5), ScalingState(created_at=0.0), [ok(0, 3)], 9, 0.0)
    assert (d.replicas, d.rule) == (5, Rule.MAX_REPLICAS)


def test_value_metric_uses_ready_replicas() -> None:
    spec = make_spec(min_replica_count=1)
    obs = ok(0, 8.6, target=4.4, metric_type=MetricType.VALUE)
    _, d = decide(spec, ScalingState(created_at=0.0), [obs], 3, 0.0, ready_replicas=1)
    assert d.raw_replicas == 2


def test_state_json_round_trip_and_resume() -> None:
    spec = make_spec(min_replica_count=1)
    state, _ = decide(spec, ScalingState(), [ok(0, 9)], 1, 0.0)
    state, _ = decide(spec, state, [fail(0)], 5, 15.0)
    text = state.to_json()
    assert json.loads(text)["version"] == 1
    again = ScalingState.from_json(text)
    assert again == state
    a = decide(spec, state, [ok(0, 1)], 5, 30.0)
    b = decide(spec, again, [ok(0, 1)], 5, 30.0)
    assert a == b


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param("[", "state", id="bad-json"),
        pytest.param("[]", "state", id="not-object"),
        pytest.param('{"version": 9}', "state.version", id="version"),
        pytest.param('{"created_at": "x"}', "state.created_at", id="created-at"),
        pytest.param('{"recommendations": [[1, 2, 3]]}', "state.recommendations[0]", id="recs"),
        pytest.param('{"failures": [[-1, 2]]}', "state.failures[0]", id="failures"),
    ],
)
def test_state_from_json_rejects_malformed(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScalingState.from_json(text)
    assert info.value.path == path


def test_history_is_bounded_by_distinct_values() -> None:
    spec = make_spec(min_replica_count=1)
    state = ScalingState()
    for t in range(0, 3000, 5):
        state, _ = decide(spec, state, [ok(0, 3)], 3, float(t))
    assert len(state.recommendations) == 1
    assert state.recommendations[0] == (2995.0, 3)
