"""podIdentity aws for MSK IAM: real botocore against local STS and container-credential
stand-ins; the keys it gets sign the MSK IAM token (the broker here cannot check IAM
tokens, so the end-to-end check is the token's content)."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import botocore  # noqa: F401 - a test dependency: these tests run, never skip
import pytest

from eventscale.authentication.resolver import resolve_trigger_contexts_async
from eventscale.errors import ConfigError, MissingExtraError, ScalerError
from eventscale.manifests.reader import load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka._aws_identity import AwsCredentialChain
from eventscale.scalers.kafka._msk_iam import AwsCredentials, MskIamTokenProvider
from eventscale.scalers.kafka.config import parse_kafka_metadata
from servers._proc import free_port, unique_name

_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class _Handler(http.server.BaseHTTPRequestHandler):
    """What both stand-ins share: quiet, and one way to answer."""

    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Sts(_Handler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        self.server.calls.append((form, dict(self.headers)))
        if self.server.refuse:
            self._reply(403, self._error("AccessDenied", "Not authorized to perform sts"))
            return
        # A role whose trust policy asks for sts:ExternalId: AssumeRole without the very
        # value is refused, as STS refuses it.
        wanted = self.server.external_id
        if form.get("Action") == "AssumeRole" and wanted and form.get("ExternalId") != wanted:
            self._reply(403, self._error("AccessDenied", "Not authorized to perform sts"))
            return
        n = len(self.server.calls)
        expiry = (datetime.now(UTC) + self.server.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
        creds = (
            f"<Credentials><AccessKeyId>ASIASTS{n:09d}</AccessKeyId>"
            f"<SecretAccessKey>stssecret{n}</SecretAccessKey>"
            f"<SessionToken>ststoken{n}</SessionToken>"
            f"<Expiration>{expiry}</Expiration></Credentials>"
        )
        action = form.get("Action", "")
        user = (
            "<AssumedRoleUser><AssumedRoleId>AROA:x</AssumedRoleId>"
            f"<Arn>{form.get('RoleArn', '')}/x</Arn></AssumedRoleUser>"
        )
        result = f"<{action}Result>{creds}{user}</{action}Result>"
        meta = "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>"
        self._reply(200, f'<{action}Response xmlns="{_NS}">{result}{meta}</{action}Response>')

    def _error(self, code: str, message: str) -> str:
        return (
            f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
        )

    def _reply(self, status: int, text: str) -> None:
        self._send(status, "text/xml", text.encode())


class _Container(_Handler):
    def do_GET(self) -> None:
        self.server.calls.append(({"path": self.path}, dict(self.headers)))
        if self.headers.get("Authorization") != self.server.expected_auth:
            self._reply(401, {"message": "bad token"})
            return
        n = len(self.server.calls)
        expiry = datetime.now(UTC) + self.server.lifetime
        self._reply(
            200,
            {
                "AccessKeyId": f"ASIAPOD{n:09d}",
                "SecretAccessKey": f"podsecret{n}",
                "Token": f"podtoken{n}",
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def _reply(self, status: int, payload: dict[str, str]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())


class _Server(http.server.ThreadingHTTPServer):
    calls: list[tuple[dict[str, str], dict[str, str]]]
    refuse: bool = False
    lifetime: timedelta = timedelta(hours=1)
    expected_auth: str = ""
    external_id: str = ""


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), handler)
    server.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sts() -> Iterator[_Server]:
    yield from _serve(_Sts)


@pytest.fixture
def container() -> Iterator[_Server]:
    yield from _serve(_Container)


@pytest.fixture(autouse=True)
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")


@pytest.fixture
def web_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sts: _Server) -> str:
    """IRSA's environment: a web identity token file and a role that ``sts`` serves;
    returns the token."""
    token = f"eyJ.web-identity.{unique_name('tok')}"
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa")
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "irsa-session")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts.server_address[1]}")
    return token


CROSS_ACCOUNT = "arn:aws:iam::123456789012:role/cross-account"


@pytest.fixture
def external_id(sts: _Server, web_identity: str) -> str:
    """The sts:ExternalId that ``sts`` requires to assume a role (on top of IRSA)."""
    sts.external_id = unique_name("ext")
    return sts.external_id


def _container_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, container: _Server, path: str
) -> str:
    """EKS Pod Identity's environment: the ``container`` endpoint at ``path`` and a token
    file; returns the token (the endpoint accepts what its ``expected_auth`` says)."""
    auth = f"pod-identity-{unique_name('auth')}"
    (tmp_path / "eks-token").write_text(auth)
    port = container.server_address[1]
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}{path}")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(tmp_path / "eks-token"))
    return auth


def _token_query(token: str) -> dict[str, str]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return dict(parse_qsl(urlsplit(url).query))


def test_web_identity_token_file_through_sts(sts: _Server, web_identity: str) -> None:
    token = web_identity
    provider = MskIamTokenProvider("eu-west-1", AwsCredentialChain("eu-west-1"))
    minted, _expiry, _principal, _ext = provider("")
    (form, _headers), *_ = sts.calls
    assert form["Action"] == "AssumeRoleWithWebIdentity"
    assert form["WebIdentityToken"] == token
    assert form["RoleArn"] == "arn:aws:iam::123456789012:role/irsa"
    assert form["RoleSessionName"] == "irsa-session"
    query = _token_query(minted)
    assert query["X-Amz-Credential"].startswith("ASIASTS000000001/")
    assert query["X-Amz-Security-Token"] == "ststoken1"


@pytest.mark.usefixtures("web_identity")
def test_role_arn_assumed_on_top_of_the_chain(sts: _Server) -> None:
    role = "arn:aws:iam::123456789012:role/msk-reader"
    chain = AwsCredentialChain("eu-west-1", role_arn=role)
    got = chain.current()
    actions = [form["Action"] for form, _ in sts.calls]
    assert actions == ["AssumeRoleWithWebIdentity", "AssumeRole"]
    form, headers = sts.calls[1]
    assert form["RoleArn"] == role
    assert form["RoleSessionName"] == "eventscale"
    # AssumeRole is signed (by botocore) with the web identity's temporary key.
    assert "Credential=ASIASTS000000001/" in headers["Authorization"]
    assert got.access_key_id == "ASIASTS000000002"
    assert got.session_token is not None
    assert got.session_token.reveal() == "ststoken2"


def test_container_credentials_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, container: _Server
) -> None:
    container.expected_auth = _container_credentials(monkeypatch, tmp_path, container, "/v1/creds")
    provider = MskIamTokenProvider("eu-west-1", AwsCredentialChain("eu-west-1"))
    minted, *_ = provider("")
    assert container.calls[0][0]["path"] == "/v1/creds"
    query = _token_query(minted)
    assert query["X-Amz-Credential"].startswith("ASIAPOD000000001/")
    assert query["X-Amz-Security-Token"] == "podtoken1"


@pytest.mark.usefixtures("web_identity")
def test_credentials_near_expiry_are_refreshed(sts: _Server) -> None:
    # Inside botocore's mandatory refresh window: every read fetches new credentials.
    sts.lifetime = timedelta(minutes=5)
    provider = MskIamTokenProvider("eu-west-1", AwsCredentialChain("eu-west-1"))
    first = _token_query(provider("")[0])["X-Amz-Credential"]
    second = _token_query(provider("")[0])["X-Amz-Credential"]
    assert first.startswith("ASIASTS000000001/")
    assert second.startswith("ASIASTS000000002/")
    assert len(sts.calls) == 2


@pytest.mark.usefixtures("web_identity")
def test_fresh_credentials_are_reused(sts: _Server) -> None:
    chain = AwsCredentialChain("eu-west-1")
    assert chain.current() == chain.current()
    assert len(sts.calls) == 1


def test_sts_refusal_is_a_scaler_error_without_the_token(
    sts: _Server, caplog: pytest.LogCaptureFixture, web_identity: str
) -> None:
    token = web_identity
    sts.refuse = True
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ScalerError) as info:
        AwsCredentialChain("eu-west-1").current()
    assert "AccessDenied" in str(info.value)
    assert token not in str(info.value)
    assert token not in repr(info.value)
    assert token not in caplog.text


def test_container_endpoint_refusal_and_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, container: _Server
) -> None:
    auth = _container_credentials(monkeypatch, tmp_path, container, "/creds")
    container.expected_auth = "something-else"
    with pytest.raises(ScalerError) as info:
        AwsCredentialChain("eu-west-1").current()
    assert auth not in str(info.value)
    assert container.calls[0][1]["Authorization"] == auth
    down = free_port()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{down}/creds")
    with pytest.raises(ScalerError):
        AwsCredentialChain("eu-west-1").current()


def test_external_id_is_sent_with_assume_role(
    sts: _Server, caplog: pytest.LogCaptureFixture, external_id: str
) -> None:
    caplog.set_level(logging.DEBUG)
    role = CROSS_ACCOUNT
    meta = parse_kafka_metadata(
        _ctx({"awsRoleArn": role, "awsExternalId": external_id}, identityOwner="operator")
    )
    assert meta.msk_iam is not None
    chain = meta.msk_iam.credentials
    assert isinstance(chain, AwsCredentialChain)
    assert external_id not in repr(chain) + repr(meta)
    minted, *_ = meta.msk_iam("")
    form, _headers = sts.calls[-1]
    assert form["Action"] == "AssumeRole"
    assert form["RoleArn"] == role
    assert form["ExternalId"] == external_id
    assert _token_query(minted)["X-Amz-Credential"].startswith("ASIASTS000000002/")
    assert external_id not in caplog.text


def test_wrong_or_missing_external_id_is_refused(
    sts: _Server, caplog: pytest.LogCaptureFixture, external_id: str
) -> None:
    caplog.set_level(logging.DEBUG)
    role = CROSS_ACCOUNT
    wrong = unique_name("wrong")
    for chain in (
        AwsCredentialChain("eu-west-1", role_arn=role),
        AwsCredentialChain("eu-west-1", role_arn=role, external_id=wrong),
    ):
        with pytest.raises(ScalerError, match="AssumeRole refused: AccessDenied") as info:
            chain.current()
        assert wrong not in str(info.value)
    assert [form.get("ExternalId") for form, _ in sts.calls if form["Action"] == "AssumeRole"] == [
        None,
        wrong,
    ]
    assert wrong not in caplog.text


def _kafka_manifest(pod_identity: str) -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: msk}}
spec:
  scaleTargetRef: {{name: consumer}}
  triggers:
  - type: kafka
    metadata:
      bootstrapServers: b-1.msk.example:9098
      consumerGroup: {unique_name("g")}
      topic: t
      sasl: oauthbearer
      saslTokenProvider: aws_msk_iam
      tls: enable
      awsRegion: eu-west-1
    authenticationRef: {{name: msk-iam}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: msk-iam}}
spec:
  podIdentity: {pod_identity}
"""


@pytest.mark.anyio
async def test_pod_identity_external_id_from_the_trigger_authentication(
    sts: _Server, caplog: pytest.LogCaptureFixture, external_id: str
) -> None:
    # KEDA's spec.podIdentity.externalID, with the pod identity's roleArn.
    caplog.set_level(logging.DEBUG)
    role = CROSS_ACCOUNT
    m = load_manifests(
        _kafka_manifest(f"{{provider: aws, roleArn: '{role}', externalID: {external_id}}}")
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m)
    assert external_id not in repr(ctx)
    meta = parse_kafka_metadata(ctx)
    assert meta.msk_iam is not None
    minted, *_ = meta.msk_iam("")
    form, _headers = sts.calls[-1]
    assert (form["Action"], form["RoleArn"], form["ExternalId"]) == (
        "AssumeRole",
        role,
        external_id,
    )
    assert _token_query(minted)["X-Amz-Credential"].startswith("ASIASTS000000002/")
    assert external_id not in caplog.text


@pytest.mark.anyio
async def test_pod_identity_external_id_needs_its_role_arn() -> None:
    m = load_manifests(_kafka_manifest("{provider: aws, externalID: some-id}"))
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m)
    with pytest.raises(ConfigError, match="externalID of podIdentity requires roleArn") as info:
        parse_kafka_metadata(ctx)
    assert "externalID" in str(info.value)


def test_no_credentials_anywhere_is_an_error() -> None:
    with pytest.raises(ScalerError, match="no AWS credentials"):
        AwsCredentialChain("eu-west-1").current()


def _ctx(auth: dict[str, str], **metadata: str) -> TriggerContext:
    meta = {
        "bootstrapServers": "b-1.msk.example:9098",
        "consumerGroup": unique_name("g"),
        "topic": "t",
        "sasl": "oauthbearer",
        "saslTokenProvider": "aws_msk_iam",
        "tls": "enable",
        "awsRegion": "eu-west-1",
        **metadata,
    }
    return TriggerContext(metadata=meta, auth={k: Secret(v) for k, v in auth.items()})


@pytest.mark.usefixtures("web_identity")
def test_pod_identity_aws_in_the_kafka_trigger() -> None:
    role = "arn:aws:iam::123456789012:role/from-pod-identity"
    meta = parse_kafka_metadata(_ctx({"podIdentity": "aws", "roleArn": role}))
    assert meta.msk_iam is not None
    chain = meta.msk_iam.credentials
    assert isinstance(chain, AwsCredentialChain)
    assert chain.role_arn == role
    minted, *_ = meta.msk_iam("")
    assert _token_query(minted)["X-Amz-Credential"].startswith("ASIASTS000000002/")
    # Without podIdentity, static keys are used as before.
    static = parse_kafka_metadata(
        _ctx({"awsAccessKeyID": "AKIASTATIC", "awsSecretAccessKey": "s3cr3t"})
    )
    assert static.msk_iam is not None
    assert isinstance(static.msk_iam.credentials, AwsCredentials)


def test_pod_identity_role_arn_with_workload_owner_is_refused() -> None:
    ctx = _ctx(
        {"podIdentity": "aws", "roleArn": "arn:aws:iam::1:role/r", "identityOwner": "workload"}
    )
    with pytest.raises(ConfigError, match="roleArn"):
        parse_kafka_metadata(ctx)


def test_without_botocore_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [n for n in sys.modules if n == "botocore" or n.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(MissingExtraError) as info:
        AwsCredentialChain("eu-west-1").current()
    assert info.value.extra == "aws"
    assert "botocore" in str(info.value)
