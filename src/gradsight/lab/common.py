"""What the experiments of the vanishing-gradient lab share: the lab's costs, argument
checks, the data, the network, plain SGD training with hooks, and the HTML tables of their
results in a notebook.

:mod:`gradsight.lab` documents the costs and re-exports :class:`NielsenCrossEntropy`
and :data:`LOSSES`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine import data as datasets
from ..engine import mlp
from ..engine.losses import BCEWithLogits, Loss
from ..engine.losses import loss as engine_loss
from ..engine.train import Callback, fit_one_of_many
from ..errors import DataError, InvalidValueError, UnknownNameError, require_positive_int
from ..optim import SGD

__all__ = [
    "LOSSES", "NielsenCrossEntropy", "callback_with", "check_hidden", "class_data",
    "html_table", "lab_cost", "lab_network", "train_sgd",
]


class NielsenCrossEntropy(BCEWithLogits):
    """Nielsen's CrossEntropyCost on sigmoid outputs a = σ(z), summed over the K outputs and
    averaged over the N samples: C = −1/N Σₙ Σₖ [y ln a + (1−y) ln(1−a)]; ∂C/∂z = (σ(z) − y)/N.

    (The engine's ``bce_with_logits`` averages over all N·K entries: K times smaller.)

    >>> import numpy as np
    >>> round(NielsenCrossEntropy().value(np.zeros((1, 2)), np.array([[1.0, 0.0]])), 6)
    1.386294
    """

    name = "nielsen_cross_entropy"

    def cost(self, output: np.ndarray, target: np.ndarray) -> float:
        return super().cost(output, target) * output.shape[1]

    def cost_and_gradient(self, output: np.ndarray, target: np.ndarray,
                          out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        value, gradient = super().cost_and_gradient(output, target, out)
        gradient *= output.shape[1]
        return value * output.shape[1], gradient


#: lab cost name → (engine Loss factory, output activation of the network)
LOSSES: dict[str, tuple[Callable[[], Loss], str | None]] = {
    "cross_entropy": (NielsenCrossEntropy, None),
    "softmax": (lambda: engine_loss("cross_entropy"), None),
    "quadratic": (lambda: engine_loss("quadratic"), "sigmoid"),
}


def lab_cost(name: str) -> tuple[Loss, str | None]:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in LOSSES:
        raise UnknownNameError("vanish loss", name, LOSSES)
    factory, output_activation = LOSSES[key]
    return factory(), output_activation


def check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(hidden)
    if not sizes:
        raise InvalidValueError("hidden must list at least one hidden layer size, got none")
    return tuple(require_positive_int("hidden layer size", n) for n in sizes)


def class_data(data: Any) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(X, integer labels, number of classes, name) of a data-set name or Dataset."""
    ds = datasets.load(data) if isinstance(data, str) else data
    n_classes = getattr(ds, "n_classes", None)
    if not n_classes or n_classes < 2:
        raise DataError(f"the vanishing-gradient lab needs a classification data set, got "
                        f"{getattr(ds, 'name', data)!r} without classes")
    return (np.asarray(ds.X, dtype=np.float64), np.asarray(ds.y).astype(np.intp),
            int(n_classes), str(getattr(ds, "name", data)))


def lab_network(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str, init: str,
             bias_init: str, output_activation: str | None, seed: int) -> Any:
    spec = "-".join(str(n) for n in (n_in, *hidden, n_out))
    return mlp(spec, activation=activation, output_activation=output_activation, init=init,
               bias_init=bias_init, seed=seed)


def train_sgd(model: Any, X: np.ndarray, y: np.ndarray, loss: Loss, epochs: int, lr: float,
           batch_size: int, seed: int, callbacks: Sequence[Any] = ()) -> Any:
    return fit_one_of_many(model, X, y, loss=loss, optimizer=SGD(lr=lr), epochs=epochs,
                           batch_size=batch_size, shuffle=True, seed=seed,
                           callbacks=list(callbacks), progress=False)


def callback_with(**methods: Callable[[Any], None]) -> Any:
    """A :class:`gradsight.Callback` whose hooks are the given functions of ``ctx``."""
    hooks = Callback()
    for name, fn in methods.items():
        setattr(hooks, name, fn)  # an instance attribute: fit calls hooks.<name>(ctx)
    return hooks


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], caption: str) -> str:
    """A result's table for a notebook (``_repr_html_``): one row per dict, the ``columns`` in
    order, numbers to 4 significant digits, None as an em dash; every text is escaped."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(column)))}</td>"
                                    for column in columns) + "</tr>" for row in rows)
    return (f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}"
            "</table>")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
