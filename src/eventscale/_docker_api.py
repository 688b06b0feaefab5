"""A small private client for the Docker Engine API, shared by the Docker targets.

Both the Docker target (:mod:`eventscale.targets.docker`) and the Docker ScaledJob
target (:mod:`eventscale.jobs.docker`) speak the Engine API with aiohttp over the
daemon's unix socket, ``tcp://`` (with TLS) or ``ssh://`` (``docker system dial-stdio``
over the ssh binary, :mod:`eventscale._docker_ssh`). This module holds what they share:
finding the daemon as the ``docker`` CLI does (:func:`resolve_endpoint`: ``DOCKER_HOST``,
``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, Docker contexts; see docs/targets/docker.md),
one lazily opened session, a request helper that bounds every call with a timeout and
turns transport failures and error statuses into :class:`~eventscale.errors.TargetError`,
and the few container calls both make.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
import attrs

import eventscale._docker_ssh as docker_ssh
from eventscale._optional import import_optional
from eventscale.errors import ConfigError, TargetError

if TYPE_CHECKING:
    import aiohttp

__all__ = ("DockerAPI", "DockerEndpoint", "container_name_prefix", "resolve_endpoint")

_DEFAULT_URL = "unix:///var/run/docker.sock"
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
_MAX_JSON_BYTES = 1 << 20  # config.json and a context's meta.json are small


@attrs.frozen
class DockerEndpoint:
    """Where the daemon is and how to speak TLS to it, as the ``docker`` CLI resolves it.

    :ivar host: ``unix:///path``, ``tcp://host:port`` (a missing port filled in) or
        ``ssh://[user@]host[:port]``.
    :ivar context: the Docker context used (``"default"`` when none).
    :ivar source: what chose ``host`` (for error messages).
    :ivar tls: whether to speak TLS; ``verify`` whether to check the daemon's
        certificate (against ``ca``, else the system roots).
    :ivar ca: ``cert``, ``key``: PEM files, or ``None`` where absent.
    """

    host: str
    context: str = "default"
    source: str = "default"
    tls: bool = False
    verify: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def _config_dir(env: Mapping[str, str]) -> Path:
    folder = env.get("DOCKER_CONFIG")
    return Path(folder) if folder else Path(env.get("HOME") or Path.home()) / ".docker"


def _read_json(path: Path, what: str, field: str) -> Any:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", path=field) from exc
    if len(raw) > _MAX_JSON_BYTES:
        raise ConfigError(f"{what} {path} is larger than {_MAX_JSON_BYTES} bytes", path=field)
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}", path=field) from exc


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _context_name(env: Mapping[str, str], config_dir: Path) -> tuple[str, str]:
    """The context the CLI would use, and why (cli/command/cli.go, resolveContextName)."""
    if env.get("DOCKER_HOST"):
        return "default", "DOCKER_HOST"
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"], "DOCKER_CONTEXT"
    config = config_dir / "config.json"
    if config.is_file():
        data = _read_json(config, "Docker config", "DOCKER_CONFIG")
        current = data.get("currentContext") if isinstance(data, dict) else None
        if isinstance(current, str) and current:
            return current, f"currentContext in {config}"
    return "default", "default"


def _from_context(name: str, source: str, config_dir: Path) -> DockerEndpoint:
    """A named context from the store (docs: docs/targets/docker.md, Docker contexts)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_path = config_dir / "contexts" / "meta" / digest / "meta.json"
    if not meta_path.is_file():
        raise ConfigError(
            f"Docker context {name!r} (from {source}) does not exist: no {meta_path}",
            path="context",
        )
    meta = _read_json(meta_path, f"Docker context {name!r}", "context")
    endpoints = meta.get("Endpoints") if isinstance(meta, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(host, str) or not host:
        raise ConfigError(
            f"Docker context {name!r} has no docker endpoint Host ({meta_path})",
            path="context.Endpoints.docker.Host",
        )
    skip_verify = bool(docker.get("SkipTLSVerify")) if isinstance(docker, dict) else False
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    ca, cert, key = (_existing(tls_dir / f) for f in ("ca.pem", "cert.pem", "key.pem"))
    # The CLI speaks TLS when the context holds TLS material or asks to skip verification.
    tls = skip_verify or any(p is not None for p in (ca, cert, key))
    return DockerEndpoint(
        host=_with_port(host, tls=tls),
        context=name,
        source=f"Docker context {name!r} (from {source})",
        tls=tls,
        verify=tls and not skip_verify,
        ca=ca,
        cert=cert,
        key=key,
    )


def _with_port(host: str, *, tls: bool) -> str:
    """Check the scheme; fill in the CLI's default port (2376 with TLS, else 2375)."""
    scheme = host.split("://", 1)[0] if "://" in host else ""
    if scheme == "ssh":
        return docker_ssh.SshHost.parse(host).url
    if scheme == "unix":
        return host
    if scheme not in ("tcp", "http", "https"):
        raise ConfigError(
            f"unsupported Docker host {host!r} (unix://, tcp:// or ssh://)", path="DOCKER_HOST"
        )
    parts = urlsplit(host)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad port in Docker host {host!r}", path="DOCKER_HOST") from exc
    if not parts.hostname:
        raise ConfigError(f"no host name in Docker host {host!r}", path="DOCKER_HOST")
    if port is None:
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"tcp://{name}:{2376 if tls else 2375}"
    return f"tcp://{parts.netloc}"


def resolve_endpoint(
    url: str | None = None,
    *,
    context: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DockerEndpoint:
    """Find the daemon as ``docker`` does (cli/command/cli.go and cli/flags in docker/cli).

    Order: ``url`` (like ``docker -H``), ``context`` (like ``docker --context``), then
    ``DOCKER_HOST``, ``DOCKER_CONTEXT``, the ``currentContext`` of ``config.json`` in
    ``DOCKER_CONFIG`` (default ``~/.docker``), then ``unix:///var/run/docker.sock``.
    Without a context, TLS comes from the environment: ``DOCKER_TLS_VERIFY`` (any
    non-empty value) means TLS checking the daemon's certificate, ``DOCKER_TLS`` TLS
    without checking it; ``ca.pem``, ``cert.pem`` and ``key.pem`` are read from
    ``DOCKER_CERT_PATH`` (default: the config folder) where they exist.

    An ``ssh://[user@]host[:port]`` host is reached as the CLI reaches it (one
    ``ssh ... docker system dial-stdio`` per connection; TLS settings do not apply).

    :raises ConfigError: an unknown context, an unreadable context or config file, an
        unsupported host, an ``ssh://`` URL with a password, a path or a bad name.
    """
    env = os.environ if env is None else env
    config_dir = _config_dir(env)
    if url:
        name, source = "default", "url"
    elif context:
        name, source = context, "context"
    else:
        name, source = _context_name(env, config_dir)
    if name != "default":
        return _from_context(name, source, config_dir)
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    host = url or env.get("DOCKER_HOST") or _DEFAULT_URL
    tls = (verify or bool(env.get("DOCKER_TLS"))) and not host.startswith("ssh://")
    cert_dir = Path(env.get("DOCKER_CERT_PATH") or config_dir)
    ca, cert, key = (
        (_existing(cert_dir / f) for f in ("ca.pem", "cert.pem", "key.pem"))
        if tls
        else (None, None, None)
    )
    return DockerEndpoint(
        host=_with_port(host, tls=tls),
        source=source,
        tls=tls,
        verify=verify,
        ca=ca,
        cert=cert,
        key=key,
    )


def _ssl_context(endpoint: DockerEndpoint) -> ssl.SSLContext:
    """The client's TLS settings; a bad file is a ConfigError naming it (never its text)."""
    where = f"the TLS files of {endpoint.source}"
    ctx = ssl.create_default_context()
    if not endpoint.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif endpoint.ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(endpoint.ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"bad CA certificate {endpoint.ca} in {where}: {_ssl_reason(exc)}",
                path="DOCKER_CERT_PATH",
            ) from None
    if (endpoint.cert is None) != (endpoint.key is None):
        missing = "key.pem" if endpoint.key is None else "cert.pem"
        raise ConfigError(
            f"{where}: a client certificate needs both cert.pem and key.pem ({missing} missing)",
            path="DOCKER_CERT_PATH",
        )
    if endpoint.cert is not None and endpoint.key is not None:
        try:
            ctx.load_cert_chain(str(endpoint.cert), str(endpoint.key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"bad client certificate or key ({endpoint.cert}, {endpoint.key}) in {where}: "
                f"{_ssl_reason(exc)}",
                path="DOCKER_CERT_PATH",
            ) from None
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    """The OpenSSL reason (e.g. KEY_VALUES_MISMATCH), never the file's contents."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return exc.__class__.__name__


def container_name_prefix(prefix: str, fallback: str) -> str:
    """``prefix`` made safe for a container name (``fallback`` when nothing is left)."""
    return _NAME_CHARS.sub("-", prefix).strip("-.") or fallback


class DockerAPI:
    """One Docker daemon, spoken to on behalf of the target named ``owner``.

    :param url: ``unix:///path``, ``tcp://host:port`` or ``ssh://[user@]host[:port]``,
        like ``docker -H``; ``None`` finds the daemon as the ``docker`` CLI does
        (:func:`resolve_endpoint`).
    :param owner: the name put on every :class:`TargetError` as ``target``.
    :param timeout: seconds allowed for each call.
    :param what: the feature named if aiohttp is not installed.
    :param context: a Docker context name, like ``docker --context``.
    :raises ConfigError: an unsupported URL scheme, an unknown context, unreadable or
        mismatched TLS files, an ``ssh://`` host without an ssh client on ``PATH``.
    """

    def __init__(
        self,
        url: str | None,
        *,
        owner: str,
        timeout: float,
        what: str,
        context: str | None = None,
    ) -> None:
        self._aiohttp = import_optional("aiohttp", extra="docker", what=what)
        self.owner = owner
        self.timeout = timeout
        self.endpoint = resolve_endpoint(url, context=context)
        self.url = self.endpoint.host
        tls = self.endpoint.tls and self.url.startswith("tcp://")
        self._ssl: ssl.SSLContext | None = _ssl_context(self.endpoint) if tls else None
        self._ssh: docker_ssh.SshDialer | None = None
        if self.url.startswith("ssh://"):
            self._ssh = docker_ssh.SshDialer(
                docker_ssh.SshHost.parse(self.url), connect_timeout=timeout
            )
            self._socket: str | None = None
            self._base = "http://docker"
        elif self.url.startswith("unix://"):
            self._socket = self.url.removeprefix("unix://")
            self._base = "http://docker"
        else:
            self._socket = None
            scheme = "https" if self._ssl is not None else "http"
            self._base = f"{scheme}://" + self.url.split("://", 1)[1].rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            socket_path = self._ssh.start() if self._ssh is not None else self._socket
            connector = (
                aiohttp.UnixConnector(path=socket_path)
                if socket_path is not None
                else aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        extra_time: float = 0.0,
        ok: Sequence[int] = (),
    ) -> tuple[int, Any]:
        """One API call: ``(status, decoded JSON body)``.

        :param extra_time: seconds on top of the timeout (a stop's grace period).
        :param ok: error statuses returned instead of raised.
        :raises TargetError: a timeout, an unreachable daemon, or a status >= 400
            not in ``ok`` (with the daemon's message).
        """
        limit = self.timeout + extra_time
        session = self._get_session()
        mark = self._ssh.mark() if self._ssh is not None else 0
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            with anyio.fail_after(limit):
                async with session.request(method, self._base + path, **kwargs) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            why = await self._ssh.failure(mark, wait=0) if self._ssh is not None else None
            raise TargetError(
                f"{method} {path} timed out after {limit:g}s" + (f": {why}" if why else ""),
                target=self.owner,
            ) from exc
        except self._aiohttp.ClientError as exc:
            if self._ssh is not None:
                why = await self._ssh.failure(mark) or f"the connection ended ({exc})"
                raise TargetError(
                    f"cannot reach the Docker daemon at {self.url} through ssh: {why}",
                    target=self.owner,
                ) from exc
            raise TargetError(
                f"cannot reach the Docker daemon at {self.url}: {exc}", target=self.owner
            ) from exc
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if status >= 400 and status not in ok:
            message = payload.get("message") if isinstance(payload, dict) else payload
            raise TargetError(
                f"{method} {path}: {message or 'failed'}", target=self.owner, status=status
            )
        return status, payload

    async def list_labelled(self, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) that carries all of ``selector``'s labels.

        The daemon filters by label; the result is checked again here, so a container
        outside the set is never returned.
        """
        filters = json.dumps({"label": [f"{k}={v}" for k, v in selector.items()]})
        _, listing = await self.request(
            "GET", f"/containers/json?all=true&filters={quote(filters)}"
        )
        out: list[dict[str, Any]] = []
        for item in listing or ():
            labels = item.get("Labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue  # never act on a container outside the set
            out.append(item)
        return out

    async def inspect(self, ref: str, *, ok: Sequence[int] = ()) -> tuple[int, Any]:
        """``GET /containers/{ref}/json``."""
        return await self.request("GET", f"/containers/{ref}/json", ok=ok)

    async def create_and_start(
        self, name: str, body: Mapping[str, Any], *, noun: str, pull_hint: str
    ) -> str:
        """Create the container ``name`` from ``body`` and start it; return its id.

        Images are never pulled: a missing image is a :class:`TargetError` (status
        404) naming the image, ``noun`` (what was being created) and ``pull_hint``.
        A container that was created but would not start is removed again.
        """
        status, created = await self.request(
            "POST", f"/containers/create?name={quote(name)}", body, ok=(404,)
        )
        if status == 404:
            message = created.get("message") if isinstance(created, dict) else created
            raise TargetError(
                f"cannot create {noun} from image {body.get('Image')!r}: {message} "
                f"({pull_hint}: load or pull it on the Docker host first)",
                target=self.owner,
                status=404,
            )
        cid = str(created["Id"])
        try:
            await self.request("POST", f"/containers/{cid}/start", ok=(304,))
        except TargetError:
            with anyio.CancelScope(shield=True):
                await self.remove(cid)
            raise
        return cid

    async def stop(self, ref: str, wait: int) -> None:
        """Stop a container, giving it ``wait`` seconds after SIGTERM (gone is fine)."""
        await self.request(
            "POST", f"/containers/{ref}/stop?t={wait}", extra_time=wait, ok=(304, 404)
        )

    async def remove(self, ref: str) -> None:
        """Remove a container and its anonymous volumes, killing it if it runs."""
        await self.request("DELETE", f"/containers/{quote(ref)}?force=true&v=true", ok=(404,))

    async def ping(self) -> None:
        """Check that the daemon answers."""
        await self.request("GET", "/_ping")

    async def version(self) -> dict[str, Any]:
        """``GET /version``: the daemon's version, API version, OS and architecture."""
        _, payload = await self.request("GET", "/version")
        return dict(payload) if isinstance(payload, dict) else {}

    async def aclose(self) -> None:
        """Close the HTTP session (and end the ssh processes of an ``ssh://`` host)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ssh is not None:
            await self._ssh.aclose()
