"""A ScaledObject keeps its engine state between polls as bytes, which the cyclic
collector never tracks; reading it back gives the same state. While the engine's
decision is a fixed point (``Engine.settled``) a poll with the same inputs skips the
engine, and decides exactly what the engine would have."""

from __future__ import annotations

import gc

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscale.engine import Engine, ScalingState
from eventscale.runtime.scaled_object import ScaledObject, _compact, _expand
from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.targets.memory import MemoryTarget
from eventscale.testing import ManualClock

times = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
counts = st.integers(min_value=-(2**40), max_value=2**40)
pairs = st.lists(st.tuples(times, counts), max_size=30).map(tuple)
states = st.builds(
    ScalingState,
    created_at=st.none() | times,
    last_active=st.none() | times,
    recommendations=pairs,
    scale_events=pairs,
    failures=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 2**31)), max_size=5).map(tuple),
)


@given(states)
def test_the_compact_form_round_trips(state: ScalingState) -> None:
    flat = _compact(state)
    assert not gc.is_tracked(flat)
    back = _expand(flat)
    assert back == state
    assert all(type(r) is int for _, r in back.recommendations + back.scale_events)


def test_a_state_given_with_lists_reads_back_as_given_and_packs_as_tuples() -> None:
    given_state = ScalingState(1.0, None, [[2.0, 3]], [], [])  # type: ignore[arg-type]
    so = ScaledObject(
        _spec(), target=MemoryTarget(0), scalers=[_gauge(GaugeRegistry())], state=given_state
    )
    assert so.state is given_state
    assert _expand(so._state) == ScalingState(1.0, None, ((2.0, 3),))


def _spec(minimum: int = 0) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="settle",
        scale_target_ref=ScaleTargetRef(name="work"),
        triggers=[TriggerSpec(type="gauge", name="backlog")],
        min_replica_count=minimum,
        max_replica_count=20,
        cooldown_period=30,
    )


def _gauge(registry: GaugeRegistry) -> GaugeScaler:
    return GaugeScaler("g", target=5, registry=registry, trigger_name="backlog")


#: one step: seconds to move on, the gauge's value, replicas someone else set (or None)
steps = st.lists(
    st.tuples(
        st.sampled_from([1.0, 15.0, 31.0, 400.0]),
        st.sampled_from([0.0, 0.0, 0.0, 3.0, 40.0]),
        st.none() | st.none() | st.integers(0, 6),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(steps=steps, minimum=st.sampled_from([0, 0, 1]))
def test_polls_decide_what_the_engine_decides(
    steps: list[tuple[float, float, int | None]], minimum: int
) -> None:
    """Differential: reconcile() (which may skip the engine) against decide() itself."""

    async def main() -> None:
        clock = ManualClock(1000.0)
        registry = GaugeRegistry()
        registry.set("g", 0.0)
        target = MemoryTarget(0)
        spec = _spec(minimum)
        so = ScaledObject(spec, target=target, scalers=[_gauge(registry)], clock=clock)
        engine, state = Engine(spec), ScalingState.new()
        for dt, value, forced in steps:
            clock.advance(dt)
            registry.set("g", value)
            if forced is not None:
                await target.set_replicas(forced)
            current = await target.get_replicas()
            report = await so.reconcile()
            state, expected = engine.decide(state, report.observations, current, clock())
            assert report.decision == expected
            assert so.state == state

    anyio.run(main)


async def _poll_twice(scaler: object) -> tuple[object, object]:
    from eventscale.runtime._polling import poll_trigger
    from eventscale.scalers import Scaler

    assert isinstance(scaler, Scaler)
    trigger = TriggerSpec(type="gauge", name="backlog")
    first = await poll_trigger(scaler, 0, trigger, 1.0)
    return first, await poll_trigger(scaler, 0, trigger, 1.0, previous=first)


def test_an_identical_report_reuses_the_observation_and_a_new_one_does_not() -> None:
    from eventscale.testing import StaticScaler

    registry = GaugeRegistry()
    registry.set("g", 2.0)
    first, second = anyio.run(_poll_twice, _gauge(registry))
    assert second is first  # the gauge kept its report: nothing new to check or compare
    first, second = anyio.run(_poll_twice, StaticScaler(2.0))  # a new report every poll
    assert second is not first
    assert second == first


def test_an_idle_redis_list_settles_and_an_item_wakes_the_engine() -> None:
    """Against the real Redis: an idle list's polls reuse the settled decision (the same
    as the engine's), and the first item pushed is decided by the engine again."""
    import redis

    from eventscale.scalers import TriggerContext, create_scaler
    from servers._proc import unique_name

    name = unique_name("settle")
    trigger = TriggerSpec(
        type="redis",
        name="queue",
        metadata={"address": "127.0.0.1:6379", "listName": name, "listLength": "5"},
    )
    spec = ScaledObjectSpec(
        name="settle-redis",
        scale_target_ref=ScaleTargetRef(name="work"),
        triggers=[trigger],
        max_replica_count=20,
    )
    ctx = TriggerContext(metadata=dict(trigger.metadata), trigger_type="redis", name="queue")
    plain = redis.Redis(host="127.0.0.1", port=6379)

    async def main() -> None:
        clock = ManualClock(1000.0)
        target = MemoryTarget(0)
        so = ScaledObject(spec, target=target, scalers=[create_scaler(ctx)], clock=clock)
        engine, state = Engine(spec), ScalingState.new()
        try:
            for step in range(4):
                clock.advance(15)
                if step == 3:
                    plain.rpush(name, *range(12))
                current = await target.get_replicas()
                report = await so.reconcile()
                assert report.target_error is None
                assert all(o.error is None for o in report.observations)
                state, expected = engine.decide(state, report.observations, current, clock())
                assert report.decision == expected
                assert (so._settled is not None) == (step < 3)  # idle: settled; items: not
            assert target.requested == 3  # 12 items / 5 per replica
        finally:
            await so.aclose()
            plain.delete(name)

    anyio.run(main)
