"""``w ← w − η·d`` in one pass: BLAS axpy on chunks (used by :mod:`gradsight.optim`'s SGD).

The update rule itself lives in :mod:`gradsight.optim`; this module only performs its last
line, ``param ← param − rate·d``, in as few passes over memory as NumPy and SciPy allow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["subtract_scaled"]

# ---- w ← w + α·d in one pass: BLAS axpy ------------------------------------------------------
# NumPy computes w − η·d in two passes (η·d into a scratch array, then the subtraction); BLAS
# axpy (y ← y + α·x, in place, multiply and add fused) in one. NumPy does not expose axpy, SciPy
# does — but SciPy ships its own OpenBLAS, beside NumPy's. Called on more than 10,000 entries,
# its axpy starts a second pool of BLAS threads, whose busy-waiting then fights NumPy's threads
# for the cores (a 2-core machine slows down several times). Chunks of 8,192 entries keep it on
# the calling thread. Arrays below 32 entries (descent's x) keep NumPy's two passes: SciPy need
# not be imported for them.
_CHUNK = 8192
_BLAS_MIN = 32
_AXPY: dict[np.dtype, Callable[..., Any] | None] = {}


def _blas_axpy(dtype: np.dtype) -> Callable[..., Any] | None:
    """SciPy's ``saxpy``/``daxpy`` for ``dtype`` if it updates y in place, else None."""
    if dtype not in _AXPY:
        _AXPY[dtype] = None
        try:
            from scipy.linalg import blas
        except ImportError:  # pragma: no cover - scipy comes with scikit-learn
            return None
        axpy = blas.saxpy if dtype == np.float32 else blas.daxpy
        probe = np.zeros(4, dtype=dtype)
        if axpy(np.ones_like(probe), probe, a=1.0) is probe and bool(probe.all()):
            _AXPY[dtype] = axpy
    return _AXPY[dtype]


class _Axpy:
    """``y ← y + α·x`` in place for two fixed arrays, by BLAS axpy on chunks (views made once)."""

    __slots__ = ("axpy", "chunks")

    def __init__(self, axpy: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> None:
        self.axpy = axpy
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)  # views: both are C-contiguous
        self.chunks = [(flat_x[start:start + _CHUNK], flat_y[start:start + _CHUNK])
                       for start in range(0, flat_y.size, _CHUNK)]

    @classmethod
    def build(cls, x: np.ndarray, y: np.ndarray) -> _Axpy | None:
        """The kernel for ``y += α·x``, or None where NumPy must do it (small, mixed dtypes,
        non-contiguous or read-only arrays, no SciPy)."""
        if (y.size < _BLAS_MIN or x.dtype != y.dtype or x.shape != y.shape
                or not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)):
            return None
        axpy = _blas_axpy(y.dtype)
        return None if axpy is None else cls(axpy, x, y)

    def __call__(self, alpha: float) -> None:
        axpy = self.axpy
        for x, y in self.chunks:
            axpy(x, y, a=alpha)


def subtract_scaled(param: np.ndarray, d: np.ndarray, rate: float,
                     state: dict[str, Any]) -> None:
    """``param ← param − rate·d`` in place: BLAS axpy where it applies, else two NumPy passes
    through the scratch buffer (``η·d``, then the subtraction)."""
    cached = state.get("axpy")  # (param, d, kernel or None), rebuilt when the arrays change
    if cached is None or cached[0] is not param or cached[1] is not d:
        cached = state["axpy"] = (param, d, _Axpy.build(d, param))
    kernel = cached[2]
    if kernel is not None:
        kernel(-rate)
        return
    scratch = state["scratch"]
    np.multiply(d, rate, out=scratch)
    param -= scratch
