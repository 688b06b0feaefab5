"""The exception tree and metric helpers (KEDA's pkg/scalers/scaler.go and pkg/util/normalize_string.go, with their test vectors)."""

from __future__ import annotations

import math
import pickle

import pytest

from eventscale.errors import (
    ConfigError,
    EventscaleError,
    MissingExtraError,
    ScalerError,
    ScalerTimeout,
    TargetConflict,
    TargetError,
    TargetNotFound,
)
from eventscale.metrics import (
    MAX_METRIC_VALUE,
    MetricSpec,
    MetricType,
    MetricValue,
    ScalerReport,
    metric_name,
    normalize_metric_name,
    remove_index_from_metric_name,
    sanitize_metric_value,
    to_milli,
    validate_metric_value,
)


def test_tree_and_builtin_bases() -> None:
    for cls in (ConfigError, ScalerError, TargetError, MissingExtraError, ScalerTimeout):
        assert issubclass(cls, EventscaleError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(MissingExtraError, ImportError)
    assert issubclass(ScalerTimeout, TimeoutError)
    assert issubclass(TargetNotFound, LookupError)
    assert issubclass(TargetNotFound, TargetError)
    assert issubclass(TargetConflict, TargetError)


def test_config_error_path_and_grouping() -> None:
    a = ConfigError("must be >= 0", path="spec.cooldownPeriod")
    b = ConfigError("is required", path="spec.scaleTargetRef.name")
    assert str(a) == "spec.cooldownPeriod: must be >= 0"
    with pytest.raises(ConfigError) as info:
        ConfigError.collect([a, b], what="invalid ScaledObject 'x'")
    assert info.value.all_paths() == ["spec.cooldownPeriod", "spec.scaleTargetRef.name"]
    assert "  - spec.cooldownPeriod: must be >= 0" in str(info.value)
    ConfigError.collect([])  # nothing to raise


def test_config_error_prefix() -> None:
    err = ConfigError("x", path="triggers[0].metadata.a").prefixed("spec")
    assert err.path == "spec.triggers[0].metadata.a"
    assert ConfigError("y", path="[2]").prefixed("docs").path == "docs[2]"


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("bad", path="spec.x", errors=[ConfigError("inner", path="spec.y")]),
        MissingExtraError("the kafka scaler", "kafka", "confluent_kafka"),
        ScalerError("down", trigger="s0", transient=False),
        ScalerTimeout("slow", trigger="s1"),
        TargetError("nope", target="deploy/x", status=403),
        TargetNotFound("gone", target="deploy/x", status=404),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle(err: Exception) -> None:
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err)
    assert str(clone) == str(err)


def test_missing_extra_message() -> None:
    err = MissingExtraError("the kafka scaler", "kafka", "confluent_kafka")
    assert "pip install 'eventscale[kafka]'" in str(err)


def test_scaler_error_identity() -> None:
    err = ScalerError("queue not found", transient=False)
    assert str(err) == "queue not found"
    assert err.with_trigger("s0-rabbitmq-q") is err
    assert str(err) == "[s0-rabbitmq-q] queue not found"
    err.with_trigger("other")
    assert err.trigger == "s0-rabbitmq-q"


# F1-F4
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AverageValue", MetricType.AVERAGE_VALUE),
        ("Value", MetricType.VALUE),
        ("", MetricType.AVERAGE_VALUE),
        (None, MetricType.AVERAGE_VALUE),
    ],
)
def test_metric_type_parse(raw: str | None, expected: MetricType) -> None:
    assert MetricType.parse(raw) is expected


def test_metric_type_utilization_is_an_error() -> None:
    with pytest.raises(ConfigError, match="Utilization") as info:
        MetricType.parse("Utilization", path="spec.triggers[0].metricType")
    assert info.value.path == "spec.triggers[0].metricType"
    with pytest.raises(ConfigError, match="must be one of"):
        MetricType.parse("Average")


# F7-F9
@pytest.mark.parametrize("value", [100.5, 1e18, 9.3e15, 42.5])
def test_large_values_stay_positive(value: float) -> None:
    assert to_milli(value) > 0
    assert MetricSpec(name="s0-x", target=value).target == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, -9.3e15])
def test_nan_inf_negative_are_zero(value: float) -> None:
    assert sanitize_metric_value(value) == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, -9.3e15, 1.5e15])
def test_a_reported_value_is_kept_and_checked_not_clamped(value: float) -> None:
    # a NaN read as 0 would scale a workload in: the runtime rejects it instead
    kept = MetricValue(name="m", value=value).value
    assert kept == value or (math.isnan(kept) and math.isnan(value))
    problem = validate_metric_value("s0-m", value)
    assert problem is not None
    assert "s0-m" in problem


@pytest.mark.parametrize("value", [0.0, 0.5, 42.5, MAX_METRIC_VALUE])
def test_finite_values_up_to_the_limit_are_valid(value: float) -> None:
    assert validate_metric_value("s0-m", value) is None


def test_milli_rounding() -> None:
    assert to_milli(1.23456) == 1.235


def test_metric_spec_target_validation() -> None:
    with pytest.raises(ValueError, match="finite"):
        MetricSpec(name="s0-x", target=math.nan)


# F10-F14
@pytest.mark.parametrize(("index", "name"), [(0, "s0-metricName"), (123, "s123-metricName")])
def test_remove_index(index: int, name: str) -> None:
    assert remove_index_from_metric_name(index, name) == "metricName"


@pytest.mark.parametrize(
    ("index", "name"), [(1, "s0-metricName"), (0, "0-metricName"), (0, "metricName")]
)
def test_remove_index_errors(index: int, name: str) -> None:
    with pytest.raises(ValueError, match="metric name"):
        remove_index_from_metric_name(index, name)


def test_metric_name_and_normalize() -> None:
    assert metric_name(2, "kafka-topic") == "s2-kafka-topic"
    assert normalize_metric_name("a/b.c:d%e(f)g h_i,J") == "a-b-c-d-e-f-g h_i,J"


def test_report_helpers() -> None:
    report = ScalerReport.single("s0-q", 7, is_active=True)
    assert report.value_of("s0-q") == 7
    assert report.names == ("s0-q",)
    with pytest.raises(KeyError):
        report.value_of("nope")
