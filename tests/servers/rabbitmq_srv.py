"""RabbitMQ: the machine's node (AMQP 5672) with its management API on 15672.

The management plugin is enabled on the running node when its API does not answer;
if no node runs at all, one is started with the machine's own command.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

from servers._proc import Proc, free_port, port_open, run, unique_name, wait_until

MANAGEMENT_PORT = 15672


@attrs.frozen
class RabbitMQServer:
    host: str = "127.0.0.1"
    amqp_port: int = 5672
    management_port: int = MANAGEMENT_PORT
    username: str = "guest"
    password: str = "guest"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.username}:{self.password}@{self.host}:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://{self.username}:{self.password}@{self.host}:{self.management_port}"

    def api(self, method: str, path: str, body: object | None = None) -> object:
        """Call the management API (tests use it to create vhosts and read counts)."""
        req = urllib.request.Request(
            f"http://{self.host}:{self.management_port}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{self.username}:{self.password}".encode()).decode(),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None


def _management_up() -> bool:
    try:
        RabbitMQServer().api("GET", "overview")
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def rabbitmq_server() -> RabbitMQServer:
    """The machine's RabbitMQ with the management API enabled."""
    if not port_open(5672):
        if not shutil.which("rabbitmq-server"):
            pytest.fail("RabbitMQ is not installed on this machine", pytrace=False)
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
        wait_until(lambda: port_open(5672), timeout=60, what="RabbitMQ AMQP on 5672", interval=0.2)
    if not _management_up():
        run(["rabbitmq-plugins", "enable", "rabbitmq_management"], timeout=120)
        wait_until(_management_up, timeout=60, what="RabbitMQ management API", interval=0.2)
    return RabbitMQServer()


# --------------------------------------------------------------------------- private node

RABBITMQ_SERVER_BIN = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EXTERNAL_USER = "es-client"  # the CN of the client certificate = the EXTERNAL login
OAUTH_RESOURCE = "rabbitmq"  # auth_oauth2 resource_server_id: the JWT audience and scope prefix
OAUTH_KEY_ID = "es-hs256"
OAUTH_SIGNING_KEY = b"eventscale-test-signing-key-0123456789"
OAUTH_SCOPES = "rabbitmq.read:*/* rabbitmq.configure:*/* rabbitmq.tag:management"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: Mapping[str, Any], *, key: bytes, kid: str | None = None) -> str:
    """An HS256-signed JWT (header.payload.signature), made with the standard library."""
    header: dict[str, str] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


class PrivateRabbitMQ:
    """A RabbitMQ node of this test session on free ports, which tests may stop and start.

    It runs in the foreground as user ``rabbitmq`` (its data directory is private and
    survives a restart), with the management plugin enabled from the first boot. Besides
    plain AMQP and HTTP it listens with TLS (trustme certificates) on ``amqps_port``
    (client certificate optional; SASL EXTERNAL for :data:`EXTERNAL_USER`) and
    ``management_tls_port`` (client certificate required), and accepts OAuth2 JWTs
    signed with :data:`OAUTH_SIGNING_KEY` (HS256) for audience :data:`OAUTH_RESOURCE`.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp_port = free_port()
        self.amqps_port = free_port()
        self.management_port = free_port()
        self.management_tls_port = free_port()
        self.dist_port = free_port()
        self.nodename = f"{unique_name('es-rabbit')}@localhost"
        self.proc: Proc | None = None
        self.server = RabbitMQServer(amqp_port=self.amqp_port, management_port=self.management_port)
        # TLS material: the broker's chain, a client certificate whose CN is the
        # EXTERNAL login, and a second CA that signed nothing here (a "wrong CA").
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        server_cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self.client_cert = self.ca.issue_cert(
            "es-client.example", common_name=EXTERNAL_USER, key_type=trustme.KeyType.RSA
        )
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(base / "ca.pem"))
        server_cert.cert_chain_pems[0].write_to_path(str(base / "server.pem"))
        server_cert.private_key_pem.write_to_path(str(base / "server.key"))
        tls = {
            "cacertfile": base / "ca.pem",
            "certfile": base / "server.pem",
            "keyfile": base / "server.key",
        }
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"listeners.ssl.default = 127.0.0.1:{self.amqps_port}",
            *(f"ssl_options.{k} = {v}" for k, v in tls.items()),
            # A client certificate is optional on AMQP (verified when presented, and
            # then usable for SASL EXTERNAL) ...
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = false",
            "auth_mechanisms.1 = PLAIN",
            "auth_mechanisms.2 = AMQPLAIN",
            "auth_mechanisms.3 = EXTERNAL",
            "ssl_cert_login_from = common_name",
            "management.tcp.ip = 127.0.0.1",
            f"management.tcp.port = {self.management_port}",
            # ... and required on the management API's TLS port.
            "management.ssl.ip = 127.0.0.1",
            f"management.ssl.port = {self.management_tls_port}",
            *(f"management.ssl.{k} = {v}" for k, v in tls.items()),
            "management.ssl.verify = verify_peer",
            "management.ssl.fail_if_no_peer_cert = true",
            # Passwords first, then OAuth2 JWTs (HS256, key below).
            "auth_backends.1 = rabbit_auth_backend_internal",
            "auth_backends.2 = rabbit_auth_backend_oauth2",
            "collect_statistics_interval = 500",
        ]
        (base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        key = OAUTH_SIGNING_KEY.decode()
        (base / "advanced.config").write_text(
            "[{rabbitmq_auth_backend_oauth2, [\n"
            f'  {{resource_server_id, <<"{OAUTH_RESOURCE}">>}},\n'
            "  {key_config, [\n"
            f'    {{default_key, <<"{OAUTH_KEY_ID}">>}},\n'
            f'    {{signing_keys, #{{<<"{OAUTH_KEY_ID}">> => {{map, #{{<<"kty">> => <<"MAC">>, '
            f'<<"alg">> => <<"HS256">>, <<"value">> => <<"{key}">>}}}}}}}}\n'
            "  ]}\n"
            "]}].\n"
        )
        (base / "enabled_plugins").write_text(
            "[rabbitmq_management,rabbitmq_auth_mechanism_ssl,rabbitmq_auth_backend_oauth2].\n"
        )
        shutil.chown(base, "rabbitmq", "rabbitmq")
        for path in base.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")

    @property
    def amqps_url(self) -> str:
        """``amqps://guest:guest@localhost:<port>/`` (the server certificate names localhost)."""
        return f"amqps://guest:guest@localhost:{self.amqps_port}/"

    @property
    def management_tls_url(self) -> str:
        """The management API over TLS (it requires a client certificate)."""
        return f"https://guest:guest@localhost:{self.management_tls_port}/"

    def oauth_token(self, *, expires_in: float = 300, scopes: str = OAUTH_SCOPES) -> str:
        """A JWT the node accepts: HS256 with the node's signing key, audience ``rabbitmq``."""
        return make_jwt(
            {
                "sub": "es-oauth-client",
                "aud": [OAUTH_RESOURCE],
                "scope": scopes.split(),
                "exp": int(time.time() + expires_in),
            },
            key=OAUTH_SIGNING_KEY,
            kid=OAUTH_KEY_ID,
        )

    def _setup_users(self) -> None:
        """The passwordless user that a client certificate logs in as (EXTERNAL)."""
        self.server.api("PUT", f"users/{EXTERNAL_USER}", {"password_hash": "", "tags": ""})
        self.server.api(
            "PUT",
            f"permissions/%2F/{EXTERNAL_USER}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def _env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/var/lib/rabbitmq",
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(b / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.alive

    def start(self) -> None:
        """Start the node and wait until AMQP and the management API answer."""
        if self.running:
            return
        self.proc = Proc(
            ["runuser", "-u", "rabbitmq", "--", RABBITMQ_SERVER_BIN],
            log=self.base / "console.log",
            env=self._env(),
            cwd=self.base,
        )

        def up() -> bool:
            if self.proc is None or not self.proc.alive:
                raise RuntimeError("exited")
            self.server.api("GET", "overview")
            return port_open(self.amqp_port)

        wait_until(up, timeout=60, what="private RabbitMQ node", interval=0.2, log=self.proc.log)
        self._setup_users()

    def stop(self) -> None:
        """Stop the node (its data stays) and wait until its ports are closed."""
        if self.proc is not None:
            self.proc.stop(timeout=30)
            self.proc = None
        ports = (
            self.amqp_port,
            self.amqps_port,
            self.management_port,
            self.management_tls_port,
            self.dist_port,
        )

        def down() -> bool:
            if any(port_open(p) for p in ports):
                return False
            pid_file = self.base / "rabbit.pid"
            if pid_file.exists():
                pid = pid_file.read_text().strip()
                if pid and Path(f"/proc/{pid}").exists():
                    return False
            return True

        wait_until(down, timeout=30, what="private RabbitMQ node to stop")


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A private RabbitMQ node (started once per session, ~8 s) for stop/start fault tests."""
    if not os.path.exists(RABBITMQ_SERVER_BIN):
        pytest.fail("RabbitMQ is not installed on this machine", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="eventscale-rmq-"))
    node = PrivateRabbitMQ(base)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
