"""The ``apache-kafka`` trigger: KEDA's second, kafka-go based Kafka scaler.

KEDA ships two Kafka scalers: ``kafka`` (``pkg/scalers/kafka_scaler.go``) and the
experimental ``apache-kafka`` (``pkg/scalers/apache_kafka_scaler.go``). eventscale reads
both with the same client (:class:`~eventscale.scalers.kafka.scaler.KafkaScaler`, on
librdkafka) and the same lag rules (:mod:`eventscale.scalers.kafka._lag`); this module holds
what differs: the metadata (:class:`ApacheKafkaMetadata`: a topic list, ``sasl:
aws_msk_iam``, no OAuth, Kerberos, ``version`` or ``unsafeSsl``) and the discovery of
partitions (:class:`ApacheKafkaScaler`). docs/scalers/apache-kafka.md describes both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final, Self

import anyio
import anyio.to_thread
import attrs

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import Secret
from eventscale.scalers.kafka._lag import TopicPartition, select_partitions
from eventscale.scalers.kafka._pool import KafkaConnection
from eventscale.scalers.kafka.config import (
    KafkaMetadata,
    OffsetResetPolicy,
    SaslMechanism,
    _Problem,
    _Sasl,
    _Tls,
)
from eventscale.scalers.kafka.scaler import KafkaScaler, _ck
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext, parse_json_int

__all__ = (
    "ApacheKafkaMetadata",
    "ApacheKafkaScaler",
    "parse_partition_ranges",
)

_LOG: Final = logging.getLogger("eventscale.scalers.kafka")

#: The ``sasl`` values KEDA's apache-kafka scaler accepts.
_SASL_TYPES: Final = ("none", "plaintext", "scram_sha256", "scram_sha512", "gssapi", "aws_msk_iam")
_SASL_MECHANISM: Final = {
    "none": SaslMechanism.NONE,
    "plaintext": SaslMechanism.PLAINTEXT,
    "scram_sha256": SaslMechanism.SCRAM_SHA256,
    "scram_sha512": SaslMechanism.SCRAM_SHA512,
    # aws_msk_iam is an OAUTHBEARER token signed by MskIamTokenProvider, as for `kafka`
    "aws_msk_iam": SaslMechanism.OAUTHBEARER,
}

#: Parameters of the ``kafka`` trigger that KEDA's apache-kafka scaler does not read: KEDA
#: ignores them, and so does eventscale (with a warning, so a copied trigger is noticed).
_NOT_READ: Final = (
    "unsafeSsl",
    "version",
    "fullMetadata",
    "saslTokenProvider",
    "oauthTokenEndpointUri",
    "scopes",
    "oauthExtensions",
    "keytab",
    "realm",
    "kerberosConfig",
    "kerberosServiceName",
    "kerberosDisableFAST",
)

#: Bounds: the partitions ``partitionLimitation`` may expand to, and the partitions one poll
#: reads when the topics are discovered.
MAX_LIMITATION: Final = 100_000
MAX_DISCOVERED_PARTITIONS: Final = 10_000

#: Kafka's own topics, which no consumer group consumes (left out of discovery).
_INTERNAL_TOPICS: Final = frozenset(
    {"__consumer_offsets", "__transaction_state", "__share_group_state"}
)


def parse_partition_ranges(raw: str) -> tuple[int, ...]:
    """Parse ``partitionLimitation`` as KEDA's generic list-with-ranges parser does.

    ``"1,2,5-7"`` -> ``(1, 2, 5, 6, 7)``. Each comma-separated element is trimmed and is a
    JSON integer or ``start-end`` (inclusive; an inverted range gives nothing); order and
    duplicates are kept. A negative number cannot be written (``-1`` is a range without a
    start), as in KEDA.

    :raises ValueError: on a malformed element, or beyond :data:`MAX_LIMITATION` entries.
    """
    out: list[int] = []
    for i, item in enumerate(raw.split(",")):
        part = item.strip()
        try:
            if "-" in part:
                pieces = part.split("-")
                if len(pieces) != 2:
                    raise ValueError(f"expected format start-end, got {part!r}")
                low, high = parse_json_int(pieces[0].strip()), parse_json_int(pieces[1].strip())
                if high - low + 1 > MAX_LIMITATION - len(out):
                    raise ValueError(f"more than {MAX_LIMITATION} partitions")
                out.extend(range(low, high + 1))
            else:
                out.append(parse_json_int(part))
        except ValueError as exc:
            raise ValueError(f"element {i}: {exc}") from None
        if len(out) > MAX_LIMITATION:
            raise ValueError(f"more than {MAX_LIMITATION} partitions")
    return tuple(out)


@attrs.frozen(kw_only=True)
class ApacheKafkaMetadata(KafkaMetadata):
    """The parsed and validated metadata of one ``apache-kafka`` trigger.

    A :class:`~eventscale.scalers.kafka.config.KafkaMetadata` (so the ``kafka`` scaler's
    client, lag rules and cap apply) with ``topics``, the topic list; ``topic`` holds the
    same list joined by commas, which gives KEDA's metric name ``s<i>-kafka-<t1>,<t2>``.
    ``sasl_type`` is the ``sasl`` value as written (``aws_msk_iam`` maps onto an
    OAUTHBEARER token, as ``kafka``'s ``saslTokenProvider: aws_msk_iam`` does).
    """

    topics: tuple[str, ...] = ()
    sasl_type: str = "none"

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> Self:
        """Parse and validate an ``apache-kafka`` trigger, in KEDA's validation order.

        :raises ConfigError: listing every problem, each with its field path.
        """
        ignored = [name for name in _NOT_READ if str(ctx.metadata.get(name) or "").strip()]
        if ignored:
            _LOG.warning(
                "%s: apache-kafka does not read %s (KEDA ignores them too); use type: kafka "
                "for these parameters",
                ctx.identity,
                ", ".join(ignored),
            )
            # dropped before reading, so a shared reader cannot pick one up
            ctx = attrs.evolve(
                ctx, metadata={k: v for k, v in ctx.metadata.items() if k not in _NOT_READ}
            )
        p = Params(ctx)
        servers = p.string_list("bootstrapServers", order=(META, ENV), required=True)
        group = p.string("consumerGroup", order=(META, ENV), required=True)
        topics = p.string_list("topic", order=(META, ENV), default=()) or ()
        limitation = _limitation(p)
        lag_threshold = p.integer("lagThreshold", default=10)
        activation = p.integer("activationLagThreshold", default=0)
        policy = p.enum("offsetResetPolicy", OffsetResetPolicy, default=OffsetResetPolicy.LATEST)
        allow_idle = p.boolean("allowIdleConsumers", default=False)
        exclude_persistent = p.boolean("excludePersistentLag", default=False)
        scale_to_zero = p.boolean("scaleToZeroOnInvalidOffset", default=False)
        limit_with_lag = p.boolean("limitToPartitionsWithLag", default=False)
        ensure_even = p.boolean("ensureEvenDistributionOfPartitions", default=False)
        sasl_type = p.choice("sasl", _SASL_TYPES, order=(META, AUTH), default="none")
        username = p.string("username", order=(AUTH,), default="")
        password = p.secret("password")
        aws_region = p.string("awsRegion", default="")
        tls = _Tls.read(p)  # unsafeSsl was dropped above: verification stays on
        # eventscale extensions (not KEDA parameters), as for `kafka`
        timeout = p.duration("timeout", default=timedelta(seconds=5))
        snapshot_ttl = p.duration("snapshotTTL", default=timedelta(0))
        if timeout is not None and timeout <= timedelta(0):
            p.fail("timeout must be positive", "timeout")
        if any(not t for t in topics):
            p.fail("topic: an element of the topic list is empty", "topic")
        if tls.raw not in (None, "enable", "disable"):
            p.fail(f'parameter "tls": value "{tls.raw}" must be one of [enable disable]', "tls")

        # The AWS credentials are looked up as for `kafka` (KEDA's GetAwsAuthorization);
        # that reader's view of `sasl` is not used, so its errors are dropped.
        aws = attrs.evolve(
            _Sasl.read(Params(ctx)),
            mechanism=SaslMechanism.OAUTHBEARER,
            token_provider="aws_msk_iam",
            username=username,
            password=password,
            aws_region=aws_region,
        )
        # KEDA's Validate(), then its auth checks: the first failing check wins.
        problem = (
            _check_rules(lag_threshold, activation, allow_idle, limit_with_lag, topics)
            or tls.check()
            or _check_sasl(sasl_type, username, password, aws_region, tls.enabled)
            or _check_both_places(p)
            or (aws._check_msk_iam(tls=tls.enabled) if sasl_type == "aws_msk_iam" else None)
        )
        if problem is not None:
            reason, name, source = problem
            p.fail(reason, name, source)
        p.finish()

        assert servers is not None  # finish() raised otherwise
        assert group is not None
        kind = sasl_type or "none"
        sasl = attrs.evolve(aws, mechanism=_SASL_MECHANISM[kind])
        conf: dict[str, str | Secret] = {"bootstrap.servers": ",".join(servers)}
        conf.update(tls.librdkafka())
        conf.update(sasl.librdkafka())
        conf["security.protocol"] = ("SASL_" if kind != "none" else "") + (
            "SSL" if tls.enabled else "PLAINTEXT"
        )
        return cls(
            bootstrap_servers=servers,
            consumer_group=group,
            topics=tuple(topics),
            topic=",".join(topics),
            partition_limitation=limitation if topics else None,
            lag_threshold=lag_threshold or 10,
            activation_lag_threshold=activation or 0,
            offset_reset_policy=policy or OffsetResetPolicy.LATEST,
            allow_idle_consumers=bool(allow_idle),
            exclude_persistent_lag=bool(exclude_persistent),
            scale_to_zero_on_invalid_offset=bool(scale_to_zero),
            limit_to_partitions_with_lag=bool(limit_with_lag),
            ensure_even_distribution_of_partitions=bool(ensure_even),
            tls=tls.enabled,
            sasl=sasl.mechanism or SaslMechanism.NONE,
            sasl_type=kind,
            sasl_token_provider="aws_msk_iam" if kind == "aws_msk_iam" else "bearer",
            timeout=timeout or timedelta(seconds=5),
            snapshot_ttl=snapshot_ttl or timedelta(0),
            librdkafka=conf,
            aws_region=aws_region,
            msk_iam=aws.msk_iam() if kind == "aws_msk_iam" else None,
            index=ctx.index,
            metric_type=ctx.metric_type,
            path=ctx.path,
        )


def _limitation(p: Params) -> tuple[int, ...] | None:
    found = p.lookup("partitionLimitation")
    if found is None:
        return None
    try:
        return parse_partition_ranges(found.raw)
    except ValueError as exc:
        p.fail(f'parameter "partitionLimitation": {exc}', "partitionLimitation")
        return None


def _check_rules(
    lag_threshold: int | None,
    activation: int | None,
    allow_idle: bool | None,
    limit_with_lag: bool | None,
    topics: tuple[str, ...],
) -> _Problem | None:
    if lag_threshold is not None and lag_threshold <= 0:
        return ("lagThreshold must be a positive number", "lagThreshold", META)
    if activation is not None and activation < 0:
        return ("activationLagThreshold must not be negative", "activationLagThreshold", META)
    if allow_idle and limit_with_lag:
        return (
            "allowIdleConsumers and limitToPartitionsWithLag cannot both be true",
            "limitToPartitionsWithLag",
            META,
        )
    if limit_with_lag and not topics:
        return ("limitToPartitionsWithLag needs a topic", "limitToPartitionsWithLag", META)
    return None


def _check_sasl(
    kind: str | None, username: str, password: Secret | None, region: str, tls: bool
) -> _Problem | None:
    if kind == "plaintext":
        # only plaintext is checked here, as in KEDA: SCRAM without a user fails at login
        if not username:
            return ("sasl plaintext needs a username", "username", AUTH)
        if not password:
            return ("sasl plaintext needs a password", "password", AUTH)
    elif kind == "aws_msk_iam":
        if not region:
            return ("sasl aws_msk_iam needs awsRegion", "awsRegion", META)
        if not tls:
            return ("sasl aws_msk_iam needs tls=enable", "tls", META)
    elif kind == "gssapi":
        return (
            (
                "sasl gssapi is not supported by apache-kafka (KEDA accepts the value but "
                "cannot create the client); use type: kafka, which supports Kerberos"
            ),
            "sasl",
            META,
        )
    return None


def _check_both_places(p: Params) -> _Problem | None:
    for name in ("sasl", "tls"):
        if p.has(name, (META,)) and p.has(name, (AUTH,)):
            return (
                (
                    f"{name} is set in both the trigger metadata and the "
                    "TriggerAuthentication; apache-kafka takes it from one place only"
                ),
                name,
                META,
            )
    return None


class ApacheKafkaScaler(KafkaScaler):
    """Scales on consumer-group lag (``type: apache-kafka``).

    The ``kafka`` scaler with KEDA's apache-kafka discovery: with ``topic``, the partitions
    of every listed topic; without it, every topic of the cluster (Kafka's internal topics
    left out), and only while the group has active members. A partition the broker returns
    no committed offset for counts from offset 0. docs/scalers/apache-kafka.md.
    """

    meta: ApacheKafkaMetadata

    def __init__(self, config: ApacheKafkaMetadata, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.meta = config

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> ApacheKafkaScaler:
        """Parse ``ctx`` into an :class:`ApacheKafkaMetadata` and build the scaler.

        :raises ConfigError: bad metadata, or ``aws_msk_iam`` without an access key.
        """
        return cls(ApacheKafkaMetadata.from_context(ctx), trigger_name=ctx.identity)

    async def _partitions(
        self, conn: KafkaConnection, admin: Any
    ) -> tuple[list[TopicPartition], dict[TopicPartition, int] | None]:
        meta = self.meta
        timeout = meta.timeout.total_seconds()
        if meta.topics:
            described = conn.shared(
                ("describe", meta.topics),
                meta.snapshot_ttl.total_seconds(),
                lambda: admin.describe_topics(
                    _ck.TopicCollection(list(meta.topics)), request_timeout=timeout
                ),
            )
            await self._wait(described, timeout, "read the topic metadata")
            wanted: list[TopicPartition] = []
            for topic in dict.fromkeys(meta.topics):
                description = self._result(described[topic], f"describe topic {topic!r}")
                ids = select_partitions(
                    topic, [p.id for p in description.partitions], meta.partition_limitation
                )
                wanted.extend((topic, i) for i in ids)
            return wanted, None
        await self._check_active_members(admin, timeout)
        return await self._cluster_partitions(admin, timeout), None

    async def _check_active_members(self, admin: Any, limit: float) -> None:
        """KEDA reads no topic-less lag for a group without active members: an error."""
        group = self.meta.consumer_group
        futures = admin.describe_consumer_groups([group], request_timeout=limit)
        await self._wait(futures, limit, f"describe consumer group {group!r}")
        description = self._result(futures[group], f"describe consumer group {group!r}")
        if not description.members:
            state = getattr(description.state, "name", description.state)
            raise ScalerError(
                f"no active members in consumer group {group!r} (state {state}); without "
                "`topic` the lag is only read while the group has members",
                transient=True,
            )

    async def _cluster_partitions(self, admin: Any, limit: float) -> list[TopicPartition]:
        """Every partition of every (non-internal) topic of the cluster."""
        try:
            with anyio.fail_after(limit + 1.0):
                metadata = await anyio.to_thread.run_sync(
                    lambda: admin.list_topics(timeout=limit), abandon_on_cancel=True
                )
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"could not list the topics within {limit:g}s ({self._servers()})"
            ) from exc
        except Exception as exc:
            raise self._translate(exc, "list the topics of the cluster") from exc
        wanted: list[TopicPartition] = []
        for name in sorted(metadata.topics):
            if name in _INTERNAL_TOPICS:
                continue
            topic = metadata.topics[name]
            if topic.error is not None:
                raise self._translate(topic.error, f"read the metadata of topic {name!r}")
            wanted.extend((name, p) for p in sorted(topic.partitions))
            if len(wanted) > MAX_DISCOVERED_PARTITIONS:
                raise ScalerError(
                    f"the cluster has more than {MAX_DISCOVERED_PARTITIONS} partitions to "
                    "read without `topic`; set `topic`",
                    transient=False,
                )
        if not wanted:
            raise ScalerError("the cluster has no topic to read the lag of", transient=True)
        return wanted

    async def _fetch_committed(
        self, consumer: Any, tps: list[Any], limit: float
    ) -> dict[TopicPartition, int]:
        got = await super()._fetch_committed(consumer, tps, limit)
        if not got:
            raise ScalerError(
                f"the broker returned no committed offsets for group {self.meta.consumer_group!r}",
                transient=True,
            )
        # KEDA's apache-kafka reads a partition missing from the answer as offset 0
        return {key: got.get(key, 0) for key in _keys(tps)}


def _keys(tps: Iterable[Any]) -> list[TopicPartition]:
    return [(tp.topic, tp.partition) for tp in tps]
