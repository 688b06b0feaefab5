"""expr-lang's arrays, closures and ``in`` in scalingModifiers formulas, and the bounds.

The examples are KEDA's (keda-docs: content/docs/2.16/concepts/scaling-deployments.md,
"Scaling Modifiers"; keda: the ScaledObject webhook tests); the semantics are
expr-lang's (github.com/expr-lang/expr, docs/language-definition.md).
"""

from __future__ import annotations

import pytest

from eventscale.engine import FormulaError, compile_formula
from eventscale.engine.modifiers import (
    MAX_ARRAY_ITEMS,
    MAX_CLOSURE_CALLS,
    MAX_FORMULA_CHARS,
    MAX_FORMULA_DEPTH,
)
from eventscale.errors import ConfigError

NAMES = ("trig_one", "trig_two", "trig_three")
PATH = "spec.advanced.scalingModifiers.formula"


def ev(text: str, **values: float | None) -> float | None:
    return compile_formula(text, NAMES).evaluate(values)


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        # KEDA's documented examples
        ("trig_one + trig_two", {"trig_one": 1, "trig_two": 2}, 3.0),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 3, "trig_two": 4}, 7.0),
        ("trig_one > 2 ? trig_one + trig_two : 1", {"trig_one": 2, "trig_two": 4}, 1.0),
        ("count([trig_one,trig_two],{#>1}) > 1 ? 5 : 0", {"trig_one": 2, "trig_two": 3}, 5.0),
        ("count([trig_one,trig_two],{#>1}) > 1 ? 5 : 0", {"trig_one": 2, "trig_two": 1}, 0.0),
        (
            "count([trig_one,trig_two,trig_three],{#>1}) > 1 ? 5 : 0",
            {"trig_one": 0, "trig_two": 3, "trig_three": 4},
            5.0,
        ),
        ("(trig_one + trig_two)/2", {"trig_one": 3, "trig_two": 5}, 4.0),
        ("trig_one < 2 ? trig_one+trig_two >= 2 ? 5 : 10 : 0", {"trig_one": 1, "trig_two": 1}, 5.0),
        (
            "trig_one < 2 ? trig_one+trig_two >= 2 ? 5 : 10 : 0",
            {"trig_one": 1, "trig_two": 0},
            10.0,
        ),
        ("trig_one < 2 ? trig_one+trig_two >= 2 ? 5 : 10 : 0", {"trig_one": 2, "trig_two": 0}, 0.0),
        ("trig_one ?? trig_two", {"trig_one": None, "trig_two": 7}, 7.0),
        # the array builtins
        ("all([trig_one, trig_two], {# > 1}) ? 1 : 0", {"trig_one": 2, "trig_two": 2}, 1.0),
        ("all([trig_one, trig_two], {# > 1}) ? 1 : 0", {"trig_one": 2, "trig_two": 1}, 0.0),
        ("any([trig_one, trig_two], {# > 1}) ? 1 : 0", {"trig_one": 0, "trig_two": 2}, 1.0),
        ("none([trig_one, trig_two], {# > 1}) ? 1 : 0", {"trig_one": 0, "trig_two": 1}, 1.0),
        ("one([trig_one, trig_two], {# > 1}) ? 1 : 0", {"trig_one": 3, "trig_two": 2}, 0.0),
        ("all([], {# > 1}) ? 1 : 0", {}, 1.0),
        ("any([], {# > 1}) ? 1 : 0", {}, 0.0),
        ("sum(filter([trig_one, trig_two, 9], {# < 5}))", {"trig_one": 2, "trig_two": 6}, 2.0),
        ("sum(map([trig_one, trig_two], {# * 10}))", {"trig_one": 2, "trig_two": 3}, 50.0),
        ("max(map([trig_one, trig_two], {# * 2}))", {"trig_one": 2, "trig_two": 3}, 6.0),
        ("min([trig_one, trig_two])", {"trig_one": 2, "trig_two": 3}, 2.0),
        ("mean([trig_one, trig_two, 6])", {"trig_one": 1, "trig_two": 2}, 3.0),
        ("median([trig_one, trig_two, 6])", {"trig_one": 9, "trig_two": 2}, 6.0),
        ("median([trig_one, trig_two, 6, 1])", {"trig_one": 9, "trig_two": 2}, 4.0),
        ("mean([trig_one, trig_one])", {"trig_one": 1.7e308}, 1.7e308),
        ("len(filter([1, 2, 3, 4], # % 2 == 0))", {}, 2.0),
        ("count([trig_one], # > 0)", {"trig_one": 1}, 1.0),
        # nested closures: # is the innermost element
        ("count(map([[1, 2], [3]], {len(#)}), {# > 1})", {}, 1.0),
        ("sum(map([1, 2], {sum(map([10, 20], {#}))}))", {}, 60.0),
        # in and not in
        ("trig_one in [1, 2, 3] ? 1 : 0", {"trig_one": 2}, 1.0),
        ("trig_one not in [1, 2, 3] ? 1 : 0", {"trig_one": 2}, 0.0),
        ("not (trig_one in [1, 2]) ? 1 : 0", {"trig_one": 5}, 1.0),
        ("true in [1, 2] ? 1 : 0", {}, 0.0),
        ("[1, 2] == [1, 2] ? 1 : 0", {}, 1.0),
        ("1 == true ? 1 : 0", {}, 0.0),
        ("trig_one + 1 in [3] ? 1 : 0", {"trig_one": 2}, 1.0),
    ],
)
def test_expr_semantics(text: str, values: dict[str, float | None], expected: float) -> None:
    assert ev(text, **dict.fromkeys(NAMES, 0.0) | values) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("# > 1", "only valid in a closure"),
        ("count(trig_one, {# > 1})", "expected an array"),
        ("count([trig_one], {#})", "expected a boolean"),
        ("map([trig_one], {#})", "not an array"),
        ("trig_one in 3 ? 1 : 0", "expected an array"),
        ("count([trig_one] {# > 1})", "expected ','"),
        ("count([trig_one], {# > 1)", "expected '}'"),
        ("sum(trig_one, trig_two)", "exactly one argument"),
        ("[trig_one", "expected ']'"),
        ("1e999", "too large"),
        ("mean([])", "an empty array"),
    ],
)
def test_compile_errors_of_the_array_language(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        compile_formula(text, NAMES)
    assert info.value.path == PATH


@pytest.mark.parametrize(
    "text",
    [
        "(" * 1000 + "trig_one" + ")" * 1000,
        "-" * 1000 + "trig_one",
        "!" * 1000 + "true ? 1 : 0",
        "+".join(["1"] * 1000),
        "**".join(["1"] * 1000),
        "[" * 1000 + "]" * 1000,
        "max(" * 300 + "1" + ")" * 300,
        "1?1:" * 1000 + "1",
    ],
    ids=["parens", "signs", "nots", "sum-chain", "power-chain", "arrays", "calls", "ternaries"],
)
def test_deep_formulas_are_a_config_error(text: str) -> None:
    assert len(text) <= MAX_FORMULA_CHARS
    with pytest.raises(ConfigError, match=f"nested deeper than {MAX_FORMULA_DEPTH} levels"):
        compile_formula(text, NAMES)


def test_a_long_flat_formula_within_the_depth_is_fine() -> None:
    text = " + ".join(["1"] * (MAX_FORMULA_DEPTH - 1))
    assert compile_formula(text, NAMES).evaluate({}) == MAX_FORMULA_DEPTH - 1


def test_formula_length_and_array_size_are_bounded() -> None:
    with pytest.raises(ConfigError, match=f"longer than {MAX_FORMULA_CHARS} characters"):
        compile_formula("1" + " " * MAX_FORMULA_CHARS, NAMES)
    items = ",".join(["1"] * (MAX_ARRAY_ITEMS + 1))
    with pytest.raises(ConfigError, match=f"more than {MAX_ARRAY_ITEMS} elements"):
        compile_formula(f"len([{items}])", NAMES)


def test_closure_calls_are_bounded_per_evaluation() -> None:
    items = ",".join(["1"] * MAX_ARRAY_ITEMS)
    # 1000 x 1000 x 1000 closure calls unbounded: the budget stops it early
    text = f"sum(map([{items}], {{sum(map([{items}], {{count([1], {{#}} ) }}))}}))"
    with pytest.raises(ConfigError, match=f"more than {MAX_CLOSURE_CALLS} closure calls"):
        compile_formula(text.replace("{#}", "{# > 0}"), NAMES)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("(trig_one * 1e300) % 7", {"trig_one": 1e10}),
        ("trig_one * trig_one", {"trig_one": 1e200}),
        ("trig_one + trig_one", {"trig_one": 1.7e308}),
        ("trig_one - trig_one * 2", {"trig_one": -1.7e308}),
        ("trig_one / 1e-300", {"trig_one": 1e300}),
        ("sum([trig_one, trig_one])", {"trig_one": 1.7e308}),
        ("abs(trig_one * 10)", {"trig_one": 1.7e308}),
        ("trig_one ** 2", {"trig_one": 1e200}),
    ],
)
def test_overflow_is_a_formula_error_with_the_path(text: str, values: dict[str, float]) -> None:
    formula = compile_formula(text, NAMES)
    with pytest.raises(FormulaError, match=f"^{PATH}: .*not a finite number"):
        formula.evaluate(dict.fromkeys(NAMES, 1.0) | values)


def test_runtime_errors_name_the_path() -> None:
    formula = compile_formula("trig_one / (trig_two - 1)", NAMES)
    with pytest.raises(FormulaError, match=f"^{PATH}: division by zero"):
        formula.evaluate({"trig_one": 1.0, "trig_two": 1.0})
