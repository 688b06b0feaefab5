"""azure-servicebus with ``podIdentity: azure-workload``, end to end.

The real azure-identity client exchanges the federated token file at the Entra ID
token endpoint stand-in (servers/entra_srv.py), which issues RS256 access tokens; the
real azure-servicebus admin client sends the token to the Service Bus stand-in, which
checks its signature against the endpoint's key, its audience
(``https://servicebus.azure.net``), issuer and expiry. A token that fails any check is a
permanent ScalerError, never a count of 0. Both test authorities are trusted through
public azure-core options (``caCertFile`` for the namespace,
``credential_options={"connection_verify": ...}`` for the authority host).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from eventscale.errors import ScalerError
from eventscale.scalers import TriggerContext
from eventscale.scalers.azure.servicebus import AzureServiceBusMetadata, AzureServiceBusScaler
from servers._proc import unique_name
from servers.entra_srv import TENANT, TokenEndpoint, issuer
from servers.servicebus_srv import ServiceBusStandIn

pytestmark = pytest.mark.anyio

SCOPE = "https://servicebus.azure.net//.default"


@pytest.fixture
def trusted(
    servicebus_server: ServiceBusStandIn, entra_endpoint: TokenEndpoint
) -> Iterator[ServiceBusStandIn]:
    """The Service Bus stand-in trusting the token endpoint's tenant and key."""
    servicebus_server.trust_issuer(issuer(TENANT), entra_endpoint.public_key_pem)
    try:
        yield servicebus_server
    finally:
        servicebus_server.forget_issuers()


@pytest.fixture
def entra_ca_file(entra_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "entra-ca.pem"
    entra_ca.cert_pem.write_to_path(str(path))
    return str(path)


def workload_scaler(
    server: ServiceBusStandIn, metadata: dict[str, str], entra_ca_file: str
) -> AzureServiceBusScaler:
    ctx = TriggerContext(
        metadata={"namespace": "orders-ns", "caCertFile": str(server.cafile), **metadata},
        auth={"podIdentity": "azure-workload"},
        trigger_type="azure-servicebus",
    )
    parsed = AzureServiceBusMetadata.from_context(ctx)
    assert parsed.fully_qualified_namespace == "orders-ns.servicebus.windows.net"
    # The stand-in listens on 127.0.0.1, not on <namespace>.servicebus.windows.net.
    local = attrs.evolve(parsed, fully_qualified_namespace=f"{server.host}:{server.port}")
    return AzureServiceBusScaler(
        local, credential_options={"connection_verify": entra_ca_file}, timeout=10
    )


async def test_queue_read_with_an_entra_token(
    webhook_env: Path,
    entra_endpoint: TokenEndpoint,
    trusted: ServiceBusStandIn,
    entra_ca_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    name = unique_name("wi")
    trusted.set_queue(name, active=7, dead_letter=2)
    topic, sub = unique_name("t"), unique_name("s")
    trusted.set_subscription(topic, sub, active=3)
    async with workload_scaler(trusted, {"queueName": name}, entra_ca_file) as scaler:
        report = await scaler.get_metrics()
        assert (report.value_of(scaler.metadata.metric_name), report.is_active) == (7, True)
    meta = {"topicName": topic, "subscriptionName": sub}
    async with workload_scaler(trusted, meta, entra_ca_file) as scaler:
        assert await scaler.message_count() == 3
    (request,) = trusted.requests_under(f"/{name}")
    assert request.status == 200
    assert request.headers["Authorization"].startswith("Bearer ey")
    assert entra_endpoint.issued == [SCOPE, SCOPE]
    assert entra_endpoint.refused == []
    for secret in (*entra_endpoint.tokens, entra_endpoint.assertion):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("expired", "ExpiredToken"),
        ("audience", "InvalidAudience"),
        ("signature", "InvalidSignature"),
        ("issuer", "InvalidIssuer"),
    ],
)
async def test_a_bad_token_is_an_error_not_zero(
    webhook_env: Path,
    entra_endpoint: TokenEndpoint,
    trusted: ServiceBusStandIn,
    entra_ca_file: str,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    if fault == "expired":  # the JWT ran out although expires_in said an hour
        entra_endpoint.exp_override = -120
    elif fault == "audience":  # a token for another resource
        entra_endpoint.audience_override = "https://storage.azure.com"
    elif fault == "signature":  # signed by a key Service Bus does not know
        entra_endpoint.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:  # a tenant Service Bus does not trust
        trusted.forget_issuers()
    name = unique_name("wi")
    trusted.set_queue(name, active=5)
    async with workload_scaler(trusted, {"queueName": name}, entra_ca_file) as scaler:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    (request,) = trusted.requests_under(f"/{name}")
    assert request.status == 401
    assert info.value.transient is False
    assert "authentication failed" in str(info.value)
    assert code in str(info.value)
    (token,) = entra_endpoint.tokens
    for text in (str(info.value), repr(info.value), caplog.text):
        assert token not in text
        assert entra_endpoint.assertion not in text


async def test_untrusted_authority_host_is_an_error(
    webhook_env: Path, entra_endpoint: TokenEndpoint, trusted: ServiceBusStandIn, tmp_path: Path
) -> None:
    # Without the authority's CA the token request fails TLS: an error, and no token.
    name = unique_name("wi")
    trusted.set_queue(name, active=1)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with workload_scaler(trusted, {"queueName": name}, str(other)) as scaler:
        with pytest.raises(ScalerError, match="CERTIFICATE_VERIFY_FAILED"):
            await scaler.get_metrics()
    assert entra_endpoint.issued == []
    assert trusted.requests_under(f"/{name}") == []
