"""The ClusterRole of docs/deploy.md grants exactly what eventscale uses in a cluster.

One run exercises every cluster feature against the stand-in (watched objects, status,
finalizers and restore, Events and their aggregation, a ClusterTriggerAuthentication's
Secret, ``...FromEnv`` from a Deployment and a StatefulSet, cpu, a ScaledJob's Jobs and
their cleanup, Lease sharding); the stand-in records every call eventscale's client
makes, in RBAC terms. Each call must be granted by the ClusterRole, and each verb the
ClusterRole grants must have been used.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from eventscale.kube import KubeClient, KubeConfig
from eventscale.runtime.sharding import LeaseSharding
from runtime._cluster_helpers import (
    REDIS,
    condition,
    delete,
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

DOC = Path(__file__).parents[2] / "docs" / "deploy.md"


def cluster_role() -> list[dict[str, Any]]:
    """The rules of the ClusterRole in docs/deploy.md's YAML blocks."""
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterRole":
                rules: list[dict[str, Any]] = doc["rules"]
                return rules
    raise AssertionError("docs/deploy.md has no ClusterRole")


def grants(rule: dict[str, Any], verb: str, group: str, resource: str) -> bool:
    return (
        any(fnmatch.fnmatchcase(group, g) for g in rule["apiGroups"])
        and any(fnmatch.fnmatchcase(resource, r) for r in rule["resources"])
        and any(v in ("*", verb) for v in rule["verbs"])
    )


def test_the_role_parses_and_has_no_wildcard_verbs() -> None:
    rules = cluster_role()
    assert rules
    assert all("*" not in r["verbs"] for r in rules)


async def test_every_call_is_granted_and_every_grant_is_used(kube_standin: KubeStandIn) -> None:
    api = kube_standin.api
    ns, keda_ns = unique_name("rbac"), unique_name("keda")
    items = unique_name("list")
    r = redis.Redis(host="127.0.0.1", port=6379)
    r.rpush(items, *range(6))
    env = [{"name": "app", "image": "busybox", "env": [{"name": "REDIS_ADDR", "value": REDIS}]}]
    api.deployment("web", ns, replicas=0, containers=env)
    api.deployment("db", ns, replicas=0, containers=env, kind="StatefulSet")
    api.deployment("api", ns, replicas=2)
    api.deployment("bad", ns, replicas=0)
    api.deployment("cpu", ns, replicas=2)
    api.resource_pods("cpu", ns, [{"cpu": "450m"}, {"cpu": "450m"}], requests={"cpu": "500m"})
    cta = unique_name("cta")
    api.secret("redis", keda_ns, {"address": REDIS})
    api.put(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ClusterTriggerAuthentication",
            "metadata": {"name": cta},
            "spec": {
                "secretTargetRef": [{"parameter": "address", "name": "redis", "key": "address"}]
            },
        }
    )
    from_env = {
        "type": "redis",
        "metadata": {"listName": items, "listLength": "2", "addressFromEnv": "REDIS_ADDR"},
    }
    with_cta = redis_trigger(items, 3, address=None)
    with_cta["authenticationRef"] = {"name": cta, "kind": "ClusterTriggerAuthentication"}
    before = len(api.calls)
    sharding_client = KubeClient(KubeConfig.load(str(kube_standin.kubeconfig(ns))))
    sharding = LeaseSharding(
        sharding_client,
        identity="rbac-a",
        namespace=ns,
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.3,
    )
    try:
        async with (
            sharding,
            running(kube_standin, [ns], ownership=sharding, cluster_namespace=keda_ns),
        ):
            api.scaled_object("env", ns, "web", [from_env], pollingInterval=1)
            db = api.scaled_object("db", ns, "db", [from_env], pollingInterval=1)
            db["spec"]["scaleTargetRef"]["kind"] = "StatefulSet"
            api.put(db)
            api.scaled_object(
                "cta",
                ns,
                "api",
                [with_cta],
                pollingInterval=1,
                advanced={"restoreToOriginalReplicaCount": True},
            )
            api.scaled_object(
                "bad", ns, "bad", [redis_trigger(items, address="127.0.0.1:1")], pollingInterval=1
            )
            api.scaled_object(
                "cpu",
                ns,
                "cpu",
                [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}],
                pollingInterval=1,
                minReplicaCount=1,
            )
            api.put(
                {
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "ScaledJob",
                    "metadata": {"name": "job", "namespace": ns},
                    "spec": {
                        "pollingInterval": 1,
                        "successfulJobsHistoryLimit": 0,
                        "maxReplicaCount": 1,
                        "jobTargetRef": {
                            "template": {
                                "spec": {"containers": [{"name": "w", "image": "busybox"}]}
                            }
                        },
                        "triggers": [redis_trigger(items, 6)],
                    },
                }
            )
            await until(
                lambda: replicas(kube_standin, ns, "web") == 3, "the FromEnv object to scale"
            )
            await until(
                lambda: (
                    replicas(kube_standin, ns, "api") == 2
                    and condition(status_of(kube_standin, ns, "cta"), "Active")[0] == "True"
                ),
                "the CTA object",
            )
            await until(
                lambda: reasons(kube_standin, ns, "bad").count("KEDAScalerFailed") >= 1, "failures"
            )
            await until(
                lambda: any(
                    e.get("count", 1) > 1
                    for e in api.events_for(ns, "bad")
                    if e.get("reason") == "KEDAScalerFailed"
                ),
                "a repeated Event counted",
            )
            await until(lambda: bool(_jobs(api, ns)), "a Job")
            finished = _jobs(api, ns)
            for job in finished:
                api.finish_job(ns, job)
            await until(
                lambda: not set(finished) & set(_jobs(api, ns)), "the finished Job cleaned up"
            )
            # 450m of 500m requested is 90% against 50%: twice the pods
            await until(
                lambda: replicas(kube_standin, ns, "cpu") == 4,
                f"cpu read: {status_of(kube_standin, ns, 'cpu')}",
            )
            await until(
                lambda: status_of(kube_standin, ns, "db").get("originalReplicaCount") == 0, "db"
            )
            delete(kube_standin, "scaledobjects", ns, "cta")
            await until(
                lambda: api.get("apis/keda.sh/v1alpha1", "scaledobjects", ns, "cta") is None,
                "cta finalized",
            )
    finally:
        await sharding_client.aclose()
        r.delete(items)
        r.close()
    calls = {c[:3] for c in api.calls[before:] if c.agent.startswith("eventscale")}
    rules = cluster_role()
    refused = sorted(c for c in calls if not any(grants(rule, *c) for rule in rules))
    assert refused == [], f"calls the ClusterRole does not grant: {refused}"
    unused = []
    for rule in rules:
        for verb in rule["verbs"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    if not any(
                        c[0] == verb
                        and fnmatch.fnmatchcase(c[1], group)
                        and fnmatch.fnmatchcase(c[2], resource)
                        for c in calls
                    ):
                        unused.append((verb, group, resource))
    assert unused == [], f"grants nothing used: {unused}"


def _jobs(api: Any, ns: str) -> list[str]:
    with api.lock:
        return [k[3] for k, o in api.objects.items() if k[:3] == ("apis/batch/v1", "jobs", ns)]
