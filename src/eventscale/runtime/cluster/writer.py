"""Status and Kubernetes Events of watched objects, written only when they change.

:class:`StatusWriter` computes each dirty object's KEDA status
(:func:`~eventscale.runtime.cluster.keda.scaled_object_status`) and sends a merge patch
to its ``/status`` subresource only when it differs from the last one the API holds,
coalescing bursts: an object polled a thousand times without change costs no write. It
also drains the queued Kubernetes Events into the event recorder (rate-limited there).
Only the owner of an object (``--shard-leases``) writes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import attrs
from anyio.abc import TaskGroup

import eventscale.runtime.cluster.rules as rules
from eventscale.errors import TargetError, TargetNotFound
from eventscale.runtime.cluster.keda import (
    FINALIZER,
    Reason,
    StatusInputs,
    scaled_job_status,
    scaled_object_status,
    status_patch,
)
from eventscale.runtime.cluster.tracker import Tracker
from eventscale.spec import (
    ANNOTATION_PAUSED,
    ANNOTATION_PAUSED_REPLICAS,
    ANNOTATION_PAUSED_SCALE_IN,
    ANNOTATION_PAUSED_SCALE_OUT,
)

if TYPE_CHECKING:
    from eventscale.runtime.cluster.sources import Dependency

__all__ = ("Entry", "Owner", "StatusWriter", "transitions")

logger = logging.getLogger("eventscale.cluster")

#: Seconds a burst of changes is gathered before the writes go out.
COALESCE: Final = 0.05
#: Status writes and Events in flight at once.
CONCURRENCY: Final = 16
#: Fields a status write carries over from the API's status when nothing new is known.
_KEPT: Final = ("originalReplicaCount", "lastActiveTime")


@attrs.define(eq=False)
class Entry:
    """The reconciler's record of one ScaledObject or ScaledJob."""

    kind: str
    key: str
    doc: Mapping[str, Any]
    fingerprint: str | None = None
    conflict: str | None = None
    running: bool = False
    announce: tuple[str, ...] = ()  # trigger types whose KEDAScalersStarted is due
    finalizer_sent: Any = None  # the resourceVersion the finalizer was added to
    error: str | None = None
    error_message: str | None = None
    paused: bool = False
    was_paused: bool = False
    spec: Any = None
    metric_names: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    dependencies: frozenset[Dependency] = frozenset()
    written: dict[str, Any] | None = None


class Owner(Protocol):
    """What the writer reads of its reconciler."""

    entries: dict[tuple[str, str], Entry]
    tracker: Tracker
    client: Any

    async def owns(self, key: str) -> bool:
        """Whether this replica writes ``key``."""
        ...

    async def add_finalizer(self, entry: Entry) -> None:
        """Put KEDA's finalizer on ``entry``'s object."""
        ...


class StatusWriter:
    """Writes the status and Events of a cluster reconciler's objects."""

    def __init__(self, owner: Owner, recorder: Any) -> None:
        self.owner = owner
        self.recorder = recorder
        self.writes = 0  # status patches sent
        self._dirty: set[tuple[str, str]] = set()
        self._outbox: list[tuple[str, str, str, str, str]] = []
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None

    # ------------------------------------------------------------------ queueing

    def dirty(self, kind: str, key: str) -> None:
        """Recompute (and write, if changed) the status of ``kind`` ``key`` soon."""
        self._dirty.add((kind, key))
        self._wake.set()

    def event(self, entry: Entry, type_: str, reason: str, message: str) -> None:
        """Queue a Kubernetes Event on ``entry``'s object."""
        self._outbox.append((entry.kind, entry.key, type_, reason, message))
        self._wake.set()

    async def send_now(self, entry: Entry, type_: str, reason: str, message: str) -> None:
        """Record an Event now (before the object goes away)."""
        if self.recorder is not None:
            await self.recorder.record(rules.involved(entry.doc), type_, reason, message)

    def forget(self, kind: str, key: str) -> None:
        """Drop what is queued for an object that is gone."""
        self._dirty.discard((kind, key))

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` in the writer's task group (a delayed retry)."""
        if self._tg is not None:
            self._tg.start_soon(fn)

    @staticmethod
    def path(kind: str, key: str) -> str:
        """The API path of ScaledObject or ScaledJob ``key``."""
        namespace, _, name = key.partition("/")
        plural = "scaledobjects" if kind == "ScaledObject" else "scaledjobs"
        return f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/{plural}/{name}"

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Write until cancelled."""
        limiter = anyio.CapacityLimiter(CONCURRENCY)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    await anyio.sleep(COALESCE)
                    await self._drain(limiter)
            finally:
                self._tg = None

    async def _drain(self, limiter: anyio.CapacityLimiter) -> None:
        tracker = self.owner.tracker
        if tracker.pending:
            pending, tracker.pending = tracker.pending, []
            for ev in pending:
                kind = (
                    "ScaledObject"
                    if ("ScaledObject", ev.key) in self.owner.entries
                    else "ScaledJob"
                )
                self._outbox.append((kind, ev.key, ev.type, ev.reason, ev.message))
        dirty, self._dirty = self._dirty, set()
        outbox, self._outbox = self._outbox, []
        async with anyio.create_task_group() as tg:
            for kind, key in dirty:
                tg.start_soon(self._limited, limiter, self.flush, kind, key)
            for kind, key, type_, reason, message in outbox:
                tg.start_soon(
                    self._limited, limiter, self._record, kind, key, type_, reason, message
                )

    @staticmethod
    async def _limited(
        limiter: anyio.CapacityLimiter, fn: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        async with limiter:
            await fn(*args)

    async def _record(self, kind: str, key: str, type_: str, reason: str, message: str) -> None:
        entry = self.owner.entries.get((kind, key))
        if entry is None or self.recorder is None or not await self.owner.owns(key):
            return
        await self.recorder.record(rules.involved(entry.doc), type_, reason, message)

    # ------------------------------------------------------------------ status

    def wanted(self, entry: Entry) -> dict[str, Any]:
        """The status KEDA would show for ``entry`` now."""
        inputs = self.inputs(entry)
        if entry.kind == "ScaledObject":
            return scaled_object_status(inputs)
        return scaled_job_status(inputs)

    def inputs(self, entry: Entry) -> StatusInputs:
        """What is known of ``entry``, for the status functions."""
        doc = entry.doc
        spec_doc = doc.get("spec") or {}
        triggers = [t for t in spec_doc.get("triggers") or () if isinstance(t, Mapping)]
        ref = spec_doc.get("scaleTargetRef") or {}
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        observed = self.owner.tracker.objects.get(entry.key) if entry.running else None
        spec = entry.spec
        paused_replicas: int | None = None
        if spec is not None and entry.kind == "ScaledObject":
            paused_replicas = spec.paused_replicas
        paused = entry.paused if spec is not None else _annotated_pause(annotations)
        external, resource = entry.metric_names
        return StatusInputs(
            kind=entry.kind,
            error=entry.error,
            error_message=entry.error_message,
            active=observed.active if observed is not None else None,
            cooling_down=observed.cooling_down if observed is not None else False,
            fallback_configured=spec is not None and getattr(spec, "fallback", None) is not None,
            fallback_active=observed.fallback_active if observed is not None else False,
            paused=paused,
            was_paused=entry.was_paused,
            paused_replicas=paused_replicas,
            target_api_version=str(ref.get("apiVersion") or "apps/v1"),
            target_kind=str(ref.get("kind") or "Deployment"),
            original_replicas=observed.original_replicas if observed is not None else None,
            last_active_time=observed.last_active_time if observed is not None else None,
            trigger_types=[str(t.get("type")) for t in triggers if t.get("type")],
            authentication_names=[
                str(t["authenticationRef"]["name"])
                for t in triggers
                if isinstance(t.get("authenticationRef"), Mapping)
                and t["authenticationRef"].get("name")
            ],
            external_metric_names=external if entry.running else (),
            resource_metric_names=resource if entry.running else (),
            failures=dict(observed.failures) if observed is not None else {},
        )

    async def flush(self, kind: str, key: str) -> None:
        """Write the status of ``kind`` ``key`` if it changed (and this replica owns it)."""
        entry = self.owner.entries.get((kind, key))
        if entry is None or rules.is_deleting(entry.doc):
            return
        if FINALIZER not in rules.finalizers(entry.doc):
            version = (entry.doc.get("metadata") or {}).get("resourceVersion")
            if entry.finalizer_sent != version and await self.owner.owns(key):
                entry.finalizer_sent = version
                await self.owner.add_finalizer(entry)
        current = entry.written
        if current is None:
            status = entry.doc.get("status")
            current = dict(status) if isinstance(status, Mapping) else {}
        wanted = self.wanted(entry)
        for name in _KEPT:
            if name not in wanted and name in current:
                wanted[name] = current[name]
        patch = status_patch(current, wanted)
        if patch is None and not entry.announce:
            return
        if not await self.owner.owns(key):
            entry.written = None  # the owner writes; read its status when ours again
            return
        # Events follow what the status says (as KEDA's): only the owner sends them, and
        # a restart or a new owner does not repeat what the API's status already shows.
        if self.recorder is not None:
            involved = rules.involved(entry.doc)
            for trigger_type in entry.announce:
                await self.recorder.record(
                    involved, "Normal", Reason.SCALERS_STARTED, f"Scaler {trigger_type} is built"
                )
            for type_, reason, message in transitions(kind, current, wanted):
                await self.recorder.record(involved, type_, reason, message)
        entry.announce = ()
        if patch is None:
            return
        logger.debug("writing the status of %s %s: %s", kind, key, ", ".join(sorted(patch)))
        try:
            await self.owner.client.request(
                "PATCH",
                self.path(kind, key) + "/status",
                body={"status": patch},
                content_type="application/merge-patch+json",
            )
        except TargetNotFound:
            return  # deleted meanwhile: the watch says so next
        except TargetError as exc:
            logger.warning("writing the status of %s %s failed: %s", kind, key, exc)
            self.event(entry, "Warning", f"{kind}UpdateFailed", str(exc))

            async def retry() -> None:
                await anyio.sleep(5.0)
                self.dirty(kind, key)

            self.spawn(retry)
            return
        self.writes += 1
        merged = dict(current)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name == "health" and isinstance(merged.get(name), Mapping):
                health = {**merged[name], **value}
                merged[name] = {k: v for k, v in health.items() if v is not None}
            else:
                merged[name] = value
        entry.written = merged


def _condition(status: Mapping[str, Any], kind: str) -> tuple[str, str]:
    for c in status.get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == kind:
            return str(c.get("status") or ""), str(c.get("message") or "")
    return "", ""


def transitions(
    kind: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """The Events KEDA records when an object's status goes from ``before`` to ``after``:
    ready, check failed (again, when the reason changes), paused and unpaused."""
    events: list[tuple[str, str, str]] = []
    was, now = _condition(before, "Ready"), _condition(after, "Ready")
    if now[0] == "True" and was[0] != "True":
        events.append(("Normal", f"{kind}Ready", f"{kind} is ready for scaling"))
    elif now[0] == "False" and now != was:
        events.append(("Warning", f"{kind}CheckFailed", now[1]))
    was_paused, paused = _condition(before, "Paused")[0], _condition(after, "Paused")[0]
    if paused == "True" and was_paused != "True":
        events.append(("Normal", f"{kind}Paused", f"{kind} is paused"))
    elif paused != "True" and was_paused == "True":
        events.append(("Normal", f"{kind}Unpaused", f"pause annotation removed for {kind}"))
    return events


def _annotated_pause(annotations: Mapping[str, Any]) -> bool:
    if str(annotations.get(ANNOTATION_PAUSED, "false")).lower() not in ("", "false"):
        return True
    return any(
        a in annotations
        for a in (
            ANNOTATION_PAUSED_REPLICAS,
            ANNOTATION_PAUSED_SCALE_IN,
            ANNOTATION_PAUSED_SCALE_OUT,
        )
    )
