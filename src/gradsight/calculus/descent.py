"""Minimise a function of one or two variables by gradient descent, and say how it went.

The articles' rule is ``x_new = x_old − η·dy/dx``: from x = 8 with η = 0.1 on y = x² − 4x + 6
the iterates are 6.8, 5.84, 5.07, … → 2, i.e. ``x_k = 2 + 6·0.8^k``. :func:`minimize` runs any
:mod:`gradsight.optim` optimizer on a typed expression (exact gradient, symbolic) or on a
Python callable (central differences, or a given gradient) and returns a :class:`Trajectory`:
every iterate and a verdict.

Verdicts (checked at every iterate, in this order):

- ``diverged`` — x, f or the gradient became non-finite, or ``max|x_i|`` exceeds the bound
  ``max(bound, 1000·max|x0_i|)`` (a far start that comes closer is no divergence; a minimum
  beyond 1e6 needs a larger ``bound``); the run stops at the first such iterate.
- ``converged`` / ``stalled`` — the gradient is tiny (``‖∇f‖ < tol``) or the last step is
  (``‖Δx‖ < tol·max(1, ‖x‖)``). Which of the two is decided by a *probe*: f is evaluated at
  ``x ± δ_i e_i`` with ``δ_i = 0.01·max(1, |x_i|)``. If every probe is higher than f(x), x sits
  in a basin: ``converged``. If some probe is lower (beyond rounding), f still decreases
  although descent stopped moving — the gradient vanished on a slope (the flat tail of a
  saturated sigmoid, where σ′ ≈ 1e-13), x is a maximum or saddle (the probe's curvature
  ``(f(x+δ) − 2f(x) + f(x−δ))/δ²`` is negative), or the learning rate is too small:
  ``stalled``, with that reason. If no probe changes f at all, x is on a plateau
  (f′ = f″ = 0 numerically, a dead ReLU): ``stalled`` too.
- ``oscillating`` — the last 8 updates alternate in direction (consecutive updates have a
  negative dot product) and their size neither shrinks nor grows (last/first within 0.1 %):
  x² with η = 1 bounces between ±x₀ forever, detected after 8 steps. At ``max_iter`` an
  alternating run whose steps do not shrink is also called oscillating.
- ``max_iter`` — none of the above within ``max_iter`` updates.

A ``converged`` run whose iterates jumped from one side of the minimum to the other (the step
reversed direction at half or more of the updates: x² with η = 0.9 gives x_{k+1} = −0.8·x_k)
says so in its reason, and its :attr:`Trajectory.verdict_label` is ``"converged,
oscillating"``; the verdict stays ``converged``.
"""

from __future__ import annotations

import copy
import html
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import optim
from ..errors import GradsightError, InvalidValueError, ShapeError, require_finite, require_positive
from ..io import jsonable
from .descent_verdict import Iterate, diverged, oscillating, stationary, zigzag
from .expr import free_variables, make_function, parse_expression
from .symbolic import gradient_function

__all__ = ["Comparison", "Iterate", "Trajectory", "compare", "minimize"]


@dataclass
class Trajectory:
    """The path of one run of :func:`minimize` and its verdict."""

    iterations: list[Iterate]
    verdict: str
    verdict_reason: str
    variables: tuple[str, ...]
    expression: str
    optimizer: str
    lr: float
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    tol: float = 1e-6
    # f(*coordinates), elementwise on arrays where it can be (for plots); None if unknown
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def x_final(self) -> tuple[float, ...]:
        return self.iterations[-1].x

    @property
    def f_final(self) -> float:
        return self.iterations[-1].f

    @property
    def verdict_label(self) -> str:
        """The verdict in words: ``"converged, oscillating"`` for a converged run that
        zig-zagged across the minimum (see :func:`~.descent_verdict.zigzag`), else the
        verdict."""
        if self.verdict == "converged" and zigzag(self.iterations) is not None:
            return "converged, oscillating"
        return self.verdict

    @property
    def n_steps(self) -> int:
        """Number of updates made (the step of the last iterate)."""
        return self.iterations[-1].step

    def xs(self) -> np.ndarray:
        """Iterates as an array of shape (steps + 1, n_variables)."""
        return np.array([it.x for it in self.iterations], dtype=float)

    def fs(self) -> np.ndarray:
        return np.array([it.f for it in self.iterations], dtype=float)

    def grad_norms(self) -> np.ndarray:
        return np.array([math.hypot(*it.grad) for it in self.iterations], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of the issue, plus ``verdict_reason``, ``hyperparameters``, ``tol``."""
        return jsonable({
            "expression": self.expression, "variables": list(self.variables),
            "optimizer": self.optimizer, "lr": self.lr,
            "hyperparameters": self.hyperparameters, "tol": self.tol,
            "iterations": [{"step": it.step, "x": list(it.x), "f": it.f, "grad": list(it.grad)}
                           for it in self.iterations],
            "verdict": self.verdict, "verdict_reason": self.verdict_reason,
            "x_final": list(self.x_final), "f_final": self.f_final,
        })

    def summary(self) -> str:
        point = ", ".join(f"{v} = {_fmt(c)}" for v, c in zip(self.variables, self.x_final,
                                                                 strict=True))
        return (f"minimise {self.expression} with {self.optimizer} (η = {_fmt(self.lr)}): "
                f"{self.verdict_reason}; final {point}, f = {_fmt(self.f_final)}")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(v)}</th>" for v in self.variables)
        rows = [f"<tr><td>{it.step}</td>" + "".join(f"<td>{_fmt(c)}</td>" for c in it.x)
                + f"<td>{_fmt(it.f)}</td><td>{_fmt(math.hypot(*it.grad))}</td></tr>"
                if it is not None else "<tr><td>…</td></tr>"
                for it in _elide(self.iterations, 8, 4)]
        return (f"<p><b>{html.escape(self.expression)}</b> — {html.escape(self.optimizer)}, "
                f"η = {_fmt(self.lr)}</p><table><tr><th>step</th>{head}<th>f</th>"
                f"<th>|grad|</th></tr>{''.join(rows)}</table>"
                f"<p><b>{self.verdict_label}</b>: {html.escape(self.verdict_reason)}</p>")


@dataclass
class Comparison:
    """Several runs of the same function (different rates and/or optimizers)."""

    runs: list[Trajectory]

    def table(self) -> list[dict[str, Any]]:
        """One row per run: optimizer, lr (the learning rate η), verdict, iterations (updates
        made), x_final, f_final."""
        return [{"optimizer": t.optimizer, "lr": t.lr, "verdict": t.verdict,
                 "iterations": t.n_steps, "x_final": list(t.x_final), "f_final": t.f_final}
                for t in self.runs]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [t.to_dict() for t in self.runs]}

    def summary(self) -> str:
        return "\n".join(f"{r['optimizer']:>9} η = {_fmt(r['lr']):<8} {r['verdict']:<11} "
                         f"after {r['iterations']:>5} steps: x = "
                         f"({', '.join(_fmt(c) for c in r['x_final'])}), f = {_fmt(r['f_final'])}"
                         for r in self.table())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{r['optimizer']}</td><td>{_fmt(r['lr'])}</td>"
                       f"<td>{r['verdict']}</td><td>{r['iterations']}</td>"
                       f"<td>({', '.join(_fmt(c) for c in r['x_final'])})</td>"
                       f"<td>{_fmt(r['f_final'])}</td></tr>" for r in self.table())
        return ("<table><tr><th>optimizer</th><th>η</th><th>verdict</th><th>iterations</th>"
                f"<th>x_final</th><th>f_final</th></tr>{rows}</table>")


def _fmt(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value)


def _elide(items: list[Any], head: int, tail: int) -> list[Any]:
    """The first ``head`` and last ``tail`` items with None between them, if any are left out."""
    return items if len(items) <= head + tail else [*items[:head], None, *items[-tail:]]


# ---------------------------------------------------------------------------- the problem


@dataclass
class _Problem:
    """f and ∇f as functions of a float64 vector, with names for messages."""

    value: Callable[[np.ndarray], float]
    gradient: Callable[[np.ndarray], np.ndarray]
    variables: tuple[str, ...]
    text: str
    pointwise: Callable[..., Any]           # f(*coordinates)

    def value_at(self, x: np.ndarray) -> float:
        """f(x), NaN where f is undefined (no warning, no exception)."""
        return self.evaluate(x, gradient=False)[0]

    def evaluate(self, x: np.ndarray, gradient: bool = True) -> tuple[float, np.ndarray]:
        """(f(x), ∇f(x)); NaN where undefined (math.log(-1) in a user's function too)."""
        with np.errstate(all="ignore"):
            try:
                return self.value(x), (self.gradient(x) if gradient else x)
            except GradsightError:
                raise
            except (OverflowError, ZeroDivisionError, ValueError):
                return math.nan, np.full(x.shape, math.nan)


def _from_expression(text: str, variables: Sequence[str] | None) -> _Problem:
    expr = parse_expression(text, variables)
    names = tuple(variables) if variables is not None else tuple(free_variables(expr))
    _check_count(names, text)
    f, grad = make_function(expr, names), gradient_function(expr, names)
    return _Problem(lambda x: float(f(*x)),
                    lambda x: np.asarray(grad(*x), dtype=float).reshape(x.shape), names,
                    text.strip(), f)


def _from_callable(f: Callable[..., Any], n: int, grad: Callable[..., Any] | None,
                   variables: Sequence[str] | None) -> _Problem:
    default = ("x", "y") if n <= 2 else tuple(f"x{i}" for i in range(1, n + 1))
    names = tuple(variables) if variables is not None else default[:n]
    label = getattr(f, "__name__", "f")
    _check_count(names, label)
    _check_arity(f, n, label)

    def value(x: np.ndarray) -> float:
        result = f(*x)
        if np.ndim(result) != 0 or np.iscomplexobj(result):
            raise InvalidValueError(f"{label} must return one real number, got "
                                    f"{str(result)[:40]!r}")
        return float(result)

    def gradient(x: np.ndarray) -> np.ndarray:
        if grad is None:
            return _central_difference(value, x)
        given = np.atleast_1d(np.asarray(grad(*x), dtype=float)).ravel()
        if given.size != x.size:
            raise ShapeError(f"grad returned {given.size} values for {x.size} variables")
        return given

    return _Problem(value, gradient, names, label, f)


def _central_difference(value: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """(f(x + h e_i) − f(x − h e_i)) / 2h with h = ε^(1/3)·max(1, |x_i|) (balances the
    O(h²) truncation error against the O(ε/h) rounding error)."""
    out = np.empty_like(x)
    for i in range(x.size):
        h = np.finfo(float).eps ** (1 / 3) * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        out[i] = (value(up) - value(down)) / (up[i] - down[i])
    return out


def _check_arity(f: Callable[..., Any], n: int, label: str) -> None:
    """f is called as f(*x): it must accept one number per value of x0."""
    try:
        inspect.signature(f).bind(*[0.0] * n)
    except TypeError:
        raise InvalidValueError(f"{label} does not take {n} argument(s), one per value of "
                                f"x0") from None
    except ValueError:      # no signature (some builtins): a mismatch shows when f is called
        pass


def _check_count(names: Sequence[str], text: str) -> None:
    if not 1 <= len(names) <= 2:
        listed = ", ".join(names) or "none"
        raise InvalidValueError(
            f"{text!r} has {len(names)} variables ({listed}); descent works on 1 or 2")


def _problem(f: str | Callable[..., Any], n: int, grad: Callable[..., Any] | None,
             variables: Sequence[str] | None) -> _Problem:
    if isinstance(f, str):
        if grad is not None:
            raise InvalidValueError("grad= is only for a Python function; an expression's "
                                    "gradient is exact")
        return _from_expression(f, variables)
    if not callable(f):
        raise InvalidValueError(f"f must be expression text or a function, got {type(f)}")
    return _from_callable(f, n, grad, variables)


def _start(x0: float | Sequence[float] | Mapping[str, float], problem: _Problem) -> np.ndarray:
    """x0 as a vector in the order of ``problem.variables``: a number per variable in that
    order, or a mapping variable name → number (every variable once, no other name)."""
    names = problem.variables
    if isinstance(x0, Mapping):
        unknown = [str(name) for name in x0 if name not in names]
        if unknown:
            raise InvalidValueError(
                f"x0 names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} "
                f"not a variable of {problem.text!r} (its variables: {', '.join(names)})")
        missing = [name for name in names if name not in x0]
        if missing:
            raise InvalidValueError(
                f"x0 gives no value for {', '.join(missing)}; {problem.text!r} has the "
                f"variables {', '.join(names)}")
        return np.array([require_finite(f"x0 {name}", x0[name]) for name in names],
                        dtype=float)
    values = np.atleast_1d(np.asarray(x0, dtype=object)).ravel()
    coords = [require_finite("x0", v) for v in values]
    if len(coords) != len(names):
        order = " (in alphabetical order)" if len(names) > 1 else ""
        raise InvalidValueError(
            f"x0 has {len(coords)} value(s) but {problem.text!r} has {len(names)} "
            f"variable(s){order}: {', '.join(names)}")
    return np.array(coords, dtype=float)


def _make_optimizer(optimizer: str | optim.Optimizer, lr: float,
                    momentum: float | None) -> optim.Optimizer:
    if isinstance(optimizer, optim.Optimizer):
        fresh = copy.deepcopy(optimizer)     # leave the caller's object and state alone
        fresh.reset()
        return fresh
    lr = require_positive("lr (the learning rate η)", lr)
    extra = {} if momentum is None else {"momentum": momentum}
    return optim.get(optimizer, lr=lr, **extra)


# ---------------------------------------------------------------------------- the run


def minimize(f: str | Callable[..., Any], x0: float | Sequence[float] | Mapping[str, float],
             optimizer: str | optim.Optimizer = "sgd", lr: float = 0.1, max_iter: int = 1000,
             tol: float = 1e-6, grad: Callable[..., Any] | None = None, bound: float = 1e6,
             variables: Sequence[str] | None = None,
             momentum: float | None = None) -> Trajectory:
    """Minimise ``f`` from ``x0`` with ``optimizer`` and return the :class:`Trajectory`.

    ``f`` is expression text (``"x^2 - 4*x + 6"``; variables in alphabetical order unless
    ``variables`` gives the order; exact symbolic gradient) or a Python function of 1 or 2
    numbers (gradient ``grad`` if given, else central differences). ``x0`` is a number per
    variable in that order, or a mapping by name (``{"w": 1, "b": 2}``; for a Python
    function its keys are the variables unless ``variables`` is given). ``optimizer`` is a
    name of :func:`gradsight.optim.get` built with the learning rate η = ``lr`` (and
    ``momentum``), or an optimizer object (copied and reset; its own η is used). Divergence
    is a verdict, not an error; ``bound`` is raised to 1000·max|x0_i| for a far start.

    >>> t = minimize("x^2 - 4*x + 6", 8, lr=0.1)
    >>> [round(it.x[0], 2) for it in t.iterations[1:4]], t.verdict
    ([6.8, 5.84, 5.07], 'converged')
    """
    if isinstance(x0, Mapping):
        n = len(x0)
        if variables is None and not isinstance(f, str):
            variables = [str(name) for name in x0]
    else:
        n = int(np.size(x0))
    problem = _problem(f, n, grad, variables)
    x = _start(x0, problem)
    opt = _make_optimizer(optimizer, lr, momentum)
    tol, bound = require_positive("tol", tol), require_positive("bound", bound)
    max_iter = _require_count("max_iter", max_iter)
    f0, g0 = problem.evaluate(x)
    if not (math.isfinite(f0) and np.all(np.isfinite(g0))):
        point = ", ".join(f"{v} = {_fmt(c)}" for v, c in zip(problem.variables, x, strict=True))
        what = "f" if not math.isfinite(f0) else "its gradient"
        raise InvalidValueError(f"{problem.text!r}: {what} is undefined or not finite at x0 "
                                f"({point}); start where f is defined")
    iterations = [Iterate(0, tuple(x.tolist()), f0, tuple(g0.tolist()), (0.0,) * x.size)]
    bound = max(bound, 1e3 * float(np.max(np.abs(x))))
    verdict, reason = _run(problem, opt, x, iterations, max_iter, tol, bound)
    note = zigzag(iterations) if verdict == "converged" else None
    if note is not None:
        reason = f"{reason}; {note}"
    return Trajectory(iterations, verdict, reason, problem.variables, problem.text, opt.name,
                      opt.lr, opt.hyperparameters(), tol, problem.pointwise)


def _require_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise InvalidValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _run(problem: _Problem, opt: optim.Optimizer, x: np.ndarray, its: list[Iterate],
         max_iter: int, tol: float, bound: float) -> tuple[str, str]:
    """Step until a verdict; appends to ``its``; returns (verdict, reason)."""
    while True:
        found = (stationary(problem.value_at, problem.variables, its, tol)
                 or oscillating(its, final=False))
        if found:
            return found
        if its[-1].step >= max_iter:
            return oscillating(its, final=True) or (
                "max_iter", f"no verdict within max_iter = {max_iter} updates "
                            f"(|grad| = {math.hypot(*its[-1].grad):.3g}, tol {tol:.3g})")
        before = x.copy()
        with np.errstate(all="ignore"):
            opt.step([x], [np.array(its[-1].grad)])
        value, gradient = problem.evaluate(x) if np.all(np.isfinite(x)) else (
            math.nan, np.full(x.shape, math.nan))
        with np.errstate(all="ignore"):
            update = x - before
        its.append(Iterate(its[-1].step + 1, tuple(x.tolist()), value, tuple(gradient.tolist()),
                           tuple(update.tolist())))
        found = diverged(its[-1], bound, problem.variables)
        if found:
            return found


def compare(f: str | Callable[..., Any], x0: float | Sequence[float] | Mapping[str, float],
            lrs: Sequence[float] | None = None,
            optimizers: Sequence[str | optim.Optimizer] | None = None,
            **options: Any) -> Comparison:
    """Run :func:`minimize` for every learning rate × optimizer and collect the runs.

    ``options`` go to :func:`minimize` (``max_iter``, ``tol``, ``momentum``, ...); without
    ``lrs`` the ``lr`` option (0.1) is used, without ``optimizers`` the ``optimizer`` option
    ("sgd").

    >>> c = compare("x^2", 8, lrs=[0.1, 1.0, 1.1])
    >>> [r["verdict"] for r in c.table()]
    ['converged', 'oscillating', 'diverged']
    """
    default_lr = options.pop("lr", 0.1)
    rates: list[float | None] = list(lrs) if lrs is not None else [None]
    methods = list(optimizers) if optimizers is not None else [options.pop("optimizer", "sgd")]
    options.pop("optimizer", None)
    if not rates or not methods:
        raise InvalidValueError("compare needs at least one learning rate and one optimizer")
    runs = []
    for method in methods:
        for rate in rates:
            if isinstance(method, optim.Optimizer) and rate is not None:
                method = copy.deepcopy(method)
                method.lr = rate
            lr = default_lr if rate is None else rate
            runs.append(minimize(f, x0, optimizer=method, lr=lr, **options))
    return Comparison(runs)
