"""InFlightMiddleware on a hand-written ASGI app served by uvicorn, over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from eventscale.http import InFlightMiddleware, RequestStats, registry
from servers._proc import unique_name
from servers.http_srv import Gates, make_app, poll_until, served_app

pytestmark = pytest.mark.anyio


async def _metrics(session: aiohttp.ClientSession, url: str, window: float = 60) -> Any:
    async with session.get(f"{url}/_eventscale/metrics", params={"window": str(window)}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        return await resp.json()


async def test_in_flight_and_oldest_age_under_concurrent_slow_requests() -> None:
    gates = Gates()
    name = unique_name("mw")
    gate = unique_name("gate")
    with served_app(name, gates) as (server, mw):
        assert registry.get(name) is mw.stats
        async with aiohttp.ClientSession() as session:

            async def slow() -> tuple[int, str]:
                async with session.get(f"{server.url}/wait", params={"gate": gate}) as resp:
                    return resp.status, await resp.text()

            tasks = [asyncio.create_task(slow()) for _ in range(5)]

            async def five_in_flight() -> bool:
                return bool((await _metrics(session, server.url))["inFlight"] == 5)

            await poll_until(five_in_flight, what="5 requests in flight")
            first = await _metrics(session, server.url)
            assert first["name"] == name
            assert first["total"] == 5  # metrics requests are not counted
            assert mw.stats.in_flight == 5

            async def older() -> bool:
                doc = await _metrics(session, server.url)
                return bool(doc["oldestAgeSeconds"] > first["oldestAgeSeconds"])

            await poll_until(older, what="the oldest request ages")
            gates.open(gate)
            results = await asyncio.gather(*tasks)
            assert results == [(200, "done")] * 5

            async def drained() -> bool:
                return bool((await _metrics(session, server.url))["inFlight"] == 0)

            await poll_until(drained, what="no request in flight")
            last = await _metrics(session, server.url)
            assert last["oldestAgeSeconds"] == 0
            assert last["total"] == 5
            assert last["arrivalsInWindow"] == 5
            assert last["lastActivityAgeSeconds"] is not None


async def test_streaming_response_counts_until_the_last_chunk() -> None:
    gates = Gates()
    gate = unique_name("gate")
    with served_app(unique_name("mw"), gates) as (server, mw):
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/stream", params={"gate": gate}) as resp,
        ):
            assert resp.status == 200
            assert await resp.content.readexactly(6) == b"part1,"
            # Headers and the first chunk are out, the response is not finished.
            assert mw.stats.in_flight == 1
            gates.open(gate)
            assert await resp.content.read() == b"part2"
        await poll_until(lambda: mw.stats.in_flight == 0, what="stream finished")


async def test_a_failing_app_still_ends_its_request() -> None:
    with served_app(unique_name("mw"), Gates()) as (server, mw):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/boom") as resp:
                assert resp.status == 500
            async with session.get(f"{server.url}/hello") as resp:
                assert await resp.text() == "hello"
        await poll_until(lambda: mw.stats.in_flight == 0, what="requests ended")
        assert mw.stats.total == 2


async def test_metrics_path_can_be_moved_or_disabled() -> None:
    gates = Gates()
    stats = RequestStats(unique_name("mw"))
    app = InFlightMiddleware(make_app(gates), stats=stats, metrics_path=None)
    assert app.stats is stats
    messages: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    scope = {"type": "http", "path": "/_eventscale/metrics", "query_string": b""}
    await app(scope, receive, send)
    # With metrics disabled the path goes to the app (its 404) and is counted.
    assert messages[0]["status"] == 404
    assert stats.total == 1
    assert stats.in_flight == 0


async def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = InFlightMiddleware(app, name=unique_name("mw"))

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        return None

    await mw({"type": "lifespan"}, nothing, ignore)
    await mw({"type": "websocket", "path": "/ws"}, nothing, ignore)
    assert seen == ["lifespan", "websocket"]
    assert mw.stats.total == 0
    counting = InFlightMiddleware(app, name=unique_name("mw"), count_websockets=True)
    await counting({"type": "websocket", "path": "/ws"}, nothing, ignore)
    assert counting.stats.total == 1
    assert counting.stats.in_flight == 0
