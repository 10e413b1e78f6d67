"""Applying an optimizer step under the NaN guard — cheaply (the fast step's guard).

The guard promises what the plain step's does (:mod:`gradsight.engine.step`): a step with a
non-finite gradient is not applied, and an update that makes a weight non-finite is undone.
The update applies the optimizer's rules (:mod:`.update`). Checking costs passes over
memory, so it is done with the cheapest sufficient test.

Gradients, exact test (:meth:`StepApplier.measure` with ``exact=True``, when a callback such as
the Monitor wants the norms): g·g, one BLAS dot, is finite iff every entry of g is — unless it
overflows, and then ``isfinite`` decides. The values are handed to the callbacks
(``ctx.norms``), so nobody computes them twice.

Gradients, cheap test (otherwise): a Dense layer's ∂C/∂W = aᵀδ (n_in × n_out) is checked
through its factors, the layer input a (N × n_in) and δ = ∂C/∂z (N × n_out), which for a
batch smaller than the layer are smaller. By Cauchy–Schwarz every entry, and every partial
sum BLAS forms on the way, obeys |∂C/∂W_ij| ≤ Σₙ |a_ni δ_nj| ≤ ‖a‖‖δ‖; likewise
|∂C/∂b_j| ≤ √N ‖δ‖. So when ‖a‖‖δ‖ is far below the largest float, both gradients are
finite, and ‖a‖‖δ‖, √N‖δ‖ bound their norms. ‖δ‖² is a dot (finite iff every entry is), and
so is ‖a‖², except where it is known without a pass:

* a is the training data, whose ‖X‖ fit measured once (‖X_batch‖ ≤ ‖X‖);
* a is the output of a sigmoid or tanh layer that follows the previous Dense layer: then
  |aᵢ| ≤ 1, so ‖a‖² ≤ a.size, unless some aᵢ is NaN — and a NaN aᵢ makes the previous layer's
  δ = ∂C/∂a ⊙ f′ NaN too (f′ = a(1−a) or 1 − a² is computed from a), which that layer's check
  has just found finite.

If a bound is not small enough, or the layer is not a plain Dense, the exact test decides.

Update, a gradsight optimizer: every step is
``w ← w − rate·d``; the optimizer computes every d first, ‖d‖ is one dot while d is still
in cache, and the same bound as for plain SGD below (with rate·‖d‖ for η‖g‖) clears the
step without a copy. Where it cannot, or for an optimizer without ``prepare``: copy the
weights, step, check with a dot, restore on failure.
Update, plain SGD (``w ← w − η g``, :func:`.update.plain_sgd`): no copy and no check
are needed while ‖w‖ + η‖g‖ stays far below the largest float, since then every
|wᵢ − η gᵢ| ≤ ‖w‖ + η‖g‖ is finite. ‖w‖ is tracked as an upper bound (triangle inequality),
and recomputed every step if a callback may change the weights (one that is not
``read_only``).

Fused update (:meth:`StepApplier.apply_fused`, plain SGD on the steps no callback looks at):
the gradients are never stored, so only the cheap test can clear them; where it cannot, the
loop stores them and takes the ordinary path for that step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..callbacks import squared_norm
from ..layers import Activation, Dense
from . import blas
from .passes import FastPasses
from .update import FastUpdate

__all__ = ["StepApplier"]


# activations whose output is bounded by 1 and whose backward pass computes f′ from the output
_BOUNDED_BY_ONE = ("sigmoid", "tanh")


class _DenseCheck:
    """A Dense layer for the cheap test: where its ∂C/∂W and ∂C/∂b sit in the parameter
    list, and what its input is (the data, or a bounded activation after another Dense)."""

    __slots__ = ("layer", "w", "b", "data_input", "bounded_input", "delta_finite")

    def __init__(self, layer: Dense, w: int, b: int, data_input: bool,
                 bounded_input: tuple[Activation, _DenseCheck] | None) -> None:
        self.layer, self.w, self.b, self.data_input = layer, w, b, data_input
        self.bounded_input = bounded_input
        self.delta_finite = False  # set by each cheap test


class StepApplier:
    """Checks gradients and applies the optimizer's step under the guard.

    ``data_sq_norm`` is ‖X‖² of the training data (inf if unknown); ``read_only`` says that
    no callback changes weights or gradients.
    """

    def __init__(self, optimizer: Any, model: Any, passes: FastPasses,
                 data_sq_norm: float = math.inf, read_only: bool = False) -> None:
        self.optimizer, self.read_only = optimizer, read_only
        self.update = FastUpdate(optimizer)
        self.passes = passes
        self.params, self.grads = model.parameters(), model.gradients()
        self.data_sq_norm = data_sq_norm
        self.norms = [math.inf] * len(self.params)  # ‖g‖, or an upper bound of it
        self.checks, covered = self._dense_checks(model)
        self.others = [i for i in range(len(self.params)) if i not in covered]
        self.backup: list[np.ndarray] | None = None
        self.backup_is_current = False
        self.dtype = self.params[0].dtype if self.params else np.dtype(np.float64)
        self.limit = float(np.finfo(self.dtype).max) / 16
        # w·w of the current weights when known (valid while only the steps change them),
        # Δw·Δw of the last step when measured
        self.weight_sq: list[float] | None = None
        self.update_sq: list[float] | None = None
        self.bounds = [math.sqrt(value) for value in self.weight_squares()]  # ≥ ‖w‖ (SGD)

    def _dense_checks(self, model: Any) -> tuple[list[_DenseCheck], set[int]]:
        checks: list[_DenseCheck] = []
        covered: set[int] = set()
        position, layers = 0, model.layers
        for index, layer in enumerate(layers):
            count = len(layer.parameters())
            if type(layer) is Dense and count == 2:
                source, bounded = layers[index - 1] if index else None, None
                if (index >= 2 and type(source) is Activation
                        and source.activation.name in _BOUNDED_BY_ONE
                        and checks and checks[-1].layer is layers[index - 2]):
                    bounded = (source, checks[-1])
                checks.append(_DenseCheck(layer, position, position + 1, index == 0, bounded))
                covered.update((position, position + 1))
            position += count
        return checks, covered

    def _weight_norms(self) -> list[float]:
        self.weight_sq = None
        return [math.sqrt(value) for value in self.weight_squares()]

    # -- gradients ---------------------------------------------------------------------
    def measure(self, X_batch: np.ndarray | None, exact: bool) -> list[float] | None:
        """Measure the gradients for the guard; return the exact g·g list when ``exact``."""
        norms = self.norms
        if exact:
            squares = [squared_norm(grad) for grad in self.grads]
            norms[:] = [math.sqrt(value) for value in squares]  # NaN stays NaN
            return squares
        for check in self.checks:
            self._bound_dense(check, X_batch)
        for index in self.others:
            norms[index] = math.sqrt(squared_norm(self.grads[index]))
        return None

    def _bound_dense(self, check: _DenseCheck, X_batch: np.ndarray | None,
                     exact: bool = True) -> bool:
        """norms[W], norms[b] := the bounds ‖a‖‖δ‖, √N‖δ‖ if small enough (True), else the
        exact norms when ``exact`` (which needs the stored gradients), else nothing."""
        layer, norms = check.layer, self.norms
        a, delta = layer.inputs, layer.delta
        usable = (a is not None and delta is not None and layer.grad_W is self.grads[check.w]
                  and layer.grad_b is self.grads[check.b])
        check.delta_finite = False
        if usable and a is not None and delta is not None:
            delta_norm = math.sqrt(squared_norm(delta))  # NaN or inf if δ is not finite
            check.delta_finite = math.isfinite(delta_norm)
            a_sq = self._input_sq_bound(check, a, X_batch)
            bound_w = math.sqrt(a_sq) * delta_norm
            bound_b = math.sqrt(a.shape[0]) * delta_norm
            if bound_w < self.limit and bound_b < self.limit:  # False for NaN
                norms[check.w], norms[check.b] = bound_w, bound_b
                return True
        if exact:
            norms[check.w] = math.sqrt(squared_norm(self.grads[check.w]))
            norms[check.b] = math.sqrt(squared_norm(self.grads[check.b]))
        return False

    def _input_sq_bound(self, check: _DenseCheck, a: np.ndarray,
                        X_batch: np.ndarray | None) -> float:
        """An upper bound of ‖a‖² for a finite a (inf or NaN when a is not finite)."""
        if check.data_input and a is X_batch:
            return self.data_sq_norm
        if check.bounded_input is not None:
            activation, previous = check.bounded_input
            if a is activation.output and previous.delta_finite:
                return float(a.size)
        return squared_norm(a)

    def nonfinite_gradients(self) -> list[int]:
        """Indices (in ``params`` order) of the gradients with a non-finite entry."""
        return [index for index, norm in enumerate(self.norms)
                if not math.isfinite(norm) and not np.isfinite(self.grads[index]).all()]

    # -- the update --------------------------------------------------------------------
    def weight_squares(self) -> list[float]:
        """w·w of every parameter as it is now (kept from the last step when still valid)."""
        if self.weight_sq is None or not self.read_only:
            self.weight_sq = [squared_norm(p) for p in self.params]
        return list(self.weight_sq)

    def apply(self, update_norms: bool = False, weight_norms: bool = False) -> int | None:
        """Apply the step; if it made params[i] non-finite, undo it and return i.

        ``update_norms``: measure Δw·Δw of the step (``update_sq``); ``weight_norms``: keep
        w·w of the new weights (``weight_squares``), both where it costs least.

        Every step has the form ``w ← w − rate·d``. With plain SGD, d = g and ‖d‖ is known
        from the gradient check; an optimizer with :meth:`~gradsight.optim.Optimizer.prepare`
        computes every d first, and ‖d‖ is one pass over it while it is still in cache. If
        ‖w‖ + rate·‖d‖ is far below the largest float for every array, the step cannot make a
        weight non-finite and is applied as it is; otherwise it is applied on a backup.
        """
        self.backup_is_current = False
        self.update_sq = None
        update = self.update
        prepared = update.prepare(self.params, self.grads)
        if prepared is None:  # an optimizer of another kind, that applies its step itself
            return self._guarded_step(update_norms, self._foreign_step)
        if update.plain_sgd:  # d = g: ‖d‖ is known from the gradient check
            steps = [self.optimizer.lr * norm for norm in self.norms]
        else:
            steps = [rate * math.sqrt(squared_norm(d)) for d, rate in prepared]
        if not self._is_safe(steps):
            return self._guarded_step(update_norms, update.apply)
        update.apply()
        if update_norms:  # Δw = −rate·d up to rounding; x*x overflows to inf, x**2 raises
            self.update_sq = [step * step for step in steps]
        if weight_norms:  # one pass over weights still in cache; also exact bounds
            self.weight_sq = [squared_norm(p) for p in self.params]
            self.bounds = [math.sqrt(value) for value in self.weight_sq]
        else:
            self.weight_sq = None
            self._advance_bounds(steps)
        return None

    def _is_safe(self, steps: list[float]) -> bool:
        """Whether ‖w‖ + ‖Δw‖ stays far below the largest float for every array."""
        if not self.read_only:
            self.bounds = self._weight_norms()
        if self._within_limit(steps):
            return True
        self.bounds = self._weight_norms()  # the running bound may just be loose
        return self._within_limit(steps)

    def _within_limit(self, steps: list[float]) -> bool:
        limit = self.limit
        for bound, step in zip(self.bounds, steps, strict=True):
            if not bound + step < limit:  # also True for NaN
                return False
        return True

    # -- the fused update ------------------------------------------------------------------
    @property
    def fusable(self) -> bool:
        """Whether :meth:`apply_fused` may apply the steps: plain SGD, every parameter a
        Dense layer's W or b (whose gradients are the products aᵀδ, δᵀ·1), and NumPy's BLAS
        reachable for the accumulating products."""
        return (self.update.plain_sgd and not self.others and bool(self.checks)
                and blas.backend(self.dtype) == "numpy-blas")

    def apply_fused(self, X_batch: np.ndarray | None) -> bool:
        """The guard and the step without stored gradients (after ``backward(...,
        gradients=False)``): bound every gradient through its factors a and δ and, if all
        bounds are small and the SGD step is safe, apply ``W ← W − η·aᵀδ``, ``b ← b − η·δᵀ·1``
        for every Dense layer as one accumulating product each
        (:meth:`.update.FastUpdate.step_products`). True if applied; False, having changed
        nothing, where a bound is not small or a product cannot be fused: then fill the
        gradients and take the ordinary path (:meth:`measure`, :meth:`apply`)."""
        self.backup_is_current = False
        self.update_sq = None
        for check in self.checks:
            if not self._bound_dense(check, X_batch, exact=False):
                return False
        steps = [self.optimizer.lr * norm for norm in self.norms]
        if not self._is_safe(steps):
            return False
        params, factors = self.params, []
        for check in self.checks:
            a, delta = check.layer.inputs, check.layer.delta  # both set: the bounds used them
            assert a is not None and delta is not None
            ones = self.passes.dense_by_layer[id(check.layer)].ones(delta.shape[0])
            factors += [(a, delta), (delta, ones)]
        if not self.update.step_products(params, factors):
            return False
        self.weight_sq = None  # the weights have moved
        self._advance_bounds(steps)
        return True

    def _advance_bounds(self, steps: list[float]) -> None:
        """After a step: ‖w − rate·d‖ ≤ ‖w‖ + rate·‖d‖ (+ rounding) for every parameter."""
        bounds = self.bounds
        for index, step in enumerate(steps):
            bounds[index] = (bounds[index] + step) * (1 + 1e-6)

    def _foreign_step(self) -> None:
        self.optimizer.step(self.params, self.grads)

    def _guarded_step(self, update_norms: bool, apply_step: Any) -> int | None:
        """Back up the weights, apply the step (``apply_step``), check every weight with a
        dot and undo the step if one is not finite."""
        if self.backup is None:
            self.backup = [np.empty_like(p) for p in self.params]
        for saved, param in zip(self.backup, self.params, strict=True):
            np.copyto(saved, param)
        self.backup_is_current = True
        self.weight_sq = None
        apply_step()
        squares = []
        for index, param in enumerate(self.params):
            square = squared_norm(param)
            if not math.isfinite(square) and not np.isfinite(param).all():
                self.restore()
                return index
            squares.append(square)
        self.weight_sq = squares  # the check's dots are the new weights' norms
        self.bounds = [math.sqrt(value) for value in squares]
        if update_norms:  # Δw = w_new − w_old, in the backup (no longer needed)
            self.backup_is_current = False
            self.update_sq = []
            for saved, param in zip(self.backup, self.params, strict=True):
                np.subtract(param, saved, out=saved)
                self.update_sq.append(squared_norm(saved))
        return None

    def restore(self) -> None:
        """Undo the last step if it was taken with a backup (after a failure or Ctrl-C)."""
        if self.backup is not None and self.backup_is_current:
            for saved, param in zip(self.backup, self.params, strict=True):
                np.copyto(param, saved)
            self.weight_sq = None
