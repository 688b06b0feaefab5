"""``eventscale run`` with a mixed ScaledObject (a redis list + cpu), end to end in a
subprocess: ``--target kubernetes`` on the Kubernetes API stand-in, ``--target docker``
on the private dockerd (real ``docker stats`` of members that spin or sleep).

The stand-in resizes a Deployment at once but runs no pods: a small "kubelet" thread in
the test keeps one pod (with a cpu request of 500m) and one PodMetrics per replica, at
the cpu usage the test sets. A busy list scales out; with the list empty, cpu above its
target holds the replicas, and cpu below it lets them go (docs/scalers/cpu-memory.md).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cli._runner import command, write
from cli.test_run import Lines
from servers._proc import unique_name
from servers.docker_srv import DockerDaemon
from servers.kubernetes_srv import KubeApiStandIn, KubeStandIn
from servers.redis_srv import RedisServer

REQUEST = {"cpu": "500m"}


class Kubelet:
    """Keeps ``app=<name>`` pods and PodMetrics in step with the Deployment's replicas."""

    def __init__(self, api: KubeApiStandIn, name: str, namespace: str, usage: str) -> None:
        self.api, self.name, self.namespace = api, name, namespace
        self.usage = usage
        self._stop = threading.Event()
        self._synced: tuple[int, str] | None = None
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            deployment = self.api.get("apis/apps/v1", "deployments", self.namespace, self.name)
            assert deployment is not None
            wanted = (int(deployment["spec"]["replicas"]), self.usage)
            if wanted == self._synced:
                continue
            with self.api.lock:
                for key in [
                    k
                    for k, obj in self.api.objects.items()
                    if k[1] == "pods"
                    and k[2] == self.namespace
                    and (obj.get("metadata") or {}).get("labels", {}).get("app") == self.name
                ]:
                    del self.api.objects[key]
            self.api.resource_pods(
                self.name, self.namespace, [{"cpu": wanted[1]}] * wanted[0], requests=REQUEST
            )
            self._synced = wanted


def mixed_manifest(
    path: Path,
    name: str,
    redis: RedisServer,
    key: str,
    *,
    interval: int,
    maximum: int,
    ns: str = "",
) -> str:
    """A redis list (5 items a replica) + cpu (50% Utilization) ScaledObject, min 1,
    without stabilization or step limits: each decision is the proposal itself."""
    where = f", namespace: {ns}" if ns else ""
    return write(
        path,
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}{where}}}
spec:
  scaleTargetRef: {{name: {name}}}
  pollingInterval: {interval}
  minReplicaCount: 1
  maxReplicaCount: {maximum}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{{type: Pods, value: 100, periodSeconds: 1}}]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{{type: Pods, value: 100, periodSeconds: 1}}]
  triggers:
    - type: redis
      name: list
      metadata: {{address: "{redis.address}", listName: {key}, listLength: "5"}}
    - type: cpu
      name: cpu
      metricType: Utilization
      metadata: {{value: "50"}}
""",
    )


def run(path: str, target: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command("script"), "run", path, "--target", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then a clean exit without a traceback."""
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


@pytest.fixture
def work(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    key = unique_name("run-cpu")
    yield client, key
    client.delete(key)
    client.close()


def test_a_busy_list_scales_out_then_cpu_holds_and_lets_go(
    tmp_path: Path,
    redis_server: RedisServer,
    kube_standin: KubeStandIn,
    work: tuple[redis.Redis, str],
) -> None:
    client, key = work
    api = kube_standin.api
    ns, name = unique_name("ns"), unique_name("web")
    api.deployment(name, ns, replicas=1)
    path = mixed_manifest(
        tmp_path / "mixed.yaml", name, redis_server, key, interval=1, maximum=8, ns=ns
    )
    # 250m of 500m: 50%, the target: cpu keeps the count
    with Kubelet(api, name, ns, "250m") as kubelet:
        proc = run(path, "kubernetes", {"KUBECONFIG": str(kube_standin.kubeconfig(ns))})
        try:
            lines = Lines(proc)
            poll = lines.until("poll")
            values = {t["name"]: t["value"] for t in poll["triggers"]}
            assert values == {"list": 0.0, "cpu": 1.0}, poll
            # 40 items, listLength 5: 8 replicas
            client.rpush(key, *range(40))
            scale = lines.until("scale")
            assert (scale["fromReplicas"], scale["toReplicas"]) == (1, 8), scale
            # the list empties; the 8 pods at 90% of a 50% target ask for
            # ceil(1.8 * 8) = 15, capped at 8: the replicas hold
            kubelet.usage = "450m"
            client.delete(key)
            held: list[dict[str, Any]] = []
            while len(held) < 4:
                event = lines.until("poll")
                by_name = {t["name"]: t for t in event["triggers"]}
                if by_name["list"]["value"] == 0 and by_name["cpu"]["value"] == 15:
                    held.append(lines.until("decision"))
            assert [d["desiredReplicas"] for d in held] == [8] * 4, held
            deployment = api.get("apis/apps/v1", "deployments", ns, name)
            assert deployment is not None
            assert deployment["spec"]["replicas"] == 8
            # 10% of 50%: ceil(0.2 * 8) = 2, then ceil(0.2 * 2) = 1, the minimum
            kubelet.usage = "50m"
            down = lines.until("scale")
            assert (down["fromReplicas"], down["toReplicas"]) == (8, 2), down
            last = lines.until("scale")
            assert (last["fromReplicas"], last["toReplicas"]) == (2, 1), last
            stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# Busy (a shell loop) while /flag/busy exists in the bind-mounted folder, idle otherwise.
FLAGGED = "trap 'exit 0' TERM; while :; do if [ -e /flag/busy ]; then :; else sleep 0.2; fi; done"


def test_on_docker_a_busy_list_scales_out_then_cpu_holds_and_lets_go(
    tmp_path: Path,
    redis_server: RedisServer,
    docker_daemon: DockerDaemon,
    work: tuple[redis.Redis, str],
) -> None:
    client, key = work
    name = unique_name("mixed")
    flag = tmp_path / "flag"
    flag.mkdir()
    flag.chmod(0o777)
    # the first member; the target clones it (limits, bind mount and all) to scale out
    status, created = docker_daemon.api(
        "POST",
        f"/containers/create?name={name}-seed",
        {
            "Image": docker_daemon.image,
            "Cmd": ["sh", "-c", FLAGGED],
            "Labels": {"eventscale.target": name},
            "HostConfig": {
                "NetworkMode": "none",
                "NanoCpus": 250_000_000,  # a quarter cpu: Utilization is a share of it
                "Memory": 32 * 2**20,
                "Binds": [f"{flag}:/flag:ro"],
            },
        },
    )
    assert status == 201, created
    status, started = docker_daemon.api("POST", f"/containers/{created['Id']}/start")
    assert status == 204, started
    # pollingInterval 3: a Docker stats read takes about 1 s, and must fit in the poll
    path = mixed_manifest(tmp_path / "mixed.yaml", name, redis_server, key, interval=3, maximum=3)
    proc = run(path, "docker", {"DOCKER_HOST": docker_daemon.url})
    try:
        lines = Lines(proc)
        client.rpush(key, *range(15))  # 15 items, listLength 5: 3
        scale = lines.until("scale", timeout=60)
        assert (scale["fromReplicas"], scale["toReplicas"]) == (1, 3), scale
        # the list empties while the 3 members spin at their quarter cpu (about 100%
        # of a 50% target: cpu asks for about 6, capped at 3): the replicas hold
        (flag / "busy").touch()
        client.delete(key)
        held: list[dict[str, Any]] = []
        seen: list[tuple[object, object]] = []
        while len(held) < 3:
            event = lines.until("poll", timeout=60)
            by_name = {t["name"]: t for t in event["triggers"]}
            cpu = by_name["cpu"]["value"]
            seen.append((cpu, by_name["cpu"].get("error")))
            assert len(seen) < 20, seen
            if by_name["list"]["value"] == 0 and cpu is not None and cpu > 3:
                held.append(lines.until("decision", timeout=60))
        assert [d["desiredReplicas"] for d in held] == [3] * 3, held
        # idle members: cpu asks for 1, the minimum
        (flag / "busy").unlink()
        down = lines.until("scale", timeout=60)
        assert down["fromReplicas"] == 3, down
        while down["toReplicas"] != 1:
            down = lines.until("scale", timeout=60)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        docker_daemon.remove_all_matching(f"eventscale.target={name}")
