"""The stand-in's state: objects, the change history watches replay, and the knobs
tests turn."""

from __future__ import annotations

import base64
import bisect
import copy
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import trustme

from servers.kubernetes.resources import resource_of

Key = tuple[str, str, str, str]  # prefix, plural, namespace, name
# The most changes kept for watches; older ones are compacted away (410 Gone).
HISTORY_LIMIT = 50_000


def now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Change(NamedTuple):
    """One write, as watches replay it: the object after (before, for DELETED)."""

    revision: int
    key: Key
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]
    old: dict[str, Any] | None  # the object before a MODIFIED, when known


class ApiCall(NamedTuple):
    """One API call in Kubernetes' authorization terms."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # "scaledobjects", "scaledobjects/status", "deployments/scale"
    agent: str = ""  # the User-Agent (eventscale's client sends "eventscale")


_CRON = {
    "type": "cron",
    "metadata": {
        "timezone": "UTC",
        "start": "0 * * * *",
        "end": "30 * * * *",
        "desiredReplicas": "2",
    },
}


def key_of(obj: dict[str, Any]) -> Key:
    res = resource_of(obj)
    meta = obj["metadata"]
    return (res.prefix, res.plural, meta.get("namespace", ""), meta["name"])


class KubeApiStandIn:
    """The API's state and the knobs tests turn. Thread-safe."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # token -> user name
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on every write and cut
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 1000
        self.denied: set[tuple[str, str, str | None]] = set()  # verb, resource, name
        self.hanging: dict[str, threading.Event] = {}
        self.pending_conflicts: dict[Key, int] = {}
        self.log: list[tuple[str, str, str]] = []  # method, path, user
        #: every resource request in Kubernetes' authorization terms
        self.calls: list[ApiCall] = []
        # plural, namespace, name, query parameters of each DELETE
        self.deleted: list[tuple[str, str, str, dict[str, list[str]]]] = []
        #: the writes watches replay, oldest first (revision order)
        self.history: list[Change] = []
        #: watches from a resourceVersion older than this get 410 Gone
        self.compacted = 0
        #: seconds between BOOKMARK events on watches that allow them
        self.bookmark_interval = 1.0
        #: how long a watch without ``timeoutSeconds`` lasts
        self.default_watch_seconds = 120.0
        self.cuts = 0  # bumped by cut_watches()
        self.watching = 0  # open watch streams
        self.closing = False
        self.url = ""
        self.ca: trustme.CA | None = None

    # -- state helpers for tests ---------------------------------------------------

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _record(
        self, key: Key, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> None:
        """Give ``obj`` the next resourceVersion and keep the change for watches."""
        obj["metadata"]["resourceVersion"] = self._bump()
        self.history.append(Change(self.revision, key, kind, copy.deepcopy(obj), old))
        if len(self.history) > HISTORY_LIMIT:
            drop = len(self.history) - HISTORY_LIMIT // 2
            self.compacted = self.history[drop - 1].revision
            del self.history[:drop]
        self.changed.notify_all()

    def touch(self, obj: dict[str, Any]) -> None:
        """Record an in-place change of a stored object (a new resourceVersion, a
        MODIFIED event for watches)."""
        with self.lock:
            self._record(key_of(obj), "MODIFIED", obj)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as if an operator applied it). A kind
        with a status subresource keeps its status unless ``obj`` has one."""
        res = resource_of(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default" if res.namespaced else "")
        key = (res.prefix, res.plural, meta["namespace"], meta["name"])
        with self.lock:
            old = self.objects.get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp", old["metadata"]["creationTimestamp"] if old else now()
            )
            if old is not None and res.status and "status" not in obj and "status" in old:
                # As an apply: a kind with a status subresource keeps its status.
                obj["status"] = copy.deepcopy(old["status"])
            if old is None:
                meta.setdefault("generation", 1)
            else:
                generation = old["metadata"].get("generation", 1)
                meta["generation"] = generation + (_spec(obj) != _spec(old))
            self.objects[key] = obj
            self._record(key, "MODIFIED" if old else "ADDED", obj, old)
            return copy.deepcopy(obj)

    def remove(self, key: Key) -> dict[str, Any]:
        """Delete a stored object now (no finalizers): a DELETED event."""
        with self.lock:
            obj = self.objects.pop(key)
            self._record(key, "DELETED", obj)
            return copy.deepcopy(obj)

    def delete(self, key: Key) -> dict[str, Any] | None:
        """Delete as the API does: an object with finalizers gets a deletionTimestamp
        (a MODIFIED event) and stays until its last finalizer is removed; one without
        goes at once. Returns the object still there, or ``None`` when it is gone."""
        with self.lock:
            obj = self.objects[key]
            meta = obj["metadata"]
            if not meta.get("finalizers"):
                self.remove(key)
                return None
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now()
                meta["deletionGracePeriodSeconds"] = 0
                meta["generation"] = meta.get("generation", 1) + 1
                self.touch(obj)
            return copy.deepcopy(obj)

    def changes_since(self, revision: int) -> list[Change]:
        """The changes after ``revision`` (call with the lock held)."""
        start = bisect.bisect_right(self.history, revision, key=lambda c: c.revision)
        return self.history[start:]

    def compact(self) -> int:
        """Forget the change history, as etcd's compaction does: a watch or list from
        any resourceVersion before now gets 410 Gone. Returns the compacted revision."""
        with self.lock:
            self.history.clear()
            self.compacted = self.revision
            return self.compacted

    def cut_watches(self) -> None:
        """Drop every open watch connection mid-stream (half an event, then the TCP
        connection closes without the end of the chunked body)."""
        with self.lock:
            self.cuts += 1
            self.changed.notify_all()

    def calls_by(self, agent: str = "eventscale") -> set[tuple[str, str, str]]:
        """The distinct ``(verb, group, resource)`` of the calls made by clients whose
        User-Agent starts with ``agent``."""
        with self.lock:
            return {c[:3] for c in self.calls if c.agent.startswith(agent)}

    def events_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The core/v1 Events about the object ``name`` in ``namespace``, oldest first."""
        with self.lock:
            found = [
                copy.deepcopy(o)
                for k, o in self.objects.items()
                if k[:3] == ("api/v1", "events", namespace)
                and (o.get("involvedObject") or {}).get("name") == name
            ]
        return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def scaled_job(
        self,
        name: str,
        namespace: str,
        triggers: list[dict[str, Any]] | None = None,
        *,
        labels: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """Apply a ``keda.sh/v1alpha1`` ScaledJob running one busybox container."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if labels:
            metadata["labels"] = labels
        template = {"spec": {"containers": [{"name": "job", "image": "busybox"}]}}
        return self.put(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "metadata": metadata,
                "spec": {
                    "jobTargetRef": {"template": template},
                    "triggers": triggers or [_CRON],
                    **spec,
                },
            }
        )

    def trigger_authentication(
        self, name: str, namespace: str | None, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply a TriggerAuthentication (or, with ``namespace=None``, a
        ClusterTriggerAuthentication) with ``spec``."""
        kind = "TriggerAuthentication" if namespace else "ClusterTriggerAuthentication"
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        return self.put(
            {"apiVersion": "keda.sh/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
        )

    def scaled_object(
        self,
        name: str,
        namespace: str,
        target: str = "app",
        triggers: list[dict[str, Any]] | None = None,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """Apply a ``keda.sh/v1alpha1`` ScaledObject scaling the Deployment ``target``."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if labels:
            metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        return self.put(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": metadata,
                "spec": {
                    "scaleTargetRef": {"name": target},
                    "triggers": triggers or [_CRON],
                    **spec,
                },
            }
        )

    def get(self, prefix: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((prefix, plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def deployment(
        self,
        name: str,
        namespace: str,
        replicas: int = 1,
        containers: list[dict[str, Any]] | None = None,
        *,
        kind: str = "Deployment",
    ) -> dict[str, Any]:
        labels = {"app": name}
        return self.put(
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": containers or [{"name": "app", "image": "busybox"}]},
                    },
                },
                "status": {"replicas": replicas},
            }
        )

    def worker(self, name: str, namespace: str, replicas: int = 0) -> dict[str, Any]:
        return self.put(
            {
                "apiVersion": "batch.example.com/v1",
                "kind": "Worker",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas, "image": "busybox"},
                "status": {"replicas": replicas, "selector": f"worker={name}"},
            }
        )

    def resource_pods(
        self,
        workload: str,
        namespace: str,
        usage: list[dict[str, str] | None],
        *,
        requests: dict[str, str] | None = None,
        limits: dict[str, str] | None = None,
        container: str = "app",
        ready: bool = True,
        started_seconds_ago: float = 3600.0,
    ) -> list[dict[str, Any]]:
        """Running pods labelled ``app=<workload>`` (a :meth:`deployment`'s selector), one
        per ``usage`` entry, with ``requests``/``limits`` on their one container, and a
        PodMetrics for each entry that is not ``None`` (a pod metrics-server has not
        sampled yet has none). Quantities are strings (``"250m"``, ``"64Mi"``)."""
        now = datetime.now(tz=UTC)
        started = datetime.fromtimestamp(now.timestamp() - started_seconds_ago, tz=UTC)
        stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {"app": workload}
        pods = []
        for i, amounts in enumerate(usage):
            name = f"{workload}-{i:03d}-{uuid.uuid4().hex[:5]}"
            resources: dict[str, Any] = {}
            if requests:
                resources["requests"] = dict(requests)
            if limits:
                resources["limits"] = dict(limits)
            pods.append(
                self.put(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels},
                        "spec": {
                            "containers": [
                                {"name": container, "image": "busybox", "resources": resources}
                            ]
                        },
                        "status": {
                            "phase": "Running",
                            "startTime": stamp,
                            "conditions": [
                                {
                                    "type": "Ready",
                                    "status": "True" if ready else "False",
                                    "lastTransitionTime": stamp,
                                }
                            ],
                        },
                    }
                )
            )
            if amounts is not None:
                self.put(
                    {
                        "apiVersion": "metrics.k8s.io/v1beta1",
                        "kind": "PodMetrics",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels},
                        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "window": "30s",
                        "containers": [{"name": container, "usage": dict(amounts)}],
                    }
                )
        return pods

    def secret(self, name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": encoded,
            }
        )

    def configmap(self, name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
        return self.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace},
                "data": data,
            }
        )

    def job_ready(self, namespace: str, name: str) -> None:
        """The Job's pod is running and ready."""
        with self.lock:
            job = self.objects[("apis/batch/v1", "jobs", namespace, name)]
            job["status"].update({"active": 1, "ready": 1})
            self.touch(job)
            for pod in self.job_pods(namespace, name):
                pod["status"]["phase"] = "Running"
                for kind in ("Initialized", "ContainersReady", "Ready"):
                    self._set_condition(pod, kind, True)

    # -- pods of Jobs (what the Job controller and the kubelet would do) -----------------

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The live pod objects the Job controller made for ``job`` (not copies)."""
        with self.lock:
            return [
                o
                for k, o in self.objects.items()
                if k[:3] == ("api/v1", "pods", namespace)
                and o["metadata"].get("labels", {}).get("batch.kubernetes.io/job-name") == job
            ]

    def _set_condition(self, pod: dict[str, Any], kind: str, value: bool) -> None:
        conditions = pod["status"].setdefault("conditions", [])
        status = "True" if value else "False"
        for cond in conditions:
            if cond["type"] == kind:
                cond.update({"status": status, "lastTransitionTime": now()})
                break
        else:
            conditions.append(
                {
                    "type": kind,
                    "status": status,
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                }
            )
        self.touch(pod)

    def pod_condition(self, namespace: str, job: str, kind: str, value: bool = True) -> None:
        """Set condition ``kind`` on every pod of ``job`` (``True`` by default)."""
        with self.lock:
            for pod in self.job_pods(namespace, job):
                self._set_condition(pod, kind, value)

    def _start_job_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        """One pod for a new Job, from its template, as the Job controller creates it."""
        meta = job["metadata"]
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        uid = meta["uid"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            "job-name": meta["name"],
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": meta["name"],
            "batch.kubernetes.io/controller-uid": uid,
        }
        return self.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": meta["name"],
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": template.get("spec") or {},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastProbeTime": None,
                            "lastTransitionTime": now(),
                        }
                    ],
                },
            }
        )

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True) -> None:
        """The Job completed (``Complete``) or failed (``Failed``) now."""
        with self.lock:
            job = self.objects[("apis/batch/v1", "jobs", namespace, name)]
            stamp = now()
            kind = "Complete" if succeeded else "Failed"
            status = job["status"]
            status.update({"active": 0, "ready": 0})
            status["succeeded" if succeeded else "failed"] = 1
            if succeeded:
                status["completionTime"] = stamp
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "lastProbeTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": "Completed" if succeeded else "BackoffLimitExceeded",
                    "message": "" if succeeded else "Job has reached the specified backoff limit",
                }
            ]
            self.touch(job)
            for pod in self.job_pods(namespace, name):
                pod["status"]["phase"] = "Succeeded" if succeeded else "Failed"
                for kind in ("ContainersReady", "Ready"):
                    self._set_condition(pod, kind, False)

    def deny(self, verb: str, resource: str, name: str | None = None) -> None:
        """Answer 403 to ``verb`` (get, list, watch, create, update, patch, delete) on ``resource``
        (``deployments``, ``deployments/scale``, ``leases``...), for ``name`` or all."""
        with self.lock:
            self.denied.add((verb, resource, name))

    def hang(self, path: str) -> threading.Event:
        """Make requests whose path contains ``path`` hang until the event is set."""
        event = threading.Event()
        with self.lock:
            self.hanging[path] = event
        return event

    def concurrent_writes(
        self, prefix: str, plural: str, namespace: str, name: str, times: int
    ) -> None:
        """Before each of the next ``times`` updates of this object, another writer
        updates it first (its resourceVersion moves, so the update is stale)."""
        with self.lock:
            self.pending_conflicts[(prefix, plural, namespace, name)] = times

    def shutdown(self) -> None:
        """End every watch (the server is stopping)."""
        with self.lock:
            self.closing = True
            self.changed.notify_all()
        self.release_all()

    def release_all(self) -> None:
        with self.lock:
            for event in self.hanging.values():
                event.set()
            self.hanging.clear()


def _spec(obj: dict[str, Any]) -> Any:
    """What a change of bumps metadata.generation: spec, or all but metadata and status."""
    if "spec" in obj:
        return obj["spec"]
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
