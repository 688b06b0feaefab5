"""The Controller on the real clock (its default sleep): the asyncio fast path.

With ``anyio.sleep`` the loops park on a bare future between ticks instead of a
cancel scope or helper task; these tests check that a wake-up, a push scaler and a
shutdown still end that wait. Real time only bounds how long a test waits for
something that must happen (no timing asserts); ``pollingInterval`` is long enough
that no second tick can come from the schedule itself.
"""

from __future__ import annotations

import zlib

import anyio
import attrs
import pytest

from eventscale.metrics import ScalerReport
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio

INTERVAL = 600.0  # never reached within a test


def make(name: str, scaler: StaticScaler, target: MemoryTarget) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="t0")],
        polling_interval=INTERVAL,
    )
    return ScaledObject(spec, target=target, scalers=[scaler])


class GatedPushScaler(StaticScaler):
    """A push scaler whose ``wait_for_activity`` returns when the test opens the gate."""

    def __init__(self, value: float) -> None:
        super().__init__(value, target=5)
        self.gate = anyio.Event()
        self.watching = anyio.Event()

    async def wait_for_activity(self) -> None:
        self.watching.set()
        await self.gate.wait()

    async def get_metrics(self) -> ScalerReport:
        return await super().get_metrics()


async def wait_for(predicate: object, what: str) -> None:
    """Poll ``predicate`` (state that the controller changes from other tasks)."""
    assert callable(predicate)
    with anyio.fail_after(10, reason=f"waiting for {what}"):
        while not predicate():  # noqa: ASYNC110 - no event to wait on: plain state
            await anyio.sleep(0.005)


async def test_wake_ends_a_parked_wait_on_the_real_clock() -> None:
    scaler = StaticScaler(3, target=5)
    target = MemoryTarget(0)
    polls: list[Event] = []
    async with Controller() as ctl:
        ctl.events.add_hook(lambda e: polls.append(e) if e.kind is EventKind.POLL else None)
        ctl.add(make("woken", scaler, target))
        await wait_for(lambda: len(polls) == 1, "the first poll")
        await anyio.sleep(0.05)  # the loop is parked until +600 s now
        assert len(polls) == 1
        ctl.wake("default/woken")
        await wait_for(lambda: len(polls) == 2, "the poll the wake-up asked for")
        ctl.wake("default/woken")
        await wait_for(lambda: len(polls) == 3, "a second wake-up")
    assert target.closed


async def test_push_scaler_activates_from_zero_on_the_real_clock() -> None:
    scaler = GatedPushScaler(0)
    target = MemoryTarget(0)
    async with Controller() as ctl:
        ctl.add(make("pushed", scaler, target))
        await wait_for(lambda: scaler.polls == 1, "the first poll")
        with anyio.fail_after(10):
            await scaler.watching.wait()
        assert target.requested == 0
        scaler.value = 12
        scaler.gate.set()
        await wait_for(lambda: target.requested > 0, "activation by push")
        assert target.requested == 3  # ceil(12 / 5), long before the 600 s tick
    assert target.closed


async def test_leaving_the_block_ends_parked_loops_and_closes_everything() -> None:
    targets = [MemoryTarget(0, name=f"t{i}") for i in range(20)]
    scalers = [StaticScaler(i, target=5) for i in range(20)]
    ctl = Controller()
    async with ctl:
        for i, (scaler, target) in enumerate(zip(scalers, targets, strict=True)):
            ctl.add(make(f"o{i}", scaler, target))
        await wait_for(lambda: all(s.polls == 1 for s in scalers), "every first poll")
    assert all(t.closed for t in targets)
    assert all(s.closed for s in scalers)
    assert len(ctl) == 0


async def test_spread_shifts_only_the_second_tick_by_a_fixed_fraction() -> None:
    clock = ManualClock(1000.0)
    scalers = {name: StaticScaler(1, target=5) for name in ("a", "b", "c")}
    polls: list[Event] = []
    async with Controller(clock=clock, sleep=clock.sleep, spread=True) as ctl:
        ctl.events.add_hook(lambda e: polls.append(e) if e.kind is EventKind.POLL else None)
        for name, scaler in scalers.items():
            obj = make(name, scaler, MemoryTarget(0, clock=clock))
            obj.spec = attrs.evolve(obj.spec, polling_interval=10)
            obj.clock = clock
            ctl.add(obj)
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(3)
            while len(polls) < 9:
                deadline = clock.next_deadline  # step from tick to tick, in time order
                assert deadline is not None
                clock.set(deadline)
                await anyio.sleep(0.01)
                await clock.wait_for_sleepers(3)
    for name in scalers:
        times = [e.time - 1000.0 for e in polls if e.scaled_object == f"default/{name}"]
        shift = zlib.crc32(f"default/{name}".encode()) / 2**32 * 10
        assert 0 <= shift < 10
        # at once, then a fraction of the interval early, then on the shifted grid
        assert times[:3] == pytest.approx([0.0, 10 - shift, 20 - shift]), name
    second = {round(e.time, 6) for e in polls if e.time > 1000.0}
    assert len(second) > 3  # the three objects no longer poll at the same instants
