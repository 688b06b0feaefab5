"""MemoryTarget: history, reasons, lag on an injected clock, fault injection."""

from __future__ import annotations

import pickle

import pytest

from eventscale.errors import TargetError, TargetNotFound
from eventscale.targets import Target
from eventscale.targets.memory import MemoryTarget, ReplicaChange
from eventscale.testing import ManualClock


@pytest.mark.anyio
async def test_satisfies_the_protocol_and_records_changes_with_time_and_reason() -> None:
    clock = ManualClock(100.0)
    target = MemoryTarget(2, clock=clock)
    assert isinstance(target, Target)
    assert await target.get_replicas() == 2

    await target.set_replicas(5)  # the protocol's two-argument call
    clock.advance(10)
    await target.set_replicas(5, reason="same again")
    clock.advance(5)
    await target.set_replicas(0, reason="cooldown over")

    assert await target.get_replicas() == 0
    assert target.history == (
        ReplicaChange(at=100.0, old=2, new=5, reason=None),
        ReplicaChange(at=110.0, old=5, new=5, reason="same again"),
        ReplicaChange(at=115.0, old=5, new=0, reason="cooldown over"),
    )
    assert [c.new for c in target.changes] == [5, 0]
    assert target.requested_counts() == [2, 5, 0]
    assert (target.get_calls, target.set_calls) == (2, 3)


@pytest.mark.anyio
async def test_lag_reports_the_old_count_until_the_delay_has_passed() -> None:
    clock = ManualClock()
    target = MemoryTarget(1, lag=30, clock=clock)
    await target.set_replicas(4)
    assert target.requested == 4
    assert await target.get_replicas() == 1
    assert not target.converged

    clock.advance(29.5)
    assert await target.get_replicas() == 1
    await target.set_replicas(2)  # a second request while the first is in flight
    clock.advance(0.5)
    assert await target.get_replicas() == 4  # the first request lands at t=30
    clock.advance(29.5)
    assert await target.get_replicas() == 2  # the second at t=59.5
    assert target.converged


@pytest.mark.anyio
async def test_fail_for_a_number_of_calls_then_recover_by_itself() -> None:
    target = MemoryTarget(3, name="orders")
    target.fail(times=2, status=500)
    for _ in range(2):
        with pytest.raises(TargetError) as info:
            await target.set_replicas(7)
        assert info.value.status == 500
        assert "orders" in str(info.value)
    assert target.history == ()  # a failed set records nothing
    await target.set_replicas(7)
    assert target.requested == 7


@pytest.mark.anyio
async def test_fail_until_recover_with_a_given_error_and_not_found() -> None:
    target = MemoryTarget()
    target.fail_not_found()
    for _ in range(3):
        with pytest.raises(TargetNotFound):
            await target.get_replicas()
    target.recover()
    assert await target.get_replicas() == 0

    target.fail(TargetError("quota exceeded", status=403))
    with pytest.raises(TargetError, match="quota exceeded") as info:
        await target.set_replicas(1)
    assert info.value.status == 403
    err = pickle.loads(pickle.dumps(info.value))
    assert isinstance(err, TargetError)
    assert err.status == 403


@pytest.mark.anyio
async def test_context_manager_closes_and_bad_counts_are_rejected() -> None:
    async with MemoryTarget() as target:
        with pytest.raises(ValueError, match=">= 0"):
            await target.set_replicas(-1)
        with pytest.raises(TypeError):
            await target.set_replicas(True)
        with pytest.raises(TypeError):
            await target.set_replicas(1.5)  # type: ignore[arg-type]
    assert target.closed
    assert target.history == ()
    with pytest.raises(ValueError, match="lag"):
        MemoryTarget(lag=-1)
    assert "requested=0" in repr(target)


@pytest.mark.anyio
async def test_history_is_bounded_and_keeps_the_newest_calls() -> None:
    target = MemoryTarget(0, history=3)
    for count in (1, 2, 3, 4, 5):
        await target.set_replicas(count, reason=f"to {count}")
    assert [c.new for c in target.history] == [3, 4, 5]
    assert target.history[0].old == 2
    assert target.history[0].reason == "to 3"
    # the sequence starts with the count requested before the oldest call kept
    assert target.requested_counts() == [2, 3, 4, 5]
    assert target.requested == 5
    assert target.current == 5
    with pytest.raises(ValueError, match="history"):
        MemoryTarget(0, history=0)


@pytest.mark.anyio
async def test_unbounded_history_keeps_every_call() -> None:
    target = MemoryTarget(0, history=None)
    for count in range(1, 2001):
        await target.set_replicas(count)
    assert len(target.history) == 2000
    assert target.requested_counts()[:3] == [0, 1, 2]


@pytest.mark.anyio
async def test_lagging_requests_resolve_in_order_after_many_changes() -> None:
    clock = ManualClock()
    target = MemoryTarget(0, lag=10, clock=clock)
    await target.set_replicas(3)
    clock.advance(5)
    await target.set_replicas(7)
    assert target.current == 0
    clock.advance(5)
    assert target.current == 3
    clock.advance(5)
    assert target.current == 7
    for count in range(100):  # settled requests do not pile up
        await target.set_replicas(count)
        clock.advance(11)
    assert target.current == 99
    assert len(target._timeline) == 1
