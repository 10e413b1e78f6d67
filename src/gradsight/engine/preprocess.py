"""Preparing arrays for training: a (stratified) train/test split and standardisation.

:mod:`gradsight.engine.data` re-exports :func:`train_test_split`, :func:`standardize` and
:class:`Standardized`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, InvalidValueError, ShapeError

__all__ = ["Standardized", "standardize", "train_test_split", "split_standardized"]


def train_test_split(X: ArrayLike, y: ArrayLike, test_size: float = 0.2, seed: int = 0,
                     stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
    """``X_train, X_test, y_train, y_test`` (scikit-learn's split, shuffled by ``seed``).

    With ``stratify`` and integer labels, each class keeps its share in both parts — unless
    a class has a single sample or the test part is smaller than the number of classes,
    where no stratified split exists and a plain shuffled split is made instead.

    >>> Xtr, Xte, ytr, yte = train_test_split(np.arange(20.0).reshape(10, 2), [0, 1] * 5)
    >>> Xtr.shape, Xte.shape, sorted(yte.tolist())
    ((8, 2), (2, 2), [0, 1])
    """
    from sklearn.model_selection import train_test_split as sk_split

    X_arr, y_arr = np.asarray(X), np.asarray(y)
    if X_arr.ndim == 0 or y_arr.ndim == 0 or X_arr.shape[0] != y_arr.shape[0]:
        raise ShapeError(f"X has shape {X_arr.shape} and y has shape {y_arr.shape}; "
                         f"they need the same number of samples (rows)")
    n = X_arr.shape[0]
    if n < 2:
        raise DataError(f"cannot split {n} sample(s): need at least 2")
    n_test = _test_count(test_size, n)
    labels = _stratify_labels(y_arr, n_test, n) if stratify else None
    parts = sk_split(X_arr, y_arr, test_size=n_test, random_state=seed, stratify=labels)
    return parts[0], parts[1], parts[2], parts[3]


def _test_count(test_size: float, n: int) -> int:
    if isinstance(test_size, bool):
        raise InvalidValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}")
    if isinstance(test_size, (int, np.integer)) and test_size >= 1:
        count = int(test_size)
    else:
        fraction = float(test_size)
        if not (0 < fraction < 1):
            raise InvalidValueError(f"test_size must be a fraction in (0, 1) or a count, "
                                    f"got {test_size!r}")
        count = math.ceil(fraction * n)
    if not 1 <= count <= n - 1:
        raise InvalidValueError(f"test_size {test_size!r} leaves {n - count} of {n} samples "
                                f"for training; need at least 1 in each part")
    return count


def _stratify_labels(y: np.ndarray, n_test: int, n: int) -> np.ndarray | None:
    if y.ndim != 1 or y.dtype.kind not in "iub" and not (
            y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0)):
        return None
    _, counts = np.unique(y, return_counts=True)
    k = len(counts)
    if counts.min() < 2 or n_test < k or n - n_test < k:
        return None
    return y


class Standardized(NamedTuple):
    """Result of :func:`standardize`: scaled arrays and the training statistics."""

    train: np.ndarray
    test: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray


def standardize(X_train: ArrayLike, X_test: ArrayLike | None = None) -> Standardized:
    """Scale each column to mean 0 and std 1 using the training set's statistics:
    x′ = (x − μ)/s. A constant column (s = 0) keeps s = 1, so it becomes 0, never NaN.

    >>> Xtr, Xte, mean, std = standardize([[1.0, 5.0], [3.0, 5.0]], [[2.0, 6.0]])
    >>> Xtr.tolist(), Xte.tolist(), mean.tolist(), std.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0]], [2.0, 5.0], [1.0, 1.0])
    """
    train = _matrix(X_train, "X_train")
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    test = None
    if X_test is not None:
        test = _matrix(X_test, "X_test")
        if test.shape[1] != train.shape[1]:
            raise ShapeError(f"X_test has {test.shape[1]} columns, X_train has {train.shape[1]}")
        test = (test - mean) / std
    return Standardized((train - mean) / std, test, mean, std)


def _matrix(X: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(X)
    if array.dtype.kind not in "fiub":
        raise DataError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64 if array.dtype != np.float32 else np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ShapeError(f"{name} must be a non-empty 2-D array (samples × features), "
                         f"got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains non-finite values")
    return array


#: with fewer samples than this nothing is held out: a test part would be too small to mean much
MIN_SPLIT_SAMPLES = 20


def split_standardized(X: np.ndarray, y: np.ndarray, test_size: float = 0.2, seed: int = 0,
                       stratify: bool = True
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None,
                                  np.ndarray, np.ndarray]:
    """``X_train, X_test, y_train, y_test, mean, std``: a data set as ``gradsight train`` and
    the doctor train on it — :func:`train_test_split` (stratified by class unless
    ``stratify`` is False, as for a regression target; shuffled by ``seed``), then
    :func:`standardize` with the training part's statistics, x′ = (x − mean)/std.

    With ``test_size`` 0 or fewer than ``MIN_SPLIT_SAMPLES`` samples nothing is held out:
    all samples train and ``X_test``, ``y_test`` are None.

    >>> X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    >>> X_train, X_test, y_train, y_test, mean, std = split_standardized(X, y, 0.25)
    >>> X_train.shape, X_test.shape, bool(abs(X_train.mean()) < 1e-12)
    ((15, 2), (5, 2), True)
    >>> split_standardized(X[:4], y[:4])[1] is None
    True
    """
    if test_size > 0 and np.shape(X)[0] >= MIN_SPLIT_SAMPLES:
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size, seed,
                                                            stratify=stratify)
    else:
        X_train, X_test, y_train, y_test = X, None, y, None
    scaled = standardize(X_train, X_test)
    return scaled.train, scaled.test, y_train, y_test, scaled.mean, scaled.std
