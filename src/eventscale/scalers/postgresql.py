"""PostgreSQL scaler (``type: postgresql``): the number one query returns.

Follows KEDA's ``postgresql`` scaler (KEDA's pkg/scalers/postgresql_scaler.go):

* the connection is either a whole connection string (``connection`` from the
  TriggerAuthentication, or ``connectionFromEnv``), as a ``postgresql://`` URI or libpq
  ``key=value`` words, or built from ``host``, ``port``, ``userName``, ``dbName``,
  ``sslmode`` (TriggerAuthentication first, then metadata) and ``password``
  (TriggerAuthentication, or ``passwordFromEnv``);
* ``query`` must return one number; ``targetQueryValue`` (required, not 0) is the target
  and the trigger is active when the number is greater than ``activationTargetQueryValue``;
* the metric is ``s{index}-postgresql``.

Every poll is bounded twice: the server's ``statement_timeout`` and a client deadline.
The driver is asyncpg (see docs/scalers/postgresql.md for why); scalers that connect
with the same settings share one small asyncpg pool, closed with its last scaler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricSpec, MetricType, metric_name
from eventscale.redaction import Secret, redact_text
from eventscale.scalers._sql import (
    CLIENT_GRACE,
    DEFAULT_TIMEOUT,
    POOL_SIZE,
    PoolRegistry,
    SQLScaler,
    fingerprint,
)
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext

if TYPE_CHECKING:
    import asyncpg

# Fail at import time, with the extra to install, when the driver is missing.
import_optional("asyncpg", extra="postgresql", what="the postgresql scaler")

__all__ = (
    "SSL_MODES",
    "PostgreSQLMetadata",
    "PostgreSQLScaler",
    "parse_keyword_connection",
)

SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""The ``sslmode`` values libpq (and asyncpg) know."""

_CONNECTION_ORDER: Final = (AUTH, ENV)
_PART_ORDER: Final = (AUTH, META)
# libpq keywords a keyword connection string may use, and asyncpg's name for each.
_KEYWORDS: Final[Mapping[str, str]] = {
    "host": "host",
    "hostaddr": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "sslmode": "ssl",
    "application_name": "application_name",
    "connect_timeout": "connect_timeout",
}


def parse_keyword_connection(text: str) -> dict[str, str]:
    """Split a libpq ``key=value`` connection string (values may be ``'quoted'``).

    Backslash escapes the next character, as in libpq. :raises ValueError: malformed
    text or an unknown keyword; the message never contains a value.
    """
    out: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return out
        start = pos
        while pos < end and text[pos] != "=" and not text[pos].isspace():
            pos += 1
        key = text[start:pos]
        while pos < end and text[pos].isspace():
            pos += 1
        if not key or pos >= end or text[pos] != "=":
            raise ValueError(f"expected key=value at character {start + 1}")
        pos += 1
        while pos < end and text[pos].isspace():
            pos += 1
        value: list[str] = []
        quoted = pos < end and text[pos] == "'"
        if quoted:
            pos += 1
        while pos < end:
            char = text[pos]
            if char == "\\" and pos + 1 < end:
                value.append(text[pos + 1])
                pos += 2
                continue
            if (quoted and char == "'") or (not quoted and char.isspace()):
                break
            value.append(char)
            pos += 1
        if quoted:
            if pos >= end:
                raise ValueError(f"unterminated quoted value of {key!r}")
            pos += 1
        if key not in _KEYWORDS:
            known = ", ".join(_KEYWORDS)
            raise ValueError(f"unsupported connection keyword {key!r} (supported: {known})")
        out[key] = "".join(value)


@attrs.frozen(kw_only=True)
class PostgreSQLMetadata:
    """The parsed ``postgresql`` trigger metadata.

    Either ``connection`` (a whole connection string, a :class:`Secret`) is set, or
    ``host``, ``port``, ``user_name``, ``db_name`` and ``sslmode`` all are (with an
    optional ``password``).
    """

    query: str
    target_query_value: float
    activation_target_query_value: float = 0.0
    connection: Secret | None = attrs.field(default=None, repr=False)
    connection_path: str | None = None
    host: str = ""
    port: int = 5432
    user_name: str = ""
    db_name: str = ""
    sslmode: str = ""
    password: Secret | None = attrs.field(default=None, repr=False)
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def metric_name(self) -> str:
        """``s{index}-postgresql``, as KEDA names it."""
        return metric_name(self.index, "postgresql")

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> PostgreSQLMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        query = p.string("query", required=True)
        target = p.number("targetQueryValue", default=0.0)
        activation = p.number("activationTargetQueryValue", default=0.0)
        found = p.lookup("connection", _CONNECTION_ORDER)
        connection = Secret(found.raw) if found is not None else None
        connection_path = p.found_path(found) if found is not None else None
        host = p.string("host", order=_PART_ORDER, default="")
        port_text = p.string("port", order=_PART_ORDER, default="")
        user = p.string("userName", order=_PART_ORDER, default="")
        db_name = p.string("dbName", order=_PART_ORDER, default="")
        sslmode = p.choice("sslmode", SSL_MODES, order=_PART_ORDER) or ""
        password = p.secret("password", order=_CONNECTION_ORDER)
        port = 5432
        identity = ctx.auth.get("podIdentity")
        identity_text = (
            identity.reveal() if isinstance(identity, Secret) else identity or ""
        ).strip()
        if identity_text not in ("", "none"):
            p.fail(
                f"the postgresql scaler supports no pod identity (got {identity_text!r})",
                "podIdentity",
                AUTH,
            )
        if target == 0:
            p.fail("no targetQueryValue given", "targetQueryValue")
        if connection is None:
            for name, value in (
                ("host", host),
                ("port", port_text),
                ("userName", user),
                ("dbName", db_name),
                ("sslmode", sslmode),
            ):
                # An invalid sslmode was reported already; it is not also missing.
                if not value and not (name == "sslmode" and p.has(name, _PART_ORDER)):
                    p.fail(f"no {name} given", name)
            if port_text:
                try:
                    port = int(port_text)
                    if not 0 < port < 65536:
                        raise ValueError
                except ValueError:
                    p.fail(f"port {port_text!r} is not a TCP port number", "port")
        else:
            _check_connection(p, connection, connection_path)
        p.finish()
        assert query is not None
        return cls(
            query=query,
            target_query_value=target,
            activation_target_query_value=activation,
            connection=connection,
            connection_path=connection_path,
            host=host,
            port=port,
            user_name=user,
            db_name=db_name,
            sslmode=sslmode,
            password=password,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )

    def connect_arguments(self) -> dict[str, Any]:
        """asyncpg connection arguments (``dsn`` for a URI; the password revealed)."""
        if self.connection is None:
            args: dict[str, Any] = {
                "host": self.host,
                "port": self.port,
                "user": self.user_name,
                "database": self.db_name,
                "ssl": self.sslmode,
            }
            if self.password is not None:
                args["password"] = self.password.reveal()
            return args
        text = self.connection.reveal().strip()
        if _is_uri(text):
            return {"dsn": text}
        args = {}
        for key, value in parse_keyword_connection(text).items():
            args[_KEYWORDS[key]] = value
        if "port" in args:
            args["port"] = int(args["port"])
        return args

    @property
    def address(self) -> str:
        """``host:port/database`` for messages (never a password)."""
        if self.connection is None:
            return f"{self.host}:{self.port}/{self.db_name}"
        text = self.connection.reveal().strip()
        if _is_uri(text):
            parts = urlsplit(text)
            host = parts.hostname or "localhost"
            port = _uri_port(parts.netloc) or "5432"
            return f"{host}:{port}/{unquote(parts.path.lstrip('/'))}"
        words = parse_keyword_connection(text)
        host = words.get("host") or words.get("hostaddr") or "localhost"
        return f"{host}:{words.get('port') or '5432'}/{words.get('dbname', '')}"


def _is_uri(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def _uri_port(netloc: str) -> str:
    host_port = netloc.rpartition("@")[2]
    if host_port.startswith("["):
        return host_port.partition("]")[2].lstrip(":")
    return host_port.partition(":")[2]


def _check_connection(p: Params, connection: Secret, path: str | None) -> None:
    text = connection.reveal().strip()
    if _is_uri(text):
        return
    try:
        words = parse_keyword_connection(text)
        if "port" in words:
            port = int(words["port"])
            if not 0 < port < 65536:
                raise ValueError("the port is not a TCP port number")
        if words.get("sslmode", "prefer") not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    except ValueError as exc:
        p.errors.append(
            ConfigError(
                f"invalid connection string: {redact_text(str(exc), [connection])}", path=path
            )
        )


async def _close_pool(pool: asyncpg.Pool[Any]) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=5)
    except (TimeoutError, OSError):
        pool.terminate()


_POOLS: Final[PoolRegistry[Any]] = PoolRegistry(_close_pool)
# SQLSTATE classes worth retrying: connection exceptions, insufficient resources,
# operator intervention (shutdown, cancel), transaction rollback (serialization).
_TRANSIENT_CLASSES: Final = ("08", "53", "57", "40")
_QUERY_CANCELED: Final = "57014"
_AUTH_CLASS: Final = "28"


class PostgreSQLScaler(SQLScaler):
    """Runs one query against PostgreSQL and reports its number.

    ``timeout`` (seconds) bounds each poll: the server cancels the statement after it
    (``statement_timeout``) and the client gives up shortly after.
    """

    engine = "postgresql"

    def __init__(
        self,
        metadata: PostgreSQLMetadata,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        trigger_name: str | None = None,
    ) -> None:
        import_optional("asyncpg", extra="postgresql", what="the postgresql scaler")
        self.metadata = m = metadata
        address = m.address
        super().__init__(
            spec=MetricSpec(
                name=m.metric_name,
                target=m.target_query_value,
                metric_type=m.metric_type,
                activation_target=m.activation_target_query_value,
            ),
            address=address,
            # No secret in the key: the connection string and password as fingerprints.
            pool_key=(
                "postgresql",
                address,
                m.user_name,
                m.sslmode,
                fingerprint(m.connection),
                fingerprint(m.password),
                round(timeout * 1000),
            ),
            pools=_POOLS,
            secrets=(m.connection, m.password),
            timeout=timeout,
            trigger=trigger_name or f"postgresql[{m.index}]",
        )

    @classmethod
    def from_context(
        cls, ctx: TriggerContext, *, timeout: float = DEFAULT_TIMEOUT
    ) -> PostgreSQLScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = PostgreSQLMetadata.from_context(ctx)
        return cls(metadata, timeout=timeout, trigger_name=ctx.identity)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"PostgreSQLScaler(address={self.address!r}, query={m.query!r}, "
            f"targetQueryValue={m.target_query_value:g})"
        )

    async def _make_pool(self) -> asyncpg.Pool[Any]:
        import asyncpg

        args = self.metadata.connect_arguments()
        connect_timeout = float(args.pop("connect_timeout", 0) or 0) or self.timeout
        settings = {
            "statement_timeout": str(max(1, round(self.timeout * 1000))),
            "application_name": args.pop("application_name", "eventscale"),
        }
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            **args,
            min_size=0,
            max_size=POOL_SIZE,
            max_inactive_connection_lifetime=60.0,
            timeout=min(connect_timeout, self.timeout),
            server_settings=settings,
        )
        return pool

    async def _run(self, pool: asyncpg.Pool[Any]) -> Sequence[Sequence[Any]]:
        async with pool.acquire(timeout=self.timeout) as conn:
            # asyncpg's own timeout cancels the query on the server if statement_timeout
            # did not (a pooler may drop the setting); it gives the server a head start.
            rows: list[Any] = await conn.fetch(
                self.metadata.query, timeout=self.timeout + CLIENT_GRACE / 2
            )
            return rows

    def _translate(self, exc: Exception) -> ScalerError | None:
        import asyncpg

        if isinstance(exc, asyncpg.PostgresError):
            state = str(getattr(exc, "sqlstate", "") or "")
            text = str(exc).split("\n")[0][:300]
            if state == _QUERY_CANCELED:
                return self._error(
                    f"the query was canceled after {self.timeout:g}s ({text})",
                    transient=True,
                    timeout=True,
                )
            if state.startswith(_AUTH_CLASS):
                return self._error(f"login refused ({text})", transient=False)
            return self._error(
                f"query failed: {text} (SQLSTATE {state})",
                transient=state[:2] in _TRANSIENT_CLASSES,
            )
        if isinstance(exc, OSError | asyncpg.InterfaceError):
            return self._error(f"cannot connect ({exc})", transient=True)
        return None
