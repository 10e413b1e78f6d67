"""The loop of one :func:`gradsight.fit` call: batches, a step, an epoch.

What a step does — forward, cost, backward, the NaN guard, the update (fused where no
callback looks) and the hooks — is described in :mod:`gradsight.train`, whose ``fit`` builds
a :class:`Run` and drives its epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .callbacks import Callback, History, TrainContext, has_step_hooks
from .fast.guard import StepApplier
from .layers import Dense
from .losses import Loss
from .model import Sequential

__all__ = ["Run"]


# ---- the loop ----------------------------------------------------------------------------
def _lookers(callbacks: Sequence[Any]) -> tuple[bool, list[Any]]:
    """(whether some callback looks at every step, the ``looks_at`` methods to ask per step).

    A callback that keeps :meth:`Callback.looks_at` as it is looks at every step if it has a
    per-step hook and never otherwise; one without ``looks_at`` (not a Callback) at every
    step; the others are asked."""
    always, lookers = False, []
    for callback in callbacks:
        looks_at = getattr(callback, "looks_at", None)
        if not callable(looks_at):
            always = True
        elif getattr(looks_at, "__func__", None) is Callback.looks_at:
            always = always or has_step_hooks(callback)
        else:
            lookers.append(looks_at)
    return always, lookers


class Run:
    """State of one ``fit`` call; methods are the parts of the loop (see :mod:`gradsight.train`)."""

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
        self.always_looked_at, self.lookers = _lookers(self.callbacks)
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
        return self._guard_apply_and_hooks(value, X_b)

    def _guard_apply_and_hooks(self, value: float, X_b: np.ndarray) -> tuple[str, str] | None:
        """The ordinary path, gradients stored: the guard, the hooks and the update."""
        ctx, applier, wanted = self.ctx, self.applier, self._wanted(self.ctx.step)
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

    def sync_gradients(self) -> None:
        """Write the last step's ∂C/∂W, ∂C/∂b if it was fused (from its cached a and δ)."""
        if self.gradients_behind:
            self.model.fill_gradients()
            self.gradients_behind = False

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
        accuracy = None if self.labels is None else correct / self.n
        self.history.epochs.append({
            "epoch": epoch, "loss": total / self.n, "accuracy": accuracy,
            "val_loss": None, "val_accuracy": None,
        })
        return True
