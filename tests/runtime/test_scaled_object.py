"""ScaledObject: poll, decide, apply; failures become report entries, never exceptions."""

from __future__ import annotations

import anyio
import pytest

from eventscale.engine import Rule
from eventscale.errors import ScalerError, TargetError
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.runtime.observability import Event, EventBus, EventKind
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, SequenceScaler, StaticScaler

pytestmark = pytest.mark.anyio


def spec(triggers: int = 1, **kwargs: object) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[TriggerSpec(type="gauge", name=f"t{i}") for i in range(triggers)],
        **kwargs,  # type: ignore[arg-type]
    )


async def test_reconcile_scales_from_zero_to_what_the_metric_asks() -> None:
    clock = ManualClock(1000)
    target = MemoryTarget(replicas=0)
    scaler = StaticScaler(14, target=5)
    so = ScaledObject(spec(), target=target, scalers=[scaler], clock=clock)
    report = await so.reconcile()
    assert report.applied
    assert report.decision.replicas == 3  # ceil(14 / 5), straight from zero in one step
    assert await target.get_replicas() == 3
    assert report.triggers[0].value == 14
    assert report.triggers[0].active


async def test_evaluate_applies_nothing_and_keeps_no_state() -> None:
    target = MemoryTarget(replicas=2)
    so = ScaledObject(
        spec(), target=target, scalers=[StaticScaler(40, target=5)], clock=ManualClock(0)
    )
    before = so.state
    report = await so.evaluate()
    # raw 8, limited by the default scale-up policies: max(2 + 4 pods, 2 * 100%) = 6
    assert report.decision.raw_replicas == 8
    assert report.decision.replicas == 6
    assert report.current_replicas == 2
    assert await target.get_replicas() == 2
    assert so.state == before
    override = await so.evaluate(current_replicas=4)
    assert override.current_replicas == 4


async def test_scaler_error_is_reported_and_holds_replicas() -> None:
    target = MemoryTarget(replicas=3)
    scaler = StaticScaler(0, target=5, error=ScalerError("broker down"))
    so = ScaledObject(spec(), target=target, scalers=[scaler], clock=ManualClock(0))
    report = await so.reconcile()
    assert not report.ok
    assert report.triggers[0].error is not None
    assert "broker down" in report.triggers[0].error
    assert report.triggers[0].value is None
    assert await target.get_replicas() == 3  # an error is not zero
    assert report.decision.rule in (Rule.HOLD_ON_ERROR, Rule.ERROR_BLOCKS_SCALE_DOWN)


class HangingScaler(StaticScaler):
    async def get_metrics(self) -> ScalerReport:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")


class GarbageScaler(StaticScaler):
    async def get_metrics(self) -> ScalerReport:
        return "seven"  # type: ignore[return-value]


class BuggyScaler(StaticScaler):
    async def get_metrics(self) -> ScalerReport:
        raise KeyError("amqp://guest:hunter2@rabbit/")


@pytest.mark.parametrize(
    ("scaler", "needle"),
    [
        pytest.param(HangingScaler(1), "no answer within 0.05s", id="hang"),
        pytest.param(GarbageScaler(1), "not a ScalerReport", id="garbage"),
        pytest.param(BuggyScaler(1), "KeyError", id="raises"),
    ],
)
async def test_misbehaving_scalers_become_errors(scaler: StaticScaler, needle: str) -> None:
    target = MemoryTarget(replicas=2)
    so = ScaledObject(
        spec(), target=target, scalers=[scaler], clock=ManualClock(0), poll_timeout=0.05
    )
    report = await so.reconcile()
    error = report.triggers[0].error
    assert error is not None
    assert needle in error
    assert "hunter2" not in error
    assert await target.get_replicas() == 2


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "infinite"),
        (float("-inf"), "infinite"),
        (-3.0, "negative"),
        (2e15, "above the limit of 1e+15"),
    ],
)
async def test_a_nan_inf_negative_or_huge_value_is_an_error_never_zero(
    value: float, needle: str
) -> None:
    target = MemoryTarget(replicas=8)
    so = ScaledObject(
        spec(), target=target, scalers=[StaticScaler(value, target=5)], clock=ManualClock(0)
    )
    report = await so.reconcile()
    error = report.triggers[0].error
    assert error is not None
    assert needle in error
    assert "t0" in error  # names the trigger
    assert await target.get_replicas() == 8  # not scaled to 1 on a value read as 0


async def test_the_largest_allowed_value_scales_exactly() -> None:
    target = MemoryTarget(replicas=1)
    so = ScaledObject(
        spec(max_replica_count=10**9),
        target=target,
        scalers=[StaticScaler(1e15, target=1e7)],
        clock=ManualClock(0),
    )
    report = await so.evaluate()
    assert report.triggers[0].error is None
    assert report.decision.raw_replicas == 10**8


class WordyTarget(MemoryTarget):
    async def get_replicas(self) -> int:
        raise TargetError("t" * 50_000, target="worker")


@pytest.mark.parametrize(
    "error",
    [ScalerError("x" * 50_000), RuntimeError("amqp://u:hunter2@h/ " + "y" * 50_000)],
    ids=["scaler-error", "bug"],
)
async def test_a_50000_character_error_is_cut_to_1_kib_with_a_marker(
    error: BaseException,
) -> None:
    scaler = StaticScaler(1, error=error)
    so = ScaledObject(spec(), target=WordyTarget(2), scalers=[scaler], clock=ManualClock(0))
    report = await so.reconcile()
    for message in (report.triggers[0].error, report.target_error):
        assert message is not None
        assert len(message) < 1200
        assert "more characters]" in message
        assert "hunter2" not in message


async def test_one_failing_trigger_does_not_hide_the_other() -> None:
    target = MemoryTarget(replicas=1)
    so = ScaledObject(
        spec(2),
        target=target,
        scalers=[
            StaticScaler(30, target=5, name="s0-a"),
            StaticScaler(error=ScalerError("x"), name="s1-b"),
        ],
        clock=ManualClock(0),
    )
    report = await so.reconcile()
    assert report.triggers[0].value == 30
    assert report.triggers[1].error is not None
    assert (
        await target.get_replicas() == 5
    )  # scale-up still allowed with a partial error (1 + 4 pods)


async def test_target_read_failure_decides_nothing() -> None:
    target = MemoryTarget(replicas=1)
    target.fail(TargetError("api down"))
    events: list[Event] = []
    bus = EventBus()
    bus.add_hook(events.append)
    so = ScaledObject(
        spec(),
        target=target,
        scalers=[StaticScaler(30, target=5)],
        clock=ManualClock(0),
        events=bus,
    )
    report = await so.reconcile()
    assert report.target_error is not None
    assert "api down" in report.target_error
    assert not report.applied
    assert any(e.kind is EventKind.TARGET_ERROR for e in events)
    target.recover()
    report = await so.reconcile()
    assert report.applied
    assert await target.get_replicas() == 5


async def test_events_tell_the_story() -> None:
    events: list[Event] = []
    bus = EventBus()
    bus.add_hook(events.append)
    target = MemoryTarget(replicas=0)
    so = ScaledObject(
        spec(),
        target=target,
        scalers=[StaticScaler(12, target=5)],
        clock=ManualClock(0),
        events=bus,
    )
    await so.reconcile()
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.POLL, EventKind.DECISION, EventKind.SCALE]
    scale = events[-1]
    assert (scale.from_replicas, scale.to_replicas) == (0, 3)
    assert scale.reason
    assert target.history[-1].reason == scale.reason


async def test_full_curve_zero_to_n_and_back_after_cooldown() -> None:
    clock = ManualClock(0)
    target = MemoryTarget(replicas=0)
    scaler = SequenceScaler([0, 50, 50, 0], target=10)
    so = ScaledObject(spec(cooldown_period=60), target=target, scalers=[scaler], clock=clock)
    assert (await so.reconcile()).decision.replicas == 0
    clock.advance(30)
    assert (await so.reconcile()).decision.replicas == 4  # 0 -> 4 pods: the scale-up policy
    clock.advance(30)
    await so.reconcile()
    # inactive from here on: nothing happens until cooldown has passed since last activity
    clock.advance(30)
    assert (await so.reconcile()).decision.replicas > 0
    clock.advance(400)
    report = await so.reconcile()
    assert report.decision.replicas == 0, report.decision.reason
    assert target.requested_counts()[-1] == 0


async def test_state_survives_a_restart_through_json() -> None:
    from eventscale.engine import ScalingState

    clock = ManualClock(0)
    target = MemoryTarget(replicas=0)
    so = ScaledObject(spec(), target=target, scalers=[StaticScaler(50, target=10)], clock=clock)
    await so.reconcile()
    saved = so.state.to_json()
    clock.advance(30)
    scaler = StaticScaler(10, target=10)
    resumed = ScaledObject(
        spec(), target=target, scalers=[scaler], clock=clock, state=ScalingState.from_json(saved)
    )
    report = await resumed.reconcile()
    # The stabilization window remembers the recommendation of 5 made before the restart,
    # so the count stays at 4 instead of dropping to 1.
    assert report.decision.replicas == 4
    assert report.decision.rule is Rule.STABILIZED_DOWN


async def test_aclose_closes_scalers_and_target() -> None:
    target = MemoryTarget(replicas=0)
    scaler = StaticScaler(1)
    async with ScaledObject(spec(), target=target, scalers=[scaler], clock=ManualClock(0)):
        pass
    assert scaler.closed
    assert target.closed


def test_scaler_count_must_match_triggers() -> None:
    from eventscale.errors import ConfigError

    with pytest.raises(ConfigError, match="2 scalers given for 1 triggers"):
        ScaledObject(spec(), target=MemoryTarget(), scalers=[StaticScaler(), StaticScaler()])


async def test_metric_spec_is_reported_in_trigger_results() -> None:
    scaler = StaticScaler(3, target=7, activation_target=2, name="s0-custom")
    so = ScaledObject(spec(), target=MemoryTarget(), scalers=[scaler], clock=ManualClock(0))
    result = (await so.evaluate()).triggers[0]
    assert (result.metric_name, result.target, result.activation_target, result.metric_type) == (
        "s0-custom",
        7,
        2,
        "AverageValue",
    )
    assert isinstance(scaler.metric_specs()[0], MetricSpec)
