"""``apache-kafka`` metadata: KEDA's ``apache_kafka_scaler_test.go`` vectors and the
differences from the ``kafka`` trigger (docs/scalers/apache-kafka.md)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, resolve_scaler_class
from eventscale.scalers.kafka import KafkaMetadata, OffsetResetPolicy, SaslMechanism
from eventscale.scalers.kafka.apache import (
    MAX_LIMITATION,
    ApacheKafkaMetadata,
    ApacheKafkaScaler,
    parse_partition_ranges,
)


def parse(
    metadata: dict[str, str], auth: dict[str, str | Secret] | None = None, index: int = 0
) -> ApacheKafkaMetadata:
    ctx = TriggerContext(
        metadata=metadata, auth=auth or {}, index=index, trigger_type="apache-kafka"
    )
    return ApacheKafkaMetadata.from_context(ctx)


BASE = {"bootstrapServers": "foobar:9092", "consumerGroup": "my-group"}
TOPIC = {**BASE, "topic": "my-topics"}

# (metadata, error?, brokers, topics, partitionLimitation, policy, flags) where flags are
# (allowIdle, excludePersistent, limitToPartitionsWithLag, ensureEvenDistribution):
# parseApacheKafkaMetadataTestDataset
_F = (False, False, False, False)
METADATA_VECTORS: list[tuple[dict[str, str], bool, tuple[str, ...], tuple[str, ...], Any]] = [
    ({"bootstrapServers": "foobar:9092"}, True, (), (), None),
    (BASE, False, ("foobar:9092",), (), None),
    ({**BASE, "partitionLimitation": "1,2,3,4,5,6"}, False, ("foobar:9092",), (), None),
    ({**BASE, "partitionLimitation": "           "}, False, ("foobar:9092",), (), None),
    ({**BASE, "partitionLimitation": ""}, False, ("foobar:9092",), (), None),
    ({**TOPIC, "lagThreshold": "-1"}, True, (), (), None),
    ({**TOPIC, "lagThreshold": "0"}, True, (), (), None),
    (
        {**TOPIC, "lagThreshold": "1000000", "activationLagThreshold": "0"},
        False,
        ("foobar:9092",),
        ("my-topics",),
        None,
    ),
    ({**TOPIC, "activationLagThreshold": "0"}, False, ("foobar:9092",), ("my-topics",), None),
    (TOPIC, False, ("foobar:9092",), ("my-topics",), None),
    (
        {**TOPIC, "partitionLimitation": "1,2,3,4"},
        False,
        ("foobar:9092",),
        ("my-topics",),
        (1, 2, 3, 4),
    ),
    (
        {**TOPIC, "partitionLimitation": "1-4"},
        False,
        ("foobar:9092",),
        ("my-topics",),
        (1, 2, 3, 4),
    ),
    (
        {**TOPIC, "partitionLimitation": "1-4,8,10-12"},
        False,
        ("foobar:9092",),
        ("my-topics",),
        (1, 2, 3, 4, 8, 10, 11, 12),
    ),
    ({**TOPIC, "partitionLimitation": "a,b,c,d"}, True, (), (), None),
    (
        {"bootstrapServers": "foo:9092,bar:9092", "consumerGroup": "g", "topic": "t"},
        False,
        ("foo:9092", "bar:9092"),
        ("t",),
        None,
    ),
    ({**TOPIC, "offsetResetPolicy": "foo"}, True, (), (), None),
    ({**TOPIC, "allowIdleConsumers": "notvalid"}, True, (), (), None),
    ({**TOPIC, "excludePersistentLag": "notvalid"}, True, (), (), None),
    ({**TOPIC, "limitToPartitionsWithLag": "notvalid"}, True, (), (), None),
    (
        {**TOPIC, "allowIdleConsumers": "true", "limitToPartitionsWithLag": "true"},
        True,
        (),
        (),
        None,
    ),
    ({**BASE, "limitToPartitionsWithLag": "true"}, True, (), (), None),
    (
        {**BASE, "ensureEvenDistributionOfPartitions": "true", "limitToPartitionsWithLag": "true"},
        True,
        (),
        (),
        None,
    ),
]


@pytest.mark.parametrize(
    "auth", [{}, {"sasl": "plaintext", "username": "admin", "password": "admin"}]
)
@pytest.mark.parametrize(("metadata", "error", "brokers", "topics", "limitation"), METADATA_VECTORS)
def test_keda_metadata_vectors(
    metadata: dict[str, str],
    error: bool,
    brokers: tuple[str, ...],
    topics: tuple[str, ...],
    limitation: tuple[int, ...] | None,
    auth: dict[str, str | Secret],
) -> None:
    if error:
        with pytest.raises(ConfigError):
            parse(metadata, auth)
        return
    meta = parse(metadata, auth)
    assert meta.bootstrap_servers == brokers
    assert meta.consumer_group == metadata["consumerGroup"]
    assert meta.topics == topics
    assert meta.partition_limitation == limitation


@pytest.mark.parametrize(
    ("extra", "flags", "policy"),
    [
        ({}, _F, OffsetResetPolicy.LATEST),
        ({"offsetResetPolicy": "earliest"}, _F, OffsetResetPolicy.EARLIEST),
        ({"allowIdleConsumers": "true"}, (True, False, False, False), OffsetResetPolicy.LATEST),
        ({"excludePersistentLag": "true"}, (False, True, False, False), OffsetResetPolicy.LATEST),
        (
            {"limitToPartitionsWithLag": "true"},
            (False, False, True, False),
            OffsetResetPolicy.LATEST,
        ),
        (
            {"allowIdleConsumers": "true", "limitToPartitionsWithLag": "false"},
            (True, False, False, False),
            OffsetResetPolicy.LATEST,
        ),
    ],
)
def test_flags(extra: dict[str, str], flags: tuple[bool, ...], policy: OffsetResetPolicy) -> None:
    meta = parse({**TOPIC, **extra})
    assert meta.offset_reset_policy is policy
    assert (
        meta.allow_idle_consumers,
        meta.exclude_persistent_lag,
        meta.limit_to_partitions_with_lag,
        meta.ensure_even_distribution_of_partitions,
    ) == flags


def test_ensure_even_distribution_without_topic_is_allowed() -> None:
    # the `kafka` trigger needs a topic for it; apache-kafka does not (KEDA's Validate)
    meta = parse({**BASE, "ensureEvenDistributionOfPartitions": "true"})
    assert meta.ensure_even_distribution_of_partitions
    assert meta.topics == ()
    with pytest.raises(ConfigError, match="ensureEvenDistributionOfPartitions"):
        KafkaMetadata.from_context(
            TriggerContext(metadata={**BASE, "ensureEvenDistributionOfPartitions": "true"})
        )


def test_limit_and_even_distribution_together_with_a_topic() -> None:
    # KEDA's apache-kafka has no check for this pair (kafka has one)
    meta = parse(
        {**TOPIC, "limitToPartitionsWithLag": "true", "ensureEvenDistributionOfPartitions": "true"}
    )
    assert meta.limit_to_partitions_with_lag
    assert meta.ensure_even_distribution_of_partitions


@pytest.mark.parametrize(
    ("metadata", "index", "name"),
    [
        (TOPIC, 0, "s0-kafka-my-topics"),
        (TOPIC, 1, "s1-kafka-my-topics"),
        ({**BASE, "partitionLimitation": "1,2,3,4,5,6"}, 1, "s1-kafka-my-group-topics"),
        ({**BASE, "topic": "a, b ,c"}, 3, "s3-kafka-a,b,c"),
    ],
)
def test_metric_names(metadata: dict[str, str], index: int, name: str) -> None:
    assert parse(metadata, index=index).metric_name == name


def test_topic_list_with_an_empty_element_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty") as info:
        parse({**BASE, "topic": "a,,b"})
    assert "metadata.topic" in str(info.value)


# ----------------------------------------------------------------- partitionLimitation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,2,5-7", (1, 2, 5, 6, 7)),
        (" 3 - 5 , 1", (3, 4, 5, 1)),
        ("5-3", ()),
        ("2,2", (2, 2)),
        ("0", (0,)),
    ],
)
def test_partition_ranges(raw: str, expected: tuple[int, ...]) -> None:
    assert parse_partition_ranges(raw) == expected


@pytest.mark.parametrize(
    "raw", ["a", "1,,2", "-1", "1-2-3", "1.0", "+1", "01", "1-", f"0-{MAX_LIMITATION}"]
)
def test_partition_ranges_errors(raw: str) -> None:
    with pytest.raises(ValueError, match="element"):
        parse_partition_ranges(raw)


def test_bad_limitation_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse({**TOPIC, "partitionLimitation": "1,x"})
    assert "metadata.partitionLimitation" in str(info.value)


# ----------------------------------------------------------------------------- auth

# parseApacheKafkaAuthParamsTestDataset: auth params only, with a valid trigger
AUTH_VECTORS: list[tuple[dict[str, str], bool, bool]] = [
    ({"sasl": "plaintext", "username": "admin", "password": "admin"}, False, False),
    ({"sasl": "scram_sha256", "username": "admin", "password": "admin"}, False, False),
    ({"sasl": "scram_sha512", "username": "admin", "password": "admin"}, False, False),
    ({"tls": "enable", "ca": "caaa", "cert": "ceert", "key": "keey"}, False, True),
    ({"tls": "enable", "cert": "ceert", "key": "keey"}, False, True),
    ({"tls": "enable", "cert": "ceert", "key": "keey", "keyPassword": "kp"}, False, True),
    ({"tls": "enable", "ca": "caaa"}, False, True),
    (
        {
            "sasl": "plaintext",
            "username": "a",
            "password": "a",
            "tls": "enable",
            "ca": "c",
            "cert": "c",
            "key": "k",
        },
        False,
        True,
    ),
    (
        {"sasl": "plaintext", "username": "admin", "password": "admin", "tls": "disable"},
        False,
        False,
    ),
    ({"sasl": "foo", "username": "admin", "password": "admin"}, True, False),
    ({"sasl": "plaintext", "password": "admin"}, True, False),
    ({"sasl": "plaintext", "username": "admin"}, True, False),
    ({"tls": "enable", "ca": "caaa", "key": "keey"}, True, False),
    ({"tls": "enable", "ca": "caaa", "cert": "ceert"}, True, False),
    ({"tls": "yes", "ca": "caaa", "cert": "ceert", "key": "keey"}, True, False),
    (
        {"sasl": "plaintext", "password": "a", "tls": "enable", "ca": "c", "cert": "c", "key": "k"},
        True,
        True,
    ),
    (
        {
            "sasl": "plaintext",
            "username": "a",
            "password": "a",
            "tls": "enable",
            "ca": "c",
            "key": "k",
        },
        True,
        True,
    ),
    # only plaintext needs a user at parse time
    ({"sasl": "scram_sha256"}, False, False),
    # trailing whitespace in a secret value is trimmed
    ({"sasl": "plaintext\n", "username": "admin", "password": "admin"}, False, False),
    ({"sasl": "scram_sha512 ", "username": "admin", "password": "admin"}, False, False),
]


@pytest.mark.parametrize(("auth", "error", "tls"), AUTH_VECTORS)
def test_keda_auth_vectors(auth: dict[str, str], error: bool, tls: bool) -> None:
    metadata = {**TOPIC, "allowIdleConsumers": "false"}
    if error:
        with pytest.raises(ConfigError):
            parse(metadata, dict(auth))
        return
    assert parse(metadata, dict(auth)).tls is tls


# parseApacheKafkaAuthParamsTestDataset2: sasl/tls in the trigger, the rest in auth
AUTH_VECTORS_2: list[tuple[dict[str, str], dict[str, str], bool]] = [
    ({"sasl": "plaintext"}, {"username": "admin", "password": "admin"}, False),
    ({"sasl": "scram_sha256"}, {"username": "admin", "password": "admin"}, False),
    ({"tls": "enable"}, {"ca": "caaa", "cert": "ceert", "key": "keey"}, False),
    ({"tls": "enable"}, {"ca": "caaa"}, False),
    ({"sasl": "plaintext", "tls": "disable"}, {"username": "admin", "password": "admin"}, False),
    ({"sasl": "foo"}, {"username": "admin", "password": "admin"}, True),
    ({"sasl": "plaintext"}, {"password": "admin"}, True),
    ({"tls": "random"}, {"ca": "caaa", "cert": "ceert", "key": "keey"}, True),
    ({"tls": "enable"}, {"ca": "caaa", "key": "keey"}, True),
    ({"sasl": "scram_sha512"}, {"sasl": "scram_sha512", "username": "a", "password": "a"}, True),
    ({"tls": "enable"}, {"tls": "enable", "ca": "caaa", "cert": "ceert", "key": "keey"}, True),
    (
        {"awsRegion": "us-east-1"},
        {
            "tls": "enable",
            "sasl": "aws_msk_iam",
            "awsAccessKeyID": "none",
            "awsSecretAccessKey": "none",
        },
        False,
    ),
    (
        {},
        {"tls": "enable", "sasl": "aws_msk_iam", "awsAccessKeyID": "n", "awsSecretAccessKey": "n"},
        True,
    ),
    (
        {"awsRegion": "us-east-1"},
        {"sasl": "aws_msk_iam", "awsAccessKeyID": "none", "awsSecretAccessKey": "none"},
        True,
    ),
    (
        {"awsRegion": "us-east-1"},
        {"tls": "enable", "sasl": "aws_msk_iam", "awsAccessKeyID": "n"},
        True,
    ),
    (
        {"awsRegion": "us-east-1"},
        {"tls": "enable", "sasl": "aws_msk_iam", "awsSecretAccessKey": "n"},
        True,
    ),
]


@pytest.mark.parametrize(("metadata", "auth", "error"), AUTH_VECTORS_2)
def test_keda_auth_vectors_second_method(
    metadata: dict[str, str], auth: dict[str, str], error: bool
) -> None:
    full = {**TOPIC, "allowIdleConsumers": "true", **metadata}
    if error:
        with pytest.raises(ConfigError):
            parse(full, dict(auth))
        return
    parse(full, dict(auth))


@pytest.mark.parametrize("name", ["sasl", "tls"])
def test_set_in_both_places_names_the_parameter(name: str) -> None:
    value = "enable" if name == "tls" else "scram_sha256"
    with pytest.raises(ConfigError, match="both") as info:
        parse({**TOPIC, name: value}, {name: value, "username": "u", "password": "p"})
    assert f"metadata.{name}" in str(info.value)


def test_sasl_maps_to_librdkafka() -> None:
    meta = parse(
        {**TOPIC, "sasl": "scram_sha512", "tls": "enable"},
        {"username": "u", "password": Secret("hunter2")},
    )
    assert meta.sasl is SaslMechanism.SCRAM_SHA512
    assert meta.librdkafka["sasl.mechanism"] == "SCRAM-SHA-512"
    assert meta.librdkafka["security.protocol"] == "SASL_SSL"
    assert isinstance(meta.librdkafka["sasl.password"], Secret)
    assert "hunter2" not in repr(meta)


def test_aws_msk_iam_uses_the_token_provider() -> None:
    meta = parse(
        {**TOPIC, "awsRegion": "eu-west-1"},
        {
            "sasl": "aws_msk_iam",
            "tls": "enable",
            "awsAccessKeyID": "AKIA1",
            "awsSecretAccessKey": Secret("s"),
        },
    )
    assert (meta.sasl_type, meta.sasl, meta.sasl_token_provider) == (
        "aws_msk_iam",
        SaslMechanism.OAUTHBEARER,
        "aws_msk_iam",
    )
    assert meta.msk_iam is not None
    assert meta.msk_iam.region == "eu-west-1"
    assert meta.librdkafka["security.protocol"] == "SASL_SSL"


def test_aws_msk_iam_with_a_role_uses_the_default_chain() -> None:
    ctx = TriggerContext(
        metadata={**TOPIC, "awsRegion": "eu-west-1"},
        auth={"sasl": "aws_msk_iam", "tls": "enable", "awsRoleArn": "arn:aws:iam::1:role/r"},
        trigger_type="apache-kafka",
    )
    meta = ApacheKafkaMetadata.from_context(ctx)
    assert meta.msk_iam is not None
    assert getattr(meta.msk_iam.credentials, "role_arn", "") == "arn:aws:iam::1:role/r"


@pytest.mark.parametrize(
    ("sasl", "match"), [("gssapi", "type: kafka"), ("oauthbearer", "must be one of")]
)
def test_gssapi_and_oauthbearer_are_rejected(sasl: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse({**TOPIC, "sasl": sasl}, {"username": "u", "password": "p"})
    assert "metadata.sasl" in str(info.value)


def test_kafka_only_parameters_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="eventscale.scalers.kafka"):
        meta = parse(
            {
                **TOPIC,
                "tls": "enable",
                "unsafeSsl": "true",
                "version": "nonsense",
                "fullMetadata": "x",
            },
        )
    assert "enable.ssl.certificate.verification" not in meta.librdkafka
    assert "unsafeSsl, version, fullMetadata" in caplog.text


def test_registered_as_a_trigger_type() -> None:
    assert resolve_scaler_class("apache-kafka") is ApacheKafkaScaler
