"""Spec checks: warnings for valid but probably unintended configurations."""

from __future__ import annotations

from eventscale.engine import check_spec
from eventscale.metrics import MetricSpec
from eventscale.spec import Advanced, ScalingModifiers

from .helpers import make_spec


def test_check_spec_warnings() -> None:
    mods = ScalingModifiers(formula="t0", target=2, activation_target=3)
    spec = make_spec(advanced=Advanced(scaling_modifiers=mods))
    specs = {0: [MetricSpec(name="s0-m", target=5, activation_target=5)]}
    warnings = check_spec(spec, specs)
    paths = [w.path for w in warnings]
    assert paths == ["spec.triggers[0]", "spec.advanced.scalingModifiers.activationTarget"]
    assert "activation target 5 >= target 5" in str(warnings[0])
    assert (
        check_spec(make_spec(), {0: [MetricSpec(name="s0-m", target=5, activation_target=1)]}) == ()
    )
