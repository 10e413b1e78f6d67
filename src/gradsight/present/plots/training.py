"""Training figures: loss and accuracy curves per epoch, and decision boundaries of 2-D data.

Pure functions: a ``History`` (or its epoch dicts, or the JSON of ``gradsight train --json``)
and a model in, a matplotlib ``Figure`` out; save with :func:`gradsight.plots.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ...errors import InvalidValueError, ShapeError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_history", "plot_decision_boundary", "plot_training", "predict_classes"]

_TRAIN_COLOR, _VAL_COLOR = "tab:blue", "tab:orange"


def _epochs(history: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Epoch dicts and stop reason from a History, its ``to_dict()``, CLI JSON or a list."""
    stopped = getattr(history, "stopped", None)
    if hasattr(history, "epochs"):
        rows = history.epochs
    elif isinstance(history, Mapping):
        stopped = history.get("stopped")
        rows = history.get("epochs", history.get("history"))
        if rows is None:
            raise InvalidValueError("history dict needs an 'epochs' or 'history' list")
    elif isinstance(history, Sequence) and not isinstance(history, str):
        rows = history
    else:
        raise InvalidValueError(f"cannot plot a history of type {type(history).__name__}")
    rows = [dict(row) for row in rows]
    if not rows and not stopped:  # a run stopped in its first epoch is still worth a figure
        raise InvalidValueError("history has no epochs to plot")
    return rows, stopped


def _series(rows: list[dict[str, Any]], key: str) -> np.ndarray | None:
    """The column ``key`` as floats (NaN where missing or non-finite); None if all missing."""
    values = [row.get(key) for row in rows]
    if all(v is None for v in values):
        return None
    return np.array([float(v) if v is not None else math.nan for v in values])


def _draw_curves(ax: Axes, epochs: np.ndarray, train: np.ndarray | None,
                 val: np.ndarray | None, label: str) -> None:
    for values, name, color in ((train, "train", _TRAIN_COLOR), (val, "validation", _VAL_COLOR)):
        if values is not None:
            ax.plot(epochs, values, color=color, label=f"{name} {label}",
                    marker="o" if len(epochs) <= 20 else None, markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def _draw_no_epoch(ax: Axes, stopped: str | None) -> None:
    """The loss panel of a run that stopped before its first epoch ended: say why."""
    import textwrap

    ax.set_axis_off()
    ax.set_title("cost C per epoch")
    reason = textwrap.fill(f"stopped: {stopped}", 48)
    ax.text(0.5, 0.5, f"no epoch completed\n\n{reason}", ha="center", va="center",
            fontsize="small", wrap=True, transform=ax.transAxes)


def _draw_history(axes: Sequence[Axes], rows: list[dict[str, Any]], stopped: str | None) -> None:
    if not rows:
        _draw_no_epoch(axes[0], stopped)
        return
    epochs = np.array([row.get("epoch", i) for i, row in enumerate(rows)], dtype=float) + 1
    loss, val_loss = _series(rows, "loss"), _series(rows, "val_loss")
    _draw_curves(axes[0], epochs, loss, val_loss, "loss")
    finite = np.concatenate([v[np.isfinite(v)] for v in (loss, val_loss) if v is not None])
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        axes[0].set_yscale("log")  # losses often fall by orders of magnitude
    axes[0].set_title("cost C per epoch" + (f"\nstopped: {stopped}"[:90] if stopped else ""))
    if len(axes) > 1:
        _draw_curves(axes[1], epochs, _series(rows, "accuracy"), _series(rows, "val_accuracy"),
                     "accuracy")
        axes[1].set_ylim(-0.02, 1.02)
        axes[1].set_title("accuracy per epoch")


def _has_accuracy(rows: list[dict[str, Any]]) -> bool:
    return any(row.get(k) is not None for row in rows for k in ("accuracy", "val_accuracy"))


def plot_history(history: Any) -> Figure:
    """Loss (and, for class labels, accuracy) per epoch, train and validation.

    ``history`` is a :class:`gradsight.History`, its ``to_dict()``, the JSON document of
    ``gradsight train --json`` or a list of epoch dicts (keys epoch, loss, accuracy,
    val_loss, val_accuracy).
    """
    from matplotlib.figure import Figure

    rows, stopped = _epochs(history)
    panels = 2 if _has_accuracy(rows) else 1
    fig = Figure(figsize=(5.0 * panels, 3.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _draw_history(axes, rows, stopped)
    return fig


# ---- decision boundary --------------------------------------------------------------------
def _output_is_probability(model: Any) -> bool:
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    activation = getattr(layers[-1], "activation", None)
    return getattr(activation, "base_name", getattr(activation, "name", None)) == "sigmoid"


def predict_classes(model: Any, X: ArrayLike) -> np.ndarray:
    """Class labels a model assigns to the rows of ``X``.

    ``model`` has ``predict(X)`` or is a callable. Outputs with K ≥ 2 columns are
    scores (logits or probabilities): the class is the argmax. One output column is the
    score of class 1: a logit is class 1 when > 0, a sigmoid probability when > 0.5.
    """
    predict: Callable[[np.ndarray], Any] = getattr(model, "predict", model)
    output = np.asarray(predict(np.asarray(X)))
    if output.ndim == 1:
        if output.dtype.kind in "iub":
            return output.astype(np.int64)
        output = output[:, None]
    if output.shape[1] >= 2:
        return np.argmax(output, axis=1)
    threshold = 0.5 if _output_is_probability(model) else 0.0
    return (output[:, 0] > threshold).astype(np.int64)


def _grid(X: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * np.maximum(high - low, 1e-9) + 1e-9 * (high == low)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], resolution)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], resolution)
    return np.meshgrid(xs, ys)


def _check_2d(X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X_arr, y_arr = np.asarray(X, dtype=float), np.asarray(y).reshape(-1)
    if X_arr.ndim != 2 or X_arr.shape[1] != 2:
        raise ShapeError(f"a decision boundary needs 2-D inputs (n × 2), got X of shape "
                         f"{X_arr.shape}")
    if len(y_arr) != len(X_arr) or len(X_arr) == 0:
        raise ShapeError(f"X has {len(X_arr)} rows and y has {len(y_arr)}; need the same, ≥ 1")
    return X_arr, y_arr


def _draw_boundary(ax: Axes, model: Any, X: np.ndarray, y: np.ndarray,
                   resolution: int) -> None:
    from matplotlib.colors import ListedColormap

    gx, gy = _grid(X, resolution)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    with np.errstate(all="ignore"):  # a diverged model overflows: draw it, do not warn
        labels = predict_classes(model, grid).reshape(gx.shape)
        predicted = predict_classes(model, X)
    k = int(max(labels.max(), np.max(y) if y.size else 0)) + 1
    colors = ListedColormap([f"C{i % 10}" for i in range(k)])
    ax.contourf(gx, gy, labels, levels=np.arange(k + 1) - 0.5, cmap=colors, alpha=0.3)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap=colors, vmin=-0.5, vmax=k - 0.5,
               edgecolors="k", linewidths=0.5, s=18)
    accuracy = float(np.mean(predicted == y))
    ax.set_title(f"decision regions (accuracy {accuracy:.1%})")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def plot_decision_boundary(model: Any, X: ArrayLike, y: ArrayLike,
                           resolution: int = 200) -> Figure:
    """The class ``model`` predicts over the plane of 2-D inputs (filled regions) with the
    samples ``X`` coloured by their true label ``y`` on top. ``model`` has ``predict`` or
    is a callable (see :func:`predict_classes`)."""
    from matplotlib.figure import Figure

    X_arr, y_arr = _check_2d(X, y)
    if not (isinstance(resolution, int) and 2 <= resolution <= 2000):
        raise InvalidValueError(f"resolution must be an integer in 2..2000, got {resolution!r}")
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    _draw_boundary(fig.subplots(), model, X_arr, y_arr.astype(np.int64), resolution)
    return fig


def plot_training(history: Any, model: Any = None, X: ArrayLike | None = None,
                  y: ArrayLike | None = None, resolution: int = 150) -> Figure:
    """Loss and accuracy curves, plus the decision boundary when ``model``, ``X`` (2-D
    inputs) and class labels ``y`` are given."""
    from matplotlib.figure import Figure

    rows, stopped = _epochs(history)
    boundary = model is not None and X is not None and y is not None
    if boundary:
        X_arr, y_arr = _check_2d(X, y)  # type: ignore[arg-type]
    panels = (2 if _has_accuracy(rows) else 1) + int(boundary)
    fig = Figure(figsize=(4.6 * panels, 3.9), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _draw_history(axes[: panels - int(boundary)], rows, stopped)
    if boundary:
        _draw_boundary(axes[-1], model, X_arr, y_arr.astype(np.int64), resolution)
    return fig
