"""Applying an optimizer step with the NaN guard — cheaply (used by :func:`gradsight.fit`).

The guard promises: a step with a non-finite gradient is not applied, and an update that
makes a weight non-finite is undone. Checking costs passes over memory, so it is done with
the cheapest sufficient test:

* gradients: g·g (one BLAS dot) is finite iff every entry is — unless it overflows, in
  which case the exact ``isfinite`` test decides;
* the update, general optimizer: copy the weights, step, check with a dot, restore on
  failure;
* the update, plain SGD (``w ← w − η g``, no momentum or weight decay): no copy and no
  check are needed while ‖w‖ + η‖g‖ stays far below the largest float, since then every
  |wᵢ − η gᵢ| ≤ ‖w‖ + η‖g‖ is finite. ‖w‖ is tracked as an upper bound (triangle
  inequality) and recomputed when callbacks might have changed the weights. The update
  itself is a BLAS axpy (w += (−η)·g, in place, in chunks — see ``_CHUNK``), instead of
  NumPy's two passes through a temporary — the same rule as :class:`gradsight.optim.SGD`,
  fused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["StepApplier", "finite"]


def finite(array: np.ndarray) -> bool:
    """True if every entry of ``array`` is finite (fast path: one dot product)."""
    flat = array.reshape(-1)
    return math.isfinite(np.dot(flat, flat)) or bool(np.isfinite(array).all())


# SciPy ships its own OpenBLAS, beside NumPy's. Called on more than 10,000 entries, its axpy
# starts a second pool of BLAS threads, whose busy-waiting then fights NumPy's threads for
# the cores (a 2-core machine slows down several times). Chunks of 8,192 entries keep it on
# the calling thread.
_CHUNK = 8192


def _axpy(dtype: np.dtype) -> Any:
    try:
        from scipy.linalg import blas
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return None
    axpy = blas.saxpy if dtype == np.float32 else blas.daxpy

    def chunked(x: np.ndarray, y: np.ndarray, a: float) -> np.ndarray:
        for start in range(0, y.size, _CHUNK):
            axpy(x[start:start + _CHUNK], y[start:start + _CHUNK], a=a)
        return y

    chunked.blas = axpy  # type: ignore[attr-defined]
    return chunked


def _plain_sgd(optimizer: Any) -> bool:
    from .. import optim

    return (
        type(optimizer) is optim.SGD and optimizer.momentum == 0
        and optimizer.weight_decay == 0
    )


class StepApplier:
    """Checks gradients and applies ``optimizer.step(params, grads)`` under the guard."""

    def __init__(self, optimizer: Any, params: Sequence[np.ndarray],
                 grads: Sequence[np.ndarray], weights_may_change: bool) -> None:
        self.optimizer, self.params, self.grads = optimizer, list(params), list(grads)
        # flat views, made once (the arrays are updated in place, never replaced)
        self.flat_params = [p.reshape(-1) for p in self.params]
        self.flat_grads = [g.reshape(-1) for g in self.grads]
        self.weights_may_change = weights_may_change  # callbacks may edit the weights
        self.backup: list[np.ndarray] | None = None
        self.backup_is_current = False
        self.grad_norms = [math.inf] * len(self.params)
        self.axpy: Any = None
        contiguous = all(a.flags.c_contiguous for a in (*self.params, *self.grads))
        if _plain_sgd(optimizer) and contiguous:
            self.axpy = _axpy(self.params[0].dtype)
        if self.axpy is not None and not self._axpy_works_in_place():
            self.axpy = None
        if self.axpy is not None:
            self.limit = float(np.finfo(self.params[0].dtype).max) / 16
            self.bounds = self._exact_norms()

    def _axpy_works_in_place(self) -> bool:
        probe = np.zeros(4, dtype=self.params[0].dtype)
        return self.axpy.blas(np.ones_like(probe), probe, a=1.0) is probe and bool(probe.all())

    def _exact_norms(self) -> list[float]:
        return [math.sqrt(float(np.dot(p, p))) for p in self.flat_params]

    def nonfinite_gradients(self) -> list[int]:
        """Indices (in ``params`` order) of the gradients with a non-finite entry."""
        bad = []
        for index, flat in enumerate(self.flat_grads):
            squared = float(np.dot(flat, flat))
            self.grad_norms[index] = math.sqrt(squared)  # inf if the dot overflowed
            if not math.isfinite(squared) and not np.isfinite(flat).all():
                bad.append(index)
        return bad

    def apply(self) -> int | None:
        """Apply the step; if it made params[i] non-finite, undo it and return i."""
        self.backup_is_current = False
        if self.axpy is not None and self._sgd_is_safe():
            rate = self.optimizer.lr
            pairs = zip(self.flat_params, self.flat_grads, strict=True)
            for index, (param, grad) in enumerate(pairs):
                self.axpy(grad, param, a=-rate)  # w += (−η)·g, in place
                grown = self.bounds[index] + rate * self.grad_norms[index]
                self.bounds[index] = grown * (1 + 1e-6)  # ‖w − ηg‖ ≤ ‖w‖ + η‖g‖, + rounding
            return None
        return self._guarded_step()

    def _sgd_is_safe(self) -> bool:
        rate = self.optimizer.lr
        if self.weights_may_change:
            self.bounds = self._exact_norms()
        if self._within_limit(rate):
            return True
        self.bounds = self._exact_norms()  # the running bound may just be loose
        return self._within_limit(rate)

    def _within_limit(self, rate: float) -> bool:
        pairs = zip(self.bounds, self.grad_norms, strict=True)
        return all(bound + rate * norm < self.limit for bound, norm in pairs)

    def _guarded_step(self) -> int | None:
        if self.backup is None:
            self.backup = [np.empty_like(p) for p in self.params]
        for saved, param in zip(self.backup, self.params, strict=True):
            np.copyto(saved, param)
        self.backup_is_current = True
        if self.axpy is not None:
            rate = self.optimizer.lr
            for param, grad in zip(self.flat_params, self.flat_grads, strict=True):
                self.axpy(grad, param, a=-rate)
        else:
            self.optimizer.step(self.params, self.grads)
        for index, param in enumerate(self.params):
            if not finite(param):
                self.restore()
                return index
        if self.axpy is not None:
            self.bounds = self._exact_norms()
        return None

    def restore(self) -> None:
        """Undo the last step if it was taken with a backup (after a failure or Ctrl-C)."""
        if self.backup is not None and self.backup_is_current:
            for saved, param in zip(self.backup, self.params, strict=True):
                np.copyto(param, saved)
