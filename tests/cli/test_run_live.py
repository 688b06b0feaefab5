"""``eventscale run`` as KEDA's operator runs: metrics and probes on --metrics-address,
manifest files read again on change and on SIGHUP (a real Redis, memory targets)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cli._runner import command, run_cli, write
from cli.test_run import Lines, start
from servers._proc import free_port, unique_name
from servers.kubernetes_srv import KubeStandIn
from servers.redis_srv import RedisServer


@pytest.fixture
def queue(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    name = unique_name("cli-live")
    yield client, name
    client.delete(name)
    client.close()


def scaled_object(name: str, address: str, lst: str, length: str = "2") -> str:
    return f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: shop}}
spec:
  scaleTargetRef: {{name: {name}}}
  pollingInterval: 1
  triggers:
    - type: redis
      name: orders
      metadata: {{address: "{address}", listName: {lst}, listLength: "{length}"}}
"""


def fetch(url: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            return resp.status, await resp.text()

    return asyncio.run(go())


def wait_for(url: str, status: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = fetch(url)
        except aiohttp.ClientError as exc:
            last = exc
        else:
            if code == status:
                return body
            last = (code, body)
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer {status} within {timeout}s: {last!r}")


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


def test_metrics_address_serves_kedas_metrics_and_the_probes(
    tmp_path: Path, redis_server: RedisServer, queue: tuple[redis.Redis, str]
) -> None:
    client, lst = queue
    client.rpush(lst, *range(5))
    path = write(tmp_path / "so.yaml", scaled_object("orders", redis_server.address, lst))
    port = free_port()
    proc = start(path, "--metrics-address", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        Lines(proc).until("scale")
        body = wait_for(f"{base}/readyz?verbose", 200)
        assert "[+]controller ok: 1 object(s) reconciled" in body
        assert wait_for(f"{base}/healthz", 200) == "ok\n"
        code, text = fetch(f"{base}/metrics")
        assert code == 200
    finally:
        stop(proc)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    trigger = tuple(
        sorted(
            {
                "namespace": "shop",
                "metric": f"s0-redis-{lst}",
                "scaledObject": "orders",
                "scaler": "orders",
                "triggerIndex": "0",
                "type": "scaledobject",
            }.items()
        )
    )
    obj = (("namespace", "shop"), ("scaledObject", "orders"))
    assert samples[("keda_scaler_metrics_value", trigger)] == 5.0
    assert samples[("keda_scaler_active", trigger)] == 1.0
    assert samples[("keda_scaler_detail_errors_total", trigger)] == 0.0
    assert samples[("keda_scaler_metrics_latency_seconds", trigger)] > 0.0
    assert samples[("keda_scaled_object_errors_total", obj)] == 0.0
    assert samples[("keda_scaled_object_paused", obj)] == 0.0
    assert samples[("keda_trigger_registered_total", (("type", "redis"),))] == 1.0
    assert (
        samples[
            (
                "keda_resource_registered_total",
                (("namespace", "shop"), ("type", "scaled_object")),
            )
        ]
        == 1.0
    )
    names = {name for name, _ in samples}
    assert "keda_build_info" in names
    assert "keda_internal_scale_loop_latency_seconds" in names
    assert "eventscale_trigger_value" in names  # eventscale's own beside KEDA's
    assert "process_resident_memory_bytes" in names
    assert not any(name.endswith("_created") for name in names)  # as KEDA's Go client


def test_edits_reload_and_a_bad_edit_keeps_the_running_version(
    tmp_path: Path, redis_server: RedisServer, queue: tuple[redis.Redis, str]
) -> None:
    client, lst = queue
    client.rpush(lst, *range(6))
    folder = tmp_path / "manifests"
    folder.mkdir()
    address = redis_server.address
    write(folder / "a.yaml", scaled_object("a", address, lst))
    write(folder / "b.yaml", scaled_object("b", address, lst))
    proc = start(str(folder), "--reload-interval", "0.2")
    try:
        lines = Lines(proc)
        first = lines.until("scale")
        assert first["toReplicas"] == 3  # ceil(6 / 2)
        # An invalid edit: refused with its field path, a keeps scaling as before.
        write(folder / "a.yaml", scaled_object("a", address, lst, length="lots"))
        refused = lines.until("config_error")
        assert refused["scaledObject"] == "shop/a"
        assert "spec.triggers[0].metadata.listLength" in refused["error"]
        # A valid edit of a: only a is updated, and acts on its new target value.
        write(folder / "a.yaml", scaled_object("a", address, lst, length="1"))
        reload = lines.until("reload")
        assert reload["reason"] == "updated shop/a"
        scale = lines.until("scale")
        # From the 3 replicas its target holds (the target goes on), towards 6, within
        # the default scale-up limit of 4 pods per 15 s that counts the earlier 0 -> 3
        # (the engine state goes on too).
        assert (scale["scaledObject"], scale["fromReplicas"], scale["toReplicas"]) == (
            "shop/a",
            3,
            4,
        )
        # A new file adds an object.
        write(folder / "c.yaml", scaled_object("c", address, lst))
        assert lines.until("reload")["reason"] == "added shop/c"
    finally:
        _out, err = stop(proc)
    assert "edit refused, the running version stays" in err
    assert "spec.triggers[0].metadata.listLength" in err


def test_sighup_rereads_the_files(
    tmp_path: Path, redis_server: RedisServer, queue: tuple[redis.Redis, str]
) -> None:
    _, lst = queue
    path = tmp_path / "so.yaml"
    write(path, scaled_object("a", redis_server.address, lst))
    proc = start(str(path), "--reload-interval", "0")  # no checks but on SIGHUP
    try:
        lines = Lines(proc)
        lines.until("decision")
        write(path, scaled_object("renamed", redis_server.address, lst))
        proc.send_signal(signal.SIGHUP)
        reload = lines.until("reload")
        assert reload["reason"] == "added shop/renamed; removed shop/a"
        assert lines.until("poll")["scaledObject"] == "shop/renamed"
    finally:
        out, _ = stop(proc)
    for line in out.splitlines():
        json.loads(line)


def test_metrics_with_the_kubernetes_target_count_target_errors(
    tmp_path: Path,
    redis_server: RedisServer,
    queue: tuple[redis.Redis, str],
    kube_standin: KubeStandIn,
) -> None:
    client, lst = queue
    client.rpush(lst, *range(4))
    namespace = unique_name("metrics")
    kube_standin.api.deployment("orders", namespace, replicas=0)
    text = scaled_object("orders", redis_server.address, lst).replace("shop", namespace)
    text += "---\n" + scaled_object("ghost", redis_server.address, lst).replace("shop", namespace)
    path = write(tmp_path / "so.yaml", text)
    kubeconfig = str(kube_standin.kubeconfig(namespace))
    port = free_port()
    proc = subprocess.Popen(
        [
            *command("script"),
            "run",
            path,
            "--kubeconfig",
            kubeconfig,
            "--metrics-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc)
        scale = lines.until("scale")
        assert (scale["scaledObject"], scale["toReplicas"]) == (f"{namespace}/orders", 2)
        lines.until("target_error")  # ghost's Deployment does not exist
        lines.until("target_error")
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        _, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop(proc)
    deployment = kube_standin.api.get("apis/apps/v1", "deployments", namespace, "orders")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    errors = {
        s.labels["scaledObject"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "keda_scaled_object_errors_total"
    }
    assert errors["orders"] == 0.0
    assert errors["ghost"] >= 2.0


def test_an_edited_scaled_job_keeps_its_running_jobs(
    tmp_path: Path, redis_server: RedisServer, queue: tuple[redis.Redis, str]
) -> None:
    client, lst = queue
    client.rpush(lst, *range(3))
    job = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: crunch, namespace: shop}}
spec:
  jobTargetRef: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}
  pollingInterval: 1
  maxReplicaCount: {max}
  triggers:
    - type: redis
      metadata: {{address: "{address}", listName: {lst}, listLength: "1"}}
"""
    path = tmp_path / "job.yaml"
    write(path, job.format(max=3, address=redis_server.address, lst=lst))
    proc = start(str(path), "--reload-interval", "0.2")
    try:
        lines = Lines(proc)
        started = lines.until("scale")
        assert (started["fromReplicas"], started["toReplicas"]) == (0, 3)
        # Only the maximum changes: the job target (and its three jobs, which run until
        # the command stops) goes on.
        write(path, job.format(max=5, address=redis_server.address, lst=lst))
        assert lines.until("reload")["reason"] == "updated shop/crunch"
        decision = lines.until("decision")
        assert decision["currentReplicas"] == 3
    finally:
        stop(proc)


def test_a_bad_metrics_address_or_a_taken_port_exits_2(
    tmp_path: Path, redis_server: RedisServer, queue: tuple[redis.Redis, str]
) -> None:
    _, lst = queue
    path = write(tmp_path / "so.yaml", scaled_object("orders", redis_server.address, lst))
    bad = run_cli("run", path, "--target", "memory", "--metrics-address", "localhost")
    assert bad.code == 2
    assert "--metrics-address: expected HOST:PORT or :PORT" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("run", path, "--target", "memory", "--metrics-address", f"127.0.0.1:{port}")
    assert busy.code == 2, busy.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr


def test_watch_mode_probes_wait_for_the_watch_and_metrics_name_watched_objects(
    redis_server: RedisServer,
    queue: tuple[redis.Redis, str],
    kube_standin: KubeStandIn,
) -> None:
    client, lst = queue
    client.rpush(lst, *range(4))
    api, namespace = kube_standin.api, unique_name("watch-metrics")
    api.deployment("orders", namespace, replicas=0)
    port = free_port()
    proc = subprocess.Popen(
        [
            *command("script"),
            "run",
            "--watch",
            "--namespace",
            namespace,
            "--kubeconfig",
            str(kube_standin.kubeconfig(namespace)),
            "--metrics-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # ready once every watch has listed and what it listed is reconciled
        body = wait_for(f"http://127.0.0.1:{port}/readyz?verbose", 200)
        assert "watch" in body
        assert "watch" in wait_for(f"http://127.0.0.1:{port}/healthz?verbose", 200)
        api.scaled_object(
            "orders",
            namespace,
            "orders",
            [
                {
                    "type": "redis",
                    "metadata": {
                        "address": redis_server.address,
                        "listName": lst,
                        "listLength": "2",
                    },
                }
            ],
            pollingInterval=1,
        )
        lines = Lines(proc)
        scale = lines.until("scale")
        assert (scale["scaledObject"], scale["toReplicas"]) == (f"{namespace}/orders", 2)
        _, metrics = fetch(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop(proc)
    values = {
        (s.labels["scaledObject"], s.labels["type"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "keda_scaler_metrics_value" and s.labels.get("namespace") == namespace
    }
    assert values == {("orders", "scaledobject"): 4.0}
