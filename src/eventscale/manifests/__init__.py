"""KEDA manifests: YAML (or dicts) to frozen specs and back.

:mod:`~eventscale.manifests.reader` reads KEDA kinds into specs,
:mod:`~eventscale.manifests.writer` writes specs back, and
:mod:`~eventscale.manifests.fields` is the typed field reader every manifest kind
(the HTTP add-on's too) is read with. ``resolve_trigger_contexts`` is
:func:`eventscale.authentication.resolve_trigger_contexts`, re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.authentication.contexts import (
        resolve_trigger_contexts,
    )
    from eventscale.manifests.fields import (
        ManifestInput,
    )
    from eventscale.manifests.reader import (
        KEDA_API_VERSION,
        Manifests,
        load_manifests,
        load_scaled_job,
        load_scaled_object,
        load_trigger_authentication,
    )
    from eventscale.manifests.writer import (
        dump_manifests,
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

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "KEDA_API_VERSION": "eventscale.manifests.reader",
        "ManifestInput": "eventscale.manifests.fields",
        "Manifests": "eventscale.manifests.reader",
        "dump_manifests": "eventscale.manifests.writer",
        "load_manifests": "eventscale.manifests.reader",
        "load_scaled_job": "eventscale.manifests.reader",
        "load_scaled_object": "eventscale.manifests.reader",
        "load_trigger_authentication": "eventscale.manifests.reader",
        "resolve_trigger_contexts": "eventscale.authentication.contexts",
        "to_manifest": "eventscale.manifests.writer",
    },
    __all__,
)
