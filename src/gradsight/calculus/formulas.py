"""Activations written as SymPy formulas, and what symbolic and numeric differentiation share.

The formula of each activation in a variable (``activation_expression``), its derivative
written in the output a = f(z), the derivations of σ and tanh as written by hand (each
result parses back), and PyTorch's conventions at kinks (:func:`normalise`): relu′(0) = 0
(``heaviside(0) = 0``) and the derivative of a step is 0. :mod:`gradsight.calculus` (symbolic)
and :mod:`gradsight.calculus.numeric` (numeric) both build on these.
"""

from __future__ import annotations

import re

import sympy

from .. import activations
from ..errors import ExpressionError
from .expr import parse_expression

__all__ = [
    "SIGMOID_ROUTES", "TANH_ROUTES", "activation_expression", "activation_parts",
    "is_activation_text", "normalise", "variable_name",
]

_ACTIVATION_TEXT = re.compile(r"[a-z][a-z0-9_]*(:\S*)?\Z")
_MAX_NAME = 40

# ---- activations as formulas --------------------------------------------------------------
# In the input variable {v}; {p} is the parameter (leaky slope s, elu α). Derivatives from the
# output are in the variable a (None: silu and gelu are not monotonic, a does not fix z).
_FORMULAS = {
    "sigmoid": ("1/(1 + exp(-{v}))", "a*(1 - a)"),
    "tanh": ("tanh({v})", "1 - a**2"),
    "relu": ("max({v}, 0)", "heaviside(a)"),
    "leaky_relu": ("max({v}, 0) + {p}*min({v}, 0)", "heaviside(a) + {p}*(1 - heaviside(a))"),
    "elu": ("max({v}, 0) + {p}*(exp(min({v}, 0)) - 1)",
            "heaviside(a) + (a + {p})*(1 - heaviside(a))"),
    "softplus": ("log(1 + exp({v}))", "1 - exp(-a)"),
    "silu": ("{v}*sigmoid({v})", None),
    "gelu": ("{v}*(1 + erf({v}/sqrt(2)))/2", None),
    "linear": ("{v}", "1"),
}


def activation_parts(name: str, variable: str) -> tuple[str, sympy.Expr, sympy.Expr | None]:
    act = activations.get(name)
    _, _, parameter = act.name.partition(":")
    default = {"leaky_relu": "0.01", "elu": "1"}.get(act.base_name, "")
    values = {"v": variable, "p": parameter or default}
    formula, from_output = _FORMULAS[act.base_name]
    expr = parse_expression(formula.format(**values), [variable])
    output = None if from_output is None else parse_expression(from_output.format(**values))
    return act.name, expr, output


def activation_expression(name: str, variable: str = "z") -> sympy.Expr:
    """The formula of an activation as a SymPy expression in ``variable``.

    >>> from gradsight.expr import to_text
    >>> to_text(activation_expression("leaky_relu:0.2"))
    'max(0, z) + min(0, z)/5'
    """
    return activation_parts(name, variable_name(variable))[1]


def is_activation_text(text: str) -> bool:
    """``sigmoid``, ``leaky_relu:0.2`` — and any bare word of 3+ letters (``swish`` is then
    an unknown activation, not a variable); ``x`` or ``w1`` stay expressions, and so does
    anything else (``lambda: 1``, ``__import__``, very long text), which the expression
    parser then refuses with its own message.

    >>> [is_activation_text(t) for t in ("tanh", "elu:0.5", "swish", "w1", "lambda: 1")]
    [True, True, True, False, False]
    """
    key = text.strip().lower()
    if len(key) > _MAX_NAME or not _ACTIVATION_TEXT.match(key):
        return False
    base = key.partition(":")[0]
    return ":" in key or base in activations.names() or len(base) > 2


def variable_name(name: str) -> str:
    expr = parse_expression(name)
    if not isinstance(expr, sympy.Symbol):
        raise ExpressionError(f"a variable name must be a single name like x, got {name!r}")
    return expr.name


# ---- the derivation of σ and tanh, as written by hand (each result parses back) -----------
SIGMOID_ROUTES = {
    "Approach 1 (chain rule)": [
        ("definition", "1/(1 + exp(-{v}))", "σ({v}) = 1/(1 + e^(−{v}))"),
        ("rewrite as a power", "(1 + exp(-{v}))**(-1)", "σ({v}) = (1 + e^(−{v}))^(−1)"),
        ("chain rule", "-(1 + exp(-{v}))**(-2)*(-exp(-{v}))",
         "d/d{v} u^(−1) = −u^(−2)·du/d{v} with u = 1 + e^(−{v}), du/d{v} = −e^(−{v})"),
        ("simplify", "exp(-{v})/(1 + exp(-{v}))**2", "σ′({v}) = e^(−{v})/(1 + e^(−{v}))²"),
        ("split the fraction", "1/(1 + exp(-{v}))*(exp(-{v})/(1 + exp(-{v})))",
         "= 1/(1 + e^(−{v})) · e^(−{v})/(1 + e^(−{v}))"),
        ("add and subtract 1", "1/(1 + exp(-{v}))*((1 + exp(-{v}) - 1)/(1 + exp(-{v})))",
         "e^(−{v}) = (1 + e^(−{v})) − 1"),
        ("rewrite", "1/(1 + exp(-{v}))*(1 - 1/(1 + exp(-{v})))",
         "e^(−{v})/(1 + e^(−{v})) = 1 − 1/(1 + e^(−{v}))"),
        ("substitute σ", "sigmoid({v})*(1 - sigmoid({v}))", "σ′({v}) = σ({v})(1 − σ({v}))"),
    ],
    "Approach 2 (quotient rule)": [
        ("definition", "1/(1 + exp(-{v}))", "σ({v}) = 1/(1 + e^(−{v}))"),
        ("rewrite", "exp({v})/(exp({v}) + 1)", "multiply above and below by e^{v}"),
        ("quotient rule", "(exp({v})*(exp({v}) + 1) - exp({v})*exp({v}))/(exp({v}) + 1)**2",
         "(f/g)′ = (f′g − fg′)/g² with f = e^{v}, g = e^{v} + 1, f′ = g′ = e^{v}"),
        ("simplify", "exp({v})/(exp({v}) + 1)**2", "e^{v}(e^{v} + 1) − e^{v}·e^{v} = e^{v}"),
        ("split the fraction", "exp({v})/(exp({v}) + 1)*(1/(exp({v}) + 1))",
         "= e^{v}/(e^{v} + 1) · 1/(e^{v} + 1)"),
        ("rewrite", "exp({v})/(exp({v}) + 1)*(1 - exp({v})/(exp({v}) + 1))",
         "1/(e^{v} + 1) = 1 − e^{v}/(e^{v} + 1)"),
        ("substitute σ", "sigmoid({v})*(1 - sigmoid({v}))", "σ′({v}) = σ({v})(1 − σ({v}))"),
    ],
}
TANH_ROUTES = {
    "from the exponential definition": [
        ("definition", "(exp({v}) - exp(-{v}))/(exp({v}) + exp(-{v}))",
         "tanh({v}) = (e^{v} − e^(−{v}))/(e^{v} + e^(−{v}))"),
        ("quotient rule", "((exp({v}) + exp(-{v}))**2 - (exp({v}) - exp(-{v}))**2)"
         "/(exp({v}) + exp(-{v}))**2",
         "(f/g)′ = (f′g − fg′)/g² with f = e^{v} − e^(−{v}), g = e^{v} + e^(−{v}): f′ = g, g′ = f"),
        ("split the fraction", "1 - (exp({v}) - exp(-{v}))**2/(exp({v}) + exp(-{v}))**2",
         "(g² − f²)/g² = 1 − (f/g)²"),
        ("substitute tanh", "1 - tanh({v})**2", "tanh′({v}) = 1 − tanh²({v})"),
    ],
}


def normalise(e: sympy.Expr) -> sympy.Expr:
    """PyTorch's conventions at kinks, for the steps SymPy's ``diff`` makes: the derivative
    of a step is 0, and a kink takes the slope on its left, as torch does for relu, leaky_relu
    and elu. d max(u, 0)/du = H(u) becomes heaviside(u) (0 at 0: relu′(0) = 0); d min(u, 0)/du
    = H(−u) becomes 1 − heaviside(u) (1 at 0: leaky_relu′(0) = s, elu′(0) = α). Steps the
    user typed (``heaviside(u)``, already 0 at 0) are left alone.

    >>> from gradsight.expr import parse_expression, symbol, to_text
    >>> to_text(normalise(parse_expression("max(z, 0) + min(z, 0)/5").diff(symbol("z"))))
    '4*heaviside(z)/5 + 1/5'
    """
    e = e.replace(lambda n: isinstance(n, sympy.DiracDelta), lambda n: sympy.S.Zero)
    return e.replace(
        lambda n: isinstance(n, sympy.Heaviside) and n.args[1:] != (0,), _left_step
    )


def _left_step(step: sympy.Expr) -> sympy.Expr:
    """H(u) → [u > 0]; H(−u) → [u ≤ 0] = 1 − [u > 0]: 0 resp. 1 at u = 0."""
    u = step.args[0]
    if u.could_extract_minus_sign():
        return 1 - sympy.Heaviside(-u, 0)
    return sympy.Heaviside(u, 0)
