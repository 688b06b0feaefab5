"""Where the Kubernetes API is and how to authenticate to it: kubeconfig files, the
in-cluster service account, exec credential plugins and the TLS setup they imply.

docs/targets/kubernetes.md lists what is supported (client-go's
``tools/clientcmd`` is the reference for the kubeconfig format).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from eventscale.errors import ConfigError
from eventscale.redaction import Secret

__all__ = (
    "ExecCredentialPlugin",
    "KubeConfig",
    "SERVICE_ACCOUNT_DIR",
    "b64decode",
    "ssl_context",
)

#: Where a pod's service account token, CA and namespace are mounted.
SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def b64decode(value: str, field: str) -> bytes:
    """Strict base64 of a kubeconfig or Secret field; :class:`ConfigError` naming ``field``."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("is not valid base64", path=field) from exc


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
            ca = b64decode(cluster["certificate-authority-data"], "certificate-authority-data")
        elif cluster.get("certificate-authority"):
            ca = read(cluster["certificate-authority"])
        cert: bytes | None = None
        if user.get("client-certificate-data"):
            cert = b64decode(user["client-certificate-data"], "client-certificate-data")
        elif user.get("client-certificate"):
            cert = read(user["client-certificate"])
        key: Secret | None = None
        if user.get("client-key-data"):
            key = Secret(b64decode(user["client-key-data"], "client-key-data").decode())
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


def ssl_context(config: KubeConfig) -> ssl.SSLContext | bool:
    """The TLS setup for ``config``: ``False`` for plain HTTP, else a context with its CA,
    client certificate and ``insecure-skip-tls-verify``."""
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
