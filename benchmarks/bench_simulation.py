"""Closed-loop simulation speed: a day at 1 s polling, and ``tune`` over 500 settings.

``python -m benchmarks simulation`` runs it through the project harness (:func:`run`
returns a Markdown section); ``python benchmarks/bench_simulation.py [--quick]`` prints
the same.

The workload is a day of Poisson arrivals around a daily wave (mean 20 items/s,
amplitude 15, seed 1) drained by replicas taking 2 items/s each, 20 s after they are
asked for, under a redis-list ScaledObject. Goals (issue 21): the day at 1 s polling
in under 2 s (one core, timeline kept), and ``tune`` over 500 settings of that day in
under a minute (wall time, with the default worker processes of ``eventscale tune``).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

from eventscale.simulation import Goal, simulate_closed_loop, tune
from eventscale.simulation.workload import Workload, poisson, sine_day
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec

__all__ = ("TITLE", "run")

TITLE = "Closed-loop simulation and tune"

DAY_GOAL = 2.0
TUNE_GOAL = 60.0

#: 500 settings: 5 x 5 x 5 x 4.
GRID = {
    "listLength": ["5", "10", "20", "40", "80"],
    "cooldownPeriod": ["30", "60", "120", "300", "600"],
    "scaleDown.stabilizationWindowSeconds": ["0", "60", "120", "300", "600"],
    "pollingInterval": ["10", "15", "30", "60"],
}


def _spec(interval: float) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[TriggerSpec(type="redis", name="jobs", metadata={"listLength": "10"})],
        polling_interval=interval,
        max_replica_count=50,
    )


def _day() -> Workload:
    return poisson(sine_day(20, 15), seed=1)


def _time_day(work: Workload, keep: bool) -> float:
    start = time.process_time()
    simulate_closed_loop(_spec(1), work, throughput=2, startup=20, keep_timeline=keep)
    return time.process_time() - start


def run(quick: bool) -> str:
    work = _day()
    repeats = 1 if quick else 3
    kept = [_time_day(work, True) for _ in range(repeats)]
    bare = [_time_day(work, False) for _ in range(repeats)]
    grid = GRID if not quick else {k: v[:2] for k, v in GRID.items()}
    size = 1
    for values in grid.values():
        size *= len(values)
    workers = min(4, os.cpu_count() or 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = time.process_time()
    start = time.perf_counter()
    result = tune(
        _spec(30),
        work,
        grid,
        Goal(p95_wait=30, max_wait=300),
        throughput=2,
        startup=20,
        workers=workers,
    )
    tune_wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the worker processes' CPU (reaped when the pool closed) and this process's
    tune_cpu = (
        after.ru_utime
        + after.ru_stime
        - children.ru_utime
        - children.ru_stime
        + time.process_time()
        - own
    )
    best = result.best
    chosen = ", ".join(f"{k}={v}" for k, v in best.settings.items()) if best else "none"
    day = statistics.median(kept)
    return (
        "A day (86,400 s) of Poisson arrivals around a daily wave, 1.7 million items, "
        "simulated in the closed loop (CPU seconds on one core, median of "
        f"{repeats}; goal: under {DAY_GOAL:g} s at 1 s polling):\n\n"
        "| case | median | min | max |\n| --- | ---: | ---: | ---: |\n"
        f"| 1 s polling, timeline kept | {day:.2f} | {min(kept):.2f} | {max(kept):.2f} |\n"
        f"| 1 s polling, summary only | {statistics.median(bare):.2f} | {min(bare):.2f} | "
        f"{max(bare):.2f} |\n\n"
        f"`tune` over {size} settings of that day ({workers} worker processes; goal: under "
        f"{TUNE_GOAL:g} s for 500): **{tune_wall:.1f} s** wall, {tune_cpu:.1f} CPU seconds "
        f"({1000 * tune_cpu / size:.0f} ms a setting), so about {tune_cpu / workers:.0f} s "
        f"on {workers} otherwise idle cores (the load average during the run was "
        f"{os.getloadavg()[0]:.1f}). {sum(c.meets_goal for c in result.candidates)} settings "
        f"meet p95 wait <= 30 s and max wait <= 300 s; the cheapest: {chosen}.\n"
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
