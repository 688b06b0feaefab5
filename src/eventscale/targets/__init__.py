"""Targets are where a decision lands: the ``Target`` protocol.

A target reads and writes one workload's replica count. Backends: in-memory
(``eventscale.testing.MemoryTarget``), Kubernetes (any resource with a ``/scale``
subresource) and Docker (a labelled set of containers).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from anyio.abc import AsyncResource

__all__ = ("Target", "TargetBase")


@runtime_checkable
class Target(Protocol):
    """Reads and writes a workload's replica count.

    :meth:`get_replicas` returns the desired count the target holds now.
    :meth:`set_replicas` asks for ``replicas``; it returns once the request is
    accepted (not once the replicas are running). ``reason`` is why (the engine's
    decision reason); a target may record or log it, or ignore it, but must accept it.

    Both raise :class:`~eventscale.errors.TargetNotFound` when the workload does not
    exist and :class:`~eventscale.errors.TargetError` for any other failure.
    """

    async def get_replicas(self) -> int:
        """The replica count the target holds now."""
        ...

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        """Ask for ``replicas``; ``reason`` says why (it may be ignored)."""
        ...

    async def aclose(self) -> None:
        """Release every resource the target holds."""
        ...


class TargetBase(AsyncResource):
    """Optional base class: ``async with`` around :meth:`aclose` (from
    :class:`anyio.abc.AsyncResource`), and an :meth:`aclose` that does nothing."""

    async def aclose(self) -> None:
        """Release resources (nothing by default)."""
