"""Optimizers: the rule that turns gradients into a step, shared by ``descent`` and ``train``.

Every optimizer updates a list of NumPy arrays *in place* from their gradients, the seeds'
rule ``w_new = w_old − η ∂C/∂w`` and its refinements. The update rules and defaults are those
of ``torch.optim`` (single-tensor code path), so a float64 run reproduces a PyTorch run to
rounding. State (momentum buffers, running averages, step counts) is kept per *position* in
the ``params`` list; :meth:`Optimizer.reset` forgets it.

Updates are written with ``out=`` into scratch buffers kept per parameter, so a step on a
float32 network allocates nothing and float32 stays float32. The final ``w ← w − η·d`` of SGD
(plain, momentum or Nesterov) is one BLAS axpy per array where that applies (see
:mod:`gradsight._blas`), the same rule in one pass instead of two. When the gradient is a
product, as a Dense layer's ∂C/∂W = aᵀδ, :meth:`SGD.step_products` applies the plain rule as
that product itself, accumulated into w by BLAS, without storing the gradient.

>>> import numpy as np
>>> x = np.array([8.0])
>>> opt = SGD(lr=0.1)
>>> opt.step([x], [2 * x - 4])      # dy/dx of y = x² − 4x + 6
>>> float(x[0])
6.8
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .engine.fast.blas import reuse_product, scale_add
from .errors import InvalidValueError, UnknownNameError, require_finite
from .optim_base import Optimizer, non_negative, unit_interval

__all__ = ["SGD", "AdaGrad", "Adam", "Optimizer", "RMSProp", "get", "names", "takes"]

class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, dampening, Nesterov, weight decay.

    With ``g = ∂C/∂w + λw``:  plain ``w ← w − η g``; with momentum μ the buffer
    ``b ← μ b + (1 − dampening) g`` (``b = g`` on the first step) and ``w ← w − η b``, or with
    Nesterov ``w ← w − η (g + μ b)`` — as ``torch.optim.SGD``.
    """

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = non_negative("momentum", momentum)
        self.dampening = require_finite("dampening", dampening)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        self._product_kernels: list[Any] = []  # one per array (see step_products)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise InvalidValueError(
                f"nesterov needs momentum > 0 and dampening 0, got momentum={momentum!r}, "
                f"dampening={dampening!r}"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.nesterov:
            return "nesterov"
        return "momentum" if self.momentum > 0 else "sgd"

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    @property
    def plain(self) -> bool:
        """True when a step is exactly the seeds' rule ``w ← w − η·∂C/∂w`` (no momentum, no
        weight decay): then ‖Δw‖ = η‖∂C/∂w‖, which the training loop and the Monitor use."""
        return self.momentum == 0 and self.weight_decay == 0

    def _direction(self, param: np.ndarray, grad: np.ndarray,
                   state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
        scratch = state["scratch"]
        g = self._decayed(param, grad, self.weight_decay, state)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = buf = np.array(g, dtype=param.dtype, copy=True)
            else:  # b ← μ·b + (1 − dampening)·g, in one pass where BLAS allows
                scale_add(buf, g, 1 - self.dampening, self.momentum, state)
            if self.nesterov:
                np.multiply(buf, self.momentum, out=scratch)
                scratch += g
                g = scratch
            else:
                g = buf
        return g, self.lr

    def step_products(self, params: Sequence[np.ndarray],
                      factors: Sequence[tuple[np.ndarray, np.ndarray]]) -> bool:
        """The plain step ``w ← w − η·g`` for gradients given as products ``g = leftᵀ·right``
        — a Dense layer's ∂C/∂W = aᵀδ and ∂C/∂b = δᵀ·1 — without storing them.

        Each update is one accumulating BLAS product, C ← −η·leftᵀ·right + C with C = w:
        the same rule, in one pass over w instead of writing g and then reading it back.
        Returns False, having changed nothing, when the rule is not plain (momentum, weight
        decay) or some array cannot be updated so (layout, dtype, no NumPy BLAS): then store
        the gradients and call :meth:`step`.
        """
        if not self.plain or len(params) != len(factors):
            return False
        previous = self._product_kernels
        if len(previous) != len(params):
            previous = [None] * len(params)
        kernels = self._product_kernels = [
            reuse_product(kernel, param, left, right)
            for kernel, param, (left, right) in zip(previous, params, factors, strict=True)]
        if any(kernel is None for kernel in kernels):
            return False
        rate = -self.lr
        for kernel in kernels:
            kernel(rate)
        return True


class AdaGrad(Optimizer):
    """AdaGrad: each weight's rate shrinks with its accumulated squared gradients.

    ``s ← s + g²``, ``w ← w − η_t g / (√s + ε)`` with ``η_t = η / (1 + (t − 1)·lr_decay)`` —
    as ``torch.optim.Adagrad`` (``s`` starts at ``initial_accumulator_value``).
    """

    name = "adagrad"

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.lr_decay = non_negative("lr_decay", lr_decay)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.initial_accumulator_value = non_negative(
            "initial_accumulator_value", initial_accumulator_value)
        self.eps = non_negative("eps", eps)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _direction(self, param: np.ndarray, grad: np.ndarray,
                   state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["sum"] = np.full_like(param, self.initial_accumulator_value)
            state["std"] = np.empty_like(param)
        state["step"] += 1
        scratch, std, total = state["scratch"], state["std"], state["sum"]
        g = self._decayed(param, grad, self.weight_decay, state)
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        np.multiply(g, g, out=scratch)
        total += scratch
        np.sqrt(total, out=std)
        std += self.eps
        np.multiply(g, clr, out=scratch)                # torch's addcdiv order: (η_t·g)/std
        scratch /= std
        return scratch, 1.0


class RMSProp(Optimizer):
    """RMSProp: divide the gradient by a running root-mean-square of recent gradients.

    ``v ← α v + (1 − α) g²``; centered: ``ḡ ← α ḡ + (1 − α) g`` and ``v − ḡ²`` in place of
    ``v``; ``d = √v + ε``; then ``w ← w − η g/d``, or with momentum μ ``b ← μ b + g/d``,
    ``w ← w − η b`` — as ``torch.optim.RMSprop``.
    """

    name = "rmsprop"

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        super().__init__(lr)
        self.alpha = unit_interval("alpha", alpha)
        self.eps = non_negative("eps", eps)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.momentum = non_negative("momentum", momentum)
        self.centered = bool(centered)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def _direction(self, param: np.ndarray, grad: np.ndarray,
                   state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["square_avg"] = np.zeros_like(param)
            state["avg"] = np.empty_like(param)
            if self.centered:
                state["grad_avg"] = np.zeros_like(param)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
        state["step"] += 1
        scratch, avg, square_avg = state["scratch"], state["avg"], state["square_avg"]
        g = self._decayed(param, grad, self.weight_decay, state)
        square_avg *= self.alpha
        np.multiply(g, 1 - self.alpha, out=scratch)     # torch's addcmul order: ((1 − α)·g)·g
        scratch *= g
        square_avg += scratch
        if self.centered:
            grad_avg = state["grad_avg"]
            np.subtract(g, grad_avg, out=scratch)      # lerp: ḡ + (1 − α)(g − ḡ)
            scratch *= 1 - self.alpha
            grad_avg += scratch
            np.multiply(grad_avg, grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            np.divide(g, avg, out=scratch)
            buf += scratch
            np.multiply(buf, self.lr, out=scratch)
        else:
            np.multiply(g, self.lr, out=scratch)        # torch's addcdiv order: (η·g)/d
            scratch /= avg
        return scratch, 1.0


class Adam(Optimizer):
    """Adam: momentum on the gradient and RMS scaling, with bias correction.

    ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) g²`` (amsgrad: ``v̂ = max(v̂, v)``),
    ``w ← w − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)``. Weight decay is added to the
    gradient (L2, as ``torch.optim.Adam``; not decoupled AdamW).
    """

    name = "adam"

    def __init__(self, lr: float = 0.001, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(lr)
        if isinstance(betas, (str, bytes)) or len(betas) != 2:
            raise InvalidValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (unit_interval("betas[0]", betas[0]), unit_interval("betas[1]", betas[1]))
        self.eps = non_negative("eps", eps)
        self.weight_decay = non_negative("weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _direction(self, param: np.ndarray, grad: np.ndarray,
                   state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            state["denom"] = np.empty_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        t, (beta1, beta2) = state["step"], self.betas
        scratch, denom = state["scratch"], state["denom"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        g = self._decayed(param, grad, self.weight_decay, state)
        scale_add(exp_avg, g, 1 - beta1, beta1, state, "m")          # m ← β₁ m + (1 − β₁) g
        np.multiply(g, g, out=scratch)
        scale_add(exp_avg_sq, scratch, 1 - beta2, beta2, state, "v")  # v ← β₂ v + (1 − β₂) g²
        second = exp_avg_sq
        if self.amsgrad:
            second = state["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        # η/(1 − β₁ᵗ) · m/(√v/√(1 − β₂ᵗ) + ε) = η√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε√(1 − β₂ᵗ)):
        # the bias corrections fold into two scalars, two passes fewer
        correction = math.sqrt(1 - beta2**t)
        np.sqrt(second, out=denom)
        denom += self.eps * correction
        np.divide(exp_avg, denom, out=scratch)
        return scratch, self.lr * correction / (1 - beta1**t)


_REGISTRY: dict[str, tuple[type[Optimizer], dict[str, Any]]] = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (AdaGrad, {}),
    "rmsprop": (RMSProp, {}),
    "adam": (Adam, {}),
}


def names() -> list[str]:
    """Names accepted by :func:`get`."""
    return list(_REGISTRY)


def get(name: str | Optimizer, **hyper: Any) -> Optimizer:
    """Build an optimizer by name: sgd, momentum (μ = 0.9), nesterov (μ = 0.9), adagrad,
    rmsprop, adam; keyword arguments override the defaults. An instance is returned as is.

    >>> get("momentum", lr=0.1)
    SGD(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False)
    """
    if isinstance(name, Optimizer):
        if hyper:
            raise InvalidValueError("hyperparameters cannot be given with an optimizer object")
        return name
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UnknownNameError("optimizer", name, _REGISTRY)
    cls, defaults = _REGISTRY[key]
    allowed = _allowed(cls)
    unknown = sorted(set(hyper) - allowed)
    if unknown:
        raise InvalidValueError(
            f"unknown hyperparameter {unknown[0]!r} for optimizer {key!r}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )
    return cls(**{**defaults, **hyper})


def takes(name: str, hyperparameter: str) -> bool:
    """Whether the optimizer called ``name`` (as :func:`get` reads it) has ``hyperparameter``.

    >>> takes("Nesterov", "momentum"), takes("adam", "momentum")
    (True, False)
    """
    entry = _REGISTRY.get(str(name).strip().lower())
    return entry is not None and hyperparameter in _allowed(entry[0])


def _allowed(cls: type[Optimizer]) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self"}
