"""The cron scaler: KEDA metadata vectors (KEDA's pkg/scalers/cron_scaler_test.go), the [start, end) window,
daylight-saving behaviour, and time injection through a manual clock."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.scalers import Scaler, create_scaler
from eventscale.scalers.cron import CronConfig, CronScaler, parse_cron
from eventscale.scalers.params import TriggerContext

NY = ZoneInfo("America/New_York")


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def ctx(metadata: dict[str, Any], index: int = 0, **kw: Any) -> TriggerContext:
    return TriggerContext(metadata=metadata, index=index, trigger_type="cron", **kw)


def scaler_at(metadata: dict[str, Any], now: datetime, index: int = 0) -> CronScaler:
    return CronScaler.from_context(ctx(metadata, index), clock=ManualClock(now))


# ------------------------------------------------------------------ 8.3 metadata vectors

C2 = {
    "timezone": "Etc/UTC",
    "start": "0 0 * * Thu",
    "end": "59 23 * * Thu",
    "desiredReplicas": "10",
}
C3 = {
    "timezone": "Etc/UTC",
    "start": "0 */2 * * *",
    "end": "0 1-23/2 * * *",
    "desiredReplicas": "10",
}
C4 = {
    "timezone": "Etc/UTC",
    "start": "0,30 * * * *",
    "end": "15,45 * * * *",
    "desiredReplicas": "10",
}

PARSE_VECTORS = [
    pytest.param({}, False, id="C1-empty"),
    pytest.param(C2, True, id="C2-thursday"),
    pytest.param(C3, True, id="C3-even-hours"),
    pytest.param(C4, True, id="C4-lists"),
    pytest.param(
        {"timezone": "Asia/Kolkata", "start": "30 * * * *", "end": "45 * * * *"},
        False,
        id="C5-no-desiredReplicas",
    ),
    pytest.param(
        {"start": "30 * * * *", "end": "45 * * * *", "desiredReplicas": "10"},
        False,
        id="C6-no-timezone",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "30-33 * * * *",
            "end": "45 * * * *",
            "desiredReplicas": "10",
        },
        True,
        id="C7-start-range",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "30 * * * *",
            "end": "45-50 * * * *",
            "desiredReplicas": "10",
        },
        True,
        id="C8-end-range",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "-30 * * * *",
            "end": "45 * * * *",
            "desiredReplicas": "10",
        },
        False,
        id="C9-negative-start",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "30 * * * *",
            "end": "-50 * * * *",
            "desiredReplicas": "10",
        },
        False,
        id="C10-negative-end",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "30 * * * *",
            "end": "50 * * -3 *",
            "desiredReplicas": "10",
        },
        False,
        id="C11-negative-month",
    ),
    pytest.param(
        {
            "timezone": "Asia/Kolkata",
            "start": "30 * * * *",
            "end": "30 * * * *",
            "desiredReplicas": "10",
        },
        False,
        id="C12-start-equals-end",
    ),
]


@pytest.mark.parametrize(("metadata", "ok"), PARSE_VECTORS)
def test_keda_metadata_vectors(metadata: dict[str, Any], ok: bool) -> None:
    if ok:
        config = CronConfig.from_context(ctx(metadata))
        assert config.timezone == metadata["timezone"]
        assert config.desired_replicas == int(metadata["desiredReplicas"])
    else:
        with pytest.raises(ConfigError):
            CronConfig.from_context(ctx(metadata))


def test_every_missing_field_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        CronConfig.from_context(ctx({}, path="spec.triggers[2]"))
    paths = info.value.all_paths()
    for name in ("start", "end", "timezone", "desiredReplicas"):
        assert f"spec.triggers[2].metadata.{name}" in paths


@pytest.mark.parametrize(
    ("metadata", "index", "expected"),
    [
        pytest.param(C2, 0, "s0-cron-Etc-UTC-00xxThu-5923xxThu", id="C2"),
        pytest.param(C3, 1, "s1-cron-Etc-UTC-0xSl2xxx-01-23Sl2xxx", id="C3"),
        pytest.param(C4, 2, "s2-cron-Etc-UTC-0Cm30xxxx-15Cm45xxxx", id="C4"),
    ],
)
def test_metric_names(metadata: dict[str, Any], index: int, expected: str) -> None:
    scaler = CronScaler.from_context(ctx(metadata, index))
    (spec,) = scaler.metric_specs()
    assert spec.name == expected
    assert spec.target == 1
    assert spec.metric_type is MetricType.AVERAGE_VALUE


@pytest.mark.anyio
@pytest.mark.parametrize("day", range(4, 11))  # 2026-01-04 (Sun) .. 2026-01-10 (Sat)
async def test_c13_active_only_on_thursday(day: int) -> None:
    now = datetime(2026, 1, day, 12, 0, tzinfo=UTC)
    report = await scaler_at(C2, now).get_metrics()
    thursday = now.weekday() == 3
    assert report.is_active is thursday
    assert report.value_of("s0-cron-Etc-UTC-00xxThu-5923xxThu") == (10 if thursday else 0)


@pytest.mark.anyio
@pytest.mark.parametrize("hour", range(24))
async def test_c14_active_during_even_hours(hour: int) -> None:
    report = await scaler_at(C3, datetime(2026, 1, 5, hour, 20, tzinfo=UTC)).get_metrics()
    assert report.is_active is (hour % 2 == 0)
    assert report.values[0].value == (10 if hour % 2 == 0 else 0)


# ------------------------------------------------------------------ window boundaries (CD1-CD8)

DAY = {"timezone": "UTC", "start": "0 6 * * *", "end": "0 20 * * *", "desiredReplicas": "3"}
NIGHT = {"timezone": "UTC", "start": "0 22 * * *", "end": "0 6 * * *", "desiredReplicas": "3"}


@pytest.mark.parametrize(
    ("metadata", "now", "inside"),
    [
        pytest.param(DAY, datetime(2026, 1, 5, 5, 59, 59), False, id="CD1-before-start"),
        pytest.param(DAY, datetime(2026, 1, 5, 5, 59, 59, 999999), False, id="before-start-micro"),
        pytest.param(DAY, datetime(2026, 1, 5, 6, 0, 0), True, id="CD2-start-inclusive"),
        pytest.param(DAY, datetime(2026, 1, 5, 19, 59, 59), True, id="CD3-before-end"),
        pytest.param(DAY, datetime(2026, 1, 5, 20, 0, 0), False, id="CD4-end-exclusive"),
        pytest.param(NIGHT, datetime(2026, 1, 5, 23, 0), True, id="CD5-night-23h"),
        pytest.param(NIGHT, datetime(2026, 1, 5, 3, 0), True, id="CD5-night-03h"),
        pytest.param(NIGHT, datetime(2026, 1, 5, 12, 0), False, id="CD6-midday"),
        pytest.param(C2, datetime(2026, 1, 8, 23, 59, 30), False, id="CD7-after-thursday-end"),
        pytest.param(
            {"timezone": "UTC", "start": "30 * * * *", "end": "30 * * * ?", "desiredReplicas": "1"},
            datetime(2026, 1, 8, 7, 10),
            True,
            id="CD8-same-instant",
        ),
    ],
)
def test_window_boundaries(metadata: dict[str, Any], now: datetime, inside: bool) -> None:
    scaler = scaler_at(metadata, now.replace(tzinfo=UTC))
    assert scaler.is_inside() is inside


def test_never_firing_start_keeps_window_open_and_never_firing_end_closed() -> None:
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    open_ = {"timezone": "UTC", "start": "0 0 30 2 *", "end": "0 6 * * *", "desiredReplicas": "1"}
    closed = {"timezone": "UTC", "start": "0 6 * * *", "end": "0 0 30 2 *", "desiredReplicas": "1"}
    assert scaler_at(open_, now).is_inside() is True
    assert scaler_at(closed, now).is_inside() is False


# ------------------------------------------------------------------ time injection


@pytest.mark.anyio
async def test_clock_is_the_only_time_source_and_window_follows_it() -> None:
    clock = ManualClock(datetime(2026, 1, 5, 5, 58, tzinfo=UTC))
    scaler = CronScaler(
        timezone="UTC", start="0 6 * * *", end="0 20 * * *", desired_replicas=4, clock=clock
    )
    seen = []
    for _ in range(4):
        report = await scaler.get_metrics()
        seen.append((report.is_active, report.values[0].value))
        clock.advance(timedelta(minutes=1))
    assert seen == [(False, 0), (False, 0), (True, 4), (True, 4)]
    assert clock.calls == 4
    clock.now = datetime(2026, 1, 5, 19, 59, 59, 999999, tzinfo=UTC)
    assert (await scaler.get_metrics()).is_active
    clock.advance(timedelta(microseconds=1))
    assert not (await scaler.get_metrics()).is_active
    await scaler.aclose()


def test_naive_clock_reads_as_utc() -> None:
    scaler = CronScaler(
        timezone="UTC",
        start="0 6 * * *",
        end="0 20 * * *",
        desired_replicas=1,
        clock=lambda: datetime(2026, 1, 5, 7),
    )
    assert scaler.is_inside()


@pytest.mark.anyio
async def test_negative_desired_replicas_reports_zero_but_is_active() -> None:
    meta = {**DAY, "desiredReplicas": "-2"}
    report = await scaler_at(meta, datetime(2026, 1, 5, 7, tzinfo=UTC)).get_metrics()
    assert report.is_active is True
    assert report.values[0].value == 0


# ------------------------------------------------------------------ typed == metadata


def test_typed_construction_equals_metadata() -> None:
    typed = CronScaler(
        timezone="Europe/Berlin",
        start="0 8 * * 1-5",
        end="0 18 * * 1-5",
        desired_replicas=4,
        index=3,
        metric_type=MetricType.VALUE,
    )
    parsed = CronScaler.from_context(
        ctx(
            {
                "timezone": " Europe/Berlin ",
                "start": "0 8 * * 1-5",
                "end": "0 18 * * 1-5\n",
                "desiredReplicas": "4",
            },
            index=3,
            metric_type=MetricType.VALUE,
        )
    )
    assert typed.config == parsed.config
    assert typed.metric_specs() == parsed.metric_specs()
    assert "Europe/Berlin" in repr(typed)


def test_typed_construction_validates() -> None:
    with pytest.raises(ConfigError, match="exactly same") as info:
        CronScaler(timezone="UTC", start="0 6 * * *", end="0 6 * * *", desired_replicas=1)
    assert info.value.path == "end"
    with pytest.raises(ConfigError, match="desiredReplicas"):
        CronScaler(timezone="UTC", start="0 6 * * *", end="0 7 * * *", desired_replicas=0)
    with pytest.raises(ConfigError, match="unknown time zone") as tz_info:
        CronScaler(timezone="Mars/Olympus", start="0 6 * * *", end="0 7 * * *", desired_replicas=1)
    assert tz_info.value.path == "timezone"


def test_registry_builds_cron_scaler() -> None:
    scaler = create_scaler(ctx(C2))
    assert isinstance(scaler, CronScaler)
    assert isinstance(scaler, Scaler)


# ------------------------------------------------------------------ 8.1 expression rules


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 * * 7",  # day of week is 0-6
        "@hourly",
        "@every 1h",
        "0 0 0 * * *",  # six fields (seconds) are not accepted
        "0 0 * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "5-1 * * * *",
        "*/0 * * * *",
        "1-2-3 * * * *",
        "1/2/3 * * * *",
        "1,,2 * * * *",
        "a * * * *",
        "TZ=Nowhere/Land 0 6 * * *",
        "",
    ],
)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - parse_cron documents ValueError
        parse_cron(expr)
    meta = {"timezone": "UTC", "start": expr or " ", "end": "0 1 * * *", "desiredReplicas": "1"}
    with pytest.raises(ConfigError):
        CronConfig.from_context(ctx(meta))


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 * * 0-6",
        "0 0 ? * MON-fri",
        "0 0 1 jan,JUL *",
        "+5 * * * *",
        "05 * * * *",
        "10/15 * * * *",
        "TZ=Asia/Tokyo 0 9 * * *",
        "CRON_TZ=UTC 0 9 * * *",
    ],
)
def test_valid_expressions(expr: str) -> None:
    parse_cron(expr)


def test_step_forms() -> None:
    assert parse_cron("10/15 * * * *").minute.values == frozenset({10, 25, 40, 55})
    assert parse_cron("*/20 * * * *").minute.values == frozenset({0, 20, 40})
    assert parse_cron("*/1 * * * *").minute.star is True
    assert parse_cron("*/2 * * * *").minute.star is False


def test_day_of_month_and_week_or_when_both_restricted() -> None:
    # Vixie-cron rule kept by robfig: both restricted => either matches.
    meta = {"timezone": "UTC", "start": "0 6 13 * 5", "end": "0 7 13 * 5", "desiredReplicas": "1"}
    # 2026-02-13 is a Friday the 13th; 2026-02-20 a Friday; 2026-03-13 a Friday too;
    # 2026-04-13 a Monday (dom match only).
    for day in (datetime(2026, 2, 20, 6, 30), datetime(2026, 4, 13, 6, 30)):
        assert scaler_at(meta, day.replace(tzinfo=UTC)).is_inside()
    assert not scaler_at(meta, datetime(2026, 4, 14, 6, 30, tzinfo=UTC)).is_inside()
    # one field starred => both must match (AND)
    meta_and = {**meta, "start": "0 6 13 * *", "end": "0 7 13 * *"}
    assert not scaler_at(meta_and, datetime(2026, 2, 20, 6, 30, tzinfo=UTC)).is_inside()
    assert scaler_at(meta_and, datetime(2026, 4, 13, 6, 30, tzinfo=UTC)).is_inside()


def test_tz_prefix_overrides_trigger_zone() -> None:
    # 09:00 in Tokyo is 00:00 UTC.
    meta = {
        "timezone": "UTC",
        "start": "TZ=Asia/Tokyo 0 9 * * *",
        "end": "0 1 * * *",
        "desiredReplicas": "1",
    }
    assert scaler_at(meta, datetime(2026, 1, 5, 0, 30, tzinfo=UTC)).is_inside()
    assert not scaler_at(meta, datetime(2026, 1, 5, 23, 30, tzinfo=UTC)).is_inside()


def test_literal_equality_only() -> None:
    meta = {"timezone": "UTC", "start": "30 * * * *", "end": "30 * * * ?", "desiredReplicas": "1"}
    CronConfig.from_context(ctx(meta))


# ------------------------------------------------------------------ daylight saving time


def ny(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY, fold=fold)


def active_intervals(
    scaler: CronScaler, begin: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Walk real time minute by minute and collect [first active, first inactive) in UTC."""
    out: list[tuple[datetime, datetime]] = []
    t = begin.astimezone(UTC)
    stop = end.astimezone(UTC)
    opened: datetime | None = None
    while t < stop:
        inside = scaler.is_inside(t)
        if inside and opened is None:
            opened = t
        elif not inside and opened is not None:
            out.append((opened, t))
            opened = None
        t += timedelta(minutes=1)
    if opened is not None:
        out.append((opened, stop))
    return out


def ny_scaler(start: str, end: str) -> CronScaler:
    return CronScaler(timezone="America/New_York", start=start, end=end, desired_replicas=2)


@pytest.mark.parametrize(
    ("start", "end", "now", "inside", "keda"),
    [
        # KEDA: the skipped 02:30 start is dropped, so the window stays open for a day.
        pytest.param("30 2 * * *", "0 4 * * *", ny(2026, 3, 7, 5), False, True, id="CD9"),
        pytest.param("30 2 * * *", "0 4 * * *", ny(2026, 3, 8, 3, 0), True, False, id="CD9-jump"),
        pytest.param("30 2 * * *", "0 4 * * *", ny(2026, 3, 8, 4), False, False, id="CD10"),
        # KEDA: the skipped 02:30 end is dropped, so there is no window that day.
        pytest.param("0 1 * * *", "30 2 * * *", ny(2026, 3, 8, 1, 30), True, False, id="CD11"),
        # KEDA: 01:30 fires twice, closing the window between the two passes.
        pytest.param("30 1 * * *", "0 3 * * *", ny(2026, 11, 1, 1, 45), True, False, id="CD12"),
        pytest.param(
            "30 1 * * *", "0 3 * * *", ny(2026, 11, 1, 1, 45, fold=1), True, True, id="CD13"
        ),
        pytest.param(
            "30 1 * * *",
            "0 3 * * *",
            ny(2026, 11, 1, 1, 15, fold=1),
            True,
            False,
            id="CD13-early-second-pass",
        ),
    ],
)
def test_dst_vectors(start: str, end: str, now: datetime, inside: bool, keda: bool) -> None:
    """eventscale's defined DST rule; ``keda`` records KEDA's answer for the docs."""
    assert ny_scaler(start, end).is_inside(now) is inside


def test_spring_forward_start_fires_when_the_clock_jumps() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT. Start 02:30 does not exist that day.
    scaler = ny_scaler("30 2 * * *", "0 4 * * *")
    got = active_intervals(scaler, ny(2026, 3, 7, 0), ny(2026, 3, 9, 6))
    assert got == [
        (ny(2026, 3, 7, 2, 30).astimezone(UTC), ny(2026, 3, 7, 4).astimezone(UTC)),
        # opens at the jump (03:00 EDT = 07:00 UTC), closes at 04:00 EDT: one hour
        (datetime(2026, 3, 8, 7, tzinfo=UTC), ny(2026, 3, 8, 4).astimezone(UTC)),
        (ny(2026, 3, 9, 2, 30).astimezone(UTC), ny(2026, 3, 9, 4).astimezone(UTC)),
    ]


def test_spring_forward_window_entirely_in_the_gap_does_not_open() -> None:
    scaler = ny_scaler("10 2 * * *", "40 2 * * *")
    got = active_intervals(scaler, ny(2026, 3, 8, 0), ny(2026, 3, 8, 12))
    assert got == []


def test_spring_forward_end_fires_when_the_clock_jumps() -> None:
    scaler = ny_scaler("0 1 * * *", "30 2 * * *")
    got = active_intervals(scaler, ny(2026, 3, 8, 0), ny(2026, 3, 8, 12))
    assert got == [(ny(2026, 3, 8, 1).astimezone(UTC), datetime(2026, 3, 8, 7, tzinfo=UTC))]


def test_fall_back_start_in_repeated_hour_fires_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:00-01:59 happens twice.
    scaler = ny_scaler("30 1 * * *", "0 3 * * *")
    got = active_intervals(scaler, ny(2026, 11, 1, 0), ny(2026, 11, 1, 12))
    # From the first 01:30 (EDT, 05:30 UTC) to 03:00 EST (08:00 UTC), without a gap.
    assert got == [(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 8, tzinfo=UTC))]


def test_fall_back_end_in_repeated_hour_fires_once() -> None:
    scaler = ny_scaler("0 0 * * *", "30 1 * * *")
    got = active_intervals(scaler, ny(2026, 11, 1, 0) - timedelta(minutes=5), ny(2026, 11, 1, 12))
    # Opens 00:00 EDT (04:00 UTC), closes at the first 01:30 (05:30 UTC) and stays closed.
    assert got == [(datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 5, 30, tzinfo=UTC))]


def test_ordinary_day_in_dst_zone_is_unaffected() -> None:
    scaler = ny_scaler("30 1 * * *", "0 3 * * *")
    got = active_intervals(scaler, ny(2026, 7, 1, 0), ny(2026, 7, 1, 12))
    assert got == [(ny(2026, 7, 1, 1, 30).astimezone(UTC), ny(2026, 7, 1, 3).astimezone(UTC))]


# ------------------------------------------------------------------ tzdata


@pytest.fixture
def no_system_zoneinfo() -> Iterator[None]:
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


@pytest.mark.usefixtures("no_system_zoneinfo")
def test_zones_load_without_system_zoneinfo() -> None:
    # A slim container has no /usr/share/zoneinfo: the tzdata package must provide it.
    scaler = CronScaler(
        timezone="Europe/Berlin", start="0 8 * * *", end="0 18 * * *", desired_replicas=1
    )
    assert scaler.is_inside(datetime(2026, 1, 5, 8, 30, tzinfo=UTC))  # 09:30 in Berlin


@pytest.mark.parametrize(
    "zone",
    [
        "A" * 300,
        "Europe/" + "x" * 400,
        "../../etc/passwd",
        "Europe//Berlin",
        "Europe/Berlin\x00",
        "/etc/localtime",
    ],
    ids=["300-chars", "long-part", "dot-dot", "empty-part", "nul", "absolute"],
)
def test_a_timezone_that_cannot_be_an_iana_name_is_a_config_error(zone: str) -> None:
    meta = {"timezone": zone, "start": "0 6 * * *", "end": "0 20 * * *", "desiredReplicas": "2"}
    with pytest.raises(ConfigError) as info:
        CronConfig.from_context(ctx(meta))
    assert "metadata.timezone" in info.value.all_paths()
    with pytest.raises(ConfigError):
        CronConfig(timezone=zone, start="0 6 * * *", end="0 20 * * *", desired_replicas=2)
