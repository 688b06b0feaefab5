"""What the controller's events tell about each object, in KEDA's terms.

A :class:`Tracker` is an :class:`~eventscale.runtime.observability.EventBus` hook: from
the poll, decision and scale events of each object it keeps what KEDA's status shows
(activity, fallback, failures per metric, the original replica count, the last active
time) and turns transitions into the Kubernetes Events KEDA's operator records
(:class:`KubeEvent`, with KEDA's reasons). It does no I/O: the cluster reconciler reads
the :class:`Observed` records to write status, and drains :attr:`Tracker.pending` into
an event recorder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from eventscale.runtime.cluster.keda import Reason
from eventscale.runtime.observability import Event, EventKind

__all__ = ("KubeEvent", "Observed", "Tracker")

#: The longest message an Event carries (the API allows 1 KiB in ``note``).
MAX_MESSAGE: Final = 1000


@attrs.frozen
class KubeEvent:
    """A Kubernetes Event to record on object ``key``: type, KEDA reason and message."""

    key: str
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@attrs.define
class Observed:
    """What the events told about one object since it was (re)built.

    ``last_active_time`` is the *published* time: set when the object turns active and
    when it turns inactive (the last active poll), not on every active poll, so a
    steadily active object costs no status write per poll.
    """

    kind: str = "ScaledObject"
    target: str = ""  # "apps/v1.Deployment ns/name", as KEDA's messages name it
    original_replicas: int | None = None
    active: bool | None = None
    cooling_down: bool = False
    fallback_active: bool = False
    last_active_time: float | None = None
    last_active_seen: float | None = None
    failures: dict[str, int] = attrs.field(factory=dict)
    active_triggers: tuple[str, ...] = ()

    @classmethod
    def from_status(cls, kind: str, status: Any) -> Observed:
        """What a KEDA ``status`` already shows (a restart, a new owner taking over), so
        the first status computed from it writes nothing new."""
        seen = cls(kind=kind)
        if not isinstance(status, Mapping):
            return seen
        conditions = {
            c.get("type"): c for c in status.get("conditions") or () if isinstance(c, Mapping)
        }
        active = conditions.get("Active") or {}
        seen.active = {"True": True, "False": False}.get(str(active.get("status")))
        seen.cooling_down = active.get("reason") == "ScalerCooldown"
        seen.fallback_active = (conditions.get("Fallback") or {}).get("status") == "True"
        original = status.get("originalReplicaCount")
        if isinstance(original, int) and not isinstance(original, bool):
            seen.original_replicas = original
        seen.last_active_time = _parse_time(status.get("lastActiveTime"))
        seen.last_active_seen = seen.last_active_time
        health = status.get("health")
        if isinstance(health, Mapping):
            for name, entry in health.items():
                count = entry.get("numberOfFailures") if isinstance(entry, Mapping) else None
                if isinstance(count, int) and not isinstance(count, bool):
                    seen.failures[str(name)] = count
        return seen


def _parse_time(value: Any) -> float | None:
    """An RFC 3339 time of the API (``2026-01-02T03:04:05Z``) as wall-clock seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_FOLLOWED: Final = frozenset({EventKind.POLL, EventKind.DECISION, EventKind.SCALE})


def _snapshot(seen: Observed) -> tuple[Any, ...]:
    """What of ``seen`` the status shows."""
    return (
        seen.original_replicas,
        seen.active,
        seen.cooling_down,
        seen.fallback_active,
        seen.last_active_time,
        tuple(seen.failures.items()),
    )


class Tracker:
    """Keeps an :class:`Observed` per tracked key from the controller's events.

    :param on_change: called with the key after an event that changed what its status
        shows or produced a Kubernetes Event (the reconciler schedules a status write).
    """

    def __init__(self, on_change: Callable[[str], None] | None = None) -> None:
        self.objects: dict[str, Observed] = {}
        self.pending: list[KubeEvent] = []
        self.on_change = on_change

    def track(self, key: str, observed: Observed) -> None:
        """Start (or restart, keeping nothing) following ``key``."""
        self.objects[key] = observed

    def forget(self, key: str) -> None:
        """Stop following ``key``."""
        self.objects.pop(key, None)

    def emit(self, key: str, type_: str, reason: str, message: str) -> None:
        """Queue a Kubernetes Event on ``key``."""
        self.pending.append(KubeEvent(key, type_, reason, message[:MAX_MESSAGE]))

    def __call__(self, event: Event) -> None:
        """The EventBus hook."""
        key = event.scaled_object
        seen = self.objects.get(key)
        if seen is None:
            return
        kind = event.kind
        if kind not in _FOLLOWED:
            return
        before, queued = _snapshot(seen), len(self.pending)
        if kind is EventKind.POLL:
            self._poll(key, seen, event)
        elif kind is EventKind.DECISION:
            self._decision(key, seen, event)
        else:
            self._scale(key, seen, event)
        # a steady object changes nothing here: no status to recompute
        if self.on_change is not None and (len(self.pending) > queued or _snapshot(seen) != before):
            self.on_change(key)

    def _poll(self, key: str, seen: Observed, event: Event) -> None:
        if seen.original_replicas is None and event.current_replicas is not None:
            seen.original_replicas = event.current_replicas
        active: list[str] = []
        for trig in event.triggers:
            metric = trig.metric_name or f"s{trig.index}-{trig.type}"
            if trig.error is not None:
                seen.failures[metric] = seen.failures.get(metric, 0) + 1
                self.emit(key, "Warning", Reason.SCALER_FAILED, trig.error)
            else:
                seen.failures[metric] = 0
                if trig.active:
                    active.append(trig.type)
        seen.active_triggers = tuple(active)

    def _decision(self, key: str, seen: Observed, event: Event) -> None:
        active = bool(event.active)
        was = seen.active
        seen.active = active
        seen.cooling_down = not active and event.rule == "cooldown"
        if active:
            seen.last_active_seen = event.time
            if not was:
                seen.last_active_time = event.time
        elif was:
            seen.last_active_time = seen.last_active_seen
        if seen.kind == "ScaledJob":
            if was is not None and was != active:
                reason = Reason.SCALED_JOB_ACTIVE if active else Reason.SCALED_JOB_INACTIVE
                word = "active" if active else "inactive"
                self.emit(key, "Normal", reason, f"ScaledJob is {word}")
            return
        fallback = event.rule == "fallback"
        if fallback != seen.fallback_active:
            seen.fallback_active = fallback
            if fallback:
                self.emit(
                    key,
                    "Normal",
                    Reason.SCALED_OBJECT_FALLBACK_ACTIVATED,
                    "ScaledObject fallback is active",
                )
            else:
                self.emit(
                    key,
                    "Normal",
                    Reason.SCALED_OBJECT_FALLBACK_DEACTIVATED,
                    "ScaledObject fallback is no longer active",
                )

    def _scale(self, key: str, seen: Observed, event: Event) -> None:
        before, after = event.from_replicas or 0, event.to_replicas or 0
        if seen.kind == "ScaledJob":
            if after > before:
                self.emit(key, "Normal", Reason.JOBS_CREATED, f"Created {after - before} jobs")
            return
        if before == 0 and after > 0:
            cause = ";".join(seen.active_triggers) or "activation"
            self.emit(
                key,
                "Normal",
                Reason.SCALE_TARGET_ACTIVATED,
                f"Scaled {seen.target} from {before} to {after}, triggered by {cause}",
            )
        elif after == 0 and before > 0:
            self.emit(
                key,
                "Normal",
                Reason.SCALE_TARGET_DEACTIVATED,
                f"Deactivated {seen.target} from {before} to {after}",
            )
