"""RabbitMQ: the machine's node (AMQP 5672) with its management API on 15672.

The management plugin is enabled on the running node when its API does not answer;
if no node runs at all, one is started with the machine's own command.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator

import attrs
import pytest

from servers._proc import port_open, run, wait_until

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
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    """The machine's RabbitMQ with the management API enabled."""
    if not port_open(5672):
        if not shutil.which("rabbitmq-server"):
            pytest.fail("RabbitMQ is not installed on this machine", pytrace=False)
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
        wait_until(lambda: port_open(5672), timeout=60, what="RabbitMQ AMQP on 5672", interval=0.2)
    if not _management_up():
        run(["rabbitmq-plugins", "enable", "rabbitmq_management"], timeout=120)
        wait_until(_management_up, timeout=60, what="RabbitMQ management API", interval=0.2)
    yield RabbitMQServer()
