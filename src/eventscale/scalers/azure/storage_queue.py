"""Azure Storage Queue scaler (``type: azure-queue``).

Reads how many messages wait in one storage queue, the way KEDA's ``azure-queue`` scaler
does (KEDA's pkg/scalers/azure_queue_scaler.go):

* ``queueLengthStrategy: all`` (the default) reports the queue's *approximate message
  count*, which includes messages that are invisible because a consumer holds them;
* ``visibleonly`` peeks at most 32 messages (the service's maximum) and reports how many
  came back; when the peek is full (exactly 32) the visible count is unknown, so it falls
  back to the approximate count.

One async ``QueueServiceClient`` is shared per storage account (and event loop) by every
scaler that reads it; :meth:`AzureQueueScaler.aclose` releases it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.azure._common import (
    AZURE_WORKLOAD,
    ClientPool,
    PooledClient,
    azure_errors,
    connection_secrets,
    connection_setting,
    parse_connection_string,
    pod_identity,
    resolve_cloud_suffix,
    secret_fingerprint,
    workload_credential,
    workload_overrides,
)
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient, QueueServiceClient

# Fail at import time, with the extra to install, when the client library is missing.
import_optional("azure.storage.queue.aio", extra="azure", what="the azure-queue scaler")

__all__ = (
    "AzureQueueMetadata",
    "AzureQueueScaler",
    "QueueLengthStrategy",
    "storage_queue_endpoint",
)

PEEK_LIMIT: Final = 32  # the most messages one Peek Messages call returns
DEFAULT_TIMEOUT: Final = 10.0
_CONNECTION_ORDER: Final = (AUTH, META, ENV)


class QueueLengthStrategy(enum.Enum):
    """What ``azure-queue`` counts."""

    ALL = "all"
    """The approximate message count: visible and invisible (in-flight) messages."""
    VISIBLE_ONLY = "visibleonly"
    """Visible messages (peek up to 32); the approximate count when the peek is full."""


@attrs.frozen(kw_only=True)
class AzureQueueMetadata:
    """The parsed ``azure-queue`` trigger metadata.

    ``connection`` is the storage connection string (a :class:`Secret`); with
    ``pod_identity == "azure-workload"`` the account URL is built from ``account_name``
    and ``endpoint_suffix`` (``queue.core.windows.net`` for the public cloud).
    """

    queue_name: str
    queue_length: int = 5
    activation_queue_length: int = 0
    connection: Secret | None = attrs.field(default=None, repr=False)
    connection_path: str | None = None
    account_name: str = ""
    endpoint_suffix: str = "queue.core.windows.net"
    strategy: QueueLengthStrategy = QueueLengthStrategy.ALL
    pod_identity: str = ""
    identity_overrides: tuple[tuple[str, str], ...] = ()
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def metric_name(self) -> str:
        """``s{index}-azure-queue-{queueName}``, normalized as KEDA does."""
        return metric_name(self.index, normalize_metric_name(f"azure-queue-{self.queue_name}"))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> AzureQueueMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError).

        The connection string itself is only checked for presence here; its shape is
        checked when the scaler is built.
        """
        p = Params(ctx)
        queue_name = p.string("queueName", required=True)
        queue_length = p.integer("queueLength", default=5)
        if (queue_length or 0) < 0:  # KEDA does not check (None: already an error)
            p.fail("queueLength must be >= 0", "queueLength")
        activation = p.integer("activationQueueLength", default=0)
        connection, connection_path = connection_setting(p, _CONNECTION_ORDER)
        account_name = p.string("accountName", default="")
        strategy = p.enum(
            "queueLengthStrategy", QueueLengthStrategy, default=QueueLengthStrategy.ALL
        )
        # KEDA parses cloud/endpointSuffix whatever the authentication.
        suffix = resolve_cloud_suffix(p, service="storage", default_prefix="queue.")
        identity = pod_identity(p, what="azure-queue")
        if identity == AZURE_WORKLOAD:
            if not account_name:
                p.fail("no accountName given", "accountName")
        elif connection is None:
            p.fail("no connection setting given", "connection")
        p.finish()
        assert queue_name is not None
        assert strategy is not None
        assert suffix is not None
        return cls(
            queue_name=queue_name,
            queue_length=queue_length,
            activation_queue_length=activation,
            connection=connection,
            connection_path=connection_path,
            account_name=account_name,
            endpoint_suffix=suffix,
            strategy=strategy,
            pod_identity=identity,
            identity_overrides=workload_overrides(p),
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


def storage_queue_endpoint(connection: Secret, *, path: str | None = None) -> str:
    """The queue service URL a storage connection string points at (no secret in it).

    :raises ConfigError: the string has no credential or no way to build the endpoint.
    """
    try:
        parts = parse_connection_string(connection.reveal())
    except ValueError as exc:
        raise ConfigError(f"invalid storage connection string: {exc}", path=path) from None
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return "http://127.0.0.1:10001/devstoreaccount1"
    if not (parts.get("accountkey") or parts.get("sharedaccesssignature")):
        raise ConfigError(
            "invalid storage connection string: no AccountKey or SharedAccessSignature",
            path=path,
        )
    if parts.get("queueendpoint"):
        return parts["queueendpoint"].rstrip("/")
    account = parts.get("accountname")
    if not account:
        raise ConfigError(
            "invalid storage connection string: it has neither QueueEndpoint nor AccountName",
            path=path,
        )
    protocol = parts.get("defaultendpointsprotocol") or "https"
    suffix = parts.get("endpointsuffix") or "core.windows.net"
    return f"{protocol}://{account}.queue.{suffix}"


_POOL: Final[ClientPool[Any]] = ClientPool()


class AzureQueueScaler(ScalerBase):
    """Reports the length of one Azure Storage queue.

    Build it from a trigger with :meth:`from_context`, or from an
    :class:`AzureQueueMetadata`. Keyword arguments:

    * ``credential``: an azure-core async token credential used with workload identity
      (default: ``azure.identity.aio.WorkloadIdentityCredential``, which needs the
      ``azure-identity`` package);
    * ``credential_options``: azure-core options for that default credential (e.g.
      ``connection_verify``, a CA bundle for the authority host);
    * ``connection_verify``: a CA bundle path (or ``False``, never in production) for the
      storage account's certificate;
    * ``timeout``: the deadline of each poll, in seconds.
    """

    def __init__(
        self,
        metadata: AzureQueueMetadata,
        *,
        credential: Any = None,
        credential_options: Mapping[str, Any] | None = None,
        connection_verify: str | bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        trigger_name: str | None = None,
    ) -> None:
        import_optional("azure.storage.queue.aio", extra="azure", what="the azure-queue scaler")
        self.metadata = metadata
        self._timeout = timeout
        self._verify = connection_verify
        self._trigger = trigger_name or f"azure-queue[{metadata.index}]"
        owned_credential: Any = None
        if metadata.pod_identity == AZURE_WORKLOAD:
            self.endpoint = f"https://{metadata.account_name}.{metadata.endpoint_suffix}"
            if credential is None:
                credential = owned_credential = workload_credential(
                    dict(metadata.identity_overrides), credential_options
                )
            self._credential: Any = credential
            self._pool_key: tuple[Any, ...] = (
                "azure-queue",
                self.endpoint,
                "token",
                id(credential),
                connection_verify,
            )
        else:
            assert metadata.connection is not None
            self.endpoint = storage_queue_endpoint(
                metadata.connection, path=metadata.connection_path
            )
            self._credential = None
            self._pool_key = (
                "azure-queue",
                self.endpoint,
                secret_fingerprint(metadata.connection),
                connection_verify,
            )
        self._service: PooledClient[QueueServiceClient] = PooledClient(
            _POOL,
            self._pool_key,
            self._make_service,
            trigger=self._trigger,
            owned_credential=owned_credential,
        )
        self._queue: QueueClient | None = None

    @classmethod
    def from_context(
        cls,
        ctx: TriggerContext,
        *,
        credential: Any = None,
        credential_options: Mapping[str, Any] | None = None,
        connection_verify: str | bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AzureQueueScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = AzureQueueMetadata.from_context(ctx)
        return cls(
            metadata,
            credential=credential,
            credential_options=credential_options,
            connection_verify=connection_verify,
            timeout=timeout,
            trigger_name=ctx.identity,
        )

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"AzureQueueScaler(queue={m.queue_name!r}, endpoint={self.endpoint!r}, "
            f"strategy={m.strategy.value!r}, queueLength={m.queue_length})"
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: the queue length, target ``queueLength``."""
        m = self.metadata
        return (
            MetricSpec(
                name=m.metric_name,
                target=m.queue_length,
                metric_type=m.metric_type,
                activation_target=m.activation_queue_length,
            ),
        )

    def _secrets(self) -> tuple[Secret | None, ...]:
        return connection_secrets(self.metadata.connection, ("accountkey", "sharedaccesssignature"))

    async def _make_service(self) -> QueueServiceClient:
        from azure.storage.queue.aio import QueueServiceClient

        options: dict[str, Any] = {"retry_total": 0}
        if self._verify is not None:
            options["connection_verify"] = self._verify
        if self._credential is not None:
            return QueueServiceClient(self.endpoint, credential=self._credential, **options)
        assert self.metadata.connection is not None
        try:
            return QueueServiceClient.from_connection_string(
                self.metadata.connection.reveal(), **options
            )
        except ValueError as exc:
            message = redact_text(str(exc), self._secrets())
            raise ScalerError(
                f"the storage connection string was refused: {message}",
                trigger=self._trigger,
                transient=False,
            ) from None

    async def _queue_client(self) -> QueueClient:
        service = await self._service.get()
        if self._queue is None:
            self._queue = service.get_queue_client(self.metadata.queue_name)
        return self._queue

    async def queue_length(self) -> int:
        """Read the count once, per the strategy. :raises ScalerError: on any failure."""
        queue = await self._queue_client()
        m = self.metadata
        what = f"queue {m.queue_name!r} at {self.endpoint}"
        try:
            async with azure_errors(what, secrets=self._secrets(), deadline=self._timeout):
                if m.strategy is QueueLengthStrategy.VISIBLE_ONLY:
                    peeked = await queue.peek_messages(max_messages=PEEK_LIMIT)
                    if len(peeked) < PEEK_LIMIT:
                        return len(peeked)
                properties = await queue.get_queue_properties()
        except ScalerError as exc:
            exc.with_trigger(self._trigger)
            raise
        count = properties.approximate_message_count
        if count is None:
            raise ScalerError(
                f"{what}: the service did not report an approximate message count",
                trigger=self._trigger,
            )
        return int(count)

    async def get_metrics(self) -> ScalerReport:
        """Poll the queue once: the count, active when it exceeds ``activationQueueLength``."""
        count = await self.queue_length()
        m = self.metadata
        return ScalerReport.single(
            m.metric_name, float(count), is_active=count > m.activation_queue_length
        )

    async def aclose(self) -> None:
        """Release the shared account client (closed with its last user); safe to repeat."""
        self._queue = None
        await self._service.aclose()
