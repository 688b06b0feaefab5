"""``eventscale demo``: a queue, a bursty producer and a worker pool, scaled from 0 to N and back.

Everything is real except the broker: the in-memory ``memory`` trigger reads a gauge
that the demo's producer fills and its workers drain, the real
:class:`~eventscale.controller.Controller` reconciles a real
:class:`~eventscale.runtime.ScaledObject` through the engine, and a
:class:`~eventscale.targets.memory.MemoryTarget` records what it was told. Time can
run faster than real time (``--speed``): the controller and the workers share one
scaled clock.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

from eventscale.controller import Controller
from eventscale.observability import Event, EventKind
from eventscale.runtime import ScaledObject
from eventscale.scalers.memory import GaugeRegistry, MemoryScaler
from eventscale.spec import (
    Advanced,
    Behavior,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingPolicy,
    ScalingRules,
    TriggerSpec,
)
from eventscale.targets.memory import MemoryTarget

__all__ = ("DEMO_SPEC", "arrivals_per_second", "run_demo")


class TextOut(Protocol):
    """Where the demo writes (a text stream such as ``sys.stdout``)."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""
        ...

    def flush(self) -> None:
        """Flush buffered output."""
        ...


#: Items each worker replica finishes per second.
WORK_RATE = 4.0

DEMO_SPEC = ScaledObjectSpec(
    name="demo-worker",
    scale_target_ref=ScaleTargetRef(name="demo-worker"),
    triggers=[
        TriggerSpec(type="memory", name="queue", metadata={"name": "demo-queue", "target": "10"})
    ],
    polling_interval=1,
    cooldown_period=10,
    min_replica_count=0,
    max_replica_count=8,
    advanced=Advanced(
        horizontal_pod_autoscaler_config=HPAConfig(
            behavior=Behavior(
                scale_up=ScalingRules(
                    policies=(ScalingPolicy(type=PolicyType.PODS, value=2, period_seconds=1),),
                ),
                scale_down=ScalingRules(
                    stabilization_window_seconds=5,
                    policies=(ScalingPolicy(type=PolicyType.PERCENT, value=50, period_seconds=2),),
                ),
            )
        )
    ),
)


def arrivals_per_second(t: float, seconds: float) -> float:
    """The producer's rate at demo time ``t``: quiet, a burst, a tail, then nothing."""
    burst_start, burst_end, tail_end = 0.05 * seconds, 0.3 * seconds, 0.4 * seconds
    if t < burst_start:
        return 0.0
    if t < burst_end:
        return 30.0
    if t < tail_end:
        return 6.0
    return 0.0


async def run_demo(
    out: TextOut, *, seconds: float = 60.0, speed: float = 1.0, live: bool = False
) -> MemoryTarget:
    """Run the demo story for ``seconds`` of demo time, printing one line per second."""
    start = time.monotonic()

    def clock() -> float:
        return (time.monotonic() - start) * speed

    async def sleep(delay: float) -> None:
        await anyio.sleep(max(delay, 0.0) / speed)

    queue = GaugeRegistry()
    queue.set("demo-queue", 0)
    target = MemoryTarget(replicas=0)
    scaler = MemoryScaler("demo-queue", target=10, registry=queue, trigger="queue")
    obj = ScaledObject(DEMO_SPEC, target=target, scalers=[scaler], clock=clock)
    last_reason = ["waiting for the first poll"]

    def on_event(event: Event) -> None:
        if event.kind is EventKind.DECISION and event.reason:
            last_reason[0] = event.reason

    out.write(
        "eventscale demo: a queue (target 10 items per replica), a bursty producer, workers that\n"
        f"finish {WORK_RATE:g} items/s each; min 0, max 8 replicas, cooldown 10 s, "
        "polling every 1 s.\n\n"
    )
    header = f"{'time':>5}  {'queue':>6}  {'replicas':>8}  reason\n"
    out.write(header)
    async with Controller(clock=clock, sleep=sleep) as ctl:
        ctl.events.add_hook(on_event)
        ctl.add(obj)
        step = 0.1
        t = 0.0
        next_print = 0.0
        backlog = 0.0
        while t <= seconds:
            backlog += arrivals_per_second(t, seconds) * step
            backlog = max(0.0, backlog - target.current * WORK_RATE * step)
            queue.set("demo-queue", round(backlog))
            if t >= next_print:
                line = f"{t:5.0f}  {round(backlog):6d}  {target.current:8d}  {last_reason[0]}"
                out.write(("\r\x1b[K" + line) if live else (line + "\n"))
                if live and int(t) % 5 == 0:
                    out.write("\n")
                out.flush()
                next_print += 1.0
            await sleep(step)
            t += step
    story = " -> ".join(_dedupe([target.initial, *target.requested_counts()]))
    out.write(f"\n\nreplica changes: {story}\n")
    return target


def _dedupe(counts: list[int]) -> list[str]:
    out: list[str] = []
    for count in counts:
        if not out or out[-1] != str(count):
            out.append(str(count))
    return out
