"""The scheduler's time slots: each item comes out once, when its slot opens, never early
by more than a slot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eventscale.runtime._scheduler import _SLACK, _Wheel

WIDTH = 0.01


@given(
    dues=st.lists(st.floats(1000.0, 1100.0), max_size=200),
    nows=st.lists(st.floats(999.0, 1110.0), min_size=1, max_size=20),
)
def test_each_item_comes_out_once_when_its_slot_opens(dues: list[float], nows: list[float]) -> None:
    wheel = _Wheel(WIDTH)
    for number, due in enumerate(dues):
        opens = wheel.push(due, number)
        assert due - WIDTH <= opens <= due  # at most one slot early
    assert wheel.items == len(dues)
    taken: dict[int, float] = {}
    for now in sorted(nows):
        for slot, numbers in wheel.take(now):
            assert slot * WIDTH <= now + _SLACK  # the slot is open
            for number in numbers:
                assert number not in taken
                assert wheel.slot(dues[number]) == slot
                taken[number] = now
    last = max(nows)
    for number, due in enumerate(dues):
        if due <= last:
            assert number in taken  # nothing due is left behind
    assert wheel.items == len(dues) - len(taken)
    assert wheel.opens() == min(
        (wheel.slot(d) * WIDTH for n, d in enumerate(dues) if n not in taken), default=float("inf")
    )
