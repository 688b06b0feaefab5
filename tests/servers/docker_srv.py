"""A private Docker daemon (Debian docker.io) with a busybox image built from a tarball.

dockerd runs on its own unix socket with private data and exec roots under a temp
dir, and with no bridge, no iptables rules and no IP forwarding (docs/development.md, Test servers),
so it leaves the machine's network alone. No registry is reachable: the image is
imported from a root filesystem tarball holding a static busybox.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from servers._proc import (
    Proc,
    ensure_apt,
    free_port,
    install_lock,
    port_open,
    run,
    unique_name,
    wait_until,
)

IMAGE_REPO = "localhost/es-busybox"
IMAGE_TAG = "test"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@attrs.frozen
class DockerDaemon:
    """A running private dockerd; :meth:`api` is a small sync client for test setup."""

    socket_path: Path
    image: str
    proc: Proc | None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def api(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        conn = _UnixHTTPConnection(str(self.socket_path))
        try:
            headers: dict[str, str] = {}
            data: bytes | None = raw
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            elif raw is not None:
                headers["Content-Type"] = "application/x-tar"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            try:
                return resp.status, json.loads(payload) if payload else None
            except ValueError:
                return resp.status, payload.decode(errors="replace")
        finally:
            conn.close()

    def containers(self, label: str | None = None) -> list[dict[str, Any]]:
        """Every container (running or not), optionally filtered by ``key=value`` label."""
        query = "/containers/json?all=true"
        if label:
            filters = json.dumps({"label": [label]})
            query += "&filters=" + urllib.parse.quote(filters)
        status, listing = self.api("GET", query)
        assert status == 200, listing
        return list(listing)

    def run_unmanaged(self, name: str, labels: dict[str, str]) -> str:
        """Start a container the target must not touch; return its id."""
        status, created = self.api(
            "POST",
            f"/containers/create?name={name}",
            {
                "Image": self.image,
                "Cmd": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                "Labels": labels,
                "HostConfig": {"NetworkMode": "none"},
            },
        )
        assert status == 201, created
        status, started = self.api("POST", f"/containers/{created['Id']}/start")
        assert status == 204, started
        return str(created["Id"])

    def remove_all_matching(self, label: str) -> None:
        for item in self.containers(label):
            self.api("DELETE", f"/containers/{item['Id']}?force=true&v=true")

    def remove_all(self) -> None:
        for item in self.containers():
            self.api("DELETE", f"/containers/{item['Id']}?force=true&v=true")


def _is_static(path: str) -> bool:
    """Whether an ELF executable has no program interpreter (is statically linked)."""
    with open(path, "rb") as handle:
        data = handle.read(64 * 1024)
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start : start + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def _static_busybox() -> str:
    found = ensure_apt("busybox", "busybox-static")
    if _is_static(found):
        return found
    with install_lock("apt"):
        run(["apt-get", "install", "-y", "-qq", "busybox-static"])
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if candidate and os.path.exists(candidate) and _is_static(candidate):
            return candidate
    pytest.fail("no statically linked busybox after installing busybox-static", pytrace=False)


def _rootfs_tar(busybox: str) -> bytes:
    """A tarball of a root filesystem: /bin/busybox and the applets the tests use."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for folder in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "cat", "env", "true"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return out.getvalue()


def start_dockerd(root: Path, extra_args: tuple[str, ...] = ()) -> DockerDaemon:
    """Start a private dockerd under ``root`` and import the busybox image.

    ``extra_args`` go to dockerd as given (more ``--host`` options, TLS settings).
    """
    dockerd = ensure_apt("dockerd", "docker.io")
    busybox = _static_busybox()
    sock = root / "docker.sock"
    proc = Proc(
        [
            dockerd,
            "--host",
            f"unix://{sock}",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "dockerd.pid"),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--storage-driver",
            "overlay2",
            *extra_args,
        ],
        log=root / "dockerd.log",
    )
    daemon = DockerDaemon(sock, f"{IMAGE_REPO}:{IMAGE_TAG}", proc)
    try:
        wait_until(
            lambda: proc.alive and daemon.api("GET", "/_ping") == (200, "OK"),
            timeout=60,
            what="dockerd",
            log=proc.log,
        )
        status, out = daemon.api(
            "POST",
            f"/images/create?fromSrc=-&repo={IMAGE_REPO}&tag={IMAGE_TAG}",
            raw=_rootfs_tar(busybox),
        )
        if status != 200:
            pytest.fail(f"importing the busybox image failed: {status} {out}", pytrace=False)
    except BaseException:
        proc.stop()
        raise
    return daemon


@contextlib.contextmanager
def private_dockerd(extra_args: tuple[str, ...] = ()) -> Iterator[DockerDaemon]:
    """A private dockerd under a fresh temp dir, stopped (with its containerd) at the end."""
    # A short path: unix socket paths are limited to ~108 bytes.
    root = Path(tempfile.mkdtemp(prefix="es-dk-", dir="/tmp"))
    try:
        daemon = start_dockerd(root, extra_args)
        try:
            yield daemon
        finally:
            with contextlib.suppress(Exception):
                daemon.remove_all()
            assert daemon.proc is not None
            daemon.proc.stop(timeout=20)
    finally:
        # overlay2 may leave mounts behind only if dockerd was killed; unmount, then delete.
        for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
            target = mount.split()[1]
            if target.startswith(str(root)):
                subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    """A private dockerd for this session, stopped (with its containerd) at the end."""
    with private_dockerd() as daemon:
        yield daemon


# -- ssh:// Docker hosts -----------------------------------------------------------------
# Debian's openssh-server on a free port of 127.0.0.1 with its own host key, config and
# authorized key; a ForceCommand runs the login's command with a PATH and DOCKER_HOST of
# the test's choosing, so the remote `docker system dial-stdio` (the real docker CLI)
# reaches the private dockerd. The client side is the real ssh binary with a config file
# of the test's own (a `ssh` wrapper on PATH adds `-F`), never the machine's ~/.ssh.


@attrs.frozen
class SshDocker:
    """A running sshd in front of a private dockerd, and a client config that reaches it.

    ``alias`` is a Host of ``config`` only (HostName 127.0.0.1, the port, the user);
    ``bin_dir`` holds an ``ssh`` that reads ``config``: put it first on ``PATH``.
    """

    port: int
    user: str
    alias: str
    root: Path
    key: Path
    config: Path
    bin_dir: Path
    known_hosts: Path
    daemon: DockerDaemon | None
    proc: Proc

    def path_env(self, bin_dir: Path | None = None) -> str:
        """A ``PATH`` whose ``ssh`` reads this client config (or ``bin_dir``'s)."""
        return f"{bin_dir or self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def client(self, name: str, key: Path, known_hosts: Path | None = None) -> Path:
        """Another client folder (config + ``ssh`` wrapper) that logs in with ``key``
        (and checks the host key against ``known_hosts``, default the right one)."""
        return _ssh_client(
            self.root / name, self.alias, self.port, self.user, key, known_hosts or self.known_hosts
        )


def ssh_keygen(path: Path) -> Path:
    keygen = ensure_apt("ssh-keygen", "openssh-client")
    run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "eventscale-test", "-f", str(path)])
    return path


def _ssh_client(
    folder: Path, alias: str, port: int, user: str, key: Path, known_hosts: Path
) -> Path:
    ssh = ensure_apt("ssh", "openssh-client")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "ssh_config"
    config.write_text(
        f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
        f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {ssh} -F {config} "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir


def start_sshd(root: Path, *, remote_path: str, docker_host: str | None) -> SshDocker:
    """sshd on a free port whose logins run their command with ``remote_path`` (and
    ``DOCKER_HOST``). Stop it with ``proc.stop()``."""
    sshd = ensure_apt("sshd", "openssh-server")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # sshd refuses to start as root without its privilege separation folder.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = ssh_keygen(root / "host_key")
    key = ssh_keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {(root / 'host_key.pub').read_text()}")
    remote = root / "remote-command"
    exports = f"export PATH={remote_path}\n"
    if docker_host is not None:
        exports += f"export DOCKER_HOST={docker_host}\n"
    else:
        exports += "unset DOCKER_HOST\n"
    remote.write_text(f'#!/bin/sh\n{exports}exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    remote.chmod(0o755)
    user = pwd.getpwuid(os.geteuid()).pw_name
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {user}\n"
        f"ForceCommand {remote}\nLogLevel VERBOSE\n"
    )
    proc = Proc([sshd, "-D", "-e", "-f", str(config)], log=root / "sshd.log")
    try:
        wait_until(lambda: proc.alive and port_open(port), timeout=30, what="sshd", log=proc.log)
    except BaseException:
        proc.stop()
        raise
    alias = unique_name("es-docker-ssh")
    bin_dir = _ssh_client(root / "client", alias, port, user, key, known_hosts)
    return SshDocker(
        port=port,
        user=user,
        alias=alias,
        root=root,
        key=key,
        config=bin_dir.parent / "ssh_config",
        bin_dir=bin_dir,
        known_hosts=known_hosts,
        daemon=None,
        proc=proc,
    )


@contextlib.contextmanager
def private_sshd(daemon: DockerDaemon | None) -> Iterator[SshDocker]:
    """sshd in front of ``daemon`` (``None``: a remote whose PATH has no docker)."""
    root = Path(tempfile.mkdtemp(prefix="es-ssh-", dir="/tmp"))
    try:
        if daemon is not None:
            docker = shutil.which("docker")
            if docker is None:
                pytest.fail("the docker CLI (for `docker system dial-stdio`) is not installed")
            remote_path = f"{Path(docker).parent}:/usr/bin:/bin"
            served = start_sshd(root, remote_path=remote_path, docker_host=daemon.url)
        else:
            empty = root / "no-docker-bin"
            empty.mkdir()
            served = start_sshd(root, remote_path=str(empty), docker_host=None)
        try:
            yield attrs.evolve(served, daemon=daemon)
        finally:
            served.proc.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_over_ssh(docker_daemon: DockerDaemon) -> Iterator[SshDocker]:
    """The session's private dockerd behind a private sshd (``ssh://`` Docker hosts)."""
    with private_sshd(docker_daemon) as served:
        yield served
