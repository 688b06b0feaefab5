"""The settings of one ``kafka`` trigger: :class:`KafkaMetadata` and how it is parsed.

:meth:`KafkaMetadata.from_context` reads the KEDA parameters in groups (topic and
partition selection, lag rules, protocol, TLS, SASL, eventscale's extensions), then runs
KEDA's validation, where the first failing check wins (``parseKafkaMetadata`` and
``Validate`` in KEDA's ``pkg/scalers/kafka_scaler.go``), and finally maps the connection
settings to librdkafka configuration. docs/scalers/kafka.md describes every parameter.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final, Self, TypeVar

import attrs

from eventscale.errors import join_path
from eventscale.metrics import MetricType, metric_name, normalize_metric_name
from eventscale.redaction import Secret
from eventscale.scalers.kafka._aws_identity import AwsCredentialChain
from eventscale.scalers.kafka._msk_iam import AwsCredentials, MskIamTokenProvider
from eventscale.scalers.kafka._pool import KerberosLogin
from eventscale.scalers.params import AUTH, ENV, META, Params, Source, TriggerContext

__all__ = (
    "KafkaMetadata",
    "OffsetResetPolicy",
    "SaslMechanism",
    "parse_kafka_metadata",
    "parse_partition_limitation",
)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_E = TypeVar("_E", bound=enum.Enum)


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


def _parse_int32(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise ValueError(f"{text.strip()!r} is not an integer")
    number = int(value)
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise ValueError(f"{value!r} is out of range for a partition number")
    return number


def parse_partition_limitation(raw: str) -> tuple[int, ...] | None:
    """Parse ``partitionLimitation``: ``"1,2,5-7"`` -> ``(1, 2, 5, 6, 7)``.

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
    secrets wrapped in :class:`~eventscale.redaction.Secret`. Build it from KEDA metadata
    with :meth:`from_context`.
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
    #: The trigger's field path (:attr:`TriggerContext.path`): the errors the scaler
    #: raises while it is built name ``<path>.metadata.<parameter>``.
    path: str | None = None

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> Self:
        """Parse and validate a ``kafka`` trigger, in KEDA's validation order.

        :raises ConfigError: listing every problem, each with its field path.
        """
        p = Params(ctx)
        # Read in KEDA's order: the collected errors are listed in reading order.
        selection = _Selection.read(p)
        rules = _LagRules.read(p)
        protocol = _Protocol.read(p)
        tls = _Tls.read(p)
        sasl = _Sasl.read(p)
        # eventscale extensions (not KEDA parameters)
        timeout = p.duration("timeout", default=timedelta(seconds=5))
        snapshot_ttl = p.duration("snapshotTTL", default=timedelta(0))

        if tls.raw not in (None, "enable", "disable"):
            p.fail(f'parameter "tls": value "{tls.raw}" must be one of [enable disable]', "tls")
        if sasl.token_provider not in (None, "bearer", "aws_msk_iam"):
            p.fail("saslTokenProvider must be one of [bearer aws_msk_iam]", "saslTokenProvider")
        if timeout is not None and timeout <= timedelta(0):
            p.fail("timeout must be positive", "timeout")

        # KEDA's Validate(): the first failing check wins.
        problem = (
            rules.check_thresholds()
            or selection.check_limitation()
            or _check_topic_rules(selection, rules, protocol)
            or tls.check()
            or sasl.check(tls=tls.enabled)
        )
        if problem is not None:
            reason, name, source = problem
            p.fail(reason, name, source)
        keytab: bytes | None = None
        if problem is None and sasl.mechanism is SaslMechanism.GSSAPI and sasl.keytab:
            keytab = _decode_keytab(sasl.keytab)
            if keytab is None:
                p.fail(
                    "keytab must be the base64 encoding of a keytab file "
                    "(eventscale secrets are text; the value is not shown)",
                    "keytab",
                    AUTH,
                )
        if protocol.version is not None:
            try:
                _check_version(protocol.version)
            except ValueError as exc:
                p.fail(str(exc), "version")
        p.finish()

        assert selection.servers is not None  # finish() raised otherwise
        assert selection.group is not None
        mechanism = sasl.mechanism or SaslMechanism.NONE  # None only if finish() raised
        conf: dict[str, str | Secret] = {"bootstrap.servers": ",".join(selection.servers)}
        conf.update(tls.librdkafka())
        conf.update(sasl.librdkafka())
        conf["security.protocol"] = {
            (False, False): "PLAINTEXT",
            (True, False): "SSL",
            (False, True): "SASL_PLAINTEXT",
            (True, True): "SASL_SSL",
        }[(tls.enabled, mechanism is not SaslMechanism.NONE)]
        return cls(
            bootstrap_servers=selection.servers,
            consumer_group=selection.group,
            topic=selection.topic,
            partition_limitation=selection.limitation(),
            lag_threshold=rules.lag_threshold if rules.lag_threshold is not None else 10,
            activation_lag_threshold=rules.activation or 0,
            offset_reset_policy=rules.policy or OffsetResetPolicy.LATEST,
            allow_idle_consumers=bool(rules.allow_idle),
            exclude_persistent_lag=bool(rules.exclude_persistent),
            scale_to_zero_on_invalid_offset=bool(rules.scale_to_zero),
            limit_to_partitions_with_lag=bool(rules.limit_with_lag),
            ensure_even_distribution_of_partitions=bool(rules.ensure_even),
            full_metadata=protocol.full_metadata is not False,
            version=protocol.version or "1.0.0",
            tls=tls.enabled,
            unsafe_ssl=bool(tls.unsafe_ssl),
            sasl=mechanism,
            sasl_token_provider=sasl.token_provider or "bearer",
            timeout=timeout or timedelta(seconds=5),
            snapshot_ttl=snapshot_ttl or timedelta(0),
            librdkafka=conf,
            kerberos=sasl.kerberos_login(keytab),
            aws_region=sasl.aws_region,
            msk_iam=sasl.msk_iam(),
            index=ctx.index,
            metric_type=ctx.metric_type,
            path=ctx.path,
        )

    @property
    def capped(self) -> bool:
        """Whether the metric is capped at the partition count (docs/scalers/kafka.md)."""
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

    def field_path(self, name: str, *, auth: bool = False) -> str:
        """The field path of parameter ``name`` (an auth parameter with ``auth=True``)."""
        where = f"authenticationRef.{name}" if auth else f"metadata.{name}"
        return join_path(self.path, where) or where


def parse_kafka_metadata(ctx: TriggerContext) -> KafkaMetadata:
    """Parse and validate a ``kafka`` trigger: :meth:`KafkaMetadata.from_context`.

    :raises ConfigError: listing every problem, each with its field path.
    """
    return KafkaMetadata.from_context(ctx)


# ---------------------------------------------------------------------------- groups

#: A failed KEDA validation check: (message, parameter, where it is read from).
_Problem = tuple[str, str, Source]


def _enum(
    p: Params, name: str, enum_type: type[_E], default: _E, order: Sequence[Source]
) -> _E | None:
    raw = p.choice(name, [str(m.value) for m in enum_type], order=order, default=default.value)
    if raw is None:
        return None
    try:
        return enum_type(raw)
    except ValueError:  # "a,b": every element is allowed but the value is not one member
        allowed = " ".join(str(m.value) for m in enum_type)
        p.fail(f'parameter "{name}": value "{raw}" must be one of [{allowed}]', name)
        return None


# Params returns None for a value that failed to parse (the error is recorded), so the
# fields of the groups below may be None where the parameter has a default.


@attrs.frozen
class _Selection:
    """Where the lag is read: the cluster, the group, the topic and its partitions."""

    servers: tuple[str, ...] | None
    group: str | None
    topic: str
    limitation_raw: str

    @classmethod
    def read(cls, p: Params) -> _Selection:
        return cls(
            servers=p.string_list("bootstrapServers", order=(META, ENV), required=True),
            group=p.string("consumerGroup", order=(META, ENV), required=True),
            topic=p.string("topic", order=(META, ENV), default=""),
            limitation_raw=p.string("partitionLimitation", default=""),
        )

    def check_limitation(self) -> _Problem | None:
        # checked with or without a topic; without one the limitation is then dropped
        if self.limitation_raw.strip():
            try:
                parse_partition_limitation(self.limitation_raw)
            except ValueError as exc:
                return (f"partitionLimitation: {exc}", "partitionLimitation", META)
        return None

    def limitation(self) -> tuple[int, ...] | None:
        """The parsed limitation (call after :meth:`check_limitation` passed)."""
        if not self.topic or not self.limitation_raw.strip():
            return None
        return parse_partition_limitation(self.limitation_raw)


@attrs.frozen
class _LagRules:
    """How the lag is counted and capped."""

    lag_threshold: int | None
    activation: int | None
    policy: OffsetResetPolicy | None
    allow_idle: bool | None
    exclude_persistent: bool | None
    scale_to_zero: bool | None
    limit_with_lag: bool | None
    ensure_even: bool | None

    @classmethod
    def read(cls, p: Params) -> _LagRules:
        return cls(
            lag_threshold=p.integer("lagThreshold", default=10),
            activation=p.integer("activationLagThreshold", default=0),
            policy=_enum(
                p, "offsetResetPolicy", OffsetResetPolicy, OffsetResetPolicy.LATEST, (META,)
            ),
            allow_idle=p.boolean("allowIdleConsumers", default=False),
            exclude_persistent=p.boolean("excludePersistentLag", default=False),
            scale_to_zero=p.boolean("scaleToZeroOnInvalidOffset", default=False),
            limit_with_lag=p.boolean("limitToPartitionsWithLag", default=False),
            ensure_even=p.boolean("ensureEvenDistributionOfPartitions", default=False),
        )

    def check_thresholds(self) -> _Problem | None:
        if self.lag_threshold is not None and self.lag_threshold <= 0:
            return ('"lagThreshold" must be positive number', "lagThreshold", META)
        if self.activation is not None and self.activation < 0:
            return ('"activationLagThreshold" must be >= 0', "activationLagThreshold", META)
        return None


@attrs.frozen
class _Protocol:
    """``fullMetadata`` and the Kafka ``version`` (validated only)."""

    full_metadata: bool | None
    version: str | None

    @classmethod
    def read(cls, p: Params) -> _Protocol:
        return cls(
            full_metadata=p.boolean("fullMetadata", default=True),
            version=p.string("version", default="1.0.0"),
        )


def _check_topic_rules(
    selection: _Selection, rules: _LagRules, protocol: _Protocol
) -> _Problem | None:
    topic = selection.topic
    if rules.allow_idle and rules.limit_with_lag:
        return (
            "allowIdleConsumers and limitToPartitionsWithLag cannot both be true",
            "limitToPartitionsWithLag",
            META,
        )
    if rules.limit_with_lag and not topic:
        return ("limitToPartitionsWithLag needs a topic", "limitToPartitionsWithLag", META)
    if rules.limit_with_lag and rules.ensure_even:
        return (
            "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot both be true",
            "ensureEvenDistributionOfPartitions",
            META,
        )
    if rules.ensure_even and not topic:
        return (
            "ensureEvenDistributionOfPartitions needs a topic",
            "ensureEvenDistributionOfPartitions",
            META,
        )
    if protocol.full_metadata is False and not topic:
        return ("fullMetadata=false needs a topic", "fullMetadata", META)
    return None


@attrs.frozen
class _Tls:
    """``tls``, ``unsafeSsl`` and the PEM material."""

    raw: str | None
    unsafe_ssl: bool | None
    ca: Secret | None
    cert: Secret | None
    key: Secret | None
    key_password: Secret | None

    @classmethod
    def read(cls, p: Params) -> _Tls:
        return cls(
            raw=p.choice("tls", ("enable", "disable"), order=(META, AUTH), default="disable"),
            unsafe_ssl=p.boolean("unsafeSsl", default=False),
            ca=p.secret("ca"),
            cert=p.secret("cert"),
            key=p.secret("key"),
            key_password=p.secret("keyPassword"),
        )

    @property
    def enabled(self) -> bool:
        return self.raw == "enable"

    def check(self) -> _Problem | None:
        if self.enabled and bool(self.cert) != bool(self.key):
            which = "key" if self.cert else "cert"
            return (f"tls=enable with only one of cert/key: {which} is missing", which, AUTH)
        return None

    def librdkafka(self) -> dict[str, str | Secret]:
        conf: dict[str, str | Secret] = {}
        if not self.enabled:
            return conf
        if self.ca:
            conf["ssl.ca.pem"] = self.ca
        if self.cert:
            conf["ssl.certificate.pem"] = self.cert
        if self.key:
            conf["ssl.key.pem"] = self.key
        if self.key_password:
            conf["ssl.key.password"] = self.key_password
        if self.unsafe_ssl:
            conf["enable.ssl.certificate.verification"] = "false"
            conf["ssl.endpoint.identification.algorithm"] = "none"
        return conf


_SASL_LIBRDKAFKA: Final = {
    SaslMechanism.PLAINTEXT: "PLAIN",
    SaslMechanism.SCRAM_SHA256: "SCRAM-SHA-256",
    SaslMechanism.SCRAM_SHA512: "SCRAM-SHA-512",
    SaslMechanism.OAUTHBEARER: "OAUTHBEARER",
    SaslMechanism.GSSAPI: "GSSAPI",
}

_KEYTAB_VERSIONS: Final = (b"\x05\x01", b"\x05\x02")


def _decode_keytab(value: Secret) -> bytes | None:
    """The keytab file a ``keytab`` secret holds (base64), or ``None`` if it holds none."""
    text = "".join(value.reveal().split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data[:2] in _KEYTAB_VERSIONS else None


@attrs.frozen
class _Sasl:
    """``sasl`` and what each mechanism needs: a user, OAuth, Kerberos or AWS MSK IAM."""

    mechanism: SaslMechanism | None
    username: str | None
    password: Secret | None
    token_provider: str | None
    scopes: str
    token_url: str
    extensions: str
    keytab: Secret | None
    realm: str
    kerberos_config: str
    kerberos_service: str
    aws_region: str
    aws_role_arn: str
    #: ``awsExternalId``: the ``ExternalId`` of the ``AssumeRole`` of ``aws_role_arn``
    aws_external_id: str
    identity_owner: str
    #: ``spec.podIdentity.provider`` of the TriggerAuthentication ("" without one)
    pod_identity: str
    #: where the access key was looked for: (AUTH,) or, without one there, (META, ENV)
    aws_key_source: Sequence[Source]
    aws_key_id: str
    aws_secret: Secret | None
    aws_token: Secret | None

    @classmethod
    def read(cls, p: Params) -> _Sasl:
        mechanism = _enum(p, "sasl", SaslMechanism, SaslMechanism.NONE, (META, AUTH))
        username = p.string("username", order=(AUTH,))
        password = p.secret("password")
        token_provider = p.choice(
            "saslTokenProvider", ("bearer", "aws_msk_iam"), order=(META, AUTH), default="bearer"
        )
        scopes = p.string("scopes", order=(AUTH,), default="")
        token_url = p.string("oauthTokenEndpointUri", order=(AUTH,), default="")
        extensions = p.string("oauthExtensions", order=(AUTH,), default="")
        keytab = p.secret("keytab")
        realm = p.string("realm", order=(AUTH,), default="")
        kerberos_config = p.string("kerberosConfig", order=(AUTH,), default="")
        kerberos_service = p.string("kerberosServiceName", order=(AUTH,), default="kafka")
        # Read for validation only: MIT kinit never uses FAST without an armor cache.
        p.boolean("kerberosDisableFAST", order=(AUTH,), default=False)
        aws_region = p.string("awsRegion", default="")
        # AWS credentials, in the order KEDA's GetAwsAuthorization looks for them.
        # podIdentity aws: its roleArn, else the trigger's awsRoleArn (KEDA's
        # pkg/scalers/aws/aws_authorization.go); the credentials come from the chain.
        pod_identity = p.string("podIdentity", order=(AUTH,), default="").strip()
        pod_identity = "" if pod_identity == "none" else pod_identity
        pod_role = p.string("roleArn", order=(AUTH,), default="") if pod_identity else ""
        aws_role_arn = pod_role or p.string("awsRoleArn", order=(AUTH,), default="")
        # The AssumeRole ExternalId: KEDA's podIdentity.externalID (with its roleArn only,
        # as KEDA's webhook rules), else eventscale's awsExternalId beside awsRoleArn.
        pod_external = p.string("externalID", order=(AUTH,), default="") if pod_identity else ""
        if pod_external and not pod_role:
            p.fail("externalID of podIdentity requires roleArn to be set", "externalID", AUTH)
        aws_external_id = pod_external or p.string("awsExternalId", order=(AUTH,), default="")
        identity_owner = p.string("identityOwner", default="")
        if pod_identity:  # spec.podIdentity.identityOwner (keda or workload)
            identity_owner = p.string("identityOwner", order=(AUTH,), default=identity_owner)
        aws_key_source: Sequence[Source] = (AUTH,)
        aws_key_id = p.string(
            "awsAccessKeyID", order=(AUTH,), aliases=("awsAccessKeyId",), default=""
        )
        aws_secret = p.secret("awsSecretAccessKey")
        aws_token = p.secret("awsSessionToken")
        if not aws_key_id and identity_owner != "operator" and pod_identity != "aws":
            aws_key_source = (META, ENV)
            aws_key_id = p.string("awsAccessKeyID", order=(META, ENV), default="")
            aws_secret = p.secret("awsSecretAccessKey", order=(ENV,))
            aws_token = None
        return cls(
            mechanism=mechanism,
            username=username,
            password=password,
            token_provider=token_provider,
            scopes=scopes,
            token_url=token_url,
            extensions=extensions,
            keytab=keytab,
            realm=realm,
            kerberos_config=kerberos_config,
            kerberos_service=kerberos_service,
            aws_region=aws_region,
            aws_role_arn=aws_role_arn,
            aws_external_id=aws_external_id,
            identity_owner=identity_owner,
            pod_identity=pod_identity,
            aws_key_source=aws_key_source,
            aws_key_id=aws_key_id,
            aws_secret=aws_secret,
            aws_token=aws_token,
        )

    @property
    def msk_iam_wanted(self) -> bool:
        return self.mechanism is SaslMechanism.OAUTHBEARER and self.token_provider == "aws_msk_iam"

    def check(self, *, tls: bool) -> _Problem | None:
        if self.mechanism in (
            SaslMechanism.PLAINTEXT,
            SaslMechanism.SCRAM_SHA256,
            SaslMechanism.SCRAM_SHA512,
        ):
            if not self.username:
                return ("sasl needs a username", "username", AUTH)
            if not self.password:
                return ("sasl needs a password", "password", AUTH)
        elif self.msk_iam_wanted:
            return self._check_msk_iam(tls=tls)
        elif self.mechanism is SaslMechanism.OAUTHBEARER:
            return self._check_oauth()
        elif self.mechanism is SaslMechanism.GSSAPI:
            return self._check_gssapi()
        return None

    def _check_msk_iam(self, *, tls: bool) -> _Problem | None:
        if not tls:
            return ("sasl aws_msk_iam needs tls=enable", "tls", META)
        if not self.aws_region:
            return ("sasl aws_msk_iam needs awsRegion", "awsRegion", META)
        if self.pod_identity not in ("", "aws"):
            return (
                (
                    f"sasl aws_msk_iam doesn't support pod identity {self.pod_identity!r} "
                    "(use none or aws)"
                ),
                "podIdentity",
                AUTH,
            )
        if self.pod_identity == "aws" and self.aws_role_arn and self.identity_owner == "workload":
            return ("roleArn can't be set with identityOwner workload", "roleArn", AUTH)
        if self.uses_chain:
            return None
        if not self.aws_key_id:
            return (
                "sasl aws_msk_iam needs AWS credentials (awsAccessKeyID)",
                "awsAccessKeyID",
                self.aws_key_source[0],
            )
        if not self.aws_secret:
            return (
                "sasl aws_msk_iam: awsSecretAccessKey not found",
                "awsSecretAccessKey",
                self.aws_key_source[-1],
            )
        return None

    def _check_oauth(self) -> _Problem | None:
        if not self.username:
            return ("sasl oauthbearer needs a username", "username", AUTH)
        if not self.password:
            return ("sasl oauthbearer needs a password", "password", AUTH)
        if not self.token_url:
            return ("sasl oauthbearer needs oauthTokenEndpointUri", "oauthTokenEndpointUri", AUTH)
        for element in self.extensions.split(",") if self.extensions else ():
            if element.count("=") != 1:
                return (
                    "oauthExtensions must be k=v pairs separated by commas",
                    "oauthExtensions",
                    AUTH,
                )
        return None

    def _check_gssapi(self) -> _Problem | None:
        if not self.username:
            return ("sasl gssapi needs a username", "username", AUTH)
        if bool(self.password) == bool(self.keytab):
            return ("sasl gssapi needs exactly one of password and keytab", "password", AUTH)
        if not self.realm:
            return ("sasl gssapi needs a realm", "realm", AUTH)
        if not self.kerberos_config:
            return ("sasl gssapi needs kerberosConfig", "kerberosConfig", AUTH)
        return None

    def librdkafka(self) -> dict[str, str | Secret]:
        conf: dict[str, str | Secret] = {}
        mechanism = self.mechanism
        if mechanism is None or mechanism is SaslMechanism.NONE:
            return conf
        conf["sasl.mechanism"] = _SASL_LIBRDKAFKA[mechanism]
        if self.msk_iam_wanted:
            pass  # the token comes from MskIamTokenProvider (oauth_cb), added at build
        elif mechanism is SaslMechanism.OAUTHBEARER:
            conf["sasl.oauthbearer.method"] = "oidc"
            conf["sasl.oauthbearer.client.id"] = self.username or ""
            if self.password:
                conf["sasl.oauthbearer.client.secret"] = self.password
            conf["sasl.oauthbearer.token.endpoint.url"] = self.token_url
            if self.scopes:
                conf["sasl.oauthbearer.scope"] = " ".join(self.scopes.split(","))
            if self.extensions:
                conf["sasl.oauthbearer.extensions"] = self.extensions
        elif mechanism is SaslMechanism.GSSAPI:
            conf["sasl.kerberos.service.name"] = self.kerberos_service
            conf["sasl.kerberos.principal"] = f"{self.username}@{self.realm}"
            # librdkafka runs the kinit command (set when the scaler writes the files)
            # at start and then every minute; a ticket is renewed well before it expires.
        else:
            conf["sasl.username"] = self.username or ""
            if self.password:
                conf["sasl.password"] = self.password
        return conf

    def kerberos_login(self, keytab: bytes | None) -> KerberosLogin | None:
        if self.mechanism is not SaslMechanism.GSSAPI:
            return None
        return KerberosLogin(
            principal=f"{self.username}@{self.realm}",
            config=self.kerberos_config,
            keytab=keytab,
            password=None if keytab is not None else self.password,
        )

    @property
    def uses_chain(self) -> bool:
        """Whether the credentials come from the AWS default chain (docs/scalers/kafka.md)."""
        return (
            self.pod_identity == "aws"
            or bool(self.aws_role_arn)
            or self.identity_owner == "operator"
        )

    def msk_iam(self) -> MskIamTokenProvider | None:
        if not self.msk_iam_wanted:
            return None
        if self.uses_chain:
            chain = AwsCredentialChain(
                self.aws_region, role_arn=self.aws_role_arn, external_id=self.aws_external_id
            )
            return MskIamTokenProvider(self.aws_region, chain)
        if not self.aws_key_id or not self.aws_secret:
            return None
        credentials = AwsCredentials(self.aws_key_id, self.aws_secret, self.aws_token)
        return MskIamTokenProvider(self.aws_region, credentials)
