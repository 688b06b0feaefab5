"""``eventscale tune`` and ``eventscale simulate --workload``, run as a user would."""

from __future__ import annotations

from pathlib import Path

from cli._runner import Runner, write
from eventscale.manifests import load_manifests

MANIFEST = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker}
spec:
  scaleTargetRef: {name: worker}
  pollingInterval: 5
  cooldownPeriod: 60
  maxReplicaCount: 10
  triggers:
    - type: redis
      name: jobs
      metadata:
        address: redis.example:6379
        password: hunter2-not-printed
        listName: jobs
        listLength: "1000"
"""

WORKLOAD = "constant:rate=1.5,duration=10m"


def test_tune_prints_the_best_and_writes_the_chosen_manifest(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST)
    out = tmp_path / "chosen.yaml"
    result = cli(
        "tune",
        manifest,
        "--workload",
        WORKLOAD,
        "--throughput",
        "1",
        "--set",
        "minReplicaCount=0,1,2,3",
        "--p95-wait",
        "2",
        "--write",
        str(out),
        "--jobs",
        "1",
    )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "#",
        "minReplicaCount",
        "GOAL",
        "REPLICA-S",
        "P50",
        "P95",
        "P99",
        "MAX",
        "ACTIONS",
    ]
    assert lines[1].split()[:3] == ["1", "2", "met"]
    assert "4 settings simulated, 2 meet the goal (p95 wait <= 2s)" in result.stdout
    chosen = load_manifests(out.read_text()).scaled_object("worker")
    assert chosen.min_replica_count == 2
    assert chosen.triggers[0].metadata["listName"] == "jobs"
    assert "hunter2" not in result.output


def test_tune_json_and_a_goal_nothing_meets(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST)
    result = cli(
        "tune",
        manifest,
        "--workload",
        WORKLOAD,
        "--throughput",
        "1",
        "--set",
        "minReplicaCount=0,1",
        "--max-age",
        "3",
        "--json",
        "--jobs",
        "1",
    )
    assert result.code == 1
    assert "no setting meets the goal" in result.stderr
    doc = result.json()
    assert doc["best"] is None
    assert doc["goal"] == {"p50Wait": None, "p95Wait": None, "p99Wait": None, "maxWait": 3}
    assert len(doc["candidates"]) == 2
    assert all(not c["meetsGoal"] for c in doc["candidates"])


def test_tune_refuses_bad_command_lines(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST)
    base = ("tune", manifest, "--workload", WORKLOAD, "--throughput", "1")
    no_goal = cli(*base, "--set", "listLength=5")
    assert no_goal.code == 2
    assert "--p95-wait" in no_goal.stderr
    no_set = cli(*base, "--p95-wait", "5")
    assert no_set.code == 2
    assert "--set" in no_set.stderr
    bad_set = cli(*base, "--p95-wait", "5", "--set", "listLength")
    assert bad_set.code == 2
    assert "NAME=V1,V2" in bad_set.stderr
    no_list = write(tmp_path / "bad.yaml", MANIFEST.replace("listName: jobs", ""))
    refused = cli("tune", no_list, *base[2:], "--set", "listLength=5", "--p95-wait", "5")
    assert refused.code == 2
    assert "listName" in refused.stderr
    no_rate = cli(
        "tune", manifest, "--workload", WORKLOAD, "--set", "listLength=5", "--p95-wait", "5"
    )
    assert no_rate.code == 2
    assert "--throughput" in no_rate.stderr


def test_simulate_a_workload_prints_the_summary(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST.replace('"1000"', '"5"'))
    result = cli(
        "simulate",
        manifest,
        "--workload",
        "constant:rate=1,duration=2m",
        "--work-seconds",
        "0.1",
        "--startup",
        "30",
    )
    assert result.code == 0, result.stderr
    # the poll at 5 s sees the first items; the replica takes work 30 s later
    rows = {line[:23].strip(): line[23:].strip() for line in result.stdout.splitlines()[1:]}
    assert rows["wait max (oldest age)"] == "35s"
    assert rows["items arrived"] == "120"


def test_simulate_a_workload_as_json_with_its_timeline(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST.replace('"1000"', '"5"'))
    result = cli(
        "simulate",
        manifest,
        "--workload",
        "constant:rate=1,duration=30",
        "--throughput",
        "10",
        "--json",
        "--timeline",
        "--fail",
        "10-20",
    )
    assert result.code == 0, result.stderr
    doc = result.json()
    assert [row["time"] for row in doc["timeline"]] == [0, 5, 10, 15, 20, 25]
    assert doc["timeline"][2]["metrics"] == {"jobs": None}
    assert doc["summary"]["itemsArrived"] == 30


def test_simulate_needs_a_trace_or_a_workload_not_both(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "so.yaml", MANIFEST)
    trace = write(tmp_path / "t.csv", "time,jobs\n0,1\n")
    neither = cli("simulate", manifest)
    assert neither.code == 2
    assert "--trace" in neither.stderr
    both = cli("simulate", manifest, "--trace", trace, "--workload", WORKLOAD, "--throughput", "1")
    assert both.code == 2
    assert "not both" in both.stderr
    delay = cli(
        "simulate", manifest, "--workload", WORKLOAD, "--throughput", "1", "--ready-delay", "5"
    )
    assert delay.code == 2
    assert "--startup" in delay.stderr
    bad_fail = cli(
        "simulate", manifest, "--workload", WORKLOAD, "--throughput", "1", "--fail", "9-3"
    )
    assert bad_fail.code == 2
    assert "--fail" in bad_fail.stderr
