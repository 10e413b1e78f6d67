"""``gradsight descend``: seed-style table, JSON shapes, plots, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradsight.cli import app

EXPECTED_KEYS = {"expression", "variables", "optimizer", "lr", "iterations", "verdict",
                 "x_final", "f_final"}
EXTRA_KEYS = {"verdict_reason", "hyperparameters", "tol"}     # documented additions, no more


def run(*args: str):
    result = CliRunner().invoke(app, ["descend", *args])
    return result


def test_seed_table_in_the_seeds_style():
    result = run("x^2 - 4*x + 6", "--x0", "8", "--lr", "0.1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "x_new = x_old − η·dy/dx" in out
    assert "6.8 = 8 − 0.1·(12)" in out          # seed: x_new = 8 − 0.1(2·8 − 4) = 6.8
    assert "5.84 = 6.8 − 0.1·(9.6)" in out
    assert "5.072 = 5.84 − 0.1·(7.68)" in out
    assert "iterations not shown" in out          # 62 updates: the middle is elided
    assert "converged" in out and "final x = 2.00000" in out
    assert "x0: x = 8" in out


def test_json_shape_and_numbers():
    result = run("x^2 - 4*x + 6", "--x0", "8", "--lr", "0.1", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert set(doc) == EXPECTED_KEYS | EXTRA_KEYS
    assert doc["variables"] == ["x"] and doc["optimizer"] == "sgd" and doc["lr"] == 0.1
    assert doc["verdict"] == "converged"
    steps = doc["iterations"]
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert all(set(s) == {"step", "x", "f", "grad"} for s in steps)
    for s in steps:
        assert s["x"][0] == pytest.approx(2 + 6 * 0.8 ** s["step"], abs=1e-12)
        assert s["grad"][0] == pytest.approx(2 * s["x"][0] - 4, abs=1e-12)
    assert doc["x_final"] == steps[-1]["x"] and doc["f_final"] == steps[-1]["f"]


def test_two_variables_order_and_optimizer():
    result = run("(1 - x)^2 + 100*(y - x^2)^2", "--x0=-1.5,2", "--lr", "0.001",
                 "--optimizer", "momentum", "--max-iter", "20000", "--tol", "1e-10", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["variables"] == ["x", "y"] and doc["optimizer"] == "momentum"
    assert doc["iterations"][0]["x"] == [-1.5, 2.0]
    assert doc["iterations"][0]["grad"] == [pytest.approx(-155.0), pytest.approx(-50.0)]
    assert doc["verdict"] == "converged"
    assert doc["x_final"] == [pytest.approx(1.0, abs=1e-6), pytest.approx(1.0, abs=1e-6)]


def test_two_variables_without_equals_sign():
    result = run("y^2 + (x - 1)^2", "--x0", "-1.5,2", "--max-iter", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["variables"] == ["x", "y"] and doc["iterations"][0]["x"] == [-1.5, 2.0]
    assert doc["iterations"][1]["x"] == [pytest.approx(-1.0), pytest.approx(1.6)]


def test_two_variable_table_prints_the_variable_order():
    result = run("y^2 + x", "--x0=1,2", "--max-iter", "3")
    assert result.exit_code == 0
    assert "x0: x = 1, y = 2 (variables in alphabetical order)" in result.stdout
    assert "(0.9, 1.6) = (1, 2) − 0.1·(1, 4)" in result.stdout


def test_momentum_option_and_non_sgd_table():
    result = run("x^2", "--x0", "4", "--lr", "0.05", "--momentum", "0.5", "--max-iter", "2",
                 "--json")
    doc = json.loads(result.stdout)
    assert doc["optimizer"] == "momentum" and doc["hyperparameters"]["momentum"] == 0.5
    x1 = 4 - 0.05 * 8
    assert doc["iterations"][2]["x"][0] == pytest.approx(x1 - 0.05 * (0.5 * 8 + 2 * x1))
    table = run("x^2", "--x0", "4", "--optimizer", "adam", "--max-iter", "2").stdout
    assert "adam update" in table


def test_verdicts_reach_the_output():
    assert "diverged" in run("x^2", "--x0", "8", "--lr", "1.1").stdout
    assert "oscillating" in run("x^2", "--x0", "8", "--lr", "1").stdout
    assert "stalled" in run("sigmoid(x)", "--x0=-30").stdout


def test_compare_lr_json_and_table():
    result = run("x^2", "--x0", "8", "--compare-lr", "0.01,0.1,0.9,1.1", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert set(doc) == {"runs"} and len(doc["runs"]) == 4
    assert all(set(r) == EXPECTED_KEYS | EXTRA_KEYS for r in doc["runs"])
    assert all(set(s) == {"step", "x", "f", "grad"} for r in doc["runs"] for s in r["iterations"])
    for run_doc in doc["runs"][:3]:                  # x_k = 8·(1 − 2η)^k, step 0 is x0
        factor = 1 - 2 * run_doc["lr"]
        for s in run_doc["iterations"]:
            assert s["x"][0] == pytest.approx(8 * factor ** s["step"], rel=1e-9, abs=1e-300)
    assert [r["lr"] for r in doc["runs"]] == [0.01, 0.1, 0.9, 1.1]
    assert [r["verdict"] for r in doc["runs"]][-1] == "diverged"
    table = run("x^2", "--x0", "8", "--compare-lr", "0.01,0.1,0.9,1.1").stdout
    assert "learning rates compared" in table and "diverged at iteration 65" in table


def test_plot_and_animation_files(tmp_path):
    png, gif = tmp_path / "path.png", tmp_path / "path.gif"
    result = run("x^2 - 4*x + 6", "--x0", "8", "--plot", str(png), "--animate", str(gif),
                 "--max-iter", "6", "--json")
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 1000 and gif.stat().st_size > 1000
    json.loads(result.stdout)                   # the notes went to stderr, stdout is JSON
    compare_png = tmp_path / "compare.png"
    assert run("x^2", "--x0", "8", "--compare-lr", "0.1,1.1", "--plot",
               str(compare_png)).exit_code == 0
    assert compare_png.exists()


@pytest.mark.parametrize("args", [
    ["x^2", "--x0", "nan"],
    ["x^2", "--x0", "inf"],
    ["x^2", "--x0", "1,2"],
    ["x^2", "--x0", "abc"],
    ["x^2"],
    ["x^2", "--x0", "1", "--lr", "0"],
    ["x^2", "--x0", "1", "--lr", "-0.5"],
    ["x^2", "--x0", "1", "--lr", "nan"],
    ["x^2", "--x0", "1", "--lr", "fast"],
    ["log(x)", "--x0=-1"],
    ["x + y + z", "--x0", "1,2,3"],
    ["x +* 2", "--x0", "1"],
    ["__import__('os').system('true')", "--x0", "1"],
    ["x^2", "--x0", "1", "--optimizer", "lbfgs"],
    ["x^2", "--x0", "1", "--optimizer", "adam", "--momentum", "0.9"],
    ["x^2", "--x0", "1", "--max-iter", "-1"],
    ["x^2", "--x0", "1", "--max-iter", "ten"],
    ["x^2", "--x0", "1", "--tol", "0"],
    ["x^2", "--x0", "1", "--compare-lr", "0.1,,2"],
    ["x^2", "--x0", "1", "--compare-lr", "0.1,-1"],
    ["x^2", "--x0", "1", "--animate", "out.png"],
    ["x^2", "--x0", "1", "--lr", "fast", "--compare-lr", "0.1,1"],
    ["x^2", "--x0", "1", "--compare-lr", "0.1,1", "--animate", "out.gif"],
    ["x^2", "--x0", "1", "--plot", "out.gif"],
    ["x^2", "--x0", "1", "--lr", "inf"],
    ["x^2", "--x0", "1,nan"],
    ["x^2 + y^2", "--x0", "1"],
    ["w*x*y*z", "--x0", "1,2,3,4", "--json"],
    ["sqrt(x)", "--x0", "0"],
])
def test_bad_input_is_one_line_and_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.output and result.stdout == ""
    assert not list(tmp_path.iterdir())


def test_bad_plot_path_writes_nothing(tmp_path):
    target = tmp_path / "figure.gif"
    result = run("x^2", "--x0", "1", "--plot", str(target), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert not list(tmp_path.iterdir())


def test_compare_plot_is_the_log_gap_figure_readable_when_a_run_diverges(tmp_path,
                                                                         monkeypatch):
    import numpy as np

    from gradsight.present.plots import descent as figures

    drawn = []
    real_plot_loss = figures.plot_loss
    monkeypatch.setattr(figures, "plot_loss",
                        lambda *a, **k: drawn.append(real_plot_loss(*a, **k)) or drawn[-1])
    monkeypatch.setattr(figures, "plot_comparison",
                        lambda *a, **k: pytest.fail("plot_comparison alone was used"))
    png = tmp_path / "rates.png"
    result = run("x^2", "--x0", "8", "--compare-lr", "0.1,1.1", "--plot", str(png), "--json")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(drawn) == 1
    runs = json.loads(result.stdout)["runs"]
    assert [r["verdict"] for r in runs] == ["converged", "diverged"]
    (ax,) = drawn[0].axes
    assert ax.get_yscale() == "log"
    # oracle: f = x² from x0 = 8 gives x_k = 8(1 − 2η)^k, so f_k = 64(1 − 2η)^(2k); the gap
    # is f_k − (the lowest f of both runs), zeros left out
    lengths = [len(r["iterations"]) for r in runs]
    f = [64 * (1 - 2 * lr) ** (2 * np.arange(n)) for lr, n in zip((0.1, 1.1), lengths,
                                                                   strict=True)]
    f_min = min(float(np.min(v)) for v in f)
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, values in zip(lines, f, strict=True):
        gap = values - f_min
        shown = np.asarray(line.get_ydata(), dtype=float)
        keep = gap > 1e-9 * values  # where the gap is not lost to round-off next to f_min
        np.testing.assert_allclose(shown[keep], gap[keep], rtol=1e-6)
        assert np.array_equal(np.asarray(line.get_xdata()), np.arange(len(values)))
    low, high = ax.get_ylim()  # one axis shows both: the tiny converged gap, the huge one
    assert low <= np.nanmin(np.asarray(lines[0].get_ydata(), float)) < 1e-6
    assert high >= np.nanmax(np.asarray(lines[1].get_ydata(), float)) > 1e6


@pytest.mark.parametrize("outputs", [
    ["--plot", "blocker/path.png"],
    ["--animate", "blocker/path.gif"],
    ["--plot", "fine.png", "--animate", "blocker/path.gif"],
    ["--plot", "blocker/path.png", "--animate", "fine.gif"],
    ["--plot", "fine.xyz", "--animate", "fine.gif"],
])
def test_unwritable_output_is_one_line_and_leaves_no_file(outputs, tmp_path, monkeypatch):
    """A folder that is a file: exit 2, one line, and neither output written (the figure is
    not left alone when the GIF fails, nor the other way round)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = run("x^2", "--x0", "1", "--max-iter", "3", "--json", *outputs)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_installed_command_bad_input_exit_2_without_traceback(tmp_path):
    """The real console script (not CliRunner): log(x) at x0 = −1 is one line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "gradsight"
    if not script.exists():
        pytest.skip("console script not installed")
    plot = tmp_path / "p.png"
    done = subprocess.run([str(script), "descend", "log(x)", "--x0=-1", "--plot", str(plot)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "log(x)" in done.stderr and "Traceback" not in done.stderr
    assert not plot.exists()
