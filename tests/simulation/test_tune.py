"""tune(): the grid, the ranking against a goal, settings applied to the spec, determinism."""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError
from eventscale.simulation import Goal, apply_settings, tune
from eventscale.simulation.closed_loop import simulate_closed_loop
from eventscale.simulation.workload import constant, poisson, sine_day
from eventscale.spec import PolicyType, ScaledObjectSpec, ScaleTargetRef, TriggerSpec


def spec() -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[
            TriggerSpec(type="redis", name="jobs", metadata={"listLength": "1000"}),
            TriggerSpec(type="kafka", name="lag", metadata={"lagThreshold": "1000"}),
        ],
        polling_interval=1,
        max_replica_count=10,
    )


def test_the_cheapest_setting_that_meets_the_goal_comes_first() -> None:
    # 1.5 items/s, 1 item/s per replica; the targets are so high that only the floor
    # matters: 0 or 1 replica falls behind, 2 keep up, 3 and 4 keep up at a higher cost
    result = tune(
        spec(),
        constant(1.5, 600),
        {"minReplicaCount": ["0", "1", "2", "3", "4"]},
        Goal(p95_wait=1),
        throughput=1,
    )
    order = [c.settings["minReplicaCount"] for c in result.candidates]
    assert order[:3] == ["2", "3", "4"]
    assert set(order[3:]) == {"0", "1"}
    assert [c.meets_goal for c in result.candidates] == [True, True, True, False, False]
    best = result.best
    assert best is not None
    assert best.spec.min_replica_count == 2
    assert best.summary.replica_seconds == pytest.approx(2 * 600)
    # the candidate's summary is what simulating its spec gives
    again = simulate_closed_loop(best.spec, constant(1.5, 600), throughput=1).summary
    assert again == best.summary


def test_no_setting_meeting_the_goal_gives_no_best_and_ranks_by_closeness() -> None:
    result = tune(
        spec(), constant(3, 300), {"minReplicaCount": ["1", "2"]}, Goal(max_wait=5), throughput=1
    )
    assert result.best is None
    assert [c.settings["minReplicaCount"] for c in result.candidates] == ["2", "1"]


def test_the_frontier_holds_only_undominated_candidates() -> None:
    work = poisson(sine_day(6, 4, duration=3600, period=3600), seed=5)
    result = tune(
        spec(),
        work,
        {
            "listLength": ["2", "5", "20"],
            "cooldownPeriod": ["30", "300"],
            "pollingInterval": ["1", "10"],
        },
        Goal(p95_wait=20),
        throughput=1,
    )
    front = result.frontier()
    assert front
    for cand in front:
        for other in result.candidates:
            assert not (
                other.summary.replica_seconds < cand.summary.replica_seconds
                and other.summary.wait_p95 < cand.summary.wait_p95
            )


def test_the_same_seed_gives_the_same_ranking_in_one_process_or_two() -> None:
    work = poisson(constant(4, 900), seed=11)
    grid = {
        "listLength": ["3", "10"],
        "cooldownPeriod": ["10", "60"],
        "pollingInterval": ["1", "5"],
    }
    one = tune(spec(), work, grid, Goal(p95_wait=10), throughput=1)
    two = tune(spec(), work, grid, Goal(p95_wait=10), throughput=1, workers=2)
    assert one == two
    assert one == tune(
        spec(), poisson(constant(4, 900), seed=11), grid, Goal(p95_wait=10), throughput=1
    )


def test_settings_reach_fields_behaviour_and_trigger_metadata() -> None:
    out = apply_settings(
        spec(),
        {
            "pollingInterval": "15",
            "minReplicaCount": "2",
            "listLength": "7",
            "triggers[1].lagThreshold": "40",
            "activationLagThreshold": "3",
            "scaleUp.pods": "4/30",
            "scaleDown.percent": "50",
            "scaleDown.stabilizationWindowSeconds": "60",
        },
    )
    assert out.polling_interval == 15
    assert out.min_replica_count == 2
    assert isinstance(out.min_replica_count, int)
    assert out.triggers[0].metadata["listLength"] == "7"
    assert out.triggers[1].metadata["lagThreshold"] == "40"
    # a key no trigger has goes to the first trigger
    assert out.triggers[0].metadata["activationLagThreshold"] == "3"
    behavior = out.behavior
    assert behavior is not None
    assert behavior.scale_up is not None
    assert behavior.scale_down is not None
    assert behavior.scale_up.policies is not None
    policy = behavior.scale_up.policies[0]
    assert (policy.type, policy.value, policy.period_seconds) == (PolicyType.PODS, 4, 30)
    assert behavior.scale_down.policies is not None
    assert behavior.scale_down.policies[0].period_seconds == 15
    assert behavior.scale_down.stabilization_window_seconds == 60
    assert spec().polling_interval == 1  # the original is untouched


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"pollingInterval": "often"}, "pollingInterval"),
        ({"triggers[5].listLength": "3"}, "triggers[5].listLength"),
        ({"scaleUp.pods": "x/15"}, "scaleUp.pods"),
        ({"cooldownPeriod": "inf"}, "cooldownPeriod"),
    ],
)
def test_bad_settings_name_their_path(settings: dict[str, str], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_settings(spec(), settings)
    assert info.value.path == path


def test_invalid_combinations_are_skipped_and_reported() -> None:
    result = tune(
        spec(),
        constant(1, 60),
        {"minReplicaCount": ["1", "20"]},
        Goal(p95_wait=5),
        throughput=1,
    )
    assert [c.settings for c in result.candidates] == [{"minReplicaCount": "1"}]
    assert len(result.invalid) == 1
    assert result.invalid[0][0] == {"minReplicaCount": "20"}
    with pytest.raises(ConfigError, match="no combination is valid"):
        tune(spec(), constant(1, 60), {"minReplicaCount": ["20"]}, Goal(p95_wait=5), throughput=1)


def test_the_grid_is_bounded() -> None:
    values = [str(v) for v in range(101)]
    with pytest.raises(ConfigError, match="limit of 10000"):
        tune(
            spec(),
            constant(1, 60),
            {"listLength": values, "cooldownPeriod": values},
            Goal(p95_wait=5),
            throughput=1,
        )
    with pytest.raises(ConfigError, match="at least one value"):
        tune(spec(), constant(1, 60), {"listLength": []}, Goal(p95_wait=5), throughput=1)
