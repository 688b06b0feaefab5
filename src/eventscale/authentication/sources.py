"""Where Secrets and ConfigMaps come from: the sources the resolver looks them up in.

* :class:`MappingSource`: the manifest stream and Secrets given in code;
* :class:`DirectorySource`: Secrets (and ConfigMaps) mounted as directories, one file per
  key, as Kubernetes mounts a ``secret`` volume;
* :class:`ClusterSource`: the Kubernetes API, through the Kubernetes target's
  :class:`~eventscale.kube.KubeClient`
  (``GET /api/v1/namespaces/{namespace}/secrets/{name}``).

Each returns what it found as :class:`SecretData`, every value an
:class:`~eventscale.redaction.Secret`. Any object with a ``get_secret`` and a
``get_config_map`` coroutine is a :class:`SecretSource`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import anyio
import attrs

from eventscale.errors import ConfigError, ScalerError, TargetError, TargetNotFound
from eventscale.redaction import Secret, redact_text
from eventscale.spec import TriggerAuthenticationSpec

if TYPE_CHECKING:
    from eventscale.kube import KubeClient

__all__ = (
    "CONFIG_MAP",
    "SECRET",
    "ClusterSource",
    "DirectorySource",
    "ManifestStream",
    "MappingSource",
    "SecretData",
    "SecretSource",
    "as_secret",
    "config_map_data",
    "secret_data",
)

log = logging.getLogger("eventscale.secrets")

SECRET: Final = "Secret"
"""The kind name of a Kubernetes Secret, as messages and lookups use it."""
CONFIG_MAP: Final = "ConfigMap"
"""The kind name of a Kubernetes ConfigMap, as messages and lookups use it."""

# DNS-1123 subdomain (object names) and label (namespaces), as the API server validates them.
_OBJECT_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAMESPACE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _strip_newline(text: str) -> str:
    """Drop one trailing line break, as ``echo`` or an editor leaves in a mounted file."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


@attrs.frozen(kw_only=True)
class SecretData:
    """A Secret or ConfigMap as a source found it.

    ``values`` maps each key to its value; ``unreadable`` names the keys present but not
    UTF-8 text (a binary keytab, say), which fail only when a trigger uses them;
    ``origin`` says where it came from, for messages (``the cluster (namespace 'apps')``).
    """

    values: Mapping[str, Secret] = attrs.field(repr=lambda v: f"<{len(v)} keys>")
    origin: str
    unreadable: frozenset[str] = frozenset()


def as_secret(value: str | Secret) -> Secret:
    """``value`` as a :class:`~eventscale.redaction.Secret` (a Secret is kept as it is)."""
    return value if isinstance(value, Secret) else Secret(value)


class ManifestStream(Protocol):
    """What authentication reads from a manifest stream (a
    :class:`~eventscale.manifests.Manifests`): its TriggerAuthentications, Secrets,
    ConfigMaps and the Secret keys whose value is not UTF-8 text."""

    @property
    def trigger_authentications(self) -> Mapping[tuple[str, str], TriggerAuthenticationSpec]:
        """The stream's (Cluster)TriggerAuthentications by ``(kind, name)``."""
        ...

    @property
    def secrets(self) -> Mapping[str, Mapping[str, Secret]]:
        """Each Secret's keys and values, by the Secret's name."""
        ...

    @property
    def config_maps(self) -> Mapping[str, Mapping[str, str]]:
        """Each ConfigMap's data, by the ConfigMap's name."""
        ...

    @property
    def undecodable_secret_keys(self) -> frozenset[tuple[str, str]]:
        """``(secret, key)`` pairs whose value is not UTF-8 text."""
        ...


@runtime_checkable
class SecretSource(Protocol):
    """Somewhere Secrets and ConfigMaps can be looked up by name.

    Each method returns ``None`` when the source has no object of that name (the next
    source is tried), raises :class:`~eventscale.errors.ConfigError` (without a path) when
    it has one but may not or cannot read it, and
    :class:`~eventscale.errors.ScalerError` when the source is unreachable for now.
    ``namespace`` is the namespace the reference is resolved in; sources that hold one
    namespace only ignore it.
    """

    @property
    def description(self) -> str:
        """How error messages name this source (``the manifest stream``)."""
        ...

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        """The Secret ``name``, or ``None``."""
        ...

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        """The ConfigMap ``name``, or ``None``."""
        ...


# --------------------------------------------------------------------------- sources


class MappingSource:
    """Secrets and ConfigMaps held in memory: a manifest stream, or given in code.

    ``secrets`` maps a Secret's name to its keys and values (plain strings are wrapped in
    :class:`~eventscale.redaction.Secret`), ``config_maps`` the same for ConfigMaps.
    ``undecodable`` lists ``(secret, key)`` pairs whose value is not UTF-8 text.
    """

    def __init__(
        self,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
        config_maps: Mapping[str, Mapping[str, str]] | None = None,
        *,
        undecodable: Collection[tuple[str, str]] = (),
        description: str = "the given Secrets",
    ) -> None:
        self._secrets = {
            name: {key: as_secret(value) for key, value in values.items()}
            for name, values in (secrets or {}).items()
        }
        self._config_maps = {
            name: {key: Secret(value) for key, value in values.items()}
            for name, values in (config_maps or {}).items()
        }
        self._undecodable = frozenset(undecodable)
        self._description = description

    @classmethod
    def from_manifests(
        cls,
        manifests: ManifestStream,
        *,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
        config_maps: Mapping[str, Mapping[str, str]] | None = None,
    ) -> MappingSource:
        """The Secrets and ConfigMaps of a manifest stream; ``secrets`` and ``config_maps``
        add objects or override the stream's key by key, as ``Manifests.trigger_contexts``
        does."""
        merged_secrets: dict[str, dict[str, str | Secret]] = {
            name: dict(values) for name, values in manifests.secrets.items()
        }
        for name, values in (secrets or {}).items():
            merged_secrets.setdefault(name, {}).update(values)
        merged_maps: dict[str, dict[str, str]] = {
            name: dict(values) for name, values in manifests.config_maps.items()
        }
        for name, cm_values in (config_maps or {}).items():
            merged_maps.setdefault(name, {}).update(cm_values)
        undecodable = {
            (name, key)
            for name, key in manifests.undecodable_secret_keys
            if key not in (secrets or {}).get(name, {})
        }
        return cls(
            merged_secrets,
            merged_maps,
            undecodable=undecodable,
            description="the manifest stream",
        )

    @property
    def description(self) -> str:
        """How error messages name this source."""
        return self._description

    def __repr__(self) -> str:
        return (
            f"MappingSource({self._description!r}, secrets={sorted(self._secrets)!r}, "
            f"config_maps={sorted(self._config_maps)!r})"
        )

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        """The Secret ``name`` (any namespace), or ``None``."""
        values = self._secrets.get(name)
        unreadable = frozenset(k for n, k in self._undecodable if n == name)
        if values is None and not unreadable:
            return None
        return SecretData(values=values or {}, origin=self._description, unreadable=unreadable)

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        """The ConfigMap ``name`` (any namespace), or ``None``."""
        values = self._config_maps.get(name)
        if values is None:
            return None
        return SecretData(values=values, origin=self._description)


class DirectorySource:
    """Secrets and ConfigMaps mounted as directories, one file per key.

    ``secret_dirs`` maps a Secret's name to the directory it is mounted at
    (``{"rabbitmq-secret": "/etc/secrets/rabbitmq"}``); ``config_map_dirs`` the same for
    ConfigMaps. Each regular file of the directory is a key; Kubernetes' own bookkeeping
    entries (``..data``, ``..2024_01_01...``) are skipped and the per-key symlinks are
    followed. A value is the file's text minus one trailing line break. A directory that
    is named here but does not exist is a :class:`~eventscale.errors.ConfigError`: it
    was configured on purpose.
    """

    def __init__(
        self,
        secret_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        config_map_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        self._secret_dirs = {name: Path(path) for name, path in (secret_dirs or {}).items()}
        self._config_map_dirs = {name: Path(path) for name, path in (config_map_dirs or {}).items()}

    @property
    def description(self) -> str:
        """How error messages name this source."""
        return "the mounted directories"

    def __repr__(self) -> str:
        return (
            f"DirectorySource(secret_dirs={ {k: str(v) for k, v in self._secret_dirs.items()}!r}, "
            f"config_map_dirs={ {k: str(v) for k, v in self._config_map_dirs.items()}!r})"
        )

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        """The Secret ``name`` read from its directory, or ``None`` if none is mapped."""
        folder = self._secret_dirs.get(name)
        if folder is None:
            return None
        return await anyio.to_thread.run_sync(_read_directory, folder, SECRET)

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        """The ConfigMap ``name`` read from its directory, or ``None`` if none is mapped."""
        folder = self._config_map_dirs.get(name)
        if folder is None:
            return None
        return await anyio.to_thread.run_sync(_read_directory, folder, CONFIG_MAP)


def _read_directory(folder: Path, kind: str) -> SecretData:
    if not folder.is_dir():
        raise ConfigError(f"the {kind} directory {str(folder)!r} does not exist")
    values: dict[str, Secret] = {}
    unreadable: set[str] = set()
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ConfigError(
            f"cannot list the {kind} directory {str(folder)!r}: {exc.strerror}"
        ) from None
    for entry in entries:
        if entry.name.startswith("..") or not entry.is_file():
            continue
        try:
            raw = entry.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {str(entry)!r}: {exc.strerror}") from None
        try:
            values[entry.name] = Secret(_strip_newline(raw.decode("utf-8")))
        except UnicodeDecodeError:
            unreadable.add(entry.name)
    return SecretData(
        values=values, origin=f"directory {str(folder)!r}", unreadable=frozenset(unreadable)
    )


def secret_data(obj: Mapping[str, Any], namespace: str) -> SecretData:
    """The values of a Secret as the API returns it (``data`` decoded from base64);
    keys that are not base64 of UTF-8 text are listed as unreadable."""
    values: dict[str, Secret] = {}
    unreadable: set[str] = set()
    data = obj.get("data") or {}
    for key, encoded in data.items() if isinstance(data, Mapping) else ():
        try:
            values[str(key)] = Secret(base64.b64decode(str(encoded), validate=True).decode("utf-8"))
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            unreadable.add(str(key))
    return SecretData(
        values=values,
        origin=f"the cluster (namespace {namespace!r})",
        unreadable=frozenset(unreadable),
    )


def config_map_data(obj: Mapping[str, Any], namespace: str) -> SecretData:
    """The values of a ConfigMap as the API returns it (its ``data``)."""
    data = obj.get("data") or {}
    values = {str(k): Secret(str(v)) for k, v in data.items()} if isinstance(data, Mapping) else {}
    return SecretData(values=values, origin=f"the cluster (namespace {namespace!r})")


class ClusterSource:
    """Secrets and ConfigMaps read from a Kubernetes cluster.

    ``client`` is a :class:`~eventscale.kube.KubeClient`
    (share the one your targets use; it is not closed here). A 404 means "not here"; a
    401 or 403 (the client's account may not ``get`` Secrets in that namespace) is a
    :class:`~eventscale.errors.ConfigError`; an unreachable API, a timeout or a server
    error is a transient :class:`~eventscale.errors.ScalerError`.
    """

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    @property
    def description(self) -> str:
        """How error messages name this source."""
        return "the cluster"

    def __repr__(self) -> str:
        return f"ClusterSource(server={self.client.config.server!r})"

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        """``GET /api/v1/namespaces/{namespace}/secrets/{name}``, base64 ``data`` decoded."""
        obj = await self._get("secrets", SECRET, name, namespace)
        if obj is None:
            return None
        return secret_data(obj, namespace)

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        """``GET /api/v1/namespaces/{namespace}/configmaps/{name}``, its ``data``."""
        obj = await self._get("configmaps", CONFIG_MAP, name, namespace)
        if obj is None:
            return None
        return config_map_data(obj, namespace)

    async def get_trigger_authentication(
        self, kind: str, name: str, namespace: str
    ) -> Mapping[str, Any] | None:
        """The ``keda.sh/v1alpha1`` TriggerAuthentication ``name`` in ``namespace`` (or
        the cluster-scoped ClusterTriggerAuthentication), as the API returns it."""
        if kind == "ClusterTriggerAuthentication":
            path = f"{_KEDA_API}/clustertriggerauthentications/{_checked_name(kind, name)}"
            return await self._read(path, "clustertriggerauthentications", kind, name, None)
        plural = "triggerauthentications"
        path = f"{_KEDA_API}/namespaces/{_checked_namespace(namespace)}/{plural}"
        return await self._read(
            f"{path}/{_checked_name(kind, name)}", plural, kind, name, namespace
        )

    async def _get(
        self, plural: str, kind: str, name: str, namespace: str
    ) -> Mapping[str, Any] | None:
        # Names go into the URL path: anything but a Kubernetes name could redirect it.
        path = f"/api/v1/namespaces/{_checked_namespace(namespace)}/{plural}"
        return await self._read(
            f"{path}/{_checked_name(kind, name)}", plural, kind, name, namespace
        )

    async def _read(
        self, path: str, plural: str, kind: str, name: str, namespace: str | None
    ) -> Mapping[str, Any] | None:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        try:
            obj = await self.client.request("GET", path)
        except TargetNotFound:
            return None
        except TargetError as exc:
            # The client already redacted its credentials from the API's message.
            detail = redact_text(exc.message)
            if exc.status == 403:
                scope = f"in namespace {namespace!r}" if namespace is not None else "cluster-wide"
                raise ConfigError(
                    f"reading {kind} {name!r}{where} was refused (HTTP 403): the Kubernetes "
                    f"account may not 'get' {plural} {scope} (grant RBAC verb 'get' on "
                    f"resource '{plural}'): {detail}"
                ) from exc
            if exc.status == 401:
                raise ConfigError(
                    f"reading {kind} {name!r}{where} was refused (HTTP 401): the Kubernetes "
                    f"credentials were not accepted: {detail}"
                ) from exc
            status = f" (HTTP {exc.status})" if exc.status is not None else ""
            raise ScalerError(
                f"cannot read {kind} {name!r}{where} from the Kubernetes API{status}: {detail}",
                transient=True,
            ) from exc
        log.debug("read %s %r%s from the cluster", kind, name, where)
        return obj


_KEDA_API: Final = "/apis/keda.sh/v1alpha1"


def _checked_name(kind: str, name: str) -> str:
    if not _OBJECT_NAME.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} is not a valid Kubernetes object name")
    return name


def _checked_namespace(namespace: str) -> str:
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigError(f"namespace {namespace!r} is not a valid Kubernetes namespace")
    return namespace
