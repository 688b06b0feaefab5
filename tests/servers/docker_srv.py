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

from servers._proc import Proc, ensure_apt, install_lock, run, wait_until

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
