"""Real servers for the http tests: a hand-written ASGI app under uvicorn, aiohttp upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from aiohttp import web

from eventscale.http import InFlightMiddleware
from servers._proc import free_port

Scope = dict[str, Any]


class Gates:
    """Named thread-safe gates the ASGI app's ``/wait`` handler waits on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}

    def get(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def open(self, name: str) -> None:
        self.get(name).set()


def make_app(gates: Gates) -> Any:
    """A bare ASGI app: ``/hello``, ``/wait?gate=G``, ``/stream?gate=G``, ``/sleep?ms=N``, ``/boom``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        query = parse_qs(scope.get("query_string", b"").decode())
        path = scope["path"]

        async def start(status: int = 200) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )

        async def wait_gate() -> None:
            gate = gates.get(query["gate"][0])
            while not gate.is_set():  # noqa: ASYNC110 - a threading.Event set from the test loop
                await asyncio.sleep(0.005)

        if path == "/hello":
            await start()
            await send({"type": "http.response.body", "body": b"hello"})
        elif path == "/wait":
            await wait_gate()
            await start()
            await send({"type": "http.response.body", "body": b"done"})
        elif path == "/stream":
            await start()
            await send({"type": "http.response.body", "body": b"part1,", "more_body": True})
            await wait_gate()
            await send({"type": "http.response.body", "body": b"part2"})
        elif path == "/sleep":
            await asyncio.sleep(int(query["ms"][0]) / 1000)
            await start()
            await send({"type": "http.response.body", "body": b"slept"})
        elif path == "/boom":
            raise RuntimeError("boom")
        else:
            await start(404)
            await send({"type": "http.response.body", "body": b"not found"})

    return app


class UvicornServer:
    """``app`` served by uvicorn (h11) on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive():
                pytest.fail("uvicorn exited before it started", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail("uvicorn did not start within 20s", pytrace=False)
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def served_app(name: str, gates: Gates) -> Iterator[tuple[UvicornServer, InFlightMiddleware]]:
    """The test app wrapped in :class:`InFlightMiddleware` (stats ``name``) under uvicorn."""
    middleware = InFlightMiddleware(make_app(gates), name=name)
    server = UvicornServer(middleware)
    server.start()
    try:
        yield server, middleware
    finally:
        server.stop()


class Upstream:
    """A real aiohttp server standing in for an app behind the interceptor."""

    def __init__(self, label: str, port: int | None = None) -> None:
        self.label = label
        self.port = port or free_port()
        self.gate = asyncio.Event()
        self.gate.set()
        self.requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.path.startswith("/slow"):
            await self.gate.wait()
        if request.path.startswith("/big"):
            size = int(request.query.get("n", "3000000"))
            stream = web.StreamResponse()
            await stream.prepare(request)
            chunk = b"x" * 65536
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                await stream.write(part)
                sent += len(part)
            await stream.write_eof()
            return stream
        body = await request.read()
        return web.json_response(
            {
                "upstream": self.label,
                "path": request.path_qs,
                "method": request.method,
                "host": request.host,
                "body": body.decode(),
                "forwardedFor": request.headers.get("X-Forwarded-For"),
                "forwardedHost": request.headers.get("X-Forwarded-Host"),
                "headers": dict(request.headers),
            },
            headers={"X-Upstream": self.label},
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        self.gate.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def running(self) -> bool:
        return self._runner is not None


@contextlib.asynccontextmanager
async def upstream(label: str) -> AsyncIterator[Upstream]:
    """A started :class:`Upstream`, stopped on exit."""
    up = Upstream(label)
    await up.start()
    try:
        yield up
    finally:
        await up.stop()


async def poll_until(check: Any, *, within: float = 10.0, what: str) -> None:
    """Poll ``check()`` (sync or async) until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{what}: not true after {within:g}s", pytrace=False)
