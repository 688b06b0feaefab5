"""azure-queue: KEDA vectors (KEDA's pkg/scalers/azure_queue_scaler_test.go) and counts read from a real Azurite."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricType
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.azure.storage_queue import (
    AzureQueueMetadata,
    AzureQueueScaler,
    QueueLengthStrategy,
    storage_queue_endpoint,
)
from servers._proc import unique_name
from servers.azurite_srv import DEV_KEY, AzuriteServer

pytestmark = pytest.mark.anyio

WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleQ=="


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
        env=dict(env or {"CONNECTION": "SAMPLE"}),
        index=index,
        trigger_type="azure-queue",
    )


WORKLOAD = {"podIdentity": "azure-workload"}

# (id, metadata, auth, ok) -- KEDA's pkg/scalers/azure_queue_scaler_test.go; resolved env CONNECTION=SAMPLE.
VECTORS: list[tuple[str, dict[str, str], dict[str, str], bool]] = [
    ("AQ1", {}, {}, False),
    (
        "AQ2",
        {"connectionFromEnv": "CONNECTION", "queueName": "sample", "queueLength": "5"},
        {},
        True,
    ),
    ("AQ3", {"connectionFromEnv": "CONNECTION", "queueName": ""}, {}, False),
    (
        "AQ4",
        {"connectionFromEnv": "CONNECTION", "queueName": "sample", "queueLength": "AA"},
        {},
        False,
    ),
    (
        "AQ5",
        {
            "connectionFromEnv": "CONNECTION",
            "queueName": "sample",
            "queueLength": "1",
            "activationQueueLength": "AA",
        },
        {},
        False,
    ),
    ("AQ6", {"accountName": "sample_acc", "queueName": "sample_queue"}, WORKLOAD, True),
    ("AQ7", {"accountName": "", "queueName": "sample_queue"}, WORKLOAD, False),
    ("AQ8", {"accountName": "sample_acc", "queueName": ""}, WORKLOAD, False),
    (
        "AQ9",
        {"accountName": "sample_acc", "queueName": "sample_queue", "cloud": "AzurePublicCloud"},
        WORKLOAD,
        True,
    ),
    (
        "AQ10",
        {"accountName": "sample_acc", "queueName": "sample_queue", "cloud": "InvalidCloud"},
        WORKLOAD,
        False,
    ),
    (
        "AQ11",
        {
            "accountName": "sample_acc",
            "queueName": "sample_queue",
            "cloud": "Private",
            "endpointSuffix": "queue.core.private.cloud",
        },
        WORKLOAD,
        True,
    ),
    (
        "AQ12",
        {
            "accountName": "sample_acc",
            "queueName": "sample_queue",
            "cloud": "Private",
            "endpointSuffix": "",
        },
        WORKLOAD,
        False,
    ),
    (
        "AQ13",
        {
            "accountName": "sample_acc",
            "queueName": "sample_queue",
            "cloud": "",
            "endpointSuffix": "ignored",
        },
        WORKLOAD,
        True,
    ),
    ("AQ14", {"queueName": "sample", "queueLength": "5"}, {"connection": "value"}, True),
    (
        "AQ15a",
        {"connectionFromEnv": "CONNECTION", "queueName": "sample", "queueLengthStrategy": "all"},
        {},
        True,
    ),
    (
        "AQ15b",
        {
            "connectionFromEnv": "CONNECTION",
            "queueName": "sample",
            "queueLengthStrategy": "visibleonly",
        },
        {},
        True,
    ),
    (
        "AQ16",
        {
            "connectionFromEnv": "CONNECTION",
            "queueName": "sample",
            "queueLengthStrategy": "invalid",
        },
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
        AzureQueueMetadata.from_context(ctx(metadata, auth=auth))
    else:
        with pytest.raises(ConfigError):
            AzureQueueMetadata.from_context(ctx(metadata, auth=auth))


def test_defaults_metric_names_and_suffixes() -> None:
    m = AzureQueueMetadata.from_context(
        ctx({"connectionFromEnv": "CONNECTION", "queueName": "sample"})
    )
    assert (m.queue_length, m.activation_queue_length, m.strategy) == (
        5,
        0,
        QueueLengthStrategy.ALL,
    )
    assert m.metric_name == "s0-azure-queue-sample"
    assert m.connection == Secret("SAMPLE")
    m1 = AzureQueueMetadata.from_context(
        ctx({"accountName": "acc", "queueName": "sample_queue"}, auth=WORKLOAD, index=1)
    )
    assert m1.metric_name == "s1-azure-queue-sample_queue"
    assert m1.endpoint_suffix == "queue.core.windows.net"
    china = AzureQueueMetadata.from_context(
        ctx({"accountName": "acc", "queueName": "q", "cloud": "azurechinacloud"}, auth=WORKLOAD)
    )
    assert china.endpoint_suffix == "queue.core.chinacloudapi.cn"
    private = AzureQueueMetadata.from_context(
        ctx(
            {
                "accountName": "acc",
                "queueName": "q",
                "cloud": "Private",
                "endpointSuffix": "queue.core.private.cloud",
            },
            auth=WORKLOAD,
        )
    )
    assert private.endpoint_suffix == "queue.core.private.cloud"


def test_connection_lookup_order_auth_then_metadata_then_env() -> None:
    both = ctx(
        {"queueName": "q", "connection": "from-meta", "connectionFromEnv": "CONNECTION"},
        auth={"connection": Secret("from-auth")},
    )
    assert AzureQueueMetadata.from_context(both).connection == Secret("from-auth")
    meta_env = ctx({"queueName": "q", "connection": "from-meta", "connectionFromEnv": "CONNECTION"})
    assert AzureQueueMetadata.from_context(meta_env).connection == Secret("from-meta")


def test_errors_name_every_field_path() -> None:
    with pytest.raises(ConfigError) as info:
        AzureQueueMetadata.from_context(
            TriggerContext(
                metadata={"queueLength": "AA", "queueLengthStrategy": "Visible"},
                path="spec.triggers[2]",
                trigger_type="azure-queue",
            )
        )
    paths = info.value.all_paths()
    assert "spec.triggers[2].metadata.queueName" in paths
    assert "spec.triggers[2].metadata.queueLength" in paths
    assert "spec.triggers[2].metadata.queueLengthStrategy" in paths
    assert "spec.triggers[2].metadata.connection" in paths


def test_unknown_pod_identity_is_an_error() -> None:
    with pytest.raises(ConfigError, match="pod identity"):
        AzureQueueMetadata.from_context(
            ctx({"queueName": "q", "accountName": "a"}, auth={"podIdentity": "aws"})
        )


@pytest.mark.parametrize(
    ("connection", "endpoint"),
    [
        ("UseDevelopmentStorage=true", "http://127.0.0.1:10001/devstoreaccount1"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=abcd;EndpointSuffix=core.chinacloudapi.cn",
            "https://acc.queue.core.chinacloudapi.cn",
        ),
        ("AccountName=acc;AccountKey=abcd", "https://acc.queue.core.windows.net"),
        ("QueueEndpoint=http://h:1/acc/;SharedAccessSignature=sv=1&sig=zzz", "http://h:1/acc"),
    ],
)
def test_storage_endpoint_from_connection_string(connection: str, endpoint: str) -> None:
    assert storage_queue_endpoint(Secret(connection)) == endpoint


@pytest.mark.parametrize(
    "connection",
    ["SAMPLE", "AccountName=acc;EndpointSuffix=x", "AccountKey=SuperSecretKey123=="],
)
def test_malformed_connection_string_is_a_config_error_without_the_value(connection: str) -> None:
    c = ctx({"queueName": "q"}, auth={"connection": Secret(connection)})
    with pytest.raises(ConfigError) as info:
        AzureQueueScaler.from_context(c)
    assert info.value.path == "authenticationRef.connection"
    assert connection not in str(info.value)
    assert "SuperSecretKey" not in str(info.value)


# ---------------------------------------------------------------------------- Azurite


@pytest.fixture
async def service(azurite_server: AzuriteServer) -> AsyncIterator[QueueServiceClient]:
    client = QueueServiceClient.from_connection_string(azurite_server.connection_string())
    async with client:
        yield client


async def new_queue(service: QueueServiceClient, messages: int) -> QueueClient:
    name = unique_name("q")
    queue = await service.create_queue(name)
    for i in range(messages):
        await queue.send_message(f"m{i}")
    return queue


def queue_ctx(
    server: AzuriteServer, queue: str, *, key: str = DEV_KEY, **metadata: str
) -> TriggerContext:
    return TriggerContext(
        metadata={"queueName": queue, **metadata},
        auth={"connection": Secret(server.connection_string(key))},
        trigger_type="azure-queue",
    )


async def read(server: AzuriteServer, queue: str, **metadata: str) -> tuple[float, bool]:
    async with AzureQueueScaler.from_context(queue_ctx(server, queue, **metadata)) as scaler:
        report = await scaler.get_metrics()
        return report.value_of(scaler.metadata.metric_name), report.is_active


async def test_counts_follow_send_receive_and_delete(
    azurite_server: AzuriteServer, service: QueueServiceClient
) -> None:
    queue = await new_queue(service, 7)
    async with (
        AzureQueueScaler.from_context(queue_ctx(azurite_server, queue.queue_name)) as all_,
        AzureQueueScaler.from_context(
            queue_ctx(azurite_server, queue.queue_name, queueLengthStrategy="visibleonly")
        ) as visible,
    ):
        assert (await all_.queue_length(), await visible.queue_length()) == (7, 7)
        received = await queue.receive_message(visibility_timeout=60)
        assert received is not None
        # In flight: still in the approximate count, no longer visible.
        assert (await all_.queue_length(), await visible.queue_length()) == (7, 6)
        await queue.delete_message(received)
        assert (await all_.queue_length(), await visible.queue_length()) == (6, 6)
    await queue.delete_queue()


async def test_visibleonly_switches_to_the_approximate_count_exactly_at_32(
    azurite_server: AzuriteServer, service: QueueServiceClient
) -> None:
    queue = await new_queue(service, 33)
    # 31 visible + 2 in flight: the peek is not full, so only visible ones count.
    in_flight = [
        m
        async for m in queue.receive_messages(
            messages_per_page=2, visibility_timeout=60, max_messages=2
        )
    ]
    assert len(in_flight) == 2
    assert (await read(azurite_server, queue.queue_name, queueLengthStrategy="visibleonly"))[
        0
    ] == 31
    # Put one back (visible now): 32 visible, a full peek -> the approximate total, 33.
    await queue.update_message(in_flight[0], visibility_timeout=0)
    assert (await read(azurite_server, queue.queue_name, queueLengthStrategy="visibleonly"))[
        0
    ] == 33
    assert (await read(azurite_server, queue.queue_name))[0] == 33
    await queue.delete_queue()


async def test_threshold_and_activation_boundaries(
    azurite_server: AzuriteServer, service: QueueServiceClient
) -> None:
    queue = await new_queue(service, 3)
    name = queue.queue_name
    async with AzureQueueScaler.from_context(
        queue_ctx(azurite_server, name, queueLength="3", activationQueueLength="3")
    ) as scaler:
        (spec,) = scaler.metric_specs()
        assert (spec.target, spec.activation_target, spec.metric_type) == (
            3,
            3,
            MetricType.AVERAGE_VALUE,
        )
        report = await scaler.get_metrics()
        assert report.value_of(spec.name) == 3
        assert report.is_active is False  # 3 > 3 is false: activation is strict
        await queue.send_message("one more")
        report = await scaler.get_metrics()
        assert (report.value_of(spec.name), report.is_active) == (4, True)
    assert await read(azurite_server, name, activationQueueLength="4") == (4.0, False)
    empty = await new_queue(service, 0)
    assert await read(azurite_server, empty.queue_name) == (0.0, False)
    assert await read(azurite_server, empty.queue_name, queueLengthStrategy="visibleonly") == (
        0.0,
        False,
    )
    await queue.delete_queue()
    await empty.delete_queue()


async def test_missing_queue_is_a_permanent_scaler_error(azurite_server: AzuriteServer) -> None:
    missing = unique_name("gone")
    for strategy in ("all", "visibleonly"):
        scaler = AzureQueueScaler.from_context(
            queue_ctx(azurite_server, missing, queueLengthStrategy=strategy)
        )
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        assert info.value.transient is False
        assert missing in str(info.value)
        assert info.value.trigger == "azure-queue[0]"
        await scaler.aclose()


async def test_wrong_key_is_a_scaler_error_without_the_key(
    azurite_server: AzuriteServer, service: QueueServiceClient, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await new_queue(service, 1)
    caplog.set_level(logging.DEBUG)
    c = queue_ctx(azurite_server, queue.queue_name, key=WRONG_KEY)
    scaler = AzureQueueScaler.from_context(c)
    with pytest.raises(ScalerError) as info:
        await scaler.get_metrics()
    await scaler.aclose()
    assert info.value.transient is False
    assert "authentication" in str(info.value).lower()
    shown = [
        str(info.value),
        repr(info.value),
        repr(scaler),
        repr(scaler.metadata),
        caplog.text,
        str(info.value.__cause__),
    ]
    for text in shown:
        assert WRONG_KEY not in text
        assert WRONG_KEY[:20] not in text
    await queue.delete_queue()


async def test_unreachable_account_is_a_transient_scaler_error() -> None:
    from servers._proc import free_port

    port = free_port()
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    c = TriggerContext(
        metadata={"queueName": "q"}, auth={"connection": conn}, trigger_type="azure-queue"
    )
    async with AzureQueueScaler.from_context(c, timeout=5) as scaler:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    assert info.value.transient is True
    assert DEV_KEY not in str(info.value)


async def test_one_client_per_account_shared_and_closed_with_the_last_user(
    azurite_server: AzuriteServer, service: QueueServiceClient
) -> None:
    from eventscale.scalers.azure import storage_queue as azure_queue

    a, b = await new_queue(service, 1), await new_queue(service, 2)
    first = AzureQueueScaler.from_context(queue_ctx(azurite_server, a.queue_name))
    second = AzureQueueScaler.from_context(queue_ctx(azurite_server, b.queue_name))
    assert (await first.queue_length(), await second.queue_length()) == (1, 2)
    key: Any = first._pool_key
    assert key == second._pool_key
    assert azure_queue._POOL.refcount(key) == 2
    await first.aclose()
    await first.aclose()  # twice is fine
    assert azure_queue._POOL.refcount(key) == 1
    assert await second.queue_length() == 2
    await second.aclose()
    assert azure_queue._POOL.refcount(key) == 0
    with pytest.raises(ScalerError, match="closed"):
        await second.get_metrics()
    await a.delete_queue()
    await b.delete_queue()


async def test_connection_from_env_through_the_registry(
    azurite_server: AzuriteServer, service: QueueServiceClient
) -> None:
    queue = await new_queue(service, 2)
    c = TriggerContext(
        metadata={"queueName": queue.queue_name, "connectionFromEnv": "STORAGE_CONN"},
        env={"STORAGE_CONN": azurite_server.connection_string()},
        trigger_type="azure-queue",
        index=3,
    )
    scaler = create_scaler(c)
    assert isinstance(scaler, AzureQueueScaler)
    assert DEV_KEY not in repr(scaler)
    report = await scaler.get_metrics()
    assert report.value_of(f"s3-azure-queue-{queue.queue_name}") == 2
    await scaler.aclose()
    await queue.delete_queue()


def test_a_negative_queue_length_is_a_config_error_at_its_path() -> None:
    # KEDA does not check queueLength (0 is still accepted)
    meta = {"queueName": "q", "connectionFromEnv": "CONNECTION"}
    with pytest.raises(ConfigError) as info:
        AzureQueueMetadata.from_context(ctx({**meta, "queueLength": "-1"}))
    assert "metadata.queueLength" in info.value.all_paths()
    assert AzureQueueMetadata.from_context(ctx({**meta, "queueLength": "0"})).queue_length == 0
