"""Behavior: the rate limits and the tuple normalizers give what their definitions give.

The rate limits share one pass over the scale events per policy period, and the
decision step uses tuple-returning normalizers; each is checked against the plain
definition it replaces.
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscale.engine import (
    ResolvedRules,
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
from eventscale.spec import (
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

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
