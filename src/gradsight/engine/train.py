"""Training: ``fit`` runs epochs of mini-batch steps — and hooks to watch them.

One optimizer step on a batch (X_b, y_b) is the articles' recipe
(:mod:`gradsight.engine.step`):

    ŷ = model.forward(X_b)                       forward propagation
    C, ∂C/∂ŷ = loss.cost_and_gradient(ŷ, y_b)    the cost and its gradient
    model.backward(∂C/∂ŷ)                        backpropagation fills ∂C/∂W, ∂C/∂b
    optimizer.step(params, grads)                w_new = w_old − η ∂C/∂w  (SGD)

``fit`` chooses once, at the start of a call, who takes the steps: the plain step above
(``fast=False``), or the fast step of :mod:`gradsight.engine.fast.step` (the default), which
computes the same numbers with fewer passes over memory — buffers, BLAS kernels, a cheaper
NaN guard and, with plain SGD, the update fused into the backward pass on the steps no
callback looks at.

Callbacks see every step: ``on_after_backward(ctx)`` when the gradients are final and the
update has not happened yet, ``on_batch_end(ctx)`` after the update; ``ctx`` holds the model
(with its layer caches and gradients), the batch, its output and cost, and ``ctx.norms``, the
step's squared norms on request. (The fast step skips the per-step hooks on the steps a
callback says it does not look at: :meth:`Callback.looks_at`.)

Per-epoch ``loss`` and ``accuracy`` are averages over the epoch's batches, each computed on
the model *before* that batch's update (Keras' convention: no extra pass over the data);
``val_loss``/``val_accuracy`` are computed on the model at the end of the epoch. Accuracy is
defined as in :mod:`gradsight.engine.losses` (None for regression targets).

NaN guard: if the cost or a gradient is not finite, the step is not applied and training
stops; if an update makes a weight non-finite, it is undone. ``History.stopped`` then says
what, where (epoch, step, layer) and that the model keeps the last finite weights; the
message starts with "non-finite". Ctrl-C stops cleanly too (``stopped == "interrupted"``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .. import optim as _optim
from ..errors import DataError, InvalidValueError, ShapeError, require_positive_int
from .callbacks import Callback, History, TrainContext, has_hooks, squared_norm
from .fast.step import FastStep
from .loop import Run
from .losses import Loss
from .losses import loss as _get_loss
from .model import Sequential
from .step import PlainStep

__all__ = ["Callback", "History", "TrainContext", "fit", "fit_one_of_many"]


# ---- input checks ------------------------------------------------------------------------
def _check_data(
    model: Sequential, loss: Loss, X: ArrayLike, y: ArrayLike, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(X in the model's dtype, the target as the loss uses it, class labels or None, ‖X‖²)."""
    X_array = model.check_input(X, f"{what} X")
    if X_array.shape[0] == 0:
        raise DataError(f"{what} X is empty: no samples to train on")
    sq_norm = squared_norm(X_array)  # finite iff X is, unless the squares overflow
    if not math.isfinite(sq_norm) and not np.isfinite(X_array).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(X_array))[0])
        raise DataError(f"{what} X[{row}, {col}] is {X_array[row, col]}: data must be finite")
    y_array = np.asarray(y)
    if y_array.ndim == 0 or y_array.shape[0] != X_array.shape[0]:
        raise ShapeError(
            f"{what} X has {X_array.shape[0]} samples but y has shape {y_array.shape}: "
            "one target per row of X"
        )
    try:
        target = loss.prepare_target(y_array, (X_array.shape[0], model.n_outputs), model.dtype)
    except (DataError, ShapeError, InvalidValueError) as error:
        raise type(error)(f"{what} y: {error}") from None
    return X_array, target, loss.labels(target), sq_norm


def evaluate(
    model: Sequential, X: ArrayLike, y: ArrayLike, loss: str | Loss = "quadratic",
    batch_size: int = 4096,
) -> tuple[float, float | None]:
    """(cost, accuracy) of ``model`` on (X, y); accuracy None for regression targets."""
    cost = _get_loss(loss)
    X_array, target, labels, _ = _check_data(model, cost, X, y, "evaluation")
    return _evaluate(model, cost, X_array, target, labels, batch_size)


def _evaluate(model: Sequential, loss: Loss, X: np.ndarray, target: np.ndarray,
              labels: np.ndarray | None, batch_size: int = 4096) -> tuple[float, float | None]:
    total, correct, n = 0.0, 0, X.shape[0]
    for start in range(0, n, batch_size):
        output = X[start:start + batch_size]
        for layer in model.layers:
            output = layer.forward(output)
        total += loss.cost(output, target[start:start + batch_size]) * output.shape[0]
        if labels is not None:
            predicted = loss.predicted_labels(output)
            correct += int(np.count_nonzero(predicted == labels[start:start + batch_size]))
    return total / n, (None if labels is None else correct / n)


class _ProgressBar:
    """A rich progress bar on stderr (a no-op when disabled or stderr is not a terminal)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
            )
            self.task = self.bar.add_task("training", total=total)

    def __enter__(self) -> _ProgressBar | None:
        if self.bar is None:
            return None
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self) -> None:
        self.bar.advance(self.task)

    def describe(self, text: str) -> None:
        self.bar.update(self.task, description=text)


def _make_optimizer(optimizer: Any) -> Any:
    if optimizer is None:
        return _optim.SGD(lr=0.01)  # torch's default 1e-3 is slow for a first run
    if isinstance(optimizer, str):
        return _optim.get(optimizer)
    if not callable(getattr(optimizer, "step", None)):
        raise InvalidValueError(
            f"optimizer must be a gradsight.optim object (e.g. optim.SGD(lr=0.1)) or a name, "
            f"got {optimizer!r}"
        )
    return optimizer


def _train(run: Run, validation: tuple | None, bar: _ProgressBar | None) -> None:
    ctx, history, step = run.ctx, run.history, run.step
    # after fused steps the stored gradients are written when someone may read them: before
    # the epoch hooks and before a validation pass (which overwrites the cached a), and at
    # the end
    sync_each_epoch = validation is not None or any(
        has_hooks(callback, ("on_epoch_end",)) for callback in run.callbacks)
    try:
        for callback in run.callbacks:
            callback.on_train_begin(ctx)
        for epoch in range(ctx.epochs):
            if not run.epoch(epoch, bar):
                break
            if sync_each_epoch:
                step.sync()
            entry = history.epochs[-1]
            if validation is not None:
                entry["val_loss"], entry["val_accuracy"] = _evaluate(
                    run.model, run.loss, *validation
                )
            if bar is not None:
                accuracy = "" if entry["accuracy"] is None else f" accuracy {entry['accuracy']:.3f}"
                bar.describe(f"epoch {epoch + 1}/{ctx.epochs} loss {entry['loss']:.4g}{accuracy}")
            for callback in run.callbacks:
                callback.on_epoch_end(ctx)
            if ctx.stop_training:
                history.stopped = ctx.stop_reason or "stopped by a callback"
                break
        step.sync()
    except KeyboardInterrupt:
        if not all(np.isfinite(p).all() for p in run.params):  # inside an overflowing step
            step.restore()
        history.stopped = "interrupted"
    try:  # a Ctrl-C in a callback's last hook still leaves the model and history usable
        for callback in run.callbacks:
            callback.on_train_end(ctx)
    except KeyboardInterrupt:
        history.stopped = history.stopped or "interrupted"


def fit(
    model: Sequential,
    X: ArrayLike,
    y: ArrayLike,
    loss: str | Loss = "quadratic",
    optimizer: Any = None,
    epochs: int = 10,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = 0,
    validation: tuple[ArrayLike, ArrayLike] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    fast: bool = True,
) -> History:
    """Train ``model`` on (X, y) by mini-batch gradient descent; return the :class:`History`.

    ``loss`` is a name (``"quadratic"``, ``"bce_with_logits"``, ``"cross_entropy"``) or a
    :class:`~gradsight.nn.Loss`; ``optimizer`` a :mod:`gradsight.optim` object (default
    ``SGD(lr=0.01)``) or name. Each epoch visits every sample once, in an order shuffled by
    ``seed`` (the only randomness: same seed, same run); the last batch may be smaller.
    ``validation=(X_val, y_val)`` adds ``val_loss``/``val_accuracy``. The progress bar goes
    to stderr (only if it is a terminal and ``progress`` is true). ``fast=False`` takes the
    plain step of :mod:`gradsight.engine.step` instead of the fast one: slower, same numbers.

    >>> import numpy as np
    >>> from gradsight import nn, optim
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    >>> model = nn.mlp("2-1", output_activation="sigmoid", seed=0)
    >>> history = fit(model, X, [0, 1, 1, 1], optimizer=optim.SGD(lr=5.0), epochs=300,
    ...               batch_size=4, progress=False)
    >>> history.final["accuracy"], history.stopped
    (1.0, None)
    """
    if not isinstance(model, Sequential):
        raise InvalidValueError(
            f"model must be a gradsight.nn.Sequential, got {type(model).__name__}"
        )
    cost = _get_loss(loss)
    optimizer = _make_optimizer(optimizer)
    epochs = require_positive_int("epochs", epochs, 0)
    batch_size = require_positive_int("batch_size", batch_size)
    data = _check_data(model, cost, X, y, "training")
    checked_validation = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise InvalidValueError("validation must be a pair (X_val, y_val)")
        checked_validation = _check_data(
            model, cost, validation[0], validation[1], "validation")[:3]
    def make_step(history: History) -> PlainStep | FastStep:  # chosen once per call
        if fast:
            return FastStep(model, cost, optimizer, callbacks, history, data_sq_norm=data[3])
        return PlainStep(model, cost, optimizer, callbacks, history)

    run = Run(model, cost, optimizer, data, batch_size, shuffle, seed, callbacks, epochs,
              make_step)
    # non-finite values are detected and reported explicitly (the NaN guard), not warned
    total = epochs * run.ctx.batches_per_epoch
    with np.errstate(all="ignore"), _ProgressBar(progress, total) as bar:
        _train(run, checked_validation, bar)
    return run.history


def fit_one_of_many(*args: Any, **kwargs: Any) -> History:
    """:func:`fit` for one run among several (a sweep, the doctor's candidates, the tour).

    ``fit`` turns Ctrl-C into a clean stop of its own run (``History.stopped ==
    "interrupted"``); here the interrupt is raised again afterwards, so that it stops the
    whole series instead of only the run it happened in.
    """
    history = fit(*args, **kwargs)
    if history.stopped == "interrupted":
        raise KeyboardInterrupt
    return history

