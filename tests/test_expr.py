"""gradsight.calculus.expr: the whitelist parser, its limits, the text printer and make_function."""

from __future__ import annotations

import contextlib
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradsight.calculus.expr import (
    MAX_LENGTH,
    free_variables,
    make_function,
    parse_expression,
    sigmoid,
    symbol,
    to_text,
)
from gradsight.errors import ExpressionError, GradsightError

x, y = symbol("x"), symbol("y")


class _TookTooLong(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float = 1.0) -> Iterator[None]:
    """Abort the block (and fail) if it runs longer than ``seconds``: a refusal must come
    before any expensive work starts, so a hang is a bug, not a slow machine."""

    def _alarm(signum: int, frame: object) -> None:
        raise _TookTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HOSTILE = [
    "__import__('os').system('touch SENTINEL')",
    "__import__(\"os\").system(\"touch SENTINEL\")",
    "().__class__.__bases__",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in ()]",
    "(x for x in y)",
    "9**9**9**9",
    "9^9^9^9",
    "10**100000",
    "2**(10**5)",
    "(2**1000)**1000",
    "(x**1000)**1000",
    "x.real",
    "open('SENTINEL', 'w')",
    "open(SENTINEL)",
    "exec(x)",
    "eval(x)",
    "getattr(x, y)",
    '"a"',
    "b'a'",
    "f'{x}'",
    "x" * (MAX_LENGTH + 1),
    "(" * 200 + "x" + ")" * 200,
    "sin(" * 40 + "x" + ")" * 40,
    "x" + "**x" * 60,
    "1e999",
    "1" * 400,
    "1j",
    "x if y else 1",
    "x and y",
    "x < y",
    "x[0]",
    "{x: 1}",
    "x, y",
    "(y := 2)",
    "*x",
    "exp(x=1)",
    "exp(*x)",
    "max(x)",
    "exp(x, y)",
    "foo(x)",
    "_x + 1",
    "x__y",
    "True",
    "None",
    "...",
    "x // 2",
    "x % 2",
    "not x",
    "x; y",
    "x @ y",
    "x\x00",
    "1/0",
    "log(0)",
    "sqrt(-1)",
    "",
    "   ",
    "exp",
    "x−1",
    "σ(x)",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_refused_quickly_and_runs_nothing(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with _deadline(1.0), pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    message = str(caught.value)
    assert message and "\n" not in message
    assert not (tmp_path / "SENTINEL").exists()
    assert list(Path(tmp_path).iterdir()) == []


def test_the_payload_is_live_so_the_sentinel_check_can_fail(tmp_path):
    """Run by Python itself (in a child process), the first payload does create the file."""
    subprocess.run([sys.executable, "-c", HOSTILE[0]], cwd=tmp_path, check=True)
    assert (tmp_path / "SENTINEL").exists()


@pytest.mark.parametrize(
    "text, needle",
    [
        ("9**9**9**9", "exponent"),
        ("10**100000", "exponent"),
        ("10**301", "too large"),
        ("x" * 600, "too long"),
        ("(" * 40 + "x" + ")" * 40, "parentheses"),
        ("x" + "**x" * 40, "nests too deeply"),
        ("x.real", "attribute"),
        ("'a'", "string"),
        ("foo(x)", "unknown function 'foo'"),
        ("y + 1", "unknown variable 'y'"),
        ("1e999", "not finite"),
        ("max(x)", "takes 2 arguments"),
        ("x // 2", "'//'"),
        ("1/0", "undefined"),
        ("(-8)**(1/3)*x", "not real"),  # SymPy's principal cube root of −8 is complex
        ("sqrt(1 - pi)*x", "not real"),
        ("log(1 - pi) + x", "not real"),
        ("(10**300)**3", "1.000e+300**3"),  # a short message, not a 301-digit number
        ("10**-400", "beyond 10^±300"),
    ],
)
def test_messages_name_the_problem(text, needle):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text, variables=["x"] if needle.startswith("unknown variable") else None)
    assert needle in str(caught.value)
    assert len(str(caught.value)) < 300


def test_errors_are_gradsight_errors():
    assert issubclass(ExpressionError, GradsightError)
    with pytest.raises(ExpressionError):
        parse_expression(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x**2 - 4*x + 6", x**2 - 4 * x + 6),
        ("x^2 - 4*x + 6", x**2 - 4 * x + 6),
        ("-x^2", -(x**2)),
        ("2^3^2", sympy.Integer(512)),
        ("e**x", sympy.exp(x)),
        ("pi*x", sympy.pi * x),
        ("0.1*x", x / 10),
        ("1e-3", sympy.Rational(1, 1000)),
        ("sigmoid(x)", sigmoid(x)),
        ("relu(x)", sympy.Max(x, 0)),
        ("max(x, y) - min(x, y)", sympy.Max(x, y) - sympy.Min(x, y)),
        ("abs(x) + sqrt(x) + log(x)", sympy.Abs(x) + sympy.sqrt(x) + sympy.log(x)),
        ("sin(x)*cos(x)/tan(x) + tanh(x)", sympy.sin(x) * sympy.cos(x) / sympy.tan(x)
         + sympy.tanh(x)),
        ("heaviside(x)", sympy.Heaviside(x, 0)),
        ("10**300", sympy.Integer(10) ** 300),
        ("x" + "+x" * 240, 241 * x),
        ("-" * 200 + "x", x),
    ],
)
def test_parses_the_allowed_language(text, expected):
    assert sympy.simplify(parse_expression(text) - expected) == 0


def test_variables_are_real_symbols_and_restricted():
    expr = parse_expression("w*x + b")
    assert free_variables(expr) == ["b", "w", "x"]
    assert all(s.is_real for s in expr.free_symbols)
    assert sympy.diff(parse_expression("abs(x)"), x) == sympy.sign(x)
    assert parse_expression("x + 1", variables=["x"]) == x + 1


ROUND_TRIP = [
    "sigmoid(x)", "relu(x)", "max(x, y) + min(x, 2)", "abs(x)", "tanh(x)",
    "x*erf(x/sqrt(2))/2", "exp(-x)/(1 + exp(-x))**2", "x**0.5", "x**(-1.5)", "heaviside(x)",
    "sign(x)", "sinh(x) + cosh(x)", "e**x*pi", "log(x)/log(2)", "1/(1 + exp(-(w*x + b)))",
    "max(x, 0) + 0.01*min(x, 0)", "2**x", "x**x",
]


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Equal symbolically, or (SymPy cannot always tell heaviside from sign) at many points."""
    if sympy.simplify(a - b) == 0:
        return True
    names = sorted({*free_variables(a), *free_variables(b)})
    points = np.random.default_rng(0).uniform(0.1, 3.0, size=(len(names), 25))
    points *= np.where(np.arange(25) % 2, 1, -1)
    return bool(np.allclose(make_function(a, names)(*points), make_function(b, names)(*points),
                            rtol=1e-12, atol=0))


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_to_text_reads_back(text):
    expr = parse_expression(text)
    for candidate in [expr] + [sympy.diff(expr, s) for s in sorted(expr.free_symbols, key=str)]:
        if candidate.has(sympy.DiracDelta):  # d heaviside/dx: not a function, no text form
            continue
        back = parse_expression(to_text(candidate))
        assert _same(back, candidate), (candidate, to_text(candidate))


def test_to_text_of_sympy_kinks_and_reciprocals():
    assert to_text(sympy.Heaviside(x)) == "(1 + sign(x))/2"  # SymPy's H(0) = 1/2, exactly
    assert to_text(sympy.Max(x, y, 0)).count("max(") == 2  # only two arguments at a time
    assert sympy.simplify(parse_expression(to_text(1 / sympy.cos(x) ** 2))
                          - sympy.sec(x) ** 2) == 0
    assert to_text(sympy.E) == "e"
    for bad in (sympy.I * x, sympy.zoo, sympy.Derivative(sympy.Function("f")(x), x)):
        with pytest.raises(ExpressionError):
            to_text(bad)
    with pytest.raises(ExpressionError):
        to_text("x + 1")  # type: ignore[arg-type]  # text would need evaluating: refused


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "2", "0.5", "pi"]), min_size=1, max_size=5),
       st.lists(st.sampled_from(["+", "-", "*", "/"]), min_size=4, max_size=4),
       st.sampled_from(["exp", "sin", "tanh", "sigmoid", "relu", "abs", "cos"]))
def test_round_trip_random_expressions(atoms, operators, function):
    text = atoms[0]
    for atom, op in zip(atoms[1:], operators, strict=False):
        text = f"{text} {op} {function}({atom})"
    try:
        expr = parse_expression(text)
    except ExpressionError:  # e.g. x/(x - x): undefined, refused
        return
    assert sympy.simplify(parse_expression(to_text(expr)) - expr) == 0


def test_make_function_matches_numpy():
    z = np.linspace(-5, 5, 11)
    f = make_function("sigmoid(x) + relu(x) + tanh(x)")
    expected = 1 / (1 + np.exp(-z)) + np.maximum(z, 0) + np.tanh(z)
    np.testing.assert_allclose(f(z), expected, rtol=1e-14)
    g = make_function("w*x + b", ["w", "x", "b"])
    assert float(g(2.0, 3.0, 1.0)) == 7.0


def test_make_function_is_stable_and_handles_complex_and_constants():
    f = make_function("sigmoid(x)")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert f(np.array([-1e4, 1e4])).tolist() == [0.0, 1.0]
    h = 1e-20
    assert abs(f(complex(0.0, h)).imag / h - 0.25) < 1e-15
    constant = make_function("3", ["x"])
    assert constant(np.zeros(4)).tolist() == [3.0] * 4
    gelu = make_function("x*(1 + erf(x/sqrt(2)))/2")
    assert math.isclose(float(gelu(1.0)), 0.5 * (1 + math.erf(1 / math.sqrt(2))), rel_tol=1e-15)


def test_make_function_checks_variables():
    with pytest.raises(ExpressionError, match="y"):
        make_function(parse_expression("x*y"), ["x"])
    with pytest.raises(ExpressionError, match="2 values"):
        make_function("x")(1.0, 2.0)
