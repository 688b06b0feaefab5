"""Workloads: generators, seeded Poisson draws, the CSV form, the --workload text, limits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eventscale.errors import ConfigError
from eventscale.simulation.workload import (
    MAX_DURATION,
    Workload,
    bursts,
    constant,
    parse_workload,
    poisson,
    sine_day,
    steps,
)


def test_constant_has_one_rate_per_bin_and_its_total() -> None:
    w = constant(2.5, 10)
    assert w.rates == (2.5,) * 10
    assert w.duration == 10
    assert w.total == 25
    assert w.arrivals() == (2.5,) * 10
    half = constant(2, 10, resolution=0.5)
    assert len(half.rates) == 20
    assert half.arrivals()[0] == 1.0
    assert half.total == 20


def test_steps_hold_each_rate_from_its_time() -> None:
    w = steps([(3, 10.0), (0, 1.0), (5, 0.0)], 7)
    assert w.rates == (1.0, 1.0, 1.0, 10.0, 10.0, 0.0, 0.0)
    assert steps([(2, 4.0)], 4).rates == (0.0, 0.0, 4.0, 4.0)


def test_sine_day_peaks_where_asked_and_never_goes_negative() -> None:
    w = sine_day(10, 20, duration=86_400, peak_at=14 * 3600, resolution=60)
    peak = max(range(len(w.rates)), key=lambda i: w.rates[i])
    assert abs(peak * 60 - 14 * 3600) <= 60
    assert min(w.rates) == 0.0
    assert max(w.rates) == pytest.approx(30, rel=1e-3)


def test_bursts_repeat_for_their_length() -> None:
    w = bursts(1, 9, every=5, length=2, start=1, duration=12)
    assert w.rates == (1, 9, 9, 1, 1, 1, 9, 9, 1, 1, 1, 9)


def test_poisson_is_reproducible_per_seed_and_keeps_the_mean() -> None:
    base = constant(3, 20_000)
    a = poisson(base, seed=7)
    assert a == poisson(base, seed=7)
    assert a != poisson(base, seed=8)
    assert all(r == int(r) for r in a.rates)
    assert a.total / base.total == pytest.approx(1, abs=0.02)
    # a high rate uses the normal approximation, still whole and near the mean
    big = poisson(constant(500, 2_000), seed=1)
    assert all(r == int(r) and r >= 0 for r in big.rates)
    assert big.total / 1_000_000 == pytest.approx(1, abs=0.01)


def test_a_csv_gives_rates_that_hold_until_the_next_row(tmp_path: Path) -> None:
    path = tmp_path / "arrivals.csv"
    path.write_text("time,arrivals\n0,1\n2,5\n4,0\n")
    assert Workload.from_csv(path).rates == (1, 1, 5, 5)
    assert Workload.from_text("time,n\n0,3\n2,3\n").rates == (3, 3)
    with pytest.raises(ConfigError, match="'arrivals' column"):
        Workload.from_text("time,a,b\n0,1,2\n3,1,2\n")
    with pytest.raises(ConfigError, match="no arrivals"):
        Workload.from_text("time,arrivals\n0,\n3,1\n")
    with pytest.raises(ConfigError, match="end after time 0"):
        Workload.from_text("time,arrivals\n0,1\n")
    # the trace reader's limits hold: a negative or non-finite rate is refused
    with pytest.raises(ConfigError):
        Workload.from_text("time,arrivals\n0,-1\n3,1\n")
    with pytest.raises(ConfigError):
        Workload.from_text("time,arrivals\n0,nan\n3,1\n")


def test_parse_reads_each_kind() -> None:
    assert parse_workload("constant:rate=2,duration=1m").rates == (2,) * 60
    assert parse_workload("steps:0=1,2=4,duration=4").rates == (1, 1, 4, 4)
    sine = parse_workload("sine:mean=5,amplitude=5,duration=1h,period=1h,peak=30m")
    assert len(sine.rates) == 3600
    assert max(sine.rates) == pytest.approx(10, rel=1e-3)
    assert parse_workload("bursts:base=0,peak=3,every=4,length=1,duration=8").rates == (
        3,
        0,
        0,
        0,
        3,
        0,
        0,
        0,
    )
    drawn = parse_workload("constant:rate=4,duration=100,poisson=3")
    assert drawn == poisson(constant(4, 100), seed=3)
    assert parse_workload("constant:rate=1,duration=10,resolution=2").resolution == 2


def test_parse_reads_a_csv_path(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("time,arrivals\n0,2\n3,0\n")
    assert parse_workload(str(path)).rates == (2, 2, 2)
    assert parse_workload(f"csv:{path}").rates == (2, 2, 2)


@pytest.mark.parametrize(
    ("text", "message", "path"),
    [
        ("spiky:rate=1", "neither a CSV file nor", "--workload"),
        ("constant:rate=1", "needs duration=", "--workload(constant)"),
        ("constant:rate=x,duration=5", "not a number", "--workload(constant).rate"),
        (
            "constant:rate=1,duration=5,colour=red",
            "unknown setting 'colour'",
            "--workload(constant)",
        ),
        ("constant:rate=1,duration=5,poisson=x", "not an integer", "--workload(constant).poisson"),
        ("constant:rate,duration=5", "not key=value", "--workload"),
        ("constant:rate=-1,duration=5", ">= 0", "--workload(constant).rate"),
        ("constant:rate=1,duration=8d", "seconds in", "duration"),
    ],
)
def test_parse_errors_name_the_field(text: str, message: str, path: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_workload(text)
    assert info.value.path == path


def test_limits_on_rates_and_duration() -> None:
    with pytest.raises(ConfigError, match="workload\\[1\\]"):
        Workload((1.0, math.inf))
    with pytest.raises(ConfigError):
        Workload((1.0, -0.5))
    with pytest.raises(ConfigError, match="empty"):
        Workload(())
    with pytest.raises(ConfigError, match="more than"):
        Workload((1.0,) * 10, resolution=MAX_DURATION)
    with pytest.raises(ConfigError, match="limit of 200000"):
        Workload((0.0,) * 200_001)
    with pytest.raises(ConfigError, match="resolution"):
        Workload((1.0,), resolution=0)
