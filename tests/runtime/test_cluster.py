"""The cluster reconciler against the Kubernetes stand-in, driven through the real client.

ScaledObjects are applied, edited, paused, broken, fixed and deleted while the
reconciler runs; the Deployment's replicas, the status KEDA's CRD shows and the
Kubernetes Events are read back from the stand-in. Triggers read a real Redis list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runtime._cluster_helpers import (
    condition,
    delete,
    edit,
    reasons,
    redis_trigger,
    replicas,
    running,
    status_of,
    until,
)
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis_list() -> Iterator[str]:
    name = unique_name("list")
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.rpush(name, *range(12))
    yield name
    client.delete(name)
    client.close()


def _ready(standin: KubeStandIn, ns: str, name: str) -> bool:
    return condition(status_of(standin, ns, name), "Ready")[0] == "True"


async def test_apply_edit_pause_break_fix_delete(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    api.deployment("web", ns, replicas=2)
    api.deployment("api", ns, replicas=1)
    async with running(kube_standin, [ns]) as run:
        api.scaled_object(
            "so",
            ns,
            "web",
            [redis_trigger(redis_list, 5)],
            pollingInterval=1,
            advanced={"restoreToOriginalReplicaCount": True},
        )
        api.scaled_object(
            "bystander", ns, "api", [redis_trigger(redis_list, 12)], pollingInterval=1
        )
        await until(lambda: replicas(kube_standin, ns, "web") == 3, "12 items / 5 per replica")
        await until(
            lambda: condition(status_of(kube_standin, ns, "so"), "Active")[0] == "True", "Active"
        )
        status = status_of(kube_standin, ns, "so")
        assert condition(status, "Ready")[:2] == ("True", "ScaledObjectReady")
        assert status["originalReplicaCount"] == 2
        assert status["scaleTargetKind"] == "apps/v1.Deployment"
        assert status["scaleTargetGVKR"]["resource"] == "deployments"
        assert status["triggersTypes"] == "redis"
        assert status["externalMetricNames"] == [f"s0-redis-{redis_list}"]
        assert "lastActiveTime" in status
        obj = api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "so") or {}
        assert obj["metadata"]["finalizers"] == ["finalizer.keda.sh"]
        await until(
            lambda: "ScaledObjectReady" in reasons(kube_standin, ns, "so"), "the Ready event"
        )
        assert "KEDAScalersStarted" in reasons(kube_standin, ns, "so")
        bystander = run.controller.get(f"{ns}/bystander")

        await until(
            lambda: condition(status_of(kube_standin, ns, "bystander"), "Active")[0] == "True",
            "the bystander active",
        )

        # nothing changes: no status write, however many polls
        def status_writes() -> int:  # as the API server saw them (no race with replies)
            with api.lock:
                return sum(1 for c in api.calls if c.resource == "scaledobjects/status")

        writes = status_writes()
        polls = run.controller.status(f"{ns}/so").polls
        await until(lambda: run.controller.status(f"{ns}/so").polls >= polls + 3, "three polls")
        assert status_writes() == writes

        # an edit is live
        edit(
            kube_standin,
            "scaledobjects",
            ns,
            "so",
            lambda o: o["spec"]["triggers"][0]["metadata"].update(listLength="2"),
        )
        await until(lambda: replicas(kube_standin, ns, "web") == 6, "12 items / 2 per replica")

        # pause with a replica count, then unpause
        def pause(o: dict[str, Any]) -> None:
            o["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "1"}

        edit(kube_standin, "scaledobjects", ns, "so", pause)
        await until(lambda: replicas(kube_standin, ns, "web") == 1, "the paused replica count")
        await until(
            lambda: condition(status_of(kube_standin, ns, "so"), "Paused")[0] == "True", "Paused"
        )
        assert status_of(kube_standin, ns, "so")["pausedReplicaCount"] == 1
        edit(kube_standin, "scaledobjects", ns, "so", lambda o: o["metadata"].pop("annotations"))
        # (the HPA's default scale-up policy: at most +4 pods per 15 s from 1)
        await until(lambda: replicas(kube_standin, ns, "web") > 1, "scaling again")
        await until(
            lambda: (
                condition(status_of(kube_standin, ns, "so"), "Paused")[:2]
                == ("False", "ScaledObjectUnpaused")
            ),
            "Unpaused",
        )
        assert "pausedReplicaCount" not in status_of(kube_standin, ns, "so")
        assert {"ScaledObjectPaused", "ScaledObjectUnpaused"} <= set(
            reasons(kube_standin, ns, "so")
        )

        # an invalid edit refuses this object only, naming the field
        edit(
            kube_standin, "scaledobjects", ns, "so", lambda o: o["spec"].update(minReplicaCount=-1)
        )
        await until(lambda: not _ready(kube_standin, ns, "so"), "Ready=False")
        ready = condition(status_of(kube_standin, ns, "so"), "Ready")
        assert ready[1] == "ScaledObjectCheckFailed"
        assert "spec.minReplicaCount" in ready[2]
        assert f"{ns}/so" not in run.controller
        assert "ScaledObjectCheckFailed" in reasons(kube_standin, ns, "so")
        assert run.controller.get(f"{ns}/bystander") is bystander  # untouched
        assert _ready(kube_standin, ns, "bystander")

        edit(kube_standin, "scaledobjects", ns, "so", lambda o: o["spec"].pop("minReplicaCount"))
        await until(lambda: _ready(kube_standin, ns, "so"), "Ready again")
        assert f"{ns}/so" in run.controller

        # delete: the original replica count comes back, then the finalizer goes
        delete(kube_standin, "scaledobjects", ns, "so")
        await until(
            lambda: api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "so") is None,
            "the finalizer to be removed",
        )
        assert replicas(kube_standin, ns, "web") == 2
        assert f"{ns}/so" not in run.controller
        assert "ScaledObjectDeleted" in reasons(kube_standin, ns, "so")
        assert run.controller.get(f"{ns}/bystander") is bystander


async def test_a_changed_secret_rebuilds_only_its_users(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    api.deployment("web", ns, replicas=0)
    api.deployment("api", ns, replicas=0)
    api.secret("redis", ns, {"address": "127.0.0.1:1"})  # nothing listens there
    api.put(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {"name": "ta", "namespace": ns},
            "spec": {
                "secretTargetRef": [{"parameter": "address", "name": "redis", "key": "address"}]
            },
        }
    )
    async with running(kube_standin, [ns]) as run:
        user = redis_trigger(redis_list, 5, address=None)
        user["authenticationRef"] = {"name": "ta"}
        api.scaled_object(
            "user",
            ns,
            "web",
            [user],
            pollingInterval=1,
            fallback={"failureThreshold": 1, "replicas": 4},
        )
        api.scaled_object("other", ns, "api", [redis_trigger(redis_list, 12)], pollingInterval=1)
        await until(
            lambda: "KEDAScalerFailed" in reasons(kube_standin, ns, "user"),
            "a scaler failure event",
        )
        await until(
            lambda: condition(status_of(kube_standin, ns, "user"), "Fallback")[0] == "True",
            "the fallback",
        )
        health = status_of(kube_standin, ns, "user")["health"]
        assert health[f"s0-redis-{redis_list}"]["status"] == "Failing"
        assert health[f"s0-redis-{redis_list}"]["numberOfFailures"] >= 1
        assert status_of(kube_standin, ns, "user")["authenticationsTypes"] == "ta"
        await until(lambda: replicas(kube_standin, ns, "web") == 4, "the fallback replicas")
        # (the other object built before its identity and the build count are taken)
        await until(lambda: f"{ns}/other" in run.controller, "the other object running")
        other = run.controller.get(f"{ns}/other")
        built = run.reconciler.built

        api.secret("redis", ns, {"address": "127.0.0.1:6379"})
        await until(lambda: replicas(kube_standin, ns, "web") == 3, "the fixed address to be used")
        assert run.reconciler.built == built + 1  # only the user was rebuilt
        assert run.controller.get(f"{ns}/other") is other
        await until(
            lambda: condition(status_of(kube_standin, ns, "user"), "Fallback")[0] == "False",
            "fallback over",
        )
        await until(
            lambda: (
                status_of(kube_standin, ns, "user")["health"][f"s0-redis-{redis_list}"]["status"]
                == "Happy"
            ),
            "healthy again",
        )
        # The tracker's Events go out beside the status write, not before it (as KEDA's
        # recorder sends them on its own): wait for them rather than read them at once.
        await until(
            lambda: (
                {"ScaledObjectFallbackActivated", "ScaledObjectFallbackDeactivated"}
                <= set(reasons(kube_standin, ns, "user"))
            ),
            "the fallback's Events",
        )

        # the TriggerAuthentication now names a Secret that does not exist: refused,
        # with the path inside the TriggerAuthentication; the other object untouched
        def retarget(o: dict[str, Any]) -> None:
            o["spec"]["secretTargetRef"][0]["name"] = "nowhere"

        edit(kube_standin, "triggerauthentications", ns, "ta", retarget)
        await until(lambda: not _ready(kube_standin, ns, "user"), "the user refused")
        message = condition(status_of(kube_standin, ns, "user"), "Ready")[2]
        assert "secretTargetRef[0]" in message
        assert "nowhere" in message
        assert run.controller.get(f"{ns}/other") is other
        api.secret("nowhere", ns, {"address": "127.0.0.1:6379"})
        await until(lambda: _ready(kube_standin, ns, "user"), "ready once the Secret exists")


async def test_a_target_scaled_elsewhere_is_refused(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    api.deployment("web", ns, replicas=0)
    api.deployment("api", ns, replicas=0)
    api.put(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "manual", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "maxReplicas": 3,
            },
        }
    )
    async with running(kube_standin, [ns]) as run:
        api.scaled_object("first", ns, "web", [redis_trigger(redis_list)], pollingInterval=1)
        await until(lambda: _ready(kube_standin, ns, "first"), "the first to be ready")
        api.scaled_object("second", ns, "web", [redis_trigger(redis_list)], pollingInterval=1)
        api.scaled_object("third", ns, "api", [redis_trigger(redis_list)], pollingInterval=1)
        await until(
            lambda: condition(status_of(kube_standin, ns, "second"), "Ready")[0] == "False",
            "second refused",
        )
        await until(
            lambda: condition(status_of(kube_standin, ns, "third"), "Ready")[0] == "False",
            "third refused",
        )
        assert (
            "is already managed by the ScaledObject 'first'"
            in condition(status_of(kube_standin, ns, "second"), "Ready")[2]
        )
        assert (
            "is already managed by the hpa 'manual'"
            in condition(status_of(kube_standin, ns, "third"), "Ready")[2]
        )
        assert f"{ns}/second" not in run.controller
        assert f"{ns}/third" not in run.controller
        delete(kube_standin, "scaledobjects", ns, "first")
        await until(lambda: _ready(kube_standin, ns, "second"), "second to take the target over")
        with api.lock:
            api.remove(("apis/autoscaling/v2", "horizontalpodautoscalers", ns, "manual"))
        await until(lambda: _ready(kube_standin, ns, "third"), "third once the HPA is gone")


async def test_a_cut_watch_and_a_compacted_history_lose_nothing(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    for name in ("a", "b", "c"):
        api.deployment(name, ns, replicas=0)
    async with running(kube_standin, [ns]) as run:
        api.scaled_object("a", ns, "a", [redis_trigger(redis_list)], pollingInterval=1)
        await until(lambda: _ready(kube_standin, ns, "a"), "a")
        api.cut_watches()
        api.scaled_object("b", ns, "b", [redis_trigger(redis_list)], pollingInterval=1)
        edit(
            kube_standin,
            "scaledobjects",
            ns,
            "a",
            lambda o: o["spec"]["triggers"][0]["metadata"].update(listLength="2"),
        )
        await until(lambda: _ready(kube_standin, ns, "b"), "b, created while the watch was cut")
        await until(
            lambda: replicas(kube_standin, ns, "a") == 6, "a's edit made while the watch was cut"
        )
        api.compact()
        api.cut_watches()
        api.scaled_object("c", ns, "c", [redis_trigger(redis_list)], pollingInterval=1)
        delete(kube_standin, "scaledobjects", ns, "b")
        await until(lambda: _ready(kube_standin, ns, "c"), "c, created after a compaction")
        await until(lambda: f"{ns}/b" not in run.controller, "b's deletion after a compaction")
        assert run.reconciler.live()


async def test_ready_after_every_first_list_and_live_while_watches_read(
    kube_standin: KubeStandIn,
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    path = f"/namespaces/{ns}/scaledjobs"
    gate = api.hang(path)  # the ScaledJob list answers only when the gate opens
    try:
        async with running(kube_standin, [ns], wait_ready=False) as run:
            informers = [i for group in run.reconciler._informers.values() for i in group]
            await until(
                lambda: sum(i.synced for i in informers) == len(informers) - 1,
                "every other first list",
            )
            assert not run.reconciler.ready()
            gate.set()
            await until(run.reconciler.ready, "ready once the last list is reconciled")
            assert run.reconciler.live()
            run.reconciler.stuck_after = 0.0  # no watch has read anything in 0 s
            assert not run.reconciler.live()
    finally:
        gate.set()
        with api.lock:
            api.hanging.pop(path, None)


async def test_a_scaled_job_gets_status_and_events(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    async with running(kube_standin, [ns]):
        api.put(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "metadata": {"name": "jobs", "namespace": ns},
                "spec": {
                    "pollingInterval": 1,
                    "maxReplicaCount": 2,
                    "jobTargetRef": {
                        "template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}}
                    },
                    "triggers": [redis_trigger(redis_list, 6)],
                },
            }
        )
        await until(
            lambda: (
                condition(status_of(kube_standin, ns, "jobs", "scaledjobs"), "Active")[0] == "True"
            ),
            "the ScaledJob active",
        )
        status = status_of(kube_standin, ns, "jobs", "scaledjobs")
        assert condition(status, "Ready")[:2] == ("True", "ScaledJobReady")
        assert status["triggersTypes"] == "redis"
        await until(lambda: "KEDAJobsCreated" in reasons(kube_standin, ns, "jobs"), "jobs created")
        assert "ScaledJobReady" in reasons(kube_standin, ns, "jobs")


async def test_only_the_namespaces_given_are_watched(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api = kube_standin.api
    one, two, other = unique_name("ns"), unique_name("ns"), unique_name("ns")
    for ns in (one, two, other):
        api.deployment("web", ns, replicas=0)
    async with running(kube_standin, [one, two]) as run:
        for ns in (one, two, other):
            api.scaled_object("so", ns, "web", [redis_trigger(redis_list)], pollingInterval=1)
        await until(
            lambda: _ready(kube_standin, one, "so") and _ready(kube_standin, two, "so"), "both"
        )
        assert f"{other}/so" not in run.controller
        assert status_of(kube_standin, other, "so") == {}


async def test_an_object_leaving_the_selector_is_let_go(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    api.deployment("web", ns, replicas=0)
    async with running(kube_standin, [ns], selector="team=shop") as run:
        api.scaled_object(
            "so", ns, "web", [redis_trigger(redis_list)], pollingInterval=1, labels={"team": "shop"}
        )
        await until(lambda: _ready(kube_standin, ns, "so"), "ready")

        def finalizers() -> list[str]:
            obj = api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "so") or {}
            return list(obj["metadata"].get("finalizers") or [])

        await until(lambda: finalizers() == ["finalizer.keda.sh"], "the finalizer")
        moved = api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "so") or {}
        moved["metadata"]["labels"] = {"team": "other"}
        api.put(moved)  # (put records the old object: the watch sees it leave the selection)
        await until(lambda: f"{ns}/so" not in run.controller, "the object dropped")
        await until(lambda: finalizers() == [], "the finalizer taken off")


async def test_a_restart_writes_no_status_and_repeats_no_ready_event(
    kube_standin: KubeStandIn, redis_list: str
) -> None:
    api, ns = kube_standin.api, unique_name("ns")
    api.deployment("web", ns, replicas=0)
    key = f"{ns}/so"

    def status_writes() -> int:
        with api.lock:
            return sum(1 for c in api.calls if c.resource == "scaledobjects/status")

    api.scaled_object(
        "so",
        ns,
        "web",
        [redis_trigger(redis_list)],
        pollingInterval=1,
        fallback={"failureThreshold": 3, "replicas": 1},
    )
    async with running(kube_standin, [ns]) as run:
        await until(lambda: replicas(kube_standin, ns, "web") == 3, "scaled")
        await until(
            lambda: condition(status_of(kube_standin, ns, "so"), "Active")[0] == "True", "active"
        )
        await until(lambda: run.controller.status(key).polls >= 3, "a few polls")
    before = status_of(kube_standin, ns, "so")
    writes = status_writes()
    async with running(kube_standin, [ns]) as run:
        await until(lambda: run.controller.status(key).polls >= 3, "polls after the restart")
    assert status_writes() == writes
    assert status_of(kube_standin, ns, "so") == before
    ready = [e for e in api.events_for(ns, "so") if e["reason"] == "ScaledObjectReady"]
    assert len(ready) == 1
    assert ready[0].get("count", 1) == 1
