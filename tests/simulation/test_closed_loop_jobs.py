"""The closed loop for ScaledJobs: jobs take items when they start and run their duration."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli._runner import run_cli, write
from eventscale.errors import ConfigError
from eventscale.simulation.closed_loop_jobs import simulate_jobs_closed_loop
from eventscale.simulation.workload import constant, steps
from eventscale.spec import ScaledJobSpec, TriggerSpec


def spec(**extra: object) -> ScaledJobSpec:
    return ScaledJobSpec(
        name="batch",
        job_target_ref={},
        triggers=[TriggerSpec(type="redis", name="q", metadata={"listLength": "1"})],
        polling_interval=10,
        **extra,  # type: ignore[arg-type]
    )


def test_a_burst_is_taken_by_one_job_per_item_at_the_next_poll() -> None:
    # 5 items arrive at once at t=2; the poll at 10 starts 5 jobs that take them
    work = steps([(0, 0.0), (2, 5.0), (3, 0.0)], 60)
    result = simulate_jobs_closed_loop(spec(), work, job_seconds=25)
    s = result.summary
    assert s.items_left == 0
    assert s.wait_max == 8
    assert s.wait_p50 == 8
    assert s.scale_actions == 5  # jobs started
    assert s.peak_replicas == 5
    assert s.replica_seconds == 5 * 25  # job-seconds
    assert [st.started for st in result.steps] == [0, 5, 0, 0, 0, 0]
    assert [st.running for st in result.steps] == [0, 0, 5, 5, 0, 0]
    assert s.time_at_zero == 60 - 25


def test_start_up_delays_the_take_and_jobs_starting_count_as_pending() -> None:
    work = steps([(0, 0.0), (2, 3.0), (3, 0.0)], 60)
    result = simulate_jobs_closed_loop(spec(), work, job_seconds=10, startup=15)
    s = result.summary
    assert s.wait_max == 8 + 15
    assert s.ready_replica_seconds == 3 * 10
    assert s.replica_seconds == 3 * 25


def test_the_max_caps_unfinished_jobs_and_the_backlog_waits() -> None:
    result = simulate_jobs_closed_loop(spec(max_replica_count=2), constant(1, 120), job_seconds=50)
    assert result.summary.peak_replicas == 2
    assert result.summary.items_left > 0
    assert result.summary.wait_max > 50


def test_a_failed_read_starts_nothing() -> None:
    result = simulate_jobs_closed_loop(spec(), constant(1, 60), job_seconds=5, failures=[(5, 35)])
    inside = [st for st in result.steps if 5 <= st.time < 35]
    assert inside
    assert all(st.started == 0 and st.metrics == {"q": None} for st in inside)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError) as info:
        simulate_jobs_closed_loop(spec(), constant(1, 10), job_seconds=0)
    assert info.value.path == "job_seconds"
    with pytest.raises(ConfigError) as info:
        simulate_jobs_closed_loop(spec(), constant(1, 10), job_seconds=1, items_per_job=0)
    assert info.value.path == "items_per_job"


JOB = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: batch}
spec:
  jobTargetRef: {template: {spec: {containers: [{name: c, image: busybox}]}}}
  pollingInterval: 10
  triggers:
    - type: redis
      name: q
      metadata: {address: 127.0.0.1:6379, listName: batch, listLength: "1"}
"""


def test_the_command_line(tmp_path: Path) -> None:
    manifest = write(tmp_path / "job.yaml", JOB)
    args = ("simulate", manifest, "--workload", "steps:0=0,2=5,3=0,duration=60")
    missing = run_cli(*args)
    assert missing.code == 2
    assert "--job-seconds" in missing.stderr
    result = run_cli(*args, "--job-seconds", "25", "--json", "--timeline")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["kind"] == "ScaledJob"
    assert doc["summary"]["scaleActions"] == 5
    assert doc["timeline"][1]["started"] == 5
    table = run_cli(*args, "--job-seconds", "25")
    assert "jobs started           5" in table.stdout
