"""Derivatives three ways: symbolic with the steps shown, numeric, and a study of step sizes.

:func:`derive` differentiates an expression (text or SymPy) or an activation name and
records which rule applies at each node — sum, product, quotient, chain, power rule... —
with every intermediate result as plain text that :func:`gradsight.expr.parse_expression`
reads back. For the sigmoid it shows both routes of seed 000, "Approach 1" (write
σ = (1+e^(−x))^(−1), chain rule) and "Approach 2" (σ = e^x/(1+e^x), quotient rule), each
ending in σ′ = σ(1−σ); for tanh it ends in 1 − tanh². At kinks the conventions follow
PyTorch: relu′(0) = 0 (``heaviside(0) = 0``), and the derivative of a step is taken as 0.

:func:`numeric_derivative` estimates f′(x) by forward, backward, central or complex-step
differences; :func:`step_study` shows why the step h matters (seed 002 uses a forward
difference with h = 1e-13, whose round-off error is ~1e-3).

>>> to_text(derive("sigmoid").simplified)
'(1 - sigmoid(z))*sigmoid(z)'
>>> round(numeric_derivative("x**2 - 4*x + 6", 8.0), 6)
12.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from . import activations
from .errors import ExpressionError, InvalidValueError, UnknownNameError, require_finite
from .expr import (
    find_symbol,
    free_variables,
    make_function,
    parse_expression,
    sigmoid,
    symbol,
    to_text,
)

__all__ = [
    "METHODS", "Step", "Derivation", "StudyRow", "StepStudy", "derive", "numeric_derivative",
    "recommended_step", "step_study", "derivative_function", "gradient_function",
    "activation_expression", "activation_table",
]

METHODS = ("forward", "backward", "central", "complex")
EPS = float(np.finfo(np.float64).eps)
DEFAULT_STEPS = tuple(10.0**-k for k in range(1, 16))
COMPLEX_STEP = 1e-20
_NOT_ANALYTIC = (sympy.Max, sympy.Min, sympy.Abs, sympy.Heaviside, sympy.sign)

# ---- activations as formulas --------------------------------------------------------------
# In the input variable {v}; {p} is the parameter (leaky slope s, elu α). Derivatives from the
# output are in the variable a (None: silu and gelu are not monotonic, a does not fix z).
_FORMULAS = {
    "sigmoid": ("1/(1 + exp(-{v}))", "a*(1 - a)"),
    "tanh": ("tanh({v})", "1 - a**2"),
    "relu": ("max({v}, 0)", "heaviside(a)"),
    "leaky_relu": ("max({v}, 0) + {p}*min({v}, 0)", "heaviside(a) + {p}*heaviside(-a)"),
    "elu": ("max({v}, 0) + {p}*(exp(min({v}, 0)) - 1)", "heaviside(a) + (a + {p})*heaviside(-a)"),
    "softplus": ("log(1 + exp({v}))", "1 - exp(-a)"),
    "silu": ("{v}*sigmoid({v})", None),
    "gelu": ("{v}*(1 + erf({v}/sqrt(2)))/2", None),
    "linear": ("{v}", "1"),
}


def _activation_parts(name: str, variable: str) -> tuple[str, sympy.Expr, sympy.Expr | None]:
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

    >>> to_text(activation_expression("leaky_relu:0.2"))
    'max(0, z) + min(0, z)/5'
    """
    return _activation_parts(name, _variable_name(variable))[1]


def _is_activation_text(text: str) -> bool:
    """``sigmoid``, ``leaky_relu:0.2`` — and any bare word of 3+ letters (``swish`` is then
    an unknown activation, not a variable); ``x`` or ``w1`` stay expressions."""
    key = text.strip().lower()
    base = key.partition(":")[0]
    return ":" in key or base in activations.names() or (base.isidentifier() and len(base) > 2)


def _variable_name(name: str) -> str:
    expr = parse_expression(name)
    if not isinstance(expr, sympy.Symbol):
        raise ExpressionError(f"a variable name must be a single name like x, got {name!r}")
    return expr.name


# ---- the derivation of σ and tanh, as written by hand (each result parses back) -----------
_SIGMOID_ROUTES = {
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
_TANH_ROUTES = {
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


@dataclass(frozen=True)
class Step:
    """One step of a derivation: the ``rule`` used, the ``result`` as parseable text, a
    human ``detail`` (the equation) and the ``route`` it belongs to ("" for the only one)."""

    rule: str
    result: str
    detail: str = ""
    route: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "result": self.result, "detail": self.detail,
                "route": self.route}


@dataclass
class Derivation:
    """d(expression)/d(wrt): ``derivative`` as SymPy gives it, ``simplified`` (the σ(1−σ) or
    1 − tanh² form when recognised) and the ``steps``. For an activation ``name``,
    ``derivative_from_output`` is f′ written in the output a = f(z) (None for silu, gelu)."""

    expression: sympy.Expr
    wrt: str
    derivative: sympy.Expr
    simplified: sympy.Expr
    steps: list[Step] = field(default_factory=list)
    derivative_from_output: sympy.Expr | None = None
    name: str | None = None

    def routes(self) -> dict[str, list[Step]]:
        """The steps grouped by route, in order."""
        grouped: dict[str, list[Step]] = {}
        for step in self.steps:
            grouped.setdefault(step.route, []).append(step)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        output = self.derivative_from_output
        return {
            "expression": to_text(self.expression), "wrt": self.wrt,
            "derivative": to_text(self.derivative), "simplified": to_text(self.simplified),
            "derivative_from_output": None if output is None else to_text(output),
            "name": self.name, "steps": [step.to_dict() for step in self.steps],
        }

    def _repr_html_(self) -> str:
        """The steps as a table (one block per route), then the derivative, its σ(1−σ) or
        1 − tanh² form when recognised and, for an activation, f′ written in the output a."""
        from html import escape

        def code(expr: sympy.Expr, role: str) -> str:
            return f'<code class="{role}">{escape(to_text(expr))}</code>'

        rows = []
        for route, steps in self.routes().items():
            if route:
                rows.append(f'<tr><th colspan="4">{escape(route)}</th></tr>')
            rows += [f'<tr class="step"><td>{i}</td><td>{escape(step.rule)}</td>'
                     f"<td><code>{escape(step.result)}</code></td><td>{escape(step.detail)}"
                     "</td></tr>" for i, step in enumerate(steps, 1)]
        v = escape(self.wrt)
        title = (f"d/d{v} {escape(self.name)}({v}) = " if self.name else "") + \
            f"d/d{v} [{escape(to_text(self.expression))}]"
        form = ("σ(1 − σ) form" if self.simplified.has(sigmoid)
                else "1 − tanh² form" if self.simplified.has(sympy.tanh) else "simplified")
        lines = [f"<p>derivative d/d{v}: {code(self.derivative, 'derivative')}</p>",
                 f"<p>{form}: {code(self.simplified, 'simplified')}</p>"]
        if self.derivative_from_output is not None:
            lines.append(f"<p>from the output a = f({v}): f′ = "
                         f"{code(self.derivative_from_output, 'from-output')}</p>")
        count = f"{len(self.steps)} step{'' if len(self.steps) == 1 else 's'}"
        return (f"<div><p><b>{title}</b></p><table><caption>{count}</caption>"
                "<tr><th>#</th><th>rule</th><th>result</th><th>step</th></tr>"
                f"{''.join(rows)}</table>{''.join(lines)}</div>")


def derive(expr_or_text: str | sympy.Expr, wrt: str | None = None) -> Derivation:
    """Differentiate an expression or an activation name, recording the rule at each step.

    A bare word of three or more letters is an activation name (``"sigmoid"``,
    ``"leaky_relu:0.2"``; ``"swish"`` is an unknown activation), written in the variable
    ``wrt`` (default ``z``). Otherwise ``wrt`` may be omitted when the expression has one
    variable; a ``wrt`` that is not in the expression is an error. The final step and
    ``simplified`` always equal ``derivative`` (the tests check it against SymPy's diff).

    >>> d = derive("x**2 - 4*x + 6")
    >>> to_text(d.derivative), [s.rule for s in d.steps]
    ('2*x - 4', ['power rule', 'constant multiple rule', 'constant', 'sum rule'])
    """
    if isinstance(expr_or_text, str) and _is_activation_text(expr_or_text):
        return _derive_activation(expr_or_text, _variable_name(wrt or "z"))
    expr = expr_or_text if isinstance(expr_or_text, sympy.Expr) else parse_expression(
        expr_or_text)
    variable = _choose_variable(expr, wrt)
    recorder = _Recorder(variable)
    built = recorder.derive(expr)
    if not recorder.steps:  # the expression is the variable itself
        recorder.add("variable", expr, built)
    derivative = _normalise(sympy.diff(expr, variable))
    recognised = _recognise(expr, variable)
    simplified = recognised or _simplify(derivative, built)
    if to_text(simplified) != recorder.steps[-1].result:
        rule = "simplify"
        if recognised is not None:
            rule = "recognise σ(1−σ)" if recognised.has(sigmoid) else "recognise 1 − tanh²"
        recorder.steps.append(Step(rule, to_text(simplified), f"= {to_text(simplified)}"))
    return Derivation(expr, variable.name, derivative, simplified, recorder.steps)


def _choose_variable(expr: sympy.Expr, wrt: str | None) -> sympy.Symbol:
    names = free_variables(expr)
    if wrt is None:
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise ExpressionError(f"choose the variable to differentiate by (variables: {found})")
        return find_symbol(expr, names[0])
    if _variable_name(wrt) not in names:
        raise ExpressionError(
            f"variable {wrt!r} is not in {to_text(expr)!r}; variables: {', '.join(names) or 'none'}"
        )
    return find_symbol(expr, wrt)


def _derive_activation(text: str, variable: str) -> Derivation:
    name, expr, from_output = _activation_parts(text, variable)
    v = symbol(variable)
    derivative = _normalise(sympy.diff(expr, v))
    routes = {"sigmoid": _SIGMOID_ROUTES, "tanh": _TANH_ROUTES}.get(name)
    if routes is None:
        result = derive(expr, variable)
        steps, simplified = result.steps, result.simplified
    else:
        steps = [Step(rule, result.format(v=variable), detail.format(v=variable), route)
                 for route, rows in routes.items() for rule, result, detail in rows]
        simplified = parse_expression(steps[-1].result)
    return Derivation(expr, variable, derivative, simplified, steps, from_output, name)


# ---- the recursive differentiator -----------------------------------------------------------
class _Recorder:
    """Differentiate node by node, recording the rule used at each node (children first)."""

    def __init__(self, variable: sympy.Symbol) -> None:
        self.v = variable
        self.steps: list[Step] = []

    def add(self, rule: str, expr: sympy.Expr, result: sympy.Expr) -> sympy.Expr:
        text = to_text(result)
        self.steps.append(Step(rule, text, f"d/d{self.v} [{to_text(expr)}] = {text}"))
        return result

    def derive(self, e: sympy.Expr) -> sympy.Expr:
        v = self.v
        if not e.has(v):
            return self.add("constant", e, sympy.S.Zero)
        if e == v:
            return sympy.S.One
        if e.is_Add:
            terms = [self.derive(t) for t in e.as_ordered_terms()]
            return self.add("sum rule", e, sympy.Add(*terms))
        if e.is_Mul:
            return self._product(e)
        if e.is_Pow:
            base, exponent = e.args
            return self._power(base, exponent, e)
        if isinstance(e, sympy.Function) and len(e.args) == 1:
            (u,) = e.args
            t = sympy.Dummy("t", real=True)
            outer = _normalise(sympy.diff(e.func(t), t).subs(t, u))
            rule = e.func.__name__.lower() if u == v else "chain rule"
            return self.add(rule, e, outer * self.derive(u))
        name = "relu" if isinstance(e, sympy.Max) and 0 in e.args else e.func.__name__.lower()
        return self.add(name, e, _normalise(sympy.diff(e, v)))

    def _product(self, e: sympy.Expr) -> sympy.Expr:
        constant, rest = e.as_independent(self.v, as_Add=False)
        if constant != 1:
            return self.add("constant multiple rule", e, constant * self.derive(rest))
        below = [f.base ** -f.exp for f in e.args if f.is_Pow and f.exp.is_negative]
        if below and any(f.has(self.v) for f in below):
            den = sympy.Mul(*below)
            num = sympy.Mul(*[f for f in e.args if not (f.is_Pow and f.exp.is_negative)])
            d_num, d_den = self.derive(num), self.derive(den)
            return self.add("quotient rule", e, (d_num * den - num * d_den) / den**2)
        parts = [self.derive(f) for f in e.args]
        terms = [parts[i] * sympy.Mul(*e.args[:i], *e.args[i + 1:]) for i in range(len(parts))]
        return self.add("product rule", e, sympy.Add(*terms))

    def _power(self, base: sympy.Expr, exponent: sympy.Expr, e: sympy.Expr) -> sympy.Expr:
        v = self.v
        if not exponent.has(v):
            rule = "power rule" if base == v else "chain rule"
            return self.add(rule, e, exponent * base ** (exponent - 1) * self.derive(base))
        if not base.has(v):
            rule = "exponential rule" if exponent == v else "chain rule"
            return self.add(rule, e, e * sympy.log(base) * self.derive(exponent))
        d_base, d_exponent = self.derive(base), self.derive(exponent)
        result = e * (d_exponent * sympy.log(base) + exponent * d_base / base)
        return self.add("logarithmic differentiation", e, result)


def _normalise(e: sympy.Expr) -> sympy.Expr:
    """PyTorch's conventions at kinks: heaviside(0) = 0, and steps have derivative 0."""
    e = e.replace(lambda n: isinstance(n, sympy.DiracDelta), lambda n: sympy.S.Zero)
    return e.replace(
        lambda n: isinstance(n, sympy.Heaviside) and n.args[1:] != (0,),
        lambda n: sympy.Heaviside(n.args[0], 0),
    )


def _cheap_to_simplify(e: sympy.Expr) -> bool:
    """``simplify`` expands powers: (x+1)**100*(x-1)**100 takes seconds, 1000 takes minutes."""
    exponents = [p.exp for p in e.atoms(sympy.Pow) if p.exp.is_Number]
    return sympy.count_ops(e) <= 40 and all(abs(n) <= 6 for n in exponents)


def _simplify(derivative: sympy.Expr, built: sympy.Expr) -> sympy.Expr:
    """The shortest text among the rule-by-rule result, SymPy's derivative, its common
    factors pulled out and ``simplify`` (skipped on large expressions: it can be slow)."""
    candidates = [built, derivative, sympy.factor_terms(derivative)]
    if _cheap_to_simplify(derivative):
        candidates.append(sympy.simplify(derivative))
    best, best_length = derivative, math.inf
    for candidate in candidates:
        try:
            length = len(to_text(candidate))
        except ExpressionError:  # e.g. a Piecewise, which has no text form
            continue
        if length < best_length:
            best, best_length = candidate, length
    return best


def _sigmoid_argument(e: sympy.Expr) -> sympy.Expr | None:
    """u when e is 1/(1 + exp(−u)), else None."""
    if not (e.is_Pow and e.exp == -1 and e.base.is_Add and len(e.base.args) == 2):
        return None
    one, other = sorted(e.base.args, key=lambda a: a != 1)
    return -other.args[0] if one == 1 and isinstance(other, sympy.exp) else None


def _as_named(e: sympy.Expr) -> sympy.Expr:
    """Rewrite 1/(1+e^(−u)), e^u/(1+e^u) as σ(u) and (e^u − e^(−u))/(e^u + e^(−u)) as tanh(u)."""
    e = e.replace(lambda n: _sigmoid_argument(n) is not None,
                  lambda n: sigmoid(_sigmoid_argument(n)))
    return e.replace(lambda n: n.is_Mul, _named_in_product)


def _named_in_product(e: sympy.Expr) -> sympy.Expr:
    factors = list(e.args)
    for factor in factors:
        if isinstance(factor, sigmoid) and sympy.exp(-factor.args[0]) in factors:
            factors.remove(factor)  # e^u·σ(−u) = σ(u)
            factors.remove(sympy.exp(-factor.args[0]))
            return sympy.Mul(*factors) * sigmoid(-factor.args[0])
        pair: tuple[sympy.Basic, ...] = ()
        if factor.is_Pow and factor.exp == -1:
            pair = factor.base.args
        if len(pair) != 2 or not all(isinstance(p, sympy.exp) for p in pair):
            continue
        for u in (pair[0].args[0], pair[1].args[0]):  # (e^u − e^(−u))/(e^u + e^(−u))
            numerator = sympy.exp(u) - sympy.exp(-u)
            if sympy.exp(-u) in pair and numerator in factors:
                factors.remove(factor)
                factors.remove(numerator)
                return sympy.Mul(*factors) * sympy.tanh(u)
    return e


def _recognise(expr: sympy.Expr, v: sympy.Symbol) -> sympy.Expr | None:
    """The derivative in σ / tanh form when the expression (or its derivative) has those
    shapes written with exponentials; None when nothing is recognised."""
    named = _as_named(_normalise(sympy.diff(_as_named(expr), v)))
    plain = _normalise(sympy.diff(expr, v))
    return named if named.has(sigmoid, sympy.tanh) and not plain.has(sigmoid) else None


# ---- numeric derivatives --------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """A function of one variable: the callable, its exact derivative if known, whether
    complex-step applies (None: unknown, a Python callable) and a label."""

    function: Callable[[Any], Any]
    derivative: sympy.Expr | None
    variable: sympy.Symbol | None
    analytic: bool | None
    label: str


def _target(f: Any) -> _Target:
    if callable(f) and not isinstance(f, sympy.Basic):
        return _Target(f, None, None, None, getattr(f, "__name__", "f"))
    if isinstance(f, str) and _is_activation_text(f):
        expr = activation_expression(f, "x")
    elif isinstance(f, (str, sympy.Expr)):
        expr = f if isinstance(f, sympy.Expr) else parse_expression(f)
    else:
        raise ExpressionError(f"expected an expression, activation name or function, got {f!r}")
    names = free_variables(expr)
    if len(names) != 1:
        raise ExpressionError(
            f"a numeric derivative needs a function of one variable; {to_text(expr)!r} has"
            f" {', '.join(names) or 'none'}"
        )
    v = find_symbol(expr, names[0])
    analytic = not expr.has(*_NOT_ANALYTIC)
    return _Target(make_function(expr, names), _normalise(sympy.diff(expr, v)), v, analytic,
                   to_text(expr))


def recommended_step(method: str, x: float = 0.0) -> float:
    """The step that balances truncation and round-off error in float64 (ε = 2.2e-16):
    forward/backward √ε·max(1, |x|) ≈ 1.5e-8, central ε^(1/3)·max(1, |x|) ≈ 6e-6, complex
    step 1e-20 (it subtracts nothing, so any tiny h works).

    >>> f"{recommended_step('central'):.1e}"
    '6.1e-06'
    """
    scale = max(1.0, abs(require_finite("x", x)))
    steps = {"forward": math.sqrt(EPS) * scale, "backward": math.sqrt(EPS) * scale,
             "central": EPS ** (1 / 3) * scale, "complex": COMPLEX_STEP}
    if method not in steps:
        raise UnknownNameError("difference method", method, METHODS)
    return steps[method]


def _estimate(fn: Callable[[Any], Any], x: float, h: float, method: str) -> float:
    def at(point: Any) -> Any:
        return np.asarray(fn(point)).reshape(())[()]

    with np.errstate(all="ignore"):  # a non-finite estimate is reported, not warned about
        if method == "forward":
            return float((at(x + h) - at(x)) / h)
        if method == "backward":
            return float((at(x) - at(x - h)) / h)
        if method == "central":
            return float((at(x + h) - at(x - h)) / (2 * h))
        try:
            value = at(complex(x, h))
        except (TypeError, ValueError):
            value = None
    if value is None or not np.iscomplexobj(value):
        raise InvalidValueError("complex-step needs a function that accepts complex input")
    return float(np.imag(value) / h)


def numeric_derivative(f: Any, x: float, h: float | None = None,
                       method: str = "central") -> float:
    """f′(x) by finite differences; f is an expression, an activation name or a callable.

    forward (f(x+h) − f(x))/h, backward (f(x) − f(x−h))/h, central (f(x+h) − f(x−h))/(2h),
    complex Im f(x + ih)/h. Complex-step is refused for max/min/abs/relu (not analytic); a
    Python callable must accept complex input (and be analytic: that cannot be checked).
    ``h`` defaults to :func:`recommended_step`.
    """
    x = require_finite("x", x)
    h = recommended_step(method, x) if h is None else _positive_step(h)
    if method not in METHODS:
        raise UnknownNameError("difference method", method, METHODS)
    target = _target(f)
    if method == "complex" and target.analytic is False:
        raise InvalidValueError(
            f"complex-step needs an analytic function; {target.label!r} uses max, min, abs,"
            " sign or heaviside"
        )
    value = _estimate(target.function, x, h, method)
    if not math.isfinite(value):
        raise InvalidValueError(f"{method} difference of {target.label!r} at x={x!r} "
                                f"with h={h!r} is {value} (f undefined nearby?)")
    return value


def _positive_step(h: float) -> float:
    h = require_finite("h", h)
    if h <= 0:
        raise InvalidValueError(f"h must be > 0, got {h!r}")
    return h


@dataclass(frozen=True)
class StudyRow:
    """One estimate of f′(x): ``rel_error`` is None when the exact derivative is 0."""

    method: str
    h: float
    estimate: float
    abs_error: float
    rel_error: float | None


@dataclass
class StepStudy:
    """Errors of the four difference methods over step sizes ``hs`` at ``x``.

    ``recommended`` maps each method to its recommended h (complex: None when complex-step
    does not apply); ``recommended_error`` to the absolute error there."""

    x: float
    exact: float
    rows: list[StudyRow]
    recommended: dict[str, float | None]
    recommended_error: dict[str, float | None]
    function: str = ""
    exact_source: str = "given"
    notes: list[str] = field(default_factory=list)

    def method_rows(self, method: str) -> list[StudyRow]:
        return [row for row in self.rows if row.method == method]

    def best(self, method: str) -> StudyRow:
        """The row of ``method`` with the smallest error."""
        rows = [row for row in self.method_rows(method) if math.isfinite(row.abs_error)]
        if not rows:
            raise InvalidValueError(f"no finite {method} estimate in this study")
        return min(rows, key=lambda row: row.abs_error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function, "at": self.x, "exact": self.exact,
            "exact_source": self.exact_source,
            "rows": [dict(row.__dict__) for row in self.rows],
            "recommended": dict(self.recommended),
            "recommended_abs_error": dict(self.recommended_error), "notes": list(self.notes),
        }

    def _repr_html_(self) -> str:
        """|estimate − exact| per step h (rows) and method (columns), the smallest error of
        each method in bold; the recommended h of each method is a highlighted row."""
        from html import escape

        methods = [m for m in METHODS if self.method_rows(m)]
        best = {m: self.best(m).h for m in methods
                if any(math.isfinite(row.abs_error) for row in self.method_rows(m))}
        head = "".join(f"<th>{m}</th>" for m in methods)
        body = "".join(self._html_row(h, methods, picks, best)
                       for h, picks in self._html_steps(methods))
        notes = "".join(f"<p>{escape(note)}</p>" for note in self.notes)
        return (f"<div><p><b>f′({self.x:.6g}) of {escape(self.function)}</b>: exact "
                f"{self.exact:.10g} ({escape(self.exact_source)})</p><table><caption>absolute "
                "error |estimate − exact| by step h; highlighted: the recommended h</caption>"
                f"<tr><th>h</th>{head}</tr>{body}</table>{notes}</div>")

    def _html_steps(self, methods: list[str]) -> list[tuple[float, list[str]]]:
        """(h, methods whose recommended h it is) for every h of the study and every
        recommended h, largest h first."""
        steps: dict[float, list[str]] = {row.h: [] for row in self.rows}
        for method in methods:
            h = self.recommended.get(method)
            if h is not None:
                steps.setdefault(h, []).append(method)
        return sorted(steps.items(), key=lambda item: -item[0])

    def _html_row(self, h: float, methods: list[str], picks: list[str],
                  best: dict[str, float]) -> str:
        """One row of the table: each method's error at h (bold where it is smallest)."""
        errors = {row.method: row for row in self.rows if row.h == h}
        cells = []
        for method in methods:
            row = errors.get(method)
            error = (row.abs_error if row is not None
                     else self.recommended_error.get(method) if method in picks else None)
            text = "" if error is None else f"{error:.3g}"
            if row is not None and best.get(method) == h:
                text = f"<b>{text}</b>"
            tip = "" if row is None else f' title="estimate {row.estimate:.16g}"'
            cells.append(f"<td{tip}>{text}</td>")
        label = f"{h:.3g}"
        if picks:
            return (f'<tr class="recommended" style="background:#fff3b0"><td>{label} '
                    f"(recommended: {', '.join(picks)})</td>{''.join(cells)}</tr>")
        return f"<tr><td>{label}</td>{''.join(cells)}</tr>"


def _exact_value(target: _Target, x: float) -> float:
    assert target.derivative is not None and target.variable is not None
    value = target.derivative.evalf(30, subs={target.variable: sympy.Float(x, 30)})
    try:
        return require_finite(f"the exact derivative of {target.label!r} at x", complex(value).real)
    except TypeError:
        raise InvalidValueError(
            f"the exact derivative of {target.label!r} is not a number at x={x!r}"
        ) from None


def step_study(f: Any, x: float, exact: float | None = None,
               hs: Sequence[float] | None = None) -> StepStudy:
    """Forward, backward, central and complex-step estimates of f′(x) for every h in ``hs``
    (default 1e-1 … 1e-15 by decades, so seed 002's 1e-13 is among them).

    ``exact`` defaults to the symbolic derivative when f is an expression or activation name;
    a Python callable needs it.

    >>> study = step_study("sigmoid(x)", 0.0)
    >>> row = [r for r in study.rows if r.method == "forward" and r.h == 1e-13][0]
    >>> row.abs_error > 1e-5, study.exact
    (True, 0.25)
    """
    x = require_finite("x", x)
    steps = [_positive_step(h) for h in (DEFAULT_STEPS if hs is None else hs)]
    if not steps:
        raise InvalidValueError("hs must hold at least one step size")
    target = _target(f)
    if exact is not None:
        exact, source = require_finite("exact", exact), "given"
    elif target.derivative is not None:
        exact, source = _exact_value(target, x), "symbolic"
    else:
        raise InvalidValueError("step_study of a Python function needs exact=f'(x)")
    methods, notes = list(METHODS), []
    if target.analytic is False:
        methods.remove("complex")
        notes.append("complex-step skipped: max, min, abs, sign, heaviside are not analytic")
    elif target.analytic is None and not _accepts_complex(target.function, x):
        methods.remove("complex")
        notes.append("complex-step skipped: the function does not accept complex input")
    rows = [_row(target, x, h, method, exact) for method in methods for h in steps]
    if any(not math.isfinite(row.estimate) for row in rows):
        notes.append("some estimates are not finite: f is undefined near x for large h")
    recommended: dict[str, float | None] = {m: recommended_step(m, x) for m in METHODS}
    errors: dict[str, float | None] = {m: None for m in METHODS}
    for method in methods:
        errors[method] = _row(target, x, recommended_step(method, x), method, exact).abs_error
    if "complex" not in methods:
        recommended["complex"] = None
    return StepStudy(x, exact, rows, recommended, errors, target.label, source, notes)


def _accepts_complex(fn: Callable[[Any], Any], x: float) -> bool:
    try:
        _estimate(fn, x, COMPLEX_STEP, "complex")
    except InvalidValueError:
        return False
    return True


def _row(target: _Target, x: float, h: float, method: str, exact: float) -> StudyRow:
    estimate = _estimate(target.function, x, h, method)
    abs_error = abs(estimate - exact)
    return StudyRow(method, h, estimate, abs_error, abs_error / abs(exact) if exact else None)


# ---- numpy functions of derivatives (descent uses these) -----------------------------------
def derivative_function(expr: str | sympy.Expr, wrt: str | None = None) -> Callable[..., Any]:
    """A NumPy function of d(expr)/d(wrt), taking the variables in sorted order.

    >>> float(derivative_function("x**2 - 4*x + 6")(8.0))
    12.0
    """
    expr = parse_expression(expr) if isinstance(expr, str) else expr
    variable = _choose_variable(expr, wrt)
    return make_function(_normalise(sympy.diff(expr, variable)), free_variables(expr))


def gradient_function(expr: str | sympy.Expr,
                      variables: Sequence[str] | None = None) -> Callable[..., Any]:
    """∇f as a NumPy function: ``grad(*values)`` → array of shape (n, *broadcast shape).

    ``variables`` gives the order (default: sorted names); a variable that the expression
    does not use gets a zero component.

    >>> grad = gradient_function("x**2 + 3*x*y", ["x", "y"])
    >>> grad(1.0, 2.0).tolist()
    [8.0, 3.0]
    """
    expr = parse_expression(expr, variables) if isinstance(expr, str) else expr
    names = list(free_variables(expr) if variables is None else variables)
    parts = [make_function(_normalise(sympy.diff(expr, find_symbol(expr, n))), names)
             for n in names]

    def gradient(*values: Any) -> Any:
        return np.stack(np.broadcast_arrays(*[part(*values) for part in parts]))

    gradient.__doc__ = f"gradient of {to_text(expr)} with respect to ({', '.join(names)})"
    return gradient


def activation_table(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per activation: formula, derivative and derivative from the output (as
    parseable text), output range, maximum derivative (value, at), saturating."""
    records = []
    for name in names or activations.names():
        act, result = activations.get(name), derive(name)
        output = result.derivative_from_output
        value, where = act.max_derivative
        records.append({
            "name": act.name, "formula": to_text(result.expression),
            "derivative": to_text(result.simplified),
            "derivative_from_output": None if output is None else to_text(output),
            "output_range": list(act.output_range),
            "max_derivative": {"value": value, "at": where}, "saturating": act.saturating,
        })
    return records
