"""The closed loop: replicas drain the queue the triggers read; waits, cost and limits."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping

import pytest

from eventscale.errors import ConfigError
from eventscale.simulation import MetricKind, metric_kind, simulate_closed_loop
from eventscale.simulation.workload import Workload, constant, steps
from eventscale.spec import (
    Advanced,
    Behavior,
    Fallback,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingPolicy,
    ScalingRules,
    TriggerSpec,
)


def spec(
    *,
    list_length: str = "5",
    interval: float = 10,
    cooldown: float = 30,
    minimum: int = 0,
    maximum: int = 20,
    trigger: TriggerSpec | None = None,
    **extra: object,
) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[
            trigger or TriggerSpec(type="redis", name="jobs", metadata={"listLength": list_length})
        ],
        polling_interval=interval,
        cooldown_period=cooldown,
        min_replica_count=minimum,
        max_replica_count=maximum,
        **extra,  # type: ignore[arg-type]
    )


def test_scale_from_zero_waits_for_the_poll_and_the_start_up() -> None:
    # 1 item/s from t=0; the poll at 0 reads an empty list, the poll at 10 reads 10
    # (listLength 5: 2 replicas, each taking 10 items/s) ready at 40: the first item
    # waited 40 s, and everything is taken within two seconds of that.
    result = simulate_closed_loop(spec(), constant(1, 120), throughput=10, startup=30)
    first, second = result.steps[0], result.steps[1]
    assert (first.desired_replicas, first.metrics) == (0, {"jobs": 0.0})
    assert (second.desired_replicas, second.replicas, second.metrics) == (2, 0, {"jobs": 10.0})
    assert result.steps[4].time == 40
    assert result.steps[4].replicas == 2
    s = result.summary
    assert s.wait_max == 40
    assert s.peak_backlog == 40
    assert s.items_left == 0
    assert s.items_arrived == 120
    # zero until the poll at 10, and again once the cooldown passed with the list empty
    assert s.time_at_zero >= 10
    assert s.replica_seconds > s.ready_replica_seconds  # starting replicas are paid for


def test_enough_replicas_from_the_start_means_no_wait_and_a_known_cost() -> None:
    result = simulate_closed_loop(
        spec(minimum=3), constant(5, 600), throughput=2, initial_replicas=3
    )
    s = result.summary
    assert (s.wait_p50, s.wait_p95, s.wait_max, s.peak_backlog) == (0, 0, 0, 0)
    assert s.replica_seconds == 3 * 600
    assert s.ready_replica_seconds == 3 * 600
    assert s.scale_actions == 0
    assert s.time_at_zero == 0


def test_too_few_replicas_let_the_queue_grow_and_the_waits_show_it() -> None:
    # max 1 replica at 1 item/s against 2 items/s: the backlog grows by 1 a second
    result = simulate_closed_loop(
        spec(maximum=1, minimum=1), constant(2, 100), throughput=1, initial_replicas=1
    )
    s = result.summary
    assert s.items_left == pytest.approx(100)
    assert s.peak_backlog == pytest.approx(100)
    # half of the items were never taken: the percentiles count their waits so far
    assert s.wait_p95 >= 45
    assert s.wait_max >= 50


def test_scaling_out_drains_the_queue_the_trigger_reads() -> None:
    # a burst of 10 s at 50/s then nothing; listLength 10, each replica 5 items/s
    work = steps([(0, 50.0), (10, 0.0)], 300)
    result = simulate_closed_loop(spec(list_length="10", interval=5), work, throughput=5)
    backlogs = [s.metrics["jobs"] for s in result.steps]
    peak = max(b for b in backlogs if b is not None)
    assert peak > 0
    assert backlogs[-1] == 0  # the replicas drained what the burst left
    assert result.summary.items_left == 0
    assert max(s.desired_replicas for s in result.steps) > 1
    # and the cooldown brought it back to zero once the list stayed empty
    assert result.steps[-1].desired_replicas == 0
    assert result.summary.scale_actions >= 2


def test_more_capacity_costs_more_and_waits_less() -> None:
    work = constant(8, 1800)
    costs, waits = [], []
    for replicas in (2, 4, 8):
        s = simulate_closed_loop(
            spec(minimum=replicas, maximum=replicas, interval=30),
            work,
            throughput=2,
            initial_replicas=replicas,
        ).summary
        costs.append(s.replica_seconds)
        waits.append(s.wait_p95)
    assert costs == sorted(costs)
    assert waits == sorted(waits, reverse=True)
    assert waits[0] > waits[-1]


def test_a_failure_window_is_a_failed_read_not_an_empty_queue() -> None:
    fallback = Fallback(failure_threshold=1, replicas=7)
    work = constant(4, 200)
    result = simulate_closed_loop(spec(fallback=fallback), work, throughput=1, failures=[(50, 100)])
    inside = [s for s in result.steps if 50 <= s.time < 100]
    assert inside
    assert all(s.metrics == {"jobs": None} for s in inside)
    # after the threshold the fallback replicas hold, never zero
    assert inside[-1].desired_replicas == 7
    assert inside[-1].rule == "fallback"
    after = [s for s in result.steps if s.time >= 100]
    assert after[0].metrics["jobs"] is not None


def test_without_the_timeline_the_summary_is_the_same() -> None:
    work = steps([(0, 3.0), (200, 12.0), (400, 0.0)], 900)
    kept = simulate_closed_loop(spec(), work, throughput=2, startup=15)
    bare = simulate_closed_loop(spec(), work, throughput=2, startup=15, keep_timeline=False)
    assert bare.steps == ()
    assert bare.summary == kept.summary
    assert len(kept.backlog) == len(kept.replicas) == 900


def test_the_json_shape() -> None:
    result = simulate_closed_loop(spec(), constant(1, 30), throughput=1)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["kind"] == "ScaledObject"
    assert set(doc["summary"]) >= {
        "waitP50",
        "waitP95",
        "waitP99",
        "waitMax",
        "peakBacklog",
        "replicaSeconds",
        "scaleActions",
        "timeAtZero",
    }
    assert [row["time"] for row in doc["timeline"]] == [0, 10, 20]
    assert "timeline" not in result.to_dict(timeline=False)


@pytest.mark.parametrize(
    ("type_", "metadata", "kind"),
    [
        ("redis", {}, MetricKind.LENGTH),
        ("redis-cluster", {}, MetricKind.LENGTH),
        ("kafka", {}, MetricKind.LAG),
        ("rabbitmq", {"protocol": "http"}, MetricKind.LAG),
        ("rabbitmq", {"host": "http://guest:guest@localhost:15672/"}, MetricKind.LAG),
        ("rabbitmq", {"protocol": "http", "excludeUnacknowledged": "true"}, MetricKind.LENGTH),
        ("rabbitmq", {"host": "amqp://localhost"}, MetricKind.LENGTH),
        ("rabbitmq", {"mode": "MessageRate"}, MetricKind.RATE),
        ("azure-queue", {}, MetricKind.LAG),
        ("azure-servicebus", {}, MetricKind.LENGTH),
        ("memory", {}, None),
        ("gauge", {}, None),
        ("cron", {}, None),
    ],
)
def test_what_a_trigger_type_reads(
    type_: str, metadata: Mapping[str, str], kind: MetricKind | None
) -> None:
    assert metric_kind(TriggerSpec(type=type_, metadata=metadata)) is kind


def test_kafka_lag_counts_the_items_being_worked_on() -> None:
    kafka = TriggerSpec(type="kafka", name="lag", metadata={"lagThreshold": "5"})
    redis = TriggerSpec(type="redis", name="lag", metadata={"listLength": "5"})
    work = constant(3, 60)
    lag = simulate_closed_loop(
        spec(trigger=kafka, minimum=2), work, throughput=1, initial_replicas=2
    )
    length = simulate_closed_loop(
        spec(trigger=redis, minimum=2), work, throughput=1, initial_replicas=2
    )
    waiting = length.steps[1].metrics["lag"]
    assert waiting is not None
    assert waiting > 0
    assert lag.steps[1].metrics["lag"] == pytest.approx(waiting + 2)


def test_age_and_an_explicit_kind_for_an_unknown_type() -> None:
    gauge = TriggerSpec(type="gauge", name="age", metadata={"target": "20"})
    with pytest.raises(ConfigError, match="give its metric kind") as info:
        simulate_closed_loop(spec(trigger=gauge), constant(1, 60), throughput=1)
    assert info.value.path == "spec.triggers[0]"
    result = simulate_closed_loop(spec(trigger=gauge), constant(1, 60), throughput=5, kinds=["age"])
    assert result.kinds == (MetricKind.AGE,)
    assert result.steps[1].metrics["age"] == 10  # the oldest item, from t=0, at t=10
    with pytest.raises(ConfigError, match="not one of") as bad:
        simulate_closed_loop(spec(trigger=gauge), constant(1, 60), throughput=5, kinds=["size"])
    assert bad.value.path == "metric[0]"


def test_scale_up_policies_limit_the_climb() -> None:
    rules = ScalingRules(
        policies=(ScalingPolicy(type=PolicyType.PODS, value=1, period_seconds=60),)
    )
    advanced = Advanced(
        horizontal_pod_autoscaler_config=HPAConfig(behavior=Behavior(scale_up=rules))
    )
    result = simulate_closed_loop(
        spec(advanced=advanced, minimum=1), constant(50, 300), throughput=1, initial_replicas=1
    )
    desired = [s.desired_replicas for s in result.steps]
    assert all(b - a <= 1 for a, b in itertools.pairwise(desired))


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"throughput": 0}, "throughput"),
        ({"throughput": float("nan")}, "throughput"),
        ({"throughput": 1, "startup": -1}, "startup"),
        ({"throughput": 1, "failures": [(5, 5)]}, "failures[0]"),
        ({"throughput": 1, "initial_replicas": -1}, "initial_replicas"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        simulate_closed_loop(spec(), constant(1, 10), **kwargs)  # type: ignore[arg-type]
    assert info.value.path == path


def test_a_workload_coarser_than_the_polling_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not exceed") as info:
        simulate_closed_loop(spec(interval=1), Workload((1.0,) * 10, resolution=2), throughput=1)
    assert info.value.path == "workload.resolution"


def test_more_metric_kinds_than_triggers_is_an_error() -> None:
    with pytest.raises(ConfigError, match="2 metric kinds for 1 triggers") as info:
        simulate_closed_loop(spec(), constant(1, 10), throughput=1, kinds=["length", "lag"])
    assert info.value.path == "metric"
