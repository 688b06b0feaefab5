"""One Prometheus query through the ``prometheus`` trigger, against a real Prometheus.

``python -m benchmarks prometheus`` runs it through the project harness (:func:`run`
returns a Markdown section).

Debian's ``prometheus`` is started on a free port of 127.0.0.1 as the test fixtures
start it (tests/servers/prometheus_srv.py), scraping a small exporter whose gauge the
benchmark sets; the benchmark waits for a scrape, then measures two things in turn,
interleaved so that both see the same server:

* **trigger**: one ``PrometheusScaler.get_metrics()``: the instant query
  (``/api/v1/query``) on a pooled connection, the JSON parse, the one-series and
  finite-value checks, and the report;
* **floor**: a bare aiohttp ``GET`` of the same URL on a pooled connection, body read,
  nothing parsed: what any client pays for the query.

For each, the wall time per poll (median and the 10th-90th percentile spread) and the
Python CPU per poll (``time.thread_time()`` of the event loop's thread, so the
exporter's thread and the Prometheus process are not counted).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.prometheus import PrometheusScaler

__all__ = ("TITLE", "measure", "run")

TITLE = "Prometheus: one query through the prometheus trigger"

_TESTS = Path(__file__).resolve().parents[1] / "tests"


async def _timed(
    call: Callable[[], Awaitable[object]], wall: list[float], cpu: list[float]
) -> None:
    c0, t0 = time.thread_time(), time.perf_counter()
    await call()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.thread_time() - c0)


async def _measure(url: str, polls: int) -> dict[str, tuple[list[float], list[float]]]:
    query = "sum(eventscale_bench_queue_depth)"
    ctx = TriggerContext(
        metadata={"serverAddress": url, "query": query, "threshold": "10"},
        trigger_type="prometheus",
    )
    scaler = create_scaler(ctx)
    assert isinstance(scaler, PrometheusScaler)
    results: dict[str, tuple[list[float], list[float]]] = {
        "trigger": ([], []),
        "floor": ([], []),
    }
    async with scaler, aiohttp.ClientSession() as session:

        async def trigger() -> None:
            report = await scaler.get_metrics()
            if report.values[0].value != 42:
                raise RuntimeError(f"unexpected value {report.values[0].value}")

        async def floor() -> None:
            params = {"query": query, "time": f"{time.time():.3f}"}
            async with session.get(f"{url}/api/v1/query", params=params) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"Prometheus answered {resp.status}")

        for _ in range(5):  # warm-up: connections, imports, Prometheus's query path
            await trigger()
            await floor()
        for _ in range(polls):
            await _timed(trigger, *results["trigger"])
            await _timed(floor, *results["floor"])
    return results


def measure(polls: int) -> dict[str, tuple[list[float], list[float]]]:
    """``{"trigger"|"floor": (wall seconds, CPU seconds)}`` per poll, ``polls`` of each."""
    sys.path.insert(0, str(_TESTS))
    from servers.prometheus_srv import Exporter, PrometheusServer, _start

    exporter = Exporter()
    exporter.set("eventscale_bench_queue_depth", ({"queue": "orders"}, "42"))
    with tempfile.TemporaryDirectory() as tmp:
        url, proc = _start(Path(tmp), exporter, web_config=None, scheme="http")
        try:
            server = PrometheusServer(url, proc)
            deadline = time.monotonic() + 60
            while True:
                try:
                    server.wait_for("eventscale_bench_queue_depth", timeout=5)
                    break
                except BaseException:
                    if time.monotonic() > deadline or not proc.alive:
                        raise
            return asyncio.run(_measure(url, polls))
        finally:
            proc.stop()
            exporter.close()


def _row(name: str, wall: list[float], cpu: list[float]) -> str:
    ws = sorted(wall)
    cut = statistics.quantiles(ws, n=10)
    return (
        f"| {name} | {statistics.median(ws) * 1000:.2f} | "
        f"{cut[0] * 1000:.2f}-{cut[-1] * 1000:.2f} | {statistics.median(cpu) * 1e6:.0f} |"
    )


def run(quick: bool = False) -> str:
    """The Markdown section for docs/benchmarks.md."""
    polls = 50 if quick else 500
    results = measure(polls)
    rows = [_row(name, *results[name]) for name in ("trigger", "floor")]
    return (
        f"{polls} polls of each after a warm-up, interleaved, against Debian's Prometheus "
        "on 127.0.0.1 (query `sum(eventscale_bench_queue_depth)`, one series). *trigger*: "
        "`PrometheusScaler.get_metrics()`; *floor*: a bare aiohttp GET of the same URL, "
        "body read, nothing parsed. CPU is the Python thread's CPU per poll "
        "(`time.thread_time()`), so Prometheus's own work is not in it.\n\n"
        "| read | median ms | p10-p90 ms | Python CPU per poll, µs (median) |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    print(run())
