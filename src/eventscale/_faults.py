"""Fault injection shared by the in-memory targets (``MemoryTarget``, ``MemoryJobTarget``)."""

from __future__ import annotations

from eventscale.errors import TargetError

__all__ = ("InjectedFailure",)


class InjectedFailure:
    """An error the next calls raise, every call or a number of times."""

    def __init__(self) -> None:
        self._error: TargetError | None = None
        self._left: int | None = None

    def arm(self, error: TargetError, times: int | None) -> None:
        """Raise ``error`` on the next ``times`` checks (``None``: until :meth:`clear`)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        self._error = error
        self._left = times

    def clear(self) -> None:
        """Stop failing."""
        self._error = None
        self._left = None

    def check(self) -> None:
        """Raise the armed error, if any, counting the call."""
        failure = self._error
        if failure is None:
            return
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self.clear()
        # A fresh instance each time: a raised exception carries its traceback along.
        raise type(failure)(failure.message, target=failure.target, status=failure.status)
