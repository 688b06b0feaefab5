"""One HTTP server for Prometheus metrics and the health probes (extra ``prometheus``).

:class:`MetricsServer` serves ``/metrics`` (a ``prometheus_client`` registry in the
text exposition format), ``/healthz`` (``/livez`` too) and ``/readyz`` from a
:class:`~eventscale.runtime.health.Health`. It is what ``eventscale run
--metrics-address HOST:PORT`` starts; KEDA's operator serves its metrics on ``:8080``
and its probes on ``:8081``, eventscale both on the one port (docs/metrics.md).
The server answers GET and HEAD only, reads no request body, and bounds request
heads through aiohttp's limits.
"""

from __future__ import annotations

from typing import Any

from eventscale._resource import AsyncService
from eventscale.errors import ConfigError
from eventscale.runtime.health import Health

__all__ = ("MetricsServer", "parse_address")


def parse_address(text: str, *, path: str = "--metrics-address") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``[IPv6]:PORT`` -> (host, port).

    :raises ConfigError: not of that shape, or the port is not in 0-65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or len(port_text) > 5:
        raise ConfigError(f"expected HOST:PORT or :PORT, got {text[:100]!r}", path=path)
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"port {port} is out of range (0-65535)", path=path)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError("write an IPv6 host in brackets: [::1]:8080", path=path)
    return host or "0.0.0.0", port


class MetricsServer(AsyncService):
    """``/metrics``, ``/healthz`` and ``/readyz`` on one address.

    :param address: ``HOST:PORT`` (port 0 picks a free one: read :attr:`port`).
    :param registry: the ``prometheus_client`` registry to expose (the default one).
    :param health: the checks behind the probes (none: always healthy).
    """

    def __init__(
        self, address: str = ":8080", *, registry: Any | None = None, health: Health | None = None
    ) -> None:
        from eventscale._optional import import_optional

        self._prom = import_optional(
            "prometheus_client", extra="prometheus", what="Prometheus metrics"
        )
        self.host, self.port = parse_address(address)
        self.registry = registry if registry is not None else self._prom.REGISTRY
        self.health = health if health is not None else Health()
        self._runner: Any = None

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """``http://host:port`` (an every-interface host reads ``127.0.0.1``)."""
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> tuple[str, int]:
        """Listen; return the host and the port (the real one when 0 was asked)."""
        from eventscale._optional import import_optional

        web = import_optional("aiohttp.web", extra="prometheus", what="the metrics server")
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._live)
        app.router.add_get("/livez", self._live)
        app.router.add_get("/readyz", self._ready)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                path="--metrics-address",
            ) from None
        self._runner = runner
        for address in runner.addresses:  # the port 0 resolved
            self.port = int(address[1])
            break
        return self.host, self.port

    async def aclose(self) -> None:
        """Stop listening (safe to call more than once)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        body = self._prom.generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": self._prom.CONTENT_TYPE_LATEST})

    async def _live(self, request: Any) -> Any:
        return await self._probe(request, await self.health.live())

    async def _ready(self, request: Any) -> Any:
        return await self._probe(request, await self.health.ready())

    @staticmethod
    async def _probe(request: Any, report: Any) -> Any:
        from aiohttp import web

        verbose = "verbose" in request.query
        return web.Response(
            text=report.render(verbose=verbose),
            status=200 if report.ok else 503,
            content_type="text/plain",
        )
