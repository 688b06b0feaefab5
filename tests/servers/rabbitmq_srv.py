"""RabbitMQ: the machine's node (AMQP 5672) with its management API on 15672.

The management plugin is enabled on the running node when its API does not answer;
if no node runs at all, one is started with the machine's own command.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

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


class PrivateRabbitMQ:
    """A RabbitMQ node of this test session on free ports, which tests may stop and start.

    It runs in the foreground as user ``rabbitmq`` (its data directory is private and
    survives a restart), with the management plugin enabled from the first boot.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.nodename = f"{unique_name('es-rabbit')}@localhost"
        self.proc: Proc | None = None
        self.server = RabbitMQServer(amqp_port=self.amqp_port, management_port=self.management_port)
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            "collect_statistics_interval = 500\n"
        )
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        shutil.chown(base, "rabbitmq", "rabbitmq")
        for path in base.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")

    def _env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/var/lib/rabbitmq",
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
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

    def stop(self) -> None:
        """Stop the node (its data stays) and wait until its ports are closed."""
        if self.proc is not None:
            self.proc.stop(timeout=30)
            self.proc = None
        ports = (self.amqp_port, self.management_port, self.dist_port)

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
