"""Controller(freeze=...): resident objects leave the collector's walk, removed ones
are not kept forever, and leaving the controller gives everything back.

Real time only bounds how long a test waits (``freeze_after`` is a few ms here).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import anyio
import pytest

from eventscale.runtime.controller import Controller
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio


class CyclicScaler(StaticScaler):
    """A scaler caught in a reference cycle: only the cyclic collector can free it."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.me = self


def make(name: str, scaler: StaticScaler) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="t0")],
        polling_interval=600,
    )
    return ScaledObject(spec, target=MemoryTarget(1, name=name), scalers=[scaler])


async def until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    with anyio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - state the controller changes
            await anyio.sleep(0.005)
    if not predicate():
        pytest.fail(f"timed out waiting for {what}")


def tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}


@pytest.fixture(autouse=True)
def _unfrozen() -> None:
    if gc.get_freeze_count():  # (another test or plugin froze: start from nothing)
        gc.unfreeze()


async def test_frozen_objects_leave_the_walk_and_removed_ones_are_collected() -> None:
    scaler = CyclicScaler(3)
    gone = weakref.ref(scaler)
    kept = StaticScaler(2)
    async with Controller(freeze=True, freeze_after=0.02, grace=0.05) as ctl:
        ctl.add(make("cyclic", scaler))
        ctl.add(make("kept", kept))
        await until(lambda: ctl._freezer.frozen, "the first freeze")
        assert gc.get_freeze_count() > 0
        assert id(scaler) not in tracked_ids()  # in the permanent generation
        del scaler
        await ctl.remove("default/cyclic")
        await until(lambda: ctl._freezer.refreezes == 1, "the refreeze after the removal")
        assert ctl._freezer.frozen
        gc.collect()
        assert gone() is None  # collected, not kept in the permanent generation
        assert id(kept) not in tracked_ids()  # what is still held is frozen again
    assert gc.get_freeze_count() == 0  # leaving the block unfreezes
    assert id(kept) in tracked_ids()


async def test_without_a_refreeze_a_removed_cycle_would_stay() -> None:
    """The premise of the test above: frozen cyclic garbage is not collected."""
    scaler = CyclicScaler(3)
    gone = weakref.ref(scaler)
    gc.freeze()
    try:
        del scaler
        gc.collect()
        assert gone() is not None
    finally:
        gc.unfreeze()
    gc.collect()
    assert gone() is None


async def test_by_default_a_small_controller_does_not_freeze() -> None:
    async with Controller(freeze_after=0.01, grace=0.05) as ctl:
        ctl.add(make("small", StaticScaler(1)))
        await until(lambda: ctl.status("default/small").polls >= 1, "the first poll")
        await anyio.sleep(0.1)  # several watchdog periods past freeze_after
        assert not ctl._freezer.frozen
        assert gc.get_freeze_count() == 0


async def test_freeze_false_never_freezes() -> None:
    async with Controller(freeze=False, freeze_after=0.01, grace=0.05) as ctl:
        ctl.add(make("never", StaticScaler(1)))
        await anyio.sleep(0.1)
        assert gc.get_freeze_count() == 0
