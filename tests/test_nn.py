"""The NumPy engine (gradsight.engine, alias gradsight.nn) against PyTorch autograd, hand
derivations and formulas."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest

from gradsight import activations, nn
from gradsight.engine.gradcheck import gradcheck
from gradsight.errors import (
    DataError,
    InvalidValueError,
    ShapeError,
    TrainingError,
    UnknownNameError,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTIVATIONS = [
    "sigmoid", "tanh", "relu", "leaky_relu", "leaky_relu:0.2", "elu", "elu:0.5", "softplus",
    "silu", "gelu", "linear",
]
LOSSES = ["quadratic", "bce_with_logits", "cross_entropy"]


def torch_activation(name: str):
    base, _, parameter = name.partition(":")
    value = float(parameter) if parameter else None
    return {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, value if value is not None else 0.01),
        "elu": lambda z: F.elu(z, value if value is not None else 1.0),
        "softplus": F.softplus,
        "silu": F.silu,
        "gelu": F.gelu,
        "linear": lambda z: z,
    }[base]


def torch_loss(name: str, output, target: np.ndarray):
    if name == "quadratic":  # C = 1/(2N) Σ ‖ŷ − y‖², the articles' cost
        return 0.5 * ((output - torch.tensor(target)) ** 2).sum() / output.shape[0]
    if name == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(output, torch.tensor(target))
    return F.cross_entropy(output, torch.tensor(target, dtype=torch.int64))


def torch_gradients(model: nn.Sequential, X: np.ndarray, loss: str, target: np.ndarray):
    """Loss, parameter gradients and ∂C/∂X by autograd, float64, on a copy of the weights."""
    X_t = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    params, a = [], X_t
    for layer in model.layers:
        if isinstance(layer, nn.Dense):
            W = torch.tensor(layer.W, requires_grad=True)
            b = torch.tensor(layer.b, requires_grad=True)
            params += [W, b]
            a = a @ W + b
        else:
            a = torch_activation(layer.activation.name)(a)
    cost = torch_loss(loss, a, target)
    cost.backward()
    return cost.item(), [p.grad.numpy() for p in params], X_t.grad.numpy()


def random_case(rng: np.random.Generator, activation: str, loss: str, depth: int, batch: int):
    """A random mlp with ``depth`` Dense layers (widths 1–6), inputs and targets."""
    sizes = [int(s) for s in rng.integers(1, 7, size=depth + 1)]
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    output_activation = None
    if loss == "quadratic" and rng.random() < 0.5:
        output_activation = activation
    model = nn.mlp(sizes, activation=activation, output_activation=output_activation,
                   init="xavier_normal", bias_init="normal", seed=int(rng.integers(1 << 30)))
    X = rng.normal(size=(batch, sizes[0]))
    k = sizes[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, k, size=batch)
    elif loss == "bce_with_logits":
        y = rng.random(size=(batch, k))
    else:
        y = rng.normal(size=(batch, k))
    return model, X, y


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-8) -> None:
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12 * scale)


@pytest.mark.parametrize(("activation", "loss"), list(itertools.product(ACTIVATIONS, LOSSES)))
def test_gradients_equal_torch_autograd_and_pass_gradcheck(activation: str, loss: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{activation}/{loss}".encode()))
    # depth 1 with a single sample, depth 4, a random depth 1–4 and batch 1–8; random widths
    for depth, batch in ((1, 1), (4, int(rng.integers(2, 9))),
                         (int(rng.integers(1, 5)), int(rng.integers(1, 9)))):
        model, X, y = random_case(rng, activation, loss, depth, batch)
        cost = nn.loss(loss)
        value, grad = cost.value_and_gradient(model.forward(X), y)
        dX = model.backward(grad)
        expected_value, expected_grads, expected_dX = torch_gradients(model, X, loss, y)
        assert value == pytest.approx(expected_value, rel=1e-12, abs=1e-15)
        for ours, theirs in zip(model.gradients(), expected_grads, strict=True):
            assert_close(ours, theirs)
        assert_close(dX, expected_dX)
        check = gradcheck(model, X, y, loss)
        assert check.passed, str(check)


def test_default_forward_returns_fresh_arrays() -> None:
    model = nn.mlp("3-4-2", activation="sigmoid", seed=0)
    first = model.predict(np.ones((2, 3)))
    kept = first.copy()
    model.predict(np.zeros((2, 3)))
    np.testing.assert_array_equal(first, kept)


def test_the_articles_single_neuron_chain_rule() -> None:
    # the article on the derivative in training: ŷ = σ(wᵀx + b), C = 1/(2N) Σ (ŷ − y)²,
    # ∂C/∂w = (ŷ − y) σ(z)(1 − σ(z)) x
    model = nn.mlp("2-1", output_activation="sigmoid", seed=0)
    dense = model.dense_layers[0]
    dense.W[:] = [[0.5], [-0.3]]
    dense.b[:] = [0.1]
    x, y = np.array([[1.0, 2.0]]), np.array([1.0])
    z = 0.5 * 1.0 - 0.3 * 2.0 + 0.1
    y_hat = 1 / (1 + math.exp(-z))
    cost = nn.loss("quadratic")
    output = model.forward(x)
    assert output[0, 0] == pytest.approx(y_hat, rel=1e-15)
    assert cost.value(output, y) == pytest.approx((y_hat - 1.0) ** 2 / 2, rel=1e-14)
    model.backward(cost.gradient(output, y))
    factor = (y_hat - 1.0) * y_hat * (1 - y_hat)
    np.testing.assert_allclose(dense.grad_W[:, 0], [factor * 1.0, factor * 2.0], rtol=1e-14)
    np.testing.assert_allclose(dense.grad_b, [factor], rtol=1e-14)


def test_sigmoid_and_tanh_backward_use_the_cached_output() -> None:
    layer = nn.Activation("sigmoid")
    a = layer.forward(np.array([[-2.0, 0.0, 3.0]]))
    layer.inputs = None  # σ′ = a(1 − a) needs only the output
    np.testing.assert_allclose(layer.backward(np.ones((1, 3))), a * (1 - a), rtol=1e-15)
    tanh = nn.Activation("tanh")
    t = tanh.forward(np.array([[0.7]]))
    tanh.inputs = None
    assert tanh.backward(np.array([[2.0]]))[0, 0] == pytest.approx(2 * (1 - t[0, 0] ** 2))
    silu = nn.Activation("silu")
    silu.forward(np.array([[0.7]]))
    assert not silu.activation.has_output_derivative  # silu′ is not a function of its output
    z, s = 0.7, 1 / (1 + math.exp(-0.7))
    assert silu.backward(np.array([[1.0]]))[0, 0] == pytest.approx(s * (1 + z * (1 - s)))


def test_sigmoid_is_the_exact_formula_in_float32_and_float64() -> None:
    layer = nn.Activation("sigmoid")
    for dtype in (np.float32, np.float64):
        z = np.linspace(-40, 40, 1001, dtype=dtype)[None, :]
        out = layer.forward(z)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, activations.sigmoid(z))


def test_float32_stays_float32() -> None:
    model = nn.mlp("4-5-3", activation="relu", dtype="float32", seed=0)
    out = model.forward(np.ones((2, 4)))
    assert out.dtype == np.float32
    model.backward(nn.loss("cross_entropy").gradient(out, [0, 2]))
    assert all(g.dtype == np.float32 for g in model.gradients())
    assert all(p.dtype == np.float32 for p in model.parameters())


# ---- initialisers -----------------------------------------------------------------------
# Variances written out independently of gradsight.nn.init (the formulas of the docstrings).
def _expected_variance(name: str, n_in: int, n_out: int) -> float:
    return {
        "normal": 1.0,
        "scaled_normal": 1 / n_in,
        "glorot_standard": (2 / math.sqrt(n_in)) ** 2 / 12,  # U[−c, c]: (2c)²/12
        "xavier_uniform": (2 * math.sqrt(6 / (n_in + n_out))) ** 2 / 12,
        "xavier_normal": 2 / (n_in + n_out),
        "he_normal": 2 / n_in,
        "he_uniform": (2 * math.sqrt(6 / n_in)) ** 2 / 12,
        "lecun_normal": 1 / n_in,
    }[name]


@pytest.mark.parametrize("name", [n for n in nn.init.names() if n != "zeros"])
def test_initialiser_variance_matches_its_formula(name: str) -> None:
    n_in, n_out = 300, 700
    W = nn.init.get(name)(n_in, n_out, np.random.default_rng(0), np.float64)
    expected = _expected_variance(name, n_in, n_out)
    n = W.size
    uniform = "uniform" in name or name == "glorot_standard"
    # standard error of the sample variance: σ²√(2/n) (normal), σ²√(0.8/n) (uniform); the
    # truncated normal's kurtosis is below the normal's, so √(2/n) bounds it too
    standard_error = expected * math.sqrt((0.8 if uniform else 2.0) / n)
    assert abs(W.var() - expected) < 5 * standard_error
    assert abs(W.mean()) < 5 * math.sqrt(expected / n)
    assert nn.init.variance(name, n_in, n_out) == pytest.approx(expected)
    if uniform:
        limit = math.sqrt(3 * expected)
        assert np.abs(W).max() <= limit
    if name == "lecun_normal":
        assert np.abs(W).max() <= 2 * math.sqrt(1 / n_in) / 0.87962566103423978


def test_zeros_initialiser_warns_about_symmetry_and_biases() -> None:
    with pytest.warns(UserWarning, match="symmetry"):
        layer = nn.Dense(3, 4, init="zeros")
    assert not layer.W.any()
    b = nn.init.get_bias("normal")(20000, np.random.default_rng(0), np.float64)
    assert abs(b.var() - 1.0) < 5 * math.sqrt(2 / 20000)
    assert not nn.init.get_bias("zeros")(5, np.random.default_rng(0), np.float64).any()
    with pytest.raises(UnknownNameError, match="he_normal"):
        nn.init.get("kaiming")
    with pytest.raises(UnknownNameError):
        nn.Dense(2, 2, bias_init="ones")


def test_same_seed_same_weights_and_float32_is_the_rounded_float64() -> None:
    a = nn.mlp("4-8-2", seed=7)
    b = nn.mlp("4-8-2", seed=7)
    c = nn.mlp("4-8-2", dtype="float32", seed=7)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(pc, pa.astype(np.float32))
    assert not np.array_equal(nn.mlp("4-8-2", seed=8).parameters()[0], a.parameters()[0])


# ---- losses -----------------------------------------------------------------------------
def test_losses_match_torch_values_and_stay_finite_at_extreme_logits() -> None:
    z = np.array([[1e4, -1e4, 0.5], [-800.0, 3.0, 800.0]])
    labels = np.array([1, 0])
    ce = nn.loss("cross_entropy")
    zt = torch.tensor(z, requires_grad=True)
    expected = F.cross_entropy(zt, torch.tensor(labels))
    expected.backward()
    value, grad = ce.value_and_gradient(z, labels)
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-300)
    targets = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0]])
    bce = nn.loss("bce_with_logits")
    zt = torch.tensor(z, requires_grad=True)
    expected = F.binary_cross_entropy_with_logits(zt, torch.tensor(targets))
    expected.backward()
    value, grad = bce.value_and_gradient(z, targets)
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-300)
    assert np.isfinite(grad).all()


def test_quadratic_is_the_seeds_cost_with_one_hot_labels() -> None:
    quadratic = nn.loss("quadratic")
    output = np.array([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6]])
    # labels 0 and 2 one-hot encoded: ‖(−0.1, 0.1, 0)‖² + ‖(0.2, 0.2, −0.4)‖² = 0.02 + 0.24
    assert quadratic.value(output, [0, 2]) == pytest.approx(0.26 / 4)
    np.testing.assert_allclose(
        quadratic.gradient(output, [0, 2]), (output - [[1, 0, 0], [0, 0, 1]]) / 2
    )
    assert quadratic.accuracy(output, [0, 2]) == 1.0
    assert quadratic.accuracy(np.array([[0.7], [0.4]]), [1.0, 1.0]) == 0.5
    assert quadratic.accuracy(np.array([[0.7], [0.4]]), [0.3, 2.5]) is None  # regression


def test_loss_target_errors_name_the_value() -> None:
    ce = nn.loss("cross_entropy")
    with pytest.raises(DataError, match=r"label 3 .*0\.\.2"):
        ce.value(np.zeros((2, 3)), [0, 3])
    with pytest.raises(DataError, match="1.5"):
        ce.value(np.zeros((2, 3)), [0, 1.5])
    with pytest.raises(ShapeError, match="2 integer labels"):
        ce.value(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(InvalidValueError, match="bce_with_logits"):
        ce.value(np.zeros((2, 1)), [0, 1])
    with pytest.raises(DataError, match=r"not in \[0, 1\]"):
        nn.loss("bce_with_logits").value(np.zeros((2, 1)), [0.0, 2.0])
    with pytest.raises(ShapeError, match="3 rows"):
        nn.loss("quadratic").value(np.zeros((3, 1)), [1.0, 2.0])
    with pytest.raises(DataError, match="nan"):
        nn.loss("quadratic").value(np.zeros((2, 1)), [1.0, float("nan")])
    with pytest.raises(UnknownNameError, match="cross_entropy"):
        nn.loss("mse")


# ---- models -----------------------------------------------------------------------------
def test_mlp_names_spec_and_display() -> None:
    model = nn.mlp("4-3-3-2", activation="leaky_relu:0.2", output_activation="sigmoid", seed=0)
    assert [layer.name for layer in model.layers] == [
        "dense0", "leaky_relu0", "dense1", "leaky_relu1", "dense2", "sigmoid0"]
    assert model.sizes == [4, 3, 3, 2] and model.n_parameters == 15 + 12 + 8
    spec = model.spec
    assert spec["dtype"] == "float64"
    assert spec["layers"][1] == {"type": "activation", "activation": "leaky_relu:0.2"}
    rebuilt = nn.Sequential.from_spec(spec, model.get_weights())
    X = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(rebuilt.predict(X), model.predict(X))
    assert "dense1" in model.summary() and "total parameters: 35" in model.summary()
    assert "<table>" in model._repr_html_() and "leaky_relu0" in model._repr_html_()


def test_copy_is_independent_and_converts_dtype() -> None:
    model = nn.mlp("3-2", seed=0)
    clone = model.copy(dtype="float32")
    clone.parameters()[0][:] = 0
    assert model.parameters()[0].any() and clone.dtype == np.float32
    assert model.dtype == np.float64


def test_model_and_layer_errors() -> None:
    with pytest.raises(InvalidValueError, match="'x'"):
        nn.mlp("3-x-1")
    with pytest.raises(InvalidValueError, match="at least two"):
        nn.mlp("3")
    with pytest.raises(InvalidValueError, match="'0'"):
        nn.mlp("3-0-1")
    with pytest.raises(ShapeError, match="3 outputs .* 4 inputs"):
        nn.Sequential([nn.Dense(2, 3), nn.Dense(4, 1)])
    with pytest.raises(UnknownNameError, match="sigmoid"):
        nn.mlp("2-1", activation="sigmoidal")
    with pytest.raises(InvalidValueError, match="float16"):
        nn.Dense(2, 2, dtype="float16")
    model = nn.mlp("3-1", seed=0)
    with pytest.raises(ShapeError, match=r"\(2, 4\).*\(N, 3\)"):
        model.forward(np.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        model.forward(np.ones(3))
    with pytest.raises(DataError, match="numeric"):
        model.forward(np.array([["a", "b", "c"]]))
    with pytest.raises(TrainingError, match="before forward"):
        nn.Dense(2, 2).backward(np.ones((1, 2)))
    with pytest.raises(ShapeError):
        model.set_weights([np.ones((2, 2)), np.ones(1)])
