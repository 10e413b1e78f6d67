"""The optimizer base class: validates ``params``/``grads`` and keeps per-position state.

The update rules themselves are in :mod:`gradsight.optim`, which re-exports
:class:`Optimizer`; the validators below check their hyperparameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .engine.fast.blas import subtract_scaled
from .errors import InvalidValueError, ShapeError, require_finite

__all__ = ["Optimizer", "non_negative", "positive", "unit_interval"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def positive(name: str, value: float) -> float:
    number = require_finite(name, value)
    if number <= 0:
        raise InvalidValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def non_negative(name: str, value: float) -> float:
    number = require_finite(name, value)
    if number < 0:
        raise InvalidValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def unit_interval(name: str, value: float) -> float:
    number = require_finite(name, value)
    if not 0.0 <= number < 1.0:
        raise InvalidValueError(f"{name} must be in [0, 1), got {value!r}")
    return number


class Optimizer:
    """Base class: validates ``params``/``grads`` and keeps per-position state.

    Subclasses implement ``_direction(param, grad, state) -> (d, rate)`` for one array: the
    step is then ``param ← param − rate·d`` (:meth:`prepare` computes every d, then
    :meth:`apply_prepared` applies them); ``state`` is a dict that persists between steps for
    that position (empty on the first step). An optimizer whose step has another form may
    implement ``_update(param, grad, state)`` instead, which applies it.
    """

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self._states: list[dict[str, Any]] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, float, dict[str, Any]]] = []

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
        """Update every array of ``params`` in place from the matching array of ``grads``."""
        if self.prepare(params, grads) is not None:
            self.apply_prepared()
            return
        states = self._checked_states(params, grads)  # an optimizer written with _update
        for param, grad, state in zip(params, grads, states, strict=True):
            self._update(param, grad, state)

    def prepare(self, params: Sequence[np.ndarray],
                grads: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]] | None:
        """All of a step but its last line: check the arrays, advance the state, and return
        for each array the direction d and the rate of the update ``param ← param − rate·d``
        that :meth:`apply_prepared` then makes (the training loop's guard looks at ‖rate·d‖
        in between). None, with nothing done, for an optimizer that only defines
        ``_update``."""
        if type(self)._direction is Optimizer._direction:
            return None
        states = self._checked_states(params, grads)
        self._pending = [(param, *self._direction(param, grad, state), state)
                         for param, grad, state in zip(params, grads, states, strict=True)]
        return [(d, rate) for _, d, rate, _ in self._pending]

    def apply_prepared(self) -> None:
        """``param ← param − rate·d`` for every array of the last :meth:`prepare`."""
        pending, self._pending = self._pending, []
        for param, d, rate, state in pending:
            subtract_scaled(param, d, rate, state)

    def _checked_states(self, params: Sequence[np.ndarray],
                        grads: Sequence[np.ndarray]) -> list[dict[str, Any]]:
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
            self._check(index, param, grad, state)  # all checked first: no half-applied step
        return states

    def _direction(self, param: np.ndarray, grad: np.ndarray,
                   state: dict[str, Any]) -> tuple[np.ndarray, float]:
        """(d, rate) of the update ``param ← param − rate·d`` (subclasses; ``state`` is the
        position's dict, empty on the first step). An optimizer may instead define
        ``_update(param, grad, state)``, which applies the step itself."""
        raise NotImplementedError

    def _check(self, index: int, param: np.ndarray, grad: np.ndarray,
               state: dict[str, Any]) -> None:
        if not isinstance(param, np.ndarray) or param.dtype not in _FLOAT_DTYPES:
            kind = getattr(param, "dtype", type(param).__name__)
            raise InvalidValueError(
                f"params[{index}] must be a float32 or float64 NumPy array, got {kind}"
            )
        shape = grad.shape if isinstance(grad, np.ndarray) else np.shape(grad)
        if shape != param.shape:
            raise ShapeError(
                f"grads[{index}] has shape {shape}, params[{index}] has {param.shape}"
            )
        if state and state["shape"] != param.shape:
            raise ShapeError(
                f"params[{index}] changed shape from {state['shape']} to {param.shape}; "
                "call reset() before using the optimizer on other parameters"
            )

    @staticmethod
    def _new_state(state: dict[str, Any], param: np.ndarray) -> None:
        state["shape"] = param.shape
        state["step"] = 0
        state["scratch"] = np.empty_like(param)

    @staticmethod
    def _decayed(param: np.ndarray, grad: np.ndarray, weight_decay: float,
                 state: dict[str, Any]) -> np.ndarray:
        """``g + λ·w`` (L2 weight decay added to the gradient), without touching ``grad``."""
        if weight_decay == 0:
            return grad
        buffer = state.setdefault("decayed", np.empty_like(param))
        np.multiply(param, weight_decay, out=buffer)
        np.add(buffer, grad, out=buffer)
        return buffer

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        d, rate = self._direction(param, grad, state)
        subtract_scaled(param, d, rate, state)
