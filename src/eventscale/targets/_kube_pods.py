"""Pods and ``metrics.k8s.io/v1beta1`` PodMetrics as :class:`PodResources`.

The Kubernetes target reads one pod list (by the scale subresource's
``status.selector``) and one PodMetrics list (same selector) and joins them by pod
name here. Requests and limits come from the pod spec's containers and its
restartable init containers (sidecars), as kubernetes
``pkg/controller/podautoscaler/replica_calculator.go`` (``calculatePodRequests``) counts them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from eventscale.targets.resources import (
    RESOURCES,
    ContainerResources,
    PodResources,
    parse_quantity,
)

__all__ = ("parse_duration", "parse_time", "pods_with_metrics")

_DURATION: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNIT: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time (``2024-05-01T10:00:00Z``) as Unix seconds; ``None`` if absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def parse_duration(value: Any) -> float:
    """A Go duration (``30s``, ``1m0s``, ``1.5s``) in seconds; 0 if absent."""
    text = str(value or "")
    total = 0.0
    pos = 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            raise ValueError(f"{text!r} is not a duration")
        total += float(match[1]) * _UNIT[match[2]]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"{text!r} is not a duration")
    return total


def _amounts(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {name: parse_quantity(raw[name]) for name in RESOURCES if name in raw}


def _containers(spec: Mapping[str, Any]) -> tuple[ContainerResources, ...]:
    found = list(spec.get("containers") or ())
    found += [
        c for c in spec.get("initContainers") or () if (c or {}).get("restartPolicy") == "Always"
    ]
    out = []
    for c in found:
        resources = c.get("resources") or {}
        out.append(
            ContainerResources(
                name=str(c.get("name") or ""),
                requests=_amounts(resources.get("requests")),
                limits=_amounts(resources.get("limits")),
            )
        )
    return tuple(out)


def _ready(status: Mapping[str, Any]) -> tuple[bool | None, float | None]:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True", parse_time(cond.get("lastTransitionTime"))
    return None, None


def pods_with_metrics(
    pods: Iterable[Mapping[str, Any]], metrics: Iterable[Mapping[str, Any]]
) -> tuple[PodResources, ...]:
    """Join a pod list's items and a PodMetrics list's items by pod name.

    :raises ValueError: a quantity, time or duration that does not parse.
    """
    samples: dict[str, Mapping[str, Any]] = {}
    for item in metrics:
        name = (item.get("metadata") or {}).get("name")
        if name:
            samples[str(name)] = item
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        name = str(meta.get("name") or "")
        ready, since = _ready(status)
        sample = samples.get(name)
        usage: dict[str, dict[str, float]] | None = None
        sampled_at: float | None = None
        window = 0.0
        if sample is not None:
            usage = {
                str(c.get("name") or ""): _amounts(c.get("usage"))
                for c in sample.get("containers") or ()
            }
            sampled_at = parse_time(sample.get("timestamp"))
            window = parse_duration(sample.get("window"))
        out.append(
            PodResources(
                name=name,
                containers=_containers(pod.get("spec") or {}),
                usage=usage,
                phase=str(status.get("phase") or "Pending"),
                deleting=bool(meta.get("deletionTimestamp")),
                ready=ready,
                ready_since=since,
                start_time=parse_time(status.get("startTime")),
                sampled_at=sampled_at,
                window=window,
            )
        )
    return tuple(out)
