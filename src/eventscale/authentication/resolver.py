"""Trigger authentication from wherever the credentials live, asynchronously.

:meth:`Manifests.trigger_contexts <eventscale.manifests.Manifests.trigger_contexts>` resolves
a trigger's ``authenticationRef`` synchronously (:mod:`eventscale.authentication.contexts`),
from the Secrets and ConfigMaps written in the same manifest stream. This module does the
same asynchronously, looking every referenced Secret and ConfigMap up in a chain of
:class:`~eventscale.authentication.sources.SecretSource` objects: the manifest stream
(:class:`~eventscale.authentication.sources.MappingSource`), mounted directories
(:class:`~eventscale.authentication.sources.DirectorySource`) and the Kubernetes API
(:class:`~eventscale.authentication.sources.ClusterSource`).

The first source that has an object of the referenced name supplies it whole. On top of
what the synchronous resolver does, a ClusterTriggerAuthentication's ``filePath`` (KEDA's
file of JSON auth parameters under the operator's ``--filepath-auth-root-path``) is read
when the resolver is given a ``file_root``.

Every value becomes an :class:`~eventscale.redaction.Secret`. Errors name the entry of the
TriggerAuthentication that failed (``spec.secretTargetRef[0].key``) and the
TriggerAuthentication itself, never a value. :func:`resolve_trigger_contexts_async` is the
one-call entry point; :class:`AuthResolver` is the reusable object behind it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio
import attrs

from eventscale.authentication._resolve import (
    ASYNC_WORDING,
    Reference,
    auth_table,
    build_trigger_contexts,
    describe,
    provider_errors,
    referenced_authentications,
    references,
    resolve_entries,
)
from eventscale.authentication.sources import (
    SECRET,
    ClusterSource,
    DirectorySource,
    ManifestStream,
    MappingSource,
    SecretData,
    SecretSource,
)
from eventscale.errors import ConfigError, ScalerError
from eventscale.redaction import Secret
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerAuthenticationSpec

if TYPE_CHECKING:
    from eventscale.kube import KubeClient
    from eventscale.scalers.params import TriggerContext

__all__ = (
    "DEFAULT_CLUSTER_NAMESPACE",
    "AuthResolver",
    "AuthenticationLookup",
    "cluster_authentications",
    "default_sources",
    "resolve_trigger_contexts_async",
)

log = logging.getLogger("eventscale.secrets")

DEFAULT_CLUSTER_NAMESPACE: Final = "keda"
"""Where a ClusterTriggerAuthentication's Secrets are read, as KEDA's default
``KEDA_CLUSTER_OBJECT_NAMESPACE``."""


def _to_tuple(sources: Iterable[SecretSource]) -> tuple[SecretSource, ...]:
    return tuple(sources)


def _to_dict(env: Mapping[str, str]) -> dict[str, str]:
    return dict(env)


def _to_path(path: str | os.PathLike[str] | None) -> Path | None:
    return Path(path) if path is not None else None


@attrs.frozen(kw_only=True)
class AuthResolver:
    """Resolves TriggerAuthentications into auth parameters, and specs into contexts.

    :param sources: where Secrets and ConfigMaps are looked up, in order; the first source
        that has an object of the referenced name supplies it whole.
    :param env: the environment of ``env`` entries and ``...FromEnv`` metadata (KEDA's
        ``resolvedEnv``, the scale target container's environment). Empty by default;
        pass ``os.environ`` for the process environment.
    :param file_root: the directory a ClusterTriggerAuthentication's ``filePath`` is
        relative to (KEDA's ``--filepath-auth-root-path``); ``None`` refuses ``filePath``.
    :param namespace: the namespace a TriggerAuthentication's references are resolved in;
        default: the ScaledObject's or ScaledJob's ``metadata.namespace``.
    :param cluster_namespace: the namespace of a ClusterTriggerAuthentication's references
        (KEDA's ``KEDA_CLUSTER_OBJECT_NAMESPACE``, default ``keda``).
    :param authentications: where a (Cluster)TriggerAuthentication a trigger names but
        the given ones lack is looked up: ``await authentications(kind, name, namespace)``
        gives it or ``None`` (see :func:`cluster_authentications`).
    :param env_origin: how messages name where ``env`` came from (``the container 'app'
        of Deployment 'web'``).
    :param container_env: ``await container_env(name)`` gives the environment of the
        scale target's container ``name``, for ``env`` entries with a ``containerName``
        (KEDA reads that container); without it they read ``env``.
    """

    sources: tuple[SecretSource, ...] = attrs.field(converter=_to_tuple, default=())
    env: Mapping[str, str] = attrs.field(
        factory=dict, converter=_to_dict, repr=lambda m: f"<{len(m)} variables>"
    )
    file_root: Path | None = attrs.field(default=None, converter=_to_path)
    namespace: str | None = None
    cluster_namespace: str = DEFAULT_CLUSTER_NAMESPACE
    authentications: AuthenticationLookup | None = None
    env_origin: str | None = None
    container_env: Callable[[str], Awaitable[Mapping[str, str]]] | None = None

    async def resolve_authentication(
        self,
        auth: TriggerAuthenticationSpec,
        *,
        namespace: str = "default",
        used_by: str | None = None,
    ) -> dict[str, Secret]:
        """The auth parameters ``auth`` provides, as ``{parameter: Secret}``.

        ``namespace`` is where a TriggerAuthentication's references live (a
        ClusterTriggerAuthentication always uses ``cluster_namespace``).

        :raises ConfigError: every unresolvable entry, each at its path inside ``auth``
            (``spec.secretTargetRef[0].name``), the message naming ``auth``.
        :raises ScalerError: a source could not be reached (transient).
        """
        return await _Resolution(self).authentication(auth, namespace, used_by)

    async def trigger_contexts(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        trigger_authentications: (
            Mapping[tuple[str, str], TriggerAuthenticationSpec]
            | Iterable[TriggerAuthenticationSpec]
        ) = (),
    ) -> tuple[TriggerContext, ...]:
        """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``, in order.

        :raises ConfigError: every unresolvable reference of every trigger, each with its
            path; a missing TriggerAuthentication is reported at
            ``spec.triggers[i].authenticationRef.name``.
        :raises ScalerError: a source could not be reached (transient).
        """
        return await _Resolution(self).contexts(spec, trigger_authentications)


class _Resolution:
    """One resolution run: looks each object up once, collects every error."""

    def __init__(self, resolver: AuthResolver) -> None:
        self.resolver = resolver
        self.cache: dict[tuple[str, str, str], SecretData | ConfigError | None] = {}

    async def lookup(self, kind: str, name: str, namespace: str) -> SecretData | None:
        key = (kind, namespace, name)
        if key not in self.cache:
            found: SecretData | ConfigError | None = None
            for source in self.resolver.sources:
                try:
                    if kind == SECRET:
                        found = await source.get_secret(name, namespace)
                    else:
                        found = await source.get_config_map(name, namespace)
                except ConfigError as exc:
                    found = exc
                if found is not None:
                    break
            if isinstance(found, SecretData):
                log.debug("%s %r found in %s", kind, name, found.origin)
            self.cache[key] = found
        result = self.cache[key]
        if isinstance(result, ConfigError):
            raise result
        return result

    def searched(self, namespace: str) -> str:
        names = [s.description for s in self.resolver.sources]
        if not names:
            return "no Secret or ConfigMap source is configured"
        return f"searched {', '.join(names)}; namespace {namespace!r}"

    async def authentication(
        self, auth: TriggerAuthenticationSpec, namespace: str, used_by: str | None
    ) -> dict[str, Secret]:
        who = describe(auth, used_by)
        if auth.kind == "ClusterTriggerAuthentication":
            namespace = self.resolver.cluster_namespace
        errors = provider_errors(auth, who, ASYNC_WORDING)
        if "filePath" in auth.other:
            # As KEDA: the file's parameters are the whole result; the other entries of
            # this (Cluster)TriggerAuthentication are not read.
            params: dict[str, Secret] = {}
            try:
                params = await self.file_params(auth, who)
            except ConfigError as exc:
                errors.append(exc)
            ConfigError.collect(errors, what=f"cannot resolve {who}")
            return params

        # Fetch every referenced object first (in resolution order, so an unreachable
        # source fails where it did), then apply the shared rules to what was found.
        fetched: dict[tuple[str, str], SecretData | ConfigError | None] = {}
        for ref in references(auth):
            try:
                fetched[(ref.kind, ref.name)] = await self.lookup(ref.kind, ref.name, namespace)
            except ConfigError as exc:
                fetched[(ref.kind, ref.name)] = exc
            except ScalerError as exc:
                raise ScalerError(
                    f"{who}: {exc.message}", trigger=exc.trigger, transient=exc.transient
                ) from exc

        def fetch(ref: Reference) -> SecretData | None:
            found = fetched[(ref.kind, ref.name)]
            if isinstance(found, ConfigError):
                raise found
            return found

        containers: dict[str, Mapping[str, str]] = {}
        for j, env_ref in enumerate(auth.env):
            named = env_ref.container_name
            if named and named not in containers and self.resolver.container_env is not None:
                try:
                    containers[named] = await self.resolver.container_env(named)
                except ConfigError as exc:
                    errors.append(
                        ConfigError(f"{who}: {exc.reason}", path=f"spec.env[{j}].containerName")
                    )
        params, more = resolve_entries(
            auth,
            who,
            container_envs=containers,
            env=self.resolver.env,
            fetch=fetch,
            wording=ASYNC_WORDING,
            searched=self.searched(namespace),
            env_origin=self.resolver.env_origin,
        )
        errors += more
        ConfigError.collect(errors, what=f"cannot resolve {who}")
        return params

    async def file_params(self, auth: TriggerAuthenticationSpec, who: str) -> dict[str, Secret]:
        path = "spec.filePath"
        raw = auth.other["filePath"]
        if auth.kind != "ClusterTriggerAuthentication":
            raise ConfigError(
                f"{who}: filePath is only supported in a ClusterTriggerAuthentication", path=path
            )
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"{who}: filePath must be a non-empty string", path=path)
        root = self.resolver.file_root
        if root is None:
            raise ConfigError(
                f"{who}: filePath needs a file root (pass file_root=..., eventscale's "
                "--filepath-auth-root-path)",
                path=path,
            )
        if os.path.isabs(raw) or ".." in raw:
            raise ConfigError(
                f"{who}: filePath must be relative to the file root and not contain '..'",
                path=path,
            )
        return await anyio.to_thread.run_sync(_read_params_file, root, raw, who, path)

    async def contexts(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        auths: (
            Mapping[tuple[str, str], TriggerAuthenticationSpec]
            | Iterable[TriggerAuthenticationSpec]
        ),
    ) -> tuple[TriggerContext, ...]:
        table = dict(auth_table(auths))
        namespace = self.resolver.namespace or spec.namespace
        lookup = self.resolver.authentications
        for trig in spec.triggers if lookup is not None else ():
            ref = trig.authentication_ref
            if ref is not None and (ref.kind, ref.name) not in table:
                assert lookup is not None
                found = await lookup(ref.kind, ref.name, namespace)
                if found is not None:
                    log.debug("%s %r found in the cluster", ref.kind, ref.name)
                    table[(ref.kind, ref.name)] = found
        resolved: dict[tuple[str, str], Mapping[str, Secret] | ConfigError] = {}
        for key, ta, used_by in referenced_authentications(spec, table):
            try:
                resolved[key] = await self.authentication(ta, namespace, used_by)
            except ConfigError as exc:
                resolved[key] = exc
        return build_trigger_contexts(
            spec, table, resolved, dict(self.resolver.env), self.resolver.env_origin
        )


def _read_params_file(root: Path, relative: str, who: str, path: str) -> dict[str, Secret]:
    full = root / relative
    try:
        inside = full.resolve().is_relative_to(root.resolve())
    except OSError:
        inside = False
    if not inside:
        raise ConfigError(f"{who}: filePath resolves outside the file root", path=path)
    try:
        text = full.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{who}: cannot read {str(full)!r}: {exc.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{who}: {str(full)!r} is not UTF-8 text", path=path) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        # Only the position: the decoder's message may quote the text.
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ConfigError(f"{who}: {str(full)!r} is not valid JSON{where}", path=path) from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ConfigError(
            f"{who}: {str(full)!r} must hold a JSON object of parameter names to strings",
            path=path,
        )
    log.debug("%s: read %d auth parameters from %s", who, len(doc), full)
    return {str(k): Secret(v) for k, v in doc.items()}


AuthenticationLookup: TypeAlias = Callable[
    [str, str, str], Awaitable[TriggerAuthenticationSpec | None]
]
"""``await lookup(kind, name, namespace)``: a (Cluster)TriggerAuthentication, or ``None``."""


def cluster_authentications(
    client: KubeClient, read: Callable[[Mapping[str, Any]], TriggerAuthenticationSpec]
) -> AuthenticationLookup:
    """A lookup of (Cluster)TriggerAuthentications in the cluster behind ``client``;
    ``read`` turns the API's document into a spec (``eventscale.manifests``'
    ``load_trigger_authentication``). A 403 is a :class:`ConfigError` naming the RBAC
    verb and resource."""
    source = ClusterSource(client)

    async def lookup(kind: str, name: str, namespace: str) -> TriggerAuthenticationSpec | None:
        doc = await source.get_trigger_authentication(kind, name, namespace)
        return read(doc) if doc is not None else None

    return lookup


def default_sources(
    manifests: ManifestStream | None = None,
    *,
    secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    secret_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    config_map_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    kube_client: KubeClient | None = None,
) -> tuple[SecretSource, ...]:
    """The chain :func:`resolve_trigger_contexts_async` uses: the stream (with ``secrets``
    and ``config_maps`` merged over it), then mounted directories, then the cluster."""
    chain: list[SecretSource] = []
    if manifests is not None:
        chain.append(
            MappingSource.from_manifests(manifests, secrets=secrets, config_maps=config_maps)
        )
    elif secrets or config_maps:
        chain.append(MappingSource(secrets, config_maps))
    if secret_dirs or config_map_dirs:
        chain.append(DirectorySource(secret_dirs, config_map_dirs))
    if kube_client is not None:
        chain.append(ClusterSource(kube_client))
    return tuple(chain)


async def resolve_trigger_contexts_async(
    spec: ScaledObjectSpec | ScaledJobSpec,
    manifests: ManifestStream | None = None,
    *,
    trigger_authentications: Iterable[TriggerAuthenticationSpec] = (),
    secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    secret_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    config_map_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    kube_client: KubeClient | None = None,
    env: Mapping[str, str] | None = None,
    file_root: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    cluster_namespace: str = DEFAULT_CLUSTER_NAMESPACE,
    sources: Sequence[SecretSource] | None = None,
    authentications: AuthenticationLookup | None = None,
) -> tuple[TriggerContext, ...]:
    """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``.

    TriggerAuthentications come from ``manifests`` plus ``trigger_authentications``.
    Each referenced Secret or ConfigMap is looked up in, by default: the manifest stream
    (``secrets`` / ``config_maps`` merged over it key by key), the directories of
    ``secret_dirs`` / ``config_map_dirs``, then the cluster behind ``kube_client``. Pass
    ``sources`` to choose the chain yourself: it replaces the default one whole (add
    ``MappingSource.from_manifests(manifests)`` to keep the stream's Secrets). ``env``
    (default: nothing; ``os.environ`` for the process) backs ``env`` entries and
    ``...FromEnv`` metadata.
    See :class:`AuthResolver` for ``file_root``, ``namespace``, ``cluster_namespace``
    and ``authentications`` (TriggerAuthentications from the cluster).

    :raises ConfigError: every unresolvable reference, each with its path.
    :raises ScalerError: the cluster could not be reached (transient).
    """
    if sources is not None and (
        secrets or config_maps or secret_dirs or config_map_dirs or kube_client is not None
    ):
        raise TypeError(
            "pass either sources=... or secrets/config_maps/secret_dirs/config_map_dirs/"
            "kube_client, not both"
        )
    chain = (
        tuple(sources)
        if sources is not None
        else default_sources(
            manifests,
            secrets=secrets,
            config_maps=config_maps,
            secret_dirs=secret_dirs,
            config_map_dirs=config_map_dirs,
            kube_client=kube_client,
        )
    )
    table: dict[tuple[str, str], TriggerAuthenticationSpec] = dict(
        manifests.trigger_authentications if manifests is not None else {}
    )
    for ta in trigger_authentications:
        table[(ta.kind, ta.name)] = ta
    resolver = AuthResolver(
        sources=chain,
        env=env or {},
        file_root=file_root,
        namespace=namespace,
        cluster_namespace=cluster_namespace,
        authentications=authentications,
    )
    return await resolver.trigger_contexts(spec, table)
