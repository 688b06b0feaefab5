"""The scalingModifiers composite on its own: value, replicas, errors and fallback."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from eventscale.engine import Combiner, Tolerance, compile_formula
from eventscale.engine._composite import Composite
from eventscale.errors import FormulaError
from eventscale.metrics import MetricType
from eventscale.spec import Fallback, FallbackBehavior

TOLERANCE = Tolerance(0.1, 0.1)
FALLBACK = Fallback(failure_threshold=1, replicas=6, behavior=FallbackBehavior.SCALING_MODIFIERS)


def formula(text: str, target: float = 2.0, activation: float = 1.0) -> Composite:
    compiled = compile_formula(text, ["a", "b"])
    return Composite(compiled, None, target, activation, MetricType.AVERAGE_VALUE)


def combiner(function: Callable[[Mapping[str, float | None]], float | None]) -> Composite:
    c = Combiner(function=function, target=2.0)
    return Composite(None, c, c.target, c.activation_target, c.metric_type)


def test_formula_gives_replicas_and_activity() -> None:
    unresolved: list[tuple[str, str]] = []
    got = formula("a + b").replicas({"a": 3.0, "b": 5.0}, unresolved, [], None, 2, None, TOLERANCE)
    assert got == (4, True, None)
    assert unresolved == []


def test_activation_is_strictly_above_the_activation_target() -> None:
    got = formula("a", activation=1.0).replicas({"a": 1.0}, [], [], None, 0, None, TOLERANCE)
    assert got == (1, False, None)


def test_unknown_while_a_trigger_has_no_value() -> None:
    unresolved = [("a", "refused")]
    got = formula("a + b").replicas({"b": 5.0}, unresolved, [], None, 2, None, TOLERANCE)
    assert got == (None, False, None)
    assert unresolved == [("a", "refused")]


def test_formula_error_is_an_error_of_the_composite() -> None:
    unresolved: list[tuple[str, str]] = []
    got = formula("a / b").replicas({"a": 1.0, "b": 0.0}, unresolved, [], None, 2, None, TOLERANCE)
    assert got == (None, False, None)
    assert [name for name, _ in unresolved] == ["composite"]


def test_formula_error_with_a_trigger_in_fallback_engages_fallback() -> None:
    unresolved: list[tuple[str, str]] = []
    got = formula("a + b").replicas(
        {"a": None, "b": 1.0}, unresolved, ["a"], FALLBACK, 2, None, TOLERANCE
    )
    assert got == (None, False, 6)
    assert unresolved == []


def test_nil_without_fallback_is_an_error() -> None:
    unresolved: list[tuple[str, str]] = []
    got = combiner(lambda values: None).replicas({}, unresolved, [], None, 2, None, TOLERANCE)
    assert got == (None, False, None)
    assert unresolved == [("composite", "the formula gave nil")]


def test_combiner_exception_becomes_a_formula_error() -> None:
    def boom(values: Mapping[str, float | None]) -> float:
        raise RuntimeError("no")

    with pytest.raises(FormulaError, match="combiner raised RuntimeError: no"):
        combiner(boom).value({})
