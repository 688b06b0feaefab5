"""The Kubernetes target: any resource with a ``/scale`` subresource.

Deployments, StatefulSets, ReplicaSets and custom resources (named by ``apiVersion``
and ``kind``, as in KEDA's ``scaleTargetRef``) are read and written through their
``autoscaling/v1`` ``Scale`` subresource. A write carries the ``resourceVersion`` it
read; a 409 conflict is retried with a fresh read (bounded, with backoff) before it
becomes :class:`~eventscale.errors.TargetConflict`.

The API is spoken through :class:`~eventscale.kube.KubeClient`, configured from a
kubeconfig file (path and context) or the in-cluster service account
(:class:`~eventscale.kube.KubeConfig`); see :mod:`eventscale.kube`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from eventscale.errors import ConfigError, TargetConflict, TargetError, TargetNotFound
from eventscale.kube.client import KNOWN_PLURALS as _KNOWN_PLURALS
from eventscale.kube.client import KubeClient as KubeClient
from eventscale.kube.client import api_prefix as api_prefix
from eventscale.kube.config import SERVICE_ACCOUNT_DIR as SERVICE_ACCOUNT_DIR
from eventscale.kube.config import ExecCredentialPlugin as ExecCredentialPlugin
from eventscale.kube.config import KubeConfig as KubeConfig
from eventscale.kube.config import b64decode as _b64
from eventscale.kube.env import expand_references
from eventscale.targets import TargetBase
from eventscale.targets._kube_pods import pods_with_metrics
from eventscale.targets.resources import WorkloadResources

if TYPE_CHECKING:
    from eventscale.spec import ScaleTargetRef

# KubeClient, KubeConfig, ExecCredentialPlugin, api_prefix and SERVICE_ACCOUNT_DIR live in
# eventscale.kube; they stay importable from here for one release.
__all__ = (
    "KubernetesTarget",
    "Scale",
)

log = logging.getLogger("eventscale.targets.kubernetes")


@attrs.frozen(kw_only=True)
class Scale:
    """An ``autoscaling/v1`` ``Scale`` as read: desired and observed replicas."""

    replicas: int
    status_replicas: int
    selector: str | None
    resource_version: str


class KubernetesTarget(TargetBase):
    """Scales one Kubernetes resource through its ``/scale`` subresource.

    :param name: the resource's name (``scaleTargetRef.name``).
    :param namespace: its namespace; default: the configuration's namespace.
    :param kind: ``Deployment`` by default; any kind whose resource has ``/scale``.
    :param api_version: ``apps/v1`` by default; ``group/version`` of a custom resource.
    :param plural: the resource's plural name; found by API discovery when not given
        (built-in workload kinds need no lookup).
    :param config: where the API is; default: :meth:`KubeConfig.load` (in-cluster, or
        ``kubeconfig``/``context``).
    :param client: a :class:`KubeClient` to share between targets (not closed here).
    :param env_source_container_name: the container :meth:`container_env` reads by
        default (KEDA's ``envSourceContainerName``; default: the first container).
    :param timeout: seconds allowed for each API call.
    :param conflict_retries: how many times a 409 conflict is retried with a fresh read.
    :param backoff: the first retry delay in seconds; it doubles each time up to
        ``max_backoff``, with jitter.
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: str | None = None,
        kind: str = "Deployment",
        api_version: str = "apps/v1",
        plural: str | None = None,
        config: KubeConfig | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        client: KubeClient | None = None,
        env_source_container_name: str | None = None,
        timeout: float = 10.0,
        conflict_retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        if not name:
            raise ConfigError("the target name must not be empty", path="scaleTargetRef.name")
        if conflict_retries < 0:
            raise ConfigError("conflict_retries must be >= 0", path="conflict_retries")
        self._owns_client = client is None
        if client is None:
            client = KubeClient(config or KubeConfig.load(kubeconfig, context), timeout=timeout)
        self.client = client
        self.name = name
        self.namespace = namespace or client.namespace
        self.kind = kind
        self.api_version = api_version
        self.group = api_version.rpartition("/")[0] if "/" in api_version else ""
        self.env_source_container_name = env_source_container_name
        self.timeout = timeout
        self.conflict_retries = conflict_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._plural = plural or _KNOWN_PLURALS.get((self.group, kind))

    @classmethod
    def from_ref(
        cls, ref: ScaleTargetRef, *, namespace: str | None = None, **kwargs: Any
    ) -> KubernetesTarget:
        """A target for KEDA's ``scaleTargetRef`` (with its ``envSourceContainerName``)."""
        return cls(
            ref.name,
            namespace=namespace,
            kind=ref.kind,
            api_version=ref.api_version,
            env_source_container_name=ref.env_source_container_name,
            **kwargs,
        )

    @property
    def identity(self) -> str:
        """``kind/namespace/name``, as errors name the target."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return (
            f"KubernetesTarget({self.identity!r}, api_version={self.api_version!r}, "
            f"server={self.client.config.server!r})"
        )

    async def _resource_path(self) -> str:
        if self._plural is None:
            self._plural = await self._discover_plural()
        return (
            f"{api_prefix(self.api_version)}/namespaces/{self.namespace}/{self._plural}/{self.name}"
        )

    async def _discover_plural(self) -> str:
        try:
            listing = await self.client.request("GET", api_prefix(self.api_version))
        except TargetNotFound as exc:
            raise TargetNotFound(
                f"the API group version {self.api_version!r} is not served",
                target=self.identity,
                status=404,
            ) from exc
        resources = listing.get("resources") or []
        for res in resources:
            if res.get("kind") == self.kind and "/" not in str(res.get("name", "")):
                plural = str(res["name"])
                if not any(r.get("name") == f"{plural}/scale" for r in resources):
                    raise TargetError(
                        f"{self.kind} ({self.api_version}) has no scale subresource",
                        target=self.identity,
                    )
                return plural
        raise TargetNotFound(
            f"kind {self.kind!r} is not served by {self.api_version!r}",
            target=self.identity,
            status=404,
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            return await self.client.request(
                method, path, body=body, params=params, timeout=self.timeout
            )
        except TargetError as exc:
            if exc.target is None:
                exc.target = self.identity
            raise

    async def get_scale(self) -> Scale:
        """Read the ``Scale`` subresource."""
        raw = await self._call("GET", await self._resource_path() + "/scale")
        return self._parse_scale(raw)

    @staticmethod
    def _parse_scale(raw: Mapping[str, Any]) -> Scale:
        spec = raw.get("spec") or {}
        status = raw.get("status") or {}
        meta = raw.get("metadata") or {}
        return Scale(
            replicas=int(spec.get("replicas") or 0),
            status_replicas=int(status.get("replicas") or 0),
            selector=status.get("selector"),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    async def get_replicas(self) -> int:
        """``spec.replicas`` of the resource's ``Scale``."""
        return (await self.get_scale()).replicas

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        """Write ``spec.replicas`` with the ``resourceVersion`` just read; retry conflicts."""
        if type(replicas) is not int or replicas < 0:
            raise ValueError(f"replicas must be an int >= 0, got {replicas!r}")
        path = await self._resource_path() + "/scale"
        delay = self.backoff
        last: TargetConflict | None = None
        for attempt in range(self.conflict_retries + 1):
            if attempt:
                await anyio.sleep(min(delay, self.max_backoff) * random.uniform(0.5, 1.0))
                delay *= 2
            scale = await self.get_scale()
            if scale.replicas == replicas:
                return
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": scale.resource_version,
                },
                "spec": {"replicas": replicas},
            }
            try:
                await self._call("PUT", path, body)
            except TargetConflict as exc:
                last = exc
                log.debug("%s: conflict on attempt %d, retrying", self.identity, attempt + 1)
                continue
            log.info(
                "%s: scaled %d -> %d%s",
                self.identity,
                scale.replicas,
                replicas,
                f" ({reason})" if reason else "",
            )
            return
        raise TargetConflict(
            f"writing the scale still conflicted after {self.conflict_retries + 1} attempts",
            target=self.identity,
            status=409,
        ) from last

    # -- pod resources for the cpu/memory triggers (docs/scalers/cpu-memory.md) -------

    async def get_pod_resources(self) -> WorkloadResources:
        """The pods selected by the scale's ``status.selector``, with their usage.

        Two list calls whatever the pod count: the pods (requests and limits from
        their specs) and their ``metrics.k8s.io/v1beta1`` PodMetrics, both by label
        selector. A pod without PodMetrics has no usage (the HPA's "missing" pods).

        :raises TargetError: no selector, the metrics API is not served, or a list fails.
        """
        scale = await self.get_scale()
        if not scale.selector:
            raise TargetError(
                f"the {self.kind}'s scale subresource has no status.selector, so its pods "
                "cannot be found",
                target=self.identity,
            )
        params = {"labelSelector": scale.selector}
        pods = await self._call("GET", f"/api/v1/namespaces/{self.namespace}/pods", params=params)
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace}/pods"
        try:
            metrics = await self._call("GET", path, params=params)
        except TargetNotFound as exc:
            raise TargetError(
                "the resource metrics API (metrics.k8s.io/v1beta1) is not served; "
                "is metrics-server installed?",
                target=self.identity,
                status=404,
            ) from exc
        try:
            parsed = pods_with_metrics(pods.get("items") or (), metrics.get("items") or ())
        except ValueError as exc:
            raise TargetError(f"unreadable pod or PodMetrics: {exc}", target=self.identity) from exc
        return WorkloadResources(replicas=scale.replicas, pods=parsed, observed_at=time.time())

    # -- env resolution for ...FromEnv -------------------------------------------------

    async def container_env(self, container: str | None = None) -> dict[str, str]:
        """The environment of a container of the resource's pod template.

        It resolves what KEDA resolves for ``...FromEnv`` parameters: ``envFrom``
        (ConfigMaps and Secrets, with ``prefix``), then ``env`` entries with ``value``
        (``$(VAR)`` references expanded) or ``valueFrom`` ``secretKeyRef`` /
        ``configMapKeyRef``. Other ``valueFrom`` sources (fieldRef, resourceFieldRef)
        are skipped. ``container`` defaults to ``env_source_container_name``, else the
        first container. The values may be secrets: do not log them.
        """
        obj = await self._call("GET", await self._resource_path())
        containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        )
        if not isinstance(containers, list) or not containers:
            raise TargetError(
                f"{self.kind} has no pod template with containers", target=self.identity
            )
        wanted = container or self.env_source_container_name
        chosen: Mapping[str, Any] | None = containers[0]
        if wanted:
            chosen = next((c for c in containers if c.get("name") == wanted), None)
            if chosen is None:
                raise TargetError(
                    f"no container named {wanted!r} in the pod template", target=self.identity
                )
        assert chosen is not None
        env: dict[str, str] = {}
        for source in chosen.get("envFrom") or ():
            prefix = str(source.get("prefix") or "")
            for ref_kind in ("configMapRef", "secretRef"):
                ref = source.get(ref_kind)
                if not ref:
                    continue
                data = await self._referenced_data(
                    ref_kind, str(ref.get("name")), bool(ref.get("optional"))
                )
                for key, value in data.items():
                    env[prefix + key] = value
        for item in chosen.get("env") or ():
            name = str(item.get("name"))
            if "value" in item:
                env[name] = expand_references(str(item["value"]), env)
                continue
            value_from = item.get("valueFrom") or {}
            for ref_kind in ("secretKeyRef", "configMapKeyRef"):
                ref = value_from.get(ref_kind)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                data = await self._referenced_data(ref_kind, str(ref.get("name")), optional)
                key = str(ref.get("key"))
                if key in data:
                    env[name] = data[key]
                elif not optional:
                    raise TargetError(
                        f"env {name}: key {key!r} is missing from "
                        f"{ref_kind[:-6]} {ref.get('name')!r}",
                        target=self.identity,
                    )
        return env

    async def _referenced_data(self, ref_kind: str, name: str, optional: bool) -> dict[str, str]:
        secret = ref_kind.startswith("secret")
        plural = "secrets" if secret else "configmaps"
        try:
            obj = await self._call("GET", f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except TargetNotFound:
            if optional:
                return {}
            raise
        data: dict[str, str] = {}
        if secret:
            for key, value in (obj.get("data") or {}).items():
                data[key] = _b64(str(value), f"{plural}/{name}.data.{key}").decode(errors="replace")
            data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        else:
            data.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        return data

    async def aclose(self) -> None:
        """Close the HTTP session if this target created its client."""
        if self._owns_client:
            await self.client.aclose()
