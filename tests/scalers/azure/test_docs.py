"""The examples of docs/scalers/azure-queue.md and azure-servicebus.md, executed.

The YAML goes through the manifest loader (Secret -> TriggerAuthentication -> trigger
context) with the Secret's value swapped for the test server's; the Python example runs
as written, with its environment variables pointing at the test servers.
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest
from azure.storage.queue import QueueServiceClient

from eventscale.manifests.reader import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler
from eventscale.scalers.azure.servicebus import AzureServiceBusScaler
from servers._proc import unique_name
from servers.azurite_srv import AzuriteServer
from servers.servicebus_srv import ServiceBusStandIn

DOCS = Path(__file__).resolve().parents[3] / "docs" / "scalers"


def block(page: str, language: str) -> str:
    text = (DOCS / page).read_text()
    found = re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert len(found) == 1, f"{page} should have one {language} example"
    return str(found[0])


def test_queue_yaml_example(azurite_server: AzuriteServer) -> None:
    name = unique_name("orders")
    with QueueServiceClient.from_connection_string(azurite_server.connection_string()) as svc:
        queue = svc.create_queue(name)
        for i in range(12):
            queue.send_message(f"m{i}")
        yaml_text = block("azure-queue.md", "yaml").replace(
            "queueName: orders", f"queueName: {name}"
        )
        manifests = load_manifests(yaml_text)
        (ctx,) = manifests.trigger_contexts(
            manifests.scaled_object(),
            secrets={"storage-secret": {"connection": Secret(azurite_server.connection_string())}},
        )

        async def poll() -> tuple[float, bool, float]:
            scaler = create_scaler(ctx)
            try:
                report = await scaler.get_metrics()
                (spec,) = scaler.metric_specs()
                return report.value_of(spec.name), report.is_active, spec.target
            finally:
                await scaler.aclose()

        assert anyio.run(poll) == (12.0, True, 10.0)
        queue.delete_queue()


def test_queue_python_example(
    azurite_server: AzuriteServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("orders")
    with QueueServiceClient.from_connection_string(azurite_server.connection_string()) as svc:
        queue = svc.create_queue(name)
        for i in range(3):
            queue.send_message(f"m{i}")
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string())
        code = block("azure-queue.md", "python").replace('"orders"', f'"{name}"')
        exec(compile(code, "azure-queue.md", "exec"), {"__name__": "__docs__"})
        assert capsys.readouterr().out.split() == [f"s0-azure-queue-{name}", "3.0", "True"]
        queue.delete_queue()


def test_servicebus_yaml_example(servicebus_server: ServiceBusStandIn) -> None:
    topic = unique_name("invoices")
    servicebus_server.set_subscription(topic, "workers-1", active=7)
    servicebus_server.set_subscription(topic, "workers-2", active=30, status="ReceiveDisabled")
    servicebus_server.set_subscription(topic, "audit", active=90)
    yaml_text = block("azure-servicebus.md", "yaml").replace(
        "topicName: invoices", f"topicName: {topic}"
    )
    manifests = load_manifests(yaml_text)
    (ctx,) = manifests.trigger_contexts(
        manifests.scaled_object(),
        secrets={
            "servicebus-secret": {"connection": Secret(servicebus_server.connection_string())}
        },
    )

    async def poll() -> tuple[float, bool]:
        scaler = AzureServiceBusScaler.from_context(
            ctx, connection_verify=str(servicebus_server.cafile)
        )
        try:
            report = await scaler.get_metrics()
            return report.value_of("s0-azure-servicebus-topic-regex"), report.is_active
        finally:
            await scaler.aclose()

    # max over workers-*, with the ReceiveDisabled one left out: 7.
    assert anyio.run(poll) == (7.0, True)


def test_servicebus_python_example(
    servicebus_server: ServiceBusStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("orders")
    servicebus_server.set_queue(name, active=40, scheduled=15, dead_letter=3)
    monkeypatch.setenv("SERVICEBUS_CONNECTION_STRING", servicebus_server.connection_string())
    monkeypatch.setenv("SERVICEBUS_CA_BUNDLE", str(servicebus_server.cafile))
    code = block("azure-servicebus.md", "python").replace('"orders"', f'"{name}"')
    exec(compile(code, "azure-servicebus.md", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.split() == [f"s0-azure-servicebus-{name}", "55.0", "True"]
