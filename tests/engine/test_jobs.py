"""The ScaledJob acceptance vectors (J): scaler combination, strategies, history cleanup.

See docs/engine.md, "ScaledJob (`engine/jobs.py`)".
"""

from __future__ import annotations

from datetime import datetime

import pytest

from eventscale.engine import (
    JobScalerMetric,
    combine_job_metrics,
    decide_jobs,
    jobs_to_delete,
)
from eventscale.engine.jobs import strategy_max_scale
from eventscale.spec import ScaledJobSpec, ScalingStrategy, TriggerSpec


def job_spec(**kwargs: object) -> ScaledJobSpec:
    return ScaledJobSpec(
        name="job",
        job_target_ref={},
        triggers=(TriggerSpec(type="gauge"),),
        **kwargs,  # type: ignore[arg-type]
    )


J_SCALERS = (
    JobScalerMetric(queue_length=20, target_average=1, is_active=True),
    JobScalerMetric(queue_length=10, target_average=2, is_active=True),
    JobScalerMetric(queue_length=5, target_average=3, is_active=True),
    JobScalerMetric(queue_length=7, target_average=4, is_active=False),
)


@pytest.mark.parametrize(
    ("calc", "max_rc", "queue", "max_scale"),
    [
        pytest.param("max", 100, 20, 20, id="J1-max"),
        pytest.param("min", 100, 5, 2, id="J2-min"),
        pytest.param("avg", 100, 12, 9, id="J3-avg"),
        pytest.param("sum", 100, 35, 27, id="J4-sum"),
        pytest.param("sum", 25, 35, 25, id="J5-sum-capped"),
    ],
)
def test_job_multiple_scalers(calc: str, max_rc: int, queue: int, max_scale: int) -> None:
    m = combine_job_metrics(
        job_spec(multiple_scalers_calculation=calc, max_replica_count=max_rc), J_SCALERS
    )
    assert (m.scale_to, m.max_scale, m.is_active) == (queue, max_scale, True)


def test_j6_single_scaler() -> None:
    m = combine_job_metrics(
        job_spec(min_replica_count=1),
        [JobScalerMetric(queue_length=20, target_average=2, is_active=True)],
    )
    assert (m.scale_to, m.max_scale) == (20, 10)


def test_j7_default_strategy() -> None:
    assert strategy_max_scale(ScalingStrategy.DEFAULT, 3, 2, 0, 5, 3)[0] == 1


@pytest.mark.parametrize(
    ("max_scale", "running", "max_rc", "deduction", "pct_value", "expected"),
    [
        pytest.param(3, 2, 5, 1, 0.5, 1, id="J8-custom-a"),
        pytest.param(10, 0, 10, 1, 0.5, 9, id="J8-custom-b"),
        pytest.param(3, 2, 4, -2, 0.0, 4, id="J9-custom-negative-deduction"),
    ],
)
def test_custom_strategy(
    max_scale: int, running: int, max_rc: int, deduction: int, pct_value: float, expected: int
) -> None:
    got = strategy_max_scale(
        ScalingStrategy.CUSTOM,
        max_scale,
        running,
        0,
        max_rc,
        max_scale,
        deduction=deduction,
        percentage=pct_value,
    )
    assert got[0] == expected


@pytest.mark.parametrize(
    ("max_scale", "running", "pending", "max_rc", "expected"),
    [
        pytest.param(3, 2, 0, 5, 3, id="J10-a"),
        pytest.param(5, 2, 0, 5, 3, id="J10-b"),
        pytest.param(3, 4, 2, 10, 1, id="J10-c"),
        pytest.param(5, 4, 2, 5, 1, id="J10-d"),
        pytest.param(3, 3, 3, 5, 0, id="J10-e"),
        pytest.param(20, 15, 10, 20, 5, id="J10-f"),
    ],
)
def test_accurate_strategy(
    max_scale: int, running: int, pending: int, max_rc: int, expected: int
) -> None:
    assert (
        strategy_max_scale(ScalingStrategy.ACCURATE, max_scale, running, pending, max_rc, 0)[0]
        == expected
    )


@pytest.mark.parametrize(
    ("max_scale", "running", "pending", "max_rc", "expected"),
    [
        pytest.param(4, 3, 0, 10, 4, id="J11-a"),
        pytest.param(4, 0, 3, 10, 4, id="J11-b"),
        pytest.param(4, 7, 0, 10, 3, id="J11-c"),
        pytest.param(4, 1, 6, 10, 3, id="J11-d"),
        pytest.param(15, 0, 0, 10, 10, id="J11-e"),
    ],
)
def test_eager_strategy(
    max_scale: int, running: int, pending: int, max_rc: int, expected: int
) -> None:
    assert strategy_max_scale(ScalingStrategy.EAGER, max_scale, running, pending, max_rc, 1) == (
        expected,
        10,
    )


@pytest.mark.parametrize(
    ("running", "expected"),
    [pytest.param(0, 2, id="J12-running-0"), pytest.param(1, 1, id="J12-running-1")],
)
def test_j12_min_replica_count(running: int, expected: int) -> None:
    d = decide_jobs(job_spec(min_replica_count=2), [], running)
    assert d.create == expected


@pytest.mark.parametrize(
    ("queue", "max_rc", "target", "running", "expected"),
    [
        pytest.param(10, 3, 1, 0, 3, id="J13-a"),
        pytest.param(10, 3, 2, 0, 3, id="J13-b"),
        pytest.param(10, 3, 1, 1, 2, id="J13-c"),
        pytest.param(10, 100, 1, 0, 10, id="J13-d"),
        pytest.param(4, 3, 5, 0, 1, id="J13-e"),
    ],
)
def test_j13_jobs_created(
    queue: int, max_rc: int, target: int, running: int, expected: int
) -> None:
    scaler = JobScalerMetric(queue_length=queue, target_average=target, is_active=True)
    assert decide_jobs(job_spec(max_replica_count=max_rc), [scaler], running).create == expected


def test_j14_history_cleanup() -> None:
    finished = [
        ("job-a", datetime(2024, 1, 1, 15, 37).timestamp()),
        ("job-b", datetime(2024, 1, 1, 15, 36).timestamp()),
        ("job-c", datetime(2024, 1, 1, 15, 38).timestamp()),
    ]
    assert jobs_to_delete(finished, 2) == ("job-b",)


@pytest.mark.parametrize(
    ("min_rc", "max_rc", "effective"),
    [
        # KEDA's MaxReplicaCount() (apis/keda/v1alpha1/scaledjob_types.go): 100 when
        # maxReplicaCount is not set, whatever minReplicaCount is
        pytest.param(1, None, 100, id="min1-no-max"),
        pytest.param(5, None, 100, id="min5-no-max"),
        pytest.param(0, None, 100, id="no-min-no-max"),
        pytest.param(1, 100, 99, id="min1-max100"),
        pytest.param(7, 5, 5, id="min-over-max"),
    ],
)
def test_effective_max_follows_keda(min_rc: int, max_rc: int | None, effective: int) -> None:
    spec = job_spec(min_replica_count=min_rc, max_replica_count=max_rc)
    assert spec.effective_max == effective
    big = JobScalerMetric(queue_length=1000, target_average=1, is_active=True)
    assert decide_jobs(spec, [big], spec.effective_min).max_scale == effective


def test_a_manifest_without_max_gets_keda_default() -> None:
    from eventscale.manifests import load_manifests

    text = """
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: j}
spec:
  minReplicaCount: 1
  jobTargetRef: {template: {spec: {containers: [{name: c, image: busybox}]}}}
  triggers: [{type: gauge, metadata: {name: jobs, target: "1"}}]
"""
    spec = load_manifests(text).scaled_jobs[0]
    assert spec.max_replica_count is None
    assert spec.effective_max == 100
