"""``eventscale run --watch``: two processes share the watched objects through Leases,
only an object's owner writes its status and Events, and the real ``kubectl`` reads
KEDA's printer columns and the Events back from the stand-in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cli._runner import command, run_cli
from eventscale.runtime.sharding import _weight
from servers._proc import ensure_apt, unique_name
from servers.kubernetes_srv import KubeStandIn

KEDA = "apis/keda.sh/v1alpha1"
IDENTITIES = ("watch-a", "watch-b")
OBJECTS = 4


@pytest.fixture(scope="module")
def kubectl() -> str:
    return ensure_apt("kubectl", "kubectl")


@pytest.fixture
def redis_list() -> Iterator[str]:
    name = unique_name("watch-list")
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.rpush(name, *range(6))
    yield name
    client.delete(name)
    client.close()


def _owner(key: str) -> str:
    return max(IDENTITIES, key=lambda m: _weight(m, key))


def _spread_namespace() -> str:
    while True:
        ns = unique_name("watch")
        if {_owner(f"{ns}/so{i}") for i in range(OBJECTS)} == set(IDENTITIES):
            return ns


def _wait(
    check: Callable[[], bool], what: str, procs: list[subprocess.Popen[str]], limit: float = 30
) -> None:
    deadline = time.monotonic() + limit
    while not check():
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(
                    f"eventscale exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit:g}s waiting for {what}")
        time.sleep(0.1)


def _kubectl(kubectl: str, home: Path, kubeconfig: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(HOME=str(home), KUBECONFIG=str(kubeconfig))
    done = subprocess.run(
        [kubectl, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_watching_replicas_share_objects_and_kubectl_reads_status_and_events(
    tmp_path: Path, kube_standin: KubeStandIn, redis_list: str, kubectl: str
) -> None:
    api, ns = kube_standin.api, _spread_namespace()
    kubeconfig = kube_standin.kubeconfig(ns)
    for i in range(OBJECTS):
        api.deployment(f"web{i}", ns, replicas=0)
    procs = [
        subprocess.Popen(
            [
                *command(),
                "run",
                "--watch",
                "--namespace",
                ns,
                "--selector",
                "team=shop",
                "--kubeconfig",
                str(kubeconfig),
                "--json",
                "--shard-leases",
                "--lease-namespace",
                ns,
                "--identity",
                identity,
                "--lease-duration",
                "3",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "KEDA_CLUSTER_OBJECT_NAMESPACE": ns},
        )
        for identity in IDENTITIES
    ]
    try:
        trigger = {
            "type": "redis",
            "metadata": {"address": "127.0.0.1:6379", "listName": redis_list, "listLength": "2"},
        }
        for i in range(OBJECTS):
            api.scaled_object(
                f"so{i}", ns, f"web{i}", [trigger], pollingInterval=1, labels={"team": "shop"}
            )
        api.scaled_object(
            "ignored", ns, "web0", [trigger], pollingInterval=1, labels={"team": "other"}
        )

        def scaled() -> bool:
            return all(
                (api.get("apis/apps/v1", "deployments", ns, f"web{i}") or {})["spec"]["replicas"]
                == 3
                for i in range(OBJECTS)
            )

        _wait(scaled, "every object scaled by its owner", procs)

        def ready() -> bool:
            for i in range(OBJECTS):
                reasons = [e["reason"] for e in api.events_for(ns, f"so{i}")]
                if "ScaledObjectReady" not in reasons:
                    return False
            return True

        _wait(ready, "every object's Ready event", procs)
        time.sleep(1.5)  # a late duplicate from the other replica would show by now
        for i in range(OBJECTS):
            events = [e for e in api.events_for(ns, f"so{i}") if e["reason"] == "ScaledObjectReady"]
            assert len(events) == 1
            assert events[0].get("count", 1) == 1
            # by whichever replica held the Lease then (leases move as members join);
            # the next owner reads Ready=True in the status and does not repeat it
            assert events[0]["source"].get("host") in IDENTITIES
        ignored = api.get(KEDA, "scaledobjects", ns, "ignored") or {}
        assert "status" not in ignored or not ignored["status"]  # outside the selector

        home = tmp_path / "home"
        home.mkdir()
        table = _kubectl(kubectl, home, kubeconfig, "get", "scaledobject", "-n", ns)
        header, *rows = table.splitlines()
        columns = header.split()
        assert columns[:2] == ["NAME", "SCALETARGETKIND"]
        for column in ("READY", "ACTIVE", "FALLBACK", "PAUSED", "TRIGGERS"):
            assert column in columns
        # kubectl pads the columns; empty cells (MIN, MAX unset) are blanks
        starts = [header.index(c) for c in columns]
        bounds = list(zip(starts, [*starts[1:], None], strict=True))
        cells = {
            row.split()[0]: {c: row[a:b].strip() for c, (a, b) in zip(columns, bounds, strict=True)}
            for row in rows
        }
        for i in range(OBJECTS):
            cell = cells[f"so{i}"]
            assert cell["SCALETARGETKIND"] == "apps/v1.Deployment"
            assert cell["SCALETARGETNAME"] == f"web{i}"
            assert (cell["READY"], cell["ACTIVE"], cell["FALLBACK"], cell["PAUSED"]) == (
                "True",
                "True",
                "False",
                "False",
            )
            assert cell["TRIGGERS"] == "redis"
        described = _kubectl(kubectl, home, kubeconfig, "describe", "scaledobject", "so0", "-n", ns)
        shown = described[described.index("Events:") :]
        assert "ScaledObjectReady" in shown
        assert "KEDAScalersStarted" in shown

        # one replica dies: the other takes its objects over, edits included
        procs[0].kill()
        procs[0].communicate()
        for i in range(OBJECTS):
            obj = api.get(KEDA, "scaledobjects", ns, f"so{i}") or {}
            obj["spec"]["triggers"][0]["metadata"]["listLength"] = "1"
            api.put(obj)

        def rescaled() -> bool:
            return all(
                (api.get("apis/apps/v1", "deployments", ns, f"web{i}") or {})["spec"]["replicas"]
                == 6  # (up: a scale-down would wait out its 300 s window)
                for i in range(OBJECTS)
            )

        _wait(rescaled, "every object rescaled by the survivor", procs[1:])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=20)  # (closes the stderr pipe)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert [p.returncode for p in procs] == [-signal.SIGKILL, 0]


def test_run_needs_manifests_or_watch(tmp_path: Path) -> None:
    result = run_cli("run")
    assert result.code == 2
    assert "--watch" in result.stderr
    result = run_cli("run", "--namespace", "x", str(tmp_path / "missing.yaml"))
    assert result.code == 2


def test_watched_scaled_job_with_memory_target_prints_its_kind(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("watch")
    kubeconfig = kube_standin.kubeconfig(ns)
    proc = subprocess.Popen(
        [
            *command(),
            "run",
            "--watch",
            "--namespace",
            ns,
            "--kubeconfig",
            str(kubeconfig),
            "--json",
            "--target",
            "memory",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api.put(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "metadata": {"name": "jobs", "namespace": ns},
                "spec": {
                    "pollingInterval": 1,
                    "jobTargetRef": {
                        "template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}}
                    },
                    "triggers": [
                        {
                            "type": "redis",
                            "metadata": {
                                "address": "127.0.0.1:6379",
                                "listName": redis_list,
                                "listLength": "2",
                            },
                        }
                    ],
                },
            }
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        scale: dict[str, object] | None = None
        for raw in proc.stdout:
            line = json.loads(raw)
            if line["scaledObject"] == f"{ns}/jobs" and line["kind"] == "scale":
                scale = line
                break
            assert time.monotonic() < deadline, "no scale line within 30 s"
        assert scale is not None
        assert scale["objectKind"] == "ScaledJob"
        with api.lock:  # --target memory: the jobs run in the process, not in the cluster
            assert not [k for k in api.objects if k[:3] == ("apis/batch/v1", "jobs", ns)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
