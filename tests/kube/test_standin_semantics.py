"""The stand-in's API semantics that the controller relies on, through KubeClient: the
status subresource, generation, finalizers, PATCH flavours, selectors, and the record of
calls a ClusterRole test reads."""

from __future__ import annotations

from typing import Any

import pytest

from eventscale.errors import TargetConflict, TargetError, TargetNotFound
from eventscale.kube import JSON_PATCH, KubeClient, KubeConfig, request_verb
from servers.kubernetes_srv import KubeStandIn

SO = "/apis/keda.sh/v1alpha1"
AGENT = "standin-test"


@pytest.fixture
async def client(kube_standin: KubeStandIn, ns: str) -> Any:
    # Not eventscale's own calls: they stay out of what the ClusterRole must grant.
    c = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)), user_agent=AGENT)
    try:
        yield c
    finally:
        await c.aclose()


def _so(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"name": "app"}, "triggers": [], **spec},
        "status": {"ignored": True},
    }


@pytest.mark.anyio
async def test_status_subresource_and_generation(client: KubeClient, ns: str) -> None:
    base = f"{SO}/namespaces/{ns}/scaledobjects"
    created = await client.request("POST", base, body=_so("a", minReplicaCount=1))
    assert "status" not in created  # a create does not write the status
    assert created["metadata"]["generation"] == 1
    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    written = await client.request(
        "PUT", f"{base}/a/status", body={**created, "spec": {"changed": True}, "status": status}
    )
    assert written["spec"] == created["spec"]  # a status write keeps the spec
    assert written["status"] == status
    assert written["metadata"]["generation"] == 1
    updated = await client.request(
        "PUT",
        f"{base}/a",
        body={
            **written,
            "spec": {**written["spec"], "minReplicaCount": 2},
            "status": {},
        },
    )
    assert updated["status"] == status  # a main write keeps the status
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(TargetConflict):  # stale resourceVersion on /status
        await client.request("PUT", f"{base}/a/status", body=written)
    same = await client.request("PATCH", f"{base}/a", body={"metadata": {"labels": {"x": "y"}}})
    assert same["metadata"]["generation"] == 2  # metadata is not the spec


@pytest.mark.anyio
async def test_finalizers_hold_a_deleted_object(
    kube_standin: KubeStandIn, client: KubeClient, ns: str
) -> None:
    base = f"{SO}/namespaces/{ns}/scaledobjects"
    obj = _so("held")
    obj["metadata"]["finalizers"] = ["finalizer.keda.sh"]
    await client.request("POST", base, body=obj)
    deleting = await client.request("DELETE", f"{base}/held")
    assert deleting["metadata"]["deletionTimestamp"]
    assert (await client.request("GET", f"{base}/held"))["metadata"]["finalizers"] == [
        "finalizer.keda.sh"
    ]
    with pytest.raises(TargetError, match="no new finalizers") as info:
        await client.request(
            "PATCH", f"{base}/held", body={"metadata": {"finalizers": ["finalizer.keda.sh", "x"]}}
        )
    assert info.value.status == 422
    await client.request(
        "PATCH", f"{base}/held", body=[{"op": "remove", "path": "/metadata/finalizers"}],
        content_type=JSON_PATCH,
    )  # fmt: skip
    with pytest.raises(TargetNotFound):
        await client.request("GET", f"{base}/held")
    kinds = [c.type for c in kube_standin.api.history if c.key[2:] == (ns, "held")]
    assert kinds == ["ADDED", "MODIFIED", "DELETED"]


@pytest.mark.anyio
async def test_patch_flavours(client: KubeClient, ns: str) -> None:
    base = f"{SO}/namespaces/{ns}/scaledobjects"
    await client.request("POST", base, body=_so("p", minReplicaCount=1, pollingInterval=5))
    merged = await client.request(
        "PATCH", f"{base}/p", body={"spec": {"pollingInterval": None, "maxReplicaCount": 4}}
    )
    assert "pollingInterval" not in merged["spec"]
    assert merged["spec"]["maxReplicaCount"] == 4
    with pytest.raises(TargetError, match="test of /spec/minReplicaCount failed") as failed:
        await client.request(
            "PATCH",
            f"{base}/p",
            body=[
                {"op": "test", "path": "/spec/minReplicaCount", "value": 9},
                {"op": "replace", "path": "/spec/minReplicaCount", "value": 0},
            ],
            content_type=JSON_PATCH,
        )
    assert failed.value.status == 422
    with pytest.raises(TargetError) as unsupported:
        await client.request(
            "PATCH", f"{base}/p", body={}, content_type="application/strategic-merge-patch+json"
        )
    assert unsupported.value.status == 415


@pytest.mark.anyio
async def test_selectors_on_lists(kube_standin: KubeStandIn, client: KubeClient, ns: str) -> None:
    api = kube_standin.api
    for name, tier in (("a", "web"), ("b", "batch"), ("c", "db")):
        api.scaled_object(name, ns, labels={"tier": tier})
    listed = await client.request(
        "GET", f"{SO}/namespaces/{ns}/scaledobjects", params={"labelSelector": "tier in (web,db)"}
    )
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a", "c"]
    by_field = await client.request(
        "GET", f"{SO}/namespaces/{ns}/scaledobjects", params={"fieldSelector": "metadata.name!=a"}
    )
    assert [o["metadata"]["name"] for o in by_field["items"]] == ["b", "c"]


@pytest.mark.anyio
async def test_hpas_are_served(client: KubeClient, ns: str) -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    await client.request("POST", path, body=hpa)
    listed = await client.request("GET", path)
    assert [o["spec"]["scaleTargetRef"]["name"] for o in listed["items"]] == ["web"]


@pytest.mark.anyio
async def test_every_call_is_recorded_with_its_verb(
    kube_standin: KubeStandIn, client: KubeClient, ns: str
) -> None:
    api = kube_standin.api
    mark = len(api.calls)
    base = f"{SO}/namespaces/{ns}/scaledobjects"
    await client.request("POST", base, body=_so("r"))
    await client.request("GET", base)
    got = await client.request("GET", f"{base}/r")
    await client.request("PUT", f"{base}/r", body=got)
    await client.request("PATCH", f"{base}/r/status", body={"status": {"x": 1}})
    async for _ in client.watch(base, params={"timeoutSeconds": "1"}):
        break
    await client.request("DELETE", f"{base}/r")
    calls = [c[:3] for c in api.calls[mark:] if c.agent == AGENT]
    assert calls == [
        ("create", "keda.sh", "scaledobjects"),
        ("list", "keda.sh", "scaledobjects"),
        ("get", "keda.sh", "scaledobjects"),
        ("update", "keda.sh", "scaledobjects"),
        ("patch", "keda.sh", "scaledobjects/status"),
        ("watch", "keda.sh", "scaledobjects"),
        ("delete", "keda.sh", "scaledobjects"),
    ]
    assert set(calls) <= api.calls_by(AGENT)


@pytest.mark.anyio
async def test_forbidden_names_the_verb_and_resource(
    kube_standin: KubeStandIn, client: KubeClient, ns: str
) -> None:
    kube_standin.api.scaled_object("f", ns)
    kube_standin.api.deny("patch", "scaledobjects/status", "f")
    with pytest.raises(TargetError, match=r'cannot patch resource "scaledobjects/status"'):
        await client.request(
            "PATCH", f"{SO}/namespaces/{ns}/scaledobjects/f/status", body={"status": {}}
        )


def test_request_verbs() -> None:
    assert request_verb("GET", f"{SO}/scaledobjects", {"watch": "true"}) == (
        "watch",
        "scaledobjects.keda.sh",
    )
    assert request_verb("PUT", f"{SO}/namespaces/n/scaledobjects/x/status") == (
        "update",
        "scaledobjects.keda.sh/status",
    )
    assert request_verb("GET", "/api/v1/namespaces/n/secrets") == ("list", "secrets")
    assert request_verb("GET", "/api/v1/namespaces/n/secrets/s") == ("get", "secrets")
    assert request_verb("PATCH", "/api/v1/namespaces/n/events/e") == ("patch", "events")
    assert request_verb("DELETE", "/apis/batch/v1/namespaces/n/jobs") == (
        "deletecollection",
        "jobs.batch",
    )


def test_test_helpers_delete_as_the_api_does(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    job = api.scaled_job("sj", ns, maxReplicaCount=3)
    assert job["kind"] == "ScaledJob"
    assert job["spec"]["maxReplicaCount"] == 3
    ta = api.trigger_authentication("ta", ns, {"secretTargetRef": []})
    cta = api.trigger_authentication(f"cta-{ns}", None, {"env": []})
    assert (ta["kind"], cta["kind"]) == ("TriggerAuthentication", "ClusterTriggerAuthentication")
    assert cta["metadata"]["namespace"] == ""
    held = api.scaled_object("held", ns)
    held["metadata"]["finalizers"] = ["finalizer.keda.sh"]
    api.put(held)
    key = ("apis/keda.sh/v1alpha1", "scaledobjects", ns, "held")
    marked = api.delete(key)
    assert marked is not None
    assert marked["metadata"]["deletionTimestamp"]
    assert api.delete(("apis/keda.sh/v1alpha1", "scaledjobs", ns, "sj")) is None
    assert api.get("apis/keda.sh/v1alpha1", "scaledjobs", ns, "sj") is None


def test_an_apply_by_a_test_keeps_the_status(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    obj = api.scaled_object("kept", ns)
    obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    api.put(obj)
    edited = api.scaled_object("kept", ns, minReplicaCount=2)
    assert edited["status"] == obj["status"]
    assert edited["metadata"]["generation"] == 2
