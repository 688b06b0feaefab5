"""HTTP request-driven scaling, including from zero.

Two ways to scale a web app on its traffic:

* **In-process**: :class:`InFlightMiddleware` wraps any ASGI app and counts requests in
  flight (and the age of the oldest); an ``http`` trigger reads the count in the same
  process or over the small JSON endpoint the middleware serves.
* **Interceptor**: :class:`Interceptor` (``eventscale intercept``) is a reverse proxy in
  front of one or more upstream apps, routed by ``Host`` header and path prefix. It
  counts pending requests per route, and when an upstream is at zero it holds requests
  in a bounded queue while it asks the controller to scale up, then forwards them.
  It reads KEDA HTTP add-on ``HTTPScaledObject`` manifests
  (:func:`load_http_scaled_objects`) and ``InterceptorRoute`` manifests
  (:func:`load_interceptor_routes`).

The interceptor needs the ``http`` extra (aiohttp); the middleware and the in-process
trigger need nothing beyond eventscale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports
from eventscale.http._stats import RequestStats, StatsRegistry, registry
from eventscale.http.middleware import (
    DEFAULT_METRICS_PATH,
    InFlightMiddleware,
    WSGIInFlightMiddleware,
    parse_request_start,
)
from eventscale.http.scaler import HTTPMetric, HTTPScaler, HTTPTriggerConfig

if TYPE_CHECKING:
    from eventscale.http.interceptor import Interceptor, Route, RouteMetrics
    from eventscale.http.manifest import HTTPScaledObjectSpec, load_http_scaled_objects
    from eventscale.http.route import InterceptorRouteSpec, load_interceptor_routes

__all__ = (
    "DEFAULT_METRICS_PATH",
    "HTTPMetric",
    "HTTPScaledObjectSpec",
    "HTTPScaler",
    "HTTPTriggerConfig",
    "InFlightMiddleware",
    "Interceptor",
    "InterceptorRouteSpec",
    "RequestStats",
    "Route",
    "RouteMetrics",
    "StatsRegistry",
    "WSGIInFlightMiddleware",
    "load_http_scaled_objects",
    "load_interceptor_routes",
    "parse_request_start",
    "registry",
)

# The interceptor imports aiohttp: it (and the manifest reader) load on first use.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Interceptor": "eventscale.http.interceptor",
        "Route": "eventscale.http.interceptor",
        "RouteMetrics": "eventscale.http.interceptor",
        "HTTPScaledObjectSpec": "eventscale.http.manifest",
        "load_http_scaled_objects": "eventscale.http.manifest",
        "InterceptorRouteSpec": "eventscale.http.route",
        "load_interceptor_routes": "eventscale.http.route",
    },
    __all__,
)
