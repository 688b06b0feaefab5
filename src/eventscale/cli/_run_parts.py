"""What ``eventscale run`` builds: the objects of the manifest files (the
:class:`~eventscale.runtime.reload.ObjectFactory` it hands the reloader) and, with
``--metrics-address``, the metrics server with KEDA's and eventscale's metrics."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from eventscale.cli._common import job_target, make_target, resolve_contexts
from eventscale.cli._output import REDACTOR

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests
    from eventscale.runtime.objects import Reconcilable
    from eventscale.spec import ScaledJobSpec, ScaledObjectSpec

__all__ = ("ObjectFactory", "metrics_server")


class ObjectFactory:
    """Builds the objects of the manifests as ``--target`` and ``--env`` say
    (the :class:`~eventscale.runtime.reload.ObjectFactory` of ``run``)."""

    def __init__(self, args: argparse.Namespace, client: Any) -> None:
        self.args = args
        self.client = client
        self.workloads: list[dict[str, Any]] = []
        self.manifests: Manifests | None = None
        #: Called with the manifests after every read (the metrics' resource counts).
        self.listeners: list[Callable[[Manifests], None]] = []

    def loaded(self, manifests: Manifests, text: str) -> None:
        import yaml

        self.manifests = manifests
        for listener in self.listeners:
            listener(manifests)
        # load_manifests has parsed (and bounded) the same text: this cannot fail now.
        self.workloads = [
            doc
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict)
            and doc.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet")
        ]
        for data in manifests.secrets.values():
            REDACTOR.add(data.values())

    async def contexts(
        self, manifests: Manifests, spec: ScaledObjectSpec | ScaledJobSpec
    ) -> Sequence[Any]:
        from eventscale.spec import ScaledObjectSpec

        args = self.args
        target = None
        if args.target == "docker" and isinstance(spec, ScaledObjectSpec):
            target = make_target(args.target, spec)  # its containers' environment
        try:
            return await resolve_contexts(
                manifests, spec, args, self.client, self.workloads, target=target
            )
        finally:
            if target is not None:
                await target.aclose()

    async def build(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        contexts: Sequence[Any],
        previous: Reconcilable | None,
    ) -> Reconcilable:
        from eventscale.runtime.scaled_job import ScaledJob
        from eventscale.runtime.scaled_object import ScaledObject
        from eventscale.spec import ScaledObjectSpec

        args = self.args
        old: Any = previous.spec if previous is not None else None
        if isinstance(spec, ScaledObjectSpec):
            # The same scale target: the running target goes on (an in-memory one keeps
            # its replicas; the controller closes only what is not reused).
            reuse = (
                isinstance(old, ScaledObjectSpec) and old.scale_target_ref == spec.scale_target_ref
            )
            assert previous is not None or not reuse
            target = previous.target if reuse and previous is not None else None
            if target is None:
                target = make_target(args.target, spec, client=self.client)
            try:
                return ScaledObject(spec, target=target, contexts=contexts)
            except BaseException:
                if not reuse:
                    await target.aclose()
                raise
        same_jobs = previous is not None and _job_target_fields(old) == _job_target_fields(spec)
        jobs = (
            previous.target
            if same_jobs and previous is not None
            else job_target(args.target, spec, client=self.client, job_seconds=args.job_seconds)
        )
        try:
            return ScaledJob(spec, target=jobs, contexts=contexts)
        except BaseException:
            if not same_jobs:
                await jobs.aclose()
            raise


def _job_target_fields(spec: Any) -> tuple[Any, ...] | None:
    """What a ScaledJob's job target is built from (``None`` for anything else)."""
    from eventscale.spec import ScaledJobSpec

    if not isinstance(spec, ScaledJobSpec):
        return None
    return (
        spec.job_target_ref,
        spec.labels,
        spec.annotations,
        spec.rollout,
        spec.pending_pod_conditions,
    )


async def metrics_server(
    args: argparse.Namespace,
    ctl: Any,
    reloader: Any,
    health: Any,
    kind_of: Callable[[str], str] | None = None,
) -> Any:
    """With ``--metrics-address``: KEDA's and eventscale's metrics and the probes, serving."""
    if not args.metrics_address:
        return None
    from eventscale._optional import import_optional
    from eventscale.runtime.keda_metrics import KedaMetrics
    from eventscale.runtime.metrics_server import MetricsServer
    from eventscale.runtime.observability import PrometheusExporter

    prom = import_optional("prometheus_client", extra="prometheus", what="Prometheus metrics")
    prom.disable_created_metrics()  # as KEDA's: no *_created series beside the counters
    registry = prom.CollectorRegistry()
    prom.ProcessCollector(registry=registry)
    prom.PlatformCollector(registry=registry)
    prom.GCCollector(registry=registry)

    def kinds(key: str) -> str | None:
        return kind_of(key) if kind_of is not None else reloader.kinds.get(key)

    keda = KedaMetrics(registry, kind_of=lambda key: _kind_and_types(ctl, kinds, key))
    keda.attach(ctl)
    ctl.events.add_hook(PrometheusExporter(registry))
    factory = reloader.factory

    def count(manifests: Manifests) -> None:
        auths = manifests.trigger_authentications.values()
        for kind in ("TriggerAuthentication", "ClusterTriggerAuthentication"):
            keda.count_resources(kind, [a.namespace for a in auths if a.kind == kind])

    if factory.manifests is not None:
        count(factory.manifests)
    factory.listeners.append(count)
    server = MetricsServer(args.metrics_address, registry=registry, health=health)
    await server.start()
    return server


def _kind_and_types(
    ctl: Any, kind_of: Callable[[str], str | None], key: str
) -> tuple[str, tuple[str, ...]] | None:
    kind = kind_of(key)
    if kind is None or key not in ctl:
        return None
    return kind, tuple(str(t.type) for t in ctl.get(key).spec.triggers)
