"""gradsight.present.explain: the chain-rule numbers against PyTorch autograd (float64)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradsight.errors import GradsightError, InvalidValueError, ShapeError
from gradsight.present.explain import explain_network, explain_neuron, fmt, train_neuron

torch = pytest.importorskip("torch")

# the documented list, written out here rather than imported: the JSON keys are exactly these
NEURON_KEYS = ["x", "w", "b", "y", "z", "y_hat", "dC_dyhat", "dyhat_dz", "dz_dw", "dC_dw",
               "dC_db", "lr", "w_new", "b_new"]


def _torch_neuron(x, w, b, y):
    """ŷ = σ(wᵀx + b), C = ½(ŷ − y)² in torch float64; returns z, ŷ, ∂C/∂ŷ, ∂C/∂z, ∂C/∂w, ∂C/∂b."""
    xt = torch.tensor(x, dtype=torch.float64)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    z = wt @ xt + bt
    z.retain_grad()
    y_hat = torch.sigmoid(z)
    y_hat.retain_grad()
    cost = 0.5 * (y_hat - y) ** 2
    cost.backward()
    return (z.item(), y_hat.item(), y_hat.grad.item(), z.grad.item(), wt.grad.numpy(),
            bt.grad.item())


@pytest.mark.parametrize(("x", "w", "b", "y", "lr"), [
    ((1.0, 0.5), (0.4, -0.6), 0.1, 1.0, 0.5),       # the defaults
    ((2.0, -1.0, 0.3), (-0.7, 0.2, 1.5), -0.4, 0.0, 0.1),
    ((4.0,), (3.0,), 1.0, 0.0, 1.0),                 # a saturated neuron: σ′ tiny
])
def test_neuron_chain_rule_matches_torch_autograd(x, w, b, y, lr):
    walk = explain_neuron(x=x, w=w, b=b, y=y, lr=lr)
    z, y_hat, dC_dyhat, dC_dz, dC_dw, dC_db = _torch_neuron(x, w, b, y)
    assert walk.z == pytest.approx(z, rel=1e-14)
    assert walk.y_hat == pytest.approx(y_hat, rel=1e-14)
    assert walk.dC_dyhat == pytest.approx(dC_dyhat, rel=1e-13)
    # ∂ŷ/∂z is ∂C/∂z divided by ∂C/∂ŷ (chain rule): torch's z.grad / ŷ.grad
    assert walk.dyhat_dz == pytest.approx(dC_dz / dC_dyhat, rel=1e-12)
    np.testing.assert_allclose(walk.dz_dw, x)
    np.testing.assert_allclose(walk.dC_dw, dC_dw, rtol=1e-12, atol=0)
    assert walk.dC_db == pytest.approx(dC_db, rel=1e-12)
    # the update w_new = w_old − η ∂C/∂w, as torch.optim.SGD does it
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([wt, bt], lr=lr)
    (0.5 * (torch.sigmoid(wt @ torch.tensor(x, dtype=torch.float64) + bt) - y) ** 2).backward()
    opt.step()
    np.testing.assert_allclose(walk.w_new, wt.detach().numpy(), rtol=1e-13)
    assert walk.b_new == pytest.approx(bt.item(), rel=1e-13)
    assert walk.agree
    np.testing.assert_allclose(walk.engine_dC_dw, dC_dw, rtol=1e-12)
    np.testing.assert_allclose(walk.numeric_dC_dw, dC_dw, rtol=1e-6, atol=1e-9)


def test_neuron_text_shows_each_factor_with_numbers():
    walk = explain_neuron()
    text = "\n".join(walk.lines())
    # independent numbers: z = 0.4·1 − 0.6·0.5 + 0.1 = 0.2, ŷ = σ(0.2)
    y_hat = 1 / (1 + math.exp(-0.2))
    factor = y_hat * (1 - y_hat)
    assert f"∂C/∂ŷ = ŷ − y = {y_hat:.4g} − 1 = −{1 - y_hat:.4g}" in text
    assert f"∂ŷ/∂z = σ(z)(1−σ(z)) = {y_hat:.4g}·{1 - y_hat:.4g} = {factor:.4g}" in text
    assert "∂z/∂w = x = (1, 0.5)" in text
    dw = [(y_hat - 1) * factor * xi for xi in (1.0, 0.5)]
    assert f"= ({fmt(dw[0])}, {fmt(dw[1])})" in text
    assert "w_new = w_old − η ∂C/∂w = (0.4, −0.6) − 0.5·" in text
    assert walk.lines()[-1].startswith("Check: the engine's backward pass and a central "
                                       "difference agree")
    assert "<pre" in walk._repr_html_() and "&lt;" not in walk._repr_html_()


def test_neuron_json_keys_exact_and_serialisable():
    from gradsight.io import dumps

    walk = explain_neuron(x=(1, 2), w=(0.5, 0.5), b=0, y=0)
    doc = json.loads(dumps(walk.to_dict(check=False)))  # what `gradsight explain --json` prints
    assert list(doc) == NEURON_KEYS and len(doc["dC_dw"]) == 2
    full = json.loads(dumps(walk.to_dict()))
    assert list(full) == [*NEURON_KEYS, "check"]
    assert set(full["check"]) == {"engine_dC_dw", "engine_dC_db", "numeric_dC_dw",
                                  "numeric_dC_db", "max_rel_error_engine",
                                  "max_rel_error_numeric", "agree"}
    assert full["check"]["agree"] is True and walk.agree


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"x": (1, 2), "w": (1,)}, ShapeError),
    ({"x": ()}, ShapeError),
    ({"b": float("nan")}, InvalidValueError),
    ({"lr": 0}, InvalidValueError),
    ({"w": (1, float("inf"))}, InvalidValueError),
])
def test_neuron_bad_input(kwargs, error):
    with pytest.raises(error):
        explain_neuron(**kwargs)


# ---- the network ---------------------------------------------------------------------------
_TORCH_ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
              None: lambda t: t}


def _torch_network(walk, activation, output_activation):
    """Forward the same W, b in torch float64; return δ^l = ∂C/∂z^l and the gradients."""
    a = torch.tensor(walk.x, dtype=torch.float64)
    zs, params = [], []
    for index, layer in enumerate(walk.layers):
        W = torch.tensor(layer.W, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(layer.b, dtype=torch.float64, requires_grad=True)
        z = a @ W + b
        z.retain_grad()
        zs.append(z)
        params.append((W, b))
        last = index == len(walk.layers) - 1
        a = _TORCH_ACT[output_activation if last else activation](z)
    cost = 0.5 * ((a - torch.tensor(walk.y, dtype=torch.float64)) ** 2).sum()
    cost.backward()
    return cost.item(), [z.grad.numpy() for z in zs], [(W.grad.numpy(), b.grad.numpy())
                                                        for W, b in params]


@pytest.mark.parametrize(("spec", "activation", "output_activation", "x", "y"), [
    ("2-2-1", "sigmoid", "sigmoid", None, None),
    ("2-2-1", "sigmoid", "sigmoid", (0.3, -2.0), (0.0,)),
    ("3-4-3-2", "tanh", None, (0.5, -1.0, 2.0), (1.0, -1.0)),
    ("2-5-2", "relu", "sigmoid", (1.5, 0.7), (0.0, 1.0)),
])
def test_network_deltas_and_gradients_match_torch(spec, activation, output_activation, x, y):
    walk = explain_network(spec, x=x, y=y, seed=3, activation=activation,
                           output_activation=output_activation, lr=0.25)
    cost, deltas, grads = _torch_network(walk, activation, output_activation)
    assert walk.cost == pytest.approx(cost, rel=1e-13)
    for layer, delta, (gW, gb) in zip(walk.layers, deltas, grads, strict=True):
        np.testing.assert_allclose(layer.delta, delta, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(layer.dC_dW, gW, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(layer.dC_db, gb, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(layer.W_new, layer.W - 0.25 * gW, rtol=1e-13)
    assert walk.agree and walk.engine_error < 1e-12 and walk.numeric_error < 1e-6


def test_network_text_and_dict():
    walk = explain_network("2-2-1")
    text = "\n".join(walk.lines())
    assert "δ² = ∂C/∂a² ⊙ f′(z²)" in text and "δ¹ = (δ² (W²)ᵀ) ⊙ f′(z¹)" in text
    assert "∂C/∂W¹ = (a⁰)ᵀ δ¹" in text and walk.lines()[-1].startswith("Check:")
    doc = walk.to_dict()
    assert [layer["layer"] for layer in doc["layers"]] == [1, 2]
    assert np.array(doc["layers"][0]["dC_dW"]).shape == (2, 2)
    assert doc["check"]["agree"] is True


def test_network_bad_input():
    with pytest.raises(ShapeError, match="takes 2 input"):
        explain_network("2-2-1", x=(1.0, 2.0, 3.0))
    with pytest.raises(GradsightError):
        explain_network("2-x-1")
    with pytest.raises(GradsightError):
        explain_network("2-2-1", activation="nope")


# ---- the neuron learns OR and AND ------------------------------------------------------------
@pytest.mark.parametrize(("data", "truth"), [("or", [0, 1, 1, 1]), ("and", [0, 0, 0, 1])])
def test_single_neuron_learns_or_and(data, truth):
    run = train_neuron(data=data, epochs=600, lr=4.0, seed=0)
    assert run.predictions.tolist() == truth and run.learned
    assert len(run.losses) == 600 and run.losses[-1] < run.losses[0] / 4
    # the curve is the quadratic cost of the final weights: recompute it independently
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y_hat = 1 / (1 + np.exp(-(X @ np.array(run.w) + run.b)))
    assert run.final_cost == pytest.approx(0.5 * np.mean((y_hat - truth) ** 2), rel=1e-12)


def test_single_neuron_cannot_learn_xor():
    run = train_neuron(data="xor", epochs=300, lr=4.0, seed=0)
    assert not run.learned and run.accuracy <= 0.75
