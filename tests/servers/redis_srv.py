"""Redis: the machine's server on 6379, or a private one; plus private servers for fault tests."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from servers._proc import Proc, ensure_apt, free_port, port_open, run, wait_until


@attrs.frozen
class RedisServer:
    host: str
    port: int
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def start_private_redis(tmp: Path, *extra: str, port: int | None = None) -> RedisServer:
    """Start a ``redis-server`` on a free (or given) port; the caller stops ``.proc``."""
    binary = ensure_apt("redis-server", "redis-server")
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    proc = Proc(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
            *extra,
        ],
        log=tmp / f"redis-{port}.log",
    )
    cli = ensure_apt("redis-cli", "redis-tools")

    def pong() -> bool:
        # not run(): it fails the test on a non-zero exit, and a starting server is no failure
        out = subprocess.run(
            [cli, "-p", str(port), "ping"], capture_output=True, text=True, timeout=5, check=False
        )
        if not proc.alive:
            pytest.fail(f"redis-server on port {port} exited:\n{proc.log.read_text()[-2000:]}")
        reply = out.stdout + out.stderr
        return "PONG" in reply or "NOAUTH" in reply

    try:
        wait_until(pong, timeout=15, what=f"redis-server on port {port}", log=proc.log)
    except BaseException:
        proc.stop()
        raise
    return RedisServer("127.0.0.1", port, proc)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A running Redis: the machine's on 127.0.0.1:6379 if it is up, else a private one."""
    if port_open(6379):
        yield RedisServer("127.0.0.1", 6379)
        return
    with tempfile.TemporaryDirectory(prefix="es-redis-") as tmp:
        server = start_private_redis(Path(tmp))
        try:
            yield server
        finally:
            assert server.proc is not None
            server.proc.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for private Redis servers (fault tests stop and restart them freely)."""
    started: list[RedisServer] = []

    def start(*extra: str, port: int | None = None) -> RedisServer:
        server = start_private_redis(tmp_path / f"r{len(started)}", *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.proc is not None
        server.proc.stop()


# ------------------------------------------------------------------ cluster, sentinel, TLS


def _cli(cli: str, *args: str) -> str:
    """redis-cli's output, whatever its exit status (for readiness polls)."""
    out = subprocess.run([cli, *args], capture_output=True, text=True, timeout=5, check=False)
    return out.stdout + out.stderr


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; both must be < 65536."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and not port_open(port + 10000):
            return port
    pytest.fail("no free port pair for a redis cluster node", pytrace=False)


@attrs.frozen
class RedisCluster:
    """A three-master Redis cluster started from Debian's redis-server."""

    nodes: tuple[RedisServer, ...]

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three ``--cluster-enabled`` masters joined with ``redis-cli --cluster create``."""
    cli = ensure_apt("redis-cli", "redis-tools")
    base = tmp_path_factory.mktemp("redis-cluster")
    nodes: list[RedisServer] = []
    try:
        for i in range(3):
            nodes.append(
                start_private_redis(
                    base / f"n{i}",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    port=_cluster_port(),
                )
            )
        run(
            [
                cli,
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            timeout=60,
        )
        for node in nodes:

            def cluster_ok(port: int = node.port) -> bool:
                return "cluster_state:ok" in _cli(cli, "-p", str(port), "cluster", "info")

            wait_until(
                cluster_ok,
                timeout=20,
                what=f"cluster state ok on {node.address}",
            )
        yield RedisCluster(tuple(nodes))
    finally:
        for node in nodes:
            assert node.proc is not None
            node.proc.stop()


@attrs.frozen
class RedisSentinel:
    """A master and one sentinel watching it under ``master_name``."""

    master: RedisServer
    sentinel: RedisServer
    master_name: str


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A private master plus a sentinel (``redis-server sentinel.conf --sentinel``)."""
    binary = ensure_apt("redis-server", "redis-server")
    cli = ensure_apt("redis-cli", "redis-tools")
    base = tmp_path_factory.mktemp("redis-sentinel")
    master = start_private_redis(base / "master")
    port = free_port()
    conf = base / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {base}\n"
        f"sentinel monitor esmaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds esmaster 60000\n"
    )
    proc = Proc([binary, str(conf), "--sentinel"], log=base / "sentinel.log")
    try:
        wait_until(
            lambda: (
                proc.alive
                and str(master.port)
                in _cli(cli, "-p", str(port), "sentinel", "get-master-addr-by-name", "esmaster")
            ),
            timeout=15,
            what="redis sentinel",
            log=proc.log,
        )
        yield RedisSentinel(master, RedisServer("127.0.0.1", port, proc), "esmaster")
    finally:
        proc.stop()
        assert master.proc is not None
        master.proc.stop()


@attrs.frozen
class RedisTLS:
    """A TLS-only Redis with a private CA; PEM texts for the KEDA auth parameters."""

    server: RedisServer
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTLS]:
    """A Redis listening only on TLS, certificates issued by a trustme CA.

    Client certificates are optional (``tls-auth-clients optional``) so both the
    CA-only and the mutual-TLS forms can be tested.
    """
    import trustme

    base = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("eventscale-client")
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(base / "server.pem"))
    port = free_port()
    binary = ensure_apt("redis-server", "redis-server")
    proc = Proc(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
            "--tls-cert-file",
            str(base / "server.pem"),
            "--tls-key-file",
            str(base / "server.pem"),
            "--tls-ca-cert-file",
            str(base / "ca.pem"),
            "--tls-auth-clients",
            "optional",
        ],
        log=base / "redis-tls.log",
    )
    try:
        wait_until(
            lambda: proc.alive and port_open(port), timeout=15, what="TLS redis", log=proc.log
        )
        yield RedisTLS(
            RedisServer("127.0.0.1", port, proc),
            ca.cert_pem.bytes().decode(),
            "".join(blob.bytes().decode() for blob in client_cert.cert_chain_pems),
            client_cert.private_key_pem.bytes().decode(),
        )
    finally:
        proc.stop()


@attrs.frozen
class RedisSentinelAuth:
    """A password-protected master and a sentinel that needs its own password."""

    master: RedisServer
    sentinel: RedisServer
    master_name: str
    master_password: str
    sentinel_password: str


@pytest.fixture(scope="session")
def redis_sentinel_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelAuth]:
    """A master with ``requirepass`` watched by a sentinel with ``requirepass`` of its own
    (``sentinel auth-pass`` lets the sentinel talk to the master)."""
    binary = ensure_apt("redis-server", "redis-server")
    cli = ensure_apt("redis-cli", "redis-tools")
    base = tmp_path_factory.mktemp("redis-sentinel-auth")
    master_password, sentinel_password = (
        "master-" + os.urandom(6).hex(),
        "watch-" + os.urandom(6).hex(),
    )
    master = start_private_redis(base / "master", "--requirepass", master_password)
    port = free_port()
    conf = base / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {base}\nrequirepass {sentinel_password}\n"
        f"sentinel monitor esauth 127.0.0.1 {master.port} 1\n"
        f"sentinel auth-pass esauth {master_password}\n"
        "sentinel down-after-milliseconds esauth 60000\n"
    )
    proc = Proc([binary, str(conf), "--sentinel"], log=base / "sentinel.log")
    ask = (cli, "-p", str(port), "--no-auth-warning", "-a", sentinel_password)
    try:
        wait_until(
            lambda: (
                proc.alive
                and str(master.port) in _cli(*ask, "sentinel", "get-master-addr-by-name", "esauth")
            ),
            timeout=15,
            what="redis sentinel with passwords",
            log=proc.log,
        )
        yield RedisSentinelAuth(
            master,
            RedisServer("127.0.0.1", port, proc),
            "esauth",
            master_password,
            sentinel_password,
        )
    finally:
        proc.stop()
        assert master.proc is not None
        master.proc.stop()
