"""CLI ``gradsight train`` where a learner meets it first: their own CSV file (header,
delimiter, decimal mark, target and task, text columns, missing cells), Ctrl-C, a diverged
run, and output folders that do not exist.

Oracles: values written into the test files by hand; pandas reading the same file with the
right settings given explicitly; NumPy computing the errors of the saved model and the cost
of the untrained network; an uninterrupted run of the same length.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

import gradsight
import gradsight.engine.train as engine_train
from gradsight.cli import app
from gradsight.engine import mlp
from gradsight.engine.callbacks import Callback

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["train", *(str(a) for a in args)])


def _ok(*args):
    result = _run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _features_and_classes(n=199, seed=0):
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, 3)), 3)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


# ---- the header -----------------------------------------------------------------------------
def test_a_csv_without_header_keeps_every_row_and_says_what_it_assumed(tmp_path):
    X, y = _features_and_classes()
    path = _write(tmp_path / "data.csv", "".join(
        f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(X, y, strict=True)))
    result = _ok("--data", path, "--epochs", 2, "--json", "--quiet")
    config = json.loads(result.stdout)["config"]
    assert config["n_samples"] == 199 and config["n_train"] + config["n_test"] == 199
    assert result.stderr.splitlines()[0] == ("read data.csv: 199 rows, 4 columns, header: none "
                                             "(the first row is numbers); delimiter ',' "
                                             "(sniffed)")
    assert config["csv"]["header"] is False


def test_header_and_no_header_force_it(tmp_path):
    path = _write(tmp_path / "years.csv", "2020,2021,2022\n" + "".join(
        f"{i},{i * 2},{i % 2}\n" for i in range(30)))
    auto = json.loads(_ok("--data", path, "--epochs", 1, "--json", "--quiet").stdout)
    forced = _ok("--data", path, "--header", "--epochs", 1, "--json", "--quiet")
    assert auto["config"]["n_samples"] == 31
    assert json.loads(forced.stdout)["config"]["n_samples"] == 30
    assert "header: the first row (--header)" in forced.stderr
    text = _write(tmp_path / "named.csv", "a,b,y\n1,2,0\n3,4,1\n")
    _one_line_error(_run("--data", text, "--no-header", "--quiet"),
                    "row 1, column 'column 1': 'a' is not a number")


# ---- the target and the task ------------------------------------------------------------------
def _ages(tmp_path, n=199):
    """A whole-number target with many values: ages 18–80, 45 + 12·x₁ − 6·x₂ + noise."""
    rng = np.random.default_rng(1)
    X = np.round(rng.normal(size=(n, 3)), 4)
    age = np.clip(np.round(45 + 12 * X[:, 0] - 6 * X[:, 1] + rng.normal(0, 3, n)), 18, 80)
    path = tmp_path / "ages.csv"
    _write(path, "a,b,c,age\n" + "".join(f"{a},{b},{c},{int(t)}\n"
                                         for (a, b, c), t in zip(X, age, strict=True)))
    return path


def test_an_age_target_is_regression_with_one_linear_output_and_reports_the_error(tmp_path):
    path, model_path = _ages(tmp_path), tmp_path / "m.npz"
    result = _ok("--data", path, "--epochs", 40, "--test-size", 0, "--save", model_path,
                 "--json", "--quiet")
    doc = json.loads(result.stdout)
    config, final = doc["config"], doc["final"]
    assert config["task"] == "regression" and config["n_classes"] is None
    assert config["spec"] == "3-16-16-1" and config["loss"] == "quadratic"
    assert final["train_accuracy"] is None and doc["history"][0]["accuracy"] is None
    frame = pd.read_csv(path)
    distinct = frame["age"].nunique()
    assert (f"target: column 4 'age' → regression: {distinct} distinct whole numbers in 199 "
            "rows (class labels need ≤ 10, or ≤ 20 and fewer than half the rows); --task "
            "classification if they are labels") in result.stderr.splitlines()
    # oracle: the saved model on the whole file, standardised by the file's own statistics
    X, y = frame[["a", "b", "c"]].to_numpy(), frame["age"].to_numpy(dtype=float)
    model = gradsight.load(model_path)
    np.testing.assert_allclose(model.metadata["mean"], X.mean(axis=0))
    np.testing.assert_allclose(model.metadata["std"], X.std(axis=0))
    error = model.predict((X - X.mean(axis=0)) / X.std(axis=0))[:, 0] - y
    assert final["train_rmse"] == pytest.approx(np.sqrt(np.mean(error ** 2)), rel=1e-12)
    assert final["train_mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-12)
    assert final["train_loss"] == pytest.approx(np.mean(error ** 2) / 2, rel=1e-12)
    assert final["train_rmse"] < y.std() / 2  # it learnt something: well below the spread


def test_regression_text_shows_rmse_and_mae_not_accuracy(tmp_path):
    result = _ok("--data", _ages(tmp_path), "--epochs", 5, "--loss", "quadratic", "--quiet")
    header = next(line for line in result.stdout.splitlines() if "loss" in line)
    assert "RMSE" in header and "MAE" in header and "accuracy" not in header
    assert "3-16-16-1" in result.stdout and "regression of 'age'" in result.stdout


def test_task_classification_and_target_by_number(tmp_path):
    path = _ages(tmp_path)
    doc = json.loads(_ok("--data", path, "--task", "classification", "--epochs", 1, "--json",
                         "--quiet").stdout)
    distinct = pd.read_csv(path)["age"].nunique()
    assert doc["config"]["n_classes"] == distinct
    assert doc["config"]["spec"] == f"3-16-16-{distinct}"
    by_number = _ok("--data", path, "--target", 1, "--epochs", 1, "--json", "--quiet")
    config = json.loads(by_number.stdout)["config"]
    assert config["target"] == "a" and config["task"] == "regression"
    assert "target: column 1 'a' holds numbers with decimals → regression" in by_number.stderr
    _one_line_error(_run("--data", path, "--target", 5, "--quiet"),
                    "target column number 5", "columns: a, b, c, age")


# ---- delimiter and decimal mark ------------------------------------------------------------------
def test_a_semicolon_file_with_decimal_commas_is_read_and_said(tmp_path):
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(30, 2)), 2)
    path = _write(tmp_path / "dati.csv", "altezza;peso;classe\n" + "".join(
        f"{str(a).replace('.', ',')};{str(b).replace('.', ',')};{int(a > b)}\n" for a, b in X))
    model_path = tmp_path / "m.npz"
    result = _ok("--data", path, "--epochs", 2, "--test-size", 0, "--save", model_path,
                 "--quiet")
    assert result.stderr.splitlines()[0] == (
        "read dati.csv: 30 rows, 3 columns, header: the first row (it holds text above "
        "columns of numbers); delimiter ';' (sniffed), decimal mark ',' (sniffed)")
    oracle = pd.read_csv(path, sep=";", decimal=",")[["altezza", "peso"]].to_numpy()
    np.testing.assert_array_equal(oracle, X)
    np.testing.assert_allclose(gradsight.load(model_path).metadata["mean"], X.mean(axis=0))
    given = _ok("--data", path, "--delimiter", ";", "--decimal", ",", "--epochs", 1, "--quiet")
    assert "delimiter ';' (--delimiter), decimal mark ',' (--decimal)" in given.stderr


# ---- text columns and missing cells --------------------------------------------------------------
def _shop(tmp_path, missing=False):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(40):
        colour = ["red", "green", "blue"][i % 3]
        price = "" if missing and i % 7 == 3 else f"{rng.uniform(1, 9):.2f}"
        rows.append(f"{price},{colour},{int(colour == 'red')}\n")
    return _write(tmp_path / "shop.csv", "price,colour,bought\n" + "".join(rows))


def test_a_text_column_is_refused_naming_it_and_onehot_encodes_it(tmp_path):
    path, model_path = _shop(tmp_path), tmp_path / "m.npz"
    _one_line_error(_run("--data", path, "--quiet"),
                    "column 'colour' (3 values: 'blue', 'green', 'red') holds text",
                    "--categorical onehot")
    result = _ok("--data", path, "--categorical", "onehot", "--epochs", 1, "--save",
                 model_path, "--quiet")
    oracle = pd.get_dummies(pd.read_csv(path).drop(columns="bought"), prefix_sep="=")
    assert gradsight.load(model_path).metadata["feature_names"] == list(oracle.columns)
    assert ("one-hot: column 'colour' (3 values) became 3 columns of 0/1: colour=blue, "
            "colour=green, colour=red") in result.stderr.splitlines()


def test_missing_cells_are_refused_naming_the_column_then_dropped_or_filled(tmp_path):
    path = _shop(tmp_path, missing=True)
    frame = pd.read_csv(path)
    gaps = int(frame["price"].isna().sum())
    _one_line_error(_run("--data", path, "--categorical", "onehot", "--quiet"),
                    "row 5, column 'price': empty cell", f"({gaps} in 'price')",
                    "--missing drop", "--missing mean")
    dropped = _ok("--data", path, "--categorical", "onehot", "--missing", "drop",
                  "--epochs", 1, "--json", "--quiet")
    assert json.loads(dropped.stdout)["config"]["n_samples"] == len(frame.dropna())
    assert (f"missing values: dropped {gaps} of 40 rows with missing cells (in 'price')"
            in dropped.stderr)
    model_path = tmp_path / "m.npz"
    filled = _ok("--data", path, "--categorical", "onehot", "--missing", "mean",
                 "--epochs", 1, "--test-size", 0, "--save", model_path, "--quiet")
    price = frame["price"].fillna(frame["price"].mean())
    metadata = gradsight.load(model_path).metadata
    assert metadata["mean"][0] == pytest.approx(price.mean(), rel=1e-12)
    assert metadata["std"][0] == pytest.approx(price.std(ddof=0), rel=1e-12)
    assert (f"missing values: filled {gaps} cells of 'price' with its mean "
            f"{frame['price'].mean():.4g}") in filled.stderr


@pytest.mark.parametrize(("args", "flag"), [
    (["--task", "regression"], "--task"), (["--target", "y"], "--target"),
    (["--no-header"], "--header/--no-header"), (["--delimiter", ";"], "--delimiter"),
    (["--missing", "drop"], "--missing"), (["--categorical", "onehot"], "--categorical"),
])
def test_csv_options_with_a_built_in_data_set_are_refused(args, flag):
    _one_line_error(_run("--data", "moons", *args, "--quiet"),
                    f"{flag} applies to a CSV file", "'moons'")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--task", "regresion"], "--task must be auto, classification or regression"),
    (["--missing", "zero"], "--missing must be drop or mean, got 'zero'"),
    (["--categorical", "ordinal"], "--categorical must be onehot"),
    (["--decimal", ";"], "--decimal must be . or ,"),
])
def test_csv_option_values_outside_their_choices_are_refused(tmp_path, args, fragment):
    path = _write(tmp_path / "d.csv", "x,y\n1,0\n2,1\n")
    _one_line_error(_run("--data", path, *args, "--quiet"), fragment)


# ---- Ctrl-C -----------------------------------------------------------------------------------
class _CtrlCAfter(Callback):
    """Raises KeyboardInterrupt at the end of epoch ``epochs`` (as Ctrl-C would there)."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, ctx):
        if ctx.epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def _interrupt_fit_after(monkeypatch, epochs):
    real = engine_train.fit

    def fit(*args, callbacks=(), **kwargs):
        return real(*args, callbacks=[*callbacks, _CtrlCAfter(epochs)], **kwargs)

    monkeypatch.setattr(engine_train, "fit", fit)


def test_ctrl_c_exits_130_keeping_only_the_saved_model(tmp_path, monkeypatch):
    whole = tmp_path / "whole.npz"
    _ok("--epochs", 2, "--save", whole, "--quiet")  # oracle: a run that stops at 2 epochs
    _interrupt_fit_after(monkeypatch, 2)
    model, plot, report = tmp_path / "m.npz", tmp_path / "f.png", tmp_path / "r.html"
    result = _run("--epochs", 30, "--save", model, "--plot", plot, "--report", report,
                  "--quiet")
    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert result.stderr.strip() == (f"interrupted after 2 of 30 epochs: the model so far is "
                                     f"saved to {model}; no figure or report is written for "
                                     f"an interrupted run")
    assert result.stdout == "" and not plot.exists() and not report.exists()
    for kept, oracle in zip(gradsight.load(model).parameters(),
                            gradsight.load(whole).parameters(), strict=True):
        np.testing.assert_array_equal(kept, oracle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "whole.npz"]


def test_ctrl_c_without_save_writes_nothing(tmp_path, monkeypatch):
    _interrupt_fit_after(monkeypatch, 1)
    result = _run("--epochs", 30, "--plot", tmp_path / "f.png", "--json", "--quiet")
    assert result.exit_code == 130 and result.stdout == ""
    assert result.stderr.strip() == ("interrupted after 1 of 30 epochs: no figure or report is "
                                     "written for an interrupted run")
    assert list(tmp_path.iterdir()) == []


# ---- a diverged run ---------------------------------------------------------------------------
def _initial_cross_entropy():
    """C of the untrained 2-16-16-2 network on train's moons split, by NumPy's log-softmax."""
    X, y = make_moons(n_samples=200, noise=0.1, random_state=0)
    X_tr, _, y_tr, _ = train_test_split(X, y, test_size=40, random_state=0, stratify=y)
    X_tr = (X_tr - X_tr.mean(axis=0)) / X_tr.std(axis=0)
    z = mlp("2-16-16-2", activation="relu", init="he_normal", seed=0).predict(X_tr)
    top = z.max(axis=1, keepdims=True)
    log_softmax = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    return float(-np.mean(log_softmax[np.arange(len(y_tr)), y_tr]))


def test_a_cost_that_rises_is_called_divergence_naming_eta(tmp_path):
    args = ("--optimizer", "sgd", "--lr", 1000, "--epochs", 10, "--quiet")
    doc = json.loads(_ok(*args, "--json").stdout)
    final = doc["final"]
    assert final["initial_loss"] == pytest.approx(_initial_cross_entropy(), rel=1e-12)
    assert final["train_loss"] > 100 * final["initial_loss"]
    line = (f"training diverged: the cost rose from {final['initial_loss']:.4g} before "
            f"training to {final['train_loss']:.4g} with the learning rate η = 1000 (sgd); "
            "try a smaller one, e.g. --lr 100 (η/10), or start from the default --lr 0.01")
    assert final["diverged"] == line
    text = _ok(*args).stdout
    assert line in text.splitlines()
    assert text.index(line) < text.index("Diagnosis")


def test_a_non_finite_cost_is_called_divergence_and_exits_0():
    result = _ok("--lr", "1e308", "--epochs", 3, "--quiet")
    assert ("training diverged: the cost became non-finite (NaN or ∞) with the learning rate "
            "η = 1e+308 (adam); try a smaller one, e.g. --lr 1e+307 (η/10), or start from "
            "the default --lr 0.01") in result.stdout.splitlines()
    assert "Warning" not in result.stderr


def test_a_healthy_run_is_not_called_diverged():
    result = _ok("--epochs", 5, "--quiet")
    assert "diverged" not in result.stdout
    doc = json.loads(_ok("--epochs", 5, "--json", "--quiet").stdout)
    assert doc["final"]["diverged"] is None
    assert doc["final"]["train_loss"] < doc["final"]["initial_loss"]


# ---- output folders ---------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--plot", "--save", "--report"])
def test_a_missing_output_folder_fails_before_training(tmp_path, monkeypatch, option):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(engine_train, "fit", no_training)
    monkeypatch.chdir(tmp_path)
    name = {"--plot": "x.png", "--save": "m.npz", "--report": "r.html"}[option]
    _one_line_error(_run(option, f"nodir/{name}", "--quiet"),
                    f"cannot write 'nodir/{name}': the folder 'nodir' does not exist",
                    "--mkdir")
    assert list(tmp_path.iterdir()) == []


def test_mkdir_creates_the_output_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ok("--epochs", 2, "--plot", "a/b/x.png", "--save", "c/m.npz", "--mkdir", "--quiet")
    assert (tmp_path / "a" / "b" / "x.png").read_bytes()[:4] == b"\x89PNG"
    assert gradsight.load(tmp_path / "c" / "m.npz").metadata["task"] == "classification"


def test_a_regression_target_is_split_without_stratifying_by_its_values():
    """Ages repeat, but they are no classes: the split is scikit-learn's plain shuffle."""
    import numpy as np
    from sklearn.model_selection import train_test_split as sk_split

    from gradsight.engine.preprocess import split_standardized

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    ages = rng.integers(18, 30, size=60).astype(float)
    _, _, y_train, y_test, _, _ = split_standardized(X, ages, 0.25, seed=3, stratify=False)
    _, _, expected_train, expected_test = sk_split(X, ages, test_size=15, random_state=3,
                                                   stratify=None)
    assert np.array_equal(y_train, expected_train) and np.array_equal(y_test, expected_test)
