"""A ScaledObject keeps its engine state between polls as a flat array of floats,
which the cyclic collector never tracks; reading it back gives the same state."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from eventscale.engine import ScalingState
from eventscale.runtime.scaled_object import _compact, _expand

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
