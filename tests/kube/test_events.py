"""EventRecorder against the stand-in: core/v1 Events written, repeats folded into a
count, the per-object token bucket, and failures that never reach the caller."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from eventscale.kube import EventRecorder, KubeClient, KubeConfig
from servers.kubernetes_srv import KubeStandIn


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _client(standin: KubeStandIn, ns: str) -> KubeClient:
    return KubeClient(KubeConfig.from_kubeconfig(standin.kubeconfig(ns)))


def _scaled_object(standin: KubeStandIn, ns: str, name: str = "so") -> dict[str, Any]:
    return standin.api.scaled_object(name, ns)


@pytest.mark.anyio
async def test_an_event_is_written_about_the_object(kube_standin: KubeStandIn, ns: str) -> None:
    obj = _scaled_object(kube_standin, ns)
    clock = Clock()
    client = _client(kube_standin, ns)
    try:
        recorder = EventRecorder(client, instance="pod-1", clock=clock)
        await recorder.record(obj, "Normal", "KEDAScalersStarted", "Started scalers watch")
        client.user_agent = "standin-test"  # reading Events back is not eventscale's call
        listed = await client.request(
            "GET",
            f"/api/v1/namespaces/{ns}/events",
            params={
                "fieldSelector": f"involvedObject.name=so,involvedObject.uid={obj['metadata']['uid']}"
            },
        )
    finally:
        await client.aclose()
    (event,) = listed["items"]
    assert event["involvedObject"] == {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "name": "so",
        "namespace": ns,
        "uid": obj["metadata"]["uid"],
        "resourceVersion": obj["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Normal",
        "KEDAScalersStarted",
        "Started scalers watch",
    )
    assert event["count"] == 1
    assert event["source"] == {"component": "eventscale", "host": "pod-1"}
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2027-01-15T08:00:00Z"
    assert event["metadata"]["name"].startswith("so.")


@pytest.mark.anyio
async def test_repeats_update_the_count_of_one_event(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    obj = _scaled_object(kube_standin, ns)
    clock = Clock()
    client = _client(kube_standin, ns)
    mark = len(api.calls)
    try:
        recorder = EventRecorder(client, clock=clock)
        for _ in range(3):
            await recorder.record(obj, "Warning", "KEDAScalerFailed", "connection refused")
            clock.now += 60
        await recorder.record(obj, "Warning", "KEDAScalerFailed", "timed out")
    finally:
        await client.aclose()
    events = api.events_for(ns, "so")
    assert [(e["message"], e["count"]) for e in events] == [
        ("connection refused", 3),
        ("timed out", 1),
    ]
    assert events[0]["lastTimestamp"] == "2027-01-15T08:02:00Z"
    assert events[0]["firstTimestamp"] == "2027-01-15T08:00:00Z"
    verbs = [(c.verb, c.resource) for c in api.calls[mark:] if c.resource == "events"]
    assert verbs == [
        ("create", "events"),
        ("patch", "events"),
        ("patch", "events"),
        ("create", "events"),
    ]


@pytest.mark.anyio
async def test_the_token_bucket_limits_each_object(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    noisy, quiet = (
        _scaled_object(kube_standin, ns, "noisy"),
        _scaled_object(kube_standin, ns, "quiet"),
    )
    clock = Clock()
    client = _client(kube_standin, ns)
    try:
        recorder = EventRecorder(client, clock=clock)
        for i in range(30):
            await recorder.record(noisy, "Warning", "KEDAScalerFailed", f"failure {i}")
        assert len(api.events_for(ns, "noisy")) == 25
        assert recorder.dropped == 5
        await recorder.record(quiet, "Normal", "ScaledObjectReady", "ready")
        assert len(api.events_for(ns, "quiet")) == 1
        clock.now += 300  # one token back
        await recorder.record(noisy, "Warning", "KEDAScalerFailed", "failure 30")
        await recorder.record(noisy, "Warning", "KEDAScalerFailed", "failure 31")
    finally:
        await client.aclose()
    messages = [e["message"] for e in api.events_for(ns, "noisy")]
    assert messages == [f"failure {i}" for i in range(25)] + ["failure 30"]
    assert recorder.dropped == 6


@pytest.mark.anyio
async def test_an_expired_event_is_written_anew(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    obj = _scaled_object(kube_standin, ns)
    client = _client(kube_standin, ns)
    try:
        recorder = EventRecorder(client, clock=Clock())
        await recorder.record(obj, "Normal", "KEDAScaleTargetActivated", "Scaled to 1")
        (first,) = api.events_for(ns, "so")
        api.remove(("api/v1", "events", ns, first["metadata"]["name"]))  # its TTL passed
        await recorder.record(obj, "Normal", "KEDAScaleTargetActivated", "Scaled to 1")
    finally:
        await client.aclose()
    (again,) = api.events_for(ns, "so")
    assert again["count"] == 1
    assert recorder.failed == 0


@pytest.mark.anyio
async def test_cluster_scoped_objects_get_events_in_default(
    kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    cta = api.put(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ClusterTriggerAuthentication",
            "metadata": {"name": f"cta-{ns}"},
            "spec": {},
        }
    )
    client = _client(kube_standin, ns)
    try:
        await EventRecorder(client).record(cta, "Normal", "Updated", "rebuilt")
    finally:
        await client.aclose()
    (event,) = api.events_for("default", f"cta-{ns}")
    assert "namespace" not in event["involvedObject"]


@pytest.mark.anyio
async def test_failures_never_reach_the_caller(
    kube_standin: KubeStandIn, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = kube_standin.api
    obj = _scaled_object(kube_standin, ns)
    api.deny("create", "events")
    client = _client(kube_standin, ns)
    try:
        recorder = EventRecorder(client)
        with caplog.at_level(logging.WARNING, "eventscale.kube.events"):
            await recorder.record(obj, "Warning", "KEDAScalerFailed", "boom")
            await recorder.record({"kind": "ScaledObject"}, "Normal", "NoName", "")
    finally:
        api.denied.discard(("create", "events", None))
        await client.aclose()
    assert recorder.failed == 2
    assert 'cannot create resource "events"' in caplog.text
    assert kube_standin.token not in caplog.text
    assert api.events_for(ns, "so") == []

    unreachable = KubeClient(KubeConfig(server="http://127.0.0.1:9", namespace=ns), timeout=2)
    try:
        recorder = EventRecorder(unreachable)
        await recorder.record(obj, "Normal", "X", "y")
    finally:
        await unreachable.aclose()
    assert recorder.failed == 1


@pytest.mark.anyio
async def test_concurrent_records(kube_standin: KubeStandIn, ns: str) -> None:
    api = kube_standin.api
    objects = [_scaled_object(kube_standin, ns, f"c{i}") for i in range(5)]
    client = _client(kube_standin, ns)
    try:
        recorder = EventRecorder(client, clock=Clock())
        async with anyio.create_task_group() as tg:
            for obj in objects:
                for _ in range(4):  # the same Event four times at once: one Event, count 4
                    tg.start_soon(recorder.record, obj, "Normal", "KEDAScaleTargetActivated", "up")
    finally:
        await client.aclose()
    for i in range(5):
        assert [e["count"] for e in api.events_for(ns, f"c{i}")] == [4]
    assert recorder.failed == 0
