"""Proxies for the kubeconfig proxy tests: a minimal HTTP CONNECT proxy that records
every ``CONNECT host:port`` and tunnels the bytes both ways, and a real SOCKS5 server
(Debian's dante-server, installed through ``ensure_apt``) whose log shows each connect."""

from __future__ import annotations

import os
import select
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from servers._proc import Proc, ensure_apt, free_port, port_open, wait_until


class _Tunnel(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = self.request.recv(1024)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        self.server.seen.append(f"{method} {target}")
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            ends = [self.request, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 10)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.request else self.request).sendall(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    seen: list[str]


@contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """A running proxy: its ``http://127.0.0.1:port`` URL and the requests it saw."""
    server = _ProxyServer(("127.0.0.1", 0), _Tunnel)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@attrs.frozen
class SocksProxy:
    """A running SOCKS5 server (Debian's dante-server): its port and its log."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    def connects_to(self, port: int) -> int:
        """How many connections the proxy made to ``127.0.0.1:port`` so far."""
        if not self.log.exists():
            return 0
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            if "tcp/connect" in line and line.rstrip().endswith(f"127.0.0.1.{port}")
        )


@contextmanager
def socks_proxy() -> Iterator[SocksProxy]:
    """dante on a free port of 127.0.0.1, no authentication, logging every connect."""
    danted = ensure_apt("danted", "dante-server")
    root = Path(tempfile.mkdtemp(prefix="es-socks-"))
    port = free_port()
    log = root / "danted.log"
    users = "user.privileged: root\nuser.unprivileged: nobody\n" if os.geteuid() == 0 else ""
    (root / "danted.conf").write_text(
        f"logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
        f"socksmethod: none\nclientmethod: none\n{users}"
        "client pass {\n  from: 127.0.0.1/32 to: 0.0.0.0/0\n  log: error\n}\n"
        "socks pass {\n  from: 127.0.0.1/32 to: 0.0.0.0/0\n  command: connect\n"
        "  log: connect error\n}\n"
    )
    proc = Proc(
        [danted, "-f", str(root / "danted.conf"), "-p", str(root / "danted.pid"), "-N", "1"],
        log=root / "danted.out",
    )
    try:
        wait_until(lambda: proc.alive and port_open(port), timeout=30, what="danted", log=log)
        yield SocksProxy(port, log)
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)
