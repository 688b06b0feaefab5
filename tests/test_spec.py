"""Specs built directly in Python reject bad values with a ConfigError at the KEDA field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.spec import Fallback, PolicyType, ScalingPolicy, ScalingRules


@pytest.mark.parametrize(
    ("make", "path", "reason"),
    [
        (
            lambda: ScalingPolicy(type=PolicyType.PODS, value=0, period_seconds=15),
            "value",
            "greater than 0",
        ),
        (
            lambda: ScalingPolicy(type=PolicyType.PODS, value=1, period_seconds=0),
            "periodSeconds",
            "at least 1",
        ),
        (
            lambda: ScalingPolicy(type=PolicyType.PERCENT, value=1, period_seconds=1801),
            "periodSeconds",
            "at most 1800",
        ),
        (
            lambda: ScalingRules(stabilization_window_seconds=3601),
            "stabilizationWindowSeconds",
            "at most 3600",
        ),
        (
            lambda: ScalingRules(stabilization_window_seconds=-1),
            "stabilizationWindowSeconds",
            "at least 0",
        ),
        (lambda: ScalingRules(tolerance=-0.1), "tolerance", "at least 0"),
        (lambda: Fallback(failure_threshold=-1, replicas=1), "failureThreshold", "at least 0"),
        (lambda: Fallback(failure_threshold=3, replicas=-1), "replicas", "at least 0"),
    ],
)
def test_out_of_range_values_name_the_field(
    make: Callable[[], Any], path: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        make()
    assert info.value.path == path
    assert isinstance(info.value, ValueError)  # what attrs' validators raised before


def test_bounds_are_inclusive_and_optional_fields_may_be_absent() -> None:
    ScalingPolicy(type=PolicyType.PODS, value=1, period_seconds=1)
    ScalingPolicy(type=PolicyType.PODS, value=1, period_seconds=1800)
    ScalingRules(stabilization_window_seconds=0, tolerance=0.0)
    ScalingRules()
    Fallback(failure_threshold=0, replicas=0)


def test_spec_repr_hides_secret_looking_metadata_of_any_trigger_type() -> None:
    from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec

    so = ScaledObjectSpec(
        name="w",
        scale_target_ref=ScaleTargetRef(name="w"),
        triggers=[
            TriggerSpec(
                type="external",
                metadata={
                    "scalerAddress": "scaler:9090",
                    "authorization": "Bearer abc.def.ghi",
                    "apiToken": "t0ken-value",
                    "clientCredential": "cred-value-1",
                    "tokenFromEnv": "TOKEN_VAR",
                },
            )
        ],
    )
    text = repr(so)
    for leak in ("abc.def.ghi", "t0ken-value", "cred-value-1"):
        assert leak not in text
    assert "scaler:9090" in text
    assert "TOKEN_VAR" in text  # the name of an environment variable is not a secret
