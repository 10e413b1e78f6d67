"""From a parsed expression back out: to text (:func:`to_text`) and to NumPy functions
(:func:`numpy_function`).

:func:`to_text` prints an expression in the language of
:func:`gradsight.calculus.expr.parse_expression`, so text that gradsight writes (JSON, reports)
reads back; :func:`numpy_function` compiles the SymPy object (never user text) into a
NumPy function. Nothing here parses text: :mod:`gradsight.calculus.expr` re-exports :func:`to_text`,
and its ``make_function`` parses text first, then calls :func:`numpy_function`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy
from sympy.printing.str import StrPrinter

from ..activations import sigmoid as stable_sigmoid
from ..errors import ExpressionError
from .vocabulary import CONSTANTS, FUNCTIONS, VARIABLE_NAME, find_symbol, free_variables

__all__ = ["numpy_function", "to_text"]


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
        if not VARIABLE_NAME.match(expr.name) or expr.name in FUNCTIONS or expr.name in CONSTANTS:
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

    >>> from gradsight.expr import symbol
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
    u = np.asarray(u)
    if np.iscomplexobj(u):  # complex-step differentiation: the plain formula is analytic
        return 1.0 / (1.0 + np.exp(-u))
    return stable_sigmoid(u)


def _np_erf(u: Any) -> Any:
    from scipy.special import erf  # late: SciPy is loaded only for an expression with erf

    return erf(u)


def numpy_function(
    expr: sympy.Expr, variables: Sequence[str] | None = None
) -> Callable[..., Any]:
    """A NumPy function of the parsed ``expr``: ``f(*values)`` in the order of ``variables``.

    ``variables`` defaults to :func:`free_variables` (sorted names). The result has the
    broadcast shape of the inputs, also for a constant expression; complex inputs work
    for analytic expressions (complex-step differentiation). Only a SymPy object (built by
    :func:`parse_expression`) is turned into code (``lambdify``), never user text.

    >>> from gradsight.expr import symbol
    >>> f = numpy_function(symbol("w") * symbol("x") + symbol("b"), ["w", "x", "b"])
    >>> float(f(2.0, 3.0, 1.0))
    7.0
    """
    if not isinstance(expr, sympy.Basic):  # never sympify: a str would be evaluated
        raise ExpressionError(f"numpy_function needs a SymPy expression, got "
                              f"{type(expr).__name__}")
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
