"""``eventscale evaluate`` (against the real Redis) and ``simulate`` with ScaledJobs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import redis

from eventscale.cli import main
from eventscale.jobs import simulate_jobs
from eventscale.manifests.reader import load_manifests
from eventscale.simulation.scaled_object import Trace
from servers._proc import unique_name
from servers.redis_srv import RedisServer


def manifest(address: str, queue: str) -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: thumbnails}}
spec:
  jobTargetRef:
    template:
      spec:
        containers: [{{name: thumb, image: example/thumb:1}}]
  pollingInterval: 10
  maxReplicaCount: 5
  scalingStrategy: {{strategy: accurate}}
  triggers:
  - type: redis
    name: uploads
    metadata: {{address: "{address}", listName: {queue}, listLength: "2"}}
"""


def test_evaluate_reads_the_real_list_and_starts_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    queue = unique_name("sj-cli")
    path = tmp_path / "sj.yaml"
    path.write_text(manifest(redis_server.address, queue))
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        client.rpush(queue, "a", "b", "c")
        out = io.StringIO()
        assert main(["evaluate", str(path), "--json", "--current-replicas", "1"], out=out) == 0
        doc = json.loads(out.getvalue())
        assert doc["scaledObjects"] == []
        (job,) = doc["scaledJobs"]
        assert (job["queueLength"], job["maxScale"], job["running"]) == (3, 2, 1)
        # accurate: max scale 2 - pending 0, within maxReplicaCount
        assert job["jobsToCreate"] == 2
        assert job["started"] == []
        assert job["triggers"][0]["value"] == 3
        assert client.llen(queue) == 3  # a dry run: nothing consumed
        text = io.StringIO()
        assert main(["evaluate", str(path)], out=text) == 0
        assert "ScaledJob default/thumbnails: 0 running (0 pending), would start 2" in (
            text.getvalue()
        )
    finally:
        client.delete(queue)
        client.close()


def test_evaluate_fails_with_status_1_when_the_list_cannot_be_read(tmp_path: Path) -> None:
    from servers._proc import free_port

    path = tmp_path / "sj.yaml"
    path.write_text(manifest(f"127.0.0.1:{free_port()}", "q"))
    out = io.StringIO()
    assert main(["evaluate", str(path), "--json", "--timeout", "3"], out=out) == 1
    (job,) = json.loads(out.getvalue())["scaledJobs"]
    assert job["triggers"][0]["error"]
    assert job["jobsToCreate"] == 0


TRACE = "time,uploads\n0,4\n10,12\n30,0\n60,0\n"


def test_simulate_models_job_durations(tmp_path: Path) -> None:
    path = tmp_path / "sj.yaml"
    path.write_text(manifest("127.0.0.1:1", "q"))  # no source is contacted
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    out = io.StringIO()
    code = main(
        ["simulate", str(path), "--trace", str(trace), "--job-seconds", "25", "--json"], out=out
    )
    assert code == 0
    doc = json.loads(out.getvalue())
    rows = [(s["time"], s["running"], s["finished"], s["started"]) for s in doc["timeline"]]
    assert rows == [
        (0, 0, 0, 2),  # backlog 4 / 2 per job
        (10, 2, 0, 3),  # accurate: 5 + 2 running > 5, so 5 - 2
        (20, 5, 0, 0),  # full
        (30, 3, 2, 0),  # the first two ended at 25
        (40, 0, 3, 0),  # the next three at 35
        (50, 0, 0, 0),
        (60, 0, 0, 0),
    ]
    assert (doc["jobsStarted"], doc["peakRunning"]) == (5, 5)


def test_simulate_of_a_scaled_job_needs_job_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sj.yaml"
    path.write_text(manifest("127.0.0.1:1", "q"))
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    assert main(["simulate", str(path), "--trace", str(trace)], out=io.StringIO()) == 2
    assert "--job-seconds" in capsys.readouterr().err


def test_a_failed_read_in_the_trace_skips_the_trigger() -> None:
    spec = load_manifests(manifest("127.0.0.1:1", "q")).scaled_job()
    timeline = simulate_jobs(spec, Trace.from_text("time,uploads\n0,\n10,2\n"), job_seconds=5)
    assert [s.started for s in timeline.steps] == [0, 1]
    assert timeline.steps[0].metrics == {"uploads": None}
