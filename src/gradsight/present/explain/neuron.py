"""The articles' single sigmoid neuron ŷ = σ(wᵀx + b) with the quadratic cost: one chain-rule
walkthrough with numbers, and its training curve on a truth table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ... import engine as nn
from ... import optim
from ...activations import sigmoid
from ...engine.train import fit
from ...errors import (
    ShapeError,
    UnknownNameError,
    require_finite,
    require_positive,
    require_positive_int,
)
from ._common import (
    ENGINE_ATOL,
    ENGINE_RTOL,
    NUMERIC_ATOL,
    NUMERIC_RTOL,
    as_tuple,
    central_difference,
    check_line,
    close,
    factor,
    floats,
    fmt,
    html_lines,
    max_rel_error,
    vec,
)

__all__ = ["JSON_KEYS", "NeuronWalkthrough", "explain_neuron", "NeuronTraining", "train_neuron"]

#: the keys of the single neuron's JSON document, in order
JSON_KEYS = ("x", "w", "b", "y", "z", "y_hat", "dC_dyhat", "dyhat_dz", "dz_dw", "dC_dw",
             "dC_db", "lr", "w_new", "b_new")


@dataclass
class NeuronWalkthrough:
    """Every number of one forward and backward pass through ŷ = σ(wᵀx + b), C = ½(ŷ − y)²."""

    x: tuple[float, ...]
    w: tuple[float, ...]
    b: float
    y: float
    z: float
    y_hat: float
    dC_dyhat: float
    dyhat_dz: float
    dz_dw: tuple[float, ...]
    dC_dw: tuple[float, ...]
    dC_db: float
    lr: float
    w_new: tuple[float, ...]
    b_new: float
    engine_dC_dw: tuple[float, ...] = ()
    engine_dC_db: float = math.nan
    numeric_dC_dw: tuple[float, ...] = ()
    numeric_dC_db: float = math.nan
    agree: bool = False

    @property
    def cost(self) -> float:
        """C = ½(ŷ − y)²."""
        return 0.5 * (self.y_hat - self.y) ** 2

    def check(self) -> dict[str, Any]:
        """The engine's and the numeric gradients with their largest relative errors."""
        hand = (*self.dC_dw, self.dC_db)
        return {
            "engine_dC_dw": list(self.engine_dC_dw), "engine_dC_db": self.engine_dC_db,
            "numeric_dC_dw": list(self.numeric_dC_dw), "numeric_dC_db": self.numeric_dC_db,
            "max_rel_error_engine": max_rel_error(hand, (*self.engine_dC_dw,
                                                          self.engine_dC_db)),
            "max_rel_error_numeric": max_rel_error(hand, (*self.numeric_dC_dw,
                                                           self.numeric_dC_db)),
            "agree": self.agree,
        }

    def to_dict(self, check: bool = True) -> dict[str, Any]:
        """The numbers by name: the keys :data:`JSON_KEYS` (``x, w, b, y, z, y_hat,
        dC_dyhat, dyhat_dz, dz_dw, dC_dw, dC_db, lr, w_new, b_new``) plus, with ``check``,
        ``"check"`` (:meth:`check`). ``gradsight explain --json`` prints it with
        ``check=False``: exactly those keys (it exits 1 when the check disagrees)."""
        out: dict[str, Any] = {}
        for key in JSON_KEYS:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        if check:
            out["check"] = self.check()
        return out

    def lines(self) -> list[str]:
        """The walkthrough as text, one step per line, with the numbers."""
        terms = " + ".join(f"{factor(w)}·{factor(x)}" for w, x in zip(self.w, self.x,
                                                                       strict=True))
        check = self.check()
        return [
            "Forward pass",
            f"  z = wᵀx + b = {terms} + {factor(self.b)} = {fmt(self.z)}",
            f"  ŷ = σ(z) = 1/(1 + e^(−z)) = {fmt(self.y_hat)}",
            f"  C = ½(ŷ − y)² = ½({fmt(self.y_hat)} − {factor(self.y)})² = {fmt(self.cost)}",
            "Backward pass (chain rule)",
            f"  ∂C/∂ŷ = ŷ − y = {fmt(self.y_hat)} − {factor(self.y)} = {fmt(self.dC_dyhat)}",
            f"  ∂ŷ/∂z = σ(z)(1−σ(z)) = {fmt(self.y_hat)}·{factor(1 - self.y_hat)} = "
            f"{fmt(self.dyhat_dz)}",
            f"  ∂z/∂w = x = {vec(self.dz_dw)}",
            f"  ∂C/∂w = ∂C/∂ŷ·∂ŷ/∂z·∂z/∂w = {factor(self.dC_dyhat)}·{factor(self.dyhat_dz)}"
            f"·{vec(self.dz_dw)} = {vec(self.dC_dw)}",
            f"  ∂C/∂b = ∂C/∂ŷ·∂ŷ/∂z·1 = {factor(self.dC_dyhat)}·{factor(self.dyhat_dz)} = "
            f"{fmt(self.dC_db)}",
            f"Gradient-descent update (η = {fmt(self.lr)})",
            f"  w_new = w_old − η ∂C/∂w = {vec(self.w)} − {fmt(self.lr)}·{vec(self.dC_dw)} = "
            f"{vec(self.w_new)}",
            f"  b_new = b_old − η ∂C/∂b = {fmt(self.b)} − {fmt(self.lr)}·{factor(self.dC_db)} "
            f"= {fmt(self.b_new)}",
            check_line(self.agree, check["max_rel_error_engine"], check["max_rel_error_numeric"]),
        ]

    def _repr_html_(self) -> str:
        return html_lines("Backprop through one sigmoid neuron", self.lines())


def _engine_neuron(x: np.ndarray, w: np.ndarray, b: float, y: float) -> tuple[np.ndarray, float]:
    """∂C/∂w, ∂C/∂b from gradsight's engine: Dense(n, 1) + sigmoid, quadratic cost."""
    dense = nn.Dense(len(x), 1)
    model = nn.Sequential([dense, nn.Activation("sigmoid")])
    dense.W[...] = w[:, None]
    dense.b[...] = b
    cost = nn.loss("quadratic")
    output = model.forward(x[None, :])
    model.backward(cost.gradient(output, np.array([[y]])))
    return dense.grad_W[:, 0].copy(), float(dense.grad_b[0])


def explain_neuron(x: ArrayLike = (1.0, 0.5), w: ArrayLike = (0.4, -0.6), b: float = 0.1,
                   y: float = 1.0, lr: float = 0.5) -> NeuronWalkthrough:
    """Walk one sample through ŷ = σ(wᵀx + b) and back with the chain rule.

    ∂C/∂ŷ = ŷ − y, ∂ŷ/∂z = σ(z)(1 − σ(z)), ∂z/∂w = x, their product ∂C/∂w, ∂C/∂b, and the
    update w_new = w_old − η ∂C/∂w — then the same gradient from the engine and from central
    differences (``agree`` says whether all three match).

    >>> walk = explain_neuron(x=(1, 0.5), w=(0.4, -0.6), b=0.1, y=1, lr=0.5)
    >>> walk.lines()[5]
    '  ∂C/∂ŷ = ŷ − y = 0.5498 − 1 = −0.4502'
    """
    x_arr, w_arr = floats("x", x), floats("w", w)
    if x_arr.shape != w_arr.shape:
        raise ShapeError(f"x has {x_arr.size} values and w has {w_arr.size}; "
                         f"they need the same length")
    b, y = require_finite("b", b), require_finite("y", y)
    lr = require_positive("lr", lr)
    z = float(w_arr @ x_arr + b)
    y_hat = float(sigmoid(z))
    dC_dyhat = y_hat - y
    dyhat_dz = y_hat * (1.0 - y_hat)
    dC_dw = dC_dyhat * dyhat_dz * x_arr
    dC_db = dC_dyhat * dyhat_dz
    engine_w, engine_b = _engine_neuron(x_arr, w_arr, b, y)
    params = np.concatenate([w_arr, [b]])

    def cost() -> float:
        return 0.5 * (float(sigmoid(params[:-1] @ x_arr + params[-1])) - y) ** 2

    numeric = central_difference(cost, params)
    hand = np.concatenate([dC_dw, [dC_db]])
    agree = (close(hand, np.concatenate([engine_w, [engine_b]]), ENGINE_RTOL, ENGINE_ATOL)
             and close(hand, numeric, NUMERIC_RTOL, NUMERIC_ATOL))
    return NeuronWalkthrough(
        x=as_tuple(x_arr), w=as_tuple(w_arr), b=b, y=y, z=z, y_hat=y_hat, dC_dyhat=dC_dyhat,
        dyhat_dz=dyhat_dz, dz_dw=as_tuple(x_arr), dC_dw=as_tuple(dC_dw), dC_db=dC_db, lr=lr,
        w_new=as_tuple(w_arr - lr * dC_dw), b_new=b - lr * dC_db,
        engine_dC_dw=as_tuple(engine_w), engine_dC_db=engine_b,
        numeric_dC_dw=as_tuple(numeric[:-1]), numeric_dC_db=float(numeric[-1]), agree=agree,
    )


# ---- the articles' neuron learning a truth table ------------------------------------------
_TRUTH_TABLES = {"or": [0, 1, 1, 1], "and": [0, 0, 0, 1], "nand": [1, 1, 1, 0],
                 "xor": [0, 1, 1, 0]}


@dataclass
class NeuronTraining:
    """The training curve of one sigmoid neuron ŷ = σ(wᵀx + b) with the quadratic cost."""

    data: str
    epochs: int
    lr: float
    seed: int
    losses: list[float]
    accuracies: list[float | None]
    w: tuple[float, ...]
    b: float
    outputs: np.ndarray
    predictions: np.ndarray
    targets: np.ndarray
    stopped: str | None = None

    @property
    def final_cost(self) -> float:
        """C = 1/(2N) Σ(ŷ − y)² of the final weights on the 4 inputs."""
        return 0.5 * float(np.mean((self.outputs - self.targets) ** 2))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.targets))

    @property
    def learned(self) -> bool:
        """Whether ŷ > 0.5 exactly on the inputs whose target is 1."""
        return bool(np.all(self.predictions == self.targets))

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "epochs": self.epochs, "lr": self.lr, "seed": self.seed,
                "losses": self.losses, "accuracies": self.accuracies, "w": list(self.w),
                "b": self.b, "outputs": self.outputs.tolist(),
                "predictions": self.predictions.tolist(), "learned": self.learned,
                "final_cost": self.final_cost, "stopped": self.stopped}


def train_neuron(data: str = "or", epochs: int = 1000, lr: float = 4.0,
                 seed: int = 0) -> NeuronTraining:
    """Train the articles' single neuron on a truth table ("or", "and", "nand", or "xor" — which
    no single neuron can learn) with w ← w − η ∂C/∂w on all 4 inputs per step
    (``gradsight.fit``, quadratic cost, SGD); return the loss per epoch and the result.

    >>> train_neuron("and", epochs=500).learned
    True
    """
    key = str(data).strip().lower()
    if key not in _TRUTH_TABLES:
        raise UnknownNameError("truth table", data, _TRUTH_TABLES)
    require_positive_int("epochs", epochs)
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    targets = np.array(_TRUTH_TABLES[key])
    model = nn.Sequential([nn.Dense(2, 1, seed=seed), nn.Activation("sigmoid")])
    history = fit(model, X, targets.astype(float), loss="quadratic",
                  optimizer=optim.SGD(lr=require_positive("lr", lr)), epochs=epochs,
                  batch_size=4, shuffle=False, seed=seed, progress=False)
    outputs = model.predict(X)[:, 0]
    dense = model.dense_layers[0]
    return NeuronTraining(
        data=key, epochs=epochs, lr=float(lr), seed=seed,
        losses=[float(row["loss"]) for row in history.epochs],
        accuracies=[row.get("accuracy") for row in history.epochs],
        w=as_tuple(dense.W[:, 0]), b=float(dense.b[0]), outputs=outputs,
        predictions=(outputs > 0.5).astype(int), targets=targets, stopped=history.stopped)
