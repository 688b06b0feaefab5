"""The engine's fast paths give what the plain definitions give.

decide() records trigger details as tuples and lets :class:`Decision` build them on
first read; it computes ``AverageValue`` replicas inline; the rate limits share one
pass over the scale events per policy period. Each is checked here against the plain
definition it replaces.
"""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventscale.engine import (
    Decision,
    MetricDetail,
    ResolvedRules,
    Rule,
    ScalingState,
    Tolerance,
    TriggerDetail,
    TriggerObservation,
    TriggerStatus,
    average_value_replicas,
    decide,
    resolve_behavior,
)
from eventscale.engine.behavior import (
    behavior_step,
    legacy_step,
    normalize_legacy,
    normalize_with_behavior,
    scale_down_limit,
    scale_up_limit,
)
from eventscale.metrics import MetricSpec, MetricType, MetricValue, ScalerReport
from eventscale.spec import (
    Advanced,
    Behavior,
    HPAConfig,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

from .helpers import fail, make_spec, ok


def _two_metric(index: int, first: float, second: float) -> TriggerObservation:
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


def _engine_decision() -> Decision:
    spec = make_spec(3, min_replica_count=1, max_replica_count=50)
    _, d = decide(
        spec,
        ScalingState(created_at=0.0),
        [ok(0, 7.0, target=2.0), fail(1), _two_metric(2, 5.0, 4.0)],
        3,
        10.0,
    )
    return d


def _expected_details() -> tuple[TriggerDetail, ...]:
    return (
        TriggerDetail(
            index=0,
            name="t0",
            status=TriggerStatus.OK,
            is_active=True,
            replicas=4,
            metrics=(
                MetricDetail(
                    name="s0-m",
                    value=7.0,
                    target=2.0,
                    metric_type=MetricType.AVERAGE_VALUE,
                    replicas=4,
                ),
            ),
        ),
        TriggerDetail(
            index=1,
            name="t1",
            status=TriggerStatus.ERROR,
            is_active=False,
            replicas=None,
            error="[t1] connection refused",
            failures=1,
        ),
        TriggerDetail(
            index=2,
            name="t2",
            status=TriggerStatus.OK,
            is_active=True,
            replicas=4,
            metrics=(
                MetricDetail(
                    name="s2-a",
                    value=5.0,
                    target=2.0,
                    metric_type=MetricType.AVERAGE_VALUE,
                    replicas=3,
                ),
                MetricDetail(
                    name="s2-b", value=4.0, target=3.0, metric_type=MetricType.VALUE, replicas=4
                ),
            ),
        ),
    )


# ----------------------------------------------------------------------- lazy details


def test_details_are_built_on_first_read_and_kept() -> None:
    d = _engine_decision()
    assert "triggers" not in vars(d)  # nothing built by the decision step
    details = d.triggers
    assert details == _expected_details()
    assert d.triggers is details  # built once
    assert "triggers" in vars(d)


def test_pending_decision_equals_the_eager_one() -> None:
    d = _engine_decision()
    eager = Decision(
        replicas=d.replicas,
        current_replicas=d.current_replicas,
        is_active=d.is_active,
        rule=d.rule,
        reason=d.reason,
        trigger=d.trigger,
        raw_replicas=d.raw_replicas,
        triggers=_expected_details(),
        fallback_active=d.fallback_active,
        paused=d.paused,
    )
    fresh = _engine_decision()
    assert fresh == eager
    assert eager == _engine_decision()
    assert hash(_engine_decision()) == hash(eager)
    assert repr(_engine_decision()) == repr(eager)
    assert attrs.asdict(_engine_decision()) == attrs.asdict(eager)
    assert attrs.evolve(_engine_decision()) == eager
    assert attrs.evolve(_engine_decision(), replicas=9).triggers == eager.triggers


@pytest.mark.parametrize("read_first", [False, True], ids=["pending", "built"])
def test_pending_decision_copies_and_pickles(read_first: bool) -> None:
    d = _engine_decision()
    if read_first:
        _ = d.triggers
    for clone in (copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        assert clone == d
        assert clone.triggers == _expected_details()


def test_pending_constructor_sets_every_field_but_triggers() -> None:
    d = _engine_decision()
    names = {f.name for f in attrs.fields(Decision)}
    assert set(vars(d)) == (names - {"triggers"}) | {"_pending_triggers"}
    _ = d.triggers
    assert set(vars(d)) == names


def test_missing_attribute_is_still_an_attribute_error() -> None:
    d = _engine_decision()
    missing = "nope"
    assert not hasattr(d, missing)
    with pytest.raises(AttributeError, match="nope"):
        getattr(d, missing)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        d.replicas = 3  # type: ignore[misc]


def test_paused_decision_has_built_details() -> None:
    spec = make_spec(annotations={"autoscaling.keda.sh/paused": "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 5)], 2, 0.0)
    assert d.rule is Rule.PAUSED
    assert vars(d)["triggers"] == ()


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


# ----------------------------------------------------------------------- rate limits

policy_lists = st.lists(
    st.builds(
        ScalingPolicy,
        type=st.sampled_from(PolicyType),
        value=st.integers(1, 300),
        period_seconds=st.sampled_from([15, 30, 60, 61, 120]),
    ),
    max_size=4,
).map(tuple)

event_lists = st.lists(
    st.tuples(st.floats(-200, 0, allow_nan=False), st.integers(-20, 20).filter(bool)),
    max_size=6,
).map(tuple)


def _reference_limit(
    current: int, rules: ResolvedRules, events: tuple[tuple[float, int], ...], up: bool
) -> int:
    """The rate limit straight from its definition: one sum per policy."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    if not rules.policies:
        return 2**31 - 1 if up else 0
    proposals = []
    for policy in rules.policies:
        recent = [c for t, c in events if t > -policy.period_seconds]
        start = current - sum(c for c in recent if c > 0) + sum(-c for c in recent if c < 0)
        if policy.type is PolicyType.PODS:
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(-(-(start * (100 + policy.value)) // 100))
        else:
            scaled = start * (100 - policy.value)
            proposals.append(scaled // 100 if scaled >= 0 else -((-scaled) // 100))
    if up:
        best = min(proposals) if rules.select_policy is SelectPolicy.MIN else max(proposals)
        return max(best, current)
    best = max(proposals) if rules.select_policy is SelectPolicy.MIN else min(proposals)
    return min(best, current)


@settings(max_examples=300, deadline=None)
@given(
    policies=policy_lists,
    select=st.sampled_from(SelectPolicy),
    events=event_lists,
    current=st.integers(0, 60),
)
def test_rate_limits_match_their_definition(
    policies: tuple[ScalingPolicy, ...],
    select: SelectPolicy,
    events: tuple[tuple[float, int], ...],
    current: int,
) -> None:
    rules = ScalingRules(policies=policies, select_policy=select)
    up, down = resolve_behavior(Behavior(scale_up=rules, scale_down=rules))
    assert scale_up_limit(current, up, events, 0.0) == _reference_limit(current, up, events, True)
    assert scale_down_limit(current, down, events, 0.0) == _reference_limit(
        current, down, events, False
    )


def test_resolved_rules_steps_are_derived() -> None:
    up, _ = resolve_behavior(
        Behavior(
            scale_up=ScalingRules(
                policies=(
                    ScalingPolicy(type=PolicyType.PERCENT, value=50, period_seconds=60),
                    ScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=15),
                )
            )
        )
    )
    assert up.steps == ((15, True, 4), (60, False, 50))
    changed = attrs.evolve(up, policies=up.policies[:1])
    assert changed.steps == ((60, False, 50),)
    assert attrs.evolve(up) == up  # steps take no part in equality


@settings(max_examples=200, deadline=None)
@given(
    raw=st.integers(0, 60),
    current=st.integers(0, 60),
    bounds=st.tuples(st.integers(0, 10), st.integers(10, 80)),
    recs=st.lists(st.tuples(st.floats(-400, 0), st.integers(0, 60)), max_size=6).map(tuple),
    events=event_lists,
)
def test_tuple_normalizers_match_the_objects(
    raw: int,
    current: int,
    bounds: tuple[int, int],
    recs: tuple[tuple[float, int], ...],
    events: tuple[tuple[float, int], ...],
) -> None:
    lo, hi = bounds
    up, down = resolve_behavior(None)
    assert attrs.astuple(
        normalize_with_behavior(raw, current, lo, hi, up, down, recs, events, 0.0)
    ) == behavior_step(raw, current, lo, hi, up, down, recs, events, 0.0)
    assert attrs.astuple(normalize_legacy(raw, current, lo, hi, recs, 0.0)) == legacy_step(
        raw, current, lo, hi, recs, 0.0
    )


def test_value_metric_and_missing_metric_still_reported() -> None:
    spec = make_spec(2)
    broken = TriggerObservation.success(
        1,
        [MetricSpec(name="s1-m", target=1.0)],
        ScalerReport.single("other", 3.0, is_active=True),
        name="t1",
    )
    _, d = decide(spec, ScalingState(created_at=0.0), [_two_metric(0, 5.0, 4.0), broken], 3, 0.0)
    assert d.triggers[0].replicas == 4
    assert d.triggers[1].status is TriggerStatus.ERROR
    assert d.triggers[1].error == "metric 's1-m' missing from the scaler's report"
    assert (d.replicas, d.rule, d.raw_replicas) == (4, Rule.METRICS, 4)
