"""The interceptor: a reverse proxy that counts pending requests and holds them at zero.

:class:`Interceptor` listens for HTTP/1.1 requests, picks a :class:`Route` by ``Host``
header (exact names, ``*.example.com`` wildcards, or ``*``), then by the longest
matching path prefix (and optional header matches), and forwards the request to the
route's upstream URL, streaming both bodies.

Every request is counted in the route's :class:`~eventscale.http.RequestStats` (named
after the route) from arrival to the end of its response, so an ``http`` trigger with
``name: <route name>`` scales the upstream on its pending requests.

**Scale from zero.** When the upstream does not accept connections (it is at zero, or
still starting), a request is *held*: it waits in a bounded per-route queue while the
interceptor calls ``wake(route name)`` (``Controller.wake``, so the object is reconciled
at once and sees the pending request) and probes the upstream until it accepts a
connection; then every held request is forwarded. When the queue is full the answer is
``503`` with ``Retry-After``; a request held longer than ``hold_timeout`` is answered
``504`` (or sent to the route's ``failover`` upstream when it has one). The time from
the first held request of a cold start to the first response byte from the upstream is
recorded as the route's cold-start latency.

Metrics (JSON) are served on a separate admin listener: ``GET /_eventscale/metrics``
lists every route, ``?name=ROUTE`` gives one route in the shape the ``http`` trigger's
``url`` mode reads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from eventscale._optional import import_optional
from eventscale._resource import AsyncService
from eventscale.errors import ConfigError
from eventscale.http._stats import RequestStats, StatsRegistry, registry
from eventscale.http.middleware import DEFAULT_METRICS_PATH, parse_window

import_optional("aiohttp", extra="http", what="the HTTP interceptor")

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from multidict import CIMultiDict  # noqa: E402

from eventscale.http._guard import GuardedServer  # noqa: E402

__all__ = ("Interceptor", "Route", "RouteMetrics")

logger = logging.getLogger("eventscale.http.interceptor")

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Fields a request needs end to end: never dropped, even when ``Connection`` names them
# (RFC 9110 7.6.1 forbids listing them there; a proxy keeps them, as Go's does).
_END_TO_END: Final = frozenset({"host", "content-length", "content-type"})
_SKIP_RESPONSE: Final = _HOP_BY_HOP | {"content-length"}
_BUFFER_LIMIT: Final = 1 << 20  # responses up to 1 MiB with a length are sent in one piece
_COLD_START_SAMPLES: Final = 1000


def _host_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in value)


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _headers_tuple(
    value: Iterable[tuple[str, str | None]] | Mapping[str, str | None],
) -> tuple[tuple[str, str | None], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((name.lower(), val) for name, val in items)


def _check_url(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"must be an http:// or https:// URL, got {value!r}", path=attribute.name)


@attrs.frozen(kw_only=True)
class Route:
    """Where requests for some hosts (and path prefixes) go, and how they are held.

    :param name: the route's name: its stats name for the ``http`` trigger and the
        key passed to ``wake`` (``namespace/name`` for a manifest's route).
    :param hosts: host names matched against the ``Host`` header, case-insensitive and
        without the port; ``*.example.com`` matches any subdomain, ``*`` any host.
    :param upstream: the base URL requests are forwarded to (``http://app:8080``).
    :param path_prefixes: the request path must start with one of these.
    :param headers: ``(name, value)`` pairs that must all be present (``value`` ``None``:
        any value).
    :param failover: an upstream to send held requests to when ``hold_timeout`` passes.
    :param hold_timeout: seconds a request may wait for a cold upstream (default 30).
    :param response_header_timeout: seconds the upstream has to send response headers
        once a request was forwarded (``None``: no limit); ``504`` after it.
    :param max_held: how many requests may be held at once; more get ``503``.
    :param retry_after: the ``Retry-After`` seconds sent with that ``503``.
    """

    name: str
    hosts: tuple[str, ...] = attrs.field(converter=_host_tuple)
    upstream: str = attrs.field(validator=_check_url)
    path_prefixes: tuple[str, ...] = attrs.field(default=("/",), converter=_str_tuple)
    headers: tuple[tuple[str, str | None], ...] = attrs.field(default=(), converter=_headers_tuple)
    failover: str | None = attrs.field(default=None, validator=_check_url)
    hold_timeout: float = 30.0
    response_header_timeout: float | None = None
    max_held: int = 100
    retry_after: int = 5

    def __attrs_post_init__(self) -> None:
        errors: list[ConfigError] = []
        if not self.name:
            errors.append(ConfigError("must not be empty", path="name"))
        if not self.hosts or any(not h for h in self.hosts):
            errors.append(ConfigError("at least one non-empty host is required", path="hosts"))
        if not self.path_prefixes or any(not p.startswith("/") for p in self.path_prefixes):
            errors.append(
                ConfigError("every path prefix must start with '/'", path="path_prefixes")
            )
        if not self.hold_timeout > 0:
            errors.append(ConfigError("must be greater than 0", path="hold_timeout"))
        if self.response_header_timeout is not None and not self.response_header_timeout > 0:
            errors.append(ConfigError("must be greater than 0", path="response_header_timeout"))
        if self.max_held < 0:
            errors.append(ConfigError("must be >= 0", path="max_held"))
        if self.retry_after < 0:
            errors.append(ConfigError("must be >= 0", path="retry_after"))
        ConfigError.collect(errors, what=f"invalid route {self.name!r}")


@attrs.frozen(kw_only=True)
class RouteMetrics:
    """A route's counters at one moment.

    ``pending`` counts requests in the interceptor for this route (held ones
    included); ``held`` only those waiting for a cold upstream. Cold starts are the
    seconds from the first held request of a cold start to the first response byte.
    """

    name: str
    pending: int
    held: int
    oldest_age: float
    total: int
    ready: bool
    rejected: int
    timed_out: int
    failovers: int
    upstream_errors: int
    cold_starts: tuple[float, ...]

    @property
    def last_cold_start(self) -> float | None:
        """The latest cold-start latency in seconds, or ``None``."""
        return self.cold_starts[-1] if self.cold_starts else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (as the admin endpoint serves it)."""
        starts = self.cold_starts
        return {
            "name": self.name,
            "pending": self.pending,
            "held": self.held,
            "oldestAgeSeconds": round(self.oldest_age, 6),
            "total": self.total,
            "ready": self.ready,
            "rejected": self.rejected,
            "timedOut": self.timed_out,
            "failovers": self.failovers,
            "upstreamErrors": self.upstream_errors,
            "coldStarts": {
                "count": len(starts),
                "lastSeconds": starts[-1] if starts else None,
                "maxSeconds": max(starts) if starts else None,
                "sumSeconds": sum(starts),
            },
        }


class _UpstreamRefusedError(Exception):
    """Internal: the upstream refused the connection; hold the request and retry."""


class _RouteState:
    def __init__(self, route: Route, stats: RequestStats) -> None:
        self.route = route
        self.stats = stats
        base = urlsplit(route.upstream)
        self.base = route.upstream.rstrip("/")
        self.probe_host = base.hostname or ""
        self.probe_port = base.port or (443 if base.scheme == "https" else 80)
        self.ready = True  # optimistic: the first refused connection starts a cold start
        self.ready_event = asyncio.Event()
        self.ready_event.set()
        self.held = 0
        self.prober: asyncio.Task[None] | None = None
        self.cold_since: float | None = None
        self.cold_starts: collections.deque[float] = collections.deque(maxlen=_COLD_START_SAMPLES)
        self.rejected = 0
        self.timed_out = 0
        self.failovers = 0
        self.upstream_errors = 0


class Interceptor(AsyncService):
    """The reverse proxy. Use as an async context manager or call :meth:`start`/:meth:`aclose`.

    :param routes: the routes; names must be unique.
    :param wake: called with a route's name when a request is held for it
        (``Controller.wake``); it must not block.
    :param registry: where each route's stats are registered for the ``http`` trigger.
    :param clock: monotonic seconds, for cold-start latencies.
    :param connect_timeout: seconds to open a connection to an upstream.
    :param probe_interval: seconds between connection attempts to a cold upstream.
    :param wake_after_idle: a request that arrives after this many seconds without
        any activity on its route also calls ``wake`` (the object may be at zero while
        the upstream still answers, or be about to go there).
    :param header_timeout: seconds a client has to send a complete request head (from
        connecting, or from the first byte of a later request); then it is disconnected.
    :param max_idle_connections: how many client connections may wait for a request head
        at once; past that the one waiting longest is disconnected.
    :param keepalive_timeout: seconds a kept-alive client connection may stay idle
        between requests.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        wake: Callable[[str], None] | None = None,
        registry: StatsRegistry = registry,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = 5.0,
        probe_interval: float = 0.05,
        wake_after_idle: float = 1.0,
        header_timeout: float = 10.0,
        max_idle_connections: int = 1024,
        keepalive_timeout: float = 75.0,
    ) -> None:
        errors = [
            ConfigError("must be greater than 0", path=name)
            for name, value in (
                ("header_timeout", header_timeout),
                ("max_idle_connections", max_idle_connections),
                ("keepalive_timeout", keepalive_timeout),
            )
            if not value > 0
        ]
        if errors:
            raise ConfigError("invalid interceptor settings", errors=errors)
        self.header_timeout = header_timeout
        self.max_idle_connections = max_idle_connections
        self.keepalive_timeout = keepalive_timeout
        self.wake = wake
        self.wake_after_idle = wake_after_idle
        self.registry = registry
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.probe_interval = probe_interval
        self._states: dict[str, _RouteState] = {}
        self._exact: dict[str, list[_RouteState]] = {}
        self._wildcards: list[tuple[str, list[_RouteState]]] = []
        self._any: list[_RouteState] = []
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.BaseRunner] = []
        self._servers: list[GuardedServer] = []
        self._sites: list[web.TCPSite] = []
        self.port: int | None = None
        self.admin_port: int | None = None
        self._set_routes(list(routes))

    # ------------------------------------------------------------------ routes

    def _set_routes(self, routes: list[Route]) -> None:
        seen: set[str] = set()
        for route in routes:
            if route.name in seen:
                raise ConfigError(f"duplicate route name {route.name!r}", path="routes")
            seen.add(route.name)
        for route in routes:
            stats = RequestStats(route.name, clock=self.clock)
            self.registry.register(stats)
            state = _RouteState(route, stats)
            self._states[route.name] = state
            for host in route.hosts:
                if host == "*":
                    self._any.append(state)
                elif host.startswith("*."):
                    suffix = host[1:]
                    for existing_suffix, bucket in self._wildcards:
                        if existing_suffix == suffix:
                            bucket.append(state)
                            break
                    else:
                        self._wildcards.append((suffix, [state]))
                else:
                    self._exact.setdefault(host, []).append(state)
        # The most specific wildcard first.
        self._wildcards.sort(key=lambda item: -len(item[0]))

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, in the order given."""
        return tuple(s.route for s in self._states.values())

    def _candidates(self, hostname: str) -> Iterable[list[_RouteState]]:
        exact = self._exact.get(hostname)
        if exact:
            yield exact
        for suffix, bucket in self._wildcards:
            if hostname.endswith(suffix):
                yield bucket
        if self._any:
            yield self._any

    def match(self, host: str, path: str, headers: Mapping[str, str] | None = None) -> Route | None:
        """The route a request for ``host`` and ``path`` goes to, or ``None``."""
        state = self._match(host, path, headers or {})
        return state.route if state is not None else None

    def _match(self, host: str, path: str, headers: Mapping[str, str]) -> _RouteState | None:
        hostname = _hostname(host)
        for bucket in self._candidates(hostname):
            best: _RouteState | None = None
            best_key = (-1, -1)
            for state in bucket:
                route = state.route
                if route.headers and not all(
                    (value := headers.get(name)) is not None and (want is None or value == want)
                    for name, want in route.headers
                ):
                    continue
                for prefix in route.path_prefixes:
                    if path.startswith(prefix):
                        key = (len(prefix), len(route.headers))
                        if key > best_key:
                            best, best_key = state, key
            if best is not None:
                return best
        return None

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        admin_host: str | None = None,
        admin_port: int | None = None,
    ) -> None:
        """Listen for proxied requests on ``host:port`` (0 picks a free port, see :attr:`port`).

        With ``admin_port`` given, also serve the metrics endpoint there (on
        ``admin_host``, ``host`` by default; :attr:`admin_port` tells the port chosen).
        """
        if self._session is not None:
            raise RuntimeError("the interceptor is already started")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=10),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        try:
            self.port = await self._listen(self._handle, host, port)
            if admin_port is not None:
                self.admin_port = await self._listen(
                    self._handle_admin, admin_host or host, admin_port
                )
        except BaseException:
            await self.aclose()
            raise

    async def _listen(self, handler: Any, host: str, port: int) -> int:
        server = GuardedServer(
            handler,
            header_timeout=self.header_timeout,
            max_idle=self.max_idle_connections,
            keepalive_timeout=self.keepalive_timeout,
        )
        self._servers.append(server)
        runner = web.ServerRunner(server, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        self._sites.append(site)
        listening = site._server
        assert listening is not None
        sockets = getattr(listening, "sockets", None) or ()
        bound: int = sockets[0].getsockname()[1] if sockets else port
        return bound

    async def aclose(self) -> None:
        """Stop listening, stop probing, close upstream connections, unregister stats."""
        for state in self._states.values():
            if state.prober is not None:
                state.prober.cancel()
                with contextlib.suppress(BaseException):
                    await state.prober
                state.prober = None
        runners, self._runners = self._runners, []
        self._servers = []
        for runner in runners:
            await runner.cleanup()
        self._sites = []
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        for state in self._states.values():
            self.registry.unregister(state.route.name, state.stats)

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._session is not None

    # ------------------------------------------------------------------ metrics

    def metrics(self, name: str) -> RouteMetrics:
        """The counters of route ``name`` (:class:`KeyError` if there is none)."""
        state = self._states[name]
        return RouteMetrics(
            name=name,
            pending=state.stats.in_flight,
            held=state.held,
            oldest_age=state.stats.oldest_age(),
            total=state.stats.total,
            ready=state.ready,
            rejected=state.rejected,
            timed_out=state.timed_out,
            failovers=state.failovers,
            upstream_errors=state.upstream_errors,
            cold_starts=tuple(state.cold_starts),
        )

    def stats(self, name: str) -> RequestStats:
        """The request stats of route ``name``."""
        return self._states[name].stats

    def prometheus_text(self) -> str:
        """Every route's counters in the Prometheus text exposition format."""
        families: list[tuple[str, str, str, Callable[[RouteMetrics], float]]] = [
            (
                "pending",
                "gauge",
                "Requests in the interceptor (held included).",
                lambda m: m.pending,
            ),
            ("held", "gauge", "Requests waiting for a cold upstream.", lambda m: m.held),
            ("ready", "gauge", "1 when the upstream accepts connections.", lambda m: m.ready),
            ("requests_total", "counter", "Requests received.", lambda m: m.total),
            (
                "rejected_total",
                "counter",
                "Requests refused (hold queue full).",
                lambda m: m.rejected,
            ),
            (
                "hold_timeouts_total",
                "counter",
                "Held requests that timed out.",
                lambda m: m.timed_out,
            ),
            (
                "failovers_total",
                "counter",
                "Held requests sent to the failover.",
                lambda m: m.failovers,
            ),
            (
                "upstream_errors_total",
                "counter",
                "Requests answered 502/504 by the interceptor.",
                lambda m: m.upstream_errors,
            ),
        ]
        all_metrics = [self.metrics(name) for name in self._states]
        lines: list[str] = []
        for suffix, kind, help_text, read in families:
            metric = f"eventscale_http_{suffix}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            lines += [f"{metric}{{route={_label(m.name)}}} {float(read(m)):g}" for m in all_metrics]
        metric = "eventscale_http_cold_start_seconds"
        lines += [
            f"# HELP {metric} First held request to first upstream byte, per cold start.",
            f"# TYPE {metric} summary",
        ]
        for m in all_metrics:
            lines.append(f"{metric}_count{{route={_label(m.name)}}} {len(m.cold_starts)}")
            lines.append(f"{metric}_sum{{route={_label(m.name)}}} {sum(m.cold_starts):g}")
        return "\n".join(lines) + "\n"

    async def _handle_admin(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/healthz":
            return web.Response(text="ok")
        if request.path == "/metrics":
            return web.Response(
                text=self.prometheus_text(), content_type="text/plain", charset="utf-8"
            )
        if request.path != DEFAULT_METRICS_PATH:
            return web.Response(status=404, text="not found")
        window = parse_window(request.query_string)
        name = request.query.get("name")
        if name is not None:
            state = self._states.get(name)
            if state is None:
                return web.Response(status=404, text=f"no route named {name!r}")
            doc = {**state.stats.snapshot(window), **self.metrics(name).to_dict()}
        else:
            doc = {
                "routes": [
                    {**s.stats.snapshot(window), **self.metrics(n).to_dict()}
                    for n, s in self._states.items()
                ]
            }
        return web.Response(
            body=json.dumps(doc).encode(),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    # ------------------------------------------------------------------ proxying

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # an absolute-form target (http://host) may have an empty path: it means "/"
        state = self._match(request.host, request.path or "/", request.headers)
        if state is None:
            return web.Response(status=404, text=f"no route for host {request.host!r}\n")
        stats = state.stats
        idle = stats.last_activity_age()
        token = stats.begin()
        if idle is None or idle > self.wake_after_idle:
            # The first request after a quiet spell: reconcile now, the object may be at
            # zero even though something answers for it.
            self._wake(state.route.name)
        try:
            if not state.ready:
                held = await self._hold(state, request)
                if held is not None:
                    return held
            try:
                return await self._forward(state, state.base, request)
            except _UpstreamRefusedError:
                self._mark_cold(state)
                held = await self._hold(state, request)
                if held is not None:
                    return held
                try:
                    return await self._forward(state, state.base, request)
                except _UpstreamRefusedError:
                    state.upstream_errors += 1
                    return _error(502, "the upstream refused the connection")
        finally:
            stats.end(token)

    def _mark_cold(self, state: _RouteState) -> None:
        if state.ready:
            state.ready = False
            state.ready_event = asyncio.Event()

    async def _hold(
        self, state: _RouteState, request: web.BaseRequest
    ) -> web.StreamResponse | None:
        """Wait for a cold upstream; ``None`` when it is ready, else the answer to send."""
        route = state.route
        if state.held >= route.max_held:
            state.rejected += 1
            self._wake(route.name)  # even with a queue of 0 the workload must start
            return web.Response(
                status=503,
                text="the upstream is starting and the hold queue is full; retry later\n",
                headers={"Retry-After": str(route.retry_after)},
            )
        state.held += 1
        try:
            if state.cold_since is None:
                state.cold_since = self.clock()
            if state.prober is None or state.prober.done():
                state.prober = asyncio.create_task(self._probe(state))
                self._wake(route.name)
            event = state.ready_event
            try:
                await asyncio.wait_for(event.wait(), route.hold_timeout)
            except TimeoutError:
                state.timed_out += 1
                if route.failover is not None:
                    state.failovers += 1
                    try:
                        return await self._forward(
                            state, route.failover.rstrip("/"), request, failover=True
                        )
                    except _UpstreamRefusedError:
                        return _error(502, "the failover upstream refused the connection")
                return _error(
                    504,
                    f"the upstream did not become ready within {route.hold_timeout:g}s",
                    retry_after=route.retry_after,
                )
            return None
        finally:
            state.held -= 1

    def _wake(self, name: str) -> None:
        if self.wake is None:
            return
        try:
            self.wake(name)
        except Exception:
            logger.exception("wake(%r) failed", name)

    async def _probe(self, state: _RouteState) -> None:
        """Try to connect to the upstream until it accepts, while requests are held."""
        delay = self.probe_interval
        last_wake = self.clock()
        try:
            while True:
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(state.probe_host, state.probe_port),
                        self.connect_timeout,
                    )
                except (OSError, TimeoutError):
                    pass
                else:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                    state.ready = True
                    state.ready_event.set()
                    return
                if state.held == 0:
                    state.cold_since = None  # nobody waits any more: this cold start is abandoned
                    return
                now = self.clock()
                if now - last_wake >= 2.0:  # keep reminding the controller while we wait
                    last_wake = now
                    self._wake(state.route.name)
                await asyncio.sleep(delay)
        finally:
            if asyncio.current_task() is state.prober:
                state.prober = None

    def _request_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        drop = set(_HOP_BY_HOP)
        connection = request.headers.get("Connection")
        if connection:
            drop.update(token.strip().lower() for token in connection.split(","))
        drop -= _END_TO_END
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in drop:
                headers.add(name, value)
        authority, _ = _split_target(request.raw_path)
        if authority is not None:
            # absolute form: the target's authority replaces Host (RFC 9112 3.2.2)
            headers["Host"] = authority
        peer = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers.setdefault("X-Forwarded-Host", authority or request.host)
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        return headers

    async def _forward(
        self,
        state: _RouteState,
        base: str,
        request: web.BaseRequest,
        *,
        failover: bool = False,
    ) -> web.StreamResponse:
        session = self._session
        assert session is not None, "the interceptor is not started"
        route = state.route
        headers = self._request_headers(request)
        skip = [h for h in ("User-Agent", "Accept", "Accept-Encoding") if h not in request.headers]
        data = request.content if request.body_exists else None
        try:
            ctx = session.request(
                request.method,
                base + _split_target(request.raw_path)[1],
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=skip,
                compress=None,
            )
            if route.response_header_timeout is not None:
                async with asyncio.timeout(route.response_header_timeout):
                    resp = await ctx
            else:
                resp = await ctx
        except aiohttp.ClientConnectorError as exc:
            raise _UpstreamRefusedError() from exc
        except TimeoutError:
            state.upstream_errors += 1
            return _error(504, "the upstream did not answer in time")
        except aiohttp.ClientError as exc:
            state.upstream_errors += 1
            logger.debug("upstream %s failed: %s", route.name, exc)
            return _error(502, "the upstream failed")
        try:
            if state.cold_since is not None and not failover:
                state.cold_starts.append(self.clock() - state.cold_since)
                state.cold_since = None
            out_headers = [
                (k, v) for k, v in resp.headers.items() if k.lower() not in _SKIP_RESPONSE
            ]
            length = resp.content_length
            if length is not None and length <= _BUFFER_LIMIT and request.method != "HEAD":
                body = await resp.read()
                response = web.Response(status=resp.status, reason=resp.reason, body=body)
                response.headers.extend(out_headers)
                return response
            stream = web.StreamResponse(status=resp.status, reason=resp.reason)
            stream.headers.extend(out_headers)
            if length is not None:
                stream.content_length = length
            await stream.prepare(request)
            if request.method != "HEAD":
                async for chunk in resp.content.iter_any():
                    await stream.write(chunk)
            await stream.write_eof()
            return stream
        except aiohttp.ClientError as exc:
            state.upstream_errors += 1
            logger.debug("upstream %s failed mid-response: %s", route.name, exc)
            return _error(502, "the upstream failed while answering")
        finally:
            resp.release()


def _error(status: int, text: str, *, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=text + "\n", headers=headers)


def _split_target(target: str) -> tuple[str | None, str]:
    """A request target as (authority, origin form): ``http://h:1/p?q`` gives
    ``("h:1", "/p?q")``; an origin-form target ``/p?q`` gives ``(None, "/p?q")``."""
    if target.startswith("/") or "://" not in target:
        return None, target
    rest = target.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    authority = rest[:cut].rpartition("@")[2]  # never pass user:password@ on
    return authority, path if path.startswith("/") else "/" + path


def _label(value: str) -> str:
    """A Prometheus label value, quoted and escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _hostname(host: str) -> str:
    """``Host`` header value without the port, lower-cased (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, _, _port = host.partition(":")
    return name
