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

from collections.abc import Sequence
from typing import Any, Final

import attrs

from eventscale.errors import ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import redact_text, redact_url
from eventscale.scalers import ScalerBase
from eventscale.scalers._http_source import (
    DEFAULT_TIMEOUT,
    MAX_BODY,
    AuthMode,
    HTTPAuth,
    HTTPSource,
)
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


class MetricsAPIScaler(ScalerBase):
    """Reports the number an HTTP API serves at ``valueLocation``.

    :param metadata: the parsed trigger.
    :param session: a shared ``aiohttp.ClientSession`` (left open by :meth:`aclose`);
        by default the scaler opens its own.
    :param timeout: seconds per request when the trigger sets no ``timeout``.
    :param max_body: the most bytes of an answer that are read.
    :param trigger_name: how errors name the trigger.
    :raises ConfigError: the TLS material does not load;
        :class:`~eventscale.errors.MissingExtraError` without aiohttp.
    """

    def __init__(
        self,
        metadata: MetricsAPIMetadata,
        *,
        session: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = MAX_BODY,
        trigger_name: str | None = None,
    ) -> None:
        self.metadata = metadata
        self._trigger = trigger_name or f"metrics-api[{metadata.index}]"
        self._source = HTTPSource(
            auth=metadata.auth,
            unsafe_ssl=metadata.unsafe_ssl,
            timeout=metadata.timeout or timeout,
            trigger=self._trigger,
            what="metrics API",
            extra=_EXTRA,
            session=session,
            max_body=max_body,
            path=metadata.path,
        )

    @classmethod
    def from_context(
        cls, ctx: TriggerContext, *, session: Any = None, timeout: float = DEFAULT_TIMEOUT
    ) -> MetricsAPIScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = MetricsAPIMetadata.from_context(ctx)
        return cls(metadata, session=session, timeout=timeout, trigger_name=ctx.identity)

    def __repr__(self) -> str:
        m = self.metadata
        url = redact_text(m.url, m.auth.secrets())
        return (
            f"MetricsAPIScaler(url={url!r}, format={m.format!r}, "
            f"valueLocation={m.value_location.location!r}, targetValue={m.target_value:g})"
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric, ``s{index}-metric-api-{valueLocation}``, target ``targetValue``."""
        m = self.metadata
        return (
            MetricSpec(
                name=m.metric_name,
                target=m.target_value,
                metric_type=m.metric_type,
                activation_target=m.activation_target_value,
            ),
        )

    async def read_value(self) -> float:
        """GET the API once and read the value. :raises ScalerError: on any failure."""
        m = self.metadata
        body = await self._source.get(m.url)
        try:
            return m.value_location.extract(body)
        except ValueError as exc:
            raise ScalerError(
                redact_text(f"metrics API answer ({m.format}): {exc}", m.auth.secrets()),
                trigger=self._trigger,
                transient=False,
            ) from None

    async def get_metrics(self) -> ScalerReport:
        """Poll once: the value, active when it exceeds ``activationTargetValue``."""
        value = await self.read_value()
        m = self.metadata
        return ScalerReport.single(
            m.metric_name, value, is_active=value > m.activation_target_value
        )

    async def aclose(self) -> None:
        """Close the HTTP session the scaler opened; safe to repeat."""
        await self._source.aclose()
