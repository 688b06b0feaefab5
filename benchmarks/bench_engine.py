"""Decisions per second of the engine: three triggers, behavior policies, 300 s of history.

Run ``python benchmarks/bench_engine.py``; :func:`run` returns the figures as a dict.
"""

from __future__ import annotations

import time
from typing import Any

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

__all__ = ("build", "run")


def build() -> tuple[ScaledObjectSpec, list[list[TriggerObservation]], ScalingState]:
    """The benchmark object, a cycle of observations, and a state with 300 s of history."""
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
    cycle: list[list[TriggerObservation]] = []
    for step in range(64):
        tick = []
        for i in range(3):
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
    # 300 s of history at a 15 s tick: 20 distinct recommendations, some scale events
    recs = tuple((-300.0 + 15.0 * k, 10 + k) for k in range(20))
    events = tuple((-60.0 + 15.0 * k, 1 if k % 2 else -1) for k in range(4))
    state = ScalingState(
        created_at=-1000.0, last_active=-15.0, recommendations=recs, scale_events=events
    )
    return spec, cycle, state


def _measure(n: int, step: Any) -> float:
    start = time.perf_counter()
    step(n)
    return n / (time.perf_counter() - start)


def run(n: int = 50_000) -> dict[str, Any]:
    """Measure decisions per second (best of three runs of ``n`` decisions each).

    ``engine_decide``: :meth:`Engine.decide` on a compiled engine (what a controller
    holding one engine per object does); ``decide``: the module function (engine cache
    lookup included); ``steady_state``: :meth:`Engine.decide` fed its own output
    state, so the history evolves as in a real run.
    """
    spec, cycle, state = build()
    engine = Engine(spec)
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

    results: dict[str, Any] = {"decisions": n, "triggers": 3}
    for label, fn in (("engine_decide", fixed), ("decide", module), ("steady_state", steady)):
        fn(min(n, 2000))  # warm up
        results[f"{label}_per_second"] = round(max(_measure(n, fn) for _ in range(3)))
    results["engine_decide_us"] = round(1e6 / results["engine_decide_per_second"], 2)
    return results


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
