"""The run's set-up: how the network ends and what it is trained with, seen at its first step.

Some diagnoses need more than the per-layer numbers: a softmax fed to a cross-entropy that
applies log-softmax again, a first loss far from the chance level ln C of a C-class task, an
adaptive optimizer that hides a vanishing gradient. Both backends write what they saw of the
run into the history they yield, as a plain dict with the keys of :class:`RunSetup`:

* the PyTorch adapter: ``watcher.history.setup`` (also ``watcher.setup``), read from autograd
  at the first loss of the run (:mod:`gradsight.adapters.torch._setup`);
* the NumPy engine: ``monitor.history.setup`` (also ``monitor.setup``), read from the model,
  its loss, its optimizer and the first batch's output (:func:`engine_setup`).

``getattr(history, "setup", None)`` reads it from a Monitor, a Watcher or the list either
yields; it is None for a history without one (a plain list, a history read from JSON/CSV).
Every key is always present; a value that could not be measured is None, or ``"unknown"``
for ``output_activation`` (where None means "nothing: logits").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["RunSetup", "UNKNOWN", "CLASS_LOSSES", "BINARY_LOSSES", "ROW_SUM_TOLERANCE",
           "engine_setup", "looks_like_probabilities"]

#: a value the backend could not measure (compiled autograd nodes, a custom layer, ...)
UNKNOWN = "unknown"
#: losses whose input has a class dimension (C = its size): rows of probabilities sum to 1
CLASS_LOSSES = ("cross_entropy", "nll")
#: losses of a two-class task (C = 2), on one output per sample
BINARY_LOSSES = ("bce", "bce_with_logits")
#: how far from 1 a row of probabilities may sum
ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RunSetup:
    """What a backend saw of the run at its first training step (``to_dict()`` is what the
    history carries as ``history.setup``).

    output_activation : what is applied to the network's output before the loss:
        ``"softmax"``, ``"log_softmax"``, ``"sigmoid"``, ``"tanh"``, ``"relu"`` (also
        ``"gelu"``, ``"silu"``, ``"softplus"``, ``"leaky_relu"``, ``"elu"``, ``"log_sigmoid"``,
        ``"hardtanh"``), None when nothing is (the loss gets logits / a linear output), or
        ``"unknown"`` when it could not be read (under ``torch.compile``, a custom autograd
        function, a custom engine layer, no loss seen).
    loss : the loss's kind: ``"cross_entropy"`` (nn.CrossEntropyLoss, F.cross_entropy,
        the engine's cross_entropy), ``"nll"``, ``"bce"``, ``"bce_with_logits"``, ``"mse"``
        (MSELoss, the engine's quadratic cost), ``"l1"``, ``"huber"``, ``"smooth_l1"``,
        ``"kl_div"``, another loss module's class name, ``"unknown"`` (a loss seen whose kind
        could not be read) or None (no loss seen).
    classes : the number of classes C of a classification loss — the size of the class
        dimension of the loss's input for cross_entropy/nll (dim 1, or dim 0 of a 1-D input,
        as PyTorch reads it: the last dimension of a (N, C) input), 2 for bce and
        bce_with_logits — else None.
    first_loss : the loss of the first training step (the mean of its losses when several
        were computed), None if not seen.
    probabilities : whether the values fed to the loss at the first step look like
        probabilities (:func:`looks_like_probabilities`): all finite and in [0, 1] and, for
        cross_entropy/nll, each row along the class dimension summing to 1 within 1e-3.
        None when they could not be seen.
    optimizer : the optimizer's class name (``"SGD"``, ``"Adam"``, ``"AdamW"``, ...; the
        engine's optimizers under the names of their torch.optim twins: ``"Adagrad"``,
        ``"RMSprop"``), None when not known.
    """

    output_activation: str | None = UNKNOWN
    loss: str | None = None
    classes: int | None = None
    first_loss: float | None = None
    probabilities: bool | None = None
    optimizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The six keys above, always all present."""
        return asdict(self)


def looks_like_probabilities(values: Any, class_axis: int | None) -> bool:
    """Whether ``values`` look like probabilities: all finite and in [0, 1] and, when
    ``class_axis`` is given, every row along it summing to 1 within :data:`ROW_SUM_TOLERANCE`.

    >>> looks_like_probabilities(np.array([[0.2, 0.8], [0.5, 0.5]]), 1)
    True
    >>> looks_like_probabilities(np.array([[0.2, 0.2], [0.5, 0.5]]), 1)
    False
    >>> looks_like_probabilities(np.array([[0.2], [0.9]]), None)
    True
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        if not (np.isfinite(array).all() and (array >= 0).all() and (array <= 1).all()):
            return False
    if class_axis is None:
        return True
    return bool((np.abs(array.sum(axis=class_axis) - 1.0) <= ROW_SUM_TOLERANCE).all())


# ---- the NumPy engine -------------------------------------------------------------------------
#: the engine's loss names → the kinds above
_ENGINE_LOSSES = {"quadratic": "mse", "cross_entropy": "cross_entropy",
                  "bce_with_logits": "bce_with_logits"}
#: the engine's optimizer classes whose torch.optim twin is spelled otherwise
_ENGINE_OPTIMIZERS = {"AdaGrad": "Adagrad", "RMSProp": "RMSprop"}


def engine_setup(model: Any, loss: Any, optimizer: Any, output: Any,
                 first_loss: Any) -> RunSetup:
    """The set-up of an engine run, from its first step: the model's last layer (an
    Activation layer names the output activation — ``linear`` is None —, a Dense layer means
    logits, anything else is ``"unknown"``), the loss's name, the output the loss got and
    its value, the optimizer's class."""
    layers = list(getattr(model, "layers", ()))
    activation: str | None = UNKNOWN
    if layers:
        last = layers[-1]
        function = getattr(last, "activation", None)
        if function is not None and hasattr(function, "base_name"):  # an Activation layer
            activation = None if function.base_name == "linear" else str(function.base_name)
        elif hasattr(last, "W") and hasattr(last, "grad_W"):  # a Dense layer: z itself
            activation = None
    name = getattr(loss, "name", None)
    kind = _ENGINE_LOSSES.get(name, name) if isinstance(name, str) else None
    values = None if output is None else np.asarray(output)
    classes = None
    if kind in CLASS_LOSSES and values is not None and values.ndim == 2:
        classes = int(values.shape[1])
    elif kind in BINARY_LOSSES:
        classes = 2
    probabilities = None
    if values is not None:
        probabilities = looks_like_probabilities(values, 1 if kind in CLASS_LOSSES else None)
    value = None if first_loss is None else float(first_loss)
    optimizer_name = None if optimizer is None else type(optimizer).__name__
    if optimizer_name is not None:
        optimizer_name = _ENGINE_OPTIMIZERS.get(optimizer_name, optimizer_name)
    return RunSetup(activation, kind, classes, value, probabilities, optimizer_name)
