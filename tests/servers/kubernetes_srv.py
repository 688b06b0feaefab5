"""A local stand-in for the Kubernetes API server (none can run on this machine).

It speaks the REST API over TLS with bearer tokens, for:

* ``apps/v1`` Deployments and StatefulSets and their ``/scale`` subresource
  (``autoscaling/v1`` ``Scale`` objects),
* one custom resource, ``batch.example.com/v1`` ``Worker`` (plural ``workers``), with a
  scale subresource (``.spec.replicas``, selector in ``.status.selector``),
* ``coordination.k8s.io/v1`` Leases, ``v1`` Secrets and ConfigMaps,
* ``batch/v1`` Jobs: a created Job gets the status a Job controller gives it (one
  active pod, not ready yet); tests move it on with :meth:`KubeApiStandIn.job_ready`
  and :meth:`KubeApiStandIn.finish_job` (``Complete``/``Failed`` conditions),
* ``v1`` Pods of those Jobs: each created Job gets one pod, labelled and owned as the
  Job controller does it (``job-name``, ``controller-uid`` and their
  ``batch.kubernetes.io/`` forms, a controller ``ownerReference``), ``Pending`` with
  ``PodScheduled``; :meth:`KubeApiStandIn.job_ready` and
  :meth:`KubeApiStandIn.finish_job` move it along, :meth:`KubeApiStandIn.pod_condition`
  sets any condition (readiness gates), and deleting a Job deletes its pods,
* ``keda.sh/v1alpha1`` TriggerAuthentications and the cluster-scoped
  ClusterTriggerAuthentications (get, list),
* ``metrics.k8s.io/v1beta1`` PodMetrics (list and get, by label selector), and pods
  with resource requests and limits beside them: :meth:`KubeApiStandIn.resource_pods`
  creates both as the kubelet and metrics-server would report them,
* ``labelSelector`` (equality and existence terms) on every list,
* discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) and ``/version``.

Bodies are what the API returns: ``kind``/``apiVersion``, metadata with
``resourceVersion`` (one cluster-wide counter, as etcd's revision), ``uid`` and
``creationTimestamp``; errors are ``Status`` objects with ``reason`` and ``code``. An
update with a stale ``resourceVersion`` is a 409 Conflict, a create of an existing
name a 409 AlreadyExists. Tests can deny verbs (403 Forbidden), make a path hang,
and inject a concurrent write in front of the next update of an object. No watch.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
import yaml

USER = "system:serviceaccount:eventscale:controller"


@attrs.frozen
class Resource:
    prefix: str  # "apis/apps/v1" or "api/v1"
    plural: str
    kind: str
    scale: bool = False
    namespaced: bool = True

    @property
    def group(self) -> str:
        parts = self.prefix.split("/")
        return parts[1] if parts[0] == "apis" else ""

    @property
    def version(self) -> str:
        return self.prefix.split("/")[-1]

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("apis/apps/v1", "deployments", "Deployment", scale=True),
    Resource("apis/apps/v1", "statefulsets", "StatefulSet", scale=True),
    Resource("apis/batch.example.com/v1", "workers", "Worker", scale=True),
    Resource("apis/coordination.k8s.io/v1", "leases", "Lease"),
    Resource("api/v1", "secrets", "Secret"),
    Resource("api/v1", "configmaps", "ConfigMap"),
    Resource("apis/batch/v1", "jobs", "Job"),
    Resource("api/v1", "pods", "Pod"),
    Resource("apis/metrics.k8s.io/v1beta1", "pods", "PodMetrics"),
    Resource("apis/keda.sh/v1alpha1", "triggerauthentications", "TriggerAuthentication"),
    Resource(
        "apis/keda.sh/v1alpha1",
        "clustertriggerauthentications",
        "ClusterTriggerAuthentication",
        namespaced=False,
    ),
)
_BY_PATH = {(r.prefix, r.plural): r for r in RESOURCES}

Key = tuple[str, str, str, str]  # prefix, plural, namespace, name


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeApiStandIn:
    """The API's state and the knobs tests turn. Thread-safe."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # token -> user name
        self.lock = threading.RLock()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 1000
        self.denied: set[tuple[str, str, str | None]] = set()  # verb, resource, name
        self.hanging: dict[str, threading.Event] = {}
        self.pending_conflicts: dict[Key, int] = {}
        self.log: list[tuple[str, str, str]] = []  # method, path, user
        # plural, namespace, name, query parameters of each DELETE
        self.deleted: list[tuple[str, str, str, dict[str, list[str]]]] = []
        self.url = ""
        self.ca: trustme.CA | None = None

    # -- state helpers for tests ---------------------------------------------------

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as if an operator applied it)."""
        res = next(
            r for r in RESOURCES if r.kind == obj["kind"] and r.prefix.endswith(obj["apiVersion"])
        )
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default" if res.namespaced else "")
        with self.lock:
            meta["resourceVersion"] = self._bump()
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            self.objects[(res.prefix, res.plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

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
            job["metadata"]["resourceVersion"] = self._bump()
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
                cond.update({"status": status, "lastTransitionTime": _now()})
                break
        else:
            conditions.append(
                {
                    "type": kind,
                    "status": status,
                    "lastProbeTime": None,
                    "lastTransitionTime": _now(),
                }
            )
        pod["metadata"]["resourceVersion"] = self._bump()

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
                            "lastTransitionTime": _now(),
                        }
                    ],
                },
            }
        )

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True) -> None:
        """The Job completed (``Complete``) or failed (``Failed``) now."""
        with self.lock:
            job = self.objects[("apis/batch/v1", "jobs", namespace, name)]
            now = _now()
            kind = "Complete" if succeeded else "Failed"
            status = job["status"]
            status.update({"active": 0, "ready": 0})
            status["succeeded" if succeeded else "failed"] = 1
            if succeeded:
                status["completionTime"] = now
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                    "reason": "Completed" if succeeded else "BackoffLimitExceeded",
                    "message": "" if succeeded else "Job has reached the specified backoff limit",
                }
            ]
            job["metadata"]["resourceVersion"] = self._bump()
            for pod in self.job_pods(namespace, name):
                pod["status"]["phase"] = "Succeeded" if succeeded else "Failed"
                for kind in ("ContainersReady", "Ready"):
                    self._set_condition(pod, kind, False)

    def deny(self, verb: str, resource: str, name: str | None = None) -> None:
        """Answer 403 to ``verb`` (get, list, create, update, delete) on ``resource``
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

    def release_all(self) -> None:
        with self.lock:
            for event in self.hanging.values():
                event.set()
            self.hanging.clear()


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _selects(selector: str, obj: dict[str, Any]) -> bool:
    """Whether ``obj``'s labels match an equality/existence ``labelSelector``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class _ApiError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.body = _status(code, reason, message, details)
        self.code = code


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    query: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _ApiError(
                400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
            ) from exc
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the body must be an object")
        return body

    def _handle(self, method: str) -> None:
        api = self.server.api
        body = self._body() if method in ("POST", "PUT") else None
        path, _, query = self.path.partition("?")
        self.query = urllib.parse.parse_qs(query)
        auth = self.headers.get("Authorization", "")
        user = api.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        with api.lock:
            api.log.append((method, path, user or ""))
            hang = next((ev for p, ev in api.hanging.items() if p in path), None)
        if hang is not None:
            hang.wait(30)
        try:
            if user is None:
                raise _ApiError(401, "Unauthorized", "Unauthorized")
            code, reply = self._route(method, path, body, user)
        except _ApiError as err:
            code, reply = err.code, err.body
        self._reply(code, reply)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- routing -----------------------------------------------------------------------

    def _route(
        self, method: str, path: str, body: dict[str, Any] | None, user: str
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-eventscale-standin"}
        if parts == ["api"]:
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [],
            }
        if parts == ["apis"]:
            return 200, self._groups()
        if parts and parts[0] in ("api", "apis"):
            prefix_len = 2 if parts[0] == "api" else 3
            prefix = "/".join(parts[:prefix_len])
            rest = parts[prefix_len:]
            if not rest:
                return 200, self._discovery(prefix)
            if len(rest) >= 3 and rest[0] == "namespaces":
                namespace, plural = rest[1], rest[2]
                res = _BY_PATH.get((prefix, plural))
                if res is not None:
                    name = rest[3] if len(rest) > 3 else None
                    sub = rest[4] if len(rest) > 4 else None
                    if len(rest) > 5 or (sub is not None and (sub != "scale" or not res.scale)):
                        raise _ApiError(
                            404, "NotFound", "the server could not find the requested resource"
                        )
                    with api.lock:
                        return self._resource(method, res, namespace, name, sub, body, user)
            res = _BY_PATH.get((prefix, rest[0]))
            if res is not None and not res.namespaced and len(rest) <= 2:  # cluster-scoped
                with api.lock:
                    name = rest[1] if len(rest) > 1 else None
                    return self._resource(method, res, "", name, None, body, user)
        raise _ApiError(404, "NotFound", "the server could not find the requested resource")

    def _groups(self) -> dict[str, Any]:
        groups: dict[str, set[str]] = {}
        for r in RESOURCES:
            if r.group:
                groups.setdefault(r.group, set()).add(r.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                    "preferredVersion": {
                        "groupVersion": f"{g}/{sorted(vs)[0]}",
                        "version": sorted(vs)[0],
                    },
                }
                for g, vs in sorted(groups.items())
            ],
        }

    def _discovery(self, prefix: str) -> dict[str, Any]:
        listed = [r for r in RESOURCES if r.prefix == prefix]
        if not listed:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource")
        resources: list[dict[str, Any]] = []
        for r in listed:
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "update"],
                }
            )
            if r.scale:
                resources.append(
                    {
                        "name": f"{r.plural}/scale",
                        "singularName": "",
                        "namespaced": True,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": prefix.split("/", 1)[1],
            "resources": resources,
        }

    def _check_access(
        self, verb: str, res: Resource, sub: str | None, namespace: str, name: str | None, user: str
    ) -> None:
        api = self.server.api
        resource = f"{res.plural}/{sub}" if sub else res.plural
        if (verb, resource, name) in api.denied or (verb, resource, None) in api.denied:
            target = f'{res.group_resource} "{name}"' if name else res.group_resource
            raise _ApiError(
                403,
                "Forbidden",
                f'{target} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                f'in API group "{res.group}" '
                + (f'in the namespace "{namespace}"' if namespace else "at the cluster scope"),
                {"name": name or "", "group": res.group, "kind": res.plural},
            )

    def _not_found(self, res: Resource, name: str) -> _ApiError:
        return _ApiError(
            404,
            "NotFound",
            f'{res.group_resource} "{name}" not found',
            {"name": name, "group": res.group, "kind": res.plural},
        )

    def _resource(
        self,
        method: str,
        res: Resource,
        namespace: str,
        name: str | None,
        sub: str | None,
        body: dict[str, Any] | None,
        user: str,
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "DELETE": "delete",
        }[method]
        if method == "POST" and name:
            raise _ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        self._check_access(verb, res, sub, namespace, name, user)
        if name is None:
            if method == "GET":
                selector = (self.query.get("labelSelector") or [""])[0]
                items = [
                    copy.deepcopy(o)
                    for k, o in api.objects.items()
                    if k[:3] == (res.prefix, res.plural, namespace) and _selects(selector, o)
                ]
                return 200, {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.prefix.split("/", 1)[1],
                    "metadata": {"resourceVersion": str(api.revision)},
                    "items": items,
                }
            assert body is not None
            new_name = (body.get("metadata") or {}).get("name")
            if not new_name:
                raise _ApiError(
                    422,
                    "Invalid",
                    f'{res.kind} "" is invalid: metadata.name: Required value: name is required',
                )
            if (res.prefix, res.plural, namespace, new_name) in api.objects:
                raise _ApiError(
                    409,
                    "AlreadyExists",
                    f'{res.group_resource} "{new_name}" already exists',
                    {"name": new_name, "group": res.group, "kind": res.plural},
                )
            body.setdefault("metadata", {})["namespace"] = namespace
            body["metadata"].pop("resourceVersion", None)
            body["apiVersion"] = res.prefix.split("/", 1)[1]
            body["kind"] = res.kind
            if res.kind == "Job":  # what the Job controller does at once: one pending pod
                body["status"] = {"active": 1, "ready": 0, "startTime": _now()}
                created = api.put(body)
                api._start_job_pod(created)
                return 201, created
            return 201, api.put(body)
        key = (res.prefix, res.plural, namespace, name)
        obj = api.objects.get(key)
        if obj is None:
            raise self._not_found(res, name)
        if sub == "scale":
            return self._scale(method, res, key, obj, body)
        if method == "GET":
            return 200, copy.deepcopy(obj)
        if method == "DELETE":
            del api.objects[key]
            if res.kind == "Job":  # the garbage collector removes the Job's pods
                for pod in api.job_pods(namespace, name):
                    pod_meta = pod["metadata"]
                    del api.objects[("api/v1", "pods", namespace, pod_meta["name"])]
            api.deleted.append((res.plural, namespace, name, self.query))
            return 200, _status(200, "", "") | {
                "status": "Success",
                "details": {"name": name, "kind": res.plural},
            }
        assert body is not None
        self._check_version(res, key, obj, body)
        body["metadata"] = {
            **obj["metadata"],
            **{
                k: v
                for k, v in (body.get("metadata") or {}).items()
                if k in ("labels", "annotations")
            },
        }
        body["apiVersion"], body["kind"] = obj["apiVersion"], obj["kind"]
        return 200, api.put(body)

    def _check_version(
        self, res: Resource, key: Key, obj: dict[str, Any], body: dict[str, Any]
    ) -> None:
        api = self.server.api
        pending = api.pending_conflicts.get(key, 0)
        if pending:
            api.pending_conflicts[key] = pending - 1
            obj.setdefault("metadata", {}).setdefault("annotations", {})[
                "standin/concurrent-writes"
            ] = str(pending)
            obj["metadata"]["resourceVersion"] = api._bump()
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != obj["metadata"]["resourceVersion"]:
            raise _ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.group_resource} "{key[3]}": '
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
                {"name": key[3], "group": res.group, "kind": res.plural},
            )

    def _scale(
        self, method: str, res: Resource, key: Key, obj: dict[str, Any], body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        if method not in ("GET", "PUT"):
            raise _ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "PUT":
            assert body is not None
            if body.get("kind") != "Scale":
                raise _ApiError(
                    400, "BadRequest", f'the body kind must be Scale, got "{body.get("kind")}"'
                )
            self._check_version(res, key, obj, body)
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise _ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{key[3]}" is invalid: spec.replicas: Invalid value',
                )
            obj["spec"]["replicas"] = replicas
            obj.setdefault("status", {})["replicas"] = replicas  # an instant controller
            obj["metadata"]["resourceVersion"] = api._bump()
        meta = obj["metadata"]
        selector = obj.get("status", {}).get("selector")
        if selector is None:
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return 200, {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: KubeApiStandIn


@attrs.frozen
class KubeStandIn:
    """A running stand-in: its state, URL, CA and a kubeconfig factory."""

    api: KubeApiStandIn
    url: str
    ca: trustme.CA
    token: str
    other_token: str
    directory: Path

    def kubeconfig(
        self, namespace: str, *, other_namespace: str = "other", name: str = "kubeconfig"
    ) -> Path:
        """A kubeconfig with contexts ``standin`` (current; ``namespace``), ``other``
        (``other_namespace``, another user) and ``broken`` (a token the server refuses)."""
        ca = base64.b64encode(self.ca.cert_pem.bytes()).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "standin",
            "clusters": [
                {
                    "name": "standin",
                    "cluster": {"server": self.url, "certificate-authority-data": ca},
                }
            ],
            "users": [
                {"name": "controller", "user": {"token": self.token}},
                {"name": "other-user", "user": {"token": self.other_token}},
                {"name": "nobody", "user": {"token": "not-a-valid-token"}},
            ],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "controller", "namespace": namespace},
                },
                {
                    "name": "other",
                    "context": {
                        "cluster": "standin",
                        "user": "other-user",
                        "namespace": other_namespace,
                    },
                },
                {
                    "name": "broken",
                    "context": {"cluster": "standin", "user": "nobody", "namespace": namespace},
                },
            ],
        }
        path = self.directory / f"{name}-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path


@pytest.fixture(scope="session")
def kube_standin() -> Iterator[KubeStandIn]:
    """The Kubernetes API stand-in on a free 127.0.0.1 port, over TLS."""
    token, other = uuid.uuid4().hex, uuid.uuid4().hex
    api = KubeApiStandIn({token: USER, other: "system:serviceaccount:other:reader"})
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = api
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="kube-standin", daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}"
    api.url, api.ca = url, ca
    with tempfile.TemporaryDirectory(prefix="es-kube-") as tmp:
        try:
            yield KubeStandIn(api, url, ca, token, other, Path(tmp))
        finally:
            api.release_all()
            server.shutdown()
            server.server_close()
            thread.join(5)
