"""The vocabulary of gradsight's expression language, shared by the parser and the printers.

The σ function (:class:`sigmoid`), the table of allowed functions (:data:`FUNCTIONS`), the
constants, what a variable name looks like, and the real SymPy symbols variables become.
:mod:`gradsight.calculus.expr` parses user text with these and re-exports the public names; the way
back out (text, NumPy functions) is :mod:`gradsight._exprout`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sympy

__all__ = [
    "CONSTANTS", "FUNCTIONS", "VARIABLE_NAME", "find_symbol", "free_variables", "sigmoid",
    "symbol",
]

VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


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
CONSTANTS = {"pi": sympy.pi, "e": sympy.E}


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

    >>> from gradsight.expr import parse_expression
    >>> free_variables(parse_expression("w*x + b"))
    ['b', 'w', 'x']
    """
    return sorted(s.name for s in expr.free_symbols)
