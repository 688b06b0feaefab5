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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
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
    ssl_context,
)
from eventscale.redaction import Secret, redact_text

if TYPE_CHECKING:
    import aiohttp

__all__ = (
    "JSON_PATCH",
    "KNOWN_PLURALS",
    "MERGE_PATCH",
    "MAX_WATCH_LINE",
    "KubeClient",
    "api_prefix",
    "request_verb",
)

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


#: The content type of a JSON merge patch (RFC 7386), the default of ``PATCH``.
MERGE_PATCH: Final = "application/merge-patch+json"
#: The content type of a JSON patch (RFC 6902): a list of operations.
JSON_PATCH: Final = "application/json-patch+json"
#: The longest line (one watch event, one object) a watch stream may send.
MAX_WATCH_LINE: Final = 8 * 1024 * 1024
# The verbs of Kubernetes' authorization, by HTTP method (a GET of a name is "get").
_VERBS: Final = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

Body = Mapping[str, Any] | Sequence[Mapping[str, Any]]


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
    refreshes the token once. ``user_agent`` names the client to the API (audit logs).
    """

    def __init__(
        self, config: KubeConfig, *, timeout: float = 10.0, user_agent: str = "eventscale"
    ) -> None:
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {timeout!r}", path="timeout")
        self.config = config
        self.timeout = timeout
        self.user_agent = user_agent
        self._aiohttp = import_optional("aiohttp", extra="kubernetes", what="the Kubernetes target")
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context(config)
        self._proxy = config.proxy_url or environment_proxy(config.server)
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
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
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
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=16, enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _refreshable(self) -> bool:
        return self.config.exec_plugin is not None or self.config.token_file is not None

    def _secrets(self) -> list[Secret | None]:
        cached = [c[1] for c in (self._file_token, self._exec_token) if c is not None]
        proxy = urllib.parse.urlsplit(self._proxy or "").password
        return [self.config.token, self.config.password, Secret(proxy) if proxy else None, *cached]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call limit is part of this API
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Send one request to ``path`` (``/apis/apps/v1/...``) and return the JSON body.

        ``content_type`` is the body's type: ``application/json`` by default, and for
        ``PATCH`` :data:`MERGE_PATCH` by default or :data:`JSON_PATCH` (``body`` is then
        a list of operations).
        """
        limit = timeout if timeout is not None else self.timeout
        if content_type is None:
            content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        for attempt in (0, 1):
            try:
                with anyio.fail_after(limit):
                    status, payload = await self._send(method, path, body, params, content_type)
            except TimeoutError as exc:
                raise TargetError(
                    f"{method} {path} timed out after {limit:g}s", status=None
                ) from exc
            except self._aiohttp.ClientError as exc:
                raise self._unreachable(exc) from exc
            if status == 401 and attempt == 0 and self._refreshable():
                # Expired early or rotated: ask the plugin again, re-read the token file.
                self._exec_token = self._file_token = None
                continue
            break
        if status >= 400:
            raise self._error(status, payload, method, path, params)
        return payload

    def _unreachable(self, exc: BaseException) -> TargetError:
        text = redact_text(str(exc), self._secrets())
        return TargetError(f"cannot reach the Kubernetes API at {self.config.server}: {text}")

    async def _send(
        self,
        method: str,
        path: str,
        body: Body | None,
        params: Mapping[str, str] | None,
        content_type: str,
    ) -> tuple[int, dict[str, Any]]:
        headers = await self._headers()  # first: an exec plugin may replace the session
        session = self._get_session()
        kwargs: dict[str, Any] = {"headers": headers, "params": params, "proxy": self._proxy}
        if self.config.tls_server_name:
            kwargs["server_hostname"] = self.config.tls_server_name
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = content_type
        async with session.request(method, self.config.server + path, **kwargs) as resp:
            raw = await resp.read()
            return resp.status, _json_object(raw)

    async def watch(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        idle_timeout: float | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch ``path`` (a collection, ``/apis/keda.sh/v1alpha1/scaledobjects``): yield
        each watch event (``{"type": ..., "object": ...}``) as the server sends it.

        ``params`` are the query (``resourceVersion``, ``timeoutSeconds``,
        ``allowWatchBookmarks``, ``labelSelector``); ``watch=true`` is added. ``ERROR``
        events are yielded as they come (their object is a ``Status``; code 410 means
        the resourceVersion is too old). The stream ends when the server closes it;
        a line longer than :data:`MAX_WATCH_LINE`, a cut connection and no byte for
        ``idle_timeout`` seconds (default: ``timeoutSeconds`` plus ``timeout``, or five
        minutes) raise :class:`TargetError`. Errors on opening the watch are those of
        :meth:`request` (a 410 Gone has ``status`` 410).
        """
        query = {**(params or {}), "watch": "true"}
        if idle_timeout is None:
            seconds = query.get("timeoutSeconds")
            idle_timeout = float(seconds) + self.timeout if seconds else 300.0
        for attempt in (0, 1):
            headers = await self._headers()
            session = self._get_session()
            kwargs: dict[str, Any] = {
                "headers": headers,
                "params": query,
                "proxy": self._proxy,
                # No overall limit on a stream; each read has ``idle_timeout``.
                "timeout": self._aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            }
            if self.config.tls_server_name:
                kwargs["server_hostname"] = self.config.tls_server_name
            try:
                with anyio.fail_after(self.timeout):
                    resp = await session.request("GET", self.config.server + path, **kwargs)
            except TimeoutError as exc:
                raise TargetError(
                    f"watch {path} timed out after {self.timeout:g}s", status=None
                ) from exc
            except self._aiohttp.ClientError as exc:
                raise self._unreachable(exc) from exc
            async with resp:
                if resp.status == 401 and attempt == 0 and self._refreshable():
                    self._exec_token = self._file_token = None
                    continue
                if resp.status >= 400:
                    raw = await _read_bounded(resp, MAX_WATCH_LINE)
                    raise self._error(resp.status, _json_object(raw), "GET", path, query)
                async for event in self._events(resp, path, idle_timeout):
                    yield event
            return

    async def _events(
        self, resp: aiohttp.ClientResponse, path: str, idle_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The newline-delimited events of one watch response, each line bounded."""
        buffer = bytearray()
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await resp.content.readany()
            except TimeoutError as exc:
                raise TargetError(
                    f"watch {path}: nothing received for {idle_timeout:g}s", status=None
                ) from exc
            except self._aiohttp.ClientError as exc:
                raise self._unreachable(exc) from exc
            if not chunk:
                return  # the server ended the watch; a partial line is dropped
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                if end > MAX_WATCH_LINE:
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if line.strip():
                    yield _watch_event(line, path)
            if buffer.find(b"\n") > MAX_WATCH_LINE or len(buffer) > MAX_WATCH_LINE:
                raise TargetError(
                    f"watch {path}: an event longer than {MAX_WATCH_LINE} bytes", status=None
                )

    def _error(
        self,
        status: int,
        payload: Mapping[str, Any],
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> TargetError:
        message = str(payload.get("message") or payload.get("reason") or f"{method} {path} failed")
        message = redact_text(message, self._secrets())
        if status == 404:
            return TargetNotFound(message, status=status)
        if status == 409:
            return TargetConflict(message, status=status)
        if status == 403:
            verb, resource = request_verb(method, path, params)
            if f"cannot {verb}" not in message:
                message = f"forbidden: cannot {verb} {resource}: {message}"
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


def request_verb(
    method: str, path: str, params: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The authorization verb and resource of a request: ``("watch", "scaledobjects.keda.sh")``,
    ``("update", "scaledobjects.keda.sh/status")``, ``("get", "secrets")``."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    group = parts[1] if parts[:1] == ["apis"] and len(parts) > 2 else ""
    rest = parts[3:] if parts[:1] == ["apis"] else parts[2:]
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:]
    plural = rest[0] if rest else ""
    named = len(rest) > 1
    resource = (f"{plural}.{group}" if group else plural) + (f"/{rest[2]}" if len(rest) > 2 else "")
    if method == "GET":
        query = params or {}
        if str(query.get("watch", "")).lower() in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if named else "list"
    elif method == "DELETE" and not named:
        verb = "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return verb, resource or path


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {"message": raw[:200].decode(errors="replace")}
    if not isinstance(payload, dict):
        payload = {"items": payload}
    return payload


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    while len(data) <= limit:
        chunk = await resp.content.readany()
        if not chunk:
            break
        data += chunk
    return bytes(data[:limit])


def _watch_event(line: bytes, path: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise TargetError(f"watch {path}: a line that is not JSON", status=None) from exc
    if not (isinstance(event, dict) and isinstance(event.get("type"), str)):
        raise TargetError(f"watch {path}: an event without a type", status=None)
    if not isinstance(event.get("object"), dict):
        raise TargetError(f"watch {path}: a {event['type']} event without an object", status=None)
    return event
