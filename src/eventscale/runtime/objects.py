"""What the controller runs and what it knows of each object.

:class:`Reconcilable` is the shape of an object the
:class:`~eventscale.runtime.controller.Controller` runs (a ScaledObject, a ScaledJob or
your own), :class:`ReconcileReport` what it reads from each reconcile, and
:class:`ObjectStatus` its view of one object after the last reconcile. They live here,
below the controller and its scheduling, so both import them one way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs

from eventscale.runtime.observability import EventBus, TriggerResult
from eventscale.scalers import Scaler

__all__ = ("ObjectStatus", "ReconcileReport", "Reconcilable")


class _Decision(Protocol):
    @property
    def is_active(self) -> bool: ...


class ReconcileReport(Protocol):
    """What the controller reads from a reconcile: errors and activity."""

    @property
    def target_error(self) -> str | None:
        """Why the target could not be read or written, if it could not."""
        ...

    @property
    def triggers(self) -> Sequence[TriggerResult]:
        """Each trigger's outcome."""
        ...

    @property
    def decision(self) -> _Decision:
        """The decision (its ``is_active`` is read)."""
        ...


class _PollingSpec(Protocol):
    @property
    def polling_interval(self) -> float: ...


class Reconcilable(Protocol):
    """What the controller runs: a :class:`~eventscale.runtime.scaled_object.ScaledObject`, a
    :class:`~eventscale.jobs.ScaledJob`, or any object of this shape."""

    events: EventBus | None
    state: Any

    @property
    def key(self) -> str:
        """``namespace/name``."""
        ...

    @property
    def spec(self) -> _PollingSpec:
        """The spec (its ``polling_interval`` is read)."""
        ...

    @property
    def scalers(self) -> Sequence[Scaler]:
        """The scalers (push-capable ones wake the loop)."""
        ...

    @property
    def target(self) -> Any:
        """The target (closed when no longer used)."""
        ...

    async def reconcile(
        self,
        *,
        lag: float | None = None,
        guard: Callable[[], Awaitable[bool]] | None = None,
    ) -> ReconcileReport:
        """Poll, decide and apply once; await ``guard`` right before changing anything."""
        ...

    async def aclose(self) -> None:
        """Close scalers and target."""
        ...


@attrs.define
class ObjectStatus:
    """The controller's view of one object after its last reconcile.

    Plain fields updated in place (no report is kept per tick): ``polls`` counts
    finished reconciles, ``active`` is the last decision's activity, ``last_error`` the
    first trigger or target error of the last reconcile (``None`` when it was clean),
    ``last_lag`` how late it ran, ``owned`` whether this process holds the object.
    """

    key: str
    polls: int = 0
    active: bool = False
    last_error: str | None = None
    last_lag: float | None = None
    owned: bool = True
