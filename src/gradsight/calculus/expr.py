"""Safe parsing of the expressions people type, and the way back to text.

User text never reaches ``eval``, ``exec`` or ``sympify``: :func:`parse_expression` reads it
with :mod:`ast` (``ast.parse(mode="eval")``), walks the tree against a whitelist and builds
the SymPy expression node by node. What is allowed:

- numbers (``2``, ``0.5``, ``1e-3``), variables (``x``, ``w1``, ``z_out``: a letter, then
  letters, digits or ``_``), the constants ``pi`` and ``e``;
- ``+ - * / **`` and parentheses; ``^`` means power too (``x^2`` is ``x**2``, ``-x^2`` is
  ``-(x**2)``, ``2^3^2`` is ``2**9``), never Python's bitwise xor;
- the functions exp, log (natural), sqrt, abs, sin, cos, tan, sinh, cosh, tanh, erf, sign,
  heaviside (0 at 0, like relu′), sigmoid (σ(u) = 1/(1+e^(−u))), relu (max(u, 0)), and
  max/min of two arguments.

Anything else — attributes, subscripts, strings, lambdas, comprehensions, keywords, other
operators — is refused with a one-line :class:`~gradsight.errors.ExpressionError`. So is
anything too large to handle quickly: more than 500 characters, parentheses nested deeper
than 30, a tree deeper than 30 levels of calls/powers or larger than 500 nodes, a number
literal with more than 310 digits, a constant exponent above 1000 in absolute value, or a
constant power whose value would exceed 10^300 or fall below 10^-300 (``9**9**9**9`` is
refused before anything is computed). Constants must be real: ``sqrt(-1)``, ``log(-2)`` and
``(-8)**(1/3)`` (SymPy's principal root is complex) are refused.

Variables are real SymPy symbols (so ``d|x|/dx = sign(x)``); :func:`symbol` makes the same
symbols. :func:`to_text` prints an expression in this same language, so text that gradsight
writes (JSON, reports) reads back with :func:`parse_expression`.

>>> parse_expression("x^2 - 4*x + 6")
x**2 - 4*x + 6
>>> to_text(parse_expression("sigmoid(2*x)").diff(symbol("x")))
'2*(1 - sigmoid(2*x))*sigmoid(2*x)'
>>> float(make_function("x**2 - 4*x + 6")(8.0))
38.0
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sympy

from ..errors import ExpressionError
from .printing import numpy_function, to_text
from .vocabulary import (
    CONSTANTS,
    FUNCTIONS,
    VARIABLE_NAME,
    find_symbol,
    free_variables,
    sigmoid,
    symbol,
)

__all__ = [
    "FUNCTIONS", "MAX_LENGTH", "parse_expression", "symbol", "find_symbol", "free_variables",
    "to_text",
    "make_function", "sigmoid",
]

MAX_LENGTH = 500
MAX_PARENTHESES = 30
MAX_DEPTH = 30
MAX_NODES = 500
MAX_DIGITS = 310
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 300  # decimal digits of a constant power

_ALLOWED_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ALLOWED_CHARS |= set(" \t\r\n+-*/^().,_")
_CHAR_HINTS = {
    "'": "strings are not allowed", '"': "strings are not allowed",
    "[": "brackets are not allowed (use parentheses)", "]": "brackets are not allowed",
    "{": "braces are not allowed", "}": "braces are not allowed",
    ":": "':' is not allowed (no lambdas or slices)",
    "=": "comparisons and assignments are not allowed",
    "<": "comparisons are not allowed", ">": "comparisons are not allowed",
    "\u2212": "use '-' instead of the Unicode minus", "\u00d7": "use '*' for multiplication",
    "\u00b7": "use '*' for multiplication", "\u03c3": "write sigmoid(u) instead of σ",
}
_ALLOWED_TEXT = (
    "numbers, variables, pi, e, + - * / ** ^, parentheses and " + ", ".join(FUNCTIONS)
)
_NODE_NAMES = {
    ast.Attribute: "attribute access (.name) is", ast.Subscript: "subscripts are",
    ast.Lambda: "lambda is", ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are", ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are", ast.Compare: "comparisons are",
    ast.BoolOp: "'and'/'or' are", ast.IfExp: "'if ... else' is",
    ast.Tuple: "tuples (a comma outside a function call) are", ast.List: "lists are",
    ast.Dict: "dicts are", ast.Set: "sets are", ast.NamedExpr: "assignments are",
    ast.Starred: "'*args' are", ast.JoinedStr: "strings are", ast.Await: "'await' is",
    ast.Yield: "'yield' is",
}
_BINARY = {ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow}
_OPERATOR_TEXT = {ast.FloorDiv: "//", ast.Mod: "%", ast.Not: "not", ast.Invert: "~"}


def parse_expression(text: str, variables: Iterable[str] | None = None) -> sympy.Expr:
    """Parse ``text`` into a SymPy expression, allowing only the whitelisted language.

    ``variables`` (optional) restricts the variable names that may appear.

    >>> to_text(parse_expression("2^x * e - x^2"))
    '2**x*e - x**2'
    >>> parse_expression("y + 1", variables=["x"])
    Traceback (most recent call last):
    gradsight.errors.ExpressionError: unknown variable 'y' in 'y + 1'; allowed variables: x
    """
    source = _precheck(text)
    try:
        tree = ast.parse(source.replace("^", "**"), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"malformed expression {text!r}: {error.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"expression {text!r} is nested too deeply") from None
    _check_tree(tree, text)
    allowed = None if variables is None else set(variables)
    builder = _Builder(text, allowed)
    try:
        expr = builder.build(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression {text!r} is nested too deeply") from None
    _check_result(expr, text)
    return expr


def make_function(
    expr: sympy.Expr | str, variables: Sequence[str] | None = None
) -> Callable[..., Any]:
    """A NumPy function of ``expr``: ``f(*values)`` in the order of ``variables``.

    Text is parsed first with :func:`parse_expression` (restricted to ``variables`` when
    given); the SymPy object, never the text, is compiled by
    :func:`~gradsight.calculus.printing.numpy_function`. ``variables`` defaults to
    :func:`free_variables` (sorted names). The result has the broadcast shape of the
    inputs, also for a constant expression; complex inputs work for analytic expressions
    (complex-step differentiation).

    >>> f = make_function("w*x + b", ["w", "x", "b"])
    >>> float(f(2.0, 3.0, 1.0))
    7.0
    """
    if isinstance(expr, str):
        expr = parse_expression(expr, variables)
    return numpy_function(expr, variables)


def _precheck(text: object) -> str:
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters; at most {MAX_LENGTH})"
        )
    if not text.strip():
        raise ExpressionError("empty expression; type a formula such as x**2 - 4*x + 6")
    for char in text:
        if char not in _ALLOWED_CHARS:
            hint = _CHAR_HINTS.get(char, f"allowed: {_ALLOWED_TEXT}")
            raise ExpressionError(f"character {char!r} is not allowed in {text!r}: {hint}")
    depth = deepest = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
        if depth < 0:
            raise ExpressionError(f"unbalanced parentheses in {text!r}")
    if deepest > MAX_PARENTHESES:
        raise ExpressionError(
            f"expression nests parentheses {deepest} deep; at most {MAX_PARENTHESES}"
        )
    return text.strip()


def _check_tree(tree: ast.Expression, text: str) -> None:
    """Refuse unknown node types, too many nodes and too deep a structure — iteratively,
    before anything is built. Chains of + − or * / and unary signs add no depth (SymPy
    flattens them); calls, powers and changes of operator do."""
    count = 0
    stack: list[tuple[ast.AST, int, type | None]] = [(tree.body, 0, None)]
    while stack:
        node, parent_depth, parent_kind = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"expression is too large (more than {MAX_NODES} parts)")
        kind = _kind(node, text)
        chained = kind is not None and kind is parent_kind
        depth = parent_depth + (0 if chained or isinstance(node, ast.UnaryOp) else 1)
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nests too deeply (more than {MAX_DEPTH} levels of calls/powers)"
            )
        stack.extend((child, depth, kind) for child in _children(node, text))


def _kind(node: ast.AST, text: str) -> type | None:
    """ast.Add for + −, ast.Mult for * /, None otherwise (powers never chain: x**x**x nests)."""
    if not isinstance(node, ast.BinOp):
        return None
    if type(node.op) not in _BINARY:
        shown = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
        raise ExpressionError(f"operator {shown!r} is not allowed in {text!r}; use + - * / **")
    if isinstance(node.op, (ast.Add, ast.Sub)):
        return ast.Add
    return ast.Mult if isinstance(node.op, (ast.Mult, ast.Div)) else None


def _children(node: ast.AST, text: str) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            shown = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
            raise ExpressionError(f"operator {shown!r} is not allowed in {text!r}")
        return [node.operand]
    if isinstance(node, ast.Call):
        _check_call(node, text)
        return list(node.args)
    if isinstance(node, ast.Name):
        _check_name(node.id, text)
        return []
    if isinstance(node, ast.Constant):
        _number(node.value, text)
        return []
    what = _NODE_NAMES.get(type(node), f"{type(node).__name__} is")
    raise ExpressionError(f"{what} not allowed in {text!r}; allowed: {_ALLOWED_TEXT}")


def _check_call(node: ast.Call, text: str) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(f"only named functions can be called in {text!r}")
    name = node.func.id
    if name not in FUNCTIONS:
        raise ExpressionError(f"unknown function {name!r}; allowed: {', '.join(FUNCTIONS)}")
    if node.keywords:
        raise ExpressionError(f"keyword arguments are not allowed in {text!r}")
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ExpressionError(f"'*args' is not allowed in {text!r}")
    arity = FUNCTIONS[name][0]
    if len(node.args) != arity:
        raise ExpressionError(
            f"{name}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)}"
        )


def _check_name(name: str, text: str) -> None:
    if name.startswith("_") or "__" in name or not VARIABLE_NAME.match(name):
        raise ExpressionError(
            f"name {name!r} is not allowed; variables are a letter followed by letters,"
            " digits or single underscores"
        )
    if name in FUNCTIONS:
        raise ExpressionError(f"{name!r} is a function: call it, as in {name}(x)")


def _number(value: object, text: str) -> sympy.Expr:
    if isinstance(value, bool) or value is None or value is Ellipsis:
        raise ExpressionError(f"{value!r} is not allowed in {text!r}; only numbers")
    if isinstance(value, (str, bytes)):
        raise ExpressionError(f"strings are not allowed in {text!r}")
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_DIGITS:
            raise ExpressionError(f"number literal too long (more than {MAX_DIGITS} digits)")
        return sympy.Integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExpressionError(f"number literal in {text!r} is too large (not finite)")
        if value == 0 or 1e-20 <= abs(value) <= 1e20:
            return sympy.Rational(repr(value))  # exact: 0.1 is 1/10, printed back as 1/10
        return sympy.Float(value)
    raise ExpressionError(f"{type(value).__name__} numbers are not allowed in {text!r}")


class _Builder:
    """Build the SymPy expression from an already checked tree."""

    def __init__(self, text: str, allowed: set[str] | None) -> None:
        self.text, self.allowed = text, allowed

    def build(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return _number(node.value, self.text)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)  # ensured by _check_call
            args = [self.build(arg) for arg in node.args]
            return FUNCTIONS[node.func.id][1](*args)
        assert isinstance(node, ast.BinOp)  # ensured by _check_tree
        left, right = self.build(node.left), self.build(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right
        return _power(left, right, self.text)

    def name(self, name: str) -> sympy.Expr:
        if name in CONSTANTS:
            return CONSTANTS[name]
        if self.allowed is not None and name not in self.allowed:
            allowed = ", ".join(sorted(self.allowed)) or "none"
            raise ExpressionError(
                f"unknown variable {name!r} in {self.text!r}; allowed variables: {allowed}"
            )
        return symbol(name)


def _log10_size(number: sympy.Expr) -> float:
    """Decimal digits of |number| (exact integers need no float conversion)."""
    if isinstance(number, sympy.Rational):
        p, q = abs(int(number.p)), int(number.q)
        return (math.log10(p) if p else -math.inf) - math.log10(q)
    value = abs(float(number))
    return math.log10(value) if value else -math.inf


def _power(base: sympy.Expr, exponent: sympy.Expr, text: str) -> sympy.Expr:
    """base**exponent, refused *before* SymPy evaluates a huge constant."""
    if exponent.is_Number and abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(
            f"exponent {exponent} in {text!r} is too large (at most {MAX_EXPONENT} in size)"
        )
    if base.is_Number and exponent.is_Number and base != 0:
        if abs(_log10_size(base) * float(exponent)) > MAX_MAGNITUDE:
            raise ExpressionError(
                f"constant power {_shown(base)}**{_shown(exponent)} in {_shown(text)} is too"
                f" large or too small (beyond 10^±{MAX_MAGNITUDE})"
            )
    return sympy.Pow(base, exponent)


def _shown(value: sympy.Expr | str) -> str:
    """A number (or text) short enough for a one-line message: 10**300 shows as 1.000e+300."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    text = str(value)
    if len(text) > 24:
        text = str(sympy.Float(value, 4))
    return f"({text})" if value.is_negative or not value.is_Integer else text


def _check_result(expr: sympy.Expr, text: str) -> None:
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ExpressionError(f"expression {text!r} is undefined (division by zero?)")
    if expr.has(sympy.I) or any(
        node.is_extended_real is False
        for node in expr.atoms(sympy.Pow, sympy.Function) if not node.free_symbols
    ):
        raise ExpressionError(
            f"expression {text!r} is not real (e.g. sqrt, log or a fractional power of < 0)"
        )
    for power in expr.atoms(sympy.Pow):
        if power.exp.is_Number and abs(power.exp) > MAX_EXPONENT:
            raise ExpressionError(
                f"expression {text!r} makes the exponent {power.exp} (at most {MAX_EXPONENT})"
            )

