"""Docker container stats and inspect bodies as :class:`PodResources`.

Each member container is a "pod" with one container. Usage is what ``docker stats``
shows (docker/cli ``cli/command/container/stats_helpers.go``): CPU in cores from the
two samples of a ``stream=false`` stats read, ``(cpu delta / system delta) * online
CPUs``; memory as the usage minus the page cache's ``inactive_file`` (cgroup v2) or
``total_inactive_file`` (cgroup v1). Limits come from the container's ``HostConfig``
(``NanoCpus`` or ``CpuQuota``/``CpuPeriod``; ``Memory``); Docker has no requests, so
``Utilization`` is a percentage of the limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from eventscale.targets.resources import ContainerResources, PodResources

__all__ = ("cpu_cores", "limits", "memory_bytes", "member_resources", "parse_docker_time")

_FRACTION: Final = re.compile(r"\.(\d{6})\d*")


def parse_docker_time(value: Any) -> float | None:
    """Docker's RFC 3339 times (nanosecond fractions) as Unix seconds; ``None`` for zero."""
    text = str(value or "")
    if not text or text.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(r".\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text).timestamp()


def cpu_cores(stats: Mapping[str, Any]) -> float | None:
    """CPU use in cores between the two samples; ``None`` without a previous sample."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    system = cpu.get("system_cpu_usage")
    pre_system = pre.get("system_cpu_usage")
    if system is None or pre_system is None:
        return None
    cpu_delta = float((cpu.get("cpu_usage") or {}).get("total_usage", 0)) - float(
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    )
    system_delta = float(system) - float(pre_system)
    if system_delta <= 0:
        return None
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ())
    return max(cpu_delta, 0.0) / system_delta * float(online or 1)


def memory_bytes(stats: Mapping[str, Any]) -> float | None:
    """Memory use without the page cache (``docker stats``' MEM USAGE)."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    usage = float(usage)
    return usage - float(cache) if float(cache) < usage else usage


def limits(host_config: Mapping[str, Any]) -> dict[str, float]:
    """The container's cpu (cores) and memory (bytes) limits; absent when unlimited."""
    out: dict[str, float] = {}
    nano = host_config.get("NanoCpus") or 0
    quota = host_config.get("CpuQuota") or 0
    period = host_config.get("CpuPeriod") or 0
    if nano:
        out["cpu"] = nano / 1e9
    elif quota > 0:
        out["cpu"] = quota / (period or 100_000)
    if host_config.get("Memory"):
        out["memory"] = float(host_config["Memory"])
    return out


def member_resources(
    container: str, inspect: Mapping[str, Any], stats: Mapping[str, Any] | None
) -> PodResources:
    """One member: its limits, health and start from ``inspect``, usage from ``stats``."""
    name = str(inspect.get("Name") or inspect.get("Id") or "").lstrip("/")
    state = inspect.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    running = bool(state.get("Running"))
    ready = running and health in (None, "healthy")
    usage: dict[str, dict[str, float]] | None = None
    sampled_at = window = None
    if stats is not None:
        cores = cpu_cores(stats)
        memory = memory_bytes(stats)
        if cores is not None and memory is not None:
            usage = {container: {"cpu": cores, "memory": memory}}
        read = parse_docker_time(stats.get("read"))
        pre = parse_docker_time(stats.get("preread"))
        sampled_at = read
        if read is not None and pre is not None:
            window = read - pre
    return PodResources(
        name=name,
        containers=(
            ContainerResources(name=container, limits=limits(inspect.get("HostConfig") or {})),
        ),
        usage=usage,
        phase="Running" if running else "Pending",
        ready=ready,
        ready_since=parse_docker_time(state.get("StartedAt")),
        start_time=parse_docker_time(state.get("StartedAt")),
        sampled_at=sampled_at,
        window=window or 0.0,
    )
