"""Neuron states: what the derivative over the whole training set says about each hidden unit.

The question-and-answer article on the derivative in training reads a unit's local derivative
f′(z) as its "learning ability" on one sample: large when backpropagation can still move the
unit, ≈ 0 when it cannot. Over all samples of a training set:

* derivative 0 on all samples and the neuron always wrong — it is saturated ("dumb") and
  will not improve: ``saturated-wrong``;
* derivative 0 on all samples and always right — it has "studied really well" (maybe
  overfitting): ``saturated-right``;
* derivative 0 on some samples and non-0 on others, mixed results — it is doing some work and
  may improve with further training: ``learning``.

The article on the vanishing gradient adds the ReLU case: relu′(z) = 0 for z ≤ 0, so a ReLU
unit with z ≤ 0 on every sample never changes again — ``dead``.

:func:`classify_neurons` labels every hidden unit with these states and the numbers behind
each label; :func:`neuron_derivative_map` returns the units × samples matrix of f′(z) for the
"learning ability" picture.

The labelling itself does not depend on where z and f′(z) come from. A backend counts, per
hidden unit, the samples where it is active (f′(z) ≥ saturation · max f′), where z > 0, the
sums of f′(z) and z and the right answers among its saturated samples — a
:class:`UnitCounts`, built chunk by chunk with :meth:`UnitCounts.add` — and
:func:`layer_states` turns those counts into states by the :class:`StateRules`. The NumPy
engine's path below does this, and so does the PyTorch adapter with its own forward hooks.

Models of other libraries reach :func:`classify_neurons` through a *backend registry*, so
that this module, which sits below the adapters, never imports them: an adapter calls
:func:`register_backend` when it is imported (the PyTorch adapter registers
``classify_neurons_torch`` for any ``torch.nn.Module``), and :func:`classify_neurons` hands a
model that a registered backend accepts to it. ``gradsight.classify_neurons`` is this
function reached through :mod:`gradsight.adapters`, which loads every adapter first, so it
takes a torch model without further ado; here, a model that is neither an engine model nor
accepted by a loaded backend raises an error that says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..engine import loss as get_loss
from ..errors import DataError, GradsightError, InvalidValueError, ShapeError, require_positive_int
from ..io import jsonable

__all__ = ["NeuronState", "NeuronStates", "StateRules", "UnitCounts", "classify_neurons",
           "neuron_derivative_map", "hidden_layers", "layer_states", "class_labels",
           "register_backend", "state_counts", "STATES"]

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


@dataclass(frozen=True)
class StateRules:
    """The thresholds that turn a unit's counts into a state (see :func:`classify_neurons`),
    checked on creation.

    saturation : a sample is *active* for a unit when f′(z) ≥ saturation · max f′, else
        saturated; in (0, 1].
    near_all : saturated on at least this share of the samples → a saturated state; in (0, 1].
    learning_share : active on at least this share → ``learning``; in (0, 1].
    right_share : accuracy on the saturated samples from which a saturated unit is
        ``saturated-right`` rather than ``saturated-wrong``; in [0, 1].
    """

    saturation: float = 0.01
    near_all: float = 0.95
    learning_share: float = 0.05
    right_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("saturation", "near_all", "learning_share", "right_share"):
            value = _check_fraction(name, getattr(self, name), open_low=name != "right_share")
            object.__setattr__(self, name, value)

    def state(self, relu_family: bool, positive: float, active: float,
              accuracy: float | None) -> str:
        """The state of a unit active on the share ``active`` of the samples, with z > 0 on
        ``positive`` of them and the network right on ``accuracy`` of its saturated samples
        (None: no saturated sample, or the target is not a class)."""
        if relu_family and positive == 0.0:
            return "dead"
        if 1.0 - active >= self.near_all:
            if accuracy is None:
                return "saturated"
            return "saturated-right" if accuracy >= self.right_share else "saturated-wrong"
        if active >= self.learning_share:
            return "learning"
        return "quiet"


@dataclass
class UnitCounts:
    """Per-unit counts of one hidden layer over the samples seen: all that :func:`layer_states`
    needs, so a backend keeps these and never a samples × units map.

    samples : the number of samples counted (for a conv channel: samples × positions).
    active : per unit, the samples where f′(z) ≥ the saturation bound (the unit can learn).
    positive : the samples where z > 0.  derivative_sum, z_sum : Σ f′(z) and Σ z.
    saturated_right : the samples, among those where the unit is saturated, that the network
        got right; None when the target is not a class.
    """

    samples: int
    active: np.ndarray
    positive: np.ndarray
    derivative_sum: np.ndarray
    z_sum: np.ndarray
    saturated_right: np.ndarray | None = None

    @classmethod
    def zeros(cls, units: int, labelled: bool) -> UnitCounts:
        return cls(0, np.zeros(units), np.zeros(units), np.zeros(units), np.zeros(units),
                   np.zeros(units) if labelled else None)

    def add(self, z: np.ndarray, derivative: np.ndarray, bound: float,
            right: np.ndarray | None = None) -> None:
        """Count a chunk: z and f′(z) are samples × units; ``bound`` is saturation · max f′;
        ``right`` holds 1.0 where the network's answer on the sample is right, else 0.0."""
        active = derivative >= bound
        self.samples += z.shape[0]
        self.active += active.sum(axis=0)
        self.positive += (z > 0).sum(axis=0)
        self.derivative_sum += derivative.sum(axis=0)
        self.z_sum += z.sum(axis=0)
        if right is not None and self.saturated_right is not None:
            self.saturated_right += right @ ~active


def layer_states(layer: str, hidden: int, activation: str, counts: UnitCounts, *,
                 relu_family: bool, rules: StateRules) -> list[NeuronState]:
    """The :class:`NeuronState` of every unit of one hidden layer from its counts.

    layer, hidden, activation : the layer's name, hidden-layer number and activation name,
        copied into every record; ``relu_family`` : whether a unit off on every sample is
        ``dead`` (relu′ = 0 for z ≤ 0).
    """
    n = counts.samples
    states = []
    for unit in range(counts.active.shape[0]):
        active = float(counts.active[unit]) / n
        saturated_count = n - float(counts.active[unit])
        accuracy = (float(counts.saturated_right[unit]) / saturated_count
                    if counts.saturated_right is not None and saturated_count > 0 else None)
        positive = float(counts.positive[unit]) / n
        states.append(NeuronState(
            layer, hidden, unit, rules.state(relu_family, positive, active, accuracy),
            activation, active, 1.0 - active, positive, float(counts.derivative_sum[unit]) / n,
            float(counts.z_sum[unit]) / n, accuracy))
    return states


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

    Entry [j, n] is unit j's "learning ability" on sample n (the article on the derivative in
    training): near 0 where the unit is saturated (sigmoid: σ′ = σ(1−σ) ≤ 0.25, ≈ 0 for
    |z| ≳ 6) or off (relu′ = 0 for z ≤ 0).
    """
    hidden = hidden_layers(model)
    X = _inputs(model, X)
    parts: dict[int, list[np.ndarray]] = {i: [] for i in hidden}
    for rows in _chunks(X.shape[0], chunk_size):
        kept, _ = _forward(model, X[rows], set(hidden))
        for i in hidden:
            parts[i].append(model.layers[i].activation.derivative(kept[i]).T)
    return {model.layers[i].name: np.concatenate(parts[i], axis=1) for i in hidden}


def class_labels(y: ArrayLike, n: int) -> np.ndarray | None:
    """Integer class labels of the n targets y (labels, one-hot or a 0/1 column); None for a
    regression target."""
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
        return None, class_labels(y, n)
    cost = get_loss(loss)
    n_outputs = model.dense_layers[-1].n_out if hasattr(model, "dense_layers") else None
    if n_outputs is None:
        return None, class_labels(y, n)
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


def _tally(model: Any, X: np.ndarray, labels: np.ndarray | None, cost: Any, hidden: list[int],
           saturation: float, chunk_size: int) -> dict[int, UnitCounts]:
    """The counts of every hidden layer over X, one forward pass per chunk of rows."""
    tallies: dict[int, UnitCounts] = {}
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
            counts = tallies.setdefault(i, UnitCounts.zeros(z.shape[1], labels is not None))
            counts.add(z, act.derivative(z), saturation * act.max_derivative[0], right)
    return tallies


#: a backend's ``classify(model, X, y, *, saturation, near_all, learning_share, right_share,
#: chunk_size) -> NeuronStates``
NeuronClassifier = Callable[..., NeuronStates]
_BACKENDS: dict[str, tuple[Callable[[Any], bool], NeuronClassifier]] = {}


def register_backend(name: str, accepts: Callable[[Any], bool],
                     classify: NeuronClassifier) -> None:
    """Let :func:`classify_neurons` hand every model for which ``accepts(model)`` is true to
    ``classify`` (called with the model, X, y and the keyword options ``saturation``,
    ``near_all``, ``learning_share``, ``right_share`` and ``chunk_size``).

    An adapter calls this when it is imported; registering a ``name`` again replaces it.
    ``accepts`` must be cheap and must not import the adapter's library (a torch model can
    exist only once torch is imported).
    """
    _BACKENDS[name] = (accepts, classify)


def _backend(model: Any) -> NeuronClassifier | None:
    return next((classify for accepts, classify in _BACKENDS.values() if accepts(model)), None)


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
      its weights never change again (the article on the vanishing gradient). (Leaky ReLU
      and ELU units in this state still pass a small slope and can recover; they are
      reported dead all the same.)
    * ``saturated-wrong`` — the derivative is 0 on nearly all samples (saturated on ≥
      ``near_all`` of them) and the network is mostly wrong on those samples (accuracy <
      ``right_share``): "saturated (dumb) and will not improve" (the article on the
      derivative in training).
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

    A model of another library goes to the backend its adapter registered (PyTorch:
    ``classify_neurons_torch``, which ignores ``loss``); see the module docstring.
    """
    backend = _backend(model)
    if backend is not None:
        return backend(model, X, y, saturation=saturation, near_all=near_all,
                       learning_share=learning_share, right_share=right_share,
                       chunk_size=chunk_size)
    rules = StateRules(saturation, near_all, learning_share, right_share)
    chunk_size = require_positive_int("chunk_size", chunk_size)
    if not hasattr(model, "layers"):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        raise GradsightError(
            f"classify_neurons takes a gradsight engine model (with .layers), got {kind}, and "
            f"no adapter for it is loaded: call gradsight.classify_neurons, which loads the "
            f"adapters (PyTorch: gradsight.torch_adapter.classify_neurons_torch)")
    hidden = hidden_layers(model)
    X = _inputs(model, X)
    cost, labels = _targets(model, y, X.shape[0], loss)
    tallies = _tally(model, X, labels, cost, hidden, rules.saturation, chunk_size)
    states = NeuronStates()
    for number, i in enumerate(hidden):
        layer = model.layers[i]
        states += layer_states(layer.name, number, layer.activation.name, tallies[i],
                               relu_family=layer.activation.relu_family, rules=rules)
    return states


def state_counts(states: list[NeuronState]) -> dict[str, int]:
    """Number of hidden units per state, over all layers."""
    counts = Counter(neuron.state for neuron in states)
    return {state: counts.get(state, 0) for state in STATES}
