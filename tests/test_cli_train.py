"""CLI ``gradsight train`` and ``gradsight explain``: results, JSON shape, files, exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

import gradsight
from gradsight.cli import app

runner = CliRunner()

HISTORY_KEYS = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- train --------------------------------------------------------------------------------
def test_train_moons_json_reaches_high_accuracy_and_saves_a_loadable_model(tmp_path):
    path = tmp_path / "model.npz"
    result = _run("train", "--data", "moons", "--epochs", 15, "--json", "--quiet",
                  "--save", path)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"config", "history", "final", "stopped"}
    assert doc["stopped"] is None and len(doc["history"]) == 15
    assert all(set(row) == HISTORY_KEYS for row in doc["history"])
    assert [row["epoch"] for row in doc["history"]] == list(range(15))
    config = doc["config"]
    assert config["spec"] == "2-16-16-2" and config["loss"] == "cross_entropy"
    assert config["activation"] == "relu" and config["optimizer"] == "adam"
    assert config["n_train"] == 160 and config["n_test"] == 40
    assert doc["final"]["test_accuracy"] >= 0.95
    assert doc["history"][-1]["loss"] < doc["history"][0]["loss"]
    # oracle: scikit-learn's stratified split, our own scaling, the saved model's predictions
    X, y = make_moons(n_samples=200, noise=0.1, random_state=0)
    X_tr, X_te, _, y_te = train_test_split(X, y, test_size=40, random_state=0, stratify=y)
    model = gradsight.load(path)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    np.testing.assert_allclose(model.metadata["mean"], mean)
    predicted = np.argmax(model.predict((X_te - mean) / std), axis=1)
    assert np.mean(predicted == y_te) == pytest.approx(doc["final"]["test_accuracy"])
    assert doc["history"][-1]["val_accuracy"] == pytest.approx(doc["final"]["test_accuracy"])


def test_train_text_summary_and_plot(tmp_path):
    plot = tmp_path / "fig.png"
    result = _run("train", "--data", "xor", "--hidden", "4", "--activation", "tanh",
                  "--init", "xavier_uniform", "--optimizer", "sgd", "--momentum", "0.9",
                  "--lr", "0.1", "--epochs", 150, "--batch-size", 4, "--plot", plot, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "100.0%" in result.stdout and "2-4-2" in result.stdout
    assert "no test split" in result.stdout and str(plot) in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_report_embeds_curves_and_numbers(tmp_path):
    path = tmp_path / "run.html"
    result = _run("train", "--data", "circles", "--epochs", 8, "--report", path, "--json",
                  "--quiet")
    assert result.exit_code == 0, result.stderr
    final = json.loads(result.stdout)["final"]
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert f"test accuracy {final['test_accuracy']:.1%}" in page


def test_train_divergence_is_reported_not_hidden():
    result = _run("train", "--optimizer", "sgd", "--lr", "1e300", "--epochs", 3, "--json",
                  "--quiet")
    assert result.exit_code == 0 and "Warning" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["stopped"].startswith("non-finite") and "epoch 0" in doc["stopped"]
    assert len(doc["history"]) < 3


@pytest.mark.parametrize(("loss", "spec", "output_activation"), [
    ("quadratic", "2-8-2", "sigmoid"),
    ("bce_with_logits", "2-8-1", None),
])
def test_train_other_losses_build_matching_outputs(loss, spec, output_activation):
    result = _run("train", "--data", "gauss", "--hidden", "8", "--loss", loss, "--epochs", 5,
                  "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert config["spec"] == spec and config["output_activation"] == output_activation
    assert json.loads(result.stdout)["final"]["test_accuracy"] >= 0.9  # well-separated blobs


def test_train_csv_regression_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    reg = tmp_path / "reg.csv"
    reg.write_text("a,b,price\n" + "".join(f"{a},{b},{2 * a - b + 0.5}\n" for a, b in X))
    doc = json.loads(_run("train", "--data", reg, "--epochs", 30, "--json", "--quiet").stdout)
    assert doc["config"]["loss"] == "quadratic" and doc["config"]["spec"] == "2-16-16-1"
    assert doc["final"]["test_accuracy"] is None and doc["history"][0]["accuracy"] is None
    assert doc["history"][-1]["loss"] < doc["history"][0]["loss"]
    cls = tmp_path / "cls.csv"
    cls.write_text("kind,a,b\n" + "".join(f"{'big' if a + b > 0 else 'small'},{a},{b}\n"
                                        for a, b in X))
    doc = json.loads(_run("train", "--data", cls, "--target", "kind", "--epochs", 30,
                          "--json", "--quiet").stdout)
    assert doc["config"]["classes"] == ["big", "small"] and doc["config"]["n_classes"] == 2


@pytest.mark.parametrize(("args", "fragments"), [
    (["--data", "mooons"], ["unknown dataset 'mooons'", "moons"]),
    (["--activation", "relux"], ["relux"]),
    (["--init", "glorious"], ["glorious"]),
    (["--loss", "hinge"], ["unknown loss 'hinge'", "cross_entropy"]),
    (["--optimizer", "lbfgs"], ["unknown optimizer 'lbfgs'"]),
    (["--optimizer", "adam", "--momentum", "0.9"], ["momentum"]),
    (["--hidden", "16,x"], ["--hidden", "'x'"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--lr", "-1"], ["lr"]),
    (["--test-size", "1.5"], ["--test-size"]),
    (["--data", "spirals", "--loss", "bce_with_logits"], ["exactly 2 classes"]),
    (["--plot", "out.txt"], ["--plot"]),
    (["--save", "model.pkl"], [".npz"]),
    (["--report", "r.pdf"], ["--report"]),
])
def test_train_bad_input_exits_2(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run("train", "--epochs", 2, *args, "--quiet")
    _assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize(("text", "args", "fragments"), [
    ("x1,x2,y\n1,2,0\n3,4,1\n", ["--target", "label"], ["'label'", "x1, x2, y"]),
    ("x1,x2,y\n1,2,0\n3,abc,1\n", [], ["row 3, column 'x2': 'abc' is not a number"]),
    ("x1,x2,y\n1,2,0\n3,nan,1\n", [], ["row 3, column 'x2'", "finite"]),
    ("", [], ["empty"]),
    ("x,price\n1,0.5\n2,1.5\n", ["--loss", "cross_entropy"], ["--loss quadratic"]),
])
def test_train_bad_csv_exits_2(tmp_path, text, args, fragments):
    path = tmp_path / "d.csv"
    path.write_text(text)
    _assert_one_line_error(_run("train", "--data", path, *args, "--quiet"), *fragments)


# ---- explain ------------------------------------------------------------------------------
def test_explain_default_prints_each_factor_and_confirms():
    result = _run("explain")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    y_hat = 1 / (1 + math.exp(-0.2))  # z = 0.4·1 − 0.6·0.5 + 0.1
    text = result.stdout
    assert f"∂C/∂ŷ = ŷ − y = {y_hat:.4g} − 1" in text
    assert f"∂ŷ/∂z = σ(z)(1−σ(z)) = {y_hat:.4g}·{1 - y_hat:.4g} = {y_hat * (1 - y_hat):.4g}" \
        in text
    assert "∂z/∂w = x = (1, 0.5)" in text and "w_new = w_old − η ∂C/∂w" in text
    assert lines[-1].startswith("Check:") and "agree with the chain rule" in lines[-1]


def test_explain_json_keys_and_values():
    result = _run("explain", "--x", "2,-1,0.5", "--w", "0.1,0.2,-0.3", "--b", "0", "--y", "0",
                  "--lr", "1", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"x", "w", "b", "y", "z", "y_hat", "dC_dyhat", "dyhat_dz", "dz_dw",
                        "dC_dw", "dC_db", "lr", "w_new", "b_new", "check"}
    z = 0.1 * 2 + 0.2 * -1 + -0.3 * 0.5
    s = 1 / (1 + math.exp(-z))
    assert doc["z"] == pytest.approx(z) and doc["y_hat"] == pytest.approx(s)
    np.testing.assert_allclose(doc["dC_dw"], s * s * (1 - s) * np.array([2, -1, 0.5]))
    assert doc["check"]["agree"] is True


def test_explain_network_walks_layers():
    result = _run("explain", "--network", "2-2-1", "--seed", 1)
    assert result.exit_code == 0, result.stderr
    assert "δ² = ∂C/∂a² ⊙ f′(z²)" in result.stdout and "δ¹ = (W² δ²)" in result.stdout
    doc = json.loads(_run("explain", "--network", "2-3-2", "--y", "0,1", "--json").stdout)
    assert [len(layer["delta"]) for layer in doc["layers"]] == [3, 2]


@pytest.mark.parametrize(("args", "fragments"), [
    (["--x", "1,2,3", "--w", "1,2"], ["--x has 3 values", "--w has 2"]),
    (["--x", "1,2,3"], ["the default w has 2"]),
    (["--x", "1,abc"], ["--x"]),
    (["--b", "nan"], ["b"]),
    (["--lr", "0"], ["lr"]),
    (["--y", "1,2"], ["--y"]),
    (["--network", "2-x-1"], ["'x'"]),
    (["--network", "2-2-1", "--x", "1,2,3"], ["takes 2 input"]),
    (["--network", "2-2-1", "--w", "1,2"], ["--w"]),
    (["--network", "2-2-1", "--activation", "sigmoidal"], ["sigmoidal"]),
])
def test_explain_bad_input_exits_2(args, fragments):
    _assert_one_line_error(_run("explain", *args), *fragments)
