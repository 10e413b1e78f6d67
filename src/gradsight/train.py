"""The training loop: batches, forward, cost, backward, update — and hooks to watch it.

One optimizer step on a batch (X_b, y_b) is the seeds' recipe:

    ŷ = model.forward(X_b)                  forward propagation
    C, ∂C/∂ŷ = loss(ŷ, y_b)                 the cost and its gradient
    model.backward(∂C/∂ŷ)                   backpropagation fills ∂C/∂W, ∂C/∂b
    optimizer.step(params, grads)           w_new = w_old − η ∂C/∂w  (SGD)

Callbacks see every step: ``on_after_backward(ctx)`` when the gradients are final and the
update has not happened yet, ``on_batch_end(ctx)`` after the update; ``ctx`` holds the model
(with its layer caches and gradients), the batch, its output and cost.

Per-epoch ``loss`` and ``accuracy`` are averages over the epoch's batches, each computed on
the model *before* that batch's update (Keras' convention: no extra pass over the data);
``val_loss``/``val_accuracy`` are computed on the model at the end of the epoch. Accuracy is
defined as in :mod:`gradsight.nn.losses` (None for regression targets).

Fused update. With plain SGD (``w ← w − η·∂C/∂w``: no momentum, no weight decay), on the
steps at which no callback looks (:meth:`Callback.looks_at`: a callback with per-step hooks
looks at every step unless it says otherwise; a Monitor only at the steps it records),
backpropagation stops at the errors δ = ∂C/∂z of each Dense layer, and the step applies
``W ← W − η·aᵀδ`` and ``b ← b − η·δᵀ·1`` as one accumulating matrix product each
(:meth:`gradsight.optim.SGD.step_products`): the same rule and the same numbers up to
rounding, in one pass over W instead of writing ∂C/∂W and reading it back. The per-step hooks
are skipped on those steps. ``grad_W``/``grad_b`` then hold the gradients of the last step
that was not fused, until the epoch's end, when they are written for its last step.

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

from . import optim as _optim
from ._train_types import Callback, History, TrainContext, has_step_hooks
from .errors import DataError, InvalidValueError, ShapeError
from .nn._update import StepApplier, finite, squared_norm
from .nn.layers import Dense
from .nn.losses import Loss
from .nn.losses import loss as _get_loss
from .nn.model import Sequential

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


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


# ---- the loop ----------------------------------------------------------------------------
class _Run:
    """State of one ``fit`` call; methods are the parts of the loop."""

    def __init__(self, model: Sequential, loss: Loss, optimizer: Any, data: tuple,
                 batch_size: int, shuffle: bool, seed: int | None, callbacks: Sequence[Callback],
                 epochs: int) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.X, self.target, self.labels, data_sq_norm = data
        self.n = self.X.shape[0]
        self.batch_size, self.shuffle = min(batch_size, self.n), shuffle
        self.rng = np.random.default_rng(seed)
        self.callbacks = list(callbacks)
        self.params = model.parameters()
        # read-only callbacks change nothing: the guard's measurements stay valid after them
        self.read_only = all(getattr(c, "read_only", False) for c in self.callbacks)
        self.norms_wanted = [c.wants_norms for c in self.callbacks
                             if callable(getattr(c, "wants_norms", None))]
        self.applier = StepApplier(optimizer, model, data_sq_norm, self.read_only)
        # plain SGD: the steps at which no callback looks are fused (see the module doc)
        self.fusable = self.applier.fusable
        self.always_looked_at = False
        self.lookers: list[Any] = []
        for callback in self.callbacks:
            looks_at = getattr(callback, "looks_at", None)
            if not callable(looks_at) or (getattr(looks_at, "__func__", None)
                                          is Callback.looks_at and has_step_hooks(callback)):
                self.always_looked_at = True
            elif getattr(looks_at, "__func__", None) is not Callback.looks_at:
                self.lookers.append(looks_at)
        self.gradients_behind = False  # the stored gradients are not the last step's
        self.param_names = [
            (layer.name, ("W", "b")[j] if isinstance(layer, Dense) else str(j))
            for layer in model.layers for j, _ in enumerate(layer.parameters())
        ]
        self.history = History(loss.name)
        self.ctx = TrainContext(
            model, optimizer, loss, self.history, epochs, -(-self.n // self.batch_size)
        )
        self._buffers: dict[tuple[str, int], np.ndarray] = {}
        self.correct = 0

    def _batch_buffer(self, source: np.ndarray, size: int, tag: str) -> np.ndarray:
        key = (tag, size)
        if key not in self._buffers:
            self._buffers[key] = np.empty((size, *source.shape[1:]), dtype=source.dtype)
        return self._buffers[key]

    def batches(self) -> Any:
        """Yield (batch index, X_b, y_b, labels_b) over one epoch."""
        order = self.rng.permutation(self.n) if self.shuffle else None
        for index, start in enumerate(range(0, self.n, self.batch_size)):
            stop = min(start + self.batch_size, self.n)
            if order is None:
                rows: Any = slice(start, stop)
                X_b, y_b = self.X[rows], self.target[rows]
            else:
                rows = order[start:stop]
                size = stop - start
                X_b = np.take(self.X, rows, axis=0, out=self._batch_buffer(self.X, size, "X"))
                y_b = np.take(
                    self.target, rows, axis=0, out=self._batch_buffer(self.target, size, "y")
                )
            yield index, X_b, y_b, (None if self.labels is None else self.labels[rows])

    def step(self, X_b: np.ndarray, y_b: np.ndarray,
             labels_b: np.ndarray | None) -> tuple[str, str] | None:
        """One optimizer step; returns (what, why) if non-finite (nothing applied) or None.

        Sets ``self.correct`` to the number of samples of the batch classified right."""
        ctx, model = self.ctx, self.model
        output = X_b
        for layer in model.layers:
            output = layer.forward(output, True)
        grad = self._batch_buffer(output, output.shape[0], "dY")
        value, grad, self.correct = self.loss._training_step(output, y_b, grad, labels_b)
        ctx.X_batch, ctx.y_batch, ctx.output, ctx.batch_loss = X_b, y_b, output, value
        if self.fused(ctx.step):  # no hook looks: no stored gradients, no hooks
            model.backward(grad, reuse=True, input_grad=False, gradients=False)
            if math.isfinite(value) and self.applier.apply_fused(X_b):
                self.history.batch_losses.append(value)
                self.gradients_behind = True
                return None
            model.fill_gradients()  # the guard needs a closer look: the ordinary path
        else:
            model.backward(grad, reuse=True, input_grad=False)
        self.gradients_behind = False
        applier, wanted = self.applier, self._wanted(ctx.step)
        ctx.update_sq_norms = None
        if self.read_only:  # measure once, before the hooks, and share the norms
            ctx.grad_sq_norms = applier.measure(X_b, exact=wanted)
            ctx.weight_sq_norms = applier.weight_squares() if wanted else None
            for callback in self.callbacks:
                callback.on_after_backward(ctx)
        else:  # a hook may change the gradients: measure after the hooks
            ctx.grad_sq_norms = ctx.weight_sq_norms = None
            for callback in self.callbacks:
                callback.on_after_backward(ctx)
            applier.measure(X_b, exact=True)
        problem = self._nonfinite(value, X_b)
        if problem is not None:
            return problem
        broken = applier.apply(update_norms=wanted, weight_norms=self._wanted(ctx.step + 1))
        if broken is not None:
            return f"weights of {self.param_names[broken][0]} after the update", (
                "the update was undone")
        if wanted:
            ctx.update_sq_norms = applier.update_sq
        self.history.batch_losses.append(value)
        for callback in self.callbacks:
            callback.on_batch_end(ctx)
        return None

    def fused(self, step: int) -> bool:
        """Whether ``step`` is fused: plain SGD, and no callback looks at it."""
        return self.fusable and not (
            self.always_looked_at or any(looks_at(step) for looks_at in self.lookers))

    def _wanted(self, step: int) -> bool:
        """Whether some (read-only) callback reads the shared norms at ``step``."""
        return self.read_only and any(wants(step) for wants in self.norms_wanted)

    def _nonfinite(self, value: float, X_b: np.ndarray) -> tuple[str, str] | None:
        if not math.isfinite(value):
            return f"loss ({value})", self._first_nonfinite_output(X_b)
        bad = self.applier.nonfinite_gradients()
        if not bad:
            return None
        layer = self.param_names[bad[-1]][0]  # the layer nearest the cost, where it started
        which = ", ".join(f"∂C/∂{self.param_names[i][1]}" for i in bad
                          if self.param_names[i][0] == layer)
        return f"gradient {which} of layer {layer}", "the step was not applied"

    def _first_nonfinite_output(self, X_b: np.ndarray) -> str:
        output = X_b
        for layer in self.model.layers:  # recompute without buffers to see every output
            output = layer.forward(output, False)
            if not np.isfinite(output).all():
                return f"the output of layer {layer.name} is not finite"
        return f"the {self.loss.name} cost overflowed (outputs up to {np.abs(output).max():.3g})"

    def epoch(self, epoch: int, progress: Any) -> bool:
        """Run one epoch; False when training must stop."""
        ctx, total, correct = self.ctx, 0.0, 0
        ctx.epoch = epoch
        for index, X_b, y_b, labels_b in self.batches():
            ctx.batch_index = index
            problem = self.step(X_b, y_b, labels_b)
            if problem is not None:
                self.history.stopped = (
                    f"non-finite {problem[0]} at epoch {epoch}, step {ctx.step} (batch {index}): "
                    f"{problem[1]}. Training stopped; the model keeps the last finite weights "
                    "(from before this step)."
                )
                return False
            total += ctx.batch_loss * X_b.shape[0]
            if labels_b is not None:
                correct += self.correct
            ctx.step += 1
            if progress is not None:
                progress.advance()
            if ctx.stop_training:
                self.history.stopped = ctx.stop_reason or "stopped by a callback"
                return False
        if self.gradients_behind:  # the stored gradients: those of the epoch's last step
            self.model.fill_gradients()
            self.gradients_behind = False
        accuracy = None if self.labels is None else correct / self.n
        self.history.epochs.append({
            "epoch": epoch, "loss": total / self.n, "accuracy": accuracy,
            "val_loss": None, "val_accuracy": None,
        })
        return True


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
            output = layer.forward(output, True)
        total += loss._value(output, target[start:start + batch_size]) * output.shape[0]
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


def _train(run: _Run, validation: tuple | None, bar: _ProgressBar | None) -> None:
    ctx, history = run.ctx, run.history
    try:
        for callback in run.callbacks:
            callback.on_train_begin(ctx)
        for epoch in range(ctx.epochs):
            if not run.epoch(epoch, bar):
                break
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
    except KeyboardInterrupt:
        if not all(finite(p) for p in run.params):  # interrupted inside an overflowing step
            run.applier.restore()
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
) -> History:
    """Train ``model`` on (X, y) by mini-batch gradient descent; return the :class:`History`.

    ``loss`` is a name (``"quadratic"``, ``"bce_with_logits"``, ``"cross_entropy"``) or a
    :class:`~gradsight.nn.Loss`; ``optimizer`` a :mod:`gradsight.optim` object (default
    ``SGD(lr=0.01)``) or name. Each epoch visits every sample once, in an order shuffled by
    ``seed`` (the only randomness: same seed, same run); the last batch may be smaller.
    ``validation=(X_val, y_val)`` adds ``val_loss``/``val_accuracy``. The progress bar goes
    to stderr (only if it is a terminal and ``progress`` is true).

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
    epochs, batch_size = _count("epochs", epochs, 0), _count("batch_size", batch_size, 1)
    data = _check_data(model, cost, X, y, "training")
    checked_validation = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise InvalidValueError("validation must be a pair (X_val, y_val)")
        checked_validation = _check_data(
            model, cost, validation[0], validation[1], "validation")[:3]
    run = _Run(model, cost, optimizer, data, batch_size, shuffle, seed, callbacks, epochs)
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

