"""The live table of ``eventscale run``: KEDA's condition columns and the recent events,
driven by a controller running real objects (scripted scalers, in-memory targets)."""

from __future__ import annotations

import io
import re

import anyio
import pytest

from eventscale.cli._live import HEADER, RECENT, LiveView
from eventscale.errors import ScalerError
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import Fallback, ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio


def make(
    name: str,
    scalers: list[StaticScaler],
    clock: ManualClock,
    *,
    fallback: Fallback | None = None,
    annotations: dict[str, str] | None = None,
) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        namespace="shop",
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name=f"t{i}") for i in range(len(scalers))],
        polling_interval=10,
        fallback=fallback,
        annotations=annotations or {},
    )
    return ScaledObject(spec, target=MemoryTarget(0, clock=clock), scalers=scalers, clock=clock)


def failing(name: str) -> StaticScaler:
    return StaticScaler(name=name, error=ScalerError("queue unreachable"))


async def test_conditions_and_recent_events_follow_the_objects() -> None:
    clock = ManualClock(1_000_000.0)
    view = LiveView(lambda key: "ScaledObject")
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(view)
        ctl.add(make("ok", [StaticScaler(6, target=2, name="s0-t0")], clock))
        ctl.add(make("down", [failing("s0-t0")], clock))
        ctl.add(
            make(
                "covered",
                [failing("s0-t0")],
                clock,
                fallback=Fallback(failure_threshold=1, replicas=2),
            )
        )
        ctl.add(make("partial", [StaticScaler(4, name="s0-t0"), failing("s1-t1")], clock))
        ctl.add(
            make(
                "held",
                [StaticScaler(9, name="s0-t0")],
                clock,
                annotations={"autoscaling.keda.sh/paused": "true"},
            )
        )
        for _ in range(3):
            with anyio.fail_after(5):
                await clock.wait_for_sleepers(5)
            clock.advance(10)
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(5)
        cols = {key: dict(zip(HEADER, row.cells(), strict=True)) for key, row in view.rows.items()}
        assert {
            k: (c["READY"], c["ACTIVE"], c["FALLBACK"], c["PAUSED"]) for k, c in cols.items()
        } == {
            "shop/ok": ("True", "True", "False", "False"),
            "shop/down": ("False", "False", "False", "False"),
            "shop/covered": ("True", "True", "True", "False"),
            "shop/partial": ("Unknown", "True", "False", "False"),
            "shop/held": ("True", "False", "False", "True"),
        }
        assert cols["shop/ok"]["REPLICAS"] == "3"
        assert cols["shop/covered"]["REPLICAS"] == "2"  # the fallback replicas
        assert cols["shop/down"]["METRICS"] == "t0=error"
        # The scale actions of the first tick are still listed three ticks later.
        assert any("shop/ok scaled 0 -> 3:" in line for line in view.recent)
        assert any("shop/covered scaled 0 -> 2:" in line for line in view.recent)
        out = io.StringIO()
        view.render(out, "eventscale run (5 objects)")
        screen = out.getvalue()
        assert re.search(r"READY\s+ACTIVE\s+FALLBACK\s+PAUSED", screen)
        assert "Recent events:" in screen
        assert "shop/ok scaled 0 -> 3" in screen
        await ctl.remove("shop/held")
        assert "shop/held" not in view.rows


def test_recent_events_keep_the_newest_and_name_refused_edits() -> None:
    view = LiveView(lambda key: "ScaledJob")
    for i in range(RECENT + 3):
        view(
            Event(
                kind=EventKind.SCALE,
                time=1_000_000.0 + i,
                scaled_object="shop/job",
                from_replicas=i,
                to_replicas=i + 1,
                reason=f"step {i}",
            )
        )
    view(
        Event(
            kind=EventKind.CONFIG_ERROR,
            time=1_000_100.0,
            scaled_object="shop/job",
            error="spec.triggers[0].metadata.listLength: bad",
        )
    )
    assert len(view.recent) == RECENT
    assert "step 0" not in " ".join(view.recent)
    assert view.recent[-1].endswith(
        "shop/job: edit refused, the running version stays: "
        "spec.triggers[0].metadata.listLength: bad"
    )
    assert view.rows["shop/job"].kind == "ScaledJob"
    assert view.rows["shop/job"].fallback == "-"
