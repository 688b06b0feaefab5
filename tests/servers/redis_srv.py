"""Redis: the machine's server on 6379, or a private one; plus private servers for fault tests."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from servers._proc import Proc, ensure_apt, free_port, port_open, run, wait_until


@attrs.frozen
class RedisServer:
    host: str
    port: int
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def start_private_redis(tmp: Path, *extra: str, port: int | None = None) -> RedisServer:
    """Start a ``redis-server`` on a free (or given) port; the caller stops ``.proc``."""
    binary = ensure_apt("redis-server", "redis-server")
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    proc = Proc(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp), *extra],
        log=tmp / f"redis-{port}.log",
    )
    cli = ensure_apt("redis-cli", "redis-tools")
    wait_until(
        lambda: proc.alive and "PONG" in run([cli, "-p", str(port), "ping"], timeout=5),
        timeout=15,
        what=f"redis-server on port {port}",
        log=proc.log,
    )
    return RedisServer("127.0.0.1", port, proc)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A running Redis: the machine's on 127.0.0.1:6379 if it is up, else a private one."""
    if port_open(6379):
        yield RedisServer("127.0.0.1", 6379)
        return
    with tempfile.TemporaryDirectory(prefix="es-redis-") as tmp:
        server = start_private_redis(Path(tmp))
        try:
            yield server
        finally:
            assert server.proc is not None
            server.proc.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for private Redis servers (fault tests stop and restart them freely)."""
    started: list[RedisServer] = []

    def start(*extra: str, port: int | None = None) -> RedisServer:
        server = start_private_redis(tmp_path / f"r{len(started)}", *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.proc is not None
        server.proc.stop()
