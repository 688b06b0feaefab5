"""The Kubernetes API: where it is and how to talk to it.

:mod:`eventscale.kube.config` reads kubeconfig files and the in-cluster service account
(:class:`KubeConfig`, :class:`ExecCredentialPlugin`); :mod:`eventscale.kube.client` is a
small async REST client (:class:`KubeClient`) with watch streams;
:mod:`eventscale.kube.watch` keeps a cache of one kind in step with the API
(:class:`Informer`); :mod:`eventscale.kube.events` writes Kubernetes Events
(:class:`EventRecorder`); :mod:`eventscale.kube.env` holds pod
template and ``$(VAR)`` helpers. The Kubernetes target, the Kubernetes
job backend, Lease sharding, leader election and ``TriggerAuthentication`` resolution
all share them. docs/targets/kubernetes.md describes both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.kube.client import (
        JSON_PATCH,
        KNOWN_PLURALS,
        MAX_WATCH_LINE,
        MERGE_PATCH,
        KubeClient,
        api_prefix,
        request_verb,
    )
    from eventscale.kube.config import (
        SERVICE_ACCOUNT_DIR,
        ExecCredentialPlugin,
        KubeConfig,
        environment_proxy,
        kubeconfig_paths,
        merge_kubeconfigs,
    )
    from eventscale.kube.env import choose_container, expand_references, pod_template_containers
    from eventscale.kube.events import EventRecorder
    from eventscale.kube.watch import Informer, WatchEvent

__all__ = (
    "EventRecorder",
    "ExecCredentialPlugin",
    "Informer",
    "JSON_PATCH",
    "KNOWN_PLURALS",
    "MAX_WATCH_LINE",
    "MERGE_PATCH",
    "KubeClient",
    "KubeConfig",
    "SERVICE_ACCOUNT_DIR",
    "api_prefix",
    "choose_container",
    "environment_proxy",
    "expand_references",
    "kubeconfig_paths",
    "merge_kubeconfigs",
    "pod_template_containers",
    "request_verb",
    "WatchEvent",
)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "EventRecorder": "eventscale.kube.events",
        "Informer": "eventscale.kube.watch",
        "WatchEvent": "eventscale.kube.watch",
        "JSON_PATCH": "eventscale.kube.client",
        "MAX_WATCH_LINE": "eventscale.kube.client",
        "MERGE_PATCH": "eventscale.kube.client",
        "request_verb": "eventscale.kube.client",
        "KNOWN_PLURALS": "eventscale.kube.client",
        "KubeClient": "eventscale.kube.client",
        "api_prefix": "eventscale.kube.client",
        "SERVICE_ACCOUNT_DIR": "eventscale.kube.config",
        "ExecCredentialPlugin": "eventscale.kube.config",
        "KubeConfig": "eventscale.kube.config",
        "environment_proxy": "eventscale.kube.config",
        "kubeconfig_paths": "eventscale.kube.config",
        "merge_kubeconfigs": "eventscale.kube.config",
        "choose_container": "eventscale.kube.env",
        "expand_references": "eventscale.kube.env",
        "pod_template_containers": "eventscale.kube.env",
    },
    __all__,
)
