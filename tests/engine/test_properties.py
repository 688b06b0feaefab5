"""Property-based tests of decide(): invariants over random specs, observations and time."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from eventscale.engine import (
    Decision,
    Rule,
    ScalingState,
    TriggerObservation,
    decide,
    resolve_behavior,
)
from eventscale.spec import (
    Advanced,
    Behavior,
    Fallback,
    FallbackBehavior,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

from .helpers import fail, make_spec, ok

policies = st.lists(
    st.builds(
        ScalingPolicy,
        type=st.sampled_from(PolicyType),
        value=st.integers(1, 200),
        period_seconds=st.integers(1, 120),
    ),
    min_size=1,
    max_size=2,
).map(tuple)

rules = st.builds(
    ScalingRules,
    stabilization_window_seconds=st.none() | st.integers(0, 600),
    select_policy=st.none() | st.sampled_from([SelectPolicy.MAX, SelectPolicy.MIN]),
    policies=st.none() | policies,
    tolerance=st.none() | st.sampled_from([0.0, 0.05, 0.1, 0.2]),
)

behaviors = st.none() | st.builds(
    Behavior, scale_up=st.none() | rules, scale_down=st.none() | rules
)

fallbacks = st.none() | st.builds(
    Fallback,
    failure_threshold=st.integers(0, 3),
    replicas=st.integers(1, 10),
    behavior=st.sampled_from(
        [
            FallbackBehavior.STATIC,
            FallbackBehavior.CURRENT_REPLICAS,
            FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER,
            FallbackBehavior.CURRENT_REPLICAS_IF_LOWER,
        ]
    ),
)


@st.composite
def specs(draw: st.DrawFn) -> ScaledObjectSpec:
    minimum = draw(st.integers(0, 5))
    maximum = draw(st.integers(max(minimum, 1), 30))
    idle = draw(st.none() | st.integers(0, minimum - 1)) if minimum > 0 else None
    behavior = draw(behaviors)
    return make_spec(
        draw(st.integers(1, 3)),
        min_replica_count=minimum,
        max_replica_count=maximum,
        idle_replica_count=idle,
        cooldown_period=float(draw(st.integers(0, 600))),
        initial_cooldown_period=float(draw(st.integers(0, 300))),
        fallback=draw(fallbacks),
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior)),
    )


@st.composite
def observation(draw: st.DrawFn, index: int) -> TriggerObservation:
    if draw(st.integers(0, 5)) == 0:
        return fail(index)
    value = draw(st.floats(0, 300, allow_nan=False))
    target = draw(st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0]))
    activation = draw(st.sampled_from([0.0, 0.0, 1.0, 10.0]))
    return ok(index, value, target=target, activation=activation)


def observations(spec: ScaledObjectSpec) -> st.SearchStrategy[list[TriggerObservation]]:
    return st.tuples(*(observation(i) for i in range(len(spec.triggers)))).map(list)


def check_step(
    spec: ScaledObjectSpec,
    before: ScalingState,
    obs: list[TriggerObservation],
    current: int,
    now: float,
    after: ScalingState,
    d: Decision,
) -> None:
    """Invariants of one decision (no pause annotations are generated)."""
    lo, hi, idle = spec.min_replica_count, spec.max_replica_count, spec.idle_replica_count
    floor = max(lo, 1)
    errored = any(o.report is None for o in obs)
    # determinism and JSON round trip
    assert decide(spec, before, obs, current, now) == (after, d)
    assert ScalingState.from_json(after.to_json()) == after
    assert ScalingState.from_json(before.to_json()) == before
    # bounds
    assert 0 <= d.replicas <= hi
    if d.replicas < lo:
        assert idle is not None
        assert not d.is_active
        assert d.replicas in (idle, current)
    # an error never causes a drop (fallback aside)
    if errored and not d.fallback_active:
        assert d.replicas >= min(current, hi)
    # never to zero while a trigger is active or erroring
    if current > 0 and (d.is_active or errored) and not d.fallback_active:
        assert d.replicas > 0
    # below the floor only after the cooldown
    if d.replicas < floor and d.replicas < current:
        assert not d.is_active
        assert not errored
        if before.last_active is not None:
            assert now - before.last_active >= spec.cooldown_period
        else:
            created = before.created_at if before.created_at is not None else now
            assert now - created >= spec.initial_cooldown_period
    if d.is_active:
        assert after.last_active == now


@settings(max_examples=300, deadline=None)
@given(data=st.data(), spec=specs())
def test_single_step_invariants(data: st.DataObject, spec: ScaledObjectSpec) -> None:
    current = data.draw(st.integers(0, 40), label="current")
    now = data.draw(st.floats(0, 10_000, allow_nan=False), label="now")
    last = data.draw(st.none() | st.floats(0, now, allow_nan=False), label="last_active")
    recs = data.draw(
        st.lists(st.tuples(st.floats(max(0, now - 900), now), st.integers(0, 40)), max_size=5),
        label="recs",
    )
    state = ScalingState(created_at=0.0, last_active=last, recommendations=tuple(recs))
    obs = data.draw(observations(spec), label="obs")
    after, d = decide(spec, state, obs, current, now)
    check_step(spec, state, obs, current, now, after, d)


@given(
    cooldown=st.integers(0, 3600),
    elapsed=st.integers(0, 7200),
    current=st.integers(1, 50),
    idle=st.none() | st.just(0),
)
def test_cooldown_to_the_second(
    cooldown: int, elapsed: int, current: int, idle: int | None
) -> None:
    spec = make_spec(
        cooldown_period=float(cooldown),
        min_replica_count=1 if idle is not None else 0,
        max_replica_count=50,
        idle_replica_count=idle,
    )
    t0 = 100_000.0
    state = ScalingState(created_at=0.0, last_active=t0)
    _, d = decide(spec, state, [ok(0, 0)], current, t0 + elapsed)
    assert (d.replicas == 0) is (elapsed >= cooldown)


class EngineMachine(RuleBasedStateMachine):
    """Drive one object through time; every applied decision must respect the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: ScaledObjectSpec = make_spec()
        self.state = ScalingState()
        self.current = 0
        self.now = 0.0
        self.applied: list[tuple[float, int]] = []
        self.raws: list[tuple[float, int]] = []
        self.last: Decision | None = None

    @initialize(spec=specs(), current=st.integers(0, 30))
    def setup(self, spec: ScaledObjectSpec, current: int) -> None:
        self.spec = spec
        self.current = current

    @rule(data=st.data(), dt=st.sampled_from([0.0, 1.0, 5.0, 15.0, 30.0, 61.0, 300.0, 301.0]))
    def tick(self, data: st.DataObject, dt: float) -> None:
        self.now += dt
        obs = data.draw(observations(self.spec))
        before, current = self.state, self.current
        after, d = decide(self.spec, before, obs, current, self.now)
        check_step(self.spec, before, obs, current, self.now, after, d)
        self._check_policies(d, current)
        self._check_stabilization(d, current)
        self.state, self.last = after, d
        if d.raw_replicas is not None:
            self.raws.append((self.now, d.raw_replicas))
        if d.replicas != current:
            self.applied.append((self.now, d.replicas - current))
        self.current = d.replicas

    def _rules(self) -> Any:
        return resolve_behavior(self.spec.behavior)

    def _check_policies(self, d: Decision, current: int) -> None:
        up, _ = self._rules()
        # KEDA writes min, fallback and idle counts straight to the scale subresource:
        # the HPA's scale-up policies never see those steps.
        if d.replicas <= current or d.rule in (
            Rule.MIN_REPLICAS,
            Rule.FALLBACK,
            Rule.SCALE_TO_IDLE,
        ):
            return
        if d.rule is Rule.SCALE_FROM_ZERO and d.replicas == max(self.spec.min_replica_count, 1):
            return
        allowed: list[int] = []
        for policy in up.policies:
            recent = [c for t, c in self.applied if t > self.now - policy.period_seconds]
            start = current - sum(c for c in recent if c > 0) - sum(c for c in recent if c < 0)
            if policy.type is PolicyType.PODS:
                allowed.append(start + policy.value)
            else:
                allowed.append(-(-(start * (100 + policy.value)) // 100))
        bound = max(allowed) if up.select_policy is SelectPolicy.MAX else min(allowed)
        assert d.replicas <= max(bound, current)

    def _check_stabilization(self, d: Decision, current: int) -> None:
        if d.replicas >= current or d.rule in (
            Rule.SCALE_TO_ZERO,
            Rule.SCALE_TO_IDLE,
            Rule.FALLBACK,
            Rule.MAX_REPLICAS,
        ):
            return
        _, down = self._rules()
        window = down.stabilization_window_seconds
        recent = [r for t, r in self.raws if t > self.now - window]
        if d.raw_replicas is not None:
            recent.append(d.raw_replicas)
        highest = max(recent, default=0)
        assert d.replicas >= min(current, highest, self.spec.max_replica_count)

    @invariant()
    def state_is_json(self) -> None:
        assert ScalingState.from_json(self.state.to_json()) == self.state


EngineMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestEngineMachine = EngineMachine.TestCase
