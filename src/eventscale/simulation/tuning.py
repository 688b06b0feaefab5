"""Search named settings for the cheapest ScaledObject that meets a latency goal.

:func:`tune` runs :func:`~eventscale.simulation.closed_loop.simulate_closed_loop` once
per combination of the settings given (a grid, in the order given), over the same
workload, and ranks the results: the settings that meet the :class:`Goal` first,
cheapest (replica-seconds) first, then the rest, closest to the goal first. The
search holds no randomness of its own: a workload drawn with a seed gives the same
ranking every time. The names a grid takes are listed in docs/simulation.md
("Tuning"): ScaledObject fields (``pollingInterval``, ``cooldownPeriod``,
``minReplicaCount``...), behaviour (``scaleUp.stabilizationWindowSeconds``,
``scaleDown.pods`` as ``VALUE/PERIOD``...) and trigger metadata (``listLength``,
``lagThreshold``, ``triggers[1].value``...).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

import eventscale.simulation._plotting as _plotting
from eventscale.engine import EngineOptions
from eventscale.errors import ConfigError
from eventscale.simulation.closed_loop import Summary, simulate_closed_loop
from eventscale.simulation.queue_model import MetricKind
from eventscale.simulation.workload import Workload
from eventscale.spec import (
    Advanced,
    Behavior,
    PolicyType,
    ScaledObjectSpec,
    ScalingPolicy,
    ScalingRules,
)

__all__ = (
    "MAX_SETTINGS",
    "Candidate",
    "Goal",
    "TuneResult",
    "apply_settings",
    "plot_tradeoff",
    "tune",
)

#: The most combinations one search runs.
MAX_SETTINGS = 10_000

_SPEC_FIELDS: Mapping[str, tuple[str, Callable[[str], Any]]] = {
    "pollingInterval": ("polling_interval", float),
    "cooldownPeriod": ("cooldown_period", float),
    "initialCooldownPeriod": ("initial_cooldown_period", float),
    "minReplicaCount": ("min_replica_count", int),
    "maxReplicaCount": ("max_replica_count", int),
}

_TRIGGER_KEY = re.compile(r"^triggers\[(\d+)\]\.(.+)$")
_BEHAVIOR_KEY = re.compile(r"^(scaleUp|scaleDown)\.(stabilizationWindowSeconds|pods|percent)$")


@attrs.frozen(kw_only=True)
class Goal:
    """Upper bounds, in seconds, on the waits of a run; ``None`` is no bound."""

    p50_wait: float | None = None
    p95_wait: float | None = None
    p99_wait: float | None = None
    max_wait: float | None = None

    def _pairs(self, summary: Summary) -> list[tuple[float, float]]:
        pairs = []
        for bound, value in (
            (self.p50_wait, summary.wait_p50),
            (self.p95_wait, summary.wait_p95),
            (self.p99_wait, summary.wait_p99),
            (self.max_wait, summary.wait_max),
        ):
            if bound is not None:
                pairs.append((bound, value))
        return pairs

    def met(self, summary: Summary) -> bool:
        """Whether ``summary`` is within every bound."""
        return all(value <= bound for bound, value in self._pairs(summary))

    def excess(self, summary: Summary) -> float:
        """How far past the goal: the largest ``value / bound`` (1 or less when met)."""
        ratios = []
        for bound, value in self._pairs(summary):
            if bound > 0:
                ratios.append(value / bound)
            else:
                ratios.append(math.inf if value > 0 else 0.0)
        return max(ratios, default=0.0)

    def describe(self) -> str:
        """The goal as text (``p95 wait <= 30s, max wait <= 300s``)."""
        parts = [
            f"{label} <= {bound:g}s"
            for label, bound in (
                ("p50 wait", self.p50_wait),
                ("p95 wait", self.p95_wait),
                ("p99 wait", self.p99_wait),
                ("max wait", self.max_wait),
            )
            if bound is not None
        ]
        return ", ".join(parts) or "none"


@attrs.frozen(kw_only=True)
class Candidate:
    """One combination of settings, its ScaledObject and what it did."""

    index: int
    settings: Mapping[str, str]
    spec: ScaledObjectSpec
    summary: Summary
    meets_goal: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "settings": dict(self.settings),
            "meetsGoal": self.meets_goal,
            "summary": self.summary.to_dict(),
        }


@attrs.frozen
class TuneResult:
    """The ranked candidates of :func:`tune` (best first) and the settings skipped as invalid."""

    goal: Goal
    candidates: tuple[Candidate, ...]
    invalid: tuple[tuple[Mapping[str, str], str], ...] = ()

    @property
    def best(self) -> Candidate | None:
        """The cheapest candidate that meets the goal, or ``None``."""
        if self.candidates and self.candidates[0].meets_goal:
            return self.candidates[0]
        return None

    def frontier(self) -> tuple[Candidate, ...]:
        """The trade-off curve: candidates no other beats on both cost and p95 wait."""
        ordered = sorted(
            self.candidates,
            key=lambda c: (c.summary.replica_seconds, c.summary.wait_p95, c.index),
        )
        out: list[Candidate] = []
        best_wait = math.inf
        for cand in ordered:
            if cand.summary.wait_p95 < best_wait:
                out.append(cand)
                best_wait = cand.summary.wait_p95
        return tuple(out)

    def to_dict(self, *, top: int | None = None) -> dict[str, Any]:
        """``{"goal": ..., "best": ..., "candidates": [...], "frontier": [...]}``."""
        best = self.best
        chosen = self.candidates if top is None else self.candidates[:top]
        return {
            "goal": {
                "p50Wait": self.goal.p50_wait,
                "p95Wait": self.goal.p95_wait,
                "p99Wait": self.goal.p99_wait,
                "maxWait": self.goal.max_wait,
            },
            "best": best.to_dict() if best is not None else None,
            "candidates": [c.to_dict() for c in chosen],
            "frontier": [c.to_dict() for c in self.frontier()],
            "invalid": [{"settings": dict(s), "error": e} for s, e in self.invalid],
        }


def _policy(text: str, kind: PolicyType, path: str) -> ScalingPolicy:
    value, sep, period = text.partition("/")
    try:
        return ScalingPolicy(type=kind, value=int(value), period_seconds=int(period) if sep else 15)
    except ValueError:
        raise ConfigError(f"{text!r} is not VALUE or VALUE/PERIOD", path=path) from None


def _with_rules(spec: ScaledObjectSpec, direction: str, field: str, text: str) -> ScaledObjectSpec:
    hpa = spec.advanced.horizontal_pod_autoscaler_config
    behavior = hpa.behavior or Behavior()
    attr = "scale_up" if direction == "scaleUp" else "scale_down"
    rules: ScalingRules = getattr(behavior, attr) or ScalingRules()
    path = f"{direction}.{field}"
    if field == "stabilizationWindowSeconds":
        rules = attrs.evolve(rules, stabilization_window_seconds=int(_number(text, path)))
    else:
        kind = PolicyType.PODS if field == "pods" else PolicyType.PERCENT
        rules = attrs.evolve(rules, policies=(_policy(text, kind, path),))
    behavior = attrs.evolve(behavior, **{attr: rules})
    advanced: Advanced = attrs.evolve(
        spec.advanced, horizontal_pod_autoscaler_config=attrs.evolve(hpa, behavior=behavior)
    )
    return attrs.evolve(spec, advanced=advanced)


def _number(text: str, path: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number", path=path) from None
    if not math.isfinite(value):
        raise ConfigError(f"{text!r} is not a finite number", path=path)
    return value


def apply_settings(spec: ScaledObjectSpec, settings: Mapping[str, str]) -> ScaledObjectSpec:
    """``spec`` with ``settings`` (name -> value text) applied; see the module doc for names.

    A bare name that is not a ScaledObject field sets that metadata key on every trigger
    that has it, or on the first trigger if none does.

    :raises ConfigError: an unknown trigger index, a value that is not a number where
        one is needed, or a spec the values make invalid.
    """
    changes: dict[str, Any] = {}
    triggers = list(spec.triggers)
    for name, text in settings.items():
        if name in _SPEC_FIELDS:
            field, convert = _SPEC_FIELDS[name]
            number = _number(text, name)
            changes[field] = convert(number) if convert is int else number
            continue
        if _BEHAVIOR_KEY.match(name):
            continue  # below, once the plain fields are set
        match = _TRIGGER_KEY.match(name)
        if match:
            index, key = int(match[1]), match[2]
            if index >= len(triggers):
                raise ConfigError(f"there is no trigger {index}", path=name)
            targets = [index]
        else:
            key = name
            targets = [i for i, t in enumerate(triggers) if key in t.metadata] or [0]
        for i in targets:
            meta = dict(triggers[i].metadata)
            meta[key] = text
            triggers[i] = attrs.evolve(triggers[i], metadata=meta)
    out: ScaledObjectSpec = attrs.evolve(spec, triggers=tuple(triggers), **changes)
    for name, text in settings.items():
        match = _BEHAVIOR_KEY.match(name)
        if match:
            out = _with_rules(out, match[1], match[2], text)
    return out


def _grid(settings: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    names = list(settings)
    for name in names:
        if not settings[name]:
            raise ConfigError("give at least one value", path=name)
    size = math.prod(len(settings[n]) for n in names)
    if size > MAX_SETTINGS:
        raise ConfigError(
            f"{size} combinations, more than the limit of {MAX_SETTINGS}", path="settings"
        )
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*settings.values())]


_Outcome = tuple[int, dict[str, str], ScaledObjectSpec | None, Summary | None, str | None]


@attrs.frozen
class _Run:
    """One search's fixed inputs; called with ``(index, settings)`` pairs (picklable)."""

    spec: ScaledObjectSpec
    workload: Workload
    kwargs: Mapping[str, Any]

    def __call__(self, combos: Sequence[tuple[int, dict[str, str]]]) -> list[_Outcome]:
        out: list[_Outcome] = []
        for index, combo in combos:
            try:
                candidate_spec = apply_settings(self.spec, combo)
                summary = simulate_closed_loop(
                    candidate_spec, self.workload, keep_timeline=False, **self.kwargs
                ).summary
            except ConfigError as exc:
                out.append((index, combo, None, None, str(exc)))
                continue
            out.append((index, combo, candidate_spec, summary, None))
        return out


def tune(
    spec: ScaledObjectSpec,
    workload: Workload,
    settings: Mapping[str, Sequence[str]],
    goal: Goal,
    *,
    throughput: float,
    startup: float = 0.0,
    failures: Sequence[tuple[float, float]] = (),
    kinds: Sequence[MetricKind | str] | None = None,
    initial_replicas: int = 0,
    options: EngineOptions | None = None,
    workers: int = 1,
) -> TuneResult:
    """Simulate every combination of ``settings`` and rank them against ``goal``.

    ``workers`` > 1 shares the combinations among that many processes; the result is
    the same as with one.

    :raises ConfigError: more than :data:`MAX_SETTINGS` combinations, an unknown
        setting, or a setting every combination makes invalid.
    """
    if workers < 1:
        raise ConfigError("must be >= 1", path="workers")
    combos = list(enumerate(_grid(settings)))
    run = _Run(
        spec,
        workload,
        {
            "throughput": throughput,
            "startup": startup,
            "failures": tuple(failures),
            "kinds": None if kinds is None else tuple(kinds),
            "initial_replicas": initial_replicas,
            "options": options,
        },
    )
    if workers == 1 or len(combos) < 2 * workers:
        outcomes = run(combos)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # every worker gets an equal, interleaved share: one task each, one pickling of
        # the workload each; the ranking below does not depend on the order they end in
        chunks = [combos[k::workers] for k in range(workers)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            outcomes = [o for part in pool.map(run, chunks) for o in part]
    candidates: list[Candidate] = []
    invalid: list[tuple[Mapping[str, str], str]] = []
    for index, combo, candidate_spec, summary, error in sorted(outcomes, key=lambda o: o[0]):
        if candidate_spec is None or summary is None:
            invalid.append((combo, error or ""))
            continue
        candidates.append(
            Candidate(
                index=index,
                settings=combo,
                spec=candidate_spec,
                summary=summary,
                meets_goal=goal.met(summary),
            )
        )
    if not candidates and invalid:
        error = invalid[0][1]
        raise ConfigError(f"no combination is valid; the first: {error}", path="settings")

    def rank(c: Candidate) -> tuple[Any, ...]:
        if c.meets_goal:
            return (0, c.summary.replica_seconds, c.summary.scale_actions, c.index)
        return (1, goal.excess(c.summary), c.summary.replica_seconds, c.index)

    return TuneResult(goal, tuple(sorted(candidates, key=rank)), tuple(invalid))


def plot_tradeoff(result: TuneResult, path: str) -> None:
    """Draw cost against p95 wait for every candidate of ``result`` to ``path``."""
    plt = _plotting.pyplot("tune --plot")
    fig, ax = plt.subplots(figsize=(8, 5))
    met = [c for c in result.candidates if c.meets_goal]
    missed = [c for c in result.candidates if not c.meets_goal]
    for group, colour, label in (
        (met, "tab:green", "meets the goal"),
        (missed, "tab:gray", "misses it"),
    ):
        if group:
            ax.scatter(
                [c.summary.replica_seconds for c in group],
                [c.summary.wait_p95 for c in group],
                s=12,
                color=colour,
                label=label,
            )
    front = result.frontier()
    ax.plot(
        [c.summary.replica_seconds for c in front],
        [c.summary.wait_p95 for c in front],
        color="black",
        linewidth=1,
        label="trade-off curve",
    )
    if result.goal.p95_wait is not None:
        ax.axhline(result.goal.p95_wait, color="tab:red", linestyle="--", label="goal (p95 wait)")
    best = result.best
    if best is not None:
        ax.scatter(
            [best.summary.replica_seconds],
            [best.summary.wait_p95],
            s=80,
            marker="*",
            color="tab:red",
            label="chosen",
            zorder=3,
        )
    ax.set_xlabel("replica-seconds (cost)")
    ax.set_ylabel("p95 wait (s)")
    ax.legend(loc="upper right", fontsize="small")
    _plotting.save(plt, fig, path)
