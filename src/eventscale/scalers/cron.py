"""The ``cron`` scaler: a fixed replica count inside a recurring time window.

KEDA semantics (KEDA's pkg/scalers/cron_scaler.go): ``start`` and ``end`` are five-field cron
expressions (minute, hour, day of month, month, day of week) read on the wall clock of
``timezone``. Inside the window the metric is ``desiredReplicas`` and the trigger is
active; outside it reports 0 and is inactive. The window is ``[start, end)``: active
from the start minute, inactive from the end minute. "Inside" means the end will fire
no later than the start: ``next(end) <= next(start)``, both strictly after now.

Where eventscale differs from KEDA (each on purpose, documented in docs/scalers/cron.md):

* **Daylight saving time is defined.** Schedules are matched on the local wall clock.
  A start or end whose wall-clock time is skipped by a spring-forward change takes
  effect at the moment the clock jumps over it; one that falls in the hour repeated by
  a fall-back change takes effect once, on the first pass. (KEDA's cron library skips
  such a start entirely, which keeps a window open for a whole extra day, and fires a
  repeated one twice, which closes the window for the repeated hour.)
* **The time zone is checked when the trigger is parsed**, not on every poll, so an
  unknown zone is a :class:`~eventscale.errors.ConfigError` at start-up. IANA data
  comes from the ``tzdata`` package when the system has none.

Time is injected: the scaler calls its ``clock`` (by default the real UTC clock) once
per poll and never reads the time anywhere else, so tests and simulations drive it
with a manual clock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterBadDateError, croniter

from eventscale.errors import ConfigError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
    sanitize_metric_value,
)
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext

__all__ = (
    "Clock",
    "CronConfig",
    "CronExpression",
    "CronField",
    "CronScaler",
    "MAX_ZONE_NAME",
    "in_window",
    "load_timezone",
    "parse_cron",
    "utc_clock",
)

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time as an aware ``datetime``."""

_MAX_YEARS: Final = 5  # like robfig/cron: no match within 5 years means "never fires"


def utc_clock() -> datetime:
    """The real clock: the current time in UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


# ---------------------------------------------------------------------------- time zones


def load_timezone(name: str) -> tzinfo:
    """Load an IANA zone (``Europe/Berlin``), ``UTC`` or ``Local`` (the machine's zone).

    :raises ValueError: the zone is unknown.
    """
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return _local_zone()
    _check_zone_name(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


#: The longest time zone name accepted (the longest IANA name has 32 characters).
MAX_ZONE_NAME = 64
_ZONE_PART: Final = re.compile(r"[A-Za-z0-9_+\-]+")


def _check_zone_name(name: str) -> None:
    """Refuse what cannot be an IANA name before zoneinfo looks for a file by it."""
    if len(name) > MAX_ZONE_NAME:
        raise ValueError(
            f"time zone name of {len(name)} characters: an IANA name has at most {MAX_ZONE_NAME}"
        )
    parts = name.split("/")
    if not all(_ZONE_PART.fullmatch(part) for part in parts):
        raise ValueError(
            f"unknown time zone {name!r}: an IANA name is letters, digits, '_', '+', "
            "'-' and '/' between parts"
        )


def _local_zone() -> tzinfo:
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    if localtime.exists():
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    return UTC


# ---------------------------------------------------------------------------- parser

_MONTHS: Final = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS: Final = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_GO_INT = re.compile(r"[+-]?[0-9]+")


@attrs.frozen
class _Bounds:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS: Final = (
    _Bounds("minute", 0, 59),
    _Bounds("hour", 0, 23),
    _Bounds("day of month", 1, 31),
    _Bounds("month", 1, 12, _MONTHS),
    _Bounds("day of week", 0, 6, _DAYS),
)


@attrs.frozen
class CronField:
    """One parsed field: the allowed values and whether it was written as ``*``/``?``."""

    values: frozenset[int]
    star: bool


@attrs.frozen
class CronExpression:
    """A parsed five-field cron expression (robfig/cron rules, as KEDA parses it).

    ``zone`` is the zone named by a ``TZ=``/``CRON_TZ=`` prefix (``None``: the trigger's).
    """

    text: str
    zone_name: str | None
    minute: CronField
    hour: CronField
    day_of_month: CronField
    month: CronField
    day_of_week: CronField

    def croniter_expression(self) -> str:
        """An equivalent expression in plain numbers, with robfig's day-matching rule.

        robfig/cron ANDs day of month and day of week when either was written as ``*``
        or ``?`` and ORs them otherwise; croniter's default is the same rule, keyed on a
        literal ``*``, so a star field is written as ``*`` and a restricted one as a list.
        """

        def listing(f: CronField) -> str:
            return ",".join(str(v) for v in sorted(f.values))

        dom, dow = self.day_of_month, self.day_of_week
        if dom.star or dow.star:
            dom_text = "*" if dom.star else listing(dom)
            dow_text = "*" if dow.star else listing(dow)
        elif len(dom.values) == 31 or len(dow.values) == 7:
            # OR with a field that matches every day: every day matches.
            dom_text = dow_text = "*"
        else:
            dom_text, dow_text = listing(dom), listing(dow)
        return " ".join(
            (listing(self.minute), listing(self.hour), dom_text, listing(self.month), dow_text)
        )

    def next_after(self, wall: datetime) -> datetime | None:
        """The first matching naive wall-clock minute strictly after naive ``wall``.

        ``None`` when nothing matches within five years (e.g. ``0 0 30 2 *``).
        """
        try:
            it = croniter(self.croniter_expression(), wall, max_years_between_matches=_MAX_YEARS)
            result = it.get_next(datetime)
        except CroniterBadDateError:
            return None
        assert isinstance(result, datetime)
        return result


def _go_atoi(text: str) -> int:
    if not _GO_INT.fullmatch(text):
        raise ValueError(f"failed to parse int from {text}")
    value = int(text)
    if value < 0:
        raise ValueError(f"negative number ({value}) not allowed: {text}")
    return value


def _int_or_name(text: str, bounds: _Bounds) -> int:
    if bounds.names is not None:
        named = bounds.names.get(text.lower())
        if named is not None:
            return named
    return _go_atoi(text)


def _parse_range(item: str, bounds: _Bounds) -> tuple[set[int], bool]:
    range_and_step = item.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _int_or_name(low_and_high[0], bounds)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], bounds)
        else:
            raise ValueError(f"too many hyphens: {item}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _go_atoi(range_and_step[1])
        if single:  # "n/step" means "n-max/step"
            end = bounds.high
        if step > 1:
            star = False
    else:
        raise ValueError(f"too many slashes: {item}")
    if start < bounds.low:
        raise ValueError(f"beginning of range ({start}) below minimum ({bounds.low}): {item}")
    if end > bounds.high:
        raise ValueError(f"end of range ({end}) above maximum ({bounds.high}): {item}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {item}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {item}")
    return set(range(start, end + 1, step)), star


def _parse_field(text: str, bounds: _Bounds) -> CronField:
    values: set[int] = set()
    star = False
    for item in text.split(","):
        part, part_star = _parse_range(item, bounds)
        values |= part
        star = star or part_star
    return CronField(frozenset(values), star)


def parse_cron(text: str) -> CronExpression:
    """Parse a five-field cron expression as KEDA does (robfig/cron, no descriptors).

    Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 (or ``jan``-``dec``),
    day of week 0-6 (or ``sun``-``sat``; 7 is out of range). Each field is a comma list of
    ``*``, ``?``, ``n`` or ``a-b``, each optionally ``/step``. An optional ``TZ=<zone> ``
    or ``CRON_TZ=<zone> `` prefix sets the zone of this expression.

    :raises ValueError: the expression is not valid.
    """
    spec = text.strip()
    if not spec:
        raise ValueError("empty spec string")
    zone_name: str | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        if space < 0:
            raise ValueError(f"expected exactly 5 fields, found 1: [{spec}]")
        zone_name = spec[spec.index("=") + 1 : space]
        try:
            load_timezone(zone_name)
        except ValueError as exc:
            raise ValueError(f"provided bad location {zone_name}: {exc}") from None
        spec = spec[space:].strip()
    if spec.startswith("@"):
        raise ValueError(f"descriptors such as {spec.split()[0]!r} are not accepted: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_parse_field(f, b) for f, b in zip(fields, _FIELDS, strict=True)]
    return CronExpression(text.strip(), zone_name, *parsed)


# ---------------------------------------------------------------------------- window


def _transition(lo: datetime, hi: datetime, zone: tzinfo) -> datetime:
    """The first instant in ``(lo, hi]`` whose UTC offset is that of ``hi`` (1 s precision)."""
    target = hi.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi


def _search_start(now: datetime, zone: tzinfo) -> datetime:
    """The naive wall time after which the next occurrence is searched.

    During the second pass through a repeated (fall-back) hour, every wall time of that
    hour has already happened once, so the search starts where the repetition ends.
    """
    local = now.astimezone(zone)
    wall = local.replace(tzinfo=None, microsecond=0)
    if local.fold == 1:
        first = local.replace(fold=0).utcoffset()
        second = local.utcoffset()
        if first is not None and second is not None and first > second:
            repeat = first - second
            now_utc = now.astimezone(UTC)
            change = _transition(now_utc - repeat, now_utc, zone)
            fold_end = (change + first).replace(tzinfo=None)
            return fold_end - timedelta(seconds=1)
    return wall


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant at which naive local ``wall`` happens (first pass; jump for gaps)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    a, b = first.astimezone(UTC), second.astimezone(UTC)
    if a.astimezone(zone).replace(tzinfo=None) == wall:
        return min(a, b)  # repeated wall time: its first pass
    # Skipped wall time: it "happens" when the clock jumps over it.
    lo, hi = min(a, b), max(a, b)
    return _transition(lo, hi, zone)


def _next_key(
    expr: CronExpression, zone: tzinfo, now: datetime
) -> tuple[datetime, datetime] | None:
    """When ``expr`` next fires after ``now``: (UTC instant, local wall time), or ``None``."""
    wall = expr.next_after(_search_start(now, zone))
    if wall is None:
        return None
    return (_instant(wall, zone), wall)


def in_window(start: CronExpression, end: CronExpression, zone: tzinfo, now: datetime) -> bool:
    """Whether ``now`` (aware) is inside the ``[start, end)`` window in ``zone``.

    Inside means the next end comes no later than the next start. Two schedules firing
    at the same instant count as inside, and a schedule that never fires behaves as in
    KEDA: a start that never fires keeps the window open, an end that never fires keeps
    it closed.
    """
    start_zone = load_timezone(start.zone_name) if start.zone_name is not None else zone
    end_zone = load_timezone(end.zone_name) if end.zone_name is not None else zone
    next_start = _next_key(start, start_zone, now)
    next_end = _next_key(end, end_zone, now)
    if next_start is None:
        return True
    if next_end is None:
        return False
    return next_end <= next_start


# ---------------------------------------------------------------------------- config


def _first_problem(
    timezone: str | None, start: str | None, end: str | None, desired: int | None
) -> tuple[str, str] | None:
    """KEDA's Validate, in its order, stopping at the first problem: (field, reason)."""
    for name, text in (("start", start), ("end", end)):
        if text is None:
            continue
        try:
            parse_cron(text)
        except ValueError as exc:
            return name, f"error parsing {name} schedule: {exc}"
    if start is not None and end is not None and start.strip() == end.strip():
        return "end", "start and end can not have exactly same time input"
    if desired == 0:
        return "desiredReplicas", "desiredReplicas must be greater than 0"
    if timezone is not None:  # eventscale: checked at parse time, not on every poll
        try:
            load_timezone(timezone)
        except ValueError as exc:
            return "timezone", str(exc)
    return None


def _strip(text: str) -> str:
    return text.strip()


@attrs.frozen(kw_only=True)
class CronConfig:
    """Validated settings of a ``cron`` trigger.

    ``timezone``: IANA zone name, ``UTC`` or ``Local``. ``start``/``end``: five-field
    cron expressions; the window is ``[start, end)``. ``desired_replicas``: the metric
    inside the window (with the default ``AverageValue`` metric type and target 1, the
    replica count wanted there). ``index``: the trigger's position (metric name prefix).
    """

    timezone: str
    start: str = attrs.field(converter=_strip)
    end: str = attrs.field(converter=_strip)
    desired_replicas: int
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    def __attrs_post_init__(self) -> None:
        problem = _first_problem(self.timezone, self.start, self.end, self.desired_replicas)
        if problem is not None:
            raise ConfigError(problem[1], path=problem[0])

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> CronConfig:
        """Parse KEDA trigger metadata (``timezone``, ``start``, ``end``, ``desiredReplicas``).

        :raises ConfigError: every problem, each with its field path.
        """
        p = Params(ctx)
        start = p.string("start", required=True)
        end = p.string("end", required=True)
        timezone = p.string("timezone", required=True)
        desired = p.integer("desiredReplicas", required=True)
        problem = _first_problem(timezone, start, end, desired)
        if problem is not None:
            p.fail(problem[1], problem[0])
        p.finish()
        assert timezone is not None
        assert start is not None
        assert end is not None
        assert desired is not None
        return cls(
            timezone=timezone,
            start=start,
            end=end,
            desired_replicas=desired,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )

    @property
    def metric_name(self) -> str:
        """``s<index>-cron-<timezone>-<start>-<end>``, encoded as KEDA does."""

        def encode(expr: str) -> str:
            out = expr.replace(" ", "")
            for old, new in (("*", "x"), ("/", "Sl"), ("?", "Qm"), (",", "Cm")):
                out = out.replace(old, new)
            return out

        body = f"cron-{self.timezone}-{encode(self.start)}-{encode(self.end)}"
        return metric_name(self.index, normalize_metric_name(body))


# ---------------------------------------------------------------------------- scaler


class CronScaler(ScalerBase):
    """Reports ``desired_replicas`` inside the ``[start, end)`` window and 0 outside.

    Build it from typed values::

        CronScaler(timezone="Europe/Berlin", start="0 8 * * 1-5", end="0 18 * * 1-5",
                   desired_replicas=4)

    or from KEDA metadata with :meth:`from_context`. ``clock`` returns the current
    time (aware; a naive value is read as UTC); it defaults to :func:`utc_clock`.
    No I/O happens; :meth:`get_metrics` never raises for a valid configuration.
    """

    def __init__(
        self,
        *,
        timezone: str,
        start: str,
        end: str,
        desired_replicas: int,
        index: int = 0,
        metric_type: MetricType = MetricType.AVERAGE_VALUE,
        clock: Clock | None = None,
    ) -> None:
        config = CronConfig(
            timezone=timezone,
            start=start,
            end=end,
            desired_replicas=desired_replicas,
            index=index,
            metric_type=metric_type,
        )
        self._setup(config, clock)

    def _setup(self, config: CronConfig, clock: Clock | None) -> None:
        self.config = config
        self._clock: Clock = clock if clock is not None else utc_clock
        self._zone = load_timezone(config.timezone)
        self._start = parse_cron(config.start)
        self._end = parse_cron(config.end)

    @classmethod
    def from_config(cls, config: CronConfig, *, clock: Clock | None = None) -> CronScaler:
        """Build a scaler from an already validated :class:`CronConfig`."""
        self = cls.__new__(cls)
        self._setup(config, clock)
        return self

    @classmethod
    def from_context(cls, ctx: TriggerContext, *, clock: Clock | None = None) -> CronScaler:
        """Build a scaler from KEDA trigger metadata (the registry's entry point)."""
        return cls.from_config(CronConfig.from_context(ctx), clock=clock)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CronScaler(timezone={c.timezone!r}, start={c.start!r}, end={c.end!r}, "
            f"desired_replicas={c.desired_replicas})"
        )

    def now(self) -> datetime:
        """The scaler's current time, from its clock (aware, UTC if the clock is naive)."""
        current = self._clock()
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        return current

    def is_inside(self, at: datetime | None = None) -> bool:
        """Whether ``at`` (default: the clock's now) is inside the window."""
        when = self.now() if at is None else at
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return in_window(self._start, self._end, self._zone, when)

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric, target 1, so ``AverageValue`` wants exactly ``desired_replicas``."""
        return (
            MetricSpec(
                name=self.config.metric_name,
                target=1,
                metric_type=self.config.metric_type,
                activation_target=0,
            ),
        )

    async def get_metrics(self) -> ScalerReport:
        """``desired_replicas`` and active inside the window; 0 and inactive outside."""
        inside = self.is_inside()
        # KEDA accepts a negative desiredReplicas and reports it as 0 (GenerateMetricInMili
        # in keda: pkg/scalers/scaler.go), still active: the same rule here, in the scaler
        # (the runtime refuses negative values: docs/errors.md, "Limits").
        value = sanitize_metric_value(self.config.desired_replicas) if inside else 0.0
        return ScalerReport.single(self.config.metric_name, value, is_active=inside)
