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
constant power whose value would exceed 10^300 (``9**9**9**9`` is refused before anything
is computed).

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
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sympy
from sympy.printing.str import StrPrinter

from .errors import ExpressionError

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

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
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


class sigmoid(sympy.Function):  # noqa: N801 — printed as the function name users type
    """σ(u) = 1/(1 + e^(−u)), kept as one symbol so its derivative reads σ(u)(1 − σ(u)).

    >>> u = symbol("u")
    >>> sigmoid(u).diff(u)
    (1 - sigmoid(u))*sigmoid(u)
    >>> sigmoid(u).rewrite(sympy.exp)
    1/(1 + exp(-u))
    """

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_zero:
            return sympy.Rational(1, 2)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, arg: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-arg))

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        return (1 / (1 + sympy.exp(-self.args[0])))._eval_evalf(prec)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_positive(self) -> bool | None:
        return self.args[0].is_real


def _relu(u: sympy.Expr) -> sympy.Expr:
    return sympy.Max(u, 0)


def _heaviside(u: sympy.Expr) -> sympy.Expr:
    return sympy.Heaviside(u, 0)


# name → (number of arguments, builder)
FUNCTIONS: dict[str, tuple[int, Callable[..., sympy.Expr]]] = {
    "exp": (1, sympy.exp), "log": (1, sympy.log), "sqrt": (1, sympy.sqrt),
    "abs": (1, sympy.Abs), "sin": (1, sympy.sin), "cos": (1, sympy.cos),
    "tan": (1, sympy.tan), "sinh": (1, sympy.sinh), "cosh": (1, sympy.cosh),
    "tanh": (1, sympy.tanh), "erf": (1, sympy.erf), "sign": (1, sympy.sign),
    "heaviside": (1, _heaviside), "sigmoid": (1, sigmoid), "relu": (1, _relu),
    "max": (2, sympy.Max), "min": (2, sympy.Min),
}
_CONSTANTS = {"pi": sympy.pi, "e": sympy.E}
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


def symbol(name: str) -> sympy.Symbol:
    """The (real) SymPy symbol that :func:`parse_expression` uses for variable ``name``."""
    return sympy.Symbol(name, real=True)


def find_symbol(expr: sympy.Expr, name: str) -> sympy.Symbol:
    """The symbol called ``name`` in ``expr`` (whatever its assumptions: an expression built
    with a plain ``sympy.Symbol("x")`` works too), else :func:`symbol` of ``name``."""
    for candidate in expr.free_symbols:
        if getattr(candidate, "name", None) == name:
            return candidate
    return symbol(name)


def free_variables(expr: sympy.Expr) -> list[str]:
    """Sorted names of the variables in ``expr``.

    >>> free_variables(parse_expression("w*x + b"))
    ['b', 'w', 'x']
    """
    return sorted(s.name for s in expr.free_symbols)


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
    if name.startswith("_") or "__" in name or not _NAME.match(name):
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
        if name in _CONSTANTS:
            return _CONSTANTS[name]
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
                f"constant power {base}**{exponent} in {text!r} is too large"
                f" (more than 10^{MAX_MAGNITUDE})"
            )
    return sympy.Pow(base, exponent)


def _check_result(expr: sympy.Expr, text: str) -> None:
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ExpressionError(f"expression {text!r} is undefined (division by zero?)")
    if expr.has(sympy.I):
        raise ExpressionError(f"expression {text!r} is not real (e.g. sqrt or log of < 0)")
    for power in expr.atoms(sympy.Pow):
        if power.exp.is_Number and abs(power.exp) > MAX_EXPONENT:
            raise ExpressionError(
                f"expression {text!r} makes the exponent {power.exp} (at most {MAX_EXPONENT})"
            )


class _TextPrinter(StrPrinter):
    """``sstr`` restricted to the language of :func:`parse_expression`."""

    _reciprocal = {"sec": "cos", "csc": "sin", "cot": "tan", "sech": "cosh", "coth": "tanh"}

    def _print_Exp1(self, expr: sympy.Expr) -> str:
        return "e"

    def _print_Abs(self, expr: sympy.Expr) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _binary(self, name: str, args: Sequence[sympy.Expr]) -> str:
        first = self._print(args[0])
        if len(args) == 1:
            return first
        return f"{name}({first}, {self._binary(name, args[1:])})"

    def _print_Max(self, expr: sympy.Expr) -> str:
        return self._binary("max", expr.args)

    def _print_Min(self, expr: sympy.Expr) -> str:
        return self._binary("min", expr.args)

    def _print_Heaviside(self, expr: sympy.Expr) -> str:
        arg, at_zero = expr.args[0], expr.args[1] if len(expr.args) > 1 else sympy.S.Half
        inner = self._print(arg)
        if at_zero == 0:
            return f"heaviside({inner})"
        if at_zero == sympy.S.Half:
            return f"(1 + sign({inner}))/2"
        if at_zero == 1:
            return f"(1 - heaviside(-({inner})))"
        raise ExpressionError(f"cannot write Heaviside with value {at_zero} at 0 as text")

    def _print_Function(self, expr: sympy.Expr) -> str:
        name = expr.func.__name__
        if name in self._reciprocal:
            return f"(1/{self._reciprocal[name]}({self._print(expr.args[0])}))"
        if name not in FUNCTIONS:
            raise ExpressionError(f"cannot write {name}() as gradsight expression text")
        return f"{name}({', '.join(self._print(arg) for arg in expr.args)})"

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if not _NAME.match(expr.name) or expr.name in FUNCTIONS or expr.name in _CONSTANTS:
            raise ExpressionError(f"cannot write the symbol {expr.name!r} as expression text")
        return expr.name

    def emptyPrinter(self, expr: object) -> str:  # noqa: N802 — SymPy's hook name
        raise ExpressionError(f"cannot write {type(expr).__name__} as expression text")


for _unsupported in (
    "ImaginaryUnit", "ComplexInfinity", "Infinity", "NegativeInfinity", "NaN", "Derivative",
    "Subs", "Integral", "Piecewise", "DiracDelta", "Relational", "Equality", "Unequality",
    "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "Dummy", "Wild",
    "BooleanTrue", "BooleanFalse", "Lambda", "Tuple", "Order",
):
    setattr(_TextPrinter, f"_print_{_unsupported}", _TextPrinter.emptyPrinter)

for _name in ("exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "erf", "sign"):
    setattr(_TextPrinter, f"_print_{_name}", _TextPrinter._print_Function)


def to_text(expr: sympy.Expr | float) -> str:
    """Plain text of ``expr`` that :func:`parse_expression` reads back.

    >>> to_text(sympy.exp(-symbol("x")) / (1 + sympy.exp(-symbol("x")))**2)
    'exp(-x)/(1 + exp(-x))**2'
    >>> to_text(sympy.Max(symbol("z"), 0).diff(symbol("z")))
    '(1 + sign(z))/2'
    """
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        expr = sympy.Integer(expr) if isinstance(expr, int) else sympy.Float(expr)
    if not isinstance(expr, sympy.Basic):  # never sympify: a str would be evaluated
        raise ExpressionError(f"to_text needs a SymPy expression, got {type(expr).__name__}")
    return str(_TextPrinter().doprint(expr))


def _np_sigmoid(u: Any) -> Any:
    import numpy as np

    u = np.asarray(u)
    if np.iscomplexobj(u):  # complex-step differentiation: the plain formula is analytic
        return 1.0 / (1.0 + np.exp(-u))
    from .activations import sigmoid as stable_sigmoid

    return stable_sigmoid(u)


def _np_erf(u: Any) -> Any:
    from scipy.special import erf

    return erf(u)


def make_function(
    expr: sympy.Expr | str, variables: Sequence[str] | None = None
) -> Callable[..., Any]:
    """A NumPy function of ``expr``: ``f(*values)`` in the order of ``variables``.

    ``variables`` defaults to :func:`free_variables` (sorted names). The result has the
    broadcast shape of the inputs, also for a constant expression; complex inputs work
    for analytic expressions (complex-step differentiation). Only the SymPy object built
    by :func:`parse_expression` is turned into code (``lambdify``), never user text.

    >>> f = make_function("w*x + b", ["w", "x", "b"])
    >>> float(f(2.0, 3.0, 1.0))
    7.0
    """
    import numpy as np

    if isinstance(expr, str):
        expr = parse_expression(expr, variables)
    names = list(free_variables(expr) if variables is None else variables)
    missing = sorted(set(free_variables(expr)) - set(names))
    if missing:
        raise ExpressionError(
            f"expression {to_text(expr)!r} uses {', '.join(missing)}, which is not among"
            f" the variables {', '.join(names) or '(none)'}"
        )
    modules = [{"sigmoid": _np_sigmoid, "erf": _np_erf}, "numpy"]
    compiled = sympy.lambdify([find_symbol(expr, n) for n in names], expr, modules=modules)

    def function(*values: Any) -> Any:
        if len(values) != len(names):
            raise ExpressionError(
                f"function of {', '.join(names) or 'no variables'} called with"
                f" {len(values)} values"
            )
        arrays = [np.asarray(v) for v in values]
        result = np.asarray(compiled(*arrays))
        shape = np.broadcast_shapes(result.shape, *(a.shape for a in arrays))
        if result.shape != shape:
            result = np.broadcast_to(result, shape).copy()
        if result.dtype.kind not in "fc":
            result = result.astype(np.result_type(float, *arrays))
        return result

    function.__doc__ = f"f({', '.join(names)}) = {to_text(expr)}"
    return function
