"""Issue 5 audit: the gaps closed against independent oracles.

* LayerStats of a monitored ``fit`` step equal a backpropagation written out by hand with
  plain Python floats (no engine array is read);
* diagnosing a network without a hidden layer is a clear error; a zero gradient (dead
  units) says nothing about η, so it never makes a "learning rate too low" finding;
* ``gradsight train --report`` puts the findings first, then the figures (gradient flow,
  neuron map, activation distributions); ``doctor`` takes ``--momentum`` like ``train``;
* the σ′ ≤ 0.25 bound is drawn on the sigmoid plots; Nielsen's speeds while training plot.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from gradsight import data, nn, optim
from gradsight.cli import app
from gradsight.diagnostics import LayerStats, Monitor, diagnose
from gradsight.errors import GradsightError, InvalidValueError
from gradsight.plots import diagnostics as dplots
from gradsight.train import fit

runner = CliRunner()

# ---- LayerStats against a backpropagation by hand ------------------------------------------
X = [[1.0, -2.0], [0.5, 3.0]]
Y = [1.0, 0.0]
W1 = [[0.3, -0.1], [0.2, 0.4]]
B1 = [0.1, 10.0]  # unit 1: z ≈ 9–11, σ′ ≈ 1e-4 < 1% of ¼ on both samples: saturated
W2 = [0.7, -0.5]
B2 = 0.05
LR = 0.5


def _sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def _by_hand() -> dict[str, dict[str, float]]:
    """One step of the 2-2-1 sigmoid net on the quadratic cost C = 1/(2N) Σ (ŷ − y)²."""
    n = len(X)
    a1 = [[_sigma(sum(x[i] * W1[i][j] for i in range(2)) + B1[j]) for j in range(2)]
          for x in X]
    out = [_sigma(sum(a[j] * W2[j] for j in range(2)) + B2) for a in a1]
    delta2 = [(o - t) / n * o * (1 - o) for o, t in zip(out, Y, strict=True)]
    delta1 = [[d * W2[j] * a[j] * (1 - a[j]) for j in range(2)]
              for d, a in zip(delta2, a1, strict=True)]
    grad_w1 = [sum(X[k][i] * delta1[k][j] for k in range(n)) for i in range(2) for j in range(2)]
    grad_b1 = [sum(delta1[k][j] for k in range(n)) for j in range(2)]
    grad_w2 = [sum(a1[k][j] * delta2[k] for k in range(n)) for j in range(2)]
    w1_norm, w2_norm = _norm([w for row in W1 for w in row]), _norm(W2)
    hidden = [a for row in a1 for a in row]
    mean = sum(hidden) / len(hidden)
    return {
        "dense0": {"grad_W_norm": _norm(grad_w1), "grad_b_norm": _norm(grad_b1),
                   "weight_norm": w1_norm, "update_ratio": LR * _norm(grad_w1) / w1_norm},
        "dense1": {"grad_W_norm": _norm(grad_w2), "grad_b_norm": abs(sum(delta2)),
                   "weight_norm": w2_norm, "update_ratio": LR * _norm(grad_w2) / w2_norm},
        "sigmoid0": {"act_mean": mean,
                     "act_std": math.sqrt(sum((a - mean) ** 2 for a in hidden) / len(hidden)),
                     "saturated_fraction": sum(a * (1 - a) < 0.01 * 0.25 for a in hidden)
                     / len(hidden)},
        "sigmoid1": {"act_mean": sum(out) / n,
                     "act_std": math.sqrt(sum((o - sum(out) / n) ** 2 for o in out) / n),
                     "saturated_fraction": 0.0},
    }


def _tiny_net(activation: str = "sigmoid", bias: list[float] = B1) -> nn.Sequential:
    return nn.Sequential([
        nn.Dense.from_weights(np.array(W1), np.array(bias)), nn.layers.Activation(activation),
        nn.Dense.from_weights(np.array(W2).reshape(2, 1), np.array([B2])),
        nn.layers.Activation("sigmoid")])


def test_layer_stats_equal_a_backpropagation_by_hand() -> None:
    monitor = Monitor()
    fit(_tiny_net(), np.array(X), np.array(Y).reshape(2, 1), loss="quadratic",
        optimizer=optim.SGD(lr=LR), epochs=1, batch_size=2, shuffle=False,
        callbacks=[monitor], progress=False)
    records = {r.layer: r for r in monitor.history}
    assert list(records) == ["dense0", "sigmoid0", "dense1", "sigmoid1"]
    for name, expected in _by_hand().items():
        record = records[name]
        assert (record.step, record.epoch, record.nonfinite) == (0, 0, 0)
        for field, value in expected.items():
            assert getattr(record, field) == pytest.approx(value, rel=1e-10, abs=1e-15), \
                (name, field)
    assert records["sigmoid0"].saturated_fraction == 0.5  # unit 1 on both samples
    # fields that do not apply are None
    assert records["dense0"].act_mean is None and records["dense0"].dead_fraction is None
    assert records["sigmoid0"].grad_W_norm is None and records["sigmoid0"].dead_fraction is None
    assert records["sigmoid0"].index == 1 and records["sigmoid1"].index == 3


def test_dead_fraction_by_hand_for_a_relu_unit_with_a_huge_negative_bias() -> None:
    monitor = Monitor()
    fit(_tiny_net("relu", [0.1, -100.0]), np.array(X), np.array(Y).reshape(2, 1),
        loss="quadratic", optimizer=optim.SGD(lr=LR), epochs=1, batch_size=2,
        callbacks=[monitor], progress=False)
    relu = next(r for r in monitor.history if r.layer == "relu0")
    # unit 0: z = 0.3·1 + 0.2·(−2) + 0.1 = 0 (off) and 0.3·0.5 + 0.2·3 + 0.1 = 0.85 (on);
    # unit 1: z ≤ −100 on both samples — dead. One of two units.
    assert relu.dead_fraction == 0.5 and relu.saturated_fraction is None


def test_layer_stats_document_every_field_of_the_issue() -> None:
    wanted = ["layer", "index", "step", "epoch", "grad_W_norm", "grad_b_norm", "weight_norm",
              "update_ratio", "act_mean", "act_std", "saturated_fraction", "dead_fraction",
              "nonfinite"]
    assert set(wanted) <= set(LayerStats.field_names())
    doc = LayerStats.__doc__ or ""
    for field in wanted:
        assert re.search(rf"\b{field}\b", doc), field
    assert "None" in doc and "1% of its" in doc and "every sample" in doc


# ---- bad input and rules ----------------------------------------------------------------------
FEATURES = np.random.default_rng(0).normal(size=(40, 3))
LABELS = (FEATURES[:, 0] > 0).astype(int)


def _monitored(spec: str) -> tuple[nn.Sequential, Monitor]:
    model, monitor = nn.mlp(spec, seed=0), Monitor()
    fit(model, FEATURES, LABELS, loss="cross_entropy", epochs=1, batch_size=20,
        callbacks=[monitor], progress=False)
    return model, monitor


def test_diagnosing_a_network_without_hidden_layers_is_a_clear_error() -> None:
    flat, flat_monitor = _monitored("3-2")
    with pytest.raises(GradsightError, match="hidden layer.*dense0"):
        diagnose(flat_monitor)
    deep, deep_monitor = _monitored("3-4-2")
    with pytest.raises(GradsightError, match="model .*hidden layer"):
        diagnose(deep_monitor, flat)
    assert isinstance(diagnose(deep_monitor, deep, (FEATURES, LABELS)).codes, list)


def _history_with(update_ratio: float, grad: float) -> list[LayerStats]:
    return [LayerStats(f"dense{i}", 2 * i, step, 0, grad_W_norm=grad, grad_b_norm=1.0,
                       weight_norm=1.0, update_ratio=update_ratio)
            for step in range(4) for i in range(3)]


def test_zero_gradients_make_no_learning_rate_too_low_finding() -> None:
    # dead units: ∂C/∂W = 0, so ΔW = 0 whatever η is — no verdict about η
    assert "small-updates" not in diagnose(_history_with(0.0, 0.0)).codes
    # a moving gradient with tiny steps: η really is too low
    assert "small-updates" in diagnose(_history_with(1e-8, 1.0)).codes


def test_nonfinite_gradients_stay_in_the_finding_and_the_plot() -> None:
    history = _history_with(1e-3, 1.0)
    history[4].grad_W_norm, history[4].nonfinite = math.nan, 7
    finding = diagnose(history).get("nonfinite")
    assert finding is not None and finding.evidence["per_layer"] == {"dense1": 7}
    fig = dplots.plot_layer_norms(history)
    assert any("non-finite (1)" in text.get_text()
               for text in fig.axes[0].get_legend().get_texts())


# ---- train --report and doctor ------------------------------------------------------------------
def test_train_report_has_findings_first_then_the_figures(tmp_path) -> None:
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


def test_train_report_without_hidden_layer_says_why_there_is_no_diagnosis(tmp_path) -> None:
    path = tmp_path / "flat.html"
    result = runner.invoke(app, ["train", "--hidden", "0", "--epochs", "2", "--report",
                                 str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "no layer-to-layer gradient flow" in path.read_text(encoding="utf-8")


def test_train_report_on_an_overflowing_run_reports_nonfinite(tmp_path) -> None:
    path = tmp_path / "div.html"
    result = runner.invoke(app, ["train", "--optimizer", "sgd", "--lr", "1e300", "--epochs",
                                 "2", "--report", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Non-finite values" in path.read_text(encoding="utf-8")


def test_doctor_takes_momentum_like_train() -> None:
    from gradsight.diagnostics.fixes import doctor

    setup = {"data": "moons", "hidden": [8], "activation": "relu", "init": "he_normal",
             "optimizer": "sgd", "lr": 0.05, "epochs": 2, "momentum": 0.9}
    result = doctor(setup, candidates=["init=xavier_uniform"])
    dataset = data.load("moons")
    X_tr, X_te, y_tr, y_te = data.train_test_split(dataset.X, dataset.y, 0.2, 0)
    X_tr, X_te, _, _ = data.standardize(X_tr, X_te)
    model = nn.mlp([2, 8, 2], activation="relu", init="he_normal", seed=0)
    fit(model, X_tr, y_tr, loss="cross_entropy", optimizer=optim.SGD(lr=0.05, momentum=0.9),
        epochs=2, batch_size=32, seed=0, progress=False)
    expected = nn.loss("cross_entropy").value(model.predict(X_te), y_te)
    assert result.baseline.loss == pytest.approx(expected, rel=1e-12)
    assert result.baseline.config["momentum"] == 0.9
    with pytest.raises(InvalidValueError, match="momentum"):
        doctor({**setup, "momentum": 1.5})
    with pytest.raises(InvalidValueError, match="hidden"):
        doctor({**setup, "hidden": []})


def test_cli_doctor_without_hidden_layers_is_one_line_exit_2() -> None:
    result = runner.invoke(app, ["doctor", "--hidden", "0", "--epochs", "1", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "hidden" in lines[0]


# ---- plots --------------------------------------------------------------------------------------
def _vanish(activation: str = "sigmoid") -> dict:
    speeds = [0.003, 0.012, 0.06, 0.3]
    return {"config": {"activation": activation},
            "layers": [{"layer": i + 1, "speed_at_init": s, "speed_trained": None}
                       for i, s in enumerate(speeds)],
            "speeds_by_epoch": [speeds, [s / 10 for s in speeds], [s / 20 for s in speeds]]}


def test_sigmoid_speed_plot_draws_the_quarter_per_layer_bound() -> None:
    lines = {line.get_label(): line.get_ydata()
             for line in dplots.plot_vanish(_vanish()).axes[0].get_lines()}
    bound = lines["σ′ ≤ 0.25 per layer (from the last)"]
    assert list(bound) == pytest.approx([0.3 / 64, 0.3 / 16, 0.3 / 4, 0.3])
    relu = dplots.plot_vanish(_vanish("relu")).axes[0].get_lines()
    assert all("σ′" not in line.get_label() for line in relu)


def test_sweep_sigmoid_panel_draws_the_bound() -> None:
    rows = [{"depth": d, "activation": a, "init": "he_normal", "ratio_last_first_init": r,
             "accuracy": 0.5} for d, a, r in [(2, "sigmoid", 4.0), (4, "sigmoid", 90.0),
                                              (2, "relu", 1.2), (4, "relu", 1.4)]]
    fig = dplots.plot_sweep({"rows": rows})
    sigmoid = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert sigmoid["σ′ ≤ 0.25 alone: 4^(depth−1)"] == [4.0, 64.0]
    assert all("σ′" not in line.get_label() for line in fig.axes[1].get_lines())


def test_speeds_while_training_plot_draws_every_epoch_on_a_log_axis() -> None:
    fig = dplots.plot_speeds_over_training(_vanish())
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    first = next(line for line in ax.get_lines() if line.get_label() == "hidden layer 1")
    assert list(first.get_ydata()) == pytest.approx([0.003, 0.0003, 0.00015])
    with pytest.raises(InvalidValueError):
        dplots.plot_speeds_over_training({"speeds_by_epoch": [[0.1, 0.2]]})


def test_activation_distributions_of_a_deep_net_wrap_onto_rows() -> None:
    model = nn.mlp("3-" + "-".join(["5"] * 6) + "-2", activation="tanh", seed=0)
    sample = np.random.default_rng(0).normal(size=(20, 3))
    fig = dplots.plot_activation_distributions(model, sample)
    assert len(fig.axes) == 6  # one panel per activation layer, none empty
    assert all(sum(p.get_height() for p in ax.patches) == 20 * 5 for ax in fig.axes)


def test_vanish_cli_plots_speeds_while_training(tmp_path) -> None:
    result = runner.invoke(app, ["vanish", "--hidden", "10,10", "--seeds", "1", "--samples",
                                 "100", "--train-epochs", "2", "--plot", str(tmp_path),
                                 "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["speeds_by_epoch"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sigmoid_bound.png", "speeds_by_epoch.png", "vanish.png"]
