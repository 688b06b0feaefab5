"""The batch path against tansu: kafka scalers of one cluster polled in one slot.

Each test uses its own topics and groups. Expected values come either from what the test
produced and committed, or from the same scalers on the librdkafka path (``batch=False``)
reading the same broker: the two paths must agree on every setting that changes what is
read (committed and uncommitted partitions, ``earliest``, ``partitionLimitation``, no
``topic``).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import trustme

import eventscale.scalers.kafka._kafka_python as kp
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka._batch import KafkaBatcher, batchable
from eventscale.scalers.kafka._lag import LagTotals
from eventscale.scalers.kafka._pool import KafkaClientPool
from eventscale.scalers.kafka.config import KafkaMetadata
from eventscale.scalers.kafka.scaler import KafkaScaler
from servers._proc import unique_name
from servers.kafka_srv import KafkaBroker

pytestmark = pytest.mark.anyio


def make(
    servers: str,
    group: str,
    pool: KafkaClientPool,
    made: list[KafkaScaler],
    *,
    batch: bool = True,
    auth: dict[str, str | Secret] | None = None,
    meta: dict[str, str] | None = None,
    **metadata: str,
) -> KafkaScaler:
    ctx = TriggerContext(
        metadata={
            "bootstrapServers": servers,
            "consumerGroup": group,
            **(meta or {}),
            **metadata,
        },
        auth=auth or {},
        trigger_type="kafka",
    )
    scaler = KafkaScaler(KafkaMetadata.from_context(ctx), pool=pool, batch=batch)
    made.append(scaler)
    return scaler


async def poll_all(scalers: Sequence[KafkaScaler]) -> list[LagTotals | ScalerError]:
    """Poll every scaler at once (as a controller slot does); errors are results."""
    results: list[LagTotals | ScalerError | None] = [None] * len(scalers)

    async def one(i: int, scaler: KafkaScaler) -> None:
        try:
            results[i] = await scaler.get_lag()
        except ScalerError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, scaler in enumerate(scalers):
            tg.start_soon(one, i, scaler)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def batcher_of(pool: KafkaClientPool) -> KafkaBatcher:
    (conn,) = pool.connections()
    return conn.batcher(KafkaBatcher)


def settings_matrix(topic: str, other: str) -> list[tuple[str, dict[str, str]]]:
    """(group role, metadata) pairs covering what changes the requests of a poll."""
    return [
        ("full", {"topic": topic}),
        ("partial", {"topic": topic}),
        ("partial", {"topic": topic, "offsetResetPolicy": "earliest"}),
        ("none", {"topic": topic}),
        ("none", {"topic": topic, "offsetResetPolicy": "earliest"}),
        ("none", {"topic": topic, "scaleToZeroOnInvalidOffset": "true"}),
        ("partial", {"topic": topic, "partitionLimitation": "1-3,5"}),
        ("partial", {"topic": other}),
        ("two", {}),  # no topic: the topics the group committed to
        ("full", {"topic": topic, "excludePersistentLag": "true"}),
    ]


async def test_batched_equals_unbatched(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(6)
    other = kafka_broker.create_topic(3)
    kafka_broker.produce(topic, {0: 5, 1: 3, 2: 8, 4: 1, 5: 2})
    kafka_broker.produce(other, {0: 4, 2: 6})
    groups = {role: unique_name(f"group-{role}") for role in ("full", "partial", "none", "two")}
    kafka_broker.commit(groups["full"], topic, {0: 1, 1: 3, 2: 2, 3: 0, 4: 0, 5: 2})
    kafka_broker.commit(groups["partial"], topic, {0: 2, 2: 7})
    kafka_broker.commit(groups["partial"], other, {0: 1})
    kafka_broker.commit(groups["two"], topic, {1: 1})
    kafka_broker.commit(groups["two"], other, {2: 2, 1: 0})

    batched_pool, plain_pool = KafkaClientPool(), KafkaClientPool()
    matrix = settings_matrix(topic, other)
    batched = [
        make(kafka_broker.bootstrap, groups[role], batched_pool, scalers, meta=meta)
        for role, meta in matrix
    ]
    plain = [
        make(kafka_broker.bootstrap, groups[role], plain_pool, scalers, batch=False, meta=meta)
        for role, meta in matrix
    ]
    assert all(s.batched for s in batched)
    assert not any(s.batched for s in plain)
    for _ in range(2):  # twice: excludePersistentLag remembers the first poll
        got = await poll_all(batched)
        want = [await s.get_lag() for s in plain]
        assert got == want
    # the whole matrix was one slot per round, not one request set per scaler
    assert batcher_of(batched_pool).slots_run == 2
    # spot checks worked out by hand from what was produced and committed
    full, partial = got[0], got[1]
    assert isinstance(full, LagTotals)
    assert isinstance(partial, LagTotals)
    assert full.total_lag == 4 + 0 + 6 + 0 + 1 + 0
    # partial: p0 5-2, p2 8-7, four partitions without a commit count 1 each (latest)
    assert partial.total_lag == 3 + 1 + 4
    none_earliest = got[4]
    assert isinstance(none_earliest, LagTotals)
    assert none_earliest.total_lag == 5 + 3 + 8 + 0 + 1 + 2  # log end - log start
    two = got[8]
    assert isinstance(two, LagTotals)
    assert two.partitions == 6 + 3


async def test_tansu_answers_multi_group_offset_fetch(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(2)
    pool = KafkaClientPool()
    scaler = make(kafka_broker.bootstrap, unique_name("group"), pool, scalers, topic=topic)
    await scaler.get_lag()
    versions = batcher_of(pool).api_versions()
    assert versions["OffsetFetch"][1] >= 8  # KIP-709: many groups in one request
    assert "ListOffsets" in versions


async def test_old_broker_versions_fall_back_to_one_request_per_group(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(4)
    kafka_broker.produce(topic, {0: 3, 3: 5})
    groups = [unique_name("group") for _ in range(3)]
    kafka_broker.commit(groups[0], topic, {0: 1, 3: 5})
    kafka_broker.commit(groups[1], topic, {3: 2})
    # kafka-python takes the broker for Kafka 2.8: OffsetFetch v7, one group per request
    old = KafkaClientPool(batch_options={"api_version": (2, 8)})
    plain = KafkaClientPool()
    olds = [make(kafka_broker.bootstrap, g, old, scalers, topic=topic) for g in groups]
    plains = [
        make(kafka_broker.bootstrap, g, plain, scalers, batch=False, topic=topic) for g in groups
    ]
    got = await poll_all(olds)
    assert batcher_of(old).api_versions()["OffsetFetch"][1] < 8
    assert got == [await s.get_lag() for s in plains]
    assert [r.total_lag for r in got if isinstance(r, LagTotals)] == [
        2 + 1 + 1,
        1 + 1 + 1 + 3,
        4,
    ]


async def test_a_bad_object_fails_alone(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(3)
    kafka_broker.produce(topic, {1: 4})
    good_group = unique_name("group")
    kafka_broker.commit(good_group, topic, {0: 0, 1: 1, 2: 0})
    pool = KafkaClientPool()
    servers = kafka_broker.bootstrap
    polled = [
        make(servers, good_group, pool, scalers, topic=topic),
        make(servers, unique_name("group"), pool, scalers, topic=unique_name("missing-topic")),
        make(servers, unique_name("never-committed"), pool, scalers),  # no topic to discover
        make(servers, good_group, pool, scalers, topic=topic, partitionLimitation="7-9"),
        make(servers, unique_name("group"), pool, scalers, topic=topic),  # no commits: lag 1 each
    ]
    good, missing, undiscoverable, limited, fresh = await poll_all(polled)
    assert batcher_of(pool).slots_run == 1
    assert isinstance(good, LagTotals)
    assert good.total_lag == 3
    assert isinstance(fresh, LagTotals)
    assert fresh.total_lag == 3
    assert isinstance(missing, ScalerError)
    assert "does not exist" in str(missing)
    assert missing.transient is False
    assert missing.trigger == "kafka[0]"
    assert isinstance(undiscoverable, ScalerError)
    assert "no committed offsets" in str(undiscoverable)
    assert isinstance(limited, ScalerError)
    assert "at least one active partition" in str(limited)
    # each object has its own error object
    assert len({id(missing), id(undiscoverable), id(limited)}) == 3


async def test_broker_stop_gives_errors_then_values(
    private_kafka: Any, scalers: list[KafkaScaler]
) -> None:
    broker: KafkaBroker = private_kafka()
    groups = [unique_name("group"), unique_name("group")]

    def prepare() -> str:
        topic = broker.create_topic(2, name="batch-orders")
        broker.produce(topic, {0: 5})
        for g in groups:
            broker.commit(g, topic, {0: 1, 1: 0})
        return topic

    topic = prepare()
    pool = KafkaClientPool()
    polled = [make(broker.bootstrap, g, pool, scalers, topic=topic, timeout="1s") for g in groups]
    assert [r.total_lag for r in await poll_all(polled) if isinstance(r, LagTotals)] == [4, 4]
    broker.stop()
    started = time.monotonic()
    failed = await poll_all(polled)
    assert time.monotonic() - started < 10  # each waits under its own timeout (1 s + 1 s)
    assert all(isinstance(r, ScalerError) and r.transient for r in failed)
    assert failed[0] is not failed[1]
    broker.start()  # same port, empty memory storage
    prepare()
    deadline = time.monotonic() + 30
    while True:
        results = await poll_all(polled)
        if all(isinstance(r, LagTotals) for r in results):
            break
        assert time.monotonic() < deadline, results
        await anyio.sleep(0.2)
    assert [r.total_lag for r in results if isinstance(r, LagTotals)] == [4, 4]


async def test_unreachable_cluster_is_a_timeout(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    from servers._proc import free_port

    pool = KafkaClientPool()
    scaler = make(
        f"127.0.0.1:{free_port()}", unique_name("g"), pool, scalers, topic="t", timeout="1s"
    )
    with pytest.raises(ScalerError) as info:
        await scaler.get_metrics()
    assert info.value.transient is True
    assert isinstance(info.value, ScalerTimeout) or "Connection" in str(info.value)


async def test_sasl_password_stays_out_of_logs_and_errors(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture, scalers: list[KafkaScaler]
) -> None:
    password = "batch-secret-Zq81-very-private"
    pool = KafkaClientPool()
    scaler = make(
        kafka_broker.bootstrap,
        unique_name("g"),
        pool,
        scalers,
        topic="t",
        timeout="1s",
        auth={"sasl": "plaintext", "username": "alice", "password": Secret(password)},
    )
    assert scaler.batched  # PLAIN is served by the batch path
    caplog.set_level(logging.DEBUG, logger="kafka")
    with pytest.raises(ScalerError) as info:  # tansu does not do SASL here
        await scaler.get_metrics()
    assert password not in str(info.value)
    assert password not in caplog.text
    assert "Starting KafkaAdminClient" in caplog.text  # the line that carries the config


@pytest.mark.parametrize(
    ("auth", "batched"),
    [
        ({}, True),
        ({"sasl": "scram_sha512", "username": "u", "password": "p"}, True),
        ({"tls": "enable", "unsafeSsl": "true"}, True),
        (
            {
                "sasl": "oauthbearer",
                "username": "id",
                "password": "s",
                "oauthTokenEndpointUri": "https://idp.invalid/token",
            },
            False,
        ),
        (
            {
                "sasl": "oauthbearer",
                "saslTokenProvider": "aws_msk_iam",
                "tls": "enable",
                "awsAccessKeyID": "AKIAEXAMPLE",
                "awsSecretAccessKey": "secret",
            },
            False,
        ),
    ],
)
async def test_auth_the_batch_path_cannot_do_keeps_librdkafka(
    auth: dict[str, str], batched: bool, scalers: list[KafkaScaler]
) -> None:
    pool = KafkaClientPool()
    scaler = make(
        "127.0.0.1:9", "g", pool, scalers, topic="t", awsRegion="eu-west-1", auth=dict(auth)
    )
    assert scaler.batched is batched


async def test_apache_kafka_keeps_librdkafka() -> None:
    from eventscale.scalers.kafka.apache import ApacheKafkaScaler

    ctx = TriggerContext(
        metadata={"bootstrapServers": "127.0.0.1:9", "consumerGroup": "g", "topic": "t"},
        trigger_type="apache-kafka",
    )
    scaler = ApacheKafkaScaler.from_context(ctx)
    try:
        assert scaler.batched is False  # it picks its partitions its own way
    finally:
        await scaler.aclose()


def test_batchable_settings() -> None:
    assert batchable({"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT"})
    # Kerberos (the scaler adds its kinit command) and OAUTHBEARER stay on librdkafka
    assert not batchable(
        {"bootstrap.servers": "b", "sasl.mechanism": "GSSAPI", "security.protocol": "SASL_SSL"}
    )
    assert not batchable({"bootstrap.servers": "b", "sasl.kerberos.kinit.cmd": "kinit"})
    assert not batchable({"bootstrap.servers": "b", "oauth_cb": object()})


# ---------------------------------------------------------------------------- TLS


def _tls_server(server_ctx: ssl.SSLContext) -> tuple[int, list[str], threading.Thread]:
    """A one-connection TLS server on 127.0.0.1; records the client certificate's CN."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with raw:
                try:
                    with server_ctx.wrap_socket(raw, server_side=True) as tls:
                        peer: Any = tls.getpeercert() or {}
                        seen.extend(
                            str(value)
                            for key, value in peer.get("subjectAltName", ())
                            if key == "DNS"
                        )
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError) as exc:
                    seen.append(f"error: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, seen, thread


def _settings(auth: dict[str, str], **meta: str) -> dict[str, Any]:
    ctx = TriggerContext(
        metadata={"bootstrapServers": "127.0.0.1:9", "consumerGroup": "g", "topic": "t", **meta},
        auth={"tls": "enable", **auth},
        trigger_type="kafka",
    )
    settings = dict(KafkaMetadata.from_context(ctx).librdkafka)
    assert batchable(settings)
    return settings


def _pem(blob: Any) -> str:
    return str(blob.bytes().decode())


def test_tls_client_certificate_reaches_the_server() -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    client_cert = ca.issue_cert("kafka-client.example")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    port, seen, thread = _tls_server(server_ctx)
    settings = _settings(
        {
            "ca": _pem(ca.cert_pem),
            "cert": _pem(client_cert.cert_chain_pems[0]),
            "key": _pem(client_cert.private_key_pem),
        }
    )
    client_ctx = kp.ssl_context(settings)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(10)
    assert "kafka-client.example" in seen


def test_tls_unknown_ca_is_refused_unless_unsafe() -> None:
    server_cert = trustme.CA().issue_cert("localhost")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    other_ca = _pem(trustme.CA().cert_pem)
    port, _, thread = _tls_server(server_ctx)
    strict = kp.ssl_context(_settings({"ca": other_ca}))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        strict.wrap_socket(raw, server_hostname="localhost")
    thread.join(10)
    port, _, thread = _tls_server(server_ctx)
    unsafe = kp.ssl_context(_settings({"ca": other_ca}, unsafeSsl="true"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        unsafe.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(10)


# ------------------------------------------------- isolation of broker errors, per group/topic


class _WireCluster:
    """A stand-in for the batch path's transport whose answers are the broker's bytes:
    each OffsetFetch and ListOffsets answer is encoded by kafka-python's own encoder and
    read back by the lean decoders, as on a real connection. Partitions 0 and 1 of every
    topic have leaders 1 and 2 (so ListOffsets goes to two leaders)."""

    def __init__(self, bad_group: str, bad_topic: str, bad_partition_group: str) -> None:
        self.bad_group, self.bad_topic = bad_group, bad_topic
        self.bad_partition_group = bad_partition_group
        self.calls: list[str] = []

    def metadata(self, topics: list[str]) -> dict[str, tuple[int, dict[int, int]]]:
        self.calls.append("metadata")
        return {t: (0, {0: 1, 1: 2}) for t in topics}

    def group_offsets(self, specs: dict[str, Any]) -> dict[str, Any]:
        from eventscale.scalers.kafka._wire import decode_offset_fetch
        from servers.kafka_wire import fetch_bytes

        self.calls.append(f"groups {sorted(specs)}")
        groups = {}
        for g, topics in specs.items():
            code = 30 if g == self.bad_group else 0  # GROUP_AUTHORIZATION_FAILED
            p_code = 3 if g == self.bad_partition_group else 0  # UNKNOWN_TOPIC_OR_PARTITION
            groups[g] = (
                code,
                {
                    t: [(p, 3, -1, None, p_code if p == 1 else 0) for p in ps]
                    for t, ps in topics.items()
                },
            )
        return dict(decode_offset_fetch(fetch_bytes(groups, 8), 8).groups)

    def list_offsets(self, plan: list[tuple[int, int, dict[str, list[int]]]]) -> list[Any]:
        from eventscale.scalers.kafka._wire import decode_list_offsets
        from servers.kafka_wire import list_bytes

        out = []
        for leader, timestamp, topics in plan:
            self.calls.append(f"offsets {leader} {timestamp} {sorted(topics)}")
            answer = {
                t: [
                    (p, 6 if t == self.bad_topic else 0, -1, 10 if timestamp == -1 else 2, -1)
                    for p in ps
                ]
                for t, ps in topics.items()
            }  # 6: NOT_LEADER_OR_FOLLOWER
            out.append(decode_list_offsets(list_bytes(answer, 7), 7))
        return out


def test_broker_errors_fail_only_the_objects_they_name() -> None:
    from eventscale.scalers.kafka._batch import LagInputs, LagQuery

    kp.import_kafka_python()  # as a slot does before its first request
    batcher = KafkaBatcher({"bootstrap.servers": "127.0.0.1:9"})
    cluster = _WireCluster(bad_group="denied", bad_topic="moving", bad_partition_group="gone")
    try:
        queries = [
            LagQuery("ok", "orders", None, earliest=False, timeout=5),
            LagQuery("denied", "orders", None, earliest=False, timeout=5),
            LagQuery("ok", "moving", None, earliest=False, timeout=5),
            LagQuery("other", "orders", None, earliest=True, timeout=5),
            LagQuery("gone", "orders", None, earliest=False, timeout=5),
        ]
        ok, denied, moving, other, gone = batcher._answer_with(cluster, queries)
        assert isinstance(ok, LagInputs)
        assert ok.committed == {"orders": {0: 3, 1: 3}}
        assert ok.latest == {"orders": {0: 10, 1: 10}}
        assert isinstance(other, LagInputs)
        assert other.earliest == {}  # every partition has a commit: no log start needed
        assert not isinstance(denied, LagInputs)
        assert "denied" in denied.message
        assert "GroupAuthorizationFailedError" in denied.message
        assert denied.transient is False  # an authorization refusal
        assert not isinstance(moving, LagInputs)
        assert "moving" in moving.message
        assert "NotLeaderForPartitionError" in moving.message
        assert moving.transient is True
        assert not isinstance(gone, LagInputs)
        assert "'gone'" in gone.message
        assert "does not exist" in gone.message
        # one request per step: metadata, one OffsetFetch for every group, one ListOffsets
        # per leader and kind (log end for both leaders, log start for both)
        assert cluster.calls.count("metadata") == 1
        assert cluster.calls.count("groups ['denied', 'gone', 'ok', 'other']") == 1
        assert sorted(c for c in cluster.calls if c.startswith("offsets")) == [
            "offsets 1 -1 ['moving', 'orders']",
            "offsets 1 -2 ['orders']",
            "offsets 2 -1 ['moving', 'orders']",
            "offsets 2 -2 ['orders']",
        ]
    finally:
        batcher.close()


async def test_close_during_a_slot_makes_no_client(kafka_broker: KafkaBroker) -> None:
    # a long window: the scaler is closed while its slot is still open
    pool = KafkaClientPool(batch_options={"window": 0.5})
    made: list[KafkaScaler] = []
    scaler = make(kafka_broker.bootstrap, unique_name("g"), pool, made, topic="t", timeout="2s")
    conn = scaler.connection
    assert conn is not None
    batcher = conn.batcher(KafkaBatcher)
    outcome: list[object] = []

    async def poll() -> None:
        try:
            outcome.append(await scaler.get_lag())
        except ScalerError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.1)
        await scaler.aclose()
    (result,) = outcome
    assert isinstance(result, ScalerError)
    assert "closed" in str(result)
    assert batcher._admins == {}  # no kafka-python client was made after close()


async def test_a_moved_coordinator_is_looked_up_again(
    kafka_broker: KafkaBroker, scalers: list[KafkaScaler]
) -> None:
    topic = kafka_broker.create_topic(2)
    kafka_broker.produce(topic, {0: 4})
    groups = [unique_name("group"), unique_name("group")]
    for g in groups:
        kafka_broker.commit(g, topic, {0: 1, 1: 0})
    pool = KafkaClientPool()
    polled = [make(kafka_broker.bootstrap, g, pool, scalers, topic=topic) for g in groups]
    first = await poll_all(polled)
    assert [r.total_lag for r in first if isinstance(r, LagTotals)] == [3, 3]
    # a single broker cannot move a coordinator: point kafka-python's cache for one
    # group at a broker that does not exist, as it would point at a departed one
    from kafka.protocol.metadata import CoordinatorType

    admin = batcher_of(pool)._admins["groups"]
    cache = admin._manager.cluster._coordinators
    assert (CoordinatorType.GROUP, groups[0]) in cache
    cache[(CoordinatorType.GROUP, groups[0])] = 999
    moved, kept = await poll_all(polled)
    assert isinstance(moved, ScalerError)
    assert groups[0] in str(moved)
    assert isinstance(kept, LagTotals)  # the other group's request went through
    assert kept.total_lag == 3
    # the failed group's coordinator was forgotten: the next slot looks it up again
    again = await poll_all(polled)
    assert [r.total_lag for r in again if isinstance(r, LagTotals)] == [3, 3]
