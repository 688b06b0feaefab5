"""Run in a cluster as KEDA's operator does: watch KEDA's objects and reconcile them.

:class:`ClusterReconciler` lists and watches ScaledObjects, ScaledJobs,
(Cluster)TriggerAuthentications, Secrets, ConfigMaps and HPAs through
:class:`~eventscale.kube.watch.Informer` s, builds each ScaledObject and ScaledJob
through the manifest and authentication code (Secrets and TriggerAuthentications read
from the watch caches), and adds, updates and removes it in a
:class:`~eventscale.runtime.controller.Controller` at once. A changed Secret or
TriggerAuthentication rebuilds only the objects that read it. An invalid object is
refused with ``Ready=False`` and the field path of its error, as is one whose target is
already scaled by another ScaledObject or an HPA (KEDA's webhook rules); the others are
untouched. Status and Kubernetes Events are written by :mod:`.writer`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import eventscale.runtime.cluster.building as building
import eventscale.runtime.cluster.finalizing as finalizing
import eventscale.runtime.cluster.rules as rules
from eventscale.errors import ConfigError, EventscaleError
from eventscale.runtime.cluster.keda import FINALIZER, gvk_string
from eventscale.runtime.cluster.sources import Dependency
from eventscale.runtime.cluster.tracker import Observed, Tracker
from eventscale.runtime.cluster.writer import Entry, StatusWriter
from eventscale.runtime.controller import Controller
from eventscale.runtime.objects import Reconcilable
from eventscale.runtime.ownership import Ownership

__all__ = ("KEDA_API", "ClusterReconciler", "InformerLike", "WatchedKind")

logger = logging.getLogger("eventscale.cluster")

#: Where KEDA's kinds live.
KEDA_API: Final = "keda.sh/v1alpha1"


@attrs.frozen
class WatchedKind:
    """One kind the reconciler watches: its API version, plural and whether it is
    namespaced, and whether the ``--selector`` applies to it."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True
    selected: bool = False


KINDS: Final = (
    WatchedKind("ScaledObject", KEDA_API, "scaledobjects", selected=True),
    WatchedKind("ScaledJob", KEDA_API, "scaledjobs", selected=True),
    WatchedKind("TriggerAuthentication", KEDA_API, "triggerauthentications"),
    WatchedKind("ClusterTriggerAuthentication", KEDA_API, "clustertriggerauthentications", False),
    WatchedKind("Secret", "v1", "secrets"),
    WatchedKind("ConfigMap", "v1", "configmaps"),
    WatchedKind("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers"),
)
_SCALED: Final = ("ScaledObject", "ScaledJob")


class _WatchEvent(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def object(self) -> dict[str, Any]: ...


class InformerLike(Protocol):
    """What the reconciler needs of an informer (:class:`eventscale.kube.watch.Informer`)."""

    @property
    def cache(self) -> Mapping[tuple[str, str], dict[str, Any]]:
        """``(namespace, name)`` -> the object."""
        ...

    @property
    def synced(self) -> bool:
        """Whether a full list has been read."""
        ...

    @property
    def last_contact(self) -> float:
        """Monotonic time of the last successful list or watch read."""
        ...

    def events(self) -> AsyncIterator[_WatchEvent]:
        """List, then watch: ADDED/MODIFIED/DELETED, SYNCED after each full list."""
        ...


InformerFactory = Callable[..., InformerLike]


def _default_informer(client: Any, api_version: str, plural: str, **kwargs: Any) -> InformerLike:
    from eventscale.kube.watch import Informer

    informer: InformerLike = Informer(client, api_version, plural, **kwargs)
    return informer


class ClusterReconciler:
    """Keeps a :class:`Controller` in step with KEDA's objects in a cluster.

    Run :meth:`run` in a task beside the controller (``async with`` the controller
    first). :meth:`ready` and :meth:`live` answer readiness and liveness probes.

    :param client: a :class:`~eventscale.kube.KubeClient`.
    :param controller: where the objects run.
    :param namespaces: the namespaces watched (``None``: all).
    :param selector: a label selector for ScaledObjects and ScaledJobs.
    :param recorder: an :class:`~eventscale.kube.events.EventRecorder` (``None``: no
        Kubernetes Events).
    :param ownership: the controller's ownership (``--shard-leases``): only the owner of
        an object writes its status, finalizer and events.
    :param cluster_namespace: where ClusterTriggerAuthentications' Secrets live
        (KEDA's ``KEDA_CLUSTER_OBJECT_NAMESPACE``).
    :param env: the environment of ``...FromEnv`` parameters, below the scale target
        container's own.
    :param make_target / make_job_target: build a ScaledObject's target or a
        ScaledJob's job backend from its spec (Kubernetes ones by default).
    :param workers: objects built at once.
    :param stuck_after: seconds without a read on a watch after which :meth:`live`
        says no.
    """

    def __init__(
        self,
        client: Any,
        controller: Controller,
        *,
        namespaces: Sequence[str] | None = None,
        selector: str | None = None,
        recorder: Any = None,
        ownership: Ownership | None = None,
        cluster_namespace: str = "keda",
        env: Mapping[str, str] | None = None,
        make_target: Callable[[Any], Any] | None = None,
        make_job_target: Callable[[Any], Any] | None = None,
        informer: InformerFactory = _default_informer,
        workers: int = 8,
        stuck_after: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.controller = controller
        self.namespaces = tuple(dict.fromkeys(namespaces)) if namespaces else None
        self.selector = selector or None
        self.ownership = ownership
        self.cluster_namespace = cluster_namespace
        self.env = dict(env or {})
        self.make_target = make_target or self._kubernetes_target
        self.make_job_target = make_job_target or self._kubernetes_job_target
        self.workers = max(1, workers)
        self.stuck_after = stuck_after
        self.clock = clock
        self.entries: dict[tuple[str, str], Entry] = {}
        self.tracker = Tracker(self._changed)
        self.writer = StatusWriter(self, recorder)
        # The watches hold a connection each for minutes: on a client of their own they
        # leave the request client's connection pool to status writes, Events and polls.
        self.watch_client = _own_client(client)
        self._informers: dict[str, list[InformerLike]] = {}
        for watched in KINDS:
            self._informers[watched.kind] = [
                informer(
                    self.watch_client,
                    watched.api_version,
                    watched.plural,
                    namespace=ns,
                    label_selector=self.selector if watched.selected else None,
                )
                for ns in self._namespaces_for(watched)
            ]
        self._dependents: dict[Dependency, set[tuple[str, str]]] = {}
        # ScaledObjects by (namespace, scale target), for KEDA's one-owner rule
        self._targets: dict[str, tuple[str, tuple[str, str]]] = {}
        self._by_target: dict[tuple[str, tuple[str, str]], set[str]] = {}
        self._queued: set[tuple[str, str]] = set()
        self._forced: set[tuple[str, str]] = set()
        self._busy: set[tuple[str, str]] = set()
        self._again: set[tuple[str, str]] = set()
        self._send: MemoryObjectSendStream[tuple[str, str]] | None = None
        self._ready = False
        self._failed: str | None = None
        self.built = 0  # objects built (for tests and the benchmark)

    @classmethod
    def for_cli(
        cls,
        args: Any,
        client: Any,
        controller: Controller,
        ownership: Ownership | None,
        **kwargs: Any,
    ) -> ClusterReconciler:
        """The reconciler ``eventscale run --watch`` runs: ``args`` gives ``namespace``,
        ``selector``, ``env`` and ``no_os_env``; Events go through an
        :class:`~eventscale.kube.events.EventRecorder`; ``kwargs`` go to the
        constructor (``make_target``, ...)."""
        import os

        from eventscale.kube.events import EventRecorder

        if "env" not in kwargs:  # (the CLI passes the one it checked and redacts)
            env = {} if getattr(args, "no_os_env", False) else dict(os.environ)
            for item in getattr(args, "env", None) or ():
                name, sep, value = str(item).partition("=")
                if sep and name:
                    env[name] = value
            kwargs["env"] = env
        identity = getattr(ownership, "identity", None)
        return cls(
            client,
            controller,
            namespaces=getattr(args, "namespace", None),
            selector=getattr(args, "selector", None),
            recorder=EventRecorder(client, component="eventscale", instance=identity),
            ownership=ownership,
            cluster_namespace=os.environ.get("KEDA_CLUSTER_OBJECT_NAMESPACE") or "keda",
            **kwargs,
        )

    def _kubernetes_target(self, spec: Any) -> Any:
        from eventscale.targets.kubernetes import KubernetesTarget

        return KubernetesTarget.from_ref(
            spec.scale_target_ref, namespace=spec.namespace, client=self.client
        )

    def _kubernetes_job_target(self, spec: Any) -> Any:
        from eventscale.jobs.kubernetes import KubernetesJobTarget

        return KubernetesJobTarget.from_spec(spec, client=self.client)

    def _namespaces_for(self, watched: WatchedKind) -> list[str | None]:
        if not watched.namespaced or self.namespaces is None:
            return [None]
        found: list[str | None] = list(self.namespaces)
        if watched.kind in ("Secret", "ConfigMap") and self.cluster_namespace not in found:
            found.append(self.cluster_namespace)  # ClusterTriggerAuthentications' Secrets
        return found

    # ------------------------------------------------------------------ probes

    def ready(self) -> bool:
        """Whether the first list of every informer has been reconciled."""
        return self._ready and self._failed is None

    def live(self) -> bool:
        """Whether every watch has read something within ``stuck_after`` seconds (and no
        watch task died)."""
        if self._failed is not None:
            return False
        now = time.monotonic()
        return all(
            now - informer.last_contact < self.stuck_after
            for informers in self._informers.values()
            for informer in informers
            if informer.synced
        )

    def kind_of(self, key: str) -> str:
        """``ScaledJob`` when ``key`` runs here as a ScaledJob, else ``ScaledObject``."""
        entry = self.entries.get(("ScaledJob", key))
        return "ScaledJob" if entry is not None and entry.running else "ScaledObject"

    # ------------------------------------------------------------------ caches

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached document ``kind`` ``namespace/name`` (``""`` if cluster-scoped)."""
        for informer in self._informers.get(kind, ()):
            doc = informer.cache.get((namespace, name))
            if doc is not None:
                return doc
        return None

    def documents(self, kind: str, namespace: str | None = None) -> Iterable[dict[str, Any]]:
        """Every cached document of ``kind`` (of ``namespace`` when given)."""
        for informer in self._informers.get(kind, ()):
            for (ns, _), doc in list(informer.cache.items()):
                if namespace is None or ns == namespace:
                    yield doc

    def doc(self, kind: str, key: str) -> dict[str, Any] | None:
        """The cached ScaledObject or ScaledJob ``key`` (``namespace/name``)."""
        namespace, _, name = key.partition("/")
        return self.lookup(kind, namespace, name)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Watch and reconcile until cancelled."""
        self.controller.events.add_hook(self.tracker)
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](math.inf)
        self._send = send
        for item in self._queued:  # scheduled before the run
            send.send_nowait(item)
        try:
            async with send, receive, anyio.create_task_group() as tg:
                for kind, informers in self._informers.items():
                    for informer in informers:
                        tg.start_soon(self._consume, kind, informer)
                for _ in range(self.workers):
                    tg.start_soon(self._work, receive)
                tg.start_soon(self.writer.run)
        finally:
            self._send = None
            self.controller.events.remove_hook(self.tracker)
            if self.watch_client is not self.client:
                with anyio.CancelScope(shield=True):
                    await self.watch_client.aclose()

    async def _consume(self, kind: str, informer: InformerLike) -> None:
        try:
            async for event in informer.events():
                self._on_event(kind, event.type, event.object)
        except Exception as exc:
            self._failed = f"the {kind} watch failed: {exc}"
            logger.exception("the %s watch failed", kind)
            raise

    def _on_event(self, kind: str, type_: str, doc: Mapping[str, Any]) -> None:
        if type_ == "SYNCED":
            self._check_ready()
            return
        meta = doc.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if kind in _SCALED:
            key = f"{namespace}/{name}"
            self.schedule(kind, key)
            if kind == "ScaledObject":
                self._index(key, namespace, None if type_ == "DELETED" else rules.target_of(doc))
        elif kind == "HorizontalPodAutoscaler":
            self._schedule_same_target(namespace, rules.target_of(doc), None)
        else:
            for dependent in tuple(self._dependents.get((kind, namespace, name), ())):
                self.schedule(*dependent, force=True)

    def _index(self, key: str, namespace: str, target: tuple[str, str] | None) -> None:
        """Keep the ScaledObjects by target; a move reconciles both groups (conflicts)."""
        old = self._targets.get(key)
        new = (namespace, target) if target is not None else None
        if old == new:
            return  # (a status write, say: nothing to recheck)
        if old is not None:
            group = self._by_target.get(old)
            if group is not None:
                group.discard(key)
                if not group:
                    del self._by_target[old]
            self._schedule_same_target(*old, key)
        if new is None:
            self._targets.pop(key, None)
        else:
            self._targets[key] = new
            self._by_target.setdefault(new, set()).add(key)
            self._schedule_same_target(*new, key)

    def _schedule_same_target(
        self, namespace: str, target: tuple[str, str] | None, skip: str | None
    ) -> None:
        if target is None:
            return
        for key in tuple(self._by_target.get((namespace, target), ())):
            if key != skip:
                self.schedule("ScaledObject", key)

    def schedule(self, kind: str, key: str, *, force: bool = False) -> None:
        """Reconcile ``kind`` ``key`` soon (``force``: rebuild even when unchanged)."""
        item = (kind, key)
        if force:
            self._forced.add(item)
        if item in self._queued:
            return
        self._queued.add(item)
        if self._send is not None:
            self._send.send_nowait(item)

    def _check_ready(self) -> None:
        if self._ready:
            return
        if self._queued or self._busy:
            return
        if all(i.synced for informers in self._informers.values() for i in informers):
            self._ready = True
            logger.info("the first list of every watch is reconciled")

    async def _work(self, receive: MemoryObjectReceiveStream[tuple[str, str]]) -> None:
        async for item in receive:
            self._queued.discard(item)
            if item in self._busy:
                self._again.add(item)
                continue
            self._busy.add(item)
            try:
                await self._handle(*item)
            except Exception:
                logger.exception("reconciling %s %s failed", *item)
            finally:
                self._busy.discard(item)
                if item in self._again:
                    self._again.discard(item)
                    self.schedule(*item)
            self._check_ready()

    def _changed(self, key: str) -> None:
        for kind in _SCALED:
            if (kind, key) in self.entries:
                self.writer.dirty(kind, key)

    async def owns(self, key: str) -> bool:
        """Whether this replica writes ``key``'s status, finalizer and events."""
        if self.ownership is None:
            return True
        try:
            return await self.ownership.owns(key)
        except Exception:
            return False

    # ------------------------------------------------------------------ one object

    async def _handle(self, kind: str, key: str) -> None:
        item = (kind, key)
        doc = self.doc(kind, key)
        entry = self.entries.get(item)
        if doc is None:
            if entry is not None:
                await self._drop(entry)
            return
        if entry is None:
            entry = self.entries[item] = Entry(kind, key, doc)
            entry.was_paused = rules.paused_in_status(doc)
        entry.doc = doc
        if rules.is_deleting(doc):
            await self._finalize(entry, doc)
            return
        if FINALIZER not in rules.finalizers(doc):
            self.writer.dirty(kind, key)  # the owner adds it with its status write
        problem = self._refusal(kind, key, doc)
        fingerprint = rules.fingerprint(doc)
        forced = item in self._forced
        self._forced.discard(item)
        if not forced and fingerprint == entry.fingerprint and problem == entry.conflict:
            return
        entry.fingerprint, entry.conflict = fingerprint, problem
        used: set[Dependency] = set()
        try:
            if problem is not None:
                raise _Refused(problem)
            obj = await building.build(
                kind,
                doc,
                client=self.client,
                lookup=self.lookup,
                used=used,
                env=self.env,
                cluster_namespace=self.cluster_namespace,
                make_target=self.make_target,
                make_job_target=self.make_job_target,
            )
        except _Refused as exc:
            await self._refuse(entry, str(exc), "")
        except ConfigError as exc:
            await self._refuse(entry, str(exc), f"{kind} doesn't have correct specification")
        except EventscaleError as exc:  # a source could not be read: try again shortly
            await self._refuse(entry, str(exc), f"{kind} could not be built")
            self._retry_later(item)
        else:
            await self._start(entry, obj)
        self._set_dependencies(item, used)
        self.writer.dirty(kind, key)

    def _refusal(self, kind: str, key: str, doc: Mapping[str, Any]) -> str | None:
        other = "ScaledJob" if kind == "ScaledObject" else "ScaledObject"
        mine = self.entries.get((other, key))
        if mine is not None and mine.running:
            return (
                f"a {other} named {key} is already managed here; eventscale needs distinct "
                "names for a namespace's ScaledObjects and ScaledJobs"
            )
        if kind != "ScaledObject":
            return None
        namespace = key.partition("/")[0]
        target = rules.target_of(doc)
        same = self._by_target.get((namespace, target), ()) if target is not None else ()
        candidates = [d for d in (self.doc("ScaledObject", k) for k in same) if d is not None]
        return rules.conflict(doc, candidates, self.documents("HorizontalPodAutoscaler", namespace))

    def _retry_later(self, item: tuple[str, str]) -> None:
        async def later() -> None:
            await anyio.sleep(5.0)
            self.schedule(*item, force=True)

        self.writer.spawn(later)

    async def _start(self, entry: Entry, obj: Reconcilable) -> None:
        key, ctl = entry.key, self.controller
        spec: Any = obj.spec
        observed = self.tracker.objects.get(key)
        if observed is None or observed.kind != entry.kind:
            # what the API's status says (a restart, a new owner): unchanged, no write
            observed = Observed.from_status(entry.kind, entry.doc.get("status"))
        if entry.kind == "ScaledObject":
            ref = spec.scale_target_ref
            observed.target = f"{gvk_string(ref.api_version, ref.kind)} {spec.namespace}/{ref.name}"
        self.tracker.track(key, observed)
        if key in ctl:
            await ctl.update(obj)
        else:
            ctl.add(obj)
        self.built += 1
        entry.running = True
        entry.error = entry.error_message = None
        entry.spec = spec
        entry.metric_names = building.metric_names(obj)
        # the owner announces the scalers with its next status write (writer.py)
        entry.announce = tuple(trigger.type for trigger in spec.triggers)
        entry.paused = building.is_paused(spec)
        entry.was_paused = entry.was_paused or entry.paused

    async def _refuse(self, entry: Entry, error: str, message: str) -> None:
        key = entry.key
        if entry.running:
            await self.controller.remove(key)
            entry.running = False
        self.tracker.forget(key)
        entry.spec = None
        entry.announce = ()
        if error != entry.error:
            logger.warning("%s %s refused: %s", entry.kind, key, error)
        entry.error, entry.error_message = error, message or None

    def _set_dependencies(self, item: tuple[str, str], used: set[Dependency]) -> None:
        entry = self.entries.get(item)
        if entry is None:
            return
        for dep in entry.dependencies - used:
            dependents = self._dependents.get(dep)
            if dependents is not None:
                dependents.discard(item)
                if not dependents:
                    del self._dependents[dep]
        for dep in used:
            self._dependents.setdefault(dep, set()).add(item)
        entry.dependencies = frozenset(used)

    async def _drop(self, entry: Entry) -> None:
        item = (entry.kind, entry.key)
        doc = entry.doc
        if (
            FINALIZER in rules.finalizers(doc)
            and not rules.is_deleting(doc)
            and await self.owns(entry.key)
        ):
            await self._let_go(entry, doc)
        if entry.running:
            await self.controller.remove(entry.key)
        elif self.ownership is not None:
            await self.ownership.release(entry.key)
        self._set_dependencies(item, set())
        self.entries.pop(item, None)
        if (
            ("ScaledJob" if entry.kind == "ScaledObject" else "ScaledObject"),
            entry.key,
        ) not in self.entries:
            self.tracker.forget(entry.key)
        self.writer.forget(entry.kind, entry.key)
        # the other kind of the same name may have been refused because of this one
        other = "ScaledJob" if entry.kind == "ScaledObject" else "ScaledObject"
        if (other, entry.key) in self.entries:
            self.schedule(other, entry.key, force=True)
        if entry.kind == "ScaledObject":
            namespace = entry.key.partition("/")[0]
            self._schedule_same_target(namespace, rules.target_of(entry.doc), entry.key)

    async def _let_go(self, entry: Entry, doc: Mapping[str, Any]) -> None:
        """Take KEDA's finalizer off an object that left the watch without being deleted
        (its labels no longer match ``--selector``): nobody here would finalize it."""
        await finalizing.remove_finalizer(self.client, self.writer.path(entry.kind, entry.key), doc)

    async def _finalize(self, entry: Entry, doc: Mapping[str, Any]) -> None:
        """KEDA's finalizer: stop, restore the original replicas if asked, let go."""
        key = entry.key
        if entry.running:
            await self.controller.remove(key)
            entry.running = False
        self.tracker.forget(key)
        if FINALIZER not in rules.finalizers(doc) or not await self.owns(key):
            return
        if entry.kind == "ScaledObject":
            status = entry.written or doc.get("status") or {}
            spec = entry.spec
            await building.restore_original_replicas(
                self.client,
                entry.key,
                doc,
                status,
                None if spec is None else (lambda: self.make_target(spec)),
            )
        kind = entry.kind
        await self.writer.send_now(entry, "Warning", f"{kind}Deleted", f"{kind} was deleted")
        remaining = [f for f in rules.finalizers(doc) if f != FINALIZER]
        await self._set_finalizers(entry, doc, remaining)

    async def add_finalizer(self, entry: Entry) -> None:
        """Put ``finalizer.keda.sh`` on ``entry``'s object (the owner, on first reconcile)."""
        await self._set_finalizers(entry, entry.doc, [*rules.finalizers(entry.doc), FINALIZER])

    async def _set_finalizers(
        self, entry: Entry, doc: Mapping[str, Any], finalizers: list[str]
    ) -> None:
        path = self.writer.path(entry.kind, entry.key)
        await finalizing.set_finalizers(self.client, path, doc, finalizers)


class _Refused(Exception):
    """A conflict KEDA's webhook would refuse (its message is the reason)."""


def _own_client(client: Any) -> Any:
    """Another client to the same API (same type and config), when ``client`` is a
    :class:`~eventscale.kube.KubeClient`; else ``client`` itself."""
    config = getattr(client, "config", None)
    if config is None:
        return client
    try:
        return type(client)(config, timeout=client.timeout)
    except TypeError:
        return client
