"""The management API's pure parts: vhost/prefix split and regex aggregation (KEDA's rules)."""

from __future__ import annotations

from typing import Any

import pytest

from eventscale.scalers.rabbitmq import Operation, QueueInfo, aggregate_queues, vhost_and_prefix


@pytest.mark.parametrize(
    ("raw_path", "vhost_name", "vhost", "prefix"),
    [
        ("/myVhost", "", "/myVhost", ""),
        ("/%2FmyVhost", "", "/%2FmyVhost", ""),
        ("/", "", "/%2F", ""),
        ("//", "", "/%2F", ""),
        ("/%2F", "", "/%2F", ""),
        ("", "", "/%2F", ""),
        ("/sub1/myVhost", "", "/myVhost", "/sub1"),
        ("/sub1/", "overridenVhost", "/overridenVhost", "/sub1"),
        ("/sub1/", "", "/%2F", "/sub1"),
        ("/sub1//", "", "/%2F", "/sub1"),
        ("/sub1/%2F", "", "/%2F", "/sub1"),
        ("/sub1/sub2/myVhost", "", "/myVhost", "/sub1/sub2"),
        ("/sub1/sub2/", "myVhost", "/myVhost", "/sub1/sub2"),
        ("/sub1/sub2/%2F", "", "/%2F", "/sub1/sub2"),
        ("/", "my vhost/x", "/my+vhost%2Fx", ""),
    ],
)
def test_vhost_and_prefix(raw_path: str, vhost_name: str, vhost: str, prefix: str) -> None:
    assert vhost_and_prefix(raw_path, vhost_name) == (vhost, prefix)


def q(messages: int, ready: int, publish: float, deliver: float) -> dict[str, Any]:
    return {
        "messages": messages,
        "messages_ready": ready,
        "message_stats": {
            "publish_details": {"rate": publish},
            "deliver_get_details": {"rate": deliver},
        },
    }


@pytest.mark.parametrize(
    ("items", "operation", "expected"),
    [
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.SUM, QueueInfo(30, 12, 6, 8), id="sum"
        ),
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.AVG, QueueInfo(15, 6, 3, 4), id="avg"
        ),
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.MAX, QueueInfo(20, 8, 4, 6), id="max"
        ),
        pytest.param(
            [q(5, 3, 1, 3), q(6, 4, 3, 5)], Operation.AVG, QueueInfo(5, 3, 2.0, 4.0), id="avg-trunc"
        ),
        pytest.param(
            [q(30, 5, 1, 9), q(10, 20, 7, 3)],
            Operation.MAX,
            QueueInfo(30, 20, 7, 9),
            id="max-fields",
        ),
        pytest.param([], Operation.SUM, QueueInfo(), id="empty"),
        pytest.param([{"messages": 3}], Operation.SUM, QueueInfo(3, 0, 0, 0), id="no-stats"),
    ],
)
def test_regex_aggregation(
    items: list[dict[str, Any]], operation: Operation, expected: QueueInfo
) -> None:
    assert aggregate_queues(items, operation) == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "use_regex"),
    [
        pytest.param({"name": "fresh", "vhost": "/"}, False, id="one-queue"),
        pytest.param(
            {"page_count": 1, "items": [{"name": "a", "messages": 4}, {"name": "fresh"}]},
            True,
            id="regex",
        ),
    ],
)
async def test_a_queue_without_published_counts_is_an_error_not_zero(
    body: dict[str, Any], use_regex: bool
) -> None:
    # RabbitMQ publishes queue statistics every few seconds: a queue declared a moment
    # ago comes without "messages" (seen against the real broker). That is unknown, not 0.
    # A local HTTP server answers as the management API does in that window.
    from aiohttp import web

    from eventscale.errors import ScalerError
    from eventscale.scalers.rabbitmq import RabbitMQConfig, RabbitMQScaler

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        config = RabbitMQConfig(
            host=f"http://guest:guest@127.0.0.1:{port}/", queue_name="fresh", use_regex=use_regex
        )
        async with RabbitMQScaler(config) as scaler:
            with pytest.raises(ScalerError, match="not reported") as info:
                await scaler.get_metrics()
            assert info.value.transient
    finally:
        await runner.cleanup()
