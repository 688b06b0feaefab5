"""AMQP without a server: KEDA's choice of SASL EXTERNAL for client-certificate logins."""

from __future__ import annotations

from typing import Any

import pytest

from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import RabbitMQConfig
from eventscale.scalers.rabbitmq._amqp import uses_external_auth

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def parse(host: str, auth: dict[str, Any]) -> RabbitMQConfig:
    return RabbitMQConfig.from_context(
        TriggerContext(
            metadata={"queueName": "sample", "host": host}, auth=auth, trigger_type="rabbitmq"
        )
    )


@pytest.mark.parametrize(
    ("host", "auth", "external"),
    [
        pytest.param(
            "amqps://rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            True,
            id="cert-no-creds",
        ),
        pytest.param(
            "amqps://rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k", "username": "u", "password": "p"},
            False,
            id="cert-and-password",
        ),
        pytest.param("amqps://rabbit:5671/", {"tls": "disable"}, False, id="tls-disabled"),
        pytest.param("amqps://rabbit:5671/", {"tls": "enable", "ca": PEM}, False, id="ca-only"),
        pytest.param(
            "amqps://user:pass@rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            False,
            id="url-password",
        ),
        pytest.param(
            "amqps://CN=username@rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            True,
            id="url-user-only",
        ),
    ],
)
def test_sasl_external_choice(host: str, auth: dict[str, Any], external: bool) -> None:
    assert uses_external_auth(parse(host, auth)) is external
