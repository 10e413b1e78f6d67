"""Numeric derivatives and why the step size matters.

:func:`numeric_derivative` estimates f′(x) by forward, backward, central or complex-step
differences; :func:`step_study` shows why the step h matters (the article on the derivative
in training uses a forward difference with h = 1e-13, whose round-off error is ~1e-3). The
exact value a study compares against is the symbolic derivative (PyTorch's conventions at
kinks, see :mod:`gradsight.calculus`). :mod:`gradsight.calculus` re-exports every public
name here.

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

from ..errors import ExpressionError, InvalidValueError, UnknownNameError, require_finite
from .expr import find_symbol, free_variables, make_function, parse_expression, to_text
from .formulas import activation_expression, is_activation_text, normalise

__all__ = [
    "METHODS", "EPS", "DEFAULT_STEPS", "COMPLEX_STEP", "StudyRow", "StepStudy",
    "numeric_derivative", "recommended_step", "step_study",
]

METHODS = ("forward", "backward", "central", "complex")
EPS = float(np.finfo(np.float64).eps)
DEFAULT_STEPS = tuple(10.0**-k for k in range(1, 16))
COMPLEX_STEP = 1e-20
_NOT_ANALYTIC = (sympy.Max, sympy.Min, sympy.Abs, sympy.Heaviside, sympy.sign)


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
    if isinstance(f, str) and is_activation_text(f):
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
    return _Target(make_function(expr, names), normalise(sympy.diff(expr, v)), v, analytic,
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
        """The JSON document of ``gradsight diffcheck --json``: ``{"at", "exact", "rows":
        [{"method", "h", "estimate", "abs_error", "rel_error"}], "recommended": {method: h}}``
        (h is null for complex-step where it does not apply)."""
        fields = ("method", "h", "estimate", "abs_error", "rel_error")
        return {
            "at": self.x, "exact": self.exact,
            "rows": [{name: getattr(row, name) for name in fields} for row in self.rows],
            "recommended": dict(self.recommended),
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


def _compiled(expr: sympy.Expr, variable: sympy.Symbol) -> Callable[[float], Any]:
    """``expr`` as a function of a float evaluated with 30-digit mpmath numbers (it returns
    an mpf or mpc and raises what mpmath raises where ``expr`` is undefined).

    Compiled with common subexpressions shared (``cse``): SymPy's ``evalf`` walks the tree
    and retries at higher precision, which takes seconds for ``x**x**x**x**...`` and never
    ends for a complex value such as the derivative of ``log(log(x))`` at 0.5."""
    import mpmath

    modules = [{"sigmoid": lambda u: 1 / (1 + mpmath.exp(-u))}, "mpmath"]
    compiled = sympy.lambdify([variable], expr, modules=modules, cse=True)

    def evaluate(x: float) -> Any:
        with mpmath.workdps(30):
            return mpmath.mpmathify(compiled(mpmath.mpf(x)))

    return evaluate


def _exact_value(target: _Target, x: float) -> float:
    """f′(x) from the symbolic derivative, evaluated with 30-digit mpmath numbers."""
    import mpmath

    assert target.derivative is not None and target.variable is not None
    label = target.label if len(target.label) <= 60 else target.label[:57] + "..."
    where = f"of {label!r} at x={x!r}"
    try:
        value = _compiled(target.derivative, target.variable)(x)
    except (ZeroDivisionError, ValueError, TypeError, OverflowError):
        raise InvalidValueError(
            f"the exact derivative {where} is undefined; choose another --at point"
        ) from None
    if isinstance(value, mpmath.mpc) and value.imag != 0:
        raise InvalidValueError(
            f"the exact derivative {where} is not a real number; choose an --at point"
            " where f is real"
        )
    exact = float(mpmath.re(value))
    if not math.isfinite(exact):
        raise InvalidValueError(
            f"the exact derivative {where} is {exact} (not finite); choose another --at point"
        )
    return exact


def step_study(f: Any, x: float, exact: float | None = None,
               hs: Sequence[float] | None = None) -> StepStudy:
    """Forward, backward, central and complex-step estimates of f′(x) for every h in ``hs``
    (default 1e-1 … 1e-15 by decades, so 1e-13, the step of the article on the derivative in
    training, is among them).

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
    special = _special_point_note(target, x, exact)
    if special is not None:
        notes.append(special)
    return StepStudy(x, exact, rows, recommended, errors, target.label, source, notes)


_SECOND_DERIVATIVE_OPS = 400  # a larger derivative is not differentiated again for a note


def _second_derivative(target: _Target) -> Callable[[float], float | None] | None:
    """x ↦ f″(x) from the symbolic derivative (30 digits; None where it is undefined or not
    a finite real number), or None when the derivative is unknown or too large."""
    import mpmath

    if target.derivative is None or target.variable is None:
        return None
    if sympy.count_ops(target.derivative) > _SECOND_DERIVATIVE_OPS:
        return None
    try:
        compiled = _compiled(sympy.diff(target.derivative, target.variable), target.variable)
    except (TypeError, ValueError, NameError, KeyError):  # no mpmath form (DiracDelta, …)
        return None

    def second(x: float) -> float | None:
        try:
            value = compiled(x)
        except (ZeroDivisionError, ValueError, TypeError, OverflowError, NameError):
            return None
        if isinstance(value, mpmath.mpc) and value.imag != 0:
            return None
        number = float(mpmath.re(value))
        return number if math.isfinite(number) else None

    return second


def _special_point_note(target: _Target, x: float, exact: float) -> str | None:
    """A note when f″(x) = 0: the point hides the difference between the methods.

    The forward difference is (f(x+h) − f(x))/h = f′(x) + (h/2)·f″(x) + (h²/6)·f‴(x) + …,
    the central one f′(x) + (h²/6)·f‴(x) + …: where f″(x) = 0 the forward difference loses
    its O(h) error and is as accurate as the central one (for sigmoid at 0, which is
    symmetric there, σ(h) − ½ = (σ(h) − σ(−h))/2, so the two are the same number). A table
    at such a point looks as if forward differences were as good as central ones."""
    second = _second_derivative(target)
    value = None if second is None else second(x)
    if value is None or abs(value) > 1e-12 * max(1.0, abs(exact)):
        return None
    assert second is not None
    advice = "at a point where f″ ≠ 0"
    for other in (x + 1.0, x - 1.0, x + 0.5, x - 0.5):
        bend = second(other)
        if bend is not None and abs(bend) > 1e-6:
            advice = f"at a point where f″ ≠ 0 (e.g. x = {other:g})"
            break
    where = f"{x:g}"
    return (f"x = {where} is a special point: f″({where}) = 0, so the O(h) error (h/2)·f″(x) "
            "of the forward and backward differences vanishes and they are as accurate as "
            "the central difference here (where f is symmetric about x, as sigmoid is about "
            f"0, forward and central give the same numbers); {advice} the forward error "
            "shrinks like h and the central error like h²")


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
