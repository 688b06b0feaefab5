"""Kubernetes Events about the objects eventscale runs, as ``kubectl describe`` shows
them: core/v1 Events, repeats folded into one Event's ``count``, and a per-object
token bucket so a failing scaler cannot flood the API (client-go's event correlator:
a burst of 25, then one more every five minutes).

Recording never raises: an Event is a courtesy, and the API being down must not stop
scaling. Failures are logged (redacted by the client, bounded here).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import attrs

import eventscale.kube.client as client_module
from eventscale.errors import ConfigError, TargetNotFound

__all__ = ("EventRecorder",)

logger = logging.getLogger("eventscale.kube.events")

# Bounds on what one Event carries (the events.k8s.io API refuses a note over 1 KiB).
_MESSAGE: Final = 1024
_REASON: Final = 128
# Bounds on what the recorder remembers: objects it rate-limits, Events it may fold into.
_REMEMBERED: Final = 4096


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class _Bucket:
    tokens: float
    updated: float


@attrs.define
class _Written:
    namespace: str
    name: str
    count: int
    first: str


class EventRecorder:
    """Write core/v1 Events through ``client`` about the objects it is handed.

    ``component`` and ``instance`` become the Event's ``source`` (``kubectl describe``'s
    From column) and ``reportingComponent``/``reportingInstance``. ``clock`` gives wall
    time in seconds (timestamps and the token bucket). ``burst`` Events per object at
    most, refilled one per ``refill_seconds``; what the bucket refuses is counted in
    :attr:`dropped` and not sent. :attr:`failed` counts Events the API did not take.
    """

    def __init__(
        self,
        client: client_module.KubeClient,
        *,
        component: str = "eventscale",
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
        burst: int = 25,
        refill_seconds: float = 300.0,
    ) -> None:
        if burst < 1:
            raise ConfigError(f"burst must be >= 1, got {burst!r}", path="burst")
        if not refill_seconds > 0:
            raise ConfigError(
                f"refill_seconds must be > 0, got {refill_seconds!r}", path="refill_seconds"
            )
        self.client = client
        self.component = component
        self.instance = instance
        self.burst = burst
        self.refill_seconds = refill_seconds
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()
        self._written: OrderedDict[tuple[str, ...], _Written] = OrderedDict()
        # One lock per object: its Events are written one at a time (a repeat must
        # find the first Event written), different objects' Events at once.
        self._locks: weakref.WeakValueDictionary[tuple[str, ...], anyio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._nanos = 0
        self.dropped = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"EventRecorder(component={self.component!r}, instance={self.instance!r})"

    def _allow(self, key: tuple[str, ...], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > _REMEMBERED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            gained = max(0.0, now - bucket.updated) / self.refill_seconds
            bucket.tokens = min(float(self.burst), bucket.tokens + gained)
            bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    async def record(
        self, involved: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        """Record that ``reason`` happened to ``involved`` (the object: its apiVersion,
        kind and metadata name/namespace/uid/resourceVersion); ``type`` is ``Normal``
        or ``Warning``. The same object, reason and message again update the first
        Event's ``count`` and ``lastTimestamp``. Never raises."""
        try:
            await self._record(involved, type, reason, message)
        except Exception as exc:
            self.failed += 1
            logger.warning("cannot record event %s: %s", reason[:_REASON], str(exc)[:300])

    async def _record(
        self, involved: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        meta = involved.get("metadata") or {}
        ref = {
            "apiVersion": str(involved.get("apiVersion") or ""),
            "kind": str(involved.get("kind") or ""),
            "name": str(meta.get("name") or ""),
            "namespace": str(meta.get("namespace") or ""),
            "uid": str(meta.get("uid") or ""),
            "resourceVersion": str(meta.get("resourceVersion") or ""),
        }
        if not ref["name"]:
            raise ValueError("the involved object has no metadata.name")
        namespace = ref["namespace"] or "default"  # cluster-scoped objects' Events
        reason, message = reason[:_REASON], message[:_MESSAGE]
        owner = (ref["apiVersion"], ref["kind"], namespace, ref["name"], ref["uid"])
        lock = self._locks.get(owner)
        if lock is None:
            lock = self._locks[owner] = anyio.Lock()
        async with lock:
            now = self._clock()
            if not self._allow(owner, now):
                self.dropped += 1
                logger.debug(
                    "event %s on %s/%s dropped by the rate limit", reason, namespace, ref["name"]
                )
                return
            key = (*owner, type, reason, message)
            written = self._written.get(key)
            if written is not None:
                try:
                    await self._repeat(written, now)
                    self._written.move_to_end(key)
                    return
                except TargetNotFound:
                    del self._written[key]  # expired (Events live an hour): write anew
            # client-go's name: the object's and the time in nanoseconds (kept rising, so
            # two Events in one clock tick get two names).
            self._nanos = max(int(now * 1e9), self._nanos + 1)
            name = f"{ref['name']}.{self._nanos:x}"
            stamp = _stamp(now)
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in ref.items() if v},
                "reason": reason,
                "message": message,
                "type": type,
                "source": {"component": self.component}
                | ({"host": self.instance} if self.instance else {}),
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": self.component,
                "reportingInstance": self.instance or "",
            }
            await self.client.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
            self._written[key] = _Written(namespace, name, 1, stamp)
            while len(self._written) > _REMEMBERED:
                self._written.popitem(last=False)

    async def _repeat(self, written: _Written, now: float) -> None:
        patch = {"count": written.count + 1, "lastTimestamp": _stamp(now)}
        await self.client.request(
            "PATCH",
            f"/api/v1/namespaces/{written.namespace}/events/{written.name}",
            body=patch,
            content_type=client_module.MERGE_PATCH,
        )
        written.count += 1
