"""azure-servicebus: KEDA vectors (KEDA's pkg/scalers/azure_servicebus_scaler_test.go) and counts read through the real SDK.

No Service Bus emulator runs here, so the counts come from the management API stand-in
(tests/servers/servicebus_srv.py), which speaks the service's ATOM XML over TLS and checks
the SAS signature; the scaler talks to it through ``azure-servicebus``'s admin client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

from eventscale.errors import ConfigError, ScalerError
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.azure.servicebus import (
    AzureServiceBusMetadata,
    AzureServiceBusScaler,
    EntityType,
    Operation,
    servicebus_namespace,
)
from servers._proc import unique_name
from servers.servicebus_srv import ServiceBusStandIn, running_standin

pytestmark = pytest.mark.anyio

WORKLOAD = {"podIdentity": "azure-workload"}
ENV = {"none": "none"}


def ctx(
    metadata: Mapping[str, str],
    *,
    auth: Mapping[str, str | Secret] | None = None,
    env: Mapping[str, str] | None = None,
    index: int = 0,
) -> TriggerContext:
    return TriggerContext(
        metadata=dict(metadata),
        auth=dict(auth or {}),
        env=dict(env if env is not None else ENV),
        index=index,
        trigger_type="azure-servicebus",
    )


Q = {"queueName": "testqueue"}
CFE = {"connectionFromEnv": "none"}
TOPIC = {"topicName": "testtopic", "subscriptionName": "testsubscription"}

# (id, metadata, auth, ok) -- KEDA's pkg/scalers/azure_servicebus_scaler_test.go; resolved env none=none.
VECTORS: list[tuple[str, dict[str, str], dict[str, str], bool]] = [
    ("SB1", {}, {}, False),
    ("SB2", {**Q, **CFE}, {}, True),
    ("SB3", {**Q, **CFE, "messageCount": "1000"}, {}, True),
    ("SB4", {**TOPIC, **CFE}, {}, True),
    ("SB5", {**Q, "topicName": "testtopic", **CFE}, {}, False),
    ("SB6", {**Q, "subscriptionName": "testsubscription", **CFE}, {}, False),
    ("SB7", {"topicName": "testtopic", **CFE}, {}, False),
    ("SB8", {"subscriptionName": "testsubscription", **CFE}, {}, False),
    ("SB9", {**Q, **CFE, "cloud": "AzureChinaCloud"}, {}, True),
    ("SB10", {**Q, "cloud": "InvalidCloud"}, WORKLOAD, False),
    (
        "SB11",
        {**Q, **CFE, "cloud": "Private", "endpointSuffix": "servicebus.private.cloud"},
        {},
        True,
    ),
    ("SB12", {**Q, "cloud": "Private"}, WORKLOAD, False),
    ("SB13", {**Q, **CFE, "endpointSuffix": "ignored"}, {}, True),
    ("SB14", {**Q}, {}, False),
    ("SB15", {**Q}, {"connection": "none"}, True),
    ("SB16", {**Q}, WORKLOAD, False),
    ("SB17", {**Q, "namespace": "ns"}, WORKLOAD, True),
    ("SB18", {**Q, **CFE, "activationMessageCount": "AA"}, {}, False),
    ("SB19", {**Q, **CFE, "useRegex": "ababa"}, {}, False),
    ("SB20a", {**Q, **CFE, "useRegex": "false"}, {}, True),
    ("SB20b", {**Q, **CFE, "useRegex": "true", "operation": "avg"}, {}, True),
    ("SB20c", {**Q, **CFE, "useRegex": "true", "operation": "sum"}, {}, True),
    ("SB20d", {**Q, **CFE, "useRegex": "true", "operation": "max"}, {}, True),
    ("SB20e", {**Q, **CFE, "useRegex": "true"}, {}, True),
    ("SB21", {**Q, **CFE, "useRegex": "true", "operation": "random"}, {}, False),
    ("SB22", {"queueName": "*", **CFE, "useRegex": "true"}, {}, False),
    (
        "SB23",
        {"topicName": "testtopic", "subscriptionName": "*", **CFE, "useRegex": "true"},
        {},
        False,
    ),
]


@pytest.mark.parametrize(
    ("metadata", "auth", "ok"),
    [pytest.param(m, a, ok, id=vid) for vid, m, a, ok in VECTORS],
)
def test_keda_vectors(metadata: dict[str, str], auth: dict[str, str], ok: bool) -> None:
    if ok:
        AzureServiceBusMetadata.from_context(ctx(metadata, auth=auth))
    else:
        with pytest.raises(ConfigError):
            AzureServiceBusMetadata.from_context(ctx(metadata, auth=auth))


def test_metric_names_entities_and_fqdn() -> None:
    q = AzureServiceBusMetadata.from_context(ctx({**Q, **CFE}))
    assert (q.entity_type, q.metric_name, q.message_count) == (
        EntityType.QUEUE,
        "s0-azure-servicebus-testqueue",
        5,
    )
    t = AzureServiceBusMetadata.from_context(ctx({**TOPIC, **CFE}, index=1))
    assert (t.entity_type, t.metric_name) == (
        EntityType.SUBSCRIPTION,
        "s1-azure-servicebus-testtopic",
    )
    rq = AzureServiceBusMetadata.from_context(ctx({**Q, **CFE, "useRegex": "true"}))
    assert rq.metric_name == "s0-azure-servicebus-queue-regex"
    rt = AzureServiceBusMetadata.from_context(ctx({**TOPIC, **CFE, "useRegex": "true"}))
    assert rt.metric_name == "s0-azure-servicebus-topic-regex"
    wi = AzureServiceBusMetadata.from_context(ctx({**Q, "namespace": "ns"}, auth=WORKLOAD))
    assert wi.fully_qualified_namespace == "ns.servicebus.windows.net"
    priv = AzureServiceBusMetadata.from_context(
        ctx(
            {
                **Q,
                "namespace": "ns",
                "cloud": "Private",
                "endpointSuffix": "servicebus.private.cloud",
            },
            auth=WORKLOAD,
        )
    )
    assert priv.fully_qualified_namespace == "ns.servicebus.private.cloud"
    gov = AzureServiceBusMetadata.from_context(
        ctx({**Q, "namespace": "ns", "cloud": "azureusgovernment"}, auth=WORKLOAD)
    )
    assert gov.fully_qualified_namespace == "ns.servicebus.usgovcloudapi.net"
    with pytest.raises(ConfigError, match="invalid cloud environment"):
        AzureServiceBusMetadata.from_context(
            ctx({**Q, "namespace": "ns", "cloud": "InvalidCloud"}, auth=WORKLOAD)
        )
    # With a connection string, cloud is not even parsed.
    AzureServiceBusMetadata.from_context(ctx({**Q, **CFE, "cloud": "InvalidCloud"}))


def test_literal_metadata_connection_is_not_read() -> None:
    with pytest.raises(ConfigError, match="no connection setting given"):
        AzureServiceBusMetadata.from_context(
            ctx({**Q, "connection": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"})
        )
    both = ctx({**Q, **CFE}, auth={"connection": Secret("from-auth")})
    assert AzureServiceBusMetadata.from_context(both).connection == Secret("from-auth")


@pytest.mark.parametrize(
    ("counts", "operation", "expected"),
    [
        ([5, 6], Operation.AVG, 5),
        ([3, 9, 1], Operation.MAX, 9),
        ([], Operation.SUM, 0),
        ([], Operation.AVG, 0),
        ([], Operation.MAX, 0),
        ([1, 2, 4], Operation.SUM, 7),
    ],
)
def test_operations(counts: list[int], operation: Operation, expected: int) -> None:
    assert operation.apply(counts) == expected


@pytest.mark.parametrize(
    "connection",
    [
        "none",
        "Endpoint=sb://ns.servicebus.windows.net/",
        "SharedAccessKeyName=k;SharedAccessKey=TopSecretKey1",
    ],
)
def test_malformed_connection_string_is_a_config_error_without_the_value(connection: str) -> None:
    c = ctx({**Q, "connectionFromEnv": "SB"}, env={"SB": connection})
    with pytest.raises(ConfigError) as info:
        AzureServiceBusScaler.from_context(c)
    assert info.value.path == "metadata.connectionFromEnv"
    assert "TopSecretKey1" not in str(info.value)


def test_namespace_from_connection_string() -> None:
    cs = Secret("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v")
    assert servicebus_namespace(cs) == "ns.servicebus.windows.net"


# ---------------------------------------------------------------------------- stand-in


def sb_ctx(
    server: ServiceBusStandIn, metadata: Mapping[str, str], *, key: str | None = None
) -> TriggerContext:
    return TriggerContext(
        metadata={**metadata, "caCertFile": str(server.cafile)},
        auth={"connection": Secret(server.connection_string(key))},
        trigger_type="azure-servicebus",
    )


async def read(server: ServiceBusStandIn, metadata: Mapping[str, str]) -> tuple[float, bool]:
    async with AzureServiceBusScaler.from_context(sb_ctx(server, metadata)) as scaler:
        report = await scaler.get_metrics()
        return report.value_of(scaler.metadata.metric_name), report.is_active


async def test_queue_active_count_and_what_the_client_sent(
    servicebus_server: ServiceBusStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = unique_name("orders")
    servicebus_server.set_queue(name, active=7, dead_letter=2, scheduled=1, transfer=4)
    assert await read(servicebus_server, {"queueName": name}) == (7.0, True)
    (request,) = servicebus_server.requests_under(f"/{name}")
    assert request.query["api-version"] == ["2024-05"]
    assert request.query["enrich"] == ["false"]
    assert request.headers["Authorization"].startswith("SharedAccessSignature sr=")
    assert request.status == 200
    assert servicebus_server.key not in caplog.text


async def test_activation_and_target_boundaries(servicebus_server: ServiceBusStandIn) -> None:
    name = unique_name("q")
    servicebus_server.set_queue(name, active=3)
    meta = {"queueName": name, "messageCount": "3", "activationMessageCount": "3"}
    async with AzureServiceBusScaler.from_context(sb_ctx(servicebus_server, meta)) as scaler:
        (spec,) = scaler.metric_specs()
        assert (spec.target, spec.activation_target) == (3, 3)
        report = await scaler.get_metrics()
        assert (report.value_of(spec.name), report.is_active) == (3, False)
        servicebus_server.set_queue(name, active=4)
        report = await scaler.get_metrics()
        assert (report.value_of(spec.name), report.is_active) == (4, True)
    servicebus_server.set_queue(name, active=0, dead_letter=9, scheduled=9)
    assert await read(servicebus_server, {"queueName": name}) == (0.0, False)


async def test_subscription_count(servicebus_server: ServiceBusStandIn) -> None:
    topic, sub = unique_name("t"), unique_name("s")
    servicebus_server.set_subscription(topic, sub, active=11, dead_letter=5)
    value, active = await read(servicebus_server, {"topicName": topic, "subscriptionName": sub})
    assert (value, active) == (11.0, True)
    assert servicebus_server.requests_under(f"/{topic}/subscriptions/{sub}")


async def test_scheduled_messages_opt_in(servicebus_server: ServiceBusStandIn) -> None:
    name = unique_name("q")
    servicebus_server.set_queue(name, active=2, scheduled=5)
    assert (await read(servicebus_server, {"queueName": name}))[0] == 2
    opt_in = {"queueName": name, "includeScheduledMessages": "true"}
    assert (await read(servicebus_server, opt_in))[0] == 7
    topic, sub = unique_name("t"), unique_name("s")
    servicebus_server.set_subscription(topic, sub, active=1)
    servicebus_server.set_topic(topic, scheduled=4)
    meta = {"topicName": topic, "subscriptionName": sub, "includeScheduledMessages": "true"}
    assert (await read(servicebus_server, meta))[0] == 5


@pytest.mark.parametrize("status", ["Disabled", "ReceiveDisabled"])
async def test_disabled_entities_opt_in(servicebus_server: ServiceBusStandIn, status: str) -> None:
    name = unique_name("q")
    servicebus_server.set_queue(name, active=8, status=status)
    assert await read(servicebus_server, {"queueName": name}) == (8.0, True)  # KEDA's way
    assert await read(servicebus_server, {"queueName": name, "inactiveWhenDisabled": "true"}) == (
        0.0,
        False,
    )
    topic, sub = unique_name("t"), unique_name("s")
    servicebus_server.set_subscription(topic, sub, active=8, status=status)
    meta = {"topicName": topic, "subscriptionName": sub, "inactiveWhenDisabled": "true"}
    assert await read(servicebus_server, meta) == (0.0, False)


async def test_send_disabled_still_counts(servicebus_server: ServiceBusStandIn) -> None:
    name = unique_name("q")
    servicebus_server.set_queue(name, active=8, status="SendDisabled")
    assert await read(servicebus_server, {"queueName": name, "inactiveWhenDisabled": "true"}) == (
        8.0,
        True,
    )


@pytest.mark.parametrize(
    ("operation", "expected"),
    [("sum", 3 + 9 + 1), ("max", 9), ("avg", (3 + 9 + 1) // 3), (None, 13)],
)
async def test_queue_regex_operations(
    servicebus_server: ServiceBusStandIn, operation: str | None, expected: int
) -> None:
    prefix = unique_name("rx")
    for suffix, count in (("a", 3), ("b", 9), ("c", 1)):
        servicebus_server.set_queue(f"{prefix}-{suffix}", active=count)
    # Matched in full only: this one has the prefix but a longer name.
    servicebus_server.set_queue(f"{prefix}-a-extra", active=100)
    meta = {"queueName": f"{prefix}-[a-c]", "useRegex": "true"}
    if operation is not None:
        meta["operation"] = operation
    assert (await read(servicebus_server, meta))[0] == expected


async def test_regex_pages_through_every_queue_and_skips_disabled(
    servicebus_server: ServiceBusStandIn,
) -> None:
    prefix = unique_name("page")
    for i in range(130):  # more than one page of 100
        servicebus_server.set_queue(f"{prefix}-{i:03d}", active=1)
    meta = {"queueName": f"{prefix}-.*", "useRegex": "true"}
    assert (await read(servicebus_server, meta))[0] == 130
    lists = servicebus_server.requests_under("/$Resources/queues")
    skips = {r.query.get("$skip", ["0"])[0] for r in lists}
    assert {"0", "100"} <= skips
    servicebus_server.set_queue(f"{prefix}-000", active=50, status="Disabled")
    assert (await read(servicebus_server, {**meta, "operation": "max"}))[0] == 50
    assert (
        await read(servicebus_server, {**meta, "operation": "max", "inactiveWhenDisabled": "true"})
    )[0] == 1


async def test_regex_without_a_match_is_zero(servicebus_server: ServiceBusStandIn) -> None:
    meta = {"queueName": unique_name("nothing") + "-.*", "useRegex": "true", "operation": "avg"}
    assert await read(servicebus_server, meta) == (0.0, False)


async def test_subscription_regex(servicebus_server: ServiceBusStandIn) -> None:
    topic = unique_name("t")
    servicebus_server.set_subscription(topic, "workers-1", active=4)
    servicebus_server.set_subscription(topic, "workers-2", active=6)
    servicebus_server.set_subscription(topic, "audit", active=40)
    meta = {"topicName": topic, "subscriptionName": "workers-[0-9]+", "useRegex": "true"}
    assert (await read(servicebus_server, {**meta, "operation": "avg"}))[0] == 5
    assert (await read(servicebus_server, {**meta, "operation": "sum"}))[0] == 10


async def test_missing_entities_are_permanent_scaler_errors(
    servicebus_server: ServiceBusStandIn,
) -> None:
    missing = unique_name("gone")
    for meta, word in (
        ({"queueName": missing}, missing),
        ({"topicName": unique_name("t"), "subscriptionName": missing}, missing),
    ):
        async with AzureServiceBusScaler.from_context(sb_ctx(servicebus_server, meta)) as scaler:
            with pytest.raises(ScalerError) as info:
                await scaler.get_metrics()
        assert info.value.transient is False
        assert "doesn't exist" in str(info.value)
        assert word in str(info.value)


async def test_wrong_key_is_a_401_scaler_error_without_the_key(
    servicebus_server: ServiceBusStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = unique_name("q")
    servicebus_server.set_queue(name, active=1)
    wrong = "V3JvbmdTZXJ2aWNlQnVzS2V5V3JvbmdTZXJ2aWNlQnVzS2V5PQ=="
    c = sb_ctx(servicebus_server, {"queueName": name}, key=wrong)
    async with AzureServiceBusScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        shown = repr(scaler)
    (request,) = servicebus_server.requests_under(f"/{name}")
    assert request.status == 401
    assert info.value.transient is False
    assert "authentication failed" in str(info.value)
    assert "InvalidSignature" in str(info.value)
    for text in (str(info.value), repr(info.value), shown, caplog.text, repr(c)):
        assert wrong not in text
        assert servicebus_server.key not in text


async def test_stand_in_down_is_a_transient_scaler_error() -> None:
    with running_standin() as standin:
        name = unique_name("q")
        standin.set_queue(name, active=2)
        scaler = AzureServiceBusScaler.from_context(sb_ctx(standin, {"queueName": name}), timeout=5)
        assert await scaler.message_count() == 2
    # The server is gone now; the same scaler must fail, not report 0.
    with pytest.raises(ScalerError) as info:
        await scaler.get_metrics()
    await scaler.aclose()
    assert info.value.transient is True
    assert standin.key not in str(info.value)


async def test_untrusted_certificate_is_a_scaler_error(
    servicebus_server: ServiceBusStandIn,
) -> None:
    c = TriggerContext(
        metadata={"queueName": "x"},
        auth={"connection": servicebus_server.connection_string()},
        trigger_type="azure-servicebus",
    )
    async with AzureServiceBusScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError, match=r"CERTIFICATE_VERIFY_FAILED"):
            await scaler.get_metrics()


async def test_connection_verify_keyword_overrides_metadata(
    servicebus_server: ServiceBusStandIn, tmp_path: Path
) -> None:
    name = unique_name("q")
    servicebus_server.set_queue(name, active=6)
    c = TriggerContext(
        metadata={"queueName": name, "caCertFile": str(tmp_path / "missing.pem")},
        auth={"connection": servicebus_server.connection_string()},
        trigger_type="azure-servicebus",
    )
    async with AzureServiceBusScaler.from_context(
        c, connection_verify=str(servicebus_server.cafile)
    ) as scaler:
        assert await scaler.message_count() == 6


async def test_connection_from_env_through_the_registry_shares_one_client(
    servicebus_server: ServiceBusStandIn,
) -> None:
    from eventscale.scalers.azure import servicebus as azure_servicebus

    a, b = unique_name("q"), unique_name("q")
    servicebus_server.set_queue(a, active=1)
    servicebus_server.set_queue(b, active=2)
    env = {"SB_CONN": servicebus_server.connection_string()}

    def make(name: str) -> AzureServiceBusScaler:
        scaler = create_scaler(
            TriggerContext(
                metadata={
                    "queueName": name,
                    "connectionFromEnv": "SB_CONN",
                    "caCertFile": str(servicebus_server.cafile),
                },
                env=env,
                trigger_type="azure-servicebus",
            )
        )
        assert isinstance(scaler, AzureServiceBusScaler)
        return scaler

    first, second = make(a), make(b)
    assert (await first.message_count(), await second.message_count()) == (1, 2)
    assert azure_servicebus._POOL.refcount(first._pool_key) == 2
    assert servicebus_server.key not in repr(first)
    await first.aclose()
    assert await second.message_count() == 2
    await second.aclose()
    await second.aclose()
    assert azure_servicebus._POOL.refcount(first._pool_key) == 0


def test_a_negative_message_count_is_a_config_error_at_its_path() -> None:
    # KEDA does not check messageCount (0 is still accepted)
    with pytest.raises(ConfigError) as info:
        AzureServiceBusMetadata.from_context(ctx({**Q, **CFE, "messageCount": "-2"}))
    assert "metadata.messageCount" in info.value.all_paths()
    zero = AzureServiceBusMetadata.from_context(ctx({**Q, **CFE, "messageCount": "0"}))
    assert zero.message_count == 0
