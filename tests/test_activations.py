"""gradsight.activations against central differences, PyTorch autograd and the articles' values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradsight import activations
from gradsight.errors import InvalidValueError, UnknownNameError

NAMES = activations.names() + ["leaky_relu:0.2", "elu:0.5", "elu:2"]
KINKED = {"relu", "leaky_relu", "elu"}
RNG_SEED = 0


def _away_from_kink(name: str, z: float) -> bool:
    return activations.get(name).base_name not in KINKED or abs(z) > 1e-3


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=80, deadline=None)
@given(z=st.floats(-20, 20, allow_nan=False))
def test_derivative_matches_central_differences(name, z):
    if not _away_from_kink(name, z):
        return
    act = activations.get(name)
    h = 1e-6
    estimate = (float(act(z + h)) - float(act(z - h))) / (2 * h)
    assert abs(float(act.derivative(z)) - estimate) <= 1e-7 * max(1.0, abs(estimate))


def _torch_reference(torch, name: str, z):
    F = torch.nn.functional
    act = activations.get(name)
    parameter = act.name.partition(":")[2]
    functions = {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, float(parameter or 0.01)),
        "elu": lambda t: F.elu(t, float(parameter or 1.0)),
        "softplus": lambda t: F.softplus(t, beta=1.0, threshold=20.0),
        "silu": F.silu, "gelu": lambda t: F.gelu(t, approximate="none"),
        "linear": lambda t: t,
    }
    return functions[act.base_name](z)


@pytest.mark.parametrize("name", NAMES)
def test_value_and_derivative_match_pytorch_autograd(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(RNG_SEED)
    z = np.concatenate([rng.uniform(-15, 15, 2000), [-15.0, -3.0, -1e-3, 1e-3, 3.0, 15.0]])
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = _torch_reference(torch, name, tz)
    (grad,) = torch.autograd.grad(out.sum(), tz)
    act = activations.get(name)
    expected = grad.numpy()
    np.testing.assert_allclose(act(z), out.detach().numpy(), rtol=1e-10, atol=1e-300)
    # Relative error < 1e-10 wherever the slope is not tiny; in the tails PyTorch itself
    # computes σ(1−σ) and 1 − tanh², whose round-off is ~1e-16 absolute, so compare there
    # with that absolute tolerance.
    slopes = act.derivative(z)
    big = np.abs(expected) > 1e-5
    np.testing.assert_allclose(slopes[big], expected[big], rtol=1e-10, atol=0)
    np.testing.assert_allclose(slopes[~big], expected[~big], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "leaky_relu:0.2", "elu", "elu:0.5"])
def test_kinks_follow_pytorch(name):
    torch = pytest.importorskip("torch")
    tz = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_torch_reference(torch, name, tz).sum(), tz)
    assert float(activations.get(name).derivative(0.0)) == grad.item()
    if name == "relu":
        assert grad.item() == 0.0  # relu′(0) = 0


def test_the_articles_values():
    assert float(activations.get("sigmoid").derivative(0.0)) == 0.25
    assert float(activations.get("tanh").derivative(0.0)) == 1.0
    assert float(activations.get("sigmoid")(0.0)) == 0.5
    z = np.linspace(-6, 6, 13)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(activations.get("sigmoid").derivative(z), s * (1 - s), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_from_output_equals_derivative(name):
    act = activations.get(name)
    z = np.linspace(-8, 8, 801)
    z = z[np.abs(z) > 1e-9]  # a = f(0) = 0 does not say from which side z came
    from_output = act.derivative_from_output(act(z))
    if act.base_name in ("silu", "gelu"):
        assert from_output is None and not act.has_output_derivative
        return
    assert act.has_output_derivative
    np.testing.assert_allclose(from_output, act.derivative(z), rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_stable_at_large_inputs_and_dtype_preserved(name, dtype):
    act = activations.get(name)
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, slopes = act(z), act.derivative(z)
        from_output = act.derivative_from_output(values)
    for array in (values, slopes) + (() if from_output is None else (from_output,)):
        assert array.dtype == dtype
        assert np.all(np.isfinite(array))
    low, high = act.output_range
    assert np.all(values >= low) and np.all(values <= high)
    if act.saturating:  # the exact limits, not NaN
        assert values[0] == low and values[-1] == high
        assert slopes[0] == 0.0 and slopes[-1] == 0.0


def test_integer_input_becomes_float64():
    assert activations.get("sigmoid")(np.array([0, 1])).dtype == np.float64
    assert activations.get("relu").derivative([1, -1]).dtype == np.float64


def _refine_peak(derivative, where: float) -> tuple[float, float]:
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda t: -float(derivative(t)), bracket=(where - 0.5, where + 0.5),
                            tol=1e-12)
    return -found.fun, found.x




@pytest.mark.parametrize("name", NAMES)
def test_max_derivative_value_and_location(name):
    act = activations.get(name)
    value, where = act.max_derivative
    z = np.linspace(-10, 10, 200_001)
    slopes = act.derivative(z)
    assert slopes.max() <= value + 1e-9  # never exceeded on the grid
    if math.isfinite(where):
        peak_value, peak_where = _refine_peak(act.derivative, float(z[np.argmax(slopes)]))
        assert math.isclose(peak_value, value, rel_tol=1e-8)
        assert abs(peak_where - where) < 1e-6
        assert math.isclose(float(act.derivative(where)), value, rel_tol=1e-8)
    else:  # only approached as z → ∞
        assert math.isclose(float(act.derivative(1e3)), value, rel_tol=1e-12)


def test_max_derivative_where_in_words():
    where = {name: activations.get(name).max_derivative_where for name in NAMES}
    assert where["sigmoid"] == where["tanh"] == "at z = 0"
    assert where["relu"] == where["leaky_relu:0.2"] == where["elu:0.5"] == "for every z > 0"
    assert where["elu:2"] == "at z = 0"  # α e^z on z ≤ 0 peaks at α = 2 > 1
    assert where["linear"] == "for every z"
    assert where["softplus"] == "as z → ∞ (never reached)"
    assert float(activations.get("softplus").derivative(30.0)) < 1.0  # never reached
    assert where["silu"] == "at z = 2.39936"


def test_saturating_flags():
    saturating = {n for n in activations.names() if activations.get(n).saturating}
    assert saturating == {"sigmoid", "tanh"}
    for name in activations.names():
        tails = activations.get(name).derivative(np.array([-40.0, 40.0]))
        assert bool(np.all(tails < 1e-12)) == (name in saturating)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError) as caught:
        activations.get("swish")
    message = str(caught.value)
    assert "swish" in message
    for name in activations.names():
        assert name in message
    with pytest.raises(InvalidValueError):
        activations.get("leaky_relu:abc")
    with pytest.raises(InvalidValueError):
        activations.get("elu:-1")


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_lower_bound_of_non_monotonic_activations(name):
    from scipy.optimize import minimize_scalar

    act = activations.get(name)
    found = minimize_scalar(lambda t: float(act(t)), bracket=(-2.0, -1.0, 0.0), tol=1e-12)
    assert math.isclose(found.fun, act.output_range[0], rel_tol=1e-9)
