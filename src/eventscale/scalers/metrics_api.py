"""Metrics API scaler (``type: metrics-api``): scale on a number any HTTP API serves.

Each poll GETs ``url`` and reads the number at ``valueLocation`` in the answer, as KEDA's
metrics-api scaler does (KEDA's pkg/scalers/metrics_api_scaler.go)::

    triggers:
      - type: metrics-api
        metadata:
          url: http://api:3232/api/v1/stats
          valueLocation: components.worker.tasks
          targetValue: "8.8"

``format`` is ``json`` (the default; ``valueLocation`` is a GJSON path: dotted keys and
array indexes), ``yaml`` or ``xml`` (a dotted path, indexes into lists) or
``prometheus`` (a metric selector such as ``queue_size{queue="orders"}``). A string value
is read as a Kubernetes quantity (``"64"``, ``"10Mi"``). A status other than 200, a
missing path, a value that is not a finite number, a body that does not parse or is over
4 MiB, and a timeout are each a :class:`~eventscale.errors.ScalerError`.

Authentication (``authMode``: ``apiKey``, ``basic``, ``bearer``, ``tls``) is described in
docs/scalers/metrics-api.md.
"""

from __future__ import annotations

from typing import Final

import attrs

from eventscale.metrics import (
    MetricType,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import redact_text, redact_url
from eventscale.scalers._http_source import AuthMode, HTTPAuth, HTTPScalerBase
from eventscale.scalers._payload import FORMATS, ValueLocation, compile_location
from eventscale.scalers.params import Params, TriggerContext

__all__ = ("MetricsAPIMetadata", "MetricsAPIScaler")

_SUPPORTED_AUTH: Final = frozenset(
    {AuthMode.API_KEY, AuthMode.BASIC, AuthMode.BEARER, AuthMode.TLS}
)
_EXTRA: Final = "http"


@attrs.frozen(kw_only=True)
class MetricsAPIMetadata:
    """The parsed ``metrics-api`` trigger metadata (``timeout`` in seconds or ``None``)."""

    url: str = attrs.field(repr=redact_url)
    value_location: ValueLocation
    target_value: float
    activation_target_value: float = 0.0
    unsafe_ssl: bool = False
    timeout: float | None = None
    auth: HTTPAuth = attrs.field(factory=HTTPAuth)
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    path: str | None = None

    @property
    def format(self) -> str:
        """``json``, ``xml``, ``yaml`` or ``prometheus``."""
        return self.value_location.format

    @property
    def target(self) -> float:
        """``targetValue``."""
        return self.target_value

    @property
    def activation_target(self) -> float:
        """``activationTargetValue``."""
        return self.activation_target_value

    @property
    def metric_name(self) -> str:
        """``s{index}-metric-api-{valueLocation}``, normalized as KEDA does."""
        return metric_name(
            self.index, normalize_metric_name(f"metric-api-{self.value_location.location}")
        )

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> MetricsAPIMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        target = p.number("targetValue")
        if target is None and not p.has("targetValue"):
            p.fail("no targetValue given in metadata", "targetValue")
        elif target is not None and target <= 0:
            p.fail('"targetValue" must be greater than 0', "targetValue")
        activation = p.number("activationTargetValue", default=0.0)
        url = p.string("url", required=True)
        if url is not None and not url.startswith(("http://", "https://")):
            p.fail('"url" must be an http:// or https:// URL', "url")
        fmt = p.choice("format", FORMATS, default="json") or "json"
        raw_location = p.string("valueLocation", required=True)
        location: ValueLocation | None = None
        if raw_location is not None:
            try:
                location = compile_location(raw_location, fmt)
            except ValueError as exc:
                p.fail(str(exc), "valueLocation")
        unsafe_ssl = p.boolean("unsafeSsl", default=False)
        if p.boolean("aggregateFromKubeServiceEndpoints", default=False):
            p.fail(
                "aggregateFromKubeServiceEndpoints is not supported: eventscale does not "
                "list Kubernetes endpoints (point url at one endpoint, or at an aggregator)",
                "aggregateFromKubeServiceEndpoints",
            )
        p.choice("aggregationType", ["average", "sum", "max", "min"], default="average")
        timeout = p.duration("timeout")
        auth = HTTPAuth.from_params(p, supported=_SUPPORTED_AUTH, trigger_type="metrics-api")
        p.finish()
        assert url is not None
        assert location is not None
        assert target is not None
        return cls(
            url=url,
            value_location=location,
            target_value=target,
            activation_target_value=activation,
            unsafe_ssl=unsafe_ssl,
            timeout=timeout.total_seconds() if timeout else None,
            auth=auth,
            index=ctx.index,
            metric_type=ctx.metric_type,
            path=ctx.path,
        )


class MetricsAPIScaler(HTTPScalerBase[MetricsAPIMetadata]):
    """Reports the number an HTTP API serves at ``valueLocation``.

    Built like every HTTP trigger (:class:`~eventscale.scalers._http_source.HTTPScalerBase`):
    ``MetricsAPIScaler(metadata, session=..., timeout=..., max_body=..., trigger_name=...)``.
    """

    trigger_type = "metrics-api"
    what = "metrics API"
    extra = _EXTRA

    @classmethod
    def parse(cls, ctx: TriggerContext) -> MetricsAPIMetadata:
        """Parse a ``metrics-api`` trigger."""
        return MetricsAPIMetadata.from_context(ctx)

    def __repr__(self) -> str:
        m = self.metadata
        url = redact_text(m.url, m.auth.secrets())
        return (
            f"MetricsAPIScaler(url={url!r}, format={m.format!r}, "
            f"valueLocation={m.value_location.location!r}, targetValue={m.target_value:g})"
        )

    async def read_value(self) -> float:
        """GET the API once and read the value. :raises ScalerError: on any failure."""
        m = self.metadata
        body = await self._source.get(m.url)
        try:
            return m.value_location.extract(body)
        except ValueError as exc:
            raise self._fail(f"metrics API answer ({m.format}): {exc}") from None
