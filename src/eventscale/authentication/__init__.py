"""Trigger authentication: where a trigger's secrets and parameters come from.

KEDA's TriggerAuthentication rules, the secret sources (manifest files, a directory,
the cluster: :mod:`~eventscale.authentication.sources`), the scale target's
environment (:mod:`~eventscale.authentication.workload`), the synchronous resolver
(:mod:`~eventscale.authentication.contexts`) and the asynchronous one
(:mod:`~eventscale.authentication.resolver`) that turn a ScaledObject's triggers into the
:class:`~eventscale.scalers.params.TriggerContext` each scaler is built from. This
package reads manifest streams through :class:`ManifestStream` and imports nothing from
:mod:`eventscale.manifests`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.authentication.contexts import (
        resolve_trigger_authentication,
        resolve_trigger_contexts,
        stream_trigger_contexts,
    )
    from eventscale.authentication.resolver import (
        DEFAULT_CLUSTER_NAMESPACE,
        AuthenticationLookup,
        AuthResolver,
        cluster_authentications,
        default_sources,
        resolve_trigger_contexts_async,
    )
    from eventscale.authentication.sources import (
        ClusterSource,
        DirectorySource,
        ManifestStream,
        MappingSource,
        SecretData,
        SecretSource,
    )
    from eventscale.authentication.workload import (
        reads_environment,
        resolve_container_env,
        workload_env,
    )

__all__ = (
    "AuthResolver",
    "AuthenticationLookup",
    "ClusterSource",
    "DEFAULT_CLUSTER_NAMESPACE",
    "DirectorySource",
    "ManifestStream",
    "MappingSource",
    "SecretData",
    "SecretSource",
    "cluster_authentications",
    "default_sources",
    "resolve_trigger_authentication",
    "resolve_trigger_contexts",
    "resolve_trigger_contexts_async",
    "reads_environment",
    "resolve_container_env",
    "stream_trigger_contexts",
    "workload_env",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "AuthResolver": "eventscale.authentication.resolver",
        "AuthenticationLookup": "eventscale.authentication.resolver",
        "cluster_authentications": "eventscale.authentication.resolver",
        "reads_environment": "eventscale.authentication.workload",
        "resolve_container_env": "eventscale.authentication.workload",
        "workload_env": "eventscale.authentication.workload",
        "ClusterSource": "eventscale.authentication.sources",
        "DEFAULT_CLUSTER_NAMESPACE": "eventscale.authentication.resolver",
        "DirectorySource": "eventscale.authentication.sources",
        "ManifestStream": "eventscale.authentication.sources",
        "MappingSource": "eventscale.authentication.sources",
        "SecretData": "eventscale.authentication.sources",
        "SecretSource": "eventscale.authentication.sources",
        "default_sources": "eventscale.authentication.resolver",
        "resolve_trigger_authentication": "eventscale.authentication.contexts",
        "resolve_trigger_contexts": "eventscale.authentication.contexts",
        "resolve_trigger_contexts_async": "eventscale.authentication.resolver",
        "stream_trigger_contexts": "eventscale.authentication.contexts",
    },
    __all__,
)
