"""Azurite (the Azure Storage emulator), queue service only, pinned to 3.35.0.

Installed once from npm into ``CACHE_DIR/azurite-3.35.0`` under an install lock, then one
``azurite-queue`` per test session on a free port (docs/development.md, Test servers). The
``--skipApiVersionCheck`` flag is required: azure-storage-queue sends a newer API version
than Azurite knows.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from servers._proc import CACHE_DIR, Proc, free_port, install_lock, port_open, run, wait_until

AZURITE_VERSION = "3.35.0"
# Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@attrs.frozen
class AzuriteServer:
    """A running ``azurite-queue``."""

    host: str
    port: int
    proc: Proc

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{DEV_ACCOUNT}"

    def connection_string(self, key: str = DEV_KEY) -> str:
        """An explicit connection string for the development account (``key`` may be wrong)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};"
            f"QueueEndpoint={self.queue_endpoint};"
        )


def _azurite_binary() -> Path:
    folder = CACHE_DIR / f"azurite-{AZURITE_VERSION}"
    binary = folder / "node_modules" / ".bin" / "azurite-queue"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: it is needed to install Azurite", pytrace=False)
    with install_lock("azurite"):
        if binary.exists():
            return binary
        staging = Path(tempfile.mkdtemp(prefix="azurite-install-", dir=CACHE_DIR))
        (staging / "package.json").write_text(json.dumps({"name": "es-azurite", "private": True}))
        run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(staging),
                f"azurite@{AZURITE_VERSION}",
            ],
            timeout=600,
        )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    if not binary.exists():
        pytest.fail(
            f"npm install azurite@{AZURITE_VERSION} did not provide {binary}", pytrace=False
        )
    return binary


@attrs.frozen
class AzuriteOAuthServer:
    """A running ``azurite-queue`` over HTTPS with ``--oauth basic`` (bearer tokens).

    Azurite's basic OAuth checks a token's issuer, audience and lifetime, not its
    signature. ``ca`` is the trustme CA that signed its certificate.
    """

    host: str
    port: int
    proc: Proc
    ca: Any

    @property
    def queue_endpoint(self) -> str:
        return f"https://{self.host}:{self.port}/{DEV_ACCOUNT}"

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"QueueEndpoint={self.queue_endpoint};"
        )


def _start(binary: Path, tmp: str, extra: list[str]) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(
        [
            str(binary),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(port),
            "--silent",
            "--skipApiVersionCheck",
            "--location",
            str(Path(tmp) / "data"),
            *extra,
        ],
        log=Path(tmp) / "azurite.log",
    )
    try:
        wait_until(
            lambda: proc.alive and port_open(port),
            timeout=60,
            what=f"azurite-queue on port {port}",
            log=proc.log,
        )
    except BaseException:
        proc.stop()
        raise
    return proc, port


@pytest.fixture(scope="session")
def azurite_oauth_server() -> Iterator[AzuriteOAuthServer]:
    """A private ``azurite-queue --oauth basic`` over HTTPS (trustme certificate)."""
    import trustme

    binary = _azurite_binary()
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="es-azurite-oauth-") as tmp:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        proc, port = _start(
            binary, tmp, ["--oauth", "basic", "--cert", str(cert_file), "--key", str(key_file)]
        )
        try:
            yield AzuriteOAuthServer("127.0.0.1", port, proc, ca)
        finally:
            proc.stop()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """A private ``azurite-queue`` on a free port, with a throw-away data folder."""
    binary = _azurite_binary()
    with tempfile.TemporaryDirectory(prefix="es-azurite-") as tmp:
        proc, port = _start(binary, tmp, [])
        try:
            yield AzuriteServer("127.0.0.1", port, proc)
        finally:
            proc.stop()
