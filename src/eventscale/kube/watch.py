"""Keeping a local copy of one kind of object in step with the Kubernetes API: list,
then watch from the list's resourceVersion, as client-go's reflector does.

An :class:`Informer` yields what changed as :class:`WatchEvent` values and keeps
:attr:`Informer.cache` current. It resumes a dropped watch from the last
resourceVersion it saw (so a cut connection loses nothing), re-lists when the API has
compacted that version away (410 Gone) and yields the difference between the new list
and its cache, takes BOOKMARK events as fresher resourceVersions, and backs off with
jitter while the API fails. docs/targets/kubernetes.md ("Watching and events")
describes it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Final, NamedTuple

import anyio

import eventscale.kube.client as client_module
from eventscale.errors import ConfigError, TargetError

__all__ = ("SYNCED", "Informer", "WatchEvent")

logger = logging.getLogger("eventscale.kube.watch")

#: The event an :class:`Informer` yields after each complete list.
SYNCED: Final = "SYNCED"

# The most objects one list page may hold, and the most a list may hold in all.
_PAGE: Final = 500
_MAX_OBJECTS: Final = 200_000


class WatchEvent(NamedTuple):
    """One change: ``type`` is ``ADDED``, ``MODIFIED``, ``DELETED`` or ``SYNCED`` (a
    full list has been delivered; ``object`` is then ``{}``)."""

    type: str
    object: dict[str, Any]


class _Gone(Exception):
    """The resourceVersion to resume from is no longer available: list again."""


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """List and watch one resource (``api_version`` ``keda.sh/v1alpha1``, ``plural``
    ``scaledobjects``) in ``namespace`` (``None``: all namespaces; one informer per
    namespace to watch several), optionally only objects matching ``label_selector``.

    Iterate :meth:`events` (once) to run it. ``cache`` maps ``(namespace, name)`` to the
    latest object (namespace ``""`` for cluster-scoped kinds); ``synced`` is true once
    the first list has been delivered (read ``page_size`` objects a request);
    ``last_contact`` is the monotonic time of the
    last successful list or watch read (a liveness probe compares it with now: a watch
    sends at least a bookmark or ends every ``timeout_seconds``); ``last_error`` is the
    latest failure, ``None`` after a success. Errors are retried with a capped,
    jittered backoff (``backoff`` = first and longest delay, seconds); a permission
    error's message names the verb and the resource.
    """

    def __init__(
        self,
        client: client_module.KubeClient,
        api_version: str,
        plural: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        page_size: int = _PAGE,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not plural or "/" in plural:
            raise ConfigError(f"plural must be a resource name, got {plural!r}", path="plural")
        if timeout_seconds < 1:
            raise ConfigError(
                f"timeout_seconds must be >= 1, got {timeout_seconds!r}", path="timeout_seconds"
            )
        if page_size < 1:
            raise ConfigError(f"page_size must be >= 1, got {page_size!r}", path="page_size")
        if not 0 < backoff[0] <= backoff[1]:
            raise ConfigError(f"backoff must be 0 < first <= cap, got {backoff!r}", path="backoff")
        self.client = client
        self.api_version = api_version
        self.plural = plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.backoff = backoff
        self._clock = clock
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = False
        self.last_contact = clock()
        self.last_error: TargetError | None = None
        self.resource_version: str | None = None
        scope = f"/namespaces/{namespace}" if namespace else ""
        self.path = f"{client_module.api_prefix(api_version)}{scope}/{plural}"

    @property
    def cache(self) -> Mapping[tuple[str, str], dict[str, Any]]:
        """``(namespace, name)`` -> the latest object (a read-only view)."""
        return types.MappingProxyType(self._cache)

    def __repr__(self) -> str:
        return f"Informer({self.path!r}, synced={self.synced}, objects={len(self._cache)})"

    async def events(self) -> AsyncIterator[WatchEvent]:
        """List, then watch, forever: yield every change, and ``SYNCED`` after each
        complete list. Cancel the task (or close the iterator) to stop."""
        failures = 0
        must_list = True
        while True:
            try:
                if must_list:
                    for event in await self._relist():
                        yield event
                    must_list = False
                    self.synced = True
                    yield WatchEvent(SYNCED, {})
                opened = self._clock()
                async with contextlib.aclosing(self._watch()) as stream:
                    async for event in stream:
                        yield event
                self.last_error = None
                if self._clock() - opened >= 1.0:
                    failures = 0  # the server ended the watch on time: watch again at once
                else:  # ended at once (a proxy closing streams?): do not spin
                    failures += 1
                    await anyio.sleep(self._delay(failures))
            except _Gone:
                logger.info(
                    "%s: resourceVersion %s expired, listing again",
                    self.path,
                    self.resource_version,
                )
                must_list = True
            except TargetError as exc:
                failures += 1
                self.last_error = exc
                delay = self._delay(failures)
                logger.warning(
                    "%s: %s; retrying in %.1fs (failure %d)", self.path, exc, delay, failures
                )
                await anyio.sleep(delay)

    def _delay(self, failures: int) -> float:
        first, cap = self.backoff
        ceiling = min(cap, first * 2.0 ** min(failures - 1, 30))
        return ceiling * (0.5 + random.random() / 2)

    def _params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return params

    async def _relist(self) -> list[WatchEvent]:
        """List everything (page by page); return the difference against the cache and
        make the list the cache."""
        items: dict[tuple[str, str], dict[str, Any]] = {}
        params = {**self._params(), "limit": str(self.page_size)}
        while True:
            try:
                page = await self.client.request("GET", self.path, params=params)
            except TargetError as exc:
                if exc.status == 410 and "continue" in params:  # the continue token expired
                    items.clear()
                    params.pop("continue")
                    continue
                raise
            self.last_contact = self._clock()
            for obj in page.get("items") or []:
                if isinstance(obj, dict):
                    items[_key(obj)] = obj
            if len(items) > _MAX_OBJECTS:
                raise TargetError(f"list {self.path}: more than {_MAX_OBJECTS} objects")
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
            params["continue"] = str(token)
        # Items of a list have no kind/apiVersion of their own: give them theirs.
        kind = str(page.get("kind") or "").removesuffix("List")
        for obj in items.values():
            obj.setdefault("apiVersion", self.api_version)
            if kind:
                obj.setdefault("kind", kind)
        events: list[WatchEvent] = []
        for key, obj in items.items():
            old = self._cache.get(key)
            if old is None:
                events.append(WatchEvent("ADDED", obj))
            elif _version(old) != _version(obj):
                events.append(WatchEvent("MODIFIED", obj))
        events.extend(
            WatchEvent("DELETED", old) for k, old in self._cache.items() if k not in items
        )
        self._cache = items
        self.resource_version = str(meta.get("resourceVersion") or "") or None
        return events

    async def _watch(self) -> AsyncGenerator[WatchEvent, None]:
        """One watch request from the last resourceVersion, until the server ends it."""
        params = {
            **self._params(),
            "allowWatchBookmarks": "true",
            # Spread the reconnections of many informers, as client-go does.
            "timeoutSeconds": str(int(self.timeout_seconds * (1 + random.random()))),
        }
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        try:
            async with contextlib.aclosing(self.client.watch(self.path, params=params)) as stream:
                async for raw in stream:
                    self.last_contact = self._clock()
                    event = self._apply(raw)
                    if event is not None:
                        yield event
        except TargetError as exc:
            if exc.status == 410:
                raise _Gone from exc
            raise

    def _apply(self, raw: Mapping[str, Any]) -> WatchEvent | None:
        """Fold one watch event into the cache; the event to yield, if any."""
        kind = raw["type"]
        obj: dict[str, Any] = raw["object"]
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone
            message = str(obj.get("message") or obj.get("reason") or "watch error")
            raise TargetError(
                f"watch {self.path}: {message}", status=code if isinstance(code, int) else None
            )
        version = _version(obj)
        if kind == "BOOKMARK":
            if version:
                self.resource_version = version
            return None
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            logger.debug("%s: ignoring a %r watch event", self.path, kind)
            return None
        key = _key(obj)
        if version:
            self.resource_version = version
        if kind == "DELETED":
            return WatchEvent("DELETED", obj) if self._cache.pop(key, None) is not None else None
        old = self._cache.get(key)
        if old is not None and _version(old) == version:
            return None  # seen already (a resumed watch may repeat)
        self._cache[key] = obj
        return WatchEvent("ADDED" if old is None else "MODIFIED", obj)
