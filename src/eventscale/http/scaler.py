"""The ``http`` trigger: scale a web app on its requests in flight, its request rate or
its request queue time (``metric: queueTime``, from ``X-Request-Start``).

It reads the :class:`~eventscale.http.RequestStats` that the ASGI middleware or the
interceptor keeps, either in the same process (``name``) or over the small JSON
metrics endpoint they serve (``url``)::

    triggers:
      - type: http
        metadata:
          name: web                 # in-process stats (or url: http://app:8000/_eventscale/metrics)
          metric: concurrency       # or requestRate
          targetValue: "20"         # requests in flight (or per second) per replica
          activityWindow: 2m        # a request in the last 2 minutes keeps it active

**Activity is measured over a window**, not sampled: the trigger is active while a
request is in flight *or* one began or finished within ``activityWindow``. A light but
steady stream of short requests (one a minute, each over in 20 ms) is almost never in
flight at the moment of a poll, which is how KEDA's HTTP add-on lets such an app fall
to zero (http-add-on#1352); here it keeps the app up.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

import anyio.lowlevel

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.http._stats import StatsRegistry, registry
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import redact_text, redact_url
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext

__all__ = ("HTTPMetric", "HTTPScaler", "HTTPTriggerConfig")

_DEFAULT_TARGET: Final = 100.0
_DEFAULT_ACTIVITY_WINDOW: Final = 60.0
_DEFAULT_RATE_WINDOW: Final = 60.0
_DEFAULT_TIMEOUT: Final = 3.0


class HTTPMetric(enum.Enum):
    """What the trigger scales on."""

    CONCURRENCY = "concurrency"
    """Requests in flight (for the interceptor: pending, including held requests)."""

    REQUEST_RATE = "requestRate"
    """Requests begun per second, averaged over ``window``."""

    QUEUE_TIME = "queueTime"
    """Average seconds requests waited between the load balancer (``X-Request-Start``)
    and the app, over ``window`` (the middleware's ``queue_time_header`` option)."""


def _seconds(value: timedelta | None, default: float) -> float:
    return default if value is None else value.total_seconds()


class HTTPTriggerConfig:
    """The parsed metadata of one ``http`` trigger (see the module docstring).

    Exactly one of ``name`` (in-process stats) and ``url`` (a metrics endpoint) is set.
    """

    __slots__ = (
        "activation_target",
        "activity_window",
        "metric",
        "name",
        "target",
        "timeout",
        "url",
        "window",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        url: str | None = None,
        metric: HTTPMetric = HTTPMetric.CONCURRENCY,
        target: float = _DEFAULT_TARGET,
        activation_target: float = 0.0,
        activity_window: float = _DEFAULT_ACTIVITY_WINDOW,
        window: float = _DEFAULT_RATE_WINDOW,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        if (name is None) == (url is None):
            raise ConfigError("give exactly one of 'name' and 'url'", path="name")
        if not target > 0:
            raise ConfigError(f"must be greater than 0, got {target!r}", path="targetValue")
        if activation_target < 0:
            raise ConfigError("must be >= 0", path="activationTargetValue")
        if activity_window < 0:
            raise ConfigError("must be >= 0", path="activityWindow")
        if not window > 0:
            raise ConfigError("must be greater than 0", path="window")
        if not timeout > 0:
            raise ConfigError("must be greater than 0", path="timeout")
        self.name = name
        self.url = url
        self.metric = metric
        self.target = float(target)
        self.activation_target = float(activation_target)
        self.activity_window = float(activity_window)
        self.window = float(window)
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        source = (
            f"name={self.name!r}"
            if self.name is not None
            else f"url={redact_url(self.url or '')!r}"
        )
        return (
            f"HTTPTriggerConfig({source}, metric={self.metric.value}, target={self.target:g}, "
            f"activity_window={self.activity_window:g})"
        )

    @classmethod
    def from_metadata(cls, ctx: TriggerContext) -> HTTPTriggerConfig:
        """Parse an ``http`` trigger's metadata, listing every problem with its path."""
        p = Params(ctx)
        name = p.string("name")
        url = p.string("url")
        if (name is None) == (url is None):
            p.fail(
                "give exactly one of 'name' (in-process stats) and 'url' (metrics endpoint)", "name"
            )
        if url is not None and not url.startswith(("http://", "https://")):
            p.fail("must be an http:// or https:// URL", "url")
        metric = p.enum("metric", HTTPMetric, default=HTTPMetric.CONCURRENCY)
        target = p.number(
            "targetValue", aliases=("targetPendingRequests",), default=_DEFAULT_TARGET
        )
        if _below(target, 0.0, strict=True):
            p.fail('"targetValue" must be greater than 0', "targetValue")
        activation = p.number("activationTargetValue", default=0.0)
        if _below(activation, 0.0):
            p.fail('"activationTargetValue" must be >= 0', "activationTargetValue")
        activity_window = p.duration("activityWindow")
        window = p.duration("window")
        if window is not None and window.total_seconds() <= 0:
            p.fail('"window" must be greater than 0', "window")
        timeout = p.duration("timeout")
        if timeout is not None and timeout.total_seconds() <= 0:
            p.fail('"timeout" must be greater than 0', "timeout")
        p.finish()
        return cls(
            name=name,
            url=url,
            metric=metric or HTTPMetric.CONCURRENCY,
            target=target,
            activation_target=activation,
            activity_window=_seconds(activity_window, _DEFAULT_ACTIVITY_WINDOW),
            window=_seconds(window, _DEFAULT_RATE_WINDOW),
            timeout=_seconds(timeout, _DEFAULT_TIMEOUT),
        )


class HTTPScaler(ScalerBase):
    """Reads request stats in-process (by name) or from a metrics endpoint (by URL).

    The metric is ``s{index}-http-{name}`` (or ``...-http-{host of url}``): the requests
    in flight, or the request rate, per replica against ``targetValue``.

    :param config: the parsed trigger.
    :param index: the trigger's position (metric name prefix).
    :param trigger_name: how errors name the trigger.
    :param registry: where in-process stats are looked up.
    """

    def __init__(
        self,
        config: HTTPTriggerConfig,
        *,
        index: int = 0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        trigger_name: str | None = None,
        registry: StatsRegistry = registry,
    ) -> None:
        self.config = config
        self.registry = registry
        self.trigger = trigger_name or f"http[{index}]"
        label = config.name if config.name is not None else _url_label(config.url or "")
        self.spec = MetricSpec(
            name=metric_name(index, normalize_metric_name(f"http-{label}")),
            target=config.target,
            metric_type=metric_type,
            activation_target=config.activation_target,
        )
        self._session: Any = None

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> HTTPScaler:
        """Build the scaler from an ``http`` trigger's metadata."""
        return cls(
            HTTPTriggerConfig.from_metadata(ctx),
            index=ctx.index,
            metric_type=ctx.metric_type,
            trigger_name=ctx.identity,
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: requests in flight or requests per second."""
        return (self.spec,)

    async def get_metrics(self) -> ScalerReport:
        """Read the stats once.

        :raises ScalerError: no stats under ``name`` (the middleware is not installed),
            or the endpoint is unreachable, answers an error status or bad JSON.
        """
        cfg = self.config
        if cfg.name is not None:
            await anyio.lowlevel.checkpoint()
            stats = self.registry.get(cfg.name)
            if stats is None:
                raise ScalerError(
                    f"no request stats named {cfg.name!r} in this process "
                    "(is the middleware or interceptor running here?)",
                    trigger=self.trigger,
                    transient=True,
                )
            in_flight = float(stats.in_flight)
            rate = stats.rate(cfg.window) if cfg.metric is HTTPMetric.REQUEST_RATE else 0.0
            waited = stats.queue_time(cfg.window) if cfg.metric is HTTPMetric.QUEUE_TIME else 0.0
            recent = cfg.activity_window > 0 and stats.active_within(cfg.activity_window)
        else:
            doc = await self._fetch()
            in_flight, rate, recent = self._read_document(doc)
            waited = self._queue_time_of(doc) if cfg.metric is HTTPMetric.QUEUE_TIME else 0.0
        value = {HTTPMetric.REQUEST_RATE: rate, HTTPMetric.QUEUE_TIME: waited}.get(
            cfg.metric, in_flight
        )
        active = value > cfg.activation_target or recent
        return ScalerReport.single(self.spec.name, value, is_active=active)

    def _queue_time_of(self, doc: Any) -> float:
        raw = doc.get("queueTimeSeconds")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ScalerError(
                "the metrics endpoint answered JSON without a finite 'queueTimeSeconds' "
                "(is the middleware's queue_time_header option on?)",
                trigger=self.trigger,
                transient=False,
            )
        return value

    def _read_document(self, doc: Any) -> tuple[float, float, bool]:
        cfg = self.config
        try:
            in_flight = float(doc["inFlight"])
            rate = float(doc.get("requestRate", 0.0))
            age = doc.get("lastActivityAgeSeconds")
            age_value = None if age is None else float(age)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ScalerError(
                "the metrics endpoint answered JSON without a numeric 'inFlight'",
                trigger=self.trigger,
                transient=False,
            ) from None
        if not (math.isfinite(in_flight) and math.isfinite(rate)):
            raise ScalerError(
                "the metrics endpoint answered a non-finite value",
                trigger=self.trigger,
                transient=False,
            )
        recent = cfg.activity_window > 0 and (
            in_flight > 0 or (age_value is not None and age_value <= cfg.activity_window)
        )
        return in_flight, rate, recent

    async def _fetch(self) -> Any:
        aiohttp = import_optional("aiohttp", extra="http", what="the http trigger's 'url'")
        cfg = self.config
        url = cfg.url or ""
        window = cfg.window if cfg.metric is HTTPMetric.REQUEST_RATE else cfg.activity_window
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.timeout))
        shown = redact_url(url)
        try:
            async with self._session.get(url, params={"window": f"{window:g}"}) as resp:
                if resp.status != 200:
                    raise ScalerError(
                        f"metrics endpoint {shown} answered HTTP {resp.status}",
                        trigger=self.trigger,
                        transient=resp.status >= 500,
                    )
                body = await resp.read()
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"metrics endpoint {shown} did not answer within {cfg.timeout:g}s",
                trigger=self.trigger,
            ) from exc
        except aiohttp.ClientError as exc:
            raise ScalerError(
                f"cannot read metrics endpoint {shown}: {redact_text(str(exc))}",
                trigger=self.trigger,
                transient=True,
            ) from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ScalerError(
                f"metrics endpoint {shown} did not answer JSON",
                trigger=self.trigger,
                transient=False,
            ) from exc

    async def aclose(self) -> None:
        """Close the endpoint client, if one was opened."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _below(value: float | None, bound: float, *, strict: bool = False) -> bool:
    """``value < bound`` (``<=`` when ``strict``); ``False`` for a value that failed to parse."""
    if value is None:
        return False
    return value <= bound if strict else value < bound


def _url_label(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.hostname or "endpoint"
    except ValueError:
        return "endpoint"
