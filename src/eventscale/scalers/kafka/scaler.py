"""Kafka consumer-group lag (``type: kafka``), built on confluent-kafka (librdkafka).

The semantics follow KEDA's ``kafka`` scaler (spec/scalers.md section 2): per-partition
lag, the cap at the partition count, activity on the uncapped sum, ``partitionLimitation``,
``excludePersistentLag``. Where eventscale deliberately differs:

* ``earliest`` with no committed offset counts ``log end - log start`` (the newer upstream
  rule, KEDA PR #7937), not the whole log end offset, so records deleted by retention are
  not counted as lag.
* Without ``topic``, only the topics the group has committed offsets for are read; if the
  group has committed nothing at all that is an error, never a scan of every topic of the
  cluster (KEDA issue #8104).
* A missing topic, an unreachable cluster, a refused authorization or a timeout is a
  :class:`~eventscale.errors.ScalerError`, never a lag of 0.
* The ``excludePersistentLag`` memory lives as long as the scaler object; an error in another
  trigger of the same object does not reset it (KEDA rebuilds every scaler then).

One poll sends a bounded number of requests whatever the partition count: one metadata
request, one committed-offsets request for the group and one list-offsets request per
partition leader (librdkafka groups the partitions by leader), the last two concurrently.
Clients are shared through :mod:`eventscale.scalers.kafka._pool`.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import enum
import logging
import math
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from datetime import timedelta
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.kafka._msk_iam import AwsCredentials, MskIamTokenProvider, valid_region
from eventscale.scalers.kafka._pool import (
    KERBEROS,
    POOL,
    Futures,
    KafkaClientPool,
    KafkaConnection,
    KerberosFiles,
    KerberosLogin,
    KerberosRegistry,
    librdkafka_has_gssapi,
)
from eventscale.scalers.params import AUTH, ENV, META, Params, Source, TriggerContext

__all__ = (
    "INVALID_OFFSET",
    "KafkaMetadata",
    "KafkaScaler",
    "LagTotals",
    "OffsetResetPolicy",
    "SaslMechanism",
    "TopicPartition",
    "cap_total_lag",
    "compute_lag",
    "find_factors",
    "lag_for_partition",
    "next_factor",
    "parse_kafka_metadata",
    "parse_partition_limitation",
    "select_partitions",
)

_LOG: Final = logging.getLogger("eventscale.scalers.kafka")

# Imported with the module, so resolving the `kafka` trigger type without the extra
# installed raises MissingExtraError naming `eventscale[kafka]`.
_ck: Any = import_optional("confluent_kafka", extra="kafka", what="the kafka scaler")
_ck_admin: Any = import_optional("confluent_kafka.admin", extra="kafka", what="the kafka scaler")

#: The committed offset a group has for a partition it never committed (Kafka's -1).
INVALID_OFFSET: Final = -1

#: (topic, partition)
TopicPartition = tuple[str, int]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

E = TypeVar("E", bound=enum.Enum)


class OffsetResetPolicy(enum.Enum):
    """What a partition without a committed offset counts as (``offsetResetPolicy``)."""

    LATEST = "latest"
    EARLIEST = "earliest"


class SaslMechanism(enum.Enum):
    """The ``sasl`` parameter."""

    NONE = "none"
    PLAINTEXT = "plaintext"
    SCRAM_SHA256 = "scram_sha256"
    SCRAM_SHA512 = "scram_sha512"
    OAUTHBEARER = "oauthbearer"
    GSSAPI = "gssapi"


# ---------------------------------------------------------------------------- config


def _parse_int32(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise ValueError(f"{text.strip()!r} is not an integer")
    number = int(value)
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise ValueError(f"{value!r} is out of range for a partition number")
    return number


def parse_partition_limitation(raw: str) -> tuple[int, ...] | None:
    """Parse ``partitionLimitation`` (spec 2.2): ``"1,2,5-7"`` -> ``(1, 2, 5, 6, 7)``.

    Items are comma separated and trimmed; ``a-b`` is an inclusive range (an inverted
    range gives nothing); order and duplicates are kept. A blank value means no
    limitation (``None``). :raises ValueError: on any malformed item.
    """
    if raw.strip() == "":
        return None
    out: list[int] = []
    for item in raw.split(","):
        part = item.strip()
        if "-" in part:
            pieces = part.split("-")
            if len(pieces) != 2:
                raise ValueError(f"invalid partition range {part!r}")
            low, high = _parse_int32(pieces[0]), _parse_int32(pieces[1])
            out.extend(range(low, high + 1))
        else:
            out.append(_parse_int32(part))
    return tuple(out)


_VERSION_ZERO = re.compile(r"^0\.\d+\.\d+\.\d+$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _check_version(raw: str) -> None:
    ok = len(raw) >= 5 and bool(
        _VERSION_ZERO.match(raw) if raw.startswith("0") else _VERSION.match(raw)
    )
    if not ok:
        raise ValueError(f"invalid Kafka version {raw!r}")


@attrs.frozen(kw_only=True)
class KafkaMetadata:
    """The parsed and validated metadata of one ``kafka`` trigger.

    Field names follow the KEDA parameters; see docs/scalers/kafka.md for each one.
    ``librdkafka`` holds the connection settings (TLS, SASL) as librdkafka configuration,
    secrets wrapped in :class:`~eventscale.redaction.Secret`.
    """

    bootstrap_servers: tuple[str, ...]
    consumer_group: str
    topic: str = ""
    partition_limitation: tuple[int, ...] | None = None
    lag_threshold: int = 10
    activation_lag_threshold: int = 0
    offset_reset_policy: OffsetResetPolicy = OffsetResetPolicy.LATEST
    allow_idle_consumers: bool = False
    exclude_persistent_lag: bool = False
    scale_to_zero_on_invalid_offset: bool = False
    limit_to_partitions_with_lag: bool = False
    ensure_even_distribution_of_partitions: bool = False
    full_metadata: bool = True
    version: str = "1.0.0"
    tls: bool = False
    unsafe_ssl: bool = False
    sasl: SaslMechanism = SaslMechanism.NONE
    sasl_token_provider: str = "bearer"
    timeout: timedelta = timedelta(seconds=5)
    snapshot_ttl: timedelta = timedelta(0)
    librdkafka: Mapping[str, str | Secret] = attrs.field(factory=dict, repr=False)
    #: ``sasl: gssapi``: who logs in (keytab or password, principal, krb5.conf).
    kerberos: KerberosLogin | None = attrs.field(default=None, repr=False)
    aws_region: str = ""
    #: ``aws_msk_iam`` with an access key: the token callback handed to librdkafka.
    #: ``None`` with a role ARN or the operator's identity, which eventscale cannot use.
    msk_iam: MskIamTokenProvider | None = attrs.field(default=None, repr=False)
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def capped(self) -> bool:
        """Whether the metric is capped (spec 2.5)."""
        return (
            not self.allow_idle_consumers
            or self.limit_to_partitions_with_lag
            or self.ensure_even_distribution_of_partitions
        )

    @property
    def metric_name(self) -> str:
        """``s<index>-kafka-<topic>`` or ``s<index>-kafka-<group>-topics``, normalized."""
        base = f"kafka-{self.topic}" if self.topic else f"kafka-{self.consumer_group}-topics"
        return metric_name(self.index, normalize_metric_name(base))


_SASL_LIBRDKAFKA: Final = {
    SaslMechanism.PLAINTEXT: "PLAIN",
    SaslMechanism.SCRAM_SHA256: "SCRAM-SHA-256",
    SaslMechanism.SCRAM_SHA512: "SCRAM-SHA-512",
    SaslMechanism.OAUTHBEARER: "OAUTHBEARER",
    SaslMechanism.GSSAPI: "GSSAPI",
}


def _enum(
    p: Params, name: str, enum_type: type[E], default: E, order: Sequence[Source]
) -> E | None:
    raw = p.choice(name, [str(m.value) for m in enum_type], order=order, default=default.value)
    if raw is None:
        return None
    try:
        return enum_type(raw)
    except ValueError:  # "a,b": every element is allowed but the value is not one member
        allowed = " ".join(str(m.value) for m in enum_type)
        p.fail(f'parameter "{name}": value "{raw}" must be one of [{allowed}]', name)
        return None


_KEYTAB_VERSIONS: Final = (b"\x05\x01", b"\x05\x02")


def _decode_keytab(value: Secret) -> bytes | None:
    """The keytab file a ``keytab`` secret holds (base64), or ``None`` if it holds none."""
    text = "".join(value.reveal().split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data[:2] in _KEYTAB_VERSIONS else None


def parse_kafka_metadata(ctx: TriggerContext) -> KafkaMetadata:
    """Parse and validate a ``kafka`` trigger (spec 2.1, validation order included).

    :raises ConfigError: listing every problem, each with its field path.
    """
    p = Params(ctx)
    servers = p.string_list("bootstrapServers", order=(META, ENV), required=True)
    group = p.string("consumerGroup", order=(META, ENV), required=True)
    topic = p.string("topic", order=(META, ENV), default="")
    limitation_raw = p.string("partitionLimitation", default="")
    # Params returns None for a value that failed to parse (the error is recorded).
    lag_threshold: int | None = p.integer("lagThreshold", default=10)
    activation: int | None = p.integer("activationLagThreshold", default=0)
    policy = _enum(p, "offsetResetPolicy", OffsetResetPolicy, OffsetResetPolicy.LATEST, (META,))
    allow_idle = p.boolean("allowIdleConsumers", default=False)
    exclude_persistent = p.boolean("excludePersistentLag", default=False)
    scale_to_zero = p.boolean("scaleToZeroOnInvalidOffset", default=False)
    limit_with_lag = p.boolean("limitToPartitionsWithLag", default=False)
    ensure_even = p.boolean("ensureEvenDistributionOfPartitions", default=False)
    full_metadata = p.boolean("fullMetadata", default=True)
    version: str | None = p.string("version", default="1.0.0")
    tls_raw = p.choice("tls", ("enable", "disable"), order=(META, AUTH), default="disable")
    unsafe_ssl = p.boolean("unsafeSsl", default=False)
    ca = p.secret("ca")
    cert = p.secret("cert")
    key = p.secret("key")
    key_password = p.secret("keyPassword")
    sasl = _enum(p, "sasl", SaslMechanism, SaslMechanism.NONE, (META, AUTH))
    username = p.string("username", order=(AUTH,))
    password = p.secret("password")
    token_provider = p.choice(
        "saslTokenProvider", ("bearer", "aws_msk_iam"), order=(META, AUTH), default="bearer"
    )
    scopes_raw = p.string("scopes", order=(AUTH,), default="")
    token_url = p.string("oauthTokenEndpointUri", order=(AUTH,), default="")
    extensions_raw = p.string("oauthExtensions", order=(AUTH,), default="")
    keytab = p.secret("keytab")
    realm = p.string("realm", order=(AUTH,), default="")
    kerberos_config = p.string("kerberosConfig", order=(AUTH,), default="")
    kerberos_service = p.string("kerberosServiceName", order=(AUTH,), default="kafka")
    # Read for validation only: MIT kinit never uses FAST without an armor cache.
    p.boolean("kerberosDisableFAST", order=(AUTH,), default=False)
    aws_region = p.string("awsRegion", default="")
    # AWS credentials, in the order KEDA's GetAwsAuthorization looks for them.
    aws_role_arn = p.string("awsRoleArn", order=(AUTH,), default="")
    identity_owner = p.string("identityOwner", default="")
    aws_key_source: Sequence[Source] = (AUTH,)
    aws_key_id = p.string("awsAccessKeyID", order=(AUTH,), aliases=("awsAccessKeyId",), default="")
    aws_secret = p.secret("awsSecretAccessKey")
    aws_token = p.secret("awsSessionToken")
    if not aws_key_id and identity_owner != "operator":
        aws_key_source = (META, ENV)
        aws_key_id = p.string("awsAccessKeyID", order=(META, ENV), default="")
        aws_secret = p.secret("awsSecretAccessKey", order=(ENV,))
        aws_token = None
    # eventscale extensions (not KEDA parameters)
    timeout = p.duration("timeout", default=timedelta(seconds=5))
    snapshot_ttl = p.duration("snapshotTTL", default=timedelta(0))

    tls = tls_raw == "enable"
    if tls_raw not in (None, "enable", "disable"):
        p.fail(f'parameter "tls": value "{tls_raw}" must be one of [enable disable]', "tls")
    if token_provider not in (None, "bearer", "aws_msk_iam"):
        p.fail("saslTokenProvider must be one of [bearer aws_msk_iam]", "saslTokenProvider")
    if timeout is not None and timeout <= timedelta(0):
        p.fail("timeout must be positive", "timeout")

    # KEDA's Validate(): the first failing check wins.
    limitation: tuple[int, ...] | None = None

    def validate() -> tuple[str, str, Any] | None:
        nonlocal limitation
        if lag_threshold is not None and lag_threshold <= 0:
            return ('"lagThreshold" must be positive number', "lagThreshold", META)
        if activation is not None and activation < 0:
            return ('"activationLagThreshold" must be >= 0', "activationLagThreshold", META)
        if limitation_raw.strip():
            try:
                limitation = parse_partition_limitation(limitation_raw)
            except ValueError as exc:
                return (f"partitionLimitation: {exc}", "partitionLimitation", META)
        if not topic:
            limitation = None
        if allow_idle and limit_with_lag:
            return (
                "allowIdleConsumers and limitToPartitionsWithLag cannot both be true",
                "limitToPartitionsWithLag",
                META,
            )
        if limit_with_lag and not topic:
            return ("limitToPartitionsWithLag needs a topic", "limitToPartitionsWithLag", META)
        if limit_with_lag and ensure_even:
            return (
                (
                    "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions "
                    "cannot both be true"
                ),
                "ensureEvenDistributionOfPartitions",
                META,
            )
        if ensure_even and not topic:
            return (
                "ensureEvenDistributionOfPartitions needs a topic",
                "ensureEvenDistributionOfPartitions",
                META,
            )
        if full_metadata is False and not topic:
            return ("fullMetadata=false needs a topic", "fullMetadata", META)
        if tls and bool(cert) != bool(key):
            which = "key" if cert else "cert"
            return (f"tls=enable with only one of cert/key: {which} is missing", which, AUTH)
        return _validate_sasl()

    def _validate_sasl() -> tuple[str, str, Any] | None:
        if sasl in (
            SaslMechanism.PLAINTEXT,
            SaslMechanism.SCRAM_SHA256,
            SaslMechanism.SCRAM_SHA512,
        ):
            if not username:
                return ("sasl needs a username", "username", AUTH)
            if not password:
                return ("sasl needs a password", "password", AUTH)
        elif sasl is SaslMechanism.OAUTHBEARER:
            if token_provider == "aws_msk_iam":
                if not tls:
                    return ("sasl aws_msk_iam needs tls=enable", "tls", META)
                if not aws_region:
                    return ("sasl aws_msk_iam needs awsRegion", "awsRegion", META)
                if aws_role_arn or identity_owner == "operator":
                    return None
                if not aws_key_id:
                    return (
                        "sasl aws_msk_iam needs AWS credentials (awsAccessKeyID)",
                        "awsAccessKeyID",
                        aws_key_source[0],
                    )
                if not aws_secret:
                    return (
                        "sasl aws_msk_iam: awsSecretAccessKey not found",
                        "awsSecretAccessKey",
                        aws_key_source[-1],
                    )
            else:
                if not username:
                    return ("sasl oauthbearer needs a username", "username", AUTH)
                if not password:
                    return ("sasl oauthbearer needs a password", "password", AUTH)
                if not token_url:
                    return (
                        "sasl oauthbearer needs oauthTokenEndpointUri",
                        "oauthTokenEndpointUri",
                        AUTH,
                    )
                for element in extensions_raw.split(",") if extensions_raw else ():
                    if element.count("=") != 1:
                        return (
                            "oauthExtensions must be k=v pairs separated by commas",
                            "oauthExtensions",
                            AUTH,
                        )
        elif sasl is SaslMechanism.GSSAPI:
            if not username:
                return ("sasl gssapi needs a username", "username", AUTH)
            if bool(password) == bool(keytab):
                return ("sasl gssapi needs exactly one of password and keytab", "password", AUTH)
            if not realm:
                return ("sasl gssapi needs a realm", "realm", AUTH)
            if not kerberos_config:
                return ("sasl gssapi needs kerberosConfig", "kerberosConfig", AUTH)
        return None

    problem = validate()
    if problem is not None:
        reason, name, source = problem
        p.fail(reason, name, source)
    keytab_bytes: bytes | None = None
    if problem is None and sasl is SaslMechanism.GSSAPI and keytab:
        keytab_bytes = _decode_keytab(keytab)
        if keytab_bytes is None:
            p.fail(
                "keytab must be the base64 encoding of a keytab file "
                "(eventscale secrets are text; the value is not shown)",
                "keytab",
                AUTH,
            )
    if version is not None:
        try:
            _check_version(version)
        except ValueError as exc:
            p.fail(str(exc), "version")
    p.finish()

    assert servers is not None  # finish() raised otherwise
    assert group is not None
    conf: dict[str, str | Secret] = {"bootstrap.servers": ",".join(servers)}
    if tls:
        if ca:
            conf["ssl.ca.pem"] = ca
        if cert:
            conf["ssl.certificate.pem"] = cert
        if key:
            conf["ssl.key.pem"] = key
        if key_password:
            conf["ssl.key.password"] = key_password
        if unsafe_ssl:
            conf["enable.ssl.certificate.verification"] = "false"
            conf["ssl.endpoint.identification.algorithm"] = "none"
    if sasl is None:  # only when finish() already raised; keeps the type checker informed
        sasl = SaslMechanism.NONE
    if sasl is not SaslMechanism.NONE:
        conf["sasl.mechanism"] = _SASL_LIBRDKAFKA[sasl]
        if sasl is SaslMechanism.OAUTHBEARER and token_provider == "aws_msk_iam":
            pass  # the token comes from MskIamTokenProvider (oauth_cb), added at build
        elif sasl is SaslMechanism.OAUTHBEARER:
            conf["sasl.oauthbearer.method"] = "oidc"
            conf["sasl.oauthbearer.client.id"] = username or ""
            if password:
                conf["sasl.oauthbearer.client.secret"] = password
            conf["sasl.oauthbearer.token.endpoint.url"] = token_url
            if scopes_raw:
                conf["sasl.oauthbearer.scope"] = " ".join(scopes_raw.split(","))
            if extensions_raw:
                conf["sasl.oauthbearer.extensions"] = extensions_raw
        elif sasl is SaslMechanism.GSSAPI:
            conf["sasl.kerberos.service.name"] = kerberos_service
            conf["sasl.kerberos.principal"] = f"{username}@{realm}"
            # librdkafka runs the kinit command (set when the scaler writes the files)
            # at start and then every minute; a ticket is renewed well before it expires.
        else:
            conf["sasl.username"] = username or ""
            if password:
                conf["sasl.password"] = password
    conf["security.protocol"] = {
        (False, False): "PLAINTEXT",
        (True, False): "SSL",
        (False, True): "SASL_PLAINTEXT",
        (True, True): "SASL_SSL",
    }[(tls, sasl is not SaslMechanism.NONE)]

    kerberos: KerberosLogin | None = None
    if sasl is SaslMechanism.GSSAPI:
        kerberos = KerberosLogin(
            principal=f"{username}@{realm}",
            config=kerberos_config,
            keytab=keytab_bytes,
            password=None if keytab_bytes is not None else password,
        )
    msk_iam: MskIamTokenProvider | None = None
    if (
        sasl is SaslMechanism.OAUTHBEARER
        and token_provider == "aws_msk_iam"
        and not aws_role_arn
        and aws_key_id
        and aws_secret
    ):
        msk_iam = MskIamTokenProvider(aws_region, AwsCredentials(aws_key_id, aws_secret, aws_token))
    return KafkaMetadata(
        bootstrap_servers=servers,
        consumer_group=group,
        topic=topic,
        partition_limitation=limitation,
        lag_threshold=lag_threshold if lag_threshold is not None else 10,
        activation_lag_threshold=activation or 0,
        offset_reset_policy=policy or OffsetResetPolicy.LATEST,
        allow_idle_consumers=bool(allow_idle),
        exclude_persistent_lag=bool(exclude_persistent),
        scale_to_zero_on_invalid_offset=bool(scale_to_zero),
        limit_to_partitions_with_lag=bool(limit_with_lag),
        ensure_even_distribution_of_partitions=bool(ensure_even),
        full_metadata=full_metadata is not False,
        version=version or "1.0.0",
        tls=tls,
        unsafe_ssl=bool(unsafe_ssl),
        sasl=sasl,
        sasl_token_provider=token_provider or "bearer",
        timeout=timeout or timedelta(seconds=5),
        snapshot_ttl=snapshot_ttl or timedelta(0),
        librdkafka=conf,
        kerberos=kerberos,
        aws_region=aws_region,
        msk_iam=msk_iam,
        index=ctx.index,
        metric_type=ctx.metric_type,
    )


# ---------------------------------------------------------------------------- lag (pure)


def lag_for_partition(
    topic: str,
    partition: int,
    committed: int | None,
    latest_offsets: Mapping[str, Mapping[int, int]],
    *,
    policy: OffsetResetPolicy = OffsetResetPolicy.LATEST,
    scale_to_zero_on_invalid_offset: bool = False,
    earliest_offsets: Mapping[TopicPartition, int] | None = None,
    exclude_persistent_lag: bool = False,
    previous_offsets: MutableMapping[TopicPartition, int] | None = None,
) -> tuple[int, int]:
    """``(lag, lag_with_persistent)`` of one partition (spec 2.4, with the 2.6a rule).

    ``committed`` is the group's committed offset (:data:`INVALID_OFFSET` when there is
    none); ``None`` means the broker gave no answer for the partition, which is an error.
    ``earliest_offsets`` holds log start offsets; where one is missing, ``earliest`` with
    no commit falls back to the log end offset. ``previous_offsets`` is the
    ``excludePersistentLag`` memory and is updated in place.

    :raises ScalerError: when ``committed`` is ``None``.
    """
    if committed is None:
        raise ScalerError(
            f"no committed-offset answer for topic {topic!r} partition {partition}",
            transient=True,
        )
    if committed == INVALID_OFFSET:
        if policy is OffsetResetPolicy.LATEST:
            return (0, 0) if scale_to_zero_on_invalid_offset else (1, 1)
        if scale_to_zero_on_invalid_offset:
            return (0, 0)
    partitions = latest_offsets.get(topic)
    if partitions is None or partition not in partitions:
        return (0, 0)
    latest = partitions[partition]
    if committed == INVALID_OFFSET:
        start = (earliest_offsets or {}).get((topic, partition))
        lag = latest - start if start is not None else latest
        return (lag, lag)
    if exclude_persistent_lag and previous_offsets is not None:
        seen = previous_offsets.get((topic, partition))
        if seen is not None and seen == committed:
            return (0, latest - committed)
        previous_offsets[(topic, partition)] = committed
    lag = latest - committed
    return (lag, lag)


@attrs.frozen(kw_only=True)
class LagTotals:
    """The sums of one poll before capping (spec 2.3 step 3)."""

    total_lag: int
    total_lag_with_persistent: int
    partitions: int
    partitions_with_lag: int
    per_partition: Mapping[TopicPartition, tuple[int, int]] = attrs.field(factory=dict)


def compute_lag(
    committed: Mapping[TopicPartition, int],
    latest_offsets: Mapping[str, Mapping[int, int]],
    *,
    policy: OffsetResetPolicy = OffsetResetPolicy.LATEST,
    scale_to_zero_on_invalid_offset: bool = False,
    earliest_offsets: Mapping[TopicPartition, int] | None = None,
    exclude_persistent_lag: bool = False,
    previous_offsets: MutableMapping[TopicPartition, int] | None = None,
) -> LagTotals:
    """Sum :func:`lag_for_partition` over every partition in ``latest_offsets``.

    A partition of ``latest_offsets`` that is missing from ``committed`` is an error.
    """
    total = total_persistent = count = with_lag = 0
    per: dict[TopicPartition, tuple[int, int]] = {}
    for topic, partitions in latest_offsets.items():
        for partition in partitions:
            lag, persistent = lag_for_partition(
                topic,
                partition,
                committed.get((topic, partition)),
                latest_offsets,
                policy=policy,
                scale_to_zero_on_invalid_offset=scale_to_zero_on_invalid_offset,
                earliest_offsets=earliest_offsets,
                exclude_persistent_lag=exclude_persistent_lag,
                previous_offsets=previous_offsets,
            )
            per[(topic, partition)] = (lag, persistent)
            total += lag
            total_persistent += persistent
            count += 1
            if lag > 0:
                with_lag += 1
    return LagTotals(
        total_lag=total,
        total_lag_with_persistent=total_persistent,
        partitions=count,
        partitions_with_lag=with_lag,
        per_partition=per,
    )


def select_partitions(
    topic: str, partitions: Iterable[int], limitation: Sequence[int] | None
) -> list[int]:
    """The partitions of ``topic`` to read: all, or those ``partitionLimitation`` allows.

    :raises ScalerError: when none is left.
    """
    ids = sorted(partitions)
    if limitation is not None:
        allowed = set(limitation)
        ids = [i for i in ids if i in allowed]
    if not ids:
        raise ScalerError(
            f"expected at least one active partition within the topic {topic!r}",
            transient=False,
        )
    return ids


def find_factors(n: int) -> list[int]:
    """Every divisor of ``n`` in ascending order (``find_factors(10) == [1, 2, 5, 10]``)."""
    if n < 1:
        return []
    small: list[int] = []
    large: list[int] = []
    for i in range(1, math.isqrt(n) + 1):
        if n % i == 0:
            small.append(i)
            if i != n // i:
                large.append(n // i)
    return small + large[::-1]


def next_factor(total_lag: int, partitions: int, lag_threshold: int) -> int:
    """The smallest divisor ``f`` of ``partitions`` with ``f * lag_threshold >= total_lag``."""
    for factor in find_factors(partitions):
        if factor * lag_threshold >= total_lag:
            return factor
    return partitions


def cap_total_lag(totals: LagTotals, meta: KafkaMetadata) -> int:
    """The metric value after capping (spec 2.5); activity uses the uncapped sum."""
    total = totals.total_lag
    if not meta.capped:
        return total
    upper = totals.partitions
    if meta.ensure_even_distribution_of_partitions:
        factor = next_factor(total, totals.partitions, meta.lag_threshold)
        total = factor * meta.lag_threshold
    if meta.limit_to_partitions_with_lag:
        upper = totals.partitions_with_lag
    # Go's integer division truncates toward zero.
    quotient = int(total / meta.lag_threshold)
    if quotient > upper:
        total = upper * meta.lag_threshold
    return total


# ---------------------------------------------------------------------------- I/O

_NOT_TRANSIENT_CODES: Final = frozenset(
    {
        "UNKNOWN_TOPIC_OR_PART",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "_SSL",
        "INVALID_GROUP_ID",
        "GROUP_ID_NOT_FOUND",
        "_INVALID_ARG",
        "_UNSUPPORTED_FEATURE",
    }
)
_DISCOVERY_REQUEST_TIMEOUT: Final = 300.0
_TIMEOUT_CODES: Final = frozenset({"_TIMED_OUT", "REQUEST_TIMED_OUT", "_TIMED_OUT_QUEUE"})


class KafkaScaler(ScalerBase):
    """Scales on the lag of a Kafka consumer group (``type: kafka``).

    Build it with :meth:`from_context` (KEDA metadata) or from a :class:`KafkaMetadata`.
    The admin client is shared with every other scaler on the same cluster connection
    settings and created at the first poll; :meth:`aclose` gives it back.
    """

    def __init__(
        self,
        meta: KafkaMetadata,
        *,
        pool: KafkaClientPool = POOL,
        kerberos: KerberosRegistry = KERBEROS,
        ctx: TriggerContext | None = None,
    ) -> None:
        self.meta = meta
        self._pool = pool
        self._kerberos = kerberos
        self._identity = ctx.identity if ctx is not None else f"kafka[{meta.index}]"
        self._previous_offsets: dict[TopicPartition, int] = {}
        settings: dict[str, Any] = dict(meta.librdkafka)
        secrets = [v for v in meta.librdkafka.values() if isinstance(v, Secret)]
        self._kerberos_files: KerberosFiles | None = None
        if meta.sasl is SaslMechanism.GSSAPI:
            files = self._kerberos_files = _kerberos_files(meta, kerberos, ctx)
            settings["sasl.kerberos.kinit.cmd"] = files.kinit_command
            if files.keytab_path is not None:
                settings["sasl.kerberos.keytab"] = str(files.keytab_path)
            if files.login.password is not None:
                secrets.append(files.login.password)
        elif meta.sasl is SaslMechanism.OAUTHBEARER and meta.sasl_token_provider == "aws_msk_iam":
            provider = _msk_iam_provider(meta, ctx)
            settings["oauth_cb"] = provider
            secrets.extend(provider.credentials.secrets())
        self._secrets = secrets
        self._conn: KafkaConnection | None = pool.acquire(settings)

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> KafkaScaler:
        """Parse ``ctx`` and build the scaler.

        :raises ConfigError: bad metadata, or a SASL setup this process cannot use
            (GSSAPI without GSSAPI in librdkafka or with a second Kerberos login,
            ``aws_msk_iam`` without an access key).
        """
        return cls(parse_kafka_metadata(ctx), ctx=ctx)

    @property
    def connection(self) -> KafkaConnection | None:
        """The shared connection this scaler holds (``None`` once closed)."""
        return self._conn

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: the (capped) lag, target ``lagThreshold``."""
        return (
            MetricSpec(
                name=self.meta.metric_name,
                target=self.meta.lag_threshold,
                metric_type=self.meta.metric_type,
                activation_target=self.meta.activation_lag_threshold,
            ),
        )

    async def aclose(self) -> None:
        """Release the shared client; the last scaler on a connection destroys it.

        With ``sasl: gssapi`` the last scaler of the Kerberos login also deletes its
        keytab (or password), krb5.conf and ticket cache files.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        box = self._pool.release(conn)
        try:
            if box:
                await anyio.to_thread.run_sync(_destroy, box)
        finally:
            files, self._kerberos_files = self._kerberos_files, None
            if files is not None:
                self._kerberos.release(files)

    # -- one poll ------------------------------------------------------------------

    async def get_metrics(self) -> ScalerReport:
        """Poll the cluster once. :raises ScalerError: on any failure (never lag 0)."""
        totals = await self.get_lag()
        value = cap_total_lag(totals, self.meta)
        return ScalerReport.single(
            self.meta.metric_name,
            float(value),
            is_active=totals.total_lag_with_persistent > self.meta.activation_lag_threshold,
        )

    async def get_lag(self) -> LagTotals:
        """Read the offsets and compute the uncapped lag totals (with per-partition detail)."""
        conn = self._conn
        if conn is None:
            raise ScalerError("the kafka scaler is closed", trigger=self._identity, transient=False)
        try:
            totals = await self._get_lag(conn)
        except ScalerError as exc:
            raise exc.with_trigger(self._identity) from exc.__cause__
        finally:
            conn.serve_logs()
        conn.clear_auth_error()
        return totals

    async def _get_lag(self, conn: KafkaConnection) -> LagTotals:
        ck, ck_admin = _ck, _ck_admin
        # Creating a client can block (an OAUTHBEARER callback runs in the constructor).
        admin = conn.admin() if conn.admin_created else await anyio.to_thread.run_sync(conn.admin)
        meta = self.meta
        timeout = meta.timeout.total_seconds()
        ttl = meta.snapshot_ttl.total_seconds()
        group = meta.consumer_group

        # 1. which topics (and, without a topic, what the group has committed)
        committed_all: dict[TopicPartition, int] | None = None
        if meta.topic:
            topics = [meta.topic]
        else:
            request = ck.ConsumerGroupTopicPartitions(group)
            # librdkafka's own request timeout is kept long on purpose: when an admin group
            # request times out inside librdkafka during an outage, librdkafka 2.16 aborts
            # the process once the broker is back. This call gives up after `timeout`.
            futures = admin.list_consumer_group_offsets(
                [request], request_timeout=max(timeout, _DISCOVERY_REQUEST_TIMEOUT)
            )
            await self._wait(futures, timeout, "read the committed offsets of the group")
            committed_all = self._committed(futures, group)
            topics = sorted({t for t, _ in committed_all})
            if not topics:
                raise ScalerError(
                    f"consumer group {group!r} has no committed offsets, so its topics are "
                    "unknown; set `topic` (eventscale never scans every topic of the cluster)",
                    transient=True,
                )

        # 2. metadata: the partitions of each topic
        topic_key = ("describe", tuple(topics))
        described = conn.shared(
            topic_key,
            ttl,
            lambda: admin.describe_topics(ck.TopicCollection(topics), request_timeout=timeout),
        )
        await self._wait(described, timeout, "read the topic metadata")
        wanted: list[TopicPartition] = []
        for topic in topics:
            description = self._result(described[topic], f"describe topic {topic!r}")
            ids = select_partitions(
                topic, [p.id for p in description.partitions], meta.partition_limitation
            )
            wanted.extend((topic, i) for i in ids)

        # 3. committed and log end (and log start) offsets, concurrently
        tps = [ck.TopicPartition(t, p) for t, p in wanted]
        offsets_key = tuple(wanted)
        spec = ck_admin.OffsetSpec
        latest_futures = conn.shared(
            ("latest", offsets_key),
            ttl,
            lambda: admin.list_offsets({tp: spec.latest() for tp in tps}, request_timeout=timeout),
        )
        earliest_futures: Futures | None = None
        if (
            meta.offset_reset_policy is OffsetResetPolicy.EARLIEST
            and not meta.scale_to_zero_on_invalid_offset
        ):
            earliest_futures = conn.shared(
                ("earliest", offsets_key),
                ttl,
                lambda: admin.list_offsets(
                    {tp: spec.earliest() for tp in tps}, request_timeout=timeout
                ),
            )
        if committed_all is None:
            # the list-offsets requests are in flight meanwhile
            consumer = (
                conn.consumer(group)
                if conn.consumer_created(group)
                else await anyio.to_thread.run_sync(conn.consumer, group)
            )
            committed = await self._fetch_committed(consumer, tps, timeout)
        else:
            committed = {tp: committed_all.get(tp, INVALID_OFFSET) for tp in wanted}
        await self._wait(latest_futures, timeout, "read the log end offsets")
        latest: dict[str, dict[int, int]] = {}
        for tp, future in latest_futures.items():
            info = self._result(future, f"list offsets of {tp.topic!r}")
            latest.setdefault(tp.topic, {})[tp.partition] = int(info.offset)
        earliest: dict[TopicPartition, int] | None = None
        if earliest_futures is not None:
            earliest = await self._earliest(earliest_futures, committed, timeout)

        memory = dict(self._previous_offsets)
        totals = compute_lag(
            committed,
            latest,
            policy=meta.offset_reset_policy,
            scale_to_zero_on_invalid_offset=meta.scale_to_zero_on_invalid_offset,
            earliest_offsets=earliest,
            exclude_persistent_lag=meta.exclude_persistent_lag,
            previous_offsets=memory,
        )
        self._previous_offsets = memory
        return totals

    async def _earliest(
        self,
        futures: Futures,
        committed: Mapping[TopicPartition, int],
        limit: float,
    ) -> dict[TopicPartition, int] | None:
        # Only partitions without a commit need their log start; if that read fails the
        # lag falls back to the log end offset, as upstream KEDA does.
        needed = {
            tp: f
            for tp, f in futures.items()
            if committed.get((tp.topic, tp.partition)) == INVALID_OFFSET
        }
        if not needed:
            return {}
        try:
            await self._wait(needed, limit, "read the log start offsets")
            return {
                (tp.topic, tp.partition): int(self._result(f, "list earliest offsets").offset)
                for tp, f in needed.items()
            }
        except ScalerError as exc:
            _LOG.warning(
                "%s: log start offsets unavailable, using log end: %s", self._identity, exc
            )
            return None

    async def _fetch_committed(
        self, consumer: Any, tps: list[Any], limit: float
    ) -> dict[TopicPartition, int]:
        group = self.meta.consumer_group
        try:
            with anyio.fail_after(limit + 1.0):
                got = await anyio.to_thread.run_sync(
                    lambda: consumer.committed(tps, timeout=limit), abandon_on_cancel=True
                )
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"could not read the committed offsets of group {group!r} within {limit:g}s "
                f"({self._servers()})"
            ) from exc
        except Exception as exc:
            raise self._translate(exc, f"read the committed offsets of group {group!r}") from exc
        return self._committed_list(got)

    def _committed(self, futures: Futures, group: str) -> dict[TopicPartition, int]:
        result = self._result(futures[group], f"read committed offsets of group {group!r}")
        return self._committed_list(result.topic_partitions)

    def _committed_list(self, tps: Iterable[Any]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            if tp.error is not None:
                raise self._translate(tp.error, f"committed offset of {tp.topic!r}/{tp.partition}")
            out[(tp.topic, tp.partition)] = int(tp.offset) if tp.offset >= 0 else INVALID_OFFSET
        return out

    async def _wait(
        self,
        futures: Futures | Iterable[concurrent.futures.Future[Any]],
        limit: float,
        what: str,
    ) -> None:
        items = list(futures.values() if isinstance(futures, Mapping) else futures)
        if all(f.done() for f in items):
            return

        def wait() -> int:
            _, not_done = concurrent.futures.wait(
                items, timeout=limit + 1.0, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            return len(not_done)

        failed = next((f for f in items if f.done() and f.exception() is not None), None)
        if failed is None:
            left = await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
            failed = next((f for f in items if f.done() and f.exception() is not None), None)
            if failed is None and left:
                refused = self._refused(what)
                if refused is not None:
                    raise refused
                raise ScalerTimeout(
                    f"could not {what} within {limit:g}s ({self._servers()})", transient=True
                )
        if failed is not None:
            self._result(failed, what)

    def _result(self, future: concurrent.futures.Future[Any], what: str) -> Any:
        try:
            return future.result(timeout=0)
        except concurrent.futures.TimeoutError as exc:  # not done: caller's wait timed out
            raise ScalerTimeout(f"could not {what}: timed out ({self._servers()})") from exc
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _servers(self) -> str:
        return "bootstrap servers " + redact_text(
            ",".join(self.meta.bootstrap_servers), self._secrets
        )

    def _refused(self, what: str) -> ScalerError | None:
        """A non-transient error if librdkafka reported that the brokers refused to
        authenticate this client (its requests then merely time out)."""
        conn = self._conn
        if conn is None:
            return None
        conn.serve_logs()  # runs librdkafka's error callback
        if conn.auth_error is None:
            return None
        name, text = conn.auth_error
        return ScalerError(
            redact_text(
                f"could not {what}: the brokers refused authentication: {name}: {text} "
                f"({self._servers()})",
                self._secrets,
            ),
            transient=False,
        )

    def _translate(self, exc: object, what: str) -> ScalerError:
        # a KafkaException wraps a KafkaError; a per-partition error is a bare KafkaError
        args = getattr(exc, "args", None)
        error: Any = args[0] if args else exc
        name = error.name() if hasattr(error, "name") else type(error).__name__
        text = error.str() if hasattr(error, "str") else str(error)
        message = redact_text(
            f"could not {what}: {name}: {text} ({self._servers()})", self._secrets
        )
        if name == "UNKNOWN_TOPIC_OR_PART":
            message = redact_text(
                f"could not {what}: the topic does not exist ({name}, {self._servers()})",
                self._secrets,
            )
        if name in _TIMEOUT_CODES:
            return self._refused(what) or ScalerTimeout(message, transient=True)
        return ScalerError(message, transient=name not in _NOT_TRANSIENT_CODES)


def _path(ctx: TriggerContext | None, name: str, *, auth: bool = False) -> str:
    if ctx is None:
        return name
    return ctx.auth_path(name) if auth else ctx.metadata_path(name)


def _kerberos_files(
    meta: KafkaMetadata, registry: KerberosRegistry, ctx: TriggerContext | None
) -> KerberosFiles:
    if not librdkafka_has_gssapi():
        raise ConfigError(
            "sasl gssapi needs a librdkafka built with GSSAPI (Cyrus SASL), and the one "
            f"confluent-kafka loaded here (librdkafka {_ck.libversion()[0]}) was built "
            "without it, as the confluent-kafka wheels on PyPI are; to use Kerberos, build "
            "confluent-kafka from source (pip install --no-binary confluent-kafka) against "
            "a librdkafka of the same version built with libsasl2",
            path=_path(ctx, "sasl"),
        )
    if meta.kerberos is None:  # parse_kafka_metadata always sets it for gssapi
        raise ConfigError("sasl gssapi without a Kerberos login", path=_path(ctx, "sasl"))
    return registry.acquire(meta.kerberos, path=_path(ctx, "kerberosConfig", auth=True))


def _msk_iam_provider(meta: KafkaMetadata, ctx: TriggerContext | None) -> MskIamTokenProvider:
    if meta.msk_iam is None:
        raise ConfigError(
            "sasl aws_msk_iam: eventscale signs MSK tokens with an access key "
            "(awsAccessKeyID, awsSecretAccessKey and, for temporary credentials, "
            "awsSessionToken); a role ARN (awsRoleArn), pod identity or the operator's "
            "own identity needs the AWS SDK's credential chain and STS, which eventscale "
            "does not include",
            path=_path(ctx, "awsRoleArn", auth=True),
        )
    if not valid_region(meta.aws_region):
        raise ConfigError(
            f"awsRegion {meta.aws_region!r} is not an AWS region name",
            path=_path(ctx, "awsRegion"),
        )
    return meta.msk_iam


def _destroy(box: list[Any]) -> None:
    # Closing consumers and dropping the last reference to the admin client destroys the
    # librdkafka handles (it may block briefly), so it happens in a worker thread.
    for client in box:
        close = getattr(client, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # a failed close must not hide the others
                _LOG.debug("closing a kafka client failed: %s", exc)
    box.clear()
