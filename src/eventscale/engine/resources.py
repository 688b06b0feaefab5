"""Replicas from a resource metric (cpu, memory): the HPA's resource replica calculator.

A pure function of the pods' samples, as the Kubernetes horizontal pod autoscaler
computes it for a ``Resource`` metric (kubernetes ``pkg/controller/podautoscaler/
replica_calculator.go``: ``GetResourceReplicas``, ``GetRawResourceReplicas``,
``groupPods``; ``metrics/utilization.go``). Quantities are compared in integer
milli-units, as the HPA compares ``Quantity.MilliValue()``.

* Pods being deleted and failed pods are ignored. Pending pods are *unready*. Pods
  without a usage sample are *missing*. For cpu only, a pod is also unready when it
  has no Ready condition or no start time; while it is within the cpu initialization
  period (5 minutes from its start) when it is not Ready or its sample was taken
  less than one window after the Ready transition; after that period, when it is not
  Ready and never was (its Ready transition lies within 30 seconds of its start).
* ``Utilization``: ``ratio = (100 * sum(usage) // sum(requests)) / target`` over the
  ready pods that have a sample (the utilization is an integer percentage);
  ``AverageValue``: ``ratio = (sum(usage) // count) / target``.
* Without unready or missing pods: within tolerance keeps the current count, else
  ``ceil(ratio * ready)``.
* Otherwise missing pods count as using their request at ``max(100, target)`` percent
  (``AverageValue``: the target) on a scale-down and 0 on a scale-up; unready pods count
  as 0 on a scale-up. The ratio is computed again over the larger set; when it is within
  tolerance or changes direction, the current count is kept, as it is when the new
  count would move the other way than the ratio.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Final

import attrs

from eventscale.engine.hpa import DEFAULT_TOLERANCE, REPLICA_CAP, Tolerance, to_milli_int

__all__ = (
    "CPU_INITIALIZATION_PERIOD",
    "INITIAL_READINESS_DELAY",
    "PodSample",
    "ResourceReplicas",
    "ResourceTarget",
    "resource_replicas",
)

#: Seconds after a pod's start during which its cpu samples are checked against its
#: readiness (kube-controller-manager ``--horizontal-pod-autoscaler-cpu-initialization-period``).
CPU_INITIALIZATION_PERIOD: Final = 300.0

#: Seconds after a pod's start within which a Ready=False transition means "never ready"
#: (``--horizontal-pod-autoscaler-initial-readiness-delay``).
INITIAL_READINESS_DELAY: Final = 30.0


class ResourceTarget(enum.Enum):
    """The target type of a resource metric."""

    UTILIZATION = "Utilization"
    AVERAGE_VALUE = "AverageValue"


@attrs.frozen(kw_only=True)
class PodSample:
    """One pod as the calculator sees it, for one resource.

    ``request`` is the pod's request for the resource (the sum over its containers, or
    the one container's; cores or bytes), ``None`` when a container has none (an error
    for ``Utilization``). ``usage`` is its usage from the metrics, ``None`` when the pod
    has no sample. ``phase`` is the pod's phase (``Pending``, ``Running``, ``Failed``...),
    ``deleting`` whether it has a deletion timestamp. ``ready`` is the status of its
    Ready condition (``None``: no condition), ``ready_since`` that condition's last
    transition, ``start_time`` the pod's start, ``sampled_at``/``window`` the sample's
    timestamp and window (all times in seconds on the same clock as ``now``).
    """

    name: str
    request: float | None = None
    usage: float | None = None
    phase: str = "Running"
    deleting: bool = False
    ready: bool | None = True
    ready_since: float | None = None
    start_time: float | None = None
    sampled_at: float | None = None
    window: float = 0.0


@attrs.frozen(kw_only=True)
class ResourceReplicas:
    """The calculator's answer.

    ``replicas`` is the proposal; ``usage`` the current utilization percent
    (``Utilization``) or average usage (``AverageValue``) over the ready pods with a
    sample; ``ready``, ``unready``, ``missing`` and ``ignored`` count the pods by group.
    """

    replicas: int
    usage: float
    ready: int
    unready: int
    missing: int
    ignored: int


class _Group(enum.Enum):
    READY = 0
    UNREADY = 1
    MISSING = 2
    IGNORED = 3


def _group(pod: PodSample, cpu: bool, now: float, init: float, delay: float) -> _Group:
    if pod.deleting or pod.phase == "Failed":
        return _Group.IGNORED
    if pod.phase == "Pending":
        return _Group.UNREADY
    if pod.usage is None:
        return _Group.MISSING
    if not cpu:
        return _Group.READY
    if pod.ready is None or pod.start_time is None:
        return _Group.UNREADY
    since = pod.ready_since if pod.ready_since is not None else pod.start_time
    if pod.start_time + init > now:
        sampled = pod.sampled_at if pod.sampled_at is not None else now
        unready = not pod.ready or sampled < since + pod.window
    else:
        unready = not pod.ready and pod.start_time + delay > since
    return _Group.UNREADY if unready else _Group.READY


def _ratio(
    usage: dict[str, int], requests: dict[str, int], kind: ResourceTarget, target: int
) -> tuple[float, float]:
    """(usage ratio, current utilization percent or average usage in milli-units)."""
    if kind is ResourceTarget.UTILIZATION:
        total = sum(usage.values())
        requested = sum(requests[name] for name in usage)
        if requested <= 0:
            raise ValueError("no metrics returned matched known pods")
        percent = (total * 100) // requested
        return percent / target, float(percent)
    average = sum(usage.values()) // len(usage)
    return average / target, float(average)


def resource_replicas(
    pods: Sequence[PodSample],
    *,
    target: float,
    kind: ResourceTarget,
    current: int,
    now: float,
    cpu: bool = True,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
    initial_readiness_delay: float = INITIAL_READINESS_DELAY,
) -> ResourceReplicas:
    """The replicas the HPA proposes for a resource metric over ``pods``.

    ``target`` is the utilization percent (``Utilization``) or the usage per pod in
    cores or bytes (``AverageValue``); ``current`` is the count the workload holds now;
    ``cpu`` selects the cpu readiness rules (memory has none); the two periods are
    kube-controller-manager's flags of the same names.

    :raises ValueError: no pods, no ready pod with a sample, a missing request
        (``Utilization``), or a target that is not > 0; the message says which.
    """
    if not target > 0:
        raise ValueError(f"the target must be greater than 0, got {target!r}")
    if not pods:
        raise ValueError("no pods returned by selector while calculating replica count")
    milli_target = round(target) if kind is ResourceTarget.UTILIZATION else to_milli_int(target)
    if milli_target <= 0:
        raise ValueError(f"the target must be greater than 0, got {target!r}")
    groups = {
        pod.name: _group(pod, cpu, now, cpu_initialization_period, initial_readiness_delay)
        for pod in pods
    }
    usage = {
        pod.name: to_milli_int(pod.usage)
        for pod in pods
        if groups[pod.name] is _Group.READY and pod.usage is not None
    }
    counts = {g: sum(1 for v in groups.values() if v is g) for g in _Group}
    if not usage:
        raise ValueError("did not receive metrics for targeted pods (pods might be unready)")
    requests: dict[str, int] = {}
    if kind is ResourceTarget.UTILIZATION:
        for pod in pods:
            if pod.request is None:
                raise ValueError(f"missing request for the resource in pod {pod.name}")
            requests[pod.name] = to_milli_int(pod.request)
    ratio, current_usage = _ratio(usage, requests, kind, milli_target)
    shown = current_usage if kind is ResourceTarget.UTILIZATION else current_usage / 1000

    def answer(replicas: int) -> ResourceReplicas:
        return ResourceReplicas(
            replicas=min(REPLICA_CAP, replicas),
            usage=shown,
            ready=counts[_Group.READY],
            unready=counts[_Group.UNREADY],
            missing=counts[_Group.MISSING],
            ignored=counts[_Group.IGNORED],
        )

    unready = [name for name, g in groups.items() if g is _Group.UNREADY]
    missing = [name for name, g in groups.items() if g is _Group.MISSING]
    up_with_unready = bool(unready) and ratio > 1.0
    if not up_with_unready and not missing:
        if tolerance.within(ratio):
            return answer(current)
        return answer(math.ceil(ratio * counts[_Group.READY]))

    if missing:
        for name in missing:
            if ratio < 1.0:
                if kind is ResourceTarget.UTILIZATION:
                    usage[name] = requests[name] * max(100, milli_target) // 100
                else:
                    usage[name] = milli_target
            elif ratio > 1.0:
                usage[name] = 0
    if up_with_unready:
        for name in unready:
            usage[name] = 0
    new_ratio, _ = _ratio(usage, requests, kind, milli_target)
    if tolerance.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return answer(current)
    proposal = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        return answer(current)
    return answer(proposal)
