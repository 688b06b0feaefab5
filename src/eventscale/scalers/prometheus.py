"""Prometheus scaler (``type: prometheus``): scale on the value of one PromQL query.

Each poll runs ``query`` through the instant-query API (``GET {serverAddress}/api/v1/query``)
and reports the single value it returns, as KEDA's prometheus scaler does (KEDA's
pkg/scalers/prometheus_scaler.go)::

    triggers:
      - type: prometheus
        metadata:
          serverAddress: http://prometheus:9090
          query: sum(rate(http_requests_total{deployment="web"}[2m]))
          threshold: "100"

* The query must return one sample (a one-element vector or a scalar). Several series
  are an error: aggregate them (``sum(...)``).
* An empty result is 0 while ``ignoreNullValues`` is true (the default) and an error
  when it is false. ``NaN`` and infinities are always an error (the message says which).
* A ``status`` other than ``success`` (a bad query, a timeout inside Prometheus) is an
  error carrying Prometheus's own ``errorType`` and ``error`` text, redacted.

Authentication (``authModes``: ``basic``, ``bearer``, ``tls``, ``custom``) is described
in docs/scalers/prometheus.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import attrs

from eventscale.metrics import (
    MetricType,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import redact_text, redact_url
from eventscale.scalers._http_source import (
    AuthMode,
    HTTPAuth,
    HTTPScalerBase,
    read_key_value_map,
)
from eventscale.scalers.params import Params, TriggerContext

__all__ = ("PrometheusMetadata", "PrometheusScaler")

_SUPPORTED_AUTH: Final = frozenset({AuthMode.BASIC, AuthMode.BEARER, AuthMode.TLS, AuthMode.CUSTOM})
_EXTRA: Final = "prometheus"


def _keys_only(mapping: Mapping[str, str]) -> str:
    return repr(sorted(mapping))


@attrs.frozen(kw_only=True)
class PrometheusMetadata:
    """The parsed ``prometheus`` trigger metadata.

    ``timeout`` is in seconds (``None``: the scaler's default). ``custom_headers`` values
    never show in the repr (only their names).
    """

    server_address: str = attrs.field(repr=redact_url)
    query: str
    threshold: float
    activation_threshold: float = 0.0
    query_parameters: Mapping[str, str] = attrs.field(factory=dict)
    namespace: str = ""
    custom_headers: Mapping[str, str] = attrs.field(factory=dict, repr=_keys_only)
    ignore_null_values: bool = True
    unsafe_ssl: bool = False
    timeout: float | None = None
    auth: HTTPAuth = attrs.field(factory=HTTPAuth)
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    path: str | None = None

    @property
    def target(self) -> float:
        """``threshold``."""
        return self.threshold

    @property
    def activation_target(self) -> float:
        """``activationThreshold``."""
        return self.activation_threshold

    @property
    def metric_name(self) -> str:
        """``s{index}-prometheus``, as KEDA names it."""
        return metric_name(self.index, normalize_metric_name("prometheus"))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> PrometheusMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        server = p.string("serverAddress", required=True)
        if server is not None and not server.startswith(("http://", "https://")):
            p.fail('"serverAddress" must be an http:// or https:// URL', "serverAddress")
        query = p.string("query", required=True)
        threshold = p.number("threshold", required=True)
        if threshold is not None and threshold <= 0:
            p.fail('"threshold" must be greater than 0', "threshold")
        activation = p.number("activationThreshold", default=0.0)
        query_parameters = read_key_value_map(p, "queryParameters")
        namespace = p.string("namespace", default="")
        headers = read_key_value_map(p, "customHeaders")
        ignore_null = p.boolean("ignoreNullValues", default=True)
        unsafe_ssl = p.boolean("unsafeSsl", default=False)
        timeout = p.duration("timeout")
        auth = HTTPAuth.from_params(p, supported=_SUPPORTED_AUTH, trigger_type="prometheus")
        p.finish()
        assert server is not None
        assert query is not None
        assert threshold is not None
        return cls(
            server_address=server.rstrip("/"),
            query=query,
            threshold=threshold,
            activation_threshold=activation,
            query_parameters=query_parameters,
            namespace=namespace,
            custom_headers=headers,
            ignore_null_values=ignore_null,
            unsafe_ssl=unsafe_ssl,
            timeout=timeout.total_seconds() if timeout else None,
            auth=auth,
            index=ctx.index,
            metric_type=ctx.metric_type,
            path=ctx.path,
        )


def _error_detail(body: bytes) -> str | None:
    """``errorType: error`` from a Prometheus API error body, if it is one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("error"):
        return None
    kind = doc.get("errorType")
    return f"{kind}: {doc['error']}" if kind else str(doc["error"])


class PrometheusScaler(HTTPScalerBase[PrometheusMetadata]):
    """Reports the value of one PromQL query: the metric ``s{index}-prometheus``.

    Built like every HTTP trigger (:class:`~eventscale.scalers._http_source.HTTPScalerBase`):
    ``PrometheusScaler(metadata, session=..., timeout=..., max_body=..., trigger_name=...)``.
    """

    trigger_type = "prometheus"
    what = "Prometheus"
    extra = _EXTRA

    @classmethod
    def parse(cls, ctx: TriggerContext) -> PrometheusMetadata:
        """Parse a ``prometheus`` trigger."""
        return PrometheusMetadata.from_context(ctx)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"PrometheusScaler(serverAddress={self._shown_server()!r}, query={m.query!r}, "
            f"threshold={m.threshold:g})"
        )

    def _shown_server(self) -> str:
        return redact_text(self.metadata.server_address, self.metadata.auth.secrets())

    async def read_value(self) -> float:
        """Run the query once (see :meth:`query`)."""
        return await self.query()

    async def query(self) -> float:
        """Run the query once and return its value. :raises ScalerError: on any failure."""
        m = self.metadata
        params: list[tuple[str, str]] = [
            ("query", m.query),
            # KEDA sends RFC 3339 seconds; a Unix time keeps the fraction, so a series
            # scraped within the current second is already seen.
            ("time", f"{time.time():.3f}"),
        ]
        if m.namespace:
            params.append(("namespace", m.namespace))
        params.extend(m.query_parameters.items())
        body = await self._source.get(
            f"{m.server_address}/api/v1/query",
            params=params,
            headers=m.custom_headers,
            ok=lambda status: 200 <= status <= 299,
            error_detail=_error_detail,
        )
        try:
            doc = json.loads(body)
        except ValueError:
            raise self._fail(f"Prometheus {self._shown_server()} did not answer JSON") from None
        if not isinstance(doc, dict):
            raise self._fail("Prometheus answered JSON that is not an object")
        if doc.get("status") != "success":
            detail = _error_detail(body) or f"status {doc.get('status')!r}"
            raise self._fail(f"Prometheus refused query {m.query!r}: {detail}")
        return self._value(doc.get("data"))

    def _value(self, data: Any) -> float:
        m = self.metadata
        if not isinstance(data, dict):
            raise self._fail("Prometheus answered no 'data' object")
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar":
            sample = result
        elif kind == "vector" and isinstance(result, list):
            if len(result) > 1:
                raise self._fail(
                    f"query {m.query!r} returned {len(result)} series; it must return one "
                    "(aggregate it, e.g. with sum())"
                )
            if not result:
                if m.ignore_null_values:
                    return 0.0
                raise self._fail(
                    f"query {m.query!r} returned no series: the target may be lost "
                    "(ignoreNullValues is false)"
                )
            sample = result[0].get("value") if isinstance(result[0], dict) else None
        else:
            raise self._fail(
                f"query {m.query!r} returned a {kind!r} result; it must return an instant "
                "vector or a scalar"
            )
        if not isinstance(sample, list) or len(sample) < 2 or not isinstance(sample[1], str):
            raise self._fail(f"query {m.query!r} returned a sample without a value")
        try:
            value = float(sample[1])
        except ValueError:
            raise self._fail(f"query {m.query!r} returned {sample[1]!r}, not a number") from None
        if math.isnan(value):
            raise self._fail(f"query {m.query!r} returned NaN")
        if math.isinf(value):
            raise self._fail(f"query {m.query!r} returned {'+' if value > 0 else '-'}Inf")
        return value
