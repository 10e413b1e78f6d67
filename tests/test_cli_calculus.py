"""The ``activations``, ``derive`` and ``diffcheck`` commands through typer's test runner."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import sympy
from typer.testing import CliRunner

from gradsight import activations
from gradsight.calculus.expr import free_variables, parse_expression, sigmoid, symbol
from gradsight.cli import app

try:
    runner = CliRunner(mix_stderr=False)
except TypeError:  # click ≥ 8.2 always keeps stderr apart
    runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_activations_table_and_json(tmp_path):
    result = run("activations")
    assert result.exit_code == 0
    for name in activations.names():
        assert name in result.stdout
    result = run("activations", "--json")
    records = json.loads(result.stdout)
    assert [r["name"] for r in records] == activations.names()
    by_name = {r["name"]: r for r in records}
    assert by_name["sigmoid"]["max_derivative"] == {"value": 0.25, "at": 0.0}
    assert by_name["tanh"]["derivative_from_output"] == "1 - a**2"
    assert by_name["relu"]["output_range"] == [0.0, "inf"]
    assert by_name["silu"]["derivative_from_output"] is None
    for record in records:  # every formula is text the parser reads back
        parse_expression(record["formula"])
        parse_expression(record["derivative"])
    plot = tmp_path / "activations.png"
    assert run("activations", "--plot", str(plot)).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


DERIVE_KEYS = ["expression", "wrt", "derivative", "simplified", "derivative_from_output",
               "steps"]


def test_derive_sigmoid_json_shape():
    result = run("derive", "sigmoid", "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert list(record) == DERIVE_KEYS  # exactly the documented shape
    assert record["wrt"] == "z"
    assert record["derivative"] == "exp(-z)/(1 + exp(-z))**2"
    assert record["derivative_from_output"] == "a*(1 - a)"
    z = symbol("z")
    assert parse_expression(record["simplified"]) == sigmoid(z) * (1 - sigmoid(z))
    assert all(list(step) == ["rule", "result"] for step in record["steps"])
    routes = {step["rule"].split(" (")[0] for step in record["steps"]}
    # both routes of the article on the sigmoid's derivative
    assert routes == {"Approach 1", "Approach 2"}
    endings = [step for step in record["steps"] if step["rule"].endswith("substitute σ")]
    assert [step["result"] for step in endings] == ["sigmoid(z)*(1 - sigmoid(z))"] * 2


@pytest.mark.parametrize("text", ["sigmoid", "tanh", "leaky_relu:0.2", "elu", "gelu",
                                  "x**2*sin(x)", "sin(x)/(x + 1)", "abs(x)*x", "relu(x)"])
def test_every_formula_in_derive_json_reads_back(text):
    record = json.loads(run("derive", text, "--json").stdout)
    v = symbol(record["wrt"])
    truth = sympy.diff(parse_expression(record["expression"]), v)  # SymPy's own diff
    for key in ("derivative", "simplified"):
        for point in (-2.1, -0.37, 0.37, 1.3):  # away from kinks
            got = parse_expression(record[key]).evalf(20, subs={v: point})
            assert abs(float(got - truth.evalf(20, subs={v: point}))) < 1e-15
    texts = [record["expression"], record["derivative"], record["simplified"]]
    texts += [step["result"] for step in record["steps"]]
    if record["derivative_from_output"] is not None:
        texts.append(record["derivative_from_output"])
        assert free_variables(parse_expression(record["derivative_from_output"])) in ([], ["a"])
    for text_out in texts:  # plain text of gradsight's own language, no Unicode symbols
        assert text_out.isascii()
        parse_expression(text_out)


def test_derive_expression_with_steps():
    result = run("derive", "x**2 - 4*x + 6", "--steps")
    assert result.exit_code == 0
    assert "2*x - 4" in result.stdout and "power rule" in result.stdout
    record = json.loads(run("derive", "w*x + b", "--wrt", "w", "--json").stdout)
    assert record["derivative"] == "x" and record["derivative_from_output"] is None
    x = symbol("x")
    assert parse_expression(record["derivative"]) == sympy.diff(
        parse_expression("w*x + b"), symbol("w")) == x


def test_diffcheck_json_shape_and_the_articles_row(tmp_path):
    plot = tmp_path / "study.svg"
    result = run("diffcheck", "sigmoid(x)", "--at", "0", "--json", "--plot", str(plot))
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert list(record) == ["at", "exact", "rows", "recommended"]  # the documented shape
    assert record["at"] == 0.0 and record["exact"] == 0.25
    forward_steps = [r["h"] for r in record["rows"] if r["method"] == "forward"]
    assert forward_steps == [float(f"1e-{k}") for k in range(1, 16)]  # 1e-1 … 1e-15
    central = record["recommended"]["central"]
    assert math.isclose(central, (2.0 ** -52) ** (1 / 3))  # ε^(1/3)
    sigma = 1 / (1 + math.exp(-central))  # central difference at the recommended h, by hand
    assert abs((sigma - (1 - sigma)) / (2 * central) - 0.25) < 1e-9
    assert set(record["recommended"]) == {"forward", "backward", "central", "complex"}
    article_row = [r for r in record["rows"] if r["method"] == "forward" and r["h"] == 1e-13]
    assert article_row and article_row[0]["abs_error"] > 1e-5
    assert set(record["rows"][0]) == {"method", "h", "estimate", "abs_error", "rel_error"}
    assert plot.read_text().lstrip().startswith("<?xml")
    table = run("diffcheck", "relu", "--at", "-1.5")
    assert table.exit_code == 0 and "not applicable" in table.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["derive", "swish"], "unknown activation 'swish'"),
        (["derive", "__import__('os').system('touch SENTINEL')"], "not allowed"),
        (["derive", "9**9**9**9"], "exponent"),
        (["derive", "x**2", "--wrt", "y"], "'y' is not in"),
        (["diffcheck", "x**2", "--at", "nan"], "--at must be a finite number"),
        (["diffcheck", "x**2", "--at", "inf"], "--at must be a finite number"),
        (["diffcheck", "x*y", "--at", "1"], "one variable"),
        (["diffcheck", "sigmoid", "--at", "0", "--plot", "out.txt"], ".png"),
        (["diffcheck", "swish", "--at", "0"], "unknown activation"),
        (["diffcheck", "x**2", "--at", "abc"], "--at must be a finite number, got 'abc'"),
        (["diffcheck", "x**2", "--at", "1e999"], "--at must be a finite number"),
        (["diffcheck", "log(x)", "--at", "0"], "undefined"),
        (["diffcheck", "1/x", "--at", "0"], "undefined"),
        (["diffcheck", "sqrt(x)", "--at", "-1"], "not a real number"),
        (["diffcheck", "log(" * 28 + "x" + ")" * 28, "--at", "0.5"], "not a real number"),
        (["derive", "lambda: 1"], "':' is not allowed"),
        (["derive", "x" * 600], "too long"),
        (["derive", "(-8)**(1/3)*x"], "not real"),
        (["derive", "leaky_relu:2"], "slope must be in [0, 1)"),
        (["derive", "x+"], "malformed"),
        (["activations", "--plot", "out.txt"], ".png"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # no sentinel, no half-written file


def test_importing_the_cli_does_not_import_heavy_libraries():
    code = ("import sys, gradsight.cli; "
            "print(sorted(m for m in ('numpy', 'sympy', 'matplotlib', 'torch') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, expected", [
    (["diffcheck", "x**2"], "Missing option '--at'"),
    (["train", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["train", "--epochs", "many"], "Invalid value for '--epochs'"),
])
def test_console_script_usage_errors_are_one_line_exit_2(argv, expected):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("gradsight", path=str(Path(sys.executable).parent))
    assert script is not None, "the gradsight console script is installed beside python"
    done = subprocess.run([script, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert done.stdout == ""
