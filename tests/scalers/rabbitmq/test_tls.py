"""TLS against the private RabbitMQ node's real TLS listeners (trustme certificates):
AMQPS with a CA, with a client certificate (SASL EXTERNAL), ``unsafeSsl``, a wrong CA;
the management API over HTTPS, which requires a client certificate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import ScalerReport
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import RabbitMQConfig, RabbitMQScaler
from eventscale.scalers.rabbitmq._tls import build_ssl_context
from servers._proc import unique_name
from servers.rabbitmq_srv import EXTERNAL_USER, PrivateRabbitMQ

pytestmark = pytest.mark.anyio

PASSWORD = "tls-Secret-pa55"  # a password that must never show in an error
KEY_PASSWORD = "key-pa55phrase"


def pem(blob: Any) -> str:
    return str(blob.bytes().decode())


def ca_pem(node: PrivateRabbitMQ) -> str:
    return pem(node.ca.cert_pem)


def client_cert(node: PrivateRabbitMQ) -> tuple[str, str]:
    return pem(node.client_cert.cert_chain_pems[0]), pem(node.client_cert.private_key_pem)


def encrypted_client_key(node: PrivateRabbitMQ) -> str:
    key = serialization.load_pem_private_key(node.client_cert.private_key_pem.bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    ).decode()


@pytest.fixture
async def tls_queue(private_rabbitmq: PrivateRabbitMQ) -> AsyncIterator[str]:
    """A queue with 4 messages on the private node (published over plain AMQP)."""
    name = unique_name("es-tls")
    conn = await aio_pika.connect(private_rabbitmq.server.amqp_url)
    try:
        channel = await conn.channel()
        await channel.declare_queue(name)
        for _ in range(4):
            await channel.default_exchange.publish(aio_pika.Message(b"t"), routing_key=name)
        yield name
        await channel.queue_delete(name)
    finally:
        await conn.close()


def from_keda(metadata: dict[str, str], auth: dict[str, str]) -> RabbitMQScaler:
    return RabbitMQScaler.from_context(
        TriggerContext(metadata=metadata, auth=auth, trigger_type="rabbitmq")
    )


def value(report: ScalerReport) -> float:
    return report.values[0].value


async def test_amqps_with_the_ca_from_keda_auth_params(
    private_rabbitmq: PrivateRabbitMQ, tls_queue: str
) -> None:
    scaler = from_keda(
        {"queueName": tls_queue, "host": private_rabbitmq.amqps_url, "activationValue": "3"},
        {"tls": "enable", "ca": ca_pem(private_rabbitmq)},
    )
    async with scaler:
        report = await scaler.get_metrics()
    assert (value(report), report.is_active) == (4, True)


async def test_amqps_client_certificate_logs_in_with_external(
    private_rabbitmq: PrivateRabbitMQ, tls_queue: str
) -> None:
    cert, key = client_cert(private_rabbitmq)
    conn_name = unique_name("es-external")
    # No password anywhere: KEDA's rule picks SASL EXTERNAL, the broker takes the
    # login from the certificate's CN.
    scaler = RabbitMQScaler(
        RabbitMQConfig(
            host=f"amqps://localhost:{private_rabbitmq.amqps_port}/",
            queue_name=tls_queue,
            tls=True,
            ca=ca_pem(private_rabbitmq),
            cert=cert,
            key=key,
            connection_name=conn_name,
        )
    )
    async with scaler:
        assert value(await scaler.get_metrics()) == 4
        deadline = time.monotonic() + 15
        seen: list[dict[str, Any]] = []
        while not seen and time.monotonic() < deadline:
            conns = private_rabbitmq.server.api("GET", "connections")
            assert isinstance(conns, list)
            seen = [
                c
                for c in conns
                if (c.get("client_properties") or {}).get("connection_name") == conn_name
            ]
            if not seen:
                await asyncio.sleep(0.25)
        assert len(seen) == 1, "the scaler's connection did not show up"
        assert seen[0]["user"] == EXTERNAL_USER
        assert seen[0]["auth_mechanism"] == "EXTERNAL"
        assert seen[0]["ssl"] is True


async def test_unsafe_ssl_skips_verification_and_is_needed_without_a_ca(
    private_rabbitmq: PrivateRabbitMQ, tls_queue: str
) -> None:
    host = private_rabbitmq.amqps_url
    async with from_keda({"queueName": tls_queue, "host": host, "unsafeSsl": "true"}, {}) as s:
        assert value(await s.get_metrics()) == 4
    # The same without unsafeSsl: the trustme CA is not a system CA.
    async with from_keda({"queueName": tls_queue, "host": host}, {}) as s:
        with pytest.raises(ScalerError, match="TLS handshake") as info:
            await s.get_metrics()
    assert info.value.transient is False


@pytest.mark.parametrize("protocol", ["amqp", "http"])
async def test_wrong_ca_is_an_error_without_secrets(
    private_rabbitmq: PrivateRabbitMQ, tls_queue: str, protocol: str
) -> None:
    node = private_rabbitmq
    cert, key = client_cert(node)
    if protocol == "amqp":
        host = f"amqps://guest:{PASSWORD}@localhost:{node.amqps_port}/"
    else:
        host = f"https://guest:{PASSWORD}@localhost:{node.management_tls_port}/"
    scaler = from_keda(
        {"queueName": tls_queue, "host": host},
        {"tls": "enable", "ca": pem(node.other_ca.cert_pem), "cert": cert, "key": key},
    )
    async with scaler:
        for _ in range(2):  # and again: no half-open connection is left behind
            with pytest.raises(ScalerError, match="TLS handshake") as info:
                await scaler.get_metrics()
    err = info.value
    assert err.transient is False
    assert "certificate verify failed" in str(err) or "self-signed" in str(err)
    key_body = key.splitlines()[1]
    for text in (str(err), repr(err), err.message, repr(scaler)):
        assert PASSWORD not in text
        assert key_body not in text


async def test_https_management_api_with_client_certificate_and_key_password(
    private_rabbitmq: PrivateRabbitMQ, tls_queue: str
) -> None:
    node = private_rabbitmq
    cert, _ = client_cert(node)
    auth = {
        "tls": "enable",
        "ca": ca_pem(node),
        "cert": cert,
        "key": encrypted_client_key(node),
        "keyPassword": KEY_PASSWORD,
    }
    scaler = from_keda({"queueName": tls_queue, "host": node.management_tls_url}, auth)
    async with scaler:
        deadline = time.monotonic() + 15  # the management API's counts lag
        count: float | None = None
        while count != 4 and time.monotonic() < deadline:
            try:
                count = value(await scaler.get_metrics())
            except ScalerError as exc:  # a fresh queue's counts are not published yet
                if "not reported" not in str(exc):
                    raise
            if count != 4:
                await asyncio.sleep(0.25)
        assert count == 4

    # The management TLS port requires a client certificate: without one, an error.
    no_cert = from_keda(
        {"queueName": tls_queue, "host": node.management_tls_url},
        {"tls": "enable", "ca": ca_pem(node)},
    )
    async with no_cert:
        with pytest.raises(ScalerError, match="TLS handshake") as info:
            await no_cert.get_metrics()
    assert info.value.transient is False
    assert "guest:guest" not in str(info.value)


async def test_wrong_key_password_is_a_config_error(private_rabbitmq: PrivateRabbitMQ) -> None:
    node = private_rabbitmq
    cert, _ = client_cert(node)
    with pytest.raises(ConfigError) as info:
        from_keda(
            {"queueName": "q", "host": node.management_tls_url},
            {
                "tls": "enable",
                "ca": ca_pem(node),
                "cert": cert,
                "key": encrypted_client_key(node),
                "keyPassword": "not-the-" + KEY_PASSWORD,
            },
        )
    assert info.value.path == "keyPassword"
    assert KEY_PASSWORD not in str(info.value)


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def parse(metadata: dict[str, Any], auth: dict[str, Any]) -> RabbitMQConfig:
    return RabbitMQConfig.from_context(
        TriggerContext(
            metadata={"queueName": "sample", **metadata}, auth=auth, trigger_type="rabbitmq"
        )
    )


def test_tls_context_with_client_certificate() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("client.example")
    config = parse(
        {"host": "amqps://rabbit:5671/", "unsafeSsl": "true"},
        {
            "tls": "enable",
            "ca": ca.cert_pem.bytes().decode(),
            "cert": leaf.cert_chain_pems[0].bytes().decode(),
            "key": leaf.private_key_pem.bytes().decode(),
        },
    )
    context = build_ssl_context(config)
    assert context.check_hostname is False
    bad = parse(
        {"host": "amqps://rabbit:5671/"},
        {"tls": "enable", "cert": PEM, "key": "not a key"},
    )
    with pytest.raises(ConfigError) as info:
        build_ssl_context(bad)
    assert "not a key" not in str(info.value)
