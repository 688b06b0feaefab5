"""Liveness and readiness: named checks behind ``/healthz`` and ``/readyz``.

A :class:`Health` holds named checks. Each check is a callable answering ``True``
(passing), ``False`` (failing), or ``(passing, message)``; it may be a coroutine
function. A check that raises fails with the exception's (redacted) text. Whatever
runs the controller registers what it knows::

    health = Health()
    health.add_check("informer", ready=lambda: informer.synced,
                     live=lambda: time.monotonic() - informer.last_contact < 120)

:func:`controller_checks` adds the checks of a controller on manifest files: ready
once every object has had its first reconcile, live while the controller runs.
:class:`~eventscale.runtime.metrics_server.MetricsServer` serves both on HTTP the way
the Kubernetes API server does (``200 ok`` or ``503`` naming the failing checks;
``?verbose`` lists every check).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from eventscale.redaction import bound_message, redact_text

if TYPE_CHECKING:
    from eventscale.runtime.controller import Controller

__all__ = (
    "Check",
    "CheckResult",
    "ControllerChecks",
    "Health",
    "HealthReport",
    "controller_checks",
)

#: What a check answers: passing or not, optionally with a message.
CheckResult = bool | tuple[bool, str]
#: A check: a callable (or coroutine function) without arguments.
Check = Callable[[], CheckResult | Awaitable[CheckResult]]


@attrs.frozen
class HealthReport:
    """The outcome of one probe: ``ok``, and each check's name, result and message."""

    ok: bool
    checks: tuple[tuple[str, bool, str], ...]

    def render(self, *, verbose: bool = False) -> str:
        """The body a probe answers: ``ok``, or the failing checks (all with ``verbose``)."""
        lines = []
        for name, passed, message in self.checks:
            if passed and not verbose:
                continue
            mark = "+" if passed else "-"
            detail = f": {message}" if message else ""
            lines.append(f"[{mark}]{name} {'ok' if passed else 'failed'}{detail}")
        lines.append("ok" if self.ok else "failed")
        return "\n".join(lines) + "\n"


class Health:
    """Named liveness and readiness checks; the probes run every check each time."""

    def __init__(self) -> None:
        self._ready: dict[str, Check] = {}
        self._live: dict[str, Check] = {}

    def add_check(
        self, name: str, *, ready: Check | None = None, live: Check | None = None
    ) -> None:
        """Register ``ready`` and/or ``live`` under ``name`` (replacing a check of that name)."""
        if ready is None and live is None:
            raise ValueError("add_check needs ready=, live= or both")
        if ready is not None:
            self._ready[name] = ready
        if live is not None:
            self._live[name] = live

    def remove_check(self, name: str) -> None:
        """Forget both checks named ``name`` (nothing happens when there is none)."""
        self._ready.pop(name, None)
        self._live.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        """Every check's name, readiness and liveness together, sorted."""
        return tuple(sorted({*self._ready, *self._live}))

    async def ready(self) -> HealthReport:
        """Run the readiness checks (passing when there is none)."""
        return await _run(self._ready)

    async def live(self) -> HealthReport:
        """Run the liveness checks (passing when there is none)."""
        return await _run(self._live)


async def _run(checks: dict[str, Check]) -> HealthReport:
    results = []
    for name, check in tuple(checks.items()):
        try:
            answer: Any = check()
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            results.append(
                (name, False, bound_message(redact_text(f"{type(exc).__name__}: {exc}")))
            )
            continue
        if isinstance(answer, tuple):
            passed, message = bool(answer[0]), str(answer[1])
        else:
            passed, message = bool(answer), ""
        results.append((name, passed, bound_message(message) if message else ""))
    return HealthReport(ok=all(passed for _, passed, _ in results), checks=tuple(results))


class ControllerChecks:
    """The checks of a controller on manifest files (see :func:`controller_checks`).

    ``running`` is set by whoever runs the controller, most simply with
    ``with checks.running_while(): ...`` inside the controller's ``async with``.
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.running = False

    @contextlib.contextmanager
    def running_while(self) -> Iterator[None]:
        """Live (and possibly ready) for the duration of the ``with`` block."""
        self.running = True
        try:
            yield
        finally:
            self.running = False

    def ready(self) -> CheckResult:
        """Every object had its first reconcile (or is another replica's)."""
        if not self.running:
            return False, "the controller is not running"
        controller = self.controller
        waiting = []
        for key in controller:
            status = controller.status(key)
            if status.polls == 0 and status.last_error is None and status.owned:
                waiting.append(key)
        if waiting:
            shown = ", ".join(waiting[:5]) + (" ..." if len(waiting) > 5 else "")
            return False, f"{len(waiting)} object(s) not reconciled yet: {shown}"
        return True, f"{len(controller)} object(s) reconciled"

    def live(self) -> CheckResult:
        """The controller runs."""
        return (True, "running") if self.running else (False, "the controller is not running")


def controller_checks(
    health: Health, controller: Controller, *, name: str = "controller"
) -> ControllerChecks:
    """Add the checks of a controller on manifest files to ``health`` under ``name``.

    Ready once every object the controller holds has had its first reconcile (or
    belongs to another replica under ``--shard-leases``); objects added later (a
    manifest reloaded) are waited for the same way. Live while the returned object's
    ``running`` is set (:meth:`ControllerChecks.running_while`).
    """
    checks = ControllerChecks(controller)
    health.add_check(name, ready=checks.ready, live=checks.live)
    return checks
