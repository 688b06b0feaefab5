"""The Controller's isolation against any scaler behaviour (issue 19, defect 1).

A scaler may raise any exception (``CancelledError`` and other ``BaseException``s
included, but for interpreter exit), hang, ignore cancellation or block the event
loop briefly: the offending object is reported failed (status and an event) while the
other objects keep their schedule, and leaving the controller returns within a bound.
Real time only bounds how long a test waits (no assert on speed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio
import pytest

from eventscale.metrics import ScalerReport
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio

INTERVAL = 1.0


async def fast_sleep(seconds: float) -> None:
    """The controller's sleep in these tests: every interval lasts 10 ms of real time."""
    await anyio.sleep(0.01)


def make(name: str, scaler: StaticScaler, *, poll_timeout: float = 0.05) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="t0")],
        polling_interval=INTERVAL,
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


class CancelRaisingScaler(StaticScaler):
    """Raises ``CancelledError`` although nobody cancelled it."""

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        raise asyncio.CancelledError


class Weird(BaseException):
    """A BaseException that is neither cancellation nor interpreter exit."""


class BaseRaisingScaler(StaticScaler):
    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
        raise Weird("odd")


class ShieldedScaler(StaticScaler):
    """Shields its poll from cancellation until the test releases it."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.released = anyio.Event()

    def release(self) -> None:
        self.released.set()

    async def get_metrics(self) -> ScalerReport:
        self.polls += 1
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
        return await super().get_metrics()


class BlockingScaler(StaticScaler):
    """Blocks the event loop briefly on each poll."""

    async def get_metrics(self) -> ScalerReport:
        time.sleep(0.05)  # noqa: ASYNC251 - the misbehaviour under test
        return await super().get_metrics()


class CancelPushScaler(StaticScaler):
    """A push scaler whose watch raises ``CancelledError`` on its own."""

    def __init__(self) -> None:
        super().__init__(0)
        self.watches = 0

    async def wait_for_activity(self) -> None:
        self.watches += 1
        await anyio.sleep(0.01)
        raise asyncio.CancelledError


def errors_of(events: list[Event], key: str) -> list[str]:
    out: list[str] = []
    for e in events:
        if e.scaled_object != key:
            continue
        if e.error is not None:
            out.append(e.error)
        out.extend(t.error for t in e.triggers if t.error is not None)
    return out


@pytest.mark.parametrize(
    ("bad", "needle"),
    [(CancelRaisingScaler(1), "CancelledError"), (BaseRaisingScaler(1), "Weird: odd")],
    ids=["cancelled-error", "base-exception"],
)
async def test_a_scaler_raising_a_base_exception_fails_only_its_object(
    bad: StaticScaler, needle: str
) -> None:
    healthy = StaticScaler(3, target=1)
    events: list[Event] = []
    finished = False
    # the real clock (and so the controller's fast path): 1 s ticks
    async with Controller() as ctl:
        ctl.events.add_hook(events.append)
        ctl.add(make("ok", healthy))
        ctl.add(make("bad", bad))
        await until(lambda: bad.polls >= 2, "the bad object's second poll")
        polls = healthy.polls
        await until(lambda: healthy.polls > polls, "the healthy object polling on")
        status = ctl.status("default/bad")
        assert status.last_error is not None
        assert needle in status.last_error
        assert any(needle in e for e in errors_of(events, "default/bad"))
        assert ctl.status("default/ok").last_error is None
        finished = True
    assert finished  # the controller did not cancel the block
    assert healthy.closed
    assert bad.closed


async def test_a_push_watch_raising_cancelled_error_does_not_stop_the_controller() -> None:
    healthy, push = StaticScaler(3, target=1), CancelPushScaler()
    async with Controller(sleep=fast_sleep) as ctl:
        ctl.add(make("ok", healthy))
        ctl.add(make("push", push))
        await until(lambda: push.watches >= 2, "the watch failing twice")
        polls = healthy.polls
        await until(lambda: healthy.polls >= polls + 3, "the healthy object polling on")
        assert push.polls >= 1
    assert push.closed


@pytest.mark.parametrize("bad_type", [ShieldedScaler, StubbornScaler])
async def test_a_scaler_ignoring_cancellation_is_reported_and_shutdown_ends(
    bad_type: type[ShieldedScaler], caplog: pytest.LogCaptureFixture
) -> None:
    healthy, bad = StaticScaler(3, target=1), bad_type(1)
    events: list[Event] = []
    caplog.set_level(logging.WARNING, logger="eventscale.controller")
    with anyio.fail_after(20):
        async with Controller(sleep=fast_sleep, grace=0.2) as ctl:
            ctl.events.add_hook(events.append)
            ctl.add(make("ok", healthy))
            ctl.add(make("bad", bad))
            await until(lambda: ctl.status("default/bad").last_error is not None, "the report")
            status = ctl.status("default/bad")
            assert status.last_error is not None
            assert "ignores cancellation" in status.last_error
            stuck = [e for e in events if e.kind is EventKind.TARGET_ERROR]
            assert [e.scaled_object for e in stuck] == ["default/bad"]
            polls = healthy.polls
            await until(lambda: healthy.polls >= polls + 3, "the healthy object polling on")
            assert bad.polls == 1
    bad.release()  # the abandoned poll may end now (the test's event loop waits for it)
    # leaving returned: the stuck loop was abandoned (logged once), the rest closed
    assert healthy.closed
    abandoned = [r for r in caplog.records if "abandon" in r.getMessage()]
    assert len(abandoned) == 1
    assert "default/bad" in abandoned[0].getMessage()


async def test_remove_returns_for_an_object_stuck_in_a_shielded_poll() -> None:
    bad = ShieldedScaler(1)
    with anyio.fail_after(20):
        async with Controller(sleep=fast_sleep, grace=0.2) as ctl:
            ctl.add(make("bad", bad))
            await until(lambda: bad.polls == 1, "the stuck poll")
            await ctl.remove("default/bad")
            assert "default/bad" not in ctl
    bad.release()


async def test_a_scaler_blocking_the_loop_briefly_delays_but_never_stops_others() -> None:
    healthy, blocking = StaticScaler(3, target=1), BlockingScaler(1)
    async with Controller(sleep=fast_sleep) as ctl:
        ctl.add(make("ok", healthy, poll_timeout=1))
        ctl.add(make("blocking", blocking, poll_timeout=1))
        await until(lambda: blocking.polls >= 3, "the blocking object's polls")
        polls = healthy.polls
        await until(lambda: healthy.polls >= polls + 3, "the healthy object polling on")
        assert ctl.status("default/blocking").last_error is None
