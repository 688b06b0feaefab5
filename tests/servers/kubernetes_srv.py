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
  ClusterTriggerAuthentications, ScaledObjects and ScaledJobs, with the status
  subresource of KEDA's CRDs (``/status``: main-resource writes keep the status,
  status writes keep everything else) and server-side Tables with the printer
  columns of KEDA's CRDs (what ``kubectl get scaledobject`` prints),
* ``autoscaling/v2`` HorizontalPodAutoscalers and ``v1`` Events (``fieldSelector``
  on any list, as ``kubectl describe`` asks for an object's Events),
* ``metrics.k8s.io/v1beta1`` PodMetrics (list and get, by label selector), and pods
  with resource requests and limits beside them: :meth:`KubeApiStandIn.resource_pods`
  creates both as the kubelet and metrics-server would report them,
* ``labelSelector`` (equality, existence, ``in``/``notin``) and ``fieldSelector``
  (dotted paths) on every list and watch; ``limit``/``continue`` pages (a continue
  token from before a compaction is 410 Expired); lists across all namespaces,
* namespaces, which exist when named (read-only), and OpenAPI v3 (below),
* discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``, with
  short names and the ``status``/``scale`` subresources) and ``/version``.

kubectl 1.32 works against it (tests/kube/test_kubectl_standin.py): ``get`` (KEDA's
columns, ``-w``, ``-A``), ``describe`` (Events), ``patch`` (``--subresource=status``,
``--type=merge|json``), ``delete`` (waiting on finalizers) and ``apply``: the
stand-in serves just enough OpenAPI v3 (``/openapi/v3``) for kubectl to see that the
server validates fields itself and which patch types each kind takes (merge and
JSON patches for KEDA's kinds, as for any custom resource); it does not validate
fields.

Bodies are what the API returns: ``kind``/``apiVersion``, metadata with
``resourceVersion`` (one cluster-wide counter, as etcd's revision), ``uid`` and
``creationTimestamp``; errors are ``Status`` objects with ``reason`` and ``code``. An
update with a stale ``resourceVersion`` is a 409 Conflict, a create of an existing
name a 409 AlreadyExists; ``metadata.generation`` moves when the spec changes;
an object with finalizers gets a ``deletionTimestamp`` on DELETE and goes when the
last finalizer is removed. PATCH takes JSON merge patches and JSON patches (and
strategic merge patches, as merge patches, on built-in kinds).

Every list can be a watch (``?watch=true``): from a ``resourceVersion`` (the changes
after it, replayed from the history), or from now after the current objects as
ADDED; ``labelSelector``/``fieldSelector`` (an object leaving the selection is
DELETED), ``allowWatchBookmarks`` (a BOOKMARK every ``api.bookmark_interval``
seconds), ``timeoutSeconds``. ``api.compact()`` forgets the history (watching from
before it is a 410 ``Expired`` ERROR event), ``api.cut_watches()`` drops every open
watch mid-event.

Tests can deny verbs (403 Forbidden), make a path hang, and inject a concurrent
write in front of the next update of an object. ``api.calls`` records every resource
request as ``ApiCall(verb, group, resource, agent)`` (Kubernetes' verbs: get, list,
watch, create, update, patch, delete; ``resource`` with its subresource, as
``scaledobjects/status``); ``api.calls_by("eventscale")`` gives the distinct
``(verb, group, resource)`` of eventscale's own client (User-Agent ``eventscale``;
tests that drive the stand-in for their own ends use another agent).

Helpers on ``kube_standin.api`` (a :class:`KubeApiStandIn`): ``put(obj)`` (create or
replace, as an apply), ``get(prefix, plural, ns, name)``, ``remove(key)`` (gone at
once), ``delete(key)`` (as the API: finalizers hold it), ``touch(obj)`` (record an
in-place change), ``scaled_object(name, ns, target, triggers, labels=, annotations=,
**spec)``, ``scaled_job(...)``, ``trigger_authentication(name, ns | None, spec)``,
``deployment``, ``worker``, ``secret``, ``configmap``, ``events_for(ns, name)``,
``compact()``, ``cut_watches()``, ``calls_by(agent)``, ``history`` (every write as a
``Change``), ``watching`` (open watch streams), ``bookmark_interval``. A key is
``(prefix, plural, namespace, name)``, as ``("apis/keda.sh/v1alpha1", "scaledobjects",
"ns", "x")``.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trustme
import yaml

from servers.kubernetes.errors import ApiError, status_body
from servers.kubernetes.handler import Handler, Server
from servers.kubernetes.patching import field_selects, json_patch, merge_patch, selects
from servers.kubernetes.resources import (
    BY_PATH,
    PRINTER_COLUMNS,
    RESOURCES,
    Resource,
    jsonpath,
    table,
)
from servers.kubernetes.state import ApiCall, Change, Key, KubeApiStandIn

__all__ = [
    "BY_PATH",
    "PRINTER_COLUMNS",
    "RESOURCES",
    "USER",
    "ApiCall",
    "ApiError",
    "Change",
    "Key",
    "KubeApiStandIn",
    "KubeStandIn",
    "Resource",
    "field_selects",
    "json_patch",
    "jsonpath",
    "kube_standin",
    "merge_patch",
    "selects",
    "status_body",
    "table",
]

USER = "system:serviceaccount:eventscale:controller"


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
    server = Server(("127.0.0.1", 0), Handler)
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
            api.shutdown()
            server.shutdown()
            server.server_close()
            thread.join(5)
