"""Optimizers: the rule that turns gradients into a step, shared by ``descent`` and ``fit``.

Every optimizer updates a list of NumPy arrays *in place* from their gradients: the articles'
rule ``w_new = w_old − η ∂C/∂w`` (:class:`SGD`) and its refinements. Each one is written as
the direction d and the rate of its step ``w ← w − rate·d`` (:meth:`Optimizer.direction`),
with the update rules and defaults of ``torch.optim`` (single-tensor code path), so a float64
run reproduces a PyTorch run to rounding. State (momentum buffers, running averages, step
counts) is kept per *position* in the ``params`` list; :meth:`Optimizer.reset` forgets it.

This module sits beneath both wings that step with it: :mod:`gradsight.calculus.descent`
moves a point x, :func:`gradsight.fit` moves a network's weights. The training loop's fast
path (:mod:`gradsight.engine.fast.update`) applies the same rules with fewer passes over
memory and is tested against this one.

>>> import numpy as np
>>> x = np.array([8.0])
>>> opt = SGD(lr=0.1)
>>> opt.step([x], [2 * x - 4])      # dy/dx of y = x² − 4x + 6
>>> float(x[0])
6.8
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidValueError, ShapeError, UnknownNameError, require_finite

__all__ = [
    "SGD", "AdaGrad", "Adam", "Optimizer", "RMSProp", "get", "names", "non_negative",
    "positive", "takes", "unit_interval",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def positive(name: str, value: float) -> float:
    """``value`` as a float if it is finite and > 0, else a one-line error naming ``name``."""
    number = require_finite(name, value)
    if number <= 0:
        raise InvalidValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def non_negative(name: str, value: float) -> float:
    """``value`` as a float if it is finite and ≥ 0, else a one-line error naming ``name``."""
    number = require_finite(name, value)
    if number < 0:
        raise InvalidValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def unit_interval(name: str, value: float) -> float:
    """``value`` as a float if it lies in [0, 1), else a one-line error naming ``name``."""
    number = require_finite(name, value)
    if not 0.0 <= number < 1.0:
        raise InvalidValueError(f"{name} must be in [0, 1), got {value!r}")
    return number


class Optimizer:
    """Base class: checks ``params``/``grads``, keeps per-position state, applies the steps.

    A subclass writes its rule in :meth:`direction`: for one array, the direction d and the
    rate of the step ``param ← param − rate·d``, advancing the position's state (a dict that
    persists between steps, empty on the first one).
    """

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self._states: list[dict[str, Any]] = []

    @property
    def lr(self) -> float:
        """Learning rate η (> 0); may be changed between steps (a schedule)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = positive("lr", value)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-able dict (``get(name, **h)`` rebuilds it)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    def reset(self) -> None:
        """Forget all state: momentum buffers, running averages, step counts."""
        self._states = []

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update every array of ``params`` in place from the matching array of ``grads``:
        ``param ← param − rate·d`` with (d, rate) from :meth:`direction`."""
        states = self.states(params, grads)  # every array checked first: no half step
        for param, grad, state in zip(params, grads, states, strict=True):
            d, rate = self.direction(param, grad, state)
            param -= rate * d

    def direction(self, param: np.ndarray, grad: np.ndarray,
                  state: dict[str, Any]) -> tuple[np.ndarray, float]:
        """(d, rate) of the update ``param ← param − rate·d`` for one array, advancing
        ``state`` (subclasses)."""
        raise NotImplementedError

    def states(self, params: Sequence[np.ndarray],
               grads: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """The state dict of every position, after checking that ``params`` and ``grads``
        are float arrays of matching shapes (and the shapes the state was made for)."""
        if len(params) != len(grads):
            raise ShapeError(f"got {len(params)} parameter arrays but {len(grads)} gradients")
        states = self._states
        if len(states) != len(params):
            if any(states):
                raise ShapeError(
                    f"optimizer holds state for {len(states)} parameter arrays, got "
                    f"{len(params)}; call reset() before using it on other parameters"
                )
            states = self._states = [{} for _ in params]
        for index, (param, grad, state) in enumerate(zip(params, grads, states, strict=True)):
            _check(index, param, grad, state)
        return states

    @staticmethod
    def _new_state(state: dict[str, Any], param: np.ndarray) -> None:
        state["shape"] = param.shape
        state["step"] = 0


def _check(index: int, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
    if not isinstance(param, np.ndarray) or param.dtype not in _FLOAT_DTYPES:
        kind = getattr(param, "dtype", type(param).__name__)
        raise InvalidValueError(
            f"params[{index}] must be a float32 or float64 NumPy array, got {kind}"
        )
    shape = grad.shape if isinstance(grad, np.ndarray) else np.shape(grad)
    if shape != param.shape:
        raise ShapeError(f"grads[{index}] has shape {shape}, params[{index}] has {param.shape}")
    if state and state["shape"] != param.shape:
        raise ShapeError(
            f"params[{index}] changed shape from {state['shape']} to {param.shape}; "
            "call reset() before using the optimizer on other parameters"
        )


def decayed(param: np.ndarray, grad: np.ndarray, weight_decay: float) -> np.ndarray:
    """``g + λ·w``: L2 weight decay added to the gradient (``grad`` itself is not changed)."""
    return grad if weight_decay == 0 else grad + weight_decay * param


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
        """True when a step is exactly the articles' rule ``w ← w − η·∂C/∂w`` (no momentum,
        no weight decay)."""
        return self.momentum == 0 and self.weight_decay == 0

    def direction(self, param: np.ndarray, grad: np.ndarray,
                  state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
        g = decayed(param, grad, self.weight_decay)
        if self.momentum == 0:
            return g, self.lr
        buf = state.get("momentum_buffer")
        if buf is None:  # b = g on the first step
            state["momentum_buffer"] = buf = np.array(g, dtype=param.dtype, copy=True)
        else:  # b ← μ·b + (1 − dampening)·g
            buf *= self.momentum
            buf += (1 - self.dampening) * g
        return (g + self.momentum * buf if self.nesterov else buf), self.lr


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

    def direction(self, param: np.ndarray, grad: np.ndarray,
                  state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["sum"] = np.full_like(param, self.initial_accumulator_value)
        state["step"] += 1
        g = decayed(param, grad, self.weight_decay)
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        state["sum"] += g * g
        std = np.sqrt(state["sum"]) + self.eps
        return (g * clr) / std, 1.0  # torch's addcdiv order: (η_t·g)/std


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

    def direction(self, param: np.ndarray, grad: np.ndarray,
                  state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["square_avg"] = np.zeros_like(param)
            if self.centered:
                state["grad_avg"] = np.zeros_like(param)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
        state["step"] += 1
        alpha, square_avg = self.alpha, state["square_avg"]
        g = decayed(param, grad, self.weight_decay)
        square_avg *= alpha
        square_avg += ((1 - alpha) * g) * g  # torch's addcmul order: ((1 − α)·g)·g
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (g - grad_avg)  # lerp: ḡ + (1 − α)(g − ḡ)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            return buf * self.lr, 1.0
        return (g * self.lr) / avg, 1.0  # torch's addcdiv order: (η·g)/d


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

    def direction(self, param: np.ndarray, grad: np.ndarray,
                  state: dict[str, Any]) -> tuple[np.ndarray, float]:
        if not state:
            self._new_state(state, param)
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        t, (beta1, beta2) = state["step"], self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g = decayed(param, grad, self.weight_decay)
        m *= beta1
        m += (1 - beta1) * g                 # m ← β₁ m + (1 − β₁) g
        v *= beta2
        v += (1 - beta2) * (g * g)           # v ← β₂ v + (1 − β₂) g²
        if self.amsgrad:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        return m / denom, self.lr / (1 - beta1**t)


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
    return set(inspect.signature(cls.__init__).parameters) - {"self"}
