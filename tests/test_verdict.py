"""Verdicts: each rule fires on the condition it names, with the numbers behind it."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from gradsight import engine, fit, optim
from gradsight.diagnostics import Findings, LayerHistory, LayerStats, Monitor, diagnose
from gradsight.diagnostics.monitor import layer_stats_of
from gradsight.engine import data
from gradsight.errors import GradsightError, InvalidValueError
from gradsight.io import dumps
from gradsight.present.plots.diagnostics import plot_layer_norms


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    ds = data.digits()
    return data.standardize(ds.X[:600]).train, ds.y[:600]


def _train(spec, activation, init, loss, lr=0.5, epochs=2, output=None, seed=0):
    X, y = _digits()
    model = engine.mlp(spec, activation=activation, output_activation=output, init=init, seed=seed)
    monitor = Monitor()
    history = fit(model, X, y, loss=loss, optimizer=optim.SGD(lr=lr), epochs=epochs,
                  batch_size=32, callbacks=[monitor], progress=False)
    return model, monitor, history


def test_deep_sigmoid_with_normal_init_has_vanishing_gradients():
    model, monitor, history = _train([64, *[16] * 6, 10], "sigmoid", "normal", "quadratic",
                                     output="sigmoid")
    findings = diagnose(monitor, model, _digits(), history, loss="quadratic")
    finding = findings.get("vanishing-gradients")
    assert finding is not None and finding.severity in ("warning", "critical")
    # the ratio is the median over the steps of ‖∂C/∂b‖(sigmoid5's dense) / ‖∂C/∂b‖(dense0)
    by_step: dict[int, dict[str, float]] = {}
    for r in monitor.history:
        by_step.setdefault(r.step, {})[r.layer] = r.grad_b_norm
    ratios = [s["dense5"] / s["dense0"] for s in by_step.values()]
    assert finding.evidence["ratio_last_first"] == pytest.approx(float(np.median(ratios)))
    assert finding.evidence["ratio_last_first"] > 10
    assert finding.layers == [f"dense{i}" for i in range(6)]
    assert "0.25" in finding.explanation and "ReLU" in finding.fixes[0]
    assert {"activation": "relu", "init": "he_normal"} in finding.changes


def test_healthy_relu_he_net_has_no_vanishing_finding():
    model, monitor, history = _train("64-32-32-10", "relu", "he_normal", "cross_entropy",
                                     lr=0.1)
    findings = diagnose(monitor, model, _digits(), history, loss="cross_entropy")
    assert "vanishing-gradients" not in findings.codes
    assert "exploding-gradients" not in findings.codes
    assert findings.worst in (None, "info")


def _history(**fields_by_layer) -> list[LayerStats]:
    """Three steps of a 3-dense sigmoid net with given per-layer field values."""
    records = []
    for step in range(3):
        for index, name in enumerate(["dense0", "sigmoid0", "dense1", "sigmoid1", "dense2"]):
            kind = "param" if name.startswith("dense") else "activation"
            values = {key: (v[step] if isinstance(v, list) else v)
                      for key, v in fields_by_layer.get(name, {}).items()}
            if kind == "param":
                values = {"grad_W_norm": 1.0, "grad_b_norm": 1.0, "weight_norm": 1.0,
                          "update_ratio": 1e-3, **values}
            else:
                values = {"activation": "sigmoid", "act_mean": 0.5, "act_std": 0.1,
                          "saturated_fraction": 0.0, **values}
            records.append(LayerStats(name, index, step, 0, kind, **values))
    return records


def test_nonfinite_gradients_are_a_critical_finding():
    model = engine.mlp("3-4-4-2", activation="sigmoid", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    cost = engine.loss("cross_entropy")
    model.backward(cost.gradient(model.forward(X), np.array([0, 1, 0, 1, 1])))
    model.dense_layers[1].grad_W[0, 0] = np.nan
    model.dense_layers[1].grad_b[1:3] = np.inf
    findings = diagnose(layer_stats_of(model))
    assert findings[0].code == "nonfinite" and findings[0].severity == "critical"
    assert findings[0].evidence["nonfinite_values"] == 3
    assert findings[0].evidence["per_layer"] == {"dense1": 3}
    assert "NaN" in str(findings)


def test_nonfinite_from_a_real_diverging_run():
    X, y = _digits()
    model = engine.mlp("64-16-16-10", activation="relu", init="normal", seed=0)
    monitor = Monitor()
    history = fit(model, X * 1e3, y, loss="quadratic", optimizer=optim.SGD(lr=1e6), epochs=2,
                  batch_size=32, callbacks=[monitor], progress=False)
    assert history.stopped and history.stopped.startswith("non-finite")
    findings = diagnose(monitor, train_history=history)
    assert findings[0].code == "nonfinite"
    assert findings[0].evidence["nonfinite_values"] == sum(r.nonfinite for r in monitor.history)
    assert findings[0].evidence["nonfinite_values"] > 0


def test_saturated_layers():
    h = _history(sigmoid0={"saturated_fraction": 0.95}, sigmoid1={"saturated_fraction": 0.6})
    finding = diagnose(h).get("saturated-layers")
    assert finding.severity == "critical" and finding.layers == ["sigmoid0", "sigmoid1"]
    assert finding.evidence["saturated_fraction"] == {"sigmoid0": 0.95, "sigmoid1": 0.6}
    assert diagnose(_history(sigmoid0={"saturated_fraction": 0.2})).get("saturated-layers") \
        is None


def test_dead_units_from_a_relu_layer_with_negative_biases():
    X, y = _digits()
    model = engine.mlp("64-16-16-10", activation="relu", init="he_normal", seed=0)
    model.dense_layers[0].b[:8] = -1e4  # half of the first layer can never switch on
    monitor = Monitor()
    fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.01), epochs=1,
        batch_size=64, callbacks=[monitor], progress=False)
    finding = diagnose(monitor, model, (X, y), loss="cross_entropy").get("dead-units")
    # half a layer dead for good is a warning (critical is a layer nearly all dead)
    assert finding is not None and finding.severity == "warning" and "relu0" in finding.layers
    z = X @ model.dense_layers[0].W + model.dense_layers[0].b
    assert finding.evidence["dead_on_data"]["relu0"] == int(np.sum(np.all(z <= 0, axis=0)))
    assert finding.evidence["dead_fraction"]["relu0"] == pytest.approx(0.5)
    assert "leaky" in finding.fixes[0].lower()


def test_vanishing_thresholds_and_exploding_direction():
    # SGD: the first layer's steps are as small as its gradient (‖ΔW‖ = η‖∂C/∂W‖)
    small_first = _history(dense0={"grad_b_norm": [0.01, 0.02, 0.01],
                                   "grad_W_norm": [0.01, 0.02, 0.01], "update_ratio": 1e-5})
    finding = diagnose(small_first).get("vanishing-gradients")
    assert finding.severity == "warning"  # median ratio 1/0.01 = 100, not > 100
    assert finding.evidence["ratio_last_first"] == pytest.approx(100.0)
    assert diagnose(small_first, vanishing_critical=50).get("vanishing-gradients").severity \
        == "critical"
    # a first layer with a 50× larger gradient, at norms that neither are huge, grow nor
    # spike, is no explosion: a ratio alone is not evidence (deep tanh nets that learn)
    big_first = diagnose(_history(dense0={"grad_b_norm": 50.0}))
    assert "vanishing-gradients" not in big_first.codes
    assert "exploding-gradients" not in big_first.codes


def test_growing_gradients_and_large_updates():
    growing = _history(dense0={"grad_W_norm": [1.0, 10.0, 2e7]})
    finding = diagnose(growing).get("exploding-gradients")
    assert finding.severity == "critical" and finding.evidence["gradient_norm_peak"] > 1e6
    large = diagnose(_history(dense1={"update_ratio": 0.5})).get("large-updates")
    assert large.severity == "warning" and large.layers == ["dense1"]
    assert {"lr_factor": 0.1} in large.changes
    assert diagnose(_history(dense1={"update_ratio": 3.0})).get("large-updates").severity \
        == "critical"
    tiny = diagnose(_history(**{d: {"update_ratio": 1e-7} for d in ("dense0", "dense1",
                                                                     "dense2")}))
    assert tiny.get("small-updates").evidence["median"] == pytest.approx(1e-7)


def test_stalled_rising_and_healthy_loss_curves():
    h = _history(**{d: {"update_ratio": 1e-5} for d in ("dense0", "dense1", "dense2")})
    stalled = diagnose(h, train_history=[1.0, 0.999, 0.998, 0.998, 0.997, 0.997, 0.997, 0.996])
    assert stalled.get("stalled-loss") is not None
    healthy = diagnose(h, train_history=[1.0, 0.6, 0.4, 0.3, 0.2, 0.15, 0.12, 0.1])
    assert "stalled-loss" not in healthy.codes and "rising-loss" not in healthy.codes
    converged = [{"loss": v, "accuracy": 0.99} for v in (1.0, 0.9, 0.9, 0.9, 0.9, 0.9)]
    assert "stalled-loss" not in diagnose(h, train_history=converged).codes
    rising = diagnose(h, train_history=[1.0, 1.2, 1.5, 2.0, 3.0, 4.0])
    assert rising.get("rising-loss").evidence["loss_end"] > 2


def test_quadratic_cost_with_sigmoid_output():
    h = _history() + [LayerStats("sigmoid2", 5, s, 0, "activation", "sigmoid",
                                 saturated_fraction=0.5) for s in range(3)]
    finding = diagnose(h, loss="quadratic").get("quadratic-sigmoid-output")
    assert finding.severity == "warning" and finding.layers == ["sigmoid2"]
    assert finding.changes == [{"loss": "cross_entropy"}]
    assert "quadratic-sigmoid-output" not in diagnose(h, loss="cross_entropy").codes


def test_findings_are_sorted_serialisable_and_render():
    h = _history(sigmoid0={"saturated_fraction": 0.7}, dense1={"grad_b_norm": math.nan,
                                                               "nonfinite": 2})
    findings = diagnose(h)
    assert isinstance(findings, Findings)
    order = ["critical", "warning", "info"]
    assert [order.index(f.severity) for f in findings] == sorted(order.index(f.severity)
                                                                 for f in findings)
    document = findings.to_dict()
    assert document["counts"]["critical"] >= 1 and document["worst"] == "critical"
    assert '"nonfinite"' in dumps(document)
    html = findings._repr_html_()
    assert all(f.title in html for f in findings)
    assert findings.fixes() and len(findings.fixes()) == len(set(findings.fixes()))


def test_bad_input():
    with pytest.raises(GradsightError, match="empty"):
        diagnose([])
    with pytest.raises(GradsightError):
        diagnose(Monitor())
    with pytest.raises(InvalidValueError):
        diagnose(_history(), vanishing_warning=0.5)
    with pytest.raises(InvalidValueError):
        diagnose(_history(), saturated_warning=2.0)
    with pytest.raises(InvalidValueError, match="unknown threshold"):
        diagnose(_history(), no_such_threshold=1.0)
    with pytest.raises(InvalidValueError):
        diagnose(_history(), vanishing_warning=200, vanishing_critical=100)


def test_layer_history_of_findings_input_matches():
    h = _history(dense0={"grad_b_norm": [0.1, 0.2, 0.3]})
    steps, values = LayerHistory(h).series("grad_b_norm", "dense0")
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [0.1, 0.2, 0.3]


# ---- networks without a hidden layer, and gradients that are exactly zero -----------------------
FEATURES = np.random.default_rng(0).normal(size=(40, 3))
LABELS = (FEATURES[:, 0] > 0).astype(int)


def _monitored(spec: str) -> tuple[engine.Sequential, Monitor]:
    model, monitor = engine.mlp(spec, seed=0), Monitor()
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
    fig = plot_layer_norms(history)
    assert any("non-finite (1)" in text.get_text()
               for text in fig.axes[0].get_legend().get_texts())


def test_engine_records_carry_roles():
    """Dense layers are "hidden", the last Dense "output"; activations have no role."""
    model, monitor, _ = _train([64, 16, 16, 10], "relu", "he_normal", "cross_entropy",
                               epochs=1)
    step0 = [r for r in monitor.history if r.step == 0]
    assert [r.role for r in step0 if r.kind == "param"] == ["hidden", "hidden", "output"]
    assert {r.role for r in step0 if r.kind == "activation"} == {None}
    assert [r.role for r in layer_stats_of(model) if r.kind == "param"] == [
        "hidden", "hidden", "output"]


def _cnn_history(role: bool, conv_bias: float = 1e-9) -> list[LayerStats]:
    """conv → bn → conv → bn → fc: the convolutions' ‖∂C/∂W‖ equal, the norm layers' ∂C/∂γ
    a thousand times smaller, the conv biases zero by construction (followed by BatchNorm)."""
    layers = [("conv0", "hidden", 1.0, conv_bias), ("bn0", "norm", 1e-3, 1e-3),
              ("conv1", "hidden", 1.0, conv_bias), ("bn1", "norm", 1e-3, 1e-3),
              ("fc", "output", 1.0, 0.5)]
    return [LayerStats(name, i, step, grad_W_norm=g_w, grad_b_norm=g_b,
                       role=kind if role else None)
            for step in range(5) for i, (name, kind, g_w, g_b) in enumerate(layers)]


def test_depth_rules_compare_hidden_weights_only():
    """Without roles every param layer but the last is "hidden", so bn1's ∂C/∂γ is compared
    with conv0's ∂C/∂W: a false "exploding gradients" (the ResNet whose BN sits before fc);
    with roles the rules compare conv0 with conv1, by ‖∂C/∂W‖ (their biases are zero by
    construction), and say which biases they left out."""
    # without roles the ratio bn1/conv0 is 1e-3, which no longer makes an "exploding" alone
    unroled = diagnose(_cnn_history(role=False), vanishing_warning=1.0001,
                       vanishing_critical=1.0001)
    assert unroled.codes == []
    assert diagnose(_cnn_history(role=True)).codes == []
    finding = diagnose(_cnn_history(role=True), vanishing_warning=1.0001,
                       vanishing_critical=1.0001)
    assert finding.codes == []  # conv1/conv0 ‖∂C/∂W‖ = 1 exactly: neither direction
    strict = diagnose([LayerStats(r.layer, r.index, r.step, grad_W_norm=(
        r.grad_W_norm * (2.0 if r.layer == "conv1" else 1.0)), grad_b_norm=r.grad_b_norm,
        role=r.role) for r in _cnn_history(role=True)], vanishing_warning=1.5)
    vanishing = strict.get("vanishing-gradients")
    assert vanishing is not None and vanishing.evidence["field"] == "grad_W_norm"
    assert vanishing.evidence["ratio_last_first"] == pytest.approx(2.0)
    assert set(vanishing.evidence["excluded_biases"]) == {"conv0", "conv1"}
    # a bias that learns is Nielsen's speed, as before
    learning = _cnn_history(role=True, conv_bias=0.5)
    assert diagnose(learning).codes == []


def _attention_history(entropies: list[float], uniform: float = math.log(8)) -> list[LayerStats]:
    """Two dense layers plus one attention head whose entropy per step is given."""
    records = []
    for step, entropy in enumerate(entropies):
        records += [LayerStats("dense0", 0, step, grad_W_norm=1.0, grad_b_norm=1.0),
                    LayerStats("attn:head0", 1, step, kind="attention",
                               attention_entropy=entropy, attention_entropy_uniform=uniform),
                    LayerStats("dense1", 2, step, grad_W_norm=1.0, grad_b_norm=1.0)]
    return records


def test_attention_collapse_and_uniform_attention():
    uniform = math.log(8)
    collapsed = diagnose(_attention_history([uniform * s for s in
                                             (0.9, 0.5, 0.2, 0.05, 0.01, 0.01, 0.01)]))
    finding = collapsed.get("attention-collapse")
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["entropy_share_of_uniform"]["attn:head0"] == pytest.approx(0.01)
    stuck = diagnose(_attention_history([uniform * 0.995] * 7)).get("attention-uniform")
    assert stuck is not None and stuck.severity == "info"
    moving = diagnose(_attention_history([uniform * s for s in
                                          (0.99, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6)]))
    assert not {"attention-collapse", "attention-uniform"} & set(moving.codes)


def test_a_history_cut_in_the_middle_of_a_step_is_judged_without_error():
    """A history sliced by records (the playground's last N records) starts in the middle
    of a step: the first layer has one record more than the last. Before, the per-step
    ratios of the two layers failed to broadcast ((15,) against (14,))."""
    full = [LayerStats(f"dense{i}", i, step, grad_W_norm=g, grad_b_norm=g, weight_norm=1.0,
                       update_ratio=1e-3 * g, role="hidden" if i < 2 else "output")
            for step in range(15) for i, g in enumerate([1e-3, 1.0, 1.0])]
    cut = full[1:]  # step 0 keeps dense1 and dense2 only
    findings = diagnose(cut)
    vanishing = findings.get("vanishing-gradients")
    assert vanishing is not None and vanishing.evidence["ratio_last_first"] == pytest.approx(1e3)


def test_the_spike_is_measured_against_the_running_median_in_linear_time():
    """The spike of a run recorded at every step: the same as re-taking the median of every
    prefix (the oracle, quadratic), computed with two heaps."""
    from gradsight.diagnostics.rules import _spike

    rng = np.random.default_rng(3)
    for n in (2, 7, 60, 401):
        totals = rng.lognormal(size=n)
        totals[n // 2] *= 500.0
        best, where = 1.0, -1
        for i in range(1, n):
            before = float(np.median(totals[:i]))
            if totals[i] / before > best:
                best, where = float(totals[i] / before), i
        spike, at = _spike(totals)
        assert at == where and spike == pytest.approx(best, rel=1e-12)
