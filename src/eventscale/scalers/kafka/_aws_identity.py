"""AWS credentials from the default credential chain, for MSK IAM tokens (botocore).

With ``podIdentity: {provider: aws}``, a role ARN (the pod identity's ``roleArn`` or the
trigger's ``awsRoleArn``) or ``identityOwner: operator``, the credentials that sign MSK
IAM tokens are not given in the trigger: they come from the process's AWS default
credential chain, as in KEDA's ``pkg/scalers/aws/aws_common.go`` (``GetAwsConfig``):
environment variables, a web identity token file with ``AWS_ROLE_ARN`` (IRSA, through STS
``AssumeRoleWithWebIdentity``), the EKS Pod Identity container credentials endpoint
(``AWS_CONTAINER_CREDENTIALS_FULL_URI`` with ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``),
shared config files, and, with a role ARN, an STS ``AssumeRole`` on top of those (with
KEDA's ``awsExternalId`` as its ``ExternalId`` when one is given).

All of it is botocore's own credential providers (the optional ``aws`` extra); nothing
here signs an STS request. botocore's refreshable credentials renew themselves before
they expire; :meth:`AwsCredentialChain.current` reads a frozen copy for every token.
Its calls block (HTTP to STS or the container endpoint), so callers on the event loop run
it in a worker thread; librdkafka calls the token callback in its own thread anyway.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import attrs

from eventscale.errors import MissingExtraError, ScalerError
from eventscale.scalers.kafka._msk_iam import AwsCredentials

__all__ = ("DEFAULT_SESSION_NAME", "AwsCredentialChain")

#: The ``RoleSessionName`` of the ``AssumeRole`` eventscale makes for a role ARN.
DEFAULT_SESSION_NAME: Final = "eventscale"
_MAX_DETAIL: Final = 300


def _botocore() -> tuple[Any, Any]:
    try:
        import botocore.credentials as credentials
        import botocore.session as session
    except ImportError as exc:
        raise MissingExtraError(
            "kafka sasl aws_msk_iam with AWS credentials from the default chain "
            "(podIdentity aws, awsRoleArn or identityOwner operator)",
            "aws",
            "botocore",
        ) from exc
    return session, credentials


def _quiet_botocore() -> None:
    # botocore's DEBUG records quote request parameters (the web identity token) and
    # response bodies (secret keys): eventscale keeps its loggers at INFO at most.
    logger = logging.getLogger("botocore")
    if logger.getEffectiveLevel() < logging.INFO or logger.level < logging.INFO:
        logger.setLevel(logging.INFO)


def _describe(exc: BaseException) -> str:
    """What went wrong, without anything a response body or a token could carry."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError: the code and the operation
        error = response.get("Error") or {}
        code = error.get("Code", "?") if isinstance(error, dict) else "?"
        operation = getattr(exc, "operation_name", "?")
        return f"{operation} refused: {code}"
    detail = str(exc).splitlines()[0] if str(exc) else ""
    # botocore's container/metadata errors quote the response body: keep its first words.
    detail = detail.split(" from container metadata:")[0][:_MAX_DETAIL]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


@attrs.frozen(eq=True)
class AwsCredentialChain:
    """The AWS default credential chain, optionally assuming ``role_arn`` on top.

    Two chains with the same region, role and session name compare equal (scalers with the
    same settings share one Kafka client). The botocore session is created on first use.
    """

    region: str
    role_arn: str = ""
    session_name: str = DEFAULT_SESSION_NAME
    #: ``awsExternalId``: the ``ExternalId`` of the ``AssumeRole`` (with ``role_arn`` only);
    #: kept out of reprs, as the role's trust policy treats it as a shared value.
    external_id: str = attrs.field(default="", repr=False)
    _state: list[Any] = attrs.field(factory=lambda: [None], eq=False, repr=False, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, eq=False, repr=False, init=False)

    def _load(self) -> Any:
        session_mod, credentials_mod = _botocore()
        _quiet_botocore()
        session = session_mod.get_session()
        session.set_config_variable("region", self.region)
        source = session.get_credentials()
        if source is None:
            raise ScalerError(
                "no AWS credentials found in the default chain (environment, web identity "
                "token file, container credentials endpoint, shared config, instance "
                "metadata)"
            )
        if not self.role_arn:
            return source
        # AssumeRole through botocore's own fetcher (the one its assume-role profiles use).
        extra = {"RoleSessionName": self.session_name}
        if self.external_id:
            extra["ExternalId"] = self.external_id
        fetcher = credentials_mod.AssumeRoleCredentialFetcher(
            client_creator=session.create_client,
            source_credentials=source,
            role_arn=self.role_arn,
            extra_args=extra,
        )
        return credentials_mod.DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )

    def current(self) -> AwsCredentials:
        """The credentials to sign with now, refreshed by botocore before they expire.

        Blocking: call it from a worker thread.

        :raises MissingExtraError: botocore is not installed (the ``aws`` extra).
        :raises ScalerError: no credentials in the chain, STS or the credentials endpoint
            refused or could not be reached (the message holds no credential).
        """
        try:
            with self._lock:
                if self._state[0] is None:
                    self._state[0] = self._load()
                source = self._state[0]
            frozen = source.get_frozen_credentials()
        except (ScalerError, MissingExtraError):
            raise
        except Exception as exc:
            raise ScalerError(
                f"AWS credentials for MSK IAM (region {self.region}"
                + (f", role {self.role_arn}" if self.role_arn else "")
                + f"): {_describe(exc)}"
            ) from None
        if not frozen.access_key or not frozen.secret_key:
            raise ScalerError("the AWS default credential chain returned empty credentials")
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)
