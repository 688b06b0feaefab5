"""``ssh://`` Docker hosts: the docker CLI's way, against a real sshd and dockerd.

The session's private dockerd sits behind a private sshd (Debian's openssh-server on a
free port, its own host key and authorized key; servers/docker_srv.py). Every connection
eventscale makes runs the real ssh client, ``ssh ... -- HOST docker system dial-stdio``,
and the remote side is the real docker CLI's ``dial-stdio``. The client's settings (host
alias, port, user, key, known_hosts) live in an ssh config file that the ssh binary reads
(a wrapper on ``PATH`` adds ``-F``), so what is proven is that the ssh binary's own
configuration is honoured. The real ``docker -H ssh://...`` client reaches the same
daemon with the same settings.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from eventscale._docker_api import DockerAPI, resolve_endpoint
from eventscale.errors import ConfigError, TargetError
from eventscale.jobs import JOB_LABEL, DockerJobTarget, JobPhase
from eventscale.targets.docker import TARGET_LABEL, ContainerTemplate, DockerTarget
from servers._proc import free_port, unique_name
from servers.docker_srv import SshDocker, private_sshd, ssh_keygen
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio

GRACEFUL = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
DOCKER_ENV = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
)


@pytest.fixture
def ssh_env(
    docker_over_ssh: SshDocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> SshDocker:
    """PATH's ``ssh`` reads the test's client config; no DOCKER_* from the machine."""
    for name in DOCKER_ENV:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", docker_over_ssh.path_env())
    return docker_over_ssh


def _api(url: str | None = None, context: str | None = None, timeout: float = 20) -> DockerAPI:
    return DockerAPI(url, owner="t", timeout=timeout, what="tests", context=context)


async def _root_dir(api: DockerAPI) -> str:
    try:
        _, info = await api.request("GET", "/info")
    finally:
        await api.aclose()
    return str(info["DockerRootDir"])


def _daemon_root(served: SshDocker) -> str:
    assert served.daemon is not None
    status, info = served.daemon.api("GET", "/info")
    assert status == 200, info
    return str(info["DockerRootDir"])


def _ssh_processes(marker: str) -> list[int]:
    """PIDs of ssh processes whose command line holds ``marker`` (this test's host)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"ssh") and marker.encode() in cmdline:
            found.append(int(entry))
    return found


async def test_a_host_alias_of_the_ssh_config(ssh_env: SshDocker) -> None:
    # The alias exists only in the ssh config: host name, port, user and key come from it.
    api = _api(f"ssh://{ssh_env.alias}")
    assert api.url == f"ssh://{ssh_env.alias}"
    assert await _root_dir(api) == _daemon_root(ssh_env)
    # Connections are kept while the session lives; aclose() ends their ssh processes.
    assert _ssh_processes(ssh_env.alias) == []


async def test_user_and_port_from_the_url(ssh_env: SshDocker) -> None:
    # ssh -l USER -p PORT 127.0.0.1: the URL's parts, the key from the config's "Host *".
    url = f"ssh://{ssh_env.user}@127.0.0.1:{ssh_env.port}"
    endpoint = resolve_endpoint(url)
    assert endpoint.host == url
    assert not endpoint.tls
    assert await _root_dir(_api(url)) == _daemon_root(ssh_env)


async def test_docker_host_and_context_with_ssh(
    ssh_env: SshDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"ssh://{ssh_env.alias}")
    assert await _root_dir(_api()) == _daemon_root(ssh_env)
    monkeypatch.delenv("DOCKER_HOST")
    # A context made by the real CLI, read by eventscale.
    name = unique_name("ctx")
    env = {**os.environ}
    await _cli(["context", "create", name, "--docker", f"host=ssh://{ssh_env.alias}"], env)
    monkeypatch.setenv("DOCKER_CONTEXT", name)
    api = _api()
    assert api.endpoint.context == name
    assert await _root_dir(api) == _daemon_root(ssh_env)


async def _cli(args: list[str], env: dict[str, str]) -> str:
    docker = shutil.which("docker", path=env.get("PATH"))
    assert docker is not None, "the docker CLI is installed on this machine kind"
    with anyio.fail_after(60):
        out = await anyio.run_process([docker, *args], env=env, check=False)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode().strip()


async def test_the_target_and_the_docker_cli_see_the_same_containers(
    ssh_env: SshDocker,
) -> None:
    assert ssh_env.daemon is not None
    name = unique_name("ssh-t")
    template = ContainerTemplate(image=ssh_env.daemon.image, command=GRACEFUL, network_mode="none")
    url = f"ssh://{ssh_env.alias}"
    env = {**os.environ}
    try:
        async with DockerTarget(name, template=template, url=url, stop_timeout=2) as target:
            await target.set_replicas(2)
            assert await target.get_replicas() == 2
            listed = await _cli(
                [
                    "-H",
                    url,
                    "ps",
                    "--filter",
                    f"label={TARGET_LABEL}={name}",
                    "--format",
                    "{{.ID}}",
                ],
                env,
            )
            assert len(listed.split()) == 2
            # The CLI's own view of the daemon over the same ssh settings.
            root = await _cli(["-H", url, "info", "--format", "{{.DockerRootDir}}"], env)
            assert root == _daemon_root(ssh_env)
            await target.set_replicas(0)
            assert await target.get_replicas() == 0
    finally:
        ssh_env.daemon.remove_all_matching(f"{TARGET_LABEL}={name}")


async def test_jobs_over_ssh(ssh_env: SshDocker) -> None:
    assert ssh_env.daemon is not None
    name = unique_name("ssh-j")
    template = ContainerTemplate(
        image=ssh_env.daemon.image, command=("sh", "-c", "exit 3"), network_mode="none"
    )
    target = DockerJobTarget(name, template, url=f"ssh://{ssh_env.alias}", timeout=20)
    try:
        (job,) = await target.start_jobs(1)
        with anyio.fail_after(30):
            while True:
                (info,) = await target.list_jobs()
                if info.phase.finished:
                    break
                await anyio.sleep(0.2)
        assert info.name == job
        assert (info.phase, info.exit_code) == (JobPhase.FAILED, 3)
    finally:
        await target.aclose()
        ssh_env.daemon.remove_all_matching(f"{JOB_LABEL}={name}")


async def test_unreachable_host_is_a_target_error(ssh_env: SshDocker) -> None:
    url = f"ssh://{ssh_env.user}@127.0.0.1:{free_port()}"
    with pytest.raises(TargetError) as info:
        await _root_dir(_api(url))
    message = str(info.value)
    assert f"cannot reach the Docker daemon at {url} through ssh" in message
    assert "ssh could not reach the host" in message
    assert "Connection refused" in message


async def test_refused_key_is_a_target_error_without_the_key(
    ssh_env: SshDocker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = ssh_keygen(ssh_env.root / f"{unique_name('stranger')}_key")
    bin_dir = ssh_env.client(unique_name("stranger"), stranger)
    monkeypatch.setenv("PATH", ssh_env.path_env(bin_dir))
    with pytest.raises(TargetError) as info:
        await _root_dir(_api(f"ssh://{ssh_env.alias}"))
    message = str(info.value)
    assert "ssh authentication was refused" in message
    assert "Permission denied" in message
    key_lines = [
        line
        for key in (stranger, ssh_env.key)
        for line in key.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    for text in (message, repr(info.value), caplog.text):
        assert all(line not in text for line in key_lines)


def _known_hosts_with_another_key(served: SshDocker, folder: Path) -> Path:
    other = ssh_keygen(folder / "other_host_key")
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{served.port} {Path(f'{other}.pub').read_text()}")
    return known


async def test_unknown_host_key_is_a_target_error(
    ssh_env: SshDocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # known_hosts holds another key for the host: ssh refuses (BatchMode: no prompt).
    known = _known_hosts_with_another_key(ssh_env, tmp_path)
    bin_dir = ssh_env.client(unique_name("wrong-host"), ssh_env.key, known_hosts=known)
    monkeypatch.setenv("PATH", ssh_env.path_env(bin_dir))
    with pytest.raises(TargetError, match="ssh could not verify the host key"):
        await _root_dir(_api(f"ssh://{ssh_env.alias}"))


@pytest.fixture(scope="module")
def sshd_without_docker() -> Iterator[SshDocker]:
    with private_sshd(None) as served:
        yield served


async def test_no_docker_on_the_remote_is_a_target_error(
    ssh_env: SshDocker, sshd_without_docker: SshDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", sshd_without_docker.path_env())
    with pytest.raises(TargetError) as info:
        await _root_dir(_api(f"ssh://{sshd_without_docker.alias}"))
    message = str(info.value)
    assert "the remote host has no docker command" in message
    assert "not found" in message


def test_ssh_urls_as_the_cli_reads_them(ssh_env: SshDocker) -> None:
    assert resolve_endpoint("ssh://me@d.example").host == "ssh://me@d.example"
    assert resolve_endpoint("ssh://d.example:2222").host == "ssh://d.example:2222"
    for bad, words in (
        ("ssh://me:hunter2@d.example", "no password"),
        ("ssh://d.example/var/run/docker.sock", "no path"),
        ("ssh://-oProxyCommand=x", "bad host name"),
        ("ssh://d.example:notaport", "bad port"),
        ("ssh://", "no host name"),
    ):
        with pytest.raises(ConfigError, match=words) as caught:
            resolve_endpoint(bad)
        assert caught.value.path == "DOCKER_HOST"
        assert "hunter2" not in str(caught.value)


def test_no_ssh_client_is_a_config_error(
    ssh_env: SshDocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="needs the ssh client on PATH") as caught:
        _api("ssh://d.example")
    assert caught.value.path == "DOCKER_HOST"


def test_the_cli_reads_replicas_over_ssh(
    ssh_env: SshDocker, redis_server: RedisServer, tmp_path: Path
) -> None:
    # `eventscale evaluate --target docker` with DOCKER_HOST=ssh://ALIAS: the process's
    # own ssh (PATH) reads the config; the two members are counted through it.
    assert ssh_env.daemon is not None
    name = unique_name("ssh-cli")
    key = unique_name("ssh-cli-list")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    manifest = tmp_path / "so.yaml"
    manifest.write_text(
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{name: {name}}}
  triggers:
    - type: redis
      metadata: {{address: "{redis_server.address}", listName: {key}, listLength: "5"}}
"""
    )
    try:
        for i in range(2):
            ssh_env.daemon.run_unmanaged(f"{name}-{i}", {TARGET_LABEL: name})
        client.rpush(key, *range(15))
        env = {**os.environ, "DOCKER_HOST": f"ssh://{ssh_env.alias}"}
        done = subprocess.run(
            [sys.executable, "-m", "eventscale", "evaluate", str(manifest), "--target", "docker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"ScaledObject default/{name}: 2 -> 3 replicas (active)" in done.stdout
        # The same with a key the server refuses: the reason reaches the user.
        stranger = ssh_keygen(tmp_path / "stranger_key")
        env["PATH"] = ssh_env.path_env(ssh_env.client(unique_name("cli-stranger"), stranger))
        refused = subprocess.run(
            [sys.executable, "-m", "eventscale", "evaluate", str(manifest), "--target", "docker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "ssh authentication was refused" in refused.stderr
        assert stranger.read_text().splitlines()[1] not in refused.stderr + refused.stdout
    finally:
        client.delete(key)
        client.close()
        ssh_env.daemon.remove_all_matching(f"{TARGET_LABEL}={name}")
