"""Many scaled objects in one controller: loop lag, memory, CPU, each beside its floor.

Three scenarios, each measured in a fresh interpreter (``python -m
benchmarks.bench_controller --child ...``) so that its memory figure is its own:

- 10,000 objects polled every second, 100,000 objects every 30 s (KEDA's default):
  every object has one ``gauge`` trigger (its own gauge) and a ``MemoryTarget``; a
  quarter of the gauges are 0 and 1% of all gauges change every second, so objects
  keep scaling;
- 100,000 idle objects every 30 s (every gauge 0): the idle cost.

Each scenario runs three times in the same invocation: the controller of this checkout,
the controller of an older checkout (``--old SRC`` or ``EVENTSCALE_BENCH_OLD_SRC``:
another ``src`` directory put first on ``PYTHONPATH``; skipped without one), and the floor: a bare asyncio loop firing one no-op callback per
object on the same schedule (``loop.call_at``, the same phases). Nothing listens to
events (no hook), so no event is built.

- poll lag: how late each poll started against its schedule (``status.last_lag``,
  read for every object once per polling interval during the window); for the floor,
  how late each callback ran;
- loop lag: how late a probe task's 10 ms sleeps end (the stall any task sees);
- CPU: ``time.process_time()`` over wall time (100% = one core), and per poll;
- memory: ``VmRSS`` at the end of the window and its high-water mark ``VmHWM``;
- GC: collections and the longest one (``gc.callbacks``), and the objects the cyclic
  collector tracks per scaled object (``gc.get_objects()`` plus ``gc.get_freeze_count()``
  after the window, minus before the objects were built), and of those the ones a full
  collection walks (not frozen: ``gc.get_objects()`` alone).

``--split`` measures the cost of one poll by part, in process (see :func:`_split`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
import zlib
from array import array
from pathlib import Path
from typing import Any

TITLE = "Controller: many objects"

ROOT = Path(__file__).resolve().parent.parent

#: (name, objects, polling interval, idle, warm-up, window) of the full run
SCENARIOS: tuple[tuple[str, int, float, bool, float, float], ...] = (
    ("10k@1s", 10_000, 1.0, False, 6.0, 20.0),
    ("100k@30s", 100_000, 30.0, False, 35.0, 60.0),
    ("100k idle@30s", 100_000, 30.0, True, 35.0, 60.0),
)
QUICK: tuple[tuple[str, int, float, bool, float, float], ...] = (
    ("10k@1s", 10_000, 1.0, False, 3.0, 5.0),
    ("20k@5s", 20_000, 5.0, False, 6.0, 10.0),
    ("20k idle@5s", 20_000, 5.0, True, 6.0, 10.0),
)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _quantile(values: Any, q: float) -> float:
    ordered: list[float] = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Gc:
    """Collections, full collections and the longest one, while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.runs = self.full = 0
        self.total = self.longest = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self.on:
            spent = time.perf_counter() - self._start
            self.total += spent
            self.longest = max(self.longest, spent)
            self.runs += 1
            self.full += info["generation"] == 2


async def _probe(lags: array[float], period: float = 0.01) -> None:
    """How late a 10 ms sleep ends, again and again: the loop's own lag."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        lags.append(loop.time() - due)


def _tracked() -> tuple[int, int]:
    """(tracked objects, frozen or not; the ones a full collection walks)."""
    walked = len(gc.get_objects())
    return walked + gc.get_freeze_count(), walked


def _figures(
    objects: int,
    interval: float,
    window: float,
    cpu: float,
    polls: int,
    poll_lags: Any,
    loop_lags: Any,
    collector: _Gc,
    tracked: tuple[float, float],
    rss_before: int,
) -> dict[str, Any]:
    due = objects * window / interval
    return {
        "objects": objects,
        "interval": interval,
        "window_s": window,
        "polls": polls,
        "on_schedule_pct": 100 * polls / due,
        "cpu_pct": 100 * cpu / window,
        "cpu_us_per_poll": 1e6 * cpu / max(polls, 1),
        "poll_lag_p50_ms": 1000 * _quantile(poll_lags, 0.50),
        "poll_lag_p99_ms": 1000 * _quantile(poll_lags, 0.99),
        "poll_lag_max_ms": 1000 * max(poll_lags, default=float("nan")),
        "loop_lag_p99_ms": 1000 * _quantile(loop_lags, 0.99),
        "loop_lag_max_ms": 1000 * max(loop_lags, default=float("nan")),
        "gc_runs": collector.runs,
        "gc_full_runs": collector.full,
        "gc_s": collector.total,
        "gc_longest_ms": 1000 * collector.longest,
        "tracked_per_object": tracked[0],
        "walked_per_object": tracked[1],
        "rss_before_mb": rss_before / 1024,
        "rss_mb": _status_kib("VmRSS") / 1024,
        "hwm_mb": _status_kib("VmHWM") / 1024,
        "load": os.getloadavg()[0],
    }


async def _controller(
    objects: int, interval: float, idle: bool, warmup: float, window: float
) -> dict[str, Any]:
    import anyio

    from eventscale.runtime.controller import Controller
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler
    from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
    from eventscale.targets.memory import MemoryTarget

    collector = _Gc()
    gc.collect()
    tracked_before = _tracked()
    rss_before = _status_kib("VmRSS")
    rng = random.Random(7)
    registry = GaugeRegistry()
    keys = []
    objs = []
    ctl = Controller()
    for i in range(objects):
        gauge = f"g{i}"
        busy = not idle and i % 4 != 0
        registry.set(gauge, float(rng.randrange(1, 200)) if busy else 0.0)
        spec = ScaledObjectSpec(
            name=f"obj-{i}",
            scale_target_ref=ScaleTargetRef(name=f"work-{i}"),
            triggers=[TriggerSpec(type="gauge", name="backlog")],
            polling_interval=interval,
            cooldown_period=5,
            max_replica_count=50,
        )
        scaler = GaugeScaler(gauge, target=10, registry=registry, trigger_name="backlog")
        objs.append(ScaledObject(spec, target=MemoryTarget(0), scalers=[scaler]))
        keys.append(spec.namespace + "/" + spec.name)
    statuses: list[Any] = []  # (read once the controller runs)

    async def driver() -> None:
        while not idle:
            await anyio.sleep(1)
            for i in rng.sample(range(objects), objects // 100):
                registry.set(f"g{i}", 0.0 if rng.random() < 0.25 else float(rng.randrange(200)))

    poll_lags: array[float] = array("d")
    loop_lags: array[float] = array("d")

    async def sampler() -> None:
        while True:
            await anyio.sleep(interval)
            poll_lags.extend(s.last_lag for s in statuses if s.last_lag is not None)

    async with ctl:
        for obj in objs:  # (in the block: an older controller adds pending ones slowly)
            ctl.add(obj)
        del objs
        statuses.extend(ctl.status(k) for k in keys)
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver)
            await anyio.sleep(warmup)
            tg.start_soon(_probe, loop_lags)
            tg.start_soon(sampler)
            polls0 = sum(s.polls for s in statuses)
            collector.on = True
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await anyio.sleep(window)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            collector.on = False
            polls = sum(s.polls for s in statuses) - polls0
            tg.cancel_scope.cancel()
        after = _tracked()
        tracked = tuple((a - b) / objects for a, b in zip(after, tracked_before, strict=True))
        result = _figures(
            objects,
            interval,
            wall,
            cpu,
            polls,
            poll_lags,
            loop_lags,
            collector,
            (tracked[0], tracked[1]),
            rss_before,
        )
        stop0 = time.perf_counter()
    result["stop_s"] = time.perf_counter() - stop0
    return result


async def _floor(objects: int, interval: float, warmup: float, window: float) -> dict[str, Any]:
    """A bare loop firing one no-op callback per object on the controller's schedule."""
    collector = _Gc()
    gc.collect()
    tracked_before = _tracked()
    rss_before = _status_kib("VmRSS")
    loop = asyncio.get_running_loop()
    lags: array[float] = array("d")
    loop_lags: array[float] = array("d")
    fired = [0]
    recording = [False]

    def tick(due: float) -> None:
        now = loop.time()
        if recording[0]:
            lags.append(now - due)
            fired[0] += 1
        due += interval
        if due < now:
            due += (int((now - due) / interval) + 1) * interval
        loop.call_at(due, tick, due)

    start = loop.time()
    for i in range(objects):
        shift = zlib.crc32(f"default/obj-{i}".encode()) / 2**32 * interval
        loop.call_at(start + interval - shift, tick, start + interval - shift)
    await asyncio.sleep(warmup)
    probe = asyncio.ensure_future(_probe(loop_lags))
    recording[0] = True
    collector.on = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    recording[0] = False
    collector.on = False
    probe.cancel()
    after = _tracked()
    tracked = ((after[0] - tracked_before[0]) / objects, (after[1] - tracked_before[1]) / objects)
    return _figures(
        objects, interval, wall, cpu, fired[0], lags, loop_lags, collector, tracked, rss_before
    )


def _child(kind: str, scenario: tuple[str, int, float, bool, float, float], src: str | None) -> Any:
    _, objects, interval, idle, warmup, window = scenario
    args = [sys.executable, "-m", "benchmarks.bench_controller", "--child", kind]
    args += ["--objects", str(objects), "--interval", str(interval)]
    args += ["--warmup", str(warmup), "--window", str(window)]
    if idle:
        args.append("--idle")
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (src, env.get("PYTHONPATH"))))
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"controller benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


ROWS: tuple[tuple[str, str, str], ...] = (
    ("polls in the window (% of the schedule)", "on_schedule_pct", ".1f"),
    ("poll lag p50 (ms)", "poll_lag_p50_ms", ",.1f"),
    ("poll lag p99 (ms)", "poll_lag_p99_ms", ",.1f"),
    ("poll lag max (ms)", "poll_lag_max_ms", ",.1f"),
    ("loop lag p99 (ms)", "loop_lag_p99_ms", ",.1f"),
    ("loop lag max (ms)", "loop_lag_max_ms", ",.1f"),
    ("CPU (% of one core)", "cpu_pct", ".1f"),
    ("CPU per poll (µs)", "cpu_us_per_poll", ",.1f"),
    ("RSS at the end of the window (MB)", "rss_mb", ",.0f"),
    ("RSS high-water mark (MB)", "hwm_mb", ",.0f"),
    ("collections / full collections in the window", "", ""),
    ("longest collection (ms)", "gc_longest_ms", ",.1f"),
    ("GC-tracked objects per object (frozen or not)", "tracked_per_object", ".1f"),
    ("of which a full collection walks (not frozen)", "walked_per_object", ".1f"),
    ("1-minute load average at the end", "load", ".2f"),
)


def _table(name: str, runs: dict[str, dict[str, Any]]) -> str:
    heads = list(runs)
    lines = [f"| {name} | " + " | ".join(heads) + " | new / floor |"]
    lines.append("| --- |" + " ---: |" * (len(heads) + 1))
    floor, new = runs.get("floor"), runs.get("new")
    for label, key, fmt in ROWS:
        if not key:
            cells = [f"{r['gc_runs']} / {r['gc_full_runs']}" for r in runs.values()]
            ratio = ""
        else:
            cells = [format(r[key], fmt) for r in runs.values()]
            ratio = ""
            if floor and new and key not in ("load", "on_schedule_pct") and floor[key] > 0:
                ratio = f"{new[key] / floor[key]:.1f}x"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def run(quick: bool, old: str | None = None) -> str:
    """The Markdown section body: every scenario, new / old / floor, then the split."""
    scenarios = QUICK if quick else SCENARIOS
    old = old or os.environ.get("EVENTSCALE_BENCH_OLD_SRC") or None
    load = os.getloadavg()[0]
    tables = []
    for scenario in scenarios:
        runs: dict[str, dict[str, Any]] = {"new": _child("controller", scenario, None)}
        if old is not None:
            runs["old"] = _child("controller", scenario, old)
        runs["floor"] = _child("floor", scenario, None)
        _, objects, interval, idle, warmup, window = scenario
        tables.append(
            f"**{objects:,} {'idle ' if idle else ''}objects, `pollingInterval: "
            f"{interval:g}`** ({window:g} s window after {warmup:g} s of warm-up)\n\n"
            + _table("what", runs)
        )
    split = _split_child()
    return (
        "Each column is a fresh interpreter with Python's default collector settings "
        "(eventscale never changes them). **new** is this checkout's controller, "
        + ("**old** the one of `" + old + "`, " if old else "")
        + "**floor** a bare asyncio loop firing one no-op callback per object on the "
        "same schedule (`loop.call_at`, the same phases), measured in the same run; the "
        "last column is new / floor. Every object has one `gauge` trigger (its own gauge) "
        "and a `MemoryTarget`; in the busy scenarios a quarter of the gauges are 0 and 1% "
        "of all gauges change every second, in the idle one every gauge is 0. Nothing "
        "listens to events. Poll lag is how late each poll started against its schedule "
        "(`ObjectStatus.last_lag`, read for every object once per interval); loop lag how "
        "late a probe's 10 ms sleeps end. CPU is `time.process_time()` over wall time "
        "(100% = one core); per poll, that time over the polls in the window. RSS is "
        "`VmRSS` / `VmHWM`. GC-tracked objects are `gc.get_objects()` after the window "
        "minus before the objects were built, per object.\n\n"
        + "\n\n".join(tables)
        + "\n\n"
        + split
        + f"\n\nThe machine is shared: the 1-minute load average was {load:.2f} when this "
        "section started (and is in each column at its end); with 2 cores and other "
        "work running, a loop that gets less than a whole core falls behind, and the "
        "lag figures are the first to show it. Rerun on a quiet machine before quoting.\n"
    )


# ---------------------------------------------------------------------------- the split


def _split_child() -> str:
    args = [sys.executable, "-m", "benchmarks.bench_controller", "--child", "split"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"split benchmark failed:\n{proc.stderr}")
    parts: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    counted = _callgrind()
    outside = parts["poll"] - parts["scaler"] - parts["engine"]
    labels = (
        ("floor: a bare loop's no-op callback", "floor"),
        ("scheduler: start a poll when due, end it, reschedule (no-op poll)", "scheduler"),
        ("scaler call: `poll_trigger` (timeout, gauge read, report check)", "scaler"),
        ("engine: `Engine.decide`", "engine"),
        ("target: read the replicas under the timeout", "target"),
        ("events, nobody listening (three `wants` checks)", "events_off"),
        ("events, one hook (POLL and DECISION built and emitted)", "events_on"),
        ("the whole poll through the scheduler (no listener)", "poll"),
    )
    rows = "\n".join(
        f"| {label} | {parts[key]:.2f} | " + (f"{counted[key]:,.0f}" if counted else "n/a") + " |"
        for label, key in labels
    )
    instructions = ""
    if counted:
        out_i = counted["poll"] - counted["scaler"] - counted["engine"]
        instructions = (
            f" By instruction count (callgrind, {CALLGRIND_POLLS:,} polls per part, "
            f"repeatable where wall time is not): {out_i:,.0f} instructions outside the "
            f"scaler and the engine, {out_i / counted['floor']:.1f}x the floor's callback, "
            f"of {counted['poll']:,.0f} for the whole poll."
        )
    return (
        "**The cost of one poll by part** (µs of wall time per poll, the best of 5 "
        "rounds of 10,000 in one process, `--child split`; instructions per poll under "
        "callgrind, `--child callgrind`): each part alone, then the whole poll as the "
        "controller runs it (scheduler, reconcile without ownership, status). The whole "
        "poll includes what the parts leave out: the target write when the decision "
        "changes the replicas, the `_cycle` bookkeeping, the engine state's compact "
        f"form. Outside the scaler and the engine a poll costs {outside:.1f} µs "
        f"({outside / parts['floor']:.0f}x the floor's callback).{instructions}\n\n"
        "| part | µs per poll | instructions per poll |\n| --- | ---: | ---: |\n" + rows
    )


#: Under callgrind (``--child callgrind``): every measured round is bracketed by two
#: ``os.getppid()`` calls, and valgrind dumps its counters on each
#: (``--dump-before=getppid``), so the dumps alternate between set-up and a round.
_MARKED: list[str] = []


def _start() -> float:
    if _MARKED:
        os.getppid()
    return time.perf_counter()


def _stop(t0: float, n: int) -> float:
    spent = (time.perf_counter() - t0) / n * 1e6
    if _MARKED:
        os.getppid()
    return spent


#: Polls per part under callgrind (it runs Python about 50 times slower).
CALLGRIND_POLLS = 2_000

#: The parts in the order ``_split_parts`` measures them (one round each under callgrind).
_ORDER = (
    "floor",
    "scheduler",
    "poll",
    "scaler",
    "engine",
    "target",
    "events_off",
    "with_hook",
    "without_hook",
)


def _callgrind() -> dict[str, float] | None:
    """Instructions per poll of each part, counted by callgrind (``None``: no valgrind)."""
    import glob
    import re
    import shutil
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        args = ["valgrind", "--tool=callgrind", "--dump-before=getppid"]
        args += [f"--callgrind-out-file={out}", sys.executable]
        args += ["-m", "benchmarks.bench_controller", "--child", "callgrind"]
        proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind run failed:\n{proc.stderr[-2000:]}")
        counts = []
        for path in glob.glob(out + ".*"):
            number = int(path.rsplit(".", 1)[1])
            text = Path(path).read_text(errors="replace")
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            counts.append((number, int(found.group(1)) if found else 0))
    counts.sort()
    # dumps alternate: set-up before a round, then the round itself
    rounds = [c for n, c in counts if n % 2 == 0][: len(_ORDER)]
    per = dict(zip(_ORDER, (c / CALLGRIND_POLLS for c in rounds), strict=True))
    per["events_on"] = max(0.0, per.pop("with_hook") - per.pop("without_hook"))
    per["events_on"] += per["events_off"]
    return per


def _best(rounds: int, body: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        best = min(best, body())
    return best


async def _split_parts(n: int = 10_000, rounds: int = 5) -> dict[str, float]:
    import logging

    from eventscale.engine import Engine, ScalingState
    from eventscale.runtime._polling import call_timeout, poll_trigger
    from eventscale.runtime._schedule import ObjectLoop
    from eventscale.runtime._scheduler import Scheduler
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.objects import ObjectStatus
    from eventscale.runtime.observability import EventBus
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler
    from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
    from eventscale.targets.memory import MemoryTarget

    loop = asyncio.get_running_loop()
    registry = GaugeRegistry()

    def build(i: int) -> ScaledObject:
        registry.set(f"g{i}", float(i % 50))
        spec = ScaledObjectSpec(
            name=f"obj-{i}",
            scale_target_ref=ScaleTargetRef(name=f"work-{i}"),
            triggers=[TriggerSpec(type="gauge", name="backlog")],
            polling_interval=1,
            cooldown_period=5,
            max_replica_count=50,
        )
        scaler = GaugeScaler(f"g{i}", target=10, registry=registry, trigger_name="backlog")
        return ScaledObject(spec, target=MemoryTarget(0), scalers=[scaler])

    objs = [build(i) for i in range(n)]
    out: dict[str, float] = {}

    async def timed_round(start: Any) -> float:
        done = asyncio.Event()
        left = [n]

        def finished() -> None:
            left[0] -= 1
            if not left[0]:
                done.set()

        t0 = _start()
        start(finished)
        await done.wait()
        return _stop(t0, n)

    # floor: n no-op callbacks due at once
    floor_rounds = []
    for _ in range(rounds):
        floor_rounds.append(await timed_round(lambda fin: [loop.call_soon(fin) for _ in range(n)]))
    out["floor"] = min(floor_rounds)

    async def scheduled_round(poll: Any) -> float:
        done = asyncio.Event()
        count = [0]

        async def counted(entry: ObjectLoop, lag: float) -> None:
            await poll(entry, lag)
            count[0] += 1
            if count[0] == n:
                done.set()

        sched = Scheduler(loop, time.time, counted, 1000, 5.0)
        entries = []
        for obj in objs:
            entry = ObjectLoop(obj, ObjectStatus(obj.key), ())
            entry.interval = 1000.0
            entry.started = 1  # a steady-state poll, not an object's first
            entries.append(entry)
        now = time.time()
        t0 = _start()
        for entry in entries:
            sched.add(entry, now)
        await done.wait()
        await asyncio.sleep(0)
        spent = _stop(t0, n)
        sched.close()
        return spent

    async def scheduled(poll: Any) -> float:
        if _MARKED:  # under callgrind: one unmarked round first, so that the counted one
            _MARKED.clear()  # is a steady-state poll (the first one scales every object)
            await scheduled_round(poll)
            _MARKED.append("on")
        return min([await scheduled_round(poll) for _ in range(rounds)])

    async def noop(entry: ObjectLoop, lag: float) -> None:
        return None

    out["scheduler"] = await scheduled(noop)
    ctl = Controller()
    out["poll"] = await scheduled(ctl._poll)

    spec0 = objs[0].spec
    trigger = spec0.triggers[0]

    async def scaler_round() -> float:
        t0 = _start()
        for obj in objs:
            await poll_trigger(obj.scalers[0], 0, trigger, 5.0)
        return _stop(t0, n)

    out["scaler"] = min([await scaler_round() for _ in range(rounds)])
    observations = [await poll_trigger(o.scalers[0], 0, trigger, 5.0) for o in objs[:100]]
    engine = Engine(spec0)
    state = ScalingState.new()

    def engine_round() -> float:
        t0 = _start()
        s = state
        for i in range(n):
            s, _ = engine.decide(s, (observations[i % 100],), 3, 1000.0 + i)
        return _stop(t0, n)

    out["engine"] = _best(rounds, engine_round)

    async def target_round() -> float:
        t0 = _start()
        for obj in objs:
            with call_timeout(5.0):
                await obj.target.get_replicas()
        return _stop(t0, n)

    out["target"] = min([await target_round() for _ in range(rounds)])
    quiet = EventBus()

    def events_off() -> float:
        t0 = _start()
        for _ in range(n):
            quiet.wants(logging.DEBUG)
            quiet.wants(logging.DEBUG)
            quiet.wants(logging.INFO)
        return _stop(t0, n)

    out["events_off"] = _best(rounds, events_off)
    heard = EventBus()
    heard.add_hook(lambda event: None)
    for obj in objs:
        obj.events = heard

    async def with_hook_round() -> float:
        t0 = _start()
        for obj in objs:
            await obj._cycle(None, 0.0, apply=False)
        return _stop(t0, n)

    async def without_hook_round() -> float:
        t0 = _start()
        for obj in objs:
            await obj._cycle(None, 0.0, apply=False)
        return _stop(t0, n)

    on = min([await with_hook_round() for _ in range(rounds)])
    for obj in objs:
        obj.events = quiet
    off = min([await without_hook_round() for _ in range(rounds)])
    out["events_on"] = max(0.0, on - off) + out["events_off"]
    return out


def main() -> None:
    """``--child KIND``: measure in this process and print the figures as one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("controller", "floor", "split", "callgrind"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--old", help="another checkout's src directory to compare with")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args()
    if args.child is None:
        print(run(args.quick, args.old))
        return
    if args.child == "split":
        result = asyncio.run(_split_parts())
    elif args.child == "callgrind":
        _MARKED.append("on")
        result = asyncio.run(_split_parts(n=CALLGRIND_POLLS, rounds=1))
    elif args.child == "floor":
        result = asyncio.run(_floor(args.objects, args.interval, args.warmup, args.window))
    else:
        import anyio

        result = anyio.run(
            _controller, args.objects, args.interval, args.idle, args.warmup, args.window
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
