"""KEDA manifests: YAML (or dicts) to frozen specs and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy

if TYPE_CHECKING:
    from eventscale.manifests.reader import (
        KEDA_API_VERSION,
        ManifestInput,
        Manifests,
        dump_manifests,
        load_manifests,
        load_scaled_job,
        load_scaled_object,
        load_trigger_authentication,
        resolve_trigger_contexts,
        to_manifest,
    )

__all__ = (
    "KEDA_API_VERSION",
    "ManifestInput",
    "Manifests",
    "dump_manifests",
    "load_manifests",
    "load_scaled_job",
    "load_scaled_object",
    "load_trigger_authentication",
    "resolve_trigger_contexts",
    "to_manifest",
)

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "KEDA_API_VERSION": "eventscale.manifests.reader",
        "ManifestInput": "eventscale.manifests.reader",
        "Manifests": "eventscale.manifests.reader",
        "dump_manifests": "eventscale.manifests.reader",
        "load_manifests": "eventscale.manifests.reader",
        "load_scaled_job": "eventscale.manifests.reader",
        "load_scaled_object": "eventscale.manifests.reader",
        "load_trigger_authentication": "eventscale.manifests.reader",
        "resolve_trigger_contexts": "eventscale.manifests.reader",
        "to_manifest": "eventscale.manifests.reader",
    },
    __all__,
)
