"""Small data sets to train on: the classic toy problems, scikit-learn's digits, and CSV files.

Every generator takes an explicit ``seed`` (same seed, same numbers) and returns a
:class:`Dataset` whose ``X`` is a float64 matrix (one row per sample) and whose ``y`` holds
integer class labels ``0..K−1`` (or floats for a regression target):

    xor       the 4 corners of the unit square, y = x₁ XOR x₂ (or noisy samples around them)
    circles   two concentric rings (scikit-learn ``make_circles``)
    moons     two interleaving half moons (scikit-learn ``make_moons``)
    spirals   K interleaved spiral arms (the cs231n example)
    gauss     K Gaussian clusters (scikit-learn ``make_blobs``)
    digits    scikit-learn's bundled 8×8 handwritten digits, pixels scaled to [0, 1]

>>> ds = load("xor")
>>> ds.X.tolist(), ds.y.tolist()
([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0])
>>> moons(n=10).X.shape
(10, 2)
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import (
    DataError,
    InvalidValueError,
    ShapeError,
    UnknownNameError,
    require_positive_int,
)
from .csvdata import CsvReading, read_csv
from .preprocess import Standardized, standardize, train_test_split

__all__ = [
    "Dataset", "xor", "circles", "moons", "spirals", "gauss", "digits", "from_csv", "load",
    "names", "train_test_split", "standardize", "Standardized",
]


@dataclass(repr=False)
class Dataset:
    """Samples ``X`` (n × d, float64) with targets ``y`` (n,).

    ``n_classes`` is K for class labels ``0..K−1`` and ``None`` for a regression target;
    ``classes`` holds the original label of each code (``classes[k]`` was mapped to ``k``).
    """

    X: NDArray[np.float64]
    y: NDArray[Any]
    name: str
    n_classes: int | None
    feature_names: list[str] = field(default_factory=list)
    classes: list[Any] | None = None
    target_name: str = "y"
    #: how a CSV file was read: every guess made (None for the built-in data sets)
    reading: CsvReading | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2 or self.X.shape[0] == 0 or self.X.shape[1] == 0:
            raise DataError(f"dataset {self.name!r}: X must be a non-empty 2-D array, "
                            f"got shape {self.X.shape}")
        if not np.all(np.isfinite(self.X)):
            raise DataError(f"dataset {self.name!r}: X contains non-finite values")
        y = np.asarray(self.y)
        if y.shape != (self.X.shape[0],):
            raise ShapeError(f"dataset {self.name!r}: y has shape {y.shape}, "
                             f"expected ({self.X.shape[0]},) to match X {self.X.shape}")
        self.y = _check_labels(y, self.n_classes, self.name)
        if not self.feature_names:
            self.feature_names = [f"x{i + 1}" for i in range(self.X.shape[1])]
        if len(self.feature_names) != self.X.shape[1]:
            raise ShapeError(f"dataset {self.name!r}: {len(self.feature_names)} feature names "
                             f"for {self.X.shape[1]} columns")

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def __repr__(self) -> str:
        task = (f"{self.n_classes} classes" if self.n_classes is not None
                else f"regression target {self.target_name!r}")
        return (f"Dataset({self.name!r}: {self.n_samples} samples × {self.n_features} features, "
                f"{task})")


def _check_labels(y: np.ndarray, n_classes: int | None, name: str) -> np.ndarray:
    if n_classes is None:
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise DataError(f"dataset {name!r}: y contains non-finite values")
        return y
    if n_classes < 1:
        raise InvalidValueError(f"dataset {name!r}: n_classes must be ≥ 1, got {n_classes}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DataError(f"dataset {name!r}: y contains non-finite values")
    if y.dtype.kind not in "iu" and not np.all(np.mod(y, 1) == 0):
        raise DataError(f"dataset {name!r}: class labels must be integers 0..{n_classes - 1}")
    labels = y.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise DataError(f"dataset {name!r}: label {int(bad[0])} out of range; "
                        f"allowed 0..{n_classes - 1}")
    return labels


def _check_noise(noise: float, strictly_positive: bool = False) -> float:
    try:
        value = float(noise)
    except (TypeError, ValueError):
        raise InvalidValueError(f"noise must be a finite number ≥ 0, got {noise!r}") from None
    if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        allowed = "> 0" if strictly_positive else "≥ 0"
        raise InvalidValueError(f"noise must be a finite number {allowed}, got {noise!r}")
    return value


# ---- generators ---------------------------------------------------------------------------
_XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_Y = np.array([0, 1, 1, 0])


def xor(n: int | None = None, noise: float = 0.0, seed: int = 0) -> Dataset:
    """XOR: y = 1 when exactly one of x₁, x₂ is 1 — no single neuron can separate it.

    With ``n=None`` the 4 classic corners (plus Gaussian noise of std ``noise`` if > 0);
    with ``n`` samples, each a random corner plus noise.

    >>> xor(n=8, noise=0.1).X.shape
    (8, 2)
    """
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    if n is None:
        corners = np.arange(4)
    else:
        corners = rng.integers(0, 4, size=require_positive_int("n", n))
    X = _XOR_X[corners] + (rng.normal(0.0, noise, (len(corners), 2)) if noise else 0.0)
    return Dataset(X, _XOR_Y[corners], "xor", 2)


def circles(n: int = 200, noise: float = 0.1, factor: float = 0.5, seed: int = 0) -> Dataset:
    """Two concentric rings, the inner one ``factor`` times the outer (``make_circles``)."""
    from sklearn.datasets import make_circles

    n = require_positive_int("n", n, 2)
    if not (isinstance(factor, (int, float)) and 0 < factor < 1):
        raise InvalidValueError(f"factor must be between 0 and 1 (exclusive), got {factor!r}")
    X, y = make_circles(n_samples=n, noise=_check_noise(noise) or None, factor=factor,
                        random_state=seed)
    return Dataset(X, y, "circles", 2)


def moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles (scikit-learn ``make_moons``)."""
    from sklearn.datasets import make_moons

    n = require_positive_int("n", n, 2)
    X, y = make_moons(n_samples=n, noise=_check_noise(noise) or None, random_state=seed)
    return Dataset(X, y, "moons", 2)


def spirals(n: int = 300, classes: int = 3, noise: float = 0.2, seed: int = 0) -> Dataset:
    """``classes`` spiral arms (cs231n): arm k has radius r ∈ [0, 1] and angle
    θ = 4k + 4r + noise·N(0, 1), the point is (r sin θ, r cos θ). Not linearly separable.

    >>> ds = spirals(n=7, classes=3)
    >>> ds.X.shape, ds.y.tolist()
    ((7, 2), [0, 0, 0, 1, 1, 2, 2])
    """
    classes = require_positive_int("classes", classes, 2)
    n = require_positive_int("n", n, classes)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    sizes = [n // classes + (1 if k < n % classes else 0) for k in range(classes)]
    parts_X, parts_y = [], []
    for k, size in enumerate(sizes):
        r = np.linspace(0.0, 1.0, size)
        theta = np.linspace(4.0 * k, 4.0 * (k + 1), size) + rng.normal(0.0, 1.0, size) * noise
        parts_X.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        parts_y.append(np.full(size, k))
    return Dataset(np.vstack(parts_X), np.concatenate(parts_y), "spirals", classes)


def gauss(n: int = 200, classes: int = 2, noise: float = 1.0, seed: int = 0) -> Dataset:
    """``classes`` Gaussian clusters with standard deviation ``noise`` (``make_blobs``)."""
    from sklearn.datasets import make_blobs

    classes = require_positive_int("classes", classes, 2)
    n = require_positive_int("n", n, classes)
    X, y = make_blobs(n_samples=n, centers=classes, n_features=2,
                      cluster_std=_check_noise(noise, strictly_positive=True), random_state=seed)
    return Dataset(X, y, "gauss", classes)


def digits() -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 samples, 64 pixels /16 → [0, 1], 10 classes)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    return Dataset(bunch.data / 16.0, bunch.target, "digits", 10, names,
                   classes=list(range(10)))


_GENERATORS: dict[str, Callable[..., Dataset]] = {
    "xor": xor, "circles": circles, "moons": moons, "spirals": spirals, "gauss": gauss,
    "digits": digits,
}


def names() -> list[str]:
    """Names :func:`load` knows (besides ``.csv`` paths)."""
    return sorted(_GENERATORS)


# ---- CSV ----------------------------------------------------------------------------------
def from_csv(path: str | os.PathLike[str], target: str | int | None = None,
             task: str = "auto", header: bool | None = None, delimiter: str | None = None,
             decimal: str | None = None, categorical: str | None = None,
             missing: str | None = None) -> Dataset:
    """Read a CSV file; column ``target`` (a name, or a number counting the first column as
    1; default: the last) is ``y``, the other columns are the features.

    What is not given is guessed and each guess is recorded in ``Dataset.reading`` (a
    :class:`~gradsight.engine.csvdata.CsvReading`; its ``lines()`` say it): the delimiter
    (``csv.Sniffer``) and the decimal mark, whether the first row is a header (text above
    columns of numbers) and whether the target is class labels (text, or whole numbers with
    at most 10 distinct values, or at most 20 and fewer than half the rows) or a number to
    regress (``task="classification"`` or ``"regression"`` decides). Text feature columns
    are refused unless ``categorical="onehot"``, missing cells unless ``missing="drop"`` or
    ``"mean"``. Errors name the row (the line number in the file) and the column.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "body.csv"
    >>> _ = path.write_text("height;weight\\n1,62;60,5\\n1,80;81\\n1,75;70,25\\n")
    >>> ds = from_csv(path)
    >>> ds.X.ravel().tolist(), ds.y.tolist(), ds.n_classes
    ([1.62, 1.8, 1.75], [60.5, 81.0, 70.25], None)
    >>> ds.reading.delimiter, ds.reading.decimal, ds.reading.header
    (';', ',', True)
    >>> ds.reading.task_reason
    "target: column 2 'weight' holds numbers with decimals → regression"
    """
    table = read_csv(Path(path), target, task, header, delimiter, decimal, categorical, missing)
    return Dataset(table.X, table.y, Path(path).stem, table.n_classes, table.feature_names,
                   classes=table.classes, target_name=table.target_name, reading=table.reading)


def load(name_or_path: str | os.PathLike[str], target: str | int | None = None,
         **kwargs: Any) -> Dataset:
    """A data set by name (``xor``, ``circles``, ``moons``, ``spirals``, ``gauss``,
    ``digits``; keyword arguments go to the generator) or from a ``.csv`` path.

    >>> load("spirals", n=30, classes=2).n_classes
    2
    """
    text = os.fspath(name_or_path)
    is_csv = text.lower().endswith(".csv")
    key = text.strip().lower()
    if not is_csv and key not in _GENERATORS:
        raise UnknownNameError("dataset", text, [*names(), "<path>.csv"])
    if target is not None and not is_csv:
        raise InvalidValueError(f"target applies to CSV files only, not to dataset {key!r}")
    reader = from_csv if is_csv else _GENERATORS[key]
    allowed = [p for p in inspect.signature(reader).parameters if p not in ("path", "target")]
    for option in kwargs:
        if option not in allowed:
            raise InvalidValueError(f"dataset {text!r} has no option {option!r}; "
                                    f"options: {', '.join(allowed) or 'none'}")
    return from_csv(text, target, **kwargs) if is_csv else reader(**kwargs)
