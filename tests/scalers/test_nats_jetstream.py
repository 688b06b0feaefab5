"""The ``nats-jetstream`` scaler: KEDA's parameters, a real NATS server, a cluster stand-in."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.manifests import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers.nats_jetstream import NATSJetStreamMetadata, NATSJetStreamScaler
from servers._proc import free_port, unique_name
from servers.nats_srv import NATSServer
from servers.nats_srv import nats_server as nats_server  # fixture

pytestmark = pytest.mark.anyio


def ctx(
    metadata: Mapping[str, str], auth: Mapping[str, str | Secret] | None = None, **kw: Any
) -> TriggerContext:
    return TriggerContext(
        metadata=dict(metadata), auth=dict(auth or {}), trigger_type="nats-jetstream", **kw
    )


BASE = {
    "natsServerMonitoringEndpoint": "nats.nats.svc.cluster.local:8222",
    "account": "$G",
    "stream": "mystream",
    "consumer": "pull_consumer",
}


# ---------------------------------------------------------------------------- parameters


def test_defaults_url_and_metric_name() -> None:
    m = NATSJetStreamMetadata.from_context(ctx(BASE, index=4))
    assert (m.lag_threshold, m.activation_lag_threshold, m.use_https) == (10, 0, False)
    assert m.account_id == "$G"
    assert m.metric_name == "s4-nats-jetstream-mystream"
    assert m.monitoring_url == (
        "http://nats.nats.svc.cluster.local:8222/jsz?acc=%24G&config=true&consumers=true"
    )
    https = NATSJetStreamMetadata.from_context(
        ctx({**BASE, "useHttps": "true", "stream": "a.b", "accountID": "ACC1"})
    )
    assert https.monitoring_url.startswith("https://")
    assert "acc=ACC1" in https.monitoring_url
    assert https.metric_name == "s0-nats-jetstream-a-b"


def test_endpoint_and_account_come_from_auth_first() -> None:
    m = NATSJetStreamMetadata.from_context(
        ctx(BASE, auth={"natsServerMonitoringEndpoint": "auth:8222", "account": "A"})
    )
    assert (m.endpoint, m.account, m.account_id) == ("auth:8222", "A", "A")


def test_every_error_is_collected_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        NATSJetStreamMetadata.from_context(
            ctx({"lagThreshold": "0", "activationLagThreshold": "x", "useHttps": "maybe"})
        )
    paths = info.value.all_paths()
    for name in (
        "stream",
        "consumer",
        "natsServerMonitoringEndpoint",
        "account",
        "lagThreshold",
        "activationLagThreshold",
        "useHttps",
    ):
        assert f"metadata.{name}" in paths, (name, paths)
    assert "no account name or id given" in str(info.value)


def test_endpoint_is_host_and_port() -> None:
    with pytest.raises(ConfigError, match="host:port"):
        NATSJetStreamMetadata.from_context(
            ctx({**BASE, "natsServerMonitoringEndpoint": "http://nats:8222"})
        )


# ---------------------------------------------------------------------------- server


@pytest.fixture
async def stream(nats_server: NATSServer) -> AsyncIterator[tuple[Any, str]]:
    """A fresh stream with a durable pull consumer ``workers``; yields (jetstream, name)."""
    name = unique_name("orders")
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    await js.add_consumer(
        name, ConsumerConfig(durable_name="workers", ack_policy=AckPolicy.EXPLICIT)
    )
    try:
        yield js, name
    finally:
        await js.delete_stream(name)
        await nc.close()


def server_ctx(server: NATSServer, stream: str, **metadata: str) -> TriggerContext:
    return ctx(
        {
            "natsServerMonitoringEndpoint": server.monitoring_endpoint,
            "account": "$G",
            "stream": stream,
            "consumer": "workers",
            "lagThreshold": "5",
            **metadata,
        }
    )


async def read(server: NATSServer, stream: str, **metadata: str) -> tuple[float, bool]:
    async with NATSJetStreamScaler.from_context(server_ctx(server, stream, **metadata)) as scaler:
        report = await scaler.get_metrics()
        return report.value_of(scaler.metadata.metric_name), report.is_active


async def test_lag_is_pending_plus_unacknowledged(
    nats_server: NATSServer, stream: tuple[Any, str]
) -> None:
    js, name = stream
    assert await read(nats_server, name) == (0.0, False)
    for i in range(7):
        await js.publish(f"{name}.new", f"m{i}".encode())
    assert await read(nats_server, name) == (7.0, True)
    sub = await js.pull_subscribe(f"{name}.>", durable="workers", stream=name)
    fetched = await sub.fetch(3)
    # 4 not delivered + 3 delivered and not acknowledged
    assert await read(nats_server, name) == (7.0, True)
    for msg in fetched:
        await msg.ack_sync()
    assert await read(nats_server, name) == (4.0, True)
    assert await read(nats_server, name, activationLagThreshold="4") == (4.0, False)
    assert await read(nats_server, name, activationLagThreshold="3") == (4.0, True)


async def test_account_id_matches_too(nats_server: NATSServer, stream: tuple[Any, str]) -> None:
    _, name = stream
    c = server_ctx(nats_server, name, account="", accountID="$G")
    async with NATSJetStreamScaler.from_context(c) as scaler:
        assert (await scaler.get_metrics()).is_active is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stream": "no-such-stream"}, "stream 'no-such-stream' not found in account '\\$G'"),
        ({"consumer": "nobody"}, "consumer 'nobody' not found in stream"),
        ({"account": "NOACC"}, "account 'NOACC' has no JetStream data"),
    ],
)
async def test_missing_stream_consumer_or_account_is_an_error(
    nats_server: NATSServer, stream: tuple[Any, str], change: dict[str, str], message: str
) -> None:
    _, name = stream
    rest = {key: value for key, value in change.items() if key != "stream"}
    c = server_ctx(nats_server, change.get("stream", name), **rest)
    async with NATSJetStreamScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError, match=message) as info:
            await scaler.get_metrics()
    assert info.value.transient is False


async def test_a_response_over_the_size_bound_is_an_error(
    nats_server: NATSServer, stream: tuple[Any, str]
) -> None:
    _, name = stream
    metadata = NATSJetStreamMetadata.from_context(server_ctx(nats_server, name))
    async with NATSJetStreamScaler(metadata, max_response_bytes=200) as scaler:
        with pytest.raises(ScalerError, match="more than 200 bytes"):
            await scaler.get_metrics()


async def test_a_silent_endpoint_times_out_within_the_bound() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        c = ctx({**BASE, "natsServerMonitoringEndpoint": f"127.0.0.1:{port}"})
        started = time.monotonic()
        async with NATSJetStreamScaler.from_context(c, timeout=0.5) as scaler:
            with pytest.raises(ScalerTimeout) as info:
                await scaler.get_metrics()
        assert time.monotonic() - started < 2
        assert info.value.transient is True


async def test_unreachable_endpoint_is_transient() -> None:
    c = ctx({**BASE, "natsServerMonitoringEndpoint": f"127.0.0.1:{free_port()}"})
    async with NATSJetStreamScaler.from_context(c, timeout=2) as scaler:
        with pytest.raises(ScalerError, match="cannot read") as info:
            await scaler.get_metrics()
    assert info.value.transient is True
    with pytest.raises(ScalerError, match="closed"):
        await scaler.get_metrics()


async def test_keda_docs_example(nats_server: NATSServer, stream: tuple[Any, str]) -> None:
    js, name = stream
    for i in range(16):
        await js.publish(f"{name}.new", f"m{i}".encode())
    yaml_text = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: nats-jetstream-scaledobject
  namespace: nats-jetstream
spec:
  pollingInterval: 3
  cooldownPeriod: 10
  minReplicaCount: 0
  maxReplicaCount: 2
  scaleTargetRef:
    name: sub
  triggers:
  - type: nats-jetstream
    metadata:
      natsServerMonitoringEndpoint: "{nats_server.monitoring_endpoint}"
      account: "$G"
      stream: "{name}"
      consumer: "workers"
      lagThreshold: "10"
      activationLagThreshold: "15"
      useHttps: "false"
"""
    loaded = load_manifests(yaml_text)
    (c,) = loaded.trigger_contexts(loaded.scaled_object())
    scaler = create_scaler(c)
    assert isinstance(scaler, NATSJetStreamScaler)
    try:
        report = await scaler.get_metrics()
        (spec,) = scaler.metric_specs()
    finally:
        await scaler.aclose()
    assert (report.value_of(f"s0-nats-jetstream-{name}"), report.is_active) == (16.0, True)
    assert (spec.target, spec.activation_target) == (10.0, 15.0)


# ---------------------------------------------------------------------------- cluster


def jsz(leader: str, pending: int, *, cluster_size: int = 3) -> dict[str, Any]:
    consumer = {
        "name": "workers",
        "num_pending": pending,
        "num_ack_pending": 1,
        "cluster": {"leader": leader},
    }
    return {
        "meta_cluster": {"cluster_size": cluster_size},
        "account_details": [
            {
                "name": "$G",
                "id": "$G",
                "stream_detail": [{"name": "orders", "consumer_detail": [consumer]}],
            }
        ],
    }


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """Three monitoring stand-ins on 127.0.0.1-3, one port: node n1 (asked first) and
    n2, n3; ``state["leader"]`` names the consumer's leader, whose answer has the lag.
    """
    port = free_port()
    state: dict[str, Any] = {"leader": "n3", "requests": []}
    runners = []
    for index in (1, 2, 3):
        node = f"n{index}"

        async def handler(request: web.Request, node: str = node) -> web.Response:
            state["requests"].append((node, request.path))
            if request.path == "/varz":
                body: dict[str, Any] = {
                    "server_name": node,
                    "connect_urls": [f"127.0.0.{i}:4222" for i in (1, 2, 3)],
                }
            else:
                leading = node == state["leader"]
                body = jsz(state["leader"], 40 if leading else 0)
            return web.Response(text=json.dumps(body), content_type="application/json")

        app = web.Application()
        app.router.add_get("/jsz", handler)
        app.router.add_get("/varz", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, f"127.0.0.{index}", port).start()
        runners.append(runner)
    try:
        yield port, state
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_cluster_reads_the_consumer_leader_and_follows_it(
    cluster: tuple[int, dict[str, Any]],
) -> None:
    port, state = cluster
    c = ctx(
        {
            **BASE,
            "natsServerMonitoringEndpoint": f"127.0.0.1:{port}",
            "stream": "orders",
            "consumer": "workers",
        }
    )
    async with NATSJetStreamScaler.from_context(c) as scaler:
        assert await scaler.lag() == 41
        assert scaler.cluster_size == 3
        # Next poll: straight to the cached leader, one request.
        state["requests"].clear()
        assert await scaler.lag() == 41
        assert state["requests"] == [("n3", "/jsz")]
        # The leader moves: the old one names the new one, the scaler searches again.
        state["leader"] = "n2"
        assert await scaler.lag() == 41
        state["requests"].clear()
        assert await scaler.lag() == 41
        assert state["requests"] == [("n2", "/jsz")]


async def test_cluster_without_a_leader_is_an_error(cluster: tuple[int, dict[str, Any]]) -> None:
    port, state = cluster
    state["leader"] = "n9"
    c = ctx(
        {
            **BASE,
            "natsServerMonitoringEndpoint": f"127.0.0.1:{port}",
            "stream": "orders",
            "consumer": "workers",
        }
    )
    async with NATSJetStreamScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError, match="leader node not found for consumer 'workers'"):
            await scaler.lag()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "scalers"


async def test_docs_example(nats_server: NATSServer, stream: tuple[Any, str]) -> None:
    """docs/scalers/nats-jetstream.md's manifest, pointed at the test server."""
    (yaml_text,) = re.findall(
        r"```yaml\n(.*?)```", (DOCS / "nats-jetstream.md").read_text(), re.DOTALL
    )
    js, name = stream
    for i in range(3):
        await js.publish(f"{name}.new", f"m{i}".encode())
    yaml_text = (
        yaml_text.replace("nats.nats.svc.cluster.local:8222", nats_server.monitoring_endpoint)
        .replace('"mystream"', f'"{name}"')
        .replace('"pull_consumer"', '"workers"')
    )
    loaded = load_manifests(yaml_text)
    (c,) = loaded.trigger_contexts(loaded.scaled_object())
    scaler = create_scaler(c)
    assert isinstance(scaler, NATSJetStreamScaler)
    try:
        report = await scaler.get_metrics()
    finally:
        await scaler.aclose()
    assert (report.value_of(f"s0-nats-jetstream-{name}"), report.is_active) == (3.0, False)
