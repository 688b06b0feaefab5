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
``len`` and ``sum`` (of an array), and expr-lang's array builtins with a predicate:
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
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import attrs

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
#: The most closure calls (``{...}`` over an element) in one evaluation.
MAX_CLOSURE_CALLS: Final = 100_000

Value = float | bool | None | tuple[Any, ...]
"""A formula value: a number, a boolean, ``nil`` (``None``) or an array (a tuple)."""
# Inside an evaluation, the scope maps trigger names to values, "#" to the current
# element of a closure and "#calls" to the closure calls left (a one-element list).
_Scope = Mapping[str, Any]
_Node = Callable[[_Scope], Value]

_FORMULA_PATH: Final = "spec.advanced.scalingModifiers.formula"
_ITEM: Final = "#"
_CALLS: Final = "#calls"


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


# ----------------------------------------------------------------------- runtime helpers


def _kind(value: Value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, tuple):
        return "an array"
    return repr(value)


def _num(value: Value, what: str) -> float:
    if value is None:
        raise FormulaError(f"{what}: a value is nil (use ?? to give a default)")
    if isinstance(value, bool):
        raise FormulaError(f"{what}: expected a number, got a boolean")
    if isinstance(value, tuple):
        raise FormulaError(f"{what}: expected a number, got an array")
    return value


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FormulaError(f"{what}: the result is not a finite number (overflow)")
    return value


def _truth(value: Value, what: str) -> bool:
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


def _arith(op: str, left: _Node, right: _Node) -> _Node:
    if op == "+":
        return lambda env: _finite(_num(left(env), "+") + _num(right(env), "+"), "+")
    if op == "-":
        return lambda env: _finite(_num(left(env), "-") - _num(right(env), "-"), "-")
    if op == "*":
        return lambda env: _finite(_num(left(env), "*") * _num(right(env), "*"), "*")
    if op == "/":

        def div(env: _Scope) -> Value:
            num = _num(left(env), "/")
            den = _num(right(env), "/")
            if den == 0:
                raise FormulaError("division by zero")
            return _finite(num / den, "/")

        return div
    if op == "%":

        def mod(env: _Scope) -> Value:
            num = _num(left(env), "%")
            den = _num(right(env), "%")
            if den == 0:
                raise FormulaError("remainder by zero")
            return math.fmod(_finite(num, "%"), den)  # never overflows

        return mod

    def power(env: _Scope) -> Value:
        try:
            result = _num(left(env), op) ** _num(right(env), op)
        except OverflowError:
            raise FormulaError(f"{op}: the result is not a finite number (overflow)") from None
        except ZeroDivisionError as exc:
            raise FormulaError(f"{op}: {exc}") from None
        if isinstance(result, complex):
            raise FormulaError(f"{op}: result is not a real number")
        return _finite(float(result), op)

    return power


def _compare(op: str, left: _Node, right: _Node) -> _Node:
    if op == "==":
        return lambda env: _equal(left(env), right(env))
    if op == "!=":
        return lambda env: not _equal(left(env), right(env))
    if op in ("in", "not in"):
        negate = op == "not in"

        def member(env: _Scope) -> Value:
            item = left(env)
            found = any(_equal(item, x) for x in _array(right(env), op))
            return found != negate

        return member
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

        def coalesce(env: _Scope) -> Value:
            value = left(env)
            return right(env) if value is None else value

        return coalesce
    if op in ("==", "!=", "<", "<=", ">", ">=", "in", "not in"):
        return _compare(op, left, right)
    return _arith(op, left, right)


def _numbers(args: list[_Node], env: _Scope, name: str) -> list[float]:
    """The arguments as numbers; one array argument stands for its elements."""
    values = [a(env) for a in args]
    if len(values) == 1 and isinstance(values[0], tuple):
        values = list(values[0])
    return [_num(v, name) for v in values]


def _fn_minmax(pick: Callable[..., float], name: str, args: list[_Node]) -> _Node:
    def call(env: _Scope) -> Value:
        numbers = _numbers(args, env, name)
        if not numbers:
            raise FormulaError(f"{name}: an empty array")
        return pick(numbers)

    return call


def _fn_unary(fn: Callable[[float], float], name: str, arg: _Node) -> _Node:
    def call(env: _Scope) -> Value:
        value = _num(arg(env), name)
        try:
            return _finite(float(fn(value)), name)
        except (OverflowError, ValueError) as exc:
            raise FormulaError(f"{name}: {exc}") from None

    return call


def _fn_array(name: str, arg: _Node) -> _Node:
    if name == "len":
        return lambda env: float(len(_array(arg(env), name)))
    return lambda env: _finite(sum(_num(v, name) for v in _array(arg(env), name)), name)


def _each(env: _Scope, items: tuple[Any, ...], body: _Node, name: str) -> list[Value]:
    """``body`` over every element (``#``), within the evaluation's closure-call budget."""
    budget: list[int] = env[_CALLS]
    budget[0] -= len(items)
    if budget[0] < 0:
        raise FormulaError(f"{name}: more than {MAX_CLOSURE_CALLS} closure calls")
    scope = dict(env)
    out: list[Value] = []
    for item in items:
        scope[_ITEM] = item
        out.append(body(scope))
    return out


def _fn_closure(name: str, array: _Node, body: _Node) -> _Node:
    def call(env: _Scope) -> Value:
        items = _array(array(env), name)
        results = _each(env, items, body, name)
        if name == "map":
            return tuple(results)
        kept = [_truth(r, name) for r in results]
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


_UNARY_FUNCS: Final[Mapping[str, Callable[[float], float]]] = {
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "round": _round_half_away,
    "float": float,
    "int": math.trunc,
}
_ARRAY_FUNCS: Final = frozenset({"len", "sum"})
_CLOSURE_FUNCS: Final = frozenset({"count", "all", "any", "none", "one", "filter", "map"})
_KNOWN_FUNCS: Final = ", ".join(
    sorted({*_UNARY_FUNCS, *_ARRAY_FUNCS, *_CLOSURE_FUNCS, "min", "max"})
)


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

    def node(self, node: _Node, *children: _Node) -> _Node:
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

    def parse(self) -> _Node:
        node = self.ternary()
        kind, text, at = self.peek()
        if kind != "end":
            raise self.error(f"unexpected {text!r} at {at}")
        return node

    def descend(self) -> None:
        self.level += 1
        if self.level > MAX_FORMULA_DEPTH:
            raise self.error(f"nested deeper than {MAX_FORMULA_DEPTH} levels")

    def ternary(self) -> _Node:
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

            def choose(env: _Scope) -> Value:
                return yes(env) if _truth(cond(env), "?:") else no(env)

            return self.node(choose, cond, yes, no)
        return cond

    def binary(self, min_prec: int) -> _Node:
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
                left = self.node(_binary(op, left, right), left, right)
        finally:
            self.level -= 1

    def unary(self) -> _Node:
        kind, text, _ = self.peek()
        if kind == "op" and text in ("not", "!"):
            self.take()
            operand = self.binary(_UNARY_NOT_PREC)
            return self.node(lambda env: not _truth(operand(env), "not"), operand)
        if kind == "op" and text in ("-", "+"):
            self.take()
            operand = self.binary(_UNARY_SIGN_PREC)
            if text == "-":
                return self.node(lambda env: -_num(operand(env), "-"), operand)
            return self.node(lambda env: _num(operand(env), "+"), operand)
        return self.primary()

    def primary(self) -> _Node:
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
            return self.node(lambda env: env[_ITEM])
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

    def array(self, at: int) -> _Node:
        items = self.arguments("]")
        if len(items) > MAX_ARRAY_ITEMS:
            raise self.error(f"the array at {at} has more than {MAX_ARRAY_ITEMS} elements")
        return self.node(lambda env: tuple(item(env) for item in items), *items)

    def arguments(self, close: str) -> list[_Node]:
        args: list[_Node] = []
        if not self.at(close):
            while True:
                args.append(self.ternary())
                if self.at(","):
                    self.take()
                    continue
                break
        self.expect(close)
        return args

    def closure(self) -> _Node:
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

    def call(self, name: str, at: int) -> _Node:
        self.expect("(")
        if name in _CLOSURE_FUNCS:
            array = self.ternary()
            self.expect(",")
            body = self.closure()
            self.expect(")")
            return self.node(_fn_closure(name, array, body), array, body)
        args = self.arguments(")")
        if name in ("min", "max"):
            if not args:
                raise self.error(f"{name}() at {at} needs at least one argument")
            return self.node(_fn_minmax(min if name == "min" else max, name, args), *args)
        if name not in _UNARY_FUNCS and name not in _ARRAY_FUNCS:
            raise self.error(f"unknown function {name!r} at {at} (known: {_KNOWN_FUNCS})")
        if len(args) != 1:
            raise self.error(f"{name}() at {at} takes exactly one argument, got {len(args)}")
        if name in _ARRAY_FUNCS:
            return self.node(_fn_array(name, args[0]), args[0])
        return self.node(_fn_unary(_UNARY_FUNCS[name], name, args[0]), args[0])


@attrs.frozen
class CompiledFormula:
    """A parsed formula. Call :meth:`evaluate` with a value (or ``None``) per trigger name."""

    text: str
    names: frozenset[str]
    _root: _Node = attrs.field(repr=False, eq=False)

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
        scope[_CALLS] = [MAX_CLOSURE_CALLS]
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
