"""The last/first hidden-layer gradient ratio: how much faster the last hidden layer learns.

Nielsen (chapter 5) calls ‖∂C/∂bˡ‖ the *speed of learning* of layer l. In a deep sigmoid
network the backward pass multiplies δ by σ′(z) ≤ 0.25 at every layer, so the first hidden
layer learns far more slowly than the last: the ratio ‖∂C/∂b‖(last hidden) / ‖∂C/∂b‖(first
hidden) is ≫ 1 when the gradient vanishes toward the input, ≈ 1 when it flows, ≪ 1 when it
explodes. Every place that reports this ratio — the verdict rules (per recorded step), the
doctor's runners (engine and PyTorch) and the lab's experiments — computes it here, with one
convention where the division is undefined.
"""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["speed_ratio"]


@overload
def speed_ratio(first: float, last: float) -> float: ...
@overload
def speed_ratio(first: np.ndarray, last: np.ndarray) -> np.ndarray: ...


def speed_ratio(first: ArrayLike, last: ArrayLike) -> float | np.ndarray:
    """‖∂C/∂b‖ of the last hidden layer over that of the first: ``last / first``.

    Works elementwise on arrays (one ratio per recorded step) and returns a float for two
    numbers. Where the division is undefined the convention is:

    * ``first = 0`` and ``last > 0`` → ``inf``: the first layer gets no gradient at all while
      the last still learns — the gradient has vanished completely;
    * ``first = 0`` and ``last = 0`` → ``nan``: no gradient anywhere, nothing to compare;
    * a NaN or infinite speed → ``nan``: a broken run has no meaningful ratio (its non-finite
      values are a finding of their own).

    >>> speed_ratio(0.25, 1.0)
    4.0
    >>> speed_ratio(0.0, 1.0), speed_ratio(0.0, 0.0), speed_ratio(float("inf"), 1.0)
    (inf, nan, nan)
    >>> speed_ratio(np.array([0.5, 0.0]), np.array([1.0, 2.0])).tolist()
    [2.0, inf]
    """
    low = np.asarray(first, dtype=np.float64)
    high = np.asarray(last, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(low > 0, high / np.where(low > 0, low, 1.0),
                         np.where(high > 0, np.inf, np.nan))
    ratio = np.where(np.isfinite(low) & np.isfinite(high), ratio, np.nan)
    return float(ratio) if ratio.ndim == 0 else ratio
