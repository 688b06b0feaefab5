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
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs

from eventscale.http._stats import RequestStats, StatsRegistry, registry

__all__ = ("DEFAULT_METRICS_PATH", "InFlightMiddleware", "parse_window")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_METRICS_PATH: Final = "/_eventscale/metrics"
_MAX_WINDOW: Final = 86400.0


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
    ) -> None:
        self.app = app
        self.stats = stats if stats is not None else RequestStats(name)
        registry.register(self.stats)
        self.metrics_path = metrics_path
        self._kinds = ("http", "websocket") if count_websockets else ("http",)

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

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        window = parse_window(scope.get("query_string", b""))
        body = json.dumps(self.stats.snapshot(window)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
