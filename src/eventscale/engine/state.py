"""The engine's memory between decisions: plain frozen data that round-trips through JSON.

A controller keeps one :class:`ScalingState` per ScaledObject, passes it to
:func:`~eventscale.engine.decide` and stores the state it gets back. Persisting it
(``to_json``) lets a restarted controller resume stabilization windows, cooldown and
fallback counts instead of starting over.

All times are seconds on the clock the caller passes as ``now``. Use the same clock for
the whole life of a state; to survive a process restart that clock must be wall time
(``time.time()``), since a monotonic clock restarts with the process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from eventscale.errors import ConfigError

__all__ = ("STATE_VERSION", "ScalingState")

#: Version of the JSON layout written by :meth:`ScalingState.to_dict`.
STATE_VERSION: Final = 1


@attrs.frozen
class ScalingState:
    """What the engine remembers about one scaled object.

    ``created_at``: when the object was first seen (``initialCooldownPeriod`` counts
    from here); ``None`` until the first decision, which sets it to ``now``.
    ``last_active``: the last time any trigger was active (or forced active, or in
    fallback); ``None`` if never. ``recommendations``: ``(time, raw replicas)`` inside
    the longest stabilization window. ``scale_events``: ``(time, signed change)``
    inside the longest policy period. ``failures``: ``(trigger index, consecutive
    failures)`` for each trigger whose last reads failed.
    """

    created_at: float | None = None
    last_active: float | None = None
    recommendations: tuple[tuple[float, int], ...] = ()
    scale_events: tuple[tuple[float, int], ...] = ()
    failures: tuple[tuple[int, int], ...] = ()

    @classmethod
    def new(cls, created_at: float | None = None) -> ScalingState:
        """A fresh state; ``created_at`` is the object's creation time if known."""
        return cls(created_at=created_at)

    def failure_count(self, trigger_index: int) -> int:
        """Consecutive failed reads of trigger ``trigger_index`` (0 when healthy)."""
        for index, count in self.failures:
            if index == trigger_index:
                return count
        return 0

    # -- serialization -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (lists, numbers, ``None``)."""
        return {
            "version": STATE_VERSION,
            "created_at": self.created_at,
            "last_active": self.last_active,
            "recommendations": [[t, r] for t, r in self.recommendations],
            "scale_events": [[t, c] for t, c in self.scale_events],
            "failures": [[i, n] for i, n in self.failures],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingState:
        """Rebuild a state written by :meth:`to_dict`.

        :raises ConfigError: unknown version or a malformed field (the path names it).
        """
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ConfigError(f"unsupported state version {version!r}", path="state.version")
        return cls(
            created_at=_opt_time(data.get("created_at"), "state.created_at"),
            last_active=_opt_time(data.get("last_active"), "state.last_active"),
            recommendations=_pairs(data.get("recommendations", ()), "state.recommendations"),
            scale_events=_pairs(data.get("scale_events", ()), "state.scale_events"),
            failures=_int_pairs(data.get("failures", ()), "state.failures"),
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScalingState:
        """Rebuild a state from :meth:`to_json` text.

        :raises ConfigError: invalid JSON or a malformed field.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"invalid JSON: {exc}", path="state") from None
        if not isinstance(data, Mapping):
            raise ConfigError("must be a JSON object", path="state")
        return cls.from_dict(data)


def _opt_time(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"must be a finite number or null, got {value!r}", path=path)
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pairs(value: Any, path: str) -> tuple[tuple[float, int], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError("must be a list of [time, count] pairs", path=path)
    out: list[tuple[float, int]] = []
    for i, item in enumerate(value):
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not _is_int(item[1])
        ):
            raise ConfigError("must be a [time, count] pair", path=f"{path}[{i}]")
        when = _opt_time(item[0], f"{path}[{i}][0]")
        if when is None:
            raise ConfigError("time must not be null", path=f"{path}[{i}][0]")
        out.append((when, int(item[1])))
    return tuple(out)


def _int_pairs(value: Any, path: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError("must be a list of [index, count] pairs", path=path)
    out: list[tuple[int, int]] = []
    for i, item in enumerate(value):
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not _is_int(item[0])
            or not _is_int(item[1])
            or item[0] < 0
            or item[1] < 0
        ):
            raise ConfigError(
                "must be an [index, count] pair of integers >= 0", path=f"{path}[{i}]"
            )
        out.append((int(item[0]), int(item[1])))
    return tuple(out)
