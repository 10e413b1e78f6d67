"""gradcheck: central differences against backpropagation, and the cs231n bands in words."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradsight import engine
from gradsight.engine.gradcheck import band, gradcheck
from gradsight.errors import InvalidValueError, ShapeError
from gradsight.io import dumps


def data(n: int = 6, d: int = 3, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, size=n)


def test_bands_in_words_at_their_limits() -> None:
    assert band(0.0) == band(1e-7) == "fine"
    assert band(1.1e-7) == band(1e-4) == "suspicious unless there are kinks (relu)"
    assert band(1.1e-4) == band(1e-2) == "likely wrong"
    assert band(0.5) == band(float("nan")) == "wrong"


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softplus", "gelu", "elu"])
def test_correct_smooth_networks_are_fine(activation: str) -> None:
    X, y = data()
    model = engine.mlp("3-5-4-2", activation=activation, seed=0)
    result = gradcheck(model, X, y, "cross_entropy")
    assert result.band == "fine" and result.passed and not result.has_kinks
    assert [p.name for p in result.parameters] == [
        "dense0.W", "dense0.b", "dense1.W", "dense1.b", "dense2.W", "dense2.b"]
    assert all(p.checked == p.total for p in result.parameters)


def test_single_neuron_numeric_derivative_is_the_central_difference() -> None:
    # independent oracle: C(w) of the articles' neuron written out by hand
    x, y, h = np.array([0.5, -1.5]), 1.0, 1e-5
    model = engine.mlp("2-1", output_activation="sigmoid", seed=3)
    w, b = model.dense_layers[0].W[:, 0].copy(), float(model.dense_layers[0].b[0])

    def cost(w0: float) -> float:
        y_hat = 1 / (1 + math.exp(-(w0 * x[0] + w[1] * x[1] + b)))
        return 0.5 * (y_hat - y) ** 2

    numeric = (cost(w[0] + h) - cost(w[0] - h)) / (2 * h)
    result = gradcheck(model, x[None, :], [y], "quadratic", h=h)
    check = result.parameters[0]
    # the worst entry of W is one of its two entries; its numeric value must be our formula
    if check.worst_index == (0, 0):
        assert check.numeric == pytest.approx(numeric, rel=1e-12)
    z = w @ x + b
    sigma = 1 / (1 + math.exp(-z))
    assert numeric == pytest.approx((sigma - y) * sigma * (1 - sigma) * x[0], rel=1e-8)
    assert result.passed


class WrongBias(engine.Dense):
    """A Dense layer whose bias gradient is off by a factor 2 (a typical bug)."""

    def backward(self, dZ):  # type: ignore[no-untyped-def]
        dX = super().backward(dZ)
        self.grad_b *= 2
        return dX


class SlightlyWrongTanh(engine.Activation):
    """tanh′ computed as 1 − a² + 1e-3: a small but real error."""

    def backward(self, dA):  # type: ignore[no-untyped-def]
        return dA * (1 - self.output**2 + 1e-3)


def test_a_wrong_gradient_is_reported_wrong_and_named() -> None:
    X, y = data()
    model = engine.Sequential([engine.Dense(3, 4, seed=0), engine.Activation("tanh"),
                               WrongBias(4, 2, seed=1)])
    result = gradcheck(model, X, y, "cross_entropy")
    by_name = {p.name: p for p in result.parameters}
    assert by_name["dense1.b"].band == "wrong"
    assert by_name["dense1.b"].analytic == pytest.approx(2 * by_name["dense1.b"].numeric, rel=1e-6)
    assert by_name["dense1.W"].band == "fine"
    assert not result.passed and "dense1.b" in result.verdict


def test_a_small_error_is_not_fine() -> None:
    X, y = data()
    layers = [engine.Dense(3, 4, seed=0), SlightlyWrongTanh("tanh"), engine.Dense(4, 2, seed=1)]
    model = engine.Sequential(layers)
    result = gradcheck(model, X, y, "cross_entropy")
    assert result.band in ("suspicious unless there are kinks (relu)", "likely wrong")
    assert not result.passed
    assert {p.name: p.band for p in result.parameters}["dense1.W"] == "fine"


def test_relu_kinks_are_skipped_not_reported_wrong() -> None:
    # zero biases and all-zero inputs put every hidden unit exactly on its kink z = 0
    X = np.vstack([np.zeros((2, 3)), np.random.default_rng(0).normal(size=(4, 3))])
    y = np.array([0, 1, 1, 0, 1, 0])
    model = engine.mlp("3-5-2", activation="relu", seed=0)
    result = gradcheck(model, X, y, "cross_entropy")
    assert result.has_kinks and result.passed
    assert sum(p.kinks for p in result.parameters) > 0
    assert any("kink" in note for note in result.notes)


def test_dead_units_with_zero_gradients_are_fine() -> None:
    X, y = data()
    model = engine.mlp("3-4-2", activation="relu", seed=0)
    model.dense_layers[0].b[:] = -100.0  # every hidden unit dead: ∂C/∂W₀ = 0 exactly
    result = gradcheck(model, X, y, "cross_entropy")
    assert result.parameters[0].analytic == 0.0 and result.parameters[0].band == "fine"


def test_large_parameters_are_sampled_and_the_model_is_untouched() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 40)), rng.integers(0, 3, size=4)
    model = engine.mlp("40-30-3", activation="tanh", dtype="float32", seed=0)
    before = model.get_weights()
    result = gradcheck(model, X, y, "cross_entropy", max_entries=25)
    first = result.parameters[0]
    assert first.checked == 25 and first.total == 1200
    assert result.passed
    assert any("float64 copy" in note for note in result.notes)
    assert any("sampled" in note for note in result.notes)
    assert model.dtype == np.float32
    for now, then in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)


def test_reports_and_errors() -> None:
    X, y = data()
    model = engine.mlp("3-2", seed=0)
    result = gradcheck(model, X, y, "cross_entropy")
    document = json.loads(dumps(result.to_dict()))
    assert document["band"] == "fine" and document["parameters"][0]["name"] == "dense0.W"
    assert "<table>" in result._repr_html_() and "dense0.b" in str(result)
    import gradsight

    # gradsight.gradcheck is the function (the module is gradsight.engine.gradcheck)
    assert gradsight.gradcheck(model, X, y, "cross_entropy").to_dict() == result.to_dict()
    with pytest.raises(InvalidValueError, match="h"):
        gradcheck(model, X, y, "cross_entropy", h=0)
    with pytest.raises(InvalidValueError, match="max_entries"):
        gradcheck(model, X, y, "cross_entropy", max_entries=0)
    with pytest.raises(ShapeError):
        gradcheck(model, X[:, :2], y, "cross_entropy")


@pytest.mark.parametrize("seed", range(8))
def test_a_well_fit_correct_model_is_not_flagged(seed: int) -> None:
    # logits 12 apart, the larger on the right class: C ≈ 6e-6 is computed as logsumexp(z) − z_y,
    # whose round-off is ε·|z|, not ε·|C|; the denominator floor must follow |z| or a
    # correct model is reported "suspicious" or even "wrong"
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1, 4))
    model = engine.mlp("4-3-5-2", activation="elu", init="xavier_normal", bias_init="normal",
                       seed=seed)
    last = model.dense_layers[-1]
    last.b[...] = 0.0
    output = model.predict(X)
    last.W *= 12 / abs(output[0, 0] - output[0, 1])  # the logits now differ by 12
    y = np.argmax(output, axis=1)
    result = gradcheck(model, X, y, "cross_entropy")
    assert result.cost < 1e-3
    assert result.band == "fine" and result.passed, str(result)


def test_the_floor_still_catches_a_small_error_in_a_well_fit_model() -> None:
    X, y = data()
    layers = [engine.Dense(3, 4, seed=0), SlightlyWrongTanh("tanh"), engine.Dense(4, 2, seed=1)]
    model = engine.Sequential(layers)
    model.dense_layers[-1].W *= 3.0  # larger logits, smaller cost
    result = gradcheck(model, X, y, "cross_entropy")
    assert not result.passed and result.band != "fine"
