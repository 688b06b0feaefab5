"""The real ``kubectl`` (Debian's package, 1.32) reads and writes KEDA's kinds on the
Kubernetes stand-in: the printer columns of KEDA's CRDs from a status written through
the API, a watch that sees the change, ``describe`` with the Events EventRecorder
wrote, and ``patch --subresource=status``. What kubectl shows is what a cluster with
KEDA's CRDs shows, so the stand-in's Tables, watches and Events are the real shapes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventscale.kube import EventRecorder, KubeClient, KubeConfig
from servers._proc import ensure_apt
from servers.kubernetes_srv import KubeStandIn

SO = "/apis/keda.sh/v1alpha1"


@pytest.fixture(scope="module")
def kubectl() -> str:
    return ensure_apt("kubectl", "kubectl")


def _env(home: Path, kubeconfig: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    clean.update(HOME=str(home), KUBECONFIG=str(kubeconfig))
    return clean


def _run(kubectl: str, home: Path, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [kubectl, *args],
        env=_env(home, kubeconfig),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _status(ready: str, active: str) -> dict[str, Any]:
    return {
        "scaleTargetKind": "apps/v1.Deployment",
        "originalReplicaCount": 1,
        "triggersTypes": "cron",
        "conditions": [
            {"type": "Ready", "status": ready, "reason": "ScaledObjectReady", "message": "ok"},
            {"type": "Active", "status": active, "reason": "ScalerActive", "message": "m"},
            {"type": "Fallback", "status": "False", "reason": "NoFallbackFound", "message": ""},
            {"type": "Paused", "status": "False", "reason": "ScaledObjectUnpaused", "message": ""},
        ],
    }


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


@pytest.mark.anyio
async def test_kubectl_get_shows_kedas_columns_from_the_status(
    kube_standin: KubeStandIn, kubectl: str, ns: str, tmp_path: Path
) -> None:
    config = kube_standin.kubeconfig(ns)
    kube_standin.api.scaled_object(
        "web", ns, target="web-app", minReplicaCount=1, maxReplicaCount=9
    )
    client = KubeClient(KubeConfig.from_kubeconfig(config), user_agent="standin-test")
    try:
        before = _rows(_run(kubectl, tmp_path, config, "get", "scaledobject"))
        await client.request(
            "PATCH",
            f"{SO}/namespaces/{ns}/scaledobjects/web/status",
            body={"status": _status("True", "False")},
        )
    finally:
        await client.aclose()
    assert before[0] == [
        "NAME", "SCALETARGETKIND", "SCALETARGETNAME", "MIN", "MAX", "READY", "ACTIVE",
        "FALLBACK", "PAUSED", "TRIGGERS", "AUTHENTICATIONS", "AGE",
    ]  # fmt: skip
    assert before[1][:3] == ["web", "web-app", "1"]  # no status yet: blank cells
    after = _rows(_run(kubectl, tmp_path, config, "get", "so"))
    assert after[1][:-1] == [
        "web", "apps/v1.Deployment", "web-app", "1", "9", "True", "False", "False", "False", "cron",
    ]  # fmt: skip
    kube_standin.api.scaled_job("batch", ns, maxReplicaCount=4)
    jobs = _rows(_run(kubectl, tmp_path, config, "get", "sj"))
    assert jobs[0] == [
        "NAME", "MIN", "MAX", "READY", "ACTIVE", "PAUSED", "TRIGGERS", "AUTHENTICATIONS", "AGE",
    ]  # fmt: skip
    assert jobs[1][:2] == ["batch", "4"]
    kube_standin.api.trigger_authentication("auth", ns, {"secretTargetRef": [{"name": "s1"}]})
    auths = _rows(_run(kubectl, tmp_path, config, "get", "ta"))
    assert auths[0] == ["NAME", "PODIDENTITY", "SECRET", "ENV", "VAULTADDRESS"]
    assert auths[1] == ["auth", "s1"]
    wide = _run(kubectl, tmp_path, config, "get", "scaledobjects", "-A")
    assert wide.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert f"{ns} " in wide


async def _write_status(config: Path, ns: str, name: str, status: dict[str, Any]) -> None:
    client = KubeClient(KubeConfig.from_kubeconfig(config), user_agent="standin-test")
    try:
        await client.request(
            "PATCH", f"{SO}/namespaces/{ns}/scaledobjects/{name}/status", body={"status": status}
        )
    finally:
        await client.aclose()


def _wait_for(proc: subprocess.Popen[bytes], out: Path, text: str, deadline: float) -> None:
    while text not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)


def test_kubectl_get_watch_receives_a_status_change(
    kube_standin: KubeStandIn, kubectl: str, ns: str, tmp_path: Path
) -> None:
    config = kube_standin.kubeconfig(ns)
    kube_standin.api.scaled_object("queue", ns)
    out = tmp_path / "watch.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [kubectl, "get", "scaledobjects", "-w"],
            env=_env(tmp_path, config),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        _wait_for(proc, out, "queue", deadline)
        anyio.run(_write_status, config, ns, "queue", _status("True", "True"))
        _wait_for(proc, out, "True", deadline)
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [line.split() for line in out.read_text().splitlines()]
    assert lines[0][:6] == ["NAME", "SCALETARGETKIND", "SCALETARGETNAME", "MIN", "MAX", "READY"]
    changed = next(line for line in lines[1:] if "True" in line)
    assert changed[0] == "queue"
    assert changed[1:3] == ["apps/v1.Deployment", "app"]
    assert changed[3:7] == ["True", "True", "False", "False"]


@pytest.mark.anyio
async def test_kubectl_describe_shows_recorded_events(
    kube_standin: KubeStandIn, kubectl: str, ns: str, tmp_path: Path
) -> None:
    config = kube_standin.kubeconfig(ns)
    obj = kube_standin.api.scaled_object("orders", ns)
    client = KubeClient(KubeConfig.from_kubeconfig(config))
    try:
        recorder = EventRecorder(client, instance="eventscale-0")
        await recorder.record(obj, "Normal", "KEDAScalersStarted", "Scaler cron is built.")
        for _ in range(3):
            await recorder.record(obj, "Warning", "KEDAScalerFailed", "cron: bad timezone")
    finally:
        await client.aclose()
    described = _run(kubectl, tmp_path, config, "describe", "scaledobject", "orders")
    events = described[described.index("Events:") :].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    rows = [line.split(None, 2) for line in events[3:] if line.strip()]
    assert [(r[0], r[1]) for r in rows] == [
        ("Normal", "KEDAScalersStarted"),
        ("Warning", "KEDAScalerFailed"),
    ]
    assert rows[0][2].endswith("eventscale  Scaler cron is built.")
    assert "(x3 over" in rows[1][2]
    assert rows[1][2].endswith("eventscale  cron: bad timezone")


@pytest.mark.anyio
async def test_kubectl_patch_status_subresource(
    kube_standin: KubeStandIn, kubectl: str, ns: str, tmp_path: Path
) -> None:
    config = kube_standin.kubeconfig(ns)
    api = kube_standin.api
    created = api.scaled_object("jobs", ns, minReplicaCount=2)
    patch = json.dumps({"status": _status("False", "False")})
    _run(kubectl, tmp_path, config, "patch", "scaledobject", "jobs", "--subresource=status",
         "--type=merge", "-p", patch)  # fmt: skip
    # A status write ignores the spec; a main-resource write ignores the status.
    _run(kubectl, tmp_path, config, "patch", "scaledobject", "jobs", "--subresource=status",
         "--type=merge", "-p", '{"spec": {"minReplicaCount": 7}}')  # fmt: skip
    _run(kubectl, tmp_path, config, "patch", "scaledobject", "jobs", "--type=json",
         "-p", '[{"op": "replace", "path": "/spec/minReplicaCount", "value": 3},'
         ' {"op": "add", "path": "/status/originalReplicaCount", "value": 99}]')  # fmt: skip
    stored = api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "jobs")
    assert stored is not None
    assert stored["spec"]["minReplicaCount"] == 3
    assert stored["status"] == _status("False", "False")
    assert stored["metadata"]["generation"] == created["metadata"]["generation"] + 1
    row = _rows(_run(kubectl, tmp_path, config, "get", "so", "jobs"))[1]
    assert row[5] == "False"
    calls = {c[:3] for c in api.calls if c.agent.startswith("kubectl")}
    assert ("patch", "keda.sh", "scaledobjects/status") in calls
    assert ("patch", "keda.sh", "scaledobjects") in calls


_MANIFEST = """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: applied
  finalizers: [finalizer.keda.sh]
spec:
  scaleTargetRef: {name: app}
  maxReplicaCount: MAX
  triggers:
  - type: cron
    metadata: {timezone: UTC, start: "0 * * * *", end: "30 * * * *", desiredReplicas: "2"}
"""


def test_kubectl_apply_edit_and_delete_with_a_finalizer(
    kube_standin: KubeStandIn, kubectl: str, ns: str, tmp_path: Path
) -> None:
    config = kube_standin.kubeconfig(ns)
    api = kube_standin.api
    manifest = tmp_path / "so.yaml"
    apply = ("apply", "-f", str(manifest))
    manifest.write_text(_MANIFEST.replace("MAX", "5"))
    assert "created" in _run(kubectl, tmp_path, config, *apply)
    manifest.write_text(_MANIFEST.replace("MAX", "8"))
    assert "configured" in _run(kubectl, tmp_path, config, *apply)
    stored = api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "applied")
    assert stored is not None
    assert stored["spec"]["maxReplicaCount"] == 8
    assert stored["metadata"]["generation"] == 2
    # kubectl delete waits (through a watch) until the finalizer is removed.
    proc = subprocess.Popen(
        [kubectl, "delete", "scaledobject", "applied", "--timeout=30s"],
        env=_env(tmp_path, config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            not (api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "applied") or {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert proc.poll() is None  # still waiting for the finalizer
        _run(kubectl, tmp_path, config, "patch", "scaledobject", "applied", "--type=json",
             "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')  # fmt: skip
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert 'scaledobject.keda.sh "applied" deleted' in out
    assert api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "applied") is None
