"""Kafka scaler: refused credentials and refused authorization are errors, not lag 0.

Authentication is checked against a real broker: tansu started with
``--authentication`` (SASL/SCRAM) refuses a user it does not know. Authorization is not:
no broker available here enforces ACLs (tansu accepts every authenticated request, and
librdkafka's mock cluster cannot inject errors from Python), so the translation of
``TOPIC_/GROUP_/CLUSTER_AUTHORIZATION_FAILED`` is checked with real
:class:`confluent_kafka.KafkaError` objects going through the same code the poll uses.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import importlib
import logging
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka._pool import KafkaClientPool
from eventscale.scalers.kafka.config import KafkaMetadata
from eventscale.scalers.kafka.scaler import KafkaScaler
from servers._proc import Proc, free_port, port_open, unique_name, wait_until
from servers.kafka_srv import tansu_binary

ck: Any = importlib.import_module("confluent_kafka")

PASSWORD = "hunter2-never-shown"


@pytest.fixture(scope="module")
def auth_broker() -> Iterator[str]:
    """A tansu broker that requires SASL/SCRAM authentication (and knows no user)."""
    with tempfile.TemporaryDirectory(prefix="es-tansu-auth-") as tmp:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc = Proc(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--authentication",
            ],
            log=Path(tmp) / "tansu.log",
        )
        try:
            wait_until(
                lambda: proc.alive and port_open(port),
                timeout=20,
                what="tansu broker with --authentication",
                log=proc.log,
            )
            yield f"127.0.0.1:{port}"
        finally:
            proc.stop()


def scaler_for(
    servers: str, pool: KafkaClientPool, *, batch: bool = True, **metadata: str
) -> KafkaScaler:
    ctx = TriggerContext(
        metadata={
            "bootstrapServers": servers,
            "consumerGroup": unique_name("group"),
            "timeout": "1s",
            **metadata,
        },
        auth={"sasl": "scram_sha256", "username": unique_name("user"), "password": PASSWORD},
        trigger_type="kafka",
    )
    return KafkaScaler(
        KafkaMetadata.from_context(ctx), pool=pool, trigger_name=ctx.identity, batch=batch
    )


@pytest.mark.anyio
@pytest.mark.parametrize("with_topic", [True, False], ids=["topic", "no-topic"])
@pytest.mark.parametrize("batch", [True, False], ids=["batch", "librdkafka"])
async def test_refused_login_is_a_permanent_error(
    auth_broker: str, with_topic: bool, batch: bool
) -> None:
    pool = KafkaClientPool()
    topic = {"topic": "orders"} if with_topic else {}
    scaler = scaler_for(auth_broker, pool, batch=batch, **topic)
    assert scaler.batched is batch  # SCRAM is served by both paths
    try:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        error = info.value
        assert not isinstance(error, ScalerTimeout)  # not "slow": refused
        assert error.transient is False
        assert "refused authentication" in str(error)
        assert "SASL" in str(error)
        assert PASSWORD not in str(error)
    finally:
        await scaler.aclose()
    assert len(pool) == 0


# ---------------------------------------------------------------------------- translation


def failed(code: int, text: str = "") -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    error = ck.KafkaError(code, text) if text else ck.KafkaError(code)
    future.set_exception(ck.KafkaException(error))
    return future


@pytest.fixture
def scaler() -> Iterator[KafkaScaler]:
    # bound to a closed port and never polled: only the translation is exercised
    ctx = TriggerContext(
        metadata={"bootstrapServers": f"127.0.0.1:{free_port()}", "consumerGroup": "g"},
        auth={"sasl": "plaintext", "username": "u", "password": PASSWORD},
        trigger_type="kafka",
    )
    made = KafkaScaler(
        KafkaMetadata.from_context(ctx), pool=KafkaClientPool(), trigger_name=ctx.identity
    )
    yield made
    conn = made.connection
    assert conn is not None
    assert not conn.has_client


@pytest.mark.parametrize(
    "code",
    [
        ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
        ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        ck.KafkaError.SASL_AUTHENTICATION_FAILED,
        ck.KafkaError._AUTHENTICATION,
    ],
    ids=lambda c: str(ck.KafkaError(c).name()),
)
def test_authorization_failures_are_permanent_errors(scaler: KafkaScaler, code: int) -> None:
    # a driver message that (wrongly) carries the password must not leak it
    future = failed(code, f"denied for user u with password={PASSWORD}")
    with pytest.raises(ScalerError) as info:
        scaler._result(future, "describe topic 'orders'")
    error = info.value
    assert not isinstance(error, ScalerTimeout)
    assert error.transient is False
    assert ck.KafkaError(code).name() in str(error)
    assert PASSWORD not in str(error)
    assert isinstance(error.__cause__, ck.KafkaException)


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (ck.KafkaError._TIMED_OUT, ScalerTimeout, True),
        (ck.KafkaError._TRANSPORT, ScalerError, True),
        (ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ScalerError, False),
    ],
    ids=["timeout", "transport", "missing-topic"],
)
def test_other_driver_errors(
    scaler: KafkaScaler, code: int, kind: type[ScalerError], transient: bool
) -> None:
    with pytest.raises(ScalerError) as info:
        scaler._result(failed(code), "list offsets")
    assert type(info.value) is kind
    assert info.value.transient is transient


def test_authorization_failure_from_the_committed_offsets_read(scaler: KafkaScaler) -> None:
    """The per-partition error field of a committed-offsets answer goes the same way."""
    tp = ck.TopicPartition("orders", 0, -1001)

    class Answer:  # the shape librdkafka returns: a TopicPartition with its error set
        topic, partition, offset = tp.topic, tp.partition, tp.offset
        error = ck.KafkaError(ck.KafkaError.GROUP_AUTHORIZATION_FAILED)

    with pytest.raises(ScalerError) as info:
        scaler._committed_list([Answer()])
    assert info.value.transient is False
    assert "GROUP_AUTHORIZATION_FAILED" in str(info.value)


# ---------------------------------------------------------------------------- OIDC


@pytest.fixture
def echoing_token_endpoint() -> Iterator[str]:
    """An OAuth token endpoint that refuses and echoes the request (headers and body)."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            echo = f"you sent {dict(self.headers)} {body.decode()}".encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(echo)))
            self.end_headers()
            self.wfile.write(echo)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/token"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_an_oidc_endpoint_echoing_the_secret_never_reaches_errors_or_logs(
    echoing_token_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3cret-client-value!"
    basic = base64.b64encode(f"client-id:{secret}".encode()).decode()
    caplog.set_level(logging.DEBUG, logger="eventscale")
    ctx = TriggerContext(
        metadata={
            "bootstrapServers": f"127.0.0.1:{free_port()}",
            "consumerGroup": unique_name("group"),
            "timeout": "2s",
        },
        auth={
            "sasl": "oauthbearer",
            "username": "client-id",
            "password": secret,
            "oauthTokenEndpointUri": echoing_token_endpoint,
        },
        trigger_type="kafka",
    )
    pool = KafkaClientPool()
    scaler = KafkaScaler(KafkaMetadata.from_context(ctx), pool=pool, trigger_name=ctx.identity)
    try:
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
    finally:
        await scaler.aclose()
    text = str(info.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "OIDC token" in logged  # librdkafka did log the failure
    assert "HTTP status 401" in logged
    for leak in (secret, basic, "you sent"):
        assert leak not in text
        assert leak not in logged
