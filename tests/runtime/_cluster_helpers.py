"""What the cluster tests share: a running reconciler on the stand-in, edits as
``kubectl`` makes them (status and finalizers kept), and waiting for a condition."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs

from eventscale.kube import KubeClient, KubeConfig
from eventscale.kube.events import EventRecorder
from eventscale.runtime.cluster.reconciler import ClusterReconciler
from eventscale.runtime.controller import Controller
from eventscale.runtime.ownership import Ownership
from servers.kubernetes_srv import KubeStandIn

KEDA = "apis/keda.sh/v1alpha1"
APPS = "apis/apps/v1"
REDIS = "127.0.0.1:6379"


def redis_trigger(list_name: str, length: int = 5, address: str | None = REDIS) -> dict[str, Any]:
    meta = {"listName": list_name, "listLength": str(length)}
    if address is not None:
        meta["address"] = address
    return {"type": "redis", "metadata": meta}


def edit(
    standin: KubeStandIn, plural: str, ns: str, name: str, fn: Callable[[dict[str, Any]], None]
) -> None:
    """Change a stored object in place, as an apply would: status and finalizers kept,
    the generation moved when the spec changed, a MODIFIED event for watches."""
    api = standin.api
    prefix = (
        KEDA
        if plural in ("scaledobjects", "scaledjobs", "triggerauthentications")
        else ("api/v1" if plural in ("secrets", "configmaps") else APPS)
    )
    with api.lock:
        obj = api.objects[(prefix, plural, ns, name)]
        before = copy.deepcopy(obj.get("spec"))
        fn(obj)
        if obj.get("spec") != before:
            meta = obj["metadata"]
            meta["generation"] = meta.get("generation", 1) + 1
        api.touch(obj)


def delete(standin: KubeStandIn, plural: str, ns: str, name: str) -> None:
    """Delete as the API server does: a deletionTimestamp while finalizers remain."""
    api = standin.api
    key = (KEDA, plural, ns, name)
    with api.lock:
        obj = api.objects[key]
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", "2026-01-01T00:00:00Z")
            api.touch(obj)
        else:
            api.remove(key)


def status_of(
    standin: KubeStandIn, ns: str, name: str, plural: str = "scaledobjects"
) -> dict[str, Any]:
    obj = standin.api.get(KEDA, plural, ns, name) or {}
    return obj.get("status") or {}


def condition(status: dict[str, Any], kind: str) -> tuple[str, str, str]:
    for c in status.get("conditions") or ():
        if c["type"] == kind:
            return c["status"], c.get("reason", ""), c.get("message", "")
    return "", "", ""


def replicas(standin: KubeStandIn, ns: str, name: str) -> int:
    obj = standin.api.get(APPS, "deployments", ns, name) or {}
    return int((obj.get("spec") or {}).get("replicas", -1))


def reasons(standin: KubeStandIn, ns: str, name: str) -> list[str]:
    return [e.get("reason", "") for e in standin.api.events_for(ns, name)]


async def until(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Wait for ``check()``; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.05)


@attrs.define
class Running:
    reconciler: ClusterReconciler
    controller: Controller
    client: KubeClient


@asynccontextmanager
async def running(
    standin: KubeStandIn,
    namespaces: list[str] | None,
    *,
    ownership: Ownership | None = None,
    selector: str | None = None,
    cluster_namespace: str = "keda",
    wait_ready: bool = True,
) -> AsyncIterator[Running]:
    """A controller and its reconciler on the stand-in, until the block ends."""
    client = KubeClient(
        KubeConfig.load(str(standin.kubeconfig(namespaces[0] if namespaces else "default")))
    )
    try:
        async with Controller(ownership=ownership) as ctl:
            reconciler = ClusterReconciler(
                client,
                ctl,
                namespaces=namespaces,
                selector=selector,
                recorder=EventRecorder(client, component="eventscale"),
                ownership=ownership,
                cluster_namespace=cluster_namespace,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(reconciler.run)
                if wait_ready:
                    await until(reconciler.ready, "the first lists to be reconciled")
                yield Running(reconciler, ctl, client)
                tg.cancel_scope.cancel()
    finally:
        await client.aclose()
