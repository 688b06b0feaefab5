"""Decisions per second of the engine: three triggers, behavior policies, 300 s of history.

``python -m benchmarks engine`` runs it through the project harness (:func:`run` returns
a Markdown section); ``python benchmarks/bench_engine.py [--quick]`` prints the same.

Each case calls the decision step in a loop in one thread (so on one core) and times it
with :func:`time.process_time`, the CPU time of this process: on a shared machine other
processes' load slows wall time much more than it changes CPU time. Every case is
repeated; the table shows the median, and the slowest and fastest repeat as the spread.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from eventscale.engine import Engine, ScalingState, TriggerObservation, decide
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.spec import (
    Advanced,
    Behavior,
    HPAConfig,
    PolicyType,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    TriggerSpec,
)

__all__ = ("TITLE", "build", "build_simple", "measure", "run")

TITLE = "Engine decisions per second"

#: The issue's goal for the three-trigger object, decisions per second on one core.
GOAL = 100_000

Cycle = list[list[TriggerObservation]]


def _observations(n_triggers: int, steps: int = 64) -> Cycle:
    """``steps`` ticks of one ``AverageValue`` observation per trigger, values 0..399."""
    cycle: Cycle = []
    for step in range(steps):
        tick = []
        for i in range(n_triggers):
            name = f"s{i}-m"
            value = float((step * (i + 3) * 7) % 400)
            tick.append(
                TriggerObservation.success(
                    i,
                    [MetricSpec(name=name, target=5.0 + i)],
                    ScalerReport.single(name, value, is_active=value > 0),
                    name=f"t{i}",
                )
            )
        cycle.append(tick)
    return cycle


def build() -> tuple[ScaledObjectSpec, Cycle, ScalingState]:
    """The benchmark object, a cycle of observations, and a state with 300 s of history.

    Three triggers; scale-up policies Pods 4 and Percent 50 per 60 s (select Max);
    scale-down window 300 s with Percent 10 per 60 s. The state holds 20 recommendations
    15 s apart (the 300 s window, oldest on its edge) and 4 scale events in the last 60 s.
    """
    behavior = Behavior(
        scale_up=ScalingRules(
            policies=(
                ScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=60),
                ScalingPolicy(type=PolicyType.PERCENT, value=50, period_seconds=60),
            ),
            select_policy=SelectPolicy.MAX,
        ),
        scale_down=ScalingRules(
            stabilization_window_seconds=300,
            policies=(ScalingPolicy(type=PolicyType.PERCENT, value=10, period_seconds=60),),
        ),
    )
    spec = ScaledObjectSpec(
        name="bench",
        scale_target_ref=ScaleTargetRef(name="work"),
        triggers=tuple(TriggerSpec(type="redis", name=f"t{i}") for i in range(3)),
        min_replica_count=1,
        max_replica_count=200,
        advanced=Advanced(horizontal_pod_autoscaler_config=HPAConfig(behavior=behavior)),
    )
    recs = tuple((-300.0 + 15.0 * k, 10 + k) for k in range(20))
    events = tuple((-60.0 + 15.0 * k, 1 if k % 2 else -1) for k in range(4))
    state = ScalingState(
        created_at=-1000.0, last_active=-15.0, recommendations=recs, scale_events=events
    )
    return spec, _observations(3), state


def build_simple() -> tuple[ScaledObjectSpec, Cycle, ScalingState]:
    """One trigger, no ``behavior`` (Kubernetes defaults), and an empty history."""
    spec = ScaledObjectSpec(
        name="simple",
        scale_target_ref=ScaleTargetRef(name="work"),
        triggers=(TriggerSpec(type="redis", name="t0"),),
        max_replica_count=200,
    )
    return spec, _observations(1), ScalingState(created_at=-1000.0, last_active=-15.0)


def measure(loop: Callable[[int], None], n: int, repeats: int) -> list[float]:
    """Decisions per CPU second of ``loop(n)``, once per repeat (after one warm-up)."""
    loop(min(n, 2000))
    rates: list[float] = []
    for _ in range(repeats):
        start = time.process_time()
        loop(n)
        rates.append(n / (time.process_time() - start))
    return rates


def _cases() -> list[tuple[str, Callable[[int], None]]]:
    spec, cycle, state = build()
    engine = Engine(spec)
    simple_spec, simple_cycle, simple_state = build_simple()
    simple = Engine(simple_spec)
    k = len(cycle)

    def fixed(count: int) -> None:
        for j in range(count):
            engine.decide(state, cycle[j % k], 20, 0.0)

    def module(count: int) -> None:
        for j in range(count):
            decide(spec, state, cycle[j % k], 20, 0.0)

    def steady(count: int) -> None:
        st, current = state, 20
        for j in range(count):
            st, d = engine.decide(st, cycle[j % k], current, 15.0 * j)
            current = d.replicas

    def details(count: int) -> None:
        for j in range(count):
            _, d = engine.decide(state, cycle[j % k], 20, 0.0)
            for trigger in d.triggers:
                for metric in trigger.metrics:
                    metric.replicas  # noqa: B018 (reading the detail is the point)

    def one(count: int) -> None:
        for j in range(count):
            simple.decide(simple_state, simple_cycle[j % k], 20, 0.0)

    return [
        ("3 triggers, `Engine.decide` (the goal)", fixed),
        ("3 triggers, module `decide()` (engine cache lookup included)", module),
        ("3 triggers, `Engine.decide` and every trigger/metric detail read", details),
        ("3 triggers, steady state (each output state fed back, history evolves)", steady),
        ("1 trigger, no behavior, empty history (contrast)", one),
    ]


def run(quick: bool) -> str:
    """Time every case; return the Markdown section body."""
    n, repeats = (5_000, 3) if quick else (50_000, 7)
    rows: list[str] = []
    headline = 0.0
    for label, loop in _cases():
        rates = measure(loop, n, repeats)
        median = statistics.median(rates)
        if not rows:
            headline = median
        rows.append(
            f"| {label} | {median:,.0f} | {1e6 / median:.2f} | "
            f"{min(rates):,.0f} to {max(rates):,.0f} |"
        )
    verdict = "meets" if headline >= GOAL else "misses"
    return (
        "The decision step (`eventscale.engine`) in a loop, one thread on one core, timed in "
        f"CPU seconds (`time.process_time`): median of {repeats} repeats of {n:,} decisions "
        "after a warm-up; the range is the slowest and fastest repeat.\n\n"
        "The three-trigger object: one `AverageValue` metric per trigger, HPA `behavior` "
        "with scale-up policies Pods 4 and Percent 50 per 60 s (select Max) and a 300 s "
        "scale-down window with a Percent 10 per 60 s policy; the state holds a full 300 s "
        "window of history (20 recommendations 15 s apart, 4 scale events in the last 60 s). "
        "Each decision builds the new `ScalingState` and the `Decision` with its reason "
        "text; the per-trigger and per-metric details (`Decision.triggers`) are built the "
        "first time they are read, so the second row reads all of them to show that "
        "cost too.\n\n"
        "| case | decisions/s (median) | µs per decision | range (decisions/s) |\n"
        "| --- | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        f"Goal (issue 4): {GOAL:,} decisions/s for the three-trigger object; this run "
        f"{verdict} it. Reproduce with `python -m benchmarks engine`."
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv[1:]))
