"""The ``rabbitmq`` scaler: queue length or message rates of a RabbitMQ queue.

Two ways to read a queue (KEDA ``protocol``; ``auto`` picks from the ``host`` URL scheme):

* **AMQP** (``amqp://`` / ``amqps://``): a *passive* queue declare on a short-lived
  channel. The count it returns is the number of **ready** messages only: messages that
  consumers hold unacknowledged are *not* counted (user-voice D17; see the docs page).
  Scalers that talk to the same broker with the same settings share **one** long-lived
  connection (reference-counted, one per event loop); a missing queue closes only the
  channel. A connection that breaks is replaced on the next poll.
* **HTTP** (``http://`` / ``https://``): the management API. It can count
  unacknowledged messages too (the default; ``excludeUnacknowledged`` counts ready
  only), report publish/deliver rates, and match queues by regex with ``operation``
  ``sum``/``max``/``avg``. Note that the management API's counts lag a few seconds.

:meth:`RabbitMQScaler.wait_for_activity` lets a controller wake on the first message:
RabbitMQ cannot announce an arrival without delivering the message, so it is a
consumer-free poll (a passive declare on one held channel every 0.25 s over AMQP).

Every failure (broker down, wrong credentials, missing queue or vhost, non-200 answer,
timeout, a TLS handshake that fails) is a :class:`~eventscale.errors.ScalerError`, never
a count of 0. Messages are
anonymised as KEDA does (``user:password@``) and scrubbed of every secret the scaler holds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import functools
import json
import os
import posixpath
import re
import ssl
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, urlsplit

import anyio
import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
    sanitize_metric_value,
)
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext

# Fail at import time, with the extra to install, when the client library is missing.
import_optional("aio_pika", extra="rabbitmq", what="the rabbitmq scaler")

__all__ = (
    "Mode",
    "Operation",
    "Protocol",
    "QueueInfo",
    "RabbitMQConfig",
    "RabbitMQScaler",
    "aggregate_queues",
    "anonymize_error",
    "vhost_and_prefix",
)

DEFAULT_TIMEOUT: Final = timedelta(milliseconds=3000)  # KEDA_HTTP_DEFAULT_TIMEOUT
DEFAULT_VALUE: Final = 20.0
AMQP_PUSH_POLL_INTERVAL: Final = 0.25  # seconds between passive declares in wait_for_activity
TOKEN_EXPIRY_MARGIN: Final = 10.0  # refresh an OAuth2 token this long before it expires
DEFAULT_TOKEN_LIFETIME: Final = 300.0  # for a token response without expires_in
HTTP_PUSH_POLL_INTERVAL: Final = 1.0  # seconds between management API reads in wait_for_activity
_ROOT_VHOST_PATH: Final = "/%2F"


class Protocol(enum.Enum):
    """How the queue is read (after ``auto`` was resolved from the host URL)."""

    AMQP = "amqp"
    HTTP = "http"


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


def _str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


def _params_tuple(
    value: Mapping[str, Sequence[str]] | Sequence[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple((k, v) for k, vs in value.items() for v in vs)
    return tuple(value)


# ---------------------------------------------------------------------------- config


@attrs.frozen(kw_only=True)
class RabbitMQConfig:
    """Validated settings of one ``rabbitmq`` trigger (build it through the scaler).

    Secrets (``host``, ``password``, ``key``, ``key_password``, ``client_secret``) are
    :class:`~eventscale.redaction.Secret` values and never show in a repr.
    """

    queue_name: str
    host: Secret = attrs.field(converter=_required_secret)
    protocol: Protocol
    mode: Mode = Mode.QUEUE_LENGTH
    value: float = DEFAULT_VALUE
    activation_value: float = 0.0
    vhost_name: str | None = None
    use_regex: bool = False
    operation: Operation = Operation.SUM
    exclude_unacknowledged: bool = False
    page_size: int = 100
    timeout: timedelta | None = None
    username: str | None = None
    password: Secret | None = attrs.field(default=None, converter=_secret)
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: Secret | None = attrs.field(default=None, converter=_secret)
    key_password: Secret | None = attrs.field(default=None, converter=_secret)
    unsafe_ssl: bool = False
    oauth_token_uri: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = attrs.field(default=None, converter=_secret)
    scopes: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    endpoint_params: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_params_tuple)
    connection_name: str = "eventscale"
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

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
    # validateTrigger
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


# ---------------------------------------------------------------------------- reading


@attrs.frozen
class QueueInfo:
    """What one read returns: counts and rates (0 for what the source does not report)."""

    messages: int = 0
    messages_ready: int = 0
    publish_rate: float = 0.0
    deliver_get_rate: float = 0.0


def _queue_info(item: Mapping[str, Any]) -> QueueInfo:
    stats = item.get("message_stats") or {}

    def rate(name: str) -> float:
        details = stats.get(name) or {}
        return float(details.get("rate", 0) or 0)

    return QueueInfo(
        messages=int(item.get("messages", 0) or 0),
        messages_ready=int(item.get("messages_ready", 0) or 0),
        publish_rate=rate("publish_details"),
        deliver_get_rate=rate("deliver_get_details"),
    )


def aggregate_queues(items: Sequence[Mapping[str, Any]], operation: Operation) -> QueueInfo:
    """Combine the management API's queue objects as KEDA does for regex queries.

    ``sum`` adds each field; ``avg`` divides the sums by the count (integer division for
    the message counts, float for rates); ``max`` takes each field's maximum independently.
    No queues gives zeros.
    """
    infos = [_queue_info(item) for item in items]
    if not infos:
        return QueueInfo()
    if operation is Operation.MAX:
        return QueueInfo(
            messages=max(0, *(i.messages for i in infos)),
            messages_ready=max(0, *(i.messages_ready for i in infos)),
            publish_rate=max(0.0, *(i.publish_rate for i in infos)),
            deliver_get_rate=max(0.0, *(i.deliver_get_rate for i in infos)),
        )
    total = QueueInfo(
        messages=sum(i.messages for i in infos),
        messages_ready=sum(i.messages_ready for i in infos),
        publish_rate=sum(i.publish_rate for i in infos),
        deliver_get_rate=sum(i.deliver_get_rate for i in infos),
    )
    if operation is Operation.SUM:
        return total
    n = len(infos)
    return QueueInfo(
        messages=total.messages // n,
        messages_ready=total.messages_ready // n,
        publish_rate=total.publish_rate / n,
        deliver_get_rate=total.deliver_get_rate / n,
    )


def vhost_and_prefix(raw_path: str, vhost_name: str | None) -> tuple[str, str]:
    """KEDA's split of a management URL path into (``/<vhost>``, path prefix).

    The last path segment is the vhost, the segments before it a prefix (for a
    management API behind a reverse proxy). ``vhost_name`` replaces the vhost. An empty
    or ``/`` vhost is the default vhost ``/%2F``.
    """
    parts = raw_path.split("/")
    vhost = "/" + parts[-1]
    kept = [p for p in parts[:-1] if p]
    prefix = "/" + posixpath.normpath("/".join(kept)).lstrip("/") if kept else ""
    if prefix == "/":
        prefix = ""
    if vhost_name:
        vhost = "/" + quote_plus(vhost_name, safe="")
    if vhost in ("", "/"):
        vhost = _ROOT_VHOST_PATH
    return vhost, prefix


_USERINFO = re.compile(r"[^ /:]+:[^/:]+@")


def anonymize_error(message: str) -> str:
    """KEDA's error text: ``error inspecting RabbitMQ: `` + message with userinfo masked."""
    return "error inspecting RabbitMQ: " + _USERINFO.sub("user:password@", message)


def metric_and_activity(
    mode: Mode, info: QueueInfo, count: int, activation: float
) -> tuple[float, bool]:
    """The metric value and activity for ``mode`` (spec/scalers.md 3.4)."""
    m, p, d, a = float(count), info.publish_rate, info.deliver_get_rate, activation
    if mode is Mode.QUEUE_LENGTH:
        return m, m > a
    if mode is Mode.MESSAGE_RATE:
        return p, p > a or m > a
    if mode is Mode.DELIVER_GET_RATE:
        return d, d > a
    if mode is Mode.PUBLISHED_TO_DELIVERED_RATIO:
        if p == 0:
            r = 0.0
        elif d == 0:
            r = a
        else:
            r = p / d
        return r, r > a or (p > 0 and d == 0)
    # ExpectedQueueConsumptionTime (KEDA main: an empty queue is 0)
    if m == 0:
        e = 0.0
    elif d == 0:
        e = a
    else:
        e = (p - d) / d + m / d
    return e, e > a or (d == 0 and m > 0)


# ---------------------------------------------------------------------------- TLS


def _uses_external_auth(config: RabbitMQConfig) -> bool:
    """KEDA's SASL choice: EXTERNAL for TLS with a client cert and no password anywhere."""
    if not (config.tls and config.cert and config.key):
        return False
    if config.username and config.password:
        return False
    url_password = urlsplit(config.host.reveal()).password
    return not url_password


def build_ssl_context(config: RabbitMQConfig) -> ssl.SSLContext:
    """The TLS context for ``config``: CA, client certificate, ``unsafeSsl``.

    ``ca``, ``cert`` and ``key`` are PEM texts (as in a KEDA TriggerAuthentication).
    """
    context = (
        ssl.create_default_context(cadata=config.ca or None)
        if config.tls and config.ca
        else ssl.create_default_context()
    )
    if config.tls and config.cert and config.key:
        with tempfile.TemporaryDirectory(prefix="eventscale-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            for path, text in ((cert_path, config.cert), (key_path, config.key.reveal())):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
            password = config.key_password.reveal() if config.key_password else None
            try:
                context.load_cert_chain(cert_path, key_path, password=password)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    "cannot load the client certificate/key (wrong keyPassword, or not a "
                    f"PEM certificate and key pair): {type(exc).__name__}",
                    path="keyPassword" if config.key_password else "cert",
                ) from None
    if config.unsafe_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (drivers wrap it), or None for other failures."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    # aiormq re-raises an SSLError as AMQPConnectionError(errno, text) without a cause
    text = str(exc)
    if "[SSL" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return ssl.SSLError(text)
    return None


def _tls_reason(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


# ---------------------------------------------------------------------------- AMQP pool


def _aio_pika() -> Any:
    return import_optional("aio_pika", extra="rabbitmq", what="the rabbitmq scaler")


@functools.cache
def _closing_connection_class() -> Any:
    """aio-pika's ``Connection``, closed at once when connecting fails.

    A ``Connection`` whose ``connect()`` raised is dropped unclosed, and its ``__del__``
    then creates a ``close()`` coroutine it cannot schedule when the garbage collector
    runs outside the event loop ("coroutine 'Connection.close' was never awaited").
    Closing it on failure marks it closed, so ``__del__`` has nothing to do.
    """
    base = _aio_pika().Connection

    class ClosingConnection(base):  # type: ignore[misc, valid-type]
        async def connect(self, timeout: Any = None) -> None:  # noqa: ASYNC109 - aio-pika's signature
            try:
                await super().connect(timeout=timeout)
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self.close()
                raise

    return ClosingConnection


@attrs.frozen
class _AmqpTarget:
    """Everything that identifies one shared AMQP connection."""

    host: str
    port: int
    vhost: str
    login: str
    password: Secret | None
    use_tls: bool
    external: bool
    tls_key: tuple[Any, ...]
    connection_name: str


class _AmqpConnection:
    """One long-lived connection, shared by every scaler with the same target."""

    def __init__(self, target: _AmqpTarget, config: RabbitMQConfig) -> None:
        self.target = target
        self.config = config
        self.refs = 0
        self.connection: Any = None
        self.lock = asyncio.Lock()

    async def get(self, connect_timeout: float) -> Any:
        async with self.lock:
            conn = self.connection
            if conn is not None and not conn.is_closed:
                return conn
            await self._drop()
            aio_pika = _aio_pika()
            t = self.target
            kwargs: dict[str, Any] = {
                "host": t.host,
                "port": t.port,
                "login": t.login,
                "password": t.password.reveal() if t.password else "",
                "virtualhost": t.vhost,
                "ssl": t.use_tls,
                "timeout": connect_timeout,
                "client_properties": {"connection_name": t.connection_name},
            }
            if t.use_tls:
                kwargs["ssl_context"] = build_ssl_context(self.config)
            if t.external:
                kwargs["auth"] = "external"
            kwargs["connection_class"] = _closing_connection_class()
            self.connection = await aio_pika.connect(**kwargs)
            return self.connection

    async def _drop(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def reset(self) -> None:
        async with self.lock:
            await self._drop()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_AmqpTarget, _AmqpConnection]] = (
    weakref.WeakKeyDictionary()
)


def _pool() -> dict[_AmqpTarget, _AmqpConnection]:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = {}
    return pool


def amqp_connection_count() -> int:
    """How many shared AMQP connections this event loop holds open (for tests/metrics)."""
    return sum(
        1
        for entry in _pool().values()
        if entry.connection is not None and not entry.connection.is_closed
    )


def _amqp_target(config: RabbitMQConfig) -> _AmqpTarget:
    parts = urlsplit(config.host.reveal())
    use_tls = parts.scheme == "amqps"
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    if config.vhost_name:
        vhost = config.vhost_name
    login = unquote(parts.username or "guest")
    password: Secret | None = Secret(unquote(parts.password)) if parts.password else None
    if config.username and config.password:
        login, password = config.username, config.password
    external = _uses_external_auth(config)
    tls_key = (
        config.tls,
        config.ca,
        config.cert,
        config.key,
        config.key_password,
        config.unsafe_ssl,
    )
    return _AmqpTarget(
        host=parts.hostname or "localhost",
        port=parts.port or (5671 if use_tls else 5672),
        vhost=vhost,
        login=login,
        password=password,
        use_tls=use_tls,
        external=external,
        tls_key=tls_key,
        connection_name=config.connection_name,
    )


# ---------------------------------------------------------------------------- scaler


class RabbitMQScaler(ScalerBase):
    """Scale on a RabbitMQ queue's length or message rates (KEDA ``rabbitmq``).

    In Python::

        RabbitMQScaler(host="amqp://user:pass@rabbit:5672/", queue_name="jobs", value=10)
        RabbitMQScaler(host="http://user:pass@rabbit:15672/", queue_name="jobs",
                       mode=Mode.QUEUE_LENGTH, value=10, exclude_unacknowledged=False)

    or from KEDA metadata with :meth:`from_context`. The defaults are KEDA's: mode
    ``QueueLength`` with a target ``value`` of 20 messages per replica.

    It is a :class:`~eventscale.scalers.PushScaler`: :meth:`wait_for_activity` watches an
    idle queue with cheap, consumer-free polls every ``push_poll_interval`` seconds
    (default 0.25 over AMQP, 1.0 over HTTP), so a controller wakes within about that
    long after the first message instead of waiting for its polling interval.

    The keyword arguments are the KEDA parameters in snake case (see the docs page),
    plus ``connection_name`` (shown in the management UI), ``push_poll_interval`` and
    ``clock`` (monotonic seconds, used for the OAuth2 token cache; tests inject one).
    """

    def __init__(
        self,
        config: RabbitMQConfig | None = None,
        *,
        host: str | Secret | None = None,
        queue_name: str | None = None,
        protocol: Protocol | str = "auto",
        mode: Mode | str = Mode.QUEUE_LENGTH,
        value: float = DEFAULT_VALUE,
        activation_value: float = 0.0,
        vhost_name: str | None = None,
        use_regex: bool = False,
        operation: Operation | str = Operation.SUM,
        exclude_unacknowledged: bool = False,
        page_size: int = 100,
        timeout: timedelta | float | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        tls: bool = False,
        ca: str | None = None,
        cert: str | None = None,
        key: str | Secret | None = None,
        key_password: str | Secret | None = None,
        unsafe_ssl: bool = False,
        oauth_token_uri: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        scopes: Sequence[str] = (),
        endpoint_params: Mapping[str, Sequence[str]] | Sequence[tuple[str, str]] = (),
        connection_name: str = "eventscale",
        index: int = 0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        trigger_name: str | None = None,
        push_poll_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if push_poll_interval is not None and push_poll_interval <= 0:
            raise ConfigError("push_poll_interval must be positive", path="push_poll_interval")
        if config is None:
            if not queue_name:
                raise ConfigError("queue_name is required", path="queueName")
            if host is None or not (host.reveal() if isinstance(host, Secret) else host):
                raise ConfigError("host is required", path="host")
            host_secret = _required_secret(host)
            if isinstance(timeout, int | float):
                if timeout < 0:
                    raise ConfigError("timeout must not be negative", path="timeout")
                timeout = timedelta(seconds=timeout)
            if isinstance(operation, str):
                try:
                    operation = Operation(operation)
                except ValueError:
                    raise ConfigError(
                        f"operation {operation!r} must be one of sum, max, avg", path="operation"
                    ) from None
            pw = _secret(password)
            secret_client = _secret(client_secret)
            try:
                resolved, parsed_mode, parsed_value = _validate(
                    protocol=protocol.value if isinstance(protocol, Protocol) else protocol,
                    tls="enable" if tls else "disable",
                    cert=cert,
                    key=_secret(key),
                    page_size=page_size,
                    username=username,
                    password=pw,
                    host=host_secret.reveal(),
                    workload_identity=None,
                    oauth=(oauth_token_uri, client_id, secret_client),
                    use_regex=use_regex,
                    exclude_unacknowledged=exclude_unacknowledged,
                    queue_length=0.0,
                    mode=mode.value if isinstance(mode, Mode) else mode,
                    value=float(value),
                    timeout=timeout,
                )
            except _InvalidError as exc:
                raise ConfigError(exc.reason, path=exc.field) from None
            config = RabbitMQConfig(
                queue_name=queue_name,
                host=host_secret,
                protocol=resolved,
                mode=parsed_mode,
                value=parsed_value,
                activation_value=activation_value,
                vhost_name=vhost_name or None,
                use_regex=use_regex,
                operation=operation,
                exclude_unacknowledged=exclude_unacknowledged,
                page_size=page_size,
                timeout=timeout,
                username=username or None,
                password=pw,
                tls=tls,
                ca=ca or None,
                cert=cert or None,
                key=_secret(key),
                key_password=_secret(key_password),
                unsafe_ssl=unsafe_ssl,
                oauth_token_uri=oauth_token_uri or None,
                client_id=client_id or None,
                client_secret=secret_client,
                scopes=tuple(scopes),
                endpoint_params=_params_tuple(endpoint_params),
                connection_name=connection_name,
                index=index,
                metric_type=metric_type,
            )
        _aio_pika() if config.protocol is Protocol.AMQP else _aiohttp()
        self.config = config
        self._identity = trigger_name or f"rabbitmq[{config.index}]"
        self._amqp: _AmqpConnection | None = None
        self._session: Any = None
        self._ssl: ssl.SSLContext | None = None
        if config.tls and config.cert and config.key:
            # Load the client certificate now: a bad key or keyPassword is a ConfigError
            # when the trigger is built, not an error on every poll.
            self._ssl = build_ssl_context(config)
        self._token: tuple[str, float] | None = None
        self._token_ssl: ssl.SSLContext | None = None
        self._auth_style: str | None = None
        self._clock = clock
        self._closed = False
        if push_poll_interval is None:
            push_poll_interval = (
                AMQP_PUSH_POLL_INTERVAL
                if config.protocol is Protocol.AMQP
                else HTTP_PUSH_POLL_INTERVAL
            )
        self._push_poll_interval = push_poll_interval

    # -- KEDA metadata -------------------------------------------------------------

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RabbitMQScaler:
        """Parse KEDA trigger metadata with KEDA's lookup orders, defaults and checks."""
        return cls(cls.config_from_context(ctx), trigger_name=ctx.identity)

    @staticmethod
    def config_from_context(ctx: TriggerContext) -> RabbitMQConfig:
        """The config for KEDA metadata; :class:`ConfigError` lists every problem."""
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
        return RabbitMQConfig(
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
        )

    def __repr__(self) -> str:
        c = self.config
        return (
            f"RabbitMQScaler(queue_name={c.queue_name!r}, protocol={c.protocol.value}, "
            f"mode={c.mode.value}, value={c.value}, host={c.host!r})"
        )

    # -- Scaler protocol -----------------------------------------------------------

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: target ``value``, activation target ``activationValue``."""
        c = self.config
        return (
            MetricSpec(
                name=c.metric_name,
                target=sanitize_metric_value(c.value),
                metric_type=c.metric_type,
                activation_target=c.activation_value,
            ),
        )

    async def get_metrics(self) -> ScalerReport:
        """Read the queue once. :raises ScalerError: on any failure (never a 0 instead)."""
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._identity, transient=False)
        c = self.config
        if c.protocol is Protocol.AMQP:
            count = await self._read_amqp()
            info = QueueInfo(messages=count, messages_ready=count)
        else:
            info = await self._read_http()
            count = info.messages_ready if c.exclude_unacknowledged else info.messages
        value, active = metric_and_activity(c.mode, info, count, c.activation_value)
        return ScalerReport.single(c.metric_name, value, is_active=active)

    async def aclose(self) -> None:
        """Release this scaler's share of the AMQP connection, or its HTTP session."""
        if self._closed:
            return
        self._closed = True
        entry, self._amqp = self._amqp, None
        if entry is not None:
            entry.refs -= 1
            if entry.refs <= 0:
                pool = _POOLS.get(asyncio.get_running_loop(), {})
                if pool.get(entry.target) is entry:
                    del pool[entry.target]
                await entry.reset()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- errors --------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException | None, *, transient: bool) -> ScalerError:
        detail = f"{what}: {type(exc).__name__}: {exc}" if exc is not None and str(exc) else what
        if exc is not None and not str(exc):
            detail = f"{what}: {type(exc).__name__}"
        message = redact_text(anonymize_error(detail), self.config.secrets())
        cls = ScalerTimeout if isinstance(exc, TimeoutError) else ScalerError
        return cls(message, trigger=self._identity, transient=transient)

    # -- AMQP ----------------------------------------------------------------------

    async def _amqp_entry(self) -> _AmqpConnection:
        if self._amqp is None:
            target = _amqp_target(self.config)
            pool = _pool()
            entry = pool.get(target)
            if entry is None:
                entry = pool[target] = _AmqpConnection(target, self.config)
            entry.refs += 1
            self._amqp = entry
        return self._amqp

    @contextlib.asynccontextmanager
    async def _amqp_call(self, entry: _AmqpConnection, doing: str) -> AsyncIterator[None]:
        """Run one AMQP exchange within the timeout; translate what the driver raises.

        A failure that may have broken the connection drops it, so the next call
        connects afresh (the scaler recovers by itself once the broker is back).
        """
        aio_pika = _aio_pika()
        exceptions = import_optional(
            "aiormq.exceptions", extra="rabbitmq", what="the rabbitmq scaler"
        )
        timeout = self.config.effective_timeout
        name = self.config.queue_name
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError as exc:
            await entry.reset()
            raise self._error(
                f"timed out after {timeout:g}s {doing} over AMQP", exc, transient=True
            ) from exc
        except exceptions.ChannelNotFoundEntity as exc:
            raise self._error(f"queue {name!r} does not exist", exc, transient=False) from exc
        except exceptions.ChannelAccessRefused as exc:
            raise self._error(f"access to queue {name!r} refused", exc, transient=False) from exc
        except (exceptions.ProbableAuthenticationError, exceptions.AuthenticationError) as exc:
            await entry.reset()
            raise self._error("authentication failed", exc, transient=False) from exc
        except exceptions.ConnectionNotAllowed as exc:
            await entry.reset()
            raise self._error(
                "connection not allowed (vhost access?)", exc, transient=False
            ) from exc
        except (
            exceptions.AMQPError,
            aio_pika.exceptions.AMQPException,
            OSError,
            ConnectionError,
        ) as exc:
            await entry.reset()
            tls = _tls_failure(exc)
            if tls is not None:
                raise self._error(
                    f"TLS handshake with RabbitMQ failed: {_tls_reason(tls)}",
                    exc,
                    transient=False,
                ) from exc
            raise self._error("cannot reach RabbitMQ over AMQP", exc, transient=True) from exc

    async def _declare(self, channel: Any) -> int:
        queue = await channel.declare_queue(self.config.queue_name, passive=True)
        return int(queue.declaration_result.message_count or 0)

    async def _read_amqp(self) -> int:
        entry = await self._amqp_entry()
        async with self._amqp_call(entry, f"reading queue {self.config.queue_name!r}"):
            conn = await entry.get(self.config.effective_timeout)
            channel = await conn.channel()
            try:
                return await self._declare(channel)
            finally:
                if not channel.is_closed:
                    with contextlib.suppress(Exception):
                        await channel.close()

    # -- push ----------------------------------------------------------------------

    async def wait_for_activity(self) -> None:
        """Return once the trigger is active (at once if it already is).

        RabbitMQ cannot notify a client that a message arrived without delivering it
        to a consumer (and a consumer that takes and requeues messages changes their
        redelivery state), so this is a cheap, consumer-free poll while the trigger is
        idle:

        * **AMQP:** one channel on the shared connection is held for the whole wait,
          and the queue is declared passively on it every ``push_poll_interval``
          seconds (default 0.25): one small round trip per interval, no consumer, no
          message touched. A publish is seen within about one interval.
        * **HTTP:** :meth:`get_metrics` every ``push_poll_interval`` seconds (default
          1.0); the management API's statistics lag a few seconds behind the broker,
          so the wake-up does too.

        :raises ScalerError: the queue cannot be read (as :meth:`get_metrics`).
        """
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._identity, transient=False)
        interval = self._push_poll_interval
        if self.config.protocol is Protocol.HTTP:
            while True:
                if (await self.get_metrics()).is_active:
                    return
                await asyncio.sleep(interval)
        c = self.config
        entry = await self._amqp_entry()
        channel: Any = None
        try:
            while True:
                async with self._amqp_call(entry, f"watching queue {c.queue_name!r}"):
                    if channel is None or channel.is_closed:
                        conn = await entry.get(c.effective_timeout)
                        channel = await conn.channel()
                    count = await self._declare(channel)
                info = QueueInfo(messages=count, messages_ready=count)
                if metric_and_activity(c.mode, info, count, c.activation_value)[1]:
                    return
                await asyncio.sleep(interval)
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), 2)

    # -- HTTP ----------------------------------------------------------------------

    def _request_url(self) -> tuple[str, str | None, str | None]:
        """(URL without userinfo, basic-auth login, basic-auth password)."""
        c = self.config
        parts = urlsplit(c.host.reveal())
        vhost, prefix = vhost_and_prefix(parts.path, c.vhost_name)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        base = f"{parts.scheme}://{netloc}{prefix}/api/queues{vhost}"
        if c.use_regex:
            name = quote_plus(c.queue_name, safe="")
            query = f"page=1&use_regex=true&pagination=false&name={name}&page_size={c.page_size}"
            url = f"{base}?{query}"
        else:
            url = f"{base}/{quote(c.queue_name, safe='')}"
        login = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if c.username and c.password:
            login, password = c.username, c.password.reveal()
        return url, login, password

    async def _session_get(self) -> Any:
        if self._session is None or self._session.closed:
            aiohttp = _aiohttp()
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context() if self._https else None, limit=4
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    @property
    def _https(self) -> bool:
        return urlsplit(self.config.host.reveal()).scheme == "https"

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = build_ssl_context(self.config)
        return self._ssl

    def _token_ssl_context(self) -> ssl.SSLContext:
        """TLS for the token endpoint: the system's CAs plus ``ca``; ``unsafeSsl`` applies."""
        if self._token_ssl is None:
            context = ssl.create_default_context()
            c = self.config
            if c.tls and c.ca:
                context.load_verify_locations(cadata=c.ca)
            if c.unsafe_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._token_ssl = context
        return self._token_ssl

    async def _bearer(self, session: Any, limit: float) -> str:
        """The cached access token, or a new one from the client-credentials grant.

        A token is reused until ``TOKEN_EXPIRY_MARGIN`` seconds before its
        ``expires_in`` runs out (half its lifetime for short-lived tokens). The client
        credentials go in an HTTP Basic header first (RFC 6749 2.3.1); an endpoint that
        rejects that with 400/401 is asked again with them in the form, and the style
        that worked is remembered (as Go's ``clientcredentials`` does for KEDA).
        """
        now = self._clock()
        if self._token is not None and self._token[1] > now:
            return self._token[0]
        c = self.config
        assert c.oauth_token_uri is not None
        assert c.client_id is not None
        assert c.client_secret is not None
        form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
        if c.scopes:
            form.append(("scope", " ".join(c.scopes)))
        form.extend(c.endpoint_params)
        styles = [self._auth_style] if self._auth_style else ["header", "params"]
        status, body = 0, ""
        aiohttp = _aiohttp()
        try:
            for style in styles:
                headers: dict[str, str] = {"Accept": "application/json"}
                data = list(form)
                if style == "header":
                    pair = f"{quote_plus(c.client_id)}:{quote_plus(c.client_secret.reveal())}"
                    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
                else:
                    data += [
                        ("client_id", c.client_id),
                        ("client_secret", c.client_secret.reveal()),
                    ]
                async with session.post(
                    c.oauth_token_uri,
                    data=data,
                    headers=headers,
                    ssl=self._token_ssl_context()
                    if c.oauth_token_uri.startswith("https:")
                    else None,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as resp:
                    status, body = resp.status, await resp.text()
                if status == 200:
                    self._auth_style = style
                    break
                if status not in (400, 401):
                    break
        except aiohttp.ClientError as exc:
            raise self._error(
                "cannot reach the OAuth2 token endpoint", exc, transient=True
            ) from exc
        if status != 200:
            raise self._error(
                f"OAuth2 token request failed: status {status}, response: {body[:300]}",
                None,
                transient=status >= 500 or status == 429,
            )
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise self._error("OAuth2 token response is not JSON", exc, transient=False) from exc
        token = str(answer.get("access_token", "")) if isinstance(answer, dict) else ""
        if not token:
            raise self._error("OAuth2 token response has no access_token", None, transient=False)
        try:
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        self._token = (token, now + max(lifetime - TOKEN_EXPIRY_MARGIN, lifetime / 2))
        return token

    async def _read_http(self) -> QueueInfo:
        aiohttp = _aiohttp()
        yarl = import_optional("yarl", extra="rabbitmq", what="the rabbitmq scaler")
        c = self.config
        url, login, password = self._request_url()
        shown = url
        timeout = c.effective_timeout
        try:
            async with asyncio.timeout(timeout):
                session = await self._session_get()
                headers: dict[str, str] = {}
                if login is not None and not c.oauth_token_uri:
                    pair = f"{login}:{password or ''}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                # With OAuth2 a 401 from the broker with a cached token (expired or
                # revoked early) drops it and tries once more with a fresh one.
                for attempt in (1, 2):
                    cached = self._token is not None and self._token[1] > self._clock()
                    if c.oauth_token_uri:
                        headers["Authorization"] = "Bearer " + await self._bearer(session, timeout)
                    async with session.get(yarl.URL(url, encoded=True), headers=headers) as resp:
                        body = await resp.text()
                        status = resp.status
                        reason = resp.reason or ""
                    if not (c.oauth_token_uri and status == 401 and cached and attempt == 1):
                        break
                    self._token = None
        except TimeoutError as exc:
            raise self._error(
                f"timed out after {timeout:g}s requesting {shown}", exc, transient=True
            ) from exc
        except aiohttp.ClientError as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                raise self._error(
                    f"TLS handshake with the RabbitMQ management API at {shown} failed: "
                    f"{_tls_reason(tls)}",
                    exc,
                    transient=False,
                ) from exc
            raise self._error(
                f"cannot reach the RabbitMQ management API at {shown}", exc, transient=True
            ) from exc
        if status != 200:
            raise self._error(
                f"error requesting RabbitMQ API status: {status} {reason}, "
                f"response: {body[:500]}, from: {shown}",
                None,
                transient=status >= 500 or status == 429,
            )
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise self._error(
                f"the management API answered with invalid JSON from {shown}", exc, transient=True
            ) from exc
        if not isinstance(data, dict):
            raise self._error(
                f"unexpected management API answer from {shown}", None, transient=True
            )
        if c.use_regex:
            if int(data.get("page_count", 0) or 0) > 1:
                raise self._error(
                    "regex matches more queues than can be recovered at once", None, transient=False
                )
            items = data.get("items") or []
            return aggregate_queues(items, c.operation)
        return _queue_info(data)


def _aiohttp() -> Any:
    return import_optional("aiohttp", extra="rabbitmq", what="the rabbitmq scaler (http protocol)")
