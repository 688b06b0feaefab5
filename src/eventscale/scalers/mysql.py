"""MySQL / MariaDB scaler (``type: mysql``): the number one query returns.

Follows KEDA's ``mysql`` scaler (KEDA's pkg/scalers/mysql_scaler.go):

* the connection is either ``connectionString`` (TriggerAuthentication, or
  ``connectionStringFromEnv``) in the Go MySQL driver's DSN form
  ``user:password@tcp(host:port)/dbname?tls=true``, or built from ``host``, ``port``,
  ``dbName`` (metadata first, then TriggerAuthentication), ``username`` (metadata,
  TriggerAuthentication, ``usernameFromEnv``) and ``password`` (TriggerAuthentication or
  ``passwordFromEnv``);
* ``query`` must return one number; ``queryValue`` is the target and the trigger is
  active when the number is greater than ``activationQueryValue``;
* the metric is ``s{index}-mysql-{dbName}``, where a connection string's ``dbName`` is
  everything after its last ``/``, as KEDA takes it.

Every poll is bounded on the server (MariaDB's ``max_statement_time``, MySQL's
``max_execution_time``, set per connection after asking the server which it is) and by
a client deadline. The driver is aiomysql (see docs/scalers/mysql.md for why); scalers
that connect with the same settings share one small pool, closed with its last scaler.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    metric_name,
    normalize_metric_name,
)
from eventscale.redaction import Secret, redact_text
from eventscale.scalers._sql import (
    DEFAULT_TIMEOUT,
    POOL_SIZE,
    PoolRegistry,
    SQLScaler,
    fingerprint,
)
from eventscale.scalers.params import AUTH, ENV, META, Params, TriggerContext

# Fail at import time, with the extra to install, when the driver is missing.
import_optional("aiomysql", extra="mysql", what="the mysql scaler")

__all__ = (
    "MySQLDSN",
    "MySQLMetadata",
    "MySQLScaler",
    "parse_mysql_dsn",
)

_SECRET_ORDER: Final = (AUTH, ENV)
_PART_ORDER: Final = (META, AUTH)
_TLS_MODES: Final = ("true", "false", "skip-verify")
# Server error codes: access denied (user, database), statement time limit (MariaDB,
# MySQL), and the client's "cannot connect" / "connection lost" family.
_ACCESS_DENIED: Final = frozenset({1044, 1045, 1698})
_STATEMENT_TIMEOUT: Final = frozenset({1969, 3024})
_CONNECTION_LOST: Final = frozenset({2002, 2003, 2006, 2013, 2055, 1040, 1053})
_CLIENT_ERRORS: Final = 2000  # codes from 2000 up are the client's (network, protocol)
_RETRYABLE: Final = frozenset({1205, 1213})  # lock wait timeout, deadlock


@attrs.frozen(kw_only=True)
class MySQLDSN:
    """A Go MySQL driver DSN, split. ``password`` is a :class:`Secret`."""

    user: str = ""
    password: Secret | None = attrs.field(default=None, repr=False)
    net: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 3306
    unix_socket: str = ""
    db_name: str = ""
    tls: str = "false"


def parse_mysql_dsn(text: str) -> MySQLDSN:
    """Split ``[user[:password]@][net[(addr)]]/dbname[?param=value&...]``.

    Supported ``net``: ``tcp`` (default address ``127.0.0.1:3306``) and ``unix``;
    parameters: ``tls`` (``true``, ``false``, ``skip-verify``), the rest is ignored.
    :raises ValueError: malformed text; the message never contains the password.
    """
    prefix, slash, rest = text.rpartition("/")
    if not slash:
        raise ValueError("the DSN has no '/' before the database name")
    db_name, _, query = rest.partition("?")
    user_info, at, address = prefix.rpartition("@")
    if not at:
        user_info, address = "", prefix
    user, colon, password = user_info.partition(":")
    net, paren, addr = address.partition("(")
    if paren:
        if not addr.endswith(")"):
            raise ValueError("the DSN's address has no closing ')'")
        addr = addr[:-1]
    net = net or "tcp"
    out: dict[str, Any] = {"user": user, "net": net, "db_name": unquote(db_name)}
    if colon:
        out["password"] = Secret(password)
    if net == "tcp":
        host, port_text = addr or "127.0.0.1", "3306"
        if host.startswith("["):
            inside, _, after = host[1:].partition("]")
            host, port_text = inside, after.lstrip(":") or "3306"
        elif host.count(":") == 1:
            host, _, port_text = host.partition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError("the DSN's port is not a number") from None
        if not 0 < port < 65536:
            raise ValueError("the DSN's port is not a TCP port number")
        out.update(host=host, port=port)
    elif net == "unix":
        out.update(unix_socket=addr or "/tmp/mysql.sock", host="localhost")
    else:
        raise ValueError(f"unsupported DSN network {net!r} (use tcp or unix)")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "tls":
            if value not in _TLS_MODES:
                raise ValueError(f"unsupported tls={value!r} (use {', '.join(_TLS_MODES)})")
            out["tls"] = value
    return MySQLDSN(**out)


@attrs.frozen(kw_only=True)
class MySQLMetadata:
    """The parsed ``mysql`` trigger metadata: ``dsn`` is where and as whom to connect."""

    query: str
    query_value: float
    activation_query_value: float = 0.0
    dsn: MySQLDSN
    db_name: str = ""
    from_connection_string: bool = False
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def metric_name(self) -> str:
        """``s{index}-mysql-{dbName}``, normalized as KEDA does."""
        return metric_name(self.index, normalize_metric_name(f"mysql-{self.db_name}"))

    @property
    def address(self) -> str:
        """``host:port/database`` (or the socket path) for messages."""
        d = self.dsn
        where = d.unix_socket if d.net == "unix" else f"{d.host}:{d.port}"
        return f"{where}/{d.db_name}"

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> MySQLMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        query = p.string("query", required=True)
        query_value = p.number("queryValue", required=True)
        activation = p.number("activationQueryValue", default=0.0)
        found = p.lookup("connectionString", _SECRET_ORDER)
        username = p.string("username", order=(META, AUTH, ENV), default="")
        password = p.secret("password", order=_SECRET_ORDER)
        # KEDA's docs name hostFromEnv and portFromEnv too: they are read last.
        host = p.string("host", order=(META, AUTH, ENV), default="")
        # None when the value did not parse (the error is recorded).
        port: int | None = p.integer("port", order=(META, AUTH, ENV), default=3306)
        db_name = p.string("dbName", order=_PART_ORDER, default="")
        dsn = MySQLDSN()
        if found is not None:
            connection = Secret(found.raw)
            # KEDA names the metric after everything that follows the last "/".
            db_name = found.raw.split("/")[-1]
            try:
                dsn = parse_mysql_dsn(found.raw)
            except ValueError as exc:
                reason = redact_text(str(exc), [connection])
                p.errors.append(
                    ConfigError(f"invalid connectionString: {reason}", path=p.found_path(found))
                )
        else:
            if not host:
                p.fail("no host given (nor a connectionString)", "host")
            if port is not None and not 0 < port < 65536:
                p.fail(f"port {port} is not a TCP port number", "port")
            dsn = MySQLDSN(
                user=username, password=password, host=host, port=port or 3306, db_name=db_name
            )
        p.finish()
        assert query is not None
        assert query_value is not None
        return cls(
            query=query,
            query_value=query_value,
            activation_query_value=activation,
            dsn=dsn,
            db_name=db_name,
            from_connection_string=found is not None,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


def _ssl_context(mode: str) -> ssl.SSLContext | None:
    if mode == "false":
        return None
    context = ssl.create_default_context()
    if mode == "skip-verify":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _close_pool(pool: Any) -> None:
    pool.close()
    try:
        await asyncio.wait_for(pool.wait_closed(), timeout=5)
    except (TimeoutError, OSError):
        pool.terminate()


_POOLS: Final[PoolRegistry[Any]] = PoolRegistry(_close_pool)


class MySQLScaler(SQLScaler):
    """Runs one query against MySQL or MariaDB and reports its number.

    ``timeout`` (seconds) bounds each poll: the server stops the statement after it and
    the client gives up shortly after (closing that connection).
    """

    engine = "mysql"

    def __init__(
        self,
        metadata: MySQLMetadata,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        trigger_name: str | None = None,
    ) -> None:
        import_optional("aiomysql", extra="mysql", what="the mysql scaler")
        self.metadata = m = metadata
        address = m.address
        super().__init__(
            spec=MetricSpec(
                name=m.metric_name,
                target=m.query_value,
                metric_type=m.metric_type,
                activation_target=m.activation_query_value,
            ),
            address=address,
            # No secret in the key: the password as a fingerprint.
            pool_key=(
                "mysql",
                address,
                m.dsn.user,
                m.dsn.tls,
                fingerprint(m.dsn.password),
                round(timeout * 1000),
            ),
            pools=_POOLS,
            secrets=(m.dsn.password,),
            timeout=timeout,
            trigger=trigger_name or f"mysql[{m.index}]",
        )

    @classmethod
    def from_context(cls, ctx: TriggerContext, *, timeout: float = DEFAULT_TIMEOUT) -> MySQLScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = MySQLMetadata.from_context(ctx)
        return cls(metadata, timeout=timeout, trigger_name=ctx.identity)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"MySQLScaler(address={self.address!r}, query={m.query!r}, "
            f"queryValue={m.query_value:g})"
        )

    async def _make_pool(self) -> Any:
        import aiomysql

        d = self.metadata.dsn
        args: dict[str, Any] = {
            "user": d.user or None,
            "password": d.password.reveal() if d.password is not None else "",
            "db": d.db_name or None,
            "connect_timeout": self.timeout,
            "autocommit": True,
            "ssl": _ssl_context(d.tls),
            "program_name": "eventscale",
        }
        if d.net == "unix":
            args["unix_socket"] = d.unix_socket
        else:
            args.update(host=d.host, port=d.port)
        pool = await aiomysql.create_pool(minsize=0, maxsize=POOL_SIZE, pool_recycle=300, **args)
        # One set per pool, kept on the pool so every scaler sharing it sees it.
        pool.eventscale_bounded = weakref.WeakSet()
        return pool

    async def _bound(self, pool: Any, conn: Any) -> None:
        """Set the server-side statement time limit on a new connection."""
        bounded: weakref.WeakSet[Any] = pool.eventscale_bounded
        if conn in bounded:
            return
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            (version,) = await cur.fetchone()
            if "mariadb" in str(version).lower():
                await cur.execute(f"SET SESSION max_statement_time = {self.timeout:.3f}")
            else:
                await cur.execute(
                    f"SET SESSION max_execution_time = {max(1, round(self.timeout * 1000))}"
                )
        bounded.add(conn)

    async def _run(self, pool: Any) -> Sequence[Sequence[Any]]:
        conn = await pool.acquire()
        healthy = False
        try:
            await self._bound(pool, conn)
            async with conn.cursor() as cur:
                await cur.execute(self.metadata.query)
                rows: Sequence[Sequence[Any]] = await cur.fetchall()
            healthy = True
            return rows
        finally:
            if not healthy:
                # A timed-out or failed exchange leaves the protocol state unknown.
                conn.close()
            pool.release(conn)

    def _translate(self, exc: Exception) -> ScalerError | None:
        import pymysql

        if isinstance(exc, pymysql.err.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            text = str(exc.args[1] if len(exc.args) > 1 else exc)[:300]
            if code in _STATEMENT_TIMEOUT:
                return self._error(
                    f"the query was stopped after {self.timeout:g}s ({text})",
                    transient=True,
                    timeout=True,
                )
            if code in _ACCESS_DENIED:
                return self._error(f"login refused ({text})", transient=False)
            if code in _CONNECTION_LOST or code >= _CLIENT_ERRORS:
                return self._error(f"cannot connect or read ({text})", transient=True)
            return self._error(f"query failed: {text} (error {code})", transient=code in _RETRYABLE)
        if isinstance(exc, OSError):
            return self._error(f"cannot connect ({exc})", transient=True)
        return None
