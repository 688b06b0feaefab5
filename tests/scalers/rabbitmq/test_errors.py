"""Error texts: userinfo masked as KEDA does."""

from __future__ import annotations

import pytest

from eventscale.scalers.rabbitmq import anonymize_error


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("https://user1:password1@domain.com", "https://user:password@domain.com"),
        ("fdasr345_-:password1@domain.com", "user:password@domain.com"),
        ("this user1:password1@domain.com fails", "this user:password@domain.com fails"),
        ("nothing to replace here", "nothing to replace here"),
    ],
)
def test_error_anonymisation(message: str, expected: str) -> None:
    assert anonymize_error(message) == "error inspecting RabbitMQ: " + expected
