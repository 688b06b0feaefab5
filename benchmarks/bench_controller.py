"""10,000 scaled objects in one controller: CPU, memory and loop lag.

Every object has one ``gauge`` trigger (a :class:`~eventscale.scalers.gauge.GaugeScaler`
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


async def _measure(objects: int, warmup: float, window: float, gc_mode: str) -> dict[str, Any]:
    import gc

    import anyio

    from eventscale.runtime.controller import Controller
    from eventscale.runtime.observability import Event, EventKind
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler
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
            triggers=[TriggerSpec(type="gauge", name="backlog")],
            polling_interval=1,
            cooldown_period=5,
            max_replica_count=50,
        )
        scaler = GaugeScaler(gauge, target=10, registry=registry, trigger_name="backlog")
        objs.append(ScaledObject(spec, target=MemoryTarget(0), scalers=[scaler]))
    build_s = time.perf_counter() - built
    if gc_mode == "tuned":
        gc.collect()
        gc.freeze()  # the long-lived objects leave the collector's view
        gc.set_threshold(50_000, 20, 100)
    gc_time = [0.0, 0.0, 0.0]  # total, start of the running collection, longest
    gc_count = [0, 0]  # collections, full (generation 2) collections

    def gc_callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.process_time()
        elif recording:
            spent = time.process_time() - gc_time[1]
            gc_time[0] += spent
            gc_time[2] = max(gc_time[2], spent)
            gc_count[0] += 1
            if info["generation"] == 2:
                gc_count[1] += 1

    gc.callbacks.append(gc_callback)

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
            tracked = len(gc.get_objects())  # (the frozen ones are not listed)
            tg.cancel_scope.cancel()
        stop0 = time.perf_counter()
    stop_s = time.perf_counter() - stop0
    del started
    return {
        "objects": objects,
        "gc": gc_mode,
        "gc_s": gc_time[0],
        "gc_runs": gc_count[0],
        "gc_full_runs": gc_count[1],
        "gc_longest_ms": 1000 * gc_time[2],
        "gc_tracked_per_object": tracked / objects,
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


def measure(quick: bool, objects: int = OBJECTS, gc_mode: str = "default") -> dict[str, Any]:
    """Run the measurement in a fresh interpreter and return its figures."""
    args = [sys.executable, "-m", "benchmarks.bench_controller", "--child"]
    args += ["--objects", str(objects), "--gc", gc_mode]
    if quick:
        args.append("--quick")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(args, capture_output=True, text=True, cwd=root, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"controller benchmark failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return float("nan")


def run(quick: bool) -> str:
    """Return the Markdown section body: default GC, then the tuned-GC deployment."""
    load = _load()
    runs = [measure(quick, gc_mode="default"), measure(quick, gc_mode="tuned")]
    d = runs[0]

    def cells(key: str, fmt: str) -> str:
        return " | ".join(format(r[key], fmt) for r in runs)

    rate = " | ".join(
        f"{r['polls']:,} ({r['polls'] / r['window_s']:,.0f}/s, "
        f"{100 * r['polls'] / (r['objects'] * r['window_s']):.0f}% of the schedule)"
        for r in runs
    )
    verdicts = []
    for r in runs:
        lag_ok = r["lag_p99_ms"] < 100
        mem_ok = max(r["rss_mb"], r["hwm_mb"]) < 300
        verdicts.append(
            f"p99 lag under 100 ms **{'met' if lag_ok else 'missed'}**, "
            f"under 300 MB **{'met' if mem_ok else 'missed'}**"
        )
    return (
        f"{d['objects']:,} ScaledObjects in one `Controller`, each with one `gauge` trigger "
        "(its own gauge), a `MemoryTarget` and `pollingInterval: 1`; a quarter of the gauges "
        "are 0 (those objects sit at zero) and 1% of all gauges change every second, so "
        "objects keep scaling. Each column is a fresh interpreter, measured over "
        f"{d['window_s']:.0f} s of steady state after {d['warmup_s']:.0f} s of warm-up. "
        "Loop lag is the `lag` field of every POLL event (how late the poll ran against "
        "its schedule), collected by one event hook. CPU is `time.process_time()` over "
        "wall time (100% = one core). Memory is the resident set size (`VmRSS` and its "
        "high-water mark `VmHWM` from `/proc/self/status`), not tracemalloc. GC time is "
        "process time spent in the cyclic garbage collector (`gc.callbacks`) during "
        "the window.\n\n"
        "**Default GC** is the program as it is, with Python's collector settings "
        "untouched (eventscale never changes them). **Tuned GC** is the same program "
        "with the collector set up the way docs/runtime.md recommends for thousands of "
        "objects: `gc.collect(); gc.freeze(); gc.set_threshold(50_000, 20, 100)` once "
        "the objects are built. With the defaults, the cost is the full collections: each "
        "one walks every tracked object of the process (the row below counts them per "
        "ScaledObject) and stops every loop while it runs, and objects that live "
        "through a polling interval (the engine state, a loop's parked wait) and the "
        "polls in flight when a collection runs are what fills the oldest generation "
        "and sets the next one off. Frozen objects are not walked and not counted.\n\n"
        "| what | default GC | tuned GC |\n| --- | ---: | ---: |\n"
        f"| polls in the window | {rate} |\n"
        f"| scale actions in the window | {cells('scales', ',')} |\n"
        f"| loop lag p50 (ms) | {cells('lag_p50_ms', ',.1f')} |\n"
        f"| loop lag p90 (ms) | {cells('lag_p90_ms', ',.1f')} |\n"
        f"| loop lag p99 (ms) | {cells('lag_p99_ms', ',.1f')} |\n"
        f"| loop lag max (ms) | {cells('lag_max_ms', ',.1f')} |\n"
        f"| CPU (% of one core) | {cells('cpu_pct', '.0f')} |\n"
        f"| GC time in the window (s) / collections / full collections | "
        + " | ".join(f"{r['gc_s']:.2f} / {r['gc_runs']} / {r['gc_full_runs']}" for r in runs)
        + " |\n"
        f"| longest collection (ms) | {cells('gc_longest_ms', ',.1f')} |\n"
        f"| GC-tracked objects per ScaledObject (not frozen) | "
        f"{cells('gc_tracked_per_object', '.1f')} |\n"
        f"| RSS before building the objects (MB) | {cells('rss_before_mb', '.0f')} |\n"
        f"| RSS at the end of the window (MB) | {cells('rss_mb', '.0f')} |\n"
        f"| RSS high-water mark (MB) | {cells('hwm_mb', '.0f')} |\n"
        f"| building the objects (s) | {cells('build_s', '.2f')} |\n"
        f"| shutdown: cancel every loop, close everything (s) | {cells('stop_s', '.2f')} |\n"
        "\n"
        f"Goals, default GC: {verdicts[0]}. Tuned GC: {verdicts[1]}. "
        f"The 1-minute load average was {load:.2f} when this section started, on a "
        "machine shared with other work: a loop that gets less than a whole core falls "
        "behind, and the lag figures are the first to show it.\n"
    )


def main() -> None:
    """``--child``: measure in this process and print the figures as one JSON line."""
    import anyio

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--objects", type=int, default=OBJECTS)
    parser.add_argument("--gc", choices=("default", "tuned"), default="default")
    args = parser.parse_args()
    if not args.child:
        print(run(args.quick))
        return
    warmup, window = (3.0, 5.0) if args.quick else (5.0, 20.0)
    result = anyio.run(_measure, args.objects, warmup, window, args.gc)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
