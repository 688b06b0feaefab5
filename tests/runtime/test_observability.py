"""Events, logging and Prometheus metrics, checked against what the controller did."""

from __future__ import annotations

import logging

import anyio
import pytest
from prometheus_client import CollectorRegistry

from eventscale.errors import ScalerError
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventBus, EventKind, PrometheusExporter
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio

START = 5000.0
PASSWORD = "s3cr3t-hunter2"


def two_trigger_object(
    name: str, clock: ManualClock, load: StaticScaler, flaky: StaticScaler, target: MemoryTarget
) -> ScaledObject:
    spec = ScaledObjectSpec(
        name=name,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="load"), TriggerSpec(type="gauge")],
        polling_interval=10,
    )
    return ScaledObject(spec, target=target, scalers=[load, flaky], clock=clock)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def run_ticks(
    ctl: Controller, clock: ManualClock, ticks: int, between: list[float] | None = None
) -> None:
    with anyio.fail_after(5):
        await clock.wait_for_sleepers(1)
    for i in range(ticks):
        clock.advance(between[i] if between else 10)
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)


async def test_prometheus_samples_match_the_events() -> None:
    registry = CollectorRegistry()
    exporter = PrometheusExporter(registry)
    clock = ManualClock(START)
    load = StaticScaler(14, target=5, name="s0-load")
    flaky = StaticScaler(error=ScalerError("queue missing"), name="s1-memory")
    target = MemoryTarget(0, clock=clock)
    events: list[Event] = []
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(exporter)
        ctl.events.add_hook(events.append)
        ctl.add(two_trigger_object("prom", clock, load, flaky, target))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        load.value = 22
        clock.advance(13)  # the tick due at +10 runs 3 s late
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
        flaky.error = None
        flaky.value = 0
        load.value = 4
        clock.advance(7)
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)

    so = "default/prom"
    polls = [e for e in events if e.kind is EventKind.POLL]
    decisions = [e for e in events if e.kind is EventKind.DECISION]
    scales = [e for e in events if e.kind is EventKind.SCALE]
    assert len(polls) == 3
    assert scales  # at least the activation from zero

    last = polls[-1]
    for trig in last.triggers:
        label = trig.name or str(trig.index)
        assert sample(registry, "eventscale_trigger_value", scaled_object=so, trigger=label) == (
            trig.value
        )
        assert sample(registry, "eventscale_trigger_active", scaled_object=so, trigger=label) == (
            1.0 if trig.active else 0.0
        )
    assert [t.name or str(t.index) for t in last.triggers] == ["load", "1"]
    assert sample(registry, "eventscale_trigger_value", scaled_object=so, trigger="load") == 4

    for label, index in (("load", 0), ("1", 1)):
        failed = sum(1 for p in polls if p.triggers[index].error is not None)
        assert sample(
            registry, "eventscale_trigger_errors_total", scaled_object=so, trigger=label
        ) == (failed or None)
    assert sum(1 for p in polls if p.triggers[1].error is not None) == 2

    assert sample(registry, "eventscale_desired_replicas", scaled_object=so) == (
        decisions[-1].desired_replicas
    )
    assert sample(registry, "eventscale_current_replicas", scaled_object=so) == (target.requested)
    assert sample(registry, "eventscale_last_scale_timestamp_seconds", scaled_object=so) == (
        scales[-1].time
    )
    lags = [p.lag for p in polls]
    assert lags == [0.0, 3.0, 0.0]
    assert sample(registry, "eventscale_loop_lag_seconds_count", scaled_object=so) == 3
    assert sample(registry, "eventscale_loop_lag_seconds_sum", scaled_object=so) == 3.0
    assert sample(registry, "eventscale_loop_lag_seconds_bucket", scaled_object=so, le="1.0") == 2


async def test_a_removed_object_stops_exporting() -> None:
    registry = CollectorRegistry()
    exporter = PrometheusExporter(registry)
    clock = ManualClock(START)
    target = MemoryTarget(0, clock=clock)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(exporter)
        ctl.add(
            two_trigger_object(
                "gone", clock, StaticScaler(3), StaticScaler(error=ScalerError("x")), target
            )
        )
        keep = MemoryTarget(0, clock=clock)
        ctl.add(two_trigger_object("kept", clock, StaticScaler(3), StaticScaler(1), keep))
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(2)
        assert sample(registry, "eventscale_desired_replicas", scaled_object="default/gone") == 3
        await ctl.remove("default/gone")
    names = {s.labels.get("scaled_object") for metric in registry.collect() for s in metric.samples}
    assert "default/gone" not in names
    assert "default/kept" in names


def test_the_exporter_needs_its_own_registry_per_instance() -> None:
    registry = CollectorRegistry()
    PrometheusExporter(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusExporter(registry)


# ----------------------------------------------------------------------------- event bus


async def test_a_slow_subscriber_loses_the_oldest_events_not_the_controller() -> None:
    bus = EventBus()
    async with bus.subscribe(buffer=2) as stream:
        for i in range(5):
            await bus.emit(Event(kind=EventKind.POLL, time=float(i), scaled_object="a/b"))
        assert bus.dropped == 3
        got = [stream.receive_nowait().time for _ in range(2)]
    assert got == [0.0, 1.0]  # what fit in the buffer; later events were dropped
    # emitting after the subscription ended is harmless
    await bus.emit(Event(kind=EventKind.POLL, time=9.0, scaled_object="a/b"))


async def test_logging_is_structured_and_never_shows_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class LeakyScaler(StaticScaler):
        async def get_metrics(self):  # type: ignore[no-untyped-def]
            raise ConnectionError(f"cannot reach amqp://app:{PASSWORD}@broker:5672/")

    clock = ManualClock(START)
    target = MemoryTarget(0, clock=clock)
    spec = ScaledObjectSpec(
        name="logged",
        scale_target_ref=ScaleTargetRef(name="logged"),
        triggers=[TriggerSpec(type="gauge", name="good"), TriggerSpec(type="gauge", name="bad")],
    )
    events: list[Event] = []
    caplog.set_level(logging.DEBUG, logger="eventscale")
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(events.append)
        ctl.add(
            ScaledObject(
                spec,
                target=target,
                scalers=[StaticScaler(2, name="s0-good"), LeakyScaler(name="s1-bad")],
                clock=clock,
            )
        )
        with anyio.fail_after(5):
            await clock.wait_for_sleepers(1)
    assert target.requested == 2
    scale = [r for r in caplog.records if getattr(r, "event", None) == "scale"]
    assert len(scale) == 1
    assert scale[0].levelno == logging.INFO
    assert scale[0].scaled_object == "default/logged"  # type: ignore[attr-defined]
    assert (scale[0].from_replicas, scale[0].to_replicas) == (0, 2)  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if getattr(r, "trigger", None) == "bad"]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING
    assert "ConnectionError" in failed[0].getMessage()
    assert PASSWORD not in caplog.text
    for event in events:
        assert PASSWORD not in repr(event)
        assert PASSWORD not in repr(event.to_dict())
    poll = next(e for e in events if e.kind is EventKind.POLL).to_dict()
    assert poll["scaledObject"] == "default/logged"
    assert [t["name"] for t in poll["triggers"]] == ["good", "bad"]
    assert poll["triggers"][1]["value"] is None
    assert "error" in poll["triggers"][1]
    assert "lag" in poll
    assert "desiredReplicas" not in poll  # None fields are left out
