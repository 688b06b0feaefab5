"""The ``cpu`` and ``memory`` triggers: KEDA's metadata, the target capability, errors."""

from __future__ import annotations

import pytest

from eventscale.engine.resources import ResourceTarget
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricType
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.resource import ResourceScaler
from eventscale.targets.memory import MemoryTarget
from eventscale.targets.resources import ContainerResources, PodResources

pytestmark = pytest.mark.anyio


def _ctx(
    trigger_type: str,
    metadata: dict[str, str],
    metric_type: MetricType = MetricType.AVERAGE_VALUE,
    **kw: object,
) -> TriggerContext:
    return TriggerContext(
        metadata=metadata,
        trigger_type=trigger_type,
        metric_type=metric_type,
        path="spec.triggers[0]",
        **kw,  # type: ignore[arg-type]
    )


def _scaler(
    trigger_type: str,
    metadata: dict[str, str],
    metric_type: MetricType = MetricType.UTILIZATION,
) -> ResourceScaler:
    scaler = create_scaler(_ctx(trigger_type, metadata, metric_type))
    assert isinstance(scaler, ResourceScaler)
    return scaler


@pytest.mark.parametrize(
    ("trigger_type", "metadata", "metric_type", "kind", "target", "container"),
    [
        ("cpu", {"value": "50"}, MetricType.UTILIZATION, ResourceTarget.UTILIZATION, 50, None),
        (
            "cpu",
            {"value": "50", "containerName": "foo"},
            MetricType.UTILIZATION,
            ResourceTarget.UTILIZATION,
            50,
            "foo",
        ),
        (
            "cpu",
            {"type": "Utilization", "value": "60"},
            MetricType.AVERAGE_VALUE,
            ResourceTarget.UTILIZATION,
            60,
            None,
        ),
        (
            "cpu",
            {"value": "500m"},
            MetricType.AVERAGE_VALUE,
            ResourceTarget.AVERAGE_VALUE,
            0.5,
            None,
        ),
        (
            "memory",
            {"type": "AverageValue", "value": "512Mi"},
            MetricType.UTILIZATION,  # metadata.type wins, as in KEDA
            ResourceTarget.AVERAGE_VALUE,
            512 * 2**20,
            None,
        ),
        (
            "memory",
            {"value": "60"},
            MetricType.UTILIZATION,
            ResourceTarget.UTILIZATION,
            60,
            None,
        ),
    ],
)
def test_keda_metadata(
    trigger_type: str,
    metadata: dict[str, str],
    metric_type: MetricType,
    kind: ResourceTarget,
    target: float,
    container: str | None,
) -> None:
    scaler = _scaler(trigger_type, metadata, metric_type)
    assert (scaler.resource, scaler.kind, scaler.target, scaler.container) == (
        trigger_type,
        kind,
        target,
        container,
    )
    (spec,) = scaler.metric_specs()
    assert spec.name == f"s0-{trigger_type}"


@pytest.mark.parametrize(
    ("metadata", "metric_type", "message"),
    [
        ({}, MetricType.UTILIZATION, 'missing required parameter "value"'),
        ({"value": "50.5"}, MetricType.UTILIZATION, "integer percentage"),
        ({"value": "0"}, MetricType.UTILIZATION, "greater than 0"),
        ({"value": "lots"}, MetricType.AVERAGE_VALUE, "not a Kubernetes quantity"),
        ({"type": "Value", "value": "5"}, MetricType.AVERAGE_VALUE, "unknown metric type"),
        ({"value": "5"}, MetricType.VALUE, "unsupported metricType 'Value'"),
    ],
)
def test_bad_metadata(metadata: dict[str, str], metric_type: MetricType, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_scaler(_ctx("cpu", metadata, metric_type))


def test_the_old_gauge_form_of_memory_names_the_new_type() -> None:
    with pytest.raises(ConfigError, match="type 'gauge'") as info:
        create_scaler(_ctx("memory", {"name": "pending-jobs", "target": "10"}))
    assert info.value.all_paths()


async def test_reads_the_memory_target_and_reports_the_hpa_proposal() -> None:
    target = MemoryTarget(3)
    target.set_usage({"cpu": 0.3}, {"cpu": 0.5}, {"cpu": 0.7}, requests={"cpu": 1})
    scaler = _scaler("cpu", {"value": "30"})
    scaler.bind_target(target)
    report = await scaler.get_metrics()
    assert report.value_of("s0-cpu") == 5  # utilization 50% of a 30% target, 3 pods
    assert report.is_active is False  # cpu/memory never activate from zero

    target.set_usage({"memory": 100e6}, {"memory": 300e6}, requests={"memory": 200e6})
    memory = _scaler("memory", {"value": "50"})
    memory.bind_target(target)
    assert (await memory.get_metrics()).value_of("s0-memory") == 4


async def test_one_container_and_the_sum() -> None:
    target = MemoryTarget(2, clock=lambda: 10_000.0)
    pods = [
        PodResources(
            name=f"p{i}",
            containers=(
                ContainerResources(name="app", requests={"cpu": 1}),
                ContainerResources(name="sidecar", requests={"cpu": 1}),
            ),
            usage={"app": {"cpu": 1.0}, "sidecar": {"cpu": 0.0}},
            start_time=0.0,
            ready_since=0.0,
        )
        for i in range(2)
    ]
    target.set_pods(pods)
    whole = _scaler("cpu", {"value": "50"})
    whole.bind_target(target)
    assert (await whole.get_metrics()).value_of("s0-cpu") == 2  # 50%: within tolerance
    app = _scaler("cpu", {"value": "50", "containerName": "app"})
    app.bind_target(target)
    assert (await app.get_metrics()).value_of("s0-cpu") == 4  # 100% of a 50% target
    missing = _scaler("cpu", {"value": "50", "containerName": "nope"})
    missing.bind_target(target)
    with pytest.raises(ScalerError, match="container 'nope' not found"):
        await missing.get_metrics()


async def test_without_a_capable_target_every_poll_is_an_error() -> None:
    scaler = _scaler("cpu", {"value": "50"})
    with pytest.raises(ScalerError, match="needs a target that reports"):
        await scaler.get_metrics()
    scaler.bind_target(object())
    with pytest.raises(ScalerError, match="object cannot"):
        await scaler.get_metrics()


async def test_target_failures_and_missing_data_are_errors() -> None:
    target = MemoryTarget(1)
    scaler = _scaler("cpu", {"value": "50"})
    scaler.bind_target(target)
    with pytest.raises(ScalerError, match="no pod resources"):
        await scaler.get_metrics()
    target.set_usage({"cpu": 0.2})  # no request
    with pytest.raises(ScalerError, match="missing cpu request in container app"):
        await scaler.get_metrics()
    target.set_pods([PodResources(name="p", containers=(ContainerResources(name="app"),))])
    avg = _scaler("cpu", {"value": "100m"}, MetricType.AVERAGE_VALUE)
    avg.bind_target(target)
    with pytest.raises(ScalerError, match="did not receive metrics"):
        await avg.get_metrics()
    target.set_usage({"cpu": 0.2}, requests={"cpu": 1})
    target.fail(times=1)
    with pytest.raises(ScalerError, match="reading pod resources"):
        await scaler.get_metrics()


async def test_limits_are_the_denominator_when_the_target_says_so() -> None:
    # a Docker-like target: Utilization of the limits, a container without one is an error
    from eventscale.targets.resources import WorkloadResources

    class LimitsTarget(MemoryTarget):
        async def get_pod_resources(self) -> WorkloadResources:
            base = await super().get_pod_resources()
            return WorkloadResources(
                replicas=base.replicas,
                pods=base.pods,
                observed_at=base.observed_at,
                utilization_of="limits",
            )

    target = LimitsTarget(2)
    target.set_usage({"cpu": 0.9}, {"cpu": 0.9}, limits={"cpu": 1})
    scaler = _scaler("cpu", {"value": "45"})
    scaler.bind_target(target)
    assert (await scaler.get_metrics()).value_of("s0-cpu") == 4
    target.set_usage({"cpu": 0.9}, requests={"cpu": 1})
    with pytest.raises(ScalerError, match="missing cpu limit"):
        await scaler.get_metrics()
