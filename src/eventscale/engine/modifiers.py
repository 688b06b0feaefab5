"""``scalingModifiers`` formulas: a small, safe expression language (never ``eval``).

KEDA evaluates formulas with expr-lang; this module implements the subset that makes
sense for combining trigger values, with expr-lang's operator precedence:

=============================  ==========================================
``cond ? a : b``               ternary (lowest precedence, right-assoc)
``or`` ``||``                  logical or (short-circuit)
``and`` ``&&``                 logical and (short-circuit)
``==`` ``!=`` ``<`` ``<=``     comparisons
``>`` ``>=``
``+`` ``-``                    addition, subtraction
``*`` ``/`` ``%``              multiplication, division, remainder
``not`` ``!`` (unary)          logical not
``-`` ``+`` (unary)            sign
``**`` ``^``                   power (right-assoc)
``a ?? b``                     ``a`` unless it is ``nil`` (highest binary precedence)
=============================  ==========================================

Operands: numbers (``2``, ``0.5``, ``1e3``), ``true``, ``false``, ``nil``, trigger names,
parentheses and the functions ``min``, ``max`` (one or more arguments), ``abs``,
``ceil``, ``floor``, ``round``, ``float`` and ``int`` (truncate). A trigger whose value is
unknown (in fallback with behavior ``scalingModifiers``) is ``nil``; ``??`` routes around
it. Using ``nil`` or a boolean in arithmetic, dividing by zero, or a non-numeric
result is a :class:`FormulaError` at evaluation time.

:func:`compile_formula` parses once and checks that every name is a known trigger, so a
bad formula is a :class:`~eventscale.errors.ConfigError` when the object is loaded, not
when it is polled. The compiled formula is a tree of closures; evaluation does no
parsing and no attribute lookups by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Final

import attrs

from eventscale.errors import ConfigError, FormulaError

# FormulaError lives in eventscale.errors; it stays importable from here (its old home).
__all__ = (
    "CompiledFormula",
    "FormulaError",
    "Value",
    "compile_formula",
)

Value = float | bool | None
Env = Mapping[str, float | None]
_Node = Callable[[Env], Value]

_FORMULA_PATH: Final = "spec.advanced.scalingModifiers.formula"


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>\?\?|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^<>!?:(),])
    )""",
    re.VERBOSE,
)

_KEYWORDS: Final = frozenset({"and", "or", "not", "true", "false", "nil"})

# binary operator -> (precedence, right associative)
_BINARY: Final[Mapping[str, tuple[int, bool]]] = {
    "or": (10, False),
    "||": (10, False),
    "and": (15, False),
    "&&": (15, False),
    "==": (20, False),
    "!=": (20, False),
    "<": (20, False),
    "<=": (20, False),
    ">": (20, False),
    ">=": (20, False),
    "+": (30, False),
    "-": (30, False),
    "*": (60, False),
    "/": (60, False),
    "%": (60, False),
    "**": (100, True),
    "^": (100, True),
    "??": (500, False),
}
_UNARY_NOT_PREC: Final = 50
_UNARY_SIGN_PREC: Final = 90


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    length = len(text)
    while pos < length:
        if text[pos].isspace():
            pos += 1
            continue
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ConfigError(f"unexpected character {text[pos]!r} at {pos}", path=_FORMULA_PATH)
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        start = match.start(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw" if value in ("true", "false", "nil") else "op"
        tokens.append((kind, value, start))
        pos = match.end()
    tokens.append(("end", "", length))
    return tokens


# ----------------------------------------------------------------------- runtime helpers


def _num(value: Value, what: str) -> float:
    if value is None:
        raise FormulaError(f"{what}: a value is nil (use ?? to give a default)")
    if isinstance(value, bool):
        raise FormulaError(f"{what}: expected a number, got a boolean")
    return value


def _truth(value: Value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise FormulaError(f"{what}: expected a boolean, got {value!r}")


def _arith(op: str, left: _Node, right: _Node) -> _Node:
    if op == "+":
        return lambda env: _num(left(env), "+") + _num(right(env), "+")
    if op == "-":
        return lambda env: _num(left(env), "-") - _num(right(env), "-")
    if op == "*":
        return lambda env: _num(left(env), "*") * _num(right(env), "*")
    if op == "/":

        def div(env: Env) -> Value:
            num = _num(left(env), "/")
            den = _num(right(env), "/")
            if den == 0:
                raise FormulaError("division by zero")
            return num / den

        return div
    if op == "%":

        def mod(env: Env) -> Value:
            num = _num(left(env), "%")
            den = _num(right(env), "%")
            if den == 0:
                raise FormulaError("remainder by zero")
            return math.fmod(num, den)

        return mod

    def power(env: Env) -> Value:
        try:
            result = _num(left(env), op) ** _num(right(env), op)
        except (OverflowError, ZeroDivisionError) as exc:
            raise FormulaError(f"{op}: {exc}") from None
        if isinstance(result, complex):
            raise FormulaError(f"{op}: result is not a real number")
        return float(result)

    return power


def _compare(op: str, left: _Node, right: _Node) -> _Node:
    if op == "==":
        return lambda env: left(env) == right(env)
    if op == "!=":
        return lambda env: left(env) != right(env)
    if op == "<":
        return lambda env: _num(left(env), op) < _num(right(env), op)
    if op == "<=":
        return lambda env: _num(left(env), op) <= _num(right(env), op)
    if op == ">":
        return lambda env: _num(left(env), op) > _num(right(env), op)
    return lambda env: _num(left(env), op) >= _num(right(env), op)


def _binary(op: str, left: _Node, right: _Node) -> _Node:
    if op in ("or", "||"):
        return lambda env: _truth(left(env), "or") or _truth(right(env), "or")
    if op in ("and", "&&"):
        return lambda env: _truth(left(env), "and") and _truth(right(env), "and")
    if op == "??":

        def coalesce(env: Env) -> Value:
            value = left(env)
            return right(env) if value is None else value

        return coalesce
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return _compare(op, left, right)
    return _arith(op, left, right)


def _fn_minmax(pick: Callable[..., float], name: str, args: list[_Node]) -> _Node:
    def call(env: Env) -> Value:
        return pick(_num(a(env), name) for a in args)

    return call


def _fn_unary(fn: Callable[[float], float], name: str, arg: _Node) -> _Node:
    def call(env: Env) -> Value:
        value = _num(arg(env), name)
        try:
            return float(fn(value))
        except (OverflowError, ValueError) as exc:
            raise FormulaError(f"{name}: {exc}") from None

    return call


def _round_half_away(value: float) -> float:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


_UNARY_FUNCS: Final[Mapping[str, Callable[[float], float]]] = {
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "round": _round_half_away,
    "float": float,
    "int": math.trunc,
}


# ----------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, names: Collection[str]) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.names = names
        self.used: set[str] = set()

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, path=_FORMULA_PATH)

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value or kind == "end":
            got = "end of formula" if kind == "end" else repr(text)
            raise self.error(f"expected {value!r} at {at}, got {got}")

    def parse(self) -> _Node:
        node = self.ternary()
        kind, text, at = self.peek()
        if kind != "end":
            raise self.error(f"unexpected {text!r} at {at}")
        return node

    def ternary(self) -> _Node:
        cond = self.binary(0)
        kind, text, _ = self.peek()
        if kind == "op" and text == "?":
            self.take()
            yes = self.ternary()
            self.expect(":")
            no = self.ternary()

            def choose(env: Env) -> Value:
                return yes(env) if _truth(cond(env), "?:") else no(env)

            return choose
        return cond

    def binary(self, min_prec: int) -> _Node:
        left = self.unary()
        while True:
            kind, op, _ = self.peek()
            if kind != "op" or op not in _BINARY:
                return left
            prec, right_assoc = _BINARY[op]
            if prec < min_prec:
                return left
            self.take()
            right = self.binary(prec if right_assoc else prec + 1)
            left = _binary(op, left, right)

    def unary(self) -> _Node:
        kind, text, _ = self.peek()
        if kind == "op" and text in ("not", "!"):
            self.take()
            operand = self.binary(_UNARY_NOT_PREC)
            return lambda env: not _truth(operand(env), "not")
        if kind == "op" and text in ("-", "+"):
            self.take()
            operand = self.binary(_UNARY_SIGN_PREC)
            if text == "-":
                return lambda env: -_num(operand(env), "-")
            return lambda env: _num(operand(env), "+")
        return self.primary()

    def primary(self) -> _Node:
        kind, text, at = self.take()
        if kind == "num":
            number = float(text)
            return lambda env: number
        if kind == "kw":
            constant: Value = {"true": True, "false": False, "nil": None}[text]
            return lambda env: constant
        if kind == "op" and text == "(":
            node = self.ternary()
            self.expect(")")
            return node
        if kind == "name":
            nxt_kind, nxt, _ = self.peek()
            if nxt_kind == "op" and nxt == "(":
                return self.call(text, at)
            if text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise self.error(f"unknown name {text!r} at {at} (trigger names: {known})")
            self.used.add(text)
            name = text
            return lambda env: env[name]
        got = "end of formula" if kind == "end" else repr(text)
        raise self.error(f"expected a value at {at}, got {got}")

    def call(self, name: str, at: int) -> _Node:
        self.expect("(")
        args: list[_Node] = []
        kind, text, _ = self.peek()
        if not (kind == "op" and text == ")"):
            while True:
                args.append(self.ternary())
                kind, text, _ = self.peek()
                if kind == "op" and text == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        if name in ("min", "max"):
            if not args:
                raise self.error(f"{name}() at {at} needs at least one argument")
            return _fn_minmax(min if name == "min" else max, name, args)
        fn = _UNARY_FUNCS.get(name)
        if fn is None:
            known = ", ".join(sorted((*_UNARY_FUNCS, "min", "max")))
            raise self.error(f"unknown function {name!r} at {at} (known: {known})")
        if len(args) != 1:
            raise self.error(f"{name}() at {at} takes exactly one argument, got {len(args)}")
        return _fn_unary(fn, name, args[0])


@attrs.frozen
class CompiledFormula:
    """A parsed formula. Call :meth:`evaluate` with a value (or ``None``) per trigger name."""

    text: str
    names: frozenset[str]
    _root: _Node = attrs.field(repr=False, eq=False)

    def evaluate(self, values: Env) -> float | None:
        """The formula's number, or ``None`` when it evaluates to ``nil``.

        :raises FormulaError: type errors, division by zero, a boolean result, or a
            name missing from ``values``.
        """
        try:
            result = self._root(values)
        except KeyError as exc:
            raise FormulaError(f"no value for trigger {exc.args[0]!r}") from None
        if result is None:
            return None
        if isinstance(result, bool):
            raise FormulaError("the formula must give a number, not a boolean")
        if math.isnan(result) or math.isinf(result):
            raise FormulaError(f"the formula gave {result!r}")
        return float(result)


def compile_formula(text: str, names: Collection[str]) -> CompiledFormula:
    """Parse ``text`` with ``names`` as the only variables.

    A trial run with every name bound to 1 catches type errors such as ``a and 1``
    (KEDA does the same with -1); division by zero in the trial run is not an error.

    :raises ConfigError: syntax error, unknown name or function, or a type error (the
        path is ``spec.advanced.scalingModifiers.formula``).
    """
    if not text or not text.strip():
        raise ConfigError("must not be empty", path=_FORMULA_PATH)
    parser = _Parser(text, frozenset(names))
    root = parser.parse()
    formula = CompiledFormula(text, frozenset(parser.used), root)
    try:
        formula.evaluate(dict.fromkeys(names, 1.0))
    except FormulaError as exc:
        if "by zero" not in str(exc):
            raise ConfigError(f"formula {text!r} is not valid: {exc}", path=_FORMULA_PATH) from None
    return formula
