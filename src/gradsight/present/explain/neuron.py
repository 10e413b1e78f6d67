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
from ...engine.train import Callback, fit
from ...errors import (
    InvalidValueError,
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

__all__ = ["ACCURACY_RULE", "JSON_KEYS", "NeuronWalkthrough", "explain_neuron",
           "NeuronTraining", "train_neuron", "decide", "decided_accuracy"]

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
    z = _finite_z(x_arr, w_arr, b)
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
    with np.errstate(over="ignore", invalid="ignore"):
        w_new = w_arr - lr * dC_dw
    if not np.all(np.isfinite(w_new)):
        raise InvalidValueError(f"the update w − η·∂C/∂w overflows with η = {lr:g} and "
                                f"x = {as_tuple(x_arr)}: beyond the largest float "
                                f"({_LARGEST:.4g}); choose a smaller --lr or --x")
    return NeuronWalkthrough(
        x=as_tuple(x_arr), w=as_tuple(w_arr), b=b, y=y, z=z, y_hat=y_hat, dC_dyhat=dC_dyhat,
        dyhat_dz=dyhat_dz, dz_dw=as_tuple(x_arr), dC_dw=as_tuple(dC_dw), dC_db=dC_db, lr=lr,
        w_new=as_tuple(w_new), b_new=b - lr * dC_db,
        engine_dC_dw=as_tuple(engine_w), engine_dC_db=engine_b,
        numeric_dC_dw=as_tuple(numeric[:-1]), numeric_dC_db=float(numeric[-1]), agree=agree,
    )


_LARGEST = float(np.finfo(np.float64).max)


def _finite_z(x: np.ndarray, w: np.ndarray, b: float) -> float:
    """z = wᵀx + b, or a one-line error naming the term that overflows (no NumPy warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        terms = w * x
        z = float(np.sum(terms) + b)
    for i, term in enumerate(terms, 1):
        if not math.isfinite(float(term)):
            raise InvalidValueError(f"w{i}·x{i} = {w[i - 1]:g}·{x[i - 1]:g} overflows: beyond "
                                    f"the largest float ({_LARGEST:.4g}); choose smaller w or x")
    if not math.isfinite(z):
        raise InvalidValueError(f"z = wᵀx + b overflows: beyond the largest float "
                                f"({_LARGEST:.4g}); choose smaller w, x or b")
    return z


# ---- the articles' neuron learning a truth table ------------------------------------------
_TRUTH_TABLES = {"or": [0, 1, 1, 1], "and": [0, 0, 0, 1], "nand": [1, 1, 1, 0],
                 "xor": [0, 1, 1, 0]}
_TRUTH_INPUTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))

#: how close to the threshold 0.5 an output is "on" it: rounding noise (≈ 1e-16 around σ = ½)
#: must not decide whether an answer counts as right
UNDECIDED_WITHIN = 1e-9
#: the rule by which an output ŷ answers 1, 0 or nothing, as the outputs state it
ACCURACY_RULE = ("ŷ > 0.5 + 1e-9 answers 1 and ŷ < 0.5 − 1e-9 answers 0; a ŷ within 1e-9 of "
                 "0.5 is undecided and counts as wrong")


def decide(outputs: ArrayLike) -> np.ndarray:
    """The answer of each output ŷ: 1 above 0.5 + 1e-9, 0 below 0.5 − 1e-9, −1 (undecided)
    in between — an output exactly at the threshold is neither right nor wrong by chance.

    >>> decide([0.9, 0.1, 0.5, 0.5 + 1e-16]).tolist()
    [1, 0, -1, -1]
    """
    values = np.asarray(outputs, dtype=float)
    return np.where(values > 0.5 + UNDECIDED_WITHIN, 1,
                    np.where(values < 0.5 - UNDECIDED_WITHIN, 0, -1)).astype(int)


def decided_accuracy(outputs: ArrayLike, targets: ArrayLike) -> float:
    """The share of outputs whose answer (:func:`decide`) is the target; undecided is wrong.

    >>> decided_accuracy([0.5, 0.5, 0.5, 0.5], [0, 1, 1, 0])
    0.0
    """
    answers = decide(np.asarray(outputs, dtype=float).reshape(-1))
    return float(np.mean(answers == np.asarray(targets).reshape(-1)))


class _EpochAccuracy(Callback):
    """The accuracy of each epoch's outputs before its update (one batch of all 4 inputs per
    epoch), by :func:`decided_accuracy`; the engine's own (ŷ > 0.5) flips on rounding."""

    read_only = True

    def __init__(self, targets: np.ndarray) -> None:
        self.targets = targets
        self.accuracies: list[float | None] = []

    def on_after_backward(self, ctx: Any) -> None:
        if ctx.output is not None:
            self.accuracies.append(decided_accuracy(ctx.output[:, 0], self.targets))


@dataclass
class NeuronTraining:
    """The training curve of one sigmoid neuron ŷ = σ(wᵀx + b) with the quadratic cost.

    ``predictions`` are the answers of :func:`decide` (1, 0, or −1 for undecided) and
    ``accuracies`` follow :data:`ACCURACY_RULE`."""

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
    w_start: tuple[float, ...] = ()
    b_start: float = math.nan

    def __repr__(self) -> str:
        return (f"NeuronTraining({self.data}, {self.epochs} epochs, η = {self.lr:g}: "
                f"C {self.final_cost:.4g}, accuracy {self.accuracy:.0%}, "
                f"{'learned' if self.learned else 'not learned'})")

    def _repr_html_(self) -> str:
        """In a notebook: the text of :meth:`lines` (the sampled curve, the answers, the
        accuracy rule and the verdict), wrapped to the cell's width."""
        import html

        text = html.escape("\n".join(self.lines()))
        return f"<pre style='white-space: pre-wrap'>{text}</pre>"

    @property
    def final_cost(self) -> float:
        """C = 1/(2N) Σ(ŷ − y)² of the final weights on the 4 inputs."""
        return 0.5 * float(np.mean((self.outputs - self.targets) ** 2))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.targets))

    @property
    def learned(self) -> bool:
        """Whether ŷ > 0.5 exactly on the inputs whose target is 1 (and clearly: no output
        within 1e-9 of 0.5)."""
        return bool(np.all(self.predictions == self.targets))

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "epochs": self.epochs, "lr": self.lr, "seed": self.seed,
                "w_start": list(self.w_start), "b_start": self.b_start,
                "losses": self.losses, "accuracies": self.accuracies, "w": list(self.w),
                "b": self.b, "outputs": self.outputs.tolist(),
                "predictions": self.predictions.tolist(), "accuracy_rule": ACCURACY_RULE,
                "learned": self.learned, "final_cost": self.final_cost,
                "stopped": self.stopped}

    def lines(self, plot: str | None = None) -> list[str]:
        """The training as text: the sampled curve, the outputs, the verdict and the rule
        by which an output counts as right."""
        name = self.data.upper()
        out = [f"One sigmoid neuron ŷ = σ(w₁x₁ + w₂x₂ + b) learning {name}: "
               f"C = 1/(2N) Σ(ŷ − y)² over the N = 4 inputs",
               f"w ← w − η ∂C/∂w on all 4 inputs per epoch, η = {fmt(self.lr)}, "
               f"{self.epochs} epochs, random seed {self.seed}",
               "C and accuracy at the start of each epoch (before its update); end: after the "
               "last update",
               f"accuracy: {ACCURACY_RULE}", "  epoch  C           accuracy"]
        for i in _sampled_epochs(len(self.losses)):
            accuracy = self.accuracies[i]
            shown = "—" if accuracy is None else f"{accuracy:.0%}"
            out.append(f"  {i:>5}  {fmt(self.losses[i]):<10}  {shown:>8}")
        out.append(f"  {'end':>5}  {fmt(self.final_cost):<10}  {self.accuracy:>8.0%}")
        out.append("  x1  x2  target y  ŷ       answer")
        for (x1, x2), t, o, p in zip(_TRUTH_INPUTS, self.targets, self.outputs,
                                     self.predictions, strict=True):
            answer = "undecided" if p < 0 else str(int(p))
            out.append(f"  {x1:>2g}  {x2:>2g}  {int(t):>8}  {fmt(o):<7} {answer:>9}")
        out.append(f"w = ({fmt(self.w[0])}, {fmt(self.w[1])}), b = {fmt(self.b)}")
        if self.stopped:
            out.append(f"training stopped: {self.stopped}")
        out.append(self.verdict())
        if plot:
            out.append(f"figure: {plot}")
        return out

    def verdict(self) -> str:
        """One sentence: learned, cannot learn (XOR), saturated, or not yet."""
        name = self.data.upper()
        if self.learned:
            return f"learned {name}: ŷ > 0.5 exactly on the inputs whose target is 1"
        if self.data == "xor":
            return ("did not learn XOR: no single neuron can — no line separates its 1s "
                    "from its 0s (a hidden layer can: gradsight train --data xor)")
        if all(o * (1 - o) < 0.0025 for o in self.outputs):  # σ′ < 1% of its peak ¼
            return (f"did not learn {name}: the neuron saturated — σ′(z) = ŷ(1 − ŷ) ≈ 0 on "
                    "every input, so ∂C/∂w ≈ 0 and it stays stuck (try a smaller --lr)")
        return f"did not learn {name} yet: try more --epochs or another --lr"


def _sampled_epochs(n: int, count: int = 12) -> list[int]:
    """Epoch indices to print: all of a short run, else log-spaced (the slow start shows)."""
    if n <= count:
        return list(range(n))
    return sorted({0, n - 1, *(int(k) - 1 for k in np.geomspace(1, n, count).round())})


def train_neuron(data: str = "or", epochs: int = 1000, lr: float = 4.0, seed: int = 0,
                 w_start: ArrayLike | None = None,
                 b_start: float | None = None) -> NeuronTraining:
    """Train the articles' single neuron on a truth table ("or", "and", "nand", or "xor" — which
    no single neuron can learn) with w ← w − η ∂C/∂w on all 4 inputs per step
    (``gradsight.fit``, quadratic cost, SGD); return the loss per epoch and the result.

    The neuron starts from ``Dense(2, 1, seed)``'s weights, or from ``w_start`` (2 numbers)
    and ``b_start`` where given — e.g. a saturated start, ``w_start=(-3, -3), b_start=-2``.
    Accuracy follows :data:`ACCURACY_RULE`.

    >>> train_neuron("and", epochs=500).learned
    True
    """
    key = str(data).strip().lower()
    if key not in _TRUTH_TABLES:
        raise UnknownNameError("truth table", data, _TRUTH_TABLES)
    require_positive_int("epochs", epochs)
    X = np.array(_TRUTH_INPUTS)
    targets = np.array(_TRUTH_TABLES[key])
    model = nn.Sequential([nn.Dense(2, 1, seed=seed), nn.Activation("sigmoid")])
    dense = model.dense_layers[0]
    if w_start is not None:
        start = floats("w_start", w_start)
        if start.size != 2:
            raise ShapeError(f"w_start needs 2 numbers (one per input), got {start.size}")
        dense.W[:, 0] = start
    if b_start is not None:
        dense.b[0] = require_finite("b_start", b_start)
    w0, b0 = as_tuple(dense.W[:, 0]), float(dense.b[0])
    accuracy = _EpochAccuracy(targets)
    history = fit(model, X, targets.astype(float), loss="quadratic",
                  optimizer=optim.SGD(lr=require_positive("lr", lr)), epochs=epochs,
                  batch_size=4, shuffle=False, seed=seed, progress=False,
                  callbacks=[accuracy])
    outputs = model.predict(X)[:, 0]
    losses = [float(row["loss"]) for row in history.epochs]
    return NeuronTraining(
        data=key, epochs=epochs, lr=float(lr), seed=seed, losses=losses,
        # one per epoch (None where a stopped step was never shown to the callback)
        accuracies=(accuracy.accuracies + [None] * len(losses))[:len(losses)],
        w=as_tuple(dense.W[:, 0]), b=float(dense.b[0]), outputs=outputs,
        predictions=decide(outputs), targets=targets, stopped=history.stopped,
        w_start=w0, b_start=b0)
