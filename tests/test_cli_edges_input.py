"""What a learner types first: a start point by name, an expression that starts with '-',
numbers that overflow, an output folder that does not exist — through the console entry
point (typer's CliRunner on ``gradsight.cli.app``, and the installed ``gradsight`` script)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradsight.cli import app

runner = CliRunner()


def run(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def one_error_line(result, *needles: str) -> str:
    """The single ``error: …`` line of a failed command (exit 2, nothing on stdout)."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def script() -> str:
    found = shutil.which("gradsight", path=str(Path(sys.executable).parent))
    assert found is not None, "the gradsight console script is installed beside python"
    return found


# ---- --x0 by name -----------------------------------------------------------------------------
def test_x0_by_name_sets_each_variable():
    # f = w² + b²: ∇f = (2b, 2w) in the order (b, w); one step of η = 0.1 from b = 2, w = 1
    # gives b = 2 − 0.1·4 = 1.6, w = 1 − 0.1·2 = 0.8 (by hand)
    result = run("descend", "w^2+b^2", "--x0", "w=1,b=2", "--max-iter", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["variables"] == ["b", "w"]
    assert doc["iterations"][0]["x"] == [2.0, 1.0]
    assert doc["iterations"][1]["x"] == [pytest.approx(1.6), pytest.approx(0.8)]


def test_x0_positional_prints_the_order_used():
    result = run("descend", "w^2+b^2", "--x0", "1,2", "--max-iter", "1")
    assert result.exit_code == 0, result.output
    assert "x0: b = 1, w = 2 (variables in alphabetical order)" in result.stdout
    named = run("descend", "w^2+b^2", "--x0", "w=1,b=2", "--max-iter", "1")
    assert "x0: b = 2, w = 1" in named.stdout and "alphabetical" not in named.stdout


@pytest.mark.parametrize("x0, needles", [
    ("w=1,q=2", ("q", "not a variable", "b, w")),
    ("w=1", ("no value for b",)),
    ("w=1,w=2,b=0", ("w twice",)),
    ("1,b=2", ("mixes numbers and names",)),
    ("w=1,b=nan", ("--x0 b", "finite")),
    ("w=,b=1", ("name=number",)),
])
def test_x0_by_name_errors_are_one_line(x0, needles):
    one_error_line(run("descend", "w^2+b^2", "--x0", x0), *needles)


def test_compare_lr_takes_x0_by_name_too():
    result = run("descend", "w^2+b^2", "--x0", "w=1,b=2", "--compare-lr", "0.1,0.2",
                 "--max-iter", "1", "--json")
    assert result.exit_code == 0, result.output
    assert [r["iterations"][0]["x"] for r in json.loads(result.stdout)["runs"]] == [[2, 1]] * 2


# ---- an expression that starts with '-' -------------------------------------------------------
def test_expression_with_leading_minus_after_double_dash():
    # f = −x² + x⁴: f′ = −2x + 4x³ = 0 at x = 1/√2 (by hand), f = −1/4
    for args in (["--", "-x^2 + x^4", "--x0", "1"], ["--x0", "1", "--", "-x^2 + x^4"]):
        result = run("descend", *args, "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["expression"] == "-x^2 + x^4"
        assert doc["x_final"][0] == pytest.approx(1 / math.sqrt(2), abs=1e-5)
        assert doc["f_final"] == pytest.approx(-0.25, abs=1e-10)


def test_derive_and_diffcheck_take_a_leading_minus_after_double_dash():
    result = run("derive", "--", "-x^2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["derivative"] == "-2*x"
    result = run("diffcheck", "--", "-x^3", "--at", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["exact"] == pytest.approx(-12.0)  # −3x² at 2


def test_bare_leading_minus_says_how_to_write_it():
    result = run("descend", "-x^2 + x^4", "--x0", "1")
    assert result.exit_code == 2
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "must come after '--'" in text and "descend -- '-x^2 + x^4' --x0 1" in text


def test_installed_script_leading_minus():
    bare = subprocess.run([script(), "descend", "-x^2 + x^4", "--x0", "1"],
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and bare.stdout == ""
    lines = bare.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: an expression starting with '-' "
                                                   "must come after '--': gradsight descend "
                                                   "-- '-x^2 + x^4' --x0 1")
    done = subprocess.run([script(), "descend", "--", "-x^2 + x^4", "--x0", "1", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["x_final"][0] == pytest.approx(1 / math.sqrt(2), abs=1e-5)
    typo = subprocess.run([script(), "descend", "x^2", "--x0", "1", "--plto", "a.png"],
                          capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and "No such option: --plto" in typo.stderr


# ---- numbers that overflow --------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (["--x", "1e308,1e308", "--w", "1e308,1", "--b", "0", "--y", "1"],
     ("w1·x1 = 1e+308·1e+308", "overflows")),
    (["--x", "1e308,1e308", "--w", "1,1", "--b", "0"], ("z = w·x + b", "overflows")),
    (["--x", "1", "--w", "1", "--y", "1e200"], ("C = ½(ŷ − y)²", "1e+200")),
    (["--x", "1e300", "--w", "1e-300", "--y", "0", "--lr", "1e10"], ("the update w1",)),
    (["--network", "2-2-1", "--x", "1.7e308,-1.7e308"], ("not finite", "z")),
    (["--network", "2-2-1", "--y", "1e200"], ("cost = inf",)),
])
def test_explain_overflow_is_one_line(args, needles):
    one_error_line(run("explain", *args), *needles)


def test_explain_overflow_through_the_installed_script_shows_no_numpy_warning():
    done = subprocess.run([script(), "explain", "--x", "1e308,1e308", "--w", "1e308,1",
                           "--b", "0", "--y", "1"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "RuntimeWarning" not in done.stderr
    assert done.stderr.startswith("error: w1·x1 = 1e+308·1e+308 overflows")


# ---- output folders ---------------------------------------------------------------------------
OUTPUTS = [
    (["activations", "--plot", "{}/a.png"]),
    (["diffcheck", "x^2", "--at", "1", "--plot", "{}/a.png"]),
    (["descend", "x^2", "--x0", "1", "--max-iter", "3", "--plot", "{}/a.png"]),
    (["descend", "x^2", "--x0", "1", "--max-iter", "3", "--animate", "{}/a.gif"]),
    (["explain", "--train", "or", "--epochs", "5", "--plot", "{}/a.png"]),
    (["doctor", "--data", "xor", "--hidden", "3,3", "--epochs", "1", "--limit", "1",
      "--quiet", "--report", "{}/a.html"]),
    (["vanish", "--hidden", "4,4", "--seeds", "1", "--samples", "20", "--quiet",
      "--plot", "{}/figs"]),
    (["vanish", "--hidden", "4,4", "--seeds", "1", "--samples", "20", "--quiet",
      "--report", "{}/a.html"]),
]


@pytest.mark.parametrize("args", OUTPUTS, ids=lambda a: f"{a[0]}-{a[-2]}")
def test_missing_output_folder_is_an_error_unless_mkdir(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no" / "such"
    argv = [a.format(missing) for a in args]
    one_error_line(run(*argv), "does not exist", "--mkdir")
    assert list(tmp_path.iterdir()) == []  # nothing made, nothing half-written
    result = run(*argv, "--mkdir")
    assert result.exit_code == 0, result.output
    written = Path(argv[-1])
    assert written.exists() and (written.is_dir() or written.stat().st_size > 0)


def test_tour_out_may_be_new_but_its_parent_must_exist(tmp_path, monkeypatch):
    import gradsight.present.tour as tour

    calls = []

    def fake_run_tour(out, quick=False, progress=False):
        calls.append(out)
        raise AssertionError("the tour ran although its folder was refused")

    monkeypatch.setattr(tour, "run_tour", fake_run_tour)
    one_error_line(run("tour", "--quick", "--out", str(tmp_path / "no" / "tour")),
                   "does not exist", "--mkdir")
    assert calls == [] and list(tmp_path.iterdir()) == []
