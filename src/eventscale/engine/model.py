"""The engine's inputs and outputs: observations, options, decisions."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from eventscale.errors import ScalerError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport

__all__ = (
    "Combiner",
    "Decision",
    "EngineOptions",
    "MetricDetail",
    "Rule",
    "TriggerDetail",
    "TriggerObservation",
    "TriggerStatus",
)


def _to_specs(value: Iterable[MetricSpec]) -> tuple[MetricSpec, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class TriggerObservation:
    """What one poll of one trigger gave: a report, or an error.

    The controller builds one per trigger per tick from ``Scaler.metric_specs()`` and
    the result of ``Scaler.get_metrics()``: ``report`` when the poll succeeded,
    ``error`` (a :class:`~eventscale.errors.ScalerError`) when it raised. A missing
    observation for a trigger, or one with neither report nor error, counts as an error.

    ``trigger_index`` is the trigger's position in ``spec.triggers``; ``name`` is its
    ``name`` (the formula variable), defaulting to the spec's.
    """

    trigger_index: int
    specs: tuple[MetricSpec, ...] = attrs.field(converter=_to_specs)
    report: ScalerReport | None = None
    error: ScalerError | None = None
    name: str | None = None

    @classmethod
    def success(
        cls,
        trigger_index: int,
        specs: Sequence[MetricSpec],
        report: ScalerReport,
        name: str | None = None,
    ) -> TriggerObservation:
        """A successful poll."""
        return cls(trigger_index=trigger_index, specs=tuple(specs), report=report, name=name)

    @classmethod
    def failure(
        cls,
        trigger_index: int,
        specs: Sequence[MetricSpec],
        error: ScalerError,
        name: str | None = None,
    ) -> TriggerObservation:
        """A failed poll."""
        return cls(trigger_index=trigger_index, specs=tuple(specs), error=error, name=name)


@attrs.frozen(kw_only=True)
class Combiner:
    """Combine named trigger values in plain Python (instead of a formula string).

    ``function`` receives ``{trigger name: value or None}`` (``None`` for a trigger in
    fallback when the fallback behavior is ``scalingModifiers``) and returns the
    composite value, or ``None`` for "unknown". The composite is turned into replicas
    with ``target`` and ``metric_type``; the object is active when the composite is
    strictly greater than ``activation_target``. A trigger with several metrics
    contributes the sum of its values.
    """

    function: Callable[[Mapping[str, float | None]], float | None]
    target: float = attrs.field(validator=attrs.validators.gt(0))
    activation_target: float = 0.0
    metric_type: MetricType = MetricType.AVERAGE_VALUE


def _to_types(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(kw_only=True)
class EngineOptions:
    """Engine knobs KEDA does not have. The defaults match Kubernetes and KEDA.

    * ``tolerance``: the HPA tolerance for both directions when ``behavior`` does not
      set one (Kubernetes flag ``--horizontal-pod-autoscaler-tolerance``, 0.1).
    * ``downscale_stabilization``: the scale-down window used when ``behavior`` does
      not set one (flag ``--horizontal-pod-autoscaler-downscale-stabilization``, 300 s).
    * ``legacy_hpa``: when the ScaledObject has no ``behavior``, act like the HPA KEDA
      creates (no behavior: scale-down window only, growth ``max(2x, 4)`` per step, no
      memory of earlier steps). Off by default: eventscale fills in the Kubernetes
      behavior defaults instead, so there is one algorithm.
    * ``scale_to_zero_from_floor``: go to zero/idle only once the count has come down
      to ``max(min, 1)`` through the normal scale-down rules, instead of dropping from
      any count once the cooldown expires (KEDA). Off by default.
    * ``combiner``: a plain-Python replacement for ``scalingModifiers.formula``.
    * ``resource_trigger_types``: trigger types KEDA treats as resource metrics (an
      object whose triggers are all of these types is always active, and they are not
      formula variables, and the value they report is the replica count the HPA's
      resource calculator proposes). ``cpu`` and ``memory`` by default.
    """

    tolerance: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    downscale_stabilization: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    legacy_hpa: bool = False
    scale_to_zero_from_floor: bool = False
    combiner: Combiner | None = None
    resource_trigger_types: frozenset[str] = attrs.field(
        default=frozenset({"cpu", "memory"}), converter=_to_types
    )


DEFAULT_OPTIONS: Final = EngineOptions()

# Instance-dict key of a Decision's pending trigger details (see Decision).
_PENDING: Final = "_pending_triggers"


class Rule(enum.Enum):
    """Which rule decided the replica count."""

    PAUSED_REPLICAS = "paused-replicas"
    PAUSED = "paused"
    PAUSED_SCALE_IN = "paused-scale-in"
    PAUSED_SCALE_OUT = "paused-scale-out"
    SCALE_FROM_ZERO = "scale-from-zero"
    METRICS = "metrics"
    STABILIZED_UP = "scale-up-stabilization"
    STABILIZED_DOWN = "scale-down-stabilization"
    SCALE_UP_LIMIT = "scale-up-limit"
    SCALE_DOWN_LIMIT = "scale-down-limit"
    MIN_REPLICAS = "min-replicas"
    MAX_REPLICAS = "max-replicas"
    COOLDOWN = "cooldown"
    INITIAL_COOLDOWN = "initial-cooldown"
    SCALE_TO_ZERO = "scale-to-zero"
    SCALE_TO_IDLE = "scale-to-idle"
    IDLE = "idle"
    HOLD_ON_ERROR = "hold-on-error"
    ERROR_BLOCKS_SCALE_DOWN = "error-blocks-scale-down"
    FALLBACK = "fallback"


class TriggerStatus(enum.Enum):
    """How one trigger fared in this decision."""

    OK = "ok"
    ERROR = "error"
    FALLBACK = "fallback"


@attrs.frozen(slots=False)
class MetricDetail:
    """One metric of one trigger: its value, target and the replicas it asks for.

    The detail classes (this one and :class:`TriggerDetail`) take their fields by
    keyword or, in the order listed, by position, and keep a ``__dict__``
    (``slots=False``): :class:`Decision` builds them by position from the engine's
    tuples, and attrs builds a frozen dict class almost twice as fast as a slotted one.
    """

    name: str
    value: float
    target: float
    metric_type: MetricType
    replicas: int


@attrs.frozen(slots=False)
class TriggerDetail:
    """Per-trigger part of a :class:`Decision`."""

    index: int
    name: str
    status: TriggerStatus
    is_active: bool
    replicas: int | None
    metrics: tuple[MetricDetail, ...] = ()
    error: str | None = None
    failures: int = 0


#: A healthy trigger's detail as the engine records it, before it is built:
#: ``(index, name, is_active, replicas, metrics)`` with each metric as
#: ``(name, value, target, metric_type, replicas)``.
PendingDetail = tuple[
    int, str, bool, int | None, tuple[tuple[str, float, float, MetricType, int], ...]
]


def _build_details(
    pending: tuple[TriggerDetail | PendingDetail, ...],
) -> tuple[TriggerDetail, ...]:
    details = []
    ok = TriggerStatus.OK
    for item in pending:
        if isinstance(item, TriggerDetail):  # a failed trigger: built by the engine
            details.append(item)
            continue
        index, name, is_active, replicas, metrics = item
        # by position: the tuples hold the fields in their declared order
        built = tuple([MetricDetail(*metric) for metric in metrics])
        details.append(TriggerDetail(index, name, ok, is_active, replicas, built))
    return tuple(details)


@attrs.frozen(kw_only=True, slots=False)
class Decision:
    """The engine's answer for one tick.

    ``replicas`` is the count to apply; ``rule`` and ``trigger`` say what decided it and
    ``reason`` says it in one line of words. ``raw_replicas`` is the metrics'
    recommendation before stabilization, policies and bounds (``None`` when no
    metric could be read). ``triggers`` has one entry per trigger of the spec.

    A decision made by the engine builds its ``triggers`` (the
    :class:`TriggerDetail` and :class:`MetricDetail` objects) the first time they are
    read, not in the decision step: most callers never read them, and building them
    was a third of the step's time. Reading, comparing, hashing, printing, copying
    or pickling a decision gives the same values either way. (This is why the class
    keeps a ``__dict__``: a missing ``triggers`` entry is what triggers the build.)
    """

    replicas: int
    current_replicas: int
    is_active: bool
    rule: Rule
    reason: str
    trigger: str | None = None
    raw_replicas: int | None = None
    triggers: tuple[TriggerDetail, ...] = ()
    fallback_active: bool = False
    paused: bool = False

    @classmethod
    def _with_pending_details(
        cls,
        replicas: int,
        current_replicas: int,
        is_active: bool,
        rule: Rule,
        reason: str,
        trigger: str | None,
        raw_replicas: int | None,
        pending: tuple[TriggerDetail | PendingDetail, ...],
        fallback_active: bool,
    ) -> Decision:
        """The engine's constructor: ``triggers`` is built from ``pending`` on first read.

        It fills the instance dict directly instead of running the attrs ``__init__``
        (the class has no validators or converters to skip); a test checks that it
        sets every field but ``triggers``.
        """
        decision = object.__new__(cls)
        decision.__dict__.update(
            replicas=replicas,
            current_replicas=current_replicas,
            is_active=is_active,
            rule=rule,
            reason=reason,
            trigger=trigger,
            raw_replicas=raw_replicas,
            fallback_active=fallback_active,
            paused=False,
            _pending_triggers=pending,  # _PENDING
        )
        return decision

    if not TYPE_CHECKING:  # (mypy would accept any attribute name on the class)

        def __getattr__(self, name: str) -> Any:
            # Python calls this only for a name missing from the instance: ``triggers``
            # of a decision whose details are pending. Build them once and keep them.
            if name == "triggers":
                fields = self.__dict__
                pending = fields.get(_PENDING)
                if pending is not None:
                    details = _build_details(pending)
                    fields["triggers"] = details
                    fields.pop(_PENDING, None)
                    return details
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def changed(self) -> bool:
        """``True`` when ``replicas`` differs from the current count."""
        return self.replicas != self.current_replicas

    @property
    def direction(self) -> int:
        """``1`` for a scale-up, ``-1`` for a scale-down, ``0`` for no change."""
        return (self.replicas > self.current_replicas) - (self.replicas < self.current_replicas)
