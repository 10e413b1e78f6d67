"""The iterates of :func:`gradsight.calculus.descent.minimize` and the verdicts on them: diverged,
converged, stalled, oscillating.

An :class:`Iterate` is one point of the path. Each test looks at the iterates so far (and,
for converged/stalled, probes f around the last one) and returns ``(verdict, reason)`` or
None; :mod:`gradsight.calculus.descent` documents the rules and re-exports :class:`Iterate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PROBE", "STEADY", "VERDICTS", "WINDOW", "ZIGZAG_SHARE", "Iterate", "diverged",
           "oscillating", "stationary", "zigzag"]

WINDOW = 8          # updates looked at by the oscillation test
STEADY = 1e-3       # relative change of the step size that counts as "not shrinking"
PROBE = 0.01        # probe distance, relative to max(1, |x_i|)
VERDICTS = ("converged", "diverged", "oscillating", "stalled", "max_iter")
ZIGZAG_SHARE = 0.5  # share of reversed steps from which a converged run "oscillated"


@dataclass(frozen=True)
class Iterate:
    """One point of the path: ``x_k`` after ``step = k`` updates, ``f(x_k)``, ``∇f(x_k)`` and
    ``update = x_k − x_{k−1}`` (zeros at step 0)."""

    step: int
    x: tuple[float, ...]
    f: float
    grad: tuple[float, ...]
    update: tuple[float, ...]


def diverged(it: Iterate, bound: float, names: tuple[str, ...]) -> tuple[str, str] | None:
    k, x = it.step, np.array(it.x)
    if not np.all(np.isfinite(x)):
        return "diverged", f"diverged at iteration {k}: x became {_point(names, x)}"
    size = float(np.max(np.abs(x)))
    if size > bound:
        return "diverged", (f"diverged at iteration {k}: |x| = {size:.3g} exceeds the bound "
                            f"{bound:.3g}")
    if not math.isfinite(it.f):
        return "diverged", f"diverged at iteration {k}: f = {it.f} at {_point(names, x)}"
    if not all(math.isfinite(g) for g in it.grad):
        return "diverged", f"diverged at iteration {k}: the gradient is not finite at " \
                           f"{_point(names, x)}"
    return None


def _point(names: Sequence[str], x: Sequence[float] | np.ndarray) -> str:
    return ", ".join(f"{v} = {float(c):.6g}" for v, c in zip(names, x, strict=True))


def stationary(value_at: Callable[[np.ndarray], float], names: Sequence[str],
               its: list[Iterate], tol: float) -> tuple[str, str] | None:
    """converged / stalled when the gradient or the steps are tiny (see
    :mod:`gradsight.calculus.descent`); ``value_at(x)`` is f at a point (NaN where undefined) and
    ``names`` are the variables, for the message."""
    it = its[-1]
    x = np.array(it.x)
    grad_norm = math.hypot(*it.grad)
    limit = tol * max(1.0, float(np.linalg.norm(x)))
    # two small steps in a row: momentum's single slow step at a turning point is no stop
    recent = [math.hypot(*i.update) for i in its[-2:] if i.step > 0]
    if grad_norm < tol:
        why = f"|grad| = {grad_norm:.3g} < tol {tol:.3g}"
    elif recent and max(recent) < limit:
        why = f"the step |Δx| = {recent[-1]:.3g} < tol·max(1, |x|) = {limit:.3g}"
    else:
        return None
    lower, flat, curvature = _probe(value_at, x, it.f)
    k = it.step
    if lower is not None:
        if curvature < -tol:
            hint = "x is near a maximum or saddle point (f″ < 0 there), not a minimum"
        elif grad_norm >= 1e3 * tol:
            hint = "the learning rate is too small for this gradient"
        elif grad_norm >= tol:      # σ′(−10) = 4.5e-5: steps of 4.5e-6 from a normal rate
            hint = (f"the gradient has nearly vanished (|grad| = {grad_norm:.3g}, a flat tail) "
                    "or the learning rate is too small")
        else:
            hint = "the gradient vanished on a slope (a flat tail, like a saturated sigmoid's)"
        return "stalled", (f"stalled at iteration {k}: {why} but f still decreases towards "
                           f"{_point(names, lower)} (curvature ≈ "
                           f"{curvature:.3g}): {hint}")
    if flat:
        return "stalled", (f"stalled at iteration {k}: {why} and f is flat around x "
                           "(no nearby point changes f): nothing to follow")
    return "converged", f"converged at iteration {k}: {why}"


def _probe(value_at: Callable[[np.ndarray], float], x: np.ndarray,
           fx: float) -> tuple[np.ndarray | None, bool, float]:
    """Look at f(x ± δ_i e_i): (the lowest point if below f(x), else None; whether no probe
    changes f; the curvature (f(x+δ) − 2f(x) + f(x−δ))/δ² along the lowest point's axis)."""
    lower, lowest, flat, curvature = None, fx, True, 0.0
    for i in range(x.size):
        delta = PROBE * max(1.0, abs(x[i]))
        points = [x.copy(), x.copy()]
        points[0][i] += delta
        points[1][i] -= delta
        values = [value_at(point) for point in points]
        bend = (values[0] - 2 * fx + values[1]) / delta**2
        for point, value in zip(points, values, strict=True):
            if not math.isfinite(value):
                continue
            noise = 4 * np.finfo(float).eps * max(abs(fx), abs(value))
            flat = flat and bool(abs(value - fx) <= noise)
            if value < fx - noise and value < lowest:
                lower, lowest, curvature = point, value, bend
    return lower, flat, curvature


def oscillating(its: list[Iterate], final: bool) -> tuple[str, str] | None:
    """The last WINDOW updates alternate in direction and do not shrink."""
    if len(its) <= WINDOW:
        return None
    updates = np.array([it.update for it in its[-WINDOW:]])
    if not np.all(np.sum(updates[1:] * updates[:-1], axis=1) < 0):
        return None
    first, last = np.linalg.norm(updates[0]), np.linalg.norm(updates[-1])
    ratio = last / first
    if abs(ratio - 1) <= STEADY or (final and ratio >= 1 - STEADY):
        return "oscillating", (
            f"oscillating at iteration {its[-1].step}: the last {WINDOW} updates alternate in "
            f"direction and do not shrink (|Δx| = {last:.3g}, {WINDOW - 1} updates before "
            f"{first:.3g}): the learning rate is too large")
    return None


def zigzag(its: list[Iterate]) -> str | None:
    """A note when the iterates jumped from one side of the minimum to the other on the way.

    The step reverses direction when two consecutive updates point apart (negative dot
    product; in one variable: the step changes sign). When it does so at ZIGZAG_SHARE or more
    of the consecutive pairs of updates, and at least 3 times, the run zig-zagged: x² with
    η = 0.9 gives x_{k+1} = x_k − 0.9·2x_k = −0.8·x_k, every step reversed; with η = 0.1,
    x_{k+1} = 0.8·x_k, none. A converged run says so, and that a smaller η would approach
    from one side; None when it went (mostly) straight.
    """
    updates = np.array([it.update for it in its[1:]], dtype=float)
    if len(updates) < 2:
        return None
    pairs = len(updates) - 1
    reversals = int(np.sum(np.sum(updates[1:] * updates[:-1], axis=1) < 0))
    if reversals < 3 or reversals < ZIGZAG_SHARE * pairs:
        return None
    return (f"oscillating on the way: the step reversed direction at {reversals} of {pairs} "
            "updates, so the iterates jumped from one side of the minimum to the other (the "
            "learning rate η is large for this function; a smaller η approaches from one "
            "side)")
