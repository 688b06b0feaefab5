"""Polling triggers: one call per scaler under a timeout, failures as observations.

Shared by :class:`~eventscale.runtime.scaled_object.ScaledObject` and
:class:`~eventscale.jobs.ScaledJob`. Nothing here raises for a failing scaler: a
:class:`~eventscale.errors.ScalerError`, a timeout, a bug in a user's scaler or a
malformed report all become an error :class:`~eventscale.engine.TriggerObservation`.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable, MutableSequence, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import anyio

from eventscale.engine import TriggerObservation
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout, TargetError
from eventscale.metrics import MetricSpec, ScalerReport, validate_metric_value
from eventscale.redaction import MAX_MESSAGE_CHARS, bound_message, redact_text
from eventscale.runtime.observability import TriggerResult
from eventscale.scalers import Scaler, TriggerContext, create_scaler
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerSpec

__all__ = (
    "DEFAULT_POLL_TIMEOUT",
    "bounded_text",
    "build_scalers",
    "call_timeout",
    "close_all",
    "default_poll_timeout",
    "failure_message",
    "poll_trigger",
    "poll_triggers",
    "must_propagate",
    "stop_task",
    "trigger_results",
)

#: Longest a single scaler call may take before it counts as a failure (seconds).
DEFAULT_POLL_TIMEOUT = 10.0


def default_poll_timeout(polling_interval: float, given: float | None) -> float:
    """``given``, or the smaller of :data:`DEFAULT_POLL_TIMEOUT` and the polling interval."""
    return given if given is not None else min(DEFAULT_POLL_TIMEOUT, polling_interval)


def build_scalers(
    spec: ScaledObjectSpec | ScaledJobSpec,
    scalers: Sequence[Scaler] | None,
    contexts: Sequence[TriggerContext] | None,
    target: object = None,
) -> tuple[Scaler, ...]:
    """One scaler per trigger of ``spec``: ``scalers`` as given, or built from ``contexts``.

    Without ``contexts`` the spec's own metadata is used (no TriggerAuthentication,
    no environment). Scalers connect on their first poll, never in their
    constructors, so a :class:`ConfigError` in a later trigger leaves nothing open.
    A scaler that reads the target (``needs_target = True``, the cpu/memory triggers)
    gets ``target`` through its ``bind_target`` method.
    """
    if scalers is None:
        if contexts is None:
            from eventscale.manifests.reader import Manifests

            contexts = Manifests().trigger_contexts(spec)
        scalers = [create_scaler(ctx) for ctx in contexts]
    if len(scalers) != len(spec.triggers):
        raise ConfigError(
            f"{len(scalers)} scalers given for {len(spec.triggers)} triggers",
            path="spec.triggers",
        )
    for scaler in scalers:  # cpu/memory read the target (docs/scalers/cpu-memory.md)
        if getattr(scaler, "needs_target", False):
            scaler.bind_target(target)  # type: ignore[attr-defined]
    return tuple(scalers)


async def close_all(resources: Sequence[Any], each_within: float) -> None:
    """``aclose()`` every resource, shielded from cancellation, ignoring their errors."""
    with anyio.CancelScope(shield=True):
        for resource in resources:
            try:
                with anyio.move_on_after(each_within):
                    await resource.aclose()
            except Exception:
                continue


def trigger_identity(trigger: TriggerSpec, index: int) -> str:
    """How errors name a trigger: its ``name`` or ``{type}[{index}]``."""
    return trigger.name or f"{trigger.type}[{index}]"


async def poll_trigger(
    scaler: Scaler,
    index: int,
    trigger: TriggerSpec,
    call_seconds: float,
    latencies: MutableSequence[float] | None = None,
    previous: TriggerObservation | None = None,
) -> TriggerObservation:
    """Poll one scaler once under ``call_seconds``; any failure becomes an error observation.

    ``latencies[index]``, when given, receives the seconds the scaler took to answer
    or fail (KEDA's ``keda_scaler_metrics_latency_seconds``). ``previous`` is returned
    instead of a new, equal observation when the scaler answered with the very report
    object and metric specs it holds (a scaler may keep an unchanged report), so that
    comparing the two is an identity check.
    """
    # (one coroutine: this runs on every poll of every object)
    started = time.perf_counter()
    name = trigger.name
    specs: tuple[MetricSpec, ...] = ()
    try:
        specs = tuple(scaler.metric_specs())
        with call_timeout(call_seconds):
            report = await scaler.get_metrics()
        if previous is None or report is not previous.report:  # (checked when it came)
            _check_report(report)
    except ScalerError as exc:
        if len(exc.message) > MAX_MESSAGE_CHARS:  # scalers redact their own messages
            exc.message = bound_message(exc.message)
            exc.args = (exc.message,)
        err: ScalerError = exc.with_trigger(trigger_identity(trigger, index))
    except TimeoutError:
        err = ScalerTimeout(
            f"no answer within {call_seconds:g}s",
            trigger=trigger_identity(trigger, index),
            transient=True,
        )
    except BaseException as exc:  # a user scaler's bug must not stop the loop
        if must_propagate(exc):
            raise
        err = ScalerError(
            f"scaler failed: {type(exc).__name__}: {bounded_text(exc)}",
            trigger=trigger_identity(trigger, index),
        )
    else:
        if latencies is not None:
            latencies[index] = time.perf_counter() - started
        if (
            previous is not None
            and previous.report is report
            and previous.specs == specs
            and previous.trigger_index == index
            and previous.name == name
        ):
            return previous
        return TriggerObservation.success(index, specs, report, name=name)
    if latencies is not None:
        latencies[index] = time.perf_counter() - started
    return TriggerObservation.failure(index, specs, err, name=name)


def must_propagate(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a scaler or target call, must end the caller.

    Only interpreter exit (``KeyboardInterrupt``, ``SystemExit``, also inside an
    exception group) and a cancellation the caller's own scopes asked for do. Anything
    else, a ``CancelledError`` a scaler raised on its own included, is that call's
    failure (docs/runtime.md, "Many objects").
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(must_propagate(inner) for inner in exc.exceptions)
    if isinstance(exc, Exception):
        return False
    if _STOPPING and isinstance(exc, asyncio.CancelledError):
        loop = _asyncio_loop()
        if loop is not None and asyncio.current_task(loop) in _STOPPING:
            return True  # the controller stopped this poll (stop_task)
    # our cancellation: an enclosing scope was cancelled (its deadline is -inf then)
    return anyio.current_effective_deadline() == -math.inf


async def poll_triggers(
    scalers: Sequence[Scaler],
    triggers: Sequence[TriggerSpec],
    call_seconds: float,
    latencies: MutableSequence[float] | None = None,
) -> tuple[TriggerObservation, ...]:
    """Poll every scaler once, concurrently; one observation per trigger, in order
    (``latencies``: as :func:`poll_trigger`)."""
    if len(scalers) == 1:
        return (await poll_trigger(scalers[0], 0, triggers[0], call_seconds, latencies),)
    results: list[TriggerObservation | None] = [None] * len(scalers)

    async def run(i: int) -> None:
        results[i] = await poll_trigger(scalers[i], i, triggers[i], call_seconds, latencies)

    async with anyio.create_task_group() as tg:
        for i in range(len(scalers)):
            tg.start_soon(run, i)
    return tuple(r for r in results if r is not None)


def trigger_results(
    triggers: Sequence[TriggerSpec],
    observations: Sequence[TriggerObservation],
    latencies: Sequence[float] | None = None,
) -> tuple[TriggerResult, ...]:
    """The per-trigger view of a poll that reports, events and the CLI show
    (``latencies``: each trigger's, by trigger index, as :func:`poll_trigger` measured)."""
    out = []
    for obs in observations:
        trig = triggers[obs.trigger_index]
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
                latency=(
                    latencies[obs.trigger_index]
                    if latencies is not None and obs.trigger_index < len(latencies)
                    else None
                ),
            )
        )
    return tuple(out)


def failure_message(exc: BaseException, timeout: float, what: str = "target") -> str:
    """A one-line, redacted description of a failed target call."""
    if isinstance(exc, TimeoutError):
        return f"{what} did not answer within {timeout:g}s"
    if isinstance(exc, TargetError):
        return bound_message(str(exc))
    return f"{what} failed: {type(exc).__name__}: {bounded_text(exc)}"


def bounded_text(exc: BaseException) -> str:
    """``str(exc)`` redacted, then cut to :data:`~eventscale.redaction.MAX_MESSAGE_CHARS`."""
    return bound_message(redact_text(str(exc)))


class _Timeout:
    """``anyio.fail_after(seconds)`` for the per-call timeouts, cheap at scale.

    On asyncio it cancels the calling task natively, the way ``asyncio.timeout`` does
    (no cancel scope to enter and leave per call), and the deadlines are grouped in
    50 ms buckets that share one timer, so 10,000 objects polling every second do not
    each push two timers through the event loop's heap per tick; a call may overrun
    its timeout by up to 50 ms. Elsewhere (trio) it is ``anyio.fail_after``.
    """

    __slots__ = ("_bucket", "_cancelling", "_fallback", "_fired", "_outer", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._fired = False
        self._fallback: AbstractContextManager[anyio.CancelScope] | None = None

    def __enter__(self) -> None:
        # (twice per poll of every object: the common case inline, without calls)
        loop = _asyncio_loop()
        task = _current_task(loop) if loop is not None else None
        if loop is None or task is None:
            self._fallback = anyio.fail_after(self._seconds)
            self._fallback.__enter__()
            return
        self._task = task
        self._cancelling = task.cancelling()
        state = _TASK_STATE_DATA.get(weakref.ref(task)) if _TASK_STATE_DATA is not None else None
        self._outer = None if state is None else getattr(state, "cancel_scope", None)
        deadline = loop.time() + self._seconds
        last = _BUCKETS._last
        if last is not None and last[0]() is loop:  # an open bucket of this loop
            bucket = last[1].get(math.ceil(deadline / _Buckets.WIDTH))
            if bucket is not None:
                bucket.add(self)
                self._bucket = bucket
                return
        self._bucket = _BUCKETS.add(loop, deadline, self)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._task
        if _shielded(task, self._outer):
            # like anyio's cancel scopes: the cancellation waits for the shield to end
            self._bucket = _BUCKETS.add(loop, loop.time() + _Buckets.WIDTH, self)
            return
        self._fired = True
        task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._fallback is not None:
            return self._fallback.__exit__(exc_type, exc, tb)
        self._bucket.discard(self)
        if (
            self._fired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
        return None


call_timeout = _Timeout
"""``call_timeout(seconds)``: ``anyio.fail_after(seconds)``, cheap when thousands of calls
run at once (see ``_Timeout``; the class itself, so a call builds one object and nothing
more)."""


#: Tasks the controller cancelled on purpose (a poll overran its bound, or its object
#: was removed): their ``CancelledError`` ends the poll (see :func:`must_propagate`).
_STOPPING: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` so that :func:`must_propagate` lets the cancellation through.

    Like an anyio cancel scope, it waits while the task is inside a shielded scope.
    """
    _STOPPING.add(task)
    _cancel_unshielded(task)


def _cancel_unshielded(task: asyncio.Task[Any]) -> None:
    if task.done():
        return
    if _shielded(task, None):
        task.get_loop().call_later(_Buckets.WIDTH, _cancel_unshielded, task)
        return
    task.cancel()


def _anyio_scope(task: asyncio.Task[Any]) -> object:
    """The anyio cancel scope ``task`` is in (``None`` when none, or unknown)."""
    # (the weak dictionary's own dict, without its ``get`` frame: twice per poll)
    state = _TASK_STATE_DATA.get(weakref.ref(task)) if _TASK_STATE_DATA is not None else None
    return getattr(state, "cancel_scope", None)


def _shielded(task: asyncio.Task[Any], outer: object) -> bool:
    """Whether ``task`` is inside a shielded anyio scope entered below ``outer``."""
    scope = _anyio_scope(task)
    while scope is not None and scope is not outer:
        if getattr(scope, "_shield", False):
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False


def _task_states() -> Any:
    # anyio keeps each asyncio task's current cancel scope here; a timeout reads it only
    # to honour shields. Without it (another anyio version) shields are not honoured.
    try:
        from anyio._backends import _asyncio as backend
    except ImportError:  # pragma: no cover - anyio without its asyncio backend
        return None
    return getattr(backend, "_task_states", None)


_TASK_STATES = _task_states()
_TASK_STATE_DATA: dict[Any, Any] | None = getattr(_TASK_STATES, "data", None)


#: The running asyncio loop or ``None`` (asyncio's own C helper: no exception to catch
#: on the per-call path).
_asyncio_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop
_current_task = asyncio.current_task


class _Buckets:
    """Timeouts grouped by deadline (50 ms buckets), one timer per bucket and loop.

    A bucket stays open until its timer fires, even once its calls have finished:
    calls that finish one after the other would otherwise each open it again, with a
    new timer every time. The buckets of a loop go with the loop (weak keys), so a
    later loop that reuses its ``id`` never finds a bucket whose timer cannot fire.
    """

    WIDTH = 0.05

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int, set[_Timeout]]
        ] = weakref.WeakKeyDictionary()
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], dict[int, set[_Timeout]]] | None
        self._last = None

    def add(
        self, loop: asyncio.AbstractEventLoop, deadline: float, timeout: _Timeout
    ) -> set[_Timeout]:
        """Register ``timeout`` to fire at ``deadline`` (rounded up); return its bucket."""
        last = self._last
        if last is not None and last[0]() is loop:  # (the common case: one loop)
            buckets = last[1]
        else:
            found = self._loops.get(loop)
            if found is None:
                found = self._loops[loop] = {}
            buckets = found
            self._last = (weakref.ref(loop), buckets)
        slot = math.ceil(deadline / self.WIDTH)
        bucket = buckets.get(slot)
        if bucket is None:
            bucket = buckets[slot] = set()
            loop.call_at(slot * self.WIDTH, _expire, loop, buckets, slot)
        bucket.add(timeout)
        return bucket


def _expire(loop: asyncio.AbstractEventLoop, buckets: dict[int, set[_Timeout]], slot: int) -> None:
    for timeout in buckets.pop(slot, ()):
        timeout._fire(loop)


_BUCKETS = _Buckets()


def _check_report(report: object) -> None:
    if not isinstance(report, ScalerReport):
        raise ScalerError(
            f"scaler returned {type(report).__name__}, not a ScalerReport", transient=False
        )
    if not report.values:
        raise ScalerError("scaler returned no metric values", transient=False)
    for value in report.values:
        problem = validate_metric_value(value.name, value.value)
        if problem is not None:
            raise ScalerError(problem, transient=False)
