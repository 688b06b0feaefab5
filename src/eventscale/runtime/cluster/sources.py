"""Secrets, ConfigMaps and TriggerAuthentications read from the watch caches.

Building a watched object resolves its authentication as ``eventscale run`` does on
files (:mod:`eventscale.authentication`), but every Secret, ConfigMap and
(Cluster)TriggerAuthentication comes from an informer's cache instead of a GET, and
every one looked up (found or not) is recorded as a :data:`Dependency` of the object:
when one of them changes, only the objects that read it are rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from eventscale.authentication.sources import SecretData, config_map_data, secret_data
from eventscale.spec import TriggerAuthenticationSpec

__all__ = ("CacheSource", "Dependency", "Lookup", "cached_authentications")

#: ``(kind, namespace, name)`` of an object a build read: ``Secret``, ``ConfigMap``,
#: ``TriggerAuthentication`` or ``ClusterTriggerAuthentication`` (namespace ``""``).
Dependency: TypeAlias = tuple[str, str, str]

#: ``lookup(kind, namespace, name)``: the cached API document, or ``None``.
Lookup: TypeAlias = Callable[[str, str, str], Mapping[str, Any] | None]


class CacheSource:
    """A :class:`~eventscale.authentication.SecretSource` over the watch caches.

    :param lookup: reads a cached document.
    :param used: every object looked up is added here (also those not found).
    """

    def __init__(self, lookup: Lookup, used: set[Dependency]) -> None:
        self.lookup = lookup
        self.used = used

    @property
    def description(self) -> str:
        """How error messages name this source."""
        return "the cluster"

    def __repr__(self) -> str:
        return f"CacheSource({len(self.used)} objects read)"

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        """The Secret ``name`` in ``namespace`` from the cache, ``data`` decoded."""
        self.used.add(("Secret", namespace, name))
        doc = self.lookup("Secret", namespace, name)
        return None if doc is None else secret_data(doc, namespace)

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        """The ConfigMap ``name`` in ``namespace`` from the cache."""
        self.used.add(("ConfigMap", namespace, name))
        doc = self.lookup("ConfigMap", namespace, name)
        return None if doc is None else config_map_data(doc, namespace)


def cached_authentications(
    lookup: Lookup,
    used: set[Dependency],
    read: Callable[[Mapping[str, Any]], TriggerAuthenticationSpec],
) -> Callable[[str, str, str], Any]:
    """An :class:`~eventscale.authentication.AuthResolver` ``authentications`` lookup
    over the caches, recording what it reads in ``used``."""

    async def authentications(
        kind: str, name: str, namespace: str
    ) -> TriggerAuthenticationSpec | None:
        ns = "" if kind == "ClusterTriggerAuthentication" else namespace
        used.add((kind, ns, name))
        doc = lookup(kind, ns, name)
        return read(doc) if doc is not None else None

    return authentications
