"""Kafka settings: parsing and validating the trigger metadata (KEDA's test vectors).

The K and KA vectors are the cases of KEDA's ``pkg/scalers/kafka_scaler_test.go``;
everything here runs the real parser, no broker is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka.config import (
    KafkaMetadata,
    OffsetResetPolicy,
    SaslMechanism,
    parse_kafka_metadata,
    parse_partition_limitation,
)

BASE = {"bootstrapServers": "foobar:9092", "consumerGroup": "my-group"}
TOPIC = {**BASE, "topic": "my-topic"}
AUTH_SETS: list[dict[str, str | Secret]] = [
    {"sasl": "plaintext", "username": "admin", "password": "admin"},
    {},
]


def parse(
    metadata: Mapping[str, str], auth: Mapping[str, str | Secret] | None = None, **kw: Any
) -> KafkaMetadata:
    ctx = TriggerContext(metadata=metadata, auth=auth or {}, trigger_type="kafka", **kw)
    return parse_kafka_metadata(ctx)


# ---------------------------------------------------------------------------- K1-K26

OK_VECTORS = [
    pytest.param(BASE, id="K3"),
    pytest.param({**BASE, "partitionLimitation": "1,2,3,4,5,6"}, id="K4"),
    pytest.param({**BASE, "partitionLimitation": "           "}, id="K5"),
    pytest.param({**TOPIC, "lagThreshold": "1000000", "activationLagThreshold": "0"}, id="K9"),
    pytest.param({**TOPIC, "partitionLimitation": "1,2,3,4"}, id="K11"),
    pytest.param({**TOPIC, "partitionLimitation": "1-4"}, id="K12"),
    pytest.param({**TOPIC, "partitionLimitation": "1-4,8,10-12"}, id="K13"),
    pytest.param({**TOPIC, "bootstrapServers": "foo:9092,bar:9092"}, id="K15"),
    pytest.param({**TOPIC, "offsetResetPolicy": "earliest"}, id="K17"),
    pytest.param(
        {**TOPIC, "allowIdleConsumers": "true", "limitToPartitionsWithLag": "false"}, id="K20"
    ),
    pytest.param({**TOPIC, "ensureEvenDistributionOfPartitions": "true"}, id="K23"),
    pytest.param({**TOPIC, "fullMetadata": "false"}, id="K25"),
    pytest.param({**TOPIC, "allowIdleConsumers": "true", "version": "1.0.0"}, id="K26"),
]

ERROR_VECTORS = [
    pytest.param({}, id="K1"),
    pytest.param({"bootstrapServers": "foobar:9092"}, id="K2"),
    pytest.param({**TOPIC, "version": "1.2.3.4"}, id="K6"),
    pytest.param({**TOPIC, "lagThreshold": "-1"}, id="K7"),
    pytest.param({**TOPIC, "lagThreshold": "0"}, id="K8"),
    pytest.param({**TOPIC, "lagThreshold": "10", "activationLagThreshold": "AA"}, id="K10"),
    pytest.param({**TOPIC, "partitionLimitation": "a,b,c,d"}, id="K14"),
    pytest.param({**TOPIC, "offsetResetPolicy": "foo"}, id="K16"),
    pytest.param({**TOPIC, "allowIdleConsumers": "notvalid"}, id="K18-allowIdle"),
    pytest.param({**TOPIC, "excludePersistentLag": "notvalid"}, id="K18-excludePersistent"),
    pytest.param({**TOPIC, "limitToPartitionsWithLag": "notvalid"}, id="K18-limitToPartitions"),
    pytest.param({**TOPIC, "fullMetadata": "notabool"}, id="K18-fullMetadata"),
    pytest.param(
        {**TOPIC, "allowIdleConsumers": "true", "limitToPartitionsWithLag": "true"}, id="K19"
    ),
    pytest.param({**BASE, "limitToPartitionsWithLag": "true"}, id="K21"),
    pytest.param(
        {**TOPIC, "ensureEvenDistributionOfPartitions": "true", "limitToPartitionsWithLag": "true"},
        id="K22",
    ),
    pytest.param({**BASE, "fullMetadata": "false"}, id="K24"),
    pytest.param({**BASE, "activationLagThreshold": "-1"}, id="activation-negative"),
    pytest.param({**BASE, "timeout": "0s"}, id="timeout-zero"),
]


@pytest.mark.parametrize("auth", AUTH_SETS, ids=["sasl-plaintext", "no-auth"])
@pytest.mark.parametrize("metadata", OK_VECTORS)
def test_metadata_ok(metadata: dict[str, str], auth: dict[str, str | Secret]) -> None:
    meta = parse(metadata, auth)
    assert meta.consumer_group == "my-group"


@pytest.mark.parametrize("auth", AUTH_SETS, ids=["sasl-plaintext", "no-auth"])
@pytest.mark.parametrize("metadata", ERROR_VECTORS)
def test_metadata_error(metadata: dict[str, str], auth: dict[str, str | Secret]) -> None:
    with pytest.raises(ConfigError):
        parse(metadata, auth)


def test_k3_defaults() -> None:
    meta = parse(BASE)
    assert meta.bootstrap_servers == ("foobar:9092",)
    assert meta.topic == ""
    assert meta.offset_reset_policy is OffsetResetPolicy.LATEST
    assert meta.partition_limitation is None
    assert meta.full_metadata is True
    assert meta.lag_threshold == 10
    assert meta.activation_lag_threshold == 0
    assert not meta.allow_idle_consumers
    assert not meta.exclude_persistent_lag
    assert meta.sasl is SaslMechanism.NONE


@pytest.mark.parametrize(
    ("limitation", "expected"),
    [
        pytest.param("1,2,3,4,5,6", None, id="K4-no-topic"),
        pytest.param("           ", None, id="K5-blank"),
    ],
)
def test_partition_limitation_dropped(limitation: str, expected: None) -> None:
    assert parse({**BASE, "partitionLimitation": limitation}).partition_limitation is expected


@pytest.mark.parametrize(
    ("limitation", "expected"),
    [
        pytest.param("1,2,3,4", (1, 2, 3, 4), id="K11"),
        pytest.param("1-4", (1, 2, 3, 4), id="K12"),
        pytest.param("1-4,8,10-12", (1, 2, 3, 4, 8, 10, 11, 12), id="K13"),
    ],
)
def test_partition_limitation_with_topic(limitation: str, expected: tuple[int, ...]) -> None:
    assert parse({**TOPIC, "partitionLimitation": limitation}).partition_limitation == expected


def test_k14_error_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse({**TOPIC, "partitionLimitation": "a,b,c,d"}, path="spec.triggers[0]")
    assert "spec.triggers[0].metadata.partitionLimitation" in info.value.all_paths()


def test_malformed_limitation_errors_without_topic() -> None:
    # still parsed first, so a malformed value errors even when it is then dropped
    with pytest.raises(ConfigError):
        parse({**BASE, "partitionLimitation": "1-b"})


def test_k15_k17_k25() -> None:
    assert parse({**TOPIC, "bootstrapServers": "foo:9092, bar:9092"}).bootstrap_servers == (
        "foo:9092",
        "bar:9092",
    )
    assert parse({**TOPIC, "offsetResetPolicy": "earliest"}).offset_reset_policy is (
        OffsetResetPolicy.EARLIEST
    )
    assert parse({**TOPIC, "fullMetadata": "false"}).full_metadata is False


def test_env_indirection_for_servers_and_group() -> None:
    meta = parse(
        {"bootstrapServersFromEnv": "BS", "consumerGroupFromEnv": "G", "topic": "t"},
        env={"BS": "a:1,b:2", "G": "grp"},
    )
    assert meta.bootstrap_servers == ("a:1", "b:2")
    assert meta.consumer_group == "grp"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", (1,)),
        (" 1 , 2 , 3 ", (1, 2, 3)),
        ("3-3", (3,)),
        (" 1 - 4 ", (1, 2, 3, 4)),
        ("5-3", ()),
        ("2,1,2", (2, 1, 2)),
        ("", None),
        ("   ", None),
    ],
)
def test_partition_limitation_parser(raw: str, expected: tuple[int, ...] | None) -> None:
    assert parse_partition_limitation(raw) == expected


@pytest.mark.parametrize("raw", ["a,b,c", "1-2-3", "a-3", "1-b", "1,,2", "99999999999"])
def test_partition_limitation_parser_errors(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_partition_limitation(raw)


# ---------------------------------------------------------------------------- KA1-KA22

AUTH_META = {
    "bootstrapServers": "broker1:9092,broker2:9092",
    "consumerGroup": "my-group",
    "topic": "my-topic",
    "allowIdleConsumers": "false",
}
CREDS = {"username": "admin", "password": "admin"}
GSSAPI = {"sasl": "gssapi", "username": "admin", "kerberosConfig": "<config>", "realm": "tst.com"}
OAUTH = {"sasl": "oauthbearer", **CREDS, "oauthTokenEndpointUri": "https://website.com"}

AUTH_OK = [
    pytest.param({}, {"sasl": "plaintext", **CREDS}, id="KA1-plaintext"),
    pytest.param({}, {"sasl": "scram_sha256", **CREDS}, id="KA1-scram256"),
    pytest.param({}, {"sasl": "scram_sha512", **CREDS}, id="KA1-scram512"),
    pytest.param({}, {"tls": "enable", "ca": "caaa", "cert": "ceert", "key": "keey"}, id="KA2"),
    pytest.param({}, {"tls": "enable", "ca": "caaa"}, id="KA3"),
    pytest.param({}, {**GSSAPI, "password": "admin"}, id="KA9"),
    pytest.param({}, OAUTH, id="KA14"),
    pytest.param(
        {"awsRegion": "eu-west-1"},
        {
            "sasl": "oauthbearer",
            "saslTokenProvider": "aws_msk_iam",
            "tls": "enable",
            "awsAccessKeyID": "none",
            "awsSecretAccessKey": "none",
        },
        id="KA18",
    ),
    pytest.param({}, {"sasl": "plaintext\n", **CREDS}, id="KA20-newline"),
    pytest.param({}, {"sasl": "plaintext ", **CREDS}, id="KA20-space"),
    pytest.param({"sasl": "scram_sha512"}, {"sasl": "scram_sha512", **CREDS}, id="KA21"),
    pytest.param({}, {"sasl": "none"}, id="KA22"),
]

AUTH_ERRORS = [
    pytest.param({}, {"tls": "enable", "ca": "caaa", "key": "keey"}, id="KA4"),
    pytest.param({}, {"tls": "enable", "ca": "caaa", "cert": "ceert"}, id="KA5"),
    pytest.param({}, {"tls": "yes"}, id="KA6"),
    pytest.param({}, {"sasl": "plaintext", "password": "admin"}, id="KA7-password-only"),
    pytest.param({}, {"sasl": "plaintext", "username": "admin"}, id="KA7-username-only"),
    pytest.param({}, {"sasl": "foo", **CREDS}, id="KA8"),
    pytest.param({}, GSSAPI, id="KA10"),
    pytest.param({}, {**GSSAPI, "password": "admin", "keytab": "/path"}, id="KA11"),
    pytest.param(
        {},
        {
            "sasl": "gssapi",
            "tls": "enable",
            "username": "a",
            "password": "b",
            "kerberosConfig": "c",
        },
        id="KA12",
    ),
    pytest.param({}, {**GSSAPI, "password": "admin", "kerberosDisableFAST": "notabool"}, id="KA13"),
    pytest.param({}, {**OAUTH, "oauthTokenEndpointUri": ""}, id="KA15"),
    pytest.param({}, {**OAUTH, "oauthExtensions": "extension_foo=bar,extension_bazbaz"}, id="KA16"),
    pytest.param(
        {},
        {"sasl": "oauthbearer", "saslTokenProvider": "aws_msk_iam", "tls": "disable"},
        id="KA17",
    ),
    pytest.param(
        {"awsRegion": "eu-west-1"},
        {"sasl": "oauthbearer", "saslTokenProvider": "aws_msk_iam", "tls": "enable"},
        id="KA19",
    ),
]


@pytest.mark.parametrize(("extra_meta", "auth"), AUTH_OK)
def test_auth_ok(extra_meta: dict[str, str], auth: dict[str, str | Secret]) -> None:
    parse({**AUTH_META, **extra_meta}, auth)


@pytest.mark.parametrize(("extra_meta", "auth"), AUTH_ERRORS)
def test_auth_error(extra_meta: dict[str, str], auth: dict[str, str | Secret]) -> None:
    with pytest.raises(ConfigError):
        parse({**AUTH_META, **extra_meta}, auth)


def test_ka1_tls_off_and_librdkafka_mapping() -> None:
    meta = parse(AUTH_META, {"sasl": "scram_sha512", **CREDS})
    assert meta.tls is False
    conf = meta.librdkafka
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "admin"
    assert conf["sasl.password"] == Secret("admin")
    assert conf["bootstrap.servers"] == "broker1:9092,broker2:9092"


def test_ka2_tls_on_and_mapping() -> None:
    meta = parse(AUTH_META, {"tls": "enable", "ca": "caaa", "cert": "ceert", "key": "keey"})
    assert meta.tls is True
    conf = meta.librdkafka
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.ca.pem"] == Secret("caaa")
    assert conf["ssl.key.pem"] == Secret("keey")


def test_unsafe_ssl_disables_verification() -> None:
    meta = parse(
        {**AUTH_META, "unsafeSsl": "true"}, {"tls": "enable", "sasl": "plaintext", **CREDS}
    )
    assert meta.librdkafka["security.protocol"] == "SASL_SSL"
    assert meta.librdkafka["enable.ssl.certificate.verification"] == "false"


def test_ka21_metadata_sasl_wins() -> None:
    meta = parse({**AUTH_META, "sasl": "scram_sha256"}, {"sasl": "plaintext", **CREDS})
    assert meta.sasl is SaslMechanism.SCRAM_SHA256


def test_oauth_mapping() -> None:
    auth = {**OAUTH, "scopes": "a,b", "oauthExtensions": "k=v,k2=v2"}
    conf = parse(AUTH_META, auth).librdkafka
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert conf["sasl.oauthbearer.token.endpoint.url"] == "https://website.com"
    assert conf["sasl.oauthbearer.scope"] == "a b"
    assert conf["sasl.oauthbearer.extensions"] == "k=v,k2=v2"


def test_aws_role_arn_builds_on_the_default_chain() -> None:
    auth: dict[str, str | Secret] = {
        "sasl": "oauthbearer",
        "saslTokenProvider": "aws_msk_iam",
        "tls": "enable",
        "awsRoleArn": "arn:aws:iam::123456789012:role/keda",
    }
    ctx = TriggerContext(
        metadata={**AUTH_META, "awsRegion": "eu-west-1"}, auth=auth, trigger_type="kafka"
    )
    parsed = parse_kafka_metadata(ctx)  # the KEDA vector parses and builds: the role is
    assert parsed.msk_iam is not None  # assumed from the default chain (test_aws_identity)
    assert getattr(parsed.msk_iam.credentials, "role_arn", "") == auth["awsRoleArn"]


def test_secrets_never_in_repr_or_errors() -> None:
    secret = "s3cr3t-pa55word"
    meta = parse(AUTH_META, {"sasl": "plaintext", "username": "admin", "password": secret})
    assert secret not in repr(meta)
    assert secret not in repr(dict(meta.librdkafka))
    with pytest.raises(ConfigError) as info:
        parse({**AUTH_META, "lagThreshold": "x"}, {"sasl": "plaintext", "password": secret})
    assert secret not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse(AUTH_META, {"tls": secret})
    assert secret not in str(info.value)


# ---------------------------------------------------------------------------- metric spec


@pytest.mark.parametrize(
    ("metadata", "index", "name"),
    [
        (TOPIC, 0, "s0-kafka-my-topic"),
        (TOPIC, 1, "s1-kafka-my-topic"),
        (BASE, 1, "s1-kafka-my-group-topics"),
        ({**BASE, "topic": "a.b/c"}, 2, "s2-kafka-a-b-c"),
    ],
)
def test_metric_names(metadata: dict[str, str], index: int, name: str) -> None:
    ctx = TriggerContext(metadata=metadata, index=index, trigger_type="kafka")
    meta = parse_kafka_metadata(ctx)
    assert meta.metric_name == name
