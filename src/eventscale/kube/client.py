"""A minimal async Kubernetes REST client on aiohttp: JSON in, JSON out, errors
translated into :mod:`eventscale.errors`.

docs/targets/kubernetes.md explains why eventscale does not use one of the Kubernetes
client libraries.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, TargetConflict, TargetError, TargetNotFound
from eventscale.kube.config import (
    ExecCredentialPlugin,
    KubeConfig,
    environment_proxy,
    exec_cluster_info,
    proxy_errors,
    socks_connector,
    ssl_context,
)
from eventscale.redaction import Secret, redact_text

if TYPE_CHECKING:
    import aiohttp

__all__ = ("KNOWN_PLURALS", "KubeClient", "api_prefix")

_NEEDS_CLEANUP_CLOSED: Final = sys.version_info < (3, 12, 8) or (
    (3, 13, 0) <= sys.version_info < (3, 13, 1)
)

# Bounds on what an exec credential plugin prints (an ExecCredential is a few KiB).
_PLUGIN_STDOUT: Final = 1024 * 1024
_PLUGIN_STDERR: Final = 2000


def _secret_lines(stdout: bytes) -> list[str]:
    """Lines of a plugin's stdout long enough to be credentials, to redact from stderr."""
    text = stdout[:_PLUGIN_STDOUT].decode(errors="replace")
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 8]


#: ``(group, kind)`` -> plural for the built-in kinds that have a scale subresource
#: (any other kind's plural is found by API discovery).
KNOWN_PLURALS: Final[Mapping[tuple[str, str], str]] = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("", "ReplicationController"): "replicationcontrollers",
}


class KubeClient:
    """A minimal async Kubernetes REST client: JSON in, JSON out, errors translated.

    Responses with a status of 400 or more raise :class:`TargetNotFound` (404),
    :class:`TargetConflict` (409) or :class:`TargetError` carrying the status and the
    API's ``Status`` message; a call that takes longer than ``timeout`` seconds and an
    unreachable server raise :class:`TargetError` too. A 401 with an exec plugin
    refreshes the token once.
    """

    def __init__(self, config: KubeConfig, *, timeout: float = 10.0) -> None:
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {timeout!r}", path="timeout")
        self.config = config
        self.timeout = timeout
        self._aiohttp = import_optional("aiohttp", extra="kubernetes", what="the Kubernetes target")
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context(config)
        proxy = config.proxy_url or environment_proxy(config.server)
        # A SOCKS proxy is the connector's job (socks_connector); an HTTP one goes as proxy=.
        self._proxy_errors = proxy_errors(proxy)
        self._socks: str | None = proxy if self._proxy_errors else None
        self._proxy: str | None = None if self._proxy_errors else proxy
        self._file_token: tuple[float, Secret] | None = None
        self._exec_token: tuple[float, Secret | None] | None = None

    @property
    def namespace(self) -> str:
        """The default namespace of the configuration."""
        return self.config.namespace

    async def _token(self) -> Secret | None:
        cfg = self.config
        if cfg.exec_plugin is not None:
            now = time.time()
            if self._exec_token is None or self._exec_token[0] <= now:
                self._exec_token = await self._run_exec_plugin(cfg.exec_plugin)
            return self._exec_token[1]
        if cfg.token_file is not None:
            now = time.monotonic()
            if self._file_token is None or now - self._file_token[0] > 60:
                try:
                    text = await anyio.Path(cfg.token_file).read_text()
                except OSError as exc:
                    raise TargetError(
                        f"cannot read token file {cfg.token_file}: {exc.strerror}"
                    ) from exc
                self._file_token = (now, Secret(text.strip()))
            return self._file_token[1]
        return cfg.token

    async def _run_exec_plugin(self, plugin: ExecCredentialPlugin) -> tuple[float, Secret | None]:
        """Run the plugin; a token comes back, a client certificate is installed in the
        TLS context (client-go's ``plugin/pkg/client/auth/exec``)."""
        spec: dict[str, Any] = {"interactive": False}
        if plugin.provide_cluster_info:
            spec["cluster"] = exec_cluster_info(self.config)
        info = {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **plugin.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        name = plugin.command
        try:
            with anyio.fail_after(self.timeout):
                result = await anyio.run_process([name, *plugin.args], env=env, check=False)
        except TimeoutError as exc:
            raise TargetError(f"the exec credential plugin {name!r} timed out") from exc
        except OSError as exc:
            hint = f"; {plugin.install_hint.strip()}" if plugin.install_hint else ""
            raise TargetError(f"cannot run exec credential plugin {name!r}: {exc}{hint}") from exc
        if result.returncode != 0:
            # What the plugin said, bounded and without anything it printed on stdout.
            said = result.stderr[-_PLUGIN_STDERR:].decode(errors="replace").strip()
            said = redact_text(said, [Secret(line) for line in _secret_lines(result.stdout)])
            raise TargetError(
                f"the exec credential plugin {name!r} failed with exit code "
                f"{result.returncode}" + (f": {said}" if said else "")
            )
        try:
            status = json.loads(result.stdout[:_PLUGIN_STDOUT])["status"]
            if not isinstance(status, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(
                f"the exec credential plugin {name!r} printed no ExecCredential"
            ) from exc
        token = Secret(str(status["token"])) if status.get("token") else None
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if token is None and not (cert and key):
            raise TargetError(
                f"the exec credential plugin {name!r} printed neither a token nor a "
                "client certificate and key"
            )
        if cert and key:
            pair = attrs.evolve(
                self.config, client_cert_data=str(cert).encode(), client_key_data=Secret(str(key))
            )
            try:
                self._ssl = ssl_context(pair)
            except ConfigError as exc:
                raise TargetError(f"the exec credential plugin {name!r}: {exc.reason}") from None
            if self._session is not None:
                await self._session.close()
                self._session = None
        expires = float("inf")
        if status.get("expirationTimestamp"):
            stamp = str(status["expirationTimestamp"]).replace("Z", "+00:00")
            with contextlib.suppress(ValueError):
                expires = datetime.fromisoformat(stamp).timestamp() - 10
        return expires, token

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "eventscale"}
        token = await self._token()
        if token:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        elif self.config.username and self.config.password:
            raw = f"{self.config.username}:{self.config.password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            # A request cut off by its timeout leaves a TLS connection in a graceful
            # shutdown that may never finish; on the Pythons that need it, aiohttp then
            # aborts such transports when the session closes.
            options: dict[str, Any] = {
                "ssl": self._ssl,
                "limit": 16,
                "enable_cleanup_closed": _NEEDS_CLEANUP_CLOSED,
            }
            connector = socks_connector(self._socks, **options) or aiohttp.TCPConnector(**options)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _refreshable(self) -> bool:
        return self.config.exec_plugin is not None or self.config.token_file is not None

    def _secrets(self) -> list[Secret | None]:
        cached = [c[1] for c in (self._file_token, self._exec_token) if c is not None]
        proxy = urllib.parse.urlsplit(self._proxy or self._socks or "").password
        return [self.config.token, self.config.password, Secret(proxy) if proxy else None, *cached]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call limit is part of this API
    ) -> dict[str, Any]:
        """Send one request to ``path`` (``/apis/apps/v1/...``) and return the JSON body."""
        limit = timeout if timeout is not None else self.timeout
        for attempt in (0, 1):
            try:
                with anyio.fail_after(limit):
                    status, payload = await self._send(method, path, body, params)
            except TimeoutError as exc:
                raise TargetError(
                    f"{method} {path} timed out after {limit:g}s", status=None
                ) from exc
            except (self._aiohttp.ClientError, *self._proxy_errors) as exc:
                text = redact_text(str(exc), self._secrets())
                raise TargetError(
                    f"cannot reach the Kubernetes API at {self.config.server}: {text}"
                ) from exc
            if status == 401 and attempt == 0 and self._refreshable():
                # Expired early or rotated: ask the plugin again, re-read the token file.
                self._exec_token = self._file_token = None
                continue
            break
        if status >= 400:
            raise self._error(status, payload, method, path)
        return payload

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, dict[str, Any]]:
        headers = await self._headers()  # first: an exec plugin may replace the session
        session = self._get_session()
        kwargs: dict[str, Any] = {"headers": headers, "params": params, "proxy": self._proxy}
        if self.config.tls_server_name:
            kwargs["server_hostname"] = self.config.tls_server_name
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        async with session.request(method, self.config.server + path, **kwargs) as resp:
            raw = await resp.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {"message": raw[:200].decode(errors="replace")}
            if not isinstance(payload, dict):
                payload = {"items": payload}
            return resp.status, payload

    def _error(
        self, status: int, payload: Mapping[str, Any], method: str, path: str
    ) -> TargetError:
        message = str(payload.get("message") or payload.get("reason") or f"{method} {path} failed")
        message = redact_text(message, self._secrets())
        if status == 404:
            return TargetNotFound(message, status=status)
        if status == 409:
            return TargetConflict(message, status=status)
        return TargetError(message, status=status)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def api_prefix(api_version: str) -> str:
    """``apps/v1`` -> ``/apis/apps/v1``; ``v1`` -> ``/api/v1``."""
    version = api_version.strip("/")
    return f"/apis/{version}" if "/" in version else f"/api/{version}"
