"""The ``mysql`` scaler: KEDA's parameters, and real queries against MariaDB."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.manifests import load_manifests
from eventscale.metrics import MetricType, ScalerReport
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers import mysql as mysql_module
from eventscale.scalers.mysql import MySQLDSN, MySQLMetadata, MySQLScaler, parse_mysql_dsn
from servers._proc import free_port, unique_name
from servers.sql_srv import SQLServer
from servers.sql_srv import mariadb_server as mariadb_server  # fixture

pytestmark = pytest.mark.anyio

PARTS = {"host": "127.0.0.1", "port": "3306", "username": "root", "dbName": "test"}


def ctx(
    metadata: Mapping[str, str],
    auth: Mapping[str, str | Secret] | None = None,
    env: Mapping[str, str] | None = None,
    **kw: Any,
) -> TriggerContext:
    return TriggerContext(
        metadata=dict(metadata),
        auth=dict(auth or {}),
        env=dict(env or {}),
        trigger_type="mysql",
        **kw,
    )


# ---------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "user:pa:ss@w@tcp(mysql:3307)/stats_db",
            MySQLDSN(
                user="user", password=Secret("pa:ss@w"), host="mysql", port=3307, db_name="stats_db"
            ),
        ),
        ("user@tcp(mysql:3306)/stats_db", MySQLDSN(user="user", host="mysql", db_name="stats_db")),
        ("/db", MySQLDSN(db_name="db")),
        (
            "u@tcp([::1]:3310)/db?tls=skip-verify",
            MySQLDSN(user="u", host="::1", port=3310, db_name="db", tls="skip-verify"),
        ),
        (
            "u@unix(/run/mysqld/mysqld.sock)/db?parseTime=true",
            MySQLDSN(
                user="u",
                net="unix",
                host="localhost",
                unix_socket="/run/mysqld/mysqld.sock",
                db_name="db",
            ),
        ),
    ],
)
def test_go_driver_dsns(dsn: str, expected: MySQLDSN) -> None:
    assert parse_mysql_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("user:pw@tcp(host:3306)", "no '/'"),
        ("user:pw@tcp(host:3306/db", "closing"),
        ("user:pw@tcp(host:port)/db", "not a number"),
        ("user:pw@udp(host:1)/db", "unsupported DSN network"),
        ("user:pw@tcp(host:1)/db?tls=custom", "unsupported tls"),
    ],
)
def test_bad_dsns(dsn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mysql_dsn(dsn)


def test_metric_name_takes_the_dsn_tail_like_keda() -> None:
    base = {"query": "SELECT 1", "queryValue": "1"}
    m = MySQLMetadata.from_context(
        ctx(base, auth={"connectionString": "u:p@tcp(h:3306)/stats_db"}, index=2)
    )
    assert m.metric_name == "s2-mysql-stats_db"
    parts = MySQLMetadata.from_context(ctx({**PARTS, **base, "dbName": "orders.v2"}))
    assert parts.metric_name == "s0-mysql-orders-v2"


def test_lookup_orders() -> None:
    base = {"query": "SELECT 1", "queryValue": "1"}
    m = MySQLMetadata.from_context(
        ctx(
            {**base, "host": "meta-host", "usernameFromEnv": "U", "passwordFromEnv": "P"},
            auth={"host": "auth-host", "dbName": "auth-db", "password": Secret("auth-pw")},
            env={"U": "env-user", "P": "env-pw"},
        )
    )
    assert (m.dsn.host, m.dsn.db_name, m.dsn.user) == ("meta-host", "auth-db", "env-user")
    assert m.dsn.password == Secret("auth-pw")
    from_env = MySQLMetadata.from_context(
        ctx({**base, "connectionStringFromEnv": "C"}, env={"C": "u:pw@tcp(h:1)/d"})
    )
    assert from_env.dsn.host == "h"
    assert from_env.from_connection_string


def test_every_error_is_collected_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        MySQLMetadata.from_context(ctx({"port": "x", "activationQueryValue": "y"}))
    paths = info.value.all_paths()
    for name in ("query", "queryValue", "host", "port", "activationQueryValue"):
        assert f"metadata.{name}" in paths, (name, paths)


def test_bad_connection_string_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        MySQLMetadata.from_context(
            ctx(
                {"query": "SELECT 1", "queryValue": "1"},
                auth={"connectionString": Secret("u:hunter22@tcp(h:port)/db")},
            )
        )
    assert "hunter22" not in str(info.value)
    assert info.value.all_paths() == ["authenticationRef.connectionString"]


def test_registry_repr_and_metric_spec() -> None:
    scaler = create_scaler(
        ctx(
            {**PARTS, "query": "SELECT 1", "queryValue": "4.4", "activationQueryValue": "5.4"},
            auth={"password": Secret("hunter22")},
            metric_type=MetricType.VALUE,
        )
    )
    assert isinstance(scaler, MySQLScaler)
    assert "hunter22" not in repr(scaler)
    assert "hunter22" not in repr(scaler.metadata)
    assert "hunter22" not in repr(scaler._pool_key)
    (spec,) = scaler.metric_specs()
    assert (spec.name, spec.target, spec.activation_target, spec.metric_type) == (
        "s0-mysql-test",
        4.4,
        5.4,
        MetricType.VALUE,
    )


# ---------------------------------------------------------------------------- server


async def root(server: SQLServer) -> Any:
    return await aiomysql.connect(
        host=server.host, port=server.port, user=server.user, db=server.database, autocommit=True
    )


@pytest.fixture
async def table(mariadb_server: SQLServer) -> AsyncIterator[str]:
    """A fresh table ``jobs(state)`` in the ``test`` database."""
    name = unique_name("es_jobs").replace("-", "_")
    conn = await root(mariadb_server)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE {name} (state VARCHAR(20))")
        yield name
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


async def insert(server: SQLServer, table: str, *states: str) -> None:
    conn = await root(server)
    try:
        async with conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(s,) for s in states])
    finally:
        conn.close()


@pytest.fixture
async def user(mariadb_server: SQLServer) -> AsyncIterator[tuple[str, str]]:
    """A user with a password, allowed to read ``test``."""
    name = unique_name("es").replace("-", "_")[:30]
    password = unique_name("pw")
    conn = await root(mariadb_server)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
            await cur.execute(f"GRANT SELECT ON test.* TO '{name}'@'%'")
        yield name, password
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        conn.close()


def server_ctx(server: SQLServer, query: str, **metadata: str) -> TriggerContext:
    return ctx(
        {
            "host": server.host,
            "port": str(server.port),
            "username": server.user,
            "dbName": server.database,
            "query": query,
            "queryValue": "2",
            **metadata,
        }
    )


async def poll(c: TriggerContext, **kw: Any) -> ScalerReport:
    async with MySQLScaler.from_context(c, **kw) as scaler:
        return await scaler.get_metrics()


async def read(server: SQLServer, query: str, **metadata: str) -> tuple[float, bool]:
    c = server_ctx(server, query, **metadata)
    report = await poll(c)
    return report.value_of("s0-mysql-test"), report.is_active


async def test_values_follow_the_table_and_activation_is_strict(
    mariadb_server: SQLServer, table: str
) -> None:
    count = f"SELECT COUNT(*) FROM {table} WHERE state = 'queued'"
    assert await read(mariadb_server, count) == (0.0, False)
    await insert(mariadb_server, table, "queued", "queued", "queued", "done")
    assert await read(mariadb_server, count) == (3.0, True)
    assert await read(mariadb_server, count, activationQueryValue="3") == (3.0, False)
    assert await read(mariadb_server, count, activationQueryValue="2.5") == (3.0, True)
    assert await read(mariadb_server, f"SELECT CEIL(COUNT(*) / 3) FROM {table}") == (2.0, True)
    assert await read(mariadb_server, "SELECT 0.25") == (0.25, True)
    assert await read(mariadb_server, "SELECT '7'") == (7.0, True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT 1 FROM DUAL WHERE 1 = 0", "returned no row"),
        ("SELECT 1 UNION ALL SELECT 2", "returned 2 rows"),
        ("SELECT 1, 2", "returned 2 columns"),
        ("SELECT NULL", "returned NULL"),
        ("SELECT 'many'", "returned a str, not a number"),
    ],
)
async def test_a_result_that_is_not_one_number_is_an_error(
    mariadb_server: SQLServer, query: str, message: str
) -> None:
    with pytest.raises(ScalerError, match=message) as info:
        await read(mariadb_server, query)
    assert info.value.transient is False
    assert info.value.trigger == "mysql[0]"


async def test_sql_errors_are_permanent_scaler_errors(mariadb_server: SQLServer) -> None:
    with pytest.raises(ScalerError, match=r"doesn't exist \(error 1146\)") as info:
        await read(mariadb_server, "SELECT COUNT(*) FROM no_such_table_here")
    assert info.value.transient is False


async def test_a_slow_query_is_stopped_by_the_server_within_the_bound(
    mariadb_server: SQLServer,
) -> None:
    scaler = MySQLScaler.from_context(server_ctx(mariadb_server, "SELECT SLEEP(5)"), timeout=1)
    started = time.monotonic()
    with pytest.raises(ScalerTimeout, match="stopped after 1s") as info:
        await scaler.get_metrics()
    assert time.monotonic() - started < 2.5
    assert info.value.transient is True
    # The next poll works, on a connection that is bounded too.
    scaler.metadata = MySQLMetadata.from_context(
        server_ctx(mariadb_server, "SELECT @@max_statement_time")
    )
    assert (await scaler.get_metrics()).value_of("s0-mysql-test") == 1.0
    await scaler.aclose()


async def test_the_client_deadline_holds_when_the_server_does_not_answer() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        c = ctx({**PARTS, "port": str(port), "query": "SELECT 1", "queryValue": "1"})
        started = time.monotonic()
        with pytest.raises(ScalerError) as info:
            await poll(c, timeout=0.5)
        assert time.monotonic() - started < 3
        assert info.value.transient is True


async def test_unreachable_server_is_transient() -> None:
    c = ctx({**PARTS, "port": str(free_port()), "query": "SELECT 1", "queryValue": "1"})
    with pytest.raises(ScalerError, match="cannot connect") as info:
        await poll(c, timeout=2)
    assert info.value.transient is True


def keda_example(connection_string: str, query: str) -> str:
    """KEDA's mysql page example (Secret, TriggerAuthentication, ScaledObject)."""
    encoded = base64.b64encode(connection_string.encode()).decode()
    return f"""
apiVersion: v1
kind: Secret
metadata:
  name: mysql-secrets
  namespace: my-project
type: Opaque
data:
  mysql_conn_str: {encoded}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-trigger-auth-mysql-secret
  namespace: my-project
spec:
  secretTargetRef:
  - parameter: connectionString
    name: mysql-secrets
    key: mysql_conn_str
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: mysql-scaledobject
  namespace: my-project
spec:
  scaleTargetRef:
    name: worker
  triggers:
  - type: mysql
    metadata:
      queryValue: "4.4"
      activationQueryValue: "5.4"
      query: "{query}"
    authenticationRef:
      name: keda-trigger-auth-mysql-secret
"""


async def test_keda_docs_example_with_a_password_from_the_secret(
    mariadb_server: SQLServer, table: str, user: tuple[str, str]
) -> None:
    name, password = user
    await insert(mariadb_server, table, *["running"] * 20, *["queued"] * 13, "success")
    query = f"SELECT CEIL(COUNT(*) / 6) FROM {table} WHERE state='running' OR state='queued'"
    dsn = f"{name}:{password}@tcp(127.0.0.1:{mariadb_server.port})/test"
    loaded = load_manifests(keda_example(dsn, query))
    (c,) = loaded.trigger_contexts(loaded.scaled_object())
    assert isinstance(c.auth["connectionString"], Secret)
    scaler = create_scaler(c)
    assert isinstance(scaler, MySQLScaler)
    try:
        report = await scaler.get_metrics()
    finally:
        await scaler.aclose()
    # 33 / 6 -> 6, above the activation value 5.4
    assert (report.value_of("s0-mysql-test"), report.is_active) == (6.0, True)


async def test_refused_login_never_shows_the_password(
    mariadb_server: SQLServer, user: tuple[str, str]
) -> None:
    name, password = user
    wrong = password + "-wrong"
    loaded = load_manifests(
        keda_example(f"{name}:{wrong}@tcp(127.0.0.1:{mariadb_server.port})/test", "SELECT 1")
    )
    (c,) = loaded.trigger_contexts(loaded.scaled_object())
    with pytest.raises(ScalerError, match="login refused") as info:
        await poll(c)
    assert info.value.transient is False
    assert wrong not in str(info.value)


async def test_password_from_trigger_authentication_with_parts(
    mariadb_server: SQLServer, user: tuple[str, str]
) -> None:
    name, password = user
    c = ctx(
        {
            **PARTS,
            "port": str(mariadb_server.port),
            "username": name,
            "query": "SELECT 9",
            "queryValue": "1",
        },
        auth={"password": Secret(password)},
    )
    assert (await poll(c)).value_of("s0-mysql-test") == 9.0
    without = ctx({**PARTS, "username": name, "query": "SELECT 9", "queryValue": "1"})
    with pytest.raises(ScalerError, match="login refused"):
        await poll(without)


async def test_scalers_with_the_same_settings_share_one_pool(mariadb_server: SQLServer) -> None:
    first = MySQLScaler.from_context(server_ctx(mariadb_server, "SELECT 1"))
    second = MySQLScaler.from_context(server_ctx(mariadb_server, "SELECT 2"))
    other = MySQLScaler.from_context(server_ctx(mariadb_server, "SELECT 3"), timeout=3)
    assert first._pool_key == second._pool_key != other._pool_key
    assert (await first.query_value(), await second.query_value()) == (1.0, 2.0)
    assert first._pool is second._pool
    assert await other.query_value() == 3.0
    assert other._pool is not first._pool
    key = first._pool_key
    assert mysql_module._POOLS.refcount(key) == 2
    await first.aclose()
    await first.aclose()  # twice is fine
    assert mysql_module._POOLS.refcount(key) == 1
    assert await second.query_value() == 2.0
    pool = second._pool
    await second.aclose()
    assert mysql_module._POOLS.refcount(key) == 0
    assert pool.closed
    with pytest.raises(ScalerError, match="closed"):
        await second.get_metrics()
    await other.aclose()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "scalers"


async def test_docs_example(mariadb_server: SQLServer, table: str, user: tuple[str, str]) -> None:
    """docs/scalers/mysql.md's manifest, its Secret pointed at the test server."""
    (yaml_text,) = re.findall(r"```yaml\n(.*?)```", (DOCS / "mysql.md").read_text(), re.DOTALL)
    await insert(mariadb_server, table, *["queued"] * 7)
    name, password = user
    dsn = f"{name}:{password}@tcp(127.0.0.1:{mariadb_server.port})/test"
    loaded = load_manifests(yaml_text.replace("task_instance", table))
    (c,) = loaded.trigger_contexts(
        loaded.scaled_object(), secrets={"mysql-secrets": {"mysql_conn_str": Secret(dsn)}}
    )
    scaler = create_scaler(c)
    assert isinstance(scaler, MySQLScaler)
    try:
        report = await scaler.get_metrics()
    finally:
        await scaler.aclose()
    # 7 / 6 -> 2, not above the activation value 5.4
    assert (report.value_of("s0-mysql-test"), report.is_active) == (2.0, False)
