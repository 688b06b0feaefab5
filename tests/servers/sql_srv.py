"""PostgreSQL and MariaDB for the SQL scaler tests.

The machine's servers (PostgreSQL on 5432 with trust authentication, MariaDB on 3306 with
a password-less root, both with a database ``test``) serve most tests. Password checks
need a server that checks passwords: :func:`scram_postgres` starts a private PostgreSQL
cluster with SCRAM authentication; MariaDB checks the passwords of the users a test
creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from servers._proc import Proc, ensure_apt, free_port, port_open, run, wait_until

PG_PASSWORD = "pg-Secret-9f3a"


@attrs.frozen
class SQLServer:
    host: str
    port: int
    user: str
    database: str
    password: str = ""
    proc: Proc | None = None


def _require(port: int, what: str) -> None:
    if not port_open(port):
        pytest.fail(f"{what} does not answer on 127.0.0.1:{port}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> SQLServer:
    """The machine's PostgreSQL (trust authentication)."""
    _require(5432, "PostgreSQL")
    return SQLServer("127.0.0.1", 5432, "postgres", "test")


@pytest.fixture(scope="session")
def mariadb_server() -> SQLServer:
    """The machine's MariaDB (root without a password)."""
    _require(3306, "MariaDB")
    return SQLServer("127.0.0.1", 3306, "root", "test")


def _pg_bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        ensure_apt("pg_ctlcluster", "postgresql")
        found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"no PostgreSQL {name} binary", pytrace=False)
    return found[-1]


@pytest.fixture(scope="session")
def scram_postgres() -> Iterator[SQLServer]:
    """A private PostgreSQL that checks passwords (SCRAM); user ``postgres``, ``PG_PASSWORD``."""
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    with tempfile.TemporaryDirectory(prefix="es-pg-") as tmp_name:
        tmp = Path(tmp_name)
        pwfile = tmp / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if as_root:
            for path in (tmp, pwfile):
                shutil.chown(path, "postgres", "postgres")
        data = tmp / "data"
        run(
            [
                *prefix,
                str(_pg_bin("initdb")),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
            ],
            timeout=120,
        )
        port = free_port()
        proc = Proc(
            [
                *prefix,
                str(_pg_bin("postgres")),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(tmp),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            log=tmp / "postgres.log",
        )
        try:
            isready = str(_pg_bin("pg_isready"))

            def ready() -> bool:
                # The port opens before the server accepts logins ("starting up").
                check = [isready, "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
                return subprocess.run(check, timeout=5, check=False).returncode == 0

            wait_until(ready, timeout=30, what="private PostgreSQL", log=proc.log)
            yield SQLServer("127.0.0.1", port, "postgres", "postgres", PG_PASSWORD, proc)
        finally:
            proc.stop()
