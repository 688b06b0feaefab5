"""The Controller's shared scheduler (asyncio, real clock): no task per idle object,
a bounded number of polls in flight, and a hung poll that cannot hold a slot forever.

Real time only bounds how long a test waits; polls beyond the first are asked for with
``wake()`` so that no test waits for a whole polling interval. No assert on speed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import anyio
import pytest

from eventscale.metrics import ScalerReport
from eventscale.runtime.controller import Controller
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio


def make(name: str, scaler: StaticScaler, *, poll_timeout: float = 0.05) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="t0")],
        polling_interval=600,  # never reached within a test: polls come from wake()
    )
    return ScaledObject(
        spec, target=MemoryTarget(1, name=name), scalers=[scaler], poll_timeout=poll_timeout
    )


async def until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    with anyio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - state the controller changes
            await anyio.sleep(0.005)
    if not predicate():
        pytest.fail(f"timed out waiting for {what}")


class ShieldedScaler(StaticScaler):
    """Shields its poll from cancellation until the test releases it."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.released = anyio.Event()

    def release(self) -> None:
        self.released.set()

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        if not self.released.is_set():
            with anyio.CancelScope(shield=True):
                await self.released.wait()
        return await super().get_metrics()


class StubbornScaler(ShieldedScaler):
    """Catches every cancellation and goes on waiting, until the test releases it."""

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                continue
        return await StaticScaler.get_metrics(self)


class HangingScaler(StaticScaler):
    """Never answers, but lets itself be cancelled."""

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class Gauge:
    """How many polls run at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0


class SlowScaler(StaticScaler):
    """Takes 20 ms per poll and counts the polls running at once."""

    def __init__(self, gauge: Gauge) -> None:
        super().__init__(1)
        self.gauge = gauge

    async def get_metrics(self) -> ScalerReport:
        self.gauge.now += 1
        self.gauge.peak = max(self.gauge.peak, self.gauge.now)
        try:
            await anyio.sleep(0.02)
            return await super().get_metrics()
        finally:
            self.gauge.now -= 1


@pytest.mark.parametrize("bad_type", [ShieldedScaler, StubbornScaler])
async def test_a_poll_ignoring_cancellation_is_abandoned_and_frees_its_slot(
    bad_type: type[ShieldedScaler], caplog: pytest.LogCaptureFixture
) -> None:
    healthy, bad = StaticScaler(3, target=1), bad_type(1)
    caplog.set_level(logging.WARNING, logger="eventscale.controller")
    with anyio.fail_after(20):
        async with Controller(grace=0.1, max_in_flight=1) as ctl:
            ctl.add(make("bad", bad))
            await until(lambda: bad.polls == 1, "the stuck poll")
            ctl.add(make("ok", healthy))  # due at once, but the only slot is taken
            # the bad poll overruns 3 * 0.05 + 0.1 s: cancelled, then abandoned
            await until(lambda: healthy.polls == 1, "the slot freed for the healthy object")
            status = ctl.status("default/bad")
            assert status.last_error is not None
            assert "ignores cancellation" in status.last_error
            abandoned = [r.getMessage() for r in caplog.records if "abandon" in r.getMessage()]
            assert len(abandoned) == 1
            assert "default/bad" in abandoned[0]
            for n in range(2, 5):  # the healthy object polls on through the free slot
                ctl.wake("default/ok")
                await until(lambda n=n: healthy.polls == n, f"healthy poll {n}")  # type: ignore[misc]
            ctl.wake("default/bad")  # no second call while the abandoned one runs
            await anyio.sleep(0.05)
            assert bad.polls == 1
            bad.release()  # the abandoned call ends; the pending wake-up polls again
            await until(lambda: ctl.status("default/bad").polls == 2, "the bad object again")
    assert healthy.closed
    assert bad.closed


async def test_polls_in_flight_never_exceed_the_limit() -> None:
    gauge = Gauge()
    scalers = [SlowScaler(gauge) for _ in range(12)]
    async with Controller(max_in_flight=3) as ctl:
        for i, scaler in enumerate(scalers):
            ctl.add(make(f"o{i}", scaler))
        await until(lambda: all(s.polls == 1 for s in scalers), "every first poll")
        assert gauge.peak == 3  # all were due at once: the limit, and no more
        for i in range(12):
            ctl.wake(f"default/o{i}")
        await until(lambda: all(s.polls == 2 for s in scalers), "every second poll")
        assert gauge.peak == 3
        assert all(ctl.status(f"default/o{i}").last_error is None for i in range(12))


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Controller(max_in_flight=0)


async def test_removing_an_object_cancels_its_poll_and_frees_the_slot() -> None:
    hanging, healthy = HangingScaler(1), StaticScaler(2, target=1)
    async with Controller(max_in_flight=1) as ctl:
        ctl.add(make("hang", hanging, poll_timeout=60))
        await until(lambda: hanging.polls == 1, "the hanging poll")
        ctl.add(make("ok", healthy))
        await anyio.sleep(0.05)
        assert healthy.polls == 0  # waits for the slot
        await ctl.remove("default/hang")
        await until(lambda: healthy.polls == 1, "the healthy poll")
        assert "default/hang" not in ctl
    assert hanging.closed


async def test_a_hanging_scaler_times_out_and_the_object_polls_on() -> None:
    hanging = HangingScaler(1)
    async with Controller() as ctl:
        ctl.add(make("hang", hanging))
        await until(lambda: ctl.status("default/hang").polls == 1, "the timed-out poll")
        error = ctl.status("default/hang").last_error
        assert error is not None
        assert "no answer within 0.05s" in error
        ctl.wake("default/hang")
        await until(lambda: ctl.status("default/hang").polls == 2, "the next poll")


async def test_an_idle_object_holds_no_task_and_few_tracked_objects() -> None:
    objects = 300
    scalers = [StaticScaler(0) for _ in range(objects)]
    async with Controller() as ctl:
        await anyio.sleep(0.05)
        gc.collect()
        tasks = len(asyncio.all_tasks())
        tracked = len(gc.get_objects())
        for i, scaler in enumerate(scalers):
            ctl.add(make(f"idle-{i}", scaler))
        await until(
            lambda: all(ctl.status(f"default/idle-{i}").polls == 1 for i in range(objects)),
            "every first poll",
        )
        await anyio.sleep(0.05)
        gc.collect()
        assert len(asyncio.all_tasks()) == tasks  # a heap entry each, no task
        per_object = (len(gc.get_objects()) - tracked) / objects
        # config, scaler, target, engine, the controller's entry and status (about 22
        # with this scaler and target; 38 with a task per object)
        assert per_object < 28, per_object


async def test_wake_ups_leave_no_growing_heap_behind() -> None:
    scaler = StaticScaler(0)
    async with Controller() as ctl:
        ctl.add(make("woken", scaler))
        await until(lambda: ctl.status("default/woken").polls == 1, "the first poll")
        for n in range(2, 302):  # each wake-up leaves a stale item at the old due time
            ctl.wake("default/woken")
            await until(lambda n=n: ctl.status("default/woken").polls == n, f"poll {n}")  # type: ignore[misc]
        scheduler = ctl._scheduler
        assert scheduler is not None
        assert scheduler._slow_wheel.items > 0  # (polled every 600 s: a slow object)
        # compacted: one item per idle object
        assert scheduler._wheel.items + scheduler._slow_wheel.items <= 2 + 64 + 1


async def test_update_on_the_scheduler_keeps_the_state_and_polls_the_new_object() -> None:
    old, new = StaticScaler(6, target=2), StaticScaler(6, target=2)
    target = MemoryTarget(0, name="upd")
    spec = make("upd", old).spec
    first = ScaledObject(spec, target=target, scalers=[old], poll_timeout=0.05)
    async with Controller() as ctl:
        ctl.add(first)
        await until(lambda: ctl.status("default/upd").polls == 1, "the first poll")
        assert target.requested == 3
        state = first.state
        await ctl.update(ScaledObject(spec, target=target, scalers=[new], poll_timeout=0.05))
        assert ctl.get("default/upd").state is state  # the engine state moved over
        assert old.closed
        assert not target.closed  # reused
        await until(lambda: new.polls == 1, "the new object's first poll")
        assert ctl.status("default/upd").last_error is None
        assert len(ctl) == 1
    assert new.closed
    assert target.closed


async def test_a_poll_stopped_before_its_first_step_gives_its_slot_back() -> None:
    first, second = StaticScaler(0), StaticScaler(0)
    async with Controller(max_in_flight=1) as ctl:
        ctl.add(make("first", first))
        ctl.add(make("second", second))
        await until(lambda: second.polls == 1, "both first polls")
        scheduler = ctl._scheduler
        assert scheduler is not None
        entry = ctl._entries["default/first"]
        ctl.wake("default/first")
        scheduler._fire()  # the poll's task exists but has not run a step yet
        assert entry in scheduler.running
        scheduler.stop(entry)  # cancelled before its first step: no ``finally`` runs
        await until(lambda: entry not in scheduler.running, "the slot given back")
        ctl.wake("default/second")  # the only slot is free: the other object polls
        await until(lambda: second.polls == 2, "the other object's poll")


async def test_slow_objects_start_early_with_a_firing_timer_and_fast_ones_do_not() -> None:
    from eventscale.runtime._schedule import ObjectLoop
    from eventscale.runtime._scheduler import READY, RUNNING, Scheduler
    from eventscale.runtime.objects import ObjectStatus

    started: list[str] = []

    async def poll(entry: ObjectLoop, lag: float) -> None:
        started.append(entry.status.key.split("/")[1])

    now = 1000.0
    scheduler = Scheduler(asyncio.get_running_loop(), lambda: now, poll, 10, 1.0)
    entries = {}
    # (name, interval, due in): the timer fires for "due" at ``now``
    for name, interval, due_in in (
        ("due", 1.0, 0.0),
        ("slow-soon", 30.0, 0.008),  # in the open 10 ms slot, polled every 30 s: starts now
        ("fast-soon", 1.0, 0.004),  # a later 1 ms slot, polled every second: its own timer
        ("slow-later", 30.0, 0.012),  # the next 10 ms slot: its own timer
    ):
        obj = make(name, StaticScaler(0))
        entry = entries[name] = ObjectLoop(obj, ObjectStatus(obj.key), ())
        entry.interval = interval
        scheduler.add(entry, now + due_in)
    scheduler._fire()
    assert {n for n, e in entries.items() if e.state in (READY, RUNNING)} == {"due", "slow-soon"}
    await until(lambda: len(started) == 2, "the two polls")
    assert sorted(started) == ["due", "slow-soon"]
    # armed for the next one, the fast object's millisecond slot
    assert now + 0.002 < scheduler._timer_at <= now + 0.004
    for task in scheduler.close():
        await task


async def test_an_application_task_factory_makes_the_poll_tasks() -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: object, **kwargs: object) -> object:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[arg-type]

    previous = loop.get_task_factory()
    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        scaler = StaticScaler(0)
        async with Controller() as ctl:
            ctl.add(make("factory", scaler))
            await until(lambda: ctl.status("default/factory").polls == 1, "the first poll")
        assert "Scheduler._run" in made  # the poll's task came from the factory
    finally:
        loop.set_task_factory(previous)
