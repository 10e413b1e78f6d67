"""The two panels of the network view that open on a click: one hidden unit, one weight.

* :func:`unit_panel` — a hidden unit's local derivative f′(z) on every training sample (the
  article on the derivative in training calls it the unit's "ability to learn" on that
  sample), its histogram, and the unit's state as :func:`gradsight.classify_neurons` labels
  it (saturated and wrong, saturated and right, learning, dead, ...). f′ is read off the
  unit's output a = f(z) where the activation allows it (σ′ = a(1−a), tanh′ = 1 − a²), as the
  engine's backward pass does (:mod:`gradsight.activations`), else computed from z.
* :func:`weight_panel` — the chain rule for one weight w = W^l[i, j] and one training sample,
  every factor with its number, as ``gradsight explain`` walks through a network:

      ∂C/∂w = a_i^(l−1) · δ_j^l,   δ_j^l = ∂C/∂a_j^l · f′(z_j^l),
      ∂C/∂a_j^l = Σ_k W^(l+1)[j, k] δ_k^(l+1)   (the error carried back from the layer above),

  with δ^L = softmax(z^L) − y for the cross-entropy on logits and δ^L = (a^L − y) ⊙ σ′(z^L)
  for the quadratic cost on sigmoid outputs (C of the one sample: N = 1). The product is
  checked against the engine's own backward pass on that sample and against central
  differences of the cost, and the panel says whether they match.

Both read the model's arrays and leave the session's model untouched (its caches and the
last step's gradients, which the frames show, stay as they were).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import ActivationFunction
from ..diagnostics.neurons import classify_neurons
from ..engine.layers import Dense
from ..present.explain import ENGINE_ATOL, ENGINE_RTOL, NUMERIC_ATOL, NUMERIC_RTOL
from .protocol import ProtocolError

__all__ = ["HISTOGRAM_BINS", "Layer", "network_layers", "unit_panel", "weight_panel"]

HISTOGRAM_BINS = 20
STEP = 1e-6  # central differences: C(w + h) − C(w − h) over 2h


@dataclass
class Layer:
    """One Dense layer and the activation after it (None: the output's logits)."""

    dense: Dense
    activation: ActivationFunction | None


def network_layers(model: Any) -> list[Layer]:
    """The model as Dense layers, each with the activation that follows it."""
    layers: list[Layer] = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            layers.append(Layer(layer, None))
        elif hasattr(layer, "activation") and layers:
            layers[-1].activation = layer.activation
    return layers


def _forward(layers: list[Layer], X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """z and a of every layer on the rows of X (a = z where no activation follows)."""
    zs, activations, a = [], [], X
    for layer in layers:
        z = a @ layer.dense.W + layer.dense.b
        a = z if layer.activation is None else np.asarray(layer.activation(z))
        zs.append(z)
        activations.append(a)
    return zs, activations


def _derivative(activation: ActivationFunction, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f′ from the output a where the activation allows it (as the engine's backward), else
    from z."""
    if activation.has_output_derivative:
        return np.asarray(activation.derivative_from_output(a), dtype=np.float64)
    return np.asarray(activation.derivative(z), dtype=np.float64)


def _find(layers: list[Layer], name: str, hidden: bool) -> int:
    names = [layer.dense.name for layer in layers]
    allowed = names[:-1] if hidden else names
    if name not in allowed:
        what = "hidden layers" if hidden else "layers"
        raise ProtocolError("layer", f"unknown layer {name!r}; the {what} of this network: "
                                     f"{', '.join(allowed) or 'none'}")
    return names.index(name)


def _in_range(field: str, value: int, size: int, what: str) -> None:
    if value >= size:
        raise ProtocolError(field, f"{field} must be in [0, {size - 1}] ({what}), got {value}")


def unit_panel(model: Any, loss: Any, X: np.ndarray, y: np.ndarray, layer: str,
               index: int) -> dict[str, Any]:
    """The ``unit`` message: unit ``index`` of the hidden layer whose outputs come out of the
    Dense layer ``layer``, over the training samples X (labels y)."""
    layers = network_layers(model)
    position = _find(layers, layer, hidden=True)
    activation = layers[position].activation
    _in_range("index", index, layers[position].dense.n_out, f"{layer} has "
              f"{layers[position].dense.n_out} units")
    assert activation is not None  # a hidden layer has its activation
    zs, outputs = _forward(layers, X)
    z, a = zs[position][:, index], outputs[position][:, index]
    derivatives = _derivative(activation, z, a)
    state = next(unit for unit in classify_neurons(model, X, y, loss=loss)
                 if unit.hidden == position and unit.unit == index)
    largest = float(activation.max_derivative[0])
    low = min(0.0, float(derivatives.min()))
    high = max(largest if np.isfinite(largest) else 1.0, float(derivatives.max()))
    counts, edges = np.histogram(derivatives, bins=HISTOGRAM_BINS, range=(low, high))
    target = loss.prepare_target(y, (X.shape[0], model.n_outputs), model.dtype)
    correct = loss.predicted_labels(outputs[-1]) == loss.labels(target)
    return {
        "type": "unit", "layer": layer, "index": index, "hidden": position,
        "activation": activation.name, "samples": int(X.shape[0]),
        "derivatives": derivatives, "correct": correct,
        "max_derivative": largest, "saturation_bound": 0.01 * largest,
        "state": state.state, "evidence": {
            "active_fraction": state.active_fraction,
            "saturated_fraction": state.saturated_fraction,
            "positive_fraction": state.positive_fraction,
            "mean_derivative": state.mean_derivative,
            "accuracy_on_saturated": state.accuracy_on_samples},
        "histogram": {"edges": edges, "counts": counts},
    }


def _sample_cost(model: Any, loss: Any, x: np.ndarray, target: np.ndarray) -> float:
    return float(loss.value(model.predict(x[None, :]), target))


def weight_panel(model: Any, loss: Any, X: np.ndarray, y: np.ndarray, layer: str, row: int,
                 col: int, sample: int) -> dict[str, Any]:
    """The ``weight`` message: ∂C/∂W[row, col] of the Dense layer ``layer`` for training
    sample ``sample``, factor by factor, checked against the engine and central
    differences."""
    layers = network_layers(model)
    position = _find(layers, layer, hidden=False)
    dense = layers[position].dense
    _in_range("row", row, dense.n_in, f"{layer} has {dense.n_in} inputs")
    _in_range("col", col, dense.n_out, f"{layer} has {dense.n_out} units")
    _in_range("sample", sample, X.shape[0], f"{X.shape[0]} training samples")
    x = np.asarray(X[sample], dtype=np.float64)
    target = loss.prepare_target(y[sample:sample + 1], (1, model.n_outputs), model.dtype)
    zs, outputs = _forward(layers, x[None, :])
    z, a = [v[0] for v in zs], [v[0] for v in outputs]
    last = len(layers) - 1
    # the errors δ^l = ∂C/∂z^l from the output back to the weight's layer
    deltas: dict[int, np.ndarray] = {}
    output_activation = layers[last].activation
    if loss.name == "cross_entropy":
        shifted = np.exp(z[last] - z[last].max())
        one_hot = np.zeros(z[last].shape[0])
        one_hot[int(loss.labels(target)[0])] = 1.0
        deltas[last] = shifted / shifted.sum() - one_hot
        output_rule = "δᴸ = softmax(zᴸ) − y"
    else:
        assert output_activation is not None  # the quadratic cost's sigmoid outputs
        deltas[last] = (a[last] - target[0]) * _derivative(output_activation, z[last], a[last])
        output_rule = "δᴸ = (aᴸ − y) ⊙ σ′(zᴸ)"
    carried: dict[int, np.ndarray] = {}
    for l in range(last - 1, position - 1, -1):
        activation = layers[l].activation
        assert activation is not None
        carried[l] = layers[l + 1].dense.W @ deltas[l + 1]
        deltas[l] = carried[l] * _derivative(activation, z[l], a[l])
    previous = x if position == 0 else a[position - 1]
    gradient = float(previous[row] * deltas[position][col])
    factors: list[dict[str, Any]] = [
        {"kind": "input", "symbol": _source(position, row), "value": float(previous[row])}]
    if position == last:
        factors.append({"kind": "output_error", "symbol": f"δ{_sup(position + 1)}[{col}]",
                        "value": float(deltas[position][col]), "rule": output_rule})
    else:
        activation = layers[position].activation
        assert activation is not None
        factors += [
            {"kind": "carried", "symbol": f"∂C/∂a{_sup(position + 1)}[{col}]",
             "value": float(carried[position][col])},
            {"kind": "local", "symbol": f"f′(z{_sup(position + 1)}[{col}])",
             "value": float(_derivative(activation, z[position], a[position])[col])},
            {"kind": "delta", "symbol": f"δ{_sup(position + 1)}[{col}]",
             "value": float(deltas[position][col])},
        ]
    factors.append({"kind": "gradient", "symbol": f"∂C/∂W{_sup(position + 1)}[{row}, {col}]",
                    "value": gradient})
    engine = _engine_gradient(model, loss, x, target, position, row, col)
    numeric = _numeric_gradient(model, loss, x, target, position, row, col)
    matches_engine = bool(np.isclose(gradient, engine, rtol=ENGINE_RTOL, atol=ENGINE_ATOL))
    matches_numeric = bool(np.isclose(gradient, numeric, rtol=NUMERIC_RTOL * 1e2,
                                      atol=NUMERIC_ATOL * 1e2))
    return {
        "type": "weight", "layer": layer, "row": row, "col": col, "sample": sample,
        "x": x, "label": int(loss.labels(target)[0]), "w": float(dense.W[row, col]),
        "cost": _sample_cost(model, loss, x, target), "factors": factors,
        "chain": _chain_lines(layers, position, last, row, col, previous, carried, deltas, z,
                              a, output_rule, gradient),
        "gradient": gradient, "engine": engine, "numeric": numeric,
        "matches_engine": matches_engine, "matches_numeric": matches_numeric,
        "matches": matches_engine and matches_numeric,
    }


def _engine_gradient(model: Any, loss: Any, x: np.ndarray, target: np.ndarray, position: int,
                     row: int, col: int) -> float:
    """The engine's backward pass on the one sample (on a copy: the session's model keeps
    its last step's gradients)."""
    twin = copy.deepcopy(model)
    output = twin.forward(x[None, :])
    twin.backward(loss.gradient(output, target))
    return float(twin.dense_layers[position].grad_W[row, col])


def _numeric_gradient(model: Any, loss: Any, x: np.ndarray, target: np.ndarray,
                      position: int, row: int, col: int) -> float:
    """(C(w + h) − C(w − h)) / 2h with h = 1e-6, on a copy of the model."""
    twin = copy.deepcopy(model)
    W = twin.dense_layers[position].W
    kept = float(W[row, col])
    W[row, col] = kept + STEP
    up = _sample_cost(twin, loss, x, target)
    W[row, col] = kept - STEP
    down = _sample_cost(twin, loss, x, target)
    return (up - down) / (2 * STEP)


def _chain_lines(layers: list[Layer], position: int, last: int, row: int, col: int,
                 previous: np.ndarray, carried: dict[int, np.ndarray],
                 deltas: dict[int, np.ndarray], z: list[np.ndarray], a: list[np.ndarray],
                 output_rule: str, gradient: float) -> list[str]:
    """The walkthrough as lines of formulas with their numbers (the output error first)."""
    lines = [f"{output_rule} = {_vector(deltas[last])}"]
    for l in range(last - 1, position - 1, -1):
        n = l + 1
        lines.append(f"δ{_sup(n)} = (δ{_sup(n + 1)} (W{_sup(n + 1)})ᵀ) ⊙ f′(z{_sup(n)}) = "
                     f"{_vector(carried[l])} ⊙ {_vector(_local(layers[l], z[l], a[l]))} = "
                     f"{_vector(deltas[l])}")
    n = position + 1
    lines.append(f"∂C/∂W{_sup(n)}[{row}, {col}] = {_source(position, row)} · "
                 f"δ{_sup(n)}[{col}] = {_number(previous[row])} · "
                 f"{_number(deltas[position][col])} = {_number(gradient)}")
    return lines


def _source(position: int, row: int) -> str:
    """The input the weight multiplies: x[i] for the first layer, else a^(l−1)[i]."""
    return f"a{_sup(position)}[{row}]" if position else f"x[{row}]"


def _local(layer: Layer, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    assert layer.activation is not None
    return _derivative(layer.activation, z, a)


def _number(value: float) -> str:
    return f"{float(value):.6g}"


def _vector(values: np.ndarray, most: int = 8) -> str:
    shown = ", ".join(_number(v) for v in values[:most])
    return f"({shown}{', …' if len(values) > most else ''})"


_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _sup(n: int) -> str:
    return str(n).translate(_SUPERSCRIPTS)
