"""Manifest files, live: read again when they change, applied object by object.

:class:`ManifestReloader` owns the objects a controller runs from manifest files (or
folders of them). It reads them once (:meth:`~ManifestReloader.load`), then checks
them every ``interval`` seconds and on :meth:`~ManifestReloader.request` (what
``eventscale run`` calls on SIGHUP):

- a change is noticed by each file's size, modification time and inode (``os.stat``,
  which follows symbolic links, so a Kubernetes ConfigMap volume's symlink swap counts),
  and confirmed by a SHA-256 of its content: a ``touch`` reloads nothing;
- each changed file is parsed on its own: a file with an invalid edit keeps its last
  good text (its objects keep running as they were) and the error is reported with its
  field path, as a ``config_error`` event (logged as a warning);
- every object's spec and resolved trigger contexts (authentication, Secrets, the
  environment) are compared with the running ones: only the objects that differ are
  rebuilt (:meth:`Controller.update <eventscale.runtime.controller.Controller.update>`
  keeps their engine state), new ones are added and vanished ones removed; an object
  whose new version cannot be built keeps running as it was;
- a ``reload`` event says what was added, updated and removed.

Why polling ``os.stat`` rather than inotify (``watchfiles``): it needs no dependency,
costs one ``stat`` per file per interval, and sees ConfigMap updates, which replace a
symlinked directory that inotify watches on the files themselves miss.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from eventscale.errors import ConfigError
from eventscale.redaction import bound_message, redact_text
from eventscale.runtime.observability import Event, EventKind

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.objects import Reconcilable
    from eventscale.spec import ScaledJobSpec, ScaledObjectSpec

__all__ = (
    "MANIFEST_SUFFIXES",
    "MAX_FOLDER_FILES",
    "ManifestReloader",
    "ObjectFactory",
    "ReloadResult",
    "expand_paths",
)

logger = logging.getLogger("eventscale.reload")

#: The files of a folder that are read (as ``kubectl apply -f DIR``, not recursive).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: The most files a folder may hold (a bound on every parsed input).
MAX_FOLDER_FILES = 1000


class ObjectFactory(Protocol):
    """How the reloader turns specs into running objects (the CLI supplies one)."""

    def loaded(self, manifests: Manifests, text: str) -> None:
        """Called once per read with every file's text (workload documents, redaction)."""

    async def contexts(
        self, manifests: Manifests, spec: ScaledObjectSpec | ScaledJobSpec
    ) -> Sequence[Any]:
        """The trigger contexts of ``spec`` (authentication and environment resolved).

        :raises ConfigError: a reference cannot be resolved.
        """

    async def build(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        contexts: Sequence[Any],
        previous: Reconcilable | None,
    ) -> Reconcilable:
        """A new object for ``spec``, not yet added to any controller.

        ``previous`` is the running version the new one replaces (``None`` for a new
        object): a factory may hand its target on when the scale target did not change
        (the controller closes only what the new object does not reuse).

        :raises ConfigError: a trigger's metadata is invalid.
        """


@attrs.frozen
class ReloadResult:
    """What one reload did: keys added, updated, removed, and the refused edits."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()  # (file or object key, message)

    @property
    def changed(self) -> bool:
        """Whether any object was added, updated or removed."""
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        """``added a/b; updated c/d; removed e/f`` (``no change`` when nothing moved)."""
        parts = [
            f"{what} {', '.join(keys)}"
            for what, keys in (
                ("added", self.added),
                ("updated", self.updated),
                ("removed", self.removed),
            )
            if keys
        ]
        return "; ".join(parts) or "no change"


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The manifest files ``paths`` name: files as given, folders' manifest files sorted.

    :raises ConfigError: a path does not exist, or a folder holds more than
        :data:`MAX_FOLDER_FILES` manifest files.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in MANIFEST_SUFFIXES
                and not p.name.startswith(".")
                and p.is_file()
            )
            if len(found) > MAX_FOLDER_FILES:
                raise ConfigError(
                    f"holds {len(found)} manifest files, more than {MAX_FOLDER_FILES}",
                    path=str(path),
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError("no such file or folder", path=str(path))
    return files


@attrs.define
class _Running:
    kind: str
    spec: Any
    contexts: Sequence[Any]


def _signature(paths: Sequence[Path]) -> tuple[Any, ...]:
    """What a change of the files would change: names, sizes, times, inodes."""
    out: list[Any] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), None))
            continue
        if path.is_dir():
            names = sorted(
                (p.name, _stat_key(p))
                for p in path.iterdir()
                if p.suffix.lower() in MANIFEST_SUFFIXES and not p.name.startswith(".")
            )
            out.append((str(path), st.st_ino, tuple(names[: MAX_FOLDER_FILES + 1])))
        else:
            out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ManifestReloader:
    """The objects of manifest files in a controller, kept in step with the files.

    :param controller: where the objects run (added, updated and removed through its
        public methods).
    :param paths: manifest files and folders (their ``.yaml``, ``.yml`` and ``.json``
        files, not recursive).
    :param factory: resolves trigger contexts and builds objects.
    :param interval: seconds between two checks of the files (0: only on
        :meth:`request`).
    :param jobs: whether ScaledJobs are run (else only ScaledObjects are read).
    :param fixed_text: documents read once from elsewhere (standard input), kept
        beside the files' and never read again.
    """

    def __init__(
        self,
        controller: Controller,
        paths: Sequence[str | Path],
        factory: ObjectFactory,
        *,
        interval: float = 2.0,
        jobs: bool = True,
        clock: Callable[[], float] = time.time,
        fixed_text: str = "",
    ) -> None:
        if interval < 0 or interval != interval:
            raise ConfigError("must be >= 0", path="--reload-interval")
        self.controller = controller
        self.paths = [Path(p) for p in paths]
        self.factory = factory
        self.interval = interval
        self.jobs = jobs
        self.clock = clock
        self.fixed_text = fixed_text
        #: The kind of every object the reloader runs, by key.
        self.kinds: dict[str, str] = {}
        self._running: dict[str, _Running] = {}
        self._texts: dict[Path, str] = {}  # last good text per file
        self._hashes: dict[Path, str] = {}
        self._signature: tuple[Any, ...] | None = None
        self._wanted = anyio.Event()

    # ------------------------------------------------------------------ reading

    async def load(self, *, required: bool = True) -> ReloadResult:
        """The first read: every file must be valid (else :class:`ConfigError`), and
        hold a ScaledObject or ScaledJob unless ``required`` is false.

        The objects are added to the controller (before or after it is entered).
        """
        files = expand_paths(self.paths)
        self._signature = _signature(self.paths)
        texts = {path: self._read(path) for path in files}
        for path, text in texts.items():
            self._parse(path, text)  # raises, naming the file
        self._texts = texts
        self._hashes = {p: _digest(t) for p, t in texts.items()}
        manifests, text = self._combined()
        if required and not manifests.scaled_objects and not (self.jobs and manifests.scaled_jobs):
            kinds = "ScaledObject or ScaledJob" if self.jobs else "ScaledObject"
            raise ConfigError(
                f"the manifest holds no {kinds}", path=", ".join(str(p) for p in self.paths)
            )
        self.factory.loaded(manifests, text)
        desired = self._desired(manifests)
        added: list[Reconcilable] = []
        try:
            for key, (kind, spec) in desired.items():
                contexts = tuple(await self.factory.contexts(manifests, spec))
                obj = await self.factory.build(spec, contexts, None)
                self.controller.add(obj)
                added.append(obj)
                self._running[key] = _Running(kind, spec, contexts)
                self.kinds[key] = kind
        except BaseException:
            for obj in added:  # a pending object is only forgotten by remove(): close it
                await self.controller.remove(obj.key)
                await obj.aclose()
            self._running.clear()
            self.kinds.clear()
            raise
        return ReloadResult(added=tuple(obj.key for obj in added))

    def request(self) -> None:
        """Read the files again now (SIGHUP), even if they look unchanged."""
        self._wanted.set()

    async def run(self) -> None:
        """Check the files every ``interval`` and on :meth:`request`, until cancelled."""
        while True:
            forced = False
            if self.interval > 0:
                with anyio.move_on_after(self.interval):
                    await self._wanted.wait()
                    forced = True
            else:
                await self._wanted.wait()
                forced = True
            if self._wanted.is_set():
                self._wanted = anyio.Event()
            try:
                await self.reload(force=forced)
            except Exception:  # never end the loop: the next check tries again
                logger.exception("reloading the manifests failed")

    async def reload(self, *, force: bool = False) -> ReloadResult:
        """Check the files once; apply what changed. Never raises for a bad edit."""
        signature = await anyio.to_thread.run_sync(_signature, self.paths)
        if not force and signature == self._signature:
            return ReloadResult()
        self._signature = signature
        errors: list[tuple[str, str]] = []
        try:
            files = expand_paths(self.paths)
        except ConfigError as exc:
            errors.append((exc.path or "manifests", str(exc)))
            files = list(self._texts)
        texts: dict[Path, str] = {}
        hashes = {p: h for p, h in self._hashes.items() if p in self._texts}
        changed = False
        for path in files:
            try:
                text = self._read(path)
            except ConfigError as exc:
                errors.append((str(path), str(exc)))
                if path in self._texts:
                    texts[path] = self._texts[path]
                continue
            digest = _digest(text)
            if self._hashes.get(path) == digest:
                texts[path] = self._texts[path]
                continue
            try:
                self._parse(path, text)
            except ConfigError as exc:
                errors.append((str(path), str(exc)))
                if path in self._texts:
                    texts[path] = self._texts[path]  # the running version stays
                continue
            texts[path] = text
            hashes[path] = digest
            changed = True
        if set(texts) != set(self._texts):
            changed = True
        if not changed and not force:
            return await self._report(ReloadResult(errors=tuple(errors)))
        previous = self._texts
        self._texts = texts
        try:
            manifests, text = self._combined()
        except ConfigError as exc:
            self._texts = previous  # e.g. the same name in two files: keep everything
            errors.append((", ".join(str(p) for p in texts), str(exc)))
            return await self._report(ReloadResult(errors=tuple(errors)))
        self._hashes = {p: h for p, h in hashes.items() if p in texts}
        self.factory.loaded(manifests, text)
        result = await self._apply(manifests, errors)
        return await self._report(result)

    # ------------------------------------------------------------------ applying

    async def _apply(self, manifests: Manifests, errors: list[tuple[str, str]]) -> ReloadResult:
        desired = self._desired(manifests, errors)
        added: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        for key in [k for k in self._running if k not in desired]:
            await self.controller.remove(key)
            del self._running[key]
            self.kinds.pop(key, None)
            removed.append(key)
        for key, (kind, spec) in desired.items():
            running = self._running.get(key)
            try:
                contexts = tuple(await self.factory.contexts(manifests, spec))
                if running is not None and (
                    running.kind,
                    running.spec,
                    tuple(running.contexts),
                ) == (
                    kind,
                    spec,
                    contexts,
                ):
                    continue
                previous = self.controller.get(key) if running is not None else None
                obj = await self.factory.build(spec, contexts, previous)
            except ConfigError as exc:
                errors.append((key, str(exc)))
                continue
            except Exception as exc:  # a factory bug must not stop the other objects
                errors.append((key, f"{type(exc).__name__}: {exc}"))
                continue
            if running is None:
                self.controller.add(obj)
                added.append(key)
            elif running.kind != kind:
                await self.controller.remove(key)
                self.controller.add(obj)
                updated.append(key)
            else:
                await self.controller.update(obj)
                updated.append(key)
            self._running[key] = _Running(kind, spec, contexts)
            self.kinds[key] = kind
        return ReloadResult(
            added=tuple(added), updated=tuple(updated), removed=tuple(removed), errors=tuple(errors)
        )

    def _desired(
        self, manifests: Manifests, errors: list[tuple[str, str]] | None = None
    ) -> dict[str, tuple[str, Any]]:
        desired: dict[str, tuple[str, Any]] = {}
        for spec in manifests.scaled_objects:
            desired[f"{spec.namespace}/{spec.name}"] = ("ScaledObject", spec)
        if self.jobs:
            for job in manifests.scaled_jobs:
                key = f"{job.namespace}/{job.name}"
                if key in desired:
                    exc = ConfigError(
                        f"a ScaledObject and a ScaledJob are both named {key}; "
                        "eventscale run needs distinct names",
                        path=f"ScaledJob {key}",
                    )
                    if errors is None:
                        raise exc
                    errors.append((key, str(exc)))
                    if key in self._running:  # keep what runs under that name
                        desired[key] = (self._running[key].kind, self._running[key].spec)
                    continue
                desired[key] = ("ScaledJob", job)
        return desired

    async def _report(self, result: ReloadResult) -> ReloadResult:
        bus = self.controller.events
        now = self.clock()
        for where, message in result.errors:
            await bus.emit(
                Event(
                    kind=EventKind.CONFIG_ERROR,
                    time=now,
                    scaled_object=where,
                    error=bound_message(redact_text(message)),
                )
            )
        if result.changed:
            await bus.emit(
                Event(kind=EventKind.RELOAD, time=now, scaled_object="", reason=result.summary())
            )
        return result

    # ------------------------------------------------------------------ files

    @staticmethod
    def _read(path: Path) -> str:
        from eventscale.manifests.fields import MAX_MANIFEST_CHARS, decode_manifest

        limit = 4 * MAX_MANIFEST_CHARS
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
        if len(data) > limit:
            raise ConfigError(f"larger than {limit} bytes", path=str(path))
        return decode_manifest(data, str(path))

    @staticmethod
    def _parse(path: Path, text: str) -> Manifests:
        from eventscale.manifests.reader import load_manifests

        try:
            return load_manifests(text, ignore_unknown_kinds=True)
        except ConfigError as exc:
            raise ConfigError(str(exc), path=str(path)) from None

    def _combined(self) -> tuple[Manifests, str]:
        from eventscale.manifests.reader import load_manifests

        text = "\n---\n".join(
            [*self._texts.values(), *([self.fixed_text] if self.fixed_text else [])]
        )
        return load_manifests(text, ignore_unknown_kinds=True), text


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
