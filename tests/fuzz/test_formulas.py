"""Fuzz the scalingModifiers formula language: ConfigError at load, FormulaError at run.

Formulas are random token soups (every operator, builtin, bracket and a few hostile
tokens) and random well-formed trees; values are any float, ``nil`` included. A
compiled formula must give a finite number, ``None`` or a FormulaError.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from eventscale.engine import FormulaError, compile_formula
from eventscale.errors import ConfigError

from ._budget import budget

NAMES = ("a", "b", "c")
TOKENS = [
    *NAMES,
    "d",
    "0",
    "1",
    "2.5",
    "1e308",
    "1e-308",
    "nil",
    "true",
    "false",
    *"+-*/%^<>!?:(),[]{}#",
    "**",
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "??",
    "and",
    "or",
    "not",
    "in",
    *(
        f"{fn}("
        for fn in [
            "min",
            "max",
            "abs",
            "ceil",
            "floor",
            "round",
            "float",
            "int",
            "len",
            "sum",
            "mean",
            "median",
            "count",
            "all",
            "any",
            "none",
            "one",
            "filter",
            "map",
        ]
    ),
    "__import__",
    "'x'",
    ".",
    "=",
]

PATH = "spec.advanced.scalingModifiers.formula"
values = st.none() | st.floats()
envs = st.fixed_dictionaries(dict.fromkeys(NAMES, values))


def _check(text: str, env: dict[str, float | None]) -> None:
    try:
        formula = compile_formula(text, NAMES)
    except ConfigError as exc:
        problem = None if exc.path == PATH else f"no path: {exc}"
    else:
        try:
            result = formula.evaluate(env)
        except FormulaError as exc:
            problem = None if str(exc).startswith(PATH + ": ") else f"no path: {exc}"
        else:
            problem = None if result is None or math.isfinite(result) else f"gave {result}"
    assert problem is None, (text, env, problem)


@budget(800)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=25), env=envs)
def test_token_soup(tokens: list[str], env: dict[str, float | None]) -> None:
    _check(" ".join(tokens), env)


def _tree(leaf: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = ["+", "-", "*", "/", "%", "**", "??", "==", "!=", "<", ">", "and", "or", "in"]
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(binary), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            st.lists(inner, max_size=4).map(lambda xs: f"[{', '.join(xs)}]"),
            st.tuples(
                st.sampled_from(["count", "all", "any", "none", "one", "filter", "map"]),
                inner,
                inner,
            ).map(lambda t: f"{t[0]}({t[1]}, {{{t[2]}}})"),
            st.tuples(
                st.sampled_from(
                    ["min", "max", "abs", "int", "len", "sum", "mean", "median", "round"]
                ),
                inner,
            ).map(lambda t: f"{t[0]}({t[1]})"),
            inner.map(lambda x: f"-{x}"),
            inner.map(lambda x: f"!{x}"),
        ),
        max_leaves=12,
    )


leaves = st.sampled_from([*NAMES, "#", "1", "0", "1e300", "nil", "true", "false", "2"])


@budget(800)
@given(text=_tree(leaves), env=envs)
def test_well_formed_trees(text: str, env: dict[str, float | None]) -> None:
    _check(text, env)


@budget(100)
@given(depth=st.integers(0, 400), op=st.sampled_from(["(", "-", "!", "[", "max(", "a ? "]))
def test_deep_nesting(depth: int, op: str) -> None:
    closing = {"(": ")", "[": "]", "max(": ")"}.get(op, "")
    tail = " : 1" if op == "a ? " else ""
    _check(op * depth + "a" + closing * depth + tail * depth, dict.fromkeys(NAMES, 1.0))
