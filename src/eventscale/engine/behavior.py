"""HPA ``behavior``: stabilization windows, Pods/Percent rate policies and selectPolicy.

Two normalizers turn a raw recommendation into the next replica count:

* :func:`normalize_with_behavior`: the Kubernetes ``behavior`` algorithm. Used for
  every object unless the engine runs in legacy mode. When a ScaledObject has no
  ``behavior``, eventscale fills in the Kubernetes behavior defaults
  (:func:`resolve_behavior`).
* :func:`normalize_legacy`: what an HPA without ``behavior`` does (the HPA KEDA creates
  by default): only scale-down is stabilized (300 s), and one step may grow to at most
  ``max(2 * current, 4)``.

History is passed in as plain tuples: ``recommendations`` are ``(time, raw replicas)``
and ``events`` are ``(time, signed replica change)``. Times are seconds on the same
clock as ``now``; an entry counts inside a window of ``w`` seconds when
``time > now - w``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

import attrs

from eventscale.engine.hpa import REPLICA_CAP
from eventscale.spec import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy

__all__ = (
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "Limit",
    "legacy_scale_up_limit",
    "Normalized",
    "NormalizedTuple",
    "ResolvedRules",
    "behavior_step",
    "legacy_step",
    "normalize_legacy",
    "normalize_with_behavior",
    "resolve_behavior",
    "scale_down_limit",
    "scale_up_limit",
    "stabilize",
)

Recommendations = Sequence[tuple[float, int]]
Events = Sequence[tuple[float, int]]


def _policy_steps(rules: ResolvedRules) -> tuple[tuple[int, bool, int], ...]:
    # (period_seconds, is Pods, value), grouped by period so that policies sharing a
    # period share one pass over the scale events (the order does not change the pick).
    return tuple(
        sorted(
            ((p.period_seconds, p.type is PolicyType.PODS, p.value) for p in rules.policies),
            key=lambda step: step[0],
        )
    )


@attrs.frozen
class ResolvedRules:
    """One direction of behavior with every default filled in.

    ``steps`` is derived data for the rate limits: the policies as
    ``(period_seconds, is Pods, value)`` tuples sorted by period.
    """

    stabilization_window_seconds: float
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float
    steps: tuple[tuple[int, bool, int], ...] = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_policy_steps, takes_self=True)
    )

    @property
    def longest_period(self) -> int:
        """The longest ``period_seconds`` of the policies (0 without policies)."""
        return max((p.period_seconds for p in self.policies), default=0)


#: Kubernetes default for ``behavior.scaleUp``: no window, +4 pods or +100 % per 15 s.
DEFAULT_SCALE_UP: Final = ResolvedRules(
    stabilization_window_seconds=0.0,
    select_policy=SelectPolicy.MAX,
    policies=(
        ScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=15),
        ScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
    ),
    tolerance=0.1,
)

#: Kubernetes default for ``behavior.scaleDown``: 300 s window, -100 % per 15 s.
DEFAULT_SCALE_DOWN: Final = ResolvedRules(
    stabilization_window_seconds=300.0,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),),
    tolerance=0.1,
)


def _fill(rules: ScalingRules | None, default: ResolvedRules, tolerance: float) -> ResolvedRules:
    if rules is None:
        return attrs.evolve(default, tolerance=tolerance)
    return ResolvedRules(
        stabilization_window_seconds=float(
            default.stabilization_window_seconds
            if rules.stabilization_window_seconds is None
            else rules.stabilization_window_seconds
        ),
        select_policy=default.select_policy if rules.select_policy is None else rules.select_policy,
        policies=default.policies if rules.policies is None else tuple(rules.policies),
        tolerance=tolerance if rules.tolerance is None else rules.tolerance,
    )


def resolve_behavior(
    behavior: Behavior | None,
    *,
    tolerance: float = 0.1,
    scale_down_window: float = 300.0,
) -> tuple[ResolvedRules, ResolvedRules]:
    """``(scale_up, scale_down)`` rules: ``behavior`` with each unset field defaulted.

    Fields are filled one by one, as the Kubernetes defaulter does. ``tolerance`` is the
    default for both directions; ``scale_down_window`` the default scale-down window.
    An empty ``policies`` tuple means "no rate limit" in that direction.
    """
    down_default = attrs.evolve(DEFAULT_SCALE_DOWN, stabilization_window_seconds=scale_down_window)
    if behavior is None:
        return _fill(None, DEFAULT_SCALE_UP, tolerance), _fill(None, down_default, tolerance)
    return (
        _fill(behavior.scale_up, DEFAULT_SCALE_UP, tolerance),
        _fill(behavior.scale_down, down_default, tolerance),
    )


# ----------------------------------------------------------------------- stabilization


def stabilize(
    raw: int,
    current: int,
    recommendations: Recommendations,
    now: float,
    up_window: float,
    down_window: float,
) -> tuple[int, int, int]:
    """Stabilize ``raw`` against the recommendations of the last windows.

    Returns ``(result, up_bound, down_bound)``: ``up_bound`` is the lowest
    recommendation in the scale-up window (``raw`` included), ``down_bound`` the highest
    one in the scale-down window; the result is ``current`` raised to ``up_bound`` or
    lowered to ``down_bound``.
    """
    up_rec = raw
    down_rec = raw
    up_cut = now - up_window
    down_cut = now - down_window
    for when, value in recommendations:
        if when > up_cut and value < up_rec:
            up_rec = value
        if when > down_cut and value > down_rec:
            down_rec = value
    result = current
    if result < up_rec:
        result = up_rec
    if result > down_rec:
        result = down_rec
    return result, up_rec, down_rec


# ----------------------------------------------------------------------- rate limits


def _net_change(events: Events, cut: float) -> int:
    """The sum of the signed changes of the events after ``cut``."""
    net = 0
    for when, change in events:
        if when > cut:
            net += change
    return net


def scale_up_limit(current: int, rules: ResolvedRules, events: Events, now: float) -> int:
    """The highest count the scale-up policies allow now (never below ``current``).

    Each policy looks at the count at the start of its period (``current`` minus
    replicas added plus replicas removed in the last ``period_seconds``) and adds
    ``value`` pods or ``value`` percent (rounded up). ``Max`` takes the largest
    allowance, ``Min`` the smallest; ``Disabled`` allows no growth. Without
    policies there is no limit.
    """
    select = rules.select_policy
    if select is _SELECT_DISABLED:
        return current
    if not rules.steps:
        return REPLICA_CAP
    pick_min = select is _SELECT_MIN
    best: int | None = None
    start = current
    last_period = -1
    for period, pods, value in rules.steps:
        if period != last_period:
            start = current - _net_change(events, now - period)
            last_period = period
        proposal = start + value if pods else -(-(start * (100 + value)) // 100)
        if best is None or (proposal < best if pick_min else proposal > best):
            best = proposal
    assert best is not None
    return best if best > current else current


def scale_down_limit(current: int, rules: ResolvedRules, events: Events, now: float) -> int:
    """The lowest count the scale-down policies allow now (never above ``current``).

    Pods: period start minus ``value``; Percent: period start times
    ``(1 - value/100)``, truncated. ``Max`` picks the biggest reduction (the lowest
    count), ``Min`` the smallest; ``Disabled`` allows no reduction. Without
    policies there is no limit.
    """
    select = rules.select_policy
    if select is _SELECT_DISABLED:
        return current
    if not rules.steps:
        return 0
    pick_max = select is _SELECT_MIN  # Min: the smallest reduction, the highest count
    best: int | None = None
    start = current
    last_period = -1
    for period, pods, value in rules.steps:
        if period != last_period:
            start = current - _net_change(events, now - period)
            last_period = period
        if pods:
            proposal = start - value
        else:
            scaled = start * (100 - value)
            proposal = scaled // 100 if scaled >= 0 else -((-scaled) // 100)
        if best is None or (proposal > best if pick_max else proposal < best):
            best = proposal
    assert best is not None
    return best if best < current else current


# ----------------------------------------------------------------------- normalization


class Limit(enum.Enum):
    """What bounded a normalized count (the HPA's ``ScalingLimited`` reasons)."""

    NONE = "DesiredWithinRange"
    TOO_FEW = "TooFewReplicas"
    TOO_MANY = "TooManyReplicas"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"


# Reading an enum member through its class (``Limit.NONE``) goes through a slow
# metaclass lookup on CPython 3.11 (several times a plain attribute); the functions
# run on every decision use these module-level names instead.
_NO_LIMIT: Final[Limit] = Limit.NONE
_TOO_FEW: Final[Limit] = Limit.TOO_FEW
_TOO_MANY: Final[Limit] = Limit.TOO_MANY
_UP_LIMIT: Final[Limit] = Limit.SCALE_UP_LIMIT
_DOWN_LIMIT: Final[Limit] = Limit.SCALE_DOWN_LIMIT
_SELECT_MIN: Final[SelectPolicy] = SelectPolicy.MIN
_SELECT_DISABLED: Final[SelectPolicy] = SelectPolicy.DISABLED


@attrs.frozen
class Normalized:
    """A normalized recommendation and how it came about."""

    replicas: int
    stabilized: int
    limit: Limit
    up_bound: int
    down_bound: int
    rate_limit: int | None = None


#: What the normalizers compute, as a plain tuple (the engine's hot path builds no
#: object): ``(replicas, stabilized, limit, up_bound, down_bound, rate_limit)``, the
#: fields of :class:`Normalized` in order.
NormalizedTuple = tuple[int, int, Limit, int, int, int | None]


def normalize_with_behavior(
    raw: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    up: ResolvedRules,
    down: ResolvedRules,
    recommendations: Recommendations,
    events: Events,
    now: float,
) -> Normalized:
    """Stabilize ``raw``, then bound it by the rate policies and ``[min, max]``."""
    return Normalized(
        *behavior_step(
            raw, current, min_replicas, max_replicas, up, down, recommendations, events, now
        )
    )


def behavior_step(
    raw: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    up: ResolvedRules,
    down: ResolvedRules,
    recommendations: Recommendations,
    events: Events,
    now: float,
) -> NormalizedTuple:
    """:func:`normalize_with_behavior` as a :data:`NormalizedTuple`."""
    stabilized, up_bound, down_bound = stabilize(
        raw,
        current,
        recommendations,
        now,
        up.stabilization_window_seconds,
        down.stabilization_window_seconds,
    )
    if stabilized > current:
        limit = scale_up_limit(current, up, events, now)
        if limit < max_replicas:
            hi, hi_reason = limit, _UP_LIMIT
        else:
            hi, hi_reason = max_replicas, _TOO_MANY
        if stabilized > hi:
            return max(hi, min_replicas), stabilized, hi_reason, up_bound, down_bound, limit
        if stabilized < min_replicas:
            return min_replicas, stabilized, _TOO_FEW, up_bound, down_bound, limit
        return stabilized, stabilized, _NO_LIMIT, up_bound, down_bound, limit
    if stabilized < current:
        limit = scale_down_limit(current, down, events, now)
        if limit > min_replicas:
            lo, lo_reason = limit, _DOWN_LIMIT
        else:
            lo, lo_reason = min_replicas, _TOO_FEW
        if stabilized < lo:
            return min(lo, max_replicas), stabilized, lo_reason, up_bound, down_bound, limit
        if stabilized > max_replicas:
            return max_replicas, stabilized, _TOO_MANY, up_bound, down_bound, limit
        return stabilized, stabilized, _NO_LIMIT, up_bound, down_bound, limit
    return current, stabilized, _NO_LIMIT, up_bound, down_bound, None


def legacy_scale_up_limit(current: int) -> int:
    """The legacy HPA's per-step growth bound: ``max(2 * current, 4)``."""
    return max(2 * current, 4)


def normalize_legacy(
    raw: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    recommendations: Recommendations,
    now: float,
    down_window: float = 300.0,
) -> Normalized:
    """The HPA without ``behavior``: scale-down stabilization, then clamp and step limit."""
    return Normalized(
        *legacy_step(raw, current, min_replicas, max_replicas, recommendations, now, down_window)
    )


def legacy_step(
    raw: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    recommendations: Recommendations,
    now: float,
    down_window: float = 300.0,
) -> NormalizedTuple:
    """:func:`normalize_legacy` as a :data:`NormalizedTuple`."""
    stabilized = raw
    cut = now - down_window
    for when, value in recommendations:
        if when > cut and value > stabilized:
            stabilized = value
    limit = legacy_scale_up_limit(current)
    if limit < max_replicas:
        hi, hi_reason = limit, _UP_LIMIT
    else:
        hi, hi_reason = max_replicas, _TOO_MANY
    if stabilized < min_replicas:
        return min_replicas, stabilized, _TOO_FEW, raw, stabilized, limit
    if stabilized > hi:
        return max(hi, min_replicas), stabilized, hi_reason, raw, stabilized, limit
    return stabilized, stabilized, _NO_LIMIT, raw, stabilized, limit
