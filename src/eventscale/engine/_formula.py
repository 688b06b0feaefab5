"""The values and builtins of ``scalingModifiers`` formulas (see :mod:`eventscale.engine.modifiers`).

What a compiled formula is made of: the value kinds (number, boolean, ``nil``, array),
the operators with expr-lang's semantics (github.com/expr-lang/expr,
docs/language-definition.md), and the builtin functions. Every operation checks its
operands' kinds and that its result is finite; a failure is a :class:`FormulaError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from eventscale.errors import FormulaError

__all__ = (
    "ARRAY_FUNCS",
    "CALLS",
    "CLOSURE_FUNCS",
    "ITEM",
    "KNOWN_FUNCS",
    "MAX_CLOSURE_CALLS",
    "UNARY_FUNCS",
    "Node",
    "Scope",
    "Value",
    "binary",
    "fn_array",
    "fn_closure",
    "fn_minmax",
    "fn_unary",
    "finite",
    "num",
    "truth",
)

#: The most closure calls (``{...}`` over an element) in one evaluation.
MAX_CLOSURE_CALLS: Final = 100_000

Value = float | bool | None | tuple[Any, ...]
"""A formula value: a number, a boolean, ``nil`` (``None``) or an array (a tuple)."""
Scope = Mapping[str, Any]
"""An evaluation's names: trigger values, ``#`` (the closure's element) and the budget."""
Node = Callable[[Scope], Value]
"""A compiled piece of a formula."""

#: The scope key of the current element of a closure.
ITEM: Final = "#"
#: The scope key of the closure calls left (a one-element list).
CALLS: Final = "#calls"


def _kind(value: Value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, tuple):
        return "an array"
    return repr(value)


def num(value: Value, what: str) -> float:
    if value is None:
        raise FormulaError(f"{what}: a value is nil (use ?? to give a default)")
    if isinstance(value, bool):
        raise FormulaError(f"{what}: expected a number, got a boolean")
    if isinstance(value, tuple):
        raise FormulaError(f"{what}: expected a number, got an array")
    return value


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FormulaError(f"{what}: the result is not a finite number (overflow)")
    return value


def truth(value: Value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise FormulaError(f"{what}: expected a boolean, got {_kind(value)}")


def _array(value: Value, what: str) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    raise FormulaError(f"{what}: expected an array, got {_kind(value)}")


def _equal(left: Value, right: Value) -> bool:
    """expr-lang's ``==``: values of different kinds are never equal (``1 != true``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, tuple) or isinstance(right, tuple):
        if not (isinstance(left, tuple) and isinstance(right, tuple)) or len(left) != len(right):
            return False
        return all(_equal(a, b) for a, b in zip(left, right, strict=True))
    return left == right


def _arith(op: str, left: Node, right: Node) -> Node:
    if op == "+":
        return lambda env: finite(num(left(env), "+") + num(right(env), "+"), "+")
    if op == "-":
        return lambda env: finite(num(left(env), "-") - num(right(env), "-"), "-")
    if op == "*":
        return lambda env: finite(num(left(env), "*") * num(right(env), "*"), "*")
    if op == "/":

        def div(env: Scope) -> Value:
            top = num(left(env), "/")
            den = num(right(env), "/")
            if den == 0:
                raise FormulaError("division by zero")
            return finite(top / den, "/")

        return div
    if op == "%":

        def mod(env: Scope) -> Value:
            top = num(left(env), "%")
            den = num(right(env), "%")
            if den == 0:
                raise FormulaError("remainder by zero")
            return math.fmod(finite(top, "%"), den)  # never overflows

        return mod

    def power(env: Scope) -> Value:
        try:
            result = num(left(env), op) ** num(right(env), op)
        except OverflowError:
            raise FormulaError(f"{op}: the result is not a finite number (overflow)") from None
        except ZeroDivisionError as exc:
            raise FormulaError(f"{op}: {exc}") from None
        if isinstance(result, complex):
            raise FormulaError(f"{op}: result is not a real number")
        return finite(float(result), op)

    return power


def _compare(op: str, left: Node, right: Node) -> Node:
    if op == "==":
        return lambda env: _equal(left(env), right(env))
    if op == "!=":
        return lambda env: not _equal(left(env), right(env))
    if op in ("in", "not in"):
        negate = op == "not in"

        def member(env: Scope) -> Value:
            item = left(env)
            found = any(_equal(item, x) for x in _array(right(env), op))
            return found != negate

        return member
    if op == "<":
        return lambda env: num(left(env), op) < num(right(env), op)
    if op == "<=":
        return lambda env: num(left(env), op) <= num(right(env), op)
    if op == ">":
        return lambda env: num(left(env), op) > num(right(env), op)
    return lambda env: num(left(env), op) >= num(right(env), op)


def binary(op: str, left: Node, right: Node) -> Node:
    if op in ("or", "||"):
        return lambda env: truth(left(env), "or") or truth(right(env), "or")
    if op in ("and", "&&"):
        return lambda env: truth(left(env), "and") and truth(right(env), "and")
    if op == "??":

        def coalesce(env: Scope) -> Value:
            value = left(env)
            return right(env) if value is None else value

        return coalesce
    if op in ("==", "!=", "<", "<=", ">", ">=", "in", "not in"):
        return _compare(op, left, right)
    return _arith(op, left, right)


def _numbers(args: list[Node], env: Scope, name: str) -> list[float]:
    """The arguments as numbers; one array argument stands for its elements."""
    values = [a(env) for a in args]
    if len(values) == 1 and isinstance(values[0], tuple):
        values = list(values[0])
    return [num(v, name) for v in values]


def fn_minmax(pick: Callable[..., float], name: str, args: list[Node]) -> Node:
    def call(env: Scope) -> Value:
        numbers = _numbers(args, env, name)
        if not numbers:
            raise FormulaError(f"{name}: an empty array")
        return pick(numbers)

    return call


def fn_unary(fn: Callable[[float], float], name: str, arg: Node) -> Node:
    def call(env: Scope) -> Value:
        value = num(arg(env), name)
        try:
            return finite(float(fn(value)), name)
        except (OverflowError, ValueError) as exc:
            raise FormulaError(f"{name}: {exc}") from None

    return call


def fn_array(name: str, arg: Node) -> Node:
    if name == "len":
        return lambda env: float(len(_array(arg(env), name)))

    def call(env: Scope) -> Value:
        numbers = sorted(num(v, name) for v in _array(arg(env), name))
        if name == "sum":
            return finite(sum(numbers), name)
        if not numbers:
            raise FormulaError(f"{name}: an empty array")
        middle = len(numbers) // 2
        if name == "median" and len(numbers) % 2:
            return numbers[middle]
        # mean: each term is divided first, so a sum of large values cannot overflow
        pair = numbers[middle - 1 : middle + 1] if name == "median" else numbers
        return finite(sum(x / len(pair) for x in pair), name)

    return call


def _each(env: Scope, items: tuple[Any, ...], body: Node, name: str) -> list[Value]:
    """``body`` over every element (``#``), within the evaluation's closure-call budget."""
    budget: list[int] = env[CALLS]
    budget[0] -= len(items)
    if budget[0] < 0:
        raise FormulaError(f"{name}: more than {MAX_CLOSURE_CALLS} closure calls")
    scope = dict(env)
    out: list[Value] = []
    for item in items:
        scope[ITEM] = item
        out.append(body(scope))
    return out


def fn_closure(name: str, array: Node, body: Node) -> Node:
    def call(env: Scope) -> Value:
        items = _array(array(env), name)
        results = _each(env, items, body, name)
        if name == "map":
            return tuple(results)
        kept = [truth(r, name) for r in results]
        if name == "filter":
            return tuple(item for item, keep in zip(items, kept, strict=True) if keep)
        if name == "count":
            return float(sum(kept))
        if name == "all":
            return all(kept)
        if name == "any":
            return any(kept)
        if name == "none":
            return not any(kept)
        return sum(kept) == 1  # one

    return call


def _round_half_away(value: float) -> float:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


UNARY_FUNCS: Final[Mapping[str, Callable[[float], float]]] = {
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "round": _round_half_away,
    "float": float,
    "int": math.trunc,
}
ARRAY_FUNCS: Final = frozenset({"len", "sum", "mean", "median"})
CLOSURE_FUNCS: Final = frozenset({"count", "all", "any", "none", "one", "filter", "map"})
KNOWN_FUNCS: Final = ", ".join(sorted({*UNARY_FUNCS, *ARRAY_FUNCS, *CLOSURE_FUNCS, "min", "max"}))
