"""KEDA's admission rules and object bookkeeping, as pure functions over API documents.

KEDA's webhook refuses a ScaledObject whose scale target is already scaled by another
ScaledObject or by an HPA the ScaledObject does not own. Watching instead of admitting,
the same rule is applied to what the caches hold: of two ScaledObjects on one target
the older keeps it (creation time, then name) and the other is refused
(:func:`conflict`). :func:`fingerprint` tells a change that needs a rebuild (spec,
annotations, labels) from one that does not (a status write, a resourceVersion bump).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from eventscale.runtime.cluster.keda import FINALIZER, HPA_OWNERSHIP_ANNOTATION, gvk_string

__all__ = (
    "conflict",
    "finalizers",
    "fingerprint",
    "involved",
    "is_deleting",
    "paused_in_status",
    "object_key",
    "target_of",
    "with_finalizer",
    "without_finalizer",
)


def object_key(doc: Mapping[str, Any]) -> str:
    """``namespace/name`` of an API document."""
    meta = doc.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def involved(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of ``doc`` an Event's ``involvedObject`` (or ``regarding``) names."""
    meta = doc.get("metadata") or {}
    return {
        "apiVersion": doc.get("apiVersion", "keda.sh/v1alpha1"),
        "kind": doc.get("kind", ""),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta
        },
    }


def finalizers(doc: Mapping[str, Any]) -> list[str]:
    """``metadata.finalizers`` (a list of strings, empty when absent or malformed)."""
    value = (doc.get("metadata") or {}).get("finalizers") or []
    return [str(f) for f in value] if isinstance(value, list) else []


def is_deleting(doc: Mapping[str, Any]) -> bool:
    """Whether ``metadata.deletionTimestamp`` is set."""
    return bool((doc.get("metadata") or {}).get("deletionTimestamp"))


def fingerprint(doc: Mapping[str, Any]) -> str:
    """What a rebuild depends on: spec, annotations, labels and the deletion mark.

    Status, resourceVersion, managedFields and finalizers do not count, so this
    process's own status writes and finalizer edits never rebuild an object.
    """
    meta = doc.get("metadata") or {}
    return json.dumps(
        [
            doc.get("spec"),
            meta.get("annotations") or {},
            meta.get("labels") or {},
            bool(meta.get("deletionTimestamp")),
        ],
        sort_keys=True,
        default=str,
    )


def target_of(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(GVK string, name)`` of a ScaledObject's (or an HPA's) ``scaleTargetRef``."""
    ref = (doc.get("spec") or {}).get("scaleTargetRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    api_version = str(ref.get("apiVersion") or "apps/v1")
    kind = str(ref.get("kind") or "Deployment")
    return gvk_string(api_version, kind), str(ref["name"])


def _age(doc: Mapping[str, Any]) -> tuple[str, str]:
    meta = doc.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def _owned_by(hpa: Mapping[str, Any], name: str) -> bool:
    owners = (hpa.get("metadata") or {}).get("ownerReferences") or []
    return any(
        isinstance(o, Mapping) and o.get("kind") == "ScaledObject" and o.get("name") == name
        for o in owners
    )


def conflict(
    doc: Mapping[str, Any],
    scaled_objects: Iterable[Mapping[str, Any]],
    hpas: Iterable[Mapping[str, Any]],
) -> str | None:
    """Why KEDA's webhook would refuse ScaledObject ``doc``, or ``None``.

    ``scaled_objects`` and ``hpas`` are the documents of ``doc``'s namespace (others are
    skipped). The wording is the webhook's.
    """
    target = target_of(doc)
    if target is None:
        return None
    meta = doc.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    gvk, workload = target
    for hpa in hpas:
        hmeta = hpa.get("metadata") or {}
        if hmeta.get("namespace") != namespace:
            continue
        if (hmeta.get("annotations") or {}).get(HPA_OWNERSHIP_ANNOTATION) == "false":
            continue
        if target_of(hpa) == target and not _owned_by(hpa, str(name)):
            return (
                f"the workload '{workload}' of type '{gvk}' is already managed by the hpa "
                f"'{hmeta.get('name')}'"
            )
    mine = _age(doc)
    for other in scaled_objects:
        ometa = other.get("metadata") or {}
        if ometa.get("namespace") != namespace or ometa.get("name") == name:
            continue
        if is_deleting(other) or target_of(other) != target:
            continue
        if _age(other) < mine:
            return (
                f"the workload '{workload}' of type '{gvk}' is already managed by the "
                f"ScaledObject '{ometa.get('name')}'"
            )
    return None


def with_finalizer(doc: Mapping[str, Any]) -> list[str] | None:
    """The finalizer list with KEDA's added, or ``None`` when it is there already."""
    current = finalizers(doc)
    return None if FINALIZER in current else [*current, FINALIZER]


def without_finalizer(doc: Mapping[str, Any]) -> list[str] | None:
    """The finalizer list without KEDA's, or ``None`` when it is not there."""
    current = finalizers(doc)
    return [f for f in current if f != FINALIZER] if FINALIZER in current else None


def paused_in_status(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc``'s status has the condition ``Paused=True``."""
    status = doc.get("status") or {}
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return any(
        isinstance(c, Mapping) and c.get("type") == "Paused" and c.get("status") == "True"
        for c in conditions or ()
    )
