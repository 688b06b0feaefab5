"""Workloads for the closed-loop simulation: items arriving per second, over time.

A :class:`Workload` is a rate of arrivals (items per second) for each bin of
``resolution`` seconds, from time 0 to its :attr:`~Workload.duration`. It is read from
a CSV (a ``time`` column and an ``arrivals`` column, items per second from that time
on, holding until the next row: the trace format of
:class:`~eventscale.simulation.scaled_object.Trace`, with its limits) or made by a
generator: :func:`constant`, :func:`steps`, :func:`sine_day`, :func:`bursts`, and
:func:`poisson`, which turns any workload's rates into whole arrivals drawn with a
seed (the same seed, the same arrivals). :func:`parse_workload` reads the
``kind:key=value,...`` text of ``eventscale simulate --workload`` (docs/simulation.md).

Limits: a workload lasts at most :data:`MAX_DURATION` seconds, has at most
:data:`~eventscale.simulation.scaled_object.MAX_TICKS` bins, and every rate is a
finite number ``>= 0`` of at most :data:`MAX_RATE` items per second.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import attrs

from eventscale.errors import ConfigError
from eventscale.simulation.trace import MAX_TICKS, Trace

__all__ = (
    "MAX_DURATION",
    "MAX_RATE",
    "Workload",
    "bursts",
    "constant",
    "parse_workload",
    "poisson",
    "sine_day",
    "steps",
)

#: The longest workload, in seconds (a week).
MAX_DURATION = 7 * 86_400.0

#: The highest arrival rate, items per second.
MAX_RATE = 1e9


def _check_rates(rates: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(r) for r in rates)
    if len(out) > MAX_TICKS:
        raise ConfigError(
            f"the workload has {len(out)} bins, more than the limit of {MAX_TICKS}",
            path="workload",
        )
    for i, rate in enumerate(out):
        if not (math.isfinite(rate) and 0 <= rate <= MAX_RATE):
            raise ConfigError(
                f"the rate {rate!r} is not a finite number between 0 and {MAX_RATE:g}",
                path=f"workload[{i}]",
            )
    return out


@attrs.frozen
class Workload:
    """Arrivals: ``rates[i]`` items per second during ``[i * resolution, (i + 1) * resolution)``."""

    rates: tuple[float, ...] = attrs.field(converter=_check_rates)
    resolution: float = 1.0
    _arrivals: tuple[float, ...] = attrs.field(init=False, eq=False, repr=False, default=())

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ConfigError("must be a finite number > 0", path="workload.resolution")
        if not self.rates:
            raise ConfigError("the workload is empty", path="workload")
        if self.duration > MAX_DURATION:
            raise ConfigError(
                f"the workload lasts {self.duration:g}s, more than {MAX_DURATION:g}s",
                path="workload",
            )
        res = self.resolution
        object.__setattr__(self, "_arrivals", tuple(r * res for r in self.rates))

    @property
    def duration(self) -> float:
        """Seconds from 0 to the end of the last bin."""
        return len(self.rates) * self.resolution

    @property
    def total(self) -> float:
        """Items arriving over the whole workload."""
        return math.fsum(self.rates) * self.resolution

    def arrivals(self) -> tuple[float, ...]:
        """Items arriving in each bin (``rate * resolution``)."""
        return self._arrivals

    @classmethod
    def from_csv(cls, source: str | Path, *, resolution: float = 1.0) -> Workload:
        """Read a CSV of ``time`` and ``arrivals`` (items per second from that time on).

        The rates hold until the next row; the workload ends at the last row's time
        (give a last row at the end). The trace format's limits apply.
        """
        return cls.from_trace(Trace.from_csv(source), resolution=resolution)

    @classmethod
    def from_text(cls, text: str, *, resolution: float = 1.0) -> Workload:
        """Read the CSV of :meth:`from_csv` from text."""
        return cls.from_trace(Trace.from_text(text), resolution=resolution)

    @classmethod
    def from_trace(cls, trace: Trace, *, resolution: float = 1.0) -> Workload:
        """The ``arrivals`` column of ``trace`` (or its only column), sampled per bin."""
        if "arrivals" in trace.columns:
            column = "arrivals"
        elif len(trace.columns) == 1:
            column = trace.columns[0]
        else:
            raise ConfigError("the workload CSV needs an 'arrivals' column", path="workload")
        bins = math.ceil(trace.end / resolution - 1e-9)
        if bins < 1:
            raise ConfigError("the workload must end after time 0", path="workload")
        if bins > MAX_TICKS:
            raise ConfigError(
                f"{bins} bins of {resolution:g}s, more than the limit of {MAX_TICKS}",
                path="workload",
            )
        rates: list[float] = []
        for _, values in trace.sample(resolution):
            value = values.get(column)
            if value is None:
                raise ConfigError(
                    f"the workload has no arrivals at {len(rates) * resolution:g}s",
                    path=f"workload[{len(rates)}]",
                )
            rates.append(value)
        return cls(tuple(rates[:bins]), resolution)


def _bins(duration: float, resolution: float) -> int:
    if not (math.isfinite(duration) and 0 < duration <= MAX_DURATION):
        raise ConfigError(f"must be a number of seconds in (0, {MAX_DURATION:g}]", path="duration")
    return max(1, math.ceil(duration / resolution - 1e-9))


def constant(rate: float, duration: float, *, resolution: float = 1.0) -> Workload:
    """``rate`` items per second for ``duration`` seconds."""
    return Workload((rate,) * _bins(duration, resolution), resolution)


def steps(
    levels: Sequence[tuple[float, float]], duration: float, *, resolution: float = 1.0
) -> Workload:
    """``levels`` are ``(from time, rate)``: each rate holds until the next time."""
    ordered = sorted(levels)
    if not ordered:
        raise ConfigError("give at least one (time, rate) level", path="levels")
    rates = []
    index = 0
    for n in range(_bins(duration, resolution)):
        now = n * resolution
        while index + 1 < len(ordered) and ordered[index + 1][0] <= now:
            index += 1
        rates.append(ordered[index][1] if ordered[index][0] <= now else 0.0)
    return Workload(tuple(rates), resolution)


def sine_day(
    mean: float,
    amplitude: float,
    *,
    duration: float = 86_400.0,
    period: float = 86_400.0,
    peak_at: float = 14 * 3600.0,
    resolution: float = 1.0,
) -> Workload:
    """A daily wave: ``mean + amplitude * cos(2 pi (t - peak_at) / period)``, never below 0."""
    if period <= 0:
        raise ConfigError("must be > 0", path="period")
    rates = []
    for n in range(_bins(duration, resolution)):
        t = (n + 0.5) * resolution
        rates.append(max(0.0, mean + amplitude * math.cos(2 * math.pi * (t - peak_at) / period)))
    return Workload(tuple(rates), resolution)


def bursts(
    base: float,
    peak: float,
    *,
    every: float,
    length: float,
    duration: float,
    start: float = 0.0,
    resolution: float = 1.0,
) -> Workload:
    """``base`` items per second, and ``peak`` for ``length`` seconds every ``every`` seconds."""
    if every <= 0 or length <= 0:
        raise ConfigError("every and length must be > 0", path="every")
    rates = []
    for n in range(_bins(duration, resolution)):
        t = n * resolution
        inside = t >= start and (t - start) % every < length
        rates.append(peak if inside else base)
    return Workload(tuple(rates), resolution)


def _poisson_draw(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        # normal approximation (the variance of a Poisson draw is its mean)
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def poisson(workload: Workload, *, seed: int = 0) -> Workload:
    """Whole arrivals drawn per bin around ``workload``'s rates (seeded, reproducible)."""
    rng = random.Random(seed)
    res = workload.resolution
    return Workload(tuple(_poisson_draw(rng, r * res) / res for r in workload.rates), res)


_KINDS = ("constant", "steps", "sine", "bursts", "csv")


def _number(options: dict[str, str], key: str, default: float | None, where: str) -> float:
    raw = options.pop(key, None)
    if raw is None:
        if default is None:
            raise ConfigError(f"needs {key}=", path=where)
        return default
    try:
        value = _seconds(raw)
    except ValueError:
        raise ConfigError(f"{raw!r} is not a number", path=f"{where}.{key}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError("must be a finite number >= 0", path=f"{where}.{key}")
    return value


def _seconds(text: str) -> float:
    """A number, or a duration with a unit: ``90``, ``90s``, ``15m``, ``2h``, ``1d``."""
    text = text.strip()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def parse_workload(text: str, *, where: str = "--workload") -> Workload:
    """A workload from ``kind:key=value,...`` text, or a CSV path.

    Kinds: ``constant:rate=R,duration=D``; ``steps:0=R0,600=R1,...,duration=D`` (rate
    from each time); ``sine:mean=M,amplitude=A[,period=P,peak=T],duration=D``;
    ``bursts:base=B,peak=P,every=E,length=L,duration=D``; every kind takes
    ``poisson=SEED`` to draw whole arrivals, and ``resolution=S``. Durations take
    ``s``, ``m``, ``h`` or ``d``.
    """
    kind, sep, rest = text.partition(":")
    if not sep or kind not in _KINDS:
        if kind == "csv":
            return Workload.from_csv(rest)
        if Path(text).suffix.lower() == ".csv":
            return Workload.from_csv(text)
        raise ConfigError(
            f"{text[:80]!r} is neither a CSV file nor one of {', '.join(_KINDS)}", path=where
        )
    if kind == "csv":
        return Workload.from_csv(rest)
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"{part!r} is not key=value", path=where)
        options[key.strip()] = value
    path = f"{where}({kind})"
    seed = options.pop("poisson", None)
    resolution = _number(options, "resolution", 1.0, path) or 1.0
    duration = _number(options, "duration", None, path)
    made: Workload
    if kind == "constant":
        made = constant(_number(options, "rate", None, path), duration, resolution=resolution)
    elif kind == "steps":
        levels = []
        for key in list(options):
            levels.append((_number({"t": key}, "t", None, path), _number(options, key, None, path)))
        made = steps(levels, duration, resolution=resolution)
    elif kind == "sine":
        made = sine_day(
            _number(options, "mean", None, path),
            _number(options, "amplitude", None, path),
            period=_number(options, "period", 86_400.0, path),
            peak_at=_number(options, "peak", 14 * 3600.0, path),
            duration=duration,
            resolution=resolution,
        )
    else:
        made = bursts(
            _number(options, "base", 0.0, path),
            _number(options, "peak", None, path),
            every=_number(options, "every", None, path),
            length=_number(options, "length", None, path),
            start=_number(options, "start", 0.0, path),
            duration=duration,
            resolution=resolution,
        )
    if options:
        raise ConfigError(f"unknown setting {next(iter(options))!r}", path=path)
    if seed is not None:
        try:
            made = poisson(made, seed=int(seed))
        except ValueError:
            raise ConfigError(f"{seed!r} is not an integer", path=f"{path}.poisson") from None
    return made
