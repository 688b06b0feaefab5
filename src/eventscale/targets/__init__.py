"""Targets are where a decision lands: the ``Target`` protocol.

A target reads and writes one workload's replica count. Backends: in-memory
(``eventscale.testing.MemoryTarget``), Kubernetes (any resource with a ``/scale``
subresource) and Docker (a labelled set of containers).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ("Target", "TargetBase")


@runtime_checkable
class Target(Protocol):
    """Reads and writes a workload's replica count.

    :meth:`get_replicas` returns the desired count the target holds now.
    :meth:`set_replicas` asks for ``replicas``; it returns once the request is
    accepted (not once the replicas are running).

    Both raise :class:`~eventscale.errors.TargetNotFound` when the workload does not
    exist and :class:`~eventscale.errors.TargetError` for any other failure.
    """

    async def get_replicas(self) -> int:
        """The replica count the target holds now."""
        ...

    async def set_replicas(self, replicas: int) -> None:
        """Ask for ``replicas``."""
        ...

    async def aclose(self) -> None:
        """Release every resource the target holds."""
        ...


class TargetBase:
    """Optional base class: async context manager support around :meth:`aclose`."""

    async def aclose(self) -> None:
        """Release resources (nothing by default)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
