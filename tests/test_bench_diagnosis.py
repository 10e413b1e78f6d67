"""The diagnosis benchmark (benchmarks/bench_diagnosis.py): its scoring, its port of
AUTOTRAINER's rules at their thresholds, and the targets on its quick subset, trained here."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from gradsight.diagnostics import Finding

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diagnosis.py"


def _load():
    if "bench_diagnosis" in sys.modules:
        return sys.modules["bench_diagnosis"]
    spec = importlib.util.spec_from_file_location("bench_diagnosis", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_diagnosis"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


# --------------------------------------------------------------------------- scoring


def test_precision_recall_and_f1_on_a_hand_made_example():
    pairs = [("vanishing", "vanishing"), ("vanishing", "vanishing"), ("vanishing", "other"),
             ("exploding", "vanishing"), ("exploding", "exploding"),
             ("healthy", "healthy"), ("healthy", "healthy"), ("healthy", "exploding")]
    table = bench.classification_table(pairs, classes=("vanishing", "exploding", "healthy"))
    rows = table["classes"]
    # vanishing: tp 2, predicted 3, true 3
    assert rows["vanishing"]["precision"] == pytest.approx(2 / 3)
    assert rows["vanishing"]["recall"] == pytest.approx(2 / 3)
    assert rows["vanishing"]["f1"] == pytest.approx(2 / 3)
    # exploding: tp 1, predicted 2, true 2
    assert (rows["exploding"]["precision"], rows["exploding"]["recall"]) == (0.5, 0.5)
    # healthy: tp 2, predicted 2, true 3 → F1 = 2·1·(2/3)/(5/3) = 0.8
    assert rows["healthy"]["precision"] == 1.0
    assert rows["healthy"]["f1"] == pytest.approx(0.8)
    assert table["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    # faulty runs: 5, of which vanishing→vanishing ×2 and exploding→exploding are right
    assert table["faulty_runs"] == 5
    assert table["first_right"] == pytest.approx(3 / 5)


def test_a_class_never_predicted_scores_zero_and_one_without_runs_is_left_out():
    table = bench.classification_table([("tiny_lr", "healthy"), ("healthy", "healthy")],
                                       classes=("tiny_lr", "saturation", "healthy"))
    assert table["classes"]["tiny_lr"]["f1"] == 0.0
    assert math.isnan(table["classes"]["saturation"]["f1"])
    assert table["macro_f1"] == pytest.approx((0.0 + 2 / 3) / 2)


def test_the_first_warning_or_critical_finding_decides_the_predicted_class():
    info = Finding("time-gradient-not-measured", "info", "not measured")
    stalled = Finding("stalled-loss", "warning", "stalled")
    dead = Finding("dead-units", "critical", "dead")
    vanishing = Finding("vanishing-gradients", "warning", "vanishing")
    assert bench.predicted_class([info, dead, vanishing]) == ("dying_relu", "dead-units")
    assert bench.predicted_class([info, vanishing, dead]) == ("vanishing",
                                                              "vanishing-gradients")
    # a code outside the map predicts "other", which is never right
    assert bench.predicted_class([stalled, dead]) == ("other", "stalled-loss")
    assert bench.predicted_class([info]) == ("healthy", None)
    assert bench.predicted_class([]) == ("healthy", None)


def test_the_code_map_covers_the_classes_and_nothing_maps_to_healthy():
    assert set(bench.CODE_TO_CLASS.values()) == set(bench.FAULTS)
    assert set(bench.ISSUE_TO_CLASS.values()) - {"other"} <= set(bench.FAULTS)


# --------------------------------------------------------------------------- AUTOTRAINER


def _feature():
    return bench.AutoTrainerMonitor(10).feature


def _gradient(rate, first=1.0, zeros=0.0, nan=False):
    return {"gra_rate": rate, "norm_kernel_first": first, "total_zero_ratio": zeros,
            "nan": nan}


def test_autotrainer_gradient_summary_reads_kernels_and_zero_entries():
    grads = [np.array([[3.0, 4.0], [0.0, 0.0]]), np.zeros(2), np.array([[0.0, 0.5]])]
    summary = bench.setups.autotrainer_gradient_summary(grads)
    assert summary["norm_kernel_first"] == 5.0 and summary["norm_kernel_last"] == 0.5
    assert summary["gra_rate"] == 10.0
    assert summary["total_zero_ratio"] == 5 / 8
    assert not summary["nan"]
    assert bench.setups.autotrainer_gradient_summary([np.array([[np.nan]])])["nan"]


@pytest.mark.parametrize(("zeros", "fires"), [(0.7, True), (0.6999, False)])
def test_autotrainer_dying_relu_at_gamma(zeros, fires):
    feature = _feature()
    bench.at_gradient_issue(feature, _gradient(1.0, zeros=zeros), bench.AT_PARAMS)
    assert feature["died_relu"] == (1 if fires else 0)


@pytest.mark.parametrize(("rate", "fires"), [(70.0, False), (70.0001, True)])
def test_autotrainer_exploding_above_beta_3(rate, fires):
    feature = _feature()
    bench.at_gradient_issue(feature, _gradient(rate), bench.AT_PARAMS)
    assert feature["explode_gradient"] == (1 if fires else 0)


@pytest.mark.parametrize(("rate", "first", "fires"), [
    (0.9999e-3, 0.9999e-4, True),
    (1e-3, 0.9999e-4, False),   # the ratio must be below β1 = 1e-3
    (0.9999e-3, 1e-4, False),   # and the first kernel's gradient below β2 = 1e-4
])
def test_autotrainer_vanishing_below_beta_1_and_beta_2(rate, first, fires):
    feature = _feature()
    bench.at_gradient_issue(feature, _gradient(rate, first=first), bench.AT_PARAMS)
    assert feature["vanish_gradient"] == (1 if fires else 0)


def test_autotrainer_nan_gradient_stops_the_other_gradient_rules():
    feature = _feature()
    bench.at_gradient_issue(feature, _gradient(1e6, zeros=1.0, nan=True), bench.AT_PARAMS)
    assert feature["nan_gradient"] and not feature["explode_gradient"]
    assert not feature["died_relu"]


def _history(acc, loss=None):
    loss = loss or [1.0] * len(acc)
    return {"loss": loss, "acc": acc, "val_loss": loss, "val_acc": acc}


def _loss_issue(feature, history, total_epoch=3):
    bench.at_loss_issue(feature, history, total_epoch, bench.AT_PARAMS["Theta"], 3,
                        unstable_threshold=bench.AT_PARAMS["zeta"],
                        unstable_rate=bench.AT_PARAMS["eta"],
                        sc_threshold=bench.AT_PARAMS["delta"])
    return feature


@pytest.mark.parametrize(("last", "fires"), [(1000.0, True), (999.9, False)])
def test_autotrainer_large_loss_counts_as_nan_from_1e3(last, fires):
    assert _loss_issue(_feature(), _history([0.8, 0.9], [1.0, last]))["nan_loss"] is fires


@pytest.mark.parametrize(("best", "fires"), [(0.6999, True), (0.7, False)])
def test_autotrainer_not_converged_below_theta(best, fires):
    assert _loss_issue(_feature(), _history([0.5, best]))["not_converge"] is fires


@pytest.mark.parametrize(("gain", "fires"), [(0.0099, True), (0.0101, False)])
def test_autotrainer_slow_accuracy_below_delta(gain, fires):
    assert _loss_issue(_feature(), _history([0.5, 0.5 + gain]))["sc_accuracy"] is fires


@pytest.mark.parametrize(("swing", "fires"), [(0.0301, True), (0.0299, False)])
def test_autotrainer_unstable_from_zeta_swings_in_eta_of_the_epochs(swing, fires):
    acc = [0.5, 0.5 + swing, 0.5, 0.5 + swing, 0.5]  # one max/min pair; η·5 = 1
    assert bench.at_ol_judge(acc, bench.AT_PARAMS["zeta"], bench.AT_PARAMS["eta"]) is fires


@pytest.mark.parametrize(("row_sum", "mean", "activation", "abnormal"), [
    (1.1, 9.99, False, False), (1.1001, 9.99, True, False), (1.0, 10.0, False, True)])
def test_autotrainer_layer_outputs_at_omega(row_sum, mean, activation, abnormal):
    feature = {**_feature(), "activation_output": False, "abnormal_output": False}
    bench.at_layer_issue(feature, {"output_row_sum_max": row_sum, "output_nan": False,
                                   "hidden_mean_abs": [0.5, mean]})
    assert (feature["activation_output"], feature["abnormal_output"]) == (activation, abnormal)


def test_autotrainer_improper_loss_and_output_activation():
    feature = {}
    bench.at_loss_function_issue(feature, "categorical_crossentropy", 4, "sigmoid")
    assert feature == {"improper_loss": False, "activation_output": True}
    feature = {}
    bench.at_loss_function_issue(feature, "categorical_crossentropy", 2, "softmax")
    assert feature == {"improper_loss": True}
    feature = {}
    bench.at_loss_function_issue(feature, "binary_crossentropy", 1, "sigmoid")
    assert feature == {"improper_loss": False}


def test_autotrainer_priority_keeps_the_highest_issue():
    assert bench.at_filtered_issue(["unstable", "relu", "loss_issue"]) == ["loss_issue"]
    assert bench.at_filtered_issue(["unstable", "not_converge"]) == ["unstable"]


def test_autotrainer_replay_judges_at_its_check_epochs():
    """Zero gradients from the start, accuracy stuck, 30 epochs: the loss rules start at
    0.3 × 30 − 3 = 6 epochs (check at epoch 6 sets "not converged" and "slow accuracy"); the
    next check (epoch 9) computes the layer outputs, judges, and reports dying ReLU."""
    epochs = 30
    check = {"gradient": _gradient(1.0, zeros=0.8),
             "layers": {"output_row_sum_max": 1.0, "output_nan": False,
                        "hidden_mean_abs": [0.0]},
             "weights": {"nan": False, "max_abs": 1.0}}
    run = {"history": _history([0.5] * epochs), "checks": [check] * epochs,
           "total_epoch": epochs, "loss": "binary_crossentropy", "output_shape": 1,
           "activation": "sigmoid"}
    assert bench.autotrainer_detect(run) == ("relu", 9)
    healthy = {**run, "history": _history([0.6, 0.8, 0.9] + [0.95] * (epochs - 3)),
               "checks": [{**check, "gradient": _gradient(1.0)}] * epochs}
    assert bench.autotrainer_detect(healthy) == (None, None)


# --------------------------------------------------------------------------- the targets


@pytest.mark.slow
def test_the_quick_subset_meets_the_targets():
    """Trains the quick subset here (no cache) and holds the diagnosis to its targets."""
    result = bench.run_benchmark(quick=True, use_cache=False, jobs=1)
    runs, summary = result["runs"], result["summary"]
    unconfirmed = {r["name"]: r["unconfirmed_reason"] for r in runs if not r["confirmed"]}
    assert unconfirmed == {}
    g = summary["gradsight"]
    wrong = {r["name"]: r["gradsight"]["alarms"] for r in runs
             if r["gradsight"]["predicted"] != r["fault"]}
    assert g["macro_f1"] >= 0.95, wrong
    assert g["first_right"] >= 0.95, wrong
    assert g["false_alarms"] == 0, wrong
    assert {r["fault"] for r in runs} == set(bench.CLASSES)
