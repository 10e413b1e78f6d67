"""Shared pieces of the walkthroughs: number formatting in the texts' style, and the checks
that compare the hand-derived gradient with the engine's and with central differences."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ...errors import ShapeError, require_finite

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
NUMERIC_STEP = 1e-6
# engine vs hand: the same formulas, so only round-off separates them
ENGINE_RTOL, ENGINE_ATOL = 1e-9, 1e-12
# central differences: error ~ h² f‴ + ε/h, hence the absolute floor
NUMERIC_RTOL, NUMERIC_ATOL = 1e-6, 1e-9


# ---- number formatting --------------------------------------------------------------------
def fmt(value: float) -> str:
    """4 significant digits with a true minus sign: ``fmt(-0.45016) == '−0.4502'``."""
    value = float(value)
    if value == 0:
        return "0"
    return f"{value:.4g}".replace("-", "−")


def factor(value: float) -> str:
    """A number as a factor in a product: negatives in parentheses."""
    text = fmt(value)
    return f"({text})" if value < 0 else text


def vec(values: ArrayLike) -> str:
    array = np.asarray(values, dtype=float).reshape(-1)
    return "(" + ", ".join(fmt(v) for v in array) + ")"


def mat(values: ArrayLike) -> str:
    array = np.atleast_2d(np.asarray(values, dtype=float))
    return "[" + ", ".join("[" + ", ".join(fmt(v) for v in row) + "]" for row in array) + "]"


def floats(name: str, values: ArrayLike) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=float))
    if array.ndim != 1 or array.size == 0:
        raise ShapeError(f"{name} must be a non-empty list of numbers, got shape {array.shape}")
    for value in array:
        require_finite(name, value)
    return array


# ---- agreement ----------------------------------------------------------------------------
def max_rel_error(a: ArrayLike, b: ArrayLike) -> float:
    """max |a − b| / max(|a|, |b|) over entries (0 where both are 0)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a_arr), np.abs(b_arr))
    diff = np.abs(a_arr - b_arr)
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return float(rel.max()) if rel.size else 0.0


def close(a: ArrayLike, b: ArrayLike, rtol: float, atol: float) -> bool:
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a_arr), np.abs(b_arr))
    return bool(np.all(np.abs(a_arr - b_arr) <= rtol * scale + atol))


def central_difference(cost: Callable[[], float], array: np.ndarray,
                        h: float = NUMERIC_STEP) -> np.ndarray:
    """∂C/∂θ ≈ (C(θ + h) − C(θ − h)) / 2h for every entry θ of ``array`` (changed in place
    and restored)."""
    grad = np.zeros_like(array, dtype=float)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + h
        plus = cost()
        array[index] = original - h
        minus = cost()
        array[index] = original
        grad[index] = (plus - minus) / (2 * h)
    return grad


def check_line(agree: bool, engine_error: float, numeric_error: float) -> str:
    verdict = "agree with" if agree else "DO NOT agree with"
    return (f"Check: the engine's backward pass and a central difference {verdict} the chain "
            f"rule (max relative error {engine_error:.1e} engine, {numeric_error:.1e} numeric)")


#: a walkthrough's lines are long (a network's matrices); wrapped, they stay in the cell
PRE_STYLE = "white-space: pre-wrap; overflow-wrap: anywhere; overflow-x: auto; max-width: 100%"


def html_lines(title: str, lines: Sequence[str]) -> str:
    body = "\n".join(html.escape(line) for line in lines)
    return (f"<div><strong>{html.escape(title)}</strong>"
            f'<pre style="{PRE_STYLE}">{body}</pre></div>')


def as_tuple(array: ArrayLike) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(array).reshape(-1))


def sup(number: int) -> str:
    return str(number).translate(_SUPERSCRIPT)
