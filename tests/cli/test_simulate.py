"""``eventscale simulate``: a trace whose timeline is worked out by hand.

The ScaledObject polls every 10 s, has one redis trigger ``queue`` (listLength 10,
activationListLength 5), min 0, max 10, cooldownPeriod 30, fallback of 3 replicas after
more than 2 failures, scale-up policy Pods 2 per 15 s and scale-down policy Pods 2 per
5 s, both without stabilization. Nothing is contacted: the address is never used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli._runner import Runner, write

MANIFEST = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: orders}
spec:
  scaleTargetRef: {name: orders}
  pollingInterval: 10
  cooldownPeriod: 30
  minReplicaCount: 0
  maxReplicaCount: 10
  fallback: {failureThreshold: 2, replicas: 3}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{type: Pods, value: 2, periodSeconds: 15}]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{type: Pods, value: 2, periodSeconds: 5}]
  triggers:
    - type: redis
      name: queue
      metadata:
        address: "127.0.0.1:1"
        listName: orders
        listLength: "10"
        activationListLength: "5"
"""

# Values hold until the next row; the empty cell at 110 is a failed read until 140.
TRACE = """\
time,queue
0,0
20,3
30,50
80,0
110,
140,0
"""

# (time, queue value, desired, active, a word the reason must contain)
#
#   0, 10  queue 0: not above the activation 5, inactive at 0.
#  20      queue 3: still not above 5, so 3 items do not wake anything.
#  30      queue 50 > 5: active. AverageValue asks ceil(50 / 10) = 5; from 0 the
#          scale-up policy allows 0 + 2 = 2.
#  40      2 were added 10 s ago (inside the 15 s period): the period started at
#          2 - 2 = 0, so at most 0 + 2 = 2. Held at 2.
#  50      the +2 at 30 is 20 s old, outside the period: start 2, allow 4.
#  60      +2 at 50 is inside the period: start 2, allow 4. Held at 4.
#  70      +2 at 50 is outside: start 4, allow 6; the metric asks 5, so 5.
#          At 5 replicas 50 / (10 * 5) = 1.0, so it stays 5 from here while 50 lasts.
#  80      queue 0: inactive; last activity at 70, cooldown 30 not over, so the normal
#          rules scale down: ceil(0 / 10) = 0, Pods 2 per 5 s allows 5 - 2 = 3.
#  90      cooldown still running (20 s): 3 - 2 = 1, the floor max(min, 1) = 1.
# 100      30 s since the last activity >= cooldownPeriod 30: straight to 0.
# 110      empty cell: failure 1 of the trigger, no fallback yet: hold 0 (never read 0).
# 120      failure 2: still not more than failureThreshold 2: hold 0.
# 130      failure 3 > 2: fallback gives 3 replicas, from 0, and counts as activity.
# 140      queue 0 read again: inactive, last activity at 130, cooldown running:
#          3 - 2 = 1 (the floor).
EXPECTED = [
    (0, 0.0, 0, False, "inactive"),
    (10, 0.0, 0, False, "inactive"),
    (20, 3.0, 0, False, "inactive"),
    (30, 50.0, 2, True, "activated"),
    (40, 50.0, 2, True, "policy"),
    (50, 50.0, 4, True, "policy"),
    (60, 50.0, 4, True, "policy"),
    (70, 50.0, 5, True, "5"),
    (80, 0.0, 3, False, "scale-down policy"),
    (90, 0.0, 1, False, "cooldown"),
    (100, 0.0, 0, False, "zero"),
    (110, None, 0, False, "failed"),
    (120, None, 0, False, "failed"),
    (130, None, 3, True, "fallback"),
    (140, 0.0, 1, False, "cooldown"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "manifest": write(tmp_path / "orders.yaml", MANIFEST),
        "trace": write(tmp_path / "trace.csv", TRACE),
        "dir": str(tmp_path),
    }


def check_timeline(doc: dict[str, Any], ready: list[int] | None = None) -> None:
    """``doc`` is exactly the hand-worked timeline (reasons checked for their gist)."""
    assert list(doc) == ["timeline"]
    steps = doc["timeline"]
    assert len(steps) == len(EXPECTED)
    for i, (step, (t, value, desired, active, word)) in enumerate(
        zip(steps, EXPECTED, strict=True)
    ):
        reason = step.pop("reason")
        assert word in reason, (t, reason)
        assert step == {
            "time": t,
            "metrics": {"queue": value},
            "desiredReplicas": desired,
            "replicas": desired if ready is None else ready[i],
            "active": active,
        }, t


def test_hand_worked_timeline_json(cli: Runner, files: dict[str, str]) -> None:
    result = cli("simulate", files["manifest"], "--trace", files["trace"], "--json")
    assert result.code == 0, result.output
    assert result.stderr == ""
    check_timeline(result.json())


def test_ready_delay_holds_back_the_ready_count(cli: Runner, files: dict[str, str]) -> None:
    result = cli(
        "simulate", files["manifest"], "--trace", files["trace"], "--json", "--ready-delay", "15"
    )
    assert result.code == 0, result.output
    # Desired is unchanged (AverageValue does not depend on ready pods); "replicas"
    # counts the ready ones. A scale-up at t is ready at t + 15, seen at the next tick
    # at or after it: the 2 asked at 30 are ready at 50, the 4 asked at 50 at 70, the 5
    # asked at 70 would be at 85, but at 80 the count drops to 3 (scale-downs act at
    # once, and only 4 were ready anyway, so min(4, 3) = 3); 90 -> 1, 100 -> 0; the
    # fallback's 3 asked at 130 would be ready at 145, after the trace ends, and at 140
    # the desired count is 1 of which none is ready yet.
    ready = [0, 0, 0, 0, 0, 2, 2, 4, 3, 1, 0, 0, 0, 0, 0]
    check_timeline(result.json(), ready)


def test_table_and_plot(cli: Runner, files: dict[str, str]) -> None:
    png = Path(files["dir"]) / "orders.png"
    result = cli("simulate", files["manifest"], "--trace", files["trace"], "--plot", str(png))
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "QUEUE", "DESIRED", "READY", "ACTIVE", "REASON"]
    rows = [line.split()[:5] for line in lines[1 : 1 + len(EXPECTED)]]
    assert rows == [
        [
            str(t),
            "-" if value is None else f"{value:g}",
            str(desired),
            str(desired),
            "yes" if active else "no",
        ]
        for t, value, desired, active, _ in EXPECTED
    ]
    assert lines[-1] == f"plot written to {png}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # two panels with lines and legends, not an empty canvas


def test_columns_by_index_and_several_triggers(cli: Runner, tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "two.yaml",
        """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: two}
spec:
  scaleTargetRef: {name: two}
  pollingInterval: 5
  triggers:
    - type: rabbitmq
      metadata: {host: "amqp://u:p@h/", queueName: a, mode: QueueLength, value: "4"}
    - type: kafka
      name: lag
      metadata: {bootstrapServers: "h:9092", consumerGroup: g, topic: t, lagThreshold: "3"}
""",
    )
    trace = write(tmp_path / "t.csv", "time,0,lag\n0,8,2\n5,8,12\n")
    result = cli("simulate", manifest, "--trace", trace, "--json", "--current-replicas", "2")
    assert result.code == 0, result.output
    steps = result.json()["timeline"]
    assert [s["metrics"] for s in steps] == [{"0": 8.0, "lag": 2.0}, {"0": 8.0, "lag": 12.0}]
    # t=0: rabbitmq ceil(8/4) = 2, kafka ceil(2/3) = 1 -> 2 = current: hold.
    # t=5: kafka ceil(12/3) = 4 -> 4; policies allow max(2 + 4, 2 * 2) = 6.
    assert [s["desiredReplicas"] for s in steps] == [2, 4]


@pytest.mark.parametrize(
    ("trace", "words"),
    [
        pytest.param(
            "time,other\n0,1\n", ["'queue'", "redis", "spec.triggers[0]"], id="missing-column"
        ),
        pytest.param("queue\n1\n", ["'time'"], id="no-time-column"),
        pytest.param("time,queue\n0,lots\n", ["'lots'", ":2"], id="not-a-number"),
        pytest.param("time,queue\n5,1\n0,1\n", ["decrease", ":3"], id="time-goes-back"),
    ],
)
def test_bad_trace_exit_2(
    cli: Runner, files: dict[str, str], tmp_path: Path, trace: str, words: list[str]
) -> None:
    path = write(tmp_path / "bad.csv", trace)
    result = cli("simulate", files["manifest"], "--trace", path, "--json")
    assert result.code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("eventscale: invalid configuration:")
    for word in words:
        assert word in result.stderr, result.stderr


def test_missing_trace_file_and_bad_options(cli: Runner, files: dict[str, str]) -> None:
    missing = cli("simulate", files["manifest"], "--trace", files["dir"] + "/nope.csv")
    assert missing.code == 2
    assert "nope.csv" in missing.stderr
    no_trace = cli("simulate", files["manifest"])
    assert no_trace.code == 2
    assert "--trace" in no_trace.stderr
    negative = cli("simulate", files["manifest"], "--trace", files["trace"], "--ready-delay", "-1")
    assert negative.code == 2
    assert "--ready-delay" in negative.stderr


# KEDA's cron + cpu documentation example (keda-docs scalers/cron.md), as written.
CRON_CPU = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: cron-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: my-deployment
  minReplicaCount: 0
  cooldownPeriod: 300
  triggers:
  - type: cron
    metadata:
      timezone: Asia/Kolkata
      start: 0 6 * * *
      end: 0 20 * * *
      desiredReplicas: "10"
  - type: cpu
    metricType: Utilization
    metadata:
      value: "50"
"""


def test_a_cpu_column_is_the_pods_utilization(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "cron-cpu.yaml", CRON_CPU)
    # the cron column is its desiredReplicas inside the window; the cpu column percent
    trace = write(tmp_path / "t.csv", "time,0,1\n0,10,30\n30,10,30\n60,0,80\n90,0,80\n")
    result = cli("simulate", manifest, "--trace", trace, "--json", "--current-replicas", "2")
    assert result.code == 0, result.output
    steps = result.json()["timeline"]
    assert [s["metrics"]["1"] for s in steps] == [30.0, 30.0, 80.0, 80.0]
    # t=0: cron asks 10, cpu 30% of 50% over 2 pods ceil(0.6 * 2) = 2; the default
    #      scale-up policy allows max(2 + 4, 2 * 2) = 6.
    # t=30: cron 10, cpu ceil(0.6 * 6) = 4: 10.
    # t=60: cron inactive (its cooldown of 300 s runs); cpu 80% over 10 pods asks
    #      ceil(1.6 * 10) = 16 (not 80 replicas) and holds the object up.
    # t=90: ceil(1.6 * 16) = 26, within the policy's 100% a 15 s.
    assert [s["desiredReplicas"] for s in steps] == [6, 10, 16, 26]
    assert [s["active"] for s in steps] == [True, True, False, False]


def test_a_cpu_only_object_from_zero_has_no_pod_to_read(cli: Runner, tmp_path: Path) -> None:
    manifest = write(tmp_path / "cpu.yaml", CRON_CPU.replace("minReplicaCount: 0", ""))
    trace = write(tmp_path / "t.csv", "time,0,1\n0,0,\n")
    result = cli("simulate", manifest, "--trace", trace, "--json")
    assert result.code == 0, result.output
    (step,) = result.json()["timeline"]
    assert step["metrics"] == {"0": 0.0, "1": None}
    assert "failed" in step["reason"]
