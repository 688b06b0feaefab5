"""Read KEDA manifests into typed specs.

:func:`load_manifests` takes YAML text (one or more ``---`` documents), a mapping or a
list of mappings, and returns a :class:`Manifests` holding every
``keda.sh/v1alpha1`` ``ScaledObject``, ``ScaledJob``, ``TriggerAuthentication`` and
``ClusterTriggerAuthentication`` of the stream, plus the Kubernetes ``v1`` ``Secret`` and
``ConfigMap`` documents their ``secretTargetRef`` / ``configMapTargetRef`` entries point at.

Every field gets KEDA's default; unknown fields and bad values raise one
:class:`~eventscale.errors.ConfigError` per document that lists every problem, each
naming its field path (``spec.triggers[1].metadata.lagThreshold``) and, for YAML text,
its line. In a stream of several documents the paths are prefixed with ``[doc N]``
(0-based). No error message repeats a secret value.

The fields are read by :class:`~eventscale.manifests.fields.FieldReader`; writing specs
back is :mod:`eventscale.manifests.writer`, and resolving trigger authentication is
:mod:`eventscale.authentication`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from eventscale.authentication.contexts import stream_trigger_contexts
from eventscale.errors import ConfigError
from eventscale.manifests._auth import TA_KINDS, read_config_map, read_secret, read_trigger_auth
from eventscale.manifests._scaled import read_scaled_job, read_scaled_object
from eventscale.manifests.fields import (
    FieldReader,
    ManifestInput,
    not_a_mapping,
    read_documents,
    shown,
)
from eventscale.redaction import Secret
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerAuthenticationSpec

if TYPE_CHECKING:
    from eventscale.kube import KubeClient
    from eventscale.scalers.params import TriggerContext

__all__ = (
    "KEDA_API_VERSION",
    "Manifests",
    "load_manifests",
    "load_scaled_job",
    "load_scaled_object",
    "load_trigger_authentication",
)

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
"""The ``apiVersion`` of every KEDA kind eventscale reads and writes."""

_KEDA_KINDS: Final = ("ScaledObject", "ScaledJob", *TA_KINDS)
_CORE_KINDS: Final = ("Secret", "ConfigMap", "List")
_TOP_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_TOP_FIELDS_BY_KIND: Final = {
    "Secret": frozenset(
        {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
    ),
    "ConfigMap": frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}),
}


@attrs.frozen(kw_only=True)
class Manifests:
    """Everything one manifest stream holds, by kind.

    ``trigger_authentications`` is keyed by ``(kind, name)``; ``secrets`` maps a Secret's
    name to its keys and :class:`~eventscale.redaction.Secret` values; ``config_maps`` maps a
    ConfigMap's name to its data. Namespaces are recorded on the specs but not used to
    look references up: one stream is one namespace.
    """

    scaled_objects: tuple[ScaledObjectSpec, ...] = ()
    scaled_jobs: tuple[ScaledJobSpec, ...] = ()
    trigger_authentications: Mapping[tuple[str, str], TriggerAuthenticationSpec] = attrs.field(
        factory=dict
    )
    secrets: Mapping[str, Mapping[str, Secret]] = attrs.field(factory=dict)
    config_maps: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    undecodable_secret_keys: frozenset[tuple[str, str]] = frozenset()

    def scaled_object(self, name: str | None = None) -> ScaledObjectSpec:
        """The ScaledObject called ``name`` (or the only one when ``name`` is ``None``)."""
        return _pick(self.scaled_objects, name, "ScaledObject")

    def scaled_job(self, name: str | None = None) -> ScaledJobSpec:
        """The ScaledJob called ``name`` (or the only one when ``name`` is ``None``)."""
        return _pick(self.scaled_jobs, name, "ScaledJob")

    def trigger_authentication(
        self, name: str, kind: str = "TriggerAuthentication"
    ) -> TriggerAuthenticationSpec:
        """The (Cluster)TriggerAuthentication ``name``; :class:`KeyError` when absent."""
        return self.trigger_authentications[(kind, name)]

    def trigger_contexts(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    ) -> tuple[TriggerContext, ...]:
        """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``.

        Authentication references are resolved against this stream's
        TriggerAuthentications, Secrets and ConfigMaps; ``secrets`` adds (or overrides)
        Secrets by name; ``env`` is the scale target container's environment.
        """
        return stream_trigger_contexts(self, spec, env=env, secrets=secrets)

    async def trigger_contexts_async(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        *,
        kube_client: KubeClient | None = None,
        env: Mapping[str, str] | None = None,
        cluster_namespace: str = "keda",
    ) -> tuple[TriggerContext, ...]:
        """:meth:`trigger_contexts`, looking in the cluster behind ``kube_client`` for
        what this stream lacks: Secrets, ConfigMaps, (Cluster)TriggerAuthentications and
        the scale target container's environment (docs/authentication.md, "Lookup
        order"). ``env`` overrides that environment variable by variable;
        ``cluster_namespace`` is KEDA's ``KEDA_CLUSTER_OBJECT_NAMESPACE``.
        """
        from eventscale.authentication import (
            AuthResolver,
            cluster_authentications,
            default_sources,
            reads_environment,
            workload_env,
        )

        sources = default_sources(self, kube_client=kube_client)
        found = None
        if reads_environment(spec, self.trigger_authentications.values()):
            found = await workload_env(spec, sources=sources, client=kube_client)
        merged = {k: v.reveal() for k, v in (found or {}).items()} | dict(env or {})

        async def container_env(name: str) -> dict[str, str]:
            named = await workload_env(spec, sources=sources, client=kube_client, container=name)
            return {k: v.reveal() for k, v in (named or {}).items()}

        resolver = AuthResolver(
            sources=sources,
            env=merged,
            cluster_namespace=cluster_namespace,
            authentications=(
                cluster_authentications(kube_client, load_trigger_authentication)
                if kube_client is not None
                else None
            ),
            env_origin="the scale target container's environment and env=" if found else "env=",
            container_env=container_env if found is not None else None,
        )
        return await resolver.trigger_contexts(spec, self.trigger_authentications)


_T = TypeVar("_T", ScaledObjectSpec, ScaledJobSpec)


def _pick(specs: tuple[_T, ...], name: str | None, kind: str) -> _T:
    if name is None:
        if len(specs) != 1:
            raise ConfigError(f"expected exactly one {kind}, found {len(specs)}")
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    raise ConfigError(f"no {kind} named {name!r}")


def load_manifests(source: ManifestInput, *, ignore_unknown_kinds: bool = False) -> Manifests:
    """Read every KEDA object (and backing Secret/ConfigMap) of ``source``.

    ``source`` is YAML text (``---``-separated documents, a ``v1`` ``List`` is expanded),
    one manifest mapping, or a list of them. Other kinds (a Deployment in the same file)
    are a :class:`~eventscale.errors.ConfigError` unless ``ignore_unknown_kinds``.

    :raises ConfigError: listing every problem of every document, each with its path.
    """
    docs, multi = read_documents(source)
    scaled_objects: list[ScaledObjectSpec] = []
    scaled_jobs: list[ScaledJobSpec] = []
    auths: dict[tuple[str, str], TriggerAuthenticationSpec] = {}
    secrets: dict[str, Mapping[str, Secret]] = {}
    config_maps: dict[str, Mapping[str, str]] = {}
    undecodable: set[tuple[str, str]] = set()
    seen: dict[tuple[str, str], int] = {}
    problems: list[ConfigError] = []

    for doc in docs:
        r = FieldReader(doc)
        prefix = f"[doc {doc.index}]"
        data = doc.data
        if not isinstance(data, Mapping):
            problems.append(not_a_mapping(data, prefix))
            continue
        kind = data.get("kind")
        api_version = data.get("apiVersion")
        what = f"{kind}" if isinstance(kind, str) else "document"
        name = None
        meta = data.get("metadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
            name = meta["name"]
            what = f"{what} {name!r}"
        if kind in _KEDA_KINDS or kind in _CORE_KINDS:
            expected = KEDA_API_VERSION if kind in _KEDA_KINDS else "v1"
            if api_version != expected:
                r.fail(
                    "apiVersion",
                    f"{kind} needs apiVersion {expected!r}, got {shown(api_version, reveal=True)}",
                )
        elif ignore_unknown_kinds:
            continue
        else:
            known = ", ".join((*_KEDA_KINDS, "Secret", "ConfigMap"))
            r.fail(
                "kind", f"unsupported kind {shown(kind, reveal=True)} (eventscale reads {known})"
            )
        if not r.errors:
            r.mapping(data, "", _TOP_FIELDS_BY_KIND.get(str(kind), _TOP_FIELDS))
            if kind == "ScaledObject":
                so = read_scaled_object(r, data)
                if so is not None:
                    scaled_objects.append(so)
            elif kind == "ScaledJob":
                sj = read_scaled_job(r, data)
                if sj is not None:
                    scaled_jobs.append(sj)
            elif kind in TA_KINDS:
                ta = read_trigger_auth(r, data, str(kind))
                auths[(ta.kind, ta.name)] = ta
            elif kind == "Secret":
                sec = read_secret(r, data)
                secrets[sec.name] = sec.values
                undecodable.update((sec.name, key) for key in sec.undecodable)
            elif kind == "ConfigMap":
                cm_name, cm_data = read_config_map(r, data)
                config_maps[cm_name] = cm_data
            if name is not None and isinstance(kind, str):
                ident = (kind, name)
                if ident in seen:
                    r.fail("metadata.name", f"duplicate {kind} {name!r} (also [doc {seen[ident]}])")
                seen.setdefault(ident, doc.index)
        err = r.error(what, multi=multi)
        if err is not None:
            problems.append(err.prefixed(prefix) if multi else err)

    ConfigError.collect(problems, what="invalid manifests")
    return Manifests(
        scaled_objects=tuple(scaled_objects),
        scaled_jobs=tuple(scaled_jobs),
        trigger_authentications=auths,
        secrets=secrets,
        config_maps=config_maps,
        undecodable_secret_keys=frozenset(undecodable),
    )


def load_scaled_object(source: ManifestInput, name: str | None = None) -> ScaledObjectSpec:
    """The ScaledObject of ``source`` (the one called ``name`` when there are several)."""
    return load_manifests(source).scaled_object(name)


def load_scaled_job(source: ManifestInput, name: str | None = None) -> ScaledJobSpec:
    """The ScaledJob of ``source`` (the one called ``name`` when there are several)."""
    return load_manifests(source).scaled_job(name)


def load_trigger_authentication(
    source: ManifestInput, name: str | None = None
) -> TriggerAuthenticationSpec:
    """The (Cluster)TriggerAuthentication of ``source``."""
    auths = load_manifests(source).trigger_authentications
    found = [ta for ta in auths.values() if name is None or ta.name == name]
    if len(found) != 1:
        raise ConfigError(f"expected exactly one TriggerAuthentication, found {len(found)}")
    return found[0]
