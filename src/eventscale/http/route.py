"""Read KEDA HTTP add-on ``InterceptorRoute`` manifests (``http.keda.sh/v1beta1``).

An ``InterceptorRoute`` says which requests (routing rules of hosts, path prefixes and
headers) go to which Service, and which metric scales the workload behind it; unlike
the deprecated ``HTTPScaledObject`` it does not name the workload. The workload is
scaled by an ordinary KEDA ``ScaledObject`` whose trigger points at the route::

    triggers:
      - type: external-push
        metadata:
          scalerAddress: keda-add-ons-http-external-scaler.keda:9090
          interceptorRoute: shop

:func:`load_interceptor_routes` reads the routes from YAML text, a mapping or a list of
mappings (other kinds are skipped), with every problem in one
:class:`~eventscale.errors.ConfigError` naming each field path and, for YAML text, its
line. A field eventscale cannot honour (``staticRoutes``, ``coldStart.placeholder``,
``timeouts.request``) is an error, never ignored.
:meth:`InterceptorRouteSpec.to_route` gives the interceptor route and
:func:`bind_scaled_object` replaces a ScaledObject's add-on trigger by ``http``
triggers reading that route in the same process. The semantics follow the add-on's
``operator/apis/http/v1beta1/interceptorroute_types.go`` and ``scaler/handlers.go``;
docs/http.md lists the differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from eventscale.errors import ConfigError
from eventscale.http.manifest import DEFAULT_HOLD_TIMEOUT, FailoverRef, HeaderMatch
from eventscale.manifests.fields import (
    OBJECT_META_FIELDS,
    FieldReader,
    ManifestInput,
    key_path,
    read_kind,
    type_name,
)
from eventscale.scalers.params import parse_go_duration
from eventscale.spec import ScaledObjectSpec, TriggerSpec

if TYPE_CHECKING:
    from eventscale.http.interceptor import Route

__all__ = (
    "API_VERSION",
    "KIND",
    "ROUTE_METADATA_KEY",
    "InterceptorRouteSpec",
    "RequestRate",
    "RoutingRule",
    "bind_scaled_object",
    "load_interceptor_routes",
    "route_references",
)

API_VERSION: Final = "http.keda.sh/v1beta1"
KIND: Final = "InterceptorRoute"
ROUTE_METADATA_KEY: Final = "interceptorRoute"
"""The trigger metadata key that names a ScaledObject's route (``scaler/handlers.go``)."""

#: The add-on's trigger types for its external scaler (``pkg/k8s/scaledobject.go``).
_ROUTE_TRIGGER_TYPES: Final = ("external-push", "external")
#: The add-on's readiness timeout when a fallback is set and none is given.
_FALLBACK_READINESS: Final = 30.0
_TRIGGER_KEYS: Final = frozenset({ROUTE_METADATA_KEY, "scalerAddress"})
_SPEC_FIELDS: Final = frozenset(
    {"target", "coldStart", "timeouts", "rules", "scalingMetric", "staticRoutes"}
)


@attrs.frozen(kw_only=True)
class RoutingRule:
    """One ``spec.rules`` entry: any of ``hosts`` (``*`` when empty) and of
    ``path_prefixes``, and all of ``headers``."""

    hosts: tuple[str, ...] = ("*",)
    path_prefixes: tuple[str, ...] = ("/",)
    headers: tuple[HeaderMatch, ...] = ()


@attrs.frozen(kw_only=True)
class RequestRate:
    """``spec.scalingMetric.requestRate``: requests per second per replica over ``window``.

    ``granularity`` is kept for round trips; eventscale counts in 1-second buckets.
    """

    target_value: int
    window: float = 60.0
    granularity: float = 1.0


@attrs.frozen(kw_only=True)
class InterceptorRouteSpec:
    """An ``InterceptorRoute`` with the add-on's defaults.

    ``concurrency`` and ``request_rate`` are the scaling metrics (one or both; with both
    the ScaledObject scales on whichever asks for more replicas, as in the add-on).
    ``readiness`` is ``timeouts.readiness`` in seconds, ``None`` when unset.
    """

    name: str
    namespace: str = "default"
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    service: str
    port: int | None = None
    port_name: str | None = None
    rules: tuple[RoutingRule, ...]
    concurrency: int | None = None
    request_rate: RequestRate | None = None
    fallback: FailoverRef | None = None
    readiness: float | None = None
    response_header_timeout: float | None = None

    @property
    def key(self) -> str:
        """``namespace/name``: the route name the ``http`` triggers read."""
        return f"{self.namespace}/{self.name}"

    def upstream_url(self, upstreams: Mapping[str, str] | None = None) -> str:
        """Where requests go: ``upstreams[service]`` (or ``namespace/service``), else
        ``http://service:port``."""
        return _service_url(self.service, self.port, self.namespace, upstreams, "spec.target")

    def to_route(
        self,
        upstreams: Mapping[str, str] | None = None,
        *,
        max_held: int = 100,
        hold_timeout: float | None = None,
        retry_after: int = 5,
    ) -> Route:
        """The :class:`~eventscale.http.Route` the interceptor serves for this object.

        The rules become one route (see :func:`load_interceptor_routes` for the rules
        that can). The hold timeout is, in order: ``hold_timeout``, ``timeouts.readiness``,
        30 seconds when there is a fallback, 20 seconds.
        """
        from eventscale.http.interceptor import Route

        timeout = hold_timeout
        if timeout is None:
            if self.readiness is not None:
                timeout = self.readiness
            elif self.fallback is not None:
                timeout = self.fallback.timeout_seconds
            else:
                timeout = DEFAULT_HOLD_TIMEOUT
        fallback = self.fallback
        hosts: list[str] = []
        prefixes: list[str] = []
        for rule in self.rules:
            hosts.extend(h for h in rule.hosts if h not in hosts)
            prefixes.extend(p for p in rule.path_prefixes if p not in prefixes)
        headers = self.rules[0].headers if self.rules else ()
        return Route(
            name=self.key,
            hosts=hosts,
            path_prefixes=prefixes,
            headers=tuple((h.name, h.value) for h in headers),
            upstream=self.upstream_url(upstreams),
            failover=_service_url(
                fallback.service,
                fallback.port,
                self.namespace,
                upstreams,
                "spec.coldStart.fallback.service",
            )
            if fallback is not None
            else None,
            hold_timeout=timeout,
            response_header_timeout=self.response_header_timeout,
            max_held=max_held,
            retry_after=retry_after,
        )

    def triggers(
        self, *, activity_window: float, name: str | None = None
    ) -> tuple[TriggerSpec, ...]:
        """The ``http`` triggers that replace a ScaledObject's add-on trigger.

        One per scaling metric, reading this route's stats in the same process.
        ``activity_window`` (seconds) is the ``http`` trigger's ``activityWindow``: a
        request within it keeps the object active, so none falls between two polls.
        """
        base = name or "http"
        window = f"{activity_window:g}s"
        out: list[TriggerSpec] = []
        if self.concurrency is not None:
            meta = {
                "name": self.key,
                "metric": "concurrency",
                "targetValue": str(self.concurrency),
                "activityWindow": window,
            }
            out.append(TriggerSpec(type="http", name=f"{base}-concurrency", metadata=meta))
        if self.request_rate is not None:
            rate = self.request_rate
            meta = {
                "name": self.key,
                "metric": "requestRate",
                "targetValue": str(rate.target_value),
                "window": f"{rate.window:g}s",
                "activityWindow": window,
            }
            out.append(TriggerSpec(type="http", name=f"{base}-rate", metadata=meta))
        if len(out) == 1:
            out[0] = attrs.evolve(out[0], name=name)
        return tuple(out)


def _service_url(
    service: str, port: int | None, namespace: str, upstreams: Mapping[str, str] | None, path: str
) -> str:
    table = upstreams or {}
    for key in (f"{namespace}/{service}", service):
        if key in table:
            return table[key]
    if port is None:
        raise ConfigError(
            f"service {service!r} is referenced by portName, which only Kubernetes can "
            "resolve: give its URL explicitly (--upstream SERVICE=URL)",
            path=f"{path}.portName",
        )
    return f"http://{service}:{port}"


# ------------------------------------------------------------------- ScaledObjects


def route_references(spec: ScaledObjectSpec) -> tuple[tuple[int, str], ...]:
    """``(trigger index, route name)`` of each of ``spec``'s add-on route triggers."""
    return tuple(
        (i, t.metadata[ROUTE_METADATA_KEY])
        for i, t in enumerate(spec.triggers)
        if t.type in _ROUTE_TRIGGER_TYPES and ROUTE_METADATA_KEY in t.metadata
    )


def bind_scaled_object(
    spec: ScaledObjectSpec, routes: Mapping[str, InterceptorRouteSpec]
) -> ScaledObjectSpec:
    """``spec`` with each add-on route trigger replaced by ``http`` triggers.

    ``routes`` maps ``namespace/name`` to a route; a trigger names a route of the
    ScaledObject's namespace. Other triggers are kept. The ``http`` triggers' activity
    window is the ScaledObject's ``pollingInterval``; its ``cooldownPeriod`` then
    decides when an idle workload goes to zero, as with the add-on's scaler.

    :raises ConfigError: a route that is not in ``routes``, or metadata the add-on's
        scaler does not read, with the trigger's path.
    """
    refs = dict(route_references(spec))
    errors: list[ConfigError] = []
    triggers: list[TriggerSpec] = []
    for i, trigger in enumerate(spec.triggers):
        if i not in refs:
            triggers.append(trigger)
            continue
        path = f"spec.triggers[{i}].metadata"
        for key in sorted(set(trigger.metadata) - _TRIGGER_KEYS):
            errors.append(
                ConfigError(
                    f"unknown field {key!r}: the add-on's scaler reads only "
                    f"{ROUTE_METADATA_KEY!r} (and the scalerAddress it is reached at)",
                    path=f"{path}.{key}",
                )
            )
        route = routes.get(f"{spec.namespace}/{refs[i]}")
        if route is None:
            errors.append(
                ConfigError(
                    f"no InterceptorRoute {refs[i]!r} in namespace {spec.namespace!r} "
                    "in the manifests",
                    path=f"{path}.{ROUTE_METADATA_KEY}",
                )
            )
            continue
        triggers.extend(route.triggers(activity_window=spec.polling_interval, name=trigger.name))
    ConfigError.collect(
        [e.prefixed(f"[ScaledObject {spec.namespace}/{spec.name}]") for e in errors],
        what="invalid ScaledObject",
    )
    return attrs.evolve(spec, triggers=triggers)


# --------------------------------------------------------------------------- reading


def _duration(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """A ``metav1.Duration`` (``30s``, ``1m30s``) in seconds; ``None`` when absent."""
    value = obj.get(key)
    where = key_path(path, key)
    if value is None:
        return None
    if not isinstance(value, str):
        r.fail(where, f"must be a duration string such as '30s', got {type_name(value)}")
        return None
    try:
        return parse_go_duration(value.strip()).total_seconds()
    except ValueError as exc:
        r.fail(where, str(exc))
        return None


def _port(r: FieldReader, obj: Mapping[str, Any], path: str) -> tuple[int | None, str | None]:
    port = r.integer(obj, "port", path, default=None, minimum=1, maximum=65535)
    port_name = r.string(obj, "portName", path)
    if (obj.get("port") is None) == (obj.get("portName") in (None, "")):
        r.fail(path, "exactly one of 'port' or 'portName' must be set")
    return port, port_name


def _strings(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(r.items(obj, key, path) or ()):
        if not isinstance(item, str):
            r.fail(f"{key_path(path, key)}[{i}]", f"must be a string, got {type_name(item)}")
            continue
        out.append(item.strip())
    return out


def _read_rule(r: FieldReader, item: Any, path: str) -> RoutingRule | None:
    rule = r.mapping(item, path, ("hosts", "paths", "headers"))
    if rule is None:
        return None
    hosts: list[str] = []
    for host in _strings(r, rule, "hosts", path):
        # The add-on strips a port and reads "" and "*" as the catch-all (pkg/routing/key.go).
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        hosts.append("*" if name in ("", "*") else name.lower())
    prefixes: list[str] = []
    for i, entry in enumerate(r.items(rule, "paths", path) or ()):
        ppath = f"{path}.paths[{i}]"
        match = r.mapping(entry, ppath, ("value",))
        value = r.string(match, "value", ppath, required=True) if match is not None else None
        if value is not None:
            prefixes.append("/" + value.strip().strip("/"))
    headers: list[HeaderMatch] = []
    seen: set[str] = set()
    for i, entry in enumerate(r.items(rule, "headers", path) or ()):
        hpath = f"{path}.headers[{i}]"
        header = r.mapping(entry, hpath, ("name", "value"))
        if header is None:
            continue
        header_name = r.string(header, "name", hpath, required=True)
        # An empty value matches an empty header; an absent one any value.
        value = "" if header.get("value") == "" else r.string(header, "value", hpath)
        if header_name is None:
            continue
        name = header_name
        if name.lower() in seen:
            r.fail(f"{hpath}.name", f"duplicate header {name!r}")
        seen.add(name.lower())
        headers.append(HeaderMatch(name=name, value=value))
    return RoutingRule(
        hosts=tuple(dict.fromkeys(hosts)) or ("*",),
        path_prefixes=tuple(dict.fromkeys(prefixes)) or ("/",),
        headers=tuple(headers),
    )


def _read_rules(r: FieldReader, spec: Mapping[str, Any]) -> tuple[RoutingRule, ...]:
    """The rules; several must fit one route (same headers, and same hosts or paths)."""
    rules: list[RoutingRule] = []
    for i, item in enumerate(r.items(spec, "rules", "spec") or ()):
        rule = _read_rule(r, item, f"spec.rules[{i}]")
        if rule is None:
            continue
        if rules:
            first = rules[0]
            same_headers = {(h.name.lower(), h.value) for h in rule.headers} == {
                (h.name.lower(), h.value) for h in first.headers
            }
            all_hosts = all(set(x.hosts) == set(first.hosts) for x in rules)
            all_paths = all(set(x.path_prefixes) == set(first.path_prefixes) for x in rules)
            if not same_headers or not (
                (all_hosts and set(rule.hosts) == set(first.hosts))
                or (all_paths and set(rule.path_prefixes) == set(first.path_prefixes))
            ):
                r.fail(
                    f"spec.rules[{i}]",
                    "several rules are supported when they have the same headers and the "
                    "same hosts (or the same paths); merge them into one rule or split the "
                    "InterceptorRoute",
                )
        rules.append(rule)
    if not rules and not r.failed_under("spec.rules"):
        r.fail("spec.rules", "at least one rule is required: without one no request is routed")
    return tuple(rules)


def _read_scaling(r: FieldReader, spec: Mapping[str, Any]) -> tuple[int | None, RequestRate | None]:
    path = "spec.scalingMetric"
    sm = r.sub(spec, "scalingMetric", "spec", ("concurrency", "requestRate"), required=True)
    if sm is None:
        return None, None
    if sm.get("concurrency") is None and sm.get("requestRate") is None:
        r.fail(path, "at least one of 'concurrency' or 'requestRate' must be set")
    concurrency = None
    conc = r.sub(sm, "concurrency", path, ("targetValue",))
    if conc is not None:
        concurrency = r.integer(
            conc, "targetValue", f"{path}.concurrency", default=None, required=True, minimum=1
        )
    rate = None
    rpath = f"{path}.requestRate"
    rr = r.sub(sm, "requestRate", path, ("targetValue", "window", "granularity"))
    if rr is not None:
        target = r.integer(rr, "targetValue", rpath, default=None, required=True, minimum=1)
        window = _duration(r, rr, "window", rpath)
        granularity = _duration(r, rr, "granularity", rpath)
        for key, value in (("window", window), ("granularity", granularity)):
            if value is not None and value <= 0:
                r.fail(f"{rpath}.{key}", "must be greater than 0")
        if window and granularity and window < granularity:
            r.fail(f"{rpath}.granularity", "must not be longer than the window")
        if target is not None:
            rate = RequestRate(
                target_value=target,
                window=window if window and window > 0 else 60.0,
                granularity=granularity if granularity and granularity > 0 else 1.0,
            )
    return concurrency, rate


def _read_cold_start(r: FieldReader, spec: Mapping[str, Any]) -> FailoverRef | None:
    path = "spec.coldStart"
    cold = r.sub(spec, "coldStart", "spec", ("fallback", "placeholder"))
    if cold is None:
        return None
    if cold.get("placeholder") is not None:
        r.fail(
            f"{path}.placeholder",
            "is not supported: eventscale holds the request (or sends it to the fallback)",
        )
    elif cold.get("fallback") is None:
        r.fail(path, "at least one of 'fallback' or 'placeholder' must be set")
    fallback = r.sub(cold, "fallback", path, ("service",))
    if fallback is None:
        return None
    spath = f"{path}.fallback.service"
    ref = r.sub(
        fallback, "service", f"{path}.fallback", ("name", "port", "portName"), required=True
    )
    if ref is None:
        return None
    name = r.string(ref, "name", spath, required=True)
    port, port_name = _port(r, ref, spath)
    if name is None:
        return None
    return FailoverRef(
        service=name, port=port, port_name=port_name, timeout_seconds=_FALLBACK_READINESS
    )


def _read_timeouts(
    r: FieldReader, spec: Mapping[str, Any], has_fallback: bool
) -> tuple[float | None, float | None]:
    path = "spec.timeouts"
    timeouts = r.sub(spec, "timeouts", "spec", ("readiness", "request", "responseHeader")) or {}
    readiness = _duration(r, timeouts, "readiness", path)
    request = _duration(r, timeouts, "request", path)
    header = _duration(r, timeouts, "responseHeader", path)
    if request:
        r.fail(
            f"{path}.request",
            "is not supported: eventscale bounds the wait for a cold start "
            "(timeouts.readiness) and for response headers (timeouts.responseHeader), "
            "not the whole request; remove it or set it to 0s",
        )
    if readiness == 0 and not has_fallback:
        r.fail(
            f"{path}.readiness",
            "0s (no readiness deadline) is not supported: eventscale holds a request "
            "for a bounded time; give a duration",
        )
    return (readiness or None), (header or None)


def _read_one(r: FieldReader, doc: Mapping[str, Any]) -> InterceptorRouteSpec | None:
    r.mapping(doc, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    if doc.get("apiVersion") != API_VERSION:
        r.fail("apiVersion", f"must be {API_VERSION!r}, got {type_name(doc.get('apiVersion'))}")
    meta = r.object_meta(doc, OBJECT_META_FIELDS)
    spec = r.sub(doc, "spec", "", _SPEC_FIELDS, required=True)
    if spec is None:
        return None
    if r.items(spec, "staticRoutes", "spec"):
        r.fail(
            "spec.staticRoutes",
            "is not supported: eventscale serves no static responses; route those paths "
            "to a Service of their own",
        )
    target = r.sub(spec, "target", "spec", ("service", "port", "portName"), required=True)
    service = port = port_name = None
    if target is not None:
        service = r.string(target, "service", "spec.target", required=True)
        port, port_name = _port(r, target, "spec.target")
    rules = _read_rules(r, spec)
    concurrency, rate = _read_scaling(r, spec)
    fallback = _read_cold_start(r, spec)
    readiness, header = _read_timeouts(r, spec, fallback is not None)
    if r.errors or service is None or not meta.name:
        return None
    return InterceptorRouteSpec(
        name=meta.name,
        namespace=meta.namespace,
        annotations=meta.annotations,
        labels=meta.labels,
        service=service,
        port=port,
        port_name=port_name,
        rules=rules,
        concurrency=concurrency,
        request_rate=rate,
        fallback=fallback,
        readiness=readiness,
        response_header_timeout=header,
    )


def load_interceptor_routes(source: ManifestInput) -> tuple[InterceptorRouteSpec, ...]:
    """Every ``InterceptorRoute`` in ``source`` (YAML text, a mapping or a list of them).

    Other kinds (a ScaledObject, an ``HTTPScaledObject``, a Deployment) are skipped; a
    ``v1`` ``List`` is expanded.

    :raises ConfigError: listing every problem of every route with its field path (and,
        for YAML text, its line); in a stream of several documents each path is
        prefixed with ``[doc N]``.
    """
    return read_kind(source, KIND, _read_one)
