"""``ssh://`` Docker hosts, reached as the ``docker`` CLI reaches them.

The CLI (docker/cli, ``cli/connhelper``) opens every connection to an ``ssh://`` host by
running ``ssh [-l user] [-p port] -- host docker system dial-stdio`` and speaking HTTP over
the process's stdin and stdout; on the remote side ``docker system dial-stdio`` joins them
to the daemon's socket. The ssh binary does the rest as it always does: the user's
``~/.ssh/config`` (host aliases, ``ProxyJump``, ``IdentityFile``), keys and agent, and
``known_hosts``.

:class:`SshDialer` does the same for aiohttp through public APIs only: it listens on a
unix socket in a private folder (mode 0700) and joins each connection aiohttp makes to
that socket to a new ``ssh`` process (the accepted socket becomes the process's stdin and
stdout). A process that ends before the daemon answered leaves its exit status and the
last lines of its stderr, so errors say what failed: the host could not be reached, ssh
authentication was refused, or the remote has no ``docker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from typing import Final
from urllib.parse import unquote, urlsplit

import attrs

from eventscale.errors import ConfigError

__all__ = ("SshDialer", "SshHost", "describe_exit")

_STDERR_LIMIT: Final = 8 * 1024  # ssh's diagnostics are short; more is dropped
_DETAIL_LIMIT: Final = 300
_NAME: Final = re.compile(r"^[A-Za-z0-9._:-]+$")


@attrs.frozen
class SshHost:
    """An ``ssh://[user@]host[:port]`` Docker host, parsed as the docker CLI parses it.

    ``host`` may be an alias of the user's ssh config. ``port`` and ``user`` are ``None``
    when the URL gives none (ssh's config or defaults then decide).
    """

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshHost:
        """Read ``url``; a password, a path or a query is a :class:`ConfigError` (as the CLI).

        :raises ConfigError: at ``DOCKER_HOST``, never quoting a password.
        """
        parts = urlsplit(url)
        if parts.scheme != "ssh":
            raise ConfigError(f"not an ssh:// Docker host: {url!r}", path="DOCKER_HOST")
        if parts.password is not None:
            raise ConfigError(
                "ssh:// Docker hosts take no password in the URL (use keys or an ssh agent)",
                path="DOCKER_HOST",
            )
        shown = _without_userinfo_secret(url)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"bad port in Docker host {shown!r}", path="DOCKER_HOST") from None
        host = parts.hostname or ""
        if not host:
            raise ConfigError(f"no host name in Docker host {shown!r}", path="DOCKER_HOST")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"an ssh:// Docker host takes no path or query ({shown!r})", path="DOCKER_HOST"
            )
        user = unquote(parts.username) if parts.username else None
        for value, what in ((host, "host name"), (user, "user name")):
            # ssh reads a leading "-" as an option: refuse what is not a plain name.
            if value is not None and (value.startswith("-") or not _NAME.match(value)):
                raise ConfigError(f"bad {what} in Docker host {shown!r}", path="DOCKER_HOST")
        return cls(host=host, user=user, port=port)

    @property
    def url(self) -> str:
        """``ssh://[user@]host[:port]``."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{self.host}{port}"

    def command(self, ssh: str, *, connect_timeout: float) -> list[str]:
        """The process each connection runs (the CLI's, with batch mode and a timeout).

        ``BatchMode=yes``: a process without a terminal must fail rather than wait for a
        password or a host-key confirmation nobody can give.
        """
        args = [
            ssh,
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={max(1, round(connect_timeout))}",
            "-T",
        ]
        if self.user:
            args += ["-l", self.user]
        if self.port is not None:
            args += ["-p", str(self.port)]
        return [*args, "--", self.host, "docker", "system", "dial-stdio"]


def _without_userinfo_secret(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


def describe_exit(status: int | None, stderr: str) -> str:
    """What a finished ``ssh ... docker system dial-stdio`` says went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = " / ".join(lines[-2:])[:_DETAIL_LIMIT] if lines else "no message"
    lowered = stderr.lower()
    if status == 255 and "permission denied" in lowered:
        return f"ssh authentication was refused ({last})"
    if status == 255 and "host key verification failed" in lowered:
        return f"ssh could not verify the host key ({last})"
    if status == 255:
        return f"ssh could not reach the host ({last})"
    if status == 127 or "command not found" in lowered or "not found" in lowered:
        return f"the remote host has no docker command ({last})"
    if status is None:
        return f"ssh closed the connection before the daemon answered ({last})"
    return f"docker system dial-stdio exited with status {status} ({last})"


class SshDialer:
    """A private unix socket whose every connection is one ``ssh ... dial-stdio`` process.

    :param target: the ssh host.
    :param connect_timeout: seconds ssh may take to connect (its ``ConnectTimeout``).
    :raises ConfigError: no ``ssh`` client on ``PATH``.
    """

    def __init__(self, target: SshHost, *, connect_timeout: float) -> None:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise ConfigError(
                f"the Docker host {target.url} needs the ssh client on PATH (as the docker "
                "CLI does); none was found",
                path="DOCKER_HOST",
            )
        self.target = target
        self._command = target.command(ssh, connect_timeout=connect_timeout)
        self._folder: str | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._processes: set[asyncio.subprocess.Process] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._failures: list[tuple[int, str]] = []  # (sequence number, what failed)
        self._count = 0
        self._ended: asyncio.Event | None = None  # made on the event loop, in start()

    @property
    def socket_path(self) -> str | None:
        """The unix socket aiohttp connects to (``None`` before :meth:`start`)."""
        return None if self._folder is None else os.path.join(self._folder, "docker.sock")

    def start(self) -> str:
        """Listen (once) and return the socket path; call on the event loop."""
        if self._listener is not None and self.socket_path is not None:
            return self.socket_path
        self._folder = tempfile.mkdtemp(prefix="es-docker-ssh-")  # mode 0700
        path = os.path.join(self._folder, "docker.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._ended = asyncio.Event()
        self._accepting = asyncio.get_running_loop().create_task(self._accept(listener))
        return path

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=conn.fileno(),
                    stdout=conn.fileno(),
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                self._record(f"ssh could not start: {exc.strerror or exc}")
                conn.close()
                continue
            conn.close()  # the process holds the socket now; EOF reaches aiohttp when it ends
            self._processes.add(process)
            watcher = loop.create_task(self._watch(process))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        chunks: list[bytes] = []
        size = 0
        while chunk := await process.stderr.read(4096):
            if size < _STDERR_LIMIT:
                chunks.append(chunk[: _STDERR_LIMIT - size])
                size += len(chunks[-1])
        status = await process.wait()
        self._processes.discard(process)
        if status != 0:
            self._record(describe_exit(status, b"".join(chunks).decode(errors="replace")))
        if self._ended is not None:
            self._ended.set()

    def _record(self, failure: str) -> None:
        self._count += 1
        self._failures.append((self._count, failure))
        del self._failures[:-4]

    def mark(self) -> int:
        """A point in time for :meth:`failure`: failures after it are the caller's."""
        return self._count

    def _since(self, mark: int) -> str | None:
        return next((text for n, text in reversed(self._failures) if n > mark), None)

    async def failure(self, mark: int, wait: float = 2.0) -> str | None:
        """Why an ssh process failed after ``mark`` (:meth:`mark`), waiting up to ``wait``
        seconds for a running one to end and say so; ``None`` if none did."""
        if self._since(mark) is None and self._processes and self._ended is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while self._since(mark) is None and self._processes:
                        self._ended.clear()
                        await self._ended.wait()
        return self._since(mark)

    async def aclose(self) -> None:
        """Stop listening, end the ssh processes still running and remove the socket."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for process in list(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for watcher in list(self._watchers):
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await watcher
        for process in list(self._processes):  # still there: force
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        self._processes.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
