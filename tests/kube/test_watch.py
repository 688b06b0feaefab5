"""Watching through KubeClient.watch and the Informer, against the stand-in's watch
streams: resourceVersions, bookmarks, 410 Gone, cut connections, label selectors."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from eventscale.errors import TargetError
from eventscale.kube import KubeClient, KubeConfig
from servers.kubernetes_srv import KubeStandIn

SO = "/apis/keda.sh/v1alpha1"


def _client(standin: KubeStandIn, ns: str) -> KubeClient:
    return KubeClient(KubeConfig.from_kubeconfig(standin.kubeconfig(ns)))


async def _take(stream: Any, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async for event in stream:
            got.append(event)
            if len(got) == count:
                break
    return got


@pytest.mark.anyio
async def test_client_watch_streams_changes_after_a_resource_version(
    kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("before", ns)
    client = _client(kube_standin, ns)
    try:
        listed = await client.request("GET", f"{SO}/namespaces/{ns}/scaledobjects")
        since = listed["metadata"]["resourceVersion"]
        api.scaled_object("after", ns)
        api.scaled_object("after", ns, minReplicaCount=2)
        stream = client.watch(
            f"{SO}/namespaces/{ns}/scaledobjects", params={"resourceVersion": since}
        )
        events = await _take(stream, 2)
        await stream.aclose()
    finally:
        await client.aclose()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
    ]
    assert events[1]["object"]["spec"]["minReplicaCount"] == 2
    assert events[1]["object"]["metadata"]["generation"] == 2


@pytest.mark.anyio
async def test_client_watch_of_a_compacted_version_is_an_expired_error_event(
    kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    old = api.scaled_object("x", ns)["metadata"]["resourceVersion"]
    api.scaled_object("y", ns)
    api.compact()
    client = _client(kube_standin, ns)
    try:
        stream = client.watch(
            f"{SO}/namespaces/{ns}/scaledobjects", params={"resourceVersion": old}
        )
        (event,) = await _take(stream, 1)
    finally:
        await client.aclose()
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


@pytest.mark.anyio
async def test_client_watch_denied_names_the_verb_and_resource(
    kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.deny("watch", "scaledjobs")
    client = _client(kube_standin, ns)
    try:
        with pytest.raises(TargetError, match=r"cannot watch resource \"scaledjobs\"") as info:
            await _take(client.watch(f"{SO}/namespaces/{ns}/scaledjobs"), 1)
    finally:
        kube_standin.api.denied.discard(("watch", "scaledjobs", None))
        await client.aclose()
    assert info.value.status == 403


@pytest.mark.anyio
async def test_client_watch_cut_mid_event_is_an_error_not_an_event(
    kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("one", ns)
    client = _client(kube_standin, ns)
    got: list[dict[str, Any]] = []
    try:
        with pytest.raises(TargetError, match="cannot reach"):
            with anyio.fail_after(10):
                async for event in client.watch(f"{SO}/namespaces/{ns}/scaledobjects"):
                    got.append(event)
                    api.cut_watches()
    finally:
        await client.aclose()
    assert [e["object"]["metadata"]["name"] for e in got] == ["one"]
