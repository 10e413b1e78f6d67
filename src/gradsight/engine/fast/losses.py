"""The cost of a training batch in as few passes as NumPy allows.

:class:`BatchCost` gives what the fast step needs of a batch — C, ∂C/∂output written into a
buffer, and how many rows are classified right — with the same formulas as
:mod:`gradsight.engine.losses`. The softmax cross-entropy, the common case, has its own
path: one argmax serves both the predicted class and the row maximum that keeps e^z from
overflowing, and the row sums N·Σₖ e^z are one matrix–vector product; NumPy reduces many
short rows (a few classes) much faster column-wise, through one transposed copy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..losses import CrossEntropy, Loss

__all__ = ["BatchCost", "argmax_rows"]

#: rows this short are reduced column-wise (through a transposed copy)
_SHORT_ROWS = 32


def argmax_rows(output: np.ndarray) -> NDArray[np.intp]:
    """argmax of each row: ``np.argmax(output, axis=1)``, column-wise for short rows."""
    if output.shape[1] > _SHORT_ROWS:
        return np.argmax(output, axis=1)
    return np.argmax(np.ascontiguousarray(output.T), axis=0)


class BatchCost:
    """(C, ∂C/∂output into ``out``, number of rows predicted right) of a batch, for ``loss``."""

    def __init__(self, loss: Loss) -> None:
        self.loss = loss
        # a subclass may change the formulas: only CrossEntropy itself takes the own path
        self.softmax = type(loss) is CrossEntropy
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}  # index offsets, filled vectors

    def __call__(self, output: np.ndarray, target: np.ndarray, out: np.ndarray,
                 labels: np.ndarray | None) -> tuple[float, np.ndarray, int]:
        if self.softmax:
            return self._cross_entropy(output, target, out, labels)
        value, gradient = self.loss.cost_and_gradient(output, target, out)
        if labels is None:
            return value, gradient, 0
        if output.shape[1] == 1:
            predicted = self.loss.predicted_labels(output)
        else:
            predicted = argmax_rows(output)
        return value, gradient, int(np.count_nonzero(predicted == labels))

    def _cross_entropy(self, output: np.ndarray, target: np.ndarray, out: np.ndarray,
                       labels: np.ndarray | None) -> tuple[float, np.ndarray, int]:
        n, k = output.shape
        if k > _SHORT_ROWS:  # one argmax serves both: the predicted class and the maximum
            predicted = np.argmax(output, axis=1)
            row_max = output.reshape(-1)[predicted + self._offsets(n, k)]
        else:
            columns = np.ascontiguousarray(output.T)
            predicted, row_max = columns.argmax(axis=0), columns.max(axis=0)
        value = self._softmax(output, target, out, row_max)
        correct = 0 if labels is None else int(np.count_nonzero(predicted == labels))
        return value, out, correct

    def _offsets(self, n: int, k: int) -> NDArray[np.intp]:
        """0, k, 2k, …: added to a column index per row, the flat index into an (n, k) array."""
        cached = self._cache.get(("offsets", n, k))
        if cached is None:
            cached = self._cache[("offsets", n, k)] = np.arange(0, n * k, k)
        return cached

    def _filled(self, k: int, value: float, dtype: np.dtype) -> np.ndarray:
        """A vector of k entries equal to ``value`` (cached)."""
        cached = self._cache.get(("filled", k, value, dtype))
        if cached is None:
            cached = self._cache[("filled", k, value, dtype)] = np.full(k, value, dtype=dtype)
        return cached

    def _softmax(self, output: np.ndarray, target: np.ndarray, out: np.ndarray,
                 row_max: np.ndarray) -> float:
        """C, and (softmax(z) − onehot(y))/N written into ``out``, given max z per row."""
        n, k = output.shape
        np.subtract(output, row_max[:, None], out=out)  # z − max z ≤ 0: no overflow
        flat = out.reshape(-1)
        true_class = target + self._offsets(n, k)  # flat index of z_{n, yₙ}
        picked = flat[true_class]
        np.exp(out, out=out)
        scaled = out @ self._filled(k, n, out.dtype)  # N·Σₖ e^z per row
        np.divide(out, scaled[:, None], out=out)  # softmax(z)/N
        flat[true_class] -= 1.0 / n  # − onehot(y)/N
        # C = mean of log Σₖ e^z − z_y = mean(log(N·Σₖ e^z)) − log N − mean(z_y)
        return float(np.log(scaled).sum() - picked.sum()) / n - math.log(n)
