"""NATS with JetStream and its HTTP monitoring endpoint, private to the test session.

The machine may run a NATS server on 4222, but without the monitoring endpoint the
``nats-jetstream`` scaler reads; this one listens on free ports and keeps its JetStream
store in a temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from servers._proc import Proc, ensure_apt, free_port, port_open, wait_until


@attrs.frozen
class NATSServer:
    port: int
    monitoring_port: int
    proc: Proc

    @property
    def url(self) -> str:
        """The client URL (``nats://127.0.0.1:PORT``)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitoring_endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the HTTP monitoring endpoint, as KEDA's metadata names it."""
        return f"127.0.0.1:{self.monitoring_port}"


def start_nats(tmp: Path) -> NATSServer:
    """Start ``nats-server -js`` on free ports; the caller stops ``.proc``."""
    binary = ensure_apt("nats-server", "nats-server")
    port, monitoring = free_port(), free_port()
    proc = Proc(
        [
            binary,
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitoring),
            "-sd",
            str(tmp / "store"),
        ],
        log=tmp / "nats.log",
    )
    try:
        wait_until(
            lambda: port_open(port) and port_open(monitoring),
            timeout=20,
            what="nats-server",
            log=proc.log,
        )
    except BaseException:
        proc.stop()
        raise
    return NATSServer(port, monitoring, proc)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NATSServer]:
    """A private NATS server with JetStream and monitoring."""
    with tempfile.TemporaryDirectory(prefix="es-nats-") as tmp:
        server = start_nats(Path(tmp))
        try:
            yield server
        finally:
            server.proc.stop()
