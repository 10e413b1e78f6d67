"""The optimizers' steps in fewer passes over memory (the fast step's update).

The rules are those of :mod:`gradsight.optim`; :class:`FastUpdate` applies them to a model's
parameters with the kernels of :mod:`.blas`:

* every step has the form ``w ← w − rate·d``: :meth:`FastUpdate.prepare` computes every
  (d, rate) first — advancing the optimizer's own state, so that a later call of the plain
  rule carries on from it — and :meth:`FastUpdate.apply` makes the last line one BLAS axpy
  per array (NumPy needs two passes). In between the NaN guard looks at ‖rate·d‖;
* SGD with momentum and Adam keep their running averages with one BLAS axpby pass each
  (``y ← α·x + β·y``), and Adam folds its bias corrections into two scalars:
  η/(1 − β₁ᵗ) · m/(√v/√(1 − β₂ᵗ) + ε) = η√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε√(1 − β₂ᵗ));
  the other optimizers use their own :meth:`~gradsight.optim.Optimizer.direction`;
* plain SGD (``w ← w − η·∂C/∂w``: no momentum, no weight decay) can apply a Dense layer's
  step as the gradient's product itself: W ← W − η·aᵀδ is C ← α·AᵀB + C with α = −η, one
  accumulating gemm (:meth:`FastUpdate.step_products`), without ever storing ∂C/∂W.

The kernels and scratch arrays are kept here, per position, never in the optimizer's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import optim
from . import blas

__all__ = ["FastUpdate", "plain_sgd"]


def plain_sgd(optimizer: Any) -> bool:
    """Whether ``optimizer`` is SGD with the articles' rule ``w ← w − η·∂C/∂w`` exactly."""
    return type(optimizer) is optim.SGD and optimizer.plain


class FastUpdate:
    """Steps of ``optimizer`` on a fixed list of parameter arrays (see the module doc)."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.plain_sgd = plain_sgd(optimizer)
        self.kind = type(optimizer) if type(optimizer) in (optim.SGD, optim.Adam) else None
        self.caches: list[dict[str, Any]] = []  # kernels and scratch arrays per position
        self.pending: list[tuple[np.ndarray, np.ndarray, float, dict[str, Any]]] = []
        self.product_kernels: list[Any] = []

    def _caches_for(self, params: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        if len(self.caches) != len(params) or any(
                cache["param"] is not param
                for cache, param in zip(self.caches, params, strict=True)):
            self.caches = [{"param": p, "scratch": np.empty_like(p)} for p in params]
        return self.caches

    def prepare(self, params: Sequence[np.ndarray],
                grads: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]] | None:
        """Every (d, rate) of the step (the state advances); None for an optimizer that is
        not an :class:`~gradsight.optim.Optimizer` (then call its ``step`` instead)."""
        optimizer = self.optimizer
        if not isinstance(optimizer, optim.Optimizer):
            return None
        states = optimizer.states(params, grads)
        caches = self._caches_for(params)
        pending = []
        for param, grad, state, cache in zip(params, grads, states, caches, strict=True):
            if self.kind is optim.SGD:
                d, rate = self._sgd(param, grad, state, cache)
            elif self.kind is optim.Adam:
                d, rate = self._adam(param, grad, state, cache)
            else:
                d, rate = optimizer.direction(param, grad, state)
            pending.append((param, d, rate, cache))
        self.pending = pending
        return [(d, rate) for _, d, rate, _ in pending]

    def apply(self) -> None:
        """``param ← param − rate·d`` for every array of the last :meth:`prepare`."""
        pending, self.pending = self.pending, []
        for param, d, rate, cache in pending:
            blas.subtract_scaled(param, d, rate, cache)

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """A whole step (:meth:`prepare`, then :meth:`apply`)."""
        if self.prepare(params, grads) is None:
            self.optimizer.step(params, grads)
        else:
            self.apply()

    # -- the rules, in fewer passes --------------------------------------------------------
    def _decayed(self, param: np.ndarray, grad: np.ndarray, cache: dict[str, Any]) -> Any:
        weight_decay = self.optimizer.weight_decay
        if weight_decay == 0:
            return grad
        buffer = cache.get("decayed")
        if buffer is None:
            buffer = cache["decayed"] = np.empty_like(param)
        np.multiply(param, weight_decay, out=buffer)  # g + λ·w, grad untouched
        np.add(buffer, grad, out=buffer)
        return buffer

    def _sgd(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
             cache: dict[str, Any]) -> tuple[np.ndarray, float]:
        opt = self.optimizer
        if not state:
            state["shape"], state["step"] = param.shape, 0
        g = self._decayed(param, grad, cache)
        if opt.momentum == 0:
            return g, opt.lr
        buf = state.get("momentum_buffer")
        if buf is None:
            state["momentum_buffer"] = buf = np.array(g, dtype=param.dtype, copy=True)
        else:  # b ← μ·b + (1 − dampening)·g in one pass
            blas.scale_add(buf, g, 1 - opt.dampening, opt.momentum, cache)
        if not opt.nesterov:
            return buf, opt.lr
        scratch = cache["scratch"]
        np.multiply(buf, opt.momentum, out=scratch)
        scratch += g
        return scratch, opt.lr

    def _adam(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
              cache: dict[str, Any]) -> tuple[np.ndarray, float]:
        opt = self.optimizer
        if not state:
            state["shape"], state["step"] = param.shape, 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if opt.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        t, (beta1, beta2) = state["step"], opt.betas
        scratch = cache["scratch"]
        denom = cache.get("denom")
        if denom is None:
            denom = cache["denom"] = np.empty_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        g = self._decayed(param, grad, cache)
        blas.scale_add(exp_avg, g, 1 - beta1, beta1, cache, "m")          # m ← β₁m + (1−β₁)g
        np.multiply(g, g, out=scratch)
        blas.scale_add(exp_avg_sq, scratch, 1 - beta2, beta2, cache, "v")  # v ← β₂v + (1−β₂)g²
        second = exp_avg_sq
        if opt.amsgrad:
            second = state["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        correction = math.sqrt(1 - beta2**t)
        np.sqrt(second, out=denom)
        denom += opt.eps * correction
        np.divide(exp_avg, denom, out=scratch)
        return scratch, opt.lr * correction / (1 - beta1**t)

    # -- plain SGD as products ---------------------------------------------------------------
    def step_products(self, params: Sequence[np.ndarray],
                      factors: Sequence[tuple[np.ndarray, np.ndarray]]) -> bool:
        """The plain step ``w ← w − η·g`` for gradients given as products ``g = leftᵀ·right``
        — a Dense layer's ∂C/∂W = aᵀδ and ∂C/∂b = δᵀ·1 — without storing them: one
        accumulating BLAS product per array. False, having changed nothing, when the rule is
        not plain SGD or some array cannot be updated so (layout, dtype, no NumPy BLAS):
        then store the gradients and call :meth:`step`."""
        if not self.plain_sgd or len(params) != len(factors):
            return False
        previous = self.product_kernels
        if len(previous) != len(params):
            previous = [None] * len(params)
        kernels = self.product_kernels = [
            blas.reuse_product(kernel, param, left, right)
            for kernel, param, (left, right) in zip(previous, params, factors, strict=True)]
        if any(kernel is None for kernel in kernels):
            return False
        rate = -self.optimizer.lr
        for kernel in kernels:
            kernel(rate)
        return True
