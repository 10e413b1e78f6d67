"""Derivatives three ways: symbolic with the steps shown, numeric, and a study of step sizes.

:func:`derive` differentiates an expression (text or SymPy) or an activation name and
records which rule applies at each node — sum, product, quotient, chain, power rule... —
with every intermediate result as plain text that :func:`gradsight.calculus.expr.parse_expression`
reads back. For the sigmoid it shows both routes of the article on the sigmoid's derivative,
"Approach 1" (write σ = (1+e^(−x))^(−1), chain rule) and "Approach 2" (σ = e^x/(1+e^x),
quotient rule), each ending in σ′ = σ(1−σ); for tanh it ends in 1 − tanh². At kinks the
conventions follow PyTorch: relu′(0) = 0 (``heaviside(0) = 0``), and the derivative of a
step is taken as 0.

:func:`numeric_derivative` estimates f′(x) by forward, backward, central or complex-step
differences; :func:`step_study` shows why the step h matters (the article on the derivative
in training uses a forward difference with h = 1e-13, whose round-off error is ~1e-3). Both
live in :mod:`gradsight.calculus.numeric` and are re-exported here.

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

from .. import activations
from ..errors import ExpressionError
from .expr import (
    find_symbol,
    free_variables,
    make_function,
    parse_expression,
    sigmoid,
    symbol,
    to_text,
)
from .formulas import (
    SIGMOID_ROUTES,
    TANH_ROUTES,
    activation_expression,
    activation_parts,
    is_activation_text,
    normalise,
    variable_name,
)

# Numeric differentiation and the step study live in gradsight.calculus.numeric; their names stay
# importable from here.
from .numeric import (
    METHODS,
    StepStudy,
    StudyRow,
    numeric_derivative,
    recommended_step,
    step_study,
)

__all__ = [
    "METHODS", "Step", "Derivation", "StudyRow", "StepStudy", "derive", "numeric_derivative",
    "recommended_step", "step_study", "derivative_function", "gradient_function",
    "activation_expression", "activation_table",
]


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
        """The JSON document of ``gradsight derive --json``, every formula parseable text:
        ``{"expression", "wrt", "derivative", "simplified", "derivative_from_output"
        (activation names only, in the variable a; null otherwise), "steps": [{"rule",
        "result"}]}``. A step of a named route (the sigmoid's two approaches) carries the
        route in its rule: ``"Approach 1 (chain rule): chain rule"``."""
        output = self.derivative_from_output
        return {
            "expression": to_text(self.expression), "wrt": self.wrt,
            "derivative": to_text(self.derivative), "simplified": to_text(self.simplified),
            "derivative_from_output": None if output is None else to_text(output),
            "steps": [{"rule": f"{step.route}: {step.rule}" if step.route else step.rule,
                       "result": step.result} for step in self.steps],
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
    if isinstance(expr_or_text, str) and is_activation_text(expr_or_text):
        return _derive_activation(expr_or_text, variable_name(wrt or "z"))
    expr = expr_or_text if isinstance(expr_or_text, sympy.Expr) else parse_expression(
        expr_or_text)
    variable = _choose_variable(expr, wrt)
    recorder = _Recorder(variable)
    built = recorder.derive(expr)
    if not recorder.steps:  # the expression is the variable itself
        recorder.add("variable", expr, built)
    derivative = normalise(sympy.diff(expr, variable))
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
    if variable_name(wrt) not in names:
        raise ExpressionError(
            f"variable {wrt!r} is not in {to_text(expr)!r}; variables: {', '.join(names) or 'none'}"
        )
    return find_symbol(expr, wrt)


def _derive_activation(text: str, variable: str) -> Derivation:
    name, expr, from_output = activation_parts(text, variable)
    v = symbol(variable)
    derivative = normalise(sympy.diff(expr, v))
    routes = {"sigmoid": SIGMOID_ROUTES, "tanh": TANH_ROUTES}.get(name)
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
            outer = normalise(sympy.diff(e.func(t), t).subs(t, u))
            rule = e.func.__name__.lower() if u == v else "chain rule"
            return self.add(rule, e, outer * self.derive(u))
        name = "relu" if isinstance(e, sympy.Max) and 0 in e.args else e.func.__name__.lower()
        return self.add(name, e, normalise(sympy.diff(e, v)))

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
    named = _as_named(normalise(sympy.diff(_as_named(expr), v)))
    plain = normalise(sympy.diff(expr, v))
    return named if named.has(sigmoid, sympy.tanh) and not plain.has(sigmoid) else None


# ---- numpy functions of derivatives (descent uses these) -----------------------------------
def derivative_function(expr: str | sympy.Expr, wrt: str | None = None) -> Callable[..., Any]:
    """A NumPy function of d(expr)/d(wrt), taking the variables in sorted order.

    >>> float(derivative_function("x**2 - 4*x + 6")(8.0))
    12.0
    """
    expr = parse_expression(expr) if isinstance(expr, str) else expr
    variable = _choose_variable(expr, wrt)
    return make_function(normalise(sympy.diff(expr, variable)), free_variables(expr))


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
    parts = [make_function(normalise(sympy.diff(expr, find_symbol(expr, n))), names)
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
