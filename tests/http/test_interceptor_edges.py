"""The interceptor against hostile or unusual clients, over raw sockets: a ``Connection``
header naming ``Host``, an absolute-form request target, slow and idle connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.http import Interceptor, Route
from servers._proc import unique_name
from servers.http_srv import upstream

pytestmark = pytest.mark.anyio


async def _raw(port: int, request: bytes) -> tuple[int, Any]:
    """Send ``request`` as is; the status and the upstream's JSON echo (or the text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


async def test_connection_header_naming_host_keeps_host() -> None:
    async with upstream("a") as a, upstream("b") as b:
        routes = [
            Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url),
            Route(name=unique_name("b"), hosts=["b.test"], upstream=b.url),
        ]
        async with Interceptor(routes) as icpt:
            assert icpt.port is not None
            status, body = await _raw(
                icpt.port,
                b"GET /x HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close, Host, X-Drop\r\n"
                b"X-Drop: 1\r\nX-Keep: 2\r\n\r\n",
            )
            assert status == 200
            assert body["upstream"] == "a"
            assert body["host"] == "a.test:8080"  # not the upstream's own address
            assert body["headers"].get("X-Keep") == "2"
            assert "X-Drop" not in body["headers"]  # a field Connection names is still dropped


async def test_absolute_form_target_is_routed_by_its_authority() -> None:
    async with upstream("a") as a, upstream("b") as b:
        routes = [
            Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url),
            Route(name=unique_name("b"), hosts=["b.test"], upstream=b.url),
        ]
        async with Interceptor(routes) as icpt:
            assert icpt.port is not None
            # RFC 9112 3.2.2: the target's authority wins over the Host header
            status, body = await _raw(
                icpt.port,
                b"GET http://b.test:81/p/q?x=1 HTTP/1.1\r\nHost: a.test\r\n"
                b"Connection: close\r\n\r\n",
            )
            assert status == 200
            assert body["upstream"] == "b"
            assert body["path"] == "/p/q?x=1"
            assert body["host"] == "b.test:81"
            status, body = await _raw(
                icpt.port,
                b"GET http://a.test HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            )
            assert (status, body["upstream"], body["path"]) == (200, "a", "/")
            # userinfo in the target is never passed on as part of Host
            status, body = await _raw(
                icpt.port,
                b"GET http://u:pw@b.test/q HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            )
            assert (status, body["upstream"], body["host"]) == (200, "b", "b.test")


async def test_a_slow_request_head_is_cut_off() -> None:
    async with upstream("a") as a:
        route = Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url)
        async with Interceptor([route], header_timeout=0.5) as icpt:
            assert icpt.port is not None
            silent = await asyncio.open_connection("127.0.0.1", icpt.port)
            trickle = await asyncio.open_connection("127.0.0.1", icpt.port)
            trickle[1].write(b"GET / HTTP/1.1\r\n")
            for _ in range(5):  # a header line every 0.2 s never completes the head
                await asyncio.sleep(0.2)
                if trickle[0].at_eof() or trickle[1].is_closing():
                    break
                try:
                    trickle[1].write(b"X-Slow: 1\r\n")
                    await trickle[1].drain()
                except ConnectionError:
                    break
            for reader, writer in (silent, trickle):
                # the interceptor closes: EOF (or a reset) instead of waiting for ever
                with contextlib.suppress(ConnectionResetError):
                    assert await asyncio.wait_for(reader.read(), 10) == b""
                writer.close()
            # a prompt client is still served, on a kept-alive connection too
            reader, writer = await asyncio.open_connection("127.0.0.1", icpt.port)
            for _ in range(2):
                writer.write(b"GET /k HTTP/1.1\r\nHost: a.test\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                await asyncio.sleep(0.7)  # longer than header_timeout, idle between requests
            writer.close()


async def test_idle_connections_are_capped() -> None:
    async with upstream("a") as a:
        route = Route(name=unique_name("a"), hosts=["a.test"], upstream=a.url)
        async with Interceptor([route], header_timeout=60, max_idle_connections=20) as icpt:
            assert icpt.port is not None
            idle = [await asyncio.open_connection("127.0.0.1", icpt.port) for _ in range(50)]
            try:
                # the 30 that waited longest are closed; a real request still goes through
                status, body = await _raw(
                    icpt.port, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
                )
                assert (status, body["upstream"]) == (200, "a")
                closed = 0
                for reader, _ in idle[:31]:
                    try:
                        closed += await asyncio.wait_for(reader.read(), 10) == b""
                    except ConnectionResetError:
                        closed += 1
                assert closed == 31  # 30 over the cap, then one more for the request above
                for reader, _ in idle[31:]:
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(reader.read(1), 0.05)
            finally:
                for _, writer in idle:
                    writer.close()


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        Interceptor([], header_timeout=0, max_idle_connections=-1)
    assert set(info.value.all_paths()) == {"header_timeout", "max_idle_connections"}
