"""One optimizer step, as the articles write it — the plain step of :func:`gradsight.fit`.

On a batch (X_b, y_b):

    ŷ = model.forward(X_b)                       forward propagation
    C, ∂C/∂ŷ = loss.cost_and_gradient(ŷ, y_b)    the cost and its gradient
    model.backward(∂C/∂ŷ)                        backpropagation fills ∂C/∂W, ∂C/∂b
    optimizer.step(params, grads)                w_new = w_old − η ∂C/∂w  (SGD)

with the callbacks' hooks between the backward pass and the update (``on_after_backward``)
and after the update (``on_batch_end``), and a NaN guard: a step whose cost or gradients are
not finite is not applied, and an update that makes a weight non-finite is undone (the
weights are copied before each update). This is the reference: the fast step
(:mod:`gradsight.engine.fast.step`) computes the same numbers with fewer passes over memory,
and the tests hold it to these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .callbacks import Callback, History, StepNorms, TrainContext
from .layers import Dense
from .losses import Loss
from .model import Sequential

__all__ = ["PlainStep", "gradient_problem", "loss_problem", "parameter_names"]

#: (what is not finite, what was done about it), or None when the step went through
Problem = tuple[str, str] | None


def parameter_names(model: Sequential) -> list[tuple[str, str]]:
    """(layer name, "W" / "b" / index) of every array of ``model.parameters()``."""
    return [(layer.name, ("W", "b")[j] if isinstance(layer, Dense) else str(j))
            for layer in model.layers for j, _ in enumerate(layer.parameters())]


def loss_problem(model: Sequential, loss: Loss, value: float, X_b: np.ndarray) -> Problem:
    """Why the cost is not finite: the first layer whose output is not, else an overflow of
    the cost itself (None when ``value`` is finite)."""
    if math.isfinite(value):
        return None
    output = X_b
    for layer in model.layers:  # recompute to see every output
        output = layer.forward(output)
        if not np.isfinite(output).all():
            return f"loss ({value})", f"the output of layer {layer.name} is not finite"
    return f"loss ({value})", (
        f"the {loss.name} cost overflowed (outputs up to {np.abs(output).max():.3g})")


def gradient_problem(bad: Sequence[int], names: Sequence[tuple[str, str]]) -> Problem:
    """The gradients at positions ``bad`` are not finite: named in the layer nearest the
    cost, where the trouble started (None when ``bad`` is empty)."""
    if not bad:
        return None
    layer = names[bad[-1]][0]
    which = ", ".join(f"∂C/∂{names[i][1]}" for i in bad if names[i][0] == layer)
    return f"gradient {which} of layer {layer}", "the step was not applied"


class PlainStep:
    """The step of the module doc; ``run`` returns a :data:`Problem` or None."""

    def __init__(self, model: Sequential, loss: Loss, optimizer: Any,
                 callbacks: Sequence[Callback], history: History) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.callbacks, self.history = list(callbacks), history
        self.params, self.grads = model.parameters(), model.gradients()
        self.names = parameter_names(model)
        self.backup = [np.empty_like(param) for param in self.params]
        self.backup_is_current = False
        self.norms = StepNorms(self.params, self.grads)
        self.correct = 0  # samples of the last batch classified right

    def run(self, ctx: TrainContext, X_b: np.ndarray, y_b: np.ndarray,
            labels_b: np.ndarray | None) -> Problem:
        output = self.model.forward(X_b)
        value, gradient = self.loss.cost_and_gradient(output, y_b)
        self.model.backward(gradient)
        if labels_b is not None:
            predicted = self.loss.predicted_labels(output)
            self.correct = int(np.count_nonzero(predicted == labels_b))
        ctx.X_batch, ctx.y_batch, ctx.output, ctx.batch_loss = X_b, y_b, output, value
        self.norms.new_step()
        ctx.norms = self.norms
        for callback in self.callbacks:
            callback.on_after_backward(ctx)
        problem = loss_problem(self.model, self.loss, value, X_b) or gradient_problem(
            [i for i, grad in enumerate(self.grads) if not np.isfinite(grad).all()], self.names)
        if problem is not None:
            return problem
        broken = self.update()
        if broken is not None:
            return f"weights of {self.names[broken][0]} after the update", "the update was undone"
        self.history.batch_losses.append(value)
        for callback in self.callbacks:
            callback.on_batch_end(ctx)
        return None

    def update(self) -> int | None:
        """The optimizer's step on a copy-protected model: if it makes params[i] non-finite,
        the step is undone and i returned."""
        for saved, param in zip(self.backup, self.params, strict=True):
            np.copyto(saved, param)
        self.backup_is_current = True
        self.norms.before = self.backup  # Δw = w − w_before, if a callback asks
        self.optimizer.step(self.params, self.grads)
        for index, param in enumerate(self.params):
            if not np.isfinite(param).all():
                self.restore()
                return index
        return None

    def restore(self) -> None:
        """Undo the last update (after a failure, or a Ctrl-C inside it)."""
        if self.backup_is_current:
            for saved, param in zip(self.backup, self.params, strict=True):
                np.copyto(param, saved)

    def sync(self) -> None:
        """Nothing to do: the gradients stored are always the last step's."""
