"""KEDA's finalizer on an object: put on, taken off.

Both writes are PATCHes of ``metadata.finalizers``: a merge patch carrying the
``resourceVersion`` it was computed from (a 409 means a newer version exists, and its
watch event brings the object back to the reconciler), or, for an object no longer
watched, a JSON patch whose ``test`` operation makes it remove exactly KEDA's entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import eventscale.runtime.cluster.rules as rules
from eventscale.errors import TargetConflict, TargetError
from eventscale.runtime.cluster.keda import FINALIZER

__all__ = ("remove_finalizer", "set_finalizers")

logger = logging.getLogger("eventscale.cluster")


async def set_finalizers(
    client: Any, path: str, doc: Mapping[str, Any], finalizers: list[str]
) -> None:
    """Write ``finalizers`` on the object at ``path``, if ``doc`` is still its version."""
    meta = doc.get("metadata") or {}
    body = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
    try:
        await client.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    except TargetConflict:
        logger.debug("%s: finalizers changed meanwhile", path)
    except TargetError as exc:
        logger.warning("%s: updating finalizers failed: %s", path, exc)


async def remove_finalizer(client: Any, path: str, doc: Mapping[str, Any]) -> None:
    """Take KEDA's finalizer off the object at ``path`` (where ``doc`` last had it)."""
    current = rules.finalizers(doc)
    if FINALIZER not in current:
        return
    at = f"/metadata/finalizers/{current.index(FINALIZER)}"
    try:
        await client.request(
            "PATCH",
            path,
            body=[{"op": "test", "path": at, "value": FINALIZER}, {"op": "remove", "path": at}],
            content_type="application/json-patch+json",
        )
    except TargetError as exc:  # gone, or the finalizers moved: nothing to undo here
        logger.debug("%s: leaving the finalizer: %s", path, exc)
