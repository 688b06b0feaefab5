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
