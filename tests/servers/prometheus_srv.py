"""Private Prometheus servers (Debian's ``prometheus``) scraping an exporter in the test process.

Two servers share one :class:`Exporter` (a ``/metrics`` endpoint whose samples the tests
set) and scrape it every second:

* ``prometheus_server``: plain HTTP, no authentication;
* ``prometheus_secure_server``: HTTPS (trustme certificates) that requires a client
  certificate *and* basic auth, through Prometheus's ``--web.config.file``.

Tests wait for a scrape with :meth:`PrometheusServer.wait_for` (polling the query API),
never by sleeping a fixed time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

from servers._proc import Proc, ensure_apt, free_port, unique_name, wait_until

SCRAPE_INTERVAL = "1s"
BASIC_USER = "prom-user"
BASIC_PASSWORD = "prom-pass-8f1d2c"


class Exporter:
    """A ``/metrics`` endpoint in the test process; :meth:`set` replaces one metric's lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, list[str]] = {}
        self._counters: dict[str, tuple[str, float, float]] = {}
        self.port = free_port()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, name: str, *samples: tuple[dict[str, str], str]) -> None:
        """Serve ``name`` with these ``(labels, value)`` samples (none: remove it)."""
        lines = [f"# TYPE {name} gauge"] if samples else []
        for labels, value in samples:
            text = ",".join(f'{key}="{val}"' for key, val in labels.items())
            lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")
        with self._lock:
            if lines:
                self._metrics[name] = lines
            else:
                self._metrics.pop(name, None)

    def set_counter(self, name: str, labels: dict[str, str], per_second: float) -> None:
        """Serve ``name`` as a counter that grows by ``per_second`` (its ``rate()``)."""
        start = time.monotonic()
        text = ",".join(f'{key}="{val}"' for key, val in labels.items())
        with self._lock:
            self._counters[name] = (f"{name}{{{text}}}", start, per_second)

    def render(self) -> str:
        now = time.monotonic()
        with self._lock:
            out = [line + "\n" for lines in self._metrics.values() for line in lines]
            for name, (series, start, per_second) in self._counters.items():
                out.append(f"# TYPE {name} counter\n{series} {(now - start) * per_second:.3f}\n")
            return "".join(out)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@attrs.frozen
class TLSFiles:
    """The trustme CA and a client certificate, as PEM text."""

    ca_pem: str
    client_cert_pem: str
    client_key_pem: str


@attrs.frozen
class PrometheusServer:
    """A running private Prometheus; ``url`` is what ``serverAddress`` takes."""

    url: str
    proc: Proc
    tls: TLSFiles | None = None

    def _context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cadata=self.tls.ca_pem)
        with _pem_files(self.tls.client_cert_pem, self.tls.client_key_pem) as (cert, key):
            ctx.load_cert_chain(cert, key)
        return ctx

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path (with the credentials on the secure server); the JSON answer."""
        request = urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        if self.tls is not None:
            token = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._context()) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read())
        return doc

    def wait_for(self, query: str, count: int = 1, timeout: float = 30) -> None:
        """Wait until ``query`` returns ``count`` series (a scrape has happened)."""

        def ready() -> bool:
            doc = self.api("/api/v1/query", query=query)
            return doc.get("status") == "success" and len(doc["data"]["result"]) == count

        wait_until(ready, timeout=timeout, what=f"{count} series for {query!r}", log=self.proc.log)


@contextlib.contextmanager
def _pem_files(cert: str, key: str) -> Iterator[tuple[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert_path.write_text(cert)
        key_path.write_text(key)
        yield str(cert_path), str(key_path)


def _start(
    workdir: Path, exporter: Exporter, *, web_config: str | None, scheme: str
) -> tuple[str, Proc]:
    binary = ensure_apt("prometheus", "prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: exporter\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if web_config is not None:
        (workdir / "web.yml").write_text(web_config)
        cmd.append(f"--web.config.file={workdir / 'web.yml'}")
    proc = Proc(cmd, log=workdir / "prometheus.log", cwd=workdir)
    return f"{scheme}://127.0.0.1:{port}", proc


@pytest.fixture(scope="session")
def prometheus_exporter() -> Iterator[Exporter]:
    """The ``/metrics`` endpoint both Prometheus servers scrape."""
    exporter = Exporter()
    yield exporter
    exporter.close()


@pytest.fixture(scope="session")
def prometheus_server(
    prometheus_exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A plain-HTTP private Prometheus scraping :func:`prometheus_exporter` every second."""
    workdir = tmp_path_factory.mktemp("prometheus")
    url, proc = _start(workdir, prometheus_exporter, web_config=None, scheme="http")
    server = PrometheusServer(url, proc)
    try:
        wait_until(
            lambda: proc.alive and server.api("/api/v1/query", query="1")["status"] == "success",
            timeout=60,
            what="prometheus",
            log=proc.log,
        )
        yield server
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def prometheus_secure_server(
    prometheus_exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A private Prometheus on HTTPS that requires a client certificate and basic auth."""
    workdir = tmp_path_factory.mktemp("prometheus-secure")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("eventscale-client@example.org")
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(workdir / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(workdir / "server.key"))
    import bcrypt  # the test dependency group; imported here so other tests load without it

    hashed = bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = (
        "tls_server_config:\n"
        f"  cert_file: {workdir / 'server.pem'}\n"
        f"  key_file: {workdir / 'server.key'}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {workdir / 'ca.pem'}\n"
        "basic_auth_users:\n"
        f"  {BASIC_USER}: {hashed}\n"
    )
    url, proc = _start(workdir, prometheus_exporter, web_config=web_config, scheme="https")
    tls = TLSFiles(
        ca_pem=ca.cert_pem.bytes().decode(),
        client_cert_pem=client_cert.cert_chain_pems[0].bytes().decode(),
        client_key_pem=client_cert.private_key_pem.bytes().decode(),
    )
    server = PrometheusServer(url, proc, tls)
    try:
        wait_until(
            lambda: proc.alive and server.api("/api/v1/query", query="1")["status"] == "success",
            timeout=60,
            what="prometheus (TLS, basic auth)",
            log=proc.log,
        )
        yield server
    finally:
        proc.stop()


@pytest.fixture
def unique_metric() -> str:
    """A metric name no other test (or test run) uses."""
    return unique_name("es_test").replace("-", "_")
