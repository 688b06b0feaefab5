"""Which controller process may act on an object: the ``Ownership`` protocol.

A :class:`~eventscale.runtime.controller.Controller` given an ownership asks it before
every reconcile (and again right before applying a change) whether this process holds
the object. :class:`~eventscale.runtime.sharding.LeaseSharding` implements it with
Kubernetes Leases; docs/runtime.md describes sharding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ("NotifyingOwnership", "Ownership")


class Ownership(Protocol):
    """Decides whether this process may act on an object (see :mod:`eventscale.runtime.sharding`)."""

    async def owns(self, key: str) -> bool:
        """Whether this process holds ``key`` now (and may scale it)."""
        ...

    async def release(self, key: str) -> None:
        """Give ``key`` up (the object was removed from this controller)."""
        ...


@runtime_checkable
class NotifyingOwnership(Ownership, Protocol):
    """An :class:`Ownership` that also announces the objects it gains (optional).

    The controller subscribes :meth:`~eventscale.runtime.controller.Controller.wake` while it runs, so an object whose
    lease this process just took is reconciled at once instead of at its next tick.
    """

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(key)`` whenever this process gains ``key``; returns an
        unsubscribe function."""
        ...
