"""One decision step over the whole replica range: activation, scaling, cooldown, fallback, pause.

:func:`decide` is the engine. It reads nothing but its arguments (no clock, no I/O, no
randomness), so the same inputs always give the same :class:`~eventscale.engine.Decision`.
:class:`Engine` is the same step with the spec compiled once (formula parsed, behavior
resolved, annotations read); :func:`decide` keeps a small cache of engines per spec.

The order of the rules (docs/engine.md explains each one):

1. ``paused-replicas`` annotation: that count, nothing else. ``paused``: hold.
2. Read every trigger: its metric proposals, activity, or its error. Count consecutive
   failures; a trigger whose count exceeds ``fallback.failureThreshold`` is in fallback.
3. Fallback engaged: ``max(fallback replicas, healthy proposals)`` within [min, max].
4. Active (a trigger active, forced, or all triggers cpu/memory): below ``max(min, 1)``
   go straight to what the metrics ask (at least ``max(min, 1)``, within the scale-up
   policy); otherwise HPA normalization (stabilization, policies, bounds). An
   erroring trigger blocks scale-down.
5. Inactive with an erroring trigger and no fallback: hold (scale-up still allowed).
6. Inactive: normal scaling down to ``max(min, 1)`` while the cooldown runs; after it,
   straight to ``idleReplicaCount`` (or 0 when ``min`` is 0).
7. ``paused-scale-in`` / ``paused-scale-out`` veto the direction they name.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from eventscale.engine.behavior import (
    Limit,
    ResolvedRules,
    behavior_step,
    legacy_scale_up_limit,
    legacy_step,
    resolve_behavior,
    scale_up_limit,
)
from eventscale.engine.hpa import (
    REPLICA_CAP,
    Tolerance,
    metric_replicas,
    value_replicas,
)
from eventscale.engine.model import (
    DEFAULT_OPTIONS,
    Combiner,
    Decision,
    EngineOptions,
    PendingDetail,
    Rule,
    TriggerDetail,
    TriggerObservation,
    TriggerStatus,
)
from eventscale.engine.modifiers import CompiledFormula, FormulaError, compile_formula
from eventscale.engine.state import ScalingState
from eventscale.metrics import MetricSpec, MetricType
from eventscale.spec import Behavior, Fallback, FallbackBehavior, ScaledObjectSpec

__all__ = ("Engine", "EngineWarning", "check_spec", "decide", "fallback_replicas")

# Reading an enum member through its class (``Limit.NONE``) goes through a slow
# metaclass lookup on CPython 3.11; the per-decision code uses module-level names.
_VALUE: Final[MetricType] = MetricType.VALUE
_NO_LIMIT: Final[Limit] = Limit.NONE
_UP_LIMIT: Final[Limit] = Limit.SCALE_UP_LIMIT
_DOWN_LIMIT: Final[Limit] = Limit.SCALE_DOWN_LIMIT
_TOO_MANY: Final[Limit] = Limit.TOO_MANY


def fallback_replicas(fallback: Fallback, current: int) -> int:
    """The replica count fallback asks for, by its behavior (KEDA's table).

    ``static`` -> ``fallback.replicas``; ``currentReplicas`` -> ``current``;
    ``currentReplicasIfHigher`` -> ``max(current, replicas)``;
    ``currentReplicasIfLower`` -> ``min(current, replicas)``; ``scalingModifiers`` ->
    ``fallback.replicas`` (used when the formula itself gives nothing).
    """
    behavior = fallback.behavior
    if behavior is FallbackBehavior.CURRENT_REPLICAS:
        return current
    if behavior is FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER:
        return max(current, fallback.replicas)
    if behavior is FallbackBehavior.CURRENT_REPLICAS_IF_LOWER:
        return min(current, fallback.replicas)
    return fallback.replicas


@attrs.frozen
class EngineWarning:
    """A configuration that is valid but probably not what was meant."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_spec(
    spec: ScaledObjectSpec,
    metric_specs: Mapping[int, Sequence[MetricSpec]] | None = None,
    options: EngineOptions | None = None,
) -> tuple[EngineWarning, ...]:
    """Warnings the engine can see from the spec (and, if given, the triggers' metric specs).

    * a metric whose activation target is at or above its target (activation wins:
      the object goes to zero while the HPA formula would want replicas);
    * the same for ``scalingModifiers`` (``activationTarget >= target``);
    * ``idleReplicaCount >= minReplicaCount`` and ``minReplicaCount > maxReplicaCount``
      (rejected by :class:`ScaledObjectSpec` already; checked again for specs built
      with ``attrs.evolve`` and friends).

    :raises ConfigError: the formula does not compile (as :class:`Engine` would).
    """
    Engine(spec, options)
    warnings: list[EngineWarning] = []
    for index, specs in sorted((metric_specs or {}).items()):
        for ms in specs:
            if ms.activation_target >= ms.target > 0:
                warnings.append(
                    EngineWarning(
                        f"spec.triggers[{index}]",
                        f"metric {ms.name!r}: activation target {ms.activation_target:g} >= target "
                        f"{ms.target:g}; the object is inactive (and may go to zero) while the "
                        f"target alone would ask for replicas",
                    )
                )
    mods = spec.advanced.scaling_modifiers
    if mods is not None and mods.activation_target >= mods.target:
        warnings.append(
            EngineWarning(
                "spec.advanced.scalingModifiers.activationTarget",
                f"activationTarget {mods.activation_target:g} >= target {mods.target:g}",
            )
        )
    idle = spec.idle_replica_count
    if idle is not None and idle >= spec.min_replica_count:
        warnings.append(
            EngineWarning(
                "spec.idleReplicaCount",
                f"idleReplicaCount {idle} >= minReplicaCount {spec.min_replica_count}; "
                "it is ignored",
            )
        )
    if spec.min_replica_count > spec.max_replica_count:
        warnings.append(
            EngineWarning(
                "spec.minReplicaCount",
                f"minReplicaCount {spec.min_replica_count} > maxReplicaCount "
                f"{spec.max_replica_count}; maxReplicaCount wins",
            )
        )
    return tuple(warnings)


@attrs.frozen
class _Trigger:
    index: int
    name: str
    variable: str | None
    type: str


@attrs.frozen
class _Composite:
    formula: CompiledFormula | None
    combiner: Combiner | None
    target: float
    activation_target: float
    metric_type: MetricType


def _resolved_rules(
    behavior: Behavior | None, tolerance: float, scale_down_window: float
) -> tuple[ResolvedRules, ResolvedRules]:
    """:func:`resolve_behavior`, shared between engines of equal behaviors.

    A controller with thousands of objects has thousands of engines, nearly all with
    the same (often absent) ``behavior``: they share one pair of frozen rules instead
    of each holding its own copies.
    """
    try:
        return _resolved_rules_cached(behavior, tolerance, scale_down_window)
    except TypeError:  # an unhashable behavior (built by hand with lists)
        return resolve_behavior(behavior, tolerance=tolerance, scale_down_window=scale_down_window)


@functools.lru_cache(maxsize=256)
def _resolved_rules_cached(
    behavior: Behavior | None, tolerance: float, scale_down_window: float
) -> tuple[ResolvedRules, ResolvedRules]:
    return resolve_behavior(behavior, tolerance=tolerance, scale_down_window=scale_down_window)


@functools.lru_cache(maxsize=256)
def _tolerance(scale_up: float, scale_down: float) -> Tolerance:
    return Tolerance(scale_up, scale_down)


class Engine:
    """The decision step for one spec, with everything that can be prepared done once.

    :raises ConfigError: the scalingModifiers formula does not compile, or an annotation
        (``paused-replicas``) is malformed.
    """

    def __init__(self, spec: ScaledObjectSpec, options: EngineOptions | None = None) -> None:
        self.spec = spec
        self.options = options = options if options is not None else DEFAULT_OPTIONS
        self._triggers = tuple(
            _Trigger(i, t.name or f"{t.type}#{i}", t.name, t.type)
            for i, t in enumerate(spec.triggers)
        )
        # (index, name, formula variable) per trigger: the per-decision loop unpacks these
        self._trigger_rows = tuple((t.index, t.name, t.variable) for t in self._triggers)
        resource = options.resource_trigger_types
        self._all_resource = all(t.type in resource for t in spec.triggers)
        # cpu/memory triggers report the HPA resource calculator's proposal as their
        # value (eventscale.engine.resources, docs/scalers/cpu-memory.md)
        self._resource_rows = frozenset(
            i for i, t in enumerate(spec.triggers) if t.type in resource
        )
        self._min = min(spec.min_replica_count, spec.max_replica_count)
        self._max = spec.max_replica_count
        idle = spec.idle_replica_count
        self._idle = idle if idle is not None and idle < self._min else None
        self._floor = max(self._min, 1)
        self._legacy = options.legacy_hpa and spec.behavior is None
        self._up, self._down = _resolved_rules(
            spec.behavior, options.tolerance, options.downscale_stabilization
        )
        if self._legacy:
            self._tolerance = _tolerance(options.tolerance, options.tolerance)
            self._rec_horizon = options.downscale_stabilization
            self._event_horizon = 0.0
        else:
            self._tolerance = _tolerance(self._up.tolerance, self._down.tolerance)
            self._rec_horizon = max(
                self._up.stabilization_window_seconds, self._down.stabilization_window_seconds
            )
            self._event_horizon = float(max(self._up.longest_period, self._down.longest_period))
        # the tolerance band for AverageValue ratios (Tolerance.within, precomputed)
        self._band_low = 1.0 - self._tolerance.scale_down
        self._band_high = 1.0 + self._tolerance.scale_up
        # the windows as the reasons print them (formatting a float is not free)
        if self._legacy:
            self._down_window_text = f"{self._rec_horizon:g}s"
            self._up_window_text = f"{0.0:g}s"
        else:
            self._down_window_text = f"{self._down.stabilization_window_seconds:g}s"
            self._up_window_text = f"{self._up.stabilization_window_seconds:g}s"
        self._paused_replicas = spec.paused_replicas
        self._paused = spec.paused
        self._paused_in = spec.paused_scale_in
        self._paused_out = spec.paused_scale_out
        self._forced = spec.force_activation
        self._fallback = spec.fallback
        self._composite: _Composite | None = None
        mods = spec.advanced.scaling_modifiers
        if options.combiner is not None:
            c = options.combiner
            self._composite = _Composite(None, c, c.target, c.activation_target, c.metric_type)
        elif mods is not None:
            names = [t.variable for t in self._triggers if t.variable and t.type not in resource]
            formula = compile_formula(mods.formula, names)
            self._composite = _Composite(
                formula, None, mods.target, mods.activation_target, mods.metric_type
            )

    # ------------------------------------------------------------------ helpers

    def _normal(
        self,
        raw: int,
        current: int,
        lo: int,
        recs: Sequence[tuple[float, int]],
        events: Sequence[tuple[float, int]],
        now: float,
    ) -> tuple[int, Rule, str]:
        hi = self._max
        if current > hi:
            return hi, Rule.MAX_REPLICAS, f"current {current} is above maxReplicaCount {hi}"
        if current < lo:
            return lo, Rule.MIN_REPLICAS, f"current {current} is below the floor {lo}"
        if self._legacy:
            desired, stabilized, limit, up_bound, down_bound, _ = legacy_step(
                raw, current, lo, hi, recs, now, self._rec_horizon
            )
        else:
            desired, stabilized, limit, up_bound, down_bound, _ = behavior_step(
                raw, current, lo, hi, self._up, self._down, recs, events, now
            )
        if limit is not _NO_LIMIT:
            if limit is _UP_LIMIT:
                return (
                    desired,
                    Rule.SCALE_UP_LIMIT,
                    (f"metrics ask for {stabilized}; scale-up policy allows {desired} now"),
                )
            if limit is _DOWN_LIMIT:
                return (
                    desired,
                    Rule.SCALE_DOWN_LIMIT,
                    (f"metrics ask for {stabilized}; scale-down policy allows {desired} now"),
                )
            if limit is _TOO_MANY:
                return (
                    desired,
                    Rule.MAX_REPLICAS,
                    (f"metrics ask for {stabilized}; capped at maxReplicaCount {hi}"),
                )
            # Limit.TOO_FEW
            return desired, Rule.MIN_REPLICAS, f"metrics ask for {stabilized}; floor is {lo}"
        if stabilized > raw and desired > raw:
            return (
                desired,
                Rule.STABILIZED_DOWN,
                (
                    f"scale down held by stabilization window: highest recommendation in the last "
                    f"{self._down_window_text} is {down_bound}"
                ),
            )
        if stabilized < raw and desired < raw:
            return (
                desired,
                Rule.STABILIZED_UP,
                (
                    f"scale up held by stabilization window: lowest recommendation in the last "
                    f"{self._up_window_text} is {up_bound}"
                ),
            )
        if desired == current:
            return desired, Rule.METRICS, f"metrics ask for {raw}; keeping {current}"
        return desired, Rule.METRICS, f"metrics ask for {raw}; scaling {current} -> {desired}"

    def _up_limit(self, current: int, events: Sequence[tuple[float, int]], now: float) -> int:
        if self._legacy:
            return legacy_scale_up_limit(current)
        return scale_up_limit(current, self._up, events, now)

    def _composite_value(self, values: Mapping[str, float | None]) -> float | None:
        comp = self._composite
        assert comp is not None
        if comp.formula is not None:
            return comp.formula.evaluate(values)
        assert comp.combiner is not None
        try:
            result = comp.combiner.function(values)
        except FormulaError:
            raise
        except Exception as exc:  # a user callable: report it as an error of the composite
            raise FormulaError(f"combiner raised {type(exc).__name__}: {exc}") from exc
        if result is None:
            return None
        return float(result)

    # ------------------------------------------------------------------ the step

    def decide(
        self,
        state: ScalingState,
        observations: Iterable[TriggerObservation],
        current_replicas: int,
        now: float,
        *,
        ready_replicas: int | None = None,
    ) -> tuple[ScalingState, Decision]:
        """One decision. See :func:`decide`."""
        current = current_replicas if current_replicas > 0 else 0
        fresh = state.created_at is None
        created_at = now if state.created_at is None else state.created_at

        # 1. pause ------------------------------------------------------------------
        if self._paused_replicas is not None or self._paused:
            held = self._paused_replicas if self._paused_replicas is not None else current
            rule = Rule.PAUSED_REPLICAS if self._paused_replicas is not None else Rule.PAUSED
            reason = (
                f"paused at {held} replicas by the paused-replicas annotation"
                if rule is Rule.PAUSED_REPLICAS
                else f"paused by annotation; holding {held} replicas"
            )
            new_state = state if not fresh else attrs.evolve(state, created_at=created_at)
            return new_state, Decision(
                replicas=held,
                current_replicas=current,
                is_active=False,
                rule=rule,
                reason=reason,
                paused=True,
            )

        # 2. read the triggers ----------------------------------------------------------
        # (the hot path; docs/engine.md, "Performance", says what is done here and why)
        by_index: dict[int, TriggerObservation] = {}
        for item in observations:  # (a plain loop: cheaper than a comprehension here)
            by_index[item.trigger_index] = item
        fallback = self._fallback
        tolerance = self._tolerance
        details: list[TriggerDetail | PendingDetail] = []
        failures: list[tuple[int, int]] = []
        raw: int | None = None
        raw_trigger: str | None = None
        any_active = False
        unresolved: list[tuple[str, str]] = []
        fallen: list[str] = []
        variables: dict[str, float | None] = {}
        composite = self._composite
        band_low = self._band_low
        band_high = self._band_high
        resource_rows = self._resource_rows
        for index, name, variable in self._trigger_rows:
            obs = by_index.get(index)
            if obs is None:
                error: str | None = "no observation for this trigger"
            elif obs.report is None:
                error = "no observation for this trigger" if obs.error is None else str(obs.error)
            else:
                report = obs.report
                error = None
                # the details are recorded as plain tuples; Decision builds the
                # TriggerDetail/MetricDetail objects only if they are read
                metrics: tuple[tuple[str, float, float, MetricType, int], ...] = ()
                proposal: int | None = None
                total = 0.0
                if obs.specs:
                    reported = report.values
                    for ms in obs.specs:
                        metric = ms.name
                        for item_value in reported:  # ScalerReport.value_of, inlined
                            if item_value.name == metric:
                                value = item_value.value
                                break
                        else:
                            error = f"metric {metric!r} missing from the scaler's report"
                            break
                        total += value
                        metric_target = ms.target
                        metric_type = ms.metric_type
                        if index in resource_rows:  # the value is the proposal
                            n = min(REPLICA_CAP, max(0, int(value)))
                        elif metric_type is _VALUE:
                            n = value_replicas(
                                value, metric_target, current, ready_replicas, tolerance
                            )
                        else:  # average_value_replicas(), inlined (the common metric type)
                            usage = round(value * 1000)
                            milli_target = round(metric_target * 1000)
                            if milli_target <= 0:
                                n = REPLICA_CAP if usage > 0 else 0
                            elif (
                                current > 0
                                and band_low <= usage / (milli_target * current) <= band_high
                            ):
                                n = current
                            else:
                                n = -(-usage // milli_target)
                                if n > REPLICA_CAP:
                                    n = REPLICA_CAP
                        metrics += ((metric, value, metric_target, metric_type, n),)
                        if proposal is None or n > proposal:
                            proposal = n
                else:
                    total = sum(v.value for v in report.values)
                if error is None:
                    active = report.is_active
                    if composite is None:
                        any_active = any_active or active
                        if proposal is not None and (raw is None or proposal > raw):
                            raw = proposal
                            raw_trigger = name
                    elif variable is not None:
                        variables[variable] = total
                    details.append((index, name, active, proposal, metrics))
                    continue
            # the trigger failed (or reported no value for one of its metrics)
            assert error is not None
            count = state.failure_count(index) + 1
            failures.append((index, count))
            in_fallback = fallback is not None and count > fallback.failure_threshold
            if in_fallback:
                fallen.append(name)
                if variable is not None:
                    variables[variable] = None
            else:
                unresolved.append((name, error))
            details.append(
                TriggerDetail(
                    index=index,
                    name=name,
                    status=TriggerStatus.FALLBACK if in_fallback else TriggerStatus.ERROR,
                    is_active=in_fallback,
                    replicas=None,
                    error=error,
                    failures=count,
                )
            )

        # 3. fallback and the composite ---------------------------------------------------
        fb_replicas: int | None = None
        if (
            fallen
            and fallback is not None
            and (composite is None or fallback.behavior is not FallbackBehavior.SCALING_MODIFIERS)
        ):
            fb_replicas = fallback_replicas(fallback, current)
        if composite is not None and fb_replicas is None:
            raw = None
            raw_trigger = "composite"
            if unresolved:
                pass  # the composite is unknown while a trigger has no value
            else:
                try:
                    comp_value = self._composite_value(variables)
                except FormulaError as exc:
                    if fallback is not None and fallen:
                        # a trigger in fallback is nil and the formula could not route around it
                        fb_replicas = fallback.replicas
                    else:
                        unresolved.append(("composite", str(exc)))
                else:
                    if comp_value is None:
                        if fallback is not None and fallen:
                            fb_replicas = fallback.replicas
                        else:
                            unresolved.append(("composite", "the formula gave nil"))
                    else:
                        raw = metric_replicas(
                            composite.metric_type,
                            max(comp_value, 0.0),
                            composite.target,
                            current,
                            ready=ready_replicas,
                            tolerance=tolerance,
                        )
                        any_active = comp_value > composite.activation_target
        forced = self._forced
        active = (
            any_active
            or forced
            or bool(fallen and fb_replicas is not None)
            or (self._all_resource and not unresolved and not fallen)
        )

        # 4. the lifecycle --------------------------------------------------------------
        recs = state.recommendations
        if fresh and current > 0:
            recs = ((now, current),)
        events = state.scale_events
        lo_min = self._min
        hi = self._max
        floor = self._floor
        idle = self._idle
        last_active = now if active else state.last_active
        decided_by = raw_trigger
        if fb_replicas is not None:
            target = fb_replicas if raw is None else max(fb_replicas, raw)
            desired = min(max(target, lo_min), hi)
            rule = Rule.FALLBACK
            decided_by = fallen[0]
            assert fallback is not None
            reason = (
                f"fallback: {', '.join(fallen)} failed more than {fallback.failure_threshold} "
                f"times in a row; {fallback.behavior.value} fallback gives {fb_replicas}, "
                f"scaling to {desired}"
            )
        elif active:
            if raw is None:
                desired = min(max(current, floor), hi)
                rule = Rule.HOLD_ON_ERROR
                decided_by = unresolved[0][0] if unresolved else None
                reason = f"active but no metric could be read; holding {desired}"
            elif current < floor:
                limit = self._up_limit(current, events, now)
                desired = max(floor, min(raw, limit, hi))
                rule = Rule.SCALE_FROM_ZERO
                why = (
                    "forced by annotation"
                    if forced and not any_active
                    else f"activated by {decided_by}"
                )
                capped = ""
                if raw > desired:
                    capped = (
                        " (scale-up policy)" if limit < hi and limit < raw else " (maxReplicaCount)"
                    )
                reason = (
                    f"{why}: scaling from {current} to {desired}; metrics ask for {raw}{capped}"
                )
            else:
                desired, rule, reason = self._normal(raw, current, floor, recs, events, now)
                if unresolved and desired < min(current, hi):
                    desired = min(current, hi)
                    rule = Rule.ERROR_BLOCKS_SCALE_DOWN
                    decided_by = unresolved[0][0]
                    reason = (
                        f"scale down blocked: trigger {unresolved[0][0]} failed "
                        f"({unresolved[0][1]}); holding {current}"
                    )
        elif unresolved:
            decided_by = unresolved[0][0]
            if current > hi:
                desired, rule = hi, Rule.MAX_REPLICAS
                reason = f"current {current} is above maxReplicaCount {hi}"
            elif current < lo_min and idle is None:
                desired, rule = lo_min, Rule.MIN_REPLICAS
                reason = f"current {current} is below minReplicaCount {lo_min}"
            else:
                desired = current
                rule = Rule.HOLD_ON_ERROR
                extra = "" if fallback is None else " (fallback not reached yet)"
                reason = (
                    f"trigger {unresolved[0][0]} failed ({unresolved[0][1]}); holding {current} "
                    f"replicas{extra}"
                )
                if raw is not None and raw > current >= floor:
                    up, up_rule, up_reason = self._normal(raw, current, floor, recs, events, now)
                    if up > current:
                        desired, rule, reason = up, up_rule, up_reason
                        decided_by = raw_trigger
        else:
            low = idle if idle is not None else lo_min
            prev_active = state.last_active
            if prev_active is not None:
                elapsed = now - prev_active
                period = self.spec.cooldown_period
                cd_rule = Rule.COOLDOWN
                cd_name = "cooldownPeriod"
            else:
                elapsed = now - created_at
                period = self.spec.initial_cooldown_period
                cd_rule = Rule.INITIAL_COOLDOWN
                cd_name = "initialCooldownPeriod"
            cooling = elapsed < period
            target_name = "zero" if low == 0 else f"idleReplicaCount {low}"
            if current <= low:
                if current < low:
                    desired = low
                    rule = Rule.MIN_REPLICAS if idle is None else Rule.SCALE_TO_IDLE
                    reason = f"inactive; raising {current} to {low}"
                else:
                    desired = current
                    rule = Rule.IDLE
                    reason = f"inactive at {current} replicas"
            elif cooling and low < floor:
                if current < floor:
                    desired, rule = current, cd_rule
                    reason = (
                        f"inactive; {cd_name} {period:g}s not over ({elapsed:g}s elapsed); "
                        f"holding {current}"
                    )
                else:
                    desired, rule, reason = self._normal(
                        raw if raw is not None else 0, current, floor, recs, events, now
                    )
                    if desired == floor and (raw is None or raw < floor):
                        rule = cd_rule
                        reason = (
                            f"inactive; {cd_name} {period:g}s not over ({elapsed:g}s elapsed); "
                            f"staying at {desired} before scaling to {target_name}"
                        )
            elif low < floor:
                if self.options.scale_to_zero_from_floor and current > floor:
                    desired, rule, reason = self._normal(
                        raw if raw is not None else 0, current, floor, recs, events, now
                    )
                    if desired > floor:
                        reason = f"{reason}; scaling to {target_name} once at {floor}"
                else:
                    desired = low
                    rule = Rule.SCALE_TO_ZERO if low == 0 else Rule.SCALE_TO_IDLE
                    reason = (
                        f"inactive for {elapsed:g}s (>= {cd_name} {period:g}s): "
                        f"scaling to {target_name}"
                    )
                    if raw is not None and raw > 0 and raw_trigger is not None:
                        reason += (
                            f" although {raw_trigger} asks for {raw} (its value is not above "
                            f"its activation target)"
                        )
            else:
                desired, rule, reason = self._normal(
                    raw if raw is not None else 0, current, lo_min, recs, events, now
                )

        # 5. direction vetoes -----------------------------------------------------------
        if desired < current and self._paused_in:
            desired, rule = current, Rule.PAUSED_SCALE_IN
            reason = f"scale in paused by annotation; holding {current}"
        elif desired > current and self._paused_out:
            desired, rule = current, Rule.PAUSED_SCALE_OUT
            reason = f"scale out paused by annotation; holding {current}"

        # 6. new state ------------------------------------------------------------------
        if raw is not None:
            recs = _append(recs, now, raw, self._rec_horizon)
        elif recs and recs[0][0] <= now - self._rec_horizon:
            recs = tuple(r for r in recs if r[0] > now - self._rec_horizon)
        if desired != current and self._event_horizon > 0:
            events = _append_event(events, now, desired - current, self._event_horizon)
        elif events and events[0][0] <= now - self._event_horizon:
            events = tuple(e for e in events if e[0] > now - self._event_horizon)
        # by position (cheaper): the fields in their declared order
        new_state = ScalingState(created_at, last_active, recs, events, tuple(failures))
        decision = Decision._with_pending_details(
            desired,  # replicas
            current,  # current_replicas
            active,  # is_active
            rule,
            reason,
            decided_by,  # trigger
            raw,  # raw_replicas
            tuple(details),  # triggers, built on first read
            fb_replicas is not None,  # fallback_active
        )
        return new_state, decision


def _append(
    recs: Sequence[tuple[float, int]], now: float, value: int, horizon: float
) -> tuple[tuple[float, int], ...]:
    # An older entry with the same value is superseded by the newer one in every window.
    cut = now - horizon
    kept = [r for r in recs if r[0] > cut and r[1] != value]
    if horizon > 0:
        kept.append((now, value))
    return tuple(kept)


def _append_event(
    events: Sequence[tuple[float, int]], now: float, change: int, horizon: float
) -> tuple[tuple[float, int], ...]:
    cut = now - horizon
    kept = [e for e in events if e[0] > cut]
    kept.append((now, change))
    return tuple(kept)


_ENGINES: dict[tuple[int, int], tuple[weakref.ref[ScaledObjectSpec], EngineOptions, Engine]] = {}
_ENGINE_CACHE_SIZE: Final = 256


def _engine_for(spec: ScaledObjectSpec, options: EngineOptions) -> Engine:
    key = (id(spec), id(options))
    hit = _ENGINES.get(key)
    if hit is not None and hit[0]() is spec and hit[1] is options:
        return hit[2]
    engine = Engine(spec, options)
    if len(_ENGINES) >= _ENGINE_CACHE_SIZE:
        _ENGINES.clear()
    _ENGINES[key] = (weakref.ref(spec), options, engine)
    return engine


def decide(
    spec: ScaledObjectSpec,
    state: ScalingState,
    observations: Iterable[TriggerObservation],
    current_replicas: int,
    now: float,
    *,
    options: EngineOptions | None = None,
    ready_replicas: int | None = None,
) -> tuple[ScalingState, Decision]:
    """Decide the replica count for one tick.

    :param spec: the ScaledObject.
    :param state: what the previous call returned (``ScalingState()`` the first time).
    :param observations: one :class:`TriggerObservation` per trigger (report or error).
    :param current_replicas: the target's current (spec) replica count.
    :param now: seconds on the caller's clock; the same clock as earlier calls with this
        state (wall time if the state is persisted across restarts).
    :param options: engine knobs; :data:`EngineOptions` defaults when ``None``.
    :param ready_replicas: ready replicas, for ``Value`` metrics (defaults to current).
    :returns: the new state to keep, and the decision.
    :raises ConfigError: the spec's formula or paused-replicas annotation is malformed.
    """
    engine = _engine_for(spec, options if options is not None else DEFAULT_OPTIONS)
    return engine.decide(state, observations, current_replicas, now, ready_replicas=ready_replicas)
