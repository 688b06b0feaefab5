"""Settings of one ``rabbitmq`` trigger: :class:`RabbitMQConfig` and its enums.

A config is built either in Python (``RabbitMQConfig(host=..., queue_name=...)``) or from
KEDA trigger metadata with :meth:`RabbitMQConfig.from_context`; both run KEDA's checks
(keda: pkg/scalers/rabbitmq_scaler.go ``Validate``, ``validateTrigger``) and raise
:class:`~eventscale.errors.ConfigError`. See docs/scalers/rabbitmq.md.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final
from urllib.parse import quote_plus, unquote, urlsplit

import attrs

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType, metric_name, normalize_metric_name
from eventscale.redaction import Secret
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext

__all__ = (
    "DEFAULT_TIMEOUT",
    "DEFAULT_VALUE",
    "Mode",
    "Operation",
    "Protocol",
    "RabbitMQConfig",
)

DEFAULT_TIMEOUT: Final = timedelta(milliseconds=3000)
"""The per-poll timeout without ``timeout`` (KEDA's ``KEDA_HTTP_DEFAULT_TIMEOUT``)."""
DEFAULT_VALUE: Final = 20.0
"""The target ``value`` without ``value`` or ``queueLength`` (KEDA's default)."""


class Protocol(enum.Enum):
    """How the queue is read. A built config holds ``AMQP`` or ``HTTP``, never ``AUTO``."""

    AMQP = "amqp"
    HTTP = "http"
    AUTO = "auto"
    """From the host URL scheme (``amqp``/``amqps`` or ``http``/``https``); resolved when
    the config is built."""


class Mode(enum.Enum):
    """What the metric measures (KEDA ``mode``; names are case-sensitive)."""

    QUEUE_LENGTH = "QueueLength"
    MESSAGE_RATE = "MessageRate"
    DELIVER_GET_RATE = "DeliverGetRate"
    PUBLISHED_TO_DELIVERED_RATIO = "PublishedToDeliveredRatio"
    EXPECTED_QUEUE_CONSUMPTION_TIME = "ExpectedQueueConsumptionTime"


class Operation(enum.Enum):
    """How the queues matched by a regex are combined (KEDA ``operation``)."""

    SUM = "sum"
    MAX = "max"
    AVG = "avg"


def _secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def _required_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def _optional_text(value: str | None) -> str | None:
    return value or None


def _str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


def _params_tuple(
    value: Mapping[str, Sequence[str]] | Sequence[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple((k, v) for k, vs in value.items() for v in vs)
    return tuple(value)


def _protocol(value: Protocol | str) -> Protocol:
    if isinstance(value, Protocol):
        return value
    try:
        return Protocol(value)
    except ValueError:
        raise ConfigError(
            f'protocol "{value}" must be one of [amqp http auto]', path="protocol"
        ) from None


def _mode(value: Mode | str) -> Mode:
    if isinstance(value, Mode):
        return value
    try:
        return Mode(value)
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise ConfigError(
            f"the mode {value} is not allowed (use one of {names})", path="mode"
        ) from None


def _operation(value: Operation | str) -> Operation:
    if isinstance(value, Operation):
        return value
    try:
        return Operation(value)
    except ValueError:
        raise ConfigError(
            f"operation {value!r} must be one of sum, max, avg", path="operation"
        ) from None


def _timeout(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if value < 0:
        raise ConfigError("timeout must not be negative", path="timeout")
    return timedelta(seconds=value)


@attrs.frozen(kw_only=True)
class RabbitMQConfig:
    """Validated settings of one ``rabbitmq`` trigger: the KEDA parameters in snake case.

    Build it in Python (``protocol`` ``auto`` is resolved from the ``host`` scheme;
    strings are accepted for the enums, seconds for ``timeout``) or from KEDA metadata
    with :meth:`from_context`. Invalid settings raise
    :class:`~eventscale.errors.ConfigError`. Secrets (``host``, ``password``, ``key``,
    ``key_password``, ``client_secret``) are :class:`~eventscale.redaction.Secret` values
    and never show in a repr. ``connection_name`` is shown in the management UI.
    """

    queue_name: str
    host: Secret = attrs.field(converter=_required_secret)
    protocol: Protocol = attrs.field(default=Protocol.AUTO, converter=_protocol)
    mode: Mode = attrs.field(default=Mode.QUEUE_LENGTH, converter=_mode)
    value: float = attrs.field(default=DEFAULT_VALUE, converter=float)
    activation_value: float = attrs.field(default=0.0, converter=float)
    vhost_name: str | None = attrs.field(default=None, converter=_optional_text)
    use_regex: bool = False
    operation: Operation = attrs.field(default=Operation.SUM, converter=_operation)
    exclude_unacknowledged: bool = False
    page_size: int = 100
    timeout: timedelta | None = attrs.field(default=None, converter=_timeout)
    username: str | None = attrs.field(default=None, converter=_optional_text)
    password: Secret | None = attrs.field(default=None, converter=_secret)
    tls: bool = False
    ca: str | None = attrs.field(default=None, converter=_optional_text)
    cert: str | None = attrs.field(default=None, converter=_optional_text)
    key: Secret | None = attrs.field(default=None, converter=_secret)
    key_password: Secret | None = attrs.field(default=None, converter=_secret)
    unsafe_ssl: bool = False
    oauth_token_uri: str | None = attrs.field(default=None, converter=_optional_text)
    client_id: str | None = attrs.field(default=None, converter=_optional_text)
    client_secret: Secret | None = attrs.field(default=None, converter=_secret)
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    endpoint_params: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_params_tuple)
    connection_name: str = "eventscale"
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    # False only from metadata without ``mode``: KEDA's early returns then skip the
    # amqp-timeout check (keda: pkg/scalers/rabbitmq_scaler.go ``validateTrigger``).
    _mode_given: bool = attrs.field(default=True, alias="_mode_given", repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.queue_name:
            raise ConfigError("queue_name is required", path="queueName")
        if not self.host.reveal():
            raise ConfigError("host is required", path="host")
        try:
            protocol, _, _ = _validate(
                protocol=self.protocol.value,
                tls="enable" if self.tls else "disable",
                cert=self.cert,
                key=self.key,
                page_size=self.page_size,
                username=self.username,
                password=self.password,
                host=self.host.reveal(),
                workload_identity=None,
                oauth=(self.oauth_token_uri, self.client_id, self.client_secret),
                use_regex=self.use_regex,
                exclude_unacknowledged=self.exclude_unacknowledged,
                queue_length=0.0,
                mode=self.mode.value if self._mode_given else None,
                value=self.value if self._mode_given else 0.0,
                timeout=self.timeout,
            )
        except _InvalidError as exc:
            raise ConfigError(exc.reason, path=exc.field) from None
        object.__setattr__(self, "protocol", protocol)

    @property
    def metric_name(self) -> str:
        """``s<index>-rabbitmq-<queryEscape(queueName)>``, normalised as KEDA does."""
        return metric_name(
            self.index, normalize_metric_name(f"rabbitmq-{quote_plus(self.queue_name, safe='')}")
        )

    @property
    def effective_timeout(self) -> float:
        """The per-poll timeout in seconds (``timeout``, else KEDA's default 3 s)."""
        if self.timeout is None or self.timeout <= timedelta(0):
            return DEFAULT_TIMEOUT.total_seconds()
        return self.timeout.total_seconds()

    def secrets(self) -> list[Secret | str | None]:
        """Every secret value this config holds (for scrubbing messages)."""
        parts = urlsplit(self.host.reveal())
        return [
            self.host,
            self.password,
            self.key,
            self.key_password,
            self.client_secret,
            unquote(parts.password) if parts.password else None,
        ]

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RabbitMQConfig:
        """Parse KEDA trigger metadata with KEDA's lookup orders, defaults and checks.

        :raises ConfigError: listing every invalid or missing parameter.
        """
        p = Params(ctx)
        queue_name = p.string("queueName", required=True)
        host = p.secret("host", order=(META, AUTH, ENV), required=True)
        protocol = p.string("protocol", order=(META, AUTH), default="auto")
        mode = p.string("mode")
        value = p.number("value", default=0.0)
        queue_length = p.number("queueLength", default=0.0)
        activation = p.number("activationValue", default=0.0)
        vhost_name = p.string("vhostName", order=(META, AUTH))
        use_regex = p.boolean("useRegex", default=False)
        exclude_unacked = p.boolean("excludeUnacknowledged", default=False)
        page_size = p.integer("pageSize", default=100)
        operation = p.choice("operation", [o.value for o in Operation], default="sum")
        timeout = p.duration("timeout")
        username = p.string("username", order=(AUTH, ENV))
        password = p.secret("password", order=(AUTH, ENV))
        tls = p.string("tls", order=(AUTH,), default="disable")
        ca = p.secret("ca", order=(AUTH,))
        cert = p.secret("cert", order=(AUTH,))
        key = p.secret("key", order=(AUTH,))
        key_password = p.secret("keyPassword", order=(AUTH,))
        unsafe_ssl = p.boolean("unsafeSsl", default=False)
        workload_identity = p.string("workloadIdentityResource", order=(AUTH,))
        token_uri = p.string("oauthTokenURI", order=(AUTH,))
        client_id = p.string("clientID", order=(AUTH,))
        client_secret = p.secret("clientSecret", order=(AUTH,))
        scopes = p.string_list("scopes", order=(AUTH,), aliases=("scope",), default=())
        endpoint_params = p.query_map("endpointParams", order=(AUTH,))

        resolved: tuple[Protocol, Mode, float] | None = None
        try:
            resolved = _validate(
                protocol=protocol,
                tls=tls,
                cert=cert.reveal() if cert else None,
                key=key,
                page_size=page_size or 0,
                username=username,
                password=password,
                host=host.reveal() if host else "",
                workload_identity=workload_identity,
                oauth=(token_uri, client_id, client_secret),
                use_regex=bool(use_regex),
                exclude_unacknowledged=bool(exclude_unacked),
                queue_length=queue_length or 0.0,
                mode=mode,
                value=value or 0.0,
                timeout=timeout,
            )
        except _InvalidError as exc:
            source = (
                AUTH
                if exc.field in ("tls", "cert", "workloadIdentityResource", "oauthTokenURI")
                else None
            )
            p.fail(exc.reason, exc.field, source)
        p.finish()
        assert resolved is not None
        assert queue_name is not None
        assert host is not None
        proto, parsed_mode, parsed_value = resolved
        return cls(
            queue_name=queue_name,
            host=host,
            protocol=proto,
            mode=parsed_mode,
            value=parsed_value,
            activation_value=activation,
            vhost_name=vhost_name,
            use_regex=use_regex,
            operation=Operation(operation),
            exclude_unacknowledged=exclude_unacked,
            page_size=page_size,
            timeout=timeout,
            username=username,
            password=password,
            tls=tls == "enable",
            ca=ca.reveal() if ca else None,
            cert=cert.reveal() if cert else None,
            key=key,
            key_password=key_password,
            unsafe_ssl=unsafe_ssl,
            oauth_token_uri=token_uri,
            client_id=client_id,
            client_secret=client_secret,
            scopes=scopes or (),
            endpoint_params=endpoint_params or {},
            index=ctx.index,
            metric_type=ctx.metric_type,
            _mode_given=mode is not None,
        )


class _InvalidError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _resolve_protocol(protocol: str, host: str) -> Protocol:
    if protocol == "amqp":
        return Protocol.AMQP
    if protocol == "http":
        return Protocol.HTTP
    try:
        scheme = urlsplit(host).scheme
    except ValueError:
        raise _InvalidError("host", "can't parse host to find protocol") from None
    if scheme in ("amqp", "amqps"):
        return Protocol.AMQP
    if scheme in ("http", "https"):
        return Protocol.HTTP
    raise _InvalidError("host", f"unknown host URL scheme `{scheme}`")


def _validate(
    *,
    protocol: str,
    tls: str,
    cert: str | None,
    key: Secret | None,
    page_size: int,
    username: str | None,
    password: Secret | None,
    host: str,
    workload_identity: str | None,
    oauth: tuple[str | None, str | None, Secret | None],
    use_regex: bool,
    exclude_unacknowledged: bool,
    queue_length: float,
    mode: str | None,
    value: float,
    timeout: timedelta | None,
) -> tuple[Protocol, Mode, float]:
    """KEDA's ``Validate`` in its order; the first problem raises :class:`_InvalidError`."""
    if protocol not in ("amqp", "http", "auto"):
        raise _InvalidError("protocol", f'protocol "{protocol}" must be one of [amqp http auto]')
    if tls not in ("enable", "disable"):
        raise _InvalidError("tls", "err incorrect value for TLS given: " + tls)
    if bool(cert) != bool(key):
        raise _InvalidError("cert", "both key and cert must be provided")
    if page_size < 1:
        raise _InvalidError("pageSize", "pageSize should be 1 or greater than 1")
    if bool(username) != bool(password):
        raise _InvalidError("username", "username and password must be given together")
    resolved = _resolve_protocol(protocol, host)
    if workload_identity:
        if resolved is Protocol.AMQP:
            raise _InvalidError(
                "workloadIdentityResource",
                "workload identity is not supported for amqp protocol currently",
            )
        raise _InvalidError(
            "workloadIdentityResource",
            "Azure workload identity is not supported by eventscale; "
            "use username/password or OAuth2",
        )
    token_uri, client_id, client_secret = oauth
    if token_uri or client_id or client_secret:
        if not (token_uri and client_id and client_secret):
            raise _InvalidError(
                "oauthTokenURI",
                "oauthTokenURI, clientID and clientSecret are all required for OAuth2",
            )
        if resolved is Protocol.AMQP:
            raise _InvalidError("oauthTokenURI", "OAuth2 is not supported for amqp protocol")
        if username or password:
            raise _InvalidError(
                "oauthTokenURI", "OAuth2 cannot be combined with username and password"
            )
    if use_regex and resolved is not Protocol.HTTP:
        raise _InvalidError("useRegex", "configure only useRegex with http protocol")
    if exclude_unacknowledged and resolved is not Protocol.HTTP:
        raise _InvalidError(
            "excludeUnacknowledged", "configure excludeUnacknowledged=true with http protocol only"
        )
    # validateTrigger. KEDA accepts a negative target; it would fail every poll here
    # (a metric target cannot be negative): docs/errors.md, "Limits".
    for name, given in (("queueLength", queue_length), ("value", value)):
        if given < 0:
            raise _InvalidError(name, f"{name} must not be negative, got {given:g}")
    if queue_length == 0 and mode is None and value == 0:
        return resolved, Mode.QUEUE_LENGTH, DEFAULT_VALUE
    if queue_length != 0 and (mode is not None or value != 0):
        raise _InvalidError(
            "queueLength", "queueLength is deprecated; configure only mode and value"
        )
    if queue_length != 0:
        return resolved, Mode.QUEUE_LENGTH, queue_length
    if mode is None:
        raise _InvalidError("mode", "mode must be specified")
    if value == 0:
        raise _InvalidError("value", "value must be specified")
    try:
        parsed_mode = Mode(mode)
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise _InvalidError(
            "mode", f"the mode {mode} is not allowed (use one of {names})"
        ) from None
    if parsed_mode is not Mode.QUEUE_LENGTH and resolved is not Protocol.HTTP:
        raise _InvalidError(
            "mode", f"protocol {resolved.value} not supported; must be http to use mode {mode}"
        )
    if resolved is Protocol.AMQP and timeout is not None and timeout != timedelta(0):
        raise _InvalidError("timeout", "amqp protocol doesn't support custom timeouts")
    return resolved, parsed_mode, value
