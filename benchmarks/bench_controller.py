"""10,000 scaled objects in one controller: CPU, memory and loop lag.

Every object has one ``memory`` trigger (a :class:`~eventscale.scalers.memory.MemoryScaler`
reading its own gauge), a :class:`~eventscale.targets.memory.MemoryTarget` and a 1 s
``pollingInterval``. A driver task moves 1% of the gauges every second, so the engine
keeps scaling some objects up and down. The measurement runs in a fresh interpreter
(``python -m benchmarks.bench_controller --child``) so that its memory figure is the
controller's alone.

- loop lag: the ``lag`` field of every POLL event (how late the poll ran against its
  schedule), gathered by an event hook, over the steady-state window only;
- CPU: ``time.process_time()`` (user + system, all threads) over the window, divided by
  wall time (100% = one core);
- memory: resident set size (``VmRSS`` in ``/proc/self/status``) before the objects
  are built and at the end of the window, and its high-water mark (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TITLE = "Controller: 10,000 objects"

OBJECTS = 10_000


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(objects: int, warmup: float, window: float) -> dict[str, Any]:
    import anyio

    from eventscale.controller import Controller
    from eventscale.observability import Event, EventKind
    from eventscale.runtime import ScaledObject
    from eventscale.scalers.memory import GaugeRegistry, MemoryScaler
    from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
    from eventscale.targets.memory import MemoryTarget

    rss_before = _status_kib("VmRSS")
    rng = random.Random(7)
    registry = GaugeRegistry()
    built = time.perf_counter()
    objs = []
    for i in range(objects):
        gauge = f"g{i}"
        # a quarter idle (scale to zero), the rest with some backlog
        registry.set(gauge, 0.0 if i % 4 == 0 else float(rng.randrange(1, 200)))
        spec = ScaledObjectSpec(
            name=f"obj-{i}",
            scale_target_ref=ScaleTargetRef(name=f"work-{i}"),
            triggers=[TriggerSpec(type="memory", name="backlog")],
            polling_interval=1,
            cooldown_period=5,
            max_replica_count=50,
        )
        scaler = MemoryScaler(gauge, target=10, registry=registry, trigger="backlog")
        objs.append(ScaledObject(spec, target=MemoryTarget(0), scalers=[scaler]))
    build_s = time.perf_counter() - built

    lags: list[float] = []
    counts = {"polls": 0, "scales": 0}
    recording = False

    def hook(event: Event) -> None:
        if not recording:
            return
        if event.kind is EventKind.POLL:
            counts["polls"] += 1
            if event.lag is not None:
                lags.append(event.lag)
        elif event.kind is EventKind.SCALE:
            counts["scales"] += 1

    async def driver() -> None:
        while True:
            await anyio.sleep(1)
            for i in rng.sample(range(objects), objects // 100):
                registry.set(f"g{i}", 0.0 if rng.random() < 0.25 else float(rng.randrange(200)))

    ctl = Controller()
    ctl.events.add_hook(hook)
    async with ctl:
        started = time.perf_counter()
        for obj in objs:
            ctl.add(obj)
        del objs
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver)
            await anyio.sleep(warmup)
            recording = True
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await anyio.sleep(window)
            recording = False
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            rss = _status_kib("VmRSS")
            hwm = _status_kib("VmHWM")
            tg.cancel_scope.cancel()
        stop0 = time.perf_counter()
    stop_s = time.perf_counter() - stop0
    del started
    return {
        "objects": objects,
        "warmup_s": warmup,
        "window_s": wall,
        "build_s": build_s,
        "stop_s": stop_s,
        "polls": counts["polls"],
        "scales": counts["scales"],
        "cpu_pct": 100 * cpu / wall,
        "lag_p50_ms": 1000 * _quantile(lags, 0.50),
        "lag_p90_ms": 1000 * _quantile(lags, 0.90),
        "lag_p99_ms": 1000 * _quantile(lags, 0.99),
        "lag_max_ms": 1000 * max(lags),
        "lag_mean_ms": 1000 * statistics.fmean(lags),
        "rss_before_mb": rss_before / 1024,
        "rss_mb": rss / 1024,
        "hwm_mb": hwm / 1024,
    }


def measure(quick: bool) -> dict[str, Any]:
    """Run the measurement in a fresh interpreter and return its figures."""
    args = [sys.executable, "-m", "benchmarks.bench_controller", "--child"]
    if quick:
        args.append("--quick")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(args, capture_output=True, text=True, cwd=root, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"controller benchmark failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> str:
    """Return the Markdown section body."""
    r = measure(quick)
    ok_lag = r["lag_p99_ms"] < 100
    ok_mem = r["rss_mb"] < 300 and r["hwm_mb"] < 300
    expected = r["objects"] * r["window_s"]
    return (
        f"{r['objects']:,} ScaledObjects in one `Controller`, each with one `memory` trigger "
        "(its own gauge), a `MemoryTarget` and `pollingInterval: 1`; a quarter of the gauges "
        "are 0 (those objects sit at zero) and 1% of all gauges change every second, so "
        "objects keep scaling. Measured in a fresh interpreter over "
        f"{r['window_s']:.1f} s of steady state after {r['warmup_s']:.0f} s of warm-up; "
        "one event hook collects the `lag` of every POLL event (how late the poll ran "
        "against its schedule).\n\n"
        "| what | value |\n| --- | ---: |\n"
        f"| polls in the window | {r['polls']:,} ({r['polls'] / r['window_s']:,.0f}/s; "
        f"schedule asks for {r['objects']:,}/s) |\n"
        f"| scale actions in the window | {r['scales']:,} |\n"
        f"| loop lag p50 | {r['lag_p50_ms']:.1f} ms |\n"
        f"| loop lag p90 | {r['lag_p90_ms']:.1f} ms |\n"
        f"| loop lag p99 | {r['lag_p99_ms']:.1f} ms |\n"
        f"| loop lag max | {r['lag_max_ms']:.1f} ms |\n"
        f"| CPU (process time / wall time; 100% = one core) | {r['cpu_pct']:.0f}% |\n"
        f"| RSS before building the objects | {r['rss_before_mb']:.0f} MB |\n"
        f"| RSS at the end of the window | {r['rss_mb']:.0f} MB |\n"
        f"| RSS high-water mark (VmHWM) | {r['hwm_mb']:.0f} MB |\n"
        f"| building the {r['objects']:,} objects | {r['build_s']:.2f} s |\n"
        f"| shutdown (cancel every loop, close every scaler and target) | {r['stop_s']:.2f} s |\n"
        "\n"
        f"Goals: p99 lag under 100 ms: **{'met' if ok_lag else 'missed'}**; "
        f"memory under 300 MB: **{'met' if ok_mem else 'missed'}**. "
        f"Polls completed: {100 * r['polls'] / expected:.1f}% of the schedule.\n"
    )


def main() -> None:
    """``--child``: measure in this process and print the figures as one JSON line."""
    import anyio

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--objects", type=int, default=OBJECTS)
    args = parser.parse_args()
    if not args.child:
        print(run(args.quick))
        return
    warmup, window = (3.0, 5.0) if args.quick else (5.0, 20.0)
    result = anyio.run(_measure, args.objects, warmup, window)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
