"""Backpropagation layer by layer through a small network (``explain_network("2-2-1")``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ... import engine as nn
from ...activations import get as get_activation
from ...errors import ShapeError, require_positive
from ._common import (
    ENGINE_ATOL,
    ENGINE_RTOL,
    NUMERIC_ATOL,
    NUMERIC_RTOL,
    central_difference,
    check_line,
    close,
    floats,
    fmt,
    html_lines,
    mat,
    max_rel_error,
    sup,
    vec,
)

__all__ = ["LayerStep", "NetworkWalkthrough", "explain_network"]


@dataclass
class LayerStep:
    """One layer l of the walkthrough: z^l = a^(l−1) W^l + b^l, a^l = f(z^l), its error
    δ^l = ∂C/∂z^l and the gradients ∂C/∂W^l = (a^(l−1))ᵀ δ^l, ∂C/∂b^l = δ^l."""

    index: int
    activation: str
    W: np.ndarray
    b: np.ndarray
    z: np.ndarray
    a: np.ndarray
    f_prime: np.ndarray
    delta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dC_dW: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    dC_db: np.ndarray = field(default_factory=lambda: np.zeros(0))
    W_new: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    b_new: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        names = ("W", "b", "z", "a", "f_prime", "delta", "dC_dW", "dC_db", "W_new", "b_new")
        return {"layer": self.index, "activation": self.activation,
                **{name: getattr(self, name).tolist() for name in names}}


@dataclass
class NetworkWalkthrough:
    """Forward and backward pass of one sample through a small network, C = ½‖a^L − y‖²."""

    spec: str
    x: np.ndarray
    y: np.ndarray
    lr: float
    layers: list[LayerStep]
    cost: float
    engine_error: float
    numeric_error: float
    agree: bool

    @property
    def output(self) -> np.ndarray:
        return self.layers[-1].a

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "x": self.x.tolist(), "y": self.y.tolist(), "lr": self.lr,
            "cost": self.cost, "output": self.output.tolist(),
            "layers": [layer.to_dict() for layer in self.layers],
            "check": {"max_rel_error_engine": self.engine_error,
                      "max_rel_error_numeric": self.numeric_error, "agree": self.agree},
        }

    def lines(self) -> list[str]:
        """The walkthrough as text: forward per layer, δ from the output back, updates."""
        L = len(self.layers)
        out = [f"Network {self.spec}: z^l = a^(l−1) W^l + b^l, a^l = f(z^l); a⁰ = x = "
               f"{vec(self.x)}", "Forward pass"]
        for s in self.layers:
            l, p = sup(s.index), sup(s.index - 1)
            out.append(f"  z{l} = a{p} W{l} + b{l} = {vec(s.z)}    (W{l} = {mat(s.W)}, "
                       f"b{l} = {vec(s.b)})")
            out.append(f"  a{l} = {s.activation}(z{l}) = {vec(s.a)}")
        out.append(f"  C = ½‖a{sup(L)} − y‖² = ½‖{vec(self.output)} − {vec(self.y)}‖² = "
                   f"{fmt(self.cost)}")
        out.append("Backward pass (δ^l = ∂C/∂z^l)")
        for s in reversed(self.layers):
            l, n = sup(s.index), sup(s.index + 1)
            if s.index == L:
                out.append(f"  δ{l} = ∂C/∂a{l} ⊙ f′(z{l}) = (a{l} − y) ⊙ f′(z{l}) = "
                           f"{vec(s.a - self.y)} ⊙ {vec(s.f_prime)} = {vec(s.delta)}")
            else:
                above = self.layers[s.index]
                carried = above.delta @ above.W.T  # a row times (W^(l+1))ᵀ
                out.append(f"  δ{l} = (δ{n} (W{n})ᵀ) ⊙ f′(z{l}) = {vec(carried)} ⊙ "
                           f"{vec(s.f_prime)} = {vec(s.delta)}")
            out.append(f"  ∂C/∂W{l} = (a{sup(s.index - 1)})ᵀ δ{l} = {mat(s.dC_dW)},  "
                       f"∂C/∂b{l} = δ{l} = {vec(s.dC_db)}")
        out.append(f"Gradient-descent update (η = {fmt(self.lr)})")
        for s in self.layers:
            l = sup(s.index)
            out.append(f"  W{l} ← W{l} − η ∂C/∂W{l} = {mat(s.W_new)},  "
                       f"b{l} ← {vec(s.b_new)}")
        out.append(check_line(self.agree, self.engine_error, self.numeric_error))
        return out

    def _repr_html_(self) -> str:
        return html_lines(f"Backprop through the network {self.spec}", self.lines())




def _hand_forward(layers: list[LayerStep], x: np.ndarray, derivative: bool = True) -> np.ndarray:
    """Recompute z, a (and f′(z)) of every layer from its W, b; return the output."""
    a = x
    for step in layers:
        step.z = a @ step.W + step.b
        act = get_activation(step.activation)
        step.a = np.asarray(act(step.z), dtype=float)
        if derivative:
            step.f_prime = np.asarray(act.derivative(step.z), dtype=float)
        a = step.a
    return a


def _hand_backward(layers: list[LayerStep], x: np.ndarray, y: np.ndarray) -> None:
    """δ^L = (a^L − y) ⊙ f′(z^L); δ^l = (δ^(l+1) (W^(l+1))ᵀ) ⊙ f′(z^l) — rows, as
    z^l = a^(l−1) W^l + b^l with W^l stored n_in × n_out (Nielsen's columns write the same
    product (W^(l+1))ᵀ δ^(l+1))."""
    delta = (layers[-1].a - y) * layers[-1].f_prime
    for position in range(len(layers) - 1, -1, -1):
        step = layers[position]
        step.delta = delta
        previous = layers[position - 1].a if position else x
        step.dC_dW = np.outer(previous, delta)
        step.dC_db = delta.copy()
        if position:
            delta = (delta @ step.W.T) * layers[position - 1].f_prime


def _engine_network(model: Any, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    cost = nn.loss("quadratic")
    output = model.forward(x[None, :])
    model.backward(cost.gradient(output, y[None, :]))
    return [g.copy() for d in model.dense_layers for g in (d.grad_W, d.grad_b)]


def _layer_activations(model: Any) -> list[str]:
    """The activation name after each Dense layer of ``model`` ("linear" when none)."""
    names: list[str] = []
    for layer in model.layers:
        if hasattr(layer, "W"):
            names.append("linear")
        elif hasattr(layer, "activation") and names:
            names[-1] = layer.activation.name
    return names


def explain_network(spec: str = "2-2-1", x: ArrayLike | None = None, y: ArrayLike | None = None,
                    seed: int = 0, activation: str = "sigmoid",
                    output_activation: str | None = "sigmoid", init: str = "xavier_uniform",
                    lr: float = 0.5) -> NetworkWalkthrough:
    """Backpropagation through a small network (built with ``gradsight.mlp``) for one sample:
    the forward z^l = a^(l−1) W^l + b^l (rows), a^l of each layer, the output error
    δ^L = ∂C/∂a^L ⊙ f′(z^L), the errors carried back δ^l = (δ^(l+1) (W^(l+1))ᵀ) ⊙ f′(z^l),
    the gradients ∂C/∂W^l = (a^(l−1))ᵀ δ^l,
    ∂C/∂b^l = δ^l and the update — checked against the engine and central differences.

    ``x`` defaults to (1, 0.5) for 2 inputs (else 1, 0.5, 0, −0.5, … ) and ``y`` to all ones.

    >>> walk = explain_network("2-2-1", seed=0)
    >>> [layer.delta.shape for layer in walk.layers], walk.agree
    ([(2,), (1,)], True)
    """
    lr = require_positive("lr", lr)
    model = nn.mlp(spec, activation=activation, output_activation=output_activation,
                   init=init, seed=seed)
    dense = model.dense_layers
    n_in, n_out = dense[0].W.shape[0], dense[-1].W.shape[1]
    x_arr = floats("x", x) if x is not None else _default_x(n_in)
    y_arr = floats("y", y) if y is not None else np.ones(n_out)
    if x_arr.size != n_in or y_arr.size != n_out:
        raise ShapeError(f"network {spec} takes {n_in} input(s) and {n_out} target(s); got "
                         f"x with {x_arr.size} and y with {y_arr.size}")
    layers = [LayerStep(i + 1, name, d.W.astype(float).copy(), d.b.astype(float).copy(),
                        np.zeros(0), np.zeros(0), np.zeros(0))
              for i, (d, name) in enumerate(zip(dense, _layer_activations(model), strict=True))]
    _hand_forward(layers, x_arr)
    _hand_backward(layers, x_arr, y_arr)
    hand = [g for s in layers for g in (s.dC_dW, s.dC_db)]
    engine = _engine_network(model, x_arr, y_arr)
    numeric = _numeric_network(layers, x_arr, y_arr)
    for step in layers:
        step.W_new, step.b_new = step.W - lr * step.dC_dW, step.b - lr * step.dC_db
    agree = all(close(h, e, ENGINE_RTOL, ENGINE_ATOL) and
                close(h, n, NUMERIC_RTOL, NUMERIC_ATOL)
                for h, e, n in zip(hand, engine, numeric, strict=True))
    return NetworkWalkthrough(
        spec=str(spec), x=x_arr, y=y_arr, lr=lr, layers=layers,
        cost=0.5 * float(np.sum((layers[-1].a - y_arr) ** 2)),
        engine_error=max(max_rel_error(h, e) for h, e in zip(hand, engine, strict=True)),
        numeric_error=max(max_rel_error(h, n) for h, n in zip(hand, numeric, strict=True)),
        agree=agree)


def _default_x(n_in: int) -> np.ndarray:
    return 1.0 - 0.5 * np.arange(n_in, dtype=float)


def _numeric_network(layers: list[LayerStep], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Central differences of C = ½‖a^L − y‖² with respect to every W^l and b^l."""
    import copy

    probe = copy.deepcopy(layers)

    def cost() -> float:
        return 0.5 * float(np.sum((_hand_forward(probe, x, derivative=False) - y) ** 2))

    return [central_difference(cost, array) for s in probe for array in (s.W, s.b)]
