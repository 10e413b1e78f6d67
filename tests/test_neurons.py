"""Neuron states (the question-and-answer thread's "ability to learn"): dead, saturated-wrong,
saturated-right, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradsight.diagnostics.neurons import classify_neurons, neuron_derivative_map
from gradsight.engine import Activation, Dense, Sequential, mlp
from gradsight.errors import GradsightError, InvalidValueError

# 40 samples on a line; the class is the sign of x₀
X = np.column_stack([np.linspace(-3, 3, 40), np.zeros(40)])
Y = (X[:, 0] > 0).astype(int)


def _net(activation: str = "sigmoid") -> Sequential:
    """2 inputs → 3 hidden units → 2 logits.

    unit 0: bias +50, saturated (a ≈ 1) on every sample; unit 1: z = 4·x₀, active around 0;
    unit 2: bias −50 (sigmoid: saturated at a ≈ 0; ReLU: z ≤ 0 everywhere, dead). The output
    reads unit 1 only: logit₁ − logit₀ grows with x₀, so the network predicts sign(x₀).
    """
    W1 = np.array([[0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    b1 = np.array([50.0, 0.0, -50.0])
    W2 = np.array([[0.0, 0.0], [-5.0, 5.0], [0.0, 0.0]])
    hidden_bias = 0.5 if activation == "sigmoid" else 0.0
    b2 = np.array([5.0 * hidden_bias, -5.0 * hidden_bias])
    return Sequential([Dense.from_weights(W1, b1), Activation(activation),
                       Dense.from_weights(W2, b2)])


def _by_unit(states):
    return {n.unit: n for n in states}


def test_saturated_right_when_the_network_is_right():
    states = _by_unit(classify_neurons(_net(), X, Y))
    assert states[0].state == "saturated-right"
    assert states[2].state == "saturated-right"
    assert states[1].state == "learning"
    assert states[0].accuracy_on_samples == 1.0
    assert states[0].saturated_fraction == 1.0 and states[0].active_fraction == 0.0


def test_saturated_wrong_when_the_network_is_wrong():
    states = _by_unit(classify_neurons(_net(), X, 1 - Y))
    assert states[0].state == "saturated-wrong"
    assert states[0].accuracy_on_samples == 0.0
    assert states[1].state == "learning"  # still active on part of the samples


def test_relu_unit_with_huge_negative_bias_is_dead():
    states = _by_unit(classify_neurons(_net("relu"), X, Y))
    assert states[2].state == "dead" and states[2].positive_fraction == 0.0
    assert states[0].state == "learning"  # z = 50 > 0: relu′ = 1 on every sample
    assert states[1].state == "learning"


def test_evidence_equals_hand_computed_derivatives():
    model = _net()
    z = X @ model.layers[0].W + model.layers[0].b
    sigma = 1.0 / (1.0 + np.exp(-z))
    derivative = sigma * (1.0 - sigma)
    states = _by_unit(classify_neurons(model, X, Y))
    for unit in range(3):
        active = derivative[:, unit] >= 0.01 * 0.25
        assert states[unit].active_fraction == pytest.approx(active.mean())
        assert states[unit].mean_derivative == pytest.approx(derivative[:, unit].mean())
        assert states[unit].mean_z == pytest.approx(z[:, unit].mean())
    # σ′(z) = 1/(4cosh²(z/2)) ≥ 0.01·¼ ⇔ |z| ≤ 2·acosh(10): count unit 1 (z = 4x₀) that way
    expected = np.mean(np.abs(4 * X[:, 0]) < 2 * math.acosh(1 / math.sqrt(0.01)))
    assert states[1].active_fraction == pytest.approx(expected)


def test_chunks_do_not_change_the_result():
    rng = np.random.default_rng(0)
    model = mlp("4-6-5-3", activation="tanh", init="normal", seed=1)
    Xr, yr = rng.normal(size=(101, 4)), rng.integers(0, 3, 101)
    whole = classify_neurons(model, Xr, yr, chunk_size=4096)
    chunked = classify_neurons(model, Xr, yr, chunk_size=7)
    for a, b in zip(whole, chunked, strict=True):
        assert (a.layer, a.unit, a.state) == (b.layer, b.unit, b.state)
        assert a.active_fraction == b.active_fraction
        assert a.mean_derivative == pytest.approx(b.mean_derivative, rel=1e-12)
        assert a.accuracy_on_samples == b.accuracy_on_samples  # counts: exact
    assert len(whole) == 11 and {n.layer for n in whole} == {"tanh0", "tanh1"}


def test_loss_decides_right_and_wrong_for_one_logit():
    # one output logit: bce_with_logits predicts class 1 when z > 0
    W1 = np.array([[0.0, 1.0]]); b1 = np.array([40.0, 0.0])  # noqa: E702
    W2 = np.array([[0.0], [1.0]]); b2 = np.array([0.0])  # noqa: E702
    model = Sequential([Dense.from_weights(W1, b1), Activation("sigmoid"),
                        Dense.from_weights(W2, b2)])
    x = np.linspace(-2, 2, 20).reshape(-1, 1)
    # σ(x) > 0 always, so the logit σ(x) > 0 predicts class 1 for every sample
    right = classify_neurons(model, x, np.ones(20), loss="bce_with_logits")
    wrong = classify_neurons(model, x, np.zeros(20), loss="bce_with_logits")
    assert right[0].state == "saturated-right" and wrong[0].state == "saturated-wrong"


def test_regression_target_gives_plain_saturated():
    states = _by_unit(classify_neurons(_net(), X, X[:, 0] * 0.37))
    assert states[0].state == "saturated" and states[0].accuracy_on_samples is None


def test_derivative_map_is_units_by_samples():
    model = mlp("2-3-4-2", activation="sigmoid", init="normal", seed=3)
    maps = neuron_derivative_map(model, X, chunk_size=9)
    assert list(maps) == ["sigmoid0", "sigmoid1"]
    assert maps["sigmoid0"].shape == (3, 40) and maps["sigmoid1"].shape == (4, 40)
    dense = model.dense_layers
    z0 = X @ dense[0].W + dense[0].b
    a0 = 1 / (1 + np.exp(-z0))
    np.testing.assert_allclose(maps["sigmoid0"], (a0 * (1 - a0)).T, rtol=1e-12)
    z1 = a0 @ dense[1].W + dense[1].b
    a1 = 1 / (1 + np.exp(-z1))
    np.testing.assert_allclose(maps["sigmoid1"], (a1 * (1 - a1)).T, rtol=1e-12)


@pytest.mark.parametrize("option", [{"saturation": 0}, {"near_all": 1.5},
                                    {"learning_share": -0.1}, {"right_share": math.nan},
                                    {"saturation": "x"}, {"chunk_size": 0}])
def test_thresholds_out_of_range(option):
    with pytest.raises(InvalidValueError):
        classify_neurons(_net(), X, Y, **option)


def test_model_without_hidden_layer():
    with pytest.raises(GradsightError, match="no hidden layer"):
        classify_neurons(mlp("2-2", output_activation="sigmoid", seed=0), X, Y)
    with pytest.raises(GradsightError):
        neuron_derivative_map(mlp("2-2", seed=0), X)


def test_counts_and_html():
    states = classify_neurons(_net(), X, 1 - Y)
    counts = states.counts()["sigmoid0"]
    assert counts["saturated-wrong"] == 2 and counts["learning"] == 1
    assert "saturated-wrong" in states._repr_html_()
    assert states.to_dict()["neurons"][0]["state"] == "saturated-wrong"


def test_neuron_states_repr_is_a_per_layer_summary():
    from gradsight.diagnostics.neurons import NeuronState, NeuronStates

    fields = NeuronState.__dataclass_fields__
    base = {name: None for name in fields}
    states = NeuronStates([NeuronState(**{**base, "layer": "relu1", "unit": u,
                                          "state": "dead" if u < 2 else "learning"})
                           for u in range(5)])
    assert repr(states) == "NeuronStates(5 hidden units)\n  relu1: dead 2, learning 3"
