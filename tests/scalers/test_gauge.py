"""The ``gauge`` trigger: an in-process gauge read through the scaler registry."""

from __future__ import annotations

import threading

import pytest

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricType
from eventscale.scalers import Scaler, TriggerContext, create_scaler
from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler, gauges, set_gauge
from servers._proc import unique_name


def _ctx(metadata: dict[str, str], **kw: object) -> TriggerContext:
    return TriggerContext(metadata=metadata, trigger_type="gauge", **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_reads_the_gauge_a_process_sets() -> None:
    name = unique_name("gauge")
    scaler = create_scaler(_ctx({"name": name, "target": "10", "activationTarget": "2"}, index=3))
    assert isinstance(scaler, GaugeScaler)
    assert isinstance(scaler, Scaler)
    (spec,) = scaler.metric_specs()
    assert spec.name == f"s3-gauge-{name}"
    assert (spec.target, spec.activation_target) == (10.0, 2.0)
    assert spec.metric_type is MetricType.AVERAGE_VALUE

    set_gauge(name, 2)
    report = await scaler.get_metrics()
    assert (report.value_of(spec.name), report.is_active) == (2.0, False)

    thread = threading.Thread(target=gauges.add, args=(name, 35.5))
    thread.start()
    thread.join()
    report = await scaler.get_metrics()
    assert (report.value_of(spec.name), report.is_active) == (37.5, True)
    gauges.clear(name)


@pytest.mark.anyio
async def test_an_unset_gauge_is_an_error_not_zero() -> None:
    name = unique_name("gauge")
    scaler = create_scaler(_ctx({"name": name, "value": "5"}, name="backlog"))
    with pytest.raises(ScalerError, match="has not been set") as info:
        await scaler.get_metrics()
    assert info.value.trigger == "backlog"
    set_gauge(name, 0)
    report = await scaler.get_metrics()
    assert report.is_active is False
    gauges.clear(name)
    with pytest.raises(ScalerError):
        await scaler.get_metrics()


@pytest.mark.anyio
async def test_private_registry_metric_type_and_from_env() -> None:
    registry = GaugeRegistry()
    registry.set("jobs", 12)
    scaler = GaugeScaler("jobs", target=4, metric_type=MetricType.VALUE, registry=registry)
    assert (await scaler.get_metrics()).value_of("s0-gauge-jobs") == 12.0
    assert registry.names() == ["jobs"]
    with pytest.raises(ValueError, match="finite"):
        registry.set("jobs", float("nan"))

    ctx = _ctx(
        {"name": "a/b", "target": "3"},
        metric_type=MetricType.VALUE,
    )
    built = GaugeScaler.from_context(ctx)
    (spec,) = built.metric_specs()
    assert spec.name == "s0-gauge-a-b"
    assert spec.metric_type is MetricType.VALUE


def test_bad_metadata_names_every_field() -> None:
    with pytest.raises(ConfigError) as info:
        create_scaler(_ctx({"target": "0", "activationTarget": "x"}, path="spec.triggers[0]"))
    paths = info.value.all_paths()
    assert "spec.triggers[0].metadata.name" in paths
    assert "spec.triggers[0].metadata.target" in paths
    assert "spec.triggers[0].metadata.activationTarget" in paths


def test_the_old_memory_form_names_the_gauge_type() -> None:
    ctx = TriggerContext(metadata={"name": "jobs", "target": "5"}, trigger_type="memory")
    with pytest.raises(ConfigError, match="type 'gauge'"):
        create_scaler(ctx)
    with pytest.raises(ConfigError, match="must be greater than 0"):
        GaugeScaler("x", target=0)


def test_the_old_import_path_and_class_name_still_work() -> None:
    with pytest.warns(DeprecationWarning, match="eventscale.scalers.gauge"):
        import eventscale.scalers.memory as old
    assert old.MemoryScaler is GaugeScaler
    from eventscale import scalers

    assert scalers.MemoryScaler is GaugeScaler


@pytest.mark.anyio
async def test_an_unchanged_value_gives_the_same_report_and_a_change_a_new_one() -> None:
    registry = GaugeRegistry()
    scaler = GaugeScaler("g", target=5, registry=registry)
    registry.set("g", 3.0)
    first = await scaler.get_metrics()
    assert await scaler.get_metrics() is first  # (an idle poll allocates nothing)
    registry.set("g", 4.0)
    changed = await scaler.get_metrics()
    assert changed is not first
    assert changed.values[0].value == 4.0
    registry.set("g", 3.0)
    back = await scaler.get_metrics()
    assert back.values[0].value == 3.0
    assert back is not changed
