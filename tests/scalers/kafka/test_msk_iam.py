"""Kafka ``sasl: oauthbearer`` with ``saslTokenProvider: aws_msk_iam``.

No MSK cluster is reachable from here, so nothing checks that AWS accepts these tokens
end to end. What is checked: the SigV4 code against AWS's published examples, the token
structure against an independent re-derivation written in this file from the SigV4
specification, the parameters KEDA reads, and that a real librdkafka client calls the
token callback eventscale hands it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import attrs
import pytest

from eventscale.errors import ConfigError, ScalerError
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka._aws_identity import AwsCredentialChain
from eventscale.scalers.kafka._msk_iam import (
    AwsCredentials,
    MskIamTokenProvider,
    msk_iam_token,
    presign,
    signing_key,
    valid_region,
)
from eventscale.scalers.kafka._pool import KafkaClientPool
from eventscale.scalers.kafka.config import KafkaMetadata, parse_kafka_metadata
from eventscale.scalers.kafka.scaler import KafkaScaler
from servers._proc import free_port, unique_name

# AWS's documentation example credentials (not real ones).
EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE+session/token=="
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


# ---------------------------------------------------------------------------- SigV4


def test_signing_key_matches_the_aws_example() -> None:
    # "Examples of how to derive a signing key for Signature Version 4" (AWS docs)
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_presign_matches_the_aws_query_string_example() -> None:
    # "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", the
    # GET examplebucket/test.txt example (S3 signs presigned URLs with UNSIGNED-PAYLOAD).
    signed = presign(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        params={},
        credentials=AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET),
        region="us-east-1",
        service="s3",
        when=datetime(2013, 5, 24, tzinfo=UTC),
        expires=86400,
        payload_hash="UNSIGNED-PAYLOAD",
    )
    canonical_hash = hashlib.sha256(signed.canonical_request.encode()).hexdigest()
    assert canonical_hash == "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
    assert signed.string_to_sign == (
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n" + canonical_hash
    )
    assert signed.signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    assert signed.query_string() == (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


# ---------------------------------------------------------------------------- token


def decode(token: str) -> tuple[str, dict[str, str], list[str]]:
    """The URL inside a token, its query as a dict and the parameter names in order."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), "base64url without padding"
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    return url, dict(pairs), [k for k, _ in pairs]


def expected_signature(params: dict[str, str], secret: str, region: str) -> str:
    """SigV4 of the MSK connect request, derived here from the specification alone."""

    def enc(text: str) -> str:
        return quote(text, safe="-_.~")

    signed = {k: v for k, v in params.items() if k not in ("X-Amz-Signature", "User-Agent")}
    query = "&".join(sorted(f"{enc(k)}={enc(v)}" for k, v in signed.items()))
    host = f"kafka.{region}.amazonaws.com"
    empty = hashlib.sha256(b"").hexdigest()
    request = f"GET\n/\n{query}\nhost:{host}\n\nhost\n{empty}"
    date = params["X-Amz-Date"][:8]
    scope = f"{date}/{region}/kafka-cluster/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, "kafka-cluster", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("session_token", [None, SESSION_TOKEN], ids=["keys", "session"])
def test_token_structure(session_token: str | None) -> None:
    creds = AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET, session_token)
    minted = msk_iam_token("eu-west-1", creds, now=WHEN)
    url, params, order = decode(minted.token.reveal())

    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&")
    assert params["Action"] == "kafka-cluster:Connect"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Credential"] == (
        f"{EXAMPLE_KEY_ID}/20240102/eu-west-1/kafka-cluster/aws4_request"
    )
    assert params["X-Amz-Date"] == "20240102T030405Z"
    assert params["X-Amz-Expires"] == "900"
    assert params["X-Amz-SignedHeaders"] == "host"
    assert re.fullmatch(r"[0-9a-f]{64}", params["X-Amz-Signature"])
    assert params["User-Agent"].startswith("eventscale/")
    # the user agent is added after signing, as the AWS signer libraries do
    assert order[-2:] == ["X-Amz-Signature", "User-Agent"]
    if session_token is None:
        assert "X-Amz-Security-Token" not in params
    else:
        assert params["X-Amz-Security-Token"] == session_token
    assert params["X-Amz-Signature"] == expected_signature(params, EXAMPLE_SECRET, "eu-west-1")
    assert minted.expires_at == WHEN + timedelta(seconds=900)


def test_signature_covers_the_secret_the_session_token_and_the_time() -> None:
    base = AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET, SESSION_TOKEN)
    variants = [
        base,
        AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET + "x", SESSION_TOKEN),
        AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET, SESSION_TOKEN + "x"),
    ]
    signatures = {
        decode(msk_iam_token("eu-west-1", c, now=WHEN).token.reveal())[1]["X-Amz-Signature"]
        for c in variants
    }
    later = msk_iam_token("eu-west-1", base, now=WHEN + timedelta(seconds=1))
    signatures.add(decode(later.token.reveal())[1]["X-Amz-Signature"])
    assert len(signatures) == 4


@pytest.mark.parametrize(
    ("region", "ok"),
    [
        ("eu-west-1", True),
        ("us-gov-west-1", True),
        ("ap-southeast-2", True),
        ("evil.example.com/x", False),
        ("eu-west", False),
        ("", False),
    ],
)
def test_region_names(region: str, ok: bool) -> None:
    assert valid_region(region) is ok
    if not ok:
        with pytest.raises(ValueError, match="not an AWS region"):
            msk_iam_token(region, AwsCredentials("a", "b"))


def test_provider_returns_what_librdkafka_expects() -> None:
    provider = MskIamTokenProvider(
        "eu-west-1", AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET), clock=lambda: WHEN
    )
    token, expiry, principal, extensions = provider("")
    assert decode(token)[1]["X-Amz-Date"] == "20240102T030405Z"
    assert expiry == (WHEN + timedelta(seconds=900)).timestamp()
    assert principal
    assert extensions == {}
    assert provider.tokens_issued == 1
    # equal settings compare equal, so scalers share one client
    same = MskIamTokenProvider("eu-west-1", AwsCredentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET))
    assert same == provider
    assert hash(same) == hash(provider)
    other = MskIamTokenProvider("eu-west-1", AwsCredentials(EXAMPLE_KEY_ID, "other"))
    assert other != provider


# ---------------------------------------------------------------------------- parameters

META = {
    "bootstrapServers": "b-1.msk.example:9098",
    "consumerGroup": "g",
    "topic": "t",
    "awsRegion": "eu-west-1",
}
MSK = {"sasl": "oauthbearer", "saslTokenProvider": "aws_msk_iam", "tls": "enable"}


def ctx(
    auth: dict[str, str | Secret],
    meta: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> TriggerContext:
    return TriggerContext(
        metadata={**META, **(meta or {})}, auth={**MSK, **auth}, env=env or {}, trigger_type="kafka"
    )


@pytest.mark.parametrize(
    ("auth", "meta", "env", "token"),
    [
        ({"awsAccessKeyID": "AKID1", "awsSecretAccessKey": "s1"}, {}, {}, None),
        ({"awsAccessKeyId": "AKID1", "awsSecretAccessKey": "s1"}, {}, {}, None),
        (
            {"awsAccessKeyID": "AKID1", "awsSecretAccessKey": "s1", "awsSessionToken": "t1"},
            {},
            {},
            "t1",
        ),
        (
            {},
            {"awsAccessKeyID": "AKID1", "awsSecretAccessKeyFromEnv": "SECRET"},
            {"SECRET": "s1"},
            None,
        ),
        (
            {},
            {"awsAccessKeyIDFromEnv": "KEY", "awsSecretAccessKeyFromEnv": "SECRET"},
            {"KEY": "AKID1", "SECRET": "s1"},
            None,
        ),
    ],
    ids=["auth", "auth-lowercase-d", "auth-session", "meta-and-env", "env"],
)
def test_credentials_are_read_where_keda_reads_them(
    auth: dict[str, str | Secret], meta: dict[str, str], env: dict[str, str], token: str | None
) -> None:
    parsed = parse_kafka_metadata(ctx(auth, meta, env))
    assert parsed.msk_iam is not None
    creds = parsed.msk_iam.credentials
    assert isinstance(creds, AwsCredentials)
    assert creds.access_key_id == "AKID1"
    assert creds.secret_access_key == Secret("s1")
    assert creds.session_token == (Secret(token) if token else None)
    assert parsed.librdkafka["security.protocol"] == "SASL_SSL"
    assert parsed.librdkafka["sasl.mechanism"] == "OAUTHBEARER"
    assert "sasl.oauthbearer.method" not in parsed.librdkafka  # default: our callback


def test_access_key_without_secret_is_an_error() -> None:
    with pytest.raises(ConfigError, match="awsSecretAccessKey") as info:
        parse_kafka_metadata(ctx({"awsAccessKeyID": "AKID1"}))
    assert info.value.path == "authenticationRef.awsSecretAccessKey"


@pytest.mark.parametrize(
    ("auth", "meta", "role"),
    [
        ({"awsRoleArn": "arn:aws:iam::1:role/r"}, {}, "arn:aws:iam::1:role/r"),
        ({}, {"identityOwner": "operator"}, ""),
        ({"podIdentity": "aws"}, {}, ""),
    ],
    ids=["role-arn", "operator-identity", "pod-identity"],
)
def test_role_and_identity_use_the_default_chain(
    auth: dict[str, str | Secret], meta: dict[str, str], role: str
) -> None:
    # docs/scalers/kafka.md: the AWS default credential chain (tests/scalers/kafka/
    # test_aws_identity.py runs it against local STS and container endpoints).
    parsed = parse_kafka_metadata(ctx(auth, meta))
    assert parsed.msk_iam is not None
    chain = parsed.msk_iam.credentials
    assert isinstance(chain, AwsCredentialChain)
    assert (chain.region, chain.role_arn) == ("eu-west-1", role)


def test_a_bad_region_is_a_config_error_at_build() -> None:
    c = ctx({"awsAccessKeyID": "AKID1", "awsSecretAccessKey": "s1"}, {"awsRegion": "not/a/region"})
    parse_kafka_metadata(c)  # valid for KEDA
    with pytest.raises(ConfigError) as info:
        KafkaScaler.from_context(c)
    assert info.value.path == "metadata.awsRegion"


def test_build_errors_carry_the_trigger_path() -> None:
    c = attrs.evolve(
        ctx({"awsAccessKeyID": "AKID1", "awsSecretAccessKey": "s1"}, {"awsRegion": "x"}),
        path="spec.triggers[2]",
    )
    with pytest.raises(ConfigError) as info:
        KafkaScaler.from_context(c)
    assert info.value.path == "spec.triggers[2].metadata.awsRegion"


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    secret, token = "wJalrXUtnFEMI-very-secret", "session-token-very-secret"
    auth: dict[str, str | Secret] = {
        "awsAccessKeyID": "AKID1",
        "awsSecretAccessKey": secret,
        "awsSessionToken": token,
    }
    parsed = parse_kafka_metadata(ctx(auth))
    assert parsed.msk_iam is not None
    assert isinstance(parsed.msk_iam.credentials, AwsCredentials)
    minted = msk_iam_token("eu-west-1", parsed.msk_iam.credentials, now=WHEN)
    for text in (
        repr(parsed),
        repr(parsed.msk_iam),
        repr(parsed.msk_iam.credentials),
        repr(minted),
    ):
        assert secret not in text
        assert token not in text
        assert minted.token.reveal() not in text
    with pytest.raises(ConfigError) as info:
        KafkaScaler.from_context(ctx(auth, {"awsRegion": "bad region"}))
    assert secret not in str(info.value)
    assert token not in str(info.value)


# ---------------------------------------------------------------------------- librdkafka


@pytest.mark.anyio
async def test_librdkafka_calls_the_token_callback() -> None:
    """A real librdkafka client asks our provider for a token when it starts.

    The broker address is a closed local port (there is no MSK here), so the poll fails
    as unreachable: an error, never lag 0, and without any credential in the message.
    """
    secret = "wJalrXUtnFEMI-never-shown"
    c = TriggerContext(
        metadata={
            **META,
            "bootstrapServers": f"127.0.0.1:{free_port()}",
            "consumerGroup": unique_name("group"),
            "timeout": "1s",
        },
        auth={**MSK, "awsAccessKeyID": "AKID1", "awsSecretAccessKey": secret},
        trigger_type="kafka",
    )
    pool = KafkaClientPool()
    scaler = KafkaScaler(KafkaMetadata.from_context(c), pool=pool, trigger_name=c.identity)
    provider = scaler.meta.msk_iam
    assert provider is not None
    try:
        conn = scaler.connection
        assert conn is not None
        settings = dict(conn.key)
        assert settings["oauth_cb"] == provider
        assert settings["security.protocol"] == "SASL_SSL"
        with pytest.raises(ScalerError) as info:
            await scaler.get_metrics()
        assert secret not in str(info.value)
        assert provider.tokens_issued >= 1
    finally:
        await scaler.aclose()
    assert len(pool) == 0
