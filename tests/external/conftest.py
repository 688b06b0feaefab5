"""Fixtures for the external-scaler tests: an independent KEDA-style server process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers._proc import free_port, port_open

SCRIPT = Path(__file__).with_name("independent_server.py")


class IndependentServer:
    """The process running ``independent_server.py``; restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.log = workdir / "requests.jsonl"
        self.stderr = workdir / "stderr.log"
        self.popen: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.stderr.open("a") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(SCRIPT), str(self.port), str(self.log), str(self.workdir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.popen.stdout is not None
        # the script prints "ready" once it listens, or exits (EOF) when it cannot
        line = self.popen.stdout.readline()
        if line.strip() != "ready" or not port_open(self.port):
            self.stop()
            pytest.fail(f"the independent server did not start:\n{self.stderr.read_text()[-2000:]}")

    def send(self, command: str) -> None:
        """Send one command; it is applied once this returns."""
        assert self.popen is not None
        assert self.popen.stdin is not None
        assert self.popen.stdout is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        assert line.startswith("ok"), line

    def write(self, command: str) -> None:
        """Send one command without waiting for it to be applied."""
        assert self.popen is not None
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        popen, self.popen = self.popen, None
        if popen is None:
            return
        popen.kill()
        popen.wait(10)
        for stream in (popen.stdin, popen.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def independent_server(tmp_path: Path) -> Iterator[Callable[[], IndependentServer]]:
    """Start KEDA-style servers written without eventscale (each in its own process)."""
    started: list[IndependentServer] = []

    def start() -> IndependentServer:
        server = IndependentServer(tmp_path / f"srv{len(started)}")
        server.workdir.mkdir(parents=True)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


# grpc.aio binds its completion-queue poller to the event loop it first runs on and
# may still post callbacks to it after a test ends; with a fresh loop per test those
# land on a closed loop ("Event loop is closed" raised into a later test). Every test
# of this package therefore shares one event loop, kept alive by the fixture below.
@pytest.fixture(scope="package")
def anyio_backend() -> str:
    """The external-scaler tests run on one asyncio loop for the whole package."""
    return "asyncio"


@pytest.fixture(scope="package", autouse=True)
async def _one_event_loop_for_grpc(anyio_backend: str) -> AsyncIterator[None]:
    """Holds anyio's test runner (and so its event loop) open across the package."""
    yield  # noqa: PT022 - the suspended generator is what keeps the runner leased
