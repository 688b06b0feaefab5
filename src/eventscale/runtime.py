"""A ScaledObject at run time: its scalers, its target, its engine state.

:class:`ScaledObject` is where the imperative shell meets the pure engine: it polls
every trigger (concurrently, each call under a timeout), hands the observations to
:func:`eventscale.engine.decide`, and (for :meth:`ScaledObject.reconcile`) applies the
decision to its target. Nothing here raises for a failing source or target: failures
are part of the :class:`EvaluationReport` and of the events it emits.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self

import anyio
import attrs

from eventscale.auth import Secret, redact_text
from eventscale.engine import Decision, Engine, EngineOptions, ScalingState, TriggerObservation
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout, TargetError
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.observability import Event, EventBus, EventKind, TriggerResult
from eventscale.scalers import Scaler, create_scaler
from eventscale.spec import ScaledObjectSpec
from eventscale.targets import Target

__all__ = ("DEFAULT_POLL_TIMEOUT", "EvaluationReport", "ScaledObject")

#: Longest a single scaler call may take before it counts as a failure (seconds).
DEFAULT_POLL_TIMEOUT = 10.0


@attrs.frozen(kw_only=True)
class EvaluationReport:
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

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def ok(self) -> bool:
        """``True`` when every trigger was read and the target answered."""
        return self.target_error is None and all(t.error is None for t in self.triggers)

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


def _accepts_reason(target: Target) -> bool:
    try:
        params = inspect.signature(target.set_replicas).parameters
    except (TypeError, ValueError):
        return False
    return "reason" in params


class ScaledObject:
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
        self.spec = spec
        self.target = target
        self.options = options
        self.clock = clock
        self.events = events
        self.poll_timeout = (
            poll_timeout
            if poll_timeout is not None
            else min(DEFAULT_POLL_TIMEOUT, spec.polling_interval)
        )
        self.state = state if state is not None else ScalingState.new()
        if scalers is None:
            if contexts is None:
                from eventscale.manifest import Manifests

                contexts = Manifests().trigger_contexts(spec)
            # Scalers connect on their first poll, never in their constructors, so a
            # ConfigError in a later trigger leaves nothing open behind it.
            scalers = [create_scaler(ctx) for ctx in contexts]
        if len(scalers) != len(spec.triggers):
            raise ConfigError(
                f"{len(scalers)} scalers given for {len(spec.triggers)} triggers",
                path="spec.triggers",
            )
        self.scalers: tuple[Scaler, ...] = tuple(scalers)
        self._set_with_reason = _accepts_reason(target)
        self._closed = False
        self._engine: tuple[ScaledObjectSpec, EngineOptions | None, Engine] | None = None

    def _engine_now(self) -> Engine:
        # One engine per object, rebuilt only when ``spec`` or ``options`` is replaced:
        # the module-level decide() cache holds a few hundred specs, not thousands.
        cached = self._engine
        if cached is not None and cached[0] is self.spec and cached[1] is self.options:
            return cached[2]
        engine = Engine(self.spec, self.options)
        self._engine = (self.spec, self.options, engine)
        return engine

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_manifest(
        cls,
        source: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        target: Target,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
        **kwargs: Any,
    ) -> ScaledObject:
        """Build from KEDA YAML (text, a dict, or a list of documents).

        The stream may hold TriggerAuthentications and Secrets that the triggers
        reference; ``secrets`` adds Secrets by name and ``env`` is the environment
        ``...FromEnv`` parameters read. ``name`` picks one ScaledObject when the stream
        holds several.

        :raises ConfigError: the manifest or a trigger's metadata is invalid.
        """
        from eventscale.manifest import load_manifests

        manifests = load_manifests(source)
        spec = manifests.scaled_object(name)
        contexts = manifests.trigger_contexts(spec, env=env, secrets=secrets)
        return cls(spec, target=target, contexts=contexts, **kwargs)

    @property
    def key(self) -> str:
        """``namespace/name``: how the controller and events name this object."""
        return f"{self.spec.namespace}/{self.spec.name}"

    def __repr__(self) -> str:
        return f"<ScaledObject {self.key} triggers={len(self.scalers)} target={self.target!r}>"

    # ------------------------------------------------------------------ polling

    def _identity(self, index: int) -> str:
        trig = self.spec.triggers[index]
        return trig.name or f"{trig.type}[{index}]"

    async def _poll_one(self, index: int) -> TriggerObservation:
        scaler = self.scalers[index]
        ident = self._identity(index)
        name = self.spec.triggers[index].name
        specs: tuple[MetricSpec, ...] = ()
        try:
            specs = tuple(scaler.metric_specs())
            with _Timeout(self.poll_timeout):
                report = await scaler.get_metrics()
            _check_report(report, specs)
        except ScalerError as exc:
            return TriggerObservation.failure(index, specs, exc.with_trigger(ident), name=name)
        except TimeoutError:
            err: ScalerError = ScalerTimeout(
                f"no answer within {self.poll_timeout:g}s", trigger=ident, transient=True
            )
            return TriggerObservation.failure(index, specs, err, name=name)
        except Exception as exc:  # a user scaler's bug must not stop the loop
            err = ScalerError(
                f"scaler failed: {type(exc).__name__}: {redact_text(str(exc))}", trigger=ident
            )
            return TriggerObservation.failure(index, specs, err, name=name)
        return TriggerObservation.success(index, specs, report, name=name)

    async def poll(self) -> tuple[TriggerObservation, ...]:
        """Poll every trigger once, concurrently; failures become error observations."""
        if len(self.scalers) == 1:
            return (await self._poll_one(0),)
        results: list[TriggerObservation | None] = [None] * len(self.scalers)

        async def run(i: int) -> None:
            results[i] = await self._poll_one(i)

        async with anyio.create_task_group() as tg:
            for i in range(len(self.scalers)):
                tg.start_soon(run, i)
        return tuple(r for r in results if r is not None)

    async def _read_current(self) -> tuple[int, str | None]:
        try:
            with _Timeout(self.poll_timeout):
                return await self.target.get_replicas(), None
        except TimeoutError:
            return 0, f"target did not answer within {self.poll_timeout:g}s"
        except TargetError as exc:
            return 0, str(exc)
        except Exception as exc:
            return 0, f"target failed: {type(exc).__name__}: {redact_text(str(exc))}"

    def _results(self, observations: Sequence[TriggerObservation]) -> tuple[TriggerResult, ...]:
        out = []
        for obs in observations:
            trig = self.spec.triggers[obs.trigger_index]
            spec0 = obs.specs[0] if obs.specs else None
            value: float | None = None
            if obs.report is not None and obs.report.values:
                value = obs.report.values[0].value
            out.append(
                TriggerResult(
                    index=obs.trigger_index,
                    type=trig.type,
                    name=trig.name,
                    metric_name=spec0.name if spec0 else None,
                    value=value,
                    target=spec0.target if spec0 else None,
                    metric_type=spec0.metric_type.value if spec0 else None,
                    activation_target=spec0.activation_target if spec0 else None,
                    active=bool(obs.report and obs.report.is_active),
                    error=str(obs.error) if obs.error is not None else None,
                )
            )
        return tuple(out)

    async def _emit(self, event: Event) -> None:
        if self.events is not None:
            await self.events.emit(event)

    async def _evaluate(
        self, current_replicas: int | None, lag: float | None
    ) -> tuple[ScalingState, EvaluationReport]:
        observations = await self.poll()
        target_error: str | None = None
        if current_replicas is None:
            current_replicas, target_error = await self._read_current()
        now = self.clock()
        triggers = self._results(observations)
        await self._emit(
            Event(
                kind=EventKind.POLL,
                time=now,
                scaled_object=self.key,
                triggers=triggers,
                current_replicas=None if target_error else current_replicas,
                lag=lag,
            )
        )
        new_state, decision = self._engine_now().decide(
            self.state, observations, current_replicas, now
        )
        report = EvaluationReport(
            name=self.spec.name,
            namespace=self.spec.namespace,
            time=now,
            current_replicas=current_replicas,
            decision=decision,
            triggers=triggers,
            observations=observations,
            target_error=target_error,
        )
        await self._emit(
            Event(
                kind=EventKind.DECISION,
                time=now,
                scaled_object=self.key,
                current_replicas=current_replicas,
                desired_replicas=decision.replicas,
                active=decision.is_active,
                rule=decision.rule.value,
                reason=decision.reason,
            )
        )
        return new_state, report

    async def evaluate(self, *, current_replicas: int | None = None) -> EvaluationReport:
        """Poll every trigger once and decide; apply nothing and keep no state.

        ``current_replicas`` overrides reading the target.
        """
        _, report = await self._evaluate(current_replicas, None)
        return report

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
        new_state, report = await self._evaluate(None, lag)
        if report.target_error is not None:
            await self._emit(
                Event(
                    kind=EventKind.TARGET_ERROR,
                    time=report.time,
                    scaled_object=self.key,
                    error=report.target_error,
                )
            )
            return report
        decision = report.decision
        if decision.changed:
            if guard is not None and not await guard():
                return report
            try:
                with _Timeout(self.poll_timeout):
                    if self._set_with_reason:
                        await self.target.set_replicas(decision.replicas, reason=decision.reason)  # type: ignore[call-arg]
                    else:
                        await self.target.set_replicas(decision.replicas)
            except Exception as exc:
                message = (
                    f"target did not answer within {self.poll_timeout:g}s"
                    if isinstance(exc, TimeoutError)
                    else str(exc)
                    if isinstance(exc, TargetError)
                    else f"target failed: {type(exc).__name__}: {redact_text(str(exc))}"
                )
                await self._emit(
                    Event(
                        kind=EventKind.TARGET_ERROR,
                        time=report.time,
                        scaled_object=self.key,
                        error=message,
                    )
                )
                return attrs.evolve(report, target_error=message)
            await self._emit(
                Event(
                    kind=EventKind.SCALE,
                    time=report.time,
                    scaled_object=self.key,
                    from_replicas=report.current_replicas,
                    to_replicas=decision.replicas,
                    rule=decision.rule.value,
                    reason=decision.reason,
                )
            )
        self.state = new_state
        return attrs.evolve(report, applied=decision.changed)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close every scaler and the target (errors while closing are ignored)."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for scaler in self.scalers:
                try:
                    with anyio.move_on_after(self.poll_timeout):
                        await scaler.aclose()
                except Exception:
                    continue
            try:
                with anyio.move_on_after(self.poll_timeout):
                    await self.target.aclose()
            except Exception:
                pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Timeout:
    """``anyio.fail_after(seconds)`` for the per-call timeouts, cheap at scale.

    On asyncio the deadlines are grouped in 50 ms buckets that share one timer, so
    10,000 objects polling every second do not each push two timers through the event
    loop's heap per tick; a call may overrun its timeout by up to 50 ms. Elsewhere
    (trio) it is ``anyio.fail_after``.
    """

    __slots__ = ("_fallback", "_fired", "_key", "_scope", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._fired = False
        self._fallback: AbstractContextManager[anyio.CancelScope] | None = None

    def __enter__(self) -> None:
        loop = _asyncio_loop()
        if loop is None:
            self._fallback = anyio.fail_after(self._seconds)
            self._fallback.__enter__()
            return
        self._scope = scope = anyio.CancelScope()
        scope.__enter__()
        self._key = _BUCKETS.add(loop, loop.time() + self._seconds, self)

    def _fire(self) -> None:
        self._fired = True
        self._scope.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._fallback is not None:
            return self._fallback.__exit__(exc_type, exc, tb)
        _BUCKETS.discard(self._key, self)
        suppressed = self._scope.__exit__(exc_type, exc, tb)
        if self._fired and self._scope.cancelled_caught:
            raise TimeoutError
        return suppressed


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Buckets:
    """Timeouts grouped by deadline (50 ms buckets), one timer per bucket and loop."""

    WIDTH = 0.05

    def __init__(self) -> None:
        self._open: dict[tuple[int, int], set[_Timeout]] = {}

    def add(
        self, loop: asyncio.AbstractEventLoop, deadline: float, timeout: _Timeout
    ) -> tuple[int, int]:
        """Register ``timeout`` to fire at ``deadline`` (rounded up); return its bucket key."""
        key = (id(loop), math.ceil(deadline / self.WIDTH))
        bucket = self._open.get(key)
        if bucket is None:
            bucket = self._open[key] = set()
            loop.call_at(key[1] * self.WIDTH, self._expire, key)
        bucket.add(timeout)
        return key

    def discard(self, key: tuple[int, int], timeout: _Timeout) -> None:
        """Forget ``timeout`` (its call finished); drop the bucket once it is empty."""
        bucket = self._open.get(key)
        if bucket is not None:
            bucket.discard(timeout)
            if not bucket:
                del self._open[key]

    def _expire(self, key: tuple[int, int]) -> None:
        for timeout in self._open.pop(key, ()):
            timeout._fire()


_BUCKETS = _Buckets()


def _check_report(report: object, specs: Sequence[MetricSpec]) -> None:
    if not isinstance(report, ScalerReport):
        raise ScalerError(
            f"scaler returned {type(report).__name__}, not a ScalerReport", transient=False
        )
    if not report.values:
        raise ScalerError("scaler returned no metric values", transient=False)
    for value in report.values:
        if not math.isfinite(value.value):
            raise ScalerError(
                f"scaler returned a non-finite value for {value.name}", transient=False
            )
