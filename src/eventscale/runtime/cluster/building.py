"""Building a watched object, and restoring its target when it goes.

:func:`build` turns a ScaledObject or ScaledJob document into the runtime object the
controller runs, with the manifest and authentication code ``eventscale run`` uses on
files, reading Secrets and TriggerAuthentications from the watch caches.
:func:`restore_original_replicas` is KEDA's ``restoreToOriginalReplicaCount``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from eventscale.errors import TargetError
from eventscale.runtime.cluster.sources import (
    CacheSource,
    Dependency,
    Lookup,
    cached_authentications,
)

__all__ = ("build", "is_paused", "metric_names", "restore_original_replicas")

logger = logging.getLogger("eventscale.cluster")


async def build(
    kind: str,
    doc: Mapping[str, Any],
    *,
    client: Any,
    lookup: Lookup,
    used: set[Dependency],
    env: Mapping[str, str],
    cluster_namespace: str,
    make_target: Callable[[Any], Any],
    make_job_target: Callable[[Any], Any],
) -> Any:
    """A runtime ScaledObject or ScaledJob for API document ``doc``.

    Read by the manifest code, its authentication resolved from the caches behind
    ``lookup`` (every object read is added to ``used``); the scale target container's
    environment is read through ``client`` when a trigger reads the environment.

    :raises ConfigError: the document or a reference is invalid (with its path).
    :raises EventscaleError: a source could not be read for now.
    """
    from eventscale.authentication import AuthResolver, reads_environment, workload_env
    from eventscale.manifests.reader import load_manifests, load_trigger_authentication
    from eventscale.runtime.scaled_job import ScaledJob
    from eventscale.runtime.scaled_object import ScaledObject

    manifests = load_manifests(dict(doc))
    spec: Any = manifests.scaled_objects[0] if kind == "ScaledObject" else manifests.scaled_jobs[0]
    sources = (CacheSource(lookup, used),)
    authentications = cached_authentications(lookup, used, load_trigger_authentication)
    merged = dict(env)
    auths = []
    for trigger in spec.triggers:
        ref = trigger.authentication_ref
        if ref is not None:
            ta = await authentications(ref.kind, ref.name, spec.namespace)
            if ta is not None:
                auths.append(ta)
    workload = None
    if reads_environment(spec, auths):
        workload = await workload_env(spec, sources=sources, client=client)
        merged.update({k: v.reveal() for k, v in (workload or {}).items()})

    async def container_env(name: str) -> dict[str, str]:
        found = await workload_env(spec, sources=sources, client=client, container=name)
        return {k: v.reveal() for k, v in (found or {}).items()}

    resolver = AuthResolver(
        sources=sources,
        env=merged,
        cluster_namespace=cluster_namespace,
        authentications=authentications,
        env_origin="the scale target container's environment"
        if workload is not None
        else "the process environment",
        container_env=container_env if workload is not None else None,
    )
    contexts = await resolver.trigger_contexts(spec, {})
    if kind == "ScaledObject":
        target = make_target(spec)
        try:
            return ScaledObject(spec, target=target, contexts=contexts)
        except BaseException:
            await target.aclose()
            raise
    return ScaledJob(spec, target=make_job_target(spec), contexts=contexts)


async def restore_original_replicas(
    client: Any,
    key: str,
    doc: Mapping[str, Any],
    status: Mapping[str, Any],
    make_target: Callable[[], Any] | None = None,
) -> None:
    """KEDA's ``advanced.restoreToOriginalReplicaCount`` on delete: the target back to
    ``status.originalReplicaCount`` (nothing when the status has none, as KEDA).

    ``make_target`` builds the target the object ran with (``run --target``); without
    it, the ``scaleTargetRef`` in the cluster is written through its scale subresource.
    """
    spec = doc.get("spec") or {}
    advanced = spec.get("advanced") or {}
    if not (isinstance(advanced, Mapping) and advanced.get("restoreToOriginalReplicaCount")):
        return
    original = status.get("originalReplicaCount")
    if not isinstance(original, int) or not status.get("scaleTargetGVKR"):
        logger.info("%s: no original replica count known; nothing to restore", key)
        return
    target = make_target() if make_target is not None else _cluster_target(client, key, spec)
    try:
        await target.set_replicas(original, reason="restoreToOriginalReplicaCount")
        logger.info("%s: restored the target to %d replicas", key, original)
    except TargetError as exc:
        logger.warning("%s: restoring the original replica count failed: %s", key, exc)
    finally:
        await target.aclose()


def _cluster_target(client: Any, key: str, spec: Mapping[str, Any]) -> Any:
    from eventscale.spec import ScaleTargetRef
    from eventscale.targets.kubernetes import KubernetesTarget

    ref = spec.get("scaleTargetRef") or {}
    return KubernetesTarget.from_ref(
        ScaleTargetRef(
            name=str(ref.get("name")),
            kind=str(ref.get("kind") or "Deployment"),
            api_version=str(ref.get("apiVersion") or "apps/v1"),
        ),
        namespace=key.partition("/")[0],
        client=client,
    )


def is_paused(spec: Any) -> bool:
    """Whether a pause annotation of any kind is set on ``spec``."""
    if spec.paused:
        return True
    for name in ("paused_replicas",):
        if getattr(spec, name, None) is not None:
            return True
    return bool(getattr(spec, "paused_scale_in", False) or getattr(spec, "paused_scale_out", False))


def metric_names(obj: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """KEDA's ``externalMetricNames`` and ``resourceMetricNames`` of a built object."""
    external: list[str] = []
    resource: list[str] = []
    for trigger, scaler in zip(obj.spec.triggers, obj.scalers, strict=False):
        if trigger.type in ("cpu", "memory"):
            resource.append(trigger.type)
            continue
        try:
            external.extend(m.name for m in scaler.metric_specs())
        except Exception:  # a scaler that cannot name its metrics before a poll
            external.append(f"s{len(external)}-{trigger.type}")
    return tuple(external), tuple(resource)
