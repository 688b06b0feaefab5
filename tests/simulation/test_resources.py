"""``simulate()`` with cpu/memory triggers: the trace is what every ready pod uses.

Proposals are worked out by hand from the HPA's resource calculator
(docs/scalers/cpu-memory.md, "Simulation"): ``ceil(ratio * ready)`` outside the 10%
tolerance, the current count inside it; pods still starting count as 0 on a scale-up.
"""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.simulation import Trace, simulate
from eventscale.simulation.closed_loop import simulate_closed_loop
from eventscale.simulation.scaled_object import trigger_metric_specs
from eventscale.simulation.workload import constant
from eventscale.spec import (
    Advanced,
    Behavior,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingPolicy,
    ScalingRules,
    TriggerSpec,
)

# no stabilization, no step limit: each decision is the proposal itself
FREE = ScalingRules(
    stabilization_window_seconds=0,
    policies=(ScalingPolicy(type=PolicyType.PODS, value=1000, period_seconds=1),),
)


def cpu(value: str = "50", metric_type: MetricType = MetricType.UTILIZATION) -> TriggerSpec:
    return TriggerSpec(type="cpu", name="cpu", metadata={"value": value}, metric_type=metric_type)


def spec(*triggers: TriggerSpec, minimum: int = 1, maximum: int = 100) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="web",
        scale_target_ref=ScaleTargetRef(name="web"),
        triggers=triggers,
        polling_interval=10,
        cooldown_period=30,
        min_replica_count=minimum,
        max_replica_count=maximum,
        advanced=Advanced(
            horizontal_pod_autoscaler_config=HPAConfig(
                behavior=Behavior(scale_up=FREE, scale_down=FREE)
            )
        ),
    )


def desired(timeline: object) -> list[int]:
    return [s.desired_replicas for s in timeline.steps]  # type: ignore[attr-defined]


def test_utilization_proposals_follow_the_ready_pods() -> None:
    # 2 pods at 100% of a 50% target -> ceil(2 * 2) = 4; at 4 pods 55% is inside the
    # tolerance (1.1) -> 4; 20% -> ceil(0.4 * 4) = 2; 5% -> ceil(0.1 * 2) = 1.
    trace = Trace.from_text("time,cpu\n0,100\n10,55\n20,20\n30,5\n")
    timeline = simulate(spec(cpu()), trace, initial_replicas=2)
    assert desired(timeline) == [4, 4, 2, 1]
    assert [s.metrics["cpu"] for s in timeline.steps] == [100, 55, 20, 5]
    # only resource triggers: the object is always active, never below 1
    assert all(s.active for s in timeline.steps)


def test_average_value_is_usage_per_pod() -> None:
    memory = TriggerSpec(
        type="memory",
        name="mem",
        metadata={"value": "512Mi"},
        metric_type=MetricType.AVERAGE_VALUE,
    )
    (mspec,) = trigger_metric_specs(spec(memory))
    assert mspec.target == 512 * 2**20
    assert mspec.metric_type is MetricType.AVERAGE_VALUE
    # 3 pods using 1 GiB each against 512 MiB -> 6
    trace = Trace.from_text(f"time,mem\n0,{2**30}\n")
    assert desired(simulate(spec(memory), trace, initial_replicas=3)) == [6]


def test_starting_pods_count_as_unready_on_the_way_up() -> None:
    # At 0: 2 ready pods at 100% -> 4, ready 20 s later. At 10 the HPA sees 2 ready
    # pods at 100% and 2 pending: the pending count as 0 on a scale-up, so the ratio
    # is 100 * 2 / 4 / 50 = 1.0, inside the tolerance: keep 4 (not 8).
    trace = Trace.from_text("time,cpu\n0,100\n30,100\n")
    timeline = simulate(spec(cpu()), trace, initial_replicas=2, ready_delay=20)
    assert desired(timeline)[:2] == [4, 4]
    assert [s.replicas for s in timeline.steps][:4] == [2, 2, 4, 4]
    # once the 4 are ready, 100% of 50% doubles again
    assert desired(timeline)[3] == 8


def test_never_active_from_zero_and_no_pods_is_a_failure_not_zero() -> None:
    list_trigger = TriggerSpec(type="redis", name="list", metadata={"listLength": "5"})
    trace = Trace.from_text("time,list,cpu\n0,0,90\n20,50,90\n30,50,90\n")
    timeline = simulate(spec(list_trigger, cpu(), minimum=0), trace)
    first = timeline.steps[0]
    assert first.desired_replicas == 0
    assert not first.active
    assert "cpu failed" in first.reason  # no pod to read: an error, as the live trigger's
    assert "no pods" in first.reason
    # the list wakes it; then cpu at 90% of 50% over 10 ready pods asks for 18
    assert timeline.steps[2].desired_replicas == 10
    assert timeline.steps[3].desired_replicas == 18


def test_mixed_object_cpu_holds_above_target_and_lets_go_below() -> None:
    list_trigger = TriggerSpec(type="redis", name="list", metadata={"listLength": "5"})
    trace = Trace.from_text("time,list,cpu\n0,50,50\n20,0,50\n60,0,10\n70,0,10\n")
    timeline = simulate(spec(list_trigger, cpu()), trace, initial_replicas=1)
    by_time = {s.time: s.desired_replicas for s in timeline.steps}
    assert by_time[10] == 10  # the list asks 50 / 5
    assert by_time[20] == by_time[50] == 10  # list empty, cpu at target: held
    assert by_time[60] == 2  # 10% of 50% over 10 pods -> ceil(0.2 * 10)
    assert by_time[70] == 1  # ceil(0.2 * 2) = 1, the minimum


def test_bad_resource_metadata_is_a_config_error_with_the_path() -> None:
    bad = TriggerSpec(type="cpu", metadata={"value": "fifty"}, metric_type=MetricType.UTILIZATION)
    with pytest.raises(ConfigError) as info:
        trigger_metric_specs(spec(bad))
    assert "spec.triggers[0].metadata.value" in info.value.all_paths()


def test_an_empty_cell_is_a_failed_read() -> None:
    trace = Trace.from_text("time,cpu\n0,100\n10,\n")
    timeline = simulate(spec(cpu()), trace, initial_replicas=2)
    assert desired(timeline) == [4, 4]
    assert "failed" in timeline.steps[1].reason


def test_the_closed_loop_refuses_resource_triggers_by_name() -> None:
    with pytest.raises(ConfigError, match="cpu/memory") as info:
        simulate_closed_loop(spec(cpu()), constant(1, 60), throughput=1)
    assert info.value.path == "spec.triggers[0]"
