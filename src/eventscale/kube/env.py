"""Pod templates and their containers' environment syntax, as Kubernetes defines them:
``$(VAR)`` references (``k8s.io/kubernetes`` ``third_party/forked/golang/expansion``),
the containers of a workload's pod template and the one ``envSourceContainerName``
picks. :mod:`eventscale.authentication.workload` resolves a container's whole
environment with them; the Kubernetes target uses them too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from eventscale.errors import ConfigError

__all__ = ("choose_container", "expand_references", "pod_template_containers")

# Kubernetes' $(VAR) syntax (k8s.io/kubernetes third_party/forked/golang/expansion):
# "$$" is an escaped "$", "$(NAME)" a reference; anything else stays as written.
_VAR_REF: Final = re.compile(r"\$\$|\$\(([^)]*)\)")

#: How many containers one pod template may have here.
_MAX_ITEMS: Final = 1000


def expand_references(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined name is replaced by its value, ``$$``
    becomes ``$``, and an unknown, empty or unclosed reference stays as written."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0)) if name else match.group(0)

    return _VAR_REF.sub(sub, value)


def pod_template_containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers of a workload's pod template: ``spec.template.spec.containers``
    (Deployment, StatefulSet, ReplicaSet, Job) or ``template.spec.containers`` (a
    ScaledJob's ``jobTargetRef``). Empty when there is none."""
    spec = obj.get("spec") if "template" not in obj else obj
    template = (spec or {}).get("template") if isinstance(spec, Mapping) else None
    pod = (template or {}).get("spec") if isinstance(template, Mapping) else None
    containers = (pod or {}).get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(containers, list):
        return []
    return [c for c in containers[:_MAX_ITEMS] if isinstance(c, Mapping)]


def choose_container(
    containers: Sequence[Mapping[str, Any]], name: str | None, *, where: str
) -> Mapping[str, Any]:
    """The container called ``name`` (``envSourceContainerName``), else the first one.

    :raises ConfigError: no containers, or none of that name (the message lists them).
    """
    if not containers:
        raise ConfigError(f"{where} has no pod template with containers")
    if not name:
        return containers[0]
    for container in containers:
        if container.get("name") == name:
            return container
    names = ", ".join(repr(str(c.get("name"))) for c in containers)
    raise ConfigError(
        f"{where} has no container named {name!r} (envSourceContainerName); it has {names}"
    )
