"""The ``cpu`` and ``memory`` triggers: KEDA's resource metrics, read from the target.

::

    triggers:
      - type: cpu
        metricType: Utilization   # or AverageValue; deprecated: metadata.type
        metadata:
          value: "60"             # percent of the requests, or cores/bytes per pod
          containerName: ""       # optional: one container instead of the pod's sum

The scaler asks its target (a :class:`~eventscale.targets.resources.ResourceMetricsTarget`)
for the workload's pods and their usage, and computes the replicas as the HPA's
resource replica calculator does (:func:`eventscale.engine.resources.resource_replicas`).
It reports that proposal as its value; the engine takes it as the trigger's replica
count. These triggers never activate a workload from zero (KEDA: the HPA scales them
from one replica up). Without a target that can report usage, every poll is a
:class:`~eventscale.errors.ScalerError`, never a value of 0.

KEDA's source: ``pkg/scalers/cpu_memory_scaler.go``; docs/scalers/cpu-memory.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal

from eventscale.engine.hpa import DEFAULT_TOLERANCE, Tolerance
from eventscale.engine.resources import PodSample, ResourceTarget, resource_replicas
from eventscale.errors import ConfigError, ScalerError, TargetError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport, metric_name
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext
from eventscale.targets.resources import (
    PodResources,
    ResourceMetricsTarget,
    WorkloadResources,
    parse_quantity,
)

__all__ = ("ResourceScaler",)

Resource = Literal["cpu", "memory"]

_KINDS: Final = {k.value: k for k in ResourceTarget}


def _gauge_form(ctx: TriggerContext) -> bool:
    """The pre-1.0 in-process gauge written as ``type: memory`` (a gauge name, no value)."""
    meta = ctx.metadata
    return "value" not in meta and ("name" in meta or "target" in meta)


class ResourceScaler(ScalerBase):
    """A ``cpu`` or ``memory`` trigger.

    :param resource: ``"cpu"`` (cores) or ``"memory"`` (bytes).
    :param target: the utilization percent (``Utilization``) or the usage per pod in
        cores or bytes (``AverageValue``); > 0.
    :param kind: :class:`~eventscale.engine.resources.ResourceTarget`.
    :param container: one container's usage and request instead of the pod's sums.
    :param workload: the target to read; :meth:`bind_target` sets it when omitted.
    :param tolerance: the HPA tolerance (default 0.1 each way).
    """

    #: The runtime passes the object's target to :meth:`bind_target` (runtime/_polling.py).
    needs_target: ClassVar[bool] = True

    def __init__(
        self,
        resource: Resource,
        *,
        target: float,
        kind: ResourceTarget = ResourceTarget.UTILIZATION,
        container: str | None = None,
        workload: Any = None,
        index: int = 0,
        trigger_name: str | None = None,
        tolerance: Tolerance = DEFAULT_TOLERANCE,
    ) -> None:
        if resource not in ("cpu", "memory"):
            raise ConfigError(f"resource must be cpu or memory, got {resource!r}", path="type")
        if not target > 0:
            raise ConfigError(f"value must be greater than 0, got {target!r}", path="value")
        self.resource: Resource = resource
        self.target = float(target)
        self.kind = kind
        self.container = container or None
        self.workload = workload
        self.tolerance = tolerance
        self.trigger = trigger_name or f"{resource}[{index}]"
        self.spec = MetricSpec(
            name=metric_name(index, resource),
            target=self.target,
            metric_type=(
                MetricType.UTILIZATION
                if kind is ResourceTarget.UTILIZATION
                else MetricType.AVERAGE_VALUE
            ),
            activation_target=0.0,
        )

    def bind_target(self, target: Any) -> None:
        """Read from ``target`` (called by the runtime; a target given before is kept)."""
        if self.workload is None:
            self.workload = target

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> ResourceScaler:
        """Build the scaler from a ``cpu`` or ``memory`` trigger's metadata (KEDA's keys)."""
        resource: Resource = "memory" if ctx.trigger_type == "memory" else "cpu"
        p = Params(ctx)
        if resource == "memory" and _gauge_form(ctx):
            p.fail(
                "'memory' is KEDA's pod-memory trigger; the in-process gauge trigger is now "
                "type 'gauge' (same metadata: name, target, activationTarget)"
            )
            p.finish()
        legacy = p.string("type")
        raw = p.string("value", required=True)
        container = p.string("containerName", default="")
        kind: ResourceTarget | None = None
        if ctx.metric_type is MetricType.UTILIZATION:
            kind = ResourceTarget.UTILIZATION
        elif ctx.metric_type is MetricType.AVERAGE_VALUE:
            kind = ResourceTarget.AVERAGE_VALUE
        if legacy is not None:  # deprecated; KEDA lets it override metricType
            kind = _KINDS.get(legacy)
            if kind is None:
                p.fail(
                    f"unknown metric type {legacy!r}, allowed values are 'Utilization' "
                    "or 'AverageValue'",
                    "type",
                )
        elif ctx.metric_type is MetricType.VALUE:
            kind = None
            p.fail(
                "unsupported metricType 'Value', allowed values are 'Utilization' or 'AverageValue'"
            )
        target: float | None = None
        if raw is not None and kind is not None:
            target = _parse_target(p, raw, kind)
        p.finish()
        assert target is not None
        assert kind is not None
        return cls(
            resource,
            target=target,
            kind=kind,
            container=container,
            index=ctx.index,
            trigger_name=ctx.identity,
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric, ``s{index}-cpu`` or ``s{index}-memory``."""
        return (self.spec,)

    async def get_metrics(self) -> ScalerReport:
        """Read the pods from the target and report the HPA's replica proposal.

        :raises ScalerError: no target that can report usage, the target failed, or
            the calculation has no data (no pods, no metrics, a missing request).
        """
        workload = self.workload
        if not isinstance(workload, ResourceMetricsTarget):
            what = "no target" if workload is None else type(workload).__name__
            raise ScalerError(
                f"{self.resource} needs a target that reports its pods' resource usage "
                f"({what} cannot; use the kubernetes, docker or memory target)",
                trigger=self.trigger,
                transient=False,
            )
        try:
            resources = await workload.get_pod_resources()
        except TargetError as exc:
            raise ScalerError(
                f"reading pod resources: {exc}", trigger=self.trigger, transient=True
            ) from exc
        samples = [self._sample(pod, resources) for pod in resources.pods]
        now = resources.observed_at if resources.observed_at is not None else time.time()
        try:
            answer = resource_replicas(
                samples,
                target=self.target,
                kind=self.kind,
                current=resources.replicas,
                now=now,
                cpu=self.resource == "cpu",
                tolerance=self.tolerance,
            )
        except ValueError as exc:
            raise ScalerError(
                f"{self.resource}: {exc}", trigger=self.trigger, transient=True
            ) from exc
        return ScalerReport.single(self.spec.name, answer.replicas, is_active=False)

    def _sample(self, pod: PodResources, resources: WorkloadResources) -> PodSample:
        """One pod as the calculator sees it (kubernetes ``calculatePodRequests`` and
        the metrics client's ``getPodMetrics``/``getContainerMetrics``)."""
        basis = resources.utilization_of
        containers = pod.containers
        if self.container is not None:
            containers = tuple(c for c in pod.containers if c.name == self.container)
            if not containers:
                raise ScalerError(
                    f"container {self.container!r} not found in pod {pod.name}",
                    trigger=self.trigger,
                    transient=False,
                )
        request: float | None = 0.0
        for c in containers:
            amounts = c.requests if basis == "requests" else c.limits
            if self.resource not in amounts:
                if self.kind is ResourceTarget.UTILIZATION:
                    word = "request" if basis == "requests" else "limit"
                    raise ScalerError(
                        f"missing {self.resource} {word} in container {c.name} of pod "
                        f"{pod.name}: Utilization is a percentage of it",
                        trigger=self.trigger,
                        transient=False,
                    )
                request = None
                break
            assert request is not None
            request += amounts[self.resource]
        return PodSample(
            name=pod.name,
            request=request,
            usage=self._usage(pod),
            phase=pod.phase,
            deleting=pod.deleting,
            ready=pod.ready,
            ready_since=pod.ready_since,
            start_time=pod.start_time,
            sampled_at=pod.sampled_at,
            window=pod.window,
        )

    def _usage(self, pod: PodResources) -> float | None:
        if pod.usage is None:
            return None
        if self.container is not None:
            found = pod.usage.get(self.container)
            if found is None:
                raise ScalerError(
                    f"container {self.container!r} not present in metrics for pod {pod.name}",
                    trigger=self.trigger,
                    transient=True,
                )
            return found.get(self.resource)
        if not pod.usage:
            return None
        total = 0.0
        for amounts in pod.usage.values():
            if self.resource not in amounts:
                return None
            total += amounts[self.resource]
        return total


def _parse_target(p: Params, raw: str, kind: ResourceTarget) -> float | None:
    if kind is ResourceTarget.UTILIZATION:
        try:
            percent = int(raw, 10)
        except ValueError:
            p.fail(f"value must be an integer percentage for Utilization, got {raw!r}", "value")
            return None
        if percent <= 0:
            p.fail(f"value must be greater than 0, got {raw!r}", "value")
            return None
        return float(percent)
    try:
        amount = parse_quantity(raw)
    except ValueError as exc:
        p.fail(str(exc), "value")
        return None
    if amount <= 0:
        p.fail(f"value must be greater than 0, got {raw!r}", "value")
        return None
    return amount
