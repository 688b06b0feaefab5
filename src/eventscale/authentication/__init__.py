"""Trigger authentication: where a trigger's secrets and parameters come from.

KEDA's TriggerAuthentication rules, the secret sources (manifest files, a
directory, the cluster) and the resolver that turns a ScaledObject's triggers into
the :class:`~eventscale.scalers.params.TriggerContext` each scaler is built from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale import _lazy

if TYPE_CHECKING:
    from eventscale.authentication._resolve import (
        resolve_trigger_authentication,
        resolve_trigger_contexts,
    )
    from eventscale.authentication.resolver import (
        DEFAULT_CLUSTER_NAMESPACE,
        AuthResolver,
        ClusterSource,
        DirectorySource,
        MappingSource,
        SecretData,
        SecretSource,
        default_sources,
        resolve_trigger_contexts_async,
    )

__all__ = (
    "AuthResolver",
    "ClusterSource",
    "DEFAULT_CLUSTER_NAMESPACE",
    "DirectorySource",
    "MappingSource",
    "SecretData",
    "SecretSource",
    "default_sources",
    "resolve_trigger_authentication",
    "resolve_trigger_contexts",
    "resolve_trigger_contexts_async",
)

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "AuthResolver": "eventscale.authentication.resolver",
        "ClusterSource": "eventscale.authentication.resolver",
        "DEFAULT_CLUSTER_NAMESPACE": "eventscale.authentication.resolver",
        "DirectorySource": "eventscale.authentication.resolver",
        "MappingSource": "eventscale.authentication.resolver",
        "SecretData": "eventscale.authentication.resolver",
        "SecretSource": "eventscale.authentication.resolver",
        "default_sources": "eventscale.authentication.resolver",
        "resolve_trigger_authentication": "eventscale.authentication._resolve",
        "resolve_trigger_contexts": "eventscale.authentication._resolve",
        "resolve_trigger_contexts_async": "eventscale.authentication.resolver",
    },
    __all__,
)
