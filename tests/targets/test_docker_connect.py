"""Finding and reaching the Docker daemon as the ``docker`` CLI does.

A private dockerd listens on its unix socket and on ``tcp://127.0.0.1:PORT`` with
``--tlsverify`` (certificates from trustme). The same settings are given to eventscale
and, where it is installed, to the real ``docker`` client; both must reach the same
daemon (same ``DockerRootDir``, unique to this private daemon).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest
import trustme

from eventscale._docker_api import DockerAPI, resolve_endpoint
from eventscale.errors import ConfigError, TargetError
from eventscale.targets.docker import DockerTarget
from servers._proc import free_port, unique_name
from servers.docker_srv import DockerDaemon, private_dockerd

DOCKER_ENV = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
)


@attrs.frozen
class TLSDaemon:
    daemon: DockerDaemon
    tcp: str  # tcp://127.0.0.1:PORT
    certs: Path  # ca.pem, cert.pem, key.pem: a client of the daemon's CA
    other_ca: Path  # ca.pem of an unrelated CA plus the same client cert/key
    root_dir: str  # DockerRootDir as the daemon reports it


def _write_client(folder: Path, ca: trustme.CA, client: trustme.LeafCert) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    client.private_key_pem.write_to_path(str(folder / "key.pem"))
    return folder


@pytest.fixture(scope="module")
def tls_dockerd() -> Iterator[TLSDaemon]:
    tmp = Path(tempfile.mkdtemp(prefix="es-dktls-"))
    try:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("eventscale-client")
        server.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
        server.private_key_pem.write_to_path(str(tmp / "server-key.pem"))
        certs = _write_client(tmp / "client", ca, client)
        other_ca = _write_client(tmp / "other", trustme.CA(), client)
        port = free_port()
        args = (
            "--tlsverify",
            "--tlscacert",
            str(certs / "ca.pem"),
            "--tlscert",
            str(tmp / "server.pem"),
            "--tlskey",
            str(tmp / "server-key.pem"),
            "--host",
            f"tcp://127.0.0.1:{port}",
        )
        with private_dockerd(args) as daemon:
            status, info = daemon.api("GET", "/info")
            assert status == 200, info
            yield TLSDaemon(
                daemon, f"tcp://127.0.0.1:{port}", certs, other_ca, info["DockerRootDir"]
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def docker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DOCKER_* settings from the machine; DOCKER_CONFIG is an empty folder."""
    for name in DOCKER_ENV:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


def _make_context(
    config: Path, name: str, host: str, certs: Path | None, *, skip_verify: bool = False
) -> None:
    """Write a context as ``docker context create`` stores it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if certs is not None:
        tls = config / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            shutil.copy(certs / file, tls / file)


async def _root_dir(api: DockerAPI) -> str:
    try:
        _, info = await api.request("GET", "/info")
    finally:
        await api.aclose()
    return str(info["DockerRootDir"])


def _api(url: str | None = None, context: str | None = None) -> DockerAPI:
    return DockerAPI(url, owner="t", timeout=20, what="tests", context=context)


@pytest.mark.anyio
async def test_docker_host_with_tls_verify(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", tls_dockerd.tcp)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tls_dockerd.certs))
    api = _api()
    assert api.endpoint.verify
    assert api.endpoint.source == "DOCKER_HOST"
    assert await _root_dir(api) == tls_dockerd.root_dir
    # The targets build the same client from the same environment.
    async with DockerTarget(unique_name("dkc"), url=None) as target:
        assert await target.get_replicas() == 0


@pytest.mark.anyio
async def test_verify_checks_the_daemon_certificate(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", tls_dockerd.tcp)
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tls_dockerd.other_ca))
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(TargetError, match=r"(?i)certificate verify failed"):
        await _root_dir(_api())
    # DOCKER_TLS without DOCKER_TLS_VERIFY: TLS with the client cert, no server check.
    monkeypatch.delenv("DOCKER_TLS_VERIFY")
    monkeypatch.setenv("DOCKER_TLS", "1")
    api = _api()
    assert api.endpoint.tls
    assert not api.endpoint.verify
    assert await _root_dir(api) == tls_dockerd.root_dir


@pytest.mark.anyio
async def test_plain_tcp_to_a_tls_daemon_is_an_error(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", tls_dockerd.tcp)
    api = _api()
    assert not api.endpoint.tls
    with pytest.raises(TargetError, match=r"400|TLS|HTTPS|cannot reach"):
        await _root_dir(api)


@pytest.mark.anyio
async def test_current_context_and_docker_context(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("ctx")
    _make_context(docker_env, name, tls_dockerd.tcp, tls_dockerd.certs)
    (docker_env / "config.json").write_text(json.dumps({"currentContext": name}))
    api = _api()
    assert api.endpoint.context == name
    assert api.endpoint.verify
    assert await _root_dir(api) == tls_dockerd.root_dir
    # DOCKER_CONTEXT overrides currentContext; an unknown one is named in the error.
    monkeypatch.setenv("DOCKER_CONTEXT", "es-missing")
    with pytest.raises(ConfigError, match="'es-missing' \\(from DOCKER_CONTEXT\\) does not exist"):
        _api()
    # A context without TLS material speaks plain HTTP (rejected by this daemon).
    plain = unique_name("ctx")
    _make_context(docker_env, plain, tls_dockerd.tcp, None)
    monkeypatch.setenv("DOCKER_CONTEXT", plain)
    assert not _api().endpoint.tls
    # SkipTLSVerify: TLS with the context's client cert, server not checked.
    skip = unique_name("ctx")
    _make_context(docker_env, skip, tls_dockerd.tcp, tls_dockerd.other_ca, skip_verify=True)
    monkeypatch.setenv("DOCKER_CONTEXT", skip)
    api = _api()
    assert api.endpoint.tls
    assert not api.endpoint.verify
    assert await _root_dir(api) == tls_dockerd.root_dir


@pytest.mark.anyio
async def test_docker_host_wins_over_the_context(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = unique_name("ctx")
    _make_context(docker_env, name, tls_dockerd.tcp, tls_dockerd.certs)
    monkeypatch.setenv("DOCKER_CONTEXT", name)
    missing = tmp_path / "nowhere.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    api = _api()
    assert api.endpoint.source == "DOCKER_HOST"
    with pytest.raises(TargetError, match=str(missing)):
        await _root_dir(api)
    # An explicit context (docker --context) wins over DOCKER_HOST.
    assert await _root_dir(_api(context=name)) == tls_dockerd.root_dir
    # An explicit url (docker -H) wins over both.
    assert _api(url=tls_dockerd.daemon.url, context=name).url == tls_dockerd.daemon.url


def test_bad_certificates_name_the_file_not_the_key(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tls_dockerd.certs, bad)
    key_text = (bad / "key.pem").read_text()
    other = trustme.CA().issue_cert("someone-else")
    other.private_key_pem.write_to_path(str(bad / "key.pem"))  # does not match cert.pem
    monkeypatch.setenv("DOCKER_HOST", tls_dockerd.tcp)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(bad))
    with pytest.raises(ConfigError) as caught:
        _api()
    message = str(caught.value)
    assert str(bad / "key.pem") in message
    assert "KEY_VALUES_MISMATCH" in message
    assert caught.value.path == "DOCKER_CERT_PATH"
    secret_line = other.private_key_pem.bytes().decode().splitlines()[1]
    assert secret_line not in message
    assert key_text.splitlines()[1] not in message
    (bad / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"bad CA certificate .*ca\.pem"):
        _api()
    (bad / "key.pem").unlink()
    shutil.copy(tls_dockerd.certs / "ca.pem", bad / "ca.pem")
    with pytest.raises(ConfigError, match=r"key\.pem missing"):
        _api()


def test_hosts_and_ports(docker_env: Path) -> None:
    env = {"DOCKER_CONFIG": str(docker_env)}
    assert resolve_endpoint(env=env).host == "unix:///var/run/docker.sock"
    assert (
        resolve_endpoint(env={**env, "DOCKER_HOST": "tcp://d.example"}).host
        == "tcp://d.example:2375"
    )
    tls = {**env, "DOCKER_HOST": "tcp://d.example", "DOCKER_TLS_VERIFY": "1"}
    assert resolve_endpoint(env=tls).host == "tcp://d.example:2376"
    # ssh:// is kept as given (test_docker_ssh.py reaches a daemon through it); TLS
    # variables do not apply to it.
    assert resolve_endpoint(env={**tls, "DOCKER_HOST": "ssh://me@d.example"}).tls is False
    with pytest.raises(ConfigError, match="unsupported Docker host"):
        resolve_endpoint("npipe:////./pipe/docker_engine", env=env)
    (docker_env / "config.json").write_text("{" * 10)
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_endpoint(env=env)


def _docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        pytest.skip("the docker client is not installed")
    return found


async def _cli(args: list[str], env: dict[str, str]) -> str:
    with anyio.fail_after(60):
        out = await anyio.run_process([_docker_cli(), *args], env=env, check=False)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode().strip()


async def _cli_root_dir(args: list[str], env: dict[str, str]) -> str:
    return await _cli([*args, "info", "--format", "{{.DockerRootDir}}"], env)


@pytest.mark.anyio
async def test_the_docker_cli_reads_the_same_settings(
    tls_dockerd: TLSDaemon, docker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_cli()
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(docker_env.parent),
        "DOCKER_CONFIG": str(docker_env),
    }
    # A context written by `docker context create`, read by eventscale.
    name = unique_name("ctx")
    certs = tls_dockerd.certs
    docker_arg = f"host={tls_dockerd.tcp},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"
    await _cli(["context", "create", name, "--docker", docker_arg], base)
    assert await _cli_root_dir(["--context", name], base) == tls_dockerd.root_dir
    monkeypatch.setenv("DOCKER_CONTEXT", name)
    assert await _root_dir(_api()) == tls_dockerd.root_dir
    # The environment route, and DOCKER_HOST over DOCKER_CONTEXT, as the CLI does.
    tls_env = {
        "DOCKER_HOST": tls_dockerd.tcp,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
    }
    assert (
        await _cli_root_dir([], {**base, **tls_env, "DOCKER_CONTEXT": "es-missing"})
        == tls_dockerd.root_dir
    )
    for key, value in tls_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER_CONTEXT", "es-missing")
    assert await _root_dir(_api()) == tls_dockerd.root_dir
    # currentContext set by `docker context use`.
    await _cli(["context", "use", name], base)
    for key in (*tls_env, "DOCKER_CONTEXT"):
        monkeypatch.delenv(key)
    assert await _cli_root_dir([], base) == tls_dockerd.root_dir
    api = _api()
    assert api.endpoint.context == name
    assert await _root_dir(api) == tls_dockerd.root_dir


@pytest.mark.anyio
async def test_the_client_key_never_reaches_the_logs(
    tls_dockerd: TLSDaemon,
    docker_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_lines = (tls_dockerd.certs / "key.pem").read_text().splitlines()[1:-1]
    name = unique_name("ctx")
    _make_context(docker_env, name, tls_dockerd.tcp, tls_dockerd.certs)
    monkeypatch.setenv("DOCKER_CONTEXT", name)
    async with DockerTarget(unique_name("dkc")) as target:
        assert await target.get_replicas() == 0
        assert target.url == tls_dockerd.tcp
        assert all(line not in repr(target) for line in key_lines)
    monkeypatch.setenv("DOCKER_CONTEXT", "es-missing")
    with pytest.raises(ConfigError) as caught:
        DockerTarget(unique_name("dkc"))
    # Nothing is logged on these paths today; should that change, not the key.
    assert all(line not in caplog.text + str(caught.value) for line in key_lines)
