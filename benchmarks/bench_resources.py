"""One cpu-trigger read for a Deployment of 100 pods: Kubernetes target + HPA calculation.

``python -m benchmarks resources`` runs it through the project harness (:func:`run`
returns a Markdown section).

A small aiohttp server on 127.0.0.1 answers as the API server does for a Deployment of
100 pods with requests, and their ``metrics.k8s.io/v1beta1`` PodMetrics (bodies built
once, as the real API would return them). Each iteration is one
``ResourceScaler.get_metrics()``: the scale read, one pod list, one PodMetrics list,
parsing, and the HPA's resource replica calculation. The table shows the requests per
read (three, whatever the pod count) and the wall time per read.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from eventscale.kube import KubeClient, KubeConfig
from eventscale.redaction import Secret
from eventscale.scalers.resource import ResourceScaler
from eventscale.targets.kubernetes import KubernetesTarget

__all__ = ("TITLE", "bodies", "measure", "run")

TITLE = "Resource metrics: one cpu read for 100 pods"

NS = "bench"


def bodies(pods: int) -> dict[str, bytes]:
    """The API's answers for a Deployment ``web`` with ``pods`` pods, by path."""
    stamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = "2024-01-01T00:00:00Z"
    pod_items: list[dict[str, Any]] = []
    metric_items: list[dict[str, Any]] = []
    for i in range(pods):
        name = f"web-{i:04d}"
        meta = {"name": name, "namespace": NS, "labels": {"app": "web"}}
        pod_items.append(
            {
                "metadata": meta,
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "256Mi"},
                            },
                        }
                    ]
                },
                "status": {
                    "phase": "Running",
                    "startTime": started,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": started}
                    ],
                },
            }
        )
        metric_items.append(
            {
                "metadata": meta,
                "timestamp": stamp,
                "window": "30s",
                "containers": [{"name": "app", "usage": {"cpu": f"{200 + i}m", "memory": "64Mi"}}],
            }
        )
    scale = {
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "1"},
        "spec": {"replicas": pods},
        "status": {"replicas": pods, "selector": "app=web"},
    }
    return {
        f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale": json.dumps(scale).encode(),
        f"/api/v1/namespaces/{NS}/pods": json.dumps(
            {"kind": "PodList", "items": pod_items}
        ).encode(),
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods": json.dumps(
            {"kind": "PodMetricsList", "items": metric_items}
        ).encode(),
    }


async def measure(pods: int, reads: int) -> tuple[float, list[float], int]:
    """(requests per read, seconds per read, the proposal) over ``reads`` reads."""
    answers = bodies(pods)
    served = [0]

    async def handle(request: web.Request) -> web.Response:
        served[0] += 1
        body = answers.get(request.path)
        if body is None:
            return web.Response(status=404, text="{}")
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = KubeClient(
        KubeConfig(server=f"http://127.0.0.1:{port}", namespace=NS, token=Secret("t"))
    )
    target = KubernetesTarget("web", client=client)
    scaler = ResourceScaler("cpu", target=50, workload=target)
    times: list[float] = []
    proposal = 0
    try:
        await scaler.get_metrics()  # warm-up (connection, imports)
        served[0] = 0
        for _ in range(reads):
            start = time.perf_counter()
            report = await scaler.get_metrics()
            times.append(time.perf_counter() - start)
            proposal = int(report.values[0].value)
    finally:
        await client.aclose()
        await runner.cleanup()
    return served[0] / reads, times, proposal


def run(quick: bool = False) -> str:
    """The Markdown section for docs/benchmarks.md."""
    reads = 20 if quick else 200
    rows = []
    for pods in (10, 100):
        per_read, times, proposal = asyncio.run(measure(pods, reads))
        times.sort()
        rows.append(
            f"| {pods} | {per_read:g} | {statistics.median(times) * 1000:.2f} | "
            f"{times[int(len(times) * 0.99) - 1] * 1000:.2f} | {proposal} |"
        )
    return (
        f"{reads} reads per row after one warm-up, HTTP on 127.0.0.1.\n\n"
        "| pods | requests per read | median ms | p99 ms | proposed replicas |\n"
        "| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    print(run())
