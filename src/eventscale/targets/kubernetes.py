"""The Kubernetes target: any resource with a ``/scale`` subresource.

Deployments, StatefulSets, ReplicaSets and custom resources (named by ``apiVersion``
and ``kind``, as in KEDA's ``scaleTargetRef``) are read and written through their
``autoscaling/v1`` ``Scale`` subresource. A write carries the ``resourceVersion`` it
read; a 409 conflict is retried with a fresh read (bounded, with backoff) before it
becomes :class:`~eventscale.errors.TargetConflict`.

The API is spoken through a small REST layer on aiohttp (:class:`KubeClient`),
configured from a kubeconfig file (path and context) or the in-cluster service
account (:class:`KubeConfig`). docs/targets/kubernetes.md explains why eventscale does
not use one of the Kubernetes client libraries.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import random
import re
import ssl
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
import yaml

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, TargetConflict, TargetError, TargetNotFound
from eventscale.redaction import Secret, redact_text
from eventscale.targets import TargetBase

if TYPE_CHECKING:
    import aiohttp

    from eventscale.spec import ScaleTargetRef

__all__ = (
    "ExecCredentialPlugin",
    "KubeClient",
    "KubeConfig",
    "KubernetesTarget",
    "Scale",
)

log = logging.getLogger("eventscale.targets.kubernetes")

_NEEDS_CLEANUP_CLOSED: Final = sys.version_info < (3, 12, 8) or (
    (3, 13, 0) <= sys.version_info < (3, 13, 1)
)

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> plural for the built-in kinds that have a scale subresource.
_KNOWN_PLURALS: Final[Mapping[tuple[str, str], str]] = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("", "ReplicationController"): "replicationcontrollers",
}


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("is not valid base64", path=field) from exc


# --------------------------------------------------------------------------- config


@attrs.frozen(kw_only=True)
class ExecCredentialPlugin:
    """A kubeconfig ``user.exec`` entry: a command that prints an ``ExecCredential``.

    Cloud clusters (EKS, GKE, AKS) authenticate this way. Only token credentials are
    supported; the token is cached until its ``expirationTimestamp``.
    """

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"


@attrs.frozen(kw_only=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it.

    Build one with :meth:`load`, :meth:`from_kubeconfig` or :meth:`in_cluster`.
    Credentials are :class:`~eventscale.redaction.Secret` and never shown in ``repr``.
    ``token_file`` is re-read every minute (in-cluster tokens are rotated).
    """

    server: str
    namespace: str = "default"
    context: str | None = None
    ca_data: bytes | None = attrs.field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    token: Secret | None = None
    token_file: str | None = None
    username: str | None = None
    password: Secret | None = None
    client_cert_data: bytes | None = attrs.field(default=None, repr=False)
    client_key_data: Secret | None = None
    exec_plugin: ExecCredentialPlugin | None = None

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, context: str | None = None
    ) -> KubeConfig:
        """The in-cluster config when running in a pod (and no path/context is given),
        else the kubeconfig at ``path``, ``$KUBECONFIG`` or ``~/.kube/config``."""
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if path is None and context is None and in_pod and (SERVICE_ACCOUNT_DIR / "token").exists():
            return cls.in_cluster()
        return cls.from_kubeconfig(path, context=context)

    @classmethod
    def in_cluster(cls, root: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR) -> KubeConfig:
        """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``PORT``, token, CA, namespace."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ConfigError(
                "not running in a cluster: KUBERNETES_SERVICE_HOST is not set",
                path="KUBERNETES_SERVICE_HOST",
            )
        base = Path(root)
        token_file = base / "token"
        if not token_file.exists():
            raise ConfigError(f"service account token {token_file} does not exist", path="token")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6
        ca_file = base / "ca.crt"
        ns_file = base / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        return cls(
            server=f"https://{host}:{port}",
            namespace=namespace or "default",
            ca_data=ca_file.read_bytes() if ca_file.exists() else None,
            token_file=str(token_file),
        )

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str] | None = None, *, context: str | None = None
    ) -> KubeConfig:
        """Read a kubeconfig file and select ``context`` (default: its ``current-context``).

        ``path`` defaults to the first file of ``$KUBECONFIG``, else ``~/.kube/config``.
        File references (``certificate-authority``, ``client-key``, ``tokenFile``) are
        resolved relative to the kubeconfig's directory.
        """
        if path is None:
            env = os.environ.get("KUBECONFIG", "")
            first = next((p for p in env.split(os.pathsep) if p), None)
            path = first or Path.home() / ".kube" / "config"
        file = Path(path).expanduser()
        try:
            doc = yaml.safe_load(file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read kubeconfig: {exc.strerror}", path=str(file)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"kubeconfig is not valid YAML: {exc}", path=str(file)) from exc
        if not isinstance(doc, dict):
            raise ConfigError("kubeconfig is not a mapping", path=str(file))
        return cls._from_doc(doc, file.parent, context)

    @classmethod
    def _from_doc(cls, doc: Mapping[str, Any], base: Path, context: str | None) -> KubeConfig:
        def named(section: str, name: str) -> Mapping[str, Any]:
            for item in doc.get(section) or ():
                if isinstance(item, dict) and item.get("name") == name:
                    body = item.get(section[:-1])
                    return body if isinstance(body, dict) else {}
            raise ConfigError(f"no {section[:-1]} named {name!r} in the kubeconfig", path=section)

        ctx_name = context or doc.get("current-context")
        if not ctx_name:
            raise ConfigError(
                "the kubeconfig has no current-context; pass a context", path="current-context"
            )
        ctx = named("contexts", ctx_name)
        cluster_name = ctx.get("cluster")
        if not cluster_name:
            raise ConfigError(f"context {ctx_name!r} names no cluster", path="contexts")
        cluster = named("clusters", cluster_name)
        user = named("users", ctx["user"]) if ctx.get("user") else {}

        def read(value: Any) -> bytes:
            return (base / str(value)).expanduser().read_bytes()

        server = cluster.get("server")
        if not server:
            raise ConfigError(f"cluster {cluster_name!r} has no server", path="clusters")
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = _b64(cluster["certificate-authority-data"], "certificate-authority-data")
        elif cluster.get("certificate-authority"):
            ca = read(cluster["certificate-authority"])
        cert: bytes | None = None
        if user.get("client-certificate-data"):
            cert = _b64(user["client-certificate-data"], "client-certificate-data")
        elif user.get("client-certificate"):
            cert = read(user["client-certificate"])
        key: Secret | None = None
        if user.get("client-key-data"):
            key = Secret(_b64(user["client-key-data"], "client-key-data").decode())
        elif user.get("client-key"):
            key = Secret(read(user["client-key"]).decode())
        token_file = user.get("tokenFile")
        plugin: ExecCredentialPlugin | None = None
        if isinstance(user.get("exec"), dict):
            spec = user["exec"]
            plugin = ExecCredentialPlugin(
                command=str(spec["command"]),
                args=tuple(str(a) for a in spec.get("args") or ()),
                env={str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or ()},
                api_version=str(spec.get("apiVersion", "client.authentication.k8s.io/v1")),
            )
        if user.get("auth-provider"):
            raise ConfigError(
                "kubeconfig auth-provider plugins are not supported; use an exec plugin or a token",
                path=f"users[{ctx['user']}].auth-provider",
            )
        return cls(
            server=str(server).rstrip("/"),
            namespace=str(ctx.get("namespace") or "default"),
            context=str(ctx_name),
            ca_data=ca,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
            tls_server_name=cluster.get("tls-server-name"),
            token=Secret(str(user["token"])) if user.get("token") else None,
            token_file=str(base / token_file) if token_file else None,
            username=user.get("username"),
            password=Secret(str(user["password"])) if user.get("password") else None,
            client_cert_data=cert,
            client_key_data=key,
            exec_plugin=plugin,
        )


def _ssl_context(config: KubeConfig) -> ssl.SSLContext | bool:
    if not config.server.startswith("https://"):
        return False
    if config.insecure_skip_tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_data is not None:
        ctx = ssl.create_default_context(cadata=config.ca_data.decode())
    else:
        ctx = ssl.create_default_context()
    if config.client_cert_data is not None and config.client_key_data is not None:
        # The ssl module loads a key pair only from files: write a private temp file,
        # load it and delete it at once.
        fd, name = tempfile.mkstemp(prefix="eventscale-kube-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(config.client_cert_data)
                handle.write(b"\n")
                handle.write(config.client_key_data.reveal().encode())
            ctx.load_cert_chain(name)
        except ssl.SSLError as exc:
            raise ConfigError("the client certificate or key is invalid", path="users") from exc
        finally:
            os.unlink(name)
    return ctx


# --------------------------------------------------------------------------- client


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
        self._ssl = _ssl_context(config)
        self._file_token: tuple[float, Secret] | None = None
        self._exec_token: tuple[float, Secret] | None = None

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

    async def _run_exec_plugin(self, plugin: ExecCredentialPlugin) -> tuple[float, Secret]:
        info = {
            "apiVersion": plugin.api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
        env = {**os.environ, **plugin.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            with anyio.fail_after(self.timeout):
                result = await anyio.run_process(
                    [plugin.command, *plugin.args], env=env, check=False
                )
        except TimeoutError as exc:
            raise TargetError(f"the exec credential plugin {plugin.command!r} timed out") from exc
        except OSError as exc:
            raise TargetError(
                f"cannot run exec credential plugin {plugin.command!r}: {exc}"
            ) from exc
        if result.returncode != 0:
            raise TargetError(
                f"the exec credential plugin {plugin.command!r} failed "
                f"with exit code {result.returncode}"
            )
        try:
            status = json.loads(result.stdout)["status"]
            token = Secret(str(status["token"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(
                f"the exec credential plugin {plugin.command!r} printed no token credential"
            ) from exc
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
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=16, enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _secrets(self) -> list[Secret | None]:
        cached = [c[1] for c in (self._file_token, self._exec_token) if c is not None]
        return [self.config.token, self.config.password, *cached]

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
            except self._aiohttp.ClientError as exc:
                text = redact_text(str(exc), self._secrets())
                raise TargetError(
                    f"cannot reach the Kubernetes API at {self.config.server}: {text}"
                ) from exc
            if status == 401 and attempt == 0 and self.config.exec_plugin is not None:
                self._exec_token = None  # expired early: ask the plugin again
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
        session = self._get_session()
        headers = await self._headers()
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
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


# --------------------------------------------------------------------------- target


@attrs.frozen(kw_only=True)
class Scale:
    """An ``autoscaling/v1`` ``Scale`` as read: desired and observed replicas."""

    replicas: int
    status_replicas: int
    selector: str | None
    resource_version: str


class KubernetesTarget(TargetBase):
    """Scales one Kubernetes resource through its ``/scale`` subresource.

    :param name: the resource's name (``scaleTargetRef.name``).
    :param namespace: its namespace; default: the configuration's namespace.
    :param kind: ``Deployment`` by default; any kind whose resource has ``/scale``.
    :param api_version: ``apps/v1`` by default; ``group/version`` of a custom resource.
    :param plural: the resource's plural name; found by API discovery when not given
        (built-in workload kinds need no lookup).
    :param config: where the API is; default: :meth:`KubeConfig.load` (in-cluster, or
        ``kubeconfig``/``context``).
    :param client: a :class:`KubeClient` to share between targets (not closed here).
    :param env_source_container_name: the container :meth:`container_env` reads by
        default (KEDA's ``envSourceContainerName``; default: the first container).
    :param timeout: seconds allowed for each API call.
    :param conflict_retries: how many times a 409 conflict is retried with a fresh read.
    :param backoff: the first retry delay in seconds; it doubles each time up to
        ``max_backoff``, with jitter.
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: str | None = None,
        kind: str = "Deployment",
        api_version: str = "apps/v1",
        plural: str | None = None,
        config: KubeConfig | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        client: KubeClient | None = None,
        env_source_container_name: str | None = None,
        timeout: float = 10.0,
        conflict_retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        if not name:
            raise ConfigError("the target name must not be empty", path="scaleTargetRef.name")
        if conflict_retries < 0:
            raise ConfigError("conflict_retries must be >= 0", path="conflict_retries")
        self._owns_client = client is None
        if client is None:
            client = KubeClient(config or KubeConfig.load(kubeconfig, context), timeout=timeout)
        self.client = client
        self.name = name
        self.namespace = namespace or client.namespace
        self.kind = kind
        self.api_version = api_version
        self.group = api_version.rpartition("/")[0] if "/" in api_version else ""
        self.env_source_container_name = env_source_container_name
        self.timeout = timeout
        self.conflict_retries = conflict_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._plural = plural or _KNOWN_PLURALS.get((self.group, kind))

    @classmethod
    def from_ref(
        cls, ref: ScaleTargetRef, *, namespace: str | None = None, **kwargs: Any
    ) -> KubernetesTarget:
        """A target for KEDA's ``scaleTargetRef`` (with its ``envSourceContainerName``)."""
        return cls(
            ref.name,
            namespace=namespace,
            kind=ref.kind,
            api_version=ref.api_version,
            env_source_container_name=ref.env_source_container_name,
            **kwargs,
        )

    @property
    def identity(self) -> str:
        """``kind/namespace/name``, as errors name the target."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return (
            f"KubernetesTarget({self.identity!r}, api_version={self.api_version!r}, "
            f"server={self.client.config.server!r})"
        )

    async def _resource_path(self) -> str:
        if self._plural is None:
            self._plural = await self._discover_plural()
        return (
            f"{api_prefix(self.api_version)}/namespaces/{self.namespace}/{self._plural}/{self.name}"
        )

    async def _discover_plural(self) -> str:
        try:
            listing = await self.client.request("GET", api_prefix(self.api_version))
        except TargetNotFound as exc:
            raise TargetNotFound(
                f"the API group version {self.api_version!r} is not served",
                target=self.identity,
                status=404,
            ) from exc
        resources = listing.get("resources") or []
        for res in resources:
            if res.get("kind") == self.kind and "/" not in str(res.get("name", "")):
                plural = str(res["name"])
                if not any(r.get("name") == f"{plural}/scale" for r in resources):
                    raise TargetError(
                        f"{self.kind} ({self.api_version}) has no scale subresource",
                        target=self.identity,
                    )
                return plural
        raise TargetNotFound(
            f"kind {self.kind!r} is not served by {self.api_version!r}",
            target=self.identity,
            status=404,
        )

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await self.client.request(method, path, body=body, timeout=self.timeout)
        except TargetError as exc:
            if exc.target is None:
                exc.target = self.identity
            raise

    async def get_scale(self) -> Scale:
        """Read the ``Scale`` subresource."""
        raw = await self._call("GET", await self._resource_path() + "/scale")
        return self._parse_scale(raw)

    @staticmethod
    def _parse_scale(raw: Mapping[str, Any]) -> Scale:
        spec = raw.get("spec") or {}
        status = raw.get("status") or {}
        meta = raw.get("metadata") or {}
        return Scale(
            replicas=int(spec.get("replicas") or 0),
            status_replicas=int(status.get("replicas") or 0),
            selector=status.get("selector"),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    async def get_replicas(self) -> int:
        """``spec.replicas`` of the resource's ``Scale``."""
        return (await self.get_scale()).replicas

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        """Write ``spec.replicas`` with the ``resourceVersion`` just read; retry conflicts."""
        if type(replicas) is not int or replicas < 0:
            raise ValueError(f"replicas must be an int >= 0, got {replicas!r}")
        path = await self._resource_path() + "/scale"
        delay = self.backoff
        last: TargetConflict | None = None
        for attempt in range(self.conflict_retries + 1):
            if attempt:
                await anyio.sleep(min(delay, self.max_backoff) * random.uniform(0.5, 1.0))
                delay *= 2
            scale = await self.get_scale()
            if scale.replicas == replicas:
                return
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": scale.resource_version,
                },
                "spec": {"replicas": replicas},
            }
            try:
                await self._call("PUT", path, body)
            except TargetConflict as exc:
                last = exc
                log.debug("%s: conflict on attempt %d, retrying", self.identity, attempt + 1)
                continue
            log.info(
                "%s: scaled %d -> %d%s",
                self.identity,
                scale.replicas,
                replicas,
                f" ({reason})" if reason else "",
            )
            return
        raise TargetConflict(
            f"writing the scale still conflicted after {self.conflict_retries + 1} attempts",
            target=self.identity,
            status=409,
        ) from last

    # -- env resolution for ...FromEnv -------------------------------------------------

    async def container_env(self, container: str | None = None) -> dict[str, str]:
        """The environment of a container of the resource's pod template.

        It resolves what KEDA resolves for ``...FromEnv`` parameters: ``envFrom``
        (ConfigMaps and Secrets, with ``prefix``), then ``env`` entries with ``value``
        (``$(VAR)`` references expanded) or ``valueFrom`` ``secretKeyRef`` /
        ``configMapKeyRef``. Other ``valueFrom`` sources (fieldRef, resourceFieldRef)
        are skipped. ``container`` defaults to ``env_source_container_name``, else the
        first container. The values may be secrets: do not log them.
        """
        obj = await self._call("GET", await self._resource_path())
        containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        )
        if not isinstance(containers, list) or not containers:
            raise TargetError(
                f"{self.kind} has no pod template with containers", target=self.identity
            )
        wanted = container or self.env_source_container_name
        chosen: Mapping[str, Any] | None = containers[0]
        if wanted:
            chosen = next((c for c in containers if c.get("name") == wanted), None)
            if chosen is None:
                raise TargetError(
                    f"no container named {wanted!r} in the pod template", target=self.identity
                )
        assert chosen is not None
        env: dict[str, str] = {}
        for source in chosen.get("envFrom") or ():
            prefix = str(source.get("prefix") or "")
            for ref_kind in ("configMapRef", "secretRef"):
                ref = source.get(ref_kind)
                if not ref:
                    continue
                data = await self._referenced_data(
                    ref_kind, str(ref.get("name")), bool(ref.get("optional"))
                )
                for key, value in data.items():
                    env[prefix + key] = value
        for item in chosen.get("env") or ():
            name = str(item.get("name"))
            if "value" in item:
                env[name] = _expand(str(item["value"]), env)
                continue
            value_from = item.get("valueFrom") or {}
            for ref_kind in ("secretKeyRef", "configMapKeyRef"):
                ref = value_from.get(ref_kind)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                data = await self._referenced_data(ref_kind, str(ref.get("name")), optional)
                key = str(ref.get("key"))
                if key in data:
                    env[name] = data[key]
                elif not optional:
                    raise TargetError(
                        f"env {name}: key {key!r} is missing from "
                        f"{ref_kind[:-6]} {ref.get('name')!r}",
                        target=self.identity,
                    )
        return env

    async def _referenced_data(self, ref_kind: str, name: str, optional: bool) -> dict[str, str]:
        secret = ref_kind.startswith("secret")
        plural = "secrets" if secret else "configmaps"
        try:
            obj = await self._call("GET", f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except TargetNotFound:
            if optional:
                return {}
            raise
        data: dict[str, str] = {}
        if secret:
            for key, value in (obj.get("data") or {}).items():
                data[key] = _b64(str(value), f"{plural}/{name}.data.{key}").decode(errors="replace")
            data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        else:
            data.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        return data

    async def aclose(self) -> None:
        """Close the HTTP session if this target created its client."""
        if self._owns_client:
            await self.client.aclose()


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes a ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(sub, value)
