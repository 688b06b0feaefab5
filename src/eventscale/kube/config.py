"""Where the Kubernetes API is and how to authenticate to it: kubeconfig files, the
in-cluster service account, exec credential plugins and the TLS setup they imply.

docs/targets/kubernetes.md lists what is supported (client-go's
``tools/clientcmd`` is the reference for the kubeconfig format).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import re
import ssl
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from eventscale._optional import import_optional
from eventscale.errors import ConfigError
from eventscale.redaction import Secret, redact_url

__all__ = (
    "ExecCredentialPlugin",
    "KubeConfig",
    "SERVICE_ACCOUNT_DIR",
    "b64decode",
    "environment_proxy",
    "exec_cluster_info",
    "kubeconfig_paths",
    "merge_kubeconfigs",
    "proxy_errors",
    "socks_connector",
    "ssl_context",
)

#: The ``proxy-url`` schemes (client-go's http, https and socks5; socks5h as well).
_PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h")
#: Go's x/net/proxy default port of a SOCKS5 proxy URL without one.
_SOCKS_PORT: Final = 1080

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

    Cloud clusters (EKS, GKE, AKS) authenticate this way. The plugin may print a token
    or a client certificate and key; either is cached until its ``expirationTimestamp``.
    A ``command`` holding a path separator was resolved against the kubeconfig's folder
    (as client-go does); a bare name is looked up in ``PATH``. ``install_hint`` is shown
    when the command cannot be found; ``provide_cluster_info`` passes the cluster
    (server, CA, ``extensions[client.authentication.k8s.io/exec]``) in
    ``KUBERNETES_EXEC_INFO``.
    """

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str | None = None
    provide_cluster_info: bool = False
    cluster_config: Any = None


@attrs.frozen(kw_only=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it.

    Build one with :meth:`load`, :meth:`from_kubeconfig` or :meth:`in_cluster`.
    Credentials are :class:`~eventscale.redaction.Secret` and never shown in ``repr``.
    ``token_file`` is re-read every minute and after a 401 (in-cluster tokens are
    rotated). ``proxy_url`` is the cluster's ``proxy-url``; without one,
    :func:`environment_proxy` (``HTTPS_PROXY``, ``NO_PROXY``) decides.
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
    proxy_url: str | None = attrs.field(
        default=None, repr=lambda url: repr(redact_url(url)) if url else "None"
    )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, context: str | None = None
    ) -> KubeConfig:
        """The kubeconfig at ``path``, else the files of ``$KUBECONFIG`` or
        ``~/.kube/config``; in a pod where none of those exists (and no ``context`` is
        given), the in-cluster config, as kubectl's deferred loading does."""
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if (
            path is None
            and context is None
            and in_pod
            and (SERVICE_ACCOUNT_DIR / "token").exists()
            and not any(f.exists() for f in kubeconfig_paths())
        ):
            return cls.in_cluster(SERVICE_ACCOUNT_DIR)
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
        """Read kubeconfig files as kubectl does and select ``context`` (default: the
        ``current-context``).

        ``path`` is the one file to read (kubectl's ``--kubeconfig``: it must exist);
        without it every file of ``$KUBECONFIG`` is read and merged with client-go's
        rules (:func:`merge_kubeconfigs`; missing files are skipped), else
        ``~/.kube/config``. File references (``certificate-authority``, ``client-key``,
        ``tokenFile``, an exec ``command`` with a path separator) are resolved against
        the folder of the file that holds them.
        """
        if path is not None:
            files = [Path(path).expanduser()]
            docs = [(_read_kubeconfig(files[0]), files[0].parent)]
        else:
            files = kubeconfig_paths()
            docs = [(_read_kubeconfig(f), f.parent) for f in files if f.exists()]
            if not docs:
                shown = ", ".join(str(f) for f in files)
                raise ConfigError("no kubeconfig file exists", path=shown)
        return cls._from_doc(merge_kubeconfigs(docs), context)

    @classmethod
    def _from_doc(cls, doc: Mapping[str, Any], context: str | None) -> KubeConfig:
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
        user_name = ctx.get("user")
        user = named("users", user_name) if user_name else {}
        where = f"users[{user_name}]"

        def read(value: Any, field: str) -> bytes:
            try:
                return Path(str(value)).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {value}: {exc.strerror}", path=field) from None

        server = cluster.get("server")
        if not server:
            raise ConfigError(f"cluster {cluster_name!r} has no server", path="clusters")
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = b64decode(cluster["certificate-authority-data"], "certificate-authority-data")
        elif cluster.get("certificate-authority"):
            ca = read(cluster["certificate-authority"], f"clusters[{cluster_name}]")
        cert: bytes | None = None
        if user.get("client-certificate-data"):
            cert = b64decode(user["client-certificate-data"], "client-certificate-data")
        elif user.get("client-certificate"):
            cert = read(user["client-certificate"], where)
        key: Secret | None = None
        if user.get("client-key-data"):
            key = Secret(b64decode(user["client-key-data"], "client-key-data").decode())
        elif user.get("client-key"):
            key = Secret(read(user["client-key"], where).decode())
        token_file = user.get("tokenFile")
        plugin: ExecCredentialPlugin | None = None
        if isinstance(user.get("exec"), dict):
            plugin = _exec_plugin(user["exec"], cluster, f"{where}.exec")
        provider = user.get("auth-provider")
        if provider:
            name = provider.get("name") if isinstance(provider, dict) else None
            raise ConfigError(
                f"kubeconfig auth-provider {name!r} is not supported (kubectl dropped the "
                "built-in providers too); use an exec plugin (for oidc: kubelogin, "
                "'kubectl oidc-login') or a token",
                path=f"{where}.auth-provider",
            )
        proxy = cluster.get("proxy-url")
        if proxy:
            proxy = str(proxy)
            if urllib.parse.urlsplit(proxy).scheme not in _PROXY_SCHEMES:
                raise ConfigError(
                    f"proxy-url {redact_url(proxy)!r}: the scheme must be http, https, "
                    "socks5 or socks5h",
                    path=f"clusters[{cluster_name}].proxy-url",
                )
        return cls(
            server=str(server).rstrip("/"),
            namespace=str(ctx.get("namespace") or "default"),
            context=str(ctx_name),
            ca_data=ca,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
            tls_server_name=cluster.get("tls-server-name"),
            token=Secret(str(user["token"])) if user.get("token") else None,
            token_file=str(token_file) if token_file else None,
            username=user.get("username"),
            password=Secret(str(user["password"])) if user.get("password") else None,
            client_cert_data=cert,
            client_key_data=key,
            exec_plugin=plugin,
            proxy_url=proxy or None,
        )


# Where the loader keeps per-file values (client-go's LocationOfOrigin): resolved below.
_CLUSTER_FILES: Final = ("certificate-authority",)
_USER_FILES: Final = ("client-certificate", "client-key", "tokenFile")
_EXEC_CLUSTER_CONFIG: Final = "client.authentication.k8s.io/exec"


def kubeconfig_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files kubectl reads, in precedence order: each of ``$KUBECONFIG`` (empty
    entries and repeats dropped), else ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    seen: list[Path] = []
    for item in env.get("KUBECONFIG", "").split(os.pathsep):
        if item and Path(item).expanduser() not in seen:
            seen.append(Path(item).expanduser())
    return seen or [Path.home() / ".kube" / "config"]


def _read_kubeconfig(file: Path) -> dict[str, Any]:
    try:
        if file.stat().st_size > _MAX_KUBECONFIG:
            raise ConfigError(f"kubeconfig is larger than {_MAX_KUBECONFIG} bytes", path=str(file))
        doc = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig: {exc.strerror}", path=str(file)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig is not valid YAML: {exc}", path=str(file)) from exc
    except RecursionError:
        raise ConfigError("kubeconfig is nested too deeply", path=str(file)) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError("kubeconfig is not a mapping", path=str(file))
    return doc


_MAX_KUBECONFIG: Final = 4 * 1024 * 1024


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def merge_kubeconfigs(docs: Sequence[tuple[Mapping[str, Any], Path]]) -> dict[str, Any]:
    """Merge kubeconfig documents as client-go's ``ClientConfigLoadingRules.Load`` does.

    ``docs`` are ``(document, folder of its file)`` in precedence order. Each file's
    relative paths are first made absolute against its own folder; then the first file
    that defines a cluster, user or context of a name supplies that entry whole, and
    the first file that sets ``current-context`` supplies it.
    """
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    for doc, base in docs:
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for section, files in (("clusters", _CLUSTER_FILES), ("users", _USER_FILES)):
            for item in doc.get(section) or ():
                if not isinstance(item, dict):
                    continue
                if any(seen.get("name") == item.get("name") for seen in merged[section]):
                    continue
                body = dict(item.get(section[:-1]) or {})
                for field in files:
                    if field in body:
                        body[field] = _absolute(body[field], base)
                command = (body.get("exec") or {}).get("command")
                if isinstance(command, str) and os.sep in command:
                    body["exec"] = {**body["exec"], "command": _absolute(command, base)}
                merged[section].append({"name": item.get("name"), section[:-1]: body})
        for item in doc.get("contexts") or ():
            if isinstance(item, dict) and not any(
                seen.get("name") == item.get("name") for seen in merged["contexts"]
            ):
                merged["contexts"].append(item)
    return merged


def _exec_plugin(
    spec: Mapping[str, Any], cluster: Mapping[str, Any], where: str
) -> ExecCredentialPlugin:
    if not spec.get("command"):
        raise ConfigError("an exec plugin needs a command", path=f"{where}.command")
    extensions = cluster.get("extensions") or ()
    cluster_config = next(
        (
            e.get("extension")
            for e in extensions
            if isinstance(e, dict) and e.get("name") == _EXEC_CLUSTER_CONFIG
        ),
        None,
    )
    return ExecCredentialPlugin(
        command=str(spec["command"]),
        args=tuple(str(a) for a in spec.get("args") or ()),
        env={str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or ()},
        api_version=str(spec.get("apiVersion", "client.authentication.k8s.io/v1")),
        install_hint=str(spec["installHint"]) if spec.get("installHint") else None,
        provide_cluster_info=bool(spec.get("provideClusterInfo", False)),
        cluster_config=cluster_config,
    )


def exec_cluster_info(config: KubeConfig) -> dict[str, Any]:
    """The ``spec.cluster`` of ``KUBERNETES_EXEC_INFO`` for a plugin that asked for it
    (``provideClusterInfo``): the server, its CA and the plugin's cluster config."""
    info: dict[str, Any] = {"server": config.server}
    if config.tls_server_name:
        info["tls-server-name"] = config.tls_server_name
    if config.insecure_skip_tls_verify:
        info["insecure-skip-tls-verify"] = True
    if config.ca_data is not None:
        info["certificate-authority-data"] = base64.b64encode(config.ca_data).decode()
    if config.proxy_url:
        info["proxy-url"] = config.proxy_url
    plugin = config.exec_plugin
    if plugin is not None and plugin.cluster_config is not None:
        info["config"] = plugin.cluster_config
    return info


_HOST_PORT: Final = re.compile(r"(\[[^\]]*\]|[^:]*):(\d+)")


def _no_proxy_matches(host: str, port: int, entries: str) -> bool:
    """Go's ``NO_PROXY`` rules (golang.org/x/net/http/httpproxy): ``*``, CIDRs, IPs,
    ``host[:port]`` (the host and its subdomains) and ``.domain[:port]`` (subdomains)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in entries.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        entry_host, entry_port = entry, None
        hp = _HOST_PORT.fullmatch(entry)
        if hp is not None:
            entry_host, entry_port = hp.group(1), int(hp.group(2))
        entry_host = entry_host.strip("[]")
        if entry_port is not None and entry_port != port:
            continue
        try:
            entry_ip = ipaddress.ip_address(entry_host)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            if ip == entry_ip:
                return True
            continue
        entry_host = entry_host.removeprefix("*")
        if entry_host.startswith("."):
            if host.endswith(entry_host):
                return True
        elif host == entry_host or host.endswith("." + entry_host):
            return True
    return False


def environment_proxy(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy Go's ``http.ProxyFromEnvironment`` picks for ``url`` (as kubectl does
    without a ``proxy-url``): ``HTTPS_PROXY`` for https, ``HTTP_PROXY`` for http, none
    for ``localhost``, loopback addresses and ``NO_PROXY`` matches."""
    env = os.environ if environ is None else environ
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    names = (
        ("HTTPS_PROXY", "https_proxy") if parts.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    )
    proxy = next((env[n] for n in names if env.get(n)), None)
    if not proxy or host == "localhost":
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return None
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    if _no_proxy_matches(host, port, no_proxy):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _socks(proxy_url: str | None) -> bool:
    return urllib.parse.urlsplit(proxy_url or "").scheme in ("socks5", "socks5h")


def socks_connector(proxy_url: str | None, **kwargs: Any) -> Any:
    """An aiohttp connector that opens every connection through the SOCKS5 proxy
    ``proxy_url`` (``socks5://`` or ``socks5h://``, optional ``user:password@``), or
    ``None`` when ``proxy_url`` is not a SOCKS proxy (aiohttp's own ``proxy=`` is then used).

    aiohttp-socks (the ``kubernetes`` extra) speaks the protocol. Host names are sent to
    the proxy for it to resolve, for both schemes, as kubectl does (Go's x/net/proxy
    dialer passes the name on); a URL without a port uses 1080, as Go does. ``kwargs``
    go to the connector (``ssl``, ``limit``...).
    """
    if not _socks(proxy_url):
        return None
    assert proxy_url is not None
    socks = import_optional("aiohttp_socks", extra="kubernetes", what="a socks5:// proxy-url")
    parts = urllib.parse.urlsplit(proxy_url)
    return socks.ProxyConnector(
        proxy_type=socks.ProxyType.SOCKS5,
        host=parts.hostname or "",
        port=parts.port or _SOCKS_PORT,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
        rdns=True,
        **kwargs,
    )


def proxy_errors(proxy_url: str | None) -> tuple[type[Exception], ...]:
    """What a connection through ``proxy_url`` raises besides aiohttp's ``ClientError``
    (aiohttp-socks' own errors for a SOCKS proxy that is down or refuses)."""
    if not _socks(proxy_url):
        return ()
    socks = import_optional("aiohttp_socks", extra="kubernetes", what="a socks5:// proxy-url")
    return (socks.ProxyError, socks.ProxyConnectionError, socks.ProxyTimeoutError)


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
