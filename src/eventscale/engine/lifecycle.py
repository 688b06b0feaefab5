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

:meth:`Engine.decide` walks these in order; each rule is one method of :class:`Engine`
(``_pause``, ``_fallback_step``, ``_scale_from_zero``, ``_hold_on_error``,
``_inactive``, ``_veto``, and ``_normal``, the HPA step with behavior policies and
stabilization). Reading the triggers is :mod:`eventscale.engine._reading`; the
``scalingModifiers`` composite is :mod:`eventscale.engine._composite`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from eventscale.engine._composite import Composite
from eventscale.engine._reading import TriggerReader
from eventscale.engine.behavior import (
    Limit,
    ResolvedRules,
    behavior_step,
    legacy_scale_up_limit,
    legacy_step,
    resolve_behavior,
    scale_up_limit,
)
from eventscale.engine.hpa import Tolerance
from eventscale.engine.model import (
    DEFAULT_OPTIONS,
    Decision,
    EngineOptions,
    Rule,
    TriggerObservation,
)
from eventscale.engine.modifiers import compile_formula
from eventscale.engine.state import ScalingState
from eventscale.spec import Behavior, Fallback, FallbackBehavior, ScaledObjectSpec

__all__ = ("Engine", "decide", "fallback_replicas")

# Reading an enum member through its class (``Limit.NONE``) goes through a slow
# metaclass lookup on CPython 3.11; the per-decision code uses module-level names.
_NO_LIMIT: Final[Limit] = Limit.NONE
_UP_LIMIT: Final[Limit] = Limit.SCALE_UP_LIMIT
_DOWN_LIMIT: Final[Limit] = Limit.SCALE_DOWN_LIMIT
_TOO_MANY: Final[Limit] = Limit.TOO_MANY
_SCALING_MODIFIERS: Final[FallbackBehavior] = FallbackBehavior.SCALING_MODIFIERS
# the engine's Decision constructor, looked up once (see Decision._with_pending_details)
_new_decision: Final = Decision._with_pending_details

_History = Sequence[tuple[float, int]]
"""``(time, replicas)`` recommendations or ``(time, change)`` scale events."""

_Step = tuple[int, Rule, str]
"""A rule's answer: ``(replicas, rule, reason)``."""


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
        resource = options.resource_trigger_types
        # (index, name, formula variable, type) per trigger
        triggers = tuple(
            (i, t.name or f"{t.type}#{i}", t.name, t.type) for i, t in enumerate(spec.triggers)
        )
        self._all_resource = all(t.type in resource for t in spec.triggers)
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
        self._composite: Composite | None = None
        mods = spec.advanced.scaling_modifiers
        if options.combiner is not None:
            c = options.combiner
            self._composite = Composite(None, c, c.target, c.activation_target, c.metric_type)
        elif mods is not None:
            names = [name for _, _, name, kind in triggers if name and kind not in resource]
            formula = compile_formula(mods.formula, names)
            self._composite = Composite(
                formula, None, mods.target, mods.activation_target, mods.metric_type
            )
        reader = TriggerReader(
            tuple((i, name, variable) for i, name, variable, _ in triggers),
            self._tolerance,
            self._fallback,
            composite=self._composite is not None,
            # cpu/memory report the HPA resource calculator's proposal (engine/resources.py)
            resource=frozenset(i for i, _, _, kind in triggers if kind in resource),
        )
        self._read_triggers = reader.read  # bound once: it runs on every decision

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
        """One decision. See :func:`decide`; each numbered rule is a method below."""
        current = current_replicas if current_replicas > 0 else 0
        fresh = state.created_at is None
        created_at = now if state.created_at is None else state.created_at

        # 1. pause
        if self._paused_replicas is not None or self._paused:
            return self._pause(state, current, fresh, created_at)

        # 2. read the triggers (the hot path; docs/engine.md, "Performance")
        raw, raw_trigger, any_active, unresolved, fallen, variables, details, failures = (
            self._read_triggers(observations, state, current, ready_replicas)
        )

        # 3. fallback and the composite
        fallback = self._fallback
        composite = self._composite
        fb_replicas: int | None = None
        if (
            fallen
            and fallback is not None
            and (composite is None or fallback.behavior is not _SCALING_MODIFIERS)
        ):
            fb_replicas = fallback_replicas(fallback, current)
        if composite is not None and fb_replicas is None:
            # cpu/memory are not formula variables: their proposals stand beside the
            # composite's and the larger wins, as the HPA takes the largest of its metrics
            beside, beside_trigger = raw, raw_trigger
            raw_trigger = "composite"
            raw, any_active, fb_replicas = composite.replicas(
                variables, unresolved, fallen, fallback, current, ready_replicas, self._tolerance
            )
            if raw is not None and beside is not None and beside > raw:
                raw, raw_trigger = beside, beside_trigger
        forced = self._forced
        active = (
            any_active
            or forced
            or bool(fallen and fb_replicas is not None)
            or (self._all_resource and not unresolved and not fallen)
        )

        # 4.-6. the lifecycle: fallback, active, inactive with an error, inactive
        recs = state.recommendations
        if fresh and current > 0:
            recs = ((now, current),)
        events = state.scale_events
        decided_by = raw_trigger
        if fb_replicas is not None:
            desired, rule, reason = self._fallback_step(fb_replicas, raw, fallen)
            decided_by = fallen[0]
        elif active:
            if raw is None:
                desired, rule, reason = self._active_unread(current)
                decided_by = unresolved[0][0] if unresolved else None
            elif current < self._floor:
                why = (
                    "forced by annotation"
                    if forced and not any_active
                    else f"activated by {decided_by}"
                )
                desired, rule, reason = self._scale_from_zero(raw, current, events, now, why)
            else:
                desired, rule, reason = self._normal(raw, current, self._floor, recs, events, now)
                if unresolved and desired < min(current, self._max):
                    desired, rule, reason = self._error_blocks_scale_down(current, unresolved)
                    decided_by = unresolved[0][0]
        elif unresolved:
            desired, rule, reason, decided_by = self._hold_on_error(
                raw, raw_trigger, current, unresolved, recs, events, now
            )
        else:
            desired, rule, reason = self._inactive(
                raw, raw_trigger, current, created_at, state.last_active, recs, events, now
            )

        # 7. direction vetoes
        if desired != current and (self._paused_in or self._paused_out):
            desired, rule, reason = self._veto(desired, rule, reason, current)

        # the new state: history and failure counts
        # At zero before and after, the HPA is disabled (ScalingDisabled) and records no
        # recommendation; an idle object's state then stops moving (Engine.settled).
        if raw is not None and (current or desired):
            recs = _append(recs, now, raw, self._rec_horizon)
        elif recs and recs[0][0] <= now - self._rec_horizon:
            recs = tuple(r for r in recs if r[0] > now - self._rec_horizon)
        if desired != current and self._event_horizon > 0:
            events = _append_event(events, now, desired - current, self._event_horizon)
        elif events and events[0][0] <= now - self._event_horizon:
            events = tuple(e for e in events if e[0] > now - self._event_horizon)
        last_active = now if active else state.last_active
        # by position (cheaper): the fields in their declared order
        new_state = ScalingState(created_at, last_active, recs, events, tuple(failures))
        decision = _new_decision(
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

    @staticmethod
    def settled(before: ScalingState, after: ScalingState, decision: Decision) -> bool:
        """Whether ``decision`` is a fixed point of :meth:`decide`.

        ``True`` when ``decide(before, ...)`` returned ``(after, decision)``, left the
        state as it was (or only stamped a fresh state's ``created_at``), and deciding
        again from ``after`` with the same observations and replica count gives
        ``after`` and ``decision`` again at any later time: an inactive object resting
        at its idle count with no history that could expire (the HPA records nothing
        while a target is at zero). A caller polling many idle objects may then skip
        the engine while its inputs stay the same (docs/engine.md, "Performance").
        """
        return (
            decision.rule is Rule.IDLE
            and not decision.is_active
            and decision.replicas == decision.current_replicas
            and not after.recommendations
            and not after.scale_events
            and not after.failures
            and after.created_at is not None
            and (
                after == before
                or (
                    before.created_at is None
                    and before.last_active == after.last_active
                    and not before.recommendations
                    and not before.scale_events
                    and not before.failures
                )
            )
        )

    # ------------------------------------------------------------------ the rules

    def _pause(
        self, state: ScalingState, current: int, fresh: bool, created_at: float
    ) -> tuple[ScalingState, Decision]:
        """Rule 1: ``paused-replicas`` gives that count; ``paused`` holds the current one."""
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

    def _fallback_step(self, fb_replicas: int, raw: int | None, fallen: Sequence[str]) -> _Step:
        """Rule 3: ``max(fallback replicas, healthy proposals)`` within [min, max]."""
        fallback = self._fallback
        assert fallback is not None
        target = fb_replicas if raw is None else max(fb_replicas, raw)
        desired = min(max(target, self._min), self._max)
        reason = (
            f"fallback: {', '.join(fallen)} failed more than {fallback.failure_threshold} "
            f"times in a row; {fallback.behavior.value} fallback gives {fb_replicas}, "
            f"scaling to {desired}"
        )
        return desired, Rule.FALLBACK, reason

    def _active_unread(self, current: int) -> _Step:
        """Rule 4, active but no metric read: hold (at least the floor, at most max)."""
        desired = min(max(current, self._floor), self._max)
        return desired, Rule.HOLD_ON_ERROR, f"active but no metric could be read; holding {desired}"

    def _scale_from_zero(
        self, raw: int, current: int, events: _History, now: float, why: str
    ) -> _Step:
        """Rule 4, activation below ``max(min, 1)``: straight to what the metrics ask.

        At least the floor, within the scale-up policy and ``maxReplicaCount``.
        """
        hi = self._max
        limit = self._up_limit(current, events, now)
        desired = max(self._floor, min(raw, limit, hi))
        capped = ""
        if raw > desired:
            capped = " (scale-up policy)" if limit < hi and limit < raw else " (maxReplicaCount)"
        reason = f"{why}: scaling from {current} to {desired}; metrics ask for {raw}{capped}"
        return desired, Rule.SCALE_FROM_ZERO, reason

    def _error_blocks_scale_down(
        self, current: int, unresolved: Sequence[tuple[str, str]]
    ) -> _Step:
        """Rule 4: while active, an erroring trigger blocks a scale-down."""
        name, error = unresolved[0]
        reason = f"scale down blocked: trigger {name} failed ({error}); holding {current}"
        return min(current, self._max), Rule.ERROR_BLOCKS_SCALE_DOWN, reason

    def _hold_on_error(
        self,
        raw: int | None,
        raw_trigger: str | None,
        current: int,
        unresolved: Sequence[tuple[str, str]],
        recs: _History,
        events: _History,
        now: float,
    ) -> tuple[int, Rule, str, str | None]:
        """Rule 5: inactive with an erroring trigger and no fallback: hold.

        Bounds still apply, and a scale-up the healthy triggers ask for is allowed.
        Returns the step and the trigger that decided it.
        """
        name, error = unresolved[0]
        hi = self._max
        lo_min = self._min
        if current > hi:
            return hi, Rule.MAX_REPLICAS, f"current {current} is above maxReplicaCount {hi}", name
        if current < lo_min and self._idle is None:
            reason = f"current {current} is below minReplicaCount {lo_min}"
            return lo_min, Rule.MIN_REPLICAS, reason, name
        floor = self._floor
        if raw is not None and raw > current >= floor:
            up, up_rule, up_reason = self._normal(raw, current, floor, recs, events, now)
            if up > current:
                return up, up_rule, up_reason, raw_trigger
        extra = "" if self._fallback is None else " (fallback not reached yet)"
        reason = f"trigger {name} failed ({error}); holding {current} replicas{extra}"
        return current, Rule.HOLD_ON_ERROR, reason, name

    def _inactive(
        self,
        raw: int | None,
        raw_trigger: str | None,
        current: int,
        created_at: float,
        last_active: float | None,
        recs: _History,
        events: _History,
        now: float,
    ) -> _Step:
        """Rule 6: inactive: cooldown, then scale to zero or idle; at or below it, idle.

        While the (initial) cooldown runs, normal scaling down to ``max(min, 1)``;
        after it, straight to ``idleReplicaCount`` (or 0 when ``min`` is 0), or, with
        ``scale_to_zero_from_floor``, once the count is down to ``max(min, 1)``.
        """
        idle = self._idle
        floor = self._floor
        low = idle if idle is not None else self._min
        if current <= low:
            if current < low:
                rule = Rule.MIN_REPLICAS if idle is None else Rule.SCALE_TO_IDLE
                return low, rule, f"inactive; raising {current} to {low}"
            return current, Rule.IDLE, f"inactive at {current} replicas"
        if low >= floor:  # min > 0 and no idle count: plain scaling within [min, max]
            return self._normal(
                raw if raw is not None else 0, current, self._min, recs, events, now
            )
        if last_active is not None:
            elapsed = now - last_active
            period = self.spec.cooldown_period
            cd_rule = Rule.COOLDOWN
            cd_name = "cooldownPeriod"
        else:
            elapsed = now - created_at
            period = self.spec.initial_cooldown_period
            cd_rule = Rule.INITIAL_COOLDOWN
            cd_name = "initialCooldownPeriod"
        target_name = "zero" if low == 0 else f"idleReplicaCount {low}"
        if elapsed < period:  # cooling down
            if current < floor:
                reason = (
                    f"inactive; {cd_name} {period:g}s not over ({elapsed:g}s elapsed); "
                    f"holding {current}"
                )
                return current, cd_rule, reason
            desired, rule, reason = self._normal(
                raw if raw is not None else 0, current, floor, recs, events, now
            )
            if desired == floor and (raw is None or raw < floor):
                rule = cd_rule
                reason = (
                    f"inactive; {cd_name} {period:g}s not over ({elapsed:g}s elapsed); "
                    f"staying at {desired} before scaling to {target_name}"
                )
            return desired, rule, reason
        if self.options.scale_to_zero_from_floor and current > floor:
            desired, rule, reason = self._normal(
                raw if raw is not None else 0, current, floor, recs, events, now
            )
            if desired > floor:
                reason = f"{reason}; scaling to {target_name} once at {floor}"
            return desired, rule, reason
        rule = Rule.SCALE_TO_ZERO if low == 0 else Rule.SCALE_TO_IDLE
        reason = f"inactive for {elapsed:g}s (>= {cd_name} {period:g}s): scaling to {target_name}"
        if raw is not None and raw > 0 and raw_trigger is not None:
            reason += (
                f" although {raw_trigger} asks for {raw} (its value is not above "
                f"its activation target)"
            )
        return low, rule, reason

    def _veto(self, desired: int, rule: Rule, reason: str, current: int) -> _Step:
        """Rule 7: ``paused-scale-in`` / ``paused-scale-out`` veto the direction they name."""
        if desired < current and self._paused_in:
            reason = f"scale in paused by annotation; holding {current}"
            return current, Rule.PAUSED_SCALE_IN, reason
        if desired > current and self._paused_out:
            reason = f"scale out paused by annotation; holding {current}"
            return current, Rule.PAUSED_SCALE_OUT, reason
        return desired, rule, reason

    # ------------------------------------------------------------------ the HPA step

    def _normal(
        self, raw: int, current: int, lo: int, recs: _History, events: _History, now: float
    ) -> _Step:
        """The HPA step: bounds ``[lo, max]``, behavior policies and stabilization.

        The reason names what held the count: a policy, a bound, or a stabilization
        window (with the recommendation that held it).
        """
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
                reason = f"metrics ask for {stabilized}; scale-up policy allows {desired} now"
                return desired, Rule.SCALE_UP_LIMIT, reason
            if limit is _DOWN_LIMIT:
                reason = f"metrics ask for {stabilized}; scale-down policy allows {desired} now"
                return desired, Rule.SCALE_DOWN_LIMIT, reason
            if limit is _TOO_MANY:
                reason = f"metrics ask for {stabilized}; capped at maxReplicaCount {hi}"
                return desired, Rule.MAX_REPLICAS, reason
            # Limit.TOO_FEW
            return desired, Rule.MIN_REPLICAS, f"metrics ask for {stabilized}; floor is {lo}"
        if stabilized > raw and desired > raw:
            reason = (
                f"scale down held by stabilization window: highest recommendation in the last "
                f"{self._down_window_text} is {down_bound}"
            )
            return desired, Rule.STABILIZED_DOWN, reason
        if stabilized < raw and desired < raw:
            reason = (
                f"scale up held by stabilization window: lowest recommendation in the last "
                f"{self._up_window_text} is {up_bound}"
            )
            return desired, Rule.STABILIZED_UP, reason
        if desired == current:
            return desired, Rule.METRICS, f"metrics ask for {raw}; keeping {current}"
        return desired, Rule.METRICS, f"metrics ask for {raw}; scaling {current} -> {desired}"

    def _up_limit(self, current: int, events: _History, now: float) -> int:
        """How far the scale-up policy lets the count grow now."""
        if self._legacy:
            return legacy_scale_up_limit(current)
        return scale_up_limit(current, self._up, events, now)


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
