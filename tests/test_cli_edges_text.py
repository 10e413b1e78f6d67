"""What a learner reads first: one name for the learning rate (η), text printed as typed
(brackets too), ``--version``, help that reads cleanly, one ``wrote PATH`` message, tables
that keep their numbers at 80 columns, and a note at a special point of ``diffcheck``."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradsight.calculus.numeric import step_study
from gradsight.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["activations", "derive", "diffcheck", "descend", "train", "explain", "doctor",
            "vanish", "tour"]


def run(*args: str, width: int = 80):
    return runner.invoke(app, list(args), env={"COLUMNS": str(width)})


# ---- η, one name for the learning rate --------------------------------------------------------
def test_descend_says_eta():
    table = run("descend", "x^2 - 4*x + 6", "--x0", "8", "--lr", "0.1", width=120)
    assert table.exit_code == 0, table.output
    assert "x_new = x_old − η·dy/dx" in table.stdout and "sgd, η = 0.1" in table.stdout
    rates = run("descend", "x^2", "--x0", "8", "--compare-lr", "0.1,1.1", width=120)
    assert rates.exit_code == 0, rates.output
    assert "η = 0.1 (sgd)" in rates.stdout and "η = 1.1 (sgd)" in rates.stdout
    for result in (table, rates):
        assert "ν" not in result.stdout


def test_lr_errors_and_help_name_eta():
    result = run("descend", "x^2", "--x0", "1", "--lr", "-0.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --lr (the learning rate η) must be > 0, "
                                     "got '-0.5'")
    for command in ("descend", "doctor", "vanish", "explain"):
        text = " ".join(run(command, "--help", width=200).stdout.split())
        assert "the learning rate η" in text.lower(), command
        assert "ν" not in text


def test_trajectory_summary_says_eta():
    from gradsight.calculus.descent import compare, minimize

    assert "(η = 0.1)" in minimize("x^2", 1.0, lr=0.1).summary()
    assert "η = 0.1" in compare("x^2", 1.0, lrs=[0.1]).summary()
    with pytest.raises(Exception, match="learning rate η"):
        minimize("x^2", 1.0, lr=0.0)


# ---- text printed as typed --------------------------------------------------------------------
def test_derive_steps_keep_their_brackets():
    # d/dx exp(−x) = −exp(−x), d/dx sin(x) = cos(x), by hand
    result = run("derive", "exp(-x)*sin(x)", "--steps", width=200)
    assert result.exit_code == 0, result.output
    assert "d/dx [exp(-x)] = -exp(-x)" in result.stdout
    assert "d/dx [sin(x)] = cos(x)" in result.stdout
    assert "d/dx  =" not in result.stdout


def test_vanish_prints_a_data_name_with_brackets(tmp_path):
    csv = tmp_path / "[red]toy.csv"
    rows = [f"{x},{1 - x},{int(x > 0.5)}" for x in [i / 39 for i in range(40)]]
    csv.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    result = run("vanish", "--data", str(csv), "--hidden", "3,3", "--seeds", "1",
                 "--samples", "30", "--quiet", width=200)
    assert result.exit_code == 0, result.output
    assert "[red]toy, 30 samples" in result.stdout


# ---- --version and --help ---------------------------------------------------------------------
def test_version_from_the_package_metadata():
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                         re.M).group(1)
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"gradsight {importlib.metadata.version('gradsight')}\n"
    assert result.stdout.split()[1] == declared


def test_help_has_no_bool_and_no_broken_sentences():
    for argv in (["--help"], *([c, "--help"] for c in COMMANDS)):
        text = run(*argv, width=300).stdout
        assert "<bool>" not in text, argv
    listing = run("--help", width=300).stdout
    for command in COMMANDS:  # on a wide terminal every command's summary is one line
        doc = app.registered_commands[COMMANDS.index(command)].callback.__doc__
        first = " ".join(doc.split("\n\n")[0].split())
        row = next(line for line in listing.splitlines() if f" {command} " in line)
        assert first in row, (command, row)


# ---- one message for a written file -----------------------------------------------------------
def written_on_stderr(result, path: Path) -> None:
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.stderr.splitlines()
    assert "saved" not in result.stdout + result.stderr and "wrote" not in result.stdout


@pytest.mark.parametrize("args, name", [
    (["activations", "--plot"], "a.png"),
    (["diffcheck", "sigmoid", "--at", "1", "--plot"], "a.png"),
    (["descend", "x^2", "--x0", "1", "--max-iter", "3", "--plot"], "a.png"),
    (["descend", "x^2", "--x0", "1", "--max-iter", "3", "--animate"], "a.gif"),
    (["explain", "--train", "or", "--epochs", "5", "--plot"], "a.png"),
    (["doctor", "--data", "xor", "--hidden", "3,3", "--epochs", "1", "--limit", "1",
      "--quiet", "--report"], "a.html"),
    (["vanish", "--hidden", "4,4", "--seeds", "1", "--samples", "20", "--quiet",
      "--report"], "a.html"),
])
def test_every_command_says_wrote_path_on_stderr(args, name, tmp_path):
    path = tmp_path / name
    written_on_stderr(run(*args, str(path)), path)


def test_vanish_figures_and_tour_page_say_wrote(tmp_path, monkeypatch):
    figures = tmp_path / "figs"
    result = run("vanish", "--hidden", "4,4", "--seeds", "1", "--samples", "20", "--quiet",
                 "--plot", str(figures))
    written_on_stderr(result, figures / "vanish.png")

    import gradsight.present.tour as tour

    class Done:
        index_path, sections, quick, seconds = tmp_path / "new" / "index.html", [], True, 0.0

    def fake_run_tour(out, quick=False, progress=False):
        assert Path(out).parent.is_dir()  # --mkdir made the folder --out is in
        return Done()

    monkeypatch.setattr(tour, "run_tour", fake_run_tour)
    result = run("tour", "--quick", "--quiet", "--out", str(tmp_path / "a" / "new"), "--mkdir")
    written_on_stderr(result, Done.index_path.resolve())


# ---- tables keep their numbers at 80 columns --------------------------------------------------
def test_vanish_sweep_keeps_every_name_and_number_at_80_columns():
    args = ["vanish", "--sweep", "--depths", "6", "--activations", "sigmoid,leaky_relu",
            "--inits", "scaled_normal,xavier_uniform", "--seeds", "1", "--samples", "40",
            "--train-epochs", "1", "--quiet"]
    rows = json.loads(run(*args, "--json").stdout)["rows"]
    text = run(*args, width=80).stdout
    assert "…" not in text
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    for row in rows:
        cells = [str(row["depth"]), row["activation"], row["init"],
                 f"{row['ratio_last_first_init']:.3g}", f"{row['ratio_last_first_trained']:.3g}",
                 f"{row['loss']:.4g}", f"{row['accuracy']:.3f}"]
        assert any(line.split()[:7] == cells for line in lines), cells
    assert any("e+" in f"{row['ratio_last_first_init']:.3g}" for row in rows)  # 6 sigmoid layers


# ---- diffcheck at a special point -------------------------------------------------------------
def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_diffcheck_notes_the_special_point_of_sigmoid():
    # σ″ = σ(1−σ)(1−2σ) is 0 at 0 and σ(−h) = 1 − σ(h): the forward difference (σ(h) − ½)/h
    # equals the central one (σ(h) − σ(−h))/2h (by hand); at 1, σ″(1) ≠ 0
    h = 0.1
    assert (sigmoid(h) - 0.5) / h == pytest.approx((sigmoid(h) - sigmoid(-h)) / (2 * h),
                                                   rel=1e-14)
    s1 = sigmoid(1.0)
    assert abs(s1 * (1 - s1) * (1 - 2 * s1)) > 0.09
    at_zero = run("diffcheck", "sigmoid", "--at", "0", width=300)
    assert at_zero.exit_code == 0, at_zero.output
    notes = " ".join(at_zero.stdout.split()).split("note: ")[1:]
    assert len(notes) == 1 and "special point: f″(0) = 0" in notes[0]
    assert "forward and central give the same numbers" in notes[0]
    assert "where f″ ≠ 0 (e.g. x = 1)" in notes[0]
    at_one = run("diffcheck", "sigmoid", "--at", "1", width=300)
    assert at_one.exit_code == 0 and "special point" not in at_one.stdout
    rows = json.loads(run("diffcheck", "sigmoid", "--at", "0", "--json").stdout)["rows"]
    estimate = {(r["method"], r["h"]): r["estimate"] for r in rows}
    assert estimate["forward", 0.1] == pytest.approx(estimate["central", 0.1], rel=1e-14)


@pytest.mark.parametrize("f, x, special", [
    ("x**3 - x", 0.0, True),    # f″ = 6x
    ("x**3 - x", 1.0, False),
    ("tanh(x)", 0.0, True),     # tanh″ = −2 tanh (1 − tanh²)
    ("x**2", 3.0, False),       # f″ = 2
])
def test_step_study_notes_where_the_second_derivative_vanishes(f, x, special):
    notes = step_study(f, x).notes
    assert any("special point" in n for n in notes) is special, notes
    if special:
        assert re.search(r"f″\(0\) = 0", " ".join(notes))


def test_explain_train_text_states_the_accuracy_rule_and_calls_a_half_undecided():
    """``explain --train xor`` printed ``int(p)``: −1 for an output at 0.5, with no rule."""
    result = runner.invoke(app, ["explain", "--train", "xor", "--epochs", "200"])
    assert result.exit_code == 0, result.output
    assert "accuracy: ŷ > 0.5 + 1e-9 answers 1" in result.stdout
    assert " -1" not in result.stdout
