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


def test_cooldown_without_a_way_to_zero_warns() -> None:
    # KEDA warns: cooldownPeriod only delays going to zero (or to idleReplicaCount)
    warned = check_spec(make_spec(cooldown_period=60, min_replica_count=2))
    assert [w.path for w in warned] == ["spec.cooldownPeriod"]
    assert "no effect" in str(warned[0])
    assert check_spec(make_spec(cooldown_period=60, min_replica_count=0)) == ()
    idle = make_spec(cooldown_period=60, min_replica_count=2, idle_replica_count=0)
    assert check_spec(idle) == ()
    assert check_spec(make_spec(min_replica_count=2)) == ()  # the default is not "set"


def test_unnamed_triggers_the_formula_does_not_use_are_accepted() -> None:
    import pytest

    from eventscale.errors import ConfigError
    from eventscale.spec import TriggerSpec

    mods = ScalingModifiers(formula="a * 2", target=2)
    triggers = (TriggerSpec(type="redis", name="a"), TriggerSpec(type="redis"))
    spec = make_spec(triggers=triggers, advanced=Advanced(scaling_modifiers=mods))
    assert check_spec(spec) == ()
    # a name the formula uses must still exist
    other = ScalingModifiers(formula="b * 2", target=2)
    with pytest.raises(ConfigError, match="unknown name 'b'"):
        check_spec(make_spec(triggers=triggers, advanced=Advanced(scaling_modifiers=other)))
