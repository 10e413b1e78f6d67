"""CLI ``gradsight train`` and ``gradsight explain``: results, JSON shape, files, exit codes."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

import gradsight
from gradsight.cli import app
from gradsight.diagnostics import classify_neurons
from gradsight.engine import Dense

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
    assert set(doc) == {"config", "history", "final", "stopped", "diagnosis"}
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
    assert "no test split" in result.stdout
    assert f"wrote {plot}" in result.stderr and str(plot) not in result.stdout  # one message
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


# ---- train --plot: the figure draws what it says, also after a run that stopped early --------
def _train_capturing_figure(monkeypatch, tmp_path, *args):
    """Run ``gradsight train ... --plot fig.png --json`` and keep the figure it saves."""
    saved = []
    real_savefig = Figure.savefig

    def keep(fig, *rest, **kw):
        saved.append(fig)
        return real_savefig(fig, *rest, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot = tmp_path / "fig.png"
    result = _run("train", *args, "--plot", plot, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(saved) == 1
    return result, json.loads(result.stdout), saved[0]


def _lines(ax):
    return {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}


def test_train_plot_of_2d_data_has_loss_curves_and_the_decision_boundary(monkeypatch,
                                                                         tmp_path):
    _, doc, fig = _train_capturing_figure(monkeypatch, tmp_path, "--data", "moons",
                                          "--epochs", 12)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["cost C per epoch", "accuracy per epoch"]
    assert titles[2].startswith("decision regions") and len(fig.axes) == 3
    curves = _lines(fig.axes[0])
    np.testing.assert_allclose(curves["train loss"], [row["loss"] for row in doc["history"]])
    np.testing.assert_allclose(curves["validation loss"],
                               [row["val_loss"] for row in doc["history"]])
    # the boundary panel: filled class regions plus the 160 training samples
    boundary = fig.axes[2]
    assert boundary.collections and boundary.collections[-1].get_offsets().shape == (160, 2)
    assert f"{doc['final']['train_accuracy']:.1%}" in titles[2]


def test_train_plot_of_64_d_data_has_no_decision_boundary(monkeypatch, tmp_path):
    _, doc, fig = _train_capturing_figure(monkeypatch, tmp_path, "--data", "digits",
                                          "--hidden", "16", "--epochs", 2)
    assert [ax.get_title() for ax in fig.axes] == ["cost C per epoch", "accuracy per epoch"]
    assert _lines(fig.axes[1])["train accuracy"] == [r["accuracy"] for r in doc["history"]]


def test_train_plot_after_divergence_in_the_first_epoch_still_written(monkeypatch, tmp_path):
    # every step diverges at once: no epoch completes, yet --plot and --save must work
    model_path = tmp_path / "m.npz"
    result, doc, fig = _train_capturing_figure(
        monkeypatch, tmp_path, "--optimizer", "sgd", "--lr", "1e300", "--epochs", 3,
        "--save", model_path)
    assert doc["history"] == [] and doc["stopped"].startswith("non-finite")
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr
    assert "no epoch completed" in fig.axes[0].texts[0].get_text()
    assert fig.axes[-1].get_title().startswith("decision regions")
    model = gradsight.load(model_path)
    assert all(np.isfinite(p).all() for p in model.parameters())


# ---- train --report: findings first, then the figures -----------------------------------------
def test_train_report_has_findings_first_then_the_figures(tmp_path):
    path = tmp_path / "run.html"
    result = runner.invoke(app, [
        "train", "--data", "digits", "--hidden", "16,16,16,16,16,16", "--activation",
        "sigmoid", "--init", "normal", "--loss", "quadratic", "--optimizer", "sgd", "--lr",
        "0.5", "--epochs", "2", "--report", str(path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    page = path.read_text(encoding="utf-8")
    title = re.search(r"Vanishing gradients: dense5/dense0 gradient ratio ([0-9.e+]+)", page)
    assert title is not None and float(title.group(1)) > 10
    assert page.index("Findings") < page.index(title.group(0)) < page.index("Hidden units") \
        < page.index("Gradient flow per layer")
    names = ("neuron_map", "activation_distributions", "layer_norms", "norm_heatmap",
             "saturation")
    assert all(f'<figure data-name="{name}">' in page for name in names)
    assert page.count('src="data:image/png;base64,') >= 6  # + the training curves
    assert json.loads(result.stdout)["final"]["epochs"] == 2


def test_train_report_without_hidden_layer_says_why_there_is_no_diagnosis(tmp_path):
    path = tmp_path / "flat.html"
    result = runner.invoke(app, ["train", "--hidden", "0", "--epochs", "2", "--report",
                                 str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "no layer-to-layer gradient flow" in path.read_text(encoding="utf-8")


def test_train_report_on_an_overflowing_run_reports_nonfinite(tmp_path):
    path = tmp_path / "div.html"
    result = runner.invoke(app, ["train", "--optimizer", "sgd", "--lr", "1e300", "--epochs",
                                 "2", "--report", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Non-finite values" in path.read_text(encoding="utf-8")


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
    assert list(doc) == ["x", "w", "b", "y", "z", "y_hat", "dC_dyhat", "dyhat_dz", "dz_dw",
                         "dC_dw", "dC_db", "lr", "w_new", "b_new"]
    z = 0.1 * 2 + 0.2 * -1 + -0.3 * 0.5
    s = 1 / (1 + math.exp(-z))
    assert doc["z"] == pytest.approx(z) and doc["y_hat"] == pytest.approx(s)
    np.testing.assert_allclose(doc["dC_dw"], s * s * (1 - s) * np.array([2, -1, 0.5]))


def test_explain_network_walks_layers():
    result = _run("explain", "--network", "2-2-1", "--seed", 1)
    assert result.exit_code == 0, result.stderr
    assert "δ² = ∂C/∂a² ⊙ f′(z²)" in result.stdout and "δ¹ = (δ² (W²)ᵀ)" in result.stdout
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


# ---- explain --train ------------------------------------------------------------------------
TRUTH = {"or": [0, 1, 1, 1], "and": [0, 0, 0, 1], "nand": [1, 1, 1, 0], "xor": [0, 1, 1, 0]}


def _neuron_by_hand(table, epochs, lr, seed):
    """The articles' update rule written out in NumPy: C = 1/(2N) Σ(σ(Xw + b) − y)², then
    w ← w − η X^T((a − y)·a(1 − a))/N, b ← b − η mean((a − y)·a(1 − a)), all 4 inputs per
    step. Only the starting weights come from the engine's initialiser (Dense(2, 1, seed))."""
    start = Dense(2, 1, seed=seed)
    w, b = start.W[:, 0].copy(), float(start.b[0])
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array(TRUTH[table], dtype=float)
    losses = []
    for _ in range(epochs):
        a = 1 / (1 + np.exp(-(X @ w + b)))
        losses.append(0.5 * np.mean((a - y) ** 2))
        delta = (a - y) * a * (1 - a)
        w, b = w - lr * X.T @ delta / 4, b - lr * delta.mean()
    a = 1 / (1 + np.exp(-(X @ w + b)))
    return losses, w, b, a, 0.5 * np.mean((a - y) ** 2)


@pytest.mark.parametrize(("table", "epochs", "lr", "seed"), [("or", 300, 4.0, 3),
                                                             ("nand", 150, 2.5, 0)])
def test_explain_train_json_matches_descent_by_hand(table, epochs, lr, seed):
    result = _run("explain", "--train", table, "--epochs", epochs, "--lr", lr, "--seed", seed,
                  "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    losses, w, b, outputs, cost = _neuron_by_hand(table, epochs, lr, seed)
    assert doc["data"] == table and doc["epochs"] == epochs == len(doc["losses"])
    assert doc["lr"] == lr and doc["seed"] == seed and doc["stopped"] is None
    np.testing.assert_allclose(doc["losses"], losses, rtol=1e-10)
    np.testing.assert_allclose(doc["w"], w, rtol=1e-10)
    assert doc["b"] == pytest.approx(b, rel=1e-10)
    np.testing.assert_allclose(doc["outputs"], outputs, rtol=1e-10)
    assert doc["final_cost"] == pytest.approx(cost, rel=1e-10)
    assert doc["targets"] == TRUTH[table] and doc["inputs"] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert doc["learned"] is True and doc["predictions"] == TRUTH[table]
    assert doc["losses"][-1] < doc["losses"][0]


def test_explain_train_text_shows_sampled_curve_and_verdict(tmp_path):
    plot = tmp_path / "curve.png"
    result = _run("explain", "--train", "and", "--epochs", 500, "--plot", plot)
    assert result.exit_code == 0, result.stderr
    losses, w, b, outputs, cost = _neuron_by_hand("and", 500, 4.0, 0)
    rows = {int(m.group(1)): m.group(2)
            for m in re.finditer(r"^\s+(\d+)\s+(\S+)\s+\d+%$", result.stdout, re.M)}
    assert 0 in rows and 499 in rows and 3 < len(rows) < 20   # sampled, first and last
    for epoch, shown in rows.items():
        assert shown == f"{losses[epoch]:.4g}".replace("-", "−")
    assert re.search(rf"^\s+end\s+{cost:.4g}\s+100%$", result.stdout, re.M)
    assert f"w = ({w[0]:.4g}, {w[1]:.4g})" in result.stdout
    assert "learned AND" in result.stdout and f"wrote {plot}" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_train_xor_cannot_be_learned():
    result = _run("explain", "--train", "xor", "--epochs", 2000, "--json")
    assert result.exit_code == 0, result.stderr     # not learning is an answer, not an error
    doc = json.loads(result.stdout)
    # no line separates XOR's 1s from its 0s, so no weights can give ŷ > ½ exactly on them
    assert doc["learned"] is False and doc["predictions"] != TRUTH["xor"]
    np.testing.assert_allclose(doc["losses"], _neuron_by_hand("xor", 2000, 4.0, 0)[0],
                               rtol=1e-9)
    text = _run("explain", "--train", "XOR", "--epochs", 50).stdout
    assert "did not learn XOR" in text and "no single neuron can" in text
    # a huge rate throws z deep into σ's flat tails: ŷ(1 − ŷ) ≈ 0 on all inputs, stuck
    stuck = _run("explain", "--train", "or", "--epochs", 5, "--lr", "1e6")
    assert stuck.exit_code == 0 and "the neuron saturated" in stuck.stdout
    doc = json.loads(_run("explain", "--train", "or", "--epochs", 5, "--lr", "1e6",
                          "--json").stdout)
    assert doc["learned"] is False and all(o * (1 - o) < 0.0025 for o in doc["outputs"])
    assert "yet: try more --epochs" in _run("explain", "--train", "or", "--epochs", 2).stdout


@pytest.mark.parametrize(("args", "fragments"), [
    (["--train", "nor"], ["'nor'", "or", "xor"]),
    (["--train", "or", "--epochs", "0"], ["--epochs"]),
    (["--train", "or", "--lr", "0"], ["lr"]),
    (["--train", "or", "--lr", "nan"], ["lr"]),
    (["--train", "or", "--x", "1,2"], ["--train", "--x"]),
    (["--train", "or", "--network", "2-2-1", "--activation", "relu"],
     ["--network", "--activation"]),
    (["--train", "or", "--plot", "curve.txt"], ["--plot"]),
    (["--epochs", "10"], ["--epochs", "--train"]),
    (["--plot", "curve.png"], ["--plot", "--train"]),
])
def test_explain_train_bad_input_exits_2(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _assert_one_line_error(_run("explain", *args), *fragments)
    assert list(tmp_path.iterdir()) == []


# ---- train --neurons ------------------------------------------------------------------------
def _states_by_hand(model, X, y):
    """The question-and-answer thread's rules written out over the saved weights: per hidden
    unit, the share of samples with f′(z) ≥ 1% of max f′ (active); dead = ReLU with z ≤ 0 on
    every sample; saturated = inactive on ≥ 95%, right/wrong by the net's accuracy on those
    samples; learning = active on ≥ 5%."""
    dense = model.dense_layers
    a, zs = X, []
    for layer in dense[:-1]:
        z = a @ layer.W + layer.b
        zs.append(z)
        a = np.maximum(z, 0) if model.layers[1].name.startswith("relu") else 1 / (1 + np.exp(-z))
    right = np.argmax(a @ dense[-1].W + dense[-1].b, axis=1) == y
    relu = model.layers[1].name.startswith("relu")
    states = []
    for z in zs:
        s = 1 / (1 + np.exp(-z))
        active = z > 0 if relu else s * (1 - s) >= 0.01 * 0.25
        for unit in range(z.shape[1]):
            on = active[:, unit]
            if relu and not np.any(z[:, unit] > 0):
                states.append("dead")
            elif np.mean(~on) >= 0.95:
                states.append("saturated-right" if np.mean(right[~on]) >= 0.5
                              else "saturated-wrong")
            else:
                states.append("learning" if np.mean(on) >= 0.05 else "quiet")
    return states


@pytest.mark.parametrize(("activation", "lr", "expected"), [
    ("relu", "3", "dead"), ("sigmoid", "50", "saturated-right")])
def test_train_neurons_counts_match_the_rules_by_hand(tmp_path, activation, lr, expected):
    path = tmp_path / "model.npz"
    args = ("train", "--data", "moons", "--hidden", "8,8", "--activation", activation,
            "--optimizer", "sgd", "--lr", lr, "--epochs", 5, "--save", path, "--quiet")
    result = _run(*args, "--neurons", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    neurons = doc["neurons"]
    X, y = make_moons(n_samples=200, noise=0.1, random_state=0)
    X_tr, _, y_tr, _ = train_test_split(X, y, test_size=40, random_state=0, stratify=y)
    X_tr = (X_tr - X_tr.mean(axis=0)) / X_tr.std(axis=0)
    model = gradsight.load(path)
    by_hand = _states_by_hand(model, X_tr, y_tr)
    assert [u["state"] for u in neurons["units"]] == by_hand and expected in by_hand
    layers = [f"{activation}0", f"{activation}1"]
    assert list(neurons["counts"]) == layers
    for i, layer in enumerate(layers):
        counts = neurons["counts"][layer]
        assert sum(counts.values()) == 8
        for state, n in counts.items():
            assert n == by_hand[8 * i:8 * i + 8].count(state), (layer, state)
    assert neurons["total"] == {s: by_hand.count(s) for s in neurons["total"]}
    library = classify_neurons(model, X_tr, y_tr, loss="cross_entropy")
    assert library.counts() == neurons["counts"]
    np.testing.assert_allclose([u["active_fraction"] for u in neurons["units"]],
                               [u.active_fraction for u in library])
    # the text table: one row per hidden layer and a total row, the same counts
    text = _run(*args, "--neurons").stdout
    for layer, counts in [*neurons["counts"].items(), ("all hidden", neurons["total"])]:
        row = re.search(rf"{layer}\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)",
                        text)
        assert row, (layer, text)
        assert [int(v) for v in row.groups()] == [
            sum(counts.values()), counts["dead"], counts["saturated-wrong"],
            counts["saturated-right"], counts["learning"]]


def test_train_neurons_in_report_and_absent_without_the_flag(tmp_path):
    path = tmp_path / "run.html"
    result = _run("train", "--data", "gauss", "--hidden", "4", "--epochs", 3, "--neurons",
                  "--report", path, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["neurons"]["counts"]["relu0"]
    assert sum(counts.values()) == 4
    page = path.read_text()
    assert "saturated-wrong" in page and "relu0" in page
    plain = json.loads(_run("train", "--data", "gauss", "--hidden", "4", "--epochs", 3,
                            "--json", "--quiet").stdout)
    assert "neurons" not in plain


def test_train_neurons_without_hidden_layer_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run("train", "--hidden", "0", "--neurons", "--save", "m.npz", "--quiet")
    _assert_one_line_error(result, "--neurons", "--hidden")
    assert list(tmp_path.iterdir()) == []
