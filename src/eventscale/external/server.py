"""Serve eventscale scalers to KEDA as an external scaler (``externalscaler.ExternalScaler``).

One :class:`ExternalScalerServer` hosts many scalers. Each request names its scaler
through the ``ScaledObjectRef`` KEDA sends, looked up in this order:

1. ``scalerMetadata["scalerName"]``: a scaler the server was given by name (from a
   manifest, or in Python);
2. ``scalerMetadata["scalerType"]``: build an eventscale scaler of that trigger type from
   the rest of the metadata (only types the server allows);
3. with a ``scaler_class``: build that class from the metadata;
4. the ``ScaledObjectRef`` name, when the server has a scaler of that name;
5. the only scaler, when the server has exactly one.

Polls are shared: requests for the same scaler within ``cache_ttl`` seconds reuse one
report (KEDA asks ``GetMetrics`` then ``IsActive`` on every poll: one read of the
source answers both). ``StreamIsActive`` sends the activity when the stream opens and
then on every change: a scaler with ``wait_for_activity()`` (Redis keyspace
notifications, ...) is watched, any other is polled every ``stream_poll_interval``
seconds, and :meth:`ExternalScalerServer.notify` wakes the streams at once.

The server also answers the standard ``grpc.health.v1.Health`` service, and
:meth:`ExternalScalerServer.stop` shuts down gracefully: health turns ``NOT_SERVING``,
open streams end cleanly (KEDA reconnects, to another replica behind the Service),
in-flight calls get ``grace`` seconds, then the scalers are closed.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Final, cast

import anyio
import attrs

import eventscale.external._proto as _proto
from eventscale._resource import AsyncService
from eventscale.errors import ConfigError, EventscaleError, ScalerError, ScalerTimeout
from eventscale.metrics import MetricSpec, ScalerReport, validate_metric_value
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import PushScaler, Scaler, ScalerFactory, create_scaler
from eventscale.scalers.params import TriggerContext

__all__ = (
    "MAX_DYNAMIC_SCALERS",
    "SCALER_NAME_KEY",
    "SCALER_TYPE_KEY",
    "ExternalScalerServer",
    "ScalerRef",
    "ServerTLS",
    "build_server",
    "load_server_target",
    "scalers_from_manifest",
    "serve_external",
)

_proto.require()  # without the extra, importing this module names it

logger = logging.getLogger("eventscale.external")

SCALER_NAME_KEY: Final = "scalerName"
SCALER_TYPE_KEY: Final = "scalerType"
#: The most scalers one server keeps built from requests' metadata (distinct metadata
#: builds a scaler each): beyond it, the least recently used one is closed.
MAX_DYNAMIC_SCALERS: Final = 1000
# Keys KEDA's own external trigger reads; never part of a served scaler's metadata.
_CLIENT_KEYS: Final = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
_INDEX_PREFIX: Final = re.compile(r"^s[0-9]+-")
_RESOLVED_ENV_PREFIX: Final = "EVENTSCALE_RESOLVED_"
# The protocol's integer fields are int64.
_INT64_MAX: Final = 2**63 - 1


def _remote_name(name: str) -> str:
    """A metric name as KEDA should see it: without eventscale's ``s{index}-`` prefix
    (KEDA adds its own)."""
    return _INDEX_PREFIX.sub("", name, count=1)


@attrs.frozen(kw_only=True)
class ScalerRef:
    """The ``ScaledObjectRef`` of a request: who asks, with which trigger metadata."""

    name: str = ""
    namespace: str = ""
    metadata: Mapping[str, str] = attrs.field(factory=dict, repr=lambda m: f"<{len(m)} keys>")

    @classmethod
    def from_message(cls, message: Any) -> ScalerRef:
        """Convert a protobuf ``ScaledObjectRef``."""
        return cls(
            name=message.name, namespace=message.namespace, metadata=dict(message.scalerMetadata)
        )

    def context(
        self, trigger_type: str, auth: Mapping[str, str | Secret] | None = None
    ) -> TriggerContext:
        """The trigger context a served scaler is built from.

        The selection keys and KEDA's own connection keys are left out. KEDA has already
        resolved every ``...FromEnv`` value, so each is handed on as a resolved value.
        """
        metadata: dict[str, str] = {}
        env: dict[str, str] = {}
        for key, value in self.metadata.items():
            if key in _CLIENT_KEYS or key in (SCALER_NAME_KEY, SCALER_TYPE_KEY):
                continue
            if key.endswith("FromEnv"):
                variable = f"{_RESOLVED_ENV_PREFIX}{key[: -len('FromEnv')]}"
                metadata[key] = variable
                env[variable] = value
            else:
                metadata[key] = value
        return TriggerContext(
            metadata=metadata, auth=dict(auth or {}), env=env, trigger_type=trigger_type
        )


@attrs.frozen(kw_only=True)
class ServerTLS:
    """TLS for the server: PEM ``certificate`` and ``private_key``; with ``client_ca``,
    clients must present a certificate signed by it (mutual TLS)."""

    certificate: bytes = attrs.field(repr=False)
    private_key: Secret = attrs.field(repr=False)
    client_ca: bytes | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_files(
        cls, certificate: str | os.PathLike[str], key: str | os.PathLike[str], client_ca: Any = None
    ) -> ServerTLS:
        """Read the PEM files."""
        with open(certificate, "rb") as f:
            cert = f.read()
        with open(key, encoding="utf-8") as f:
            private = Secret(f.read())
        ca = None
        if client_ca is not None:
            with open(client_ca, "rb") as f:
                ca = f.read()
        return cls(certificate=cert, private_key=private, client_ca=ca)


class _Unknown(LookupError):
    """No scaler matches a request."""


class _Entry:
    """One served scaler, with its shared-poll cache and change signal."""

    def __init__(self, scaler: Scaler, label: str, *, dynamic: bool = False) -> None:
        self.scaler = scaler
        self.label = label
        self.dynamic = dynamic
        self.lock = anyio.Lock()
        self.cached: tuple[ScalerReport, float] | None = None
        self.changed = anyio.Event()
        self.version = 0  # bumped by notify(): a stream compares it with what it read
        self.streams = 0
        self.last_used = time.monotonic()

    def notify(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = anyio.Event()

    def specs(self) -> tuple[MetricSpec, ...]:
        return tuple(self.scaler.metric_specs())

    async def report(self, *, fresh: bool, ttl: float, limit: float) -> ScalerReport:
        self.last_used = time.monotonic()
        async with self.lock:
            now = time.monotonic()
            if not fresh and self.cached is not None and now - self.cached[1] < ttl:
                return self.cached[0]
            try:
                with anyio.fail_after(limit):
                    report = await self.scaler.get_metrics()
            except ScalerError:
                self.cached = None
                raise
            except TimeoutError:
                self.cached = None
                raise ScalerTimeout(
                    f"no answer within {limit:g}s", trigger=self.label, transient=True
                ) from None
            except Exception as exc:  # a user scaler's bug is an error, not a crash
                self.cached = None
                raise ScalerError(
                    f"scaler failed: {type(exc).__name__}: {redact_text(str(exc))}",
                    trigger=self.label,
                ) from exc
            self.cached = None
            if not isinstance(report, ScalerReport):
                raise ScalerError(
                    f"scaler returned {type(report).__name__}, not a ScalerReport",
                    trigger=self.label,
                    transient=False,
                )
            for item in report.values:  # what KEDA gets is checked as the runtime checks it
                problem = validate_metric_value(repr(_remote_name(item.name)), item.value)
                if problem is not None:
                    raise ScalerError(problem, trigger=self.label, transient=False)
            self.cached = (report, time.monotonic())
            return report


def _status_for(exc: BaseException) -> tuple[str, str]:
    """(gRPC status code name, details) for an error raised while answering."""
    if isinstance(exc, _Unknown):
        return "NOT_FOUND", str(exc)
    if isinstance(exc, ConfigError):
        return "INVALID_ARGUMENT", str(exc)
    if isinstance(exc, ScalerTimeout):
        return "DEADLINE_EXCEEDED", str(exc)
    if isinstance(exc, ScalerError):
        return ("UNAVAILABLE" if exc.transient else "FAILED_PRECONDITION"), str(exc)
    return "INTERNAL", f"{type(exc).__name__}: {exc}"


class ExternalScalerServer(AsyncService):
    """Expose eventscale scalers (built-in or your own) as a KEDA external scaler.

    :param scalers: scalers served by name (selected with ``scalerName``, or by the
        ScaledObject name). The server owns them and closes them on :meth:`stop`.
    :param scaler_class: a class with ``from_context`` (any eventscale scaler class):
        requests that select nothing else build one from their ``scalerMetadata``.
    :param allow_types: trigger types a request may build with ``scalerType``
        (``True``: every registered type). Off by default: a client that may pick a
        type and its metadata can make the server connect anywhere.
    :param auth: authentication parameters (a TriggerAuthentication's resolved values)
        given to every scaler built from a request.
    :param stream_poll_interval: seconds between polls behind ``StreamIsActive`` for
        scalers without ``wait_for_activity`` (and while a scaler is active).
    :param cache_ttl: seconds a report answers further ``GetMetrics``/``IsActive`` calls.
    :param poll_timeout: seconds one read of a scaler may take.
    :param idle_timeout: seconds after which a scaler built from a request and not used
        since is closed (``None``: never).
    """

    def __init__(
        self,
        scalers: Mapping[str, Scaler] | None = None,
        *,
        scaler_class: ScalerFactory | None = None,
        allow_types: Iterable[str] | bool = False,
        auth: Mapping[str, str | Secret] | None = None,
        stream_poll_interval: float = 1.0,
        cache_ttl: float = 1.0,
        poll_timeout: float = 10.0,
        idle_timeout: float | None = 600.0,
    ) -> None:
        self.scaler_class = scaler_class
        self.allow_types: frozenset[str] | bool = (
            allow_types if isinstance(allow_types, bool) else frozenset(allow_types)
        )
        self.auth = dict(auth or {})
        self.stream_poll_interval = stream_poll_interval
        self.cache_ttl = cache_ttl
        self.poll_timeout = poll_timeout
        self.idle_timeout = idle_timeout
        self._named: dict[str, _Entry] = {}
        self._dynamic: dict[tuple[object, ...], _Entry] = {}
        self._dynamic_lock: anyio.Lock | None = None
        self._stopping = anyio.Event()
        self._server: Any = None
        self._health: Any = None
        self._port: int | None = None
        for name, scaler in (scalers or {}).items():
            self.add(name, scaler)

    # ------------------------------------------------------------------ catalogue

    def add(self, name: str, scaler: Scaler, *, aliases: Iterable[str] = ()) -> None:
        """Serve ``scaler`` as ``name`` (and under each alias)."""
        entry = _Entry(scaler, name)
        for key in (name, *aliases):
            if key in self._named:
                raise ConfigError(f"a scaler named {key!r} is served already", path=key)
            self._named[key] = entry

    @property
    def names(self) -> list[str]:
        """Names of the scalers served by name, sorted."""
        return sorted(self._named)

    def notify(self, name: str | None = None) -> None:
        """Make ``StreamIsActive`` streams re-read scaler ``name`` (every scaler if ``None``)
        now, instead of at their next poll. Call it from the server's event loop."""
        entries = {id(e): e for e in (*self._named.values(), *self._dynamic.values())}
        for entry in entries.values():
            if name is None or entry.label == name:
                entry.notify()

    async def resolve(self, ref: ScalerRef) -> _Entry:
        """The scaler that answers ``ref`` (see the module docs for the order).

        :raises ConfigError: the metadata cannot build the scaler it selects.
        :raises LookupError: nothing matches.
        """
        meta = ref.metadata
        name = meta.get(SCALER_NAME_KEY, "").strip()
        if name:
            try:
                return self._named[name]
            except KeyError:
                raise _Unknown(
                    f"no scaler named {name!r} (serving: {', '.join(self.names) or 'none'})"
                ) from None
        trigger_type = meta.get(SCALER_TYPE_KEY, "").strip()
        if trigger_type:
            allowed = self.allow_types is True or (
                not isinstance(self.allow_types, bool) and trigger_type in self.allow_types
            )
            if not allowed:
                raise ConfigError(
                    f"this server does not build scalers of type {trigger_type!r}",
                    path=SCALER_TYPE_KEY,
                )
            return await self._build(ref, trigger_type, None)
        if self.scaler_class is not None:
            return await self._build(ref, "", self.scaler_class)
        if ref.name and ref.name in self._named:
            return self._named[ref.name]
        if len({id(e) for e in self._named.values()}) == 1:
            return next(iter(self._named.values()))
        raise _Unknown(
            f"the request selects no scaler: set scalerMetadata.{SCALER_NAME_KEY} "
            f"(serving: {', '.join(self.names) or 'none'})"
        )

    async def _build(self, ref: ScalerRef, trigger_type: str, cls: ScalerFactory | None) -> _Entry:
        ctx = ref.context(trigger_type or "external", self.auth)
        key: tuple[object, ...] = (
            trigger_type,
            id(cls),
            tuple(sorted(ctx.metadata.items())),
            tuple(sorted(ctx.env.items())),
        )
        entry = self._dynamic.get(key)
        if entry is not None:
            return entry
        if self._dynamic_lock is None:
            self._dynamic_lock = anyio.Lock()
        async with self._dynamic_lock:
            entry = self._dynamic.get(key)
            if entry is None:
                await self._evict_idle()
                await self._make_room()
                scaler = cls.from_context(ctx) if cls is not None else create_scaler(ctx)
                label = trigger_type or getattr(cls, "__name__", "scaler")
                entry = self._dynamic[key] = _Entry(scaler, label, dynamic=True)
        return entry

    async def _make_room(self) -> None:
        """Keep at most :data:`MAX_DYNAMIC_SCALERS`: close the least recently used one
        without an open stream, or refuse the request when every one has a stream."""
        if len(self._dynamic) < MAX_DYNAMIC_SCALERS:
            return
        idle = [(e.last_used, k) for k, e in self._dynamic.items() if e.streams == 0]
        if not idle:
            raise ConfigError(
                f"this server keeps at most {MAX_DYNAMIC_SCALERS} scalers built from requests,"
                " all in use",
                path=SCALER_TYPE_KEY,
            )
        entry = self._dynamic.pop(min(idle, key=lambda pair: pair[0])[1])
        await _aclose_quietly(entry.scaler)

    async def _evict_idle(self) -> None:
        if self.idle_timeout is None:
            return
        limit = time.monotonic() - self.idle_timeout
        for key, entry in list(self._dynamic.items()):
            if entry.streams == 0 and entry.last_used < limit:
                del self._dynamic[key]
                await _aclose_quietly(entry.scaler)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The port the server listens on (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    async def start(
        self, host: str = "[::]", port: int = 0, *, tls: ServerTLS | None = None
    ) -> int:
        """Listen on ``host:port`` (``port`` 0 picks a free one) and return the port.

        :raises EventscaleError: the address cannot be bound.
        """
        grpc = _proto.grpc()
        aio = _proto.grpc_aio()
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        # SO_REUSEPORT off: a port someone else holds is an error, never silently shared.
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        _proto.services().add_ExternalScalerServicer_to_server(_Servicer(self), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"{host}:{port}"
        try:
            if tls is None:
                bound = server.add_insecure_port(address)
            else:
                creds = grpc.ssl_server_credentials(
                    [(tls.private_key.reveal().encode(), tls.certificate)],
                    root_certificates=tls.client_ca,
                    require_client_auth=tls.client_ca is not None,
                )
                bound = server.add_secure_port(address, creds)
        except RuntimeError as exc:
            raise EventscaleError(f"cannot listen on {address}: {exc}") from exc
        if not bound:
            raise EventscaleError(f"cannot listen on {address}")
        await server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self._health.set("", serving)
        await self._health.set(_proto.SERVICE_NAME, serving)
        self._server = server
        self._port = int(bound)
        logger.info("serving %d scalers on %s", len(self._named), address)
        return self._port

    async def stop(self, grace: float = 5.0) -> None:
        """Shut down gracefully and close every scaler. Safe to call twice."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is not None:
            if self._health is not None:
                await self._health.enter_graceful_shutdown()
            await server.stop(grace)
        entries = {id(e): e for e in (*self._named.values(), *self._dynamic.values())}
        self._dynamic.clear()
        for entry in entries.values():
            await _aclose_quietly(entry.scaler)

    async def wait_for_termination(self) -> None:
        """Wait until the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def aclose(self) -> None:
        """Shut down (with the default grace period) and close every scaler."""
        await self.stop()

    # ------------------------------------------------------------------ streams

    async def _wait_for_change(self, entry: _Entry, *, active: bool, seen: int) -> None:
        """Return when ``entry`` should be read again, or the server is stopping.

        ``seen`` is the notification count when the stream last read the scaler: a
        notification since then returns at once.

        :raises ScalerError: the scaler's ``wait_for_activity`` failed.
        """
        if entry.version != seen:
            return
        failure: list[ScalerError] = []
        changed = entry.changed
        watch = not active and isinstance(entry.scaler, PushScaler)
        with anyio.move_on_after(self.stream_poll_interval):
            async with anyio.create_task_group() as tg:

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                async def activity(scaler: PushScaler) -> None:
                    try:
                        await scaler.wait_for_activity()
                    except ScalerError as exc:
                        failure.append(exc)
                    except Exception as exc:  # a user scaler's bug
                        failure.append(
                            ScalerError(
                                f"wait_for_activity failed: {type(exc).__name__}: "
                                f"{redact_text(str(exc))}",
                                trigger=entry.label,
                            )
                        )
                    tg.cancel_scope.cancel()

                tg.start_soon(until, changed)
                tg.start_soon(until, self._stopping)
                if watch:
                    assert isinstance(entry.scaler, PushScaler)
                    tg.start_soon(activity, entry.scaler)
        if failure:
            raise failure[0]


async def _aclose_quietly(scaler: Scaler) -> None:
    try:
        with anyio.move_on_after(10, shield=True):
            await scaler.aclose()
    except Exception:
        logger.debug("closing %r failed", scaler, exc_info=True)


class _Servicer:
    """The gRPC handlers (duck-typed to the generated ``ExternalScalerServicer``)."""

    def __init__(self, owner: ExternalScalerServer) -> None:
        self.owner = owner
        self.pb: Any = _proto.messages()

    async def _abort(self, context: Any, exc: BaseException) -> None:
        grpc = _proto.grpc()
        code, details = _status_for(exc)
        await context.abort(getattr(grpc.StatusCode, code), redact_text(details))

    async def _entry(self, message: Any, context: Any) -> _Entry:
        try:
            return await self.owner.resolve(ScalerRef.from_message(message))
        except (ConfigError, _Unknown) as exc:
            await self._abort(context, exc)
            raise  # abort() raised already; this keeps type checkers informed

    async def _report(self, entry: _Entry, context: Any, *, fresh: bool) -> ScalerReport:
        owner = self.owner
        try:
            return await entry.report(fresh=fresh, ttl=owner.cache_ttl, limit=owner.poll_timeout)
        except ScalerError as exc:
            await self._abort(context, exc)
            raise

    async def IsActive(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        entry = await self._entry(request, context)
        report = await self._report(entry, context, fresh=False)
        return self.pb.IsActiveResponse(result=report.is_active)

    async def GetMetricSpec(self, request: Any, context: Any) -> Any:  # noqa: N802
        entry = await self._entry(request, context)
        return self._specs_message(entry)

    def _specs_message(self, entry: _Entry) -> Any:
        specs = [
            self.pb.MetricSpec(
                metricName=_remote_name(spec.name),
                targetSize=min(math.ceil(spec.target), _INT64_MAX),
                targetSizeFloat=spec.target,
            )
            for spec in entry.specs()
        ]
        return self.pb.GetMetricSpecResponse(metricSpecs=specs)

    async def GetMetrics(self, request: Any, context: Any) -> Any:  # noqa: N802
        entry = await self._entry(request.scaledObjectRef, context)
        report = await self._report(entry, context, fresh=False)
        wanted = request.metricName
        values = [
            self.pb.MetricValue(
                metricName=_remote_name(item.name),
                metricValue=int(item.value),
                metricValueFloat=item.value,
            )
            for item in report.values
            if not wanted or _remote_name(item.name) == wanted
        ]
        if not values:
            known = ", ".join(_remote_name(v.name) for v in report.values)
            await self._abort(
                context, _Unknown(f"scaler {entry.label!r} has no metric {wanted!r} ({known})")
            )
        return self.pb.GetMetricsResponse(metricValues=values)

    async def StreamIsActive(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        owner = self.owner
        entry = await self._entry(request, context)
        entry.streams += 1
        try:
            last: bool | None = None
            while not owner._stopping.is_set():
                seen = entry.version
                report = await self._report(entry, context, fresh=True)
                if report.is_active != last:
                    last = report.is_active
                    yield self.pb.IsActiveResponse(result=last)
                try:
                    await owner._wait_for_change(entry, active=last, seen=seen)
                except ScalerError as exc:
                    await self._abort(context, exc)
        finally:
            entry.streams -= 1

    async def StreamMetricSpec(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        # eventscale scalers' specs do not change while they run: send them, then hold
        # the stream open until the server stops (KEDA reads an end as an error).
        entry = await self._entry(request, context)
        yield self._specs_message(entry)
        await self.owner._stopping.wait()


# ---------------------------------------------------------------------- building servers


def scalers_from_manifest(
    source: Any, *, env: Mapping[str, str] | None = None
) -> dict[str, tuple[Scaler, tuple[str, ...]]]:
    """Build one scaler per trigger of every ScaledObject in a manifest.

    Returns ``{name: (scaler, aliases)}``: each trigger is named ``{object}/{index}``,
    with the aliases ``{object}/{trigger name}`` when the trigger has a name and
    ``{object}`` when the object has a single trigger.

    :raises ConfigError: the manifest or a trigger is invalid (nothing is left open).
    """
    from eventscale.manifests.reader import load_manifests

    manifests = load_manifests(source, ignore_unknown_kinds=True)
    out: dict[str, tuple[Scaler, tuple[str, ...]]] = {}
    for spec in manifests.scaled_objects:
        contexts = manifests.trigger_contexts(spec, env=env)
        for i, ctx in enumerate(contexts):
            aliases: list[str] = []
            if ctx.name:
                aliases.append(f"{spec.name}/{ctx.name}")
            if len(contexts) == 1:
                aliases.append(spec.name)
            out[f"{spec.name}/{i}"] = (create_scaler(ctx), tuple(aliases))
    return out


def load_server_target(target: str, **options: Any) -> ExternalScalerServer:
    """Build a server from ``module:attribute``.

    The attribute may be an :class:`ExternalScalerServer`, a scaler class (with
    ``from_context``: built per request from ``scalerMetadata``), a scaler (served under
    the attribute's name), a mapping of names to scalers, or a callable without
    arguments returning any of those. ``options`` go to the server's constructor.

    :raises ConfigError: the attribute cannot be imported or is none of these.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected module:attribute, got {target!r}", path="target")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {target!r}: {exc}", path="target") from exc
    label = attr.rsplit(".", 1)[-1]
    return _server_for(obj, label, options, call=True)


def _server_for(
    obj: Any, label: str, options: Mapping[str, Any], *, call: bool
) -> ExternalScalerServer:
    if isinstance(obj, ExternalScalerServer):
        return obj
    if isinstance(obj, type) and hasattr(obj, "from_context"):
        return ExternalScalerServer(scaler_class=cast(ScalerFactory, obj), **options)
    if isinstance(obj, Scaler):
        return ExternalScalerServer({label: obj}, **options)
    if isinstance(obj, Mapping):
        return ExternalScalerServer(dict(obj), **options)
    if call and callable(obj):
        return _server_for(obj(), label, options, call=False)
    raise ConfigError(
        f"{label!r} is not a scaler, scaler class, mapping of scalers or server",
        path="target",
    )


async def serve_external(
    source: str | ExternalScalerServer | Mapping[str, Scaler],
    *,
    host: str = "[::]",
    port: int = 6000,
    tls: ServerTLS | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = 5.0,
    ready: Callable[[ExternalScalerServer], None] | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled, then shut down gracefully.

    ``source`` is a server, a mapping of names to scalers, ``module:attribute`` (see
    :func:`load_server_target`), or manifest YAML text / a path to a manifest file
    (``env`` is the environment its ``...FromEnv`` parameters read). ``ready`` is
    called once the server listens.
    """
    server = build_server(source, env=env, **options)
    try:
        await server.start(host, port, tls=tls)
        if ready is not None:
            ready(server)
        await server.wait_for_termination()
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop(grace)


def build_server(
    source: str | ExternalScalerServer | Mapping[str, Scaler],
    *,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> ExternalScalerServer:
    """A server for ``source`` (as :func:`serve_external` takes it), not started yet.

    :raises ConfigError: the manifest, the target or a trigger is invalid.
    """
    if isinstance(source, ExternalScalerServer):
        return source
    if isinstance(source, Mapping):
        return ExternalScalerServer(source, **options)
    if _looks_like_target(source):
        return load_server_target(source, **options)
    text = source
    if "\n" not in source and os.path.exists(source):
        with open(source, encoding="utf-8") as f:
            text = f.read()
    server = ExternalScalerServer(**options)
    for name, (scaler, aliases) in scalers_from_manifest(text, env=env).items():
        server.add(name, scaler, aliases=aliases)
    return server


def _looks_like_target(source: str) -> bool:
    if "\n" in source or os.path.exists(source):
        return False
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", source) is not None
