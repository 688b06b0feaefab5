"""Single-queue reads through one management API share one request per poll slot.

The requests are counted on the wire: the scalers reach the management API through a
TCP tap (``servers.tap``) whose hook records the paths of the HTTP requests (request
lines) the client sends; over AMQP, a hook records the method frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import aio_pika
import attrs
import pytest

import eventscale.scalers.rabbitmq._listing as listing_module
import eventscale.scalers.rabbitmq._management as management
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.metrics import ScalerReport
from eventscale.scalers.rabbitmq import RabbitMQConfig, RabbitMQScaler
from servers._proc import unique_name
from servers.rabbitmq_srv import RabbitMQServer
from servers.tap import Link, Tap

pytestmark = pytest.mark.anyio

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE) (\S+) HTTP/1\.1\r\n")

CHANNEL_OPEN = (20, 10)
QUEUE_DECLARE = (50, 10)


@attrs.define
class Sent:
    """What the clients sent through a tap, in order: HTTP request paths, AMQP methods."""

    paths: list[str] = attrs.Factory(list)
    methods: list[tuple[int, int]] = attrs.Factory(list)  # AMQP (class, method)

    def http(self, link: Link, data: bytes) -> None:
        """A tap hook: records the path of every HTTP request line."""
        found = [m.group(2).decode() for m in _REQUEST_LINE.finditer(data)]
        link.messages += len(found)
        self.paths.extend(found)

    def amqp(self, link: Link, data: bytes) -> None:
        """A tap hook: records the AMQP method frames in the stream (after its header)."""
        buf = link.buffer + data
        if buf.startswith(b"AMQP"):
            buf = buf[8:]
        while len(buf) >= 7:
            kind, size = buf[0], int.from_bytes(buf[3:7], "big")
            if len(buf) < 8 + size:
                break
            if kind == 1:  # a method frame: class id, method id
                payload = buf[7 : 7 + size]
                link.messages += 1
                self.methods.append(
                    (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"))
                )
            buf = buf[8 + size :]
        link.buffer = buf

    def count(self, method: tuple[int, int]) -> int:
        return self.methods.count(method)


@contextlib.asynccontextmanager
async def counter_for(server: RabbitMQServer) -> AsyncIterator[tuple[Tap, Sent]]:
    """A tap to the management API recording the requests' paths."""
    sent = Sent()
    async with Tap((server.host, server.management_port), on_client=sent.http) as tap:
        yield tap, sent


def url(tap: Tap, user: str = "guest", password: str = "guest") -> str:
    return f"http://{user}:{password}@{tap.address}/"


async def declare(server: RabbitMQServer, counts: Sequence[int]) -> list[str]:
    """Queues holding ``counts`` messages; returns once the management API shows them."""
    prefix = unique_name("es-batch")
    names = [f"{prefix}-{i}" for i in range(len(counts))]
    conn = await aio_pika.connect(server.amqp_url)
    try:
        channel = await conn.channel()
        for name, count in zip(names, counts, strict=True):
            await channel.declare_queue(name, durable=False)
            for i in range(count):
                await channel.default_exchange.publish(aio_pika.Message(b"%d" % i), name)
    finally:
        await conn.close()
    wanted = dict(zip(names, counts, strict=True))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = server.api("GET", "queues/%2F?columns=name,messages")
        assert isinstance(listing, list)
        seen = {q["name"]: q.get("messages") for q in listing if q["name"] in wanted}
        if seen == wanted:
            return names
        await asyncio.sleep(0.5)
    pytest.fail("the management API did not show the queues' counts in time")


def delete(server: RabbitMQServer, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            server.api("DELETE", f"queues/%2F/{urllib.parse.quote(name, safe='')}")


Declare = Callable[[Sequence[int]], Awaitable[list[str]]]


@pytest.fixture
def queues(rabbitmq_server: RabbitMQServer) -> Iterator[Declare]:
    """``declare`` on the test's server; every queue it made is deleted after the test."""
    made: list[str] = []

    async def make(counts: Sequence[int]) -> list[str]:
        names = await declare(rabbitmq_server, counts)
        made.extend(names)
        return names

    yield make
    delete(rabbitmq_server, made)


def scalers_for(host: str, names: Sequence[str], **kw: Any) -> list[RabbitMQScaler]:
    return [
        RabbitMQScaler(RabbitMQConfig(host=host, queue_name=name, **kw), trigger_name=f"t{i}")
        for i, name in enumerate(names)
    ]


async def poll_all(scalers: Sequence[RabbitMQScaler]) -> list[ScalerReport | BaseException]:
    """Poll every scaler in the same slot, as a controller does with objects due together."""
    return list(await asyncio.gather(*(s.get_metrics() for s in scalers), return_exceptions=True))


async def close_all(scalers: Sequence[RabbitMQScaler]) -> None:
    for scaler in scalers:
        await scaler.aclose()


def values(results: Sequence[ScalerReport | BaseException]) -> list[float]:
    out = []
    for result in results:
        assert isinstance(result, ScalerReport), result
        out.append(result.values[0].value)
    return out


async def test_many_queues_in_one_slot_are_one_request(
    rabbitmq_server: RabbitMQServer, queues: Declare
) -> None:
    counts = [i % 4 for i in range(40)]
    names = await queues(counts)
    async with counter_for(rabbitmq_server) as (tap, sent):
        scalers = scalers_for(url(tap), names)
        try:
            results = await poll_all(scalers)
            assert values(results) == [float(c) for c in counts]
            assert len(sent.paths) == 1
            assert sent.paths[0].startswith("/api/queues/%2F?columns=name,messages")
            # ready only: the listing carries messages_ready too
            ready = scalers_for(url(tap), names[:3], exclude_unacknowledged=True)
            sent.paths.clear()
            assert values(await poll_all([*scalers, *ready])) == [
                *map(float, counts),
                *map(float, counts[:3]),
            ]
            assert len(sent.paths) == 1
            await close_all(ready)
        finally:
            await close_all(scalers)


async def test_a_read_alone_asks_for_its_queue_only(
    rabbitmq_server: RabbitMQServer, queues: Declare
) -> None:
    names = await queues([3])
    async with counter_for(rabbitmq_server) as (tap, sent):
        (scaler,) = scalers_for(url(tap), names)
        try:
            assert values([await scaler.get_metrics()]) == [3.0]
            assert sent.paths == [f"/api/queues/%2F/{names[0]}"]
        finally:
            await scaler.aclose()


async def test_a_missing_queue_is_its_own_error(
    rabbitmq_server: RabbitMQServer, queues: Declare
) -> None:
    names = await queues([1, 2])
    missing = unique_name("es-missing")
    async with counter_for(rabbitmq_server) as (tap, sent):
        scalers = scalers_for(url(tap), [names[0], missing, names[1]])
        try:
            first, gone, second = await poll_all(scalers)
            assert values([first, second]) == [1.0, 2.0]
            assert isinstance(gone, ScalerError)
            assert "404" in str(gone)
            assert missing in str(gone)
            assert gone.transient is False
            assert gone.trigger == "t1"
            assert len(sent.paths) == 1
        finally:
            await close_all(scalers)


async def test_a_failed_request_is_every_callers_error(rabbitmq_server: RabbitMQServer) -> None:
    names = [unique_name("es-any") for _ in range(3)]
    secret = "pw-" + unique_name("wrong")
    async with counter_for(rabbitmq_server) as (tap, sent):
        scalers = scalers_for(url(tap, password=secret), names)
        missing_vhost = scalers_for(url(tap), names, vhost_name=unique_name("es-no-vhost"))
        try:
            results = await poll_all([*scalers, *missing_vhost])
            for i, result in enumerate(results):
                assert isinstance(result, ScalerError), result
                assert result.trigger == f"t{i % 3}"  # each error names its own trigger
                assert secret not in str(result)
                assert ("401" if i < 3 else "404") in str(result)
            assert len(sent.paths) == 2  # one per batch key
        finally:
            await close_all([*scalers, *missing_vhost])


async def test_different_credentials_never_share_a_request(
    rabbitmq_server: RabbitMQServer, queues: Declare
) -> None:
    names = await queues([1, 2])
    user, password = unique_name("es-user"), "pw-" + unique_name("b")
    rabbitmq_server.api("PUT", f"users/{user}", {"password": password, "tags": "monitoring"})
    try:
        rabbitmq_server.api(
            "PUT", f"permissions/%2F/{user}", {"configure": "", "write": "", "read": ".*"}
        )
        async with counter_for(rabbitmq_server) as (tap, sent):
            guest = scalers_for(url(tap), names)
            other = scalers_for(url(tap, user, password), names)
            try:
                assert values(await poll_all([*guest, *other])) == [1.0, 2.0, 1.0, 2.0]
                assert len(sent.paths) == 2
            finally:
                await close_all([*guest, *other])
    finally:
        rabbitmq_server.api("DELETE", f"users/{user}")


async def test_a_listing_too_large_falls_back_to_one_request_per_queue(
    rabbitmq_server: RabbitMQServer, monkeypatch: pytest.MonkeyPatch, queues: Declare
) -> None:
    monkeypatch.setattr(management, "MAX_LISTING_BYTES", 64)
    names = await queues([1, 2, 3])
    async with counter_for(rabbitmq_server) as (tap, sent):
        scalers = scalers_for(url(tap), names)
        try:
            assert values(await poll_all(scalers)) == [1.0, 2.0, 3.0]
            assert sent.paths[0].startswith("/api/queues/%2F?columns=")
            assert sorted(sent.paths[1:]) == sorted(f"/api/queues/%2F/{n}" for n in names)
        finally:
            await close_all(scalers)


async def test_a_few_queues_of_a_large_vhost_are_read_one_by_one(
    rabbitmq_server: RabbitMQServer, monkeypatch: pytest.MonkeyPatch, queues: Declare
) -> None:
    """Once a listing showed the batch wants few of the vhost's queues, it reads them
    one by one (on one session) instead of listing the whole vhost every slot."""
    monkeypatch.setattr(listing_module, "LISTING_SHARE", 0)  # any vhost counts as large
    names = await queues([1, 2, 3])
    async with counter_for(rabbitmq_server) as (tap, sent):
        scalers = scalers_for(url(tap), names)
        try:
            assert values(await poll_all(scalers)) == [1.0, 2.0, 3.0]
            assert len(sent.paths) == 1  # the first slot lists the vhost
            sent.paths.clear()
            assert values(await poll_all(scalers)) == [1.0, 2.0, 3.0]
            assert sorted(sent.paths) == sorted(f"/api/queues/%2F/{n}" for n in names)
        finally:
            await close_all(scalers)


async def test_a_hanging_api_times_each_caller_out(rabbitmq_server: RabbitMQServer) -> None:
    names = [unique_name("es-hang") for _ in range(3)]
    async with counter_for(rabbitmq_server) as (tap, _):
        tap.hold = True
        scalers = scalers_for(url(tap), names, timeout=0.5)
        try:
            results = await poll_all(scalers)
            for i, result in enumerate(results):
                assert isinstance(result, ScalerTimeout), result
                assert result.trigger == f"t{i}"
                assert "timed out after 0.5s" in str(result)
        finally:
            await close_all(scalers)


async def test_amqp_reads_share_a_few_long_lived_channels(
    rabbitmq_server: RabbitMQServer, queues: Declare
) -> None:
    """Over AMQP each slot's passive declares spread over at most 16 kept channels."""
    names = await queues([i % 3 for i in range(59)])
    missing = unique_name("es-missing")
    sent = Sent()
    amqp = (rabbitmq_server.host, rabbitmq_server.amqp_port)
    async with Tap(amqp, on_client=sent.amqp) as tap:
        host = f"amqp://guest:guest@{tap.address}/"
        scalers = scalers_for(host, [*names, missing], connection_name=unique_name("es-batch"))
        try:
            for _ in range(3):
                *found, gone = await poll_all(scalers)
                assert values(found) == [float(i % 3) for i in range(59)]
                assert isinstance(gone, ScalerError)
                assert "does not exist" in str(gone)
                assert gone.trigger == "t59"
            assert sent.count(QUEUE_DECLARE) == 3 * 60
            # 16 channels at most at a time; the one the missing queue closed is replaced
            assert sent.count(CHANNEL_OPEN) <= 16 + 3
        finally:
            await close_all(scalers)


@pytest.fixture(autouse=True)
def _collect_after() -> Iterator[None]:
    """Collect after each test, so a socket left open fails the test that left it."""
    yield
    gc.collect()
