"""Connection settings of a Redis trigger, shared by the list and stream scalers.

:class:`RedisConnection` holds the address forms, auth, database, TLS, cluster and
sentinel settings of one trigger; :func:`parse_connection` reads them from KEDA metadata
with KEDA's lookup orders and validation messages (keda: pkg/scalers/redis_scaler.go
``parseRedisMetadata``). See docs/scalers/redis-lists.md.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any, Final

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers.params import AUTH, ENV, META, Params, parse_go_bool

__all__ = (
    "DEFAULT_TIMEOUT",
    "ERR_NO_ADDRESSES",
    "ERR_TLS_BOTH",
    "ERR_UNEQUAL_HOSTS_PORTS",
    "RedisConnection",
    "RedisMode",
    "import_exceptions",
    "import_redis",
    "import_redis_module",
    "mode_for_trigger_type",
    "parse_connection",
)

ERR_NO_ADDRESSES: Final = (
    "no addresses or hosts given. address should be a comma separated list of host:port "
    "or set the host/port values"
)
ERR_UNEQUAL_HOSTS_PORTS: Final = (
    "not enough hosts or ports given. number of hosts should be equal to the number of ports"
)
ERR_TLS_BOTH: Final = "unable to set `tls` in both ScaledObject and TriggerAuthentication together"

DEFAULT_TIMEOUT: Final = 5.0
"""Seconds every Redis call may take without ``timeout``."""

# Importing a Redis scaler module without the extra installed raises MissingExtraError (a
# ConfigError naming ``eventscale[redis]``); ``import eventscale`` alone never loads redis.
import_optional("redis.asyncio", extra="redis", what="the redis scaler")


def import_redis() -> Any:
    """``redis.asyncio``; a missing extra raises :class:`~eventscale.errors.MissingExtraError`."""
    return import_optional("redis.asyncio", extra="redis", what="the redis scaler")


def import_redis_module(name: str) -> Any:
    """The ``redis`` submodule ``name``; a missing extra raises MissingExtraError."""
    return import_optional(name, extra="redis", what="the redis scaler")


@functools.cache
def import_exceptions() -> Any:
    """``redis.exceptions`` (the driver's exception classes)."""
    return import_optional("redis.exceptions", extra="redis", what="the redis scaler")


class RedisMode(enum.Enum):
    """How the addresses are used: one server, cluster seed nodes, or sentinels."""

    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


_MODE_BY_TYPE: Final = {
    "redis": RedisMode.STANDALONE,
    "redis-streams": RedisMode.STANDALONE,
    "redis-cluster": RedisMode.CLUSTER,
    "redis-cluster-streams": RedisMode.CLUSTER,
    "redis-sentinel": RedisMode.SENTINEL,
    "redis-sentinel-streams": RedisMode.SENTINEL,
}


def mode_for_trigger_type(trigger_type: str) -> RedisMode:
    """The connection mode a KEDA trigger type implies (``redis-cluster`` -> cluster)."""
    return _MODE_BY_TYPE.get(trigger_type, RedisMode.STANDALONE)


def _to_addresses(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    return tuple(value)


def _opt_secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def _check_addresses(inst: RedisConnection, _attr: Any, value: tuple[str, ...]) -> None:
    if not value or not value[0]:
        raise ConfigError(ERR_NO_ADDRESSES, path="address")


@attrs.frozen(kw_only=True)
class RedisConnection:
    """Connection settings of one Redis trigger; hashable, so it keys the client registry.

    ``addresses`` are ``host:port`` strings (IPv6 in brackets). A standalone connection
    uses the first one only (as KEDA does), a cluster uses all as seed nodes, a sentinel
    connection uses all as sentinels and asks them for ``sentinel_master``.
    ``ca``, ``cert``, ``key`` are PEM texts (as in a KEDA TriggerAuthentication).
    ``timeout`` (seconds) bounds every Redis call.
    """

    addresses: tuple[str, ...] = attrs.field(
        default=(), converter=_to_addresses, validator=_check_addresses
    )
    mode: RedisMode = RedisMode.STANDALONE
    username: str | None = None
    password: Secret | None = attrs.field(default=None, converter=_opt_secret)
    database_index: int = 0
    enable_tls: bool = False
    unsafe_ssl: bool = False
    ca: Secret | None = attrs.field(default=None, converter=_opt_secret)
    cert: Secret | None = attrs.field(default=None, converter=_opt_secret)
    key: Secret | None = attrs.field(default=None, converter=_opt_secret)
    key_password: Secret | None = attrs.field(default=None, converter=_opt_secret)
    sentinel_master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: Secret | None = attrs.field(default=None, converter=_opt_secret)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, converter=float)

    def __attrs_post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}", path="timeout")
        if self.mode is RedisMode.SENTINEL and not self.sentinel_master:
            raise ConfigError("a sentinel connection needs sentinelMaster", path="sentinelMaster")

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret value these settings hold (for redaction)."""
        values = (self.password, self.sentinel_password, self.key, self.key_password)
        return tuple(v for v in values if v)

    def describe(self) -> str:
        """A secret-free description for messages: ``redis 127.0.0.1:6379``."""
        if self.mode is RedisMode.SENTINEL:
            return f"redis sentinel {','.join(self.addresses)} (master {self.sentinel_master!r})"
        if self.mode is RedisMode.CLUSTER:
            return f"redis cluster {','.join(self.addresses)}"
        return f"redis {self.addresses[0]}"


def _join_host_port(host: str, port: str) -> str:
    # Go's net.JoinHostPort: brackets around hosts that contain a colon (IPv6).
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_connection(p: Params, mode: RedisMode) -> RedisConnection | None:
    """Read the KEDA connection parameters (spec section 4.1) and run KEDA's address and
    TLS validation. Returns ``None`` when an error was recorded on ``p``.

    Parameters: ``address``/``addresses`` (meta > auth > env), ``host``/``hosts`` and
    ``port``/``ports`` (meta > env > auth), ``username``/``password`` (meta > env > auth),
    ``sentinelUsername``/``sentinelPassword``/``sentinelMaster`` (meta > auth > env),
    ``databaseIndex``, ``enableTLS``, ``unsafeSsl``, ``timeout`` (meta), ``tls``,
    ``cert``/``Cert``, ``key``, ``keyPassword``, ``ca`` (auth).
    """
    errors_before = len(p.errors)
    addresses = p.string_list("address", order=(META, AUTH, ENV), aliases=("addresses",))
    username = p.string("username", order=(META, ENV, AUTH))
    password = p.secret("password", order=(META, ENV, AUTH))
    sentinel_username = p.string("sentinelUsername", order=(META, AUTH, ENV))
    sentinel_password = p.secret("sentinelPassword", order=(META, AUTH, ENV))
    sentinel_master = p.string("sentinelMaster", order=(META, AUTH, ENV))
    hosts = p.string_list("host", order=(META, ENV, AUTH), aliases=("hosts",))
    ports = p.string_list("port", order=(META, ENV, AUTH), aliases=("ports",))
    unsafe_ssl = p.boolean("unsafeSsl", default=False)
    cert = p.secret("Cert", order=(AUTH,), aliases=("cert",))
    key = p.secret("key", order=(AUTH,))
    key_password = p.secret("keyPassword", order=(AUTH,))
    ca = p.secret("ca", order=(AUTH,))
    database_index = p.integer("databaseIndex", default=0)
    enable_tls_raw = p.string("enableTLS")
    tls_raw = p.string("tls", order=(AUTH,))
    timeout = p.duration("timeout")

    # Validate(), as KEDA: the address rule first; its failure stops the checks.
    all_addresses = list(addresses or ())
    if hosts and ports:
        if len(hosts) != len(ports):
            p.fail(ERR_UNEQUAL_HOSTS_PORTS, "host")
            return None
        all_addresses.extend(_join_host_port(h, port) for h, port in zip(hosts, ports, strict=True))
    if not all_addresses or not all_addresses[0]:
        p.fail(ERR_NO_ADDRESSES, "address")
        return None

    enable_tls = False
    if enable_tls_raw is not None and tls_raw is not None:
        p.fail(ERR_TLS_BOTH, "enableTLS")
        return None
    if enable_tls_raw is not None:
        try:
            enable_tls = parse_go_bool(enable_tls_raw)
        except ValueError as exc:
            p.fail(f"EnableTLS parsing error {exc}", "enableTLS")
            return None
    if tls_raw is not None:
        if tls_raw == "enable":
            enable_tls = True
        elif tls_raw == "disable":
            enable_tls = False
        else:
            p.fail(f"error incorrect TLS value given, got {tls_raw}", "tls", AUTH)
            return None

    if timeout is not None and timeout.total_seconds() <= 0:
        p.fail("timeout must be greater than 0", "timeout")
        return None
    if mode is RedisMode.SENTINEL and not sentinel_master:
        # KEDA finds this out only when the client asks the sentinels; say it now.
        p.fail("a redis-sentinel trigger needs sentinelMaster", "sentinelMaster")
        return None
    if len(p.errors) > errors_before:
        return None
    return RedisConnection(
        addresses=tuple(all_addresses),
        mode=mode,
        username=username,
        password=password,
        database_index=database_index,
        enable_tls=enable_tls,
        unsafe_ssl=bool(unsafe_ssl),
        ca=ca,
        cert=cert,
        key=key,
        key_password=key_password,
        sentinel_master=sentinel_master,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
        timeout=timeout.total_seconds() if timeout is not None else DEFAULT_TIMEOUT,
    )
