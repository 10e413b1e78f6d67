"""The fast step's passes (gradsight.engine.fast.passes) against the readable layers.

Oracle: the plain forward and backward passes of gradsight.engine (themselves tested against
PyTorch autograd in test_nn.py), on the same model and batch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradsight import activations, nn
from gradsight.engine.fast.passes import FastPasses

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "leaky_relu:0.2", "elu", "elu:0.5",
               "softplus", "silu", "gelu", "linear"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fast_passes_compute_the_plain_passes_numbers(activation: str) -> None:
    rng = np.random.default_rng(3)
    model = nn.mlp("5-7-6-3", activation=activation, seed=1)
    X, dY = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    out = model.forward(X).copy()
    model.backward(dY.copy())
    grads = [g.copy() for g in model.gradients()]
    derivatives = [layer.local_derivative.copy() for layer in model.layers
                   if isinstance(layer, nn.Activation)]
    passes = FastPasses(model)
    for _ in range(2):  # the second time in the same buffers
        np.testing.assert_allclose(passes.forward(X), out, rtol=1e-12, atol=1e-15)
        passes.backward(dY.copy())
        for ours, expected in zip(model.gradients(), grads, strict=True):
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
        ours_f = [layer.local_derivative for layer in model.layers
                  if isinstance(layer, nn.Activation)]
        for ours, expected in zip(ours_f, derivatives, strict=True):
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)


def test_fast_sigmoid_and_tanh_keep_only_the_output() -> None:
    model = nn.mlp("3-4-4-2", activation="sigmoid", seed=0)
    passes = FastPasses(model)
    passes.forward(np.ones((2, 3)))
    assert all(layer.inputs is None for layer in model.layers
               if isinstance(layer, nn.Activation))  # σ′ = a(1 − a) needs only a


def test_backward_without_gradients_keeps_delta_and_fill_gradients_matches() -> None:
    rng = np.random.default_rng(0)
    model = nn.mlp("4-6-3", activation="tanh", seed=0)
    X, dY = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    model.forward(X)
    model.backward(dY.copy())
    expected = [g.copy() for g in model.gradients()]
    passes = FastPasses(model)
    passes.forward(X)
    for grad in model.gradients():
        grad.fill(np.nan)
    passes.backward(dY.copy(), gradients=False)
    assert all(np.isnan(grad).all() for grad in model.gradients())  # not written
    deltas = [layer.delta for layer in model.dense_layers]
    assert all(delta is not None for delta in deltas)
    passes.fill_gradients()
    for ours, theirs in zip(model.gradients(), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_float32_sigmoid_is_within_float32_resolution_of_the_exact_value() -> None:
    # float32 σ(z) = ½(1 + tanh(z/2)): absolute error within the float32 spacing near 1
    model = nn.Sequential([nn.Dense(1, 1, seed=0, dtype="float32"), nn.Activation("sigmoid")])
    op = FastPasses(model).ops[1]
    z32 = np.linspace(-30, 30, 200001).astype(np.float32)
    ours = op.forward(z32[None, :].copy())[0]
    assert ours.dtype == np.float32
    exact = activations.sigmoid(z32.astype(np.float64))
    error = np.abs(ours.astype(np.float64) - exact)
    assert error.max() <= 2.0**-23
    upper = exact >= 0.5  # there the error is also a few ulp relative
    assert (error[upper] / exact[upper]).max() <= 4 * 2.0**-24
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extreme = op.forward(np.array([[-1e4, -100.0, 100.0, 1e4]], dtype=np.float32))
    assert extreme.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    # float64 is the exact formula
    z64 = np.linspace(-40, 40, 1001)[None, :]
    np.testing.assert_array_equal(op.forward(z64.copy()), activations.sigmoid(z64))


def test_fast_passes_run_a_layer_of_another_class_through_its_own_methods() -> None:
    class Doubled(nn.Activation):
        def forward(self, z: np.ndarray) -> np.ndarray:
            return 2 * super().forward(z)

        def backward(self, dA: np.ndarray) -> np.ndarray:
            return super().backward(2 * dA)

    model = nn.Sequential([nn.Dense(3, 4, seed=0), Doubled("tanh"), nn.Dense(4, 1, seed=1)])
    X, dY = np.ones((2, 3)), np.ones((2, 1))
    out = model.forward(X).copy()
    model.backward(dY.copy())
    expected = [g.copy() for g in model.gradients()]
    passes = FastPasses(model)
    np.testing.assert_allclose(passes.forward(X), out, rtol=1e-12)
    passes.backward(dY.copy())
    for ours, theirs in zip(model.gradients(), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
