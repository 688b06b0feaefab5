"""The scale target's environment, resolved as KEDA resolves it for ``...FromEnv``
parameters and TriggerAuthentication ``env`` entries.

KEDA reads the pod template of the ScaledObject's ``scaleTargetRef`` (or the ScaledJob's
``jobTargetRef``), picks the container named ``envSourceContainerName`` (default: the
first) and resolves its environment (``resolveEnv`` in KEDA's
``pkg/scaling/resolver/scale_resolvers.go``): first ``envFrom`` (ConfigMaps and Secrets,
each key under an optional ``prefix``), then ``env`` in order: a ``value`` with
``$(VAR)`` references to the variables before it expanded, or a ``valueFrom``
``secretKeyRef`` / ``configMapKeyRef``. Other ``valueFrom`` sources (``fieldRef``,
``resourceFieldRef``) have no value outside a pod and are skipped.

Secrets and ConfigMaps come from the same :class:`~eventscale.authentication.SecretSource`
chain as TriggerAuthentications (manifest files first, then the cluster). A missing
object or key that is not ``optional`` is a :class:`~eventscale.errors.ConfigError`
naming the container, the variable, the object and the key, never a value.
docs/authentication.md shows the lookup order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from eventscale.authentication.sources import CONFIG_MAP, SECRET, SecretData, SecretSource
from eventscale.errors import ConfigError, ScalerError, TargetError, TargetNotFound
from eventscale.kube.client import KNOWN_PLURALS, api_prefix
from eventscale.kube.env import choose_container, expand_references, pod_template_containers
from eventscale.redaction import Secret
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerAuthenticationSpec

if TYPE_CHECKING:
    from eventscale.kube import KubeClient

__all__ = (
    "reads_environment",
    "resolve_container_env",
    "workload_env",
)

log = logging.getLogger("eventscale.secrets")

#: How many variables and envFrom sources one container may have here.
_MAX_ITEMS: Final = 1000


def reads_environment(
    spec: ScaledObjectSpec | ScaledJobSpec, auths: Iterable[TriggerAuthenticationSpec] = ()
) -> bool:
    """Whether resolving ``spec`` reads the container's environment: a trigger has a
    ``...FromEnv`` parameter, or one of ``auths`` has an ``env`` entry."""
    if any(key.endswith("FromEnv") for t in spec.triggers for key in t.metadata):
        return True
    return any(auth.env for auth in auths)


async def _lookup(
    sources: Sequence[SecretSource], kind: str, name: str, namespace: str
) -> SecretData | None:
    for source in sources:
        if kind == SECRET:
            found = await source.get_secret(name, namespace)
        else:
            found = await source.get_config_map(name, namespace)
        if found is not None:
            log.debug("%s %r (container env) found in %s", kind, name, found.origin)
            return found
    return None


async def resolve_container_env(
    container: Mapping[str, Any],
    *,
    sources: Sequence[SecretSource],
    namespace: str,
    where: str = "the scale target",
) -> dict[str, Secret]:
    """The environment of ``container`` (a pod template's container, as a mapping).

    ``sources`` supply the Secrets and ConfigMaps ``envFrom`` and ``valueFrom`` name,
    looked up in ``namespace``. Every value is a :class:`~eventscale.redaction.Secret`.

    :raises ConfigError: every missing non-optional Secret, ConfigMap or key, each
        naming the container, the variable (or ``envFrom`` entry), the object and key.
    :raises ScalerError: a source could not be reached (transient).
    """
    cname = str(container.get("name") or "")
    who = f"{where}, container {cname!r}" if cname else where
    searched = ", ".join(s.description for s in sources) or "no Secret or ConfigMap source"
    errors: list[ConfigError] = []
    env: dict[str, Secret] = {}
    for i, source in enumerate(_items(container.get("envFrom"))):
        prefix = str(source.get("prefix") or "")
        for ref_kind, kind in (("configMapRef", CONFIG_MAP), ("secretRef", SECRET)):
            ref = source.get(ref_kind)
            if not isinstance(ref, Mapping):
                continue
            name = str(ref.get("name") or "")
            data = await _lookup(sources, kind, name, namespace)
            if data is None:
                if not ref.get("optional"):
                    errors.append(
                        ConfigError(
                            f"{who}: envFrom {kind} {name!r} not found (searched {searched}; "
                            f"namespace {namespace!r})",
                            path=f"envFrom[{i}].{ref_kind}.name",
                        )
                    )
                continue
            for key, value in data.values.items():
                env[prefix + key] = value
    for i, item in enumerate(_items(container.get("env"))):
        var = str(item.get("name") or "")
        if "value" in item:
            plain = {k: v.reveal() for k, v in env.items()}
            env[var] = Secret(expand_references(str(item.get("value") or ""), plain))
            continue
        value_from = item.get("valueFrom")
        if not isinstance(value_from, Mapping):
            env[var] = Secret("")  # an env entry with neither value nor valueFrom
            continue
        for ref_kind, kind in (("secretKeyRef", SECRET), ("configMapKeyRef", CONFIG_MAP)):
            ref = value_from.get(ref_kind)
            if not isinstance(ref, Mapping):
                continue
            name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
            optional = bool(ref.get("optional"))
            path = f"env[{i}].valueFrom.{ref_kind}"
            data = await _lookup(sources, kind, name, namespace)
            if data is None:
                if not optional:
                    errors.append(
                        ConfigError(
                            f"{who}: variable {var!r}: {kind} {name!r} not found (searched "
                            f"{searched}; namespace {namespace!r})",
                            path=f"{path}.name",
                        )
                    )
            elif key in data.values:
                env[var] = data.values[key]
            elif not optional:
                why = "is not UTF-8 text" if key in data.unreadable else "is missing"
                errors.append(
                    ConfigError(
                        f"{who}: variable {var!r}: key {key!r} of {kind} {name!r} {why} "
                        f"(in {data.origin})",
                        path=f"{path}.key",
                    )
                )
    ConfigError.collect(errors, what=f"cannot resolve the environment of {who}")
    return env


def _items(value: Any) -> Iterable[Mapping[str, Any]]:
    if not isinstance(value, list):
        return ()
    return [v for v in value[:_MAX_ITEMS] if isinstance(v, Mapping)]


async def workload_env(
    spec: ScaledObjectSpec | ScaledJobSpec,
    *,
    sources: Sequence[SecretSource],
    documents: Iterable[Mapping[str, Any]] = (),
    client: KubeClient | None = None,
    namespace: str | None = None,
    container: str | None = None,
) -> dict[str, Secret] | None:
    """The environment of ``spec``'s scale target container, as KEDA resolves it.

    The container is ``container`` (a TriggerAuthentication ``env`` entry's
    ``containerName``), else ``envSourceContainerName``, else the first.

    A ScaledJob's container comes from its ``jobTargetRef``. A ScaledObject's target is
    looked for among ``documents`` (manifest documents: a Deployment in the same file)
    and then, for the built-in kinds, read through ``client``. ``None`` when the target
    is in neither (a custom resource, or no cluster): the caller falls back to the
    environment it was given.

    :raises ConfigError: the container or a non-optional reference is missing; the
        cluster refused to show the target (HTTP 401/403).
    :raises ScalerError: a source could not be reached (transient).
    """
    ns = namespace or spec.namespace
    if isinstance(spec, ScaledJobSpec):
        where = f"ScaledJob {spec.name!r} jobTargetRef"
        containers = pod_template_containers(spec.job_target_ref)
        wanted = container or spec.env_source_container_name
        chosen = choose_container(containers, wanted, where=where)
        return await resolve_container_env(chosen, sources=sources, namespace=ns, where=where)
    ref = spec.scale_target_ref
    api_version = ref.api_version or "apps/v1"
    kind = ref.kind or "Deployment"
    where = f"{kind} {ref.name!r}"
    obj: Mapping[str, Any] | None = None
    for doc in documents:
        meta = doc.get("metadata") or {}
        if (
            doc.get("kind") == kind
            and doc.get("apiVersion") == api_version
            and meta.get("name") == ref.name
            and (meta.get("namespace") or spec.namespace) == spec.namespace
        ):
            obj = doc
            break
    group = api_version.split("/")[0] if "/" in api_version else ""
    plural = KNOWN_PLURALS.get((group, kind))
    if obj is None and client is not None and plural is not None:
        path = f"{api_prefix(api_version)}/namespaces/{ns}/{plural}/{ref.name}"
        try:
            obj = await client.request("GET", path)
        except TargetNotFound:
            obj = None
        except TargetError as exc:
            if exc.status in (401, 403):
                raise ConfigError(
                    f"reading {where} in namespace {ns!r} for its environment was refused "
                    f"(HTTP {exc.status}; RBAC verb 'get' on resource '{plural}'): "
                    f"{exc.message}"
                ) from exc
            raise ScalerError(
                f"cannot read {where} in namespace {ns!r} for its environment: {exc.message}",
                transient=True,
            ) from exc
    if obj is None:
        return None
    containers = pod_template_containers(obj)
    chosen = choose_container(containers, container or ref.env_source_container_name, where=where)
    return await resolve_container_env(chosen, sources=sources, namespace=ns, where=where)
