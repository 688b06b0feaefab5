"""Running in a cluster as KEDA's operator does.

:class:`~eventscale.runtime.cluster.reconciler.ClusterReconciler` watches KEDA's
objects and keeps a controller in step with them; :mod:`.keda` holds KEDA's reasons,
conditions and status fields; :mod:`.rules` its admission rules; :mod:`.tracker` turns
the controller's events into status and Kubernetes Events; :mod:`.writer` writes them;
:mod:`.sources` reads Secrets and TriggerAuthentications from the watch caches;
:mod:`.building` builds an object and restores its target on delete; :mod:`.finalizing`
puts KEDA's finalizer on and takes it off.
See docs/deploy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.runtime.cluster.keda import FINALIZER, Reason, StatusInputs
    from eventscale.runtime.cluster.reconciler import ClusterReconciler

__all__ = ("FINALIZER", "ClusterReconciler", "Reason", "StatusInputs")

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "FINALIZER": "eventscale.runtime.cluster.keda",
        "ClusterReconciler": "eventscale.runtime.cluster.reconciler",
        "Reason": "eventscale.runtime.cluster.keda",
        "StatusInputs": "eventscale.runtime.cluster.keda",
    },
    __all__,
)
