"""The live view of ``eventscale run`` on a terminal: a table and the recent events.

Each object is a row with KEDA's condition columns (READY, ACTIVE, FALLBACK, PAUSED, as
``kubectl get scaledobject`` shows them) beside its replicas, metrics and the last
decision's reason. Below the table the last scale actions, target errors, refused
edits and reloads stay on screen with their time and reason until newer ones push
them out, so a scale event is still readable long after the redraw that followed it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

import attrs

from eventscale.cli._common import tidy_reason
from eventscale.cli._output import Writable, fmt, table
from eventscale.runtime.observability import Event, EventKind

__all__ = ("HEADER", "LiveView", "Row")

HEADER = (
    "OBJECT",
    "KIND",
    "READY",
    "ACTIVE",
    "FALLBACK",
    "PAUSED",
    "REPLICAS",
    "DESIRED",
    "METRICS",
    "REASON",
)

#: How many recent events stay under the table.
RECENT = 10

_PAUSED_RULES = frozenset({"paused", "paused-replicas"})


@attrs.define
class Row:
    """One object's line of the table (cells as shown)."""

    key: str
    kind: str
    ready: str = "-"
    active: str = "-"
    fallback: str = "-"
    paused: str = "-"
    replicas: str = "?"
    desired: str = "?"
    metrics: str = "-"
    reason: str = "starting"
    trigger_errors: bool = False

    def cells(self) -> list[str]:
        """The cells in :data:`HEADER` order."""
        return [
            self.key,
            self.kind,
            self.ready,
            self.active,
            self.fallback,
            self.paused,
            self.replicas,
            self.desired,
            self.metrics,
            self.reason,
        ]


class LiveView:
    """Rows and recent events, updated from the controller's events.

    :param kind_of: an object's kind (``ScaledObject`` or ``ScaledJob``) by key.
    :param clock: wall-clock seconds for the event times shown.
    """

    def __init__(
        self, kind_of: Callable[[str], str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.kind_of = kind_of
        self.clock = clock
        self.rows: dict[str, Row] = {}
        self.recent: deque[str] = deque(maxlen=RECENT)

    def add(self, key: str) -> Row:
        """The row of ``key`` (created when missing)."""
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(key, self.kind_of(key))
        return row

    def __call__(self, event: Event) -> None:
        """Update the view from one event."""
        kind = event.kind
        key = event.scaled_object
        if kind is EventKind.CONFIG_ERROR:
            self._remember(event, f"{key}: edit refused, the running version stays: {event.error}")
            return
        if kind is EventKind.RELOAD:
            self._remember(event, f"manifests reloaded: {event.reason}")
            return
        if kind is EventKind.OBJECT_REMOVED:
            self.rows.pop(key, None)
            return
        row = self.add(key)
        if kind is EventKind.OBJECT_ADDED:
            row.kind = self.kind_of(key)
        elif kind is EventKind.POLL:
            row.metrics = ", ".join(
                f"{t.name or t.index}={'error' if t.error else fmt(t.value)}"
                for t in event.triggers
            )
            row.trigger_errors = any(t.error is not None for t in event.triggers)
            if event.current_replicas is not None:
                row.replicas = str(event.current_replicas)
        elif kind is EventKind.DECISION:
            self._decided(row, event)
        elif kind is EventKind.SCALE:
            row.replicas = str(event.to_replicas)
            self._remember(
                event,
                f"{key} scaled {event.from_replicas} -> {event.to_replicas}: "
                f"{tidy_reason(event.reason or '')}",
            )
        elif kind is EventKind.TARGET_ERROR:
            row.ready = "False"
            row.reason = f"target error: {event.error}"
            self._remember(event, f"{key} target error: {event.error}")

    def _decided(self, row: Row, event: Event) -> None:
        row.desired = str(event.desired_replicas)
        row.reason = tidy_reason(event.reason or "")
        active = bool(event.active)
        row.active = str(active)
        row.paused = str((event.rule or "") in _PAUSED_RULES)
        if row.kind == "ScaledObject":
            row.fallback = str(bool(event.fallback))
        # KEDA's Ready: False when the triggers fail and nothing stands in for them,
        # Unknown when some fail while others keep the object active; fallback
        # replicas stand in for failing triggers (KEDA then counts them active).
        if not row.trigger_errors or event.fallback:
            row.ready = "True"
        elif active:
            row.ready = "Unknown"
        else:
            row.ready = "False"

    def _remember(self, event: Event, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        self.recent.append(f"{stamp}  {text}")

    def render(self, out: Writable, title: str, notes: Mapping[str, str] | None = None) -> None:
        """Clear the screen and draw the title, the table and the recent events.

        ``notes`` replaces the reason of the rows it names (``owned by another replica``).
        """
        out.write("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S") + f"  {title}\n\n")
        rows = []
        for key in sorted(self.rows):
            cells = self.rows[key].cells()
            if notes and key in notes:
                cells[-1] = notes[key]
            rows.append(cells)
        table([list(HEADER), *rows], out)
        if self.recent:
            out.write("\nRecent events:\n")
            for line in self.recent:
                out.write(f"  {line}\n")
        out.flush()
