"""Amazon MSK IAM authentication tokens, signed with AWS Signature Version 4 (stdlib only).

MSK's IAM access control accepts, over SASL/OAUTHBEARER, a token that is a presigned URL:
a ``GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`` request
signed with SigV4 in the query string (service ``kafka-cluster``, only the ``host``
header signed, the SHA-256 of an empty body as payload hash), with a ``User-Agent``
parameter added after signing, the whole URL base64url-encoded without padding. The broker
checks the signature and the expiry (``X-Amz-Date`` + ``X-Amz-Expires``), then authorizes
the IAM principal.

:class:`MskIamTokenProvider` is handed to librdkafka as its ``oauth_cb``: librdkafka calls
it when it connects and again before the token expires, and every call signs a fresh URL
with the current time. Nothing here talks to AWS: credentials (fixed, or read from a
:class:`CredentialSource` such as the default chain in ``_aws_identity``) are signed
locally, so nothing about the token can be checked here except its structure and the
signing algorithm, which the tests check against AWS's published examples.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from urllib.parse import quote

import attrs

from eventscale._version import __version__
from eventscale.redaction import Secret

__all__ = (
    "ALGORITHM",
    "EMPTY_PAYLOAD_SHA256",
    "MSK_SERVICE",
    "TOKEN_LIFETIME",
    "AwsCredentials",
    "CredentialSource",
    "MskIamTokenProvider",
    "MskToken",
    "PresignedRequest",
    "msk_iam_token",
    "presign",
    "signing_key",
    "valid_region",
)

ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: The signing name of MSK's data plane.
MSK_SERVICE: Final = "kafka-cluster"
#: How long a token is valid; MSK accepts at most 15 minutes.
TOKEN_LIFETIME: Final = timedelta(seconds=900)
#: SHA-256 of an empty request body (the payload hash of a presigned GET).
EMPTY_PAYLOAD_SHA256: Final = hashlib.sha256(b"").hexdigest()
_USER_AGENT: Final = f"eventscale/{__version__}"
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+-[0-9]+$")


def valid_region(region: str) -> bool:
    """Whether ``region`` looks like an AWS region (``eu-west-1``, ``us-gov-west-1``).

    The region becomes part of a host name, so anything else is refused.
    """
    return bool(_REGION.match(region))


def _optional_secret(value: str | Secret | None) -> Secret | None:
    return None if value is None or value == "" else Secret(value)


def _secret(value: str | Secret) -> Secret:
    return Secret(value)


@attrs.frozen
class AwsCredentials:
    """An AWS access key pair, optionally with a session token (temporary credentials).

    The repr shows none of the three values.
    """

    access_key_id: str = attrs.field(repr=False)
    secret_access_key: Secret = attrs.field(converter=_secret)
    session_token: Secret | None = attrs.field(default=None, converter=_optional_secret)

    def secrets(self) -> list[Secret]:
        """The secret parts, for redacting driver messages."""
        return [s for s in (self.secret_access_key, self.session_token) if s is not None]


class CredentialSource(Protocol):
    """Credentials that change over time (temporary ones, refreshed before they expire)."""

    def current(self) -> AwsCredentials:
        """The credentials to sign with now (may block)."""
        ...


def _uri_encode(text: str) -> str:
    # SigV4 encodes everything except the RFC 3986 unreserved characters, "/" included.
    return quote(text, safe="-_.~")


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for ``date`` (``YYYYMMDD``), region and service."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k_date = mac(("AWS4" + secret_access_key).encode("utf-8"), date)
    return mac(mac(mac(k_date, region), service), "aws4_request")


@attrs.frozen(kw_only=True)
class PresignedRequest:
    """A SigV4 query-string signature and the intermediate values that produced it."""

    #: Every query parameter of the signed URL in order, ``X-Amz-Signature`` last.
    query: Sequence[tuple[str, str]]
    canonical_request: str
    string_to_sign: str
    signature: str

    def query_string(self) -> str:
        """The query as it goes into the URL (keys and values SigV4-encoded)."""
        return "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in self.query)


def presign(
    *,
    method: str,
    host: str,
    path: str,
    params: Mapping[str, str],
    credentials: AwsCredentials,
    region: str,
    service: str,
    when: datetime,
    expires: int,
    payload_hash: str = EMPTY_PAYLOAD_SHA256,
) -> PresignedRequest:
    """Sign a request in its query string (AWS SigV4, "presigning"), signing only ``host``.

    ``params`` are the request's own query parameters; the ``X-Amz-*`` parameters are
    added (``X-Amz-Security-Token`` when the credentials carry a session token) and the
    result keeps ``params`` first. ``path`` must already be URI-encoded.
    """
    stamp = when.astimezone(UTC)
    amz_date = stamp.strftime("%Y%m%dT%H%M%SZ")
    date = stamp.strftime("%Y%m%d")
    scope = f"{date}/{region}/{service}/aws4_request"
    query: list[tuple[str, str]] = list(params.items())
    query += [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key_id}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
    ]
    if credentials.session_token is not None:
        query.append(("X-Amz-Security-Token", credentials.session_token.reveal()))
    query.append(("X-Amz-SignedHeaders", "host"))
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((_uri_encode(k), _uri_encode(v)) for k, v in query)
    )
    canonical_request = "\n".join(
        (method, path, canonical_query, f"host:{host}", "", "host", payload_hash)
    )
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = signing_key(credentials.secret_access_key.reveal(), date, region, service)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return PresignedRequest(
        query=(*query, ("X-Amz-Signature", signature)),
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
        signature=signature,
    )


@attrs.frozen
class MskToken:
    """A token and the moment it stops being valid. The repr hides the token."""

    token: Secret = attrs.field(converter=_secret)
    expires_at: datetime


def msk_iam_token(
    region: str,
    credentials: AwsCredentials,
    *,
    now: datetime | None = None,
    user_agent: str = _USER_AGENT,
) -> MskToken:
    """An MSK IAM token for ``region``, signed at ``now`` (default: the current time).

    :raises ValueError: when ``region`` is not an AWS region name.
    """
    if not valid_region(region):
        raise ValueError(f"{region!r} is not an AWS region")
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    host = f"kafka.{region}.amazonaws.com"
    signed = presign(
        method="GET",
        host=host,
        path="/",
        params={"Action": "kafka-cluster:Connect"},
        credentials=credentials,
        region=region,
        service=MSK_SERVICE,
        when=when,
        expires=int(TOKEN_LIFETIME.total_seconds()),
    )
    url = f"https://{host}/?{signed.query_string()}&User-Agent={_uri_encode(user_agent)}"
    token = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return MskToken(token=token, expires_at=when + TOKEN_LIFETIME)


@attrs.frozen(eq=True)
class MskIamTokenProvider:
    """librdkafka's ``oauth_cb`` for MSK IAM: signs a fresh token on every call.

    Two providers with the same region and credentials compare equal, so scalers with
    the same settings share one Kafka client. ``credentials`` is a fixed key pair or a
    :class:`CredentialSource` read for every token. ``clock`` exists for tests.
    """

    region: str
    credentials: AwsCredentials | CredentialSource
    clock: Callable[[], datetime] = attrs.field(
        default=lambda: datetime.now(UTC), eq=False, repr=False
    )
    _issued: list[int] = attrs.field(factory=lambda: [0], eq=False, repr=False, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, eq=False, repr=False, init=False)

    @property
    def tokens_issued(self) -> int:
        """How many tokens librdkafka has asked for."""
        return self._issued[0]

    def __call__(self, _oauthbearer_config: str) -> tuple[str, float, str, dict[str, str]]:
        """``(token, expiry as epoch seconds, principal, extensions)`` for librdkafka."""
        credentials = self.credentials
        if not isinstance(credentials, AwsCredentials):
            credentials = credentials.current()
        minted = msk_iam_token(self.region, credentials, now=self.clock())
        with self._lock:
            self._issued[0] += 1
        # MSK takes the principal from the signature; librdkafka only logs this name.
        return (minted.token.reveal(), minted.expires_at.timestamp(), "msk-iam", {})
