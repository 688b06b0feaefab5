"""``eventscale demo``: a queue, a bursty producer and a worker pool, scaled from 0 to N and back.

Everything is real except the broker: the in-memory ``memory`` trigger reads a gauge
that the demo's producer fills and its workers drain, the real
:class:`~eventscale.runtime.controller.Controller` reconciles a real
:class:`~eventscale.runtime.scaled_object.ScaledObject` through the engine, and a
:class:`~eventscale.targets.memory.MemoryTarget` records what it was told. Time can
run faster than real time (``--speed``): the controller and the workers share one
scaled clock.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from eventscale.cli._common import EXIT_OK
from eventscale.cli._output import Writable, is_terminal
from eventscale.errors import ConfigError
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

if TYPE_CHECKING:
    from eventscale.runtime.observability import Event
    from eventscale.targets.memory import MemoryTarget

__all__ = (
    "DEMO_SPEC",
    "Story",
    "TextOut",
    "add_parser",
    "arrivals_between",
    "arrivals_per_second",
    "execute",
    "run_demo",
)


#: Where the demo writes (a text stream such as ``sys.stdout``); kept for the old name.
TextOut = Writable

#: Items each worker replica finishes per second.
WORK_RATE = 4.0

DEMO_SPEC = ScaledObjectSpec(
    name="demo-worker",
    scale_target_ref=ScaleTargetRef(name="demo-worker"),
    triggers=[
        TriggerSpec(type="gauge", name="queue", metadata={"name": "demo-queue", "target": "10"})
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
    """The producer's rate at demo time ``t``: quiet, a burst, a tail, then nothing.

    The phases are fractions of ``seconds`` so that a shorter or longer demo tells the
    same story: quiet for the first 8 %, 40 items/s until 40 %, 6 items/s until 50 %.

    The burst outpaces even the largest pool (8 replicas finish 32 items/s), so the
    queue grows until the burst ends and the replicas only rise before the peak and only
    fall after it, however the demo's loop and the polls happen to be timed. (A burst
    the largest pool could just keep up with would leave the queue hovering between two
    replica counts, and the scale-down window and the scale-up tolerance would decide,
    by timing, whether the replicas step down and up again during the burst.)
    """
    burst_start, burst_end, tail_end = _phases(seconds)
    if t < burst_start:
        return 0.0
    if t < burst_end:
        return 40.0
    if t < tail_end:
        return 6.0
    return 0.0


def _phases(seconds: float) -> tuple[float, float, float]:
    """When the burst starts, when it ends and when the tail ends."""
    return 0.08 * seconds, 0.4 * seconds, 0.5 * seconds


def arrivals_between(t0: float, t1: float, seconds: float) -> float:
    """The items the producer sends from demo time ``t0`` to ``t1``: the rate of
    :func:`arrivals_per_second` summed over each phase the interval covers, so a late
    step of the demo's loop (a busy machine) counts the same items as many short ones."""
    total, start = 0.0, t0
    for edge in (*_phases(seconds), math.inf):
        if start >= t1:
            break
        if edge <= start:
            continue
        end = min(edge, t1)
        total += arrivals_per_second(start, seconds) * (end - start)
        start = end
    return total


@attrs.frozen
class Story:
    """What happened in a demo run, read back from the target's history (demo seconds)."""

    activated_at: float | None
    peak: int
    peak_at: float | None
    drained_at: float | None
    zero_at: float | None
    counts: tuple[int, ...]
    #: the last poll that saw items: the cooldown counts from it (KEDA's lastActiveTime)
    last_active_at: float | None = None

    def lines(self, cooldown: float) -> list[str]:
        """The story in words, one line per chapter."""
        if self.activated_at is None:
            return ["the queue never woke the workers up"]
        out = [
            f"activated from 0 at {self.activated_at:.0f}s, when the first items arrived",
            f"scaled out to a peak of {self.peak} replicas at {self.peak_at:.0f}s",
        ]
        if self.drained_at is not None:
            out.append(f"the queue was empty again at {self.drained_at:.0f}s")
        if self.zero_at is not None:
            seen = (
                ""
                if self.last_active_at is None
                else f" (the last poll that saw items was at {self.last_active_at:.0f}s)"
            )
            out.append(
                f"back to 0 replicas at {self.zero_at:.0f}s, once the queue had been idle "
                f"for the {cooldown:g}s cooldown{seen}"
            )
        else:
            out.append("still running replicas when the demo ended (try a longer --seconds)")
        out.append("replica changes: " + " -> ".join(str(c) for c in self.counts))
        return out


def _story(
    target: MemoryTarget, drained_at: float | None, last_active_at: float | None = None
) -> Story:
    history = list(target.history)
    activated = next((c.at for c in history if c.old == 0 and c.new > 0), None)
    peak = max((c.new for c in history), default=0)
    peak_at = next((c.at for c in history if c.new == peak), None) if peak else None
    zero_at = None
    if history and history[-1].new == 0 and activated is not None:
        zero_at = history[-1].at
    counts = [target.initial]
    for change in history:
        if change.new != counts[-1]:
            counts.append(change.new)
    return Story(activated, peak, peak_at, drained_at, zero_at, tuple(counts), last_active_at)


async def run_demo(
    out: Writable, *, seconds: float = 60.0, speed: float = 1.0, live: bool = False
) -> Story:
    """Run the demo story for ``seconds`` of demo time; return what happened.

    ``speed`` runs the demo clock that many times faster than real time (the
    controller, the producer and the workers all use it). ``live`` redraws one status
    line and keeps a line for each change of replicas (for a terminal); otherwise one
    line per demo second is printed.
    """
    # Imported here: building the command line's parser imports this module.
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.observability import EventKind
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.scalers.gauge import GaugeRegistry, GaugeScaler
    from eventscale.targets.memory import MemoryTarget

    origin: list[float] = []  # set when the story starts: demo time 0 until then

    def clock() -> float:
        return (time.monotonic() - origin[0]) * speed if origin else 0.0

    async def sleep(delay: float) -> None:
        await anyio.sleep(max(delay, 0.0) / speed)

    queue = GaugeRegistry()
    queue.set("demo-queue", 0)
    target = MemoryTarget(replicas=0, name="demo-worker", clock=clock)
    scaler = GaugeScaler("demo-queue", target=10, registry=queue, trigger_name="queue")
    obj = ScaledObject(DEMO_SPEC, target=target, scalers=[scaler], clock=clock)
    # Every scale action gets a line of its own with its reason, and every demo second
    # a line with the queue and the latest decision.
    last_reason = ["waiting for the first poll"]
    last_active: list[float] = []  # the time of the last poll that saw items
    scales: list[tuple[float, int, str]] = []  # (demo time, replicas, reason)

    def on_event(event: Event) -> None:
        if event.kind is EventKind.DECISION:
            if event.reason:
                last_reason[0] = event.reason
            if event.active:
                last_active[:] = [event.time]
        elif event.kind is EventKind.SCALE and event.to_replicas is not None:
            scales.append((event.time, event.to_replicas, event.reason or ""))

    out.write(
        "eventscale demo: a queue (target 10 items per replica), a bursty producer, workers "
        f"that\nfinish {WORK_RATE:g} items/s each; min 0, max 8 replicas, cooldown "
        f"{DEMO_SPEC.cooldown_period} s, polling every {DEMO_SPEC.polling_interval} s.\n\n"
    )
    out.write(f"{'time':>5}  {'queue':>6}  {'replicas':>8}  reason\n")
    drained_at: float | None = None
    backlog = 0.0
    last = 0.0  # the demo time the queue has been brought to
    workers = target.current

    def advance(to: float) -> None:
        # Items arrive at the producer's rate and each replica works through WORK_RATE
        # items per second.
        nonlocal backlog, last, drained_at
        backlog += arrivals_between(last, to, seconds)
        backlog = max(0.0, backlog - workers * WORK_RATE * (to - last))
        last = to
        if backlog < 0.5 and drained_at is None and workers > 0:
            drained_at = to
        elif backlog >= 0.5:
            drained_at = None

    def write(line: str, keep: bool) -> None:
        # On a terminal a second's line is a status line, redrawn until the next one.
        if not live:
            out.write(line + "\n")
        else:
            out.write("\r\x1b[K" + line + ("\n" if keep else ""))

    async with Controller(clock=clock, sleep=sleep) as ctl:
        ctl.events.add_hook(on_event)
        ctl.add(obj)
        origin.append(time.monotonic())  # the story starts: demo time 0
        next_print = 0.0
        while True:
            now = min(clock(), seconds)
            # The scale actions and the whole seconds since the last step, in time
            # order: a late step (a busy machine) still gives every second its line,
            # with the queue as it was then, and each action its own time.
            marks: list[tuple[float, int, str | None]] = [
                (min(max(at, last), now), count, why) for at, count, why in scales
            ]
            scales.clear()
            while next_print <= now:
                marks.append((next_print, -1, None))
                next_print += 1.0
            marks.sort(key=lambda mark: (mark[0], mark[2] is None))
            for at, count, why in marks:
                advance(at)
                if why is None:
                    line = f"{at:5.0f}  {round(backlog):6d}  {workers:8d}  {last_reason[0]}"
                    write(line, keep=False)
                else:
                    workers = count
                    write(f"{at:5.0f}  {round(backlog):6d}  {count:8d}  {why}", keep=True)
            if marks:
                out.flush()
            advance(now)
            queue.set("demo-queue", round(backlog))
            if now >= seconds:
                break
            await sleep(0.1)
    story = _story(target, drained_at, last_active[0] if last_active else None)
    out.write("\n" + "\n".join(story.lines(DEMO_SPEC.cooldown_period)) + "\n")
    out.flush()
    return story


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to the ``eventscale`` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="a self-contained walk from 0 replicas to N and back to 0",
        description="An in-memory queue with a bursty producer and a worker pool on a memory "
        "target: activation from 0, scale out, cooldown and the return to 0. No server needed.",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of the story in demo time (default 60)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="run this many times faster than real time (default 1)",
    )
    p.add_argument(
        "--plain", action="store_true", help="one line per second instead of a live view"
    )
    p.set_defaults(execute=execute)
    return p


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale demo`` for parsed ``args``; 0 when the story ends or is interrupted."""
    if not args.speed > 0:
        raise ConfigError("must be > 0", path="--speed")
    if not args.seconds > 0:
        raise ConfigError("must be > 0", path="--seconds")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_run, args, out)
    return EXIT_OK


async def _run(args: argparse.Namespace, out: Writable) -> None:
    await run_demo(
        out, seconds=args.seconds, speed=args.speed, live=is_terminal(out) and not args.plain
    )
