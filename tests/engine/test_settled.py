"""Engine.settled: a decision that is a fixed point stays one, whatever the time."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from eventscale.engine import Engine, Rule, ScalingState, TriggerObservation
from eventscale.spec import ScaledObjectSpec

from .helpers import make_spec, ok
from .test_properties import observations, specs


def idle_observations(n: int, value: float = 0.0) -> list[TriggerObservation]:
    return [ok(i, value, activation=1.0) for i in range(n)]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), spec=specs())
def test_a_settled_decision_repeats_at_any_later_time(
    data: st.DataObject, spec: ScaledObjectSpec
) -> None:
    engine = Engine(spec)
    low = spec.idle_replica_count if spec.idle_replica_count is not None else 0
    # biased towards resting objects, so that many examples settle
    current = data.draw(
        st.sampled_from([0, low, spec.min_replica_count]) | st.integers(0, 40), label="current"
    )
    obs = data.draw(
        st.just(idle_observations(len(spec.triggers))) | observations(spec), label="obs"
    )
    now = data.draw(st.floats(0, 10_000, allow_nan=False), label="now")
    last = data.draw(st.none() | st.floats(0, now, allow_nan=False), label="last_active")
    recs = data.draw(
        st.lists(st.tuples(st.floats(max(0, now - 900), now), st.integers(0, 40)), max_size=3),
        label="recs",
    )
    fresh = data.draw(st.booleans(), label="fresh")
    state = (
        ScalingState(last_active=last)
        if fresh
        else ScalingState(created_at=0.0, last_active=last, recommendations=tuple(recs))
    )
    # two steps: the first may drop history or stamp a fresh state; either may settle
    first, first_decision = engine.decide(state, obs, current, now)
    later = now + data.draw(st.floats(0, 1_000), label="dt")
    after, decision = engine.decide(first, obs, current, later)
    dts = data.draw(st.lists(st.floats(0, 10**7), min_size=1, max_size=4), label="dts")
    for before, (end, made, at) in (
        (state, (first, first_decision, now)),
        (first, (after, decision, later)),
    ):
        if not engine.settled(before, end, made):
            event("not settled")
            continue
        event("settled from a fresh state" if before.created_at is None else "settled")
        assert made.rule is Rule.IDLE
        for dt in dts:
            assert engine.decide(end, obs, current, at + dt) == (end, made)


def test_an_idle_object_at_zero_settles_with_its_first_decision() -> None:
    engine = Engine(make_spec(1, min_replica_count=0, cooldown_period=60))
    obs = idle_observations(1)
    first, decision = engine.decide(ScalingState.new(), obs, 0, 100.0)
    assert first.created_at == 100.0
    assert engine.settled(ScalingState.new(), first, decision)  # only created_at was set
    after, decision = engine.decide(first, obs, 0, 130.0)
    assert after == first
    assert engine.settled(first, after, decision)
    assert after.recommendations == ()  # the HPA records nothing at zero
    # a fresh state that already has history is not a fixed point of its first decision
    with_history = ScalingState(last_active=50.0)
    first, decision = engine.decide(with_history, obs, 0, 100.0)
    assert engine.settled(with_history, first, decision)  # (last_active is kept as is)
    assert not engine.settled(ScalingState(), first, decision)  # not what decide() got


def test_history_that_can_still_expire_is_not_settled() -> None:
    # at its minimum of 2 the object records recommendations: its state keeps moving
    engine = Engine(make_spec(1, min_replica_count=2, cooldown_period=60))
    obs = idle_observations(1)
    state, _ = engine.decide(ScalingState.new(), obs, 2, 100.0)
    after, decision = engine.decide(state, obs, 2, 130.0)
    assert decision.rule is Rule.IDLE
    assert after.recommendations
    assert not engine.settled(state, after, decision)


def test_an_active_or_failing_object_is_not_settled() -> None:
    from .helpers import fail

    engine = Engine(make_spec(1, min_replica_count=0, cooldown_period=0))
    for obs, current in (([ok(0, 5.0)], 5), ([fail(0)], 0)):
        state, _ = engine.decide(ScalingState(created_at=0.0), obs, current, 100.0)
        after, decision = engine.decide(state, obs, current, 130.0)
        assert not engine.settled(state, after, decision), decision.rule
