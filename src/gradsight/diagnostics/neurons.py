"""Neuron states: what the derivative over the whole training set says about each hidden unit.

Seed 002's answer reads a unit's local derivative f′(z) as its "learning ability" on one
sample: large when backpropagation can still move the unit, ≈ 0 when it cannot. Over all
samples of a training set:

* derivative 0 on all samples and the neuron always wrong — it is saturated ("dumb") and
  will not improve: ``saturated-wrong``;
* derivative 0 on all samples and always right — it has "studied really well" (maybe
  overfitting): ``saturated-right``;
* derivative 0 on some samples and non-0 on others, mixed results — it is doing some work and
  may improve with further training: ``learning``.

Seed 003 adds the ReLU case: relu′(z) = 0 for z ≤ 0, so a ReLU unit with z ≤ 0 on every
sample never changes again — ``dead``.

:func:`classify_neurons` labels every hidden unit with these states and the numbers behind
each label; :func:`neuron_derivative_map` returns the units × samples matrix of f′(z) for the
"learning ability" picture.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, GradsightError, InvalidValueError, ShapeError
from ..io import jsonable

__all__ = ["NeuronState", "NeuronStates", "classify_neurons", "neuron_derivative_map",
           "hidden_layers", "STATES"]

#: the labels :func:`classify_neurons` gives, in the order they are tested
STATES = ("dead", "saturated-wrong", "saturated-right", "saturated", "learning", "quiet")


@dataclass
class NeuronState:
    """One hidden unit's state and the evidence behind it.

    layer : the activation layer's name (``"sigmoid0"``); ``hidden`` its hidden-layer
        number (0 = closest to the input); ``unit`` the unit's column.
    state : one of :data:`STATES` (see :func:`classify_neurons`).
    active_fraction : share of samples where f′(z) ≥ saturation·max f′ (the unit can learn).
    saturated_fraction : 1 − active_fraction (f′ ≈ 0: the sample teaches the unit nothing).
    positive_fraction : share of samples with z > 0 (for ReLU units: "on").
    mean_derivative : mean of f′(z) over the samples, and ``mean_z`` the mean of z.
    accuracy_on_samples : the network's accuracy on the samples where the unit is saturated
        (None when it saturates on no sample or the target is not a class).
    """

    layer: str
    hidden: int
    unit: int
    state: str
    activation: str
    active_fraction: float
    saturated_fraction: float
    positive_fraction: float
    mean_derivative: float
    mean_z: float
    accuracy_on_samples: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NeuronStates(list[NeuronState]):
    """A list of :class:`NeuronState` with counts per layer and an HTML summary."""

    def counts(self) -> dict[str, dict[str, int]]:
        """{layer: {state: number of units}} in forward order."""
        result: dict[str, dict[str, int]] = {}
        for neuron in self:
            result.setdefault(neuron.layer, dict.fromkeys(STATES, 0))[neuron.state] += 1
        return result

    def of_state(self, state: str) -> list[NeuronState]:
        return [neuron for neuron in self if neuron.state == state]

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"counts": self.counts(), "neurons": [n.to_dict() for n in self]})

    def __repr__(self) -> str:
        """One line per layer with the non-zero counts (the records are in the list)."""
        lines = [f"NeuronStates({len(self)} hidden units)"]
        for layer, counts in self.counts().items():
            shown = ", ".join(f"{state} {n}" for state, n in counts.items() if n)
            lines.append(f"  {layer}: {shown}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{s}</th>" for s in STATES)
        rows = "".join(
            f"<tr><td>{layer}</td>" + "".join(f"<td>{c[s]}</td>" for s in STATES) + "</tr>"
            for layer, c in self.counts().items()
        )
        return (f"<table><caption>gradsight neuron states ({len(self)} hidden units)</caption>"
                f"<tr><th>layer</th>{head}</tr>{rows}</table>")


def _check_fraction(name: str, value: float, *, open_low: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    low_ok = number > 0 if open_low else number >= 0
    if not (math.isfinite(number) and low_ok and number <= 1):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise InvalidValueError(f"{name} must be a number in {interval}, got {value!r}")
    return number


def hidden_layers(model: Any) -> list[int]:
    """Positions of the hidden activation layers (those followed by another weight layer).

    Raises :class:`GradsightError` when the model has none.
    """
    layers = list(getattr(model, "layers", []))
    weights = [i for i, layer in enumerate(layers) if hasattr(layer, "W")]
    hidden = [i for i, layer in enumerate(layers)
              if hasattr(layer, "activation") and weights and i < weights[-1]]
    if not hidden:
        raise GradsightError("the model has no hidden layer (no activation layer before its "
                             "last Dense layer): there are no hidden units to classify")
    return hidden


def _forward(model: Any, X: np.ndarray, keep: set[int]) -> tuple[dict[int, np.ndarray],
                                                                    np.ndarray]:
    """Output of the model on X and the pre-activations z of the layers in ``keep``.

    Computed from the layers' arrays (z = xW + b, a = f(z)), so the model's caches are left
    alone.
    """
    kept: dict[int, np.ndarray] = {}
    x = X
    for i, layer in enumerate(model.layers):
        if hasattr(layer, "W"):
            x = x @ layer.W + (layer.b if getattr(layer, "b", None) is not None else 0.0)
        elif hasattr(layer, "activation"):
            if i in keep:
                kept[i] = x
            x = layer.activation(x)
        else:
            x = layer.forward(x)
    return kept, x


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _inputs(model: Any, X: ArrayLike) -> np.ndarray:
    array = np.asarray(X)
    if array.dtype.kind not in "fiub":
        raise DataError(f"X must be numeric, got dtype {array.dtype}")
    weights = getattr(model.layers[0], "W", None) if model.layers else None
    dtype = weights.dtype if weights is not None and weights.dtype.kind == "f" else np.float64
    array = array.astype(dtype, copy=False)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ShapeError(f"X must be a non-empty 2-D array (samples × features), "
                         f"got shape {array.shape}")
    return array


def neuron_derivative_map(model: Any, X: ArrayLike, *, chunk_size: int = 2048
                          ) -> dict[str, np.ndarray]:
    """Local derivatives f′(z) of every hidden unit on every sample: {layer: units × samples}.

    Entry [j, n] is unit j's "learning ability" on sample n (seed 002): near 0 where the unit
    is saturated (sigmoid: σ′ = σ(1−σ) ≤ 0.25, ≈ 0 for |z| ≳ 6) or off (relu′ = 0 for z ≤ 0).
    """
    hidden = hidden_layers(model)
    X = _inputs(model, X)
    parts: dict[int, list[np.ndarray]] = {i: [] for i in hidden}
    for rows in _chunks(X.shape[0], chunk_size):
        kept, _ = _forward(model, X[rows], set(hidden))
        for i in hidden:
            parts[i].append(model.layers[i].activation.derivative(kept[i]).T)
    return {model.layers[i].name: np.concatenate(parts[i], axis=1) for i in hidden}


def _labels(y: ArrayLike, n: int) -> np.ndarray | None:
    """Integer class labels of y (labels, one-hot or a 0/1 column); None for a regression."""
    y = np.asarray(y)
    if y.shape[0] != n:
        raise ShapeError(f"y has {y.shape[0]} rows, X has {n}")
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    y = y.reshape(n, -1)[:, 0] if y.ndim == 2 else y
    if y.ndim != 1:
        raise ShapeError(f"y must be labels (n,), one-hot (n, K) or a column (n, 1), "
                         f"got shape {y.shape}")
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return y.astype(np.int64)
    return None


def _targets(model: Any, y: ArrayLike, n: int, loss: Any) -> tuple[Any, np.ndarray | None]:
    """(the Loss or None, integer class labels or None for a regression target)."""
    if loss is None:
        return None, _labels(y, n)
    from ..engine import loss as get_loss

    cost = get_loss(loss)
    n_outputs = model.dense_layers[-1].n_out if hasattr(model, "dense_layers") else None
    if n_outputs is None:
        return None, _labels(y, n)
    target = cost.prepare_target(y, (n, n_outputs), np.float64)
    return cost, cost.labels(target)


def _predictions(model: Any, output: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax for K outputs, a threshold for one output.

    A single output is a probability after a sigmoid (class 1 when ŷ > ½), otherwise a
    logit or a linear score (class 1 when ŷ > 0 for logits, > ½ for a 0/1 regression):
    the threshold is the middle of the output activation's range, else ½ when the outputs
    lie in [0, 1], else 0.
    """
    if output.ndim == 2 and output.shape[1] > 1:
        return np.argmax(output, axis=1)
    column = output.reshape(-1)
    last = model.layers[-1]
    if hasattr(last, "activation") and math.isfinite(sum(last.activation.output_range)):
        low, high = last.activation.output_range
        return (column > 0.5 * (low + high)).astype(np.int64)
    return (column > 0.0).astype(np.int64)


@dataclass
class _Tally:
    """Per-unit counts accumulated over the chunks of X."""

    active: np.ndarray
    positive: np.ndarray
    derivative_sum: np.ndarray
    z_sum: np.ndarray
    saturated_right: np.ndarray

    @classmethod
    def zeros(cls, units: int) -> _Tally:
        return cls(*(np.zeros(units) for _ in range(5)))


def _tally(model: Any, X: np.ndarray, labels: np.ndarray | None, cost: Any, hidden: list[int],
           saturation: float, chunk_size: int) -> dict[int, _Tally]:
    tallies: dict[int, _Tally] = {}
    for rows in _chunks(X.shape[0], chunk_size):
        kept, output = _forward(model, X[rows], set(hidden))
        right = None
        if labels is not None:
            predicted = (_predictions(model, output) if cost is None
                         else cost.predicted_labels(output))
            right = (predicted == labels[rows]).astype(np.float64)
        for i in hidden:
            z = kept[i].astype(np.float64)
            act = model.layers[i].activation
            derivative = act.derivative(z)
            active = derivative >= saturation * act.max_derivative[0]
            t = tallies.setdefault(i, _Tally.zeros(z.shape[1]))
            t.active += active.sum(axis=0)
            t.positive += (z > 0).sum(axis=0)
            t.derivative_sum += derivative.sum(axis=0)
            t.z_sum += z.sum(axis=0)
            if right is not None:
                t.saturated_right += right @ ~active
    return tallies


def classify_neurons(model: Any, X: ArrayLike, y: ArrayLike, *, saturation: float = 0.01,
                     near_all: float = 0.95, learning_share: float = 0.05,
                     right_share: float = 0.5, loss: Any = None,
                     chunk_size: int = 2048) -> NeuronStates:
    """Label every hidden unit ``dead``, ``saturated-wrong``, ``saturated-right``,
    ``saturated``, ``learning`` or ``quiet`` from one forward pass over X (in chunks).

    A sample is *saturated* for a unit when its local derivative is ≈ 0 — f′(z) <
    ``saturation`` · max f′ (sigmoid: σ′ < 0.0025, i.e. |z| ≳ 6; relu: z ≤ 0) — and
    *active* otherwise. The tests, in order:

    * ``dead`` — a ReLU-family unit with z ≤ 0 on every sample of X: relu′ = 0 everywhere,
      its weights never change again (seed 003). (Leaky ReLU and ELU units in this state
      still pass a small slope and can recover; they are reported dead all the same.)
    * ``saturated-wrong`` — the derivative is 0 on nearly all samples (saturated on ≥
      ``near_all`` of them) and the network is mostly wrong on those samples (accuracy <
      ``right_share``): "saturated (dumb) and will not improve" (seed 002).
    * ``saturated-right`` — the same, but mostly right (accuracy ≥ ``right_share``): "studied
      really well ... may indicate potential overfitting".
    * ``saturated`` — saturated on nearly all samples but y is not a class label, so
      right and wrong are undefined.
    * ``learning`` — the derivative is clearly non-zero on ≥ ``learning_share`` of the
      samples: "0 on some samples, non-0 on other samples ... may improve from further
      training".
    * ``quiet`` — none of the above: saturated on most samples, yet active on fewer than
      ``learning_share`` (possible only when learning_share > 1 − near_all).

    Right and wrong follow the training loss when ``loss`` (a name or Loss) is given — its
    targets and predicted classes, as ``fit`` counts accuracy. Without it ``y`` holds class
    labels (n,), one-hot rows (n, K) or a 0/1 column, and the prediction is the argmax of
    K outputs or, for one output, above the middle of the output activation's range (0
    for logits). A target that is not a class makes the saturated states plain ``saturated``.
    """
    torch = sys.modules.get("torch")  # a torch model implies torch is already imported
    if torch is not None and isinstance(model, torch.nn.Module):
        from ..adapters.torch import classify_neurons_torch

        return classify_neurons_torch(
            model, X, y, saturation=saturation, near_all=near_all,
            learning_share=learning_share, right_share=right_share, chunk_size=chunk_size,
        )
    saturation = _check_fraction("saturation", saturation)
    near_all = _check_fraction("near_all", near_all)
    learning_share = _check_fraction("learning_share", learning_share)
    right_share = _check_fraction("right_share", right_share, open_low=False)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidValueError(f"chunk_size must be an integer ≥ 1, got {chunk_size!r}")
    hidden = hidden_layers(model)
    X = _inputs(model, X)
    cost, labels = _targets(model, y, X.shape[0], loss)
    tallies = _tally(model, X, labels, cost, hidden, saturation, chunk_size)
    n = X.shape[0]
    states = NeuronStates()
    for number, i in enumerate(hidden):
        act, t = model.layers[i].activation, tallies[i]
        for unit in range(t.active.shape[0]):
            active = float(t.active[unit]) / n
            saturated_count = n - float(t.active[unit])
            accuracy = (float(t.saturated_right[unit]) / saturated_count
                        if labels is not None and saturated_count > 0 else None)
            positive = float(t.positive[unit]) / n
            state = _state(act, positive, active, accuracy, labels is not None,
                           near_all, learning_share, right_share)
            states.append(NeuronState(
                model.layers[i].name, number, unit, state, act.name, active, 1.0 - active,
                positive, float(t.derivative_sum[unit]) / n, float(t.z_sum[unit]) / n,
                accuracy))
    return states


def _state(act: Any, positive: float, active: float, accuracy: float | None,
           has_labels: bool, near_all: float, learning_share: float,
           right_share: float) -> str:
    if act.relu_family and positive == 0.0:
        return "dead"
    if 1.0 - active >= near_all:
        if not has_labels or accuracy is None:
            return "saturated"
        return "saturated-right" if accuracy >= right_share else "saturated-wrong"
    if active >= learning_share:
        return "learning"
    return "quiet"


def state_counts(states: list[NeuronState]) -> dict[str, int]:
    """Number of hidden units per state, over all layers."""
    counts = Counter(neuron.state for neuron in states)
    return {state: counts.get(state, 0) for state in STATES}
