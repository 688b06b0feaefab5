"""An optional target capability: the workload's pods and their resource usage.

The ``cpu`` and ``memory`` triggers (:mod:`eventscale.scalers.resource`) read it. A
target that implements :class:`ResourceMetricsTarget` (its one method,
:meth:`~ResourceMetricsTarget.get_pod_resources`) answers with a
:class:`WorkloadResources`: the replica count it holds and, per pod, its state, its
containers' requests and limits, and its usage. Quantities are plain floats: cpu in
cores, memory in bytes; times are Unix seconds.

Built in: :class:`~eventscale.targets.memory.MemoryTarget` (usage set by the test),
:class:`~eventscale.targets.kubernetes.KubernetesTarget` (pod specs and
``metrics.k8s.io`` PodMetrics) and :class:`~eventscale.targets.docker.DockerTarget`
(container stats, limits as the denominator).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Final, Literal, Protocol, runtime_checkable

import attrs

from eventscale.targets import Target

__all__ = (
    "RESOURCES",
    "ContainerResources",
    "PodResources",
    "ResourceMetricsTarget",
    "WorkloadResources",
    "parse_quantity",
)

#: The resources the capability reports: ``cpu`` (cores) and ``memory`` (bytes).
RESOURCES: Final = ("cpu", "memory")


_QUANTITY: Final = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_SUFFIX: Final = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(text: str | float) -> float:
    """A Kubernetes quantity (``"500m"``, ``"128Mi"``, ``"1.5"``, ``"12345n"``, ``"1e3"``).

    :raises ValueError: not a quantity.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _QUANTITY.fullmatch(str(text).strip())
        if m is None:
            raise ValueError(f"{text!r} is not a Kubernetes quantity (such as 500m or 128Mi)")
        suffix = m["suffix"] or ""
        scale = _SUFFIX.get(suffix)
        value = float(m["num"]) * (scale if scale is not None else 10.0 ** int(suffix[1:]))
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite quantity")
    return value


def _amounts(value: Mapping[str, float] | None) -> Mapping[str, float]:
    return {str(k): float(v) for k, v in (value or {}).items()}


def _usage(
    value: Mapping[str, Mapping[str, float]] | None,
) -> Mapping[str, Mapping[str, float]] | None:
    if value is None:
        return None
    return {str(k): _amounts(v) for k, v in value.items()}


def _containers(value: Iterable[ContainerResources]) -> tuple[ContainerResources, ...]:
    return tuple(value)


def _pods(value: Iterable[PodResources]) -> tuple[PodResources, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ContainerResources:
    """One container of a pod: its ``requests`` and ``limits`` by resource name."""

    name: str
    requests: Mapping[str, float] = attrs.field(factory=dict, converter=_amounts)
    limits: Mapping[str, float] = attrs.field(factory=dict, converter=_amounts)


@attrs.frozen(kw_only=True)
class PodResources:
    """One pod (or container group) of the workload.

    ``usage`` maps container name to its usage by resource (``{"app": {"cpu": 0.25,
    "memory": 1.5e8}}``); ``None`` when the pod has no usage sample (the metrics
    server has none yet). ``sampled_at`` and ``window`` are the sample's time and the
    window it averages over. ``phase`` is the pod's phase, ``deleting`` whether it is
    being deleted, ``ready`` its Ready condition (``None``: none yet), ``ready_since``
    when that condition last changed, ``start_time`` when the pod started.
    """

    name: str
    containers: tuple[ContainerResources, ...] = attrs.field(converter=_containers, default=())
    usage: Mapping[str, Mapping[str, float]] | None = attrs.field(default=None, converter=_usage)
    phase: str = "Running"
    deleting: bool = False
    ready: bool | None = True
    ready_since: float | None = None
    start_time: float | None = None
    sampled_at: float | None = None
    window: float = 0.0


@attrs.frozen(kw_only=True)
class WorkloadResources:
    """What :meth:`ResourceMetricsTarget.get_pod_resources` answers.

    ``replicas`` is the count the target holds now (the HPA's current replicas);
    ``pods`` the workload's pods. ``utilization_of`` says what ``Utilization`` is a
    percentage of: the containers' ``requests`` (Kubernetes) or their ``limits``
    (Docker, which has no requests). ``observed_at`` is the time of the reading on the
    clock of the pods' times (``None``: the pods carry no times).
    """

    replicas: int
    observed_at: float | None = None
    pods: tuple[PodResources, ...] = attrs.field(converter=_pods, default=())
    utilization_of: Literal["requests", "limits"] = "requests"


@runtime_checkable
class ResourceMetricsTarget(Target, Protocol):
    """A :class:`~eventscale.targets.Target` that can report its pods' resource usage."""

    async def get_pod_resources(self) -> WorkloadResources:
        """The workload's pods with their requests, limits and usage.

        :raises TargetError: the pods or their metrics cannot be read.
        """
        ...
