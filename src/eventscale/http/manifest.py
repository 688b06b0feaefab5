"""Read KEDA HTTP add-on ``HTTPScaledObject`` manifests (``http.keda.sh/v1alpha1``).

An ``HTTPScaledObject`` says which hosts (and path prefixes) route to which Service,
and how to scale the workload behind it. :func:`load_http_scaled_objects` reads them
from YAML text, a mapping or a list of mappings (other kinds are skipped unless
``ignore_unknown_kinds=False``); every problem is reported in one
:class:`~eventscale.errors.ConfigError` that names each field path
(``spec.scaleTargetRef.port``) and, for YAML text, its line. The fields are read by
:class:`~eventscale.manifests.fields.FieldReader`, as KEDA's own kinds are, so the checks
and their wording are the same (did-you-mean for unknown fields, 32-bit integers).

:meth:`HTTPScaledObjectSpec.to_scaled_object_spec` gives the ScaledObject eventscale
runs for it (one ``http`` trigger reading the interceptor's pending count for the
route), and :meth:`HTTPScaledObjectSpec.to_route` the interceptor route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from eventscale.errors import ConfigError
from eventscale.http.scaler import HTTPMetric
from eventscale.manifests.fields import (
    FieldReader,
    ManifestInput,
    key_path,
    read_kind,
    type_name,
)
from eventscale.scalers.params import parse_go_duration
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec

__all__ = (
    "API_VERSION",
    "ANNOTATION_SKIP_SCALED_OBJECT",
    "FailoverRef",
    "HTTPScaleTargetRef",
    "HTTPScaledObjectSpec",
    "HeaderMatch",
    "ScalingMetric",
    "load_http_scaled_objects",
)

API_VERSION: Final = "http.keda.sh/v1alpha1"
KIND: Final = "HTTPScaledObject"
ANNOTATION_SKIP_SCALED_OBJECT: Final = "httpscaledobject.keda.sh/skip-scaledobject-creation"
#: How long a request waits for a cold upstream when the manifest does not say
#: (the add-on's KEDA_CONDITION_WAIT_TIMEOUT default).
DEFAULT_HOLD_TIMEOUT: Final = 20.0

_SPEC_FIELDS: Final = frozenset(
    {
        "hosts",
        "pathPrefixes",
        "headers",
        "scaleTargetRef",
        "coldStartTimeoutFailoverRef",
        "replicas",
        "targetPendingRequests",
        "scaledownPeriod",
        "initialCooldownPeriod",
        "scalingMetric",
        "timeouts",
    }
)


@attrs.frozen(kw_only=True)
class HTTPScaleTargetRef:
    """``spec.scaleTargetRef``: the workload to scale and the Service to route to."""

    name: str
    service: str
    port: int | None = None
    port_name: str | None = None
    kind: str = "Deployment"
    api_version: str = "apps/v1"


@attrs.frozen(kw_only=True)
class FailoverRef:
    """``spec.coldStartTimeoutFailoverRef``: where held requests go after ``timeout_seconds``."""

    service: str
    port: int | None = None
    port_name: str | None = None
    timeout_seconds: float = 30.0


@attrs.frozen(kw_only=True)
class HeaderMatch:
    """One ``spec.headers`` entry: the header must be present (with ``value``, when set)."""

    name: str
    value: str | None = None


@attrs.frozen(kw_only=True)
class ScalingMetric:
    """``spec.scalingMetric`` (or the deprecated ``targetPendingRequests``).

    ``target_value`` is per replica: requests in flight for ``concurrency``, requests
    per second (averaged over ``window`` seconds) for ``requestRate``. ``granularity``
    is kept for round trips; eventscale counts arrivals in 1-second buckets.
    """

    metric: HTTPMetric = HTTPMetric.CONCURRENCY
    target_value: int = 100
    window: float = 60.0
    granularity: float = 1.0


@attrs.frozen(kw_only=True)
class HTTPScaledObjectSpec:
    """An ``HTTPScaledObject`` with the add-on's defaults."""

    name: str
    namespace: str = "default"
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...] = ("/",)
    headers: tuple[HeaderMatch, ...] = ()
    scale_target_ref: HTTPScaleTargetRef
    cold_start_timeout_failover_ref: FailoverRef | None = None
    min_replicas: int = 0
    max_replicas: int = 100
    scaling_metric: ScalingMetric = attrs.field(factory=ScalingMetric)
    scaledown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    condition_wait: float | None = None
    response_header_timeout: float | None = None

    @property
    def key(self) -> str:
        """``namespace/name``: the route name and the ScaledObject key."""
        return f"{self.namespace}/{self.name}"

    @property
    def skip_scaled_object_creation(self) -> bool:
        """The ``skip-scaledobject-creation`` annotation is ``"true"``: route only."""
        return self.annotations.get(ANNOTATION_SKIP_SCALED_OBJECT, "").strip() == "true"

    def upstream_url(self, upstreams: Mapping[str, str] | None = None) -> str:
        """The URL requests are forwarded to.

        ``upstreams`` maps a Service name (or ``namespace/service``) to a base URL;
        otherwise ``http://{service}:{port}``, which resolves where the Service name is
        a host name (Docker networks, Compose, Kubernetes in the same namespace).
        """
        return _upstream(
            self.scale_target_ref.service,
            self.scale_target_ref.port,
            self.namespace,
            upstreams,
            "spec.scaleTargetRef",
        )

    def to_route(
        self,
        upstreams: Mapping[str, str] | None = None,
        *,
        max_held: int = 100,
        hold_timeout: float | None = None,
        retry_after: int = 5,
    ) -> Any:
        """The :class:`~eventscale.http.Route` the interceptor serves for this object.

        The hold timeout is, in order: ``hold_timeout``, the failover ref's
        ``timeoutSeconds``, ``spec.timeouts.conditionWait``, 20 seconds.
        """
        from eventscale.http.interceptor import Route

        failover = self.cold_start_timeout_failover_ref
        timeout = hold_timeout
        if timeout is None:
            if failover is not None:
                timeout = failover.timeout_seconds
            elif self.condition_wait is not None:
                timeout = self.condition_wait
            else:
                timeout = DEFAULT_HOLD_TIMEOUT
        failover_url = (
            _upstream(
                failover.service,
                failover.port,
                self.namespace,
                upstreams,
                "spec.coldStartTimeoutFailoverRef",
            )
            if failover is not None
            else None
        )
        return Route(
            name=self.key,
            hosts=self.hosts,
            path_prefixes=self.path_prefixes,
            headers=tuple((h.name, h.value) for h in self.headers),
            upstream=self.upstream_url(upstreams),
            failover=failover_url,
            hold_timeout=timeout,
            response_header_timeout=self.response_header_timeout,
            max_held=max_held,
            retry_after=retry_after,
        )

    def to_scaled_object_spec(self, *, polling_interval: float = 1.0) -> ScaledObjectSpec:
        """The ScaledObject that scales this object's workload.

        One ``http`` trigger reads the interceptor's stats for the route (by name, in
        the same process). Activity is measured over ``scaledownPeriod``: the trigger
        stays active while a request arrived or finished within it, and the
        ScaledObject's ``cooldownPeriod`` is 0, so the workload goes to zero
        ``scaledownPeriod`` after the last request, however short the requests were.
        """
        metric = self.scaling_metric
        metadata = {
            "name": self.key,
            "metric": metric.metric.value,
            "targetValue": str(metric.target_value),
            "activityWindow": f"{self.scaledown_period:g}s",
        }
        if metric.metric is HTTPMetric.REQUEST_RATE:
            metadata["window"] = f"{metric.window:g}s"
        ref = self.scale_target_ref
        return ScaledObjectSpec(
            name=self.name,
            namespace=self.namespace,
            labels=self.labels,
            scale_target_ref=ScaleTargetRef(
                name=ref.name, kind=ref.kind, api_version=ref.api_version
            ),
            triggers=(TriggerSpec(type="http", name="http", metadata=metadata),),
            polling_interval=polling_interval,
            cooldown_period=0.0,
            initial_cooldown_period=self.initial_cooldown_period,
            min_replica_count=self.min_replicas,
            max_replica_count=self.max_replicas,
        )


def _upstream(
    service: str,
    port: int | None,
    namespace: str,
    upstreams: Mapping[str, str] | None,
    path: str,
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


# --------------------------------------------------------------------------- reading


def _nonblank(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """A required string that must hold more than white space."""
    value = r.string(obj, key, path, required=True)
    if value is not None and not value.strip():
        r.fail(key_path(path, key), "must not be empty")
        return None
    return value


def _duration(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """A Go duration string (``30s``, ``1m30s``) in seconds."""
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


def _string_list(r: FieldReader, obj: Mapping[str, Any], key: str, path: str) -> list[str] | None:
    """A list of non-empty strings, each stripped."""
    items = r.items(obj, key, path)
    if items is None:
        return None
    where = key_path(path, key)
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            r.fail(f"{where}[{i}]", "must be a non-empty string")
            continue
        out.append(item.strip())
    return out


def _read_port(r: FieldReader, obj: Mapping[str, Any], path: str) -> tuple[int | None, str | None]:
    port = r.integer(obj, "port", path, default=None, minimum=1, maximum=65535)
    port_name = r.string(obj, "portName", path)
    if ("port" in obj) == ("portName" in obj):
        r.fail(f"{path}.port", "must define either 'port' or 'portName' (exactly one)")
    return port, port_name


def _read_target_ref(r: FieldReader, spec: Mapping[str, Any]) -> HTTPScaleTargetRef | None:
    path = "spec.scaleTargetRef"
    ref = r.sub(
        spec,
        "scaleTargetRef",
        "spec",
        ("name", "kind", "apiVersion", "service", "port", "portName", "deployment"),
        required=True,
    )
    if ref is None:
        return None
    if "deployment" in ref:
        r.fail(f"{path}.deployment", "was replaced by 'name' (and 'kind') in the add-on")
    name = _nonblank(r, ref, "name", path)
    service = _nonblank(r, ref, "service", path)
    kind = r.string(ref, "kind", path) or "Deployment"
    api_version = r.string(ref, "apiVersion", path) or "apps/v1"
    port, port_name = _read_port(r, ref, path)
    if name is None or service is None:
        return None
    return HTTPScaleTargetRef(
        name=name,
        service=service,
        port=port,
        port_name=port_name,
        kind=kind,
        api_version=api_version,
    )


def _read_failover(r: FieldReader, spec: Mapping[str, Any]) -> FailoverRef | None:
    path = "spec.coldStartTimeoutFailoverRef"
    ref = r.sub(
        spec,
        "coldStartTimeoutFailoverRef",
        "spec",
        ("service", "port", "portName", "timeoutSeconds"),
    )
    if ref is None:
        return None
    service = _nonblank(r, ref, "service", path)
    port, port_name = _read_port(r, ref, path)
    timeout = r.integer(ref, "timeoutSeconds", path, default=None, minimum=1)
    if service is None:
        return None
    return FailoverRef(
        service=service,
        port=port,
        port_name=port_name,
        timeout_seconds=float(timeout if timeout is not None else 30),
    )


def _read_headers(r: FieldReader, spec: Mapping[str, Any]) -> tuple[HeaderMatch, ...]:
    out: list[HeaderMatch] = []
    seen: set[str] = set()
    for i, item in enumerate(r.items(spec, "headers", "spec") or ()):
        path = f"spec.headers[{i}]"
        entry = r.mapping(item, path, ("name", "value"))
        if entry is None:
            continue
        name = _nonblank(r, entry, "name", path)
        # An empty value is a match on an empty header, not on any value.
        val = "" if entry.get("value") == "" else r.string(entry, "value", path)
        if name is None:
            continue
        if name.lower() in seen:
            r.fail(f"{path}.name", f"duplicate header {name!r}")
        seen.add(name.lower())
        out.append(HeaderMatch(name=name, value=val))
    return tuple(out)


def _read_scaling_metric(r: FieldReader, spec: Mapping[str, Any]) -> ScalingMetric:
    pending = r.integer(spec, "targetPendingRequests", "spec", default=None, minimum=1)
    path = "spec.scalingMetric"
    sm = r.sub(spec, "scalingMetric", "spec", ("concurrency", "requestRate"))
    if sm is None:
        return ScalingMetric(target_value=pending if pending is not None else 100)
    if "concurrency" in sm and "requestRate" in sm:
        r.fail(path, "'concurrency' and 'requestRate' are mutually exclusive")
    if "requestRate" in sm:
        rpath = f"{path}.requestRate"
        rate = r.sub(sm, "requestRate", path, ("targetValue", "window", "granularity")) or {}
        target = r.integer(rate, "targetValue", rpath, default=None, minimum=1)
        window = _duration(r, rate, "window", rpath)
        granularity = _duration(r, rate, "granularity", rpath)
        if window is not None and window <= 0:
            r.fail(f"{rpath}.window", "must be greater than 0")
        if granularity is not None and granularity <= 0:
            r.fail(f"{rpath}.granularity", "must be greater than 0")
        if window is not None and granularity is not None and 0 < window < granularity:
            r.fail(f"{rpath}.granularity", "must not be longer than the window")
        return ScalingMetric(
            metric=HTTPMetric.REQUEST_RATE,
            target_value=target if target is not None else 100,
            window=window if window and window > 0 else 60.0,
            granularity=granularity if granularity and granularity > 0 else 1.0,
        )
    cpath = f"{path}.concurrency"
    conc = r.sub(sm, "concurrency", path, ("targetValue",)) or {}
    target = r.integer(conc, "targetValue", cpath, default=None, minimum=1)
    if target is None:
        target = pending
    return ScalingMetric(target_value=target if target is not None else 100)


def _read_one(r: FieldReader, doc: Mapping[str, Any]) -> HTTPScaledObjectSpec | None:
    r.mapping(doc, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    if doc.get("apiVersion") != API_VERSION:
        r.fail("apiVersion", f"must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    meta = r.sub(doc, "metadata", "") or {}
    name = _nonblank(r, meta, "name", "metadata")
    namespace = r.string(meta, "namespace", "metadata") or "default"
    annotations = r.string_map(meta, "annotations", "metadata")
    labels = r.string_map(meta, "labels", "metadata")
    spec = r.sub(
        doc,
        "spec",
        "",
        _SPEC_FIELDS,
        required=True,
        notes={"host": "the add-on renamed 'host' to 'hosts'"},
    )
    if spec is None:
        return None
    hosts = _string_list(r, spec, "hosts", "spec")
    if hosts == [] or spec.get("hosts") is None:
        r.fail("spec.hosts", "at least one host is required")
    prefixes = _string_list(r, spec, "pathPrefixes", "spec")
    headers = _read_headers(r, spec)
    target_ref = _read_target_ref(r, spec)
    failover = _read_failover(r, spec)
    replicas = r.sub(spec, "replicas", "spec", ("min", "max")) or {}
    min_replicas = r.integer(replicas, "min", "spec.replicas", default=None, minimum=0)
    max_replicas = r.integer(replicas, "max", "spec.replicas", default=None, minimum=1)
    lo = min_replicas if min_replicas is not None else 0
    hi = max_replicas if max_replicas is not None else 100
    if lo > hi:
        r.fail("spec.replicas.min", f"min ({lo}) must be <= max ({hi})")
    metric = _read_scaling_metric(r, spec)
    scaledown = r.integer(spec, "scaledownPeriod", "spec", default=None, minimum=0)
    initial = r.integer(spec, "initialCooldownPeriod", "spec", default=None, minimum=0)
    timeouts = r.sub(spec, "timeouts", "spec", ("conditionWait", "responseHeader")) or {}
    condition_wait = _duration(r, timeouts, "conditionWait", "spec.timeouts")
    response_header = _duration(r, timeouts, "responseHeader", "spec.timeouts")
    if r.errors or name is None or target_ref is None or not hosts:
        return None
    return HTTPScaledObjectSpec(
        name=name,
        namespace=namespace,
        annotations=annotations,
        labels=labels,
        hosts=tuple(hosts),
        path_prefixes=tuple(p if p.startswith("/") else f"/{p}" for p in prefixes)
        if prefixes
        else ("/",),
        headers=headers,
        scale_target_ref=target_ref,
        cold_start_timeout_failover_ref=failover,
        min_replicas=lo,
        max_replicas=hi,
        scaling_metric=metric,
        scaledown_period=float(scaledown if scaledown is not None else 300),
        initial_cooldown_period=float(initial or 0),
        condition_wait=condition_wait or None,
        response_header_timeout=response_header or None,
    )


def load_http_scaled_objects(
    source: ManifestInput, *, ignore_unknown_kinds: bool = True
) -> tuple[HTTPScaledObjectSpec, ...]:
    """Every ``HTTPScaledObject`` in ``source`` (YAML text, a mapping or a list of them).

    Other kinds are skipped (a Deployment or a ScaledObject in the same file) unless
    ``ignore_unknown_kinds`` is false. A ``v1`` ``List`` is expanded.

    :raises ConfigError: listing every problem of every document with its field path
        (and, for YAML text, its line); in a stream of several documents each path is
        prefixed with ``[doc N]``.
    """
    return read_kind(source, KIND, _read_one, ignore_unknown_kinds=ignore_unknown_kinds)
