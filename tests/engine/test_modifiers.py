"""The scalingModifiers expression language: grammar, precedence, safety, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscale.engine import FormulaError, compile_formula
from eventscale.errors import ConfigError

NAMES = ("a", "b", "c")


def ev(text: str, **values: float | None) -> float | None:
    env: dict[str, float | None] = {"a": 1.0, "b": 2.0, "c": 3.0}
    env.update(values)
    return compile_formula(text, NAMES).evaluate(env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a + b * c", 7.0, id="mul-before-add"),
        pytest.param("(a + b) * c", 9.0, id="parens"),
        pytest.param("c - b - a", 0.0, id="left-assoc-minus"),
        pytest.param("c / b / 2", 0.75, id="left-assoc-div"),
        pytest.param("2 ** 3 ** 2", 512.0, id="right-assoc-power"),
        pytest.param("2 ^ 3", 8.0, id="caret-power"),
        pytest.param("-b ** 2", -4.0, id="unary-minus-below-power"),
        pytest.param("7 % 4", 3.0, id="remainder"),
        pytest.param("1.5e2 + .5", 150.5, id="number-forms"),
        pytest.param("a > 0 ? 10 : 20", 10.0, id="ternary"),
        pytest.param("a > 5 ? 10 : b > 1 ? 30 : 40", 30.0, id="nested-ternary"),
        pytest.param("a > 0 and b > 0 ? 1 : 0", 1.0, id="and"),
        pytest.param("a > 5 or b > 5 ? 1 : 0", 0.0, id="or"),
        pytest.param("a > 5 || b > 1 ? 1 : 0", 1.0, id="or-symbol"),
        pytest.param("a > 0 && !(b > 5) ? 1 : 0", 1.0, id="not-symbol"),
        pytest.param("not (a == 1) ? 1 : 0", 0.0, id="not-keyword"),
        pytest.param("a != b ? 1 : 0", 1.0, id="not-equal"),
        pytest.param("a <= 1 and c >= 3 ? 1 : 0", 1.0, id="le-ge"),
        pytest.param("min(a, b, c) + max(a, b, c)", 4.0, id="min-max"),
        pytest.param("abs(a - c)", 2.0, id="abs"),
        pytest.param("ceil(c / b) + floor(c / b)", 3.0, id="ceil-floor"),
        pytest.param("round(2.5) + round(-2.5)", 0.0, id="round-half-away"),
        pytest.param("int(2.9) + float(a)", 3.0, id="int-float"),
        pytest.param("nil ?? b", 2.0, id="coalesce-nil"),
        pytest.param("a ?? b", 1.0, id="coalesce-value"),
        pytest.param("a ?? b * 10", 10.0, id="coalesce-binds-tightest"),
    ],
)
def test_grammar(text: str, expected: float) -> None:
    assert ev(text) == pytest.approx(expected)


def test_nil_trigger_routes_with_coalesce() -> None:
    assert ev("a ?? b", a=None) == 2.0
    assert ev("a ?? b ?? c", a=None, b=None) == 3.0
    assert ev("a ?? nil", a=None) is None


@pytest.mark.parametrize(
    ("text", "values", "match"),
    [
        pytest.param("a + b", {"a": None}, "nil", id="nil-arithmetic"),
        pytest.param("a / (b - 2)", {}, "division by zero", id="div-zero"),
        pytest.param("a % 0", {}, "remainder by zero", id="mod-zero"),
        pytest.param("a > 5 ? a > 0 : 1", {"a": 10.0}, "boolean", id="boolean-result"),
        pytest.param("a > 5 ? (a > 0) + 1 : 1", {"a": 10.0}, "boolean", id="boolean-arithmetic"),
        pytest.param("10 ** a", {"a": 400.0}, r"\*\*", id="overflow"),
        pytest.param("(a - 1) ** 0.5", {"a": -7.0}, "real", id="complex"),
    ],
)
def test_runtime_errors(text: str, values: dict[str, float | None], match: str) -> None:
    with pytest.raises(FormulaError, match=match):
        ev(text, **values)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("a +", "expected a value", id="dangling-operator"),
        pytest.param("(a + b", r"expected '\)'", id="unclosed"),
        pytest.param("a > 0", "boolean", id="boolean-result-at-load"),
        pytest.param("10 ** 400", r"\*\*", id="overflow-at-load"),
        pytest.param("a b", "unexpected 'b'", id="two-values"),
        pytest.param("d + 1", "unknown name 'd'", id="unknown-name"),
        pytest.param("sqrt(a)", "unknown function 'sqrt'", id="unknown-function"),
        pytest.param("abs(a, b)", "exactly one argument", id="arity"),
        pytest.param("max()", "at least one", id="max-empty"),
        pytest.param("a ? b", "expected ':'", id="half-ternary"),
        pytest.param("a and b", "boolean", id="type-error-at-load"),
        pytest.param("__import__('os')", "unexpected character", id="no-strings"),
        pytest.param("a.__class__", "unexpected character", id="no-attributes"),
        pytest.param("a[0]", r"unexpected '\['", id="no-indexing"),
        pytest.param("a = 1", "unexpected character", id="no-assignment"),
        pytest.param("__import__(a)", "unknown function", id="no-builtins"),
    ],
)
def test_compile_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        compile_formula(text, NAMES)
    assert info.value.path == "spec.advanced.scalingModifiers.formula"


def test_load_time_check_tolerates_division_by_zero() -> None:
    # With every name bound to 1 in the trial run, ``a / (b - 1)`` divides by 0;
    # that depends on the values, so it is not a load-time error.
    formula = compile_formula("a / (b - 1)", NAMES)
    assert formula.evaluate({"a": 4.0, "b": 3.0, "c": 0.0}) == 2.0
    assert formula.names == frozenset({"a", "b"})


def test_missing_value_is_formula_error() -> None:
    formula = compile_formula("a + b", NAMES)
    with pytest.raises(FormulaError, match="no value for trigger 'b'"):
        formula.evaluate({"a": 1.0})


@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
)
def test_arithmetic_matches_python(x: float, y: float, z: float) -> None:
    formula = compile_formula("a * b + a / c - max(a, b) + abs(b)", NAMES)
    got = formula.evaluate({"a": x, "b": y, "c": z})
    assert got == pytest.approx(x * y + x / z - max(x, y) + abs(y))
