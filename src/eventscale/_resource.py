"""The one closeable base: ``async with`` around :meth:`AsyncResource.aclose`.

The same contract as :class:`anyio.abc.AsyncResource` (entering returns the object,
leaving awaits ``aclose()``), defined here so that the bases built on it
(:class:`~eventscale.scalers.ScalerBase`, :class:`~eventscale.targets.TargetBase`)
do not make ``import eventscale`` load anyio. Every closeable object in eventscale is
closed by a coroutine named ``aclose``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from types import TracebackType
from typing import Any, Self

__all__ = ("AsyncResource", "AsyncService")


class AsyncResource(metaclass=ABCMeta):
    """An object that holds resources until :meth:`aclose` is awaited."""

    __slots__ = ()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abstractmethod
    async def aclose(self) -> None:
        """Release every resource the object holds (safe to call more than once)."""


class AsyncService(AsyncResource):
    """A server: ``async with`` starts it with its defaults (unless already started)
    and closes it on the way out."""

    __slots__ = ()

    @property
    @abstractmethod
    def started(self) -> bool:
        """Whether :meth:`start` has run and :meth:`aclose` has not."""

    @abstractmethod
    async def start(self) -> Any:
        """Start serving (with every argument at its default when entered by ``async with``)."""

    async def __aenter__(self) -> Self:
        if not self.started:
            await self.start()
        return self
