"""1,000 ScaledObjects created at once through the watch; then the steady state.

``python -m benchmarks watch`` runs it (:func:`run` returns a Markdown section).

The Kubernetes API stand-in of the test suite (tests/servers/kubernetes_srv.py: a
threaded HTTPS server, the real wire format) runs in a child process and holds 1,000
Deployments. A :class:`~eventscale.runtime.controller.Controller` and its
:class:`~eventscale.runtime.cluster.reconciler.ClusterReconciler` watch one namespace
through the real :class:`~eventscale.kube.KubeClient`; then 1,000 ScaledObjects (one
``cron`` trigger each, outside its window, ``pollingInterval`` 5 s) are created through
the API at once (64 creates in flight, as a ``kubectl apply`` of a large file would).
Requests are counted on the reconciler's client. Measured:

* **reconciled**: from the first write until every object runs in the controller;
* **status written**: until every object's ``Ready=True`` status is in the API (with
  its finalizer and its Events);
* **steady state**: over a window after that, the API requests eventscale makes per
  object per minute, by verb and resource: nothing changes, so the goal is no write
  at all (the scale subresource reads are the targets' own reads, one per poll).
"""

from __future__ import annotations

import base64
import collections
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

__all__ = ("TITLE", "measure", "run")

TITLE = "Cluster watch: 1,000 ScaledObjects created at once"

_TESTS = Path(__file__).resolve().parents[1] / "tests"
OBJECTS = 1000
KEDA = "apis/keda.sh/v1alpha1"


def _serve() -> None:
    """The child: the stand-in on a free port; its address, token and CA on stdout."""
    sys.path.insert(0, str(_TESTS))
    import trustme

    from servers.kubernetes.handler import Handler, Server
    from servers.kubernetes_srv import USER, KubeApiStandIn

    token = uuid.uuid4().hex
    api = KubeApiStandIn({token: USER})
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    server = Server(("127.0.0.1", 0), Handler)
    server.api = api
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    api.url, api.ca = url, ca
    ca_data = base64.b64encode(ca.cert_pem.bytes()).decode()
    print(json.dumps({"url": url, "token": token, "ca": ca_data}), flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes it
    api.shutdown()
    server.shutdown()


def _kubeconfig(tmp: Path, info: dict[str, str]) -> Path:
    import yaml

    path = tmp / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "s",
                        "cluster": {
                            "server": info["url"],
                            "certificate-authority-data": info["ca"],
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": info["token"]}}],
                "contexts": [{"name": "c", "context": {"cluster": "s", "user": "u"}}],
            }
        )
    )
    return path


def _scaled_object(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"so{i}", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": f"web{i}"},
            "pollingInterval": 30,
            "triggers": [
                {
                    "type": "cron",
                    "metadata": {
                        "timezone": "UTC",
                        # a window that never opens: nothing to scale, ever
                        "start": "0 0 29 2 *",
                        "end": "1 0 29 2 *",
                        "desiredReplicas": "2",
                    },
                }
            ],
        },
    }


async def _until(check: Any) -> None:
    """Sleep in 10 ms steps until ``check()`` (a measurement's resolution)."""
    while not check():  # noqa: ASYNC110 - the state has no event to wait on
        await anyio.sleep(0.01)


async def _create_all(client: Any, path: str, docs: list[dict[str, Any]]) -> None:
    limiter = anyio.CapacityLimiter(64)

    async def one(doc: dict[str, Any]) -> None:
        async with limiter:
            await client.request("POST", path, body=doc)

    async with anyio.create_task_group() as tg:
        for doc in docs:
            tg.start_soon(one, doc)


async def _ready(client: Any, ns: str) -> int:
    listing = await client.request("GET", f"/{KEDA}/namespaces/{ns}/scaledobjects")
    done = 0
    for obj in listing.get("items") or ():
        conditions = (obj.get("status") or {}).get("conditions") or ()
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            done += 1
    return done


async def _measure(kubeconfig: Path, objects: int, window: float) -> dict[str, Any]:
    from eventscale.kube import KubeClient, KubeConfig
    from eventscale.kube.events import EventRecorder
    from eventscale.runtime.cluster.reconciler import ClusterReconciler
    from eventscale.runtime.controller import Controller

    calls: collections.Counter[tuple[str, str]] = collections.Counter()

    class Counting(KubeClient):
        async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            calls[(method, _resource(path))] += 1
            return await super().request(method, path, **kwargs)

        def watch(self, path: str, **kwargs: Any) -> Any:
            calls[("WATCH", _resource(path))] += 1
            return super().watch(path, **kwargs)

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    config = KubeConfig.load(str(kubeconfig))
    admin, client = KubeClient(config), Counting(config)
    out: dict[str, Any] = {}
    try:
        deployments = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"web{i}", "namespace": ns, "labels": {"app": f"web{i}"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": f"web{i}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"web{i}"}},
                        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                    },
                },
            }
            for i in range(objects)
        ]
        await _create_all(admin, f"/apis/apps/v1/namespaces/{ns}/deployments", deployments)
        async with Controller() as ctl:
            reconciler = ClusterReconciler(
                client, ctl, namespaces=[ns], recorder=EventRecorder(client)
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(reconciler.run)
                await _until(reconciler.ready)
                start = time.monotonic()
                docs = [_scaled_object(ns, i) for i in range(objects)]
                await _create_all(admin, f"/{KEDA}/namespaces/{ns}/scaledobjects", docs)
                out["write"] = time.monotonic() - start
                await _until(lambda: len(ctl) >= objects)
                out["reconciled"] = time.monotonic() - start
                while await _ready(admin, ns) < objects:  # noqa: ASYNC110 - polls the API
                    await anyio.sleep(0.5)
                out["status"] = time.monotonic() - start
                await anyio.sleep(2.0)  # the last Events and finalizer writes land
                calls.clear()
                writes = reconciler.writer.writes
                polls = sum(ctl.status(k).polls for k in ctl)
                await anyio.sleep(window)
                out["polls"] = sum(ctl.status(k).polls for k in ctl) - polls
                out["status_writes"] = reconciler.writer.writes - writes
                out["calls"] = collections.Counter(calls)
                out["window"] = window
                tg.cancel_scope.cancel()
    finally:
        await client.aclose()
        await admin.aclose()
    return out


def _resource(path: str) -> str:
    """``/apis/apps/v1/namespaces/ns/deployments/web1/scale`` -> ``deployments/scale``."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[3:] if parts[0] == "apis" else parts[2:]
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


def measure(objects: int = OBJECTS, window: float = 60.0) -> dict[str, Any]:
    """Times (seconds) to reconcile and to write status; steady-state requests by kind."""
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_watch", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(_TESTS.parent),
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            return anyio.run(_measure, _kubeconfig(Path(tmp), info), objects, window)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(quick: bool = False) -> str:
    """The Markdown section for docs/benchmarks.md."""
    objects, window = (200, 15.0) if quick else (OBJECTS, 60.0)
    r = measure(objects, window)
    per = objects * r["window"] / 60.0  # object-minutes
    rows = [
        f"| {verb} {resource} | {count / per:.3f} |"
        for (verb, resource), count in sorted(r["calls"].items())
    ]
    writes = sum(n for (verb, _), n in r["calls"].items() if verb not in ("GET", "WATCH"))
    return (
        f"{objects} Deployments and a reconciler watching their namespace; {objects} "
        "ScaledObjects (one `cron` trigger outside its window, `pollingInterval` 30 s) "
        "created through the API at once (64 creates in flight) on the stand-in, a threaded "
        "Python HTTPS server in a child process. Requests counted on the reconciler's "
        "client.\n\n"
        "| | seconds |\n| --- | --- |\n"
        f"| creating the {objects} objects through the API | {r['write']:.2f} |\n"
        f"| until every object runs in the controller | {r['reconciled']:.2f} |\n"
        f"| until every object's `Ready=True` status is in the API | {r['status']:.2f} |\n\n"
        f"Steady state over {r['window']:.0f} s ({r['polls']} polls, nothing changing): "
        f"{r['status_writes']} status writes, {writes} writes of any kind. API requests per "
        "object per minute:\n\n"
        "| request | per object per minute |\n| --- | --- |\n" + "\n".join(rows) + "\n\n"
        "The goal is no write when nothing changed: status is patched only when it differs "
        "from what the API holds. The remaining reads are the scale target's own (`get "
        "deployments/scale`, one per poll: 2 per minute at a 30 s `pollingInterval`) and the "
        "watches' (a re-watch per kind when the server ends one; not per object).\n"
    )


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
    else:
        print(run("--quick" in sys.argv))
