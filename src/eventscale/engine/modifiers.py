"""``scalingModifiers`` formulas: a small, safe expression language (never ``eval``).

KEDA evaluates formulas with expr-lang; this module implements the subset that makes
sense for combining trigger values, with expr-lang's operator precedence:

=============================  ==========================================
``cond ? a : b``               ternary (lowest precedence, right-assoc)
``or`` ``||``                  logical or (short-circuit)
``and`` ``&&``                 logical and (short-circuit)
``==`` ``!=`` ``<`` ``<=``     comparisons, and membership ``x in [..]``,
``>`` ``>=`` ``in`` ``not in`` ``x not in [..]``
``+`` ``-``                    addition, subtraction
``*`` ``/`` ``%``              multiplication, division, remainder
``not`` ``!`` (unary)          logical not
``-`` ``+`` (unary)            sign
``**`` ``^``                   power (right-assoc)
``a ?? b``                     ``a`` unless it is ``nil`` (highest binary precedence)
=============================  ==========================================

Operands: numbers (``2``, ``0.5``, ``1e3``), ``true``, ``false``, ``nil``, trigger names,
parentheses, array literals (``[a, b, 2]``) and the functions ``min``, ``max`` (numbers,
or one array), ``abs``, ``ceil``, ``floor``, ``round``, ``float``, ``int`` (truncate),
``len``, ``sum``, ``mean`` and ``median`` (of an array), and expr-lang's array builtins with a predicate:
``count``, ``all``, ``any``, ``none``, ``one``, ``filter`` and ``map``, whose second
argument is a closure ``{# > 1}`` (the braces may be left out) in which ``#`` is the
current element: ``count([a, b], {# > 1}) > 1 ? 5 : 0``. A trigger whose value is
unknown (in fallback with behavior ``scalingModifiers``) is ``nil``; ``??`` routes
around it. Using ``nil`` or a boolean in arithmetic, dividing by zero, an overflow, a
result that is not a finite number, or a non-numeric result is a :class:`FormulaError`
at evaluation time; its message starts with the formula's path.

Bounds (docs/errors.md, "Limits"): a formula is at most :data:`MAX_FORMULA_CHARS`
characters, nests at most :data:`MAX_FORMULA_DEPTH` levels (parentheses, operators,
calls, closures), an array literal has at most :data:`MAX_ARRAY_ITEMS` elements and one
evaluation runs at most :data:`MAX_CLOSURE_CALLS` closure calls; beyond them, a
:class:`~eventscale.errors.ConfigError` at load time or a :class:`FormulaError`.

:func:`compile_formula` parses once and checks that every name is a known trigger, so a
bad formula is a :class:`~eventscale.errors.ConfigError` when the object is loaded, not
when it is polled. The compiled formula is a tree of closures; evaluation does no
parsing and no attribute lookups by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

import attrs

from eventscale.engine._formula import (
    ARRAY_FUNCS,
    CALLS,
    CLOSURE_FUNCS,
    ITEM,
    KNOWN_FUNCS,
    MAX_CLOSURE_CALLS,
    UNARY_FUNCS,
    Node,
    Scope,
    Value,
    binary,
    fn_array,
    fn_closure,
    fn_minmax,
    fn_unary,
    num,
    truth,
)
from eventscale.errors import ConfigError, FormulaError

# FormulaError lives in eventscale.errors; it stays importable from here (its old home).
__all__ = (
    "MAX_ARRAY_ITEMS",
    "MAX_CLOSURE_CALLS",
    "MAX_FORMULA_CHARS",
    "MAX_FORMULA_DEPTH",
    "CompiledFormula",
    "FormulaError",
    "Value",
    "compile_formula",
)

#: The longest formula, in characters.
MAX_FORMULA_CHARS: Final = 4096
#: The deepest nesting of a formula's expression tree.
MAX_FORMULA_DEPTH: Final = 64
#: The most elements of one array literal.
MAX_ARRAY_ITEMS: Final = 1000


_FORMULA_PATH: Final = "spec.advanced.scalingModifiers.formula"


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>\?\?|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^<>!?:(),\[\]{}\#])
    )""",
    re.VERBOSE,
)

_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false", "nil"})

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
    "in": (20, False),
    "not in": (20, False),
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


# ----------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, names: Collection[str]) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.names = names
        self.used: set[str] = set()
        self.level = 0  # how deep the descent is (parentheses, operands, calls)
        self.closures = 0  # how many closures the parser is inside of (``#`` is valid)
        self.depths: dict[int, int] = {}  # id(node) -> the depth of its tree

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, path=_FORMULA_PATH)

    def node(self, node: Node, *children: Node) -> Node:
        """``node``, with the depth of its tree checked against the limit."""
        depth = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_FORMULA_DEPTH:
            raise self.error(f"nested deeper than {MAX_FORMULA_DEPTH} levels")
        self.depths[id(node)] = depth
        return node

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at(self, value: str) -> bool:
        kind, text, _ = self.peek()
        return kind == "op" and text == value

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value or kind == "end":
            got = "end of formula" if kind == "end" else repr(text)
            raise self.error(f"expected {value!r} at {at}, got {got}")

    def parse(self) -> Node:
        node = self.ternary()
        kind, text, at = self.peek()
        if kind != "end":
            raise self.error(f"unexpected {text!r} at {at}")
        return node

    def descend(self) -> None:
        self.level += 1
        if self.level > MAX_FORMULA_DEPTH:
            raise self.error(f"nested deeper than {MAX_FORMULA_DEPTH} levels")

    def ternary(self) -> Node:
        cond = self.binary(0)
        if self.at("?"):
            self.take()
            self.descend()
            try:
                yes = self.ternary()
                self.expect(":")
                no = self.ternary()
            finally:
                self.level -= 1

            def choose(env: Scope) -> Value:
                return yes(env) if truth(cond(env), "?:") else no(env)

            return self.node(choose, cond, yes, no)
        return cond

    def binary(self, min_prec: int) -> Node:
        self.descend()
        try:
            left = self.unary()
            while True:
                kind, op, _ = self.peek()
                if kind == "op" and op == "not" and self.tokens[self.pos + 1][1] == "in":
                    self.take()
                    op = "not in"
                elif kind != "op" or op not in _BINARY:
                    return left
                prec, right_assoc = _BINARY[op]
                if prec < min_prec:
                    if op == "not in":
                        self.pos -= 1
                    return left
                self.take()
                right = self.binary(prec if right_assoc else prec + 1)
                left = self.node(binary(op, left, right), left, right)
        finally:
            self.level -= 1

    def unary(self) -> Node:
        kind, text, _ = self.peek()
        if kind == "op" and text in ("not", "!"):
            self.take()
            operand = self.binary(_UNARY_NOT_PREC)
            return self.node(lambda env: not truth(operand(env), "not"), operand)
        if kind == "op" and text in ("-", "+"):
            self.take()
            operand = self.binary(_UNARY_SIGN_PREC)
            if text == "-":
                return self.node(lambda env: -num(operand(env), "-"), operand)
            return self.node(lambda env: num(operand(env), "+"), operand)
        return self.primary()

    def primary(self) -> Node:
        kind, text, at = self.take()
        if kind == "num":
            number = float(text)
            if not math.isfinite(number):
                raise self.error(f"the number at {at} is too large")
            return self.node(lambda env: number)
        if kind == "kw":
            constant: Value = {"true": True, "false": False, "nil": None}[text]
            return self.node(lambda env: constant)
        if kind == "op" and text == "(":
            node = self.ternary()
            self.expect(")")
            return node
        if kind == "op" and text == "[":
            return self.array(at)
        if kind == "op" and text == "#":
            if not self.closures:
                raise self.error(f"'#' at {at} is only valid in a closure such as {{# > 1}}")
            return self.node(lambda env: env[ITEM])
        if kind == "name":
            if self.at("("):
                return self.call(text, at)
            if text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise self.error(f"unknown name {text!r} at {at} (trigger names: {known})")
            self.used.add(text)
            name = text
            return self.node(lambda env: env[name])
        got = "end of formula" if kind == "end" else repr(text)
        raise self.error(f"expected a value at {at}, got {got}")

    def array(self, at: int) -> Node:
        items = self.arguments("]")
        if len(items) > MAX_ARRAY_ITEMS:
            raise self.error(f"the array at {at} has more than {MAX_ARRAY_ITEMS} elements")
        return self.node(lambda env: tuple(item(env) for item in items), *items)

    def arguments(self, close: str) -> list[Node]:
        args: list[Node] = []
        if not self.at(close):
            while True:
                args.append(self.ternary())
                if self.at(","):
                    self.take()
                    continue
                break
        self.expect(close)
        return args

    def closure(self) -> Node:
        """A predicate: ``{...}``, or (as expr-lang allows) an expression without braces."""
        braced = self.at("{")
        if braced:
            self.take()
        self.closures += 1
        body = self.ternary()
        self.closures -= 1
        if braced:
            self.expect("}")
        return body

    def call(self, name: str, at: int) -> Node:
        self.expect("(")
        if name in CLOSURE_FUNCS:
            array = self.ternary()
            self.expect(",")
            body = self.closure()
            self.expect(")")
            return self.node(fn_closure(name, array, body), array, body)
        args = self.arguments(")")
        if name in ("min", "max"):
            if not args:
                raise self.error(f"{name}() at {at} needs at least one argument")
            return self.node(fn_minmax(min if name == "min" else max, name, args), *args)
        if name not in UNARY_FUNCS and name not in ARRAY_FUNCS:
            raise self.error(f"unknown function {name!r} at {at} (known: {KNOWN_FUNCS})")
        if len(args) != 1:
            raise self.error(f"{name}() at {at} takes exactly one argument, got {len(args)}")
        if name in ARRAY_FUNCS:
            return self.node(fn_array(name, args[0]), args[0])
        return self.node(fn_unary(UNARY_FUNCS[name], name, args[0]), args[0])


@attrs.frozen
class CompiledFormula:
    """A parsed formula. Call :meth:`evaluate` with a value (or ``None``) per trigger name."""

    text: str
    names: frozenset[str]
    _root: Node = attrs.field(repr=False, eq=False)

    def evaluate(self, values: Mapping[str, float | None]) -> float | None:
        """The formula's number, or ``None`` when it evaluates to ``nil``.

        :raises FormulaError: type errors, division by zero, an overflow, a result that
            is not a finite number, a boolean or array result, or a name missing from
            ``values``; the message starts with the formula's path
            (``spec.advanced.scalingModifiers.formula: ...``).
        """
        try:
            return self._run(values)
        except FormulaError as exc:
            raise FormulaError(f"{_FORMULA_PATH}: {exc}") from None

    def _run(self, values: Mapping[str, float | None]) -> float | None:
        scope: dict[str, Any] = dict(values)
        scope[CALLS] = [MAX_CLOSURE_CALLS]
        try:
            result = self._root(scope)
        except KeyError as exc:
            raise FormulaError(f"no value for trigger {exc.args[0]!r}") from None
        except (ArithmeticError, ValueError) as exc:  # a bound this module missed
            raise FormulaError(f"{type(exc).__name__}: {exc}") from None
        if result is None:
            return None
        if isinstance(result, bool):
            raise FormulaError("the formula must give a number, not a boolean")
        if isinstance(result, tuple):
            raise FormulaError("the formula must give a number, not an array")
        if not math.isfinite(result):
            raise FormulaError(f"the formula gave {result!r}")
        return float(result)


def compile_formula(text: str, names: Collection[str]) -> CompiledFormula:
    """Parse ``text`` with ``names`` as the only variables.

    A trial run with every name bound to 1 catches type errors such as ``a and 1``
    (KEDA does the same with -1); division by zero in the trial run is not an error.

    :raises ConfigError: syntax error, unknown name or function, a type error, or a
        formula beyond a bound of this module (the path is
        ``spec.advanced.scalingModifiers.formula``).
    """
    if not text or not text.strip():
        raise ConfigError("must not be empty", path=_FORMULA_PATH)
    if len(text) > MAX_FORMULA_CHARS:
        raise ConfigError(f"longer than {MAX_FORMULA_CHARS} characters", path=_FORMULA_PATH)
    parser = _Parser(text, frozenset(names))
    root = parser.parse()
    formula = CompiledFormula(text, frozenset(parser.used), root)
    try:
        formula._run(dict.fromkeys(names, 1.0))
    except FormulaError as exc:
        if "by zero" not in str(exc):
            raise ConfigError(f"formula {text!r} is not valid: {exc}", path=_FORMULA_PATH) from None
    return formula
