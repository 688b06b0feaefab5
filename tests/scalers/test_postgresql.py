"""The ``postgresql`` scaler: KEDA's parameters, and real queries against PostgreSQL."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.manifests import load_manifests
from eventscale.metrics import MetricType, ScalerReport
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext, create_scaler
from eventscale.scalers import postgresql as pg_module
from eventscale.scalers.postgresql import (
    PostgreSQLMetadata,
    PostgreSQLScaler,
    parse_keyword_connection,
)
from servers._proc import free_port, unique_name
from servers.sql_srv import PG_PASSWORD, SQLServer
from servers.sql_srv import postgres_server as postgres_server  # fixture
from servers.sql_srv import scram_postgres as scram_postgres  # fixture

pytestmark = pytest.mark.anyio

PARTS = {
    "host": "127.0.0.1",
    "port": "5432",
    "userName": "postgres",
    "dbName": "test",
    "sslmode": "disable",
}


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
        trigger_type="postgresql",
        **kw,
    )


# ---------------------------------------------------------------------------- parameters


def test_parts_defaults_and_metric_name() -> None:
    m = PostgreSQLMetadata.from_context(
        ctx({**PARTS, "query": "SELECT 1", "targetQueryValue": "1.5"}, index=3)
    )
    assert m.metric_name == "s3-postgresql"
    assert (m.host, m.port, m.user_name, m.db_name, m.sslmode) == (
        "127.0.0.1",
        5432,
        "postgres",
        "test",
        "disable",
    )
    assert (m.target_query_value, m.activation_target_query_value) == (1.5, 0.0)
    assert m.connection is None
    assert m.password is None


def test_connection_comes_from_auth_then_env_never_metadata() -> None:
    base = {"query": "SELECT 1", "targetQueryValue": "1"}
    from_auth = PostgreSQLMetadata.from_context(
        ctx(
            {**base, "connectionFromEnv": "PG"}, auth={"connection": "host=a"}, env={"PG": "host=b"}
        )
    )
    assert from_auth.connection == Secret("host=a")
    assert from_auth.connection_path == "authenticationRef.connection"
    from_env = PostgreSQLMetadata.from_context(
        ctx({**base, "connectionFromEnv": "PG"}, env={"PG": "host=b"})
    )
    assert from_env.connection == Secret("host=b")
    assert from_env.connection_path == "metadata.connectionFromEnv"
    # KEDA does not read `connection` from the trigger metadata: the parts are required.
    with pytest.raises(ConfigError, match="no host given"):
        PostgreSQLMetadata.from_context(ctx({**base, "connection": "host=c"}))


def test_parts_come_from_auth_before_metadata_and_password_from_auth_or_env() -> None:
    m = PostgreSQLMetadata.from_context(
        ctx(
            {**PARTS, "query": "SELECT 1", "targetQueryValue": "1", "passwordFromEnv": "PW"},
            auth={"host": "db.example", "userName": Secret("svc")},
            env={"PW": "from-env"},
        )
    )
    assert (m.host, m.user_name) == ("db.example", "svc")
    assert m.password == Secret("from-env")
    m2 = PostgreSQLMetadata.from_context(
        ctx(
            {**PARTS, "query": "SELECT 1", "targetQueryValue": "1", "passwordFromEnv": "PW"},
            auth={"password": Secret("from-auth")},
            env={"PW": "from-env"},
        )
    )
    assert m2.password == Secret("from-auth")


def test_every_error_is_collected_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        PostgreSQLMetadata.from_context(ctx({"sslmode": "sometimes", "port": "99999"}))
    paths = info.value.all_paths()
    for name in ("query", "targetQueryValue", "host", "userName", "dbName", "sslmode", "port"):
        assert f"metadata.{name}" in paths, (name, paths)
    text = str(info.value)
    assert "no targetQueryValue given" in text
    assert "sometimes" in text


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"targetQueryValue": "0"}, "no targetQueryValue given"),
        ({"targetQueryValue": "abc"}, "targetQueryValue"),
        ({"activationTargetQueryValue": "x"}, "activationTargetQueryValue"),
        ({"port": "54x"}, "port"),
        ({"host": ""}, "no host given"),
    ],
)
def test_invalid_values(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PostgreSQLMetadata.from_context(
            ctx({**PARTS, "query": "SELECT 1", "targetQueryValue": "1", **metadata})
        )


def test_keyword_connection_strings_follow_libpq_quoting() -> None:
    words = parse_keyword_connection(
        r"host=db port = 5433 user='a b' password='it\'s \\ secret' dbname=x\ y"
    )
    assert words == {
        "host": "db",
        "port": "5433",
        "user": "a b",
        "password": "it's \\ secret",
        "dbname": "x y",
    }
    with pytest.raises(ValueError, match="unsupported connection keyword 'colour'"):
        parse_keyword_connection("host=db colour=red")
    with pytest.raises(ValueError, match="unterminated"):
        parse_keyword_connection("password='open")


def test_bad_connection_string_is_a_config_error_without_the_secret() -> None:
    with pytest.raises(ConfigError) as info:
        PostgreSQLMetadata.from_context(
            ctx(
                {"query": "SELECT 1", "targetQueryValue": "1"},
                auth={"connection": Secret("host=db password='hunter22")},
            )
        )
    assert "hunter22" not in str(info.value)
    assert info.value.all_paths() == ["authenticationRef.connection"]


def test_addresses_never_show_the_password() -> None:
    uri = "postgresql://u:hunter22@db.example:6543/orders?sslmode=require"
    m = PostgreSQLMetadata.from_context(
        ctx({"query": "SELECT 1", "targetQueryValue": "1"}, auth={"connection": uri})
    )
    scaler = PostgreSQLScaler(m)
    assert scaler.address == "db.example:6543/orders"
    assert m.connect_arguments() == {"dsn": uri}
    assert "hunter22" not in repr(scaler)
    assert "hunter22" not in repr(m)
    assert "hunter22" not in repr(scaler._pool_key)


def test_registry_and_metric_spec() -> None:
    scaler = create_scaler(
        ctx(
            {
                **PARTS,
                "query": "SELECT 1",
                "targetQueryValue": "2.5",
                "activationTargetQueryValue": "4",
            },
            metric_type=MetricType.VALUE,
        )
    )
    assert isinstance(scaler, PostgreSQLScaler)
    (spec,) = scaler.metric_specs()
    assert (spec.name, spec.target, spec.activation_target, spec.metric_type) == (
        "s0-postgresql",
        2.5,
        4.0,
        MetricType.VALUE,
    )


# ---------------------------------------------------------------------------- server


@pytest.fixture
async def table(postgres_server: SQLServer) -> AsyncIterator[str]:
    """A fresh table ``jobs(state text)`` in a schema of its own."""
    schema = unique_name("es").replace("-", "_")
    conn = await asyncpg.connect(
        host=postgres_server.host,
        port=postgres_server.port,
        user=postgres_server.user,
        database=postgres_server.database,
    )
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.jobs (state text)")
        yield f"{schema}.jobs"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def insert(server: SQLServer, table: str, *states: str) -> None:
    conn = await asyncpg.connect(
        host=server.host, port=server.port, user=server.user, database=server.database
    )
    try:
        await conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(s,) for s in states])
    finally:
        await conn.close()


def server_ctx(server: SQLServer, query: str, **metadata: str) -> TriggerContext:
    return ctx(
        {
            **PARTS,
            "host": server.host,
            "port": str(server.port),
            "userName": server.user,
            "dbName": server.database,
            "query": query,
            "targetQueryValue": "2",
            **metadata,
        }
    )


async def read(server: SQLServer, query: str, **metadata: str) -> tuple[float, bool]:
    async with PostgreSQLScaler.from_context(server_ctx(server, query, **metadata)) as scaler:
        report = await scaler.get_metrics()
        return report.value_of("s0-postgresql"), report.is_active


async def poll(c: TriggerContext) -> ScalerReport:
    """One poll through the registry, as the runtime does it."""
    scaler = create_scaler(c)
    assert isinstance(scaler, PostgreSQLScaler)
    try:
        return await scaler.get_metrics()
    finally:
        await scaler.aclose()


async def test_values_follow_the_table_and_activation_is_strict(
    postgres_server: SQLServer, table: str
) -> None:
    count = f"SELECT count(*) FROM {table} WHERE state = 'queued'"
    assert await read(postgres_server, count) == (0.0, False)
    await insert(postgres_server, table, "queued", "queued", "queued", "done")
    assert await read(postgres_server, count) == (3.0, True)
    assert await read(postgres_server, count, activationTargetQueryValue="3") == (3.0, False)
    assert await read(postgres_server, count, activationTargetQueryValue="2.9") == (3.0, True)
    ratio = f"SELECT ceil(count(*)::decimal / 2) FROM {table}"
    assert await read(postgres_server, ratio) == (2.0, True)
    assert await read(postgres_server, "SELECT 0.25::float8") == (0.25, True)
    assert await read(postgres_server, "SELECT '7'::text") == (7.0, True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT 1 WHERE false", "returned no row"),
        ("SELECT * FROM generate_series(1, 3)", "returned 3 rows"),
        ("SELECT 1, 2", "returned 2 columns"),
        ("SELECT NULL::int", "returned NULL"),
        ("SELECT 'many'::text", "returned a str, not a number"),
        ("SELECT true", "returned a bool, not a number"),
        ("SELECT 'NaN'::float8", "not a finite number"),
        ("SELECT 'Infinity'::float8", "not a finite number"),
    ],
)
async def test_a_result_that_is_not_one_number_is_an_error(
    postgres_server: SQLServer, query: str, message: str
) -> None:
    with pytest.raises(ScalerError, match=message) as info:
        await read(postgres_server, query)
    assert info.value.transient is False
    assert info.value.trigger == "postgresql[0]"


async def test_sql_errors_are_permanent_scaler_errors(postgres_server: SQLServer) -> None:
    with pytest.raises(ScalerError, match=r"does not exist \(SQLSTATE 42P01\)") as info:
        await read(postgres_server, "SELECT count(*) FROM no_such_table_here")
    assert info.value.transient is False


async def test_a_slow_query_is_stopped_by_the_server_within_the_bound(
    postgres_server: SQLServer,
) -> None:
    scaler = PostgreSQLScaler.from_context(
        server_ctx(postgres_server, "SELECT 1 FROM pg_sleep(5)"), timeout=1
    )
    started = time.monotonic()
    with pytest.raises(ScalerTimeout, match="canceled after 1s") as info:
        await scaler.get_metrics()
    assert time.monotonic() - started < 2.5
    assert info.value.transient is True
    await scaler.aclose()
    fast = PostgreSQLScaler.from_context(server_ctx(postgres_server, "SELECT 4"), timeout=1)
    assert (await fast.get_metrics()).value_of("s0-postgresql") == 4.0
    await fast.aclose()


async def test_the_client_deadline_holds_when_the_server_does_not_answer() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        c = ctx({**PARTS, "port": str(port), "query": "SELECT 1", "targetQueryValue": "1"})
        started = time.monotonic()
        async with PostgreSQLScaler.from_context(c, timeout=0.5) as scaler:
            with pytest.raises(ScalerError) as info:
                await scaler.get_metrics()
        assert time.monotonic() - started < 3
        assert info.value.transient is True


async def test_unreachable_server_is_transient() -> None:
    c = ctx({**PARTS, "port": str(free_port()), "query": "SELECT 1", "targetQueryValue": "1"})
    async with PostgreSQLScaler.from_context(c, timeout=2) as scaler:
        with pytest.raises(ScalerError, match="cannot connect") as info:
            await scaler.get_metrics()
    assert info.value.transient is True


async def test_password_from_trigger_authentication_and_refused_login(
    scram_postgres: SQLServer,
) -> None:
    def manifests(password: str) -> str:
        encoded = base64.b64encode(password.encode()).decode()
        return f"""
apiVersion: v1
kind: Secret
metadata:
  name: pg-secret
data:
  password: {encoded}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: pg-auth
spec:
  secretTargetRef:
  - parameter: password
    name: pg-secret
    key: password
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef:
    name: worker
  triggers:
  - type: postgresql
    authenticationRef:
      name: pg-auth
    metadata:
      host: 127.0.0.1
      port: "{scram_postgres.port}"
      userName: postgres
      dbName: postgres
      sslmode: disable
      query: "SELECT 6"
      targetQueryValue: "2"
"""

    loaded = load_manifests(manifests(PG_PASSWORD))
    (good,) = loaded.trigger_contexts(loaded.scaled_object())
    assert isinstance(good.auth["password"], Secret)
    assert (await poll(good)).value_of("s0-postgresql") == 6.0

    wrong = "not-the-password-42"
    loaded = load_manifests(manifests(wrong))
    (bad,) = loaded.trigger_contexts(loaded.scaled_object())
    with pytest.raises(ScalerError, match="login refused") as info:
        await poll(bad)
    assert info.value.transient is False
    assert wrong not in str(info.value)


async def test_connection_string_with_the_password_is_redacted_on_refusal(
    scram_postgres: SQLServer,
) -> None:
    wrong = "wrong-pass-123456"
    dsn = f"postgresql://postgres:{wrong}@127.0.0.1:{scram_postgres.port}/postgres?sslmode=disable"
    c = ctx(
        {"query": "SELECT 1", "targetQueryValue": "1", "connectionFromEnv": "PG"}, env={"PG": dsn}
    )
    async with PostgreSQLScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError, match="login refused") as info:
            await scaler.get_metrics()
    assert wrong not in str(info.value)
    good = f"host=127.0.0.1 port={scram_postgres.port} user=postgres dbname=postgres password='{PG_PASSWORD}' sslmode=disable"
    c = ctx(
        {"query": "SELECT 8", "targetQueryValue": "1", "connectionFromEnv": "PG"}, env={"PG": good}
    )
    async with PostgreSQLScaler.from_context(c) as scaler:
        assert (await scaler.get_metrics()).value_of("s0-postgresql") == 8.0


async def test_unknown_role_is_a_refused_login(postgres_server: SQLServer) -> None:
    c = server_ctx(postgres_server, "SELECT 1", userName="no_such_role_es")
    async with PostgreSQLScaler.from_context(c) as scaler:
        with pytest.raises(ScalerError, match="login refused") as info:
            await scaler.get_metrics()
    assert info.value.transient is False


async def test_scalers_with_the_same_settings_share_one_pool(postgres_server: SQLServer) -> None:
    first = PostgreSQLScaler.from_context(server_ctx(postgres_server, "SELECT 1"))
    second = PostgreSQLScaler.from_context(server_ctx(postgres_server, "SELECT 2"))
    other = PostgreSQLScaler.from_context(server_ctx(postgres_server, "SELECT 3"), timeout=3)
    assert first._pool_key == second._pool_key != other._pool_key
    assert (await first.query_value(), await second.query_value()) == (1.0, 2.0)
    assert first._pool is second._pool
    assert await other.query_value() == 3.0
    assert other._pool is not first._pool
    key = first._pool_key
    assert pg_module._POOLS.refcount(key) == 2
    await first.aclose()
    await first.aclose()  # twice is fine
    assert pg_module._POOLS.refcount(key) == 1
    assert await second.query_value() == 2.0
    pool = second._pool
    assert pool is not None
    await second.aclose()
    assert pg_module._POOLS.refcount(key) == 0
    assert pool.is_closing()
    with pytest.raises(ScalerError, match="closed"):
        await second.get_metrics()
    await other.aclose()


async def test_keda_docs_connection_string_example(postgres_server: SQLServer, table: str) -> None:
    """The first example of KEDA's postgresql page (task_instance renamed to a fresh table)."""
    await insert(postgres_server, table, *["running"] * 20, *["queued"] * 13, "success")
    yaml_text = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: airflow-worker
spec:
  scaleTargetRef:
    name: airflow-worker
  pollingInterval: 10
  cooldownPeriod: 30
  maxReplicaCount: 10
  triggers:
    - type: postgresql
      metadata:
        connectionFromEnv: AIRFLOW_CONN_AIRFLOW_DB
        query: "SELECT ceil(COUNT(*)::decimal / 16) FROM {table} WHERE state='running' OR state='queued';"
        targetQueryValue: "1.1"
        activationTargetQueryValue: "5"
"""
    loaded = load_manifests(yaml_text)
    env = {
        "AIRFLOW_CONN_AIRFLOW_DB": f"postgresql://postgres@127.0.0.1:{postgres_server.port}/test"
    }
    (c,) = loaded.trigger_contexts(loaded.scaled_object(), env=env)
    report = await poll(c)
    (spec,) = create_scaler(c).metric_specs()
    # 33 running or queued / 16 -> 3, not above the activation value 5.
    assert (report.value_of("s0-postgresql"), report.is_active, spec.target) == (3.0, False, 1.1)


async def test_keda_docs_parameters_example(postgres_server: SQLServer, table: str) -> None:
    """The second example of KEDA's postgresql page (host and table changed)."""
    await insert(postgres_server, table, *["queued"] * 40)
    yaml_text = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef:
    name: worker
  triggers:
  - type: postgresql
    metadata:
      userName: "postgres"
      passwordFromEnv: PG_PASSWORD
      host: 127.0.0.1
      port: "{postgres_server.port}"
      dbName: test
      sslmode: disable
      query: "SELECT ceil(COUNT(*)::decimal / 16) FROM {table} WHERE state='running' OR state='queued';"
      targetQueryValue: "2.2"
"""
    loaded = load_manifests(yaml_text)
    (c,) = loaded.trigger_contexts(loaded.scaled_object(), env={"PG_PASSWORD": "unused-trust"})
    report = await poll(c)
    assert (report.value_of("s0-postgresql"), report.is_active) == (3.0, True)


def test_pod_identity_is_refused() -> None:
    with pytest.raises(ConfigError, match="no pod identity") as info:
        PostgreSQLMetadata.from_context(
            ctx(
                {**PARTS, "query": "SELECT 1", "targetQueryValue": "1"},
                auth={"podIdentity": "azure-workload"},
            )
        )
    assert info.value.all_paths() == ["authenticationRef.podIdentity"]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "scalers"


def docs_yaml(page: str) -> str:
    found = re.findall(r"```yaml\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)
    assert len(found) == 1, f"{page} should have one yaml example"
    return str(found[0])


async def test_docs_example(scram_postgres: SQLServer) -> None:
    """docs/scalers/postgresql.md's manifest, host and Secret pointed at the test server."""
    conn = await asyncpg.connect(
        host=scram_postgres.host,
        port=scram_postgres.port,
        user=scram_postgres.user,
        password=scram_postgres.password,
        database="postgres",
    )
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS task_instance (state text)")
        await conn.execute("TRUNCATE task_instance")
        await conn.executemany(
            "INSERT INTO task_instance VALUES ($1)", [("queued",)] * 17 + [("done",)]
        )
        yaml_text = (
            docs_yaml("postgresql.md")
            .replace("postgres.db.svc.cluster.local", "127.0.0.1")
            .replace('port: "5432"', f'port: "{scram_postgres.port}"')
            .replace("userName: keda", "userName: postgres")
            .replace("dbName: airflow", "dbName: postgres")
        )
        loaded = load_manifests(yaml_text)
        (c,) = loaded.trigger_contexts(
            loaded.scaled_object(), secrets={"pg-secret": {"password": Secret(PG_PASSWORD)}}
        )
        report = await poll(c)
        assert (report.value_of("s0-postgresql"), report.is_active) == (2.0, True)
    finally:
        await conn.execute("DROP TABLE task_instance")
        await conn.close()
