"""The HPA's resource replica calculator, table-tested with the cases of Kubernetes'
``pkg/controller/podautoscaler/replica_calculator_test.go`` that apply to one pod list.

Those tests run with a 2-minute cpu initialization period and a 10-second initial
readiness delay; a "cool" pod started 3 minutes ago, a "hot" one 30 seconds ago; every
sample is taken now with a one-minute window, and a pod's Ready condition changed at
its start. Per-pod numbers are used (the Go tests split them over two containers,
which leaves every ratio unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from eventscale.engine import ScalingState, decide
from eventscale.engine.hpa import Tolerance
from eventscale.engine.resources import (
    PodSample,
    ResourceTarget,
    resource_replicas,
)
from eventscale.spec import Advanced, ScalingModifiers, TriggerSpec

from .helpers import make_spec, ok

NOW = 10_000.0
COOL = NOW - 180.0
HOT = NOW - 30.0
UTIL = ResourceTarget.UTILIZATION
AVG = ResourceTarget.AVERAGE_VALUE


def pods(
    levels: Sequence[float],
    *,
    count: int | None = None,
    requests: Sequence[float | None] | None = None,
    ready: Sequence[bool] | None = None,
    phase: Sequence[str] | None = None,
    start: Sequence[float] | None = None,
    deleting: Sequence[bool] | None = None,
) -> list[PodSample]:
    """Pods as the Go test builds them; ``levels`` (millicores) for the first pods."""
    n = count if count is not None else len(levels)
    out = []
    for i in range(n):
        started = start[i] if start else COOL
        out.append(
            PodSample(
                name=f"pod-{i}",
                request=(requests[i] if requests else 1.0),
                usage=levels[i] / 1000 if i < len(levels) else None,
                phase=phase[i] if phase else "Running",
                deleting=deleting[i] if deleting else False,
                ready=ready[i] if ready else True,
                ready_since=started,
                start_time=started,
                sampled_at=NOW,
                window=60.0,
            )
        )
    return out


def calc(
    samples: Sequence[PodSample],
    target: float,
    current: int,
    kind: ResourceTarget = UTIL,
    cpu: bool = True,
) -> int:
    return resource_replicas(
        samples,
        target=target,
        kind=kind,
        current=current,
        now=NOW,
        cpu=cpu,
        cpu_initialization_period=120.0,
        initial_readiness_delay=10.0,
    ).replicas


T, F = True, False

CASES = [
    # (id, pods, target, current, expected)
    ("ScaleUp", pods([300, 500, 700]), 30, 3, 5),
    ("ScaleUpUnreadyLessScale", pods([300, 500, 700], ready=[F, T, T]), 30, 3, 4),
    ("ScaleUpHotCpuLessScale", pods([300, 500, 700], start=[HOT, COOL, COOL]), 30, 3, 4),
    ("ScaleUpUnreadyNoScale", pods([400, 500, 700], ready=[T, F, F]), 30, 3, 3),
    (
        "ScaleUpIgnoresFailedPods",
        pods(
            [500, 700, 0, 0],
            ready=[T, T, F, F],
            phase=["Running", "Running", "Failed", "Failed"],
        ),
        30,
        2,
        4,
    ),
    (
        "ScaleUpIgnoresDeletionPods",
        pods([500, 700, 0, 0], ready=[T, T, F, F], deleting=[F, F, T, T]),
        30,
        2,
        4,
    ),
    ("ScaleDown", pods([100, 300, 500, 250, 250]), 50, 5, 3),
    (
        "ScaleDownIncludeUnreadyPods",
        pods([100, 300, 500, 250, 250], ready=[T, T, T, F, F]),
        50,
        5,
        2,
    ),
    (
        "ScaleDownExcludeUnscheduledPods",
        pods(
            [100],
            count=5,
            ready=[T, F, F, F, F],
            phase=["Running", "Pending", "Pending", "Pending", "Pending"],
        ),
        50,
        5,
        1,
    ),
    (
        "ScaleDownIgnoreHotCpuPods",
        pods([100, 300, 500, 250, 250], start=[COOL, COOL, COOL, HOT, HOT]),
        50,
        5,
        2,
    ),
    (
        "ScaleDownIgnoresFailedPods",
        pods(
            [100, 300, 500, 250, 250, 0, 0],
            ready=[T, T, T, T, T, F, F],
            phase=["Running"] * 5 + ["Failed"] * 2,
        ),
        50,
        5,
        3,
    ),
    ("Tolerance", pods([1010, 1030, 1020], requests=[0.9, 1.0, 1.1]), 100, 3, 3),
    ("MissingMetrics", pods([400, 95], count=4), 100, 4, 3),
    ("MissingMetricsNoChangeEq", pods([1000], count=2), 100, 2, 2),
    ("MissingMetricsNoChangeGt", pods([1900], count=2), 100, 2, 2),
    ("MissingMetricsNoChangeLt", pods([600], count=2), 100, 2, 2),
    ("MissingMetricsUnreadyChange", pods([100, 450], count=3, ready=[F, T, T]), 50, 3, 3),
    (
        "MissingMetricsHotCpuNoChange",
        pods([100, 450], count=3, start=[HOT, COOL, COOL]),
        50,
        3,
        3,
    ),
    ("MissingMetricsUnreadyScaleUp", pods([100, 2000], count=3, ready=[F, T, T]), 50, 3, 4),
    (
        "MissingMetricsHotCpuScaleUp",
        pods([100, 2000], count=3, ready=[F, T, T], start=[HOT, COOL, COOL]),
        50,
        3,
        4,
    ),
    (
        "MissingMetricsUnreadyScaleDown",
        pods([100, 100, 100], count=4, ready=[F, T, T, T]),
        50,
        4,
        3,
    ),
    ("DuringRollingUpdateWithMaxSurge", pods([100, 100], count=3), 50, 2, 2),
]


@pytest.mark.parametrize(
    ("samples", "target", "current", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hpa_replica_calculator_cases(
    samples: list[PodSample], target: float, current: int, expected: int
) -> None:
    assert calc(samples, target, current) == expected


def test_computed_tolerance() -> None:
    # TestReplicaCalcComputedToleranceAlgImplementation: 10 pods at 150m, requests 300m
    # spread with jitter; a target just outside the tolerance scales down, one just
    # inside does not.
    requests = [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3]
    samples = pods([150] * 10, requests=requests)
    target = abs(1 / (2.0 * 0.9)) + 0.01
    ratio = 1500 / (3000 * target)
    expected = -(-int(ratio * 10 * 1000) // 1000)  # ceil
    assert calc(samples, int(target * 100), 10) == expected
    assert calc(samples, int((abs(1 / (2.0 * 0.9)) + 0.004) * 100), 10) == 10


def test_utilization_reports_the_integer_percent() -> None:
    answer = resource_replicas(
        pods([100, 300, 500, 250, 250]), target=50, kind=UTIL, current=5, now=NOW
    )
    assert answer.usage == 28
    assert (answer.ready, answer.unready, answer.missing, answer.ignored) == (5, 0, 0, 0)


def test_memory_has_no_readiness_rules() -> None:
    # an unready pod's memory counts (groupPods checks readiness for cpu only)
    samples = pods([300, 500, 700], ready=[F, T, T])
    assert calc(samples, 30, 3, cpu=False) == 5
    assert calc(samples, 30, 3, cpu=True) == 4


def test_average_value() -> None:
    # calcPlainMetricReplicas: the average over ready pods against the target per pod
    assert calc(pods([20000, 10000, 30000]), 15, 3, AVG) == 4
    assert calc(pods([12000] * 5), 20, 5, AVG) == 3
    assert calc(pods([20000, 21000, 21000]), 20, 3, AVG) == 3  # within tolerance


def test_average_value_missing_pods_use_the_target_on_scale_down() -> None:
    # 2 pods at 0.1 of a 1.0 target, 2 missing: ratio 0.1 -> missing count as 1.0 each
    # -> new ratio (0.1+0.1+1+1)/4/1 = 0.55 -> ceil(0.55 * 4) = 3
    assert calc(pods([100, 100], count=4), 1.0, 4, AVG) == 3


def test_tolerance_is_configurable() -> None:
    samples = pods([1010, 1030, 1020], requests=[0.9, 1.0, 1.1])
    assert calc(samples, 100, 3) == 3
    answer = resource_replicas(
        samples,
        target=100,
        kind=UTIL,
        current=3,
        now=NOW,
        tolerance=Tolerance(scale_up=0.0, scale_down=0.0),
    )
    assert answer.replicas == 4  # ceil(1.02 * 3)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        pytest.param([], "no pods", id="no-pods"),
        pytest.param(pods([], count=3), "did not receive metrics", id="empty-metrics"),
        pytest.param(pods([200], requests=[None]), "missing request", id="empty-cpu-request"),
        pytest.param(pods([200, 200], ready=[F, F]), "did not receive metrics", id="all-unready"),
    ],
)
def test_errors(samples: list[PodSample], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calc(samples, 100, 1)


def test_missing_request_is_fine_for_average_value() -> None:
    assert calc(pods([200], requests=[None]), 0.1, 1, AVG) == 2


@pytest.mark.parametrize("target", [0, -1, float("nan")])
def test_target_must_be_positive(target: float) -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        calc(pods([100]), target, 1)


# ------------------------------------------------------------- in the engine's decision


def test_a_resource_trigger_value_is_its_proposal() -> None:

    spec = make_spec(triggers=(TriggerSpec(type="cpu"), TriggerSpec(type="gauge")))
    # cpu proposes 7 (no tolerance band applied again); the gauge asks for 2
    _, d = decide(spec, ScalingState(created_at=0.0), [ok(0, 7), ok(1, 2)], 6, 100.0)
    assert d.raw_replicas == 7
    assert d.trigger == "cpu#0"


def test_a_resource_trigger_stands_beside_a_formula() -> None:

    spec = make_spec(
        triggers=(
            TriggerSpec(type="gauge", name="a"),
            TriggerSpec(type="gauge", name="b"),
            TriggerSpec(type="cpu"),
        ),
        advanced=Advanced(scaling_modifiers=ScalingModifiers(formula="a + b", target=2)),
    )
    state = ScalingState(created_at=0.0)
    _, d = decide(spec, state, [ok(0, 2), ok(1, 4), ok(2, 5)], 1, 100.0)
    assert (d.raw_replicas, d.trigger) == (5, "cpu#2")  # cpu's 5 beats the formula's 3
    _, d = decide(spec, state, [ok(0, 10), ok(1, 10), ok(2, 5)], 1, 100.0)
    assert (d.raw_replicas, d.trigger) == (10, "composite")
