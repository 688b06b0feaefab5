"""The Controller under faults: schedules, isolation, changes at run time, shutdown, push.

Time is a :class:`ManualClock` the test moves by hand: every loop sleeps on it, so a
schedule is checked exactly (how many polls after how many seconds), never by timing.
Real time only bounds how long the test waits for something that must happen.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis

from eventscale.errors import ScalerError, TargetConflict
from eventscale.metrics import ScalerReport
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.scalers import PushScaler
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler
from servers._proc import unique_name
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio

START = 1000.0


def spec(name: str, interval: float, **kwargs: object) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="t0")],
        polling_interval=interval,
        **kwargs,  # type: ignore[arg-type]
    )


def make(
    name: str,
    interval: float,
    scaler: StaticScaler,
    clock: Callable[[], float],
    *,
    target: MemoryTarget | None = None,
    poll_timeout: float | None = None,
    **kwargs: object,
) -> ScaledObject:
    return ScaledObject(
        spec(name, interval, **kwargs),
        target=target if target is not None else MemoryTarget(0, name=name, clock=clock),
        scalers=[scaler],
        clock=clock,
        poll_timeout=poll_timeout,
    )


async def until(predicate: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Wait (real time, bounded) until ``predicate()`` holds."""
    with anyio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling state the code under test changes
            await anyio.sleep(0.002)
    if not predicate():
        pytest.fail(f"timed out waiting for {what}")


async def step(clock: ManualClock, seconds: float, sleepers: int) -> None:
    """Advance the clock and wait until ``sleepers`` loops are asleep again."""
    clock.advance(seconds)
    with anyio.fail_after(5):
        await clock.wait_for_sleepers(sleepers)
        # let loops that woke on this step finish their sleep registration too
        await anyio.lowlevel.checkpoint()
        await clock.wait_for_sleepers(sleepers)


class HangingScaler(StaticScaler):
    """Never answers (until cancelled)."""

    def __init__(self) -> None:
        super().__init__(1, name="s0-hang")
        self.entered = anyio.Event()

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        self.entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class RaisingScaler(StaticScaler):
    """A buggy user scaler."""

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        raise RuntimeError("boom")


class GarbageScaler(StaticScaler):
    """Returns something that is not a report."""

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        return {"value": 7}  # type: ignore[return-value]


class ManualPushScaler(StaticScaler):
    """A push scaler whose ``wait_for_activity`` returns when the test says so."""

    def __init__(self, value: float = 0, **kwargs: object) -> None:
        super().__init__(value, **kwargs)  # type: ignore[arg-type]
        self.activity = anyio.Event()
        self.watching = 0

    def signal(self) -> None:
        self.activity.set()

    async def wait_for_activity(self) -> None:
        self.watching += 1
        await self.activity.wait()
        self.activity = anyio.Event()


class LevelPushScaler(StaticScaler):
    """Like the Redis list scaler: returns at once while the source is active."""

    def __init__(self, value: float = 0, **kwargs: object) -> None:
        super().__init__(value, **kwargs)  # type: ignore[arg-type]
        self.watches = 0

    async def wait_for_activity(self) -> None:
        self.watches += 1
        while self.value <= self.spec.activation_target:  # noqa: ASYNC110 - as a scaler polls
            await anyio.sleep(0.001)


def record(ctl: Controller) -> list[Event]:
    events: list[Event] = []
    ctl.events.add_hook(events.append)
    return events


def of(events: list[Event], kind: EventKind, key: str) -> list[Event]:
    return [e for e in events if e.kind is kind and e.scaled_object == key]


# ----------------------------------------------------------------------------- schedules


async def test_each_object_keeps_its_own_polling_interval() -> None:
    clock = ManualClock(START)
    fast, slow = StaticScaler(3, target=1), StaticScaler(1, target=1)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("fast", 2, fast, clock))
        ctl.add(make("slow", 5, slow, clock))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(2)
        assert (fast.polls, slow.polls) == (1, 1)  # both reconcile at once on start
        for t in range(1, 21):
            await step(clock, 1, sleepers=2)
            assert fast.polls == 1 + t // 2, t
            assert slow.polls == 1 + t // 5, t
        polls = of(events, EventKind.POLL, "default/fast")
        assert [e.time - START for e in polls] == [float(t) for t in range(0, 21, 2)]
        assert all(e.lag == 0 for e in polls)
    assert fast.closed
    assert slow.closed


async def test_loop_lag_is_reported_and_missed_ticks_are_skipped() -> None:
    clock = ManualClock(START)
    scaler = StaticScaler(1)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("lagging", 2, scaler, clock))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        await step(clock, 5, sleepers=1)  # the tick due at +2 runs at +5: 3 s late
        await step(clock, 1, sleepers=1)  # +6 is the next tick on the grid (no burst)
        polls = of(events, EventKind.POLL, "default/lagging")
        assert [(e.time - START, e.lag) for e in polls] == [(0, 0), (5, 3), (6, 0)]
        assert ctl.status("default/lagging").last_lag == 0


# ----------------------------------------------------------------------------- isolation


async def test_hanging_raising_and_garbage_scalers_never_delay_a_healthy_object() -> None:
    clock = ManualClock(START)
    healthy = StaticScaler(6, target=2)
    hanging, raising, garbage = HangingScaler(), RaisingScaler(1), GarbageScaler(1)
    targets = {n: MemoryTarget(1, name=n, clock=clock) for n in ("ok", "hang", "raise", "junk")}
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("ok", 1, healthy, clock, target=targets["ok"]))
        # 60 s of real time: this poll stays stuck for the whole test
        ctl.add(make("hang", 1, hanging, clock, target=targets["hang"], poll_timeout=60))
        ctl.add(make("raise", 1, raising, clock, target=targets["raise"]))
        ctl.add(make("junk", 1, garbage, clock, target=targets["junk"]))
        with anyio.fail_after(5):
            await hanging.entered.wait()
            await clock.wait_for_sleepers(3)
        for t in range(1, 6):
            await step(clock, 1, sleepers=3)
            assert healthy.polls == 1 + t
            assert raising.polls == 1 + t
            assert garbage.polls == 1 + t
        assert hanging.polls == 1
        assert targets["ok"].requested == 3
        for name, needle in (("raise", "RuntimeError: boom"), ("junk", "not a ScalerReport")):
            polls = of(events, EventKind.POLL, f"default/{name}")
            assert len(polls) == 6
            errors = [p.triggers[0].error for p in polls]
            assert all(e is not None and needle in e for e in errors), errors
            assert targets[name].requested == 1  # an error is not a metric of 0
            assert ctl.status(f"default/{name}").last_error is not None
        assert not of(events, EventKind.POLL, "default/hang")
    # leaving the block cancelled the stuck poll and closed everything
    for scaler in (healthy, hanging, raising, garbage):
        assert scaler.closed
    assert all(t.closed for t in targets.values())


async def test_a_poll_timeout_is_an_error_event_and_the_loop_goes_on() -> None:
    clock = ManualClock(START)
    hanging = HangingScaler()
    target = MemoryTarget(2, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("slow", 1, hanging, clock, target=target, poll_timeout=0.05))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        await step(clock, 1, sleepers=1)
        polls = of(events, EventKind.POLL, "default/slow")
        assert len(polls) == 2
        for poll in polls:
            error = poll.triggers[0].error
            assert error is not None
            assert "no answer within 0.05s" in error
        assert hanging.polls == 2
        assert target.requested == 2


class ConflictingTarget(MemoryTarget):
    """Reads fine; the next ``conflicts`` writes lose a race."""

    conflicts = 0

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise TargetConflict("the object has been modified", target=self.name, status=409)
        await super().set_replicas(replicas, reason=reason)


async def test_target_conflict_and_disappearance_are_events_and_the_loop_continues() -> None:
    clock = ManualClock(START)
    racing = ConflictingTarget(0, name="racing", clock=clock)
    racing.conflicts = 2
    gone = MemoryTarget(0, name="gone", clock=clock)
    gone.fail_not_found(times=2)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("racing", 1, StaticScaler(4, target=2), clock, target=racing))
        ctl.add(make("gone", 1, StaticScaler(4, target=2), clock, target=gone))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(2)
        for _ in range(3):
            await step(clock, 1, sleepers=2)
        racing_errors = of(events, EventKind.TARGET_ERROR, "default/racing")
        assert len(racing_errors) == 2
        assert all(e.error is not None and "has been modified" in e.error for e in racing_errors)
        gone_errors = of(events, EventKind.TARGET_ERROR, "default/gone")
        assert len(gone_errors) == 2
        assert all(e.error is not None and "not found" in e.error for e in gone_errors)
        # the third tick went through for both
        assert racing.requested == 2
        assert gone.requested == 2
        assert len(of(events, EventKind.SCALE, "default/racing")) == 1
        assert len(of(events, EventKind.SCALE, "default/gone")) == 1
        assert ctl.status("default/gone").polls == 4


# ----------------------------------------------------------------------------- run time changes


async def test_objects_added_updated_and_removed_while_running() -> None:
    clock = ManualClock(START)
    a_scaler, b_scaler = StaticScaler(4, target=2), StaticScaler(1)
    a_target, b_target = MemoryTarget(0, clock=clock), MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("a", 1, a_scaler, clock, target=a_target, cooldown_period=10))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        assert a_target.requested == 2
        with pytest.raises(ValueError, match="already managed"):
            ctl.add(make("a", 1, StaticScaler(), clock))

        # add mid-run: reconciled at once, then on its own schedule
        ctl.add(make("b", 3, b_scaler, clock, target=b_target))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(2)
        assert b_scaler.polls == 1
        assert b_target.requested == 1

        # update: a new scaler (now idle) on the same target; the engine state moves over,
        # so the cooldown that started with the first poll still holds the replicas
        state = ctl.get("default/a").state
        new_scaler = StaticScaler(0, target=2)
        await ctl.update(make("a", 1, new_scaler, clock, target=a_target, cooldown_period=10))
        assert ctl.get("default/a").state is state
        assert a_scaler.closed
        assert not a_target.closed  # reused by the new object
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(2)
        assert new_scaler.polls == 1
        for _ in range(5):
            await step(clock, 1, sleepers=2)
        assert a_target.requested == 2, "state lost on update: cooldown restarted from zero"
        for _ in range(6):
            await step(clock, 1, sleepers=2)
        assert a_target.requested == 0  # cooldown (10 s from the last activity) is over

        # remove: closed, an event, and no more polls
        await ctl.remove("default/b")
        assert "default/b" not in ctl
        assert b_scaler.closed
        assert b_target.closed
        polls = b_scaler.polls
        for _ in range(4):
            await step(clock, 1, sleepers=1)
        assert b_scaler.polls == polls
        assert of(events, EventKind.OBJECT_REMOVED, "default/b")
        await ctl.remove("default/nope")  # unknown keys are ignored
    assert new_scaler.closed
    assert a_target.closed


async def test_update_and_remove_before_start() -> None:
    clock = ManualClock(START)
    first, second = StaticScaler(1), StaticScaler(2, target=1)
    target = MemoryTarget(0, clock=clock)
    ctl = Controller(clock=clock, sleep=clock.sleep)
    ctl.add(make("early", 1, first, clock, target=target))
    await ctl.update(make("early", 1, second, clock, target=target))
    ctl.add(make("gone", 1, StaticScaler(1), clock))
    await ctl.remove("default/gone")
    async with ctl:
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        assert list(ctl) == ["default/early"]
        assert first.polls == 0
        assert second.polls == 1
        assert target.requested == 2


# ----------------------------------------------------------------------------- shutdown


async def test_cancellation_mid_poll_closes_everything_and_leaks_nothing() -> None:
    clock = ManualClock(START)
    threads = threading.active_count()
    tasks = len(asyncio.all_tasks())
    hanging = [HangingScaler() for _ in range(3)]
    healthy = [StaticScaler(1) for _ in range(3)]
    targets = [MemoryTarget(0, clock=clock) for _ in range(6)]
    exited = anyio.Event()

    async def run() -> None:
        try:
            async with Controller(clock=clock, sleep=clock.sleep) as ctl:
                for i, scaler in enumerate([*hanging, *healthy]):
                    ctl.add(make(f"o{i}", 1, scaler, clock, target=targets[i], poll_timeout=60))
                await ctl.run_until_cancelled()
        finally:
            exited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            for scaler in hanging:
                await scaler.entered.wait()
            await clock.wait_for_sleepers(3)
        tg.cancel_scope.cancel()
    with anyio.fail_after(5):  # a bound on a hang, not a timing assert
        await exited.wait()
    assert all(s.closed for s in hanging + healthy)
    assert all(t.closed for t in targets)
    assert clock.sleepers == 0
    assert len(asyncio.all_tasks()) == tasks
    assert threading.active_count() == threads


async def test_aexit_closes_objects_whose_loops_never_ran() -> None:
    clock = ManualClock(START)
    scaler = StaticScaler(1)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.add(make("never", 1, scaler, clock))
    assert scaler.closed


# ----------------------------------------------------------------------------- wake and push


async def test_wake_reconciles_at_once() -> None:
    clock = ManualClock(START)
    scaler = StaticScaler(0, target=1)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.add(make("w", 30, scaler, clock, target=target))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        scaler.value = 3
        ctl.wake("default/w")
        ctl.wake("default/unknown")  # ignored
        await until(lambda: target.requested == 3, "the woken reconcile")
        assert scaler.polls == 2
        assert clock.now() == START  # no time passed: the wake did it
        # the schedule restarts from the wake-up: next tick 30 s later
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        assert clock.next_deadline == START + 30


async def test_push_activity_scales_from_zero_without_waiting_for_the_poll() -> None:
    clock = ManualClock(START)
    scaler = ManualPushScaler(0, target=2)
    assert isinstance(scaler, PushScaler)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        events = record(ctl)
        ctl.add(make("p", 30, scaler, clock, target=target))
        await until(lambda: scaler.watching == 1 and clock.sleepers == 1, "the watch")
        assert target.requested == 0
        scaler.value = 5
        scaler.signal()
        await until(lambda: target.requested == 3, "the push-triggered scale")
        assert clock.now() == START
        scale = of(events, EventKind.SCALE, "default/p")
        assert [(e.from_replicas, e.to_replicas) for e in scale] == [(0, 3)]
        # while the object is active its polls drive it: the watch is not re-armed
        await step(clock, 30, sleepers=1)
        assert scaler.polls == 3
        assert scaler.watching == 1
    assert scaler.closed


async def test_a_source_that_stays_active_does_not_spin_the_loop() -> None:
    """A push scaler returns at once while its source is active; that must not turn
    into back-to-back reconciles (the polling interval takes over)."""
    clock = ManualClock(START)
    scaler = LevelPushScaler(0, target=1)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.add(make("level", 30, scaler, clock, target=target))
        await until(lambda: scaler.watches == 1, "the watch")
        scaler.value = 2
        await until(lambda: target.requested == 2, "the push-triggered scale")
        await anyio.sleep(0.2)  # real time in which a spinning loop would poll thousands of times
        assert scaler.polls <= 3, f"{scaler.polls} polls without the clock moving"
        # the next regular tick still happens
        await step(clock, 30, sleepers=1)
        assert scaler.polls <= 4
        # once idle again, the watch is re-armed and catches the next activation
        scaler.value = 0
        for _ in range(12):  # cooldown 300 s
            await step(clock, 30, sleepers=1)
        assert target.requested == 0
        polls = scaler.polls
        await until(lambda: scaler.watches >= 2, "the re-armed watch")
        scaler.value = 1
        await until(lambda: target.requested == 1, "the second activation")
        assert scaler.polls <= polls + 2


async def test_a_failing_watch_backs_off_and_polling_goes_on() -> None:
    class BrokenWatch(StaticScaler):
        watches = 0

        async def wait_for_activity(self) -> None:
            self.watches += 1
            raise ScalerError("cannot subscribe")

    clock = ManualClock(START)
    scaler = BrokenWatch(0, target=1)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.add(make("bw", 4, scaler, clock, target=target))
        # the loop (1) and the watch's back-off (1) sleep on the clock
        await until(lambda: clock.sleepers == 2, "the loop and the back-off")
        assert (scaler.watches, scaler.polls) == (1, 1)
        watches = []
        for _ in range(8):
            await step(clock, 1, sleepers=2)
            watches.append(scaler.watches)
        # retried after 1, 2, 4, 4... seconds (capped at the polling interval)
        assert watches == [2, 2, 3, 3, 3, 3, 4, 4]
        assert scaler.polls == 3  # the polls went on: +0, +4, +8
        scaler.value = 2
        clock.advance(4)
        await until(lambda: target.requested == 2, "the next poll")


async def test_a_failing_watch_retries_within_seconds_whatever_the_interval() -> None:
    # After an outage of the source the push wake-up must work again within seconds,
    # not after a back-off grown to the polling interval (300 s here).
    class FlakyWatch(StaticScaler):
        watches = 0

        async def wait_for_activity(self) -> None:
            self.watches += 1
            raise ScalerError("cannot subscribe")

    clock = ManualClock(START)
    scaler = FlakyWatch(0, target=1)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.add(make("fw", 300, scaler, clock, target=MemoryTarget(0, clock=clock)))
        await until(lambda: clock.sleepers == 2, "the loop and the back-off")
        times = []
        for second in range(1, 40):
            before = scaler.watches
            await step(clock, 1, sleepers=2)
            if scaler.watches > before:
                times.append(second)
        # retried after 1, 2, 4 seconds, then every PUSH_RETRY_CAP (4) seconds
        assert times[:6] == [1, 3, 7, 11, 15, 19]
        assert max(b - a for a, b in itertools.pairwise(times)) == 4


# ----------------------------------------------------------------------------- real clock


async def test_real_clock_wake_push_and_shutdown() -> None:
    """The same guarantees with the real clock (the controller parks loops differently)."""
    threads = threading.active_count()
    woken, level, stuck = StaticScaler(0, target=1), LevelPushScaler(0, target=1), HangingScaler()
    targets = [MemoryTarget(0) for _ in range(3)]
    async with Controller() as ctl:
        ctl.add(make("woken", 30, woken, time.time, target=targets[0]))
        ctl.add(make("level", 30, level, time.time, target=targets[1]))
        ctl.add(make("stuck", 30, stuck, time.time, target=targets[2], poll_timeout=60))
        await until(lambda: woken.polls == 1 and level.watches == 1, "the first ticks")
        woken.value = 2
        ctl.wake("default/woken")
        await until(lambda: targets[0].requested == 2, "the woken reconcile")
        level.value = 3
        await until(lambda: targets[1].requested == 3, "the push-triggered reconcile")
        await anyio.sleep(0.2)
        assert level.polls <= 3, f"{level.polls} polls of an active source in 0.2 s"
        assert woken.polls == 2
    assert all(s.closed for s in (woken, level, stuck))
    assert threading.active_count() == threads


# ----------------------------------------------------------------------------- ownership


class FlagOwnership:
    """Ownership the test turns on and off."""

    def __init__(self) -> None:
        self.owned = True
        self.released: list[str] = []

    async def owns(self, key: str) -> bool:
        return self.owned

    async def release(self, key: str) -> None:
        self.released.append(key)


class LeaseLosingScaler(StaticScaler):
    """Its poll takes so long that the lease runs out meanwhile."""

    def __init__(self, ownership: FlagOwnership, value: float) -> None:
        super().__init__(value, target=1)
        self.ownership = ownership
        self.lose = True

    async def get_metrics(self) -> ScalerReport:
        if self.lose:
            self.ownership.owned = False
        return await super().get_metrics()


async def test_a_lease_lost_during_the_poll_stops_the_write() -> None:
    clock = ManualClock(START)
    ownership = FlagOwnership()
    scaler = LeaseLosingScaler(ownership, 3)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep, ownership=ownership) as ctl:
        ctl.add(make("leased", 1, scaler, clock, target=target))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        assert scaler.polls == 1
        assert target.set_calls == 0  # owned when the tick began, not when it would write
        await step(clock, 1, sleepers=1)
        assert scaler.polls == 1  # not owned: not even polled
        assert not ctl.status("default/leased").owned
        ownership.owned = True
        scaler.lose = False
        await step(clock, 1, sleepers=1)
        assert target.requested == 3
        assert ctl.status("default/leased").owned
    assert ownership.released == ["default/leased"]


# ----------------------------------------------------------------------------- events


async def test_events_reach_hooks_and_subscribers_in_order() -> None:
    clock = ManualClock(START)
    scaler = StaticScaler(4, target=2)
    async_seen: list[EventKind] = []

    async def async_hook(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(event.kind)

    def broken_hook(event: Event) -> None:
        raise RuntimeError("a consumer bug")

    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(broken_hook)  # logged and ignored
        ctl.events.add_hook(async_hook)
        async with ctl.events.subscribe() as stream:
            ctl.add(make("ev", 1, scaler, clock))
            kinds = []
            with anyio.fail_after(5):
                async for event in stream:
                    kinds.append(event.kind)
                    if event.kind is EventKind.SCALE:
                        assert (event.from_replicas, event.to_replicas) == (0, 2)
                        assert event.reason
                        break
            assert kinds == [
                EventKind.OBJECT_ADDED,
                EventKind.POLL,
                EventKind.DECISION,
                EventKind.SCALE,
            ]
        assert async_seen[:4] == kinds
        ctl.events.remove_hook(broken_hook)
        ctl.events.remove_hook(async_hook)
        # after the subscription closed, emitting does not fail
        await ctl.remove("default/ev")


# ----------------------------------------------------------------------------- push, real Redis


async def test_redis_push_activates_from_zero_long_before_the_poll(
    redis_server: RedisServer,
) -> None:
    key = unique_name("push")
    manifest = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "redis-push", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"name": "worker"},
            "pollingInterval": 30,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {
                        "address": redis_server.address,
                        "listName": key,
                        "listLength": "5",
                    },
                }
            ],
        },
    }
    target = MemoryTarget(0)
    so = ScaledObject.from_manifest(manifest, target=target)
    assert isinstance(so.scalers[0], PushScaler)
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        try:
            async with Controller() as ctl:
                ctl.add(so)
                # the first poll found the list empty; the next one is 30 s away
                await until(lambda: ctl.status(so.key).polls == 1, "the first poll")
                assert target.requested == 0
                await client.lpush(key, "job-1")
                await until(lambda: target.requested >= 1, "the push activation", limit=5)
                assert ctl.status(so.key).polls == 2
                assert target.history[0].reason is not None
                assert "activated" in target.history[0].reason
            assert target.closed
        finally:
            await client.delete(key)
