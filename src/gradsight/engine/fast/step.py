"""The fast step of :func:`gradsight.fit`: the plain step's numbers, in fewer passes.

It does what :class:`gradsight.engine.step.PlainStep` does — forward, cost, backward, the
hooks, the NaN guard, the update — with the tools of this package:

* the passes run into buffers (:mod:`.passes`), the cost in as few passes as it can
  (:mod:`.losses`), the update through BLAS kernels (:mod:`.update`);
* the NaN guard bounds the gradients through their factors and clears a step without
  copying the weights (:mod:`.guard`); what it measures is handed to the callbacks
  (``ctx.norms``) on the steps they announce (:meth:`~gradsight.Callback.wants_norms`);
* fused update: with plain SGD (``w ← w − η·∂C/∂w``), on the steps at which no callback looks
  (:meth:`~gradsight.Callback.looks_at`: a callback with per-step hooks looks at every step
  unless it says otherwise; a Monitor only at the steps it records), backpropagation stops
  at the errors δ = ∂C/∂z of each Dense layer and the step applies ``W ← W − η·aᵀδ`` and
  ``b ← b − η·δᵀ·1`` as one accumulating matrix product each: the same rule and the same
  numbers up to rounding, in one pass over W instead of writing ∂C/∂W and reading it back.
  The per-step hooks are skipped on those steps. The stored ``grad_W``/``grad_b`` are
  brought up to date (those of the last step) by :meth:`FastStep.sync`, which ``fit`` calls
  when it returns and at each epoch's end before the validation pass and the epoch hooks if
  there are any; after Ctrl-C they may be those of an earlier step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..callbacks import Callback, History, StepNorms, TrainContext, has_step_hooks
from ..losses import Loss
from ..model import Sequential
from ..step import Problem, gradient_problem, loss_problem, parameter_names
from .guard import StepApplier
from .losses import BatchCost
from .passes import FastPasses

__all__ = ["FastStep"]


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


class FastStep:
    """The step of the module doc; ``run`` returns a :data:`~gradsight.engine.step.Problem`
    or None. ``data_sq_norm`` is ‖X‖² of the training data (a bound for the guard)."""

    def __init__(self, model: Sequential, loss: Loss, optimizer: Any,
                 callbacks: Sequence[Callback], history: History,
                 data_sq_norm: float = math.inf) -> None:
        self.model, self.loss, self.history = model, loss, history
        self.callbacks = list(callbacks)
        self.passes = FastPasses(model)
        self.cost = BatchCost(loss)
        # read-only callbacks change nothing: the guard's measurements stay valid after them
        self.read_only = all(getattr(c, "read_only", False) for c in self.callbacks)
        self.norms_wanted = [c.wants_norms for c in self.callbacks
                             if callable(getattr(c, "wants_norms", None))]
        self.applier = StepApplier(optimizer, model, self.passes, data_sq_norm, self.read_only)
        self.fusable = self.applier.fusable
        self.always_looked_at, self.lookers = _lookers(self.callbacks)
        self.gradients_behind = False  # the stored gradients are not the last step's
        self.names = parameter_names(model)
        self.norms = StepNorms(self.applier.params, self.applier.grads)
        self.gradient_buffers: dict[tuple[int, ...], np.ndarray] = {}
        self.correct = 0  # samples of the last batch classified right

    def run(self, ctx: TrainContext, X_b: np.ndarray, y_b: np.ndarray,
            labels_b: np.ndarray | None) -> Problem:
        output = self.passes.forward(X_b)
        value, gradient, self.correct = self.cost(output, y_b, self._gradient_buffer(output),
                                                  labels_b)
        ctx.X_batch, ctx.y_batch, ctx.output, ctx.batch_loss = X_b, y_b, output, value
        if self.fused(ctx.step):  # no hook looks: no stored gradients, no hooks
            self.passes.backward(gradient, gradients=False)
            if math.isfinite(value) and self.applier.apply_fused(X_b):
                self.history.batch_losses.append(value)
                self.gradients_behind = True
                return None
            self.passes.fill_gradients()  # the guard needs a closer look: the ordinary path
        else:
            self.passes.backward(gradient)
        self.gradients_behind = False
        return self._guard_apply_and_hooks(ctx, value, X_b)

    def _gradient_buffer(self, output: np.ndarray) -> np.ndarray:
        buffer = self.gradient_buffers.get(output.shape)
        if buffer is None or buffer.dtype != output.dtype:
            buffer = self.gradient_buffers[output.shape] = np.empty_like(output)
        return buffer

    def _guard_apply_and_hooks(self, ctx: TrainContext, value: float,
                               X_b: np.ndarray) -> Problem:
        """The ordinary path, gradients stored: the guard, the hooks and the update."""
        applier, wanted, norms = self.applier, self._wanted(ctx.step), self.norms
        norms.new_step()
        ctx.norms = norms
        if self.read_only:  # measure once, before the hooks, and share the norms
            norms.share(gradients=applier.measure(X_b, exact=wanted),
                        weights=applier.weight_squares() if wanted else None)
            for callback in self.callbacks:
                callback.on_after_backward(ctx)
        else:  # a hook may change the gradients: measure after the hooks
            for callback in self.callbacks:
                callback.on_after_backward(ctx)
            applier.measure(X_b, exact=True)
        problem = loss_problem(self.model, self.loss, value, X_b) or gradient_problem(
            applier.nonfinite_gradients(), self.names)
        if problem is not None:
            return problem
        broken = applier.apply(update_norms=True, weight_norms=self._wanted(ctx.step + 1))
        if broken is not None:
            return f"weights of {self.names[broken][0]} after the update", "the update was undone"
        norms.share(updates=applier.update_sq)
        self.history.batch_losses.append(value)
        for callback in self.callbacks:
            callback.on_batch_end(ctx)
        return None

    def fused(self, step: int) -> bool:
        """Whether ``step`` is fused: plain SGD, and no callback looks at it."""
        return self.fusable and not (
            self.always_looked_at or any(looks_at(step) for looks_at in self.lookers))

    def _wanted(self, step: int) -> bool:
        """Whether some (read-only) callback asks for the shared norms at ``step``."""
        return self.read_only and any(wants(step) for wants in self.norms_wanted)

    def sync(self) -> None:
        """Write the last step's ∂C/∂W, ∂C/∂b if it was fused (from its cached a and δ)."""
        if self.gradients_behind:
            self.passes.fill_gradients()
            self.gradients_behind = False

    def restore(self) -> None:
        """Undo the last update if it was taken with a backup (after a Ctrl-C inside it)."""
        self.applier.restore()
