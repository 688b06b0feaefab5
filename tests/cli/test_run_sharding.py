"""Two ``eventscale run --shard-leases`` processes share ScaledObjects through Leases on
the Kubernetes API stand-in; one is killed with SIGKILL and the other takes its objects.

Each object has its own real Redis list, so each process polls the real source; each
process has its own memory targets, so the JSON lines say which process acted on which
object. The stand-in's Leases say who holds what.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from cli._runner import command, write
from eventscale.runtime.sharding import _slug, _weight
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn
from servers.redis_srv import RedisServer

LEASES = "apis/coordination.k8s.io/v1"
IDENTITIES = ("run-a", "run-b")
OBJECTS = 4
LEASE_DURATION = 3.0  # renew deadline 2 s and retry period 0.4 s, derived by the command


def owner_of(key: str, members: tuple[str, ...] = IDENTITIES) -> str:
    """Rendezvous hashing, as LeaseSharding places objects."""
    return max(members, key=lambda m: _weight(m, key))


@attrs.define
class Replica:
    """One ``eventscale run`` process and the JSON lines it printed, with arrival times."""

    identity: str
    proc: subprocess.Popen[str]
    lines: list[tuple[float, dict[str, Any]]] = attrs.field(factory=list)
    bad: list[str] = attrs.field(factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.append((time.monotonic(), json.loads(raw)))
            except ValueError:
                self.bad.append(raw)

    def scales(self, key: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [
            e
            for t, e in list(self.lines)
            if t >= since and e["kind"] == "scale" and e["scaledObject"] == key
        ]

    def polls(self, key: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [
            e
            for t, e in list(self.lines)
            if t >= since and e["kind"] == "poll" and e["scaledObject"] == key
        ]


def wait_for(
    predicate: Callable[[], bool], what: str, limit: float, replicas: list[Replica]
) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        for r in replicas:
            if r.proc.poll() is not None and r.proc.returncode not in (-signal.SIGKILL,):
                pytest.fail(
                    f"{r.identity} exited with {r.proc.returncode}: {r.proc.stderr.read() if r.proc.stderr else ''}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit:g}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def lists(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, list[str]]]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    names = [unique_name("shard-list") for _ in range(OBJECTS)]
    yield client, names
    client.delete(*names)
    client.close()


def spread_namespace() -> str:
    """An object namespace whose objects land on both identities."""
    while True:
        ns = unique_name("objs")
        if {owner_of(f"{ns}/s{i}") for i in range(OBJECTS)} == set(IDENTITIES):
            return ns


def test_two_run_processes_share_objects_and_one_takes_over_when_the_other_is_killed(
    tmp_path: Path,
    redis_server: RedisServer,
    kube_standin: KubeStandIn,
    lists: tuple[redis.Redis, list[str]],
) -> None:
    client, names = lists
    lease_ns = unique_name("leases")
    objns = spread_namespace()
    keys = [f"{objns}/s{i}" for i in range(OBJECTS)]
    docs = [
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: s{i}, namespace: {objns}}}
spec:
  scaleTargetRef: {{name: s{i}}}
  pollingInterval: 1
  triggers:
    - type: redis
      name: queue
      metadata: {{address: "{redis_server.address}", listName: {names[i]}, listLength: "2"}}
"""
        for i in range(OBJECTS)
    ]
    path = write(tmp_path / "shard.yaml", "---\n".join(docs))
    for name in names:  # 5 items, listLength 2: every owner scales 0 -> 3
        client.rpush(name, *range(5))
    kubeconfig = str(kube_standin.kubeconfig(lease_ns))
    replicas = [
        Replica(
            identity,
            subprocess.Popen(
                [
                    *command(),
                    "run",
                    path,
                    "--target",
                    "memory",
                    "--shard-leases",
                    "--kubeconfig",
                    kubeconfig,
                    "--identity",
                    identity,
                    "--lease-duration",
                    str(LEASE_DURATION),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ),
            ),
        )
        for identity in IDENTITIES
    ]
    readers = [threading.Thread(target=r.read, daemon=True) for r in replicas]
    for reader in readers:
        reader.start()
    by_id = {r.identity: r for r in replicas}

    def lease_holder(key: str) -> str | None:
        lease = kube_standin.api.get(LEASES, "leases", lease_ns, f"eventscale-object-{_slug(key)}")
        return ((lease or {}).get("spec") or {}).get("holderIdentity")

    try:
        # 1. the work spreads. Whichever process starts first holds every object until
        # the other's member Lease appears; then the Leases move to their rendezvous
        # owners (a holder lets go before the next one takes it).
        wait_for(
            lambda: all(lease_holder(k) == owner_of(k) for k in keys),
            "every Lease to be held by its object's rendezvous owner",
            limit=30,
            replicas=replicas,
        )
        settled = time.monotonic()
        wait_for(
            lambda: all(len(by_id[owner_of(k)].polls(k, since=settled + 2)) >= 2 for k in keys),
            "the owners to keep polling their objects",
            limit=20,
            replicas=replicas,
        )
        for key in keys:
            owner = by_id[owner_of(key)]
            other = next(r for r in replicas if r is not owner)
            assert lease_holder(key) == owner.identity
            scale = owner.scales(key)[0]
            assert (scale["fromReplicas"], scale["toReplicas"]) == (0, 3)
            assert scale["identity"] == owner.identity
            # the other acts on it no more: no scale since the handover, and no poll
            # beyond one that was in flight when it let go
            assert other.scales(key, since=settled) == []
            assert other.polls(key, since=settled + 2) == []

        # 2. SIGKILL: no release, no goodbye; the survivor takes over
        victim, survivor = by_id["run-a"], by_id["run-b"]
        moved = [k for k in keys if owner_of(k) == victim.identity]
        victim.proc.kill()
        victim.proc.wait(10)
        killed = time.monotonic()
        for key in moved:
            assert lease_holder(key) == victim.identity  # still held: nobody released it
        # The survivor acts on an object it owns (it polls it; an object it does not own
        # is not polled). Whether it also *scales* depends on its own memory target:
        # if this process held every object briefly before the hand-over at start-up,
        # its target already says 3 and the decision after the takeover changes nothing.
        wait_for(
            lambda: all(survivor.polls(k, since=killed) for k in moved),
            "the survivor to act on the killed replica's objects",
            limit=20,
            replicas=[survivor],
        )
        took = max(
            next(
                t
                for t, e in survivor.lines
                if t >= killed and e["kind"] == "poll" and e["scaledObject"] == k
            )
            - killed
            for k in moved
        )
        # the Lease runs out LEASE_DURATION after its last renewal (up to a retry
        # period before the kill); the survivor notices at its next round and acts at
        # once (the gained object is woken): about 3.5 s here. The bound leaves room
        # for a loaded machine; process start-up is not in this window.
        bound = 2 * LEASE_DURATION
        assert took <= bound, f"the objects moved after {took:.2f}s (> {bound:.2f}s)"
        for key in keys:
            assert lease_holder(key) == survivor.identity
        for key in moved:
            assert [e["toReplicas"] for e in survivor.scales(key, since=killed)] in ([], [3])
            decided = [
                e["desiredReplicas"]
                for t, e in survivor.lines
                if t >= killed and e["kind"] == "decision" and e["scaledObject"] == key
            ]
            assert decided
            assert set(decided) == {3}

        # 3. a graceful stop releases every Lease
        survivor.proc.send_signal(signal.SIGINT)
        assert survivor.proc.wait(20) == 0
        for key in keys:
            assert lease_holder(key) is None
    finally:
        errors = {}
        for r in replicas:
            if r.proc.poll() is None:
                r.proc.kill()
            r.proc.wait(10)
        for reader in readers:
            reader.join(5)
        for r in replicas:
            assert r.proc.stdout is not None
            assert r.proc.stderr is not None
            errors[r.identity] = r.proc.stderr.read()
            r.proc.stdout.close()
            r.proc.stderr.close()
    for r in replicas:
        assert r.bad == [], r.bad
        assert "Traceback" not in errors[r.identity], errors[r.identity]
    print(f"takeover after SIGKILL: {took:.2f}s (lease duration {LEASE_DURATION:g}s)")


def test_inconsistent_lease_timing_or_a_missing_kubeconfig_exits_2(
    tmp_path: Path, redis_server: RedisServer, kube_standin: KubeStandIn
) -> None:
    path = write(
        tmp_path / "one.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: one}}
spec:
  scaleTargetRef: {{name: one}}
  triggers:
    - type: redis
      metadata: {{address: "{redis_server.address}", listName: x, listLength: "2"}}
""",
    )
    kubeconfig = str(kube_standin.kubeconfig("default"))
    base = [*command(), "run", path, "--target", "memory", "--shard-leases"]
    timing = subprocess.run(
        [*base, "--kubeconfig", kubeconfig, "--lease-duration", "3", "--renew-deadline", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert timing.returncode == 2, timing.stderr
    assert "--lease-duration" in timing.stderr
    assert "renew deadline (4)" in timing.stderr
    missing = subprocess.run(
        [*base, "--kubeconfig", str(tmp_path / "nowhere.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2, missing.stderr
    assert "nowhere.yaml" in missing.stderr
