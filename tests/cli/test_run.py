"""``eventscale run --target memory`` on a real Redis list, read as JSON lines, stopped by a signal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cli._runner import command, write
from servers._proc import unique_name
from servers.redis_srv import RedisServer


@pytest.fixture
def orders(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    name = unique_name("cli-run")
    yield client, name
    client.delete(name)
    client.close()


def manifest(tmp_path: Path, redis_server: RedisServer, lst: str) -> str:
    return write(
        tmp_path / "run.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: runner, namespace: jobs}}
spec:
  scaleTargetRef: {{name: runner}}
  pollingInterval: 1
  triggers:
    - type: redis
      name: orders
      metadata: {{address: "{redis_server.address}", listName: {lst}, listLength: "2"}}
""",
    )


class Lines:
    """JSON lines from a running command's stdout, with a deadline per wait."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    def until(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    pytest.fail(f"eventscale run exited early: {self.proc.returncode}")
                continue
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail("eventscale run closed its output")
            event: dict[str, Any] = json.loads(line)  # every line is one JSON object
            self.seen.append(event)
            if event["kind"] == kind:
                return event
        pytest.fail(f"no {kind!r} event within {timeout}s; saw {self.seen[-5:]}")


def start(path: str, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command("script"), "run", path, "--target", "memory", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_prints_json_lines_until_a_scale_then_stops_cleanly(
    tmp_path: Path,
    redis_server: RedisServer,
    orders: tuple[redis.Redis, str],
    stop: signal.Signals,
) -> None:
    client, lst = orders
    proc = start(manifest(tmp_path, redis_server, lst))
    try:
        lines = Lines(proc)
        # The empty list: a poll with value 0, a decision to stay at 0.
        poll = lines.until("poll")
        assert poll["scaledObject"] == "jobs/runner"
        assert poll["triggers"][0]["value"] == 0.0
        assert poll["triggers"][0]["name"] == "orders"
        decision = lines.until("decision")
        assert decision["desiredReplicas"] == 0
        assert decision["active"] is False
        # 5 items, listLength 2: ceil(5 / 2) = 3 replicas, from 0 within the default
        # scale-up policy (max(0 + 4, 0 * 2) = 4).
        client.rpush(lst, *range(5))
        scale = lines.until("scale")
        assert scale["scaledObject"] == "jobs/runner"
        assert scale["fromReplicas"] == 0
        assert scale["toReplicas"] == 3
        assert "orders" in scale["reason"]
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    for line in out.splitlines():  # whatever was still buffered is whole JSON lines too
        json.loads(line)


def test_run_with_a_bad_manifest_exits_2(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: bad}
spec:
  scaleTargetRef: {name: w}
  triggers: [{type: redis, metadata: {listName: x}}]
""",
    )
    proc = subprocess.run(
        [*command(), "run", path, "--target", "memory"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "spec.triggers[0]" in proc.stderr


def read_pty(fd: int, proc: subprocess.Popen[bytes], until: bytes, timeout: float = 20) -> bytes:
    """What the command wrote to its terminal, up to and including ``until``."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until not in seen:
        if time.monotonic() > deadline:
            pytest.fail(f"{until!r} not shown within {timeout}s: {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the command closed its terminal
                break
        elif proc.poll() is not None:
            break
    return seen


def test_run_on_a_terminal_draws_a_live_table(
    tmp_path: Path, redis_server: RedisServer, orders: tuple[redis.Redis, str]
) -> None:
    client, lst = orders
    client.rpush(lst, *range(7))  # ceil(7 / 2) = 4 replicas
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*command(), "run", manifest(tmp_path, redis_server, lst), "--target", "memory"],
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    try:
        # Once at 4 replicas the engine keeps them: the row then reads object, kind,
        # KEDA's READY, ACTIVE, FALLBACK and PAUSED, replicas, desired, metric values,
        # reason; the scale action of an earlier tick is still on screen below it.
        screen = read_pty(main, proc, b"keeping 4")
        screen += read_pty(main, proc, b"\x1b[2J")  # the next redraw: that frame is whole
        frame = screen.split(b"\x1b[2J")[-2]
        assert re.search(
            rb"OBJECT\s+KIND\s+READY\s+ACTIVE\s+FALLBACK\s+PAUSED\s+REPLICAS\s+DESIRED"
            rb"\s+METRICS\s+REASON",
            frame,
        )
        assert re.search(
            rb"jobs/runner\s+ScaledObject\s+True\s+True\s+False\s+False\s+4\s+4\s+orders=7"
            rb"\s+metrics ask for 4; keeping 4",
            frame,
        )
        assert re.search(rb"Recent events:\s+\S+\s+jobs/runner scaled 0 -> 4: activated", frame)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"Traceback" not in screen


def job_manifest(tmp_path: Path, redis_server: RedisServer, lst: str) -> str:
    return write(
        tmp_path / "job.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: crunch, namespace: jobs}}
spec:
  jobTargetRef:
    template:
      spec:
        containers: [{{name: crunch, image: busybox}}]
  pollingInterval: 1
  maxReplicaCount: 4
  triggers:
    - type: redis
      name: orders
      metadata: {{address: "{redis_server.address}", listName: {lst}, listLength: "1"}}
""",
    )


def test_run_starts_scaled_jobs_and_prints_each_start_as_a_json_line(
    tmp_path: Path, redis_server: RedisServer, orders: tuple[redis.Redis, str]
) -> None:
    client, lst = orders
    proc = start(job_manifest(tmp_path, redis_server, lst))
    try:
        lines = Lines(proc)
        poll = lines.until("poll")
        assert poll["scaledObject"] == "jobs/crunch"
        assert poll["objectKind"] == "ScaledJob"
        assert poll["currentReplicas"] == 0  # no job running yet
        assert poll["triggers"][0]["value"] == 0.0
        # three items, one job each (the in-memory jobs run until the command stops)
        client.rpush(lst, "a", "b", "c")
        started = lines.until("scale")
        assert started["objectKind"] == "ScaledJob"
        assert started["rule"] == "jobs"
        assert (started["fromReplicas"], started["toReplicas"]) == (0, 3)
        # six more: maxReplicaCount 4 caps the unfinished jobs, so one more starts
        client.rpush(lst, *range(6))
        more = lines.until("scale")
        assert (more["fromReplicas"], more["toReplicas"]) == (3, 4)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    for line in out.splitlines():
        json.loads(line)


def test_a_scaled_object_and_a_scaled_job_of_one_name_exit_2(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    both = (
        Path(manifest(tmp_path, redis_server, "l1")).read_text()
        + "---\n"
        + Path(job_manifest(tmp_path, redis_server, "l2")).read_text().replace("crunch", "runner")
    )
    path = write(tmp_path / "both.yaml", both)
    proc = subprocess.run(
        [*command(), "run", path, "--target", "memory"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "jobs/runner" in proc.stderr
    assert "Traceback" not in proc.stderr
