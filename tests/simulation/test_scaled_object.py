"""simulate() and Trace: bounded work, memory that follows the steps kept, strict CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventscale.errors import ConfigError
from eventscale.simulation import Trace, simulate, simulate_jobs
from eventscale.simulation.scaled_object import MAX_TICKS
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, ScaleTargetRef, TriggerSpec

TRIGGER = TriggerSpec(type="gauge", name="q", metadata={"target": "10"})


def spec(interval: float = 1) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="w",
        scale_target_ref=ScaleTargetRef(name="w"),
        triggers=[TRIGGER],
        polling_interval=interval,
    )


def job_spec() -> ScaledJobSpec:
    return ScaledJobSpec(name="j", job_target_ref={}, triggers=[TRIGGER], polling_interval=1)


# ------------------------------------------------------------------ the simulated span


def test_a_span_beyond_the_tick_limit_is_a_config_error_at_once() -> None:
    # 30 bytes that used to mean a million ticks (and gigabytes of steps)
    trace = Trace.from_text("time,q\n0,5\n1000000,5\n")
    with pytest.raises(ConfigError, match="limit of 200000") as info:
        simulate(spec(), trace)
    assert info.value.path == "trace"
    with pytest.raises(ConfigError, match="limit of 200000"):
        simulate_jobs(job_spec(), trace, job_seconds=10)


def test_the_last_tick_within_the_limit_runs() -> None:
    trace = Trace.from_text(f"time,q\n0,5\n{MAX_TICKS - 1},5\n")
    assert trace.ticks(1) == MAX_TICKS
    with pytest.raises(ConfigError):
        Trace.from_text(f"time,q\n0,5\n{MAX_TICKS},5\n").ticks(1)


def test_ticks_of_one_row_share_its_values() -> None:
    # memory follows the steps kept: no copy of the trace row per tick
    timeline = simulate(spec(), Trace.from_text("time,q\n0,5\n100,50\n"))
    assert len(timeline.steps) == 101
    assert all(s.metrics is timeline.steps[0].metrics for s in timeline.steps[:100])
    assert timeline.steps[100].metrics == {"q": 50.0}
    jobs = simulate_jobs(job_spec(), Trace.from_text("time,q\n0,5\n100,50\n"), job_seconds=5)
    assert all(s.metrics is jobs.steps[0].metrics for s in jobs.steps[:10])


def test_a_day_of_one_second_rows_gives_a_step_per_row_with_its_value() -> None:
    rows = 86_400
    text = "time,q\n" + "".join(f"{t},{t % 97}\n" for t in range(rows))
    timeline = simulate(spec(), Trace.from_text(text))
    assert len(timeline.steps) == rows
    assert [s.metrics["q"] for s in timeline.steps[-3:]] == [
        float((rows - 3) % 97),
        float((rows - 2) % 97),
        float((rows - 1) % 97),
    ]


def test_sampling_agrees_with_at() -> None:
    trace = Trace.from_text("time,q\n2,1\n2,3\n5.5,\n9,7\n")
    sampled = [dict(values) for _, values in trace.sample(1.5)]
    assert sampled == [dict(trace.at(n * 1.5)) for n in range(trace.ticks(1.5))]
    assert sampled[0] == {"q": None}  # before the first row


# ------------------------------------------------------------------ the CSV


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("time,q\n0,1\n1,2,3\n", 3, "the line has 3 fields, the header 2"),
        ("time,q\n0," + "9" * (129 * 1024) + "\n", 2, "longer than 128 KiB"),
        ("time,q\n0,1\n1,nan\n", 3, "NaN"),
        ("time,q\n0,-2\n", 2, "negative"),
        ("time,q\n0,inf\n", 2, "infinite"),
        ("time,q\n0,2e15\n", 2, "above the limit"),
    ],
    ids=["extra-field", "long-field", "nan", "negative", "inf", "huge"],
)
def test_bad_rows_are_config_errors_with_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        Trace.from_text(text)
    assert info.value.path == f"<trace>:{line}"


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(b"time,q\n0,1\n1,\xff2\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        Trace.from_csv(path)
    assert info.value.path == f"{path}:3"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(b"\xef\xbb\xbftime,q\r\n0,1\r\n4,2\r\n")
    assert Trace.from_csv(path).rows == ((0.0, {"q": 1.0}), (4.0, {"q": 2.0}))
    assert Trace.from_text("\ufefftime,q\n0,1\n").columns == ("q",)


@pytest.mark.parametrize(
    ("trigger_type", "metadata", "target", "activation"),
    [
        ("prometheus", {"threshold": "7", "activationThreshold": "2"}, 7.0, 2.0),
        ("metrics-api", {"targetValue": "3"}, 3.0, 0.0),
        ("postgresql", {"targetQueryValue": "4", "activationTargetQueryValue": "1"}, 4.0, 1.0),
        ("mysql", {"queryValue": "6"}, 6.0, 0.0),
        ("nats-jetstream", {}, 10.0, 0.0),
        ("apache-kafka", {"lagThreshold": "50"}, 50.0, 0.0),
        ("celery", {"activationValue": "1"}, 5.0, 1.0),
        ("rq", {"value": "8"}, 8.0, 0.0),
        ("dramatiq", {}, 5.0, 0.0),
    ],
)
def test_the_newer_triggers_simulate_with_their_own_target_parameters(
    trigger_type: str, metadata: dict[str, str], target: float, activation: float
) -> None:
    from eventscale.simulation import trigger_metric_specs

    spec = ScaledObjectSpec(
        name="o",
        scale_target_ref=ScaleTargetRef(name="o"),
        triggers=[TriggerSpec(type=trigger_type, metadata=metadata)],
    )
    (metric,) = trigger_metric_specs(spec)
    assert (metric.target, metric.activation_target) == (target, activation)


def test_a_required_target_parameter_is_named_when_missing() -> None:
    from eventscale.simulation import trigger_metric_specs

    spec = ScaledObjectSpec(
        name="o",
        scale_target_ref=ScaleTargetRef(name="o"),
        triggers=[TriggerSpec(type="prometheus", metadata={"query": "up"})],
    )
    with pytest.raises(ConfigError) as info:
        trigger_metric_specs(spec)
    assert info.value.path == "spec.triggers[0].metadata.threshold"
