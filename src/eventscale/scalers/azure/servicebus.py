"""Azure Service Bus scaler (``type: azure-servicebus``).

Reads the *active* message count of a queue or a topic subscription from the entity's
runtime properties, through the async ``ServiceBusAdministrationClient`` (the management
API), as KEDA does (KEDA's pkg/scalers/azure_servicebus_scaler.go). With ``useRegex`` the queue name (or the
subscription name, under one topic) is a regular expression matched against the whole
entity name, and the matching entities' counts are combined by ``operation``
(``sum``, ``max`` or ``avg`` with integer division).

Beyond KEDA, off by default:

* ``includeScheduledMessages``: add the scheduled messages to the count (for a
  subscription, the topic's scheduled count: scheduled messages wait in the topic);
* ``inactiveWhenDisabled``: an entity whose status is ``Disabled`` or ``ReceiveDisabled``
  counts as empty, since no consumer can receive from it;
* ``caCertFile``: a PEM bundle to verify the namespace's TLS certificate (private clouds,
  tests). The management API is always HTTPS.

Deferred messages have no count of their own in the management API; they stay in the
entity with the active messages. See docs/scalers/azure-servicebus.md.
"""

from __future__ import annotations

import enum
import re
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
from eventscale.redaction import Secret
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
from eventscale.scalers.params import AUTH, ENV, Params, TriggerContext

if TYPE_CHECKING:
    from azure.servicebus.aio.management import ServiceBusAdministrationClient

# Fail at import time, with the extra to install, when the client library is missing.
import_optional(
    "azure.servicebus.aio.management", extra="azure", what="the azure-servicebus scaler"
)

__all__ = (
    "AzureServiceBusMetadata",
    "AzureServiceBusScaler",
    "EntityType",
    "Operation",
    "servicebus_namespace",
)

DEFAULT_TIMEOUT: Final = 10.0
_CONNECTION_ORDER: Final = (AUTH, ENV)  # a literal metadata ``connection`` is not read
_NOT_RECEIVABLE: Final = frozenset({"disabled", "receivedisabled"})


class EntityType(enum.Enum):
    """What the trigger reads."""

    QUEUE = "queue"
    SUBSCRIPTION = "subscription"


class Operation(enum.Enum):
    """How ``useRegex`` combines the matching entities' counts."""

    SUM = "sum"
    MAX = "max"
    AVG = "avg"

    def apply(self, counts: Sequence[int]) -> int:
        """Combine ``counts``: ``avg`` truncates, and every operation of nothing is 0."""
        if not counts:
            return 0
        if self is Operation.SUM:
            return sum(counts)
        if self is Operation.MAX:
            return max(0, *counts)
        return sum(counts) // len(counts)


@attrs.frozen(kw_only=True)
class AzureServiceBusMetadata:
    """The parsed ``azure-servicebus`` trigger metadata.

    ``fully_qualified_namespace`` is set for workload identity (``<namespace>.<suffix>``);
    with a connection string the namespace comes from its ``Endpoint``.
    """

    entity_type: EntityType
    queue_name: str = ""
    topic_name: str = ""
    subscription_name: str = ""
    message_count: int = 5
    activation_message_count: int = 0
    connection: Secret | None = attrs.field(default=None, repr=False)
    connection_path: str | None = None
    namespace: str = ""
    fully_qualified_namespace: str = ""
    use_regex: bool = False
    operation: Operation = Operation.SUM
    include_scheduled: bool = False
    inactive_when_disabled: bool = False
    ca_cert_file: str | None = None
    pod_identity: str = ""
    identity_overrides: tuple[tuple[str, str], ...] = ()
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def entity_name(self) -> str:
        """The queue name, or the subscription name (both patterns with ``useRegex``)."""
        return self.queue_name if self.entity_type is EntityType.QUEUE else self.subscription_name

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled ``useRegex`` pattern (matched against whole names), else ``None``."""
        return re.compile(self.entity_name) if self.use_regex else None

    @property
    def metric_name(self) -> str:
        """``s{i}-azure-servicebus-{queue or topic}`` (``queue-regex``/``topic-regex``)."""
        if self.use_regex:
            body = "queue-regex" if self.entity_type is EntityType.QUEUE else "topic-regex"
        else:
            body = self.queue_name if self.entity_type is EntityType.QUEUE else self.topic_name
        return metric_name(self.index, normalize_metric_name(f"azure-servicebus-{body}"))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> AzureServiceBusMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        queue = p.string("queueName", default="")
        topic = p.string("topicName", default="")
        subscription = p.string("subscriptionName", default="")
        message_count = p.integer("messageCount", default=5)
        if (message_count or 0) < 0:  # KEDA does not check (None: already an error)
            p.fail("messageCount must be >= 0", "messageCount")
        activation = p.integer("activationMessageCount", default=0)
        connection, connection_path = connection_setting(p, _CONNECTION_ORDER)
        namespace = p.string("namespace", default="")
        use_regex = p.boolean("useRegex", default=False)
        operation = p.enum("operation", Operation, default=Operation.SUM)
        include_scheduled = p.boolean("includeScheduledMessages", default=False)
        inactive_when_disabled = p.boolean("inactiveWhenDisabled", default=False)
        ca_cert_file = p.string("caCertFile", default="") or None

        entity: EntityType | None = None
        if queue:
            entity = EntityType.QUEUE
            if subscription:
                p.fail("subscription name provided with queue name", "subscriptionName")
            elif use_regex:
                _check_regex(p, queue, "queueName")
        if topic:
            if entity is EntityType.QUEUE:
                p.fail("both topic and queue name metadata provided", "topicName")
            else:
                entity = EntityType.SUBSCRIPTION
                if not subscription:
                    p.fail("no subscription name provided with topic name", "subscriptionName")
                elif use_regex:
                    _check_regex(p, subscription, "subscriptionName")
        if entity is None:
            p.fail(
                "no service bus entity type set (give queueName, or topicName and subscriptionName)"
            )

        identity = pod_identity(p, what="azure-servicebus")
        fqdn = ""
        if identity == AZURE_WORKLOAD:
            if not namespace:
                p.fail("namespace is required with workload identity", "namespace")
            suffix = resolve_cloud_suffix(p, service="servicebus")
            if namespace and suffix:
                fqdn = f"{namespace}.{suffix}"
        elif connection is None:
            p.fail("no connection setting given", "connection")
        p.finish()
        assert entity is not None
        assert operation is not None
        return cls(
            entity_type=entity,
            queue_name=queue,
            topic_name=topic,
            subscription_name=subscription,
            message_count=message_count,
            activation_message_count=activation,
            connection=connection,
            connection_path=connection_path,
            namespace=namespace,
            fully_qualified_namespace=fqdn,
            use_regex=use_regex,
            operation=operation,
            include_scheduled=include_scheduled,
            inactive_when_disabled=inactive_when_disabled,
            ca_cert_file=ca_cert_file,
            pod_identity=identity,
            identity_overrides=workload_overrides(p),
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


def _check_regex(p: Params, pattern: str, name: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        p.fail(f"invalid regular expression {pattern!r}: {exc}", name)


def servicebus_namespace(connection: Secret, *, path: str | None = None) -> str:
    """The namespace host (``ns.servicebus.windows.net``) of a connection string.

    :raises ConfigError: no ``Endpoint``, or neither a shared access key nor a signature.
    """
    try:
        parts = parse_connection_string(connection.reveal())
    except ValueError as exc:
        raise ConfigError(f"invalid Service Bus connection string: {exc}", path=path) from None
    endpoint = parts.get("endpoint", "")
    host = endpoint.split("://", 1)[-1].strip("/")
    if not host:
        raise ConfigError("invalid Service Bus connection string: no Endpoint", path=path)
    has_key = parts.get("sharedaccesskeyname") and parts.get("sharedaccesskey")
    if not (has_key or parts.get("sharedaccesssignature")):
        raise ConfigError(
            "invalid Service Bus connection string: "
            "no SharedAccessKeyName/SharedAccessKey or SharedAccessSignature",
            path=path,
        )
    return host


_POOL: Final[ClientPool[Any]] = ClientPool()


@attrs.frozen
class _Reading:
    name: str
    count: int
    receivable: bool


class AzureServiceBusScaler(ScalerBase):
    """Reports the active message count of a Service Bus queue or subscription.

    Build it from a trigger with :meth:`from_context`, or from an
    :class:`AzureServiceBusMetadata`. Keyword arguments:

    * ``credential``: an azure-core async token credential for workload identity
      (default: ``azure.identity.aio.WorkloadIdentityCredential``, from ``azure-identity``);
    * ``credential_options``: azure-core options for that default credential (e.g.
      ``connection_verify``, a CA bundle for the authority host);
    * ``connection_verify``: a CA bundle path (or ``False``, never in production) for the
      namespace's certificate, overriding ``caCertFile``;
    * ``timeout``: the deadline of each poll, in seconds.
    """

    def __init__(
        self,
        metadata: AzureServiceBusMetadata,
        *,
        credential: Any = None,
        credential_options: Mapping[str, Any] | None = None,
        connection_verify: str | bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        trigger_name: str | None = None,
    ) -> None:
        import_optional(
            "azure.servicebus.aio.management", extra="azure", what="the azure-servicebus scaler"
        )
        self.metadata = metadata
        self._timeout = timeout
        self._trigger = trigger_name or f"azure-servicebus[{metadata.index}]"
        verify = connection_verify if connection_verify is not None else metadata.ca_cert_file
        self._verify = verify
        owned_credential: Any = None
        self._credential: Any = None
        if metadata.pod_identity == AZURE_WORKLOAD:
            self.namespace = metadata.fully_qualified_namespace
            if credential is None:
                credential = owned_credential = workload_credential(
                    dict(metadata.identity_overrides), credential_options
                )
            self._credential = credential
            auth_key: Any = ("token", id(credential))
        else:
            assert metadata.connection is not None
            self.namespace = servicebus_namespace(
                metadata.connection, path=metadata.connection_path
            )
            auth_key = secret_fingerprint(metadata.connection)
        self._pool_key: tuple[Any, ...] = ("azure-servicebus", self.namespace, auth_key, verify)
        self._admin: PooledClient[ServiceBusAdministrationClient] = PooledClient(
            _POOL,
            self._pool_key,
            self._make_admin,
            trigger=self._trigger,
            owned_credential=owned_credential,
        )

    @classmethod
    def from_context(
        cls,
        ctx: TriggerContext,
        *,
        credential: Any = None,
        credential_options: Mapping[str, Any] | None = None,
        connection_verify: str | bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AzureServiceBusScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = AzureServiceBusMetadata.from_context(ctx)
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
            f"AzureServiceBusScaler({m.entity_type.value}={m.entity_name!r}, "
            f"topic={m.topic_name!r}, namespace={self.namespace!r}, "
            f"messageCount={m.message_count})"
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: the message count, target ``messageCount``."""
        m = self.metadata
        return (
            MetricSpec(
                name=m.metric_name,
                target=m.message_count,
                metric_type=m.metric_type,
                activation_target=m.activation_message_count,
            ),
        )

    def _secrets(self) -> tuple[Secret | None, ...]:
        return connection_secrets(
            self.metadata.connection, ("sharedaccesskey", "sharedaccesssignature")
        )

    def _make_admin(self) -> ServiceBusAdministrationClient:
        from azure.servicebus.aio.management import ServiceBusAdministrationClient

        options: dict[str, Any] = {"retry_total": 0}
        if self._verify is not None:
            options["connection_verify"] = self._verify
        if self._credential is not None:
            return ServiceBusAdministrationClient(self.namespace, self._credential, **options)
        assert self.metadata.connection is not None
        try:
            return ServiceBusAdministrationClient.from_connection_string(
                self.metadata.connection.reveal(), **options
            )
        except (ValueError, TypeError) as exc:
            raise ScalerError(
                f"the Service Bus connection string was refused ({type(exc).__name__})",
                trigger=self._trigger,
                transient=False,
            ) from None

    def _describe(self) -> str:
        m = self.metadata
        kind = "queue" if m.entity_type is EntityType.QUEUE else "subscription"
        name = f"{kind}s matching {m.entity_name!r}" if m.use_regex else f"{kind} {m.entity_name!r}"
        if m.entity_type is EntityType.SUBSCRIPTION:
            name += f" of topic {m.topic_name!r}"
        return f"{name} in namespace {self.namespace}"

    async def message_count(self) -> int:
        """Read the count once. :raises ScalerError: on any failure (never reported as 0)."""
        admin = await self._admin.get()
        m = self.metadata
        try:
            async with azure_errors(
                self._describe(), secrets=self._secrets(), deadline=self._timeout
            ):
                if m.use_regex:
                    readings = await self._read_matching(admin)
                    counts = [r.count for r in readings if r.receivable]
                    return m.operation.apply(counts)
                reading = await self._read_one(admin)
        except ScalerError as exc:
            exc.with_trigger(self._trigger)
            raise
        return reading.count if reading.receivable else 0

    async def _topic_scheduled(self, admin: ServiceBusAdministrationClient) -> int:
        topic = await admin.get_topic_runtime_properties(self.metadata.topic_name)
        return int(topic.scheduled_message_count or 0)

    async def _read_one(self, admin: ServiceBusAdministrationClient) -> _Reading:
        m = self.metadata
        receivable = True
        if m.entity_type is EntityType.QUEUE:
            queue = await admin.get_queue_runtime_properties(m.queue_name)
            count = int(queue.active_message_count or 0)
            if m.include_scheduled:
                count += int(queue.scheduled_message_count or 0)
            if m.inactive_when_disabled:
                receivable = _receivable((await admin.get_queue(m.queue_name)).status)
            return _Reading(m.queue_name, count, receivable)
        sub = await admin.get_subscription_runtime_properties(m.topic_name, m.subscription_name)
        count = int(sub.active_message_count or 0)
        if m.include_scheduled:
            count += await self._topic_scheduled(admin)
        if m.inactive_when_disabled:
            props = await admin.get_subscription(m.topic_name, m.subscription_name)
            receivable = _receivable(props.status)
        return _Reading(m.subscription_name, count, receivable)

    async def _read_matching(self, admin: ServiceBusAdministrationClient) -> list[_Reading]:
        m = self.metadata
        pattern = m.pattern
        assert pattern is not None
        statuses: dict[str, Any] = {}
        readings: list[_Reading] = []
        if m.entity_type is EntityType.QUEUE:
            if m.inactive_when_disabled:
                statuses = {q.name: q.status async for q in admin.list_queues()}
            async for queue in admin.list_queues_runtime_properties():
                if pattern.fullmatch(queue.name) is None:
                    continue
                count = int(queue.active_message_count or 0)
                if m.include_scheduled:
                    count += int(queue.scheduled_message_count or 0)
                readings.append(_Reading(queue.name, count, _receivable(statuses.get(queue.name))))
            return readings
        if m.inactive_when_disabled:
            statuses = {s.name: s.status async for s in admin.list_subscriptions(m.topic_name)}
        scheduled = await self._topic_scheduled(admin) if m.include_scheduled else 0
        async for sub in admin.list_subscriptions_runtime_properties(m.topic_name):
            if pattern.fullmatch(sub.name) is None:
                continue
            count = int(sub.active_message_count or 0) + scheduled
            readings.append(_Reading(sub.name, count, _receivable(statuses.get(sub.name))))
        return readings

    async def get_metrics(self) -> ScalerReport:
        """Poll once: the count, active when it exceeds ``activationMessageCount``."""
        count = await self.message_count()
        m = self.metadata
        return ScalerReport.single(
            m.metric_name, float(count), is_active=count > m.activation_message_count
        )

    async def aclose(self) -> None:
        """Release the shared namespace client (closed with its last user); safe to repeat."""
        await self._admin.aclose()


def _receivable(status: Any) -> bool:
    """Whether a consumer can receive from an entity with ``status`` (unknown: yes)."""
    if status is None:
        return True
    text = str(getattr(status, "value", status)).lower()
    return text not in _NOT_RECEIVABLE
