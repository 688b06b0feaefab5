"""ASGI middleware that counts requests in flight, for scaling on an app's own load.

Wrap any ASGI 3 application (Starlette, FastAPI, Django's ASGI handler, a bare
coroutine)::

    from eventscale.http import InFlightMiddleware
    app = InFlightMiddleware(app, name="web")

Every HTTP request is counted from the moment the app is called until the last body
chunk of its response is sent (or the app returns or fails, if that comes first). An
``http`` trigger with ``name: web`` then reads the count in the same process; from
another process it reads the JSON served at ``metrics_path``::

    GET /_eventscale/metrics?window=60
    {"name": "web", "inFlight": 3, "oldestAgeSeconds": 0.41, "total": 1520,
     "lastActivityAgeSeconds": 0.02, "window": 60, "arrivalsInWindow": 311,
     "requestRate": 5.18}

Requests to ``metrics_path`` are not counted. Lifespan and (unless
``count_websockets``) WebSocket connections pass straight through.

**Request queue time.** With ``queue_time_header="X-Request-Start"`` the middleware
also records how long each request waited between the load balancer (which stamps the
header) and the app: the ``queueTime`` metric of the ``http`` trigger, as the Python
autoscaling services measure it (:func:`parse_request_start` reads the header).
:class:`WSGIInFlightMiddleware` does the same for WSGI apps. See docs/http.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs

from eventscale.http._stats import RequestStats, StatsRegistry, registry

__all__ = (
    "DEFAULT_METRICS_PATH",
    "InFlightMiddleware",
    "WSGIInFlightMiddleware",
    "parse_request_start",
    "parse_window",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_METRICS_PATH: Final = "/_eventscale/metrics"
_MAX_WINDOW: Final = 86400.0
_MAX_HEADER: Final = 64  # longer X-Request-Start values are ignored
# Below this a stamp is seconds, below 1000x it milliseconds, else microseconds: the
# year 2000 in milliseconds (how the Python peers tell the units apart).
_MILLIS_FROM: Final = 946_684_800_000.0
_MICROS_FROM: Final = _MILLIS_FROM * 1000.0


def parse_request_start(value: str | bytes | None) -> float | None:
    """The Unix time (seconds) an ``X-Request-Start`` header carries, or ``None``.

    Accepts ``t=<number>`` or a bare number, in seconds with a fraction (nginx
    ``t=${msec}``), milliseconds (Heroku) or microseconds (Apache ``%t``); the unit is
    told from the size. Anything else (empty, too long, not a number) is ``None``.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text or len(text) > _MAX_HEADER:
        return None
    if text.startswith("t="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if not math.isfinite(stamp) or stamp <= 0:
        return None
    if stamp < _MILLIS_FROM:
        return stamp
    if stamp < _MICROS_FROM:
        return stamp / 1000.0
    return stamp / 1_000_000.0


def parse_window(query: str | bytes, default: float = 60.0) -> float:
    """The ``window`` query parameter in seconds (``default`` when absent or invalid)."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    values = parse_qs(text).get("window")
    if not values:
        return default
    try:
        window = float(values[0])
    except ValueError:
        return default
    if not 0 <= window <= _MAX_WINDOW:
        return default
    return window


class InFlightMiddleware:
    """Counts the HTTP requests an ASGI app is serving.

    :param app: the ASGI 3 application to wrap.
    :param name: the name the ``http`` trigger uses to find these stats in-process.
    :param stats: use these stats instead of creating new ones.
    :param metrics_path: where the JSON metrics are served; ``None`` serves nothing.
    :param registry: where the stats are registered (the process-wide one by default).
    :param count_websockets: count WebSocket connections as requests too.
    :param queue_time_header: record each request's queue time from this header
        (``"X-Request-Start"``); ``None`` (the default) records none.
    :param wall_clock: Unix seconds, compared with the header (tests inject one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str = "default",
        stats: RequestStats | None = None,
        metrics_path: str | None = DEFAULT_METRICS_PATH,
        registry: StatsRegistry = registry,
        count_websockets: bool = False,
        queue_time_header: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.stats = stats if stats is not None else RequestStats(name)
        registry.register(self.stats)
        self.metrics_path = metrics_path
        self._kinds = ("http", "websocket") if count_websockets else ("http",)
        self._header = queue_time_header.lower().encode("latin-1") if queue_time_header else None
        self._wall_clock = wall_clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        if kind not in self._kinds:
            await self.app(scope, receive, send)
            return
        if kind == "http" and self.metrics_path is not None and scope["path"] == self.metrics_path:
            await self._serve_metrics(scope, send)
            return
        stats = self.stats
        if self._header is not None:
            _record_queue_time(stats, self._header_value(scope), self._wall_clock())
        token = stats.begin()
        finished = False

        async def counted_send(message: Message) -> None:
            nonlocal finished
            await send(message)
            if (
                not finished
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                finished = True
                stats.end(token)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            if not finished:
                stats.end(token)

    def _header_value(self, scope: Scope) -> bytes | None:
        for key, value in scope.get("headers", ()):
            if key == self._header:
                return bytes(value)
        return None

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        body, headers = _metrics_response(self.stats, scope.get("query_string", b""))
        encoded = [(k.lower().encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": 200, "headers": encoded})
        await send({"type": "http.response.body", "body": body})


def _metrics_response(
    stats: RequestStats, query: str | bytes
) -> tuple[bytes, list[tuple[str, str]]]:
    """The metrics document for ``?window=`` in ``query``, and its response headers."""
    body = json.dumps(stats.snapshot(parse_window(query))).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    return body, headers


def _record_queue_time(stats: RequestStats, header: str | bytes | None, now: float) -> None:
    started = parse_request_start(header)
    if started is not None:  # no header, or an unreadable one: nothing to record
        stats.record_queue_time(now - started)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WSGIInFlightMiddleware:
    """The WSGI variant of :class:`InFlightMiddleware`: requests in flight, arrivals and
    (with ``queue_time_header``) request queue time, for Flask, Django's WSGI handler or
    any WSGI app. A request is in flight until the server closes its response iterable.

    The parameters are those of :class:`InFlightMiddleware` (no WebSockets in WSGI).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        name: str = "default",
        stats: RequestStats | None = None,
        metrics_path: str | None = DEFAULT_METRICS_PATH,
        registry: StatsRegistry = registry,
        queue_time_header: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.stats = stats if stats is not None else RequestStats(name)
        registry.register(self.stats)
        self.metrics_path = metrics_path
        self._environ_key = (
            "HTTP_" + queue_time_header.upper().replace("-", "_") if queue_time_header else None
        )
        self._wall_clock = wall_clock

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Serve one WSGI request."""
        if self.metrics_path is not None and environ.get("PATH_INFO") == self.metrics_path:
            body, headers = _metrics_response(self.stats, environ.get("QUERY_STRING", ""))
            start_response("200 OK", headers)
            return [body]
        stats = self.stats
        if self._environ_key is not None:
            _record_queue_time(stats, environ.get(self._environ_key), self._wall_clock())
        token = stats.begin()
        try:
            result = self.app(environ, start_response)
        except BaseException:
            stats.end(token)
            raise
        return _Counted(result, lambda: stats.end(token))


class _Counted:
    """A response iterable that ends the request when the server closes it (PEP 3333)."""

    def __init__(self, inner: Iterable[bytes], done: Callable[[], None]) -> None:
        self._inner = inner
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._done()
