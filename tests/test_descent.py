"""Gradient descent (gradsight.calculus.descent): the article's run, verdicts, torch.optim as
oracle, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradsight import optim
from gradsight.calculus.descent import Comparison, Iterate, Trajectory, compare, minimize
from gradsight.errors import ExpressionError, GradsightError, InvalidValueError, UnknownNameError
from gradsight.io import dumps

ARTICLE_FUNCTION = "x^2 - 4*x + 6"
# the question-and-answer thread, "Iteración 1": x_new = x_old − 0.1·(2·x_old − 4), printed
# with two decimals
ARTICLE_PRINTED = [8, 6.8, 5.84, 5.07, 4.45, 3.96, 3.57, 3.25, 3.00, 2.80, 2.64, 2.51, 2.41,
                   2.32, 2.26, 2.21, 2.16, 2.13, 2.10, 2.08, 2.06, 2.05, 2.04, 2.03, 2.02, 2.02,
                   2.01, 2.01, 2.01, 2.00]


def sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# --------------------------------------------------------------------- the article's run


def test_article_iterates_are_2_plus_6_times_0_8_to_the_k():
    t = minimize(ARTICLE_FUNCTION, 8, lr=0.1)
    assert t.verdict == "converged"
    for it in t.iterations:
        assert it.x[0] == pytest.approx(2 + 6 * 0.8**it.step, abs=1e-12)
        assert it.f == pytest.approx((it.x[0] - 2) ** 2 + 2, abs=1e-12)
        assert it.grad[0] == pytest.approx(2 * it.x[0] - 4, abs=1e-12)
    assert t.x_final[0] == pytest.approx(2.0, abs=1e-5)
    assert t.f_final == pytest.approx(2.0, abs=1e-10)
    # updates are x_k − x_{k−1} = −0.1·(2x_{k−1} − 4)
    for before, it in zip(t.iterations, t.iterations[1:], strict=False):
        assert it.update[0] == pytest.approx(-0.1 * before.grad[0], abs=1e-12)


def test_article_printed_values():
    """The article prints two decimals and continues from the printed (rounded or truncated)
    value, so: the first iterates agree exactly after rounding; each printed value is one
    of our steps from the previous printed value, to within 0.01 (two-decimal truncation);
    the exact path stays within 0.05 of the printed one (e ≤ 0.8·e + 0.01 ⇒ e ≤ 0.05)."""
    t = minimize(ARTICLE_FUNCTION, 8, lr=0.1)
    assert [round(it.x[0], 2) for it in t.iterations[:4]] == ARTICLE_PRINTED[:4]
    for old, new in zip(ARTICLE_PRINTED, ARTICLE_PRINTED[1:], strict=False):
        one_step = minimize(ARTICLE_FUNCTION, old, lr=0.1, max_iter=1).iterations[1].x[0]
        assert abs(one_step - new) <= 0.01 + 1e-12
    for it, printed in zip(t.iterations[:20], ARTICLE_PRINTED[:20], strict=True):
        assert abs(it.x[0] - printed) < 0.05


# ------------------------------------------------------------------------------ verdicts


def test_x_squared_lr_1_1_diverges_at_the_predicted_iteration():
    t = minimize("x^2", 8, lr=1.1)
    first_beyond = next(k for k in range(1000) if 8 * 1.2**k > 1e6)   # x_k = 8·(−1.2)^k
    assert t.verdict == "diverged"
    assert t.n_steps == first_beyond
    assert f"iteration {first_beyond}" in t.verdict_reason and "1e+06" in t.verdict_reason
    assert abs(t.x_final[0]) > 1e6
    assert all(abs(it.x[0]) <= 1e6 for it in t.iterations[:-1])


def test_a_far_start_that_comes_closer_is_not_divergence():
    """The bound is at least 1000·|x0|: from 5e6, x_k = 5e6·0.8^k converges (it was called
    "diverged at iteration 1" against the fixed bound 1e6), and x_k = 5e6·(−1.2)^k diverges
    where it first passes 5e9."""
    t = minimize("x^2", 5e6, lr=0.1)
    assert t.verdict == "converged", t.verdict_reason
    for it in t.iterations:
        assert it.x[0] == pytest.approx(5e6 * 0.8**it.step, rel=1e-12)
    far = minimize("x^2", 5e6, lr=1.1)
    first_beyond = next(k for k in range(1000) if 5e6 * 1.2**k > 5e9)
    assert far.verdict == "diverged" and far.n_steps == first_beyond
    assert f"iteration {first_beyond}" in far.verdict_reason and "5e+09" in far.verdict_reason


def test_x_squared_lr_1_oscillates_and_is_caught_early():
    t = minimize("x^2", 8, lr=1.0, max_iter=100_000)
    assert t.verdict == "oscillating"
    assert t.n_steps <= 10
    assert [it.x[0] for it in t.iterations] == [8.0 * (-1) ** k for k in range(t.n_steps + 1)]
    assert "alternate" in t.verdict_reason


def test_two_variable_bounce_oscillates():
    t = minimize("x^2 + y^2", [1, 2], lr=1.0)
    assert t.verdict == "oscillating" and t.n_steps <= 10


def test_x_squared_tiny_lr_hits_max_iter():
    t = minimize("x^2", 8, lr=1e-4, max_iter=1000)
    assert t.verdict == "max_iter" and t.n_steps == 1000
    assert t.x_final[0] == pytest.approx(8 * (1 - 2e-4) ** 1000, rel=1e-12)


def test_shrinking_alternation_converges():
    t = minimize("x^2", 8, lr=0.9)             # x_k = 8·(−0.8)^k
    assert t.verdict == "converged"
    assert t.x_final[0] == pytest.approx(8 * (-0.8) ** t.n_steps, abs=1e-15)


@pytest.mark.parametrize("text", ["sigmoid(x)", "1 - sigmoid(x)", "1/(1 + exp(-x))"])
def test_sigmoid_tail_stalls(text):
    t = minimize(text, -30, lr=0.1)
    assert t.verdict == "stalled"
    assert "flat tail" in t.verdict_reason
    assert abs(t.iterations[0].grad[0]) == pytest.approx(sigma(-30) * (1 - sigma(-30)), rel=1e-9)
    assert abs(t.iterations[0].grad[0]) < 1e-12


@pytest.mark.parametrize("x0", [-10.0, -12.0])
def test_sigmoid_near_tail_stalls_and_names_the_vanishing_gradient(x0):
    """σ′(−10) = 4.5e-5 > tol: descent moves, but by η·σ′ ≈ 4.5e-6 a step — stalled."""
    t = minimize("sigmoid(x)", x0, lr=0.1)
    assert t.verdict == "stalled" and "nearly vanished" in t.verdict_reason
    assert t.iterations[1].x[0] == pytest.approx(x0 - 0.1 * sigma(x0) * (1 - sigma(x0)),
                                                 rel=1e-15)


def test_sigmoid_tail_stalls_with_numeric_gradient():
    t = minimize(lambda x: 1 - sigma(x), -30, lr=0.1)
    assert t.verdict == "stalled"


def test_inflection_point_stalls_not_converges():
    """x³ has no minimum: descent creeps towards 0 and f still decreases beyond it."""
    t = minimize("x^3", 1, lr=0.1, max_iter=100_000)
    assert t.verdict == "stalled"
    assert 0 < t.x_final[0] < 0.01


def test_plateau_stalls():
    t = minimize("relu(x)", -5, lr=0.1)
    assert t.verdict == "stalled" and "flat" in t.verdict_reason and t.n_steps == 0


def test_too_small_lr_stalls_instead_of_claiming_convergence():
    t = minimize("x^2", 8, lr=1e-8)
    assert t.verdict == "stalled" and "learning rate is too small" in t.verdict_reason


@pytest.mark.parametrize(("text", "x0", "minimum"), [
    ("(x - 3)^2 + 1", -4.0, 3.0),
    ("x^2 - 4*x + 6", -10.0, 2.0),
    ("cosh(x - 1)", 2.5, 1.0),
    ("x^4 + x^2", 1.5, 0.0),
])
def test_converges_to_known_minimum(text, x0, minimum):
    t = minimize(text, x0, lr=0.05, tol=1e-9, max_iter=10_000)
    assert t.verdict == "converged"
    assert t.x_final[0] == pytest.approx(minimum, abs=1e-6)


def test_already_at_the_minimum_converges_with_no_step():
    t = minimize("(x - 1)^2", 1.0)
    assert t.verdict == "converged" and t.n_steps == 0


# ------------------------------------------------------------------ torch.optim as oracle

torch = pytest.importorskip("torch")

FUNCTIONS = [  # (expression, torch function of a 1-D tensor, x0)
    ("x^4/4 - x^2 + sin(3*x)/3", lambda v: v[0] ** 4 / 4 - v[0] ** 2 + torch.sin(3 * v[0]) / 3,
     [2.5]),
    ("x^2 + 3*y^2 + sin(x*y)", lambda v: v[0] ** 2 + 3 * v[1] ** 2 + torch.sin(v[0] * v[1]),
     [1.5, -1.0]),
    ("(1 - x)^2 + 100*(y - x^2)^2", lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2,
     [-1.5, 2.0]),
]
OPTIMIZERS = [  # (ours, torch class, torch kwargs)
    (optim.SGD(lr=2e-3), "SGD", {"lr": 2e-3}),
    (optim.get("momentum", lr=1e-3), "SGD", {"lr": 1e-3, "momentum": 0.9}),
    (optim.get("nesterov", lr=1e-3), "SGD", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    (optim.SGD(lr=1e-3, momentum=0.5, dampening=0.2, weight_decay=0.01), "SGD",
     {"lr": 1e-3, "momentum": 0.5, "dampening": 0.2, "weight_decay": 0.01}),
    (optim.AdaGrad(lr=0.05, lr_decay=0.01), "Adagrad", {"lr": 0.05, "lr_decay": 0.01}),
    (optim.RMSProp(lr=1e-3), "RMSprop", {"lr": 1e-3}),
    (optim.RMSProp(lr=1e-3, momentum=0.5, centered=True), "RMSprop",
     {"lr": 1e-3, "momentum": 0.5, "centered": True}),
    (optim.Adam(lr=0.01), "Adam", {"lr": 0.01}),
    (optim.Adam(lr=0.01, amsgrad=True, weight_decay=0.01), "Adam",
     {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
]


def torch_path(fn, x0, name, kwargs, steps):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([x], foreach=False, **kwargs)
    path = [x.detach().numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        fn(x).backward()
        opt.step()
        path.append(x.detach().numpy().copy())
    return np.array(path)


@pytest.mark.parametrize(("ours", "torch_name", "kwargs"), OPTIMIZERS,
                         ids=[f"{o[1]}-{'-'.join(o[2])}" for o in OPTIMIZERS])
@pytest.mark.parametrize(("text", "fn", "x0"), FUNCTIONS, ids=["1d", "2d", "rosenbrock"])
def test_minimize_matches_a_torch_optim_loop(ours, torch_name, kwargs, text, fn, x0):
    t = minimize(text, x0, optimizer=ours, tol=1e-300, max_iter=250)
    assert t.n_steps >= 200, t.verdict_reason
    theirs = torch_path(fn, x0, torch_name, kwargs, t.n_steps)
    ours_path = t.xs()
    scale = np.max(np.abs(theirs), axis=0)
    assert np.max(np.abs(ours_path - theirs) / scale) < 1e-10
    assert np.linalg.norm(ours_path[-1] - ours_path[0]) > 1e-3       # it did move


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_optimizer_names_match_torch(name):
    t = minimize("x^2 + 3*y^2 + sin(x*y)", [1.5, -1.0], optimizer=name, lr=0.01, tol=1e-300,
                 max_iter=200)
    torch_cls, kwargs = {
        "sgd": ("SGD", {}), "momentum": ("SGD", {"momentum": 0.9}),
        "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}), "adagrad": ("Adagrad", {}),
        "rmsprop": ("RMSprop", {}), "adam": ("Adam", {}),
    }[name]
    theirs = torch_path(FUNCTIONS[1][1], [1.5, -1.0], torch_cls, {"lr": 0.01, **kwargs}, 200)
    assert t.optimizer == name
    np.testing.assert_allclose(t.xs(), theirs, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------- 2-D minima


@pytest.mark.parametrize(("optimizer", "lr"), [("momentum", 1e-3), ("adam", 0.02)])
def test_rosenbrock_reaches_1_1(optimizer, lr):
    t = minimize("(1 - x)^2 + 100*(y - x^2)^2", [-1.5, 2], optimizer=optimizer, lr=lr,
                 tol=1e-10, max_iter=20_000)
    assert t.verdict == "converged", t.verdict_reason
    assert t.variables == ("x", "y")
    np.testing.assert_allclose(t.x_final, [1.0, 1.0], atol=1e-6)
    assert t.f_final < 1e-12


@pytest.mark.parametrize(("optimizer", "lr"), [("momentum", 0.02), ("adam", 0.05)])
def test_quadratic_bowl_reaches_its_minimum(optimizer, lr):
    t = minimize("(x - 1)^2 + 5*(y + 2)^2", [3, 1], optimizer=optimizer, lr=lr, tol=1e-10,
                 max_iter=20_000)
    assert t.verdict == "converged", t.verdict_reason
    np.testing.assert_allclose(t.x_final, [1.0, -2.0], atol=1e-7)


# ----------------------------------------------------------------------- Python callables


def test_callable_central_differences_match_the_exact_gradient():
    exact = minimize("sin(x) + x^2/4", 3.0, lr=0.1, max_iter=30, tol=1e-300)
    numeric = minimize(lambda x: math.sin(x) + x * x / 4, 3.0, lr=0.1, max_iter=30, tol=1e-300)
    for a, b in zip(exact.iterations, numeric.iterations, strict=True):
        assert b.grad[0] == pytest.approx(a.grad[0], rel=1e-8, abs=1e-10)
        assert b.x[0] == pytest.approx(a.x[0], abs=1e-9)


def test_callable_two_variables_and_given_gradient():
    def f(x, y):
        return (x - 1) ** 2 + 5 * (y + 2) ** 2

    def grad(x, y):
        return [2 * (x - 1), 10 * (y + 2)]

    exact = minimize("(x - 1)^2 + 5*(y + 2)^2", [3, 1], lr=0.05, max_iter=40, tol=1e-300)
    given = minimize(f, [3, 1], grad=grad, lr=0.05, max_iter=40, tol=1e-300)
    np.testing.assert_allclose(given.xs(), exact.xs(), rtol=0, atol=1e-14)
    assert given.variables == ("x", "y") and given.expression == "f"
    # the given gradient is really used: a deliberately halved one halves the first step
    half = minimize(f, [3, 1], grad=lambda x, y: [x - 1, 5 * (y + 2)], lr=0.05, max_iter=1)
    np.testing.assert_allclose(half.iterations[1].update, np.array(exact.iterations[1].update) / 2)


def test_variables_sorted_and_overridable():
    t = minimize("y^2 + (x - 1)^2", [0.0, 3.0], lr=0.1, max_iter=1)
    assert t.variables == ("x", "y")
    assert t.iterations[0].grad == pytest.approx((-2.0, 6.0))
    t2 = minimize("y^2 + (x - 1)^2", [3.0, 0.0], variables=["y", "x"], lr=0.1, max_iter=1)
    assert t2.variables == ("y", "x") and t2.iterations[0].grad == pytest.approx((6.0, -2.0))


def test_given_optimizer_object_is_not_changed():
    opt = optim.SGD(lr=0.05, momentum=0.9)
    opt.step([np.array([1.0])], [np.array([1.0])])
    state = repr(opt._states)
    t = minimize("x^2", 4, optimizer=opt, max_iter=5)
    assert repr(opt._states) == state
    assert t.lr == 0.05 and t.optimizer == "momentum"
    assert t.hyperparameters["momentum"] == 0.9


def test_momentum_option():
    t = minimize("x^2", 4, optimizer="sgd", lr=0.05, momentum=0.5, max_iter=3, tol=1e-300)
    # b1 = g0, x1 = x0 − η b1;  b2 = 0.5 b1 + g1, x2 = x1 − η b2
    x0 = 4.0
    x1 = x0 - 0.05 * 2 * x0
    x2 = x1 - 0.05 * (0.5 * 2 * x0 + 2 * x1)
    assert [it.x[0] for it in t.iterations[:3]] == pytest.approx([x0, x1, x2], abs=1e-15)


# ------------------------------------------------------------------- output and compare


def test_to_dict_json_shape():
    t = minimize(ARTICLE_FUNCTION, 8, lr=0.1)
    d = json.loads(dumps(t.to_dict()))
    # the documented keys, plus three documented extras (nothing else)
    assert set(d) == {"expression", "variables", "optimizer", "lr", "iterations", "verdict",
                      "x_final", "f_final", "verdict_reason", "hyperparameters", "tol"}
    assert d["expression"] == ARTICLE_FUNCTION and d["variables"] == ["x"]
    assert d["optimizer"] == "sgd"
    assert d["lr"] == 0.1 and d["verdict"] == "converged"
    assert [it["step"] for it in d["iterations"]] == list(range(t.n_steps + 1))
    assert set(d["iterations"][0]) == {"step", "x", "f", "grad"}
    assert d["iterations"][1]["x"] == [pytest.approx(6.8)]
    assert d["iterations"][0]["grad"] == [12.0] and d["x_final"] == list(t.x_final)


def test_diverged_run_is_valid_json_with_non_finite_values():
    t = minimize(lambda x: math.exp(x * x), 3.0, lr=1.0)
    assert t.verdict == "diverged"
    assert "iteration 1" in t.verdict_reason
    text = dumps(t.to_dict())
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["verdict"] == "diverged"


def test_summary_and_html():
    t = minimize("x^2", 8, lr=1.0)
    assert t.verdict_reason in t.summary()
    page = t._repr_html_()
    assert "<table" in page and "oscillating" in page and page.count("<tr>") == 10


def test_compare_learning_rates():
    c = compare("x^2", 8, lrs=[0.01, 0.1, 0.9, 1.1], max_iter=2000)
    assert isinstance(c, Comparison)
    rows = c.table()
    assert [r["verdict"] for r in rows] == ["converged", "converged", "converged", "diverged"]
    assert [r["lr"] for r in rows] == [0.01, 0.1, 0.9, 1.1]
    for row, run in zip(rows, c.runs, strict=True):
        factor = 1 - 2 * row["lr"]                              # x_k = 8·(1 − 2η)^k
        assert row["x_final"][0] == pytest.approx(8 * factor ** row["iterations"], rel=1e-9)
        assert row["verdict"] == run.verdict and row["iterations"] == run.n_steps
    assert rows[0]["iterations"] > rows[1]["iterations"]        # smaller rate: slower
    assert len(json.loads(dumps(c.to_dict()))["runs"]) == 4
    assert "diverged" in c._repr_html_() and "diverged" in c.summary()


def test_compare_optimizers_and_rates():
    c = compare("x^2 + 3*y^2", [1, 1], lrs=[0.01, 0.1], optimizers=["sgd", "adam"],
                max_iter=50)
    assert [(r.optimizer, r.lr) for r in c.runs] == [
        ("sgd", 0.01), ("sgd", 0.1), ("adam", 0.01), ("adam", 0.1)]
    single = compare("x^2", 1, optimizers=[optim.Adam(lr=0.3)], max_iter=10)
    assert single.runs[0].lr == 0.3


def test_iterate_and_trajectory_types():
    t = minimize("x^2", 1, lr=0.25, max_iter=2)
    assert isinstance(t, Trajectory) and isinstance(t.iterations[0], Iterate)
    assert t.iterations[0].update == (0.0,)
    assert t.fs().tolist() == pytest.approx([1.0, 0.25, 0.0625])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"x0": float("nan")}, InvalidValueError, "x0"),
    ({"x0": float("inf")}, InvalidValueError, "x0"),
    ({"x0": [1.0, 2.0]}, InvalidValueError, "x0 has 2"),
    ({"lr": 0.0}, InvalidValueError, "lr"),
    ({"lr": -0.1}, InvalidValueError, "lr"),
    ({"lr": float("nan")}, InvalidValueError, "lr"),
    ({"f": "log(x)", "x0": -1.0}, InvalidValueError, "not finite at x0"),
    ({"f": "1/x", "x0": 0.0}, InvalidValueError, "x0"),
    ({"f": "sqrt(x)", "x0": 0.0}, InvalidValueError, "gradient"),
    ({"f": "x + y + z", "x0": [1, 2, 3]}, InvalidValueError, "3 variables"),
    ({"f": "2 + 3"}, InvalidValueError, "0 variables"),
    ({"f": "x +* 2"}, ExpressionError, "x +* 2"),
    ({"f": "__import__('os')"}, ExpressionError, ""),
    ({"optimizer": "adamw"}, UnknownNameError, "adamw"),
    ({"optimizer": "adam", "momentum": 0.9}, InvalidValueError, "momentum"),
    ({"max_iter": -1}, InvalidValueError, "max_iter"),
    ({"max_iter": 2.5}, InvalidValueError, "max_iter"),
    ({"tol": 0.0}, InvalidValueError, "tol"),
    ({"bound": -1.0}, InvalidValueError, "bound"),
    ({"grad": lambda x: 2 * x}, InvalidValueError, "grad"),
])
def test_bad_input(kwargs, error, fragment):
    arguments = {"f": "x^2", "x0": 1.0, **kwargs}
    with pytest.raises(error) as info:
        minimize(**arguments)
    assert isinstance(info.value, GradsightError)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_callable_undefined_at_x0():
    with pytest.raises(InvalidValueError, match="x0"):
        minimize(lambda x: math.log(x), -1.0)
    with pytest.raises(InvalidValueError, match="3 variables"):
        minimize(lambda x, y, z: x, [1, 2, 3])


@pytest.mark.parametrize(("text", "x0"), [("-x^2", 0.0), ("x^2 - y^2", [1.0, 0.0])])
def test_maximum_or_saddle_stalls(text, x0):
    """The gradient vanishes at a maximum or saddle too; the probe sees f″ < 0 and says so."""
    t = minimize(text, x0, max_iter=10_000)
    assert t.verdict == "stalled" and "saddle" in t.verdict_reason
    assert "curvature ≈ -2" in t.verdict_reason          # f″ = −2 along the falling axis


@pytest.mark.parametrize(("f", "x0", "fragment"), [
    (lambda x, y: x + y, 1.0, "does not take 1 argument"),
    (lambda x: x * x, [1.0, 2.0], "does not take 2 argument"),
    (lambda x: [x, x], 1.0, "one real number"),
    (lambda x: complex(x, 1.0), 1.0, "one real number"),
])
def test_callable_that_does_not_fit_x0(f, x0, fragment):
    """A Python function is called as f(*x0): a mismatch is a GradsightError, not TypeError."""
    with pytest.raises(InvalidValueError) as info:
        minimize(f, x0)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_callable_with_varargs_is_accepted():
    t = minimize(lambda *v: sum(c * c for c in v), [3.0, -4.0], lr=0.25, max_iter=1)
    assert t.iterations[1].x == pytest.approx((1.5, -2.0))    # x − 0.25·2x


def test_given_gradient_of_the_wrong_length():
    from gradsight.errors import ShapeError

    with pytest.raises(ShapeError, match="2 values for 1 variables"):
        minimize(lambda x: x * x, 1.0, grad=lambda x: [2 * x, 0.0])
