"""Process, port and install helpers shared by the server fixtures."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

CACHE_DIR = Path(
    os.environ.get("EVENTSCALE_TEST_CACHE", Path.home() / ".cache" / "eventscale-tests")
)


def unique_name(prefix: str = "es") -> str:
    """A name no other test (or test run) uses: ``prefix-<12 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; fail the test (with the log tail) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- log tail ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:]
        )
    pytest.fail(f"{what} was not ready after {timeout:.0f}s{tail}", pytrace=False)


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """Serialize installs across processes (pytest-xdist workers, parallel runs)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(cmd: Sequence[str], *, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"command {' '.join(cmd)!r} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}",
            pytrace=False,
        )
    return proc.stdout


def _which(binary: str) -> str | None:
    # Daemons (sshd, danted) live in the sbin folders, which a non-root PATH may lack.
    return shutil.which(binary) or shutil.which(binary, path="/usr/local/sbin:/usr/sbin:/sbin")


def ensure_apt(binary: str, package: str) -> str:
    """Path of ``binary``, installing Debian ``package`` first if it is missing."""
    found = _which(binary)
    if found:
        return found
    with install_lock("apt"):
        found = _which(binary)
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        stamp = CACHE_DIR / "apt-updated"
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > 6 * 3600:
            run(["apt-get", "update", "-qq"], env=env)
            stamp.touch()
        run(["apt-get", "install", "-y", "-qq", package], env=env)
    found = _which(binary)
    if not found:
        pytest.fail(f"installing {package} did not provide {binary}", pytrace=False)
    return found


class Proc:
    """A server process this test session started; :meth:`stop` kills its process group."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log_handle = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(cmd),
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log_handle.close()
