"""A ScaledObject at run time: its scalers, its target, its engine state.

:class:`ScaledObject` is where the imperative shell meets the pure engine: it polls
every trigger (concurrently, each call under a timeout), hands the observations to
:func:`eventscale.engine.decide`, and (for :meth:`ScaledObject.reconcile`) applies the
decision to its target. Nothing here raises for a failing source or target: failures
are part of the :class:`EvaluationReport` and of the events it emits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from marshal import dumps as _dumps
from marshal import loads as _loads
from typing import TYPE_CHECKING, Any

import attrs

from eventscale.engine import Decision, Engine, EngineOptions, ScalingState, TriggerObservation
from eventscale.runtime._base import PollingBase, ReportBase
from eventscale.runtime._polling import (
    DEFAULT_POLL_TIMEOUT,
    call_timeout,
    failure_message,
    poll_trigger,
    trigger_results,
)
from eventscale.runtime.observability import Event, EventBus, EventKind, TriggerResult
from eventscale.scalers import Scaler
from eventscale.spec import ScaledObjectSpec
from eventscale.targets import Target

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests

__all__ = ("DEFAULT_POLL_TIMEOUT", "EvaluationReport", "ScaledObject")


@attrs.frozen(kw_only=True)
class EvaluationReport(ReportBase):
    """One poll of every trigger and the decision made from it.

    ``current_replicas`` is what the target held (or what the caller passed);
    ``target_error`` is set when the target could not be read or written. ``applied``
    says whether :meth:`ScaledObject.reconcile` changed the target's replica count.
    """

    name: str
    namespace: str
    time: float
    current_replicas: int
    decision: Decision
    triggers: tuple[TriggerResult, ...]
    observations: tuple[TriggerObservation, ...] = attrs.field(repr=False)
    target_error: str | None = None
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping in the shape ``eventscale evaluate --json`` prints.

        Exactly the keys the CLI documents: ``name``, ``namespace``,
        ``currentReplicas``, ``desiredReplicas``, ``active``, ``reason`` and
        ``triggers`` (see :meth:`TriggerResult.to_dict`).
        """
        return {
            "name": self.name,
            "namespace": self.namespace,
            "currentReplicas": self.current_replicas,
            "desiredReplicas": self.decision.replicas,
            "active": self.decision.is_active,
            "reason": self.decision.reason,
            "triggers": [t.to_dict() for t in self.triggers],
        }


class _Cycle:
    """One poll-decide(-apply) cycle: what a report is built from (see ``_cycle``).

    Mutable and slotted: the controller's loop reads it and drops it, so nothing of a
    tick outlives the tick but the engine state.
    """

    __slots__ = (
        "applied",
        "current_replicas",
        "decision",
        "observations",
        "target_error",
        "time",
        "triggers",
    )

    def __init__(
        self,
        time: float,
        current_replicas: int,
        observations: tuple[TriggerObservation, ...],
        target_error: str | None,
    ) -> None:
        self.time = time
        self.current_replicas = current_replicas
        self.observations = observations
        self.target_error = target_error
        self.decision: Decision | None = None
        self.triggers: tuple[TriggerResult, ...] | None = None
        self.applied = False


def _compact(state: ScalingState) -> bytes:
    """``state`` as bytes (:mod:`marshal` of its fields): the cyclic collector never
    tracks bytes.

    A tuple of tuples is tracked until a collection looks at it, and an idle object's
    poll frees as many objects as it allocates, so at 100,000 objects the states of a
    whole interval piled up in the young generation for one long collection
    (docs/benchmarks.md). The bytes never leave the process, so marshal's
    version-specific format is no concern; packing and unpacking take about 1 µs.
    """
    return _dumps(
        (
            state.created_at,
            state.last_active,
            state.recommendations,
            state.scale_events,
            state.failures,
        )
    )


def _plain(state: ScalingState) -> ScalingState:
    """``state`` with plain tuples, floats and ints: what :func:`_compact` packs from a
    state a caller built (the engine's own states are already plain)."""

    def pairs(items: Sequence[tuple[float, int]], first: Callable[[Any], Any]) -> Any:
        return tuple((first(a), int(b)) for a, b in items)

    return ScalingState(
        None if state.created_at is None else float(state.created_at),
        None if state.last_active is None else float(state.last_active),
        pairs(state.recommendations, float),
        pairs(state.scale_events, float),
        pairs(state.failures, int),
    )


def _expand(packed: bytes) -> ScalingState:
    """The :class:`ScalingState` of :func:`_compact`'s bytes."""
    return ScalingState(*_loads(packed))


class ScaledObject(PollingBase[ScaledObjectSpec, Target]):
    """A ScaledObject spec bound to live scalers and a target.

    Build it from a manifest with :meth:`from_manifest` or from a spec with the
    constructor. The object owns its scalers and its target: :meth:`aclose` closes
    them all. The engine state is kept in :attr:`state`; pass ``state=`` to resume one
    that was saved with ``state.to_json()``.

    :param spec: the ScaledObject.
    :param target: where decisions are applied.
    :param scalers: one scaler per trigger, in trigger order; built from the spec's
        trigger metadata through the registry when omitted (``contexts`` supplies the
        resolved authentication and environment for that).
    :param clock: wall-clock seconds (``time.time`` by default); engine times use it.
    :param poll_timeout: seconds a single scaler or target call may take.
    """

    _kind = "ScaledObject"

    __slots__ = (
        "_engine",
        "_engine_options",
        "_engine_spec",
        "_settled",
        "_state",
        "_state_view",
        "options",
    )

    def __init__(
        self,
        spec: ScaledObjectSpec,
        *,
        target: Target,
        scalers: Sequence[Scaler] | None = None,
        contexts: Sequence[Any] | None = None,
        state: ScalingState | None = None,
        options: EngineOptions | None = None,
        clock: Callable[[], float] = time.time,
        poll_timeout: float | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.options = options
        self._state_view: ScalingState | None = None
        # (engine, packed state, replicas, observations, decision) of the last decision
        # that was a fixed point of the engine (see _cycle)
        self._settled: (
            tuple[Engine, bytes, int, tuple[TriggerObservation, ...], Decision] | None
        ) = None
        self.state = state if state is not None else ScalingState.new()
        super().__init__(
            spec,
            target=target,
            scalers=scalers,
            contexts=contexts,
            clock=clock,
            poll_timeout=poll_timeout,
            events=events,
        )
        self._engine: Engine | None = None
        self._engine_spec: ScaledObjectSpec | None = None
        self._engine_options: EngineOptions | None = None

    @property
    def state(self) -> ScalingState:
        """The engine state: what :meth:`reconcile` moves on (assign one to resume it).

        Kept between polls as bytes (its fields, marshalled), which the cyclic
        garbage collector never tracks, so holding thousands of objects does not make its
        collections longer (docs/runtime.md, "Many objects").
        """
        view = self._state_view
        if view is None:  # (kept until the state moves: reading twice gives one object)
            view = self._state_view = _expand(self._state)
        return view

    @state.setter
    def state(self, value: ScalingState) -> None:
        self._state: bytes = _compact(_plain(value))
        self._state_view = value

    @classmethod
    def _spec_from(cls, manifests: Manifests, name: str | None) -> ScaledObjectSpec:
        return manifests.scaled_object(name)

    def _engine_now(self) -> Engine:
        # One engine per object, rebuilt only when ``spec`` or ``options`` is replaced:
        # the module-level decide() cache holds a few hundred specs, not thousands.
        engine = self._engine
        if (
            engine is not None
            and self._engine_spec is self.spec
            and self._engine_options is self.options
        ):
            return engine
        engine = self._engine = Engine(self.spec, self.options)
        self._engine_spec, self._engine_options = self.spec, self.options
        return engine

    def _listening(self, level: int) -> EventBus | None:
        """The event bus when an event logged at ``level`` reaches anyone, else ``None``."""
        bus = self.events
        return bus if bus is not None and bus.wants(level) else None

    async def _cycle(
        self,
        current_replicas: int | None,
        lag: float | None,
        *,
        apply: bool,
        guard: Callable[[], Awaitable[bool]] | None = None,
    ) -> _Cycle:
        """Poll, decide and (with ``apply``) apply once, emitting the events.

        What :meth:`evaluate` and :meth:`reconcile` do, without the report: the
        controller's loop reads the outcome from the returned record and builds no
        report. Events are built only when someone listens (:meth:`EventBus.wants`).
        """
        scalers = self.scalers
        settled = self._settled
        if len(scalers) == 1:  # (the common case, without the two coroutines of poll())
            observations: tuple[TriggerObservation, ...] = (
                await poll_trigger(
                    scalers[0],
                    0,
                    self.spec.triggers[0],
                    self.poll_timeout,
                    self.latencies,
                    None if settled is None else settled[3][0],
                ),
            )
            if settled is not None and observations[0] is settled[3][0]:
                observations = settled[3]
        else:
            observations = await self.poll()
        target_error: str | None = None
        if current_replicas is None:  # (inline: one coroutine less per poll)
            try:
                with call_timeout(self.poll_timeout):
                    current_replicas = await self.target.get_replicas()
            except Exception as exc:
                current_replicas, target_error = 0, failure_message(exc, self.poll_timeout)
        now = self.clock()
        cycle = _Cycle(now, current_replicas, observations, target_error)
        failed = False
        for obs in observations:
            if obs.error is not None:
                failed = True
                break
        debug = self._listening(logging.DEBUG)
        bus = self._listening(logging.WARNING) if failed else debug
        if bus is not None:
            cycle.triggers = trigger_results(self.spec.triggers, observations, self.latencies)
            await bus.emit(
                Event(
                    kind=EventKind.POLL,
                    time=now,
                    scaled_object=self.key,
                    triggers=cycle.triggers,
                    current_replicas=None if target_error else current_replicas,
                    lag=lag,
                )
            )
        engine = self._engine_now()
        packed = self._state
        new_state: ScalingState | None = None
        settle = False
        if (
            settled is not None
            and settled[0] is engine
            and settled[1] is packed
            and settled[2] == current_replicas
            and (settled[3] is observations or settled[3] == observations)
        ):
            # a fixed point of the engine with the same inputs: the same decision and
            # an unchanged state (Engine.settled), without unpacking the state
            decision = settled[4]
        else:
            state = _expand(packed)
            new_state, decision = engine.decide(state, observations, current_replicas, now)
            settle = engine.settled(state, new_state, decision)
            if settle and new_state == state:
                self._settled = (engine, packed, current_replicas, observations, decision)
                new_state = None
            elif settled is not None:
                self._settled = None
        cycle.decision = decision
        bus = debug
        if bus is not None:
            await bus.emit(
                Event(
                    kind=EventKind.DECISION,
                    time=now,
                    scaled_object=self.key,
                    current_replicas=current_replicas,
                    desired_replicas=decision.replicas,
                    active=decision.is_active,
                    rule=decision.rule.value,
                    reason=decision.reason,
                    fallback=decision.fallback_active,
                )
            )
        if not apply:
            return cycle
        if target_error is not None:
            await self._target_error(now, target_error)
            return cycle
        if decision.replicas != decision.current_replicas:  # decision.changed
            if guard is not None and not await guard():
                return cycle
            try:
                with call_timeout(self.poll_timeout):
                    await self.target.set_replicas(decision.replicas, reason=decision.reason)
            except Exception as exc:
                cycle.target_error = failure_message(exc, self.poll_timeout)
                await self._target_error(now, cycle.target_error)
                return cycle
            bus = self._listening(logging.INFO)
            if bus is not None:
                await bus.emit(
                    Event(
                        kind=EventKind.SCALE,
                        time=now,
                        scaled_object=self.key,
                        from_replicas=current_replicas,
                        to_replicas=decision.replicas,
                        rule=decision.rule.value,
                        reason=decision.reason,
                    )
                )
            cycle.applied = True
        if new_state is not None:
            self._state = packed = _compact(new_state)
            self._state_view = None
            if settle:  # (a fresh state, stamped: settled from the first poll on)
                self._settled = (engine, packed, current_replicas, observations, decision)
        return cycle

    async def _target_error(self, now: float, message: str) -> None:
        bus = self._listening(logging.WARNING)
        if bus is not None:
            await bus.emit(
                Event(kind=EventKind.TARGET_ERROR, time=now, scaled_object=self.key, error=message)
            )

    def _report(self, cycle: _Cycle) -> EvaluationReport:
        triggers = cycle.triggers
        if triggers is None:
            triggers = trigger_results(self.spec.triggers, cycle.observations, self.latencies)
        assert cycle.decision is not None
        return EvaluationReport(
            name=self.spec.name,
            namespace=self.spec.namespace,
            time=cycle.time,
            current_replicas=cycle.current_replicas,
            decision=cycle.decision,
            triggers=triggers,
            observations=cycle.observations,
            target_error=cycle.target_error,
            applied=cycle.applied,
        )

    async def evaluate(self, *, current_replicas: int | None = None) -> EvaluationReport:
        """Poll every trigger once and decide; apply nothing and keep no state.

        ``current_replicas`` overrides reading the target.
        """
        return self._report(await self._cycle(current_replicas, None, apply=False))

    async def reconcile(
        self,
        *,
        lag: float | None = None,
        guard: Callable[[], Awaitable[bool]] | None = None,
    ) -> EvaluationReport:
        """Poll, decide and apply once; the engine state moves on.

        When the target cannot be read, nothing is decided or applied (the report
        carries ``target_error``); when it cannot be written, the state is not
        advanced, so the next reconcile tries again from the same history.

        ``guard`` is awaited right before a change is applied; when it returns
        ``False`` (this process lost the object's lease while polling) nothing is
        applied and the state does not move.
        """
        return self._report(await self._cycle(None, lag, apply=True, guard=guard))
