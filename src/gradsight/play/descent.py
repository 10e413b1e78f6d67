"""The descent view's numbers: :func:`gradsight.calculus.descent.compare` on the typed
function, each run's iterates, its verdict and the iteration table in the articles' style.

The articles write one step of gradient descent as x_new = x_old − η·f′(x_old); for their
y = x² − 4x + 6 from x = 8 with η = 0.1 the first row is 8 − 0.1·12 = 6.8. :func:`table_line`
writes every row that way (with ∇f for two variables); an optimizer that is not plain SGD
(momentum, Adam) moves x by its own step Δx, and the row says x_new = x_old + Δx.

>>> message = descent_message({"expression": "x^2 - 4*x + 6", "optimizer": "sgd",
...                            "lr": 0.1, "x0": [8.0], "steps": 100})
>>> message["runs"][0]["table"][0]
'x_new = x_old − η·f′(x_old) = 8 − 0.1·12 = 6.8'
>>> message["runs"][0]["verdict_label"]
'converged'
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..calculus.descent import Trajectory, compare

__all__ = ["CURVE_POINTS", "CONTOUR_POINTS", "descent_message", "table_line"]

CURVE_POINTS = 201  # samples of f on the 1-D curve
CONTOUR_POINTS = 40  # a 40 × 40 grid for the contour of f(x, y)


def _num(value: float, digits: int = 6) -> str:
    """A number as the table prints it (6 significant digits; 10 for the points, so late
    iterates still differ: 2.000014719)."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def _factor(value: float) -> str:
    """A factor after '·': negative numbers in parentheses (0.1·(-12))."""
    text = _num(value)
    return f"({text})" if value < 0 else text


def _vector(values: tuple[float, ...], digits: int = 6) -> str:
    parts = [_num(v, digits) for v in values]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


def _is_plain_sgd(run: Trajectory) -> bool:
    h = run.hyperparameters
    return run.optimizer == "sgd" and not h.get("weight_decay") and not h.get("momentum")


def table_line(run: Trajectory, k: int) -> str:
    """Row k ≥ 1 of the iteration table: how x_k came from x_{k−1}.

    >>> from gradsight.calculus.descent import minimize
    >>> table_line(minimize("x^2 - 4*x + 6", 8, lr=0.1), 2)
    'x_new = x_old − η·f′(x_old) = 6.8 − 0.1·9.6 = 5.84'
    >>> table_line(minimize("x^2 + y^2", [1, 2], lr=0.1), 1)
    '(x, y)_new = (x, y)_old − η·∇f(x, y)_old = (1, 2) − 0.1·(2, 4) = (0.8, 1.6)'
    """
    old, new = run.iterations[k - 1], run.iterations[k]
    one = len(run.variables) == 1
    point = run.variables[0] if one else f"({', '.join(run.variables)})"
    before, after = _vector(old.x, 10), _vector(new.x, 10)
    if not _is_plain_sgd(run):
        step = _factor(new.update[0]) if one else _vector(new.update)
        return f"{point}_new = {point}_old + Δ{point} = {before} + {step} = {after}"
    slope = _factor(old.grad[0]) if one else _vector(old.grad)
    rule = (f"{point}_new = {point}_old − η·f′({point}_old)" if one
            else f"{point}_new = {point}_old − η·∇f{point}_old")
    return f"{rule} = {before} − {_num(run.lr)}·{slope} = {after}"


def _run_message(run: Trajectory) -> dict[str, Any]:
    return {
        "lr": run.lr, "optimizer": run.optimizer,
        "iterates": [list(it.x) for it in run.iterations],
        "values": [it.f for it in run.iterations],
        "gradients": [list(it.grad) for it in run.iterations],
        "verdict": run.verdict, "verdict_label": run.verdict_label,
        "reason": run.verdict_reason,
        "table": [table_line(run, k) for k in range(1, len(run.iterations))],
    }


def _span(values: list[float]) -> tuple[float, float]:
    """The range of the finite ``values`` with a margin of a fifth on each side."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    margin = 0.2 * (high - low) if high > low else max(1.0, abs(low))
    return low - margin, high + margin


def _values(run: Trajectory, *grids: np.ndarray) -> np.ndarray:
    """f on arrays of coordinates (NaN where f is undefined)."""
    assert run.function is not None  # an expression's runs always carry it
    with np.errstate(all="ignore"):
        try:
            values = np.asarray(run.function(*grids), dtype=float)
        except (OverflowError, ValueError, ZeroDivisionError, TypeError):
            values = np.full(grids[0].shape, math.nan)
    return np.broadcast_to(values, grids[0].shape)


def descent_message(request: dict[str, Any]) -> dict[str, Any]:
    """The ``descent`` message for a checked request (:mod:`.protocol`): one run per η,
    and f over the region the iterates visit (a curve for f(x), a 40 × 40 grid for f(x, y)).

    Raises the library's errors (:class:`~gradsight.errors.ExpressionError` for a bad
    expression, :class:`~gradsight.errors.InvalidValueError` for a bad start)."""
    lrs = request.get("lrs") or [request["lr"]]
    comparison = compare(request["expression"], request["x0"], lrs=lrs,
                         optimizers=[request["optimizer"]], max_iter=request["steps"])
    runs = comparison.runs
    message: dict[str, Any] = {"type": "descent", "variables": list(runs[0].variables),
                               "expression": runs[0].expression,
                               "runs": [_run_message(run) for run in runs]}
    # the region the iterates visit — of the runs that converged, else of the first: one η
    # that runs off to 1e5 (diverged, or oscillating ever wider) would leave the others'
    # paths a dot
    settled = [run for run in runs if run.verdict.startswith("converged")] or runs[:1]
    points = [it.x for run in settled for it in run.iterations]
    if len(runs[0].variables) == 1:
        low, high = _span([p[0] for p in points])
        x = np.linspace(low, high, CURVE_POINTS)
        message["curve"] = {"x": x, "y": _values(runs[0], x)}
    else:
        (x_low, x_high), (y_low, y_high) = (_span([p[i] for p in points]) for i in (0, 1))
        x = np.linspace(x_low, x_high, CONTOUR_POINTS)
        y = np.linspace(y_low, y_high, CONTOUR_POINTS)
        grid_x, grid_y = np.meshgrid(x, y)  # rows follow y: z[i][j] = f(x[j], y[i])
        message["contour"] = {"x": x, "y": y, "z": _values(runs[0], grid_x, grid_y)}
    return message
