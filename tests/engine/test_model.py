"""Decision's lazy trigger details equal eagerly built ones.

decide() records trigger details as tuples and lets :class:`Decision` build the
:class:`TriggerDetail` and :class:`MetricDetail` objects on first read; these tests
check that the result is the same as an eagerly built decision, in every respect.
"""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest

from eventscale.engine import (
    Decision,
    MetricDetail,
    Rule,
    ScalingState,
    TriggerDetail,
    TriggerStatus,
    decide,
)
from eventscale.metrics import MetricType

from .helpers import fail, make_spec, ok, two_metric


def _engine_decision() -> Decision:
    spec = make_spec(3, min_replica_count=1, max_replica_count=50)
    _, d = decide(
        spec,
        ScalingState(created_at=0.0),
        [ok(0, 7.0, target=2.0), fail(1), two_metric(2, 5.0, 4.0)],
        3,
        10.0,
    )
    return d


def _expected_details() -> tuple[TriggerDetail, ...]:
    return (
        TriggerDetail(
            index=0,
            name="t0",
            status=TriggerStatus.OK,
            is_active=True,
            replicas=4,
            metrics=(
                MetricDetail(
                    name="s0-m",
                    value=7.0,
                    target=2.0,
                    metric_type=MetricType.AVERAGE_VALUE,
                    replicas=4,
                ),
            ),
        ),
        TriggerDetail(
            index=1,
            name="t1",
            status=TriggerStatus.ERROR,
            is_active=False,
            replicas=None,
            error="[t1] connection refused",
            failures=1,
        ),
        TriggerDetail(
            index=2,
            name="t2",
            status=TriggerStatus.OK,
            is_active=True,
            replicas=4,
            metrics=(
                MetricDetail(
                    name="s2-a",
                    value=5.0,
                    target=2.0,
                    metric_type=MetricType.AVERAGE_VALUE,
                    replicas=3,
                ),
                MetricDetail(
                    name="s2-b", value=4.0, target=3.0, metric_type=MetricType.VALUE, replicas=4
                ),
            ),
        ),
    )


# ----------------------------------------------------------------------- lazy details


def test_details_are_built_on_first_read_and_kept() -> None:
    d = _engine_decision()
    assert "triggers" not in vars(d)  # nothing built by the decision step
    details = d.triggers
    assert details == _expected_details()
    assert d.triggers is details  # built once
    assert "triggers" in vars(d)


def test_pending_decision_equals_the_eager_one() -> None:
    d = _engine_decision()
    eager = Decision(
        replicas=d.replicas,
        current_replicas=d.current_replicas,
        is_active=d.is_active,
        rule=d.rule,
        reason=d.reason,
        trigger=d.trigger,
        raw_replicas=d.raw_replicas,
        triggers=_expected_details(),
        fallback_active=d.fallback_active,
        paused=d.paused,
    )
    fresh = _engine_decision()
    assert fresh == eager
    assert eager == _engine_decision()
    assert hash(_engine_decision()) == hash(eager)
    assert repr(_engine_decision()) == repr(eager)
    assert attrs.asdict(_engine_decision()) == attrs.asdict(eager)
    assert attrs.evolve(_engine_decision()) == eager
    assert attrs.evolve(_engine_decision(), replicas=9).triggers == eager.triggers


@pytest.mark.parametrize("read_first", [False, True], ids=["pending", "built"])
def test_pending_decision_copies_and_pickles(read_first: bool) -> None:
    d = _engine_decision()
    if read_first:
        _ = d.triggers
    for clone in (copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        assert clone == d
        assert clone.triggers == _expected_details()


def test_pending_constructor_sets_every_field_but_triggers() -> None:
    d = _engine_decision()
    names = {f.name for f in attrs.fields(Decision)}
    assert set(vars(d)) == (names - {"triggers"}) | {"_pending_triggers"}
    _ = d.triggers
    assert set(vars(d)) == names


def test_missing_attribute_is_still_an_attribute_error() -> None:
    d = _engine_decision()
    missing = "nope"
    assert not hasattr(d, missing)
    with pytest.raises(AttributeError, match="nope"):
        getattr(d, missing)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        d.replicas = 3  # type: ignore[misc]


def test_paused_decision_has_built_details() -> None:
    spec = make_spec(annotations={"autoscaling.keda.sh/paused": "true"})
    _, d = decide(spec, ScalingState(), [ok(0, 5)], 2, 0.0)
    assert d.rule is Rule.PAUSED
    assert vars(d)["triggers"] == ()
