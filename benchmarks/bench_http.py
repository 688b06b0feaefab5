"""What the HTTP interceptor adds to a request: latency (p50/p99) and requests per second.

``python -m benchmarks http`` runs it through the project harness; ``python
benchmarks/bench_http.py [--quick]`` prints the same section.

Three processes on loopback: an upstream (a bare aiohttp server answering a small
fixed body), the interceptor (:class:`eventscale.http.Interceptor`, one route to that
upstream) and this process as the client. Latency is measured with one keep-alive
connection and one request at a time, first straight to the upstream, then through
the interceptor; the added latency is the difference of the percentiles. Throughput
uses 32 concurrent keep-alive connections for a fixed time. Direct and proxied runs
alternate so that a burst of load from the rest of the machine hits both.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

__all__ = ("TITLE", "run")

TITLE = "HTTP interceptor overhead"

#: The issue's goal: under 1 ms added at the median.
GOAL_MS = 1.0

_UPSTREAM = """
import sys
from aiohttp import web

BODY = b'{"ok": true, "pad": "' + b"x" * 200 + b'"}'

async def handle(request):
    return web.Response(body=BODY, content_type="application/json")

app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

_INTERCEPTOR = """
import asyncio, sys
from eventscale.http import Interceptor, Route

async def main():
    route = Route(name="bench", hosts=["bench.test"], upstream=f"http://127.0.0.1:{sys.argv[2]}")
    icpt = Interceptor([route])
    await icpt.start("127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"benchmark server on port {port} did not start")


async def _latencies(url: str, count: int) -> list[float]:
    headers = {"Host": "bench.test"}
    out: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(50):  # warm-up: connection, caches
            async with session.get(url, headers=headers) as resp:
                await resp.read()
        for _ in range(count):
            start = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            out.append(time.perf_counter() - start)
    return out


async def _throughput(url: str, seconds: float, concurrency: int = 32) -> float:
    headers = {"Host": "bench.test"}
    done = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url} answered {resp.status}")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(quick: bool, direct: str, proxied: str) -> dict[str, list[float]]:
    rounds = 2 if quick else 5
    count = 300 if quick else 1000
    seconds = 1.0 if quick else 3.0
    res: dict[str, list[float]] = {k: [] for k in ("d", "p", "d_rps", "p_rps")}
    for _ in range(rounds):
        res["d"].extend(await _latencies(direct, count))
        res["p"].extend(await _latencies(proxied, count))
    for _ in range(rounds):
        res["d_rps"].append(await _throughput(direct, seconds))
        res["p_rps"].append(await _throughput(proxied, seconds))
    return res


def run(quick: bool = False) -> str:
    """Start the upstream and the interceptor, measure, and return a Markdown section."""
    up_port, icpt_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    upstream = subprocess.Popen([sys.executable, "-c", _UPSTREAM, str(up_port)], env=env)
    interceptor = subprocess.Popen(
        [sys.executable, "-c", _INTERCEPTOR, str(icpt_port), str(up_port)], env=env
    )
    try:
        _wait_port(up_port, upstream)
        _wait_port(icpt_port, interceptor)
        res = asyncio.run(
            _measure(quick, f"http://127.0.0.1:{up_port}/", f"http://127.0.0.1:{icpt_port}/")
        )
    finally:
        for proc in (interceptor, upstream):
            proc.terminate()
            proc.wait(timeout=10)
    ms = 1000.0
    d50, p50 = _pct(res["d"], 0.5) * ms, _pct(res["p"], 0.5) * ms
    d99, p99 = _pct(res["d"], 0.99) * ms, _pct(res["p"], 0.99) * ms
    d_rps, p_rps = statistics.median(res["d_rps"]), statistics.median(res["p_rps"])
    added = p50 - d50
    verdict = "met" if added < GOAL_MS else "not met"
    return "\n".join(
        [
            (
                "One small JSON response (about 230 bytes) per request, HTTP/1.1 keep-alive on "
                "loopback; the upstream, the interceptor and the client are three processes. "
                f"{len(res['d'])} sequential requests per path for latency; 32 concurrent "
                "connections for throughput (median of the rounds)."
            ),
            "",
            "| Path | p50 latency | p99 latency | Requests/s (32 connections) |",
            "| --- | ---: | ---: | ---: |",
            f"| Direct to the upstream | {d50:.3f} ms | {d99:.3f} ms | {d_rps:,.0f} |",
            f"| Through the interceptor | {p50:.3f} ms | {p99:.3f} ms | {p_rps:,.0f} |",
            (
                f"| Added by the interceptor | {added:.3f} ms | {p99 - d99:.3f} ms | "
                f"{(p_rps / d_rps - 1) * 100:+.0f}% |"
            ),
            "",
            f"Goal: under {GOAL_MS:g} ms added at p50 on this machine: **{verdict}**.",
        ]
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
