"""The vanishing-gradient lab against its oracles: Nielsen's printed figures (chapter 5),
PyTorch autograd on the same weights, and a per-sample loop of gradients."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradsight import engine
from gradsight.engine import data as datasets
from gradsight.errors import DataError, InvalidValueError, UnknownNameError
from gradsight.io import dumps
from gradsight.lab import (
    NIELSEN_SPEEDS,
    NielsenCrossEntropy,
    activation_trajectory,
    layer_speeds,
    nielsen_speeds,
    sweep,
)


@pytest.fixture(scope="module")
def sigmoid4():
    return nielsen_speeds(hidden=(30, 30, 30, 30), seeds=3)


# ---- Nielsen's protocol ---------------------------------------------------------------------
def test_sigmoid_speeds_increase_towards_the_output(sigmoid4) -> None:
    speeds = [row["speed_at_init"] for row in sigmoid4.layers]
    assert all(a < b for a, b in zip(speeds, speeds[1:], strict=False))
    assert sigmoid4.ratio_last_first > 10
    assert sigmoid4.ratio_last_first == pytest.approx(speeds[-1] / speeds[0])


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_shape_agrees_with_nielsen(depth: int) -> None:
    """Each layer learns 2–10× more slowly than the one above it, as in Nielsen's MNIST runs;
    the layer-to-layer factors agree with his within a factor 2."""
    result = nielsen_speeds(hidden=(30,) * depth, seeds=3)
    ours = np.array([row["speed_at_init"] for row in result.layers])
    theirs = np.array(NIELSEN_SPEEDS[depth])
    assert result.nielsen_reference == list(theirs)
    assert np.all(np.diff(np.log(ours)) > 0)
    ratio_of_factors = (ours[:-1] / ours[1:]) / (theirs[:-1] / theirs[1:])
    assert np.all((ratio_of_factors > 0.5) & (ratio_of_factors < 2)), ratio_of_factors
    assert [row["factor_to_next"] for row in result.layers[:-1]] == pytest.approx(
        list(ours[:-1] / ours[1:]))


@pytest.mark.parametrize("bias_init", ["normal", "zeros"])
def test_relu_he_ratio_within_an_order_of_magnitude(bias_init: str) -> None:
    result = nielsen_speeds(activation="relu", init="he_normal", bias_init=bias_init, seeds=3)
    assert 0.1 < result.ratio_last_first < 10
    assert result.nielsen_reference is None  # his figures are for sigmoid nets only
    other_init = nielsen_speeds(hidden=(30, 30), init="xavier_uniform", samples=50)
    assert other_init.nielsen_reference is None and other_init.to_dict()["nielsen"] is None


def _torch_speeds(model: engine.Sequential, X: np.ndarray, y: np.ndarray, loss: str,
                  per_sample: bool = False) -> list[float]:
    """‖∂C/∂b‖ per hidden layer by PyTorch autograd on copies of the model's weights."""
    torch = pytest.importorskip("torch")
    params = [(torch.tensor(d.W, dtype=torch.float64, requires_grad=True),
               torch.tensor(d.b, dtype=torch.float64, requires_grad=True))
              for d in model.dense_layers]
    act = {"sigmoid": torch.sigmoid, "relu": torch.relu}[model.layers[1].activation.name]
    Y = torch.nn.functional.one_hot(torch.tensor(y), 10).to(torch.float64)

    def cost(rows: slice | np.ndarray) -> torch.Tensor:
        a = torch.tensor(X[rows], dtype=torch.float64)
        for i, (W, b) in enumerate(params):
            z = a @ W + b
            a = act(z) if i < len(params) - 1 else z
        if loss == "cross_entropy":  # Nielsen: sigmoid outputs, binary CE summed over units
            terms = torch.nn.functional.binary_cross_entropy_with_logits(
                a, Y[rows], reduction="none")
            return terms.sum(dim=1).mean()
        if loss == "softmax":
            return torch.nn.functional.cross_entropy(a, torch.tensor(y[rows]))
        return 0.5 * ((torch.sigmoid(a) - Y[rows]) ** 2).sum(dim=1).mean()

    if per_sample:  # Nielsen's get_average_gradient: one backprop per sample, then average
        totals = [torch.zeros_like(b) for _, b in params[:-1]]
        for n in range(X.shape[0]):
            grads = torch.autograd.grad(cost(np.array([n])), [b for _, b in params[:-1]])
            totals = [t + g for t, g in zip(totals, grads, strict=True)]
        return [float(torch.linalg.norm(t / X.shape[0])) for t in totals]
    grads = torch.autograd.grad(cost(slice(None)), [b for _, b in params[:-1]])
    return [float(torch.linalg.norm(g)) for g in grads]


@pytest.mark.parametrize("loss", ["cross_entropy", "softmax", "quadratic"])
def test_speeds_equal_pytorch_autograd_on_the_same_weights(loss: str) -> None:
    ds = datasets.digits()
    X, y = ds.X[:1000], ds.y[:1000]
    ours = nielsen_speeds(hidden=(30, 30, 30), loss=loss, seed=5, seeds=1)
    output = "sigmoid" if loss == "quadratic" else None
    model = engine.mlp([64, 30, 30, 30, 10], activation="sigmoid", output_activation=output,
                       init="scaled_normal", bias_init="normal", seed=5)
    expected = _torch_speeds(model, X, y, loss)
    assert [r["speed_at_init"] for r in ours.layers] == pytest.approx(expected, rel=1e-10)


def test_speeds_equal_a_per_sample_loop_of_gradients() -> None:
    ds = datasets.digits()
    X, y = ds.X[:120], ds.y[:120]
    model = engine.mlp([64, 20, 20, 10], activation="relu", init="he_normal", bias_init="normal",
                       seed=3)
    expected = _torch_speeds(model, X, y, "cross_entropy", per_sample=True)
    assert layer_speeds(model, X, y, NielsenCrossEntropy()) == pytest.approx(expected,
                                                                             rel=1e-10)


def test_nielsen_cross_entropy_matches_torch_sum_over_units() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(7, 4)) * 3, rng.integers(0, 4, 7)
    Y = np.eye(4)[y]
    zt = torch.tensor(z, requires_grad=True)
    C = torch.nn.functional.binary_cross_entropy_with_logits(
        zt, torch.tensor(Y), reduction="sum") / 7
    C.backward()
    cost = NielsenCrossEntropy()
    assert cost.value(z, y) == pytest.approx(float(C.detach()), rel=1e-12)
    assert cost.gradient(z, y) == pytest.approx(zt.grad.numpy(), rel=1e-12)


def test_training_records_speeds_every_epoch_and_is_reproducible() -> None:
    kwargs = dict(hidden=(30, 30), samples=200, train_epochs=2, seeds=2)
    result = nielsen_speeds(**kwargs)
    again = nielsen_speeds(**kwargs)
    assert result.to_dict() == again.to_dict()
    assert len(result.speeds_by_epoch) == 3
    assert result.speeds_by_epoch[0] == pytest.approx([r["speed_at_init"] for r in
                                                       result.layers])
    assert result.speeds_by_epoch[-1] == pytest.approx([r["speed_trained"] for r in
                                                        result.layers])
    assert result.loss_trained < result.loss_at_init
    assert 0 <= result.accuracy_trained <= 1
    assert len(result.per_seed) == 2


def test_to_dict_is_strict_json_with_the_documented_keys(sigmoid4) -> None:
    document = json.loads(dumps(sigmoid4.to_dict()))
    assert {"config", "layers", "ratio_last_first", "nielsen"} <= set(document)
    assert set(document["layers"][0]) >= {"layer", "speed_at_init", "speed_trained"}
    assert document["config"]["hidden"] == [30, 30, 30, 30]
    assert document["nielsen"] == [0.0030, 0.017, 0.070, 0.285]
    assert "<table>" in sigmoid4._repr_html_()


# ---- the sweep --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_sweep():
    return sweep(depths=(2, 4), activations=("sigmoid", "relu"),
                 inits=("scaled_normal", "he_normal"), seeds=2, train_epochs=1, samples=200)


def test_sweep_rows_and_their_numbers(small_sweep) -> None:
    rows = small_sweep.rows
    assert len(rows) == 8
    for row in rows:
        assert len(row["speeds_init"]) == row["depth"] == len(row["speeds_trained"])
        assert row["ratio_last_first_init"] == pytest.approx(
            row["speeds_init"][-1] / row["speeds_init"][0])
        assert 0 <= row["accuracy"] <= 1 and math.isfinite(row["loss"])
    pick = {(r["depth"], r["activation"], r["init"]): r for r in rows}
    assert pick[4, "sigmoid", "scaled_normal"]["ratio_last_first_init"] > 10
    assert 0.1 < pick[4, "relu", "he_normal"]["ratio_last_first_init"] < 10
    assert json.loads(dumps(small_sweep.to_dict()))["rows"][0]["depth"] == 2


def test_sweep_speeds_equal_the_protocol_with_the_same_settings(small_sweep) -> None:
    row = next(r for r in small_sweep.rows
               if (r["depth"], r["activation"], r["init"]) == (2, "relu", "he_normal"))
    direct = nielsen_speeds(hidden=(30, 30), activation="relu", init="he_normal",
                            bias_init="zeros", samples=200, seeds=2, train_epochs=1,
                            batch_size=16)
    assert row["speeds_init"] == pytest.approx([r["speed_at_init"] for r in direct.layers])
    assert row["speeds_trained"] == pytest.approx([r["speed_trained"] for r in direct.layers])


# ---- Glorot & Bengio ------------------------------------------------------------------------
def test_top_sigmoid_layer_is_driven_towards_zero() -> None:
    result = activation_trajectory(epochs=2, every=30)
    means = np.array(result.mean)
    assert means.shape == (len(result.steps), 4) and result.steps[0] == 0
    top = result.top_layer()
    assert top["min"] < 0.75 * top["start"]          # the top layer sinks towards 0 ...
    assert abs(means[-1, 0] - means[0, 0]) < 0.05    # ... while the first barely moves
    # the first record is the untrained network: recompute it by hand from the same seed
    model = engine.mlp([64, 100, 100, 100, 100, 10], activation="sigmoid",
                       init="glorot_standard", seed=0)
    a = datasets.digits().X[:300]
    for dense in model.dense_layers[:-1]:
        a = 1 / (1 + np.exp(-(a @ dense.W + dense.b)))
    assert result.mean[0][-1] == pytest.approx(a.mean(), rel=1e-12)
    assert result.std[0][-1] == pytest.approx(a.std(), rel=1e-12)


# ---- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error", [
    ({"hidden": ()}, InvalidValueError),
    ({"hidden": (30, 0)}, InvalidValueError),
    ({"samples": 0}, InvalidValueError),
    ({"seeds": 0}, InvalidValueError),
    ({"lr": -0.1}, InvalidValueError),
    ({"lr": float("nan")}, InvalidValueError),
    ({"loss": "hinge"}, UnknownNameError),
    ({"activation": "swishy"}, UnknownNameError),
    ({"init": "magic"}, UnknownNameError),
    ({"data": "nope"}, UnknownNameError),
])
def test_bad_input_raises_a_clear_error(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        nielsen_speeds(**{"samples": 50, "hidden": (5, 5), **kwargs})


def test_regression_data_is_refused() -> None:
    ds = datasets.Dataset(np.zeros((10, 2)), np.linspace(0, 1, 10), "ramp", None, ["a", "b"])
    with pytest.raises(DataError, match="classification"):
        nielsen_speeds(data=ds, hidden=(3,))
    with pytest.raises(InvalidValueError):
        sweep(depths=())
