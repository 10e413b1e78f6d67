"""gradsight.calculus: symbolic derivatives with steps, numeric derivatives, the step study."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradsight import activations
from gradsight.calculus import (
    DEFAULT_STEPS,
    METHODS,
    activation_expression,
    activation_table,
    derivative_function,
    derive,
    gradient_function,
    numeric_derivative,
    recommended_step,
    step_study,
)
from gradsight.calculus.expr import make_function, parse_expression, sigmoid, symbol, to_text
from gradsight.errors import ExpressionError, InvalidValueError, UnknownNameError

x, z, a = symbol("x"), symbol("z"), symbol("a")


def _equal(left: sympy.Expr, right: sympy.Expr) -> bool:
    """Equal as functions: SymPy's simplify after writing σ with exponentials."""
    difference = (left - right).rewrite(sympy.exp)
    return sympy.simplify(difference) == 0


CORPUS = [
    "x**2 - 4*x + 6", "3*x**5 - x**-2 + 7", "sqrt(1 + x**2)", "x**2*sin(x)", "sin(x)/(x + 1)",
    "exp(-x)/(1 + exp(-x))**2", "1/(1 + exp(-x))", "exp(x)/(1 + exp(x))",
    "(exp(x) - exp(-x))/(exp(x) + exp(-x))", "log(1 + exp(x))", "x**x", "2**x", "e**(x**2)",
    "tanh(3*x + 1)", "sigmoid(2*x - 1)", "x*sigmoid(x)", "log(x)/x", "cos(x)**3*tan(x)",
    "x*exp(-x)*log(x + 2)", "x*(1 + erf(x/sqrt(2)))/2", "(x + 1)**(3/2)/(x**2 + 1)",
    "abs(x)*x", "pi*x/e", "sinh(x)*cosh(x)",
]


@pytest.mark.parametrize("text", CORPUS)
def test_derive_equals_sympy_diff(text):
    expr = parse_expression(text)
    result = derive(text)
    truth = sympy.diff(expr, x)
    assert result.wrt == "x"
    assert _equal(result.derivative, truth)
    assert _equal(result.simplified, truth)
    last = parse_expression(result.steps[-1].result)
    assert _equal(last, truth), result.steps[-1]
    for step in result.steps:  # every intermediate result is text the parser reads back
        parse_expression(step.result)


def test_steps_name_the_rules():
    rules = [s.rule for s in derive("x**2*sin(x)").steps]
    assert rules[:3] == ["power rule", "sin", "product rule"]
    assert "quotient rule" in [s.rule for s in derive("sin(x)/(x + 1)").steps]
    assert "chain rule" in [s.rule for s in derive("exp(-x**2)").steps]
    assert [s.rule for s in derive("x**x").steps] == ["logarithmic differentiation"]
    assert [s.rule for s in derive("x**2 - 4*x + 6").steps] == [
        "power rule", "constant multiple rule", "constant", "sum rule"]
    steps = derive("x").steps
    assert [(s.rule, s.result) for s in steps] == [("variable", "1")]


def _route(result, prefix):
    return [s for s in result.steps if s.route.startswith(prefix)]


@pytest.mark.parametrize("variable", ["z", "x"])
def test_sigmoid_both_approaches_end_in_sigma_one_minus_sigma(variable):
    result = derive("sigmoid", wrt=variable)
    v = symbol(variable)
    sigma = 1 / (1 + sympy.exp(-v))
    truth = sympy.diff(sigma, v)
    target = sigmoid(v) * (1 - sigmoid(v))
    for prefix in ("Approach 1", "Approach 2"):
        steps = _route(result, prefix)
        assert len(steps) >= 5
        assert parse_expression(steps[-1].result) == target  # ends in σ(1−σ), literally
        assert steps[-1].result == f"sigmoid({variable})*(1 - sigmoid({variable}))"
        derivative_started = False
        for step in steps:
            value = parse_expression(step.result)
            derivative_started |= step.rule in ("chain rule", "quotient rule")
            # before differentiating each result is σ itself, afterwards it is σ′
            assert _equal(value, truth if derivative_started else sigma), step
    assert "chain rule" in [s.rule for s in _route(result, "Approach 1")]
    assert "quotient rule" in [s.rule for s in _route(result, "Approach 2")]
    assert _equal(result.derivative, truth)
    assert result.simplified == target
    assert result.derivative_from_output == a * (1 - a)
    assert to_text(result.derivative) == f"exp(-{variable})/(1 + exp(-{variable}))**2"


def test_tanh_gives_one_minus_tanh_squared():
    result = derive("tanh")
    assert result.simplified == 1 - sympy.tanh(z) ** 2
    assert to_text(result.derivative) == "1 - tanh(z)**2"
    assert result.steps[-1].result == "1 - tanh(z)**2"
    for step in result.steps[1:]:
        assert _equal(parse_expression(step.result), 1 - sympy.tanh(z) ** 2), step
    assert result.derivative_from_output == 1 - a**2


def test_exponential_forms_are_recognised():
    assert derive("1/(1 + exp(-x))").simplified == sigmoid(x) * (1 - sigmoid(x))
    assert derive("exp(x)/(1 + exp(x))").simplified == sigmoid(x) * (1 - sigmoid(x))
    assert derive("(exp(x) - exp(-x))/(exp(x) + exp(-x))").simplified == 1 - sympy.tanh(x)**2
    assert derive("log(1 + exp(x))").simplified == sigmoid(x)
    assert derive("sigmoid(w*x + b)", wrt="w").derivative == (
        x * sigmoid(symbol("w") * x + symbol("b")) * (1 - sigmoid(symbol("w") * x + symbol("b"))))


@pytest.mark.parametrize("name", activations.names() + ["leaky_relu:0.2", "elu:0.5"])
def test_activation_derivations_match_the_engine(name):
    act = activations.get(name)
    result = derive(name)
    zs = np.array([-3.7, -1.2, -0.3, 0.4, 1.1, 2.9])  # away from the kink at 0
    expected = act.derivative(zs)
    for form in (result.derivative, result.simplified):
        np.testing.assert_allclose(make_function(form, ["z"])(zs), expected, rtol=1e-12)
    np.testing.assert_allclose(make_function(result.expression, ["z"])(zs), act(zs), rtol=1e-12)
    if act.has_output_derivative:
        outputs = act(zs)
        values = make_function(result.derivative_from_output, ["a"])(outputs)
        np.testing.assert_allclose(values, expected, rtol=1e-9)
    else:
        assert result.derivative_from_output is None
    record = result.to_dict()
    assert set(record) >= {"expression", "wrt", "derivative", "simplified",
                           "derivative_from_output", "steps"}
    assert all(set(step) >= {"rule", "result"} for step in record["steps"])


def test_relu_kink_follows_pytorch():
    relu_derivative = make_function(derive("relu").derivative, ["z"])
    assert relu_derivative(np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "leaky_relu:0.2", "elu", "elu:2",
                                  "elu:0.5"])
def test_symbolic_derivative_at_the_kink_follows_pytorch(name):
    """relu′(0) = 0, leaky_relu′(0) = s, elu′(0) = α in torch autograd (float64); the
    symbolic derivative, its form in the output a = f(0) = 0, the step study's exact value
    and the engine all agree with it."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    parameter = float(name.partition(":")[2] or {"leaky_relu": 0.01, "elu": 1.0}.get(
        name, 0.0))
    reference = {"relu": torch.relu, "leaky_relu": lambda t: F.leaky_relu(t, parameter),
                 "elu": lambda t: F.elu(t, parameter)}[name.partition(":")[0]]
    tz = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(reference(tz).sum(), tz)
    expected = grad.item()
    result = derive(name)
    for form in (result.derivative, result.simplified):
        assert float(make_function(form, ["z"])(0.0)) == expected
    assert float(make_function(result.derivative_from_output, ["a"])(0.0)) == expected
    assert step_study(name, 0.0).exact == expected
    assert float(activations.get(name).derivative(0.0)) == expected


def test_activation_table_covers_every_activation():
    table = activation_table()
    assert [row["name"] for row in table] == activations.names()
    sigmoid_row = table[0]
    assert sigmoid_row["max_derivative"] == {"value": 0.25, "at": 0.0}
    assert sigmoid_row["derivative_from_output"] == "a*(1 - a)"
    assert to_text(activation_expression("sigmoid")) == sigmoid_row["formula"]


@pytest.mark.parametrize(
    "text, wrt, error",
    [("x**2", "y", ExpressionError), ("x*y", None, ExpressionError),
     ("swish", None, UnknownNameError), ("5", None, ExpressionError),
     ("x**2", "x + 1", ExpressionError), ("leaky_relu:abc", None, InvalidValueError)],
)
def test_derive_refuses_bad_input(text, wrt, error):
    with pytest.raises(error):
        derive(text, wrt)


# ---- numeric derivatives ----------------------------------------------------------------
FUNCTIONS = [  # expression, its derivative written by hand
    ("x**3 - 2*x", lambda t: 3 * t**2 - 2),
    ("exp(sin(x))", lambda t: math.exp(math.sin(t)) * math.cos(t)),
    ("sigmoid(x)", lambda t: 1 / (1 + math.exp(-t)) * (1 - 1 / (1 + math.exp(-t)))),
    ("log(1 + x**2)", lambda t: 2 * t / (1 + t**2)),
]


@pytest.mark.parametrize("text, exact", FUNCTIONS)
@pytest.mark.parametrize("method, tolerance", [("forward", 1e-6), ("backward", 1e-6),
                                               ("central", 1e-9), ("complex", 1e-13)])
def test_numeric_derivative_methods(text, exact, method, tolerance):
    for point in (-1.3, 0.2, 2.5):
        estimate = numeric_derivative(text, point, method=method)
        assert abs(estimate - exact(point)) <= tolerance * max(1.0, abs(exact(point)))


@settings(max_examples=50, deadline=None)
@given(st.floats(-5, 5), st.floats(-3, 3), st.floats(-3, 3))
def test_central_difference_on_random_quadratics(point, p, q):
    estimate = numeric_derivative(lambda t: p * t**2 + q * t, point)
    assert abs(estimate - (2 * p * point + q)) < 1e-7


def test_numeric_derivative_of_callables_and_errors():
    assert abs(numeric_derivative(np.sin, 1.0, method="complex") - math.cos(1.0)) < 1e-15
    with pytest.raises(InvalidValueError, match="analytic"):
        numeric_derivative("relu(x)", 1.0, method="complex")
    with pytest.raises(InvalidValueError, match="complex"):
        numeric_derivative(lambda t: float(t) ** 2, 1.0, method="complex")
    with pytest.raises(UnknownNameError, match="central"):
        numeric_derivative("x", 1.0, method="sideways")
    for bad in (math.nan, math.inf):
        with pytest.raises(InvalidValueError):
            numeric_derivative("x**2", bad)
    with pytest.raises(InvalidValueError):
        numeric_derivative("x**2", 1.0, h=0.0)
    with pytest.raises(ExpressionError, match="one variable"):
        numeric_derivative("x*y", 1.0)
    with pytest.raises(InvalidValueError, match="not finite|nan"):
        numeric_derivative("log(x)", 0.0, method="central")


def test_recommended_steps():
    eps = np.finfo(float).eps
    assert recommended_step("forward") == recommended_step("backward") == math.sqrt(eps)
    assert math.isclose(recommended_step("central"), eps ** (1 / 3))
    assert math.isclose(recommended_step("central", -40.0), 40 * eps ** (1 / 3))
    assert recommended_step("complex") <= 1e-15


def test_step_study_reproduces_the_articles_problem():
    # the question-and-answer thread's forward difference with h = 1e-13
    study = step_study("sigmoid(x)", 0.0)
    assert study.exact == 0.25 and study.exact_source == "symbolic"
    assert [r.h for r in study.method_rows("forward")] == list(DEFAULT_STEPS)
    assert len(study.rows) == len(METHODS) * 15
    article_row = next(r for r in study.method_rows("forward") if r.h == 1e-13)
    assert article_row.abs_error > 1e-5
    assert article_row.estimate == (1 / (1 + math.exp(-1e-13)) - 0.5) / 1e-13  # the article's code
    assert study.recommended_error["central"] < 1e-9
    assert study.recommended_error["forward"] < 1e-7
    complex_rows = study.method_rows("complex")
    assert max(r.abs_error for r in complex_rows if r.h <= 1e-8) < 1e-15
    assert study.recommended_error["complex"] < 1e-15
    assert study.best("central").abs_error < 1e-10


def test_step_study_rows_are_consistent():
    study = step_study("exp(x)", 1.0)
    assert math.isclose(study.exact, math.e, rel_tol=1e-15)
    for row in study.rows:
        assert row.abs_error == abs(row.estimate - study.exact)
        assert math.isclose(row.rel_error, row.abs_error / math.e)
    record = study.to_dict()
    assert set(record) >= {"at", "exact", "rows", "recommended"}
    assert set(record["recommended"]) == set(METHODS)
    assert set(record["rows"][0]) == {"method", "h", "estimate", "abs_error", "rel_error"}


def test_step_study_and_derivation_json_have_exactly_the_documented_keys():
    record = step_study("sigmoid(x)", 0.0).to_dict()
    assert list(record) == ["at", "exact", "rows", "recommended"]
    assert all(list(row) == ["method", "h", "estimate", "abs_error", "rel_error"]
               for row in record["rows"])
    assert DEFAULT_STEPS == tuple(float(f"1e-{k}") for k in range(1, 16))
    derivation = derive("tanh").to_dict()
    assert list(derivation) == ["expression", "wrt", "derivative", "simplified",
                                "derivative_from_output", "steps"]
    assert all(list(step) == ["rule", "result"] for step in derivation["steps"])
    assert derive("x**2").to_dict()["derivative_from_output"] is None


def test_exact_value_is_fast_for_repeated_subexpressions_and_refuses_bad_points():
    """SymPy's evalf took seconds on a tower of powers and never ended on a complex value;
    the 30-digit value now comes from compiled mpmath code (the oracle here is torch)."""
    torch = pytest.importorskip("torch")
    tower = "x**x**x**x**x**x**x**x**x**x**x**x**x**x**x"
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    value = t
    for _ in range(14):
        value = t ** value
    value.backward()
    study = step_study(tower, 0.5)
    assert math.isclose(study.exact, t.grad.item(), rel_tol=1e-12)
    with pytest.raises(InvalidValueError, match="not a real number"):
        step_study("log(" * 28 + "x" + ")" * 28, 0.5)
    with pytest.raises(InvalidValueError, match="not a real number"):
        step_study("sqrt(x)", -1.0)
    for text in ("log(x)", "1/x", "sqrt(x)"):
        with pytest.raises(InvalidValueError, match="undefined"):
            step_study(text, 0.0)


def test_step_study_without_complex_step_for_kinks():
    study = step_study("relu(x)", 1.5)
    assert study.recommended["complex"] is None
    assert not study.method_rows("complex")
    assert study.notes and "complex" in study.notes[0]
    assert all(r.abs_error < 1e-7 for r in study.rows if 1e-8 <= r.h <= 1e-3)  # no kink near


def test_step_study_of_a_callable_needs_exact():
    study = step_study(np.exp, 0.5, exact=math.exp(0.5), hs=[1e-2, 1e-6])
    assert len(study.rows) == 8
    real_only = step_study(lambda t: math.exp(t), 0.5, exact=math.exp(0.5))
    assert not real_only.method_rows("complex") and "complex input" in real_only.notes[0]
    with pytest.raises(InvalidValueError, match="exact"):
        step_study(np.exp, 0.5)
    with pytest.raises(InvalidValueError):
        step_study("x**2", 1.0, hs=[1e-3, -1.0])


def test_derivative_and_gradient_functions():
    d = derivative_function("x**2 - 4*x + 6")
    assert float(d(8.0)) == 12.0
    grad = gradient_function("x**2 + 3*x*y + sigmoid(y)", ["x", "y"])
    point = (0.7, -1.2)
    s = 1 / (1 + math.exp(1.2))
    np.testing.assert_allclose(grad(*point), [2 * 0.7 + 3 * -1.2, 3 * 0.7 + s * (1 - s)],
                               rtol=1e-14)
    assert grad(np.zeros(5), np.ones(5)).shape == (2, 5)
    assert gradient_function("x", ["x", "y"])(1.0, 2.0).tolist() == [1.0, 0.0]


def test_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    grad = gradient_function("log(1 + exp(w*1.7 + b)) + (w - 2)**2*tanh(b)", ["w", "b"])
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.8, dtype=torch.float64, requires_grad=True)
    value = torch.nn.functional.softplus(w * 1.7 + b) + (w - 2) ** 2 * torch.tanh(b)
    value.backward()
    np.testing.assert_allclose(grad(0.3, -0.8), [w.grad.item(), b.grad.item()], rtol=1e-12)


def test_plots_draw_the_tested_numbers():
    from matplotlib.figure import Figure

    from gradsight.present.plots.calculus import plot_activation, plot_activations, plot_step_study

    fig = plot_activation("sigmoid")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    z, slope = fig.axes[1].lines[0].get_data()
    np.testing.assert_allclose(slope, activations.get("sigmoid").derivative(z))
    peak = fig.axes[1].lines[1].get_data()
    assert (list(peak[0]), list(peak[1])) == ([0.0], [0.25])  # the maximum, marked
    assert len(plot_activation(["relu", "tanh"]).axes) == 4
    assert len([ax for ax in plot_activations().axes if ax.lines]) == len(activations.names())
    study = step_study("sigmoid(x)", 0.0)
    lines = plot_step_study(study).axes[0].lines
    forward = next(line for line in lines if line.get_label() == "forward")
    errors = [max(r.abs_error, 1e-17) for r in study.method_rows("forward")]
    assert list(forward.get_ydata()) == errors
    with pytest.raises(UnknownNameError):
        plot_activation("swish")
    with pytest.raises(InvalidValueError):
        plot_activation("sigmoid", z_range=(1.0, -1.0))


def test_plain_sympy_symbols_work_too():
    t, u = sympy.Symbol("t"), sympy.Symbol("u")  # no real=True
    assert derive(t**3 * u, wrt="t").derivative == 3 * t**2 * u
    assert gradient_function(t**2 * u, ["t", "u"])(1.0, 2.0).tolist() == [4.0, 1.0]
    assert math.isclose(step_study(sympy.sin(t), 1.0).exact, math.cos(1.0), rel_tol=1e-15)


def test_public_names_are_reachable_lazily():
    import gradsight

    assert gradsight.derive is derive
    assert gradsight.parse_expression is parse_expression
    assert gradsight.step_study is step_study and gradsight.numeric_derivative is not None
