"""Spec checks: configurations that are valid but probably not what was meant.

:func:`check_spec` is what a manifest reader calls long before the first poll (see
docs/engine.md, "Validation warnings").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from eventscale.engine.lifecycle import Engine
from eventscale.engine.model import EngineOptions
from eventscale.metrics import MetricSpec
from eventscale.spec import ScaledObjectSpec

__all__ = ("EngineWarning", "check_spec")

_DEFAULT_COOLDOWN = 300.0  # ScaledObjectSpec's (and KEDA's) cooldownPeriod default


@attrs.frozen
class EngineWarning:
    """A configuration that is valid but probably not what was meant."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_spec(
    spec: ScaledObjectSpec,
    metric_specs: Mapping[int, Sequence[MetricSpec]] | None = None,
    options: EngineOptions | None = None,
) -> tuple[EngineWarning, ...]:
    """Warnings the engine can see from the spec (and, if given, the triggers' metric specs).

    * a metric whose activation target is at or above its target (activation wins:
      the object goes to zero while the HPA formula would want replicas);
    * the same for ``scalingModifiers`` (``activationTarget >= target``);
    * ``idleReplicaCount >= minReplicaCount`` and ``minReplicaCount > maxReplicaCount``
      (rejected by :class:`ScaledObjectSpec` already; checked again for specs built
      with ``attrs.evolve`` and friends);
    * a ``cooldownPeriod`` (other than the default 300) with ``minReplicaCount > 0`` and
      no ``idleReplicaCount``: it has no effect, as KEDA warns (the cooldown only
      delays going to zero or to the idle count).

    :raises ConfigError: the formula does not compile (as :class:`Engine` would).
    """
    Engine(spec, options)
    warnings: list[EngineWarning] = []
    for index, specs in sorted((metric_specs or {}).items()):
        for ms in specs:
            if ms.activation_target >= ms.target > 0:
                warnings.append(
                    EngineWarning(
                        f"spec.triggers[{index}]",
                        f"metric {ms.name!r}: activation target {ms.activation_target:g} >= target "
                        f"{ms.target:g}; the object is inactive (and may go to zero) while the "
                        f"target alone would ask for replicas",
                    )
                )
    mods = spec.advanced.scaling_modifiers
    if mods is not None and mods.activation_target >= mods.target:
        warnings.append(
            EngineWarning(
                "spec.advanced.scalingModifiers.activationTarget",
                f"activationTarget {mods.activation_target:g} >= target {mods.target:g}",
            )
        )
    idle = spec.idle_replica_count
    if idle is not None and idle >= spec.min_replica_count:
        warnings.append(
            EngineWarning(
                "spec.idleReplicaCount",
                f"idleReplicaCount {idle} >= minReplicaCount {spec.min_replica_count}; "
                "it is ignored",
            )
        )
    if spec.min_replica_count > spec.max_replica_count:
        warnings.append(
            EngineWarning(
                "spec.minReplicaCount",
                f"minReplicaCount {spec.min_replica_count} > maxReplicaCount "
                f"{spec.max_replica_count}; maxReplicaCount wins",
            )
        )
    if (
        spec.cooldown_period != _DEFAULT_COOLDOWN
        and spec.min_replica_count > 0
        and spec.idle_replica_count is None
    ):
        warnings.append(
            EngineWarning(
                "spec.cooldownPeriod",
                f"cooldownPeriod {spec.cooldown_period:g}s has no effect with minReplicaCount "
                f"{spec.min_replica_count} > 0 and no idleReplicaCount: it only delays "
                "scaling to zero (or to idleReplicaCount); scale-in between "
                "minReplicaCount and maxReplicaCount follows the HPA behavior",
            )
        )
    return tuple(warnings)
